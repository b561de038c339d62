use super::*;
use std::os::unix::fs::PermissionsExt;

/// A fake root directory, removed on drop.
struct Tree(PathBuf);

impl Tree {
    fn new(name: &str) -> Tree {
        let dir = std::env::temp_dir().join(format!("edgetpu-apex-sysfs-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        Tree(dir)
    }

    fn write(&self, rel: &str, text: &str) {
        let path = self.0.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// This process as uid 1000, gid 1000, in groups 1000 and `groups`, pid 4242.
    fn user(&self, groups: &str) {
        self.user_as(1000, 1000, groups);
    }

    fn user_as(&self, uid: u32, gid: u32, groups: &str) {
        let ids = |id: u32| format!("{id}\t{id}\t{id}\t{id}");
        let status =
            format!("Name:\tedgetpu\nTgid:\t4242\nUid:\t{}\nGid:\t{}\nGroups:\t{gid} {groups}\n", ids(uid), ids(gid));
        self.write("proc/self/status", &status);
    }

    /// `apex_N` with the attributes given, a `device` link to `pci`, and a node with `mode`
    /// (`None`: no node).
    fn apex(&self, n: u32, attrs: &[(&str, &str)], pci: &str, mode: Option<u32>) {
        let dir = format!("sys/class/apex/apex_{n}");
        for (name, value) in attrs {
            self.write(&format!("{dir}/{name}"), &format!("{value}\n"));
        }
        std::fs::create_dir_all(self.0.join(&dir)).unwrap();
        let target = format!("../../../devices/pci0000:00/0000:00:1c.0/{pci}");
        std::os::unix::fs::symlink(target, self.0.join(&dir).join("device")).unwrap();
        if let Some(mode) = mode {
            let node = format!("dev/apex_{n}");
            self.write(&node, "");
            std::fs::set_permissions(self.0.join(node), std::fs::Permissions::from_mode(mode)).unwrap();
        }
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The node's owner and group in the fake tree are this test process's; the identity in
/// `proc/self/status` decides which bits apply.
fn node_ids(tree: &Tree, n: u32) -> (u32, u32) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(tree.0.join(format!("dev/apex_{n}"))).unwrap();
    (m.uid(), m.gid())
}

#[test]
fn no_driver_no_devices_and_a_clear_error() {
    let tree = Tree::new("none");
    assert_eq!(list(&tree.0).unwrap(), vec![]);
    let err = select(&tree.0, &PciSelector::Any).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    let text = err.to_string();
    assert!(text.starts_with("pci: no PCIe Coral found") && text.contains("sys/class/apex"), "{text}");
    assert!(text.contains("apex driver is not loaded") && !text.contains("edgetpu doctor"), "{text}");
    // Other entries in the class directory are not devices.
    tree.write("sys/class/apex/README", "x");
    assert_eq!(numbers(&tree.0).unwrap(), Vec::<u32>::new());
}

#[test]
fn one_device_ready_with_its_attributes() {
    let tree = Tree::new("one");
    tree.user("");
    let attrs = [
        ("is_device_owned", "0"),
        ("device_owner", "0"),
        ("driver_version", "1.1"),
        ("framework_version", "1.1.4"),
        ("status", "ALIVE"),
    ];
    tree.apex(0, &attrs, "0000:01:00.0", Some(0o666));
    let devs = list(&tree.0).unwrap();
    assert_eq!(devs.len(), 1);
    let d = &devs[0];
    assert_eq!((d.number, d.selector.as_str(), d.name()), (0, "pci:0", "apex_0".to_string()));
    assert_eq!(d.state, ApexState::Ready);
    assert_eq!(d.owned, Some(false));
    assert_eq!(d.owner_pid, None);
    // No `pci_address` attribute: the `device` link's target names it.
    assert_eq!(d.pci_address.as_deref(), Some("0000:01:00.0"));
    assert_eq!(d.driver_version.as_deref(), Some("1.1"));
    assert_eq!(d.framework_version.as_deref(), Some("1.1.4"));
    assert_eq!(d.status.as_deref(), Some("ALIVE"));
    assert_eq!(d.node, tree.0.join("dev/apex_0"));
    assert_eq!(d.node_info.as_ref().unwrap().mode, 0o666);
    assert_eq!(select(&tree.0, &PciSelector::Any).unwrap(), *d);
    assert_eq!(select(&tree.0, &PciSelector::Index(0)).unwrap().number, 0);
    let err = select(&tree.0, &PciSelector::Index(1)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("pci:0 (apex_0, ready)"), "{err}");
}

#[test]
fn two_devices_sorted_by_number_and_selected_by_each_form() {
    let tree = Tree::new("two");
    tree.user("");
    // Created out of order, numbered 2 and 10 (sorted numerically, not as text).
    tree.apex(10, &[("is_device_owned", "0"), ("pci_address", "0000:04:00.0")], "0000:04:00.0", Some(0o666));
    tree.apex(2, &[("is_device_owned", "0")], "0000:03:00.0", Some(0o666));
    let devs = list(&tree.0).unwrap();
    let got: Vec<(u32, &str)> = devs.iter().map(|d| (d.number, d.selector.as_str())).collect();
    assert_eq!(got, vec![(2, "pci:0"), (10, "pci:1")]);
    assert_eq!(select(&tree.0, &"pci:1".parse().unwrap()).unwrap().number, 10);
    assert_eq!(select(&tree.0, &"pci:apex_2".parse().unwrap()).unwrap().number, 2);
    assert_eq!(select(&tree.0, &"pci:/dev/apex_10".parse().unwrap()).unwrap().number, 10);
    assert_eq!(select(&tree.0, &"pci:04:00.0".parse().unwrap()).unwrap().number, 10);
    let err = select(&tree.0, &"pci:apex_3".parse().unwrap()).unwrap_err();
    assert!(err.to_string().starts_with("pci:apex_3: the PCIe Corals found are pci:0 (apex_2, ready)"), "{err}");
    let err = select(&tree.0, &"pci:0000:05:00.0".parse().unwrap()).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);

    // Without `pci_address` and `device`, the link gasket names after the PCI device.
    std::fs::remove_file(tree.0.join("sys/class/apex/apex_2/device")).unwrap();
    assert_eq!(list(&tree.0).unwrap()[0].pci_address, None);
    std::os::unix::fs::symlink("../../0000:03:00.0", tree.0.join("sys/class/apex/apex_2/0000:03:00.0")).unwrap();
    assert_eq!(list(&tree.0).unwrap()[0].pci_address.as_deref(), Some("0000:03:00.0"));
}

#[test]
fn an_owned_device_is_in_use_and_pci_skips_it() {
    let tree = Tree::new("owned");
    tree.user("");
    tree.apex(0, &[("is_device_owned", "1"), ("device_owner", "1234")], "0000:01:00.0", Some(0o666));
    tree.apex(1, &[("is_device_owned", "0")], "0000:02:00.0", Some(0o666));
    let devs = list(&tree.0).unwrap();
    assert_eq!(devs[0].state, ApexState::InUse);
    assert_eq!(devs[0].owner_pid, Some(1234));
    let err = select(&tree.0, &PciSelector::Index(0)).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Busy);
    let text = err.to_string();
    assert!(
        text.starts_with("pci:0: apex_0 is in use by another process (is_device_owned=1, device_owner=1234)"),
        "{text}"
    );
    // `pci` takes the first free one.
    assert_eq!(select(&tree.0, &PciSelector::Any).unwrap().number, 1);

    // All owned: `pci` names the first and lists them all.
    tree.write("sys/class/apex/apex_1/is_device_owned", "1\n");
    let err = select(&tree.0, &PciSelector::Any).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Busy);
    let text = err.to_string();
    assert!(text.contains("apex_0 is in use") && text.contains("pci:1 (apex_1, in use)"), "{text}");

    // Owned by this very process (the open session of the caller): not in use.
    tree.write("sys/class/apex/apex_0/device_owner", "4242\n");
    assert_eq!(list(&tree.0).unwrap()[0].state, ApexState::Ready);
}

#[test]
fn permissions_follow_owner_group_and_other_bits() {
    let tree = Tree::new("perm");
    tree.apex(0, &[("is_device_owned", "0")], "0000:01:00.0", Some(0o660));
    let (uid, gid) = node_ids(&tree, 0);
    tree.write("etc/group", &format!("users:x:{}:\napex:x:{gid}:\n", gid.wrapping_add(7)));
    // The fake identity is neither the node's owner nor in its group.
    let (me, my_group) = (uid.wrapping_add(1).max(1), gid.wrapping_add(1));
    tree.user_as(me, my_group, "");
    let d = list(&tree.0).unwrap().remove(0);
    assert_eq!(d.state, ApexState::NoPermission);
    assert_eq!(d.node_info.unwrap().group.as_deref(), Some("apex"));
    let err = select(&tree.0, &PciSelector::Any).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::PermissionDenied);
    let text = err.to_string();
    assert!(text.contains("mode 0660") && text.contains("group apex"), "{text}");
    assert!(text.contains("udev rule") && !text.contains("sudo"), "the library states facts, the CLI advises: {text}");
    // Joining the group gives access.
    tree.user_as(me, my_group, &gid.to_string());
    assert_eq!(list(&tree.0).unwrap()[0].state, ApexState::Ready);

