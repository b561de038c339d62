//! The runtime over Edge TPU devices: runs compiled models whole (CPU ops and Edge TPU steps),
//! keeps parameters resident where they pay, and uses every attached device.
//!
//! A [`Runtime`] owns its devices, each driven by a worker thread that takes Edge TPU jobs from
//! one bounded queue. [`Runtime::interpreter`] gives a [`crate::cpu::Interpreter`] for any model,
//! compiled or not: its `edgetpu-custom-op` nodes become jobs on the queue; everything else runs
//! on the CPU in the calling thread, bit-exactly like TFLite. Many threads may hold interpreters
//! of the same or different models on one runtime.
//!
//! **Residency.** A chip holds the cached parameters of one caching token (co-compiled models
//! share one and cache side by side). Under [`Policy::Residency`] a free device takes, from the
//! queue, a job whose parameters it already holds before any other, then one of a model pinned to
//! it, then the oldest job; a job is overtaken at most [`RuntimeOptions::max_bypass`] times.
//! Models are pinned to devices round-robin when they are first seen. [`Policy::Fifo`] is
//! libedgetpu's behaviour: first come, first served, the cache dropped whenever the token changes.
//!
//! **Several devices.** Free devices take queued jobs of the same model in parallel (data
//! parallelism); the queue is bounded, and submitting blocks while it is full (back-pressure).
//! [`pipeline::Pipeline`] runs a model compiled into segments across devices.

pub mod pipeline;

use crate::cpu::{Delegate, DelegateIo, DelegateStep, Interpreter, Options};
use crate::device::apex::{ApexAccelerator, ApexOptions};
use crate::device::program::Program;
use crate::device::usb::{RunInfo, UsbAccelerator, UsbOptions};
use crate::error::{Error, ErrorKind, Result};
use crate::model::{Model, Operator};
use crate::package::Package;
use crate::transport::apex::sim::{SimApex, SimApexConfig};
use crate::transport::sim::{CpuTwinOracle, Oracle, SeededOracle, SimBus, SimConfig, TimeModel};
use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A device the runtime can run prepared programs on.
pub trait Accelerator: Send + std::fmt::Debug {
    /// Its selection string.
    fn name(&self) -> String;
    /// Runs one inference of `program`.
    fn run(&mut self, program: &mut Program, inputs: &[&[u8]], outputs: &mut [&mut [u8]]) -> Result<RunInfo>;
    /// Closes it.
    fn close(self: Box<Self>) -> Result<()>;
}

impl Accelerator for UsbAccelerator {
    fn name(&self) -> String {
        UsbAccelerator::name(self)
    }
    fn run(&mut self, program: &mut Program, inputs: &[&[u8]], outputs: &mut [&mut [u8]]) -> Result<RunInfo> {
        UsbAccelerator::run(self, program, inputs, outputs)
    }
    fn close(self: Box<Self>) -> Result<()> {
        UsbAccelerator::close(*self)
    }
}

/// How a free device chooses its next job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Policy {
    /// Prefer jobs whose parameters the device holds, then models pinned to it, then the oldest.
    #[default]
    Residency,
    /// First come, first served (libedgetpu's behaviour).
    Fifo,
}

/// How a runtime schedules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RuntimeOptions {
    /// Job choice.
    pub policy: Policy,
    /// Most jobs waiting in the queue; submitting more blocks.
    pub queue_capacity: usize,
    /// Most times a job may be overtaken by later ones (fairness).
    pub max_bypass: usize,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions { policy: Policy::Residency, queue_capacity: 64, max_bypass: 8 }
    }
}

/// What one device has done.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
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
    /// Time spent running jobs.
    pub busy: Duration,
    /// Failed runs.
    pub errors: u64,
}

/// Where simulated devices take output values from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SimOracle {
    /// The CPU model beside each compiled model (its name without `_edgetpu`), else seeded bytes.
    #[default]
    Twin,
    /// This CPU model, for every compiled model.
    Model(PathBuf),
    /// Seeded bytes.
    Seeded,
}

/// The CPU twin of a compiled model: the file beside it with `_edgetpu` removed from its name,
/// if it exists.
pub fn twin_path(compiled: &Path) -> Option<PathBuf> {
    let name = compiled.file_name()?.to_str()?;
    let twin = name.replacen("_edgetpu", "", 1);
    (twin != name).then(|| compiled.with_file_name(twin)).filter(|p| p.is_file())
}

