//! `edgetpu devices` and `edgetpu doctor` for PCIe Corals, against fake sysfs trees named by
//! `EDGETPU_SYSFS_ROOT`: no apex driver; a device owned by another process; a Raspberry Pi 5
//! booted with its 16K-page kernel; a hot, throttled device without interrupts.

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;

/// A fake root directory.
struct Tree(PathBuf);

impl Tree {
    fn new(name: &str) -> Tree {
        Tree(common::scratch("pcie", name))
    }

    fn write(&self, rel: &str, text: &str) -> &Tree {
        let path = self.0.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
        self
    }

    fn link(&self, rel: &str, target: &str) -> &Tree {
        let path = self.0.join(rel);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::os::unix::fs::symlink(target, path).unwrap();
        self
    }

    /// A Coral on the PCI bus at `addr`, bound to apex or not.
    fn pci(&self, addr: &str, bound: bool) -> &Tree {
        let dir = format!("sys/bus/pci/devices/{addr}");
        self.write(&format!("{dir}/vendor"), "0x1ac1\n").write(&format!("{dir}/device"), "0x089a\n");
        if bound {
            self.link(&format!("{dir}/driver"), "../../../bus/pci/drivers/apex");
        }
        self
    }

    /// The apex and gasket modules.
    fn modules(&self) -> &Tree {
        self.write("sys/module/apex/version", "1.1\n").write("sys/module/gasket/version", "1.1.4\n")
    }

    /// `apex_N` at `addr` with `attrs`, and its node readable and writable by everyone.
    fn apex(&self, n: u32, addr: &str, attrs: &[(&str, &str)]) -> &Tree {
        let dir = format!("sys/class/apex/apex_{n}");
        for (name, value) in attrs {
            self.write(&format!("{dir}/{name}"), &format!("{value}\n"));
        }
        self.link(&format!("{dir}/device"), &format!("../../../devices/pci0000:00/0000:00:1c.0/{addr}"));
        self.write(&format!("dev/apex_{n}"), "");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(self.0.join(format!("dev/apex_{n}")), std::fs::Permissions::from_mode(0o666)).unwrap();
        self
    }

    /// This process as uid 1000 in group 120 (apex), pid 4242; the repository's udev rules.
    fn user_and_rules(&self) -> &Tree {
        self.write(
            "proc/self/status",
            "Tgid:\t4242\nUid:\t1000\t1000\t1000\t1000\nGid:\t1000\t1000\t1000\t1000\nGroups:\t1000 120\n",
        )
        .write("etc/group", "users:x:1000:\napex:x:120:alice\n")
        .write("etc/udev/rules.d/70-coral-edgetpu.rules", include_str!("../../udev/70-coral-edgetpu.rules"))
    }

    fn pages(&self, kib: u32) -> &Tree {
        self.write(
            "proc/self/smaps",
            &format!("55d0-55d1 r--p 0 08:01 1 /bin/x\nSize: 4 kB\nKernelPageSize: {kib} kB\n"),
        )
    }
}

