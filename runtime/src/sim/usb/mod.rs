//! A Coral USB Accelerator emulated at the USB transfer level (ARCHITECTURE.md, "The device
//! simulator").
//!
//! [`SimBus`] is a [`UsbBus`] with one simulated accelerator on it; the handles it opens are
//! [`UsbIo`]s, so the runtime's whole USB protocol runs against it unchanged. The device:
//! * starts in DFU mode (`1a6e:089a`) with a DFU interface whose functional descriptor says
//!   256-byte blocks; it accepts a firmware download (DNLOAD blocks answered by GETSTATUS, a
//!   zero-length block ending it in dfuIDLE), serves UPLOAD of 32 KiB of its memory, and after a
//!   port reset re-enumerates as `18d1:9302` on the same port;
//! * has a CSR file with the side effects the open and close sequences rely on (the power state
//!   follows `rg_force_sleep`, `tileconfig0` reads back, status registers are write-0-to-clear);
//! * checks every bulk-out against the DMA hints of the executables registered with
//!   [`SimBus::load`]: header tags and lengths in hint order, instruction chunks equal to the
//!   executable's (linked fields aside), no request while an earlier output is unread, no
//!   inference whose parameters are not cached, the core in RUN. A violation stalls endpoint
//!   0x01 and is kept in [`SimBus::violations`];
//! * answers outputs on 0x81 in the device's padded or tiled layout from an [`Oracle`], and
//!   reports completion with a 16-byte event of tag 4 on 0x82;
//! * keeps a virtual clock ([`TimeModel`]: link bandwidth, per-transfer latency, compute time
//!   from the executable's instruction bytes) and injects [`Fault`]s.
//!
//! It cannot execute Edge TPU instructions: output values come from the oracle.

mod state;

pub use super::program::{CpuTwinOracle, Oracle, SeededOracle};

use crate::device::usb::frame::Tag;
use crate::device::usb::{Setup, Speed, UsbBus, UsbDeviceInfo, UsbError, UsbErrorKind, UsbIo, UsbPath};
use state::SimState;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

/// How the simulator accounts time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TimeModel {
    /// Bulk throughput of the link, bytes per second (0: transfers take no time).
    pub bytes_per_second: f64,
    /// Fixed cost of each transfer.
    pub per_transfer: Duration,
    /// Compute time per byte of the executable's instructions.
    pub compute_per_instruction_byte: Duration,
    /// Also sleep for the modelled time (for wall-clock measurements of schedulers).
    pub realtime: bool,
}

impl TimeModel {
    /// USB 3 (SuperSpeed): about 350 MB/s of bulk throughput, 20 µs per transfer. A model, not
    /// a measurement of a device.
    pub fn usb3() -> TimeModel {
        TimeModel {
            bytes_per_second: 350e6,
            per_transfer: Duration::from_micros(20),
            compute_per_instruction_byte: Duration::from_nanos(8),
            realtime: false,
        }
    }
    /// USB 2 (High-Speed): about 35 MB/s, 125 µs per transfer.
    pub fn usb2() -> TimeModel {
        TimeModel {
            bytes_per_second: 35e6,
            per_transfer: Duration::from_micros(125),
            compute_per_instruction_byte: Duration::from_nanos(8),
            realtime: false,
        }
    }
    /// Everything takes no time (to measure the host's own cost).
    pub fn zero() -> TimeModel {
        TimeModel {
            bytes_per_second: 0.0,
            per_transfer: Duration::ZERO,
            compute_per_instruction_byte: Duration::ZERO,
            realtime: false,
        }
    }
    fn transfer(&self, bytes: usize) -> Duration {
        let wire = if self.bytes_per_second > 0.0 { bytes as f64 / self.bytes_per_second } else { 0.0 };
        self.per_transfer + Duration::from_secs_f64(wire)
    }
}

/// What goes wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// The transfer stalls; the endpoint stays halted until cleared or the port is reset.
    Stall,
    /// The transfer times out (no data moves). On a read endpoint (0x81 outputs, 0x82 events) this
    /// is a device that answers later than the host's timeout: the data stays, and a read posted
    /// again gets it.
    Timeout,
    /// The transfer delivers half of its data; the rest is lost.
    ShortRead,
    /// The device is unplugged during the transfer. It comes back on the bus (in DFU mode: the
    /// firmware was lost with the power) after one failed enumeration.
    Disconnect,
    /// The next firmware download fails: GETSTATUS reports errWRITE (endpoint ignored).
    DfuFail,
    /// The next run ends in a fatal error: `hib_error_status` bit 9 (invalid instruction
    /// queue), an interrupt word with the fatal bit on 0x83, and no completion event
    /// (endpoint ignored).
    FatalError,
}

