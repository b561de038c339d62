//! A stand-in for `edgetpu_compiler`, for tests: it takes the same options, prints output in
//! the compiler's format and writes `*_edgetpu.tflite` and `*_edgetpu.log` files, but compiles
//! nothing. The "compiled" model is a copy of the input, or of the file named by
//! `EDGETPU_STANDIN_MODEL`. Built only with the crate's `standin` feature (its tests turn it on).
//!
//! Settings that change what it does, read from the environment, or (first) from `NAME=value`
//! lines of a file `standin.env` in the output directory (so that tests running side by side
//! in one process can each set their own):
//!
//! * `EDGETPU_STANDIN_ARGS_FILE=PATH`: write its arguments there, one per line;
//! * `EDGETPU_STANDIN_SLEEP_MS=N`: sleep N ms after the timeout-timer line;
//! * `EDGETPU_STANDIN_SLEEP_IN_CHILD=PIDFILE`: while sleeping, also start a child process that
//!   sleeps with stdout inherited (as the real compiler compiles in a child process) and write
//!   its process id to PIDFILE;
//! * `EDGETPU_STANDIN_FAIL=MESSAGE`: fail like the compiler does, with this message;
//! * `EDGETPU_STANDIN_UNKNOWN_LINE=TEXT`: print this line among the model lines;
//! * `EDGETPU_STANDIN_TABLE=PATH`: take the operator rows from this `*_edgetpu.log`;
//! * `EDGETPU_STANDIN_OFF_CHIP=SIZE`: the off-chip (streamed) figure to print, e.g. `1.70MiB`;
//! * `EDGETPU_STANDIN_NO_OUTPUT=1`: report success without writing the model files.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

const VERSION: &str = "16.0.384591198";

const DEFAULT_ROWS: &str = "CONV_2D                        3          Mapped to Edge TPU\n\
                            DEPTHWISE_CONV_2D              2          Mapped to Edge TPU\n\
                            SOFTMAX                        1          Mapped to Edge TPU\n";

#[derive(Default)]
struct Args {
    out_dir: Option<PathBuf>,
    segments: u32,
    show: bool,
    timeout: u32,
    models: Vec<PathBuf>,
}

/// The `standin.env` settings of the output directory.
static FILE_SETTINGS: std::sync::OnceLock<Vec<(String, String)>> = std::sync::OnceLock::new();

fn env(name: &str) -> Option<String> {
    let from_file = FILE_SETTINGS.get().and_then(|s| s.iter().find(|(k, _)| k == name)).map(|(_, v)| v.clone());
    from_file.or_else(|| std::env::var(name).ok()).filter(|v| !v.is_empty())
}

fn load_settings(out_dir: Option<&Path>) {
    let text = std::fs::read_to_string(out_dir.unwrap_or(Path::new("")).join("standin.env")).unwrap_or_default();
    let pairs = text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.trim().into(), v.into())).collect();
    let _ = FILE_SETTINGS.set(pairs);
}

fn parse(argv: &[String]) -> Result<Args, String> {
    let mut a = Args { segments: 1, timeout: 180, ..Args::default() };
    let mut it = argv.iter();
    while let Some(arg) = it.next() {
        let mut value = |name: &str| it.next().cloned().ok_or(format!("option {name} needs a value"));
        let number = |v: String, name: &str| v.parse::<u32>().map_err(|_| format!("{name}: not a number: {v}"));
        match arg.as_str() {
            "-o" | "--out_dir" => a.out_dir = Some(PathBuf::from(value(arg)?)),
            "-n" | "--num_segments" => a.segments = number(value(arg)?, arg)?,
            "-m" | "--min_runtime_version" => {
                let m = number(value(arg)?, arg)?;
                if !(10..=14).contains(&m) {
                    return Err(format!("Invalid min_runtime_version: {m}"));
                }
            }
            "-i" | "--intermediate_tensors" => {
                value(arg)?;
            }
            "-k" | "--delegate_search_step" => {
                number(value(arg)?, arg)?;
            }
            "-t" | "--timeout_sec" => a.timeout = number(value(arg)?, arg)?,
            "-d" | "--search_delegate" | "-a" | "--enable_multiple_subgraphs" => {}
            "-s" | "--show_operations" => a.show = true,
            s if s.starts_with('-') => return Err(format!("Unknown command line flag '{s}'")),
            _ => a.models.push(PathBuf::from(arg)),
        }
    }
    if a.models.is_empty() {
        return Err("No input model given".into());
    }
    Ok(a)
}

fn size(bytes: u64) -> String {
    let b = bytes as f64;
    if bytes < 1024 {
        format!("{b:.2}B")
    } else if bytes < 1 << 20 {
        format!("{:.2}KiB", b / 1024.0)
    } else {
        format!("{:.2}MiB", b / 1048576.0)
    }
}

fn rows() -> Result<String, String> {
    let Some(path) = env("EDGETPU_STANDIN_TABLE") else { return Ok(DEFAULT_ROWS.to_string()) };
    let log = std::fs::read_to_string(&path).map_err(|e| format!("{path}: {e}"))?;
    let mut lines = log.lines().skip_while(|l| !l.starts_with("Operator"));
    lines.next();
    Ok(lines.filter(|l| !l.trim().is_empty()).map(|l| format!("{l}\n")).collect())
}

