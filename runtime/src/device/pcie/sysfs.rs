//! PCIe Corals (M.2 and Mini-PCIe cards, the Dual Edge TPU card, the Dev Board) as the apex
//! kernel driver shows them in sysfs: the list of devices, the selection strings that name one
//! (`pci`, `pci:N`, ...), whether another process owns a device, whether this user may open its
//! node, and thermal telemetry ([`telemetry`]).
//!
//! Every function takes the root of the file system to read: `/` in production ([`ROOT`]), a
//! fake tree in tests. Nothing here opens a device node: opening `/dev/apex_N` for writing
//! makes the caller its owner and resets the chip, so ownership and permissions are read from
//! sysfs and from the node's metadata instead.
//!
//! The attributes and their formats are those of the gasket framework and the apex driver
//! (`gasket_core.c`, `apex_driver.c` in google/gasket-driver), under
//! `/sys/class/apex/apex_N/`:
//!
//! | attribute | format |
//! |---|---|
//! | `is_device_owned` | `0` or `1`: a process holds the node open for writing |
//! | `device_owner` | the owning process's thread-group id, `0` when free |
//! | `status` | `ALIVE`, `LAMED` (interrupts not set up), `DEAD`, `DRIVER_EXITING` |
//! | `driver_version`, `framework_version` | apex driver and gasket framework versions |
//! | `pci_address` | the PCI device name, e.g. `0000:01:00.0` (also the `device` link's target) |
//! | `temp`, `trip_point{0,1,2}_temp`, `hw_temp_warn{1,2}` | milli-°C |
//! | `hw_temp_warn{1,2}_en` | `0` or `1` |
//! | `temp_poll_interval` | milliseconds between the driver's thermal checks, `0` = off |
//! | `unique_id` | 32 hex digits from the e-fuses (newer drivers only) |
//!
//! The gasket framework refuses a second writer with `EPERM` while `is_device_owned` is `1`
//! (root excepted), which is why an owned device is reported as [`ApexState::InUse`].

use crate::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::{Path, PathBuf};

mod thermal;
pub use thermal::{derive_clock, read_telemetry, telemetry, ClockStep, Telemetry, DEFAULT_TRIP_POINTS_MC};

/// The root of the real file system.
pub const ROOT: &str = "/";

/// The sysfs class directory of the apex driver, relative to the root.
pub const CLASS_DIR: &str = "sys/class/apex";

/// The user and groups this process runs as, from `/proc/self/status`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Identity {
    /// Effective user id.
    pub uid: u32,
    /// Effective group id.
    pub gid: u32,
    /// Supplementary group ids.
    pub groups: Vec<u32>,
    /// Thread-group id (the process id), compared with a device's `device_owner`.
    pub pid: Option<u32>,
}

impl Identity {
    /// Parses the text of `/proc/self/status` (`Uid:`, `Gid:`, `Groups:` and `Tgid:` lines);
    /// `None` when the `Uid:` or `Gid:` line is missing or malformed.
    pub fn parse_status(text: &str) -> Option<Identity> {
        let field = |name: &str| text.lines().find_map(|l| l.strip_prefix(name)).map(str::split_whitespace);
        // `Uid:` and `Gid:` hold real, effective, saved and file-system ids; access uses the
        // effective one.
        let effective = |name: &str| field(name)?.nth(1)?.parse().ok();
        let groups = field("Groups:").map(|g| g.filter_map(|x| x.parse().ok()).collect()).unwrap_or_default();
        let pid = field("Tgid:").and_then(|mut t| t.next()?.parse().ok());
        Some(Identity { uid: effective("Uid:")?, gid: effective("Gid:")?, groups, pid })
    }

    /// The identity of this process as `<root>/proc/self/status` gives it.
    pub fn read(root: &Path) -> Option<Identity> {
        let text = std::fs::read_to_string(root.join("proc/self/status")).ok()?;
        Identity::parse_status(&text)
    }

    /// Whether a node with these permission bits, owner and group can be opened for reading
    /// and writing. Root may open any device node; otherwise the owner bits apply to the
    /// owner, the group bits to members of the group, the other bits to everyone else, as the
    /// kernel checks them. POSIX ACLs are not consulted.
    pub fn can_read_write(&self, mode: u32, owner: u32, group: u32) -> bool {
        if self.uid == 0 {
            return true;
        }
        let bits = if self.uid == owner {
            mode >> 6
        } else if self.gid == group || self.groups.contains(&group) {
            mode >> 3
        } else {
            mode
        };
        bits & 0o6 == 0o6
    }
}

/// Whether a PCIe Coral can be used right now, as far as sysfs and the node's metadata tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApexState {
    /// The node exists, this user may open it, and no other process owns the device.
    Ready,
    /// Another process has the node open for writing (`is_device_owned` is `1`).
    InUse,
    /// This user may not open the node for reading and writing.
    NoPermission,
    /// The driver lists the device but `/dev/apex_N` does not exist (udev did not create it).
    NodeMissing,
}

