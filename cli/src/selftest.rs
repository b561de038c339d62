//! `edgetpu selftest`: what a user with a Coral runs once so that we learn whether the runtime
//! works on their hardware.
//!
//! On each device (every attached Coral, or `--device`), every compiled model found (`--models`
//! directories, else the test data named by `EDGETPU_TESTDATA` and the model catalog's cache) runs
//! three inferences in a row with different inputs; each is compared byte for byte with its CPU
//! twin (the file beside it without `_edgetpu`) run the same way, recurrent state included. A model
//! without a twin (a pipeline segment, say) is run and timed, not compared. Around the models:
//! the device opens, reports its link and temperature, closes and opens again. `--report DIR`
//! writes a bundle to attach to a bug report: system facts (no host or user names, no paths
//! outside the models' file names), the results, and a recorded USB session of one small model.

use crate::tpu::DeviceArgs;
use anyhow::{bail, Context, Result};
use edgetpu::device::spec::{self, Entry};
use edgetpu::device::DeviceKind;
use edgetpu::model::cpu_twin_path;
use edgetpu::{cpu, DeviceSpec, Interpreter, Model, Runtime};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

/// Arguments of `edgetpu selftest`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Directories searched (recursively) for compiled models (`*_edgetpu.tflite`); default: the
    /// test data named by EDGETPU_TESTDATA, and the model catalog's cache. Folders named
    /// `invalid_models` are left out.
    #[arg(long = "models", value_name = "DIR")]
    pub models: Vec<PathBuf>,
    /// Inferences in a row per model, each with other inputs.
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Write a bundle for a bug report into this directory: system.json, results.json and, for a
    /// USB device, session.jsonl (a recorded session of one small model).
    #[arg(long, value_name = "DIR")]
    pub report: Option<PathBuf>,
    /// Print the results as JSON.
    #[arg(long)]
    pub json: bool,
}

/// The devices to test, one entry each.
fn devices(args: &Args) -> Result<Vec<Entry>> {
    let wanted = DeviceSpec::parse(&args.device.device).map_err(|e| anyhow::anyhow!("--device: {e}"))?;
    match wanted {
        DeviceSpec::Cpu => bail!("selftest tests Edge TPU devices: use --device auto, usb, pci or sim"),
        DeviceSpec::Auto => {
            let found = spec::attached_in(&crate::devices::pcie::sysfs_root());
            if found.is_empty() {
                bail!(
                    "no Coral attached (`edgetpu devices` lists what this machine sees); --device sim or sim:pci runs \
                     the selftest on a simulated one"
                );
            }
            Ok(found)
        }
        list => Ok(list.entries().to_vec()),
    }
}

/// The directories searched by default: the test data and the catalog's cache.
fn default_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Some(d) = std::env::var_os("EDGETPU_TESTDATA").map(PathBuf::from) {
        dirs.push(d);
    }
    if let Ok(d) = edgetpu_models::cache_dir() {
        dirs.push(d);
    }
    dirs
}

/// Every `*_edgetpu.tflite` under `dirs`, sorted, each once.
pub fn find_models(dirs: &[PathBuf]) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack: Vec<PathBuf> = dirs.to_vec();
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else { continue };
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                if p.file_name().is_some_and(|n| n != "invalid_models") {
                    stack.push(p);
                }
            } else if p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.ends_with("_edgetpu.tflite")) {
                out.push(p);
            }
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Deterministic input bytes for run `round` of input `index`.
fn noise(n: usize, seed: u32) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9) | 1;
    (0..n)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            (x >> 24) as u8
        })
        .collect()
}

/// A file's name, without its directories (which may name the user).
fn file_name(p: &Path) -> String {
    p.file_name().map_or_else(|| "?".to_string(), |n| n.to_string_lossy().into_owned())
}

