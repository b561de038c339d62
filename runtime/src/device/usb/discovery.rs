//! Finding Coral USB Accelerators on a [`UsbBus`] and choosing one with a [`Selector`].
//!
//! Corals are listed in port-path order (bus number, then port chain), so `usb:0` names the same
//! device as long as nothing is replugged; `usb:<bus>-<ports>` names a USB port and stays valid
//! across the device's id change when its firmware is loaded.

use crate::device::usb::{UsbBus, UsbDeviceInfo, UsbErrorKind, UsbPath, APP_ID, DFU_ID};
use crate::{Error, ErrorKind, Result};
use std::fmt;
use std::path::Path;

/// Which Coral to use, as written on a command line: `usb`, `usb:N` or `usb:<bus>-<ports>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    /// `usb`: the first Coral in path order.
    Any,
    /// `usb:N`: the N-th Coral in path order, counting from 0.
    Index(usize),
    /// `usb:<bus>-<port>[.<port>...]`, e.g. `usb:2-1.4`: the Coral plugged in there.
    Path(UsbPath),
}

impl Selector {
    /// Parses a selection string; the error (kind [`ErrorKind::InvalidArgument`]) shows the
    /// accepted forms.
    pub fn parse(s: &str) -> Result<Selector> {
        let bad = |why: &str| {
            Error::argument(format!(
                "invalid device `{s}`: {why}; expected `usb` (the first Coral), `usb:N` (the N-th, counting from 0) \
                 or `usb:BUS-PORT[.PORT...]` (a USB port, e.g. `usb:2-1.4`)"
            ))
        };
        let rest = match s.strip_prefix("usb") {
            Some("") => return Ok(Selector::Any),
            Some(rest) => rest.strip_prefix(':').ok_or_else(|| bad("unknown device type"))?,
            None => return Err(bad("only USB devices are supported")),
        };
        if rest.is_empty() {
            return Err(bad("nothing after `usb:`"));
        }
        if rest.bytes().all(|b| b.is_ascii_digit()) {
            return rest.parse().map(Selector::Index).map_err(|_| bad("index out of range"));
        }
        if rest.contains('-') {
            return UsbPath::parse(rest).map(Selector::Path).ok_or_else(|| {
                bad("not a USB port path (a bus number, `-`, then 1 to 7 port numbers joined by `.`, each 0-255)")
            });
        }
        Err(bad("neither an index nor a USB port path"))
    }
}

impl std::str::FromStr for Selector {
    type Err = Error;
    fn from_str(s: &str) -> Result<Selector> {
        Selector::parse(s)
    }
}

impl fmt::Display for Selector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Selector::Any => f.write_str("usb"),
            Selector::Index(n) => write!(f, "usb:{n}"),
            Selector::Path(p) => write!(f, "usb:{p}"),
        }
    }
}

/// Whether a Coral can be used right now, as far as can be told without running it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceState {
    /// In DFU mode (`1a6e:089a`): its firmware is downloaded when it is opened.
    NeedsFirmware,
    /// Running its firmware, and neither permissions nor another process are known to block it
    /// (opening it reports any other failure).
    Ready,
    /// Another process (or a kernel driver) has claimed it.
    InUse,
    /// This user may not open its device node (udev rules or group membership missing).
    NoPermission,
}

impl fmt::Display for DeviceState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            DeviceState::NeedsFirmware => "needs firmware",
            DeviceState::Ready => "ready",
            DeviceState::InUse => "in use",
            DeviceState::NoPermission => "no permission",
        })
    }
}

/// A Coral USB Accelerator found on the bus.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct CoralDevice {
    /// Identity, port path, speed and device node.
    pub info: UsbDeviceInfo,
    /// The selection string that names it by port, `usb:<path>`.
    pub selector: String,
    /// Whether it can be used now.
    pub state: DeviceState,
}

impl CoralDevice {
    fn new(info: UsbDeviceInfo, state: DeviceState) -> CoralDevice {
        CoralDevice { selector: format!("usb:{}", info.path), info, state }
    }
}

