//! Soak test of the device path: inferences over three compiled models and two simulated USB
//! Accelerators, through the runtime's scheduler, with faults injected at random (stall, timeout,
//! short read, disconnect, fatal interrupt, DFU failure). Every inference either returns the CPU
//! twin's output or a typed device error; afterwards every device serves again, no thread or file
//! descriptor is left behind, and resident memory stays flat.
//!
//! The default run is short (600 inferences). `EDGETPU_SOAK=100000 cargo test -p edgetpu --test
//! soak -- --nocapture` runs the long one; both print their counts.

mod common;

use edgetpu::cpu::{Interpreter, Options};
use edgetpu::device::usb::UsbOptions;
use edgetpu::sched::{RuntimeOptions, Simulated};
use edgetpu::sim::usb::{Fault, FaultKind, TimeModel};
use edgetpu::sim::OracleChoice;
use edgetpu::{ErrorKind, Model};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const MODELS: [&str; 3] = ["mobilenet_v1_0.25_128_quant", "mobilenet_v1_0.5_160_quant", "mobilenet_v1_0.75_192_quant"];
/// Inputs per model, whose twin outputs are computed once.
const INPUTS: u32 = 4;

const FAULTS: [(FaultKind, u8); 8] = [
    (FaultKind::Stall, 0x01),
    (FaultKind::Timeout, 0x01),
    (FaultKind::Timeout, 0x81),
    (FaultKind::ShortRead, 0x81),
    (FaultKind::ShortRead, 0x82),
    (FaultKind::Disconnect, 0x01),
    (FaultKind::FatalError, 0),
    (FaultKind::DfuFail, 0),
];

/// Deterministic xorshift generator.
struct Rng(u64);
impl Rng {
    fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        (self.0 % n as u64) as usize
    }
}

fn count_dir(path: &str) -> usize {
    std::fs::read_dir(path).map(|d| d.count()).unwrap_or_else(|e| panic!("{path}: {e}"))
}

fn rss_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

struct Case {
    model: Arc<Model>,
    inputs: Vec<Vec<u8>>,
    outputs: Vec<Vec<u8>>,
}

fn cases() -> Vec<Case> {
    let dir = common::testdata();
    MODELS
        .iter()
        .map(|name| {
            let model = Arc::new(Model::open(dir.join(format!("{name}_edgetpu.tflite"))).unwrap());
            let twin = Arc::new(Model::open(dir.join(format!("{name}.tflite"))).unwrap());
            let mut cpu = Interpreter::new(twin, &Options { threads: 1, ..Options::default() }).unwrap();
            let n = cpu.input_mut(0).unwrap().len();
            let inputs: Vec<Vec<u8>> = (0..INPUTS).map(|k| common::noise(n, k * 31 + 5)).collect();
            let outputs = inputs
                .iter()
                .map(|input| {
                    cpu.set_input(0, input).unwrap();
                    cpu.invoke().unwrap();
                    cpu.output(0).unwrap().to_vec()
                })
                .collect();
            Case { model, inputs, outputs }
        })
        .collect()
}

