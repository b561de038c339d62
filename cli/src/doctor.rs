//! `edgetpu doctor`: checks what a Coral USB Accelerator needs on this machine (udev rules,
//! device-node permissions, the plugdev group, the firmware file, the USB link) and says how to
//! fix what is missing. PCIe Corals get their own checks ([`pcie`]).

mod pcie;

use crate::devices;
use anyhow::{bail, Result};
use edgetpu::device::usb::discovery::{self, CoralDevice, DeviceState};
use edgetpu::device::usb::firmware::{self as firmware_path, FILE_NAME, SINGLE_EP_LEN, SINGLE_EP_SHA256};
use edgetpu::device::usb::{APP_ID, DFU_ID};
use std::path::{Path, PathBuf};

/// Arguments of `edgetpu doctor`.
#[derive(clap::Args, Debug)]
pub struct Args {
    /// The firmware file to check (default: $EDGETPU_FIRMWARE, then
    /// ~/.local/share/edgetpu/apex_latest_single_ep.bin).
    #[arg(long, value_name = "PATH")]
    pub firmware: Option<PathBuf>,
    /// Also record a whole session with the device (firmware if needed, open, close) as a
    /// JSON-lines trace in FILE, to attach to a bug report.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,
    /// With --record: the device (usb, usb:N, usb:<bus>-<ports>, or sim for the simulator, which
    /// skips the system checks).
    #[arg(long, default_value = "usb")]
    pub device: String,
    /// With --record: a compiled model to run once (zero inputs) during the recorded session: a
    /// path, or the name of a catalog model fetched with `edgetpu models fetch`.
    #[arg(long, value_name = "MODEL")]
    pub model: Option<PathBuf>,
}

/// Where udev looks for rules files.
pub const UDEV_RULE_DIRS: [&str; 3] = ["/etc/udev/rules.d", "/lib/udev/rules.d", "/usr/lib/udev/rules.d"];

/// The group the shipped udev rules give access to.
pub const GROUP: &str = "plugdev";

/// Outcome of one check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// Nothing to do.
    Ok,
    /// May get in the way, or could not be checked.
    Warn,
    /// Stops the Coral from working.
    Fail,
}

/// One check: what was found and, unless it is fine, how to fix it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Outcome.
    pub status: Status,
    /// What was checked and what was found.
    pub what: String,
    /// What to do about it.
    pub fix: Option<String>,
}

impl Check {
    fn ok(what: impl Into<String>) -> Check {
        Check { status: Status::Ok, what: what.into(), fix: None }
    }
    fn warn(what: impl Into<String>, fix: impl Into<String>) -> Check {
        Check { status: Status::Warn, what: what.into(), fix: Some(fix.into()) }
    }
    fn fail(what: impl Into<String>, fix: impl Into<String>) -> Check {
        Check { status: Status::Fail, what: what.into(), fix: Some(fix.into()) }
    }
}

const INSTALL_RULES: &str = "run `sudo udev/install.sh` from the edgetpu repository, then replug the Coral";

pub fn run(args: &Args) -> Result<()> {
    let sim = args.device == "sim" || args.device == "sim:usb";
    // A catalog name stands for its compiled model (only a recorded session runs it).
    let model = match (&args.record, &args.model) {
        (Some(_), Some(m)) => Some(crate::models::resolve(m, || crate::models::Want::EdgeTpu)?.path),
        _ => None,
    };
    if let (Some(file), true) = (&args.record, sim) {
        return crate::record_session::record(file, &args.device, args.firmware.as_deref(), model.as_deref());
    }
    let mut checks = Vec::new();
    let linux = cfg!(target_os = "linux");
    if linux {
        let dirs: Vec<PathBuf> = UDEV_RULE_DIRS.iter().map(PathBuf::from).collect();
        checks.push(udev_rules(&dirs));
    }
    match devices::open_bus() {
        Err(e) => checks.push(Check::fail(
            format!("USB: {e:#}"),
            "make the USB devices visible to this system (in a container: `--device /dev/bus/usb`)",
        )),
        Ok(bus) => match discovery::list(&bus) {
            Err(e) => checks.push(Check::fail(format!("USB: {e}"), "see the error above")),
            Ok(corals) => {
                checks.push(found(&corals, devices::attached_count(&bus)));
                for dev in &corals {
                    if let Some(node) = &dev.info.node {
                        checks.push(node_permission(dev, node, discovery::node_access(node)));
                    }
                    checks.push(link_speed(dev));
                }
            }
        },
    }
    if linux {
        checks.extend(pcie::checks(&devices::pcie::sysfs_root()));
        let group_text = std::fs::read_to_string("/etc/group").ok();
        checks.push(group_membership(group_text.as_deref(), current_user().as_deref(), id_output(&["-Gn"]).as_deref()));
    }
    checks.push(firmware(firmware_path::locate(args.firmware.as_deref())));

    for c in &checks {
        print!("{}", render(c));
    }
    if let Some(file) = &args.record {
        crate::record_session::record(file, &args.device, args.firmware.as_deref(), model.as_deref())?;
    }
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    let warned = checks.iter().filter(|c| c.status == Status::Warn).count();
    if failed > 0 {
        bail!("{failed} check(s) failed, {warned} warning(s); apply the fixes above and run `edgetpu doctor` again");
    }
    if warned > 0 {
        println!("no failures, {warned} warning(s)");
    } else {
        println!("all checks passed");
    }
    Ok(())
}

