//! Where a model runs: `--device cpu | usb | usb:N | usb:<bus>-<ports> | pci | pci:N | sim | sim:N |
//! sim:pci`, several separated by commas (data-parallel and pipelined runs).
//!
//! By default (`auto`) a compiled model runs on the first USB Accelerator, else on the first ready
//! PCIe Coral ([`DeviceSpec::resolve`]), and a CPU model on the CPU. Compiled models run whole: their CPU
//! ops on the CPU, their Edge TPU steps on the devices.

use anyhow::{bail, Result};
use edgetpu::device::pcie::sysfs::ApexDevice;
use edgetpu::device::pcie::ApexOptions;
use edgetpu::device::usb::UsbOptions;
use edgetpu::device::{DeviceKind, Performance};
use edgetpu::model::cpu_twin_path as twin_path;
use edgetpu::sim::{OracleChoice, SimOptions};
use edgetpu::{DeviceSpec, ErrorKind, Model, Runtime, RuntimeOptions};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// Where to run.
#[derive(clap::Args, Debug, Clone)]
pub struct DeviceArgs {
    /// auto (a compiled model on the first USB Accelerator, else the first ready PCIe Coral; a CPU
    /// model on the CPU), cpu, usb,
    /// usb:N, usb:<bus>-<ports>, pci, pci:N (/dev/apex_N), sim (alias sim:usb: a simulated
    /// accelerator, no hardware), sim:pci (a simulated PCIe Edge TPU; sim:pci-noncoherent on a host
    /// whose PCIe is not cache-coherent), or a comma-separated list of devices (usb:0,usb:1 or
    /// sim:0,sim:1 or sim:pci,sim:pci) to use several.
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

/// The PCIe Corals under [`crate::devices::pcie::sysfs_root`] (none when sysfs cannot be read).
pub fn pcie_corals() -> Vec<ApexDevice> {
    edgetpu::device::pcie::sysfs::list(&crate::devices::pcie::sysfs_root()).unwrap_or_default()
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
/// (simulated device and where its values come from) on stderr.
pub fn runtime_for(path: &Path, model: &Model, args: &DeviceArgs) -> Result<Option<Runtime>> {
    let compiled = model.is_compiled();
    // A plain message: the hint for a model's arguments does not fit a device string.
    let wanted = DeviceSpec::parse(&args.device).map_err(|e| anyhow::anyhow!("--device: {e}"))?;
    let mut auto_none = None;
    let spec = match wanted {
        DeviceSpec::Cpu if compiled => {
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
        DeviceSpec::Auto if !compiled => return Ok(None),
        DeviceSpec::Auto => match wanted.resolve_in(&crate::devices::pcie::sysfs_root()) {
            Some(spec) => spec,
            None => {
                // Opening `usb` gives the USB side's own error (no libusb, no device, ...).
                auto_none = Some(no_coral(&pcie_corals()));
                DeviceSpec::parse("usb")?
            }
        },
        DeviceSpec::Devices(_) => wanted,
        _ => return Ok(None),
    };
    let oracle_model = oracle_model(args)?;
    let options = runtime_options(args)?;
    let runtime = match Runtime::open(&spec, options) {
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
    if runtime.is_simulated() {
        let values = match &oracle_model {
            Some(p) => format!("the CPU model {}", p.display()),
            None => match twin_path(path) {
                Some(t) => format!("the CPU twin {}", t.display()),
                None => "seeded bytes, which are not real results: pass --sim-oracle CPU_MODEL".to_string(),
            },
        };
        let pci = runtime.device_info().iter().all(|d| d.kind == DeviceKind::Pci);
        if !pci {
            let firmware = if edgetpu::device::usb::firmware::locate(args.firmware.as_deref()).is_ok() {
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

/// The CPU model given by `--sim-oracle` (a catalog name stands for its CPU model).
fn oracle_model(args: &DeviceArgs) -> Result<Option<PathBuf>> {
    match &args.sim_oracle {
        Some(p) => Ok(Some(crate::models::resolve(p, || crate::models::Want::Cpu)?.path)),
        None => Ok(None),
    }
}

/// How `args` asks devices to be opened: clock, firmware and its download progress, and where
/// simulated devices take their outputs from.
pub fn runtime_options(args: &DeviceArgs) -> Result<RuntimeOptions> {
    let sim = SimOptions::default().oracle(match oracle_model(args)? {
        Some(p) => OracleChoice::Model(p),
        None => OracleChoice::Twin,
    });
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
    let mut usb = UsbOptions::default().performance(args.performance.unwrap_or(Performance::High)).progress(progress);
    usb.firmware = args.firmware.clone();
    let pcie = ApexOptions::default().performance(args.performance.unwrap_or(Performance::Max));
    Ok(RuntimeOptions::default().usb(usb).pcie(pcie).sim(sim))
}

/// Opens the devices of `spec` as `args` asks.
pub fn open_runtime(spec: &DeviceSpec, args: &DeviceArgs) -> Result<Runtime> {
    Ok(Runtime::open(spec, runtime_options(args)?)?)
}

/// How an invocation time reads for a runtime: `None` for the CPU.
pub fn note(runtime: Option<&Runtime>) -> String {
    match runtime {
        None => String::new(),
        Some(rt) if !rt.is_simulated() => format!(" + Edge TPU {}", rt.devices().join(",")),
        Some(rt) if rt.device_info().iter().all(|d| d.kind == DeviceKind::Pci) => {
            format!(" + simulated PCIe Edge TPU {}", rt.devices().join(","))
        }
        Some(rt) => format!(
            " + simulated Edge TPU {} (USB 3 time model: {:.2} ms of simulated device time so far)",
            rt.devices().join(","),
            rt.telemetry().iter().filter_map(|t| t.device_time).map(|d| d.as_secs_f64() * 1e3).sum::<f64>()
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgetpu::device::pcie::sysfs::ApexState;

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
    fn without_a_coral_the_reason_names_usb_and_pcie() {
        assert_eq!(no_coral(&[]), "no Coral USB Accelerator found and no PCIe Coral (the apex driver lists none)");
        assert_eq!(
            no_coral(&[apex(0, ApexState::InUse), apex(1, ApexState::NoPermission)]),
            "no Coral USB Accelerator found and no PCIe Coral ready: pci:0 (apex_0, in use), pci:1 (apex_1, no \
             permission)"
        );
    }
}
