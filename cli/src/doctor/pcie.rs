//! `edgetpu doctor` for PCIe Corals (M.2, Mini-PCIe, Dual Edge TPU, Dev Board): the card on the
//! PCI bus, the apex driver and its version, the kernel's page size (the Raspberry Pi 5
//! 16K-page kernel), interrupts (MSI-X), ASPM, the device nodes' permissions, the apex group,
//! the udev rule, and the temperature. Everything is read under a root directory (`/`, or a
//! fake tree in tests); nothing opens a device.

use super::Check;
use edgetpu::device::pcie::sysfs::{self as apex_sysfs, read_attr, ApexDevice, ApexState, Identity};
use std::path::{Path, PathBuf};

/// The Coral's PCI vendor and device ids, as sysfs writes them.
pub const PCI_ID: (&str, &str) = ("0x1ac1", "0x089a");

/// Where udev reads rules, relative to the root.
pub const UDEV_DIRS: [&str; 3] = ["etc/udev/rules.d", "lib/udev/rules.d", "usr/lib/udev/rules.d"];

const INSTALL_DRIVER: &str =
    "install the apex driver: the gasket-dkms package (built from google/gasket-driver), or a \
     community-maintained DKMS package where that one does not build for your kernel (HARDWARE.md lists them); then \
     `sudo modprobe apex` or reboot";
const INSTALL_RULES: &str = "run `sudo udev/install.sh` from the edgetpu repository (it installs a rule giving \
     /dev/apex_* to group apex with mode 0660 and creates the group), then reload the driver \
     (`sudo modprobe -r apex && sudo modprobe apex`) or reboot";
const JOIN_GROUP: &str = "`sudo usermod -aG apex $USER`, then log out and in again";
const ASPM_ADVICE: &str = "some hosts only bring the card up with ASPM off: add `pcie_aspm=off` to the kernel command \
     line (GRUB_CMDLINE_LINUX in /etc/default/grub, or cmdline.txt on a Raspberry Pi) and reboot";

/// A Coral function on the PCI bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciCoral {
    /// Its address, e.g. `0000:01:00.0`.
    pub address: String,
    /// The driver bound to it (`apex`), if any.
    pub driver: Option<String>,
}

/// The Corals under `<root>/sys/bus/pci/devices`; `None` when that directory cannot be read.
pub fn pci_corals(root: &Path) -> Option<Vec<PciCoral>> {
    let mut out: Vec<PciCoral> = std::fs::read_dir(root.join("sys/bus/pci/devices"))
        .ok()?
        .filter_map(|e| e.ok())
        .filter(|e| {
            let id = |name| read_attr(&e.path(), name).map(|t| t.to_ascii_lowercase());
            id("vendor").as_deref() == Some(PCI_ID.0) && id("device").as_deref() == Some(PCI_ID.1)
        })
        .map(|e| PciCoral {
            address: e.file_name().to_string_lossy().into_owned(),
            driver: std::fs::read_link(e.path().join("driver"))
                .ok()
                .and_then(|t| Some(t.file_name()?.to_string_lossy().into_owned())),
        })
        .collect();
    out.sort_by(|a, b| a.address.cmp(&b.address));
    Some(out)
}

/// The kernel's page size in bytes, from the first `KernelPageSize:` line of
/// `<root>/proc/self/smaps`.
pub fn page_size(root: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(root.join("proc/self/smaps")).ok()?;
    let line = text.lines().find_map(|l| l.strip_prefix("KernelPageSize:"))?;
    let mut words = line.split_whitespace();
    let n: u64 = words.next()?.parse().ok()?;
    match words.next()? {
        "kB" => n.checked_mul(1024),
        _ => None,
    }
}

/// The device-tree model (`Raspberry Pi 5 Model B Rev 1.0`), when there is one.
pub fn board_model(root: &Path) -> Option<String> {
    ["proc/device-tree/model", "sys/firmware/devicetree/base/model"].iter().find_map(|p| read_attr(root, p))
}

/// Whether the model is a Raspberry Pi 5 (or Compute Module 5), whose default kernel uses
/// 16 KiB pages.
pub fn is_pi5(model: &str) -> bool {
    model.contains("Raspberry Pi 5") || model.contains("Raspberry Pi Compute Module 5")
}

/// The current ASPM policy (the bracketed word of `pcie_aspm`'s `policy` parameter).
pub fn aspm_policy(root: &Path) -> Option<String> {
    let text = read_attr(root, "sys/module/pcie_aspm/parameters/policy")?;
    let current = text.split_whitespace().find_map(|w| w.strip_prefix('[')?.strip_suffix(']'));
    Some(current.unwrap_or(&text).to_string())
}