impl Drop for Tree {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Runs `edgetpu ARGS` with the fake root: (success, stdout, stderr).
fn edgetpu(root: &Path, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_edgetpu"))
        .args(args)
        .env("EDGETPU_SYSFS_ROOT", root)
        .env_remove("EDGETPU_FIRMWARE")
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

/// The line of `text` starting with `prefix` (a check's tag and name), and the fix under it.
fn check<'a>(text: &'a str, prefix: &str) -> (&'a str, &'a str) {
    let lines: Vec<&str> = text.lines().collect();
    let i = lines.iter().position(|l| l.starts_with(prefix)).unwrap_or_else(|| panic!("no `{prefix}` in:\n{text}"));
    let fix = lines.get(i + 1).filter(|l| l.trim_start().starts_with("fix:")).copied().unwrap_or("");
    (lines[i], fix)
}

#[test]
fn no_apex_driver_with_a_card_on_the_bus() {
    let tree = Tree::new("nodriver");
    tree.pci("0000:01:00.0", false).pages(4).user_and_rules();
    let (ok, out, _) = edgetpu(&tree.0, &["doctor"]);
    assert!(!ok);
    let (line, fix) = check(&out, "fail  driver:");
    assert!(line.contains("apex kernel module is not loaded, but a Coral is on the PCI bus at 0000:01:00.0"), "{out}");
    assert!(fix.contains("gasket-dkms") && fix.contains("modprobe apex"), "{out}");
    let (line, _) = check(&out, "ok    PCI bus:");
    assert!(line.contains("0000:01:00.0 (no driver)"), "{out}");
    let (line, fix) = check(&out, "warn  ASPM:");
    assert!(line.contains("policy") || line.contains("no policy"), "{out}");
    assert!(fix.contains("pcie_aspm=off"), "{out}");
    assert!(out.contains("ok    page size: 4 KiB"), "{out}");

    // Nothing PCIe at all: one line, no failure from the PCIe part.
    let empty = Tree::new("empty");
    let (_, out, _) = edgetpu(&empty.0, &["doctor"]);
    assert!(
        out.contains("ok    PCIe: no Coral (1ac1:089a) on the PCI bus and no apex driver; nothing to check"),
        "{out}"
    );
    assert!(!out.contains("driver:"), "{out}");
}

#[test]
fn module_loaded_and_the_device_owned_by_another_process() {
    let tree = Tree::new("owned");
    let attrs = [
        ("is_device_owned", "1"),
        ("device_owner", "777"),
        ("status", "ALIVE"),
        ("driver_version", "1.1"),
        ("temp", "45000"),
        ("trip_point0_temp", "85000"),
        ("trip_point1_temp", "90000"),
        ("trip_point2_temp", "95000"),
        ("temp_poll_interval", "5000"),
    ];
    tree.modules().pci("0000:01:00.0", true).apex(0, "0000:01:00.0", &attrs).pages(4).user_and_rules();

    let (_, out, err) = edgetpu(&tree.0, &["devices"]);
    let node = tree.0.join("dev/apex_0");
    let line = out.lines().find(|l| l.starts_with("pci:0")).unwrap_or_else(|| panic!("{out}{err}"));
    assert_eq!(line, format!("pci:0  in use          {}  0000:01:00.0  45.0 °C  500 MHz (derived)", node.display()));
    assert!(out.contains("clock: derived from the temperature and the trip points"), "{out}");
    assert!(out.contains("note: another process (pid 777) has it open"), "{out}");

    let (_, out, err) = edgetpu(&tree.0, &["devices", "--json"]);
    let doc: serde_json::Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}{err}"));
    let d = &doc["pcie"][0];
    assert_eq!(d["selector"], "pci:0");
    assert_eq!(d["state"], "in_use");
    assert_eq!(d["owner_pid"], 777);
    assert_eq!(d["pci_address"], "0000:01:00.0");
    assert_eq!(d["temp_mc"], 45_000);
    assert_eq!(d["clock_mhz"], 500.0);
    assert_eq!(d["throttled"], false);
    assert!(doc["devices"].is_array(), "{out}");

    let (_, out, _) = edgetpu(&tree.0, &["doctor"]);
    assert!(out.contains("ok    driver: apex loaded (apex 1.1, gasket 1.1.4)"), "{out}");
    assert!(out.contains("ok    interrupts: apex_0 is ALIVE"), "{out}");
    let (line, fix) = check(&out, "warn  in use:");
    assert!(line.contains("apex_0 is held by another process (pid 777)") && fix.contains("stop that process"), "{out}");
    assert!(out.contains(&format!("ok    permissions: this user can open {} (mode 0666", node.display())), "{out}");
    assert!(out.contains("ok    apex group: this session is in it"), "{out}");
    // The repository's rule covers the apex subsystem with group apex and mode 0660.
    let (line, _) = check(&out, "ok    udev rule:");
    assert!(line.contains("70-coral-edgetpu.rules gives /dev/apex_* to group apex (MODE 0660)"), "{out}");
    assert!(
        out.contains(
            "ok    temperature: apex_0 at 45.0 °C, clock 500 MHz (derived from the temperature and the trip points; \
             throttling from 85.0 °C)"
        ),
        "{out}"
    );
    assert!(!out.contains("fail  binding") && !out.contains("page size: the kernel"), "{out}");
}

#[test]
fn sixteen_k_pages_on_a_raspberry_pi_5() {
    let tree = Tree::new("pi5");
    tree.modules().pci("0001:01:00.0", false).pages(16).user_and_rules();
    tree.write("proc/device-tree/model", "Raspberry Pi 5 Model B Rev 1.0\0");
    let (ok, out, _) = edgetpu(&tree.0, &["doctor"]);
    assert!(!ok);
    let (line, fix) = check(&out, "fail  page size:");
    assert!(line.contains("16 KiB pages (the default kernel of the Raspberry Pi 5 Model B Rev 1.0)"), "{out}");
    assert!(line.contains("needs 4 KiB pages"), "{out}");
    assert!(fix.contains("`kernel=kernel8.img` to /boot/firmware/config.txt"), "{out}");
    let (line, _) = check(&out, "fail  binding:");
    assert!(line.contains("the Coral at 0001:01:00.0 has no driver bound"), "{out}");

    // The same tree elsewhere than on a Pi 5 only warns.
    std::fs::remove_file(tree.0.join("proc/device-tree/model")).unwrap();
    let (_, out, _) = edgetpu(&tree.0, &["doctor"]);
    let (_, fix) = check(&out, "warn  page size: the kernel uses 16 KiB pages");
    assert!(fix.contains("4 KiB pages"), "{out}");
}

