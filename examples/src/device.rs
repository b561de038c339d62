//! Where an example runs its model (`--device`), and the interpreter that runs it there.
//!
//! A CPU model (`*.tflite`) runs on the CPU. A compiled model (`*_edgetpu.tflite`) runs on an
//! Edge TPU: its `edgetpu-custom-op` on the device, any other op on the CPU. With `--device auto`
//! (the default) an example takes the Coral when one is attached and the CPU otherwise, and picks
//! the file that fits: the compiled twin `X_edgetpu.tflite` of a CPU model `X.tflite` for the
//! Coral, the CPU twin of a compiled model for the CPU.

use anyhow::{bail, Context, Result};
use edgetpu::cpu::{Interpreter, Options};
use edgetpu::model::{compiled_twin_path, cpu_twin_path as twin_path};
use edgetpu::vision::{Labels, Preprocess};
use edgetpu::{DeviceSpec, Model, Runtime, RuntimeOptions};
use edgetpu_models::Want;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The `--device` and `--threads` options every example shares.
#[derive(clap::Args, Debug, Clone)]
pub struct DeviceArgs {
    /// Where to run: auto (a Coral if one is attached, else the CPU), cpu, usb, usb:N,
    /// `usb:<bus>-<ports>`, pci, pci:N (M.2, Mini-PCIe, Dev Board), sim or sim:N (a simulated Coral,
    /// no hardware), sim:pci or sim:pci-noncoherent (a simulated PCIe Edge TPU on a coherent or
    /// non-coherent host), or a comma-separated list.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// Threads for the ops that run on the CPU (0: all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

impl Default for DeviceArgs {
    fn default() -> Self {
        DeviceArgs { device: "auto".into(), threads: 0 }
    }
}

/// The selection strings of the Corals attached now, in the order `auto` prefers them
/// ([`edgetpu::device::spec::attached`]). Empty when there is none, or no access to look.
pub fn attached_corals() -> Vec<String> {
    edgetpu::device::spec::attached().iter().map(ToString::to_string).collect()
}

/// Whether a model holds Edge TPU code (an `edgetpu-custom-op`).
pub fn is_compiled(model: &Model) -> Result<bool> {
    Ok(model.is_compiled())
}

/// The compiled twin of a CPU model: `X_edgetpu.tflite` beside `X.tflite`, if that file exists.
pub fn compiled_twin(cpu_model: &Path) -> Option<PathBuf> {
    compiled_twin_path(cpu_model)
}

/// A `--model` argument: a file, or the name of a model of the catalog (`edgetpu models list`)
/// that `edgetpu models fetch NAME` put in the cache directory. Returns the file (the CPU model
/// when it was fetched: `auto` then takes its compiled twin beside it for a Coral) and, for a
/// catalog model, its label file when that was fetched too.
pub fn resolve_model(given: &Path) -> Result<(PathBuf, Option<PathBuf>)> {
    // A file, or a name that is neither a file nor a catalog name: opening it gives the error
    // naming the path.
    let unchanged = || Ok((given.to_path_buf(), None));
    if given.exists() {
        return unchanged();
    }
    let Some(name) = given.to_str() else { return unchanged() };
    match edgetpu_models::resolve_cached(name, || Want::CpuIfCached)? {
        Some(cached) => Ok((cached.model, cached.labels)),
        None => unchanged(),
    }
}

/// Where a [`Session`] runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Place {
    /// On the CPU only.
    Cpu,
    /// On Edge TPU devices (real or simulated), named by their selection strings.
    EdgeTpu {
        /// Device selection strings, e.g. `usb:2-1` or `sim:0`.
        devices: Vec<String>,
        /// Whether they are simulated.
        simulated: bool,
    },
}

impl std::fmt::Display for Place {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Place::Cpu => write!(f, "the CPU"),
            Place::EdgeTpu { devices, simulated: false } => write!(f, "Coral {}", devices.join(",")),
            Place::EdgeTpu { devices, simulated: true } => {
                write!(f, "simulated Coral {} (no hardware)", devices.join(","))
            }
        }
    }
}

