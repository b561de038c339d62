//! Device strings: [`DeviceSpec`] is the one parser of `auto`, `cpu` and lists of devices, and
//! [`DeviceSpec::auto`] the one policy for choosing a Coral when the user did not.

use super::pcie::sysfs::PciSelector;
use super::usb::discovery::Selector as UsbSelector;
use crate::error::{DeviceKind, Error, Result};
use std::fmt;
use std::str::FromStr;

/// Which simulated device an entry asks for (cargo feature `sim`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum SimKind {
    /// `sim`, `sim:N`, `sim:usb`: a simulated USB Accelerator.
    Usb,
    /// `sim:pci`: a simulated PCIe Edge TPU (the apex kernel driver and the chip simulated at the
    /// system-call boundary) on a cache-coherent host (x86).
    Pci,
    /// `sim:pci-noncoherent`: the same on a host whose PCIe is not cache-coherent (the Dev Board,
    /// Raspberry Pi CM4/5): the chip sees a buffer as it was when mapped, the host sees the chip's
    /// writes once the buffer is unmapped.
    PciNoncoherent,
}

impl SimKind {
    /// The device string (`sim`, `sim:pci`, `sim:pci-noncoherent`).
    pub fn as_str(self) -> &'static str {
        match self {
            SimKind::Usb => "sim",
            SimKind::Pci => "sim:pci",
            SimKind::PciNoncoherent => "sim:pci-noncoherent",
        }
    }

    /// USB or PCIe.
    pub fn kind(self) -> DeviceKind {
        match self {
            SimKind::Usb => DeviceKind::Usb,
            SimKind::Pci | SimKind::PciNoncoherent => DeviceKind::Pci,
        }
    }
}

/// One device of a list.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Entry {
    /// A Coral USB Accelerator: `usb`, `usb:N`, `usb:<bus>-<ports>`.
    Usb(UsbSelector),
    /// A PCIe Edge TPU: `pci`, `pci:N`, `pci:apex_N`, `pci:/dev/apex_N`, `pci:<PCI address>`.
    Pci(PciSelector),
    /// A simulated device: `sim`, `sim:N`, `sim:usb`, `sim:pci`, `sim:pci-noncoherent`. Each entry
    /// is another device.
    Sim(SimKind),
}

impl Entry {
    /// USB or PCIe.
    pub fn kind(&self) -> DeviceKind {
        match self {
            Entry::Usb(_) => DeviceKind::Usb,
            Entry::Pci(_) => DeviceKind::Pci,
            Entry::Sim(k) => k.kind(),
        }
    }

    /// Whether it names a simulated device.
    pub fn is_simulated(&self) -> bool {
        matches!(self, Entry::Sim(_))
    }

    fn parse(s: &str) -> Result<Entry> {
        let (head, rest) = match s.split_once(':') {
            Some((h, r)) => (h, Some(r)),
            None => (s, None),
        };
        let number = |n: &str| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit());
        // `sim:pci` and `sim:pci-noncoherent`, alone or with the device number (`sim:pci:N`).
        let pci = |r: &str, name: &str| {
            r.strip_prefix(name).is_some_and(|t| t.is_empty() || t.strip_prefix(':').is_some_and(number))
        };
        match head {
            "usb" => UsbSelector::parse(s).map(Entry::Usb),
            "pci" => PciSelector::parse(s).map(Entry::Pci),
            "sim" => match rest {
                None | Some("usb") => Ok(Entry::Sim(SimKind::Usb)),
                Some(n) if number(n) => Ok(Entry::Sim(SimKind::Usb)),
                Some(r) if pci(r, "pci") => Ok(Entry::Sim(SimKind::Pci)),
                Some(r) if pci(r, "pci-noncoherent") => Ok(Entry::Sim(SimKind::PciNoncoherent)),
                Some(other) => Err(Error::argument(format!(
                    "invalid device `{s}`: unknown simulator `{other}`; expected `sim` (alias `sim:usb`, `sim:N`: a \
                     simulated USB Accelerator), `sim:pci` (a simulated PCIe Edge TPU) or `sim:pci-noncoherent` \
                     (the same on a host whose PCIe is not cache-coherent)"
                ))),
            },
            _ => Err(Error::argument(format!("invalid device `{s}`: {}", DeviceSpec::FORMS))),
        }
    }
}