/// One Edge TPU step of one interpreter: a prepared program per device.
struct Step {
    name: String,
    programs: Vec<Mutex<Program>>,
    token: u64,
    key: u64,
    /// Preferred device (pinning).
    affinity: usize,
    /// Device the step must run on (pipelines).
    pinned: Option<usize>,
    /// The step's input and output tensors, allocated once: the caller fills the inputs, the
    /// device thread the outputs (one run of a step at a time, see [`StepHandle`]).
    io: Mutex<StepIo>,
}

struct StepIo {
    inputs: Vec<Vec<u8>>,
    outputs: Vec<Vec<u8>>,
}

/// Most inputs or outputs of one Edge TPU step.
const MAX_TENSORS: usize = 32;

struct Job {
    step: Arc<Step>,
    /// Taken when the result is delivered; a job dropped undelivered reports that the device
    /// thread stopped.
    reply: Option<Arc<Mailbox>>,
    bypassed: usize,
}

impl Drop for Job {
    fn drop(&mut self) {
        if let Some(m) = self.reply.take() {
            m.deliver(Err(Error::device("runtime", ErrorKind::Disconnected, "the device thread stopped")));
        }
    }
}

/// The one-slot reply of an Edge TPU step: a mutex and condition variable rather than a channel,
/// because a channel's waiter list may allocate the first time a receiver blocks, and a
/// steady-state invoke allocates nothing.
#[derive(Default)]
struct Mailbox {
    slot: Mutex<Option<Result<()>>>,
    ready: Condvar,
}

impl Mailbox {
    fn deliver(&self, result: Result<()>) {
        *lock(&self.slot) = Some(result);
        self.ready.notify_one();
    }
    fn wait(&self) -> Result<()> {
        let mut slot = lock(&self.slot);
        loop {
            if let Some(r) = slot.take() {
                return r;
            }
            slot = self.ready.wait(slot).unwrap_or_else(|p| p.into_inner());
        }
    }
}

/// The parameters a device holds: token and caching keys.
#[derive(Debug, Default, Clone)]
struct Resident {
    token: Option<u64>,
    keys: Vec<u64>,
}

impl Resident {
    fn holds(&self, step: &Step) -> bool {
        step.key == 0 || (self.token == Some(step.token) && self.keys.contains(&step.key))
    }
    fn after_run(&mut self, step: &Step, ok: bool) {
        if !ok {
            *self = Resident::default();
        } else if step.key != 0 {
            if step.token == 0 || self.token != Some(step.token) {
                self.keys.clear();
            }
            self.token = Some(step.token);
            if !self.keys.contains(&step.key) {
                self.keys.push(step.key);
            }
        }
    }
}

struct Queue {
    jobs: VecDeque<Job>,
    closed: bool,
    /// Devices take no job while set (see [`Runtime::hold`]).
    held: bool,
    /// Which devices are waiting for a job.
    idle: Vec<bool>,
    resident: Vec<Resident>,
    /// Models seen so far, by caching token, and the device each is pinned to.
    pins: Vec<(u64, usize)>,
}

