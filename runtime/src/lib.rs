//! A pure-Rust runtime for Coral Edge TPU accelerators.
//!
//! This crate loads TFLite models, compiled (`*_edgetpu.tflite`) or not, and exposes what is
//! inside them: [`Model`] is a verified, zero-copy view of the TFLite flatbuffer, and
//! [`package::Package`] decodes the Edge TPU executables carried by each `edgetpu-custom-op`.
//!
//! ```no_run
//! use edgetpu::{package::Package, Model};
//!
//! let model = Model::open("mobilenet_v1_0.25_128_quant_edgetpu.tflite")?;
//! for pkg in Package::all(&model)? {
//!     let main = pkg.main();
//!     println!("{}: {} instruction bytes", main.kind, main.bitstreams.iter().map(|b| b.data.len()).sum::<usize>());
//! }
//! # Ok::<(), edgetpu::Error>(())
//! ```
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod cpu;
pub mod device;
pub mod error;
mod fb;
pub mod model;
pub mod package;
pub mod sched;
pub mod transport;
pub mod vision;

pub use error::{Error, ErrorKind, Location, Result};
pub use model::{Model, Operator, Subgraph, Tensor};

/// The README's examples, compiled as doc tests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
