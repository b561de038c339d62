//! Examples of the edgetpu runtime live in `examples/`; run one with
//! `cargo run -p edgetpu-examples --example NAME`.