struct Shared {
    queue: Mutex<Queue>,
    work: Condvar,
    space: Condvar,
    options: RuntimeOptions,
    names: Vec<String>,
    metrics: Vec<Mutex<DeviceMetrics>>,
    sims: Vec<SimBus>,
    apex_sims: Vec<SimApex>,
    oracle: SimOracle,
    /// Packages already registered with the simulated devices: (model bytes address, operator).
    registered: Mutex<Vec<(usize, usize)>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Shared {
    fn pick(&self, q: &Queue, d: usize) -> Option<usize> {
        if q.held {
            return None;
        }
        let eligible = |j: &Job| j.step.pinned.is_none_or(|p| p == d);
        let first = q.jobs.iter().position(eligible)?;
        if self.options.policy == Policy::Fifo || q.jobs[first].bypassed >= self.options.max_bypass {
            return Some(first);
        }
        // 1. A job whose parameters this device holds; 2. one of a model pinned here; 3. the
        // oldest job that no idle device holds or is pinned to (this device steals it rather than
        // let it wait).
        let resident = &q.resident[d];
        let wanted_elsewhere = |j: &Job| {
            (0..q.idle.len()).any(|e| {
                e != d
                    && q.idle[e]
                    && j.step.pinned.is_none_or(|p| p == e)
                    && (q.resident[e].holds(&j.step) || j.step.affinity == e)
            })
        };
        q.jobs
            .iter()
            .position(|j| eligible(j) && resident.holds(&j.step))
            .or_else(|| q.jobs.iter().position(|j| eligible(j) && j.step.affinity == d))
            .or_else(|| q.jobs.iter().position(|j| eligible(j) && !wanted_elsewhere(j)))
    }

    fn submit(&self, mut job: Job) -> Result<()> {
        let mut q = lock(&self.queue);
        while q.jobs.len() >= self.options.queue_capacity.max(1) && !q.closed {
            q = self.space.wait(q).unwrap_or_else(|p| p.into_inner());
        }
        if q.closed {
            // The caller hears of it from this error, not from the mailbox.
            job.reply = None;
            return Err(Error::device("runtime", ErrorKind::Disconnected, "the runtime is shutting down"));
        }
        q.jobs.push_back(job);
        drop(q);
        self.work.notify_all();
        Ok(())
    }

    fn worker(self: Arc<Self>, d: usize, mut acc: Box<dyn Accelerator>) {
        loop {
            let job = {
                let mut q = lock(&self.queue);
                loop {
                    if let Some(i) = self.pick(&q, d) {
                        q.idle[d] = false;
                        for j in q.jobs.iter_mut().take(i) {
                            j.bypassed += 1;
                        }
                        let job = q.jobs.remove(i).expect("picked index exists");
                        self.space.notify_one();
                        break Some(job);
                    }
                    if q.closed {
                        break None;
                    }
                    q = self.work.wait(q).unwrap_or_else(|p| p.into_inner());
                }
            };
            let Some(mut job) = job else { break };
            let start = Instant::now();
            let result = {
                let mut program = lock(&job.step.programs[d]);
                let mut io = lock(&job.step.io);
                let StepIo { inputs, outputs } = &mut *io;
                let (n_in, n_out) = (inputs.len(), outputs.len());
                let mut ins: [&[u8]; MAX_TENSORS] = [&[]; MAX_TENSORS];
                let mut outs: [&mut [u8]; MAX_TENSORS] = Default::default();
                for (slot, v) in ins.iter_mut().zip(inputs.iter()) {
                    *slot = v;
                }
                for (slot, v) in outs.iter_mut().zip(outputs.iter_mut()) {
                    *slot = v;
                }
                acc.run(&mut program, &ins[..n_in], &mut outs[..n_out])
            };
            {
                let mut m = lock(&self.metrics[d]);
                m.busy += start.elapsed();
                match &result {
                    Ok(info) => {
                        m.inferences += 1;
                        m.parameter_bytes += info.parameter_bytes as u64;
                        if info.cache_hit {
                            m.cache_hits += 1;
                        } else {
                            m.cache_misses += 1;
                        }
                    }
                    Err(_) => m.errors += 1,
                }
            }
            {
                // Free again from here on: other devices leave this one the jobs it should take
                // even before its thread is back in the queue.
                let mut q = lock(&self.queue);
                q.resident[d].after_run(&job.step, result.is_ok());
                q.idle[d] = true;
            }
            // Wake workers that left jobs for this device's residency to change.
            self.work.notify_all();
            if let Some(m) = job.reply.take() {
                m.deliver(result.map(drop).map_err(|e| e.with_step(&job.step.name)));
            }
        }
        if let Err(e) = acc.close() {
            eprintln!("closing {}: {e}", self.names[d]);
        }
    }
}

impl Error {
    fn with_step(self, step: &str) -> Error {
        match self {
            Error::Device { device, kind, reason } => {
                Error::Device { device, kind, reason: format!("{step}: {reason}") }
            }
            e => e,
        }
    }
}

/// Devices and the queue of Edge TPU jobs over them.
pub struct Runtime {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime").field("devices", &self.shared.names).finish_non_exhaustive()
    }
}

impl Runtime {
    /// A runtime over these devices.
    pub fn new(devices: Vec<Box<dyn Accelerator>>, options: RuntimeOptions) -> Result<Runtime> {
        Self::with_sims(devices, Vec::new(), Vec::new(), SimOracle::Seeded, options)
    }

