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

use edgetpu::device::apex::{ApexAccelerator, ApexOptions};
use edgetpu::device::program::Program;
use edgetpu::package::Package;
use edgetpu::transport::apex::linux::LinuxSys;
use edgetpu::Model;
use std::path::PathBuf;
use std::sync::Arc;

fn node() -> PathBuf {
    let node = std::env::var_os("EDGETPU_APEX").map_or_else(|| PathBuf::from("/dev/apex_0"), PathBuf::from);
    assert!(node.exists(), "{} does not exist: is the apex driver loaded? (edgetpu doctor)", node.display());
    node
}

fn testdata() -> PathBuf {
    let dir = std::env::var_os("EDGETPU_TESTDATA")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata"), PathBuf::from);
    assert!(dir.join("MANIFEST.md").is_file(), "test data not found at {}: set EDGETPU_TESTDATA", dir.display());
    dir
}

#[test]
fn opens_and_closes() {
    let acc = ApexAccelerator::open(Arc::new(LinuxSys), &node(), ApexOptions::default())
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
    let mut acc = ApexAccelerator::open(Arc::new(LinuxSys), &node(), ApexOptions::default()).unwrap();
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
    // Not fully deterministic hints: on PCIe the chip fetches everything itself.
    let dir = testdata();
    let model = Arc::new(Model::open(dir.join("keras_lstm_mnist_ptq_edgetpu.tflite")).unwrap());
    let rt = edgetpu::sched::Runtime::new(
        vec![Box::new(ApexAccelerator::open(Arc::new(LinuxSys), &node(), ApexOptions::default()).unwrap())],
        Default::default(),
    )
    .unwrap();
    let mut it = rt.interpreter(model, &Default::default()).unwrap();
    let input = vec![128u8; 28 * 28];
    it.set_input(0, &input).unwrap();
    it.invoke().expect("first inference");
    let first = it.output(0).unwrap().to_vec();
    it.invoke().expect("second inference");
    println!("first {first:?}\nsecond {:?}", it.output(0).unwrap());
    assert_eq!(first.len(), 10);
}
