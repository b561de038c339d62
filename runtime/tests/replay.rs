//! Record once, replay forever: a whole session (firmware download, open, an inference, close)
//! recorded from the simulator is replayed without it, answer for answer; a session that
//! departs from the recording is caught.

mod common;

use edgetpu::device::program::Program;
use edgetpu::device::usb::record::{RecordingBus, ReplayBus};
use edgetpu::device::usb::UsbPath;
use edgetpu::device::usb::{UsbAccelerator, UsbOptions};
use edgetpu::device::Performance;
use edgetpu::package::Package;
use edgetpu::sim::usb::{SeededOracle, SimBus, SimConfig};
use edgetpu::{ErrorKind, Model};
use std::sync::{Arc, Mutex};

fn options(performance: Performance) -> UsbOptions {
    let firmware = common::testdata().join("../firmware/apex_latest_single_ep.bin");
    UsbOptions::default().firmware(firmware).performance(performance)
}

/// Opens, runs one inference and closes on `bus`; returns the output.
fn session(
    bus: Arc<dyn edgetpu::device::usb::UsbBus>,
    path: &UsbPath,
    model: &Arc<Model>,
    p: Performance,
) -> edgetpu::Result<Vec<u8>> {
    let pkgs = Package::all(model)?;
    let mut acc = UsbAccelerator::open(bus, path, options(p))?;
    let mut program = Program::new(model, &pkgs[0])?;
    let input: Vec<u8> = (0..128 * 128 * 3).map(|i| (i % 256) as u8).collect();
    let mut out = vec![0u8; 1001];
    acc.run(&mut program, &[&input], &mut [&mut out])?;
    acc.close()?;
    Ok(out)
}

#[test]
fn a_recorded_session_replays_exactly() {
    let model = Arc::new(Model::open(common::testdata().join("mobilenet_v1_0.25_128_quant_edgetpu.tflite")).unwrap());
    let pkgs = Package::all(&model).unwrap();
    let sim = SimBus::new(SimConfig::default());
    sim.load(&pkgs[0], "mnv1", Some(Arc::new(Mutex::new(SeededOracle::new(3))))).unwrap();
    let path = sim.config_path();
    let file = std::env::temp_dir().join(format!("edgetpu-replay-{}.jsonl", std::process::id()));
    let recording = Arc::new(RecordingBus::new(sim.clone(), Box::new(std::fs::File::create(&file).unwrap())).unwrap());
    let recorded = session(recording.clone(), &path, &model, Performance::High).unwrap();
    recording.finish().unwrap();
    let text = std::fs::read_to_string(&file).unwrap();
    assert!(text.lines().count() > 300, "{} lines", text.lines().count());
    assert!(text.lines().next().unwrap().contains("edgetpu-usb-trace"));

    // The same session against the trace alone gives the same output and uses every line.
    let replay = Arc::new(ReplayBus::from_file(&file).unwrap());
    let replayed = session(replay.clone(), &path, &model, Performance::High).unwrap();
    assert_eq!(replayed, recorded);
    replay.done().unwrap();

    // A session at another clock setting writes another scu_ctrl_3 value: caught.
    let replay = Arc::new(ReplayBus::from_file(&file).unwrap());
    let err = session(replay.clone(), &path, &model, Performance::Max).unwrap_err();
    std::fs::remove_file(&file).ok();
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
    let why = replay.mismatch().expect("the mismatch is described");
    assert!(why.contains("line"), "{why}");
}
