//! `edgetpu run`: raw tensor bytes in, raw tensor bytes out.

use crate::common::{self, ModelArgs};
use anyhow::{bail, Context, Result};
use serde_json::json;
use sha2::{Digest, Sha256};
use std::fmt::Write as _;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Arguments of `edgetpu run`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Raw bytes of input i (row-major, the tensor's type, little-endian), once per input in
    /// order; `.gz` files are decompressed.
    #[arg(long = "input", short, required = true)]
    pub inputs: Vec<PathBuf>,
    /// Directory for `out<j>.bin` (created if needed).
    #[arg(long)]
    pub output_dir: PathBuf,
    /// Tensor indices to write instead of the model outputs, in order (e.g. `--outputs 98,100`):
    /// intermediate tensors are kept readable for this.
    #[arg(long, value_delimiter = ',')]
    pub outputs: Option<Vec<usize>>,
    /// Print a JSON document instead of text.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub device: crate::tpu::DeviceArgs,
}

fn read_input(path: &Path) -> Result<Vec<u8>> {
    let bytes = std::fs::read(path).map_err(|source| edgetpu::Error::Io { path: path.to_path_buf(), source })?;
    if path.extension().is_some_and(|e| e == "gz") {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&bytes[..])
            .read_to_end(&mut out)
            .with_context(|| format!("{}: not a valid gzip file", path.display()))?;
        return Ok(out);
    }
    Ok(bytes)
}

pub fn run(args: &Args) -> Result<()> {
    if !args.device.is_cpu() {
        return run_tpu(args);
    }
    let keep = args.outputs.clone().unwrap_or_default();
    let mut loaded = common::load(&args.model, keep.clone())?;
    let it = &mut loaded.it;
    let n_inputs = it.inputs().len();
    if args.inputs.len() != n_inputs {
        let list: Vec<String> = it.inputs().iter().map(|t| format!("{} {:?}", t.dtype.name(), t.shape)).collect();
        return Err(edgetpu::Error::InvalidArgument {
            reason: format!(
                "the model has {n_inputs} inputs ({}) but {} --input files were given",
                list.join(", "),
                args.inputs.len()
            ),
        }
        .into());
    }
    for (i, path) in args.inputs.iter().enumerate() {
        let bytes = read_input(path)?;
        it.set_input(i, &bytes).with_context(|| format!("--input {}", path.display()))?;
    }
    let invoke_ms = common::invoke(it)?;

    let tensors: Vec<usize> = match &args.outputs {
        Some(list) => list.clone(),
        None => it.outputs().iter().map(|t| t.index).collect(),
    };
    if tensors.is_empty() {
        bail!("nothing to write: --outputs is empty");
    }
    std::fs::create_dir_all(&args.output_dir)
        .map_err(|source| edgetpu::Error::Io { path: args.output_dir.clone(), source })?;
    let mut written = Vec::new();
    for (j, &t) in tensors.iter().enumerate() {
        let bytes = it.tensor(t)?;
        let info = &it.plan().tensors()[t];
        let file = args.output_dir.join(format!("out{j}.bin"));
        std::fs::write(&file, bytes).map_err(|source| edgetpu::Error::Io { path: file.clone(), source })?;
        let sha = Sha256::digest(bytes).iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        });
        let mut doc = common::tensor_json(info);
        doc["file"] = json!(file.display().to_string());
        doc["nbytes"] = json!(bytes.len());
        doc["sha256"] = json!(sha);
        written.push(doc);
    }
    if args.json {
        let doc = json!({
            "model": args.model.model.display().to_string(),
            "threads": it.threads(),
            "load_ms": loaded.load_ms,
            "invoke_ms": invoke_ms,
            "outputs": written,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        for w in &written {
            println!(
                "{}  tensor {} {:?} {} {}  {} bytes",
                w["file"].as_str().unwrap_or(""),
                w["index"],
                w["name"].as_str().unwrap_or(""),
                w["type"].as_str().unwrap_or(""),
                w["shape"],
                w["nbytes"]
            );
        }
        println!("invoke: {invoke_ms:.2} ms on {} threads", it.threads());
    }
    Ok(())
}

/// `run` of a compiled model on an Edge TPU (or the simulator).
fn run_tpu(args: &Args) -> Result<()> {
    if args.outputs.is_some() {
        bail!(
            "--outputs reads intermediate tensors of the CPU interpreter; it does not apply with --device {}",
            args.device.device
        );
    }
    let start = std::time::Instant::now();
    let mut tpu = crate::tpu::open(&args.model.model, &args.device)?;
    let load_ms = common::ms(start);
    if args.inputs.len() != tpu.input_sizes.len() {
        bail!("the model has {} inputs but {} --input files were given", tpu.input_sizes.len(), args.inputs.len());
    }
    let inputs = args.inputs.iter().map(|p| read_input(p)).collect::<Result<Vec<_>>>()?;
    let refs: Vec<&[u8]> = inputs.iter().map(|v| v.as_slice()).collect();
    let mut outputs: Vec<Vec<u8>> = tpu.output_sizes.iter().map(|&n| vec![0u8; n]).collect();
    let start = std::time::Instant::now();
    tpu.run(&refs, &mut outputs)?;
    let invoke_ms = common::ms(start);
    std::fs::create_dir_all(&args.output_dir)
        .map_err(|source| edgetpu::Error::Io { path: args.output_dir.clone(), source })?;
    let mut written = Vec::new();
    for (j, bytes) in outputs.iter().enumerate() {
        let file = args.output_dir.join(format!("out{j}.bin"));
        std::fs::write(&file, bytes).map_err(|source| edgetpu::Error::Io { path: file.clone(), source })?;
        let sha = Sha256::digest(bytes).iter().fold(String::new(), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        });
        written.push(json!({"file": file.display().to_string(), "nbytes": bytes.len(), "sha256": sha}));
    }
    tpu.close()?;
    if args.json {
        let doc = json!({
            "model": args.model.model.display().to_string(),
            "device": args.device.device,
            "device_note": tpu_note(&args.device.device),
            "load_ms": load_ms,
            "invoke_ms": invoke_ms,
            "outputs": written,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        for w in &written {
            println!("{}  {} bytes", w["file"].as_str().unwrap_or(""), w["nbytes"]);
        }
        println!("invoke: {invoke_ms:.2} ms on {}{}", args.device.device, tpu_note(&args.device.device));
    }
    Ok(())
}

fn tpu_note(device: &str) -> &'static str {
    if device.starts_with("sim") {
        " (simulated: the time is the host's, not an Edge TPU's)"
    } else {
        ""
    }
}
