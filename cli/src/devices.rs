//! `edgetpu devices`: the Coral USB Accelerators attached, their state and their USB link; and
//! the PCIe Corals ([`pcie`]), their state, temperature and clock.

pub mod pcie;

use anyhow::{Context, Result};
use edgetpu::device::usb::discovery::{self, CoralDevice, DeviceState};
use edgetpu::device::usb::rusb::RusbBus;
use edgetpu::device::usb::{UsbBus, UsbErrorKind, APP_ID, DFU_ID};
use serde_json::{json, Value};
use std::fmt::Write as _;

/// Arguments of `edgetpu devices`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// Print a JSON document instead of text.
    #[arg(long)]
    pub json: bool,
}

/// The advice for a USB 2 link.
pub const USB2_ADVICE: &str =
    "USB 2 link: transfers are slower; plug it into a USB 3 port (often blue) with a USB 3 cable";

/// Opens the USB bus through libusb.
pub fn open_bus() -> Result<RusbBus> {
    let usbfs = !cfg!(target_os = "linux") || std::path::Path::new("/dev/bus/usb").exists();
    RusbBus::new().map_err(|e| anyhow::anyhow!("{}", no_libusb(e.kind, usbfs)))
}

/// Why libusb could not start; `usbfs` is whether `/dev/bus/usb` exists (always true off Linux).
pub fn no_libusb(kind: UsbErrorKind, usbfs: bool) -> String {
    if usbfs {
        format!("cannot initialise libusb ({kind:?})")
    } else {
        format!(
            "cannot initialise libusb ({kind:?}): this system has no /dev/bus/usb (no USB host controller, or a \
             container or VM without USB passed through, e.g. `docker run --device /dev/bus/usb`)"
        )
    }
}

/// How many USB devices (of any kind, root hubs excepted) the bus shows.
pub fn attached_count(bus: &dyn UsbBus) -> usize {
    bus.devices().map_or(0, |d| d.len())
}

pub fn run(args: &Args) -> Result<()> {
    let (pcie, pcie_error) = match pcie::list(&pcie::sysfs_root()) {
        Ok(list) => (list, None),
        Err(e) => (Vec::new(), Some(format!("{e:#}"))),
    };
    let usb = open_bus().and_then(|bus| {
        let corals = discovery::list(&bus).context("listing Coral devices")?;
        Ok((corals, attached_count(&bus)))
    });
    // Without USB (no libusb, no /dev/bus/usb) the PCIe Corals are still worth listing.
    let (corals, attached, usb_error) = match usb {
        Ok((corals, attached)) => (corals, attached, None),
        Err(e) if !pcie.is_empty() => (Vec::new(), 0, Some(format!("{e:#}"))),
        Err(e) => return Err(e),
    };
    if args.json {
        let mut doc = to_json(&corals);
        doc["pcie"] = pcie::to_json(&pcie);
        for (key, error) in [("usb_error", &usb_error), ("pcie_error", &pcie_error)] {
            if let Some(e) = error {
                doc[key] = Value::from(e.as_str());
            }
        }
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        // "No Coral found" is about USB: not worth saying when a PCIe Coral is listed.
        let usb_listed = usb_error.is_none() && (!corals.is_empty() || pcie.is_empty());
        if usb_listed {
            print!("{}", render(&corals, attached));
        }
        print!("{}", pcie::render(&pcie));
        if let Some(e) = usb_error {
            println!("note: USB devices not listed: {e}");
        }
        if let Some(e) = pcie_error {
            println!("note: PCIe devices not listed: {e}");
        }
    }
    Ok(())
}

/// Whether the link speed of `dev` is worth a warning. A Coral in DFU mode is left out: its
/// link is negotiated again when the firmware starts.
pub fn slow_link(dev: &CoralDevice) -> bool {
    dev.state != DeviceState::NeedsFirmware && dev.info.speed.is_usb2()
}

/// What to do about a state, if anything.
fn state_note(state: DeviceState) -> Option<&'static str> {
    match state {
        DeviceState::NeedsFirmware => {
            Some("the firmware is loaded when it is first opened (`edgetpu doctor` checks for it)")
        }
        DeviceState::Ready => None,
        DeviceState::InUse => Some("another process has it open; stop that process or pick another Coral"),
        DeviceState::NoPermission => Some(
            "this user may not open it: install the udev rules (`sudo udev/install.sh`) and replug it; \
             `edgetpu doctor` checks the setup",
        ),
    }
}

