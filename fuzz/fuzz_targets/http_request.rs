//! Fuzz target: the HTTP request parser of `edgetpu serve` (request line, headers,
//! Content-Length body) and its `multipart/form-data` parser.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = edgetpu_serve::http::parse_request(data, 1 << 16);
});
