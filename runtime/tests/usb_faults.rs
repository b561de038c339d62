//! Every injected fault gives a typed error, never a panic or a hang past the timeout; the
//! device is then reset and reopened, and the next inference succeeds with the parameters
//! cached again. A slow output is no fault: a read that times out is posted again.

mod common;

use edgetpu::device::program::Program;
use edgetpu::device::usb::{UsbAccelerator, UsbOptions};
use edgetpu::package::Package;
use edgetpu::sim::usb::{CpuTwinOracle, Fault, FaultKind, Oracle, SimBus, SimConfig};
use edgetpu::{ErrorKind, Model};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const NAME: &str = "mobilenet_v1_0.25_128_quant";
const TIMEOUT: Duration = Duration::from_millis(500);

struct Rig {
    model: Arc<Model>,
    twin: Arc<Model>,
    sim: SimBus,
}

fn rig() -> Rig {
    let dir = common::testdata();
    let model = Arc::new(Model::open(dir.join(format!("{NAME}_edgetpu.tflite"))).unwrap());
    let twin = Arc::new(Model::open(dir.join(format!("{NAME}.tflite"))).unwrap());
    let sim = SimBus::new(SimConfig::default());
    let pkgs = Package::all(&model).unwrap();
    let exe = pkgs[0].main();
    let oracle: Arc<Mutex<dyn Oracle>> =
        Arc::new(Mutex::new(CpuTwinOracle::new(twin.clone(), &exe.input_layers, &exe.output_layers).unwrap()));
    sim.load(&pkgs[0], NAME, Some(oracle)).unwrap();
    Rig { model, twin, sim }
}

fn open(sim: &SimBus) -> edgetpu::Result<UsbAccelerator> {
    let firmware = common::testdata().join("../firmware/apex_latest_single_ep.bin");
    // Output and event reads are posted again after a timeout, for at most two timeouts here.
    let options = UsbOptions::default().firmware(firmware).timeout(TIMEOUT).patience(TIMEOUT * 2);
    UsbAccelerator::open(Arc::new(sim.clone()), &sim.config_path(), options)
}

fn expected(twin: &Arc<Model>, input: &[u8]) -> Vec<u8> {
    let mut cpu = edgetpu::cpu::Interpreter::new(twin.clone(), &Default::default()).unwrap();
    cpu.set_input(0, input).unwrap();
    cpu.invoke().unwrap();
    cpu.output(0).unwrap().to_vec()
}

/// Runs one good inference, injects `fault`, checks the failing inference's error kind (and that
/// it took no longer than a few timeouts of virtual time), then checks that the next inference
/// recovers: right output, parameters sent again.
fn check(fault: Fault, kind: ErrorKind, message_has: &str) -> edgetpu::sim::usb::SimStats {
    let r = rig();
    let pkgs = Package::all(&r.model).unwrap();
    let pkg = &pkgs[0];
    let mut program = Program::new(&r.model, pkg).unwrap();
    let mut acc = open(&r.sim).unwrap();
    let input: Vec<u8> = (0..128 * 128 * 3).map(|i| (i * 7 % 251) as u8).collect();
    let want = expected(&r.twin, &input);
    let mut out = vec![0u8; 1001];
    acc.run(&mut program, &[&input], &mut [&mut out]).unwrap();
    assert_eq!(out, want);
    let cached = pkg.cached_parameter_bytes() as u64;
    let params_before = r.sim.stats().parameter_bytes;

    r.sim.inject(fault);
    let t0 = r.sim.elapsed();
    let wall = std::time::Instant::now();
    let err = acc.run(&mut program, &[&input], &mut [&mut out]).unwrap_err();
    assert_eq!(err.kind(), kind, "{fault:?}: {err}");
    assert!(err.to_string().contains(message_has), "{fault:?}: {err}");
    assert!(err.to_string().contains("usb:1-2"), "the error names the device: {err}");
    assert!(r.sim.elapsed() - t0 <= TIMEOUT * 3, "{fault:?}: {:?} of device time", r.sim.elapsed() - t0);
    assert!(wall.elapsed() < Duration::from_secs(5), "{fault:?} took {:?}", wall.elapsed());

    // The next inference resets and reopens the device and caches the parameters again.
    out.fill(0);
    acc.run(&mut program, &[&input], &mut [&mut out]).unwrap();
    assert_eq!(out, want, "{fault:?}: wrong output after recovery");
    assert_eq!(acc.recoveries(), 1);
    let sent = r.sim.stats().parameter_bytes - params_before;
    assert!(sent >= cached, "{fault:?}: only {sent} parameter bytes after recovery, the cache needs {cached}");
    assert_eq!(r.sim.cached_token(), Some(pkg.caching_token()));
    assert!(r.sim.violations().is_empty(), "{fault:?}: {:?}", r.sim.violations());
    acc.close().unwrap();
    r.sim.stats()
}

