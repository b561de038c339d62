//! Where a model runs: `--device cpu | usb | usb:N | usb:<bus>-<ports> | pci | pci:N | sim | sim:N |
//! sim:pci`, several separated by commas (data-parallel and pipelined runs).
//!
//! By default (`auto`) a compiled model runs on the first USB Accelerator, else on the first ready
//! PCIe Coral ([`auto_device`]), and a CPU model on the CPU. Compiled models run whole: their CPU
//! ops on the CPU, their Edge TPU steps on the devices.

use anyhow::{bail, Result};
use edgetpu::device::apex::ApexOptions;
use edgetpu::device::apex_sysfs::{self, ApexDevice, ApexState};
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
    /// auto (a compiled model on the first USB Accelerator, else the first ready PCIe Coral; a CPU
    /// model on the CPU), cpu, usb,
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
    /// Clock setting: low, medium, high or max (default: high for USB Accelerators, which run hot
    /// at max: at most 25 °C ambient; max for PCIe Corals, as libedgetpu's).
    #[arg(long, value_parser = parse_performance)]
    pub performance: Option<Performance>,
}

fn parse_performance(s: &str) -> Result<Performance, String> {
    Performance::parse(s).ok_or_else(|| format!("{s:?}: use low, medium, high or max"))
}

fn is_sim(list: &str) -> bool {
    list.split(',').all(|e| e.trim().starts_with("sim"))
}

/// The device `--device auto` takes for a compiled model: `usb` when a Coral USB Accelerator was
/// found (`usb_found`), else `pci` when one of the PCIe Corals `pcie` (an
/// [`apex_sysfs::list`]) is ready; `None` when there is neither.
pub fn auto_device(usb_found: bool, pcie: &[ApexDevice]) -> Option<&'static str> {
    if usb_found {
        Some("usb")
    } else if pcie.iter().any(|d| d.state == ApexState::Ready) {
        Some("pci")
    } else {
        None
    }
}

/// Whether USB discovery finds a Coral USB Accelerator (false when the bus cannot be opened).
pub fn usb_coral_found() -> bool {
    let Ok(bus) = crate::devices::open_bus() else { return false };
    edgetpu::device::discovery::list(&bus).is_ok_and(|list| !list.is_empty())
}

/// The PCIe Corals under [`crate::devices::pcie::sysfs_root`] (none when sysfs cannot be read).
pub fn pcie_corals() -> Vec<ApexDevice> {
    apex_sysfs::list(&crate::devices::pcie::sysfs_root()).unwrap_or_default()
}

/// Why `auto` found no Coral: for the error when a compiled model has nowhere to run.
fn no_coral(pcie: &[ApexDevice]) -> String {
    let pcie = if pcie.is_empty() {
        "no PCIe Coral (the apex driver lists none)".to_string()
    } else {
        let list: Vec<String> = pcie.iter().map(|d| format!("{} ({}, {})", d.selector, d.name(), d.state)).collect();
        format!("no PCIe Coral ready: {}", list.join(", "))
    };
    format!("no Coral USB Accelerator found and {pcie}")
}

/// The runtime a model needs for `args`, or `None` for the CPU. Prints what the user must know
/// (simulated device and where its values come from, USB 2 links) on stderr.
pub fn runtime_for(path: &Path, model: &Model, args: &DeviceArgs) -> Result<Option<Runtime>> {
    let compiled = !Package::all(model)?.is_empty();
    let mut auto_none = None;
    let list = match args.device.as_str() {
        "cpu" if compiled => {
            let twin = twin_path(path).map_or_else(
                || "the CPU model it was compiled from".to_string(),
                |t| format!("its CPU model {}", t.display()),
            );
            bail!(
                "{} is compiled for the Edge TPU: run it with --device usb or pci (or sim, the simulator), or run {twin} \
                 with --device cpu",
                path.display()
            );
        }
        "cpu" => return Ok(None),
        "auto" if !compiled => return Ok(None),
        "auto" => {
            let pcie = pcie_corals();
            match auto_device(usb_coral_found(), &pcie) {
                Some(device) => device,
                None => {
                    // Opening `usb` gives the USB side's own error (no libusb, no device, ...).
                    auto_none = Some(no_coral(&pcie));
                    "usb"
                }
            }
        }
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
        performance: args.performance.unwrap_or(Performance::High),
        firmware: args.firmware.clone(),
        progress: Some(progress),
        ..Default::default()
    };
    let apex = ApexOptions { performance: args.performance.unwrap_or(Performance::Max), ..Default::default() };
    let runtime = match Runtime::open_with(list, usb, apex, oracle.clone(), RuntimeOptions::default()) {
        Ok(rt) => rt,
        Err(e) if compiled && matches!(e.kind(), ErrorKind::NotFound | ErrorKind::Io) => {
            let twin = twin_path(path).map_or_else(
                || "run the CPU model it was compiled from with --device cpu".to_string(),
                |t| format!("its CPU model {} runs with --model {} --device cpu", t.display(), t.display()),
            );
            let why = auto_none.map(|n| format!(" ({n})")).unwrap_or_default();
            bail!("{e}\nno Edge TPU to run the compiled model {} on{why}: {twin}", path.display());
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

#[cfg(test)]
mod tests {
    use super::*;

    fn apex(n: u32, state: ApexState) -> ApexDevice {
        ApexDevice {
            number: n,
            selector: format!("pci:{n}"),
            sysfs: format!("/sys/class/apex/apex_{n}").into(),
            node: format!("/dev/apex_{n}").into(),
            node_info: None,
            owned: Some(state == ApexState::InUse),
            owner_pid: None,
            pci_address: None,
            driver_version: None,
            framework_version: None,
            status: Some("ALIVE".into()),
            state,
        }
    }

    #[test]
    fn auto_takes_usb_then_a_ready_pcie_coral() {
        let ready = [apex(0, ApexState::InUse), apex(1, ApexState::Ready)];
        assert_eq!(auto_device(true, &[]), Some("usb"));
        assert_eq!(auto_device(true, &ready), Some("usb"), "a USB Accelerator comes first");
        assert_eq!(auto_device(false, &ready), Some("pci"));
        assert_eq!(auto_device(false, &[]), None);
        let busy = [apex(0, ApexState::InUse), apex(1, ApexState::NoPermission), apex(2, ApexState::NodeMissing)];
        assert_eq!(auto_device(false, &busy), None, "no PCIe Coral is ready");
    }

    #[test]
    fn without_a_coral_the_reason_names_usb_and_pcie() {
        assert_eq!(no_coral(&[]), "no Coral USB Accelerator found and no PCIe Coral (the apex driver lists none)");
        assert_eq!(
            no_coral(&[apex(0, ApexState::InUse), apex(1, ApexState::NoPermission)]),
            "no Coral USB Accelerator found and no PCIe Coral ready: pci:0 (apex_0, in use), pci:1 (apex_1, no \
             permission)"
        );
    }
}