#[test]
fn device_path_soak_with_random_faults() {
    let total: usize = std::env::var("EDGETPU_SOAK").ok().and_then(|v| v.parse().ok()).unwrap_or(600);
    let cases = cases();
    let threads_before = count_dir("/proc/self/task");
    let fds_before = count_dir("/proc/self/fd");
    let mut rng = Rng(0x5eed_50a6_d00d_f00d);
    let (mut ok, mut wrong, mut injected) = (0usize, 0usize, 0usize);
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    let mut device_stats = String::new();
    let mut errors: BTreeMap<String, usize> = BTreeMap::new();
    let mut rss_warm = 0;
    let wall = std::time::Instant::now();
    {
        // Faults reset the device, which comes back in DFU mode and gets its firmware again.
        let mut options = RuntimeOptions::default();
        options.usb = UsbOptions::default()
            .firmware(common::testdata().join("../firmware/apex_latest_single_ep.bin"))
            .timeout(Duration::from_millis(500))
            .patience(Duration::from_secs(1));
        let rt = Simulated::usb(2, TimeModel::zero(), OracleChoice::Twin, options).unwrap();
        let mut its: Vec<_> = cases
            .iter()
            .map(|c| rt.interpreter(c.model.clone(), &Options { threads: 1, ..Options::default() }).unwrap())
            .collect();
        for i in 0..total {
            if i == total / 10 {
                rss_warm = rss_kib();
            }
            // One inference in eight gets a fault on a random device.
            if rng.below(8) == 0 {
                let (kind, endpoint) = FAULTS[rng.below(FAULTS.len())];
                rt.sims()[rng.below(2)].inject(Fault { kind, endpoint, after: rng.below(4) });
                injected += 1;
                *by_kind.entry(format!("{kind:?}")).or_default() += 1;
            }
            let m = rng.below(cases.len());
            let k = rng.below(INPUTS as usize);
            let it = &mut its[m];
            it.set_input(0, &cases[m].inputs[k]).unwrap();
            match it.invoke() {
                Ok(()) => {
                    if it.output(0).unwrap() == cases[m].outputs[k].as_slice() {
                        ok += 1;
                    } else {
                        wrong += 1;
                    }
                }
                Err(e) => {
                    assert!(
                        matches!(
                            e.kind(),
                            ErrorKind::Protocol
                                | ErrorKind::Timeout
                                | ErrorKind::Disconnected
                                | ErrorKind::DeviceFault
                                | ErrorKind::Busy
                        ),
                        "inference {i}: an error that is not a device error: {e}"
                    );
                    *errors.entry(format!("{:?}", e.kind())).or_default() += 1;
                }
            }
        }
        // Afterwards, with no fault pending, each device serves each model right.
        for device in 0..2 {
            for (m, case) in cases.iter().enumerate() {
                let mut it = rt
                    .interpreter_on(case.model.clone(), &Options { threads: 1, ..Options::default() }, Some(device))
                    .unwrap();
                it.set_input(0, &case.inputs[0]).unwrap();
                // A fault still pending from the soak may fail the first tries.
                let tries: Vec<_> = (0..4).map(|_| it.invoke()).take_while(|r| r.is_err()).collect();
                assert!(
                    tries.len() < 4,
                    "device {device} does not serve model {m} after the soak: {tries:?}; {ok} right, {errors:?}"
                );
                assert_eq!(it.output(0).unwrap(), case.outputs[0].as_slice(), "device {device} model {m}");
            }
        }
        drop(its);
        for (i, sim) in rt.sims().iter().enumerate() {
            let s = sim.stats();
            device_stats += &format!(
                "; device {i}: {} resets, {} firmware downloads, {} DFU blocks failed",
                s.resets, s.firmware_downloads, s.dfu_failures
            );
        }
    }
    let rss_end = rss_kib();
    let n_errors: usize = errors.values().sum();
    println!(
        "soak: {total} inferences in {:?}: {ok} right, {n_errors} typed errors {errors:?}, {wrong} wrong; \
         {injected} faults injected {by_kind:?}{device_stats}; RSS {rss_warm} KiB after warm-up, {rss_end} KiB \
         at the end",
        wall.elapsed()
    );
    assert_eq!(wrong, 0, "wrong results");
    assert_eq!(ok + n_errors, total);
    assert!(injected > total / 16, "only {injected} faults injected");
    assert!(n_errors > 0, "no fault surfaced as an error");
    assert!(ok > total / 2, "only {ok} of {total} inferences succeeded");
    // Threads and descriptors of the runtime and its devices are gone with it.
    assert_eq!(count_dir("/proc/self/task"), threads_before, "threads left behind");
    assert_eq!(count_dir("/proc/self/fd"), fds_before, "file descriptors left behind");
    assert!(rss_end < rss_warm + 64 * 1024, "resident memory grew from {rss_warm} KiB to {rss_end} KiB");
}