/// A check as printed: `ok`/`warn`/`fail`, what was found, and the fix on the next line.
pub fn render(c: &Check) -> String {
    let tag = match c.status {
        Status::Ok => "ok",
        Status::Warn => "warn",
        Status::Fail => "fail",
    };
    let mut out = format!("{tag:5} {}\n", c.what);
    if let Some(fix) = &c.fix {
        out.push_str(&format!("      fix: {fix}\n"));
    }
    out
}

/// The name of the current user: `$USER`, else `id -un`.
fn current_user() -> Option<String> {
    std::env::var("USER").ok().filter(|u| !u.is_empty()).or_else(|| id_output(&["-un"]))
}

/// The trimmed output of `id ARGS`, when it runs and succeeds.
fn id_output(args: &[&str]) -> Option<String> {
    let out = std::process::Command::new("id").args(args).output().ok()?;
    let text = String::from_utf8(out.stdout).ok()?;
    (out.status.success() && !text.trim().is_empty()).then(|| text.trim().to_string())
}

/// Whether a non-comment line of `text` names both `vendor` and `product` (hex, any case).
fn mentions(text: &str, (vendor, product): (u16, u16)) -> bool {
    let (v, p) = (format!("{vendor:04x}"), format!("{product:04x}"));
    text.lines().map(|l| l.trim().to_ascii_lowercase()).any(|l| !l.starts_with('#') && l.contains(&v) && l.contains(&p))
}

/// The `*.rules` files of a udev rules directory, in name order (udev's), none when unreadable.
pub fn rules_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "rules"))
        .collect();
    files.sort();
    files
}

/// Whether a rules file's `TAG+="uaccess"` can take effect: systemd's `73-seat-late.rules` turns
/// the tag into an ACL, so only a file that sorts before it counts.
fn uaccess_in_time(file: &Path) -> bool {
    file.file_name().and_then(|n| n.to_str()).is_some_and(|n| n < "73-seat-late.rules")
}

/// Looks for a `*.rules` file in `dirs` covering both Coral USB ids.
pub fn udev_rules(dirs: &[PathBuf]) -> Check {
    let mut partial = None;
    for dir in dirs {
        for file in rules_files(dir) {
            // Rules files are small; anything unreadable (or a mask to /dev/null) covers nothing.
            let Ok(text) = std::fs::read_to_string(&file) else { continue };
            match (mentions(&text, APP_ID), mentions(&text, DFU_ID)) {
                (true, true) if text.contains("uaccess") && !uaccess_in_time(&file) => {
                    return Check::warn(
                        format!(
                            "udev rules: {} covers 18d1:9302 and 1a6e:089a, but its uaccess tag comes after \
                             73-seat-late.rules and has no effect: desktop users get access only through the \
                             plugdev group",
                            file.display()
                        ),
                        "reinstall the rules (`sudo udev/install.sh` installs 70-coral-edgetpu.rules and removes \
                         99-coral-edgetpu.rules), then replug the Coral",
                    )
                }
                (true, true) => {
                    return Check::ok(format!("udev rules: {} covers 18d1:9302 and 1a6e:089a", file.display()))
                }
                (true, false) | (false, true) => partial = partial.or(Some(file)),
                (false, false) => {}
            }
        }
    }
    let looked = dirs.iter().map(|d| d.display().to_string()).collect::<Vec<_>>().join(", ");
    match partial {
        Some(file) => Check::fail(
            format!(
                "udev rules: {} covers only one of the Coral's two ids (18d1:9302 running, 1a6e:089a before its \
                 firmware is loaded)",
                file.display()
            ),
            INSTALL_RULES,
        ),
        None => Check::fail(format!("udev rules: no rules file in {looked} mentions the Coral's ids"), INSTALL_RULES),
    }
}