/// The text listing: one line per Coral, then its warnings and notes; or why none was found.
/// `attached` is how many USB devices of any kind the bus shows.
pub fn render(corals: &[CoralDevice], attached: usize) -> String {
    let mut out = String::new();
    if corals.is_empty() {
        let ids = format!("{:04x}:{:04x} or {:04x}:{:04x}", APP_ID.0, APP_ID.1, DFU_ID.0, DFU_ID.1);
        if attached == 0 {
            let _ = writeln!(out, "no Coral found: no USB device is visible at all");
            let _ = writeln!(
                out,
                "hint: check the cable (a data cable, not a charge-only one) and try another port; in a container \
                 or VM, pass the USB devices through (e.g. docker --device /dev/bus/usb)"
            );
        } else {
            let _ = writeln!(out, "no Coral found among the {attached} USB device(s) attached (none has id {ids})");
            let _ = writeln!(
                out,
                "hint: if it is plugged in but `lsusb` does not list {ids}, the cable or port is at fault: use a \
                 data cable (not a charge-only one) and try another port, preferably USB 3"
            );
        }
        return out;
    }
    let width = corals.iter().map(|d| d.selector.len()).max().unwrap_or(0);
    for dev in corals {
        let id = format!("{:04x}:{:04x}", dev.info.vendor, dev.info.product);
        let state = dev.state.to_string();
        let _ = writeln!(out, "{:width$}  {state:14}  {id}  {}", dev.selector, dev.info.speed);
        if slow_link(dev) {
            let _ = writeln!(out, "{:width$}  warning: {USB2_ADVICE}", "");
        }
        if let Some(note) = state_note(dev.state) {
            let _ = writeln!(out, "{:width$}  note: {note}", "");
        }
    }
    out
}

/// The JSON document of `edgetpu devices --json`.
pub fn to_json(corals: &[CoralDevice]) -> Value {
    let devices: Vec<Value> = corals
        .iter()
        .map(|d| {
            json!({
                "selector": d.selector,
                "path": d.info.path.to_string(),
                "id": format!("{:04x}:{:04x}", d.info.vendor, d.info.product),
                "state": d.state,
                "speed": d.info.speed,
                "speed_text": d.info.speed.to_string(),
                "usb2_warning": slow_link(d),
                "address": d.info.address,
                "node": d.info.node,
            })
        })
        .collect();
    json!({ "devices": devices })
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgetpu::device::usb::{Speed, UsbDeviceInfo, UsbPath};

    fn coral(path: &str, id: (u16, u16), speed: Speed, state: DeviceState) -> CoralDevice {
        CoralDevice {
            info: UsbDeviceInfo {
                vendor: id.0,
                product: id.1,
                path: UsbPath::parse(path).unwrap(),
                address: 7,
                speed,
                node: Some("/dev/bus/usb/002/007".into()),
            },
            selector: format!("usb:{path}"),
            state,
        }
    }

    #[test]
    fn lists_state_speed_and_warns_on_usb2() {
        let text = render(
            &[
                coral("2-1.4", APP_ID, Speed::High, DeviceState::Ready),
                coral("2-2", APP_ID, Speed::Super, DeviceState::InUse),
                coral("1-3", DFU_ID, Speed::High, DeviceState::NeedsFirmware),
            ],
            5,
        );
        let lines: Vec<&str> = text.lines().collect();
        assert!(lines[0].starts_with("usb:2-1.4  ready") && lines[0].contains("18d1:9302"), "{text}");
        assert!(lines[0].contains("USB 2 high speed"), "{text}");
        assert!(lines[1].contains("warning: USB 2 link") && lines[1].contains("USB 3 cable"), "{text}");
        assert!(lines[2].starts_with("usb:2-2    in use") && lines[2].contains("SuperSpeed"), "{text}");
        assert!(lines[3].contains("note: another process"), "{text}");
        assert!(lines[4].starts_with("usb:1-3    needs firmware") && lines[4].contains("1a6e:089a"), "{text}");
        // DFU mode: no speed warning, the link changes when the firmware starts.
        assert!(lines[5].contains("note: the firmware is loaded"), "{text}");
        assert_eq!(lines.len(), 6, "{text}");
    }

    #[test]
    fn no_permission_points_at_the_udev_rules() {
        let text = render(&[coral("2-1", APP_ID, Speed::Super, DeviceState::NoPermission)], 1);
        assert!(text.contains("no permission") && text.contains("sudo udev/install.sh"), "{text}");
    }

    #[test]
    fn no_coral_says_so_and_hints_at_cable_and_port() {
        let text = render(&[], 4);
        assert!(text.starts_with("no Coral found among the 4 USB device(s)"), "{text}");
        assert!(text.contains("18d1:9302 or 1a6e:089a") && text.contains("cable"), "{text}");
        let text = render(&[], 0);
        assert!(text.contains("no USB device is visible at all") && text.contains("another port"), "{text}");
    }

    #[test]
    fn a_missing_usbfs_is_explained() {
        assert_eq!(no_libusb(UsbErrorKind::Other, true), "cannot initialise libusb (Other)");
        let text = no_libusb(UsbErrorKind::Other, false);
        assert!(text.contains("no /dev/bus/usb") && text.contains("--device /dev/bus/usb"), "{text}");
    }

    #[test]
    fn json_names_state_and_speed() {
        let v = to_json(&[coral("2-1.4", APP_ID, Speed::High, DeviceState::NoPermission)]);
        let d = &v["devices"][0];
        assert_eq!(d["selector"], "usb:2-1.4");
        assert_eq!(d["path"], "2-1.4");
        assert_eq!(d["id"], "18d1:9302");
        assert_eq!(d["state"], "no_permission");
        assert_eq!(d["speed"], "High");
        assert_eq!(d["usb2_warning"], true);
        assert_eq!(d["node"], "/dev/bus/usb/002/007");
        assert_eq!(to_json(&[])["devices"].as_array().unwrap().len(), 0);
    }
}
