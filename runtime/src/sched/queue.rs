//! Who runs next on which device: the devices' locks, the queue of Edge TPU steps waiting for a
//! device, and the residency policy.
//!
//! There are no device threads. A caller whose step needs a device takes a free one at once when
//! no step waits before it; otherwise it queues and sleeps until a device that finishes hands
//! itself over. Either way the step then runs on the caller's own thread, on borrowed slices of
//! its interpreter's arena.
//!
//! **Residency.** A chip holds the cached parameters of one caching token (co-compiled models
//! share one and cache side by side). Under [`Policy::Residency`] a free device takes, from the
//! queue, a step whose parameters it already holds before any other, then one of a model pinned
//! to it, then the oldest step that no other free device holds or is pinned to; a step is
//! overtaken at most [`RuntimeOptions::max_bypass`] times. [`Policy::Fifo`] is libedgetpu's
//! behaviour: first come, first served.

use super::{DeviceMetrics, Policy, RuntimeOptions};
use crate::device::program::Program;
use crate::device::{Accelerator, DeviceInfo, Residency, RunInfo, Telemetry};
use crate::error::{Error, ErrorKind, Result};
use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// What the policy knows of one Edge TPU step.
#[derive(Debug)]
pub(crate) struct StepMeta {
    /// `<model> operator <n>`, for errors.
    pub name: String,
    pub token: u64,
    /// The caching executable's key (0: none).
    pub key: u64,
    /// Preferred device (pinning); `usize::MAX` for none.
    pub affinity: usize,
    /// Device the step must run on (pipelines).
    pub pinned: Option<usize>,
}

/// Where a queued caller learns which device it got: a mutex and condition variable rather than
/// a channel, because a channel's waiter list may allocate the first time a receiver blocks, and
/// a steady-state invoke allocates nothing.
#[derive(Debug, Default)]
pub(crate) struct Grant {
    slot: Mutex<Option<Result<usize>>>,
    ready: Condvar,
}

impl Grant {
    fn give(&self, r: Result<usize>) {
        *lock(&self.slot) = Some(r);
        self.ready.notify_one();
    }
    fn wait(&self) -> Result<usize> {
        let mut slot = lock(&self.slot);
        loop {
            if let Some(r) = slot.take() {
                return r;
            }
            slot = self.ready.wait(slot).unwrap_or_else(|p| p.into_inner());
        }
    }
}

struct Waiting {
    step: Arc<StepMeta>,
    grant: Arc<Grant>,
    bypassed: usize,
}

struct Queue {
    waiting: VecDeque<Waiting>,
    closed: bool,
    /// No device is handed out while set (see [`super::Runtime::hold`]).
    held: bool,
    /// Which devices are free.
    idle: Vec<bool>,
    /// What each device's chip holds, as of its last run.
    resident: Vec<Residency>,
    /// Models seen so far, by caching token, and the device each is pinned to.
    pins: Vec<(u64, usize)>,
}

impl Queue {
    fn holds(&self, d: usize, s: &StepMeta) -> bool {
        self.resident[d].holds(s.token, s.key)
    }

    /// The waiting step device `d` takes next, if any.
    fn pick(&self, d: usize, options: &RuntimeOptions) -> Option<usize> {
        let eligible = |w: &Waiting| w.step.pinned.is_none_or(|p| p == d);
        let first = self.waiting.iter().position(eligible)?;
        if options.policy == Policy::Fifo || self.waiting[first].bypassed >= options.max_bypass {
            return Some(first);
        }
        // 1. A step whose parameters this device holds; 2. one of a model pinned here; 3. the
        // oldest step that no other free device holds or is pinned to (this device takes it
        // rather than let it wait).
        let wanted_elsewhere = |w: &Waiting| {
            (0..self.idle.len()).any(|e| {
                e != d
                    && self.idle[e]
                    && w.step.pinned.is_none_or(|p| p == e)
                    && (self.holds(e, &w.step) || w.step.affinity == e)
            })
        };
        let ws = &self.waiting;
        ws.iter()
            .position(|w| eligible(w) && self.holds(d, &w.step))
            .or_else(|| ws.iter().position(|w| eligible(w) && w.step.affinity == d))
            .or_else(|| ws.iter().position(|w| eligible(w) && !wanted_elsewhere(w)))
    }

    /// Hands every free device the step it takes next.
    fn dispatch(&mut self, options: &RuntimeOptions) {
        if self.held {
            return;
        }
        for d in 0..self.idle.len() {
            if !self.idle[d] {
                continue;
            }
            let Some(i) = self.pick(d, options) else { continue };
            for w in self.waiting.iter_mut().take(i) {
                w.bypassed += 1;
            }
            let Some(w) = self.waiting.remove(i) else { continue };
            self.idle[d] = false;
            w.grant.give(Ok(d));
        }
    }
}

/// The devices and the queue, shared by the runtime and its interpreters' delegates.
pub(crate) struct Shared {
    queue: Mutex<Queue>,
    /// Signalled when the queue has room again.
    space: Condvar,
    pub options: RuntimeOptions,
    pub infos: Vec<DeviceInfo>,
    pub names: Vec<String>,
    /// `None` once closed.
    devices: Vec<Mutex<Option<Box<dyn Accelerator>>>>,
    metrics: Vec<Mutex<DeviceMetrics>>,
}