    fn with_sims(
        devices: Vec<Box<dyn Accelerator>>,
        sims: Vec<SimBus>,
        apex_sims: Vec<SimApex>,
        oracle: SimOracle,
        options: RuntimeOptions,
    ) -> Result<Runtime> {
        if devices.is_empty() {
            return Err(Error::device("runtime", ErrorKind::NotFound, "no Edge TPU device to run on"));
        }
        let names: Vec<String> = devices.iter().map(|d| d.name()).collect();
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue {
                jobs: VecDeque::with_capacity(options.queue_capacity.max(1)),
                closed: false,
                held: false,
                idle: vec![true; devices.len()],
                resident: vec![Resident::default(); devices.len()],
                pins: Vec::new(),
            }),
            work: Condvar::new(),
            space: Condvar::new(),
            options,
            metrics: names
                .iter()
                .map(|n| Mutex::new(DeviceMetrics { name: n.clone(), ..Default::default() }))
                .collect(),
            names,
            sims,
            apex_sims,
            oracle,
            registered: Mutex::new(Vec::new()),
        });
        let workers = devices
            .into_iter()
            .enumerate()
            .map(|(d, acc)| {
                let s = shared.clone();
                std::thread::Builder::new()
                    .name(format!("edgetpu-device-{d}"))
                    .spawn(move || s.worker(d, acc))
                    .map_err(|e| Error::device("runtime", ErrorKind::Io, format!("starting a device thread: {e}")))
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Runtime { shared, workers })
    }

    /// A runtime over `n` simulated USB Accelerators (running their firmware already), each with
    /// the time model `time`; output values come from `oracle`.
    pub fn simulated(n: usize, time: TimeModel, oracle: SimOracle, options: RuntimeOptions) -> Result<Runtime> {
        Self::simulated_with(n, time, oracle, options, UsbOptions::default(), false)
    }

    /// Like [`Self::simulated`]; with `in_dfu` the simulated devices start in DFU mode and get the
    /// firmware of `usb` first.
    pub fn simulated_with(
        n: usize,
        time: TimeModel,
        oracle: SimOracle,
        options: RuntimeOptions,
        usb: UsbOptions,
        in_dfu: bool,
    ) -> Result<Runtime> {
        let mut sims = Vec::new();
        let mut devices: Vec<Box<dyn Accelerator>> = Vec::new();
        for k in 0..n {
            let config = SimConfig {
                path: crate::transport::UsbPath { bus: 1, ports: vec![k as u8 + 1] },
                start_in_dfu: in_dfu,
                time,
                ..Default::default()
            };
            let sim = SimBus::new(config);
            let acc = UsbAccelerator::open(Arc::new(sim.clone()), &sim.config_path(), usb.clone())?;
            sims.push(sim);
            devices.push(Box::new(Named { inner: Box::new(acc), name: format!("sim:{k}") }));
        }
        Self::with_sims(devices, sims, Vec::new(), oracle, options)
    }

    /// A runtime over `n` simulated PCIe Edge TPUs (the apex kernel driver and the chip
    /// simulated at the system-call boundary); output values come from `oracle`.
    pub fn simulated_pci(n: usize, oracle: SimOracle, options: RuntimeOptions, apex: ApexOptions) -> Result<Runtime> {
        let mut sims = Vec::new();
        let mut devices: Vec<Box<dyn Accelerator>> = Vec::new();
        for k in 0..n {
            let sim = SimApex::new(SimApexConfig { node: format!("/dev/apex_{k}"), ..Default::default() });
            let acc = ApexAccelerator::open(Arc::new(sim.clone()), Path::new(&sim.node()), apex.clone())?;
            sims.push(sim);
            devices.push(Box::new(Named { inner: Box::new(acc), name: format!("sim:pci:{k}") }));
        }
        Self::with_sims(devices, Vec::new(), sims, oracle, options)
    }

    /// Opens the devices of a comma-separated list: `usb`, `usb:N`, `usb:<bus>-<ports>`, `pci`,
    /// `pci:N` (and the other forms of [`crate::device::apex_sysfs::PciSelector`]), `sim` (alias
    /// `sim:usb`), `sim:N` or `sim:pci` (each `sim` entry is another simulated accelerator).
    /// PCIe devices get [`ApexOptions::default`] (Max performance, as libedgetpu's); see
    /// [`Self::open_with`].
    pub fn open(list: &str, usb: UsbOptions, oracle: SimOracle, options: RuntimeOptions) -> Result<Runtime> {
        Self::open_with(list, usb, ApexOptions::default(), oracle, options)
    }

    /// Like [`Self::open`], with the options of PCIe devices.
    pub fn open_with(
        list: &str,
        usb: UsbOptions,
        apex: ApexOptions,
        oracle: SimOracle,
        options: RuntimeOptions,
    ) -> Result<Runtime> {
        let entries: Vec<&str> = list.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
        let sims = entries.iter().filter(|e| e.starts_with("sim")).count();
        if sims > 0 && sims != entries.len() {
            return Err(Error::argument("--device: do not mix simulated and real devices in one list"));
        }
        let pci_sims = entries.iter().filter(|e| e.starts_with("sim:pci")).count();
        if pci_sims > 0 {
            if pci_sims != sims {
                return Err(Error::argument("--device: do not mix simulated USB and PCIe devices in one list"));
            }
            return Self::simulated_pci(pci_sims, oracle, options, apex);
        }
        if sims > 0 {
            // With a firmware image at hand the simulated devices start in DFU mode and get it.
            let firmware = crate::device::firmware_path::locate(usb.firmware.as_deref()).ok();
            let in_dfu = firmware.is_some();
            let usb = UsbOptions { firmware, ..usb };
            return Self::simulated_with(sims, TimeModel::usb3(), oracle, options, usb, in_dfu);
        }
        let mut devices: Vec<Box<dyn Accelerator>> = Vec::new();
        let bus = if entries.iter().all(|e| e.starts_with("pci")) { None } else { Some(usb_bus()?) };
        let mut opened = Vec::new();
        for e in entries {
            if e.starts_with("pci") {
                devices.push(Box::new(open_pci(e, &apex, &mut opened)?));
                continue;
            }
            let bus = bus.clone().ok_or_else(|| Error::argument("no USB bus"))?;
            devices.push(Box::new(UsbAccelerator::open_selected(bus, e, usb.clone())?));
        }
        Self::new(devices, options)
    }

    /// Selection strings of the devices, in order.
    pub fn devices(&self) -> &[String] {
        &self.shared.names
    }

    /// The simulated devices, when the runtime runs on the simulator.
    pub fn sims(&self) -> &[SimBus] {
        &self.shared.sims
    }

    /// The simulated PCIe devices, when the runtime runs on them.
    pub fn apex_sims(&self) -> &[SimApex] {
        &self.shared.apex_sims
    }

    /// Per-device metrics so far.
    pub fn metrics(&self) -> Vec<DeviceMetrics> {
        self.shared.metrics.iter().map(|m| lock(m).clone()).collect()
    }

    /// Stops the devices from taking jobs until the returned guard is dropped: jobs queue up
    /// meanwhile (for tests and benchmarks of the job choice).
    pub fn hold(&self) -> Hold<'_> {
        lock(&self.shared.queue).held = true;
        Hold { runtime: self }
    }

    /// Jobs waiting in the queue now.
    pub fn queue_depth(&self) -> usize {
        lock(&self.shared.queue).jobs.len()
    }

    /// An interpreter for `model` whose Edge TPU steps run on this runtime's devices (any free
    /// one) and whose other ops run on the CPU.
    pub fn interpreter(&self, model: Arc<Model>, options: &Options) -> Result<Interpreter> {
        self.interpreter_on(model, options, None)
    }

    /// Like [`Self::interpreter`], with every Edge TPU step bound to device `device` (pipeline
    /// stages).
    pub fn interpreter_on(&self, model: Arc<Model>, options: &Options, device: Option<usize>) -> Result<Interpreter> {
        if let Some(d) = device.filter(|&d| d >= self.shared.names.len()) {
            return Err(Error::argument(format!(
                "device {d} does not exist; the runtime has {}",
                self.shared.names.len()
            )));
        }
        let delegate = TpuDelegate { shared: self.shared.clone(), device };
        let options = Options { delegate: Some(Arc::new(delegate)), ..options.clone() };
        Interpreter::new(model, &options)
    }
}