/// Runs one model `runs` times on `rt` and on its CPU twin, comparing each run.
fn test_model(rt: &Runtime, path: &Path, runs: usize) -> Value {
    let name = file_name(path);
    let outcome = || -> Result<Value> {
        let model = Arc::new(Model::open(path)?);
        let mut it = Interpreter::builder(model).runtime(rt).threads(1).build()?;
        let twin_path = cpu_twin_path(path);
        let mut twin = match &twin_path {
            Some(t) => Some(cpu::Interpreter::new(Arc::new(Model::open(t)?), &cpu::Options::default())?),
            None => None,
        };
        let mut times = Vec::new();
        let mut mismatches = Vec::new();
        for round in 0..runs {
            let inputs: Vec<Vec<u8>> = (0..it.inputs().len())
                .map(|i| Ok(noise(it.input_mut(i)?.len(), (round * 31 + i) as u32 + 1)))
                .collect::<Result<_>>()?;
            for (i, b) in inputs.iter().enumerate() {
                it.set_input(i, b)?;
            }
            let start = Instant::now();
            it.invoke()?;
            times.push(start.elapsed().as_secs_f64() * 1e3);
            let Some(twin) = twin.as_mut() else { continue };
            for (i, b) in inputs.iter().enumerate() {
                twin.set_input(i, b)?;
            }
            twin.invoke()?;
            for j in 0..it.outputs().len() {
                let (got, want) = (it.output(j)?, twin.output(j)?);
                if got != want {
                    let differing = got.iter().zip(want).filter(|(a, b)| a != b).count();
                    let max = got.iter().zip(want).map(|(a, b)| a.abs_diff(*b)).max().unwrap_or(0);
                    mismatches.push(json!({
                        "run": round, "output": j, "differing_bytes": differing, "max_difference": max,
                        "sizes": [got.len(), want.len()],
                    }));
                }
            }
        }
        let mut later = times[1.min(times.len())..].to_vec();
        later.sort_by(f64::total_cmp);
        let status = match (&twin_path, mismatches.is_empty()) {
            (None, _) => "not compared",
            (Some(_), true) => "pass",
            (Some(_), false) => "fail",
        };
        Ok(json!({
            "model": name,
            "twin": twin_path.as_deref().map(file_name),
            "status": status,
            "runs": runs,
            "first_ms": times.first(),
            "median_ms": later.get(later.len() / 2).or(times.first()),
            "mismatches": mismatches,
        }))
    };
    outcome().unwrap_or_else(|e| json!({"model": name, "status": "fail", "error": format!("{e:#}")}))
}

/// Opens `entry`, runs the checks and every model, closes it.
fn test_device(entry: &Entry, models: &[PathBuf], args: &Args) -> Value {
    let spec = DeviceSpec::Devices(vec![entry.clone()]);
    let mut checks = Vec::new();
    let mut check = |name: &str, r: std::result::Result<String, String>| {
        checks.push(json!({"check": name, "ok": r.is_ok(), "detail": r.unwrap_or_else(|e| e)}));
    };
    let open = || crate::tpu::open_runtime(&spec, &args.device);
    let rt = match open() {
        Ok(rt) => rt,
        Err(e) => {
            check("open", Err(format!("{e:#}")));
            return json!({"device": entry.to_string(), "checks": checks, "models": []});
        }
    };
    let info = rt.device_info()[0].clone();
    check("open", Ok(info.name.clone()));
    let t = rt.telemetry().remove(0);
    check("link", Ok(t.link.clone().unwrap_or_else(|| "not reported".into())));
    check("temperature", Ok(t.temperature_c.map_or_else(|| "not reported".into(), |c| format!("{c:.1} °C"))));
    let results: Vec<Value> = models.iter().map(|m| test_model(&rt, m, args.runs.max(1))).collect();
    let metrics = rt.metrics().remove(0);
    drop(rt);
    // Close and open again: the second open sequence must find the chip as the close left it.
    let reopened = open().map(|rt| rt.device_info()[0].name.clone()).map_err(|e| format!("{e:#}"));
    check("close and reopen", reopened);
    json!({
        "device": info.name,
        "kind": match info.kind { DeviceKind::Pci => "pci", _ => "usb" },
        "simulated": info.simulated,
        "link": t.link,
        "temperature_c": t.temperature_c,
        "checks": checks,
        "models": results,
        "metrics": metrics,
    })
}

