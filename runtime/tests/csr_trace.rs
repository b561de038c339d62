//! The CSR control-request encoding against a recorded libusb log of libedgetpu driving a real
//! USB Accelerator (shared/research/traces/derived/geohot_edgetpuxray_setup_sequence.tsv): every
//! logged access to a register of our table has our bmRequestType, bRequest, wValue, wIndex and
//! length, and the register's name agrees; logged writes encode to the logged data.

mod common;

use edgetpu::device::csr::{self, Width};

fn hex(s: &str) -> u64 {
    u64::from_str_radix(s.trim_start_matches("0x"), 16).unwrap_or_else(|e| panic!("{s}: {e}"))
}

#[test]
fn csr_requests_match_the_real_device_log() {
    let path = common::testdata().join("../research/traces/derived/geohot_edgetpuxray_setup_sequence.tsv");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut checked = 0;
    for line in text.lines().filter(|l| !l.starts_with('#') && !l.starts_with("seq")) {
        let f: Vec<&str> = line.split('\t').collect();
        assert!(f.len() >= 9, "malformed line {line:?}");
        let (op, bm, req, wv, wi, len) =
            (f[1], hex(f[2]), hex(f[3]), hex(f[4]), hex(f[5]), f[6].parse::<u16>().unwrap());
        let mut csr_field = f[7].split(' ');
        let offset = hex(csr_field.next().unwrap()) as u32;
        let name = csr_field.next().unwrap_or("");
        let Some(reg) = csr::ALL.iter().copied().find(|c| c.offset == offset) else { continue };
        assert_eq!(reg.name, name, "register 0x{offset:x}");
        assert_eq!(reg.width == Width::W64, op.ends_with("64"), "{op} of {name}");
        let r = if op.starts_with("csr_write") {
            let w = csr::write_request(reg, hex(f[8]));
            assert_eq!(w.data.len(), len as usize);
            w
        } else {
            csr::read_request(reg)
        };
        assert_eq!(
            (r.request_type as u64, r.request as u64, r.value as u64, r.index as u64, r.length),
            (bm, req, wv, wi, len),
            "line {line:?}"
        );
        checked += 1;
    }
    assert!(checked >= 40, "only {checked} logged accesses matched registers of the table");
}
