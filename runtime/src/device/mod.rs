//! Edge TPU devices behind one trait, [`Accelerator`], laid out by device kind.
//!
//! * [`usb`]: the Coral USB Accelerator (firmware download, open and close sequences, running
//!   executables by their DMA hints with parameter caching, recovery by reset and reopen) over
//!   the [`usb::UsbIo`] seam (libusb through rusb, record/replay, or the simulator).
//! * [`pcie`]: the M.2 / Mini-PCIe cards and the Dev Board through the apex kernel driver, over
//!   the [`pcie::Sys`] system-call seam.
//! * [`spec`]: [`DeviceSpec`], the one parser of device strings (`auto`, `cpu`, `usb:N`,
//!   `pci`, `sim`, lists) and the one `auto` policy.
//! * Parts both kinds share: the chip's registers ([`csr`]) and register sequences ([`chip`]),
//!   prepared executables ([`program`]) and their DMA-hint plan ([`plan`]), output re-layout
//!   ([`layout`]), and the one parameter-residency rule ([`Residency`]).
//!
//! `usb` and `pcie` use these shared parts and never each other; the simulators (`crate::sim`,
//! cargo feature `sim`) implement the seams from outside.

pub mod chip;
pub mod csr;
pub mod layout;
pub mod pcie;
pub mod plan;
pub mod program;
pub mod spec;
pub mod usb;

pub use chip::Performance;
pub use spec::{DeviceSpec, Entry, SimKind};

use crate::error::Result;
use crate::model::Model;
use crate::package::Package;
use program::Program;
use std::sync::Arc;

pub use crate::error::DeviceKind;

/// What one run cost in parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RunInfo {
    /// The chip already held the model's cached parameters (or it has none to cache).
    pub cache_hit: bool,
    /// Parameter bytes sent: the cached blob when it had to be loaded, plus the streamed part.
    pub parameter_bytes: usize,
}

/// Which cached parameters a chip holds: one caching token and the parameter-caching
/// executables (by [`Program::caching_key`]) run under it. Co-compiled models share a token and
/// cache side by side.
///
/// The one residency rule (libedgetpu's, PROTOCOL.md §2.1 and §5): a token of 0, or a token other
/// than the chip's, invalidates the cache; a caching executable not yet run under the token must
/// run before the main one.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Residency {
    token: Option<u64>,
    keys: Vec<u64>,
}

impl Residency {
    /// Whether a program of `token` whose caching executable is `key` (0: none) would run without
    /// loading parameters first.
    pub fn holds(&self, token: u64, key: u64) -> bool {
        key == 0 || (token != 0 && self.token == Some(token) && self.keys.contains(&key))
    }

    /// Applies the rule before a run of a program with a caching executable: drops the cache if
    /// `token` invalidates it, and says whether the caching executable `key` must run.
    pub fn must_load(&mut self, token: u64, key: u64) -> bool {
        if token == 0 || self.token != Some(token) {
            self.clear();
        }
        !self.keys.contains(&key)
    }

    /// Records that the caching executable `key` of `token` ran.
    pub fn loaded(&mut self, token: u64, key: u64) {
        self.token = Some(token);
        if !self.keys.contains(&key) {
            self.keys.push(key);
        }
    }

    /// Forgets everything (after a reset or a failed run: the chip's memory is unknown).
    pub fn clear(&mut self) {
        self.token = None;
        self.keys.clear();
    }

    /// The token whose parameters are on the chip, as far as the runtime knows.
    pub fn token(&self) -> Option<u64> {
        self.token
    }

    /// Makes this a copy of `other` in place, reusing its memory (no allocation once it has held
    /// as many keys).
    pub fn copy_from(&mut self, other: &Residency) {
        self.token = other.token;
        self.keys.clear();
        self.keys.extend_from_slice(&other.keys);
    }
}

/// What identifies an open device.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct DeviceInfo {
    /// Its selection string (`usb:2-1`, `pci:apex_0`, `sim:0`, ...).
    pub name: String,
    /// USB or PCIe.
    pub kind: DeviceKind,
    /// Whether it is a simulator rather than hardware.
    pub simulated: bool,
}

impl DeviceInfo {
    /// A device of `kind` called `name`.
    pub fn new(name: impl Into<String>, kind: DeviceKind, simulated: bool) -> DeviceInfo {
        DeviceInfo { name: name.into(), kind, simulated }
    }
}

/// Readings a device offers now; `None` where it has no sensor or the reading failed.
#[derive(Debug, Clone, Default, PartialEq)]
#[non_exhaustive]
pub struct Telemetry {
    /// Chip temperature in °C.
    pub temperature_c: Option<f64>,
    /// How often the device was reset and reopened after a failure.
    pub recoveries: u64,
    /// The link, in words (`USB 3 SuperSpeed (5 Gbit/s)`, `PCIe`).
    pub link: Option<String>,
    /// Time the device's own clock accounts so far: for simulated USB Accelerators, the modelled
    /// link and compute time.
    pub device_time: Option<std::time::Duration>,
}

/// An Edge TPU the runtime can run prepared programs on: a USB Accelerator, a PCIe Edge TPU, or a
/// simulated one. Each backend implements it once.
pub trait Accelerator: Send + std::fmt::Debug {
    /// Its name, kind and whether it is simulated.
    fn info(&self) -> &DeviceInfo;

    /// Prepares the Edge TPU package of one custom op of `model` to run on this device.
    fn prepare(&mut self, model: &Arc<Model>, package: &Package<'_>) -> Result<Program> {
        Program::new(model, package)
    }

    /// Runs one inference of `program` with the dense input bytes of each input layer, writing the
    /// dense bytes of each output layer. Loads the cached parameters first when the chip does not
    /// hold them ([`Residency`]).
    fn run(&mut self, program: &mut Program, inputs: &[&[u8]], outputs: &mut [&mut [u8]]) -> Result<RunInfo>;

    /// The cached parameters the chip holds.
    fn residency(&self) -> &Residency;

    /// Readings of the device now.
    fn telemetry(&mut self) -> Telemetry {
        Telemetry::default()
    }

    /// Runs the close sequence and releases the device.
    fn close(self: Box<Self>) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn residency_follows_libedgetpu_rule() {
        let mut r = Residency::default();
        assert!(r.holds(7, 0), "a program with nothing to cache always holds");
        assert!(!r.holds(7, 1));
        assert!(r.must_load(7, 1));
        r.loaded(7, 1);
        assert!(r.holds(7, 1) && !r.must_load(7, 1));
        // A co-compiled model (same token) caches beside it.
        assert!(r.must_load(7, 2));
        r.loaded(7, 2);
        assert!(r.holds(7, 1) && r.holds(7, 2));
        // Another token drops both.
        assert!(r.must_load(8, 3));
        assert!(!r.holds(7, 1) && r.token().is_none());
        r.loaded(8, 3);
        // Token 0 never keeps a cache.
        assert!(r.must_load(0, 3));
        r.loaded(0, 3);
        assert!(!r.holds(0, 3) && r.must_load(0, 3));
        r.clear();
        assert_eq!(r, Residency::default());
    }
}