    let who = Identity { uid: 1000, gid: 100, groups: vec![46, 999], pid: None };
    assert!(who.can_read_write(0o660, 0, 999));
    assert!(!who.can_read_write(0o640, 0, 999));
    assert!(!who.can_read_write(0o660, 0, 998));
    assert!(who.can_read_write(0o666, 0, 998));
    // The owner bits apply to the owner even when the group would allow more.
    assert!(!who.can_read_write(0o066, 1000, 999));
    assert!(Identity { uid: 0, ..who.clone() }.can_read_write(0o000, 5, 5));
}

#[test]
fn a_missing_node_says_so() {
    let tree = Tree::new("nonode");
    tree.user("");
    tree.apex(0, &[("is_device_owned", "0")], "0000:01:00.0", None);
    let d = list(&tree.0).unwrap().remove(0);
    assert_eq!((d.state, d.node_info), (ApexState::NodeMissing, None));
    let err = select(&tree.0, &PciSelector::Any).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("dev/apex_0 does not exist") && err.to_string().contains("udev"), "{err}");
}

#[test]
fn bad_attribute_contents_are_unknown_not_errors() {
    let tree = Tree::new("bad");
    tree.user("");
    tree.apex(0, &[("is_device_owned", "maybe"), ("device_owner", "-3"), ("status", "")], "0000:01:00.0", Some(0o666));
    let d = list(&tree.0).unwrap().remove(0);
    assert_eq!((d.owned, d.owner_pid, d.status), (None, None, None));
    assert_eq!(d.state, ApexState::Ready);
    // Without a readable identity only the "other" bits count.
    std::fs::remove_file(tree.0.join("proc/self/status")).unwrap();
    std::fs::set_permissions(tree.0.join("dev/apex_0"), std::fs::Permissions::from_mode(0o660)).unwrap();
    assert_eq!(list(&tree.0).unwrap()[0].state, ApexState::NoPermission);
}