/// Facts about this machine that help read a report, and nothing that names its user.
fn system_facts() -> Value {
    let read = |p: &str| std::fs::read_to_string(p).ok().map(|s| s.trim_matches(char::from(0)).trim().to_string());
    let os = read("/etc/os-release")
        .and_then(|t| t.lines().find_map(|l| l.strip_prefix("PRETTY_NAME=")).map(|v| v.trim_matches('"').to_string()));
    let board = read("/proc/device-tree/model").or_else(|| {
        let (v, p) = (read("/sys/class/dmi/id/sys_vendor"), read("/sys/class/dmi/id/product_name"));
        match (v, p) {
            (Some(v), Some(p)) => Some(format!("{v} {p}")),
            (v, p) => v.or(p),
        }
    });
    let cpu = read("/proc/cpuinfo").and_then(|t| {
        t.lines()
            .find(|l| l.starts_with("model name") || l.starts_with("Hardware") || l.starts_with("Model"))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    });
    let usb: Vec<Value> = crate::devices::open_bus()
        .ok()
        .and_then(|bus| edgetpu::device::usb::discovery::list(&bus).ok())
        .unwrap_or_default()
        .iter()
        .map(|d| {
            json!({"selector": d.selector, "id": format!("{:04x}:{:04x}", d.info.vendor, d.info.product),
                   "speed": d.info.speed.to_string(), "state": d.state.to_string()})
        })
        .collect();
    let pcie: Vec<Value> = crate::tpu::pcie_corals()
        .iter()
        .map(|d| {
            json!({"selector": d.selector, "node": file_name(&d.node), "pci_address": d.pci_address,
                   "state": d.state.to_string(), "driver_version": d.driver_version,
                   "framework_version": d.framework_version})
        })
        .collect();
    json!({
        "runtime_version": env!("CARGO_PKG_VERSION"),
        "arch": std::env::consts::ARCH,
        "kernel": read("/proc/sys/kernel/osrelease"),
        "os": os,
        "board": board,
        "cpu": cpu,
        "apex_module_version": read("/sys/module/apex/version"),
        "gasket_module_version": read("/sys/module/gasket/version"),
        "usb_corals": usb,
        "pcie_corals": pcie,
    })
}

/// Writes the report bundle; returns the files written.
fn write_report(
    dir: &Path,
    results: &Value,
    entries: &[Entry],
    models: &[PathBuf],
    args: &Args,
) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let mut files = Vec::new();
    let mut write = |name: &str, v: &Value| -> Result<()> {
        let p = dir.join(name);
        std::fs::write(&p, serde_json::to_string_pretty(v)? + "\n")
            .with_context(|| format!("writing {}", p.display()))?;
        files.push(p);
        Ok(())
    };
    write("system.json", &system_facts())?;
    write("results.json", results)?;
    // A recorded session of the smallest model on the first USB device, for replay.
    let usb = entries.iter().find(|e| e.kind() == DeviceKind::Usb);
    let smallest = models.iter().filter_map(|m| Some((std::fs::metadata(m).ok()?.len(), m))).min().map(|(_, m)| m);
    if let Some(entry) = usb {
        let file = dir.join("session.jsonl");
        let device = if entry.is_simulated() { "sim".to_string() } else { entry.to_string() };
        match crate::record_session::record(
            &file,
            &device,
            args.device.firmware.as_deref(),
            smallest.map(|p| p.as_path()),
        ) {
            Ok(()) => files.push(file),
            Err(e) => eprintln!("selftest: recording the session failed: {e:#}"),
        }
    }
    Ok(files)
}