/// Keeps the devices from taking jobs while it lives ([`Runtime::hold`]).
#[derive(Debug)]
pub struct Hold<'a> {
    runtime: &'a Runtime,
}

impl Drop for Hold<'_> {
    fn drop(&mut self) {
        lock(&self.runtime.shared.queue).held = false;
        self.runtime.shared.work.notify_all();
    }
}

impl Drop for Runtime {
    fn drop(&mut self) {
        lock(&self.shared.queue).closed = true;
        self.shared.work.notify_all();
        self.shared.space.notify_all();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn usb_bus() -> Result<Arc<dyn crate::transport::UsbBus>> {
    #[cfg(feature = "usb")]
    {
        let bus = crate::transport::usb::RusbBus::new().map_err(|e| {
            let why = if cfg!(target_os = "linux") && !Path::new("/dev/bus/usb").exists() {
                ": this system has no /dev/bus/usb (no USB host controller, or a container without USB passed through)"
            } else {
                ""
            };
            Error::device("usb", e.kind.error_kind(), format!("cannot initialise libusb ({:?}){why}", e.kind))
        })?;
        Ok(Arc::new(bus))
    }
    #[cfg(not(feature = "usb"))]
    Err(Error::device("usb", ErrorKind::Unsupported, "this build has no USB backend (cargo feature `usb`)"))
}

/// A device under another name (simulated devices are `sim:N` and `sim:pci:N`).
#[derive(Debug)]
struct Named {
    inner: Box<dyn Accelerator>,
    name: String,
}

impl Accelerator for Named {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn run(&mut self, program: &mut Program, inputs: &[&[u8]], outputs: &mut [&mut [u8]]) -> Result<RunInfo> {
        self.inner.run(program, inputs, outputs)
    }
    fn close(self: Box<Self>) -> Result<()> {
        self.inner.close()
    }
}

impl Accelerator for ApexAccelerator {
    fn name(&self) -> String {
        ApexAccelerator::name(self)
    }
    fn run(&mut self, program: &mut Program, inputs: &[&[u8]], outputs: &mut [&mut [u8]]) -> Result<RunInfo> {
        ApexAccelerator::run(self, program, inputs, outputs)
    }
    fn close(self: Box<Self>) -> Result<()> {
        ApexAccelerator::close(*self)
    }
}

/// Opens a PCIe Edge TPU by its selection string (`pci`, `pci:N`, `pci:apex_N`,
/// `pci:/dev/apex_N` or a PCI address; see [`crate::device::apex_sysfs::PciSelector`]): a device
/// another process owns, or that this user may not open, is refused with what to do. `opened`
/// holds the nodes this list opened already: `pci` skips them, and naming one again is an error
/// (two open sequences on one chip would undo each other).
#[cfg_attr(not(target_os = "linux"), allow(unused_variables))]
fn open_pci(entry: &str, apex: &ApexOptions, opened: &mut Vec<PathBuf>) -> Result<ApexAccelerator> {
    #[cfg(target_os = "linux")]
    {
        use crate::device::apex_sysfs::{self, PciSelector};
        let root = Path::new(apex_sysfs::ROOT);
        let sel = PciSelector::parse(entry)?;
        let dev = if sel == PciSelector::Any {
            // The first ready device this list has not opened yet.
            let free: Vec<_> = apex_sysfs::list(root)?.into_iter().filter(|d| !opened.contains(&d.node)).collect();
            if free.is_empty() && !opened.is_empty() {
                return Err(Error::device(
                    entry,
                    ErrorKind::NotFound,
                    format!("every PCIe Coral ({}) is already in this --device list", opened.len()),
                ));
            }
            apex_sysfs::choose(&free, &sel, root)?
        } else {
            apex_sysfs::select(root, &sel)?
        };
        if opened.contains(&dev.node) {
            return Err(Error::argument(format!(
                "--device: {entry} names {}, which the list already opened; name each PCIe Coral once",
                dev.node.display()
            )));
        }
        let acc =
            ApexAccelerator::open(Arc::new(crate::transport::apex::linux::LinuxSys::new()), &dev.node, apex.clone())?;
        opened.push(dev.node);
        Ok(acc)
    }
    #[cfg(not(target_os = "linux"))]
    Err(Error::device(entry, ErrorKind::Unsupported, "the PCIe backend needs Linux and its apex driver"))
}

/// The interpreter's delegate: prepares each Edge TPU step for every device and turns its runs
/// into jobs.
struct TpuDelegate {
    shared: Arc<Shared>,
    device: Option<usize>,
}

impl std::fmt::Debug for TpuDelegate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TpuDelegate").field("devices", &self.shared.names).field("device", &self.device).finish()
    }
}

