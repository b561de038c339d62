//! The layering of docs/architecture.md, checked on the sources: no two modules import each
//! other, `sim/` uses `device/` and never the reverse, and the USB and PCIe backends use only the
//! device layer's shared parts.

use std::path::{Path, PathBuf};

fn sources(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap_or_else(|e| panic!("{}: {e}", d.display())) {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else if p.extension().is_some_and(|x| x == "rs") {
                out.push(p);
            }
        }
    }
    out.sort();
    out
}

/// The code lines (comments left out) of the files under `dir` (relative to `runtime/src`) that
/// name any of `forbidden`, as `file:line: text`.
fn uses(dir: &str, skip: &[&str], forbidden: &[&str]) -> Vec<String> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let base = root.join(dir);
    let files = if base.is_file() { vec![base] } else { sources(&base) };
    let mut found = Vec::new();
    for f in files {
        let rel = f.strip_prefix(&root).unwrap().display().to_string();
        if skip.iter().any(|s| rel == *s) {
            continue;
        }
        let text = std::fs::read_to_string(&f).unwrap();
        for (n, line) in text.lines().enumerate() {
            let code = line.split("//").next().unwrap_or("");
            if forbidden.iter().any(|w| code.contains(w)) {
                found.push(format!("{rel}:{}: {}", n + 1, line.trim()));
            }
        }
    }
    found
}

#[test]
fn the_device_layer_never_uses_the_simulators_or_the_scheduler() {
    let found = uses("device", &[], &["crate::sim", "crate::sched", "crate::interpreter"]);
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn usb_and_pcie_never_use_each_other() {
    let found = uses("device/usb", &[], &["device::pcie", "super::pcie", "super::super::pcie"]);
    assert!(found.is_empty(), "{found:#?}");
    let found = uses("device/pcie", &[], &["device::usb", "super::usb", "super::super::usb"]);
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn the_shared_device_parts_use_neither_backend() {
    // spec.rs parses both kinds of selector and mod.rs declares the modules; the rest is shared.
    for file in ["device/chip.rs", "device/csr.rs", "device/layout.rs", "device/plan.rs", "device/program.rs"] {
        let found = uses(file, &[], &["usb::", "pcie::"]);
        assert!(found.is_empty(), "{found:#?}");
    }
}

#[test]
fn the_simulators_never_use_the_scheduler_and_the_model_never_uses_packages() {
    let found = uses("sim", &[], &["crate::sched", "crate::interpreter"]);
    assert!(found.is_empty(), "{found:#?}");
    let found = uses("model", &[], &["crate::package", "crate::cpu", "crate::device"]);
    assert!(found.is_empty(), "{found:#?}");
    let found = uses("cpu", &[], &["crate::sched", "crate::device", "crate::interpreter"]);
    assert!(found.is_empty(), "{found:#?}");
}

#[test]
fn only_the_simulators_name_an_oracle() {
    let found = uses("device", &[], &["Oracle"]);
    assert!(found.is_empty(), "{found:#?}");
    let found = uses("sched/queue.rs", &[], &["Oracle"]);
    assert!(found.is_empty(), "{found:#?}");
    let found = uses("sched/delegate.rs", &[], &["Oracle"]);
    assert!(found.is_empty(), "{found:#?}");
}
