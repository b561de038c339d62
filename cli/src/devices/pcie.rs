//! The PCIe Corals (M.2, Mini-PCIe, Dual Edge TPU, Dev Board) in `edgetpu devices`: selection
//! string, state, device node, PCI address, temperature and clock step. sysfs does not report the
//! clock: the step shown is derived from the temperature and the trip points (see
//! [`edgetpu::device::pcie::sysfs::Telemetry::clock`]), and the text says so.

use anyhow::Result;
use edgetpu::device::pcie::sysfs::{self as apex_sysfs, ApexDevice, ApexState, Telemetry};
use serde_json::{json, Value};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// Testing aid: the directory read instead of `/` for sysfs, `/dev`, `/proc`, `/etc` and
/// `/boot` by `edgetpu devices` and `edgetpu doctor`, so that their PCIe parts run against a
/// fake tree. Not meant for normal use.
pub const ROOT_ENV: &str = "EDGETPU_SYSFS_ROOT";

/// `$EDGETPU_SYSFS_ROOT`, else `/`.
pub fn sysfs_root() -> PathBuf {
    std::env::var_os(ROOT_ENV).filter(|r| !r.is_empty()).map_or_else(|| PathBuf::from(apex_sysfs::ROOT), PathBuf::from)
}

/// A PCIe Coral with its telemetry (when it reports any).
#[derive(Debug, Clone)]
pub struct PcieCoral {
    /// The device as sysfs shows it.
    pub dev: ApexDevice,
    /// Its thermal attributes; `None` when they could not be read at all.
    pub telemetry: Option<Telemetry>,
}

/// Every PCIe Coral under `root`.
pub fn list(root: &Path) -> Result<Vec<PcieCoral>> {
    Ok(apex_sysfs::list(root)?
        .into_iter()
        .map(|dev| {
            let telemetry = apex_sysfs::telemetry(root, dev.number).ok();
            PcieCoral { dev, telemetry }
        })
        .collect())
}

/// `45.2 °C`.
pub fn celsius(mc: i32) -> String {
    format!("{:.1} °C", f64::from(mc) / 1000.0)
}

/// Why a throttled device is slow: `91.0 °C is at or above trip point 1 (90.0 °C)`.
pub fn throttle_reason(t: &Telemetry) -> Option<String> {
    let temp = t.temp_mc.filter(|_| t.throttled())?;
    let trips = t.effective_trip_points_mc();
    let i = trips.iter().rposition(|&trip| temp >= trip)?;
    Some(format!("{} is at or above trip point {i} ({})", celsius(temp), celsius(trips[i])))
}

/// What to do about a state, if anything.
fn state_note(c: &PcieCoral) -> Option<String> {
    let node = c.dev.node.display();
    match c.dev.state {
        ApexState::Ready => None,
        ApexState::InUse => Some(format!(
            "another process{} has it open; stop that process or pick another Coral",
            c.dev.owner_pid.map(|p| format!(" (pid {p})")).unwrap_or_default()
        )),
        ApexState::NoPermission => Some(format!(
            "this user may not open {node}: install the udev rules (`sudo udev/install.sh`) and join the apex group \
             (`sudo usermod -aG apex $USER`, then log in again); `edgetpu doctor` checks the setup"
        )),
        ApexState::NodeMissing => Some(format!(
            "the driver lists it but {node} does not exist: install the udev rules (`sudo udev/install.sh`) and \
             reload the driver; `edgetpu doctor` checks the setup"
        )),
    }
}

/// How a derived clock step reads in text: what it was derived from.
pub const CLOCK_DERIVED: &str = "derived from the temperature and the trip points";

/// The text listing: one line per PCIe Coral, then its warnings and notes, and a last line on
/// where the clock figures come from when any is shown; empty without any Coral.
pub fn render(corals: &[PcieCoral]) -> String {
    let mut out = String::new();
    let width = corals.iter().map(|c| c.dev.selector.len()).max().unwrap_or(0);
    for c in corals {
        let d = &c.dev;
        let pci = d.pci_address.as_deref().unwrap_or("?");
        let temp = c.telemetry.as_ref().and_then(|t| t.temp_mc).map_or_else(|| "temp ?".to_string(), celsius);
        let clock = c
            .telemetry
            .as_ref()
            .and_then(|t| t.clock)
            .map_or_else(|| "clock ?".to_string(), |s| format!("{s} (derived)"));
        let state = d.state.to_string();
        let _ = writeln!(out, "{:width$}  {state:14}  {}  {pci}  {temp}  {clock}", d.selector, d.node.display());
        if let Some(t) = &c.telemetry {
            if let Some(why) = throttle_reason(t) {
                let clock = t.clock.map(|s| s.to_string()).unwrap_or_default();
                let _ = writeln!(
                    out,
                    "{:width$}  warning: throttled: {why}, so the driver throttles the TPU: clock {clock}, \
                     {CLOCK_DERIVED}; improve the cooling (heatsink, airflow)",
                    ""
                );
            }
        }
        if d.status.as_deref() == Some("LAMED") {
            let _ = writeln!(
                out,
                "{:width$}  warning: the driver could not set up its interrupts (status LAMED, usually no MSI-X); \
                 `edgetpu doctor` says what to do",
                ""
            );
        }
        if let Some(note) = state_note(c) {
            let _ = writeln!(out, "{:width$}  note: {note}", "");
        }
    }
    if corals.iter().any(|c| c.telemetry.as_ref().is_some_and(|t| t.clock.is_some())) {
        let _ = writeln!(
            out,
            "clock: {CLOCK_DERIVED}, as the apex driver throttles (sysfs does not report the clock itself)"
        );
    }
    out
}

