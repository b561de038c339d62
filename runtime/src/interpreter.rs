//! The façade: [`Interpreter::builder`] → [`InterpreterBuilder::build`] → `input_mut` /
//! `invoke` / `output`, whatever the model and wherever it runs.

use crate::cpu::{self, Options, TensorInfo};
use crate::device::DeviceSpec;
use crate::error::{Error, ErrorKind, Result};
use crate::model::{cpu_twin_path, Model};
use crate::sched::{Runtime, RuntimeOptions};
use std::sync::Arc;

/// A model ready to run: its Edge TPU steps on a Coral (or a simulated one), every other op on
/// the CPU, bit-exactly like TFLite's reference kernels.
///
/// ```no_run
/// use edgetpu::{DeviceSpec, Interpreter, Model};
///
/// let model = Model::open("mobilenet_v1_1.0_224_quant_edgetpu.tflite")?;
/// let mut it = Interpreter::builder(model).device(DeviceSpec::auto()).threads(2).build()?;
/// it.input_mut(0)?.fill(128);
/// it.invoke()?;
/// println!("{} scores", it.output(0)?.len());
/// # Ok::<(), edgetpu::Error>(())
/// ```
pub struct Interpreter {
    inner: cpu::Interpreter,
    devices: Vec<String>,
    simulated: bool,
    // Declared after `inner`, so dropped after it: the interpreter's Edge TPU steps use it.
    _runtime: Option<Runtime>,
}

impl std::fmt::Debug for Interpreter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Interpreter").field("devices", &self.devices).field("cpu", &self.inner).finish()
    }
}

/// How to build an [`Interpreter`] ([`Interpreter::builder`]).
#[derive(Debug)]
#[must_use]
pub struct InterpreterBuilder<'r> {
    model: Arc<Model>,
    device: DeviceSpec,
    runtime: Option<&'r Runtime>,
    runtime_options: RuntimeOptions,
    options: Options,
}

impl Interpreter {
    /// Starts building an interpreter for `model` (a [`Model`] or an `Arc<Model>`). By default it
    /// runs where [`DeviceSpec::auto`] says, with as many CPU threads as cores.
    pub fn builder<'r>(model: impl Into<Arc<Model>>) -> InterpreterBuilder<'r> {
        InterpreterBuilder {
            model: model.into(),
            device: DeviceSpec::Auto,
            runtime: None,
            runtime_options: RuntimeOptions::default(),
            options: Options::default(),
        }
    }

    /// The model.
    pub fn model(&self) -> &Arc<Model> {
        self.inner.model()
    }

    /// The devices its Edge TPU steps run on, by selection string; empty on the CPU.
    pub fn devices(&self) -> &[String] {
        &self.devices
    }

    /// Whether its Edge TPU steps run on simulated devices.
    pub fn is_simulated(&self) -> bool {
        self.simulated
    }

    /// The input tensors, in the model's order.
    pub fn inputs(&self) -> Vec<&TensorInfo> {
        self.inner.inputs()
    }

    /// The output tensors, in the model's order.
    pub fn outputs(&self) -> Vec<&TensorInfo> {
        self.inner.outputs()
    }

    /// The bytes of input `i`, to fill in place.
    pub fn input_mut(&mut self, i: usize) -> Result<&mut [u8]> {
        self.inner.input_mut(i)
    }

    /// Copies `bytes` into input `i` (exactly its size).
    pub fn set_input(&mut self, i: usize, bytes: &[u8]) -> Result<()> {
        self.inner.set_input(i, bytes)
    }

    /// Runs the model once.
    pub fn invoke(&mut self) -> Result<()> {
        self.inner.invoke()
    }

    /// The bytes of output `j` after [`Self::invoke`].
    pub fn output(&self, j: usize) -> Result<&[u8]> {
        self.inner.output(j)
    }

    /// The CPU interpreter underneath (plans, intermediate tensors, sections of the graph).
    pub fn cpu(&self) -> &cpu::Interpreter {
        &self.inner
    }

    /// The CPU interpreter underneath, mutably.
    pub fn cpu_mut(&mut self) -> &mut cpu::Interpreter {
        &mut self.inner
    }
}