/// Whether any Coral was found; `attached` is how many USB devices the bus shows.
pub fn found(corals: &[CoralDevice], attached: usize) -> Check {
    match corals.len() {
        0 => Check::warn(
            format!("devices: no Coral found among the {attached} USB device(s) attached"),
            "plug the Coral in with a data cable (not a charge-only one), try another port, and check that `lsusb` \
             lists 18d1:9302 or 1a6e:089a",
        ),
        n => Check::ok(format!(
            "devices: {n} Coral(s): {}",
            corals.iter().map(|d| format!("{} ({})", d.selector, d.state)).collect::<Vec<_>>().join(", ")
        )),
    }
}

/// The device node of `dev` can be opened for reading and writing (`access` is the result of
/// trying).
pub fn node_permission(dev: &CoralDevice, node: &Path, access: std::io::Result<()>) -> Check {
    match access {
        Ok(()) => Check::ok(format!("permissions: {} can open {}", dev.selector, node.display())),
        Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => Check::fail(
            format!("permissions: no read/write access to {} ({})", node.display(), dev.selector),
            format!(
                "{INSTALL_RULES}; without a desktop session (ssh, services) also join the group: \
                 `sudo usermod -aG {GROUP} $USER` and log in again"
            ),
        ),
        Err(e) => Check::warn(
            format!("permissions: cannot check {} ({}): {e}", node.display(), dev.selector),
            "replug the Coral and run `edgetpu doctor` again",
        ),
    }
}

/// The link speed of `dev` (a Coral in DFU mode is skipped: its link changes when the firmware
/// starts).
pub fn link_speed(dev: &CoralDevice) -> Check {
    if dev.state == DeviceState::NeedsFirmware {
        Check::ok(format!(
            "link: {} is in DFU mode ({}); its link is set when the firmware starts",
            dev.selector, dev.info.speed
        ))
    } else if devices::slow_link(dev) {
        Check::warn(format!("link: {} is on a {}", dev.selector, dev.info.speed), devices::USB2_ADVICE)
    } else {
        Check::ok(format!("link: {} is on {}", dev.selector, dev.info.speed))
    }
}

/// Whether `user` is in [`GROUP`], from the text of `/etc/group` and the output of `id -Gn` (the
/// groups of this login session); any of them may be missing.
pub fn group_membership(group_text: Option<&str>, user: Option<&str>, session_groups: Option<&str>) -> Check {
    let in_session = session_groups.is_some_and(|g| g.split_whitespace().any(|g| g == GROUP));
    if in_session {
        return Check::ok(format!("group: this session is in {GROUP}"));
    }
    if user == Some("root") {
        return Check::ok("group: running as root, which needs no group");
    }
    let Some(user) = user else {
        return Check::warn(
            format!("group: cannot tell who the current user is ($USER unset, `id -un` failed); {GROUP} not checked"),
            format!("check with `id` that you are in {GROUP}"),
        );
    };
    let join = format!(
        "`sudo usermod -aG {GROUP} {user}`, then log out and in again (desktop sessions also get access through \
         the udev rules' uaccess tag)"
    );
    let Some(text) = group_text else {
        return Check::warn(format!("group: cannot read /etc/group; {GROUP} membership of {user} not checked"), join);
    };
    let entry = text.lines().find(|l| l.split(':').next() == Some(GROUP));
    let Some(entry) = entry else {
        return Check::warn(
            format!("group: there is no {GROUP} group"),
            format!("{INSTALL_RULES} (it creates {GROUP})"),
        );
    };
    let members = entry.split(':').nth(3).unwrap_or("");
    if members.split(',').any(|m| m.trim() == user) {
        if session_groups.is_some() {
            Check::warn(
                format!("group: {user} is in {GROUP}, but this login session predates it"),
                "log out and in again (or run `newgrp plugdev`)",
            )
        } else {
            Check::ok(format!("group: {user} is in {GROUP}"))
        }
    } else {
        Check::warn(format!("group: {user} is not in {GROUP}"), join)
    }
}

