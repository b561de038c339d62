//! Tests on a real Coral USB Accelerator. Opt-in: they need one plugged in and usable by this
//! user (see HARDWARE.md), and run one at a time:
//!
//! ```sh
//! cargo test -p edgetpu --features hw --test hw -- --test-threads=1
//! ```
#![cfg(feature = "hw")]

use edgetpu::device::usb::discovery::{self, DeviceState};
use edgetpu::device::usb::rusb::RusbBus;
use edgetpu::device::usb::{Setup, UsbBus, APP_ID, DFU_ID};
use std::time::Duration;

fn bus() -> RusbBus {
    RusbBus::new().expect("libusb initialises (is /dev/bus/usb there?)")
}

#[test]
fn discovery_finds_a_coral() {
    let corals = discovery::list(&bus()).expect("listing USB devices");
    for c in &corals {
        println!(
            "{}  {}  {:04x}:{:04x}  {}  node {:?}",
            c.selector, c.state, c.info.vendor, c.info.product, c.info.speed, c.info.node
        );
    }
    assert!(!corals.is_empty(), "no Coral found: plug one in (see HARDWARE.md)");
    for c in &corals {
        assert_ne!(c.state, DeviceState::NoPermission, "{}: install the udev rules (HARDWARE.md)", c.selector);
    }
}

#[test]
fn reads_the_device_descriptor() {
    let bus = bus();
    let coral = discovery::select(&bus, &discovery::Selector::Any).expect("a Coral is attached");
    let mut io = bus.open(&coral.info.path).expect("the Coral opens");
    // GET_DESCRIPTOR(DEVICE): standard request, device to host.
    let setup = Setup { request_type: 0x80, request: 6, value: 0x0100, index: 0 };
    let mut desc = [0u8; 18];
    let n = io.control_in(setup, &mut desc, Duration::from_secs(1)).expect("GET_DESCRIPTOR");
    println!("{}: device descriptor {:02x?}", coral.selector, &desc[..n]);
    assert_eq!(n, 18);
    assert_eq!((desc[0], desc[1]), (18, 1), "bLength 18, bDescriptorType DEVICE");
    let id = (u16::from_le_bytes([desc[8], desc[9]]), u16::from_le_bytes([desc[10], desc[11]]));
    assert!(id == APP_ID || id == DFU_ID, "unexpected id {:04x}:{:04x}", id.0, id.1);
    assert_eq!(id, (coral.info.vendor, coral.info.product), "the descriptor matches what the bus listed");
}

#[path = "common/testdata.rs"]
mod testdata;
use testdata::testdata;

fn options() -> edgetpu::device::usb::UsbOptions {
    // EDGETPU_FIRMWARE or the data directory, else the shared copy.
    let firmware = edgetpu::device::usb::firmware::locate(None)
        .unwrap_or_else(|_| testdata().join("../firmware/apex_latest_single_ep.bin"));
    edgetpu::device::usb::UsbOptions::default().firmware(firmware)
}

#[test]
fn opens_and_closes_with_firmware_if_needed() {
    let bus = std::sync::Arc::new(bus());
    let acc = edgetpu::device::usb::UsbAccelerator::open_selected(bus.clone(), "usb", options())
        .expect("firmware (if needed) and the open sequence");
    println!("{} open at {}", acc.name(), acc.speed());
    acc.close().expect("the close sequence");
    // After the firmware the Coral shows its application id.
    let coral = discovery::select(bus.as_ref(), &discovery::Selector::Any).unwrap();
    assert_eq!((coral.info.vendor, coral.info.product), APP_ID);
}

#[test]
fn one_inference_equals_the_cpu_twin() {
    use edgetpu::device::program::Program;
    use edgetpu::package::Package;
    let dir = testdata();
    let model =
        std::sync::Arc::new(edgetpu::Model::open(dir.join("mobilenet_v1_0.25_128_quant_edgetpu.tflite")).unwrap());
    let twin = std::sync::Arc::new(edgetpu::Model::open(dir.join("mobilenet_v1_0.25_128_quant.tflite")).unwrap());
    let pkgs = Package::all(&model).unwrap();
    let mut program = Program::new(&model, &pkgs[0]).unwrap();
    let input: Vec<u8> = (0..128 * 128 * 3).map(|i| (i * 13 % 256) as u8).collect();
    let mut out = vec![0u8; 1001];
    let bus = std::sync::Arc::new(bus());
    let mut acc = edgetpu::device::usb::UsbAccelerator::open_selected(bus, "usb", options()).unwrap();
    for run in 0..3 {
        let start = std::time::Instant::now();
        acc.run(&mut program, &[&input], &mut [&mut out]).expect("an inference");
        println!("inference {run}: {:.2} ms", start.elapsed().as_secs_f64() * 1e3);
    }
    acc.close().unwrap();
    let mut cpu = edgetpu::cpu::Interpreter::new(twin, &Default::default()).unwrap();
    cpu.set_input(0, &input).unwrap();
    cpu.invoke().unwrap();
    let want = cpu.output(0).unwrap();
    let top = |v: &[u8]| v.iter().enumerate().max_by_key(|(_, &s)| s).map(|(i, _)| i);
    println!("top class: Edge TPU {:?}, CPU {:?}", top(&out), top(want));
    // The Edge TPU's arithmetic need not be bit-exact with TFLite's reference kernels: the top
    // class must agree; the byte differences are printed for the report.
    let diff = out.iter().zip(want).filter(|(a, b)| a != b).count();
    let max = out.iter().zip(want).map(|(&a, &b)| (a as i32 - b as i32).abs()).max().unwrap_or(0);
    println!("{diff} of 1001 output bytes differ from the CPU twin, by at most {max}");
    assert_eq!(top(&out), top(want), "the top class differs from the CPU twin's");
}

#[test]
fn records_a_session_for_a_report() {
    // Writes target/hw-session.jsonl: attach it to a hardware report (HARDWARE.md).
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/hw-session.jsonl");
    let file = std::fs::File::create(&path).unwrap();
    let rec = std::sync::Arc::new(edgetpu::device::usb::record::RecordingBus::new(bus(), Box::new(file)).unwrap());
    let acc = edgetpu::device::usb::UsbAccelerator::open_selected(rec.clone(), "usb", options()).unwrap();
    acc.close().unwrap();
    rec.finish().unwrap();
    println!("recorded {}", path.display());
}
