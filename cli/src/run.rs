//! `edgetpu run`: raw tensor bytes in, raw tensor bytes out.

use crate::common::{self, ModelArgs};
use anyhow::{bail, Context, Result};
use serde_json::json;
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
    /// only the nodes these depend on are planned and run, so ops after them (even ones this
    /// runtime cannot run) do not matter.
    #[arg(long, value_delimiter = ',')]
    pub outputs: Option<Vec<usize>>,
    /// Print a JSON document instead of text.
    #[arg(long)]
    pub json: bool,
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
    if args.outputs.as_ref().is_some_and(|o| o.is_empty()) {
        bail!("nothing to write: --outputs is empty");
    }
    let mut loaded = common::load(&args.model, args.outputs.clone())?;
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

    // The model outputs, or those of --outputs.
    let tensors: Vec<usize> = it.outputs().iter().map(|t| t.index).collect();
    if tensors.is_empty() {
        bail!("nothing to write: the model has no outputs");
    }
    std::fs::create_dir_all(&args.output_dir)
        .map_err(|source| edgetpu::Error::Io { path: args.output_dir.clone(), source })?;
    let mut written = Vec::new();
    for (j, &t) in tensors.iter().enumerate() {
        let bytes = it.tensor(t)?;
        let info = &it.plan().tensors()[t];
        let file = args.output_dir.join(format!("out{j}.bin"));
        std::fs::write(&file, bytes).map_err(|source| edgetpu::Error::Io { path: file.clone(), source })?;
        let sha = edgetpu_models::download::sha256_hex(bytes);
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
        println!("invoke: {invoke_ms:.2} ms on {} threads{}", it.threads(), loaded.device_note());
    }
    Ok(())
}