/// A fault to inject: `kind` on the transfer to `endpoint` (0: control) after `after` transfers
/// to it have gone through since injection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fault {
    /// What goes wrong.
    pub kind: FaultKind,
    /// Endpoint address (0 for control transfers).
    pub endpoint: u8,
    /// Transfers to let through first.
    pub after: usize,
}

/// Configuration of the simulated device.
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Where it is plugged in.
    pub path: UsbPath,
    /// Link speed.
    pub speed: Speed,
    /// Whether it starts in DFU mode (freshly plugged in) or already running its firmware.
    pub start_in_dfu: bool,
    /// Time accounting.
    pub time: TimeModel,
    /// `scu_ctrl_3` after a reset. The default, `0x6085_0004` (awake, boot clocks), is what a
    /// real device's log shows after a port reset; `0x00c5_0000` is a chip left asleep by an
    /// earlier close.
    pub scu_ctrl_3_at_reset: u32,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            path: UsbPath { bus: 1, ports: vec![2] },
            speed: Speed::Super,
            start_in_dfu: true,
            time: TimeModel::usb3(),
            scu_ctrl_3_at_reset: 0x6085_0004,
        }
    }
}

/// Counters of what crossed the simulated link.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimStats {
    /// Control transfers.
    pub control_transfers: u64,
    /// Bulk-out transfers (headers included).
    pub bulk_out_transfers: u64,
    /// Bulk-out bytes (headers included).
    pub bulk_out_bytes: u64,
    /// Parameter bytes received (tag 2 payloads).
    pub parameter_bytes: u64,
    /// Bulk-in transfers on 0x81.
    pub bulk_in_transfers: u64,
    /// Output bytes sent on 0x81.
    pub bulk_in_bytes: u64,
    /// Runs completed (events of tag 4 produced).
    pub runs: u64,
    /// Port resets.
    pub resets: u64,
    /// Firmware downloads completed.
    pub firmware_downloads: u64,
    /// Firmware blocks refused by an injected DFU failure (`FaultKind::DfuFail`).
    pub dfu_failures: u64,
}

/// A protocol violation or device fault seen by the simulator.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Violation {
    pub message: String,
    /// A device-side failure (oracle error) rather than a host mistake.
    pub fault: bool,
}

impl Violation {
    pub(crate) fn host(message: impl Into<String>) -> Violation {
        Violation { message: message.into(), fault: false }
    }
    pub(crate) fn fault(message: impl Into<String>) -> Violation {
        Violation { message: message.into(), fault: true }
    }
}

/// Where device-side steps put their results.
pub(crate) trait ExecSink {
    fn output(&mut self, bytes: &[u8]);
    fn event(&mut self, tag: Tag);
    /// Reports a DMA on the event endpoint (device-descriptor mode): its address and length.
    fn descriptor(&mut self, tag: Tag, address: u64, length: usize);
    /// Whether the event endpoint reports descriptors of `tag` (`descr_ep` bit).
    fn reports(&self, tag: Tag) -> bool;
    fn compute_time(&mut self, instruction_bytes: usize);
}

/// A USB bus with one simulated Coral USB Accelerator.
#[derive(Debug, Clone)]
pub struct SimBus {
    state: Arc<Mutex<SimState>>,
}

impl SimBus {
    /// A bus with a device configured by `config`.
    pub fn new(config: SimConfig) -> SimBus {
        SimBus { state: Arc::new(Mutex::new(SimState::new(config))) }
    }

    fn lock(&self) -> MutexGuard<'_, SimState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers the executables of a compiled model's package with the device, so that it can
    /// check their requests and answer their outputs. `name` appears in violation messages;
    /// `oracle` computes the main executable's outputs (without one, running it is a device
    /// fault).
    pub fn load(
        &self,
        package: &crate::package::Package<'_>,
        name: &str,
        oracle: Option<Arc<Mutex<dyn Oracle>>>,
    ) -> crate::Result<()> {
        let exes = crate::sim::program::SimExe::from_package(package, name, oracle)?;
        self.lock().exes.extend(exes);
        Ok(())
    }

    /// Schedules a fault.
    pub fn inject(&self, fault: Fault) {
        self.lock().inject(fault);
    }

    /// Protocol violations seen so far (each one stalled endpoint 0x01 or the control pipe).
    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    /// Counters.
    pub fn stats(&self) -> SimStats {
        self.lock().stats
    }

    /// Virtual time spent so far by the modelled link and device.
    pub fn elapsed(&self) -> Duration {
        self.lock().clock
    }