/// The firmware file found (or the error of looking for it) is the single-endpoint image.
pub fn firmware(located: edgetpu::Result<PathBuf>) -> Check {
    let fetch = "run `edgetpu firmware fetch` (or pass --firmware PATH, or set EDGETPU_FIRMWARE)";
    let path = match located {
        Ok(p) => p,
        Err(e) => return Check::fail(format!("firmware: {e}"), "run `edgetpu firmware fetch`"),
    };
    let bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) => return Check::fail(format!("firmware: cannot read {}: {e}", path.display()), fetch),
    };
    let hash = edgetpu_models::download::sha256_hex(&bytes);
    if bytes.len() == SINGLE_EP_LEN && hash == SINGLE_EP_SHA256 {
        Check::ok(format!("firmware: {} ({} bytes, sha256 matches {FILE_NAME})", path.display(), bytes.len()))
    } else {
        Check::fail(
            format!(
                "firmware: {} is not {FILE_NAME} ({} bytes, sha256 {hash}; expected {SINGLE_EP_LEN} bytes, sha256 \
                 {SINGLE_EP_SHA256})",
                path.display(),
                bytes.len()
            ),
            fetch,
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgetpu::device::usb::{Speed, UsbDeviceInfo, UsbPath};

    fn temp_dir(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("edgetpu-doctor-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir
    }

    fn coral(id: (u16, u16), speed: Speed, state: DeviceState) -> CoralDevice {
        CoralDevice {
            info: UsbDeviceInfo {
                vendor: id.0,
                product: id.1,
                path: UsbPath::parse("2-1").unwrap(),
                address: 3,
                speed,
                node: Some("/dev/bus/usb/002/003".into()),
            },
            selector: "usb:2-1".into(),
            state,
        }
    }

    #[test]
    fn udev_rules_must_cover_both_ids() {
        let root = temp_dir("udev");
        let (etc, lib) = (root.join("etc"), root.join("lib"));
        std::fs::create_dir_all(&etc).unwrap();
        std::fs::create_dir_all(&lib).unwrap();
        let dirs = vec![etc.clone(), lib.clone(), root.join("missing")];
        let c = udev_rules(&dirs);
        assert_eq!(c.status, Status::Fail);
        assert!(c.fix.as_deref().unwrap().contains("sudo udev/install.sh"), "{c:?}");

        // Only the running id, and the DFU id only in a comment or a non-rules file: not enough.
        std::fs::write(
            etc.join("60-other.rules"),
            "# 1a6e 089a\nSUBSYSTEM==\"usb\", ATTRS{idVendor}==\"18D1\", ATTRS{idProduct}==\"9302\", MODE=\"0666\"\n",
        )
        .unwrap();
        std::fs::write(etc.join("notes.txt"), "1a6e 089a 18d1 9302").unwrap();
        let c = udev_rules(&dirs);
        assert_eq!(c.status, Status::Fail);
        assert!(c.what.contains("60-other.rules") && c.what.contains("only one"), "{c:?}");

        // The rules as an older install put them: a 99-* file, whose uaccess tag is too late.
        let shipped = include_str!("../../udev/70-coral-edgetpu.rules");
        std::fs::write(lib.join("99-coral-edgetpu.rules"), shipped).unwrap();
        let c = udev_rules(&dirs);
        assert_eq!(c.status, Status::Warn, "{c:?}");
        assert!(c.what.contains("73-seat-late.rules") && c.fix.as_deref().unwrap().contains("install.sh"), "{c:?}");
        std::fs::remove_file(lib.join("99-coral-edgetpu.rules")).unwrap();

        std::fs::write(lib.join("70-coral-edgetpu.rules"), shipped).unwrap();
        let c = udev_rules(&dirs);
        assert_eq!(c.status, Status::Ok, "{c:?}");
        assert!(c.what.contains("70-coral-edgetpu.rules"), "{c:?}");
        std::fs::remove_dir_all(&root).unwrap();
    }

    #[test]
    fn the_shipped_rules_give_desktop_users_uaccess_and_plugdev_access() {
        // uaccess only takes effect in a file that udev reads before 73-seat-late.rules; group
        // access works from anywhere.
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../udev");
        let files = rules_files(&dir);
        assert_eq!(files.len(), 1, "{files:?}");
        assert!(uaccess_in_time(&files[0]), "{} sorts after 73-seat-late.rules", files[0].display());
        let text = std::fs::read_to_string(&files[0]).unwrap();
        for id in ["\"1a6e\", ATTRS{idProduct}==\"089a\"", "\"18d1\", ATTRS{idProduct}==\"9302\""] {
            let line = text.lines().find(|l| !l.starts_with('#') && l.contains(id)).unwrap();
            assert!(line.contains("TAG+=\"uaccess\"") && line.contains("GROUP=\"plugdev\""), "{line}");
        }
        let install = std::fs::read_to_string(dir.join("install.sh")).unwrap();
        assert!(install.contains("/etc/udev/rules.d/70-coral-edgetpu.rules"), "install.sh installs the shipped file");
    }

    #[test]
    fn group_membership_from_etc_group_and_session() {
        let etc_group = "root:x:0:\nplugdev:x:46:alice, bob\nusers:x:100:carol\n";
        assert_eq!(group_membership(Some(etc_group), Some("bob"), None).status, Status::Ok);
        assert_eq!(group_membership(Some(etc_group), Some("root"), Some("root")).status, Status::Ok);
        let c = group_membership(Some(etc_group), Some("carol"), Some("carol users"));
        assert_eq!(c.status, Status::Warn);
        assert!(c.fix.as_deref().unwrap().contains("usermod -aG plugdev carol"), "{c:?}");
        // In /etc/group but not in this session: log in again.
        let c = group_membership(Some(etc_group), Some("alice"), Some("alice users"));
        assert_eq!(c.status, Status::Warn);
        assert!(c.what.contains("predates"), "{c:?}");
        // The session knows best (e.g. groups from LDAP).
        assert_eq!(group_membership(None, None, Some("dave plugdev")).status, Status::Ok);
        let c = group_membership(Some("root:x:0:\n"), Some("bob"), None);
        assert!(c.what.contains("no plugdev group"), "{c:?}");
        assert_eq!(group_membership(None, Some("bob"), None).status, Status::Warn);
        let c = group_membership(Some(etc_group), None, None);
        assert!(c.status == Status::Warn && c.what.contains("current user"), "{c:?}");
        // A malformed line does not panic and does not count.
        assert_eq!(group_membership(Some("plugdev"), Some("bob"), None).status, Status::Warn);
    }

    #[test]
    fn firmware_must_be_the_single_endpoint_image() {
        let dir = temp_dir("fw");
        let wrong = dir.join(FILE_NAME);
        std::fs::write(&wrong, vec![2u8; SINGLE_EP_LEN]).unwrap();
        let c = firmware(Ok(wrong.clone()));
        assert_eq!(c.status, Status::Fail);
        assert!(c.what.contains("sha256") && c.what.contains(SINGLE_EP_SHA256), "{c:?}");
        assert!(c.fix.as_deref().unwrap().contains("edgetpu firmware fetch"), "{c:?}");

        let missing = firmware_path::locate_from(None, None, Some(&dir.join("empty")));
        let c = firmware(missing);
        assert_eq!(c.status, Status::Fail);
        assert!(c.what.contains(FILE_NAME), "{c:?}");
        let c = firmware(Ok(dir.join("gone.bin")));
        assert!(c.status == Status::Fail && c.what.contains("cannot read"), "{c:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn node_permissions_and_link_speed() {
        let dev = coral(APP_ID, Speed::High, DeviceState::Ready);
        let node = Path::new("/dev/bus/usb/002/003");
        assert_eq!(node_permission(&dev, node, Ok(())).status, Status::Ok);
        let c = node_permission(&dev, node, Err(std::io::ErrorKind::PermissionDenied.into()));
        assert_eq!(c.status, Status::Fail);
        assert!(c.what.contains("/dev/bus/usb/002/003") && c.fix.as_deref().unwrap().contains("plugdev"), "{c:?}");
        assert_eq!(node_permission(&dev, node, Err(std::io::ErrorKind::NotFound.into())).status, Status::Warn);

        let c = link_speed(&dev);
        assert_eq!(c.status, Status::Warn);
        assert!(c.fix.as_deref().unwrap().contains("USB 3 cable"), "{c:?}");
        assert_eq!(link_speed(&coral(APP_ID, Speed::Super, DeviceState::Ready)).status, Status::Ok);
        assert_eq!(link_speed(&coral(DFU_ID, Speed::High, DeviceState::NeedsFirmware)).status, Status::Ok);
    }

    #[test]
    fn found_and_render() {
        let c = found(&[], 3);
        assert_eq!(c.status, Status::Warn);
        assert!(c.what.contains("3 USB device(s)"), "{c:?}");
        let c = found(&[coral(APP_ID, Speed::Super, DeviceState::InUse)], 3);
        assert_eq!(c.what, "devices: 1 Coral(s): usb:2-1 (in use)");
        assert_eq!(render(&c), "ok    devices: 1 Coral(s): usb:2-1 (in use)\n");
        assert_eq!(render(&Check::fail("x", "do y")), "fail  x\n      fix: do y\n");
    }
}
