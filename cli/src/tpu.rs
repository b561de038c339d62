//! Running a compiled model on an Edge TPU: `--device usb|usb:N|usb:<path>|sim|sim:usb`.
//!
//! A compiled model whose graph is exactly one `edgetpu-custom-op` runs here; one with CPU ops
//! around its Edge TPU step needs the hybrid interpreter, which is not written yet, and is
//! refused with a message naming its CPU twin.

use anyhow::{bail, Context, Result};
use edgetpu::device::program::Program;
use edgetpu::device::sequence::Performance;
use edgetpu::device::usb::{UsbAccelerator, UsbOptions};
use edgetpu::package::Package;
use edgetpu::transport::sim::{CpuTwinOracle, Oracle, SeededOracle, SimBus, SimConfig};
use edgetpu::transport::UsbBus;
use edgetpu::Model;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Where to run.
#[derive(clap::Args, Debug, Clone)]
pub struct DeviceArgs {
    /// cpu, or an Edge TPU for a compiled model: usb (the first Coral USB Accelerator), usb:N,
    /// usb:<bus>-<ports>, or sim (alias sim:usb: the simulated accelerator, no hardware).
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// With --device sim: the CPU model whose outputs the simulator returns (default: the file
    /// beside the compiled model with `_edgetpu` removed from its name).
    #[arg(long)]
    pub sim_oracle: Option<PathBuf>,
    /// Firmware image for an accelerator that needs it (default: EDGETPU_FIRMWARE, then the
    /// data directory; `edgetpu firmware fetch` puts it there).
    #[arg(long)]
    pub firmware: Option<PathBuf>,
    /// Clock setting: low, medium, high (default) or max (runs hot: at most 25 °C ambient).
    #[arg(long, default_value = "high", value_parser = parse_performance)]
    pub performance: Performance,
}

fn parse_performance(s: &str) -> Result<Performance, String> {
    Performance::parse(s).ok_or_else(|| format!("{s:?}: use low, medium, high or max"))
}

impl DeviceArgs {
    /// Whether the CPU is asked for.
    pub fn is_cpu(&self) -> bool {
        self.device == "cpu"
    }
    fn is_sim(&self) -> bool {
        self.device == "sim" || self.device == "sim:usb"
    }
}

/// The CPU twin of a compiled model: the file beside it with `_edgetpu` removed from its name.
pub fn twin_path(compiled: &Path) -> Option<PathBuf> {
    let name = compiled.file_name()?.to_str()?;
    let twin = name.replacen("_edgetpu", "", 1);
    (twin != name).then(|| compiled.with_file_name(twin)).filter(|p| p.is_file())
}

/// A compiled model opened on a device, ready to run.
pub struct TpuRun {
    program: Program,
    acc: UsbAccelerator,
    /// Dense input sizes, in order.
    pub input_sizes: Vec<usize>,
    /// Dense output sizes, in order.
    pub output_sizes: Vec<usize>,
    /// Graph input index of each executable input layer.
    in_perm: Vec<usize>,
    /// Graph output index of each executable output layer.
    out_perm: Vec<usize>,
}

