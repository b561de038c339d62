//! Lists the operators of a model and where each one runs.
//!
//! `cargo run -p edgetpu-examples --example inspect_model -- MODEL.tflite`

use anyhow::{Context, Result};
use edgetpu::package::{Package, CUSTOM_OP_CODE};
use edgetpu::Model;

fn main() -> Result<()> {
    let path = std::env::args().nth(1).context("usage: inspect_model MODEL.tflite")?;
    let model = Model::open(&path)?;
    for sg in model.subgraphs() {
        for op in &sg.operators {
            let name = model.op_name(op);
            let place = if name == CUSTOM_OP_CODE { "Edge TPU" } else { "CPU" };
            println!("{:>3} {name:<28} {place}", op.index);
        }
    }
    // Each custom op carries a package: how much of the 8 MiB on-chip memory its weights take.
    for pkg in Package::all(&model)? {
        println!(
            "op {}: {} B of parameters cached on chip, {} B streamed per inference",
            pkg.operator_index,
            pkg.cached_parameter_bytes(),
            pkg.streamed_parameter_bytes()
        );
    }
    Ok(())
}