/// A `udev` rule line for the apex subsystem: its file, `GROUP` and `MODE`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApexRule {
    /// The rules file.
    pub file: PathBuf,
    /// `GROUP="..."`.
    pub group: Option<String>,
    /// `MODE="..."`, octal.
    pub mode: Option<u32>,
}

/// The value of `KEY="value"` (or `KEY:="value"`) in a rule line.
fn rule_value<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let at = line.find(key)?;
    let rest = line[at + key.len()..].trim_start_matches(':').strip_prefix("=\"")?;
    rest.split('"').next()
}

/// The first rule (in udev's directories under `root`, files in name order) that matches
/// `SUBSYSTEM=="apex"`.
pub fn apex_rule(root: &Path) -> Option<ApexRule> {
    for dir in UDEV_DIRS {
        for file in super::rules_files(&root.join(dir)) {
            let Ok(text) = std::fs::read_to_string(&file) else { continue };
            // Spaces around operators are allowed; names and modes have none.
            let line = text
                .lines()
                .map(|l| l.trim().replace([' ', '\t'], ""))
                .find(|l| !l.starts_with('#') && l.contains("SUBSYSTEM==\"apex\""));
            if let Some(line) = line {
                let group = rule_value(&line, "GROUP").map(str::to_string);
                let mode = rule_value(&line, "MODE").and_then(|m| u32::from_str_radix(m, 8).ok());
                return Some(ApexRule { file, group, mode });
            }
        }
    }
    None
}

/// The checks for PCIe Corals under `root`. Without any sign of one (no Coral on the PCI bus, no
/// apex driver, no apex device) this is a single `ok` line, so USB-only machines are not
/// bothered.
pub fn checks(root: &Path) -> Vec<Check> {
    let bus = pci_corals(root);
    let on_bus = bus.clone().unwrap_or_default();
    let module = root.join("sys/module/apex").is_dir();
    let devices = match apex_sysfs::list(root) {
        Ok(d) => d,
        Err(e) => return vec![Check::fail(format!("PCIe: {e}"), "check the permissions of /sys/class/apex")],
    };
    if on_bus.is_empty() && !module && devices.is_empty() {
        return vec![Check::ok("PCIe: no Coral (1ac1:089a) on the PCI bus and no apex driver; nothing to check")];
    }
    let model = board_model(root);
    let pi5 = model.as_deref().is_some_and(is_pi5);
    let unbound: Vec<&PciCoral> = on_bus.iter().filter(|c| c.driver.as_deref() != Some("apex")).collect();
    let mut out = Vec::new();
    out.push(bus_check(bus.as_deref(), module, pi5));
    out.push(driver_check(root, module, &on_bus));
    if module {
        for c in &unbound {
            out.push(Check::fail(
                format!(
                    "binding: the Coral at {} has {}",
                    c.address,
                    c.driver.as_ref().map_or("no driver bound".to_string(), |d| format!("driver {d}, not apex"))
                ),
                format!(
                    "read `sudo dmesg | grep -iE 'apex|gasket'`; the page-size and interrupt checks here name the \
                     usual causes; {ASPM_ADVICE}"
                ),
            ));
        }
    }
    out.push(page_check(page_size(root), model.as_deref(), pi5));
    for d in &devices {
        out.push(interrupt_check(d, pi5));
    }
    out.extend(devices.iter().flat_map(node_checks));
    let who = Identity::read(root);
    let etc_group = std::fs::read_to_string(root.join("etc/group")).ok();
    out.push(group_check(who.as_ref(), etc_group.as_deref(), &devices));
    out.push(rule_check(apex_rule(root), &devices));
    let cmdline = read_attr(root, "proc/cmdline").unwrap_or_default();
    let stuck = !unbound.is_empty() || (module && bus.is_some() && on_bus.is_empty());
    out.push(aspm_check(aspm_policy(root), cmdline.split_whitespace().any(|w| w == "pcie_aspm=off"), stuck));
    for d in &devices {
        out.extend(temperature_check(root, d));
    }
    out
}