#[test]
fn stall_on_bulk_out() {
    check(Fault { kind: FaultKind::Stall, endpoint: 0x01, after: 1 }, ErrorKind::Protocol, "stalled");
}

#[test]
fn timeout_on_bulk_out() {
    check(Fault { kind: FaultKind::Timeout, endpoint: 0x01, after: 3 }, ErrorKind::Timeout, "timed out");
}

#[test]
fn an_output_later_than_the_timeout_is_waited_for() {
    // The device answers after the 6 s (here TIMEOUT) of one read: the read is posted again and
    // the inference succeeds, without a reset, as with libedgetpu.
    for endpoint in [0x81, 0x82] {
        let r = rig();
        let pkgs = Package::all(&r.model).unwrap();
        let mut program = Program::new(&r.model, &pkgs[0]).unwrap();
        let mut acc = open(&r.sim).unwrap();
        let input: Vec<u8> = (0..128 * 128 * 3).map(|i| (i * 7 % 251) as u8).collect();
        let want = expected(&r.twin, &input);
        let mut out = vec![0u8; 1001];
        acc.run(&mut program, &[&input], &mut [&mut out]).unwrap();
        r.sim.inject(Fault { kind: FaultKind::Timeout, endpoint, after: 0 });
        let t0 = r.sim.elapsed();
        out.fill(0);
        acc.run(&mut program, &[&input], &mut [&mut out]).unwrap_or_else(|e| panic!("{endpoint:#x}: {e}"));
        assert_eq!(out, want, "{endpoint:#x}");
        assert!(r.sim.elapsed() - t0 >= TIMEOUT, "{endpoint:#x}: the answer came after a timeout");
        assert_eq!(acc.recoveries(), 0, "{endpoint:#x}: no reset");
        assert!(r.sim.violations().is_empty(), "{:?}", r.sim.violations());
    }
}

#[test]
fn an_output_that_never_comes_times_out_after_the_patience() {
    // Three timeouts in a row exceed the patience of two: the run fails, then recovers.
    let r = rig();
    let pkgs = Package::all(&r.model).unwrap();
    let mut program = Program::new(&r.model, &pkgs[0]).unwrap();
    let mut acc = open(&r.sim).unwrap();
    let input = vec![7u8; 128 * 128 * 3];
    let mut out = vec![0u8; 1001];
    acc.run(&mut program, &[&input], &mut [&mut out]).unwrap();
    for _ in 0..3 {
        r.sim.inject(Fault { kind: FaultKind::Timeout, endpoint: 0x81, after: 0 });
    }
    let err = acc.run(&mut program, &[&input], &mut [&mut out]).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::Timeout, "{err}");
    assert!(err.to_string().contains("reading output"), "{err}");
    acc.run(&mut program, &[&input], &mut [&mut out]).unwrap();
    assert_eq!(acc.recoveries(), 1);
}

#[test]
fn short_read_of_output() {
    check(Fault { kind: FaultKind::ShortRead, endpoint: 0x81, after: 0 }, ErrorKind::Timeout, "reading output");
}

#[test]
fn short_read_of_event() {
    check(Fault { kind: FaultKind::ShortRead, endpoint: 0x82, after: 0 }, ErrorKind::Protocol, "16 bytes");
}