impl fmt::Display for Entry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entry::Usb(UsbSelector::Any) => f.write_str("usb"),
            Entry::Usb(UsbSelector::Index(n)) => write!(f, "usb:{n}"),
            Entry::Usb(UsbSelector::Path(p)) => write!(f, "usb:{p}"),
            Entry::Pci(PciSelector::Any) => f.write_str("pci"),
            Entry::Pci(PciSelector::Index(n)) => write!(f, "pci:{n}"),
            Entry::Pci(PciSelector::Number(n)) => write!(f, "pci:apex_{n}"),
            Entry::Pci(PciSelector::Address(a)) => write!(f, "pci:{a}"),
            Entry::Sim(k) => f.write_str(k.as_str()),
        }
    }
}

/// Where a model runs: `auto`, `cpu`, or a comma-separated list of Edge TPU devices.
///
/// ```
/// use edgetpu::DeviceSpec;
///
/// let spec: DeviceSpec = "usb:0, usb:1".parse()?;
/// assert_eq!(spec.entries().len(), 2);
/// assert_eq!(spec.to_string(), "usb:0,usb:1");
/// assert!("gpu".parse::<DeviceSpec>().is_err());
/// # Ok::<(), edgetpu::Error>(())
/// ```
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum DeviceSpec {
    /// The first attached Coral (a USB Accelerator first, else a ready PCIe Edge TPU), else the
    /// CPU ([`DeviceSpec::auto`]).
    #[default]
    Auto,
    /// The CPU only.
    Cpu,
    /// These devices (never empty; either all simulated or all real, simulated ones all of one
    /// kind: `sim`, `sim:pci` or `sim:pci-noncoherent`).
    Devices(Vec<Entry>),
}

impl DeviceSpec {
    /// The accepted forms, for error messages.
    pub const FORMS: &'static str = "use auto, cpu, usb, usb:N, usb:<bus>-<ports>, pci, pci:N, pci:apex_N, sim, \
                                     sim:N, sim:pci or sim:pci-noncoherent, or a comma-separated list of devices";

    /// `auto`: a Coral if one is attached, else the CPU. See [`DeviceSpec::resolve`].
    pub fn auto() -> DeviceSpec {
        DeviceSpec::Auto
    }

    /// `cpu`.
    pub fn cpu() -> DeviceSpec {
        DeviceSpec::Cpu
    }

    /// `n` simulated devices of `kind` (cargo feature `sim` to open them).
    pub fn simulated(kind: SimKind, n: usize) -> DeviceSpec {
        DeviceSpec::Devices(vec![Entry::Sim(kind); n.max(1)])
    }

    /// Parses a device string (the `FromStr` implementation).
    pub fn parse(s: &str) -> Result<DeviceSpec> {
        let s = s.trim();
        match s {
            "auto" | "" => return Ok(DeviceSpec::Auto),
            "cpu" => return Ok(DeviceSpec::Cpu),
            _ => {}
        }
        let entries = s.split(',').map(str::trim).filter(|e| !e.is_empty());
        let entries = entries
            .map(|e| match e {
                "auto" | "cpu" => Err(Error::argument(format!(
                    "invalid device list `{s}`: `{e}` stands alone, it cannot be part of a list"
                ))),
                e => Entry::parse(e),
            })
            .collect::<Result<Vec<_>>>()?;
        let sims = entries.iter().filter(|e| e.is_simulated()).count();
        if sims > 0 && sims != entries.len() {
            return Err(Error::argument(format!(
                "invalid device list `{s}`: do not mix simulated and real devices in one list"
            )));
        }
        if sims > 0 && entries.iter().any(|e| e.kind() != entries[0].kind()) {
            return Err(Error::argument(format!(
                "invalid device list `{s}`: do not mix simulated USB and PCIe devices in one list"
            )));
        }
        if sims > 0 && entries.iter().any(|e| e != &entries[0]) {
            return Err(Error::argument(format!(
                "invalid device list `{s}`: do not mix coherent (`sim:pci`) and non-coherent \
                 (`sim:pci-noncoherent`) simulated PCIe devices in one list"
            )));
        }
        Ok(DeviceSpec::Devices(entries))
    }