/// Opens `model_path` for the device in `args`.
pub fn open(model_path: &Path, args: &DeviceArgs) -> Result<TpuRun> {
    if !(args.is_sim() || args.device == "usb" || args.device.starts_with("usb:")) {
        bail!("--device {:?}: use cpu, usb, usb:N, usb:<bus>-<ports> or sim", args.device);
    }
    let model = Arc::new(Model::open(model_path)?);
    let pkgs = Package::all(&model)?;
    let sg = &model.subgraphs()[0];
    // The graph must be the custom op alone; its inputs and outputs may be listed in another
    // order than the graph's.
    let perm = |op: &[Option<usize>], graph: &[usize]| -> Option<Vec<usize>> {
        (op.len() == graph.len()).then_some(())?;
        op.iter().map(|t| graph.iter().position(|g| Some(*g) == *t)).collect()
    };
    let op = sg.operators.first();
    let in_perm = op.and_then(|op| perm(&op.inputs, &sg.inputs));
    let out_perm = op.and_then(|op| perm(&op.outputs, &sg.outputs));
    let whole = pkgs.len() == 1 && sg.operators.len() == 1 && in_perm.is_some() && out_perm.is_some();
    if pkgs.is_empty() {
        bail!(
            "{} is not compiled for the Edge TPU (no edgetpu-custom-op); run it with --device cpu",
            model_path.display()
        );
    }
    if !whole {
        let twin = twin_path(model_path)
            .map_or(String::new(), |t| format!(": run its CPU twin {} with --device cpu", t.display()));
        return Err(edgetpu::Error::Unsupported {
            path: Some(model_path.to_path_buf()),
            reason: format!(
                "this compiled model's graph is more than one Edge TPU step ({} operators, {} on the Edge TPU); \
                 running CPU and TPU steps together needs the hybrid interpreter, which is not written \
                 yet{twin}",
                sg.operators.len(),
                pkgs.len()
            ),
        }
        .into());
    }
    let pkg = &pkgs[0];
    let exe = pkg.main();
    let mut options =
        UsbOptions { performance: args.performance, firmware: args.firmware.clone(), ..Default::default() };
    let bus: Arc<dyn UsbBus> = if args.is_sim() {
        let firmware = edgetpu::device::firmware_path::locate(args.firmware.as_deref()).ok();
        let sim = SimBus::new(SimConfig { start_in_dfu: firmware.is_some(), ..Default::default() });
        let twin = args.sim_oracle.clone().or_else(|| twin_path(model_path));
        let oracle: Arc<Mutex<dyn Oracle>> = match &twin {
            Some(t) => {
                let twin_model =
                    Arc::new(Model::open(t).with_context(|| format!("the simulator's oracle {}", t.display()))?);
                Arc::new(Mutex::new(CpuTwinOracle::new(twin_model, &exe.input_layers, &exe.output_layers)?))
            }
            None => Arc::new(Mutex::new(SeededOracle::new(0))),
        };
        let mut banner = format!(
            "device: sim:usb, a simulated Coral USB Accelerator (no hardware); outputs from {}",
            oracle.lock().map(|o| o.describe()).unwrap_or_default()
        );
        if twin.is_none() {
            banner.push_str(": pass --sim-oracle CPU_MODEL for real values");
        }
        match firmware {
            Some(f) => options.firmware = Some(f),
            None => banner
                .push_str("\nsim: no firmware image found, so the simulated device starts with its firmware loaded"),
        }
        eprintln!("{banner}");
        sim.load(pkg, &model_path.display().to_string(), Some(oracle))?;
        Arc::new(sim)
    } else {
        Arc::new(crate::devices::open_bus()?)
    };
    let progress: Arc<dyn Fn(usize, usize) + Send + Sync> = Arc::new(|sent, total| {
        // About twenty updates, in place.
        let step = total.div_ceil(20).max(1);
        if sent == total || sent % step < 256 {
            eprint!("\rdownloading firmware: {sent} / {total} bytes");
        }
        if sent == total {
            eprintln!();
        }
    });
    options.progress = Some(progress);
    let selector = if args.is_sim() { "usb" } else { args.device.as_str() };
    let acc = UsbAccelerator::open_selected(bus, selector, options)?;
    if !args.is_sim() {
        let mut banner = format!("device: {} ({})", acc.name(), acc.speed());
        if acc.speed().is_usb2() {
            banner.push_str("\nwarning: USB 2 link: transfers are slower; use a USB 3 port and cable");
        }
        eprintln!("{banner}");
    }
    let program = Program::new(&model, pkg)?;
    let size = |l: &edgetpu::package::Layer| l.num_elements() * l.data_type.size_bytes() * l.execution_count.max(1);
    let in_perm = in_perm.unwrap_or_default();
    let out_perm = out_perm.unwrap_or_default();
    // Sizes in the graph's order.
    let mut input_sizes = vec![0; in_perm.len()];
    for (k, &g) in in_perm.iter().enumerate() {
        input_sizes[g] = size(&exe.input_layers[k]);
    }
    let mut output_sizes = vec![0; out_perm.len()];
    for (k, &g) in out_perm.iter().enumerate() {
        output_sizes[g] = size(&exe.output_layers[k]);
    }
    drop(pkgs);
    Ok(TpuRun { program, acc, input_sizes, output_sizes, in_perm, out_perm })
}

impl TpuRun {
    /// Runs one inference; inputs and outputs in the graph's order.
    pub fn run(&mut self, inputs: &[&[u8]], outputs: &mut [Vec<u8>]) -> Result<()> {
        let ins: Vec<&[u8]> = self.in_perm.iter().map(|&g| inputs[g]).collect();
        let mut layer_out: Vec<Vec<u8>> = self.out_perm.iter().map(|&g| vec![0u8; outputs[g].len()]).collect();
        let mut refs: Vec<&mut [u8]> = layer_out.iter_mut().map(|v| v.as_mut_slice()).collect();
        self.acc.run(&mut self.program, &ins, &mut refs)?;
        for (k, &g) in self.out_perm.iter().enumerate() {
            outputs[g] = std::mem::take(&mut layer_out[k]);
        }
        Ok(())
    }

    /// Closes the device.
    pub fn close(self) -> Result<()> {
        Ok(self.acc.close()?)
    }
}