impl fmt::Display for ApexState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ApexState::Ready => "ready",
            ApexState::InUse => "in use",
            ApexState::NoPermission => "no permission",
            ApexState::NodeMissing => "node missing",
        })
    }
}

/// The device node's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeInfo {
    /// Permission bits (`mode & 0o7777`).
    pub mode: u32,
    /// Owner user id.
    pub uid: u32,
    /// Owner group id.
    pub gid: u32,
    /// The group's name, from `<root>/etc/group`, when it is there.
    pub group: Option<String>,
}

/// A PCIe Coral listed by the apex driver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApexDevice {
    /// `N` of `apex_N`.
    pub number: u32,
    /// The selection string naming it by position, `pci:<index in the list>`.
    pub selector: String,
    /// Its sysfs directory, `<root>/sys/class/apex/apex_N`.
    pub sysfs: PathBuf,
    /// Its device node, `<root>/dev/apex_N`.
    pub node: PathBuf,
    /// The node's metadata; `None` when the node does not exist.
    pub node_info: Option<NodeInfo>,
    /// `is_device_owned`; `None` when missing or unreadable.
    pub owned: Option<bool>,
    /// `device_owner`, the owning process id, when the device is owned.
    pub owner_pid: Option<u32>,
    /// The PCI address, e.g. `0000:01:00.0` (`pci_address`, else the `device` link's target).
    pub pci_address: Option<String>,
    /// `driver_version` (the apex driver's).
    pub driver_version: Option<String>,
    /// `framework_version` (the gasket framework's).
    pub framework_version: Option<String>,
    /// `status`: `ALIVE`, or `LAMED` when the driver could not set up the interrupts.
    pub status: Option<String>,
    /// Whether it can be used now.
    pub state: ApexState,
}

impl ApexDevice {
    /// `apex_N`.
    pub fn name(&self) -> String {
        format!("apex_{}", self.number)
    }
}

/// Reads one sysfs attribute, trimmed of whitespace and NULs; `None` when missing, unreadable
/// or empty.
pub fn read_attr(dir: &Path, name: &str) -> Option<String> {
    let text = std::fs::read_to_string(dir.join(name)).ok()?;
    let text = text.trim_matches(|c: char| c.is_whitespace() || c == '\0');
    (!text.is_empty()).then(|| text.to_string())
}

/// `0`/`1` attributes.
pub(crate) fn parse_flag(text: &str) -> Option<bool> {
    match text.parse::<i64>().ok()? {
        0 => Some(false),
        1 => Some(true),
        _ => None,
    }
}

/// The `apex_N` numbers under `<root>/sys/class/apex`, sorted. No class directory (the driver
/// is not loaded) is an empty list; an unreadable one is an error naming it.
pub fn numbers(root: &Path) -> Result<Vec<u32>> {
    let dir = root.join(CLASS_DIR);
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => return Err(Error::Io { path: dir, source }),
    };
    let mut out: Vec<u32> = entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.strip_prefix("apex_")?.parse().ok())
        .collect();
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// Every PCIe Coral under `root`, in `apex_N` order, with its state. The identity of this
/// process comes from `<root>/proc/self/status`; when it cannot be read, root is assumed not
/// to be the caller and only the node's "other" permission bits count.
pub fn list(root: &Path) -> Result<Vec<ApexDevice>> {
    let who = Identity::read(root);
    let groups = std::fs::read_to_string(root.join("etc/group")).ok();
    Ok(numbers(root)?
        .into_iter()
        .enumerate()
        .map(|(i, n)| probe(root, n, i, who.as_ref(), groups.as_deref()))
        .collect())
}

/// Reads one device; `index` is its position in the list.
fn probe(root: &Path, number: u32, index: usize, who: Option<&Identity>, groups: Option<&str>) -> ApexDevice {
    use std::os::unix::fs::MetadataExt;
    let sysfs = root.join(CLASS_DIR).join(format!("apex_{number}"));
    let node = root.join(format!("dev/apex_{number}"));
    let node_info = std::fs::metadata(&node).ok().map(|m| NodeInfo {
        mode: m.mode() & 0o7777,
        uid: m.uid(),
        gid: m.gid(),
        group: groups.and_then(|g| group_name(g, m.gid())),
    });
    let owned = read_attr(&sysfs, "is_device_owned").and_then(|t| parse_flag(&t));
    let owner_pid = read_attr(&sysfs, "device_owner").and_then(|t| t.parse().ok()).filter(|&p: &u32| p != 0);
    let pci_address = read_attr(&sysfs, "pci_address").or_else(|| pci_link(&sysfs));
    let nobody = Identity { uid: u32::MAX, gid: u32::MAX, groups: Vec::new(), pid: None };
    let who = who.unwrap_or(&nobody);
    let state = match &node_info {
        None => ApexState::NodeMissing,
        Some(n) if !who.can_read_write(n.mode, n.uid, n.gid) => ApexState::NoPermission,
        Some(_) if owned == Some(true) && (owner_pid.is_none() || owner_pid != who.pid) => ApexState::InUse,
        Some(_) => ApexState::Ready,
    };
    ApexDevice {
        number,
        selector: format!("pci:{index}"),
        node_info,
        owned,
        owner_pid,
        pci_address,
        driver_version: read_attr(&sysfs, "driver_version"),
        framework_version: read_attr(&sysfs, "framework_version"),
        status: read_attr(&sysfs, "status"),
        state,
        sysfs,
        node,
    }
}

