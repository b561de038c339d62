//! Tests on a real PCIe Edge TPU (M.2, Mini-PCIe, Dual Edge TPU, Dev Board) behind the apex
//! driver. Opt-in: they need `/dev/apex_0` usable by this user (see HARDWARE.md), and run one at
//! a time:
//!
//! ```sh
//! cargo test -p edgetpu --features hw --test hw_pci -- --test-threads=1
//! ```
//!
//! Set `EDGETPU_APEX` to another node (e.g. `/dev/apex_1`) to test the second chip of a Dual
//! Edge TPU card.
#![cfg(all(feature = "hw", target_os = "linux"))]

use edgetpu::device::pcie::linux::LinuxSys;
use edgetpu::device::pcie::{ApexAccelerator, ApexOptions};
use edgetpu::device::program::Program;
use edgetpu::package::Package;
use edgetpu::Model;
use std::path::PathBuf;
use std::sync::Arc;

fn node() -> PathBuf {
    let node = std::env::var_os("EDGETPU_APEX").map_or_else(|| PathBuf::from("/dev/apex_0"), PathBuf::from);
    assert!(node.exists(), "{} does not exist: is the apex driver loaded? (edgetpu doctor)", node.display());
    node
}

#[path = "common/testdata.rs"]
mod testdata;
use testdata::testdata;

#[test]
fn opens_and_closes() {
    let acc = ApexAccelerator::open(Arc::new(LinuxSys::new()), &node(), ApexOptions::default())
        .expect("the open sequence (ioctls, CSR mappings, instruction queue)");
    println!("{} open", acc.name());
    acc.close().expect("the close sequence");
}

#[test]
fn inferences_agree_with_the_cpu_twin() {
    let dir = testdata();
    let model = Arc::new(Model::open(dir.join("mobilenet_v1_0.25_128_quant_edgetpu.tflite")).unwrap());
    let twin = Arc::new(Model::open(dir.join("mobilenet_v1_0.25_128_quant.tflite")).unwrap());
    let pkgs = Package::all(&model).unwrap();
    let mut program = Program::new(&model, &pkgs[0]).unwrap();
    let input: Vec<u8> = (0..128 * 128 * 3).map(|i| (i * 13 % 256) as u8).collect();
    let mut out = vec![0u8; 1001];
    let mut acc = ApexAccelerator::open(Arc::new(LinuxSys::new()), &node(), ApexOptions::default()).unwrap();
    for run in 0..5 {
        let start = std::time::Instant::now();
        let info = acc.run(&mut program, &[&input], &mut [&mut out]).expect("an inference");
        println!(
            "inference {run}: {:.2} ms (parameters cached before: {}, {} bytes)",
            start.elapsed().as_secs_f64() * 1e3,
            info.cache_hit,
            info.parameter_bytes
        );
    }
    acc.close().unwrap();
    let mut cpu = edgetpu::cpu::Interpreter::new(twin, &Default::default()).unwrap();
    cpu.set_input(0, &input).unwrap();
    cpu.invoke().unwrap();
    let want = cpu.output(0).unwrap();
    let top = |v: &[u8]| v.iter().enumerate().max_by_key(|(_, &s)| s).map(|(i, _)| i);
    let diff = out.iter().zip(want).filter(|(a, b)| a != b).count();
    println!("top class: Edge TPU {:?}, CPU {:?}; {diff} of 1001 bytes differ", top(&out), top(want));
    assert_eq!(top(&out), top(want), "the top class differs from the CPU twin's");
}

#[test]
fn the_lstm_runs_with_its_state() {
    // Not fully deterministic hints: on PCIe the chip fetches everything itself. The TFLite
    // golden of the CPU model (one interpreter on mnist_nine, random1, mnist_nine) is not
    // expected bit for bit from the Edge TPU, but its top classes are, and state must carry over.
    let dir = testdata();
    let golden = dir.join("golden/keras_lstm_mnist_ptq");
    let want =
        std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/lstm/stateful_nine_random_nine.out0.bin"))
            .expect("the stateful golden");
    let model = Arc::new(Model::open(dir.join("keras_lstm_mnist_ptq_edgetpu.tflite")).unwrap());
    let acc = ApexAccelerator::open(Arc::new(LinuxSys::new()), &node(), ApexOptions::default()).unwrap();
    let rt = edgetpu::sched::Runtime::new(vec![Box::new(acc)], Default::default()).unwrap();
    let mut it = rt.interpreter(model, &Default::default()).unwrap();
    let mut got = Vec::new();
    for tag in ["mnist_nine", "random1", "mnist_nine"] {
        let input = std::fs::read(golden.join(format!("{tag}.in0.bin"))).expect("golden input");
        it.set_input(0, &input).unwrap();
        it.invoke().expect("an inference");
        got.extend_from_slice(it.output(0).unwrap());
    }
    println!("Edge TPU {got:?}\nTFLite   {want:?}");
    let top = |v: &[u8]| v.iter().enumerate().max_by_key(|(_, &s)| s).map(|(i, _)| i);
    for k in 0..3 {
        assert_eq!(top(&got[k * 10..k * 10 + 10]), top(&want[k * 10..k * 10 + 10]), "run {k}: top class");
    }
    assert_ne!(got[20..], got[..10], "the third run must differ from the first (state carried over)");
}

#[test]
fn sysfs_lists_the_device_owned_while_open() {
    use edgetpu::device::pcie::sysfs as apex_sysfs;
    let root = std::path::Path::new("/");
    let number: u32 = node().to_string_lossy().rsplit("apex_").next().and_then(|n| n.parse().ok()).expect("apex_N");
    let listed = apex_sysfs::list(root).expect("listing /sys/class/apex");
    println!("{listed:#?}");
    assert!(listed.iter().any(|d| d.number == number), "apex_{number} is not listed");
    let t = apex_sysfs::telemetry(root, number).expect("telemetry");
    println!("{t:?}");
    assert!(t.temp_mc.is_some(), "the driver reports no temperature");
    let acc = ApexAccelerator::open(Arc::new(LinuxSys::new()), &node(), ApexOptions::default()).unwrap();
    let owned = |d: &apex_sysfs::ApexDevice| (d.owned, d.owner_pid);
    let dev = apex_sysfs::list(root).unwrap().into_iter().find(|d| d.number == number).unwrap();
    assert_eq!(owned(&dev), (Some(true), Some(std::process::id())), "owned by this process while open");
    acc.close().unwrap();
    let dev = apex_sysfs::list(root).unwrap().into_iter().find(|d| d.number == number).unwrap();
    assert_eq!(dev.owned, Some(false), "released after close");
}