/// An interpreter on the device chosen by [`DeviceArgs`], and the devices it uses.
pub struct Session {
    /// The interpreter: set inputs, `invoke`, read outputs (see `edgetpu::vision`).
    pub it: Interpreter,
    /// The model file that runs (a twin of the one asked for, when `auto` or `cpu` chose it).
    pub model_path: PathBuf,
    /// Where it runs.
    pub place: Place,
    /// Why that file and place were chosen, when they are not simply the ones asked for.
    pub note: Option<String>,
    /// The label file of a catalog model (see [`resolve_model`]).
    pub catalog_labels: Option<PathBuf>,
    /// How images become the input tensor (default: stretched to the input size with Pillow's
    /// Lanczos filter, as Coral's Python examples do).
    pub preprocess: Preprocess,
    // Declared after `it`, so dropped after it: the interpreter's Edge TPU steps use the runtime.
    runtime: Option<Runtime>,
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session").field("model_path", &self.model_path).field("place", &self.place).finish()
    }
}

impl Session {
    /// Opens `model` (a file, or a catalog name: see [`resolve_model`]) on the device `args`
    /// names (see the module documentation for `auto`).
    pub fn open(model: &Path, args: &DeviceArgs) -> Result<Session> {
        let (model, catalog_labels) = resolve_model(model)?;
        let (path, list, note) = choose(&model, args.device.trim(), attached_corals)?;
        let options = Options { threads: args.threads, ..Options::default() };
        let m = Arc::new(Model::open(&path)?);
        let preprocess = Preprocess::default();
        let Some(list) = list else {
            let it = Interpreter::new(m, &options)?;
            return Ok(Session {
                it,
                model_path: path,
                place: Place::Cpu,
                note,
                catalog_labels,
                preprocess,
                runtime: None,
            });
        };
        let runtime = open_runtime(&list)?;
        let it = runtime.interpreter(m, &options)?;
        let simulated = runtime.is_simulated();
        let place = Place::EdgeTpu { devices: runtime.devices().to_vec(), simulated };
        let note = if simulated { Some(join(note, simulated_outputs(&path))) } else { note };
        Ok(Session { it, model_path: path, place, note, catalog_labels, preprocess, runtime: Some(runtime) })
    }

    /// Labels from `file` when given, else the catalog's label file, else those packed in the
    /// model (if any).
    pub fn labels(&self, file: Option<&Path>) -> Result<Option<Labels>> {
        crate::labels(file.or(self.catalog_labels.as_deref()), self.it.model())
    }

    /// The Edge TPU runtime, when the model runs on devices.
    pub fn runtime(&self) -> Option<&Runtime> {
        self.runtime.as_ref()
    }

    /// One line for the user: which file runs where, and why when `auto` chose.
    pub fn describe(&self) -> String {
        let s = format!("running {} on {}", self.model_path.display(), self.place);
        match &self.note {
            Some(n) => format!("{s}; {n}"),
            None => s,
        }
    }
}

/// Where a simulated Coral's outputs for the compiled model `path` come from: its CPU twin
/// beside it when there is one (real results), else seeded bytes (stand-ins).
pub fn simulated_outputs(path: &Path) -> String {
    match twin_path(path).filter(|t| t.is_file()) {
        Some(t) => format!("Edge TPU outputs from the CPU twin {}", t.display()),
        None => format!("{} has no CPU twin: Edge TPU outputs are seeded bytes, not real results", path.display()),
    }
}

fn join(note: Option<String>, more: String) -> String {
    match note {
        Some(n) => format!("{n}; {more}"),
        None => more,
    }
}

/// Opens the Edge TPU devices of a `--device` list (`usb`, `usb:N`, `sim:0,sim:1`, ...). A
/// simulated device returns the outputs of the compiled model's CPU twin when there is one.
pub fn open_runtime(list: &str) -> Result<Runtime> {
    let spec = DeviceSpec::parse(list)?;
    Runtime::open(&spec, RuntimeOptions::default()).with_context(|| {
        format!(
            "opening --device {list}: is a Coral plugged in and are the udev rules installed (`sudo udev/install.sh`, \
             then replug it; `edgetpu doctor` checks)? --device sim runs on a simulated Coral, --device cpu on the CPU"
        )
    })
}