    /// The listed devices (empty for `auto` and `cpu`).
    pub fn entries(&self) -> &[Entry] {
        match self {
            DeviceSpec::Devices(e) => e,
            _ => &[],
        }
    }

    /// Whether every listed device is simulated (false for `auto` and `cpu`).
    pub fn is_simulated(&self) -> bool {
        !self.entries().is_empty() && self.entries().iter().all(Entry::is_simulated)
    }

    /// The devices this spec stands for now: the list as given; for `auto`, the first attached
    /// Coral ([`attached`]), or `None` (the CPU) when there is none; `None` for `cpu`.
    pub fn resolve(&self) -> Option<DeviceSpec> {
        self.resolve_in(std::path::Path::new(super::pcie::sysfs::ROOT))
    }

    /// [`Self::resolve`] with PCIe devices listed under another sysfs root (tests of fake trees).
    pub fn resolve_in(&self, sysfs_root: &std::path::Path) -> Option<DeviceSpec> {
        match self {
            DeviceSpec::Cpu => None,
            DeviceSpec::Devices(_) => Some(self.clone()),
            DeviceSpec::Auto => attached_in(sysfs_root).into_iter().next().map(|e| DeviceSpec::Devices(vec![e])),
        }
    }
}

impl FromStr for DeviceSpec {
    type Err = Error;
    fn from_str(s: &str) -> Result<DeviceSpec> {
        DeviceSpec::parse(s)
    }
}

impl fmt::Display for DeviceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceSpec::Auto => f.write_str("auto"),
            DeviceSpec::Cpu => f.write_str("cpu"),
            DeviceSpec::Devices(entries) => {
                for (i, e) in entries.iter().enumerate() {
                    if i > 0 {
                        f.write_str(",")?;
                    }
                    write!(f, "{e}")?;
                }
                Ok(())
            }
        }
    }
}

/// The Corals attached now, in the order `auto` prefers them: USB Accelerators by port path
/// (`usb:<bus>-<ports>`), then the PCIe Edge TPUs that are ready to open (not held by another
/// process, openable by this user) by node (`pci:apex_N`). Empty when there is none, or no access
/// to look (no `/dev/bus/usb` in a container, say).
pub fn attached() -> Vec<Entry> {
    attached_in(std::path::Path::new(super::pcie::sysfs::ROOT))
}