impl TpuDelegate {
    fn register_with_sims(&self, model: &Arc<Model>, op: usize, package: &Package<'_>) -> Result<()> {
        if self.shared.sims.is_empty() && self.shared.apex_sims.is_empty() {
            return Ok(());
        }
        let id = (model.bytes().as_ptr() as usize, op);
        let mut reg = lock(&self.shared.registered);
        if reg.contains(&id) {
            return Ok(());
        }
        let exe = package.main();
        let twin = match &self.shared.oracle {
            SimOracle::Twin => model.path().and_then(twin_path),
            SimOracle::Model(p) => Some(p.clone()),
            SimOracle::Seeded => None,
        };
        let oracle: Arc<Mutex<dyn Oracle>> = match twin {
            Some(t) => {
                let twin = Arc::new(Model::open(&t)?);
                Arc::new(Mutex::new(CpuTwinOracle::new(twin, &exe.input_layers, &exe.output_layers)?))
            }
            None => Arc::new(Mutex::new(SeededOracle::new(op as u64))),
        };
        let name = model.path().map_or_else(|| "model".to_string(), |p| p.display().to_string());
        for sim in &self.shared.sims {
            sim.load(package, &name, Some(oracle.clone()))?;
        }
        for sim in &self.shared.apex_sims {
            sim.load(package, &name, Some(oracle.clone()))?;
        }
        reg.push(id);
        Ok(())
    }
}