fn bus_check(bus: Option<&[PciCoral]>, module: bool, pi5: bool) -> Check {
    match bus {
        None => Check::warn(
            "PCI bus: cannot read /sys/bus/pci/devices",
            "check with `lspci -nn | grep 089a` that the card is listed",
        ),
        Some([]) => {
            let pi = if pi5 {
                "; on a Raspberry Pi 5 enable the external connector with `dtparam=pciex1` in \
                 /boot/firmware/config.txt"
            } else {
                ""
            };
            Check::warn(
                format!(
                    "PCI bus: no Coral (1ac1:089a) on the PCI bus{}",
                    if module { ", although the apex driver is loaded" } else { "" }
                ),
                format!(
                    "seat the card again and check the adapter or slot (`lspci -nn | grep 089a`){pi}; {ASPM_ADVICE}"
                ),
            )
        }
        Some(found) => {
            let list = found
                .iter()
                .map(|c| format!("{} ({})", c.address, c.driver.as_deref().unwrap_or("no driver")))
                .collect::<Vec<_>>()
                .join(", ");
            Check::ok(format!("PCI bus: {} Coral function(s): {list}", found.len()))
        }
    }
}

fn driver_check(root: &Path, module: bool, on_bus: &[PciCoral]) -> Check {
    if !module {
        let seen = match on_bus.first() {
            Some(c) => format!(", but a Coral is on the PCI bus at {}", c.address),
            None => String::new(),
        };
        return Check::fail(format!("driver: the apex kernel module is not loaded{seen}"), INSTALL_DRIVER);
    }
    let version = |m: &str| read_attr(root, &format!("sys/module/{m}/version"));
    let v = |m: &str| version(m).map_or_else(|| format!("{m} version not reported"), |v| format!("{m} {v}"));
    Check::ok(format!("driver: apex loaded ({}, {})", v("apex"), v("gasket")))
}

fn page_check(page: Option<u64>, model: Option<&str>, pi5: bool) -> Check {
    match page {
        Some(4096) => Check::ok("page size: 4 KiB"),
        Some(p) if pi5 => Check::fail(
            format!(
                "page size: the kernel uses {} KiB pages (the default kernel of the {}); the apex driver needs 4 KiB \
                 pages",
                p / 1024,
                model.unwrap_or("Raspberry Pi 5")
            ),
            "boot the 4 KiB-page kernel: add `kernel=kernel8.img` to /boot/firmware/config.txt and reboot",
        ),
        Some(p) => Check::warn(
            format!(
                "page size: the kernel uses {} KiB pages; the apex driver is only known to work with 4 KiB",
                p / 1024
            ),
            "boot a kernel built with 4 KiB pages",
        ),
        None => Check::warn(
            "page size: cannot read KernelPageSize from /proc/self/smaps",
            "check that `getconf PAGESIZE` prints 4096",
        ),
    }
}

fn interrupt_check(d: &ApexDevice, pi5: bool) -> Check {
    let name = d.name();
    match d.status.as_deref() {
        Some("ALIVE") => Check::ok(format!("interrupts: {name} is ALIVE (MSI-X set up)")),
        Some("LAMED") => Check::fail(
            format!("interrupts: {name} has none (status LAMED: the driver could not enable MSI-X)"),
            if pi5 {
                "on a Raspberry Pi 5 add `dtoverlay=pineboards-hat-ai` to /boot/firmware/config.txt (kernel 6.6.30 or \
                 later; it points the external PCIe port at an interrupt controller with MSI-X) and reboot; on older \
                 kernels the msi-parent of the PCIe node has to be changed in the device tree by hand"
            } else {
                "the card needs MSI-X: check that the host and any adapter or PCIe switch support it (`sudo lspci \
                 -vv` shows MSI-X under the card), and read `sudo dmesg | grep -iE 'msi|apex'`"
            },
        ),
        Some(other) => Check::fail(
            format!("interrupts: {name} reports status {other}"),
            "reseat the card or reboot, and send `sudo dmesg | grep -iE 'apex|gasket'` with a report",
        ),
        None => Check::warn(
            format!("interrupts: {name} reports no status"),
            "update the apex driver (gasket-dkms) and reload it",
        ),
    }
}

fn node_checks(d: &ApexDevice) -> Vec<Check> {
    let node = d.node.display();
    let mut out = Vec::new();
    match (&d.node_info, d.state) {
        (None, _) => out.push(Check::fail(format!("permissions: {node} does not exist"), INSTALL_RULES)),
        (Some(n), ApexState::NoPermission) => out.push(Check::fail(
            format!(
                "permissions: this user may not open {node} (mode {:04o}, group {})",
                n.mode,
                n.group.clone().unwrap_or_else(|| n.gid.to_string())
            ),
            format!("{INSTALL_RULES}; and join the group: {JOIN_GROUP}"),
        )),
        (Some(n), _) => out.push(Check::ok(format!(
            "permissions: this user can open {node} (mode {:04o}, group {})",
            n.mode,
            n.group.clone().unwrap_or_else(|| n.gid.to_string())
        ))),
    }
    if d.state == ApexState::InUse {
        let pid = d.owner_pid.map(|p| format!(" (pid {p})")).unwrap_or_default();
        out.push(Check::warn(
            format!("in use: {} is held by another process{pid}", d.name()),
            "stop that process (often another inference service) or use another device",
        ));
    }
    out
}

