//! The simulator refuses what a device would: requests out of hint order, headers whose tag or
//! length disagree with the hints, an inference whose parameters are not cached, traffic before
//! the open sequence, and new requests while an output is unread.

mod common;

use edgetpu::device::program::Program;
use edgetpu::device::usb::dfu;
use edgetpu::device::usb::frame::Tag;
use edgetpu::device::usb::run_executable;
use edgetpu::device::usb::sequence;
use edgetpu::device::usb::transport::{Transport, UsbTransport};
use edgetpu::device::usb::UsbIo;
use edgetpu::device::Performance;
use edgetpu::package::Package;
use edgetpu::sim::usb::{SeededOracle, SimBus, SimConfig};
use edgetpu::{ErrorKind, Model};
use std::sync::{Arc, Mutex};
use std::time::Duration;

const T: Duration = Duration::from_millis(100);

fn model() -> Arc<Model> {
    Arc::new(Model::open(common::testdata().join("mobilenet_v1_0.25_128_quant_edgetpu.tflite")).unwrap())
}

/// A simulator that knows the model, and a transport on it; `open` runs the open sequence.
fn rig(model: &Model, open: bool) -> (SimBus, UsbTransport<Box<dyn UsbIo>>) {
    let sim = SimBus::new(SimConfig { start_in_dfu: false, ..Default::default() });
    let pkgs = Package::all(model).unwrap();
    sim.load(&pkgs[0], "mnv1", Some(Arc::new(Mutex::new(SeededOracle::new(1))))).unwrap();
    let mut none = || -> edgetpu::Result<Vec<u8>> { unreachable!("no firmware needed") };
    let io = dfu::prepare(&sim, &sim.config_path(), &mut none, T, &mut |_, _| {}).unwrap();
    let mut t = UsbTransport::new(io, T);
    if open {
        sequence::open(&mut t, Performance::High, false, false).unwrap();
    }
    (sim, t)
}

fn assert_refused(r: edgetpu::Result<()>, sim: &SimBus, says: &str) {
    let err = r.expect_err("the device must refuse this");
    assert_eq!(err.kind(), ErrorKind::Protocol, "{err}");
    let v = sim.violations();
    assert!(v.iter().any(|m| m.contains(says)), "violations {v:?} do not mention {says:?}");
}

#[test]
fn an_inference_without_cached_parameters_is_refused() {
    let m = model();
    let pkgs = Package::all(&m).unwrap();
    let mut program = Program::new(&m, &pkgs[0]).unwrap();
    let (sim, mut t) = rig(&m, true);
    let r = run_executable(&mut t, &mut program.main, pkgs[0].main().parameters, &[], false);
    assert_refused(r, &sim, "parameters are not cached");
}

#[test]
fn the_right_order_is_accepted_and_answered() {
    let m = model();
    let pkgs = Package::all(&m).unwrap();
    let mut program = Program::new(&m, &pkgs[0]).unwrap();
    let (sim, mut t) = rig(&m, true);
    let pc = pkgs[0].parameter_caching().unwrap();
    run_executable(&mut t, program.caching.as_mut().unwrap(), pc.parameters, &[], false).unwrap();
    run_executable(&mut t, &mut program.main, pkgs[0].main().parameters, &[], false).unwrap();
    assert!(sim.violations().is_empty(), "{:?}", sim.violations());
    assert_eq!(sim.stats().runs, 2);
    // Seeded outputs: not all zero.
    assert!(program.main.outputs[0].iter().any(|&b| b != 0));
}

#[test]
fn a_header_that_disagrees_with_the_hints_is_refused() {
    let m = model();
    let pkgs = Package::all(&m).unwrap();
    let program = Program::new(&m, &pkgs[0]).unwrap();
    let (sim, mut t) = rig(&m, true);
    let pc = program.caching.as_ref().unwrap();
    t.send(Tag::Instructions, &pc.linked[0]).unwrap();
    // The hints want the parameters next, all of them in one request.
    let params = pkgs[0].parameter_caching().unwrap().parameters;
    let r = t.send(Tag::Parameters, &params[..params.len() - 8]);
    assert_refused(r, &sim, "wants Parameters of");
}

#[test]
fn a_request_out_of_order_is_refused() {
    let m = model();
    let (sim, mut t) = rig(&m, true);
    let r = t.send(Tag::InputActivations, &[0u8; 49152]);
    assert_refused(r, &sim, "must begin with instructions");
}

#[test]
fn instructions_of_no_known_executable_are_refused() {
    let m = model();
    let pkgs = Package::all(&m).unwrap();
    let program = Program::new(&m, &pkgs[0]).unwrap();
    let (sim, mut t) = rig(&m, true);
    let mut bad = program.caching.as_ref().unwrap().linked[0].clone();
    bad[0] ^= 0xff;
    let r = t.send(Tag::Instructions, &bad);
    assert_refused(r, &sim, "match no registered executable");
}

#[test]
fn traffic_before_the_open_sequence_is_refused() {
    let m = model();
    let pkgs = Package::all(&m).unwrap();
    let program = Program::new(&m, &pkgs[0]).unwrap();
    let (sim, mut t) = rig(&m, false);
    let r = t.send(Tag::Instructions, &program.caching.as_ref().unwrap().linked[0]);
    assert_refused(r, &sim, "before the open sequence");
}

#[test]
fn a_request_while_an_output_is_unread_is_refused() {
    let m = model();
    let pkgs = Package::all(&m).unwrap();
    let mut program = Program::new(&m, &pkgs[0]).unwrap();
    let (sim, mut t) = rig(&m, true);
    let pc = pkgs[0].parameter_caching().unwrap();
    run_executable(&mut t, program.caching.as_mut().unwrap(), pc.parameters, &[], false).unwrap();
    // Send the inference's requests but never read its output, then start another run.
    let main = &program.main;
    t.send(Tag::Instructions, &main.linked[0]).unwrap();
    t.send(Tag::InputActivations, &main.inputs[0]).unwrap();
    let r = t.send(Tag::Instructions, &main.linked[0]);
    assert_refused(r, &sim, "unread");
}

#[test]
fn csr_requests_of_the_wrong_width_are_refused() {
    let m = model();
    let (sim, mut t) = rig(&m, true);
    let setup = edgetpu::device::usb::Setup { request_type: 0xC0, request: 0, value: 0x4018, index: 4 };
    let mut buf = [0u8; 4];
    let r = t.io_mut().control_in(setup, &mut buf, T);
    assert_eq!(r.unwrap_err().kind, edgetpu::device::usb::UsbErrorKind::Stall);
    assert!(sim.violations()[0].contains("CSR read with wLength 4"), "{:?}", sim.violations());
}
