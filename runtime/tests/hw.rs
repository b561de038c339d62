//! Tests on a real Coral USB Accelerator. Opt-in: they need one plugged in and usable by this
//! user (see HARDWARE.md), and run one at a time:
//!
//! ```sh
//! cargo test -p edgetpu --features hw --test hw -- --test-threads=1
//! ```
#![cfg(feature = "hw")]

use edgetpu::device::discovery::{self, DeviceState};
use edgetpu::transport::usb::RusbBus;
use edgetpu::transport::{Setup, UsbBus, APP_ID, DFU_ID};
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

// ---------------------------------------------------------------------------------------------
// To be added here: opening a Coral (firmware download from DFU mode, the open sequence) and
// running an inference on it, once the device open/run/close API exists.
// ---------------------------------------------------------------------------------------------
