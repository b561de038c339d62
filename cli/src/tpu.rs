//! Where a model runs: `--device cpu | usb | usb:N | usb:<bus>-<ports> | pci | pci:N | sim | sim:N |
//! sim:pci`, several separated by commas (data-parallel and pipelined runs).
//!
//! By default (`auto`) a compiled model runs on the first USB Accelerator and a CPU model on the
//! CPU. Compiled models run whole: their CPU ops on the CPU, their Edge TPU steps on the devices.

use anyhow::{bail, Result};
use edgetpu::device::sequence::Performance;
use edgetpu::device::usb::UsbOptions;
use edgetpu::package::Package;
use edgetpu::sched::{twin_path, Runtime, RuntimeOptions, SimOracle};
use edgetpu::{ErrorKind, Model};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where to run.
#[derive(clap::Args, Debug, Clone)]
pub struct DeviceArgs {
    /// auto (a compiled model on the first USB Accelerator, a CPU model on the CPU), cpu, usb,
    /// usb:N, usb:<bus>-<ports>, pci, pci:N (/dev/apex_N), sim (alias sim:usb: a simulated
    /// accelerator, no hardware), sim:pci (a simulated PCIe Edge TPU), or a comma-separated list
    /// of devices (usb:0,usb:1 or sim:0,sim:1 or sim:pci,sim:pci) to use several.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// With --device sim: the CPU model whose outputs the simulator returns, a path or a catalog
    /// name (default: the file beside the compiled model with `_edgetpu` removed from its name,
    /// else seeded bytes).
    #[arg(long)]
    pub sim_oracle: Option<PathBuf>,
    /// Firmware image for an accelerator that needs it (default: EDGETPU_FIRMWARE, then the
    /// data directory; `edgetpu firmware fetch` puts it there).
    #[arg(long)]
    pub firmware: Option<PathBuf>,
    /// Clock setting: low, medium, high (default) or max (runs hot: at most 25 °C ambient).
    #[arg(long, default_value = "high", value_parser = parse_performance)]
    pub performance: Performance,
}

fn parse_performance(s: &str) -> Result<Performance, String> {
    Performance::parse(s).ok_or_else(|| format!("{s:?}: use low, medium, high or max"))
}

fn is_sim(list: &str) -> bool {
    list.split(',').all(|e| e.trim().starts_with("sim"))
}

/// The runtime a model needs for `args`, or `None` for the CPU. Prints what the user must know
/// (simulated device and where its values come from, USB 2 links) on stderr.
pub fn runtime_for(path: &Path, model: &Model, args: &DeviceArgs) -> Result<Option<Runtime>> {
    let compiled = !Package::all(model)?.is_empty();
    let list = match args.device.as_str() {
        "cpu" if compiled => {
            let twin = twin_path(path).map_or_else(
                || "the CPU model it was compiled from".to_string(),
                |t| format!("its CPU model {}", t.display()),
            );
            bail!(
                "{} is compiled for the Edge TPU: run it with --device usb (or sim, the simulator), or run {twin} with \
                 --device cpu",
                path.display()
            );
        }
        "cpu" => return Ok(None),
        "auto" if !compiled => return Ok(None),
        "auto" => "usb",
        other => other,
    };
    for e in list.split(',').map(str::trim) {
        let ok = e == "usb" || e.starts_with("usb:") || e.starts_with("sim") || e.starts_with("pci");
        if !ok {
            bail!(
                "--device {e:?}: use cpu, usb, usb:N, usb:<bus>-<ports>, pci, pci:N, sim, sim:N or sim:pci (several \
                 separated by commas)"
            );
        }
    }
    let sim = is_sim(list);
    let oracle = match &args.sim_oracle {
        // A catalog name stands for its CPU model.
        Some(p) => SimOracle::Model(crate::models::resolve(p, || crate::models::Want::Cpu)?.path),
        None => SimOracle::Twin,
    };
    let progress: Arc<dyn Fn(usize, usize) + Send + Sync> = Arc::new(|sent, total| {
        // About twenty updates, in place.
        let step = total.div_ceil(20).max(1);
        if sent == total || sent % step < 256 {
            eprint!("\rdownloading firmware: {sent} / {total} bytes");
        }
        if sent == total {
            eprintln!();
        }
    });
    let usb = UsbOptions {
        performance: args.performance,
        firmware: args.firmware.clone(),
        progress: Some(progress),
        ..Default::default()
    };
    let runtime = match Runtime::open(list, usb, oracle.clone(), RuntimeOptions::default()) {
        Ok(rt) => rt,
        Err(e) if compiled && matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Io) => {
            let twin = twin_path(path).map_or_else(
                || "run the CPU model it was compiled from with --device cpu".to_string(),
                |t| format!("its CPU model {} runs with --model {} --device cpu", t.display(), t.display()),
            );
            bail!("{e}\nno Edge TPU to run the compiled model {} on: {twin}", path.display());
        }
        Err(e) => return Err(e.into()),
    };
    if sim {
        let values = match &oracle {
            SimOracle::Model(p) => format!("the CPU model {}", p.display()),
            _ => match twin_path(path) {
                Some(t) => format!("the CPU twin {}", t.display()),
                None => "seeded bytes, which are not real results: pass --sim-oracle CPU_MODEL".to_string(),
            },
        };
        if runtime.apex_sims().is_empty() {
            let firmware = if runtime.sims().iter().all(|s| s.firmware().is_some()) {
                "firmware downloaded"
            } else {
                "no firmware image found, so they start with their firmware loaded"
            };
            eprintln!(
                "device: {} — simulated Coral USB Accelerator(s), no hardware ({firmware}); Edge TPU outputs from \
                 {values}",
                runtime.devices().join(",")
            );
        } else {
            eprintln!(
                "device: {} — simulated PCIe Edge TPU(s) (apex driver and chip simulated at the system-call \
                 boundary), no hardware; Edge TPU outputs from {values}",
                runtime.devices().join(",")
            );
        }
    } else {
        eprintln!("device: {}", runtime.devices().join(","));
    }
    Ok(Some(runtime))
}

/// How an invocation time reads for a runtime: `None` for the CPU.
pub fn note(runtime: Option<&Runtime>) -> String {
    match runtime {
        None => String::new(),
        Some(rt) if !rt.apex_sims().is_empty() => format!(" + simulated PCIe Edge TPU {}", rt.devices().join(",")),
        Some(rt) if rt.sims().is_empty() => format!(" + Edge TPU {}", rt.devices().join(",")),
        Some(rt) => format!(
            " + simulated Edge TPU {} (USB 3 time model: {:.2} ms of simulated device time so far)",
            rt.devices().join(","),
            rt.sims().iter().map(|s| s.elapsed().as_secs_f64() * 1e3).sum::<f64>()
        ),
    }
}
