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
mod selftest;
mod serve;
mod thermal_watch;
mod tpu;

use anyhow::Result;
use clap::{Parser, Subcommand};
use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Parser)]
#[command(name = "edgetpu", version, about = "Pure-Rust runtime for Coral Edge TPU accelerators")]
struct Cli {
    /// More diagnostics on stderr: -v info, -vv debug, -vvv trace (RUST_LOG, in env_logger's
    /// syntax such as `edgetpu=debug`, takes precedence).
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,
    #[command(subcommand)]
    command: Command,
}

/// Installs the logger: warnings by default, more with each `-v`; `RUST_LOG` overrides.
fn init_logging(verbose: u8) {
    let level = match verbose {
        0 => log::LevelFilter::Warn,
        1 => log::LevelFilter::Info,
        2 => log::LevelFilter::Debug,
        _ => log::LevelFilter::Trace,
    };
    let mut builder = env_logger::Builder::new();
    builder.filter_level(level).format_timestamp_millis();
    if let Ok(spec) = std::env::var("RUST_LOG") {
        builder.parse_filters(&spec);
    }
    // A second initialisation (tests) keeps the first logger.
    let _ = builder.try_init();
}

#[derive(Subcommand)]
enum Command {
    /// Show what is inside a .tflite model: tensors, operators, and the Edge TPU executables.
    Inspect {
        /// The model file, or the name of a catalog model fetched with `edgetpu models fetch`.
        model: PathBuf,
        /// Print a JSON document instead of text (fields documented in docs/cli.md).
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
    /// Test this runtime on the attached Corals: every compiled model against its CPU twin, three
    /// inferences in a row, timings, link and temperature; `--report DIR` for a bug report.
    Selftest(selftest::Args),
    /// Own the Corals and serve every app on the host: Frigate's zmq detector protocol.
    Serve(serve::Args),
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
        Command::Selftest(args) => selftest::run(&args),
        Command::Serve(args) => serve::run(&args),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", message(&e));
            if let Some(err) = e.downcast_ref::<edgetpu::Error>() {
                if let Some(hint) = advice(err) {
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

/// What to do about an error: chosen by its kind and, for device errors, by whether the device
/// is a USB Accelerator or a PCIe Coral (the error's typed device kind).
fn advice(err: &edgetpu::Error) -> Option<&'static str> {
    let kind = err.device_kind();
    let device = matches!(kind, Some(edgetpu::DeviceKind::Usb | edgetpu::DeviceKind::Pci));
    advice_for(err.kind(), device, kind == Some(edgetpu::DeviceKind::Pci))
}

/// [`advice`] for an error of `kind`, of a device (`device`) that is a PCIe Coral (`pcie`) or not.
fn advice_for(kind: edgetpu::ErrorKind, device: bool, pcie: bool) -> Option<&'static str> {
    use edgetpu::ErrorKind as K;
    match (kind, pcie) {
        (K::InvalidModel, _) => {
            Some("the file is damaged or not a TFLite model; download it again or re-export it from the converter")
        }
        (K::NotFound, false) if !device => Some("check the path"),
        (K::NotFound, false) => Some(
            "`edgetpu devices` lists the Corals attached; a missing firmware image comes from `edgetpu firmware \
             fetch` (or --firmware PATH); `edgetpu doctor` checks the setup",
        ),
        (K::NotFound, true) => Some(
            "`edgetpu devices` lists the PCIe Corals; `edgetpu doctor` checks the apex driver and the card on the PCI \
             bus; a missing /dev/apex_N comes with the udev rules (`sudo udev/install.sh`) or a driver reload (`sudo \
             modprobe -r apex && sudo modprobe apex`)",
        ),
        (K::PermissionDenied, false) => Some(
            "for a file, check its permissions; for a Coral, install the udev rules (`sudo udev/install.sh`) and \
             replug it, or join the plugdev group (`sudo usermod -aG plugdev $USER`, then log in again)",
        ),
        (K::PermissionDenied, true) => Some(
            "install the udev rules that give /dev/apex_N to the apex group (`sudo udev/install.sh`) and join that \
             group (`sudo usermod -aG apex $USER`, then log in again); `edgetpu doctor` checks the setup",
        ),
        (K::Busy, _) => Some(
            "another process is using the Coral: stop it, or pick another Coral (`edgetpu devices` lists them and \
             who holds them)",
        ),
        (K::Disconnected | K::Timeout, false) => {
            Some("replug the Coral, check the cable, and use a USB 3 port (`edgetpu devices` shows the link speed)")
        }
        (K::Disconnected | K::Timeout, true) => Some(
            "the apex driver may need a reload (`sudo modprobe -r apex && sudo modprobe apex`) or the card a cold \
             boot; `edgetpu doctor` checks the setup",
        ),
        (K::DeviceFault | K::Protocol, _) => Some(
            "replug the Coral and run `edgetpu doctor` (it checks the firmware file too; `edgetpu firmware fetch` \
             gets it again); to report the problem, attach the trace recorded by `edgetpu doctor --record FILE`",
        ),
        (K::InvalidArgument, _) => Some(
            "check the arguments against the model: `edgetpu inspect MODEL` lists its inputs and outputs \
             (index, shape, type)",
        ),
        (K::Unsupported, false) => Some(
            "a *_edgetpu.tflite model runs with --device usb or pci (or sim, the simulator); the CPU model it was \
             compiled from runs with --device cpu",
        ),
        (K::Unsupported, true) => Some(
            "the PCIe backend needs Linux with the apex driver (`edgetpu doctor` checks the setup); --device usb or \
             sim run on other devices",
        ),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use edgetpu::{DeviceKind, Error, ErrorKind};

    fn device(name: &str, kind: ErrorKind) -> Error {
        let device_kind = if name.contains("pci") { DeviceKind::Pci } else { DeviceKind::Usb };
        Error::Device { device: name.into(), device_kind, kind, reason: "x".into() }
    }

    #[test]
    fn a_pcie_timeout_or_permission_error_gets_pcie_advice() {
        let hint = |name: &str, kind| advice(&device(name, kind)).unwrap();
        let timeout = hint("pci:/dev/apex_0", ErrorKind::Timeout);
        assert!(timeout.contains("sudo modprobe -r apex && sudo modprobe apex") && timeout.contains("cold boot"));
        assert!(timeout.contains("edgetpu doctor") && !timeout.contains("USB"), "{timeout}");
        assert_eq!(hint("sim:pci:0", ErrorKind::Disconnected), timeout);
        let perm = hint("pci:0", ErrorKind::PermissionDenied);
        assert!(perm.contains("sudo udev/install.sh") && perm.contains("sudo usermod -aG apex $USER"), "{perm}");
        assert!(!perm.contains("plugdev"), "{perm}");
        let unsupported = hint("pci", ErrorKind::Unsupported);
        assert!(unsupported.contains("apex driver") && !unsupported.contains("*_edgetpu"), "{unsupported}");
        assert!(hint("pci", ErrorKind::NotFound).contains("PCIe"));
    }

    #[test]
    fn usb_and_other_errors_keep_their_advice() {
        let timeout = advice(&device("usb:2-1", ErrorKind::Timeout)).unwrap();
        assert!(timeout.contains("USB 3 port") && !timeout.contains("modprobe"), "{timeout}");
        let perm = advice(&device("usb", ErrorKind::PermissionDenied)).unwrap();
        assert!(perm.contains("plugdev") && !perm.contains("apex"), "{perm}");
        let io = Error::Io { path: "/m.tflite".into(), source: std::io::Error::from(std::io::ErrorKind::NotFound) };
        assert_eq!(advice(&io), Some("check the path"));
        let model = Error::Unsupported { path: None, reason: "x".into() };
        assert!(advice(&model).unwrap().contains("--device usb or pci (or sim"));
        assert!(advice(&device("usb", ErrorKind::NotFound)).unwrap().contains("edgetpu devices"));
    }
}