/// The file to run and the device list (`None`: the CPU) for `--device wanted`; `corals` lists
/// the attached Corals (asked only for `auto`).
pub fn choose(
    model: &Path,
    wanted: &str,
    corals: impl FnOnce() -> Vec<String>,
) -> Result<(PathBuf, Option<String>, Option<String>)> {
    let compiled = is_compiled(&Model::open(model)?)?;
    let name = model.display();
    let cpu_twin = || twin_path(model).filter(|t| t.is_file());
    let spec = DeviceSpec::parse(wanted).map_err(|e| anyhow::anyhow!("--device {wanted:?}: {e}"))?;
    match spec {
        DeviceSpec::Cpu if !compiled => Ok((model.to_path_buf(), None, None)),
        DeviceSpec::Cpu => match cpu_twin() {
            Some(t) => Ok((t, None, Some(format!("the CPU twin of {name}")))),
            None => bail!("{name} is compiled for the Edge TPU and has no CPU twin beside it: use --device usb or sim"),
        },
        DeviceSpec::Auto => {
            let found = corals();
            match (found.first(), compiled) {
                (Some(c), true) => Ok((model.to_path_buf(), Some(c.clone()), Some("auto: a Coral is attached".into()))),
                (Some(c), false) => match compiled_twin(model) {
                    Some(t) => Ok((t, Some(c.clone()), Some(format!("auto: a Coral is attached; compiled twin of {name}")))),
                    None => Ok((
                        model.to_path_buf(),
                        None,
                        Some(format!(
                            "auto: a Coral is attached, but {name} is a CPU model with no *_edgetpu.tflite twin beside it"
                        )),
                    )),
                },
                (None, false) => Ok((model.to_path_buf(), None, Some("auto: no Coral attached".into()))),
                (None, true) => match cpu_twin() {
                    Some(t) => Ok((t, None, Some(format!("auto: no Coral attached; the CPU twin of {name}")))),
                    None => bail!(
                        "no Coral attached to run the compiled model {name} on, and no CPU twin beside it: plug a Coral \
                         in, pass --device sim for a simulated one, or the CPU model with --device cpu"
                    ),
                },
            }
        }
        _ => {
            let list = wanted.trim().to_string();
            if compiled {
                return Ok((model.to_path_buf(), Some(list), None));
            }
            match compiled_twin(model) {
                Some(t) => Ok((t, Some(list), Some(format!("the compiled twin of {name}")))),
                None => bail!(
                    "{name} is a CPU model: an Edge TPU runs compiled models (*_edgetpu.tflite, made by \
                     edgetpu_compiler); run it with --device cpu"
                ),
            }
        }
    }
}

/// The devices for a data-parallel or pipelined example: with `auto`, every attached Coral, or
/// `fallback` simulated ones when none is attached (saying so on stderr); otherwise the list as
/// given. `cpu` is refused: these examples need Edge TPU devices.
pub fn device_list(wanted: &str, fallback: usize, corals: impl FnOnce() -> Vec<String>) -> Result<String> {
    match DeviceSpec::parse(wanted).map_err(|e| anyhow::anyhow!("--device {wanted:?}: {e}"))? {
        DeviceSpec::Auto => {
            let found = corals();
            if found.is_empty() {
                eprintln!("auto: no Coral attached; using {fallback} simulated Corals (no hardware)");
                Ok((0..fallback).map(|k| format!("sim:{k}")).collect::<Vec<_>>().join(","))
            } else {
                Ok(found.join(","))
            }
        }
        DeviceSpec::Cpu => {
            bail!("this example spreads work over Edge TPU devices: use --device auto, usb:0,usb:1 or sim:0,sim:1")
        }
        list => Ok(list.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::test_data::testdata;

    #[test]
    fn simulated_usb_and_pcie_devices_are_described_as_simulated() {
        let model = testdata().join("mobilenet_v1_0.25_128_quant_edgetpu.tflite");
        for device in ["sim", "sim:pci", "sim:pci-noncoherent"] {
            let s = Session::open(&model, &DeviceArgs { device: device.into(), threads: 1 }).unwrap();
            assert!(s.runtime().unwrap().is_simulated(), "{device}");
            assert!(matches!(s.place, Place::EdgeTpu { simulated: true, .. }), "{device}: {:?}", s.place);
            let text = s.describe();
            assert!(text.contains("simulated Coral") && text.contains("(no hardware)"), "{text}");
            assert!(text.contains("Edge TPU outputs from the CPU twin"), "{text}");
        }
    }
}