impl Delegate for TpuDelegate {
    fn prepare(&self, model: &Arc<Model>, subgraph: usize, op: &Operator) -> Result<Box<dyn DelegateStep>> {
        let sg = model
            .subgraphs()
            .get(subgraph)
            .ok_or_else(|| Error::argument(format!("subgraph {subgraph} does not exist")))?;
        let package = Package::decode(model, sg, op)?;
        let n = self.shared.names.len();
        let programs = (0..n).map(|_| Program::new(model, &package).map(Mutex::new)).collect::<Result<Vec<_>>>()?;
        let exe = package.main();
        // The custom op's tensors are the executable's layers, by position and size; output
        // layers named `<input>_variable_output` are not among the op's outputs but carry the new
        // value of that input (a variable tensor: recurrent state), written back after each run.
        let tensor = |t: Option<usize>| t.and_then(|t| sg.tensors.get(t));
        let dense = |l: &crate::package::Layer| l.num_elements() * l.execution_count.max(1);
        let fail = |what: String| Error::unsupported(format!("the Edge TPU step at operator {}: {what}", op.index));
        let mut out_map = Vec::new();
        let mut writeback = Vec::new();
        for (i, l) in exe.output_layers.iter().enumerate() {
            let Some(base) = l.name.strip_suffix("_variable_output") else {
                out_map.push(i);
                continue;
            };
            let k = exe.input_layers.iter().position(|x| x.name == base).ok_or_else(|| {
                fail(format!("output layer {:?} writes back into input layer {base:?}, which does not exist", l.name))
            })?;
            let into = &exe.input_layers[k];
            if !tensor(op.inputs.get(k).copied().flatten()).is_some_and(|t| t.is_variable) {
                return Err(fail(format!(
                    "output layer {:?} writes back into input {k}, which is not a variable tensor",
                    l.name
                )));
            }
            if dense(l) != dense(into) || l.data_type.size_bytes() != into.data_type.size_bytes() {
                return Err(fail(format!("output layer {:?} and its input layer {base:?} differ in size", l.name)));
            }
            writeback.push((i, k));
        }
        let out_layers: Vec<_> = out_map.iter().map(|&i| exe.output_layers[i].clone()).collect();
        for (what, tensors, layers) in [("input", &op.inputs, &exe.input_layers), ("output", &op.outputs, &out_layers)]
        {
            if tensors.len() != layers.len() {
                return Err(fail(format!(
                    "it has {} {what}s but its executable {} {what} layers",
                    tensors.len(),
                    layers.len()
                )));
            }
            for (k, (t, l)) in tensors.iter().zip(layers).enumerate() {
                let n = dense(l);
                let have = tensor(*t).map(|t| t.num_elements());
                if have != Some(n) {
                    return Err(fail(format!("{what} {k} has {have:?} elements, its layer {:?} {n}", l.name)));
                }
            }
        }
        self.register_with_sims(model, op.index, &package)?;
        let first = lock(&programs[0]);
        let (token, key) = (first.token, first.caching_key);
        if first.inputs.len() > MAX_TENSORS || first.outputs.len() > MAX_TENSORS {
            return Err(Error::unsupported(format!(
                "the Edge TPU step at operator {} has more than {MAX_TENSORS} inputs or outputs",
                op.index
            )));
        }
        let io = StepIo {
            inputs: first.input_sizes().map(|n| vec![0u8; n]).collect(),
            outputs: first.output_sizes().map(|n| vec![0u8; n]).collect(),
        };
        drop(first);
        // Models whose cached parameters fit on the chip are pinned to a device, round-robin in
        // the order they are first seen (co-compiled models, one token, share one); others have
        // no preferred device.
        let affinity = if package.fits_on_chip() {
            let mut q = lock(&self.shared.queue);
            let pin = if token != 0 { token } else { key };
            match q.pins.iter().find(|(k, _)| *k == pin) {
                Some(&(_, d)) => d,
                None => {
                    let d = q.pins.len() % n;
                    q.pins.push((pin, d));
                    d
                }
            }
        } else {
            usize::MAX
        };
        let name = format!(
            "{} operator {}",
            model.path().map_or_else(|| "model".to_string(), |p| p.display().to_string()),
            op.index
        );
        Ok(Box::new(StepHandle {
            shared: self.shared.clone(),
            step: Arc::new(Step { name, programs, token, key, affinity, pinned: self.device, io: Mutex::new(io) }),
            reply: Arc::default(),
            running: Mutex::new(()),
            out_map,
            writeback,
        }))
    }
}