/// Checks that the device node can be opened for reading and writing (the check [`list`] and
/// [`select`] use before opening a device).
pub fn node_access(node: &Path) -> std::io::Result<()> {
    std::fs::OpenOptions::new().read(true).write(true).open(node).map(drop)
}

/// Every Coral on `bus` (either id), in path order, with its state.
///
/// Finding the state of a Coral in application mode opens it and claims interface 0 for a
/// moment (released before returning); Corals that vanish meanwhile are left out.
pub fn list(bus: &dyn UsbBus) -> Result<Vec<CoralDevice>> {
    list_with(bus, &node_access)
}

/// [`list`] with the device-node check given (see [`node_access`]).
pub fn list_with(bus: &dyn UsbBus, access: &dyn Fn(&Path) -> std::io::Result<()>) -> Result<Vec<CoralDevice>> {
    let mut out = Vec::new();
    for info in corals(&attached(bus)?) {
        if let Some(state) = probe(bus, &info, access) {
            out.push(CoralDevice::new(info, state));
        }
    }
    Ok(out)
}

/// The Coral `sel` names, with its state. Only that Coral is probed.
///
/// No such Coral is an error of kind [`ErrorKind::NotFound`] naming the selector and listing
/// the Corals that are attached.
pub fn select(bus: &dyn UsbBus, sel: &Selector) -> Result<CoralDevice> {
    select_with(bus, sel, &node_access)
}

/// [`select`] with the device-node check given (see [`node_access`]).
pub fn select_with(
    bus: &dyn UsbBus,
    sel: &Selector,
    access: &dyn Fn(&Path) -> std::io::Result<()>,
) -> Result<CoralDevice> {
    let all = attached(bus)?;
    let found = corals(&all);
    let chosen = match sel {
        Selector::Any => found.first(),
        Selector::Index(n) => found.get(*n),
        Selector::Path(p) => found.iter().find(|d| d.path == *p),
    };
    let Some(info) = chosen else {
        return Err(not_found(sel, &all, &found));
    };
    match probe(bus, info, access) {
        Some(state) => Ok(CoralDevice::new(info.clone(), state)),
        None => Err(Error::usb(
            sel.to_string(),
            ErrorKind::NotFound,
            format!("the Coral at {} went away while being opened; replug it and try again", info.path),
        )),
    }
}

/// Every device on the bus.
fn attached(bus: &dyn UsbBus) -> Result<Vec<UsbDeviceInfo>> {
    bus.devices()
        .map_err(|e| Error::usb("usb", e.kind.error_kind(), format!("cannot list the USB devices ({:?})", e.kind)))
}

/// The Corals among `all`, in path order.
fn corals(all: &[UsbDeviceInfo]) -> Vec<UsbDeviceInfo> {
    let mut found: Vec<UsbDeviceInfo> = all.iter().filter(|d| d.is_coral()).cloned().collect();
    found.sort_by(|a, b| (a.path.bus, &a.path.ports).cmp(&(b.path.bus, &b.path.ports)));
    found
}

/// The state of one Coral; `None` when it is gone.
fn probe(bus: &dyn UsbBus, info: &UsbDeviceInfo, access: &dyn Fn(&Path) -> std::io::Result<()>) -> Option<DeviceState> {
    if info.needs_firmware() {
        return Some(DeviceState::NeedsFirmware);
    }
    if let Some(node) = &info.node {
        if let Err(e) = access(node) {
            if e.kind() == std::io::ErrorKind::PermissionDenied {
                return Some(DeviceState::NoPermission);
            }
        }
    }
    let claimed = bus.open(&info.path).and_then(|mut io| io.claim_interface(0));
    match claimed {
        Ok(()) => Some(DeviceState::Ready),
        Err(e) => match e.kind {
            UsbErrorKind::PermissionDenied => Some(DeviceState::NoPermission),
            UsbErrorKind::Busy => Some(DeviceState::InUse),
            UsbErrorKind::NotFound | UsbErrorKind::Disconnected => None,
            _ => Some(DeviceState::Ready),
        },
    }
}

fn id(info: &UsbDeviceInfo) -> String {
    format!("{:04x}:{:04x}", info.vendor, info.product)
}