#[test]
fn identity_from_proc_status() {
    let text = "Name:\tx\nTgid:\t77\nUid:\t1000\t1001\t1000\t1000\nGid:\t50\t51\t50\t50\nGroups:\t4 24 27 \n";
    let who = Identity::parse_status(text).unwrap();
    assert_eq!(who, Identity { uid: 1001, gid: 51, groups: vec![4, 24, 27], pid: Some(77) });
    assert_eq!(Identity::parse_status("Uid:\t1\t2\t3\t4\nGroups:\n").map(|w| w.uid), None);
    assert_eq!(Identity::parse_status("Uid:\tx\tx\nGid:\t1\t1\n"), None);
    assert_eq!(group_name("a:x:1:\nb:x:2:u\nbroken\n", 2).as_deref(), Some("b"));
    assert_eq!(group_name("a:x:1:\n", 3), None);
}

#[test]
fn selection_strings() {
    assert_eq!(PciSelector::parse("pci").unwrap(), PciSelector::Any);
    assert_eq!(PciSelector::parse("pci:3").unwrap(), PciSelector::Index(3));
    assert_eq!(PciSelector::parse("pci:apex_1").unwrap(), PciSelector::Number(1));
    assert_eq!(PciSelector::parse("pci:/dev/apex_0").unwrap(), PciSelector::Number(0));
    assert_eq!(PciSelector::parse("pci:01:00.0").unwrap(), PciSelector::Address("0000:01:00.0".into()));
    assert_eq!(PciSelector::parse("pci:0001:0A:1f.7").unwrap(), PciSelector::Address("0001:0a:1f.7".into()));
    for (bad, why) in [
        ("usb:0", "not a PCIe device string"),
        ("pcie", "unknown device type"),
        ("pci:", "nothing after"),
        ("pci:apex_x", "followed by a number"),
        ("pci:01:00.8", "not a PCI address"),
        ("pci:1:2:3:4", "not a PCI address"),
        ("pci:zz", "neither an index"),
        ("pci:99999999999999999999999", "out of range"),
    ] {
        let err = PciSelector::parse(bad).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::InvalidArgument, "{bad}");
        let text = err.to_string();
        assert!(text.contains(why) && text.contains("pci:N"), "{bad}: {text}");
    }
    for s in ["pci", "pci:2", "pci:apex_4", "pci:0000:01:00.0"] {
        assert_eq!(PciSelector::parse(s).unwrap().to_string(), s);
    }
}