#[test]
fn disconnect_mid_transfer() {
    // Unplugged while parameters stream in; it comes back in DFU mode and needs its firmware.
    let fault = Fault { kind: FaultKind::Disconnect, endpoint: 0x01, after: 2 };
    let stats = check(fault, ErrorKind::Disconnected, "disconnected");
    assert_eq!(stats.firmware_downloads, 2, "the firmware went again after the power loss");
}

#[test]
fn fatal_error_interrupt() {
    let fault = Fault { kind: FaultKind::FatalError, endpoint: 0, after: 0 };
    check(fault, ErrorKind::DeviceFault, "invalid instruction queue");
}

#[test]
fn control_stalls_are_retried() {
    let r = rig();
    // After the firmware download (about 220 control transfers), among the register accesses.
    r.sim.inject(Fault { kind: FaultKind::Stall, endpoint: 0, after: 250 });
    let acc = open(&r.sim).expect("a single stalled control transfer is retried");
    acc.close().unwrap();
}

#[test]
fn failed_firmware_download_then_success() {
    let r = rig();
    r.sim.inject(Fault { kind: FaultKind::DfuFail, endpoint: 0, after: 0 });
    let err = open(&r.sim).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::DeviceFault, "{err}");
    assert!(err.to_string().contains("firmware download failed at block 0"), "{err}");
    assert!(err.to_string().contains("plug it back in"), "the error says what to do: {err}");
    // Trying again downloads the firmware from the start and works.
    let mut acc = open(&r.sim).unwrap();
    assert_eq!(r.sim.stats().firmware_downloads, 1);
    let pkgs = Package::all(&r.model).unwrap();
    let mut program = Program::new(&r.model, &pkgs[0]).unwrap();
    let input = vec![3u8; 128 * 128 * 3];
    let mut out = vec![0u8; 1001];
    acc.run(&mut program, &[&input], &mut [&mut out]).unwrap();
    assert_eq!(out, expected(&r.twin, &input));
}

#[test]
fn missing_firmware_is_a_clear_error() {
    let r = rig();
    let options =
        UsbOptions::default().firmware(std::env::temp_dir().join("edgetpu-no-such-firmware.bin")).timeout(TIMEOUT);
    let err = UsbAccelerator::open(Arc::new(r.sim.clone()), &r.sim.config_path(), options).unwrap_err();
    assert_eq!(err.kind(), ErrorKind::NotFound, "{err}");
    assert!(err.to_string().contains("edgetpu-no-such-firmware.bin"), "{err}");
}

#[test]
fn firmware_that_does_not_boot_is_reported() {
    let r = rig();
    // Starts like 8051 code, so the runtime sends it, but it is no firmware: the device does not
    // boot it and is still in DFU mode after the reset.
    let bad = std::env::temp_dir().join(format!("edgetpu-bad-firmware-{}.bin", std::process::id()));
    std::fs::write(&bad, [0x02, 0, 0, 0]).unwrap();
    let options = UsbOptions::default().firmware(bad.clone()).timeout(TIMEOUT);
    let err = UsbAccelerator::open(Arc::new(r.sim.clone()), &r.sim.config_path(), options).unwrap_err();
    std::fs::remove_file(&bad).ok();
    assert_eq!(err.kind(), ErrorKind::DeviceFault, "{err}");
    assert!(err.to_string().contains("still in DFU mode"), "{err}");
    assert!(err.to_string().contains("damaged firmware file"), "the error says what may be wrong: {err}");
    assert_eq!(r.sim.stats().firmware_downloads, 0);

    // A file that is not firmware at all is refused before anything is sent.
    let junk = std::env::temp_dir().join(format!("edgetpu-junk-firmware-{}.bin", std::process::id()));
    std::fs::write(&junk, b"not firmware").unwrap();
    let options = UsbOptions::default().firmware(junk.clone()).timeout(TIMEOUT);
    let err = UsbAccelerator::open(Arc::new(r.sim.clone()), &r.sim.config_path(), options).unwrap_err();
    std::fs::remove_file(&junk).ok();
    assert!(err.to_string().contains("does not look like the accelerator's firmware"), "{err}");
}