/// [`attached`] with PCIe devices listed under another sysfs root (tests of fake trees).
#[cfg_attr(not(target_os = "linux"), allow(unused_variables))]
pub fn attached_in(sysfs_root: &std::path::Path) -> Vec<Entry> {
    let mut found = Vec::new();
    #[cfg(feature = "usb")]
    if let Ok(bus) = super::usb::rusb::RusbBus::new() {
        if let Ok(list) = super::usb::discovery::list(&bus) {
            found.extend(list.into_iter().map(|d| Entry::Usb(UsbSelector::Path(d.info.path))));
        }
    }
    #[cfg(target_os = "linux")]
    {
        use super::pcie::sysfs;
        let pcie = sysfs::list(sysfs_root).unwrap_or_default();
        found.extend(
            pcie.into_iter()
                .filter(|d| d.state == sysfs::ApexState::Ready)
                .map(|d| Entry::Pci(PciSelector::Number(d.number))),
        );
    }
    if !found.is_empty() {
        log::debug!("attached Corals: {}", DeviceSpec::Devices(found.clone()));
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::usb::UsbPath;

    #[test]
    fn every_form_parses_and_prints_back() {
        for s in [
            "auto",
            "cpu",
            "usb",
            "usb:1",
            "usb:2-1.4",
            "pci",
            "pci:0",
            "pci:apex_3",
            "sim",
            "sim:pci",
            "sim:pci-noncoherent",
            "sim:pci-noncoherent,sim:pci-noncoherent",
            "usb,pci:1",
        ] {
            let spec: DeviceSpec = s.parse().unwrap();
            assert_eq!(spec.to_string(), s, "{s}");
        }
        assert_eq!(DeviceSpec::parse(" usb:0 , usb:1 ").unwrap().to_string(), "usb:0,usb:1");
        assert_eq!(DeviceSpec::parse("sim:0,sim:1").unwrap(), DeviceSpec::simulated(SimKind::Usb, 2));
        assert_eq!(DeviceSpec::parse("sim:usb").unwrap(), DeviceSpec::simulated(SimKind::Usb, 1));
        assert_eq!(DeviceSpec::parse("sim:pci:1").unwrap(), DeviceSpec::simulated(SimKind::Pci, 1));
        assert_eq!(
            DeviceSpec::parse("sim:pci-noncoherent").unwrap(),
            DeviceSpec::simulated(SimKind::PciNoncoherent, 1)
        );
        assert_eq!(
            DeviceSpec::parse("sim:pci-noncoherent:0, sim:pci-noncoherent:1").unwrap(),
            DeviceSpec::simulated(SimKind::PciNoncoherent, 2)
        );
        assert_eq!(
            DeviceSpec::parse("usb:2-1").unwrap().entries(),
            [Entry::Usb(UsbSelector::Path(UsbPath { bus: 2, ports: vec![1] }))]
        );
        assert_eq!(DeviceSpec::parse("pci:/dev/apex_2").unwrap().to_string(), "pci:apex_2");
        assert_eq!(DeviceSpec::default(), DeviceSpec::auto());
    }

    #[test]
    fn bad_strings_say_what_is_accepted() {
        for (s, want) in [
            ("gpu", "use auto, cpu, usb"),
            ("usb:x", "expected `usb`"),
            ("pci:zz", "expected `pci`"),
            ("sim:tpu", "unknown simulator"),
            ("sim,usb", "do not mix simulated and real"),
            ("sim,sim:pci", "do not mix simulated USB and PCIe"),
            ("sim,sim:pci-noncoherent", "do not mix simulated USB and PCIe"),
            ("sim:pci,sim:pci-noncoherent", "do not mix coherent"),
            ("sim:pci-coherent", "unknown simulator"),
            ("sim:pci-noncoherent:x", "unknown simulator"),
            ("sim:pci-noncoherentx", "unknown simulator"),
            ("usb,cpu", "stands alone"),
        ] {
            let e = DeviceSpec::parse(s).unwrap_err();
            assert_eq!(e.kind(), crate::ErrorKind::InvalidArgument, "{s}");
            assert!(e.to_string().contains(want), "{s}: {e}");
        }
    }

    #[test]
    fn kinds_and_simulation() {
        let spec = DeviceSpec::parse("sim:pci,sim:pci").unwrap();
        assert!(spec.is_simulated());
        assert!(spec.entries().iter().all(|e| e.kind() == DeviceKind::Pci));
        let spec = DeviceSpec::parse("sim:pci-noncoherent").unwrap();
        assert!(spec.is_simulated());
        assert_eq!(spec.entries(), [Entry::Sim(SimKind::PciNoncoherent)]);
        assert_eq!(spec.entries()[0].kind(), DeviceKind::Pci);
        assert!(DeviceSpec::FORMS.contains("sim:pci-noncoherent"));
        assert!(!DeviceSpec::parse("usb").unwrap().is_simulated());
        assert!(!DeviceSpec::Cpu.is_simulated());
        assert_eq!(DeviceSpec::Cpu.resolve(), None);
        let list = DeviceSpec::parse("usb:0").unwrap();
        assert_eq!(list.resolve(), Some(list));
    }
}
