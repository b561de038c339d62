//! Fuzz target: the FlexBuffer reader of the Edge TPU custom op's options, walking every value.
#![no_main]

use edgetpu::package::flexbuffer::{FlexRef, FlexType};
use libfuzzer_sys::fuzz_target;

/// Reads `r` and everything under it, at most `depth` levels and `budget` values.
fn walk(r: FlexRef<'_>, depth: usize, budget: &mut usize) {
    if depth == 0 || *budget == 0 {
        return;
    }
    *budget -= 1;
    let _ = r.flex_type();
    let _ = r.data_offset();
    let _ = r.as_i64();
    let _ = r.as_f64();
    let _ = r.as_bytes();
    let _ = r.as_str();
    if let Ok(v) = r.as_vector() {
        for i in 0..v.len().min(64) {
            if let Ok(e) = v.get(i) {
                walk(e, depth - 1, budget);
            }
        }
        let _ = v.get(v.len());
    }
    if let Ok(m) = r.as_map() {
        for i in 0..m.len().min(64) {
            let _ = m.key(i);
            if let Ok(e) = m.value(i) {
                walk(e, depth - 1, budget);
            }
        }
        for key in ["1", "4", "5", "6", "7", "zz"] {
            let _ = m.get(key);
        }
    }
    let _ = matches!(r.flex_type(), FlexType::Null);
}

fuzz_target!(|data: &[u8]| {
    if let Ok(root) = FlexRef::root(data) {
        walk(root, 16, &mut 4096);
    }
});