struct StepHandle {
    shared: Arc<Shared>,
    step: Arc<Step>,
    reply: Arc<Mailbox>,
    /// Held for a whole run, so that runs of one step (which share its buffers and mailbox)
    /// never overlap.
    running: Mutex<()>,
    /// The output layer of each of the op's outputs.
    out_map: Vec<usize>,
    /// (output layer, input position): variable outputs written back into their input.
    writeback: Vec<(usize, usize)>,
}

impl DelegateStep for StepHandle {
    fn run(&self, io: &mut DelegateIo<'_, '_>) -> Result<()> {
        let _running = lock(&self.running);
        let state_at = |k: usize| io.state_inputs.iter().position(|&s| s == k);
        {
            let mut sio = lock(&self.step.io);
            for (k, dst) in sio.inputs.iter_mut().enumerate() {
                let src: &[u8] = match state_at(k) {
                    Some(p) => io.state.get(p).map_or(&[], |s| &**s),
                    None => io.inputs.get(k).copied().unwrap_or(&[]),
                };
                if dst.len() != src.len() {
                    return Err(Error::argument(format!(
                        "{}: input {k} has {} bytes, its layer {}",
                        self.step.name,
                        src.len(),
                        dst.len()
                    )));
                }
                dst.copy_from_slice(src);
            }
        }
        self.shared.submit(Job { step: self.step.clone(), reply: Some(self.reply.clone()), bypassed: 0 })?;
        self.reply.wait()?;
        let sio = lock(&self.step.io);
        let outputs = self.out_map.iter().map(|&i| (i, None)).chain(self.writeback.iter().map(|&(i, k)| (i, Some(k))));
        for (j, (layer, into)) in outputs.enumerate() {
            let src = &sio.outputs[layer];
            let dst: &mut [u8] = match into {
                None => io.outputs.get_mut(j).map_or(&mut [], |d| &mut **d),
                Some(k) => match state_at(k) {
                    Some(p) => io.state.get_mut(p).map_or(&mut [], |d| &mut **d),
                    None => &mut [],
                },
            };
            if dst.len() != src.len() {
                return Err(Error::argument(format!(
                    "{}: output layer {layer} has {} bytes, its tensor {}",
                    self.step.name,
                    src.len(),
                    dst.len()
                )));
            }
            dst.copy_from_slice(src);
        }
        Ok(())
    }
}
