//! The runtime over Edge TPU devices: runs compiled models whole (CPU ops and Edge TPU steps),
//! keeps parameters resident where they pay, and uses every attached device.
//!
//! A [`Runtime`] owns its devices. [`Runtime::interpreter`] gives a [`crate::cpu::Interpreter`]
//! for any model, compiled or not: everything but its `edgetpu-custom-op` nodes runs on the CPU
//! in the calling thread, bit-exactly like TFLite, and each Edge TPU step runs on a free device,
//! on the calling thread too ([`queue`] has the policy: who waits, and which device takes which
//! waiting step). Many threads may hold interpreters of the same or different models on one
//! runtime. [`pipeline::Pool`] and [`pipeline::Pipeline`] add worker threads where they pay:
//! many inferences of one model in flight, or a model compiled into segments.
//!
//! Most applications use the façade instead: [`crate::Interpreter::builder`] with a
//! [`crate::DeviceSpec`] or `.runtime(&rt)`.

mod delegate;
mod open;
pub mod pipeline;
pub mod queue;

#[cfg(feature = "sim")]
pub use open::Simulated;

use crate::cpu::{Interpreter, Options};
use crate::device::pcie::ApexOptions;
use crate::device::usb::UsbOptions;
use crate::device::{Accelerator, DeviceInfo, DeviceSpec, Telemetry};
use crate::error::{Error, ErrorKind, Result};
use crate::model::Model;
use delegate::TpuDelegate;
use queue::Shared;
use std::sync::Arc;
use std::time::Duration;

/// How a free device chooses its next step.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Policy {
    /// Prefer steps whose parameters the device holds, then models pinned to it, then the oldest.
    #[default]
    Residency,
    /// First come, first served (libedgetpu's behaviour).
    Fifo,
}

/// How a runtime opens its devices and schedules.
///
/// ```
/// use edgetpu::{Policy, RuntimeOptions};
/// let options = RuntimeOptions::default().policy(Policy::Fifo).queue_capacity(8);
/// assert_eq!(options.queue_capacity, 8);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct RuntimeOptions {
    /// Step choice.
    pub policy: Policy,
    /// Most steps waiting for a device; more callers block until there is room.
    pub queue_capacity: usize,
    /// Most times a step may be overtaken by later ones (fairness).
    pub max_bypass: usize,
    /// How USB Accelerators are opened (clock, timeouts, firmware).
    pub usb: UsbOptions,
    /// How PCIe Edge TPUs are opened (clock).
    pub pcie: ApexOptions,
    /// How simulated devices behave (where their outputs come from, time model).
    #[cfg(feature = "sim")]
    pub sim: crate::sim::SimOptions,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            policy: Policy::Residency,
            queue_capacity: 64,
            max_bypass: 8,
            usb: UsbOptions::default(),
            pcie: ApexOptions::default(),
            #[cfg(feature = "sim")]
            sim: crate::sim::SimOptions::default(),
        }
    }
}

impl RuntimeOptions {
    /// Sets [`Self::policy`].
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }
    /// Sets [`Self::queue_capacity`].
    pub fn queue_capacity(mut self, n: usize) -> Self {
        self.queue_capacity = n;
        self
    }
    /// Sets [`Self::max_bypass`].
    pub fn max_bypass(mut self, n: usize) -> Self {
        self.max_bypass = n;
        self
    }
    /// Sets [`Self::usb`].
    pub fn usb(mut self, usb: UsbOptions) -> Self {
        self.usb = usb;
        self
    }
    /// Sets [`Self::pcie`].
    pub fn pcie(mut self, pcie: ApexOptions) -> Self {
        self.pcie = pcie;
        self
    }
    /// Sets [`Self::sim`].
    #[cfg(feature = "sim")]
    pub fn sim(mut self, sim: crate::sim::SimOptions) -> Self {
        self.sim = sim;
        self
    }
}