fn group_check(who: Option<&Identity>, etc_group: Option<&str>, devices: &[ApexDevice]) -> Check {
    let gid = etc_group.and_then(|text| {
        text.lines().find_map(|l| {
            let mut f = l.split(':');
            (f.next()? == "apex").then(|| f.nth(1)?.trim().parse::<u32>().ok()).flatten()
        })
    });
    match (gid, who) {
        (_, Some(w)) if w.uid == 0 => Check::ok("apex group: running as root, which needs no group"),
        (None, _) if etc_group.is_none() => Check::warn(
            "apex group: cannot read /etc/group; membership not checked",
            "check with `id` that you are in apex",
        ),
        (None, _) => Check::warn("apex group: there is no such group", INSTALL_RULES),
        (Some(_), None) => Check::warn(
            "apex group: cannot tell which groups this process has; membership not checked",
            "check with `id` that you are in apex",
        ),
        (Some(g), Some(w)) if w.gid == g || w.groups.contains(&g) => Check::ok("apex group: this session is in it"),
        (Some(_), Some(_)) => {
            let needed = devices.iter().any(|d| d.state == ApexState::NoPermission);
            let what = "apex group: this session is not in it";
            if needed {
                Check::fail(what, JOIN_GROUP)
            } else {
                Check::warn(what, JOIN_GROUP)
            }
        }
    }
}

fn rule_check(rule: Option<ApexRule>, devices: &[ApexDevice]) -> Check {
    let Some(rule) = rule else {
        let what = "udev rule: no rules file in /etc/udev/rules.d, /lib/udev/rules.d or /usr/lib/udev/rules.d \
                    matches SUBSYSTEM==\"apex\"";
        return if devices.iter().any(|d| d.state != ApexState::Ready && d.state != ApexState::InUse) {
            Check::fail(what, INSTALL_RULES)
        } else {
            Check::warn(what, INSTALL_RULES)
        };
    };
    let file = rule.file.display();
    let mode = rule.mode.map_or_else(|| "no MODE".to_string(), |m| format!("MODE {m:04o}"));
    match (rule.group.as_deref(), rule.mode) {
        (Some("apex"), Some(m)) if m & 0o060 == 0o060 => {
            Check::ok(format!("udev rule: {file} gives /dev/apex_* to group apex ({mode})"))
        }
        (group, _) => Check::warn(
            format!("udev rule: {file} matches apex but sets group {} and {mode}", group.unwrap_or("(none)")),
            INSTALL_RULES,
        ),
    }
}

fn aspm_check(policy: Option<String>, off_on_cmdline: bool, stuck: bool) -> Check {
    let what = match (&policy, off_on_cmdline) {
        (_, true) => "ASPM: off (pcie_aspm=off on the kernel command line)".to_string(),
        (Some(p), false) => format!("ASPM: policy {p}"),
        (None, false) => "ASPM: no policy reported".to_string(),
    };
    if stuck && !off_on_cmdline {
        Check::warn(format!("{what}; the card did not come up"), ASPM_ADVICE)
    } else {
        Check::ok(what)
    }
}