impl<'r> InterpreterBuilder<'r> {
    /// Where the model runs (default [`DeviceSpec::auto`]). A compiled model needs an Edge TPU: with
    /// `auto` and no Coral attached, or with `cpu`, building fails naming its CPU twin. A CPU model
    /// runs on the CPU with `auto` and `cpu`, and is refused with a list of devices.
    pub fn device(mut self, device: DeviceSpec) -> Self {
        self.device = device;
        self
    }

    /// Runs the Edge TPU steps on the devices of `runtime`, shared with its other interpreters,
    /// instead of opening devices of its own ([`Self::device`] is then ignored).
    pub fn runtime(mut self, runtime: &'r Runtime) -> Self {
        self.runtime = Some(runtime);
        self
    }

    /// How devices the interpreter opens itself are opened and scheduled.
    pub fn runtime_options(mut self, options: RuntimeOptions) -> Self {
        self.runtime_options = options;
        self
    }

    /// Threads for the ops that run on the CPU; 0 (the default) means all cores.
    pub fn threads(mut self, threads: usize) -> Self {
        self.options.threads = threads;
        self
    }

    /// Most bytes of activation memory the interpreter may allocate (0: the default, 2 GiB).
    pub fn max_arena_bytes(mut self, bytes: usize) -> Self {
        self.options.max_arena_bytes = bytes;
        self
    }

    /// All CPU interpreter options at once (threads, reference kernels, kept tensors, subgraph).
    pub fn cpu_options(mut self, options: Options) -> Self {
        self.options = options;
        self
    }

    /// Plans the model, opens its devices if it needs some, and allocates its arena.
    pub fn build(self) -> Result<Interpreter> {
        let InterpreterBuilder { model, device, runtime, runtime_options, options } = self;
        let options = Options { delegate: None, ..options };
        if let Some(rt) = runtime {
            return Ok(Interpreter {
                inner: rt.interpreter(model, &options)?,
                devices: rt.devices().to_vec(),
                simulated: rt.is_simulated(),
                _runtime: None,
            });
        }
        let compiled = model.is_compiled();
        let name = model.path().map_or_else(|| "the model".to_string(), |p| p.display().to_string());
        let twin = || match model.path().and_then(cpu_twin_path) {
            Some(t) => format!("its CPU twin {} runs on the CPU", t.display()),
            None => "the CPU model it was compiled from runs on the CPU".to_string(),
        };
        let spec = match (&device, compiled) {
            (DeviceSpec::Cpu | DeviceSpec::Auto, false) => None,
            (DeviceSpec::Cpu, true) => {
                return Err(Error::unsupported(format!(
                    "{name} is compiled for the Edge TPU and cannot run on the CPU alone: {}",
                    twin()
                )))
            }
            (DeviceSpec::Auto, true) => match device.resolve() {
                Some(spec) => Some(spec),
                None => {
                    return Err(Error::runtime(
                        ErrorKind::NotFound,
                        format!("auto: no Coral attached to run the compiled model {name} on; {}", twin()),
                    ))
                }
            },
            (DeviceSpec::Devices(_), false) => {
                return Err(Error::argument(format!(
                    "{name} is a CPU model (no Edge TPU step): run it on the CPU, or run its compiled twin \
                     (*_edgetpu.tflite) on {device}"
                )))
            }
            (DeviceSpec::Devices(_), true) => Some(device.clone()),
        };
        let Some(spec) = spec else {
            log::debug!("{name}: running on the CPU");
            return Ok(Interpreter {
                inner: cpu::Interpreter::new(model, &options)?,
                devices: Vec::new(),
                simulated: false,
                _runtime: None,
            });
        };
        let rt = Runtime::open(&spec, runtime_options)?;
        log::debug!("{name}: running on {}", rt.devices().join(","));
        Ok(Interpreter {
            inner: rt.interpreter(model, &options)?,
            devices: rt.devices().to_vec(),
            simulated: rt.is_simulated(),
            _runtime: Some(rt),
        })
    }
}