    /// Wall-clock time the host's threads spent inside the simulated device (handling
    /// transfers, running the oracle): subtract it from a measurement to get the host's cost.
    pub fn device_wall_time(&self) -> Duration {
        self.lock().device_wall
    }

    /// Changes the time model.
    pub fn set_time_model(&self, time: TimeModel) {
        self.lock().config.time = time;
    }

    /// The parameter-caching token whose parameters are in the device's memory, if any.
    pub fn cached_token(&self) -> Option<u64> {
        self.lock().cached_token
    }

    /// The value of a CSR (as the device holds it).
    pub fn csr(&self, offset: u32) -> u64 {
        self.lock().csr_read(offset)
    }

    /// Where the device is plugged in.
    pub fn config_path(&self) -> UsbPath {
        self.lock().config.path.clone()
    }

    /// The firmware image the device is running, if any.
    pub fn firmware(&self) -> Option<Vec<u8>> {
        self.lock().firmware.clone()
    }
}

impl UsbBus for SimBus {
    fn devices(&self) -> Result<Vec<UsbDeviceInfo>, UsbError> {
        Ok(self.lock().enumerate().into_iter().collect())
    }

    fn open(&self, path: &UsbPath) -> Result<Box<dyn UsbIo>, UsbError> {
        let mut s = self.lock();
        let info = s.enumerate().filter(|i| &i.path == path).ok_or(UsbError::new(UsbErrorKind::NotFound, 0))?;
        Ok(Box::new(SimIo { state: self.state.clone(), generation: s.generation, info }))
    }

    /// Settling takes no simulated device time (and no wall time).
    fn settle(&self, _: Duration) {}
}

/// An open handle on the simulated device.
#[derive(Debug)]
pub struct SimIo {
    state: Arc<Mutex<SimState>>,
    generation: u64,
    info: UsbDeviceInfo,
}

thread_local! {
    static IN_DEVICE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the current thread is executing inside the simulated device (a transfer being
/// handled). Benchmarks use it to leave the simulator's own work out of the host's costs, e.g.
/// in a counting allocator.
pub fn in_device() -> bool {
    IN_DEVICE.with(|c| c.get())
}

/// Runs `f` as the simulated device (USB or PCIe): [`in_device`] holds meanwhile.
pub(crate) fn as_device<T>(f: impl FnOnce() -> T) -> T {
    let before = IN_DEVICE.with(|c| c.replace(true));
    let r = f();
    IN_DEVICE.with(|c| c.set(before));
    r
}

impl SimIo {
    fn with<T>(&self, f: impl FnOnce(&mut SimState) -> Result<T, UsbError>) -> Result<T, UsbError> {
        let start = std::time::Instant::now();
        as_device(|| {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            let r = if s.generation != self.generation || s.gone.is_some() {
                Err(UsbError::new(UsbErrorKind::Disconnected, 0))
            } else {
                f(&mut s)
            };
            s.device_wall += start.elapsed();
            r
        })
    }
}

impl UsbIo for SimIo {
    fn info(&self) -> &UsbDeviceInfo {
        &self.info
    }
    fn claim_interface(&mut self, interface: u8) -> Result<(), UsbError> {
        self.with(|_| if interface == 0 { Ok(()) } else { Err(UsbError::new(UsbErrorKind::NotFound, 0)) })
    }
    fn control_in(&mut self, setup: Setup, buf: &mut [u8], timeout: Duration) -> Result<usize, UsbError> {
        self.with(|s| s.control_in(setup, buf, timeout))
    }
    fn control_out(&mut self, setup: Setup, data: &[u8], timeout: Duration) -> Result<(), UsbError> {
        self.with(|s| s.control_out(setup, data, timeout))
    }
    fn bulk_out(&mut self, endpoint: u8, data: &[u8], timeout: Duration) -> Result<usize, UsbError> {
        self.with(|s| s.bulk_out(endpoint, data, timeout))
    }
    fn bulk_in(&mut self, endpoint: u8, buf: &mut [u8], timeout: Duration) -> Result<usize, UsbError> {
        self.with(|s| s.bulk_in(endpoint, buf, timeout))
    }
    fn interrupt_in(&mut self, endpoint: u8, buf: &mut [u8], timeout: Duration) -> Result<usize, UsbError> {
        self.with(|s| s.interrupt_in(endpoint, buf, timeout))
    }
    fn clear_halt(&mut self, endpoint: u8) -> Result<(), UsbError> {
        self.with(|s| {
            s.halted.retain(|&e| e != endpoint);
            Ok(())
        })
    }
    fn reset(&mut self) -> Result<(), UsbError> {
        self.with(|s| {
            s.port_reset();
            Ok(())
        })
    }
}