fn temperature_check(root: &Path, d: &ApexDevice) -> Option<Check> {
    use crate::devices::pcie::CLOCK_DERIVED;
    let t = apex_sysfs::telemetry(root, d.number).ok()?;
    let name = d.name();
    let temp = crate::devices::pcie::celsius(t.temp_mc?);
    let clock = t.clock.map(|c| c.to_string()).unwrap_or_else(|| "?".into());
    Some(match crate::devices::pcie::throttle_reason(&t) {
        Some(why) => Check::warn(
            format!("temperature: {name}: {why}, so the driver throttles the TPU: clock {clock}, {CLOCK_DERIVED}"),
            format!(
                "improve the cooling (heatsink, airflow); the trip points are {}/trip_point{{0,1,2}}_temp",
                d.sysfs.display()
            ),
        ),
        None => Check::ok(format!(
            "temperature: {name} at {temp}, clock {clock} ({CLOCK_DERIVED}; throttling from {})",
            crate::devices::pcie::celsius(t.effective_trip_points_mc()[0])
        )),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rule_values_and_aspm_and_pi5() {
        let line = r#"SUBSYSTEM=="apex", MODE="0660", GROUP:="apex""#;
        assert_eq!(rule_value(line, "MODE"), Some("0660"));
        assert_eq!(rule_value(line, "GROUP"), Some("apex"));
        assert_eq!(rule_value(line, "OWNER"), None);
        assert!(is_pi5("Raspberry Pi 5 Model B Rev 1.0") && is_pi5("Raspberry Pi Compute Module 5 Rev 1.0"));
        assert!(!is_pi5("Raspberry Pi 4 Model B Rev 1.4"));
        let c = aspm_check(Some("powersave".into()), false, true);
        assert!(c.status == super::super::Status::Warn && c.fix.as_deref().unwrap().contains("pcie_aspm=off"));
        assert_eq!(aspm_check(Some("default".into()), false, false).what, "ASPM: policy default");
        assert_eq!(aspm_check(None, true, true).status, super::super::Status::Ok);
    }

    #[test]
    fn apex_group_membership_and_the_udev_rule() {
        use super::super::Status;
        let who = |gid, groups: Vec<u32>| Identity { uid: 1000, gid, groups, pid: None };
        let etc = "users:x:100:\napex:x:120:bob\n";
        assert_eq!(group_check(Some(&who(100, vec![120])), Some(etc), &[]).status, Status::Ok);
        assert_eq!(group_check(Some(&who(120, vec![])), Some(etc), &[]).status, Status::Ok);
        let c = group_check(Some(&who(100, vec![4])), Some(etc), &[]);
        assert!(c.status == Status::Warn && c.fix.as_deref().unwrap().contains("usermod -aG apex"), "{c:?}");
        let c = group_check(Some(&who(100, vec![])), Some("users:x:100:\n"), &[]);
        assert!(c.what.contains("no such group") && c.fix.as_deref().unwrap().contains("udev/install.sh"), "{c:?}");
        assert_eq!(group_check(Some(&Identity::default()), None, &[]).status, Status::Ok);
        assert_eq!(group_check(None, Some(etc), &[]).status, Status::Warn);

        let rule = |group: Option<&str>, mode| ApexRule {
            file: "/r/65-apex.rules".into(),
            group: group.map(Into::into),
            mode,
        };
        assert_eq!(rule_check(Some(rule(Some("apex"), Some(0o660))), &[]).status, Status::Ok);
        let c = rule_check(Some(rule(Some("plugdev"), Some(0o660))), &[]);
        assert!(c.status == Status::Warn && c.what.contains("group plugdev and MODE 0660"), "{c:?}");
        assert_eq!(rule_check(Some(rule(Some("apex"), Some(0o600))), &[]).status, Status::Warn);
        let c = rule_check(None, &[]);
        assert!(c.status == Status::Warn && c.what.contains("SUBSYSTEM==\"apex\""), "{c:?}");
    }

    #[test]
    fn page_size_from_smaps_and_rules_from_files() {
        let root = std::env::temp_dir().join(format!("edgetpu-doctor-pcie-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("proc/self")).unwrap();
        assert_eq!(page_size(&root), None);
        std::fs::write(root.join("proc/self/smaps"), "a-b r--p 0 0:0 0\nKernelPageSize:       64 kB\n").unwrap();
        assert_eq!(page_size(&root), Some(65_536));
        std::fs::write(root.join("proc/self/smaps"), "KernelPageSize: many kB\n").unwrap();
        assert_eq!(page_size(&root), None);
        assert_eq!(page_check(Some(65_536), None, false).status, super::super::Status::Warn);

        let dir = root.join("lib/udev/rules.d");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("10-x.rules"), "# SUBSYSTEM==\"apex\", GROUP=\"nobody\"\n").unwrap();
        assert_eq!(apex_rule(&root), None);
        std::fs::write(dir.join("65-apex.rules"), "SUBSYSTEM == \"apex\", MODE=\"0666\", GROUP = \"apex\"\n").unwrap();
        let rule = apex_rule(&root).unwrap();
        assert_eq!((rule.group.as_deref(), rule.mode), (Some("apex"), Some(0o666)));
        assert!(rule.file.ends_with("65-apex.rules"));
        std::fs::remove_dir_all(&root).unwrap();
    }
}
