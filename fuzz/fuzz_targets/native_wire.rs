//! Fuzz target: the messages of the native tensor protocol (length, JSON header, payload).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(msg) = edgetpu_client::wire::decode(data, 1 << 20) {
        let _ = msg.header.get("op").and_then(|v| v.as_str());
        let _ = msg.header.get("id").and_then(|v| v.as_u64());
    }
});