impl Shared {
    pub fn new(devices: Vec<Box<dyn Accelerator>>, options: RuntimeOptions) -> Shared {
        let infos: Vec<DeviceInfo> = devices.iter().map(|d| d.info().clone()).collect();
        let names: Vec<String> = infos.iter().map(|i| i.name.clone()).collect();
        let n = devices.len();
        Shared {
            queue: Mutex::new(Queue {
                waiting: VecDeque::with_capacity(options.queue_capacity.max(1)),
                closed: false,
                held: false,
                idle: vec![true; n],
                resident: devices.iter().map(|d| d.residency().clone()).collect(),
                pins: Vec::new(),
            }),
            space: Condvar::new(),
            options,
            metrics: names
                .iter()
                .map(|n| Mutex::new(DeviceMetrics { name: n.clone(), ..Default::default() }))
                .collect(),
            infos,
            names,
            devices: devices.into_iter().map(|d| Mutex::new(Some(d))).collect(),
        }
    }

    pub fn len(&self) -> usize {
        self.devices.len()
    }

    /// The device a model with this pinning key prefers: round-robin in the order models are
    /// first seen.
    pub fn pin(&self, key: u64) -> usize {
        let mut q = lock(&self.queue);
        match q.pins.iter().find(|(k, _)| *k == key) {
            Some(&(_, d)) => d,
            None => {
                let d = q.pins.len() % self.devices.len().max(1);
                q.pins.push((key, d));
                d
            }
        }
    }

    /// Runs `f` on device `d` (for preparing programs), waiting while it runs a step.
    pub fn with_device<T>(&self, d: usize, f: impl FnOnce(&mut dyn Accelerator) -> Result<T>) -> Result<T> {
        match lock(&self.devices[d]).as_mut() {
            Some(acc) => f(acc.as_mut()),
            None => Err(shut_down()),
        }
    }

    /// Waits for a device for `step` and returns its index; the caller then owns it until
    /// [`Self::release`].
    fn acquire(&self, step: &Arc<StepMeta>, grant: &Arc<Grant>) -> Result<usize> {
        let mut q = lock(&self.queue);
        let capacity = self.options.queue_capacity.max(1);
        while q.waiting.len() >= capacity && !q.closed {
            q = self.space.wait(q).unwrap_or_else(|p| p.into_inner());
        }
        if q.closed {
            return Err(shut_down());
        }
        q.waiting.push_back(Waiting { step: step.clone(), grant: grant.clone(), bypassed: 0 });
        q.dispatch(&self.options);
        drop(q);
        // Granted at once when a device was free; otherwise a device that finishes grants it.
        let d = grant.wait()?;
        self.space.notify_one();
        Ok(d)
    }

    /// Records what device `d`'s chip holds after a run (the caller still holds the device).
    fn record(&self, d: usize, residency: Option<&Residency>) {
        let mut q = lock(&self.queue);
        match residency {
            Some(r) => q.resident[d].copy_from(r),
            None => q.resident[d].clear(),
        }
    }

    /// Frees device `d` after a run, once the caller has let go of it, and hands it to the step
    /// it takes next: the step's thread then finds the device unlocked when it wakes.
    fn release(&self, d: usize) {
        let mut q = lock(&self.queue);
        q.idle[d] = true;
        q.dispatch(&self.options);
    }

    /// Runs one step: takes a device, runs `program_of(d)` on it with these tensors on the calling
    /// thread, records the metrics, frees the device.
    pub fn run(
        &self,
        step: &Arc<StepMeta>,
        grant: &Arc<Grant>,
        programs: &[Mutex<Program>],
        inputs: &[&[u8]],
        outputs: &mut [&mut [u8]],
    ) -> Result<()> {
        let d = self.acquire(step, grant)?;
        let start = Instant::now();
        let mut device = lock(&self.devices[d]);
        let result: Result<RunInfo> = match device.as_mut() {
            Some(acc) => acc.run(&mut lock(&programs[d]), inputs, outputs),
            None => Err(shut_down()),
        };
        let busy = start.elapsed();
        self.record(d, device.as_ref().map(|a| a.residency()));
        drop(device);
        self.release(d);
        let mut m = lock(&self.metrics[d]);
        m.busy += busy;
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
        drop(m);
        result.map(drop).map_err(|e| e.with_step(&step.name))
    }

    pub fn metrics(&self) -> Vec<DeviceMetrics> {
        self.metrics.iter().map(|m| lock(m).clone()).collect()
    }

    pub fn telemetry(&self) -> Vec<Telemetry> {
        self.devices.iter().map(|d| lock(d).as_mut().map(|a| a.telemetry()).unwrap_or_default()).collect()
    }

    pub fn set_held(&self, held: bool) {
        let mut q = lock(&self.queue);
        q.held = held;
        if !held {
            q.dispatch(&self.options);
        }
    }

    pub fn queue_depth(&self) -> usize {
        lock(&self.queue).waiting.len()
    }

    /// Refuses new steps, fails the waiting ones, and closes every device once its current run
    /// ends.
    pub fn close(&self) {
        {
            let mut q = lock(&self.queue);
            q.closed = true;
            for w in q.waiting.drain(..) {
                w.grant.give(Err(shut_down()));
            }
        }
        self.space.notify_all();
        for (d, slot) in self.devices.iter().enumerate() {
            if let Some(acc) = lock(slot).take() {
                if let Err(e) = acc.close() {
                    log::warn!("closing {}: {e}", self.names[d]);
                }
            }
        }
    }
}

fn shut_down() -> Error {
    Error::runtime(ErrorKind::Disconnected, "the runtime is shutting down")
}

impl Error {
    fn with_step(self, step: &str) -> Error {
        match self {
            Error::Device { device, device_kind, kind, reason } => {
                Error::Device { device, device_kind, kind, reason: format!("{step}: {reason}") }
            }
            e => e,
        }
    }
}
