//! A pure-Rust runtime for Coral Edge TPU accelerators: the USB Accelerator, the M.2 /
//! Mini-PCIe cards and the Dev Board.
//!
//! It loads TFLite models, compiled (`*_edgetpu.tflite`) or not, runs their Edge TPU steps on a
//! Coral and every other op on the CPU, bit-exactly like TFLite's reference kernels:
//!
//! ```no_run
//! use edgetpu::{DeviceSpec, Interpreter, Model};
//!
//! let model = Model::open("mobilenet_v1_1.0_224_quant_edgetpu.tflite")?;
//! let mut it = Interpreter::builder(model).device(DeviceSpec::auto()).threads(2).build()?;
//! it.input_mut(0)?.fill(128);
//! it.invoke()?;
//! let scores: &[u8] = it.output(0)?;
//! println!("{} scores from {}", scores.len(), it.devices().join(","));
//! # Ok::<(), edgetpu::Error>(())
//! ```
//!
//! [`Runtime`] shares devices between several interpreters (`Interpreter::builder(model)
//! .runtime(&rt)`), keeps parameters resident where they pay and spreads work over every device;
//! [`sched::pipeline`] runs one model data-parallel ([`sched::pipeline::Pool`]) or a segmented
//! one as a pipeline.
//!
//! Below the façade: [`model`] (a verified, zero-copy view of the TFLite flatbuffer),
//! [`package`] (the Edge TPU executables inside each `edgetpu-custom-op`), [`cpu`] (the CPU
//! interpreter), [`device`] (the [`device::Accelerator`] trait and its USB and PCIe backends),
//! [`vision`] (image pre- and post-processing), and with the cargo feature `sim` the simulated
//! devices (`sim`). Diagnostics go through the [`log`](https://docs.rs/log) facade.
#![deny(unsafe_code)]
#![warn(missing_docs)]

pub mod cpu;
pub mod device;
pub mod error;
mod fb;
mod interpreter;
pub mod model;
pub mod package;
pub mod sched;
#[cfg(feature = "sim")]
pub mod sim;
pub mod vision;

#[cfg(test)]
#[path = "../tests/common/testdata.rs"]
mod test_data;

pub use cpu::TensorInfo;
pub use device::{DeviceInfo, DeviceSpec};
pub use error::{DeviceKind, Error, ErrorKind, Location, Result};
pub use interpreter::{Interpreter, InterpreterBuilder};
pub use model::{Model, Operator, Subgraph, Tensor};
pub use sched::{DeviceMetrics, Policy, Runtime, RuntimeOptions};

/// The README's examples, compiled as doc tests so that they stay true.
#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
pub struct ReadmeDoctests;