#[test]
fn a_hot_device_is_throttled_and_one_without_msi_x_is_lamed() {
    let tree = Tree::new("hot");
    let attrs = [
        ("is_device_owned", "0"),
        ("status", "LAMED"),
        ("temp", "92000"),
        ("trip_point0_temp", "85000"),
        ("trip_point1_temp", "90000"),
        ("trip_point2_temp", "95000"),
        ("temp_poll_interval", "5000"),
    ];
    tree.modules().pci("0001:01:00.0", true).apex(0, "0001:01:00.0", &attrs).pages(4).user_and_rules();
    tree.write("proc/device-tree/model", "Raspberry Pi 5 Model B Rev 1.0\0");

    let (_, out, err) = edgetpu(&tree.0, &["devices"]);
    let line = out.lines().find(|l| l.starts_with("pci:0")).unwrap_or_else(|| panic!("{out}{err}"));
    assert!(line.starts_with("pci:0  ready") && line.ends_with("0001:01:00.0  92.0 °C  125 MHz (derived)"), "{out}");
    assert!(out.contains("warning: throttled: 92.0 °C is at or above trip point 1 (90.0 °C)"), "{out}");
    assert!(out.contains("status LAMED"), "{out}");

    let (_, out, _) = edgetpu(&tree.0, &["doctor"]);
    let (line, fix) = check(&out, "warn  temperature:");
    assert!(
        line.contains(
            "apex_0: 92.0 °C is at or above trip point 1 (90.0 °C), so the driver throttles the TPU: clock 125 MHz, \
             derived from the temperature and the trip points"
        ),
        "{out}"
    );
    assert!(fix.contains("cooling") && fix.contains("trip_point{0,1,2}_temp"), "{out}");
    let (line, fix) = check(&out, "fail  interrupts:");
    assert!(line.contains("apex_0 has none (status LAMED"), "{out}");
    assert!(fix.contains("dtoverlay=pineboards-hat-ai") && fix.contains("msi-parent"), "{out}");
}

#[test]
fn auto_takes_a_ready_pcie_coral_for_a_compiled_model() {
    let tree = Tree::new("auto");
    let attrs = [("is_device_owned", "0"), ("status", "ALIVE"), ("temp", "45000")];
    tree.modules().pci("0000:01:00.0", true).apex(0, "0000:01:00.0", &attrs).user_and_rules();
    let model = common::testdata().join("mobilenet_v1_0.25_128_quant_edgetpu.tflite");
    let input = tree.0.join("in.bin");
    std::fs::write(&input, vec![0u8; 128 * 128 * 3]).unwrap();
    let out = tree.0.join("out");
    let args = ["run", "--device", "auto", "--model", model.to_str().unwrap(), "--input", input.to_str().unwrap()];
    let run = |root: &Path| edgetpu(root, &[&args[..], &["--output-dir", out.to_str().unwrap()]].concat());

    // The tree has no driver behind it, so opening `pci` fails (or, on a machine with a PCIe
    // Coral, runs on it); either way it is the PCIe Coral that is tried, not USB.
    let (ok, _, err) = run(&tree.0);
    assert!(err.contains("pci") && (ok || err.contains("apex")), "{err}");
    assert!(!err.to_lowercase().contains("usb"), "{err}");

    // Held by another process: not taken; the error names both kinds of Coral.
    tree.write("sys/class/apex/apex_0/is_device_owned", "1\n").write("sys/class/apex/apex_0/device_owner", "777\n");
    let (ok, _, err) = run(&tree.0);
    assert!(!ok, "{err}");
    assert!(err.contains("no Coral USB Accelerator found and no PCIe Coral ready: pci:0 (apex_0, in use)"), "{err}");

    let empty = Tree::new("auto-empty");
    let (ok, _, err) = run(&empty.0);
    assert!(
        !ok && err.contains("no Coral USB Accelerator found and no PCIe Coral (the apex driver lists none)"),
        "{err}"
    );
}