/// The PCI address from the device directory's links: the `device` link's target, else the link
/// gasket names after the PCI device.
fn pci_link(sysfs: &Path) -> Option<String> {
    if let Ok(target) = std::fs::read_link(sysfs.join("device")) {
        return Some(target.file_name()?.to_str()?.to_string());
    }
    std::fs::read_dir(sysfs).ok()?.filter_map(|e| e.ok()).find_map(|e| {
        let name = e.file_name().into_string().ok()?;
        let is_link = e.file_type().ok()?.is_symlink();
        (is_link && parse_pci_address(&name).as_deref() == Some(name.as_str())).then_some(name)
    })
}

/// The name of group `gid` in the text of `/etc/group`.
pub fn group_name(etc_group: &str, gid: u32) -> Option<String> {
    etc_group.lines().find_map(|l| {
        let mut f = l.split(':');
        let name = f.next()?;
        (f.nth(1)?.trim().parse::<u32>().ok()? == gid).then(|| name.to_string())
    })
}

/// Which PCIe Coral to use, as written on a command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PciSelector {
    /// `pci`: the first PCIe Coral that is ready (not in use, openable).
    Any,
    /// `pci:N`: the N-th PCIe Coral in `apex_N` order, counting from 0 (the order of `edgetpu
    /// devices`; it equals the `apex_N` number unless a number is missing).
    Index(usize),
    /// `pci:apex_N` or `pci:/dev/apex_N`: that device node.
    Number(u32),
    /// `pci:DDDD:BB:DD.F` (or `pci:BB:DD.F`, domain 0000): the Coral at that PCI address, which
    /// stays the same across reboots as long as the card stays in its slot.
    Address(String),
}

impl PciSelector {
    /// Parses a selection string; the error (kind [`ErrorKind::InvalidArgument`]) shows the
    /// accepted forms.
    pub fn parse(s: &str) -> Result<PciSelector> {
        let bad = |why: &str| {
            Error::argument(format!(
                "invalid device `{s}`: {why}; expected `pci` (the first free PCIe Coral), `pci:N` (the N-th, \
                 counting from 0), `pci:apex_N` or `pci:/dev/apex_N` (that device node) or `pci:DDDD:BB:DD.F` (a \
                 PCI address, e.g. `pci:0000:01:00.0`)"
            ))
        };
        let rest = match s.strip_prefix("pci") {
            Some("") => return Ok(PciSelector::Any),
            Some(rest) => rest.strip_prefix(':').ok_or_else(|| bad("unknown device type"))?,
            None => return Err(bad("not a PCIe device string")),
        };
        if rest.is_empty() {
            return Err(bad("nothing after `pci:`"));
        }
        if rest.bytes().all(|b| b.is_ascii_digit()) {
            return rest.parse().map(PciSelector::Index).map_err(|_| bad("index out of range"));
        }
        if let Some(n) = rest.strip_prefix("/dev/apex_").or_else(|| rest.strip_prefix("apex_")) {
            return match n.bytes().all(|b| b.is_ascii_digit()) {
                true => n.parse().map(PciSelector::Number).map_err(|_| bad("device number out of range")),
                false => Err(bad("`apex_` must be followed by a number")),
            };
        }
        if rest.contains(':') {
            return parse_pci_address(rest)
                .map(PciSelector::Address)
                .ok_or_else(|| bad("not a PCI address (hexadecimal domain:bus:device.function, e.g. 0000:01:00.0)"));
        }
        Err(bad("neither an index, a device node nor a PCI address"))
    }
}

