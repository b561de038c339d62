//! The `edgetpu` command.
#![forbid(unsafe_code)]

mod bench;
mod bench_devices;
mod check;
mod classify;
mod common;
mod compile;
mod detect;
mod devices;
mod doctor;
mod draw;
mod firmware;
mod inspect;
mod models;
mod record_session;
mod run;
mod segment;
mod thermal_watch;
mod tpu;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "edgetpu", version, about = "Pure-Rust runtime for Coral Edge TPU accelerators")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Show what is inside a .tflite model: tensors, operators, and the Edge TPU executables.
    Inspect {
        /// The model file, or the name of a catalog model fetched with `edgetpu models fetch`.
        model: PathBuf,
        /// Print a JSON document instead of text (fields documented in the README).
        #[arg(long)]
        json: bool,
    },
    /// Run a model on the CPU with raw tensor bytes in and out (the golden file layout).
    Run(run::Args),
    /// Classify an image: the top classes with their scores.
    Classify(classify::Args),
    /// Detect objects in an image (SSD models ending in TFLite_Detection_PostProcess).
    Detect(detect::Args),
    /// Segment an image: a class per pixel, written as a mask image.
    Segment(segment::Args),
    /// Compile CPU models for the Edge TPU with edgetpu_compiler, then summarise the result.
    Compile(compile::Args),
    /// Predict, without the compiler, which operators would map to the Edge TPU, and why not.
    Check(check::Args),
    /// Measure a model's CPU latency: warm-up, then p50/p90/p99 over many invocations.
    Bench(bench::Args),
    /// List the Corals: USB Accelerators (selection string, state, USB link speed) and PCIe cards
    /// (selection string, state, node, PCI address, temperature, clock step).
    Devices(devices::Args),
    /// Check this machine's setup for a Coral (udev rules, permissions, group, firmware, USB link;
    /// for PCIe cards also the apex driver, page size, interrupts, ASPM and temperature).
    Doctor(doctor::Args),
    /// Download the USB Accelerator's firmware image, or show where the runtime looks for it.
    Firmware(firmware::Args),
    /// The model catalog: list it, or fetch a model into the cache directory (`--model NAME` then runs it).
    Models(models::Args),
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Inspect { model, json } => inspect::run(&model, json),
        Command::Run(args) => run::run(&args),
        Command::Classify(args) => classify::run(&args),
        Command::Detect(args) => detect::run(&args),
        Command::Segment(args) => segment::run(&args),
        Command::Bench(args) => bench::run(&args),
        Command::Compile(args) => compile::run(&args),
        Command::Check(args) => check::run(&args),
        Command::Devices(args) => devices::run(&args),
        Command::Doctor(args) => doctor::run(&args),
        Command::Firmware(args) => firmware::run(&args),
        Command::Models(args) => models::run(&args),
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", message(&e));
            if let Some(err) = e.downcast_ref::<edgetpu::Error>() {
                if let Some(hint) = advice(err.kind()) {
                    eprintln!("hint: {hint}");
                }
            }
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes joined by ": ", skipping a cause whose text the message before it
/// already ends with (the runtime's I/O errors include their OS error).
fn message(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        if out.ends_with(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn advice(kind: edgetpu::ErrorKind) -> Option<&'static str> {
    match kind {
        edgetpu::ErrorKind::InvalidModel => {
            Some("the file is damaged or not a TFLite model; download it again or re-export it from the converter")
        }
        edgetpu::ErrorKind::NotFound => Some("check the path"),
        edgetpu::ErrorKind::PermissionDenied => Some(
            "for a file, check its permissions; for a Coral, install the udev rules (`sudo udev/install.sh`) and \
             replug it, or join the plugdev group (`sudo usermod -aG plugdev $USER`, then log in again)",
        ),
        edgetpu::ErrorKind::Busy => {
            Some("another process is using the Coral: stop it, or pick another Coral (`edgetpu devices` lists them)")
        }
        edgetpu::ErrorKind::Disconnected | edgetpu::ErrorKind::Timeout => {
            Some("replug the Coral, check the cable, and use a USB 3 port (`edgetpu devices` shows the link speed)")
        }
        edgetpu::ErrorKind::DeviceFault | edgetpu::ErrorKind::Protocol => Some(
            "run `edgetpu doctor`; to report the problem, attach the trace recorded by \
             `edgetpu doctor --record FILE`",
        ),
        edgetpu::ErrorKind::InvalidArgument => Some(
            "check the arguments against the model: `edgetpu inspect MODEL` lists its inputs and outputs \
             (index, shape, type)",
        ),
        edgetpu::ErrorKind::Unsupported => Some(
            "a *_edgetpu.tflite model runs with --device usb (or sim, the simulator); the CPU model it was compiled \
             from runs with --device cpu",
        ),
        _ => None,
    }
}