/// The `pcie` array of `edgetpu devices --json`.
pub fn to_json(corals: &[PcieCoral]) -> Value {
    let devices: Vec<Value> = corals
        .iter()
        .map(|c| {
            let d = &c.dev;
            let t = c.telemetry.clone().unwrap_or_default();
            json!({
                "selector": d.selector,
                "name": d.name(),
                "node": d.node,
                "state": d.state,
                "pci_address": d.pci_address,
                "owner_pid": d.owner_pid,
                "driver_version": d.driver_version,
                "status": d.status,
                "temp_mc": t.temp_mc,
                "trip_points_mc": t.trip_points_mc,
                "clock_mhz": t.clock.map(|s| s.mhz()),
                "clock_derived": true,
                "throttled": t.throttled(),
            })
        })
        .collect();
    Value::Array(devices)
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgetpu::device::pcie::sysfs::{ClockStep, NodeInfo};

    fn coral(n: u32, state: ApexState, temp_mc: Option<i32>, status: &str) -> PcieCoral {
        let clock = temp_mc.map(|t| apex_sysfs::derive_clock(t, apex_sysfs::DEFAULT_TRIP_POINTS_MC));
        PcieCoral {
            dev: ApexDevice {
                number: n,
                selector: format!("pci:{n}"),
                sysfs: format!("/sys/class/apex/apex_{n}").into(),
                node: format!("/dev/apex_{n}").into(),
                node_info: Some(NodeInfo { mode: 0o660, uid: 0, gid: 120, group: Some("apex".into()) }),
                owned: Some(state == ApexState::InUse),
                owner_pid: (state == ApexState::InUse).then_some(321),
                pci_address: Some(format!("0000:0{}:00.0", n + 1)),
                driver_version: Some("1.1".into()),
                framework_version: None,
                status: Some(status.into()),
                state,
            },
            telemetry: Some(Telemetry { temp_mc, clock, ..Telemetry::default() }),
        }
    }

    #[test]
    fn lists_state_node_address_temperature_and_clock() {
        let text = render(&[
            coral(0, ApexState::Ready, Some(45_250), "ALIVE"),
            coral(1, ApexState::InUse, Some(91_000), "ALIVE"),
            coral(2, ApexState::NoPermission, None, "LAMED"),
        ]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "pci:0  ready           /dev/apex_0  0000:01:00.0  45.2 °C  500 MHz (derived)", "{text}");
        assert_eq!(lines[1], "pci:1  in use          /dev/apex_1  0000:02:00.0  91.0 °C  125 MHz (derived)", "{text}");
        assert!(lines[2].contains("warning: throttled: 91.0 °C is at or above trip point 1 (90.0 °C)"), "{text}");
        assert!(lines[2].contains("clock 125 MHz, derived from the temperature and the trip points"), "{text}");
        assert!(lines[3].contains("note: another process (pid 321) has it open"), "{text}");
        assert!(lines[4].starts_with("pci:2  no permission   /dev/apex_2") && lines[4].ends_with("temp ?  clock ?"));
        assert!(lines[5].contains("status LAMED") && lines[5].contains("edgetpu doctor"), "{text}");
        assert!(lines[6].contains("usermod -aG apex") && lines[6].contains("udev/install.sh"), "{text}");
        assert!(lines[7].starts_with("clock: derived from the temperature and the trip points"), "{text}");
        assert_eq!(lines.len(), 8, "{text}");
        assert_eq!(render(&[]), "");
        // Without a temperature there is no clock, and nothing to say where it comes from.
        let text = render(&[coral(2, ApexState::Ready, None, "ALIVE")]);
        assert!(!text.contains("derived"), "{text}");
    }

    #[test]
    fn json_has_state_temperature_and_clock() {
        let v = to_json(&[coral(0, ApexState::InUse, Some(95_500), "ALIVE")]);
        let d = &v[0];
        assert_eq!(d["selector"], "pci:0");
        assert_eq!(d["node"], "/dev/apex_0");
        assert_eq!(d["state"], "in_use");
        assert_eq!(d["pci_address"], "0000:01:00.0");
        assert_eq!(d["owner_pid"], 321);
        assert_eq!(d["temp_mc"], 95_500);
        assert_eq!(d["clock_mhz"], ClockStep::Mhz62_5.mhz());
        assert_eq!(d["throttled"], true);
    }
}
