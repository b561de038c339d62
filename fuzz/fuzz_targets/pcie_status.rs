//! Fuzz target: what a PCIe Edge TPU (or its driver) hands the host: the instruction queue's
//! status block, and the sysfs and procfs text the backend reads to identify the device.
#![no_main]

use edgetpu::device::pcie::sysfs;
use edgetpu::device::pcie::StatusBlock;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = StatusBlock::parse(data);
    let text = String::from_utf8_lossy(data);
    let _ = sysfs::Identity::parse_status(&text);
    let _ = sysfs::PciSelector::parse(&text);
    let _ = sysfs::parse_pci_address(&text);
});