/// Normalises `DDDD:BB:DD.F` or `BB:DD.F` (hexadecimal) to the kernel's lowercase
/// `dddd:bb:dd.f`; `None` when malformed.
pub fn parse_pci_address(s: &str) -> Option<String> {
    let parts: Vec<&str> = s.split(':').collect();
    let (domain, bus, slot) = match parts.as_slice() {
        [d, b, s] => (*d, *b, *s),
        [b, s] => ("0", *b, *s),
        _ => return None,
    };
    let (dev, func) = slot.split_once('.')?;
    let hex = |t: &str, max: u32| {
        let ok = !t.is_empty() && t.len() <= 4 && t.bytes().all(|b| b.is_ascii_hexdigit());
        u32::from_str_radix(t, 16).ok().filter(|&v| ok && v <= max)
    };
    let (d, b, v, f) = (hex(domain, 0xffff)?, hex(bus, 0xff)?, hex(dev, 0x1f)?, hex(func, 7)?);
    Some(format!("{d:04x}:{b:02x}:{v:02x}.{f:x}"))
}

impl std::str::FromStr for PciSelector {
    type Err = Error;
    fn from_str(s: &str) -> Result<PciSelector> {
        PciSelector::parse(s)
    }
}

impl fmt::Display for PciSelector {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PciSelector::Any => f.write_str("pci"),
            PciSelector::Index(n) => write!(f, "pci:{n}"),
            PciSelector::Number(n) => write!(f, "pci:apex_{n}"),
            PciSelector::Address(a) => write!(f, "pci:{a}"),
        }
    }
}

/// The PCIe Coral `sel` names under `root`, checked to be usable: see [`choose`].
pub fn select(root: &Path, sel: &PciSelector) -> Result<ApexDevice> {
    choose(&list(root)?, sel, root)
}

/// The device of `devices` (a [`list`] under `root`) that `sel` names. It is an error when
/// there is none (kind [`ErrorKind::NotFound`], listing what there is), when its node is
/// missing ([`ErrorKind::NotFound`]), when this user may not open it
/// ([`ErrorKind::PermissionDenied`]) and when another process owns it ([`ErrorKind::Busy`]);
/// each message says what to do. `pci` takes the first ready device, or reports why the first
/// one is not.
pub fn choose(devices: &[ApexDevice], sel: &PciSelector, root: &Path) -> Result<ApexDevice> {
    let chosen = match sel {
        PciSelector::Any => devices.iter().find(|d| d.state == ApexState::Ready).or(devices.first()),
        PciSelector::Index(n) => devices.get(*n),
        PciSelector::Number(n) => devices.iter().find(|d| d.number == *n),
        PciSelector::Address(a) => devices.iter().find(|d| d.pci_address.as_deref() == Some(a.as_str())),
    };
    let Some(dev) = chosen else {
        return Err(Error::pci(sel.to_string(), ErrorKind::NotFound, not_found(devices, root)));
    };
    if dev.state == ApexState::Ready {
        return Ok(dev.clone());
    }
    let mut reason = unusable(dev);
    if *sel == PciSelector::Any && devices.len() > 1 {
        reason.push_str(&format!("; none of the {} PCIe Corals is free: {}", devices.len(), summary(devices)));
    }
    let kind = match dev.state {
        ApexState::InUse => ErrorKind::Busy,
        ApexState::NoPermission => ErrorKind::PermissionDenied,
        ApexState::NodeMissing | ApexState::Ready => ErrorKind::NotFound,
    };
    Err(Error::pci(sel.to_string(), kind, reason))
}

/// `pci:0 (apex_0, in use), ...`.
fn summary(devices: &[ApexDevice]) -> String {
    devices.iter().map(|d| format!("{} ({}, {})", d.selector, d.name(), d.state)).collect::<Vec<_>>().join(", ")
}

fn not_found(devices: &[ApexDevice], root: &Path) -> String {
    if devices.is_empty() {
        return format!(
            "no PCIe Coral found: {} lists no apex_N device: the apex driver is not loaded, or the card is not \
             seen on the PCI bus",
            root.join(CLASS_DIR).display()
        );
    }
    format!("the PCIe Corals found are {} (`pci:N` counts from 0)", summary(devices))
}

/// Why `dev` cannot be used, and what to do.
fn unusable(dev: &ApexDevice) -> String {
    let (name, node) = (dev.name(), dev.node.display());
    match (dev.state, &dev.node_info) {
        (ApexState::InUse, _) => {
            let owner = dev.owner_pid.map(|p| format!(", device_owner={p}")).unwrap_or_default();
            format!("{name} is in use by another process (is_device_owned=1{owner})")
        }
        (ApexState::NoPermission, Some(n)) => format!(
            "this user may not open {node} for reading and writing (mode {:04o}, owner uid {}, group {}): the \
             device node needs the udev rule that gives group apex read/write access, and this user that group",
            n.mode,
            n.uid,
            n.group.clone().unwrap_or_else(|| format!("gid {}", n.gid))
        ),
        (ApexState::NodeMissing, _) | (ApexState::NoPermission, None) => format!(
            "the apex driver lists {name} but its device node {node} does not exist (udev creates it when the \
             driver loads)"
        ),
        (ApexState::Ready, _) => format!("{name} is ready"),
    }
}

#[cfg(test)]
mod tests;