/// `edgetpu selftest`.
pub fn run(args: &Args) -> Result<()> {
    let entries = devices(args)?;
    let dirs = if args.models.is_empty() { default_dirs() } else { args.models.clone() };
    let models = find_models(&dirs);
    if models.is_empty() {
        let looked = dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ");
        bail!(
            "no compiled model (*_edgetpu.tflite) found in {}: `edgetpu models fetch NAME` puts catalog models in the \
             cache, or pass --models DIR",
            if looked.is_empty() {
                "no directory (EDGETPU_TESTDATA is not set and there is no cache)".into()
            } else {
                looked
            }
        );
    }
    eprintln!("selftest: {} model(s) on {} device(s), {} run(s) each", models.len(), entries.len(), args.runs);
    let devices: Vec<Value> = entries.iter().map(|e| test_device(e, &models, args)).collect();
    let count = |status: &str| {
        devices
            .iter()
            .flat_map(|d| d["models"].as_array().cloned().unwrap_or_default())
            .filter(|m| m["status"] == status)
            .count()
    };
    let failed_checks = devices
        .iter()
        .flat_map(|d| d["checks"].as_array().cloned().unwrap_or_default())
        .filter(|c| c["ok"] == false)
        .count();
    let summary = json!({
        "passed": count("pass"), "failed": count("fail"), "not_compared": count("not compared"),
        "failed_checks": failed_checks,
    });
    let results = json!({"devices": devices, "summary": summary});
    if args.json {
        println!("{}", serde_json::to_string_pretty(&results)?);
    } else {
        print_text(&results);
    }
    if let Some(dir) = &args.report {
        let files = write_report(dir, &results, &entries, &models, args)?;
        println!("\nreport written; attach these files to your bug report:");
        for f in files {
            println!("  {}", f.display());
        }
    }
    if summary["failed"] != 0 || failed_checks > 0 {
        bail!("selftest failed: {} model(s) and {failed_checks} check(s) failed", summary["failed"]);
    }
    Ok(())
}

fn print_text(results: &Value) {
    for d in results["devices"].as_array().into_iter().flatten() {
        let sim = if d["simulated"] == true { " (simulated: outputs come from the CPU twin, not a chip)" } else { "" };
        println!("{}{sim}", d["device"].as_str().unwrap_or("?"));
        for c in d["checks"].as_array().into_iter().flatten() {
            let ok = if c["ok"] == true { "ok  " } else { "FAIL" };
            println!("  {ok} {:<18} {}", c["check"].as_str().unwrap_or(""), c["detail"].as_str().unwrap_or(""));
        }
        for m in d["models"].as_array().into_iter().flatten() {
            let ms = |k: &str| m[k].as_f64().map_or_else(|| "-".to_string(), |v| format!("{v:.2} ms"));
            let status = m["status"].as_str().unwrap_or("?");
            let detail = m["error"].as_str().map(str::to_string).unwrap_or_else(|| {
                let n = m["mismatches"].as_array().map_or(0, Vec::len);
                if n > 0 {
                    format!("{n} output(s) differ from the CPU twin")
                } else {
                    String::new()
                }
            });
            println!(
                "  {:<13} {:<70} first {:>10}  median {:>10}  {detail}",
                status,
                m["model"].as_str().unwrap_or("?"),
                ms("first_ms"),
                ms("median_ms")
            );
        }
    }
    let s = &results["summary"];
    println!(
        "{} passed, {} failed, {} not compared (no CPU twin); {} failed check(s)",
        s["passed"], s["failed"], s["not_compared"], s["failed_checks"]
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn models_are_found_recursively_without_the_invalid_ones() {
        let root = std::env::temp_dir().join(format!("edgetpu-selftest-find-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        for f in ["a_edgetpu.tflite", "a.tflite", "sub/b_edgetpu.tflite", "invalid_models/c_edgetpu.tflite"] {
            let p = root.join(f);
            std::fs::create_dir_all(p.parent().unwrap()).unwrap();
            std::fs::write(p, b"x").unwrap();
        }
        let found: Vec<String> = find_models(&[root.clone(), root.clone()])
            .iter()
            .map(|p| p.strip_prefix(&root).unwrap().display().to_string())
            .collect();
        assert_eq!(found, ["a_edgetpu.tflite", "sub/b_edgetpu.tflite"]);
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn rounds_get_different_inputs() {
        assert_ne!(noise(64, 1), noise(64, 32));
        assert_eq!(noise(64, 1), noise(64, 1));
    }
}
