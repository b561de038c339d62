//! Opening the devices of a [`DeviceSpec`].

use super::RuntimeOptions;
use crate::device::pcie::sysfs::PciSelector;
use crate::device::spec::Entry;
#[cfg(feature = "sim")]
use crate::device::spec::SimKind;
use crate::device::{Accelerator, DeviceSpec};
use crate::error::{Error, ErrorKind, Result};
use std::path::PathBuf;
use std::sync::Arc;

/// The devices of `spec`, opened with `options`.
pub(crate) fn open(spec: &DeviceSpec, options: &RuntimeOptions) -> Result<Vec<Box<dyn Accelerator>>> {
    let spec = match spec {
        DeviceSpec::Cpu => {
            return Err(Error::argument("a runtime runs Edge TPU devices; `cpu` names none (run the model on the CPU)"))
        }
        DeviceSpec::Auto => spec.resolve().ok_or_else(|| {
            Error::runtime(ErrorKind::NotFound, "auto: no Coral attached (no USB Accelerator, no ready PCIe Edge TPU)")
        })?,
        DeviceSpec::Devices(_) => spec.clone(),
    };
    let entries = spec.entries();
    if entries.is_empty() {
        return Err(Error::argument("the device list is empty"));
    }
    log::debug!("opening {spec}");
    if spec.is_simulated() {
        return open_sim(entries, options);
    }
    let mut devices: Vec<Box<dyn Accelerator>> = Vec::new();
    let mut bus = None;
    let mut opened = Vec::new();
    for e in entries {
        match e {
            Entry::Usb(sel) => {
                if bus.is_none() {
                    bus = Some(usb_bus()?);
                }
                devices.push(open_usb(bus.clone(), sel, options)?);
            }
            Entry::Pci(sel) => devices.push(open_pci(&e.to_string(), sel, options, &mut opened)?),
            Entry::Sim(_) => return Err(Error::argument("do not mix simulated and real devices in one list")),
        }
    }
    Ok(devices)
}

#[cfg(feature = "sim")]
fn open_sim(entries: &[Entry], options: &RuntimeOptions) -> Result<Vec<Box<dyn Accelerator>>> {
    let kind = match entries[0] {
        Entry::Sim(k) => k,
        _ => SimKind::Usb,
    };
    let sims = crate::sim::open(kind, entries.len(), &options.sim, &options.usb, &options.pcie)?;
    Ok(sims.into_iter().map(|s| Box::new(s) as Box<dyn Accelerator>).collect())
}

#[cfg(not(feature = "sim"))]
fn open_sim(entries: &[Entry], _: &RuntimeOptions) -> Result<Vec<Box<dyn Accelerator>>> {
    Err(Error::device(
        entries[0].kind(),
        entries[0].to_string(),
        ErrorKind::Unsupported,
        "this build has no simulated devices (the edgetpu crate's cargo feature `sim`)",
    ))
}

#[cfg(feature = "usb")]
fn usb_bus() -> Result<Arc<dyn crate::device::usb::UsbBus>> {
    let bus = crate::device::usb::rusb::RusbBus::new().map_err(|e| {
        let why = if cfg!(target_os = "linux") && !std::path::Path::new("/dev/bus/usb").exists() {
            ": this system has no /dev/bus/usb (no USB host controller, or a container without USB passed through)"
        } else {
            ""
        };
        Error::usb("usb", e.kind.error_kind(), format!("cannot initialise libusb ({:?}){why}", e.kind))
    })?;
    Ok(Arc::new(bus))
}

#[cfg(not(feature = "usb"))]
fn usb_bus() -> Result<Arc<dyn crate::device::usb::UsbBus>> {
    Err(Error::usb(
        "usb",
        ErrorKind::Unsupported,
        "this build has no USB backend (the edgetpu crate's cargo feature `usb`)",
    ))
}

fn open_usb(
    bus: Option<Arc<dyn crate::device::usb::UsbBus>>,
    sel: &crate::device::usb::discovery::Selector,
    options: &RuntimeOptions,
) -> Result<Box<dyn Accelerator>> {
    let bus = bus.ok_or_else(|| Error::usb("usb", ErrorKind::NotFound, "no USB bus"))?;
    let dev = crate::device::usb::discovery::select(bus.as_ref(), sel)?;
    let acc = crate::device::usb::UsbAccelerator::open(bus, &dev.info.path, options.usb.clone())?;
    Ok(Box::new(acc))
}