fn sleep_in_child(ms: u64) -> Result<(), String> {
    let Some(pid_file) = env("EDGETPU_STANDIN_SLEEP_IN_CHILD") else { return Ok(()) };
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let child = std::process::Command::new(me)
        .arg("--sleep-only")
        .arg(ms.to_string())
        .env_remove("EDGETPU_STANDIN_SLEEP_IN_CHILD")
        .spawn()
        .map_err(|e| e.to_string())?;
    std::fs::write(&pid_file, child.id().to_string()).map_err(|e| format!("{pid_file}: {e}"))
}

fn run(argv: &[String]) -> Result<(), String> {
    if argv.len() == 2 && argv[0] == "--sleep-only" {
        std::thread::sleep(Duration::from_millis(argv[1].parse().unwrap_or(0)));
        return Ok(());
    }
    println!("Edge TPU Compiler version {VERSION}");
    if argv.iter().any(|a| a == "--version" || a == "-v") {
        return Ok(());
    }
    let args = parse(argv)?;
    load_settings(args.out_dir.as_deref());
    if let Some(path) = env("EDGETPU_STANDIN_ARGS_FILE") {
        let text: String = argv.iter().map(|a| format!("{a}\n")).collect();
        std::fs::write(&path, text).map_err(|e| format!("{path}: {e}"))?;
    }
    println!("Started a compilation timeout timer of {} seconds.", args.timeout);
    if let Some(ms) = env("EDGETPU_STANDIN_SLEEP_MS").and_then(|v| v.parse::<u64>().ok()) {
        sleep_in_child(ms)?;
        std::thread::sleep(Duration::from_millis(ms));
    }
    if let Some(message) = env("EDGETPU_STANDIN_FAIL") {
        eprintln!("ERROR: {message}");
        println!("Compilation failed: {message}");
        println!("Compilation child process completed within timeout period.");
        println!("Compilation failed! ");
        return Err(String::new());
    }
    let rows = rows()?;
    let many = args.models.len() > 1;
    println!("\nModel{} compiled successfully in 42 ms.\n", if many { "s" } else { "" });
    let dir = args.out_dir.clone().unwrap_or_default();
    let copy_from = env("EDGETPU_STANDIN_MODEL").map(PathBuf::from);
    for model in &args.models {
        let input_size = std::fs::metadata(model).map_err(|e| format!("{}: {e}", model.display()))?.len();
        let stem = model.file_stem().unwrap_or_default().to_string_lossy().into_owned();
        for i in 0..args.segments {
            let base =
                if args.segments > 1 { format!("{stem}_segment_{i}_of_{}", args.segments) } else { stem.clone() };
            let input = if args.segments > 1 { PathBuf::from(format!("{base}.tflite")) } else { model.clone() };
            let out = dir.join(format!("{base}_edgetpu.tflite"));
            let log = dir.join(format!("{base}_edgetpu.log"));
            write_outputs(copy_from.as_deref().unwrap_or(model), &out, &log, &input, &rows)?;
            let out_size = std::fs::metadata(&out).map(|m| m.len()).unwrap_or(input_size);
            println!("Input model: {}", input.display());
            println!("Input size: {}", size(input_size));
            println!("Output model: {}", out.display());
            println!("Output size: {}", size(out_size));
            println!("On-chip memory used for caching model parameters: {}", size(input_size / 2));
            println!("On-chip memory remaining for caching model parameters: 7.50MiB");
            println!(
                "Off-chip memory used for streaming uncached model parameters: {}",
                env("EDGETPU_STANDIN_OFF_CHIP").unwrap_or("0.00B".into())
            );
            println!("Number of Edge TPU subgraphs: 1");
            let total: u32 = rows.lines().filter_map(|l| l.split_whitespace().nth(1)?.parse::<u32>().ok()).sum();
            println!("Total number of operations: {total}");
            println!("Operation log: {}", log.display());
            if let Some(line) = env("EDGETPU_STANDIN_UNKNOWN_LINE") {
                println!("{line}");
            }
            println!();
        }
    }
    if args.show {
        println!("Operator                       Count      Status\n");
        print!("{rows}");
    } else {
        println!("See the operation log file for individual operation details.");
    }
    println!("Compilation child process completed within timeout period.");
    println!("Compilation succeeded! ");
    Ok(())
}

fn write_outputs(from: &Path, out: &Path, log: &Path, input: &Path, rows: &str) -> Result<(), String> {
    if env("EDGETPU_STANDIN_NO_OUTPUT").is_some() {
        return Ok(());
    }
    std::fs::copy(from, out).map_err(|e| format!("{} -> {}: {e}", from.display(), out.display()))?;
    let text = format!(
        "Edge TPU Compiler version {VERSION}\nInput: {}\nOutput: {}\n\nOperator                       Count      Status\n\n{rows}",
        input.display(),
        out.display()
    );
    std::fs::write(log, text).map_err(|e| format!("{}: {e}", log.display()))
}

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    match run(&argv) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            if !message.is_empty() {
                eprintln!("{message}");
            }
            ExitCode::FAILURE
        }
    }
}
