//! Fuzz target: the parser of the Edge TPU compiler's stdout and `*_edgetpu.log` files.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let report = edgetpu_compiler::parse::parse(&text);
    let _ = format!("{report:?}");
    for line in text.lines().take(64) {
        let _ = edgetpu_compiler::report::parse_size(line);
    }
});
