//! Bridge to Google's `edgetpu_compiler`: find it, run it with typed options, and turn what it
//! prints into data.
//!
//! The compiler is closed source, exists only for x86-64 Linux, and was last released as 16.0.
//! Its answer is text: a summary on stdout and an operator table in `<model>_edgetpu.log`. This
//! crate
//!
//! * finds it ([`Compiler::locate`]: `--compiler` path, `EDGETPU_COMPILER`, then `PATH`) and
//!   says where it looked and what to do when it is missing or the host cannot run it;
//! * runs it ([`Compiler::compile`]) with [`CompileOptions`] (output directory, segments,
//!   minimum runtime version, intermediate tensors, delegate search, multiple subgraphs, timeout,
//!   several co-compiled models), reporting progress and killing it after a wall-clock limit;
//! * parses stdout and logs of every compiler version from 2.0 to 16.0 into a [`Report`]:
//!   memory figures, op counts, and the operator table with each status mapped to an
//!   [`OpReason`]. Lines it does not know are kept in [`Report::unparsed`];
//! * predicts without the compiler ([`check::check`], `edgetpu check`) which operators of a CPU
//!   model would map, why the others would not, and the parameter bytes against 8 MiB.
//!
//! ```no_run
//! use edgetpu_compiler::{CompileOptions, Compiler};
//!
//! let compiler = Compiler::locate(None)?;
//! let options = CompileOptions { out_dir: Some("out".into()), ..Default::default() };
//! let run = compiler.compile(&["model.tflite".into()], &options)?;
//! for m in &run.report.models {
//!     println!("{:?}: {:?} of {:?} ops on the Edge TPU", m.output, m.ops_on_tpu(), m.ops_total());
//! }
//! # Ok::<(), edgetpu_compiler::Error>(())
//! ```
#![forbid(unsafe_code)]

pub mod check;
mod check_rules;
pub mod error;
pub mod locate;
pub mod options;
pub mod parse;
pub mod report;
pub mod runner;

pub use error::{Error, Result};
pub use locate::{platform_supported, Compiler, Search, Source};
pub use options::{CompileOptions, OutputPaths, Segment};
pub use report::{format_size, parse_size, CompilerVersion, ModelReport, OpReason, OpRow, Report, PARTIAL_NOTICE};
pub use runner::{CompileOutput, CompiledModel, OutputFile, Progress};