#[test]
fn telemetry_values_and_the_derived_clock_around_each_trip_point() {
    let tree = Tree::new("thermal");
    tree.apex(
        0,
        &[
            ("temp", "45250"),
            ("trip_point0_temp", "85000"),
            ("trip_point1_temp", "90000"),
            ("trip_point2_temp", "95000"),
            ("hw_temp_warn1", "100000"),
            ("hw_temp_warn1_en", "0"),
            ("hw_temp_warn2", "110000"),
            ("hw_temp_warn2_en", "1"),
            ("temp_poll_interval", "5000"),
            ("unique_id", "0123456789abcdef0123456789abcdef"),
        ],
        "0000:01:00.0",
        Some(0o666),
    );
    let t = telemetry(&tree.0, 0).unwrap();
    assert_eq!(t.temp_mc, Some(45_250));
    assert_eq!(t.temp_celsius(), Some(45.25));
    assert_eq!(t.trip_points_mc, [Some(85_000), Some(90_000), Some(95_000)]);
    assert_eq!(t.hw_temp_warn_mc, [Some(100_000), Some(110_000)]);
    assert_eq!(t.hw_temp_warn_en, [Some(false), Some(true)]);
    assert_eq!(t.temp_poll_interval_ms, Some(5000));
    assert_eq!(t.unique_id.as_deref(), Some("0123456789abcdef0123456789abcdef"));
    assert_eq!(t.clock, Some(ClockStep::Mhz500));
    assert!(!t.throttled());

    // The driver reports temperatures in 250 m°C steps; each trip point is inclusive.
    let expect = [
        (84_750, ClockStep::Mhz500),
        (85_000, ClockStep::Mhz250),
        (89_750, ClockStep::Mhz250),
        (90_000, ClockStep::Mhz125),
        (94_750, ClockStep::Mhz125),
        (95_000, ClockStep::Mhz62_5),
        (120_000, ClockStep::Mhz62_5),
        (-5_000, ClockStep::Mhz500),
    ];
    for (temp, step) in expect {
        tree.write("sys/class/apex/apex_0/temp", &format!("{temp}\n"));
        let t = telemetry(&tree.0, 0).unwrap();
        assert_eq!(t.clock, Some(step), "{temp}");
        assert_eq!(t.throttled(), temp >= 85_000, "{temp}");
    }
    // Trip points set through sysfs are followed.
    tree.write("sys/class/apex/apex_0/trip_point0_temp", "70000\n");
    tree.write("sys/class/apex/apex_0/temp", "75000\n");
    assert_eq!(telemetry(&tree.0, 0).unwrap().clock, Some(ClockStep::Mhz250));
    // With the poller off the driver does not lower the clock.
    tree.write("sys/class/apex/apex_0/temp_poll_interval", "0\n");
    tree.write("sys/class/apex/apex_0/temp", "99000\n");
    let t = telemetry(&tree.0, 0).unwrap();
    assert_eq!((t.clock, t.throttled()), (Some(ClockStep::Mhz500), false));
}

#[test]
fn missing_and_bad_telemetry_is_none_and_a_missing_device_an_error() {
    let tree = Tree::new("thermal-bad");
    tree.apex(0, &[("temp", "hot"), ("trip_point1_temp", "91000"), ("hw_temp_warn1_en", "2")], "0000:01:00.0", None);
    let t = telemetry(&tree.0, 0).unwrap();
    assert_eq!(t.temp_mc, None);
    assert_eq!(t.trip_points_mc, [None, Some(91_000), None]);
    assert_eq!(t.hw_temp_warn_en, [None, None]);
    assert_eq!((t.temp_poll_interval_ms, t.unique_id.as_deref(), t.clock), (None, None, None));
    assert!(!t.throttled());
    // Missing trip points fall back to the driver's defaults for the derivation.
    tree.write("sys/class/apex/apex_0/temp", "90500\n");
    let t = telemetry(&tree.0, 0).unwrap();
    assert_eq!(t.effective_trip_points_mc(), [85_000, 91_000, 95_000]);
    assert_eq!(t.clock, Some(ClockStep::Mhz250));

    let err = telemetry(&tree.0, 7).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound);
    assert!(err.to_string().contains("sys/class/apex/apex_7 does not exist"), "{err}");
}

#[test]
fn clock_steps() {
    let steps: Vec<String> = (0..4).map(|d| ClockStep::from_divider(d).unwrap().to_string()).collect();
    assert_eq!(steps, ["500 MHz", "250 MHz", "125 MHz", "62.5 MHz"]);
    assert_eq!(ClockStep::from_divider(4), None);
    assert_eq!(ClockStep::Mhz125.divider(), 2);
    assert_eq!(ClockStep::Mhz62_5.khz(), 62_500);
    assert!(ClockStep::Mhz250.throttled() && !ClockStep::Mhz500.throttled());
    assert_eq!(derive_clock(95_000, [85_000, 90_000, 95_000]), ClockStep::Mhz62_5);
}