fn not_found(sel: &Selector, all: &[UsbDeviceInfo], found: &[UsbDeviceInfo]) -> Error {
    let attached = found.iter().map(|d| format!("usb:{} ({})", d.path, id(d))).collect::<Vec<_>>().join(", ");
    let reason = if found.is_empty() {
        format!(
            "no Coral USB Accelerator is attached (no USB device has id {:04x}:{:04x} or {:04x}:{:04x}); check that \
             it is plugged in with a data cable, and try another port",
            APP_ID.0, APP_ID.1, DFU_ID.0, DFU_ID.1
        )
    } else if let Selector::Path(p) = sel {
        match all.iter().find(|d| d.path == *p) {
            Some(other) => {
                format!("the device at {p} is {}, not a Coral; the Corals attached are {attached}", id(other))
            }
            None => format!("no device is plugged in at {p}; the Corals attached are {attached}"),
        }
    } else {
        format!("only {} Coral(s) attached: {attached} (`usb:N` counts from 0)", found.len())
    };
    Error::usb(sel.to_string(), ErrorKind::NotFound, reason)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::device::usb::{Setup, Speed, UsbError, UsbIo};
    use std::sync::Mutex;
    use std::time::Duration;

    /// How a fake device answers open and claim.
    #[derive(Debug, Clone, Copy)]
    enum Answer {
        Ok,
        OpenFails(UsbErrorKind),
        ClaimFails(UsbErrorKind),
    }

    #[derive(Debug)]
    struct FakeBus {
        devices: Vec<(UsbDeviceInfo, Answer)>,
        fail_listing: Option<UsbErrorKind>,
        opened: Mutex<Vec<String>>,
    }

    #[derive(Debug)]
    struct FakeIo {
        info: UsbDeviceInfo,
        claim: Result<(), UsbError>,
    }

    impl UsbIo for FakeIo {
        fn info(&self) -> &UsbDeviceInfo {
            &self.info
        }
        fn claim_interface(&mut self, _: u8) -> Result<(), UsbError> {
            self.claim
        }
        fn control_in(&mut self, _: Setup, _: &mut [u8], _: Duration) -> Result<usize, UsbError> {
            Err(UsbError::new(UsbErrorKind::Other, 0))
        }
        fn control_out(&mut self, _: Setup, _: &[u8], _: Duration) -> Result<(), UsbError> {
            Err(UsbError::new(UsbErrorKind::Other, 0))
        }
        fn bulk_out(&mut self, ep: u8, _: &[u8], _: Duration) -> Result<usize, UsbError> {
            Err(UsbError::new(UsbErrorKind::Other, ep))
        }
        fn bulk_in(&mut self, ep: u8, _: &mut [u8], _: Duration) -> Result<usize, UsbError> {
            Err(UsbError::new(UsbErrorKind::Other, ep))
        }
        fn interrupt_in(&mut self, ep: u8, _: &mut [u8], _: Duration) -> Result<usize, UsbError> {
            Err(UsbError::new(UsbErrorKind::Other, ep))
        }
        fn clear_halt(&mut self, ep: u8) -> Result<(), UsbError> {
            Err(UsbError::new(UsbErrorKind::Other, ep))
        }
        fn reset(&mut self) -> Result<(), UsbError> {
            Err(UsbError::new(UsbErrorKind::Other, 0))
        }
    }

    impl UsbBus for FakeBus {
        fn devices(&self) -> Result<Vec<UsbDeviceInfo>, UsbError> {
            match self.fail_listing {
                Some(kind) => Err(UsbError::new(kind, 0)),
                None => Ok(self.devices.iter().map(|(d, _)| d.clone()).collect()),
            }
        }
        fn open(&self, path: &UsbPath) -> Result<Box<dyn UsbIo>, UsbError> {
            self.opened.lock().unwrap().push(path.to_string());
            let (info, answer) =
                self.devices.iter().find(|(d, _)| d.path == *path).ok_or(UsbError::new(UsbErrorKind::NotFound, 0))?;
            let claim = match *answer {
                Answer::OpenFails(kind) => return Err(UsbError::new(kind, 0)),
                Answer::ClaimFails(kind) => Err(UsbError::new(kind, 0)),
                Answer::Ok => Ok(()),
            };
            Ok(Box::new(FakeIo { info: info.clone(), claim }))
        }
    }

    fn dev(id: (u16, u16), path: &str, address: u8) -> UsbDeviceInfo {
        let path = UsbPath::parse(path).unwrap();
        UsbDeviceInfo {
            vendor: id.0,
            product: id.1,
            node: Some(format!("/dev/bus/usb/{:03}/{address:03}", path.bus).into()),
            path,
            address,
            speed: Speed::Super,
        }
    }

    fn bus(devices: Vec<(UsbDeviceInfo, Answer)>) -> FakeBus {
        FakeBus { devices, fail_listing: None, opened: Mutex::new(Vec::new()) }
    }

    fn allow(_: &Path) -> std::io::Result<()> {
        Ok(())
    }

    #[test]
    fn selectors_parse_and_print_back() {
        for (text, sel) in [
            ("usb", Selector::Any),
            ("usb:0", Selector::Index(0)),
            ("usb:12", Selector::Index(12)),
            ("usb:2-1.4", Selector::Path(UsbPath { bus: 2, ports: vec![1, 4] })),
            ("usb:1-3", Selector::Path(UsbPath { bus: 1, ports: vec![3] })),
        ] {
            assert_eq!(Selector::parse(text).unwrap(), sel, "{text}");
            assert_eq!(sel.to_string(), text);
            assert_eq!(text.parse::<Selector>().unwrap(), sel);
        }
    }

    #[test]
    fn bad_selectors_say_what_is_accepted() {
        for text in ["usb:x", "usb:", "pci:0", "USB", "usbx", "usb:1-", "usb:-1", "usb:2-1.x", "usb:1-300", "usb:-3"] {
            let e = Selector::parse(text).unwrap_err();
            assert_eq!(e.kind(), ErrorKind::InvalidArgument, "{text}");
            let msg = e.to_string();
            assert!(msg.contains(&format!("`{text}`")) && msg.contains("usb:2-1.4"), "{msg}");
        }
        assert!(Selector::parse("usb:99999999999999999999999").unwrap_err().to_string().contains("out of range"));
    }

    #[test]
    fn lists_only_corals_in_path_order_with_their_state() {
        let b = bus(vec![
            (dev(APP_ID, "2-1", 9), Answer::Ok),
            (dev((0x046d, 0xc52b), "1-1", 2), Answer::Ok),
            (dev(DFU_ID, "1-10", 3), Answer::Ok),
            (dev(APP_ID, "1-2.4", 4), Answer::ClaimFails(UsbErrorKind::Busy)),
            (dev(APP_ID, "1-2", 5), Answer::OpenFails(UsbErrorKind::PermissionDenied)),
            (dev(APP_ID, "3-1", 6), Answer::OpenFails(UsbErrorKind::Disconnected)),
            (dev(APP_ID, "1-3", 7), Answer::ClaimFails(UsbErrorKind::Other)),
        ]);
        let list = list_with(&b, &allow).unwrap();
        let got: Vec<(&str, DeviceState)> = list.iter().map(|d| (d.selector.as_str(), d.state)).collect();
        assert_eq!(
            got,
            [
                ("usb:1-2", DeviceState::NoPermission),
                ("usb:1-2.4", DeviceState::InUse),
                ("usb:1-3", DeviceState::Ready),
                ("usb:1-10", DeviceState::NeedsFirmware),
                ("usb:2-1", DeviceState::Ready),
            ]
        );
        assert_eq!(list[3].info.address, 3);
        // The DFU device and the non-Coral were never opened.
        let opened = b.opened.lock().unwrap().clone();
        assert!(!opened.contains(&"1-10".to_string()) && !opened.contains(&"1-1".to_string()), "{opened:?}");
    }

    #[test]
    fn a_denied_device_node_is_no_permission_without_opening() {
        let b = bus(vec![(dev(APP_ID, "2-1", 9), Answer::Ok), (dev(APP_ID, "2-2", 10), Answer::Ok)]);
        let deny = |node: &Path| {
            if node == Path::new("/dev/bus/usb/002/009") {
                Err(std::io::Error::from(std::io::ErrorKind::PermissionDenied))
            } else {
                Err(std::io::Error::from(std::io::ErrorKind::NotFound))
            }
        };
        let list = list_with(&b, &deny).unwrap();
        assert_eq!(list[0].state, DeviceState::NoPermission);
        // A node that cannot be checked for another reason does not decide anything.
        assert_eq!(list[1].state, DeviceState::Ready);
        assert_eq!(*b.opened.lock().unwrap(), ["2-2"]);
    }

    #[test]
    fn select_picks_by_index_or_path_and_probes_only_that_one() {
        let b = bus(vec![
            (dev(APP_ID, "2-1", 9), Answer::Ok),
            (dev(DFU_ID, "1-4", 3), Answer::Ok),
            (dev(APP_ID, "1-5", 4), Answer::ClaimFails(UsbErrorKind::Busy)),
        ]);
        let first = select_with(&b, &Selector::Any, &allow).unwrap();
        assert_eq!((first.selector.as_str(), first.state), ("usb:1-4", DeviceState::NeedsFirmware));
        let second = select_with(&b, &Selector::Index(1), &allow).unwrap();
        assert_eq!((second.selector.as_str(), second.state), ("usb:1-5", DeviceState::InUse));
        let by_path = select_with(&b, &Selector::parse("usb:2-1").unwrap(), &allow).unwrap();
        assert_eq!(by_path.state, DeviceState::Ready);
        assert_eq!(by_path.info.speed, Speed::Super);
        assert_eq!(*b.opened.lock().unwrap(), ["1-5", "2-1"]);
    }

    #[test]
    fn select_explains_what_is_there_when_nothing_matches() {
        let b = bus(vec![(dev(APP_ID, "2-1", 9), Answer::Ok), (dev((0x046d, 0xc52b), "1-1", 2), Answer::Ok)]);
        let e = select_with(&b, &Selector::Index(3), &allow).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        let msg = e.to_string();
        assert!(msg.starts_with("usb:3: ") && msg.contains("usb:2-1 (18d1:9302)"), "{msg}");

        let msg = select_with(&b, &Selector::parse("usb:1-1").unwrap(), &allow).unwrap_err().to_string();
        assert!(msg.contains("046d:c52b, not a Coral") && msg.contains("usb:2-1"), "{msg}");
        let msg = select_with(&b, &Selector::parse("usb:4-2").unwrap(), &allow).unwrap_err().to_string();
        assert!(msg.contains("no device is plugged in at 4-2"), "{msg}");

        let empty = bus(vec![(dev((0x046d, 0xc52b), "1-1", 2), Answer::Ok)]);
        let e = select_with(&empty, &Selector::Any, &allow).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.to_string().contains("18d1:9302 or 1a6e:089a"), "{e}");
        assert!(list_with(&empty, &allow).unwrap().is_empty());
    }

    #[test]
    fn a_coral_that_vanishes_while_probed_is_not_found() {
        let b = bus(vec![(dev(APP_ID, "2-1", 9), Answer::OpenFails(UsbErrorKind::NotFound))]);
        let e = select_with(&b, &Selector::Any, &allow).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::NotFound);
        assert!(e.to_string().contains("went away"), "{e}");
    }

    #[test]
    fn listing_failures_keep_their_kind() {
        let mut b = bus(vec![]);
        b.fail_listing = Some(UsbErrorKind::PermissionDenied);
        let e = list_with(&b, &allow).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::PermissionDenied);
        assert!(e.to_string().starts_with("usb: cannot list"), "{e}");
    }

    #[test]
    fn states_print_for_people() {
        assert_eq!(DeviceState::NeedsFirmware.to_string(), "needs firmware");
        assert_eq!(DeviceState::NoPermission.to_string(), "no permission");
        assert_eq!(DeviceState::InUse.to_string(), "in use");
        assert_eq!(DeviceState::Ready.to_string(), "ready");
    }
}
