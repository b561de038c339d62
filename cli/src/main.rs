//! The `edgetpu` command.
#![forbid(unsafe_code)]

mod inspect;

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
        /// The model file.
        model: PathBuf,
        /// Print a JSON document instead of text (fields documented in the README).
        #[arg(long)]
        json: bool,
    },
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Inspect { model, json } => inspect::run(&model, json),
    }
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            if let Some(err) = e.downcast_ref::<edgetpu::Error>() {
                if let Some(hint) = advice(err.kind()) {
                    eprintln!("hint: {hint}");
                }
            }
            ExitCode::FAILURE
        }
    }
}

fn advice(kind: edgetpu::ErrorKind) -> Option<&'static str> {
    match kind {
        edgetpu::ErrorKind::InvalidModel => {
            Some("the file is damaged or not a TFLite model; download it again or re-export it from the converter")
        }
        edgetpu::ErrorKind::NotFound => Some("check the path"),
        edgetpu::ErrorKind::PermissionDenied => Some("check the file's permissions"),
        _ => None,
    }
}