/// What one device has done.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
#[non_exhaustive]
pub struct DeviceMetrics {
    /// Selection string.
    pub name: String,
    /// Edge TPU steps run.
    pub inferences: u64,
    /// Parameter bytes sent (cached blobs loaded plus streamed parameters).
    pub parameter_bytes: u64,
    /// Runs whose cached parameters were already on the chip.
    pub cache_hits: u64,
    /// Runs that had to load cached parameters first.
    pub cache_misses: u64,
    /// Time spent running steps.
    pub busy: Duration,
    /// Failed runs.
    pub errors: u64,
}

/// Devices, and the queue of Edge TPU steps waiting for them.
pub struct Runtime {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("devices", &self.shared.names).finish_non_exhaustive()
    }
}

impl Runtime {
    /// A runtime over these devices.
    pub fn new(devices: Vec<Box<dyn Accelerator>>, options: RuntimeOptions) -> Result<Runtime> {
        if devices.is_empty() {
            return Err(Error::runtime(ErrorKind::NotFound, "no Edge TPU device to run on"));
        }
        Ok(Runtime { shared: Arc::new(Shared::new(devices, options)) })
    }

    /// Opens the devices `spec` names (see [`DeviceSpec`]); `auto` takes the first attached
    /// Coral and fails with [`ErrorKind::NotFound`] when there is none, `cpu` is refused (a
    /// runtime is for Edge TPU devices).
    pub fn open(spec: &DeviceSpec, options: RuntimeOptions) -> Result<Runtime> {
        let devices = open::open(spec, &options)?;
        Self::new(devices, options)
    }

    /// Selection strings of the devices, in order.
    pub fn devices(&self) -> &[String] {
        &self.shared.names
    }

    /// Name, kind and whether simulated, for each device.
    pub fn device_info(&self) -> &[DeviceInfo] {
        &self.shared.infos
    }

    /// Whether every device is simulated.
    pub fn is_simulated(&self) -> bool {
        self.shared.infos.iter().all(|i| i.simulated)
    }

    /// Per-device metrics so far.
    pub fn metrics(&self) -> Vec<DeviceMetrics> {
        self.shared.metrics()
    }

    /// Per-device readings now (temperature, link, recoveries); waits for a device's current run.
    pub fn telemetry(&self) -> Vec<Telemetry> {
        self.shared.telemetry()
    }

    /// Hands no device to a waiting step until the returned guard is dropped: steps queue up
    /// meanwhile (for tests and benchmarks of the policy).
    pub fn hold(&self) -> Hold<'_> {
        self.shared.set_held(true);
        Hold { runtime: self }
    }

    /// Steps waiting for a device now.
    pub fn queue_depth(&self) -> usize {
        self.shared.queue_depth()
    }

    /// An interpreter for `model` whose Edge TPU steps run on this runtime's devices (any free
    /// one) and whose other ops run on the CPU.
    pub fn interpreter(&self, model: Arc<Model>, options: &Options) -> Result<Interpreter> {
        self.interpreter_on(model, options, None)
    }

    /// Like [`Self::interpreter`], with every Edge TPU step bound to device `device` (pipeline
    /// stages).
    pub fn interpreter_on(&self, model: Arc<Model>, options: &Options, device: Option<usize>) -> Result<Interpreter> {
        if let Some(d) = device.filter(|&d| d >= self.shared.len()) {
            return Err(Error::argument(format!("device {d} does not exist; the runtime has {}", self.shared.len())));
        }
        let delegate = TpuDelegate { shared: self.shared.clone(), device };
        let options = Options { delegate: Some(Arc::new(delegate)), ..options.clone() };
        Interpreter::new(model, &options)
    }
}

/// Keeps the devices from taking steps while it lives ([`Runtime::hold`]).
#[derive(Debug)]
pub struct Hold<'a> {
    runtime: &'a Runtime,
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        self.runtime.shared.set_held(false);
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        self.shared.close();
    }
}