/// Opens a PCIe Edge TPU: a device another process owns, or that this user may not open, is
/// refused saying which. `opened` holds the nodes this list opened already: `pci` skips them, and
/// naming one again is an error (two open sequences on one chip would undo each other).
#[cfg_attr(not(target_os = "linux"), allow(unused_variables))]
fn open_pci(
    entry: &str,
    sel: &PciSelector,
    options: &RuntimeOptions,
    opened: &mut Vec<PathBuf>,
) -> Result<Box<dyn Accelerator>> {
    #[cfg(target_os = "linux")]
    {
        use crate::device::pcie::sysfs;
        let root = std::path::Path::new(sysfs::ROOT);
        let dev = if *sel == PciSelector::Any {
            // The first ready device this list has not opened yet.
            let free: Vec<_> = sysfs::list(root)?.into_iter().filter(|d| !opened.contains(&d.node)).collect();
            if free.is_empty() && !opened.is_empty() {
                return Err(Error::pci(
                    entry,
                    ErrorKind::NotFound,
                    format!("every PCIe Coral ({}) is already in this device list", opened.len()),
                ));
            }
            sysfs::choose(&free, sel, root)?
        } else {
            sysfs::select(root, sel)?
        };
        if opened.contains(&dev.node) {
            return Err(Error::argument(format!(
                "{entry} names {}, which the list already opened; name each PCIe Coral once",
                dev.node.display()
            )));
        }
        let sys = Arc::new(crate::device::pcie::linux::LinuxSys::new());
        let acc = crate::device::pcie::ApexAccelerator::open(sys, &dev.node, options.pcie.clone())?;
        opened.push(dev.node);
        Ok(Box::new(acc))
    }
    #[cfg(not(target_os = "linux"))]
    Err(Error::pci(entry, ErrorKind::Unsupported, "the PCIe backend needs Linux and its apex driver"))
}

/// A runtime over simulated devices, with their simulators at hand (for tests and benchmarks:
/// violations, statistics, injected faults).
#[cfg(feature = "sim")]
#[derive(Debug)]
pub struct Simulated {
    /// The runtime.
    pub runtime: super::Runtime,
    /// The simulated USB Accelerators, in device order.
    pub usb: Vec<crate::sim::usb::SimBus>,
    /// The simulated PCIe Edge TPUs, in device order.
    pub pci: Vec<crate::sim::pcie::SimApex>,
}

#[cfg(feature = "sim")]
impl Simulated {
    /// `n` simulated devices of `kind`, configured by `options` (its `sim`, `usb` and `pcie`).
    pub fn new(kind: SimKind, n: usize, options: RuntimeOptions) -> Result<Simulated> {
        let sims = crate::sim::open(kind, n, &options.sim, &options.usb, &options.pcie)?;
        let mut usb = Vec::new();
        let mut pci = Vec::new();
        for s in &sims {
            match s.handle() {
                crate::sim::SimHandle::Usb(b) => usb.push(b.clone()),
                crate::sim::SimHandle::Pci(a) => pci.push(a.clone()),
            }
        }
        let devices = sims.into_iter().map(|s| Box::new(s) as Box<dyn Accelerator>).collect();
        Ok(Simulated { runtime: super::Runtime::new(devices, options)?, usb, pci })
    }

    /// `n` simulated USB Accelerators running their firmware already, with the time model `time`,
    /// whose outputs come from `oracle`; `options` for the rest.
    pub fn usb(
        n: usize,
        time: crate::sim::TimeModel,
        oracle: crate::sim::OracleChoice,
        options: RuntimeOptions,
    ) -> Result<Simulated> {
        let sim = options.sim.clone().time(time).oracle(oracle).start_in_dfu(false);
        Self::new(SimKind::Usb, n, options.sim(sim))
    }

    /// `n` simulated PCIe Edge TPUs whose outputs come from `oracle`; `options` for the rest.
    pub fn pci(n: usize, oracle: crate::sim::OracleChoice, options: RuntimeOptions) -> Result<Simulated> {
        let sim = options.sim.clone().oracle(oracle);
        Self::new(SimKind::Pci, n, options.sim(sim))
    }

    /// The simulated USB Accelerators.
    pub fn sims(&self) -> &[crate::sim::usb::SimBus] {
        &self.usb
    }

    /// The simulated PCIe Edge TPUs.
    pub fn apex_sims(&self) -> &[crate::sim::pcie::SimApex] {
        &self.pci
    }
}

#[cfg(feature = "sim")]
impl std::ops::Deref for Simulated {
    type Target = super::Runtime;
    fn deref(&self) -> &super::Runtime {
        &self.runtime
    }
}
