//! A Coral USB Accelerator: firmware, open and close sequences, running prepared executables
//! with parameter caching, and recovery after a failure (reset, reopen, re-cache).

use super::dfu;
use super::program::{PreparedExecutable, Program};
use super::sequence::{self, Performance};
use super::usb_frame::Tag;
use super::usb_plan::{Source, Step};
use crate::error::{Error, ErrorKind, Result};
use crate::transport::usb_transport::UsbTransport;
use crate::transport::{Speed, Transport, UsbBus, UsbIo, UsbPath};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// How to open a USB Accelerator.
#[derive(Clone)]
pub struct UsbOptions {
    /// Clock setting; [`Performance::High`] by default.
    pub performance: Performance,
    /// Timeout of each USB transfer (libedgetpu's default: 6 s).
    pub timeout: Duration,
    /// Firmware image file; `None`: `EDGETPU_FIRMWARE`, then the data directory
    /// (see [`super::firmware_path::locate`]).
    pub firmware: Option<PathBuf>,
    /// Called with (bytes sent, total) during a firmware download.
    pub progress: Option<Arc<dyn Fn(usize, usize) + Send + Sync>>,
}

impl Default for UsbOptions {
    fn default() -> Self {
        UsbOptions { performance: Performance::High, timeout: Duration::from_secs(6), firmware: None, progress: None }
    }
}

impl std::fmt::Debug for UsbOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UsbOptions")
            .field("performance", &self.performance)
            .field("timeout", &self.timeout)
            .field("firmware", &self.firmware)
            .finish_non_exhaustive()
    }
}

/// Reads the firmware image named by the options (or found by the usual places).
pub fn load_firmware(explicit: Option<&std::path::Path>) -> Result<Vec<u8>> {
    let path = super::firmware_path::locate(explicit)?;
    let image = std::fs::read(&path).map_err(|source| Error::Io { path: path.clone(), source })?;
    if image.first() != Some(&0x02) {
        return Err(Error::argument(format!(
            "{} does not look like the accelerator's firmware (it does not start with 0x02); fetch it again with \
             `edgetpu firmware fetch`",
            path.display()
        )));
    }
    Ok(image)
}

/// What one run cost in parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RunInfo {
    /// The chip already held the model's cached parameters (or it has none to cache).
    pub cache_hit: bool,
    /// Parameter bytes sent: the cached blob when it had to be loaded, plus the streamed part.
    pub parameter_bytes: usize,
}

/// An open USB Accelerator.
#[derive(Debug)]
pub struct UsbAccelerator {
    bus: Arc<dyn UsbBus>,
    path: UsbPath,
    options: UsbOptions,
    transport: Option<UsbTransport<Box<dyn UsbIo>>>,
    /// Parameter-caching token whose parameters are in the chip's memory.
    cached_token: Option<u64>,
    /// The parameter-caching executables (by [`Program::caching_key`]) that ran under that token.
    cached: Vec<u64>,
    speed: Speed,
    recoveries: u64,
}

impl UsbAccelerator {
    /// Opens the accelerator at `path` on `bus`: firmware if it needs it, port reset, the open
    /// sequence.
    pub fn open(bus: Arc<dyn UsbBus>, path: &UsbPath, options: UsbOptions) -> Result<UsbAccelerator> {
        let mut acc = UsbAccelerator {
            bus,
            path: path.clone(),
            options,
            transport: None,
            cached_token: None,
            cached: Vec::new(),
            speed: Speed::Unknown,
            recoveries: 0,
        };
        acc.bring_up()?;
        Ok(acc)
    }

    /// Opens the accelerator chosen by a selection string (`usb`, `usb:N`, `usb:<path>`).
    pub fn open_selected(bus: Arc<dyn UsbBus>, selector: &str, options: UsbOptions) -> Result<UsbAccelerator> {
        let sel = super::discovery::Selector::parse(selector)?;
        let dev = super::discovery::select(bus.as_ref(), &sel)?;
        Self::open(bus, &dev.info.path, options)
    }

    fn bring_up(&mut self) -> Result<()> {
        self.transport = None;
        self.cached_token = None;
        self.cached.clear();
        let explicit = self.options.firmware.clone();
        let mut firmware = || load_firmware(explicit.as_deref());
        let progress = self.options.progress.clone();
        let mut report = |sent: usize, total: usize| {
            if let Some(p) = &progress {
                p(sent, total)
            }
        };
        let io = dfu::prepare(self.bus.as_ref(), &self.path, &mut firmware, self.options.timeout, &mut report)?;
        self.speed = io.info().speed;
        if self.speed == Speed::Low {
            return Err(Error::device(
                self.name(),
                ErrorKind::Unsupported,
                "the accelerator is on a low-speed USB link; plug it into a USB 3 port",
            ));
        }
        let mut t = UsbTransport::new(io, self.options.timeout);
        let usb2 = t.is_usb2();
        sequence::open(&mut t, self.options.performance, usb2)?;
        self.transport = Some(t);
        Ok(())
    }

    /// The device's selection string, `usb:<path>`.
    pub fn name(&self) -> String {
        format!("usb:{}", self.path)
    }

    /// Where it is plugged in.
    pub fn path(&self) -> &UsbPath {
        &self.path
    }

    /// Link speed.
    pub fn speed(&self) -> Speed {
        self.speed
    }

    /// The caching token whose parameters are on the chip, as far as the runtime knows.
    pub fn cached_token(&self) -> Option<u64> {
        self.cached_token
    }

    /// How often the device was reset and reopened after a failure.
    pub fn recoveries(&self) -> u64 {
        self.recoveries
    }

    /// Resets the port and opens the device again (downloading the firmware again if it lost
    /// it); the parameter cache is considered empty afterwards.
    pub fn recover(&mut self) -> Result<()> {
        if let Some(mut t) = self.transport.take() {
            // The handle may already be dead; the reset is best effort.
            let _ = t.io_mut().reset();
        }
        self.recoveries += 1;
        self.bring_up()
    }

    /// Runs one inference of `program`: its parameter-caching executable first when the chip
    /// does not hold its parameters, then the main executable with `inputs` (dense, one per
    /// input layer); `outputs` receive the dense outputs. A device left broken by an earlier
    /// failure is recovered first.
    pub fn run(&mut self, program: &mut Program, inputs: &[&[u8]], outputs: &mut [&mut [u8]]) -> Result<RunInfo> {
        if self.transport.is_none() {
            self.recover()?;
        }
        program.set_inputs(inputs)?;
        match self.run_prepared(program) {
            Ok(info) => program.get_outputs(outputs).map(|()| info),
            Err(e) => {
                if matches!(
                    e.kind(),
                    ErrorKind::Timeout | ErrorKind::Disconnected | ErrorKind::Protocol | ErrorKind::DeviceFault
                ) {
                    // The device's state is unknown: drop the handle; the next run recovers.
                    if let Some(mut t) = self.transport.take() {
                        t.discard_pending();
                    }
                    self.cached_token = None;
                    self.cached.clear();
                }
                Err(e)
            }
        }
    }

    fn run_prepared(&mut self, program: &mut Program) -> Result<RunInfo> {
        let t = self.transport.as_mut().ok_or_else(|| {
            Error::device(format!("usb:{}", self.path), ErrorKind::Disconnected, "the device is not open")
        })?;
        let token = program.token;
        let key = program.caching_key;
        let mut info = RunInfo { cache_hit: true, parameter_bytes: 0 };
        let model = program.model().clone();
        let bytes = model.bytes();
        if let Some(pc) = program.caching.as_mut() {
            // libedgetpu's rule (PROTOCOL.md §2.1, §5): a token of 0 or another token than the
            // chip's invalidates the cache; a caching executable not yet run under the token runs.
            if token == 0 || self.cached_token != Some(token) {
                self.cached_token = None;
                self.cached.clear();
            }
            if !self.cached.contains(&key) {
                let params = pc.parameters.clone();
                info.cache_hit = false;
                info.parameter_bytes += params.len();
                run_executable(t, pc, &bytes[params])?;
                self.cached_token = Some(token);
                self.cached.push(key);
            }
        }
        let params = program.main.parameters.clone();
        info.parameter_bytes += params.len();
        run_executable(t, &mut program.main, &bytes[params])?;
        Ok(info)
    }

    /// Closes the device: the close sequence, then the handle is released (no port reset).
    pub fn close(mut self) -> Result<()> {
        match self.transport.take() {
            Some(mut t) => sequence::close(&mut t),
            None => Ok(()),
        }
    }
}

/// Runs one executable's steps over a transport (PROTOCOL.md §2.2-2.4). Transfers are
/// synchronous, so every bulk-out starts after earlier outputs were read.
pub fn run_executable<T: Transport + ?Sized>(t: &mut T, p: &mut PreparedExecutable, parameters: &[u8]) -> Result<()> {
    // Every range below was checked against its buffer when the executable was prepared.
    for i in 0..p.steps.len() {
        match &p.steps[i] {
            Step::BulkOut { tag, size, source, .. } => {
                let bytes: &[u8] = match source {
                    Source::Instructions { chunk } => &p.linked[*chunk],
                    Source::Input { layer, batch, offset } => {
                        &p.inputs[p.input_index(*layer, *batch)][*offset..offset + size]
                    }
                    Source::Parameters { offset } => &parameters[*offset..offset + size],
                    Source::Scratch { offset } => &p.scratch[*offset..offset + size],
                };
                t.send(*tag, bytes)?;
            }
            &Step::BulkIn { layer, batch, offset, size } => {
                let buf = if layer == usize::MAX {
                    &mut p.scratch[offset..offset + size]
                } else {
                    let k = p.output_index(layer, batch);
                    &mut p.outputs[k][offset..offset + size]
                };
                t.recv(buf)?;
            }
            Step::WaitInterrupt { number } => loop {
                let e = t.wait_event()?;
                if e.tag == Tag::Interrupt(*number) {
                    break;
                }
            },
            Step::Fence => {}
        }
    }
    Ok(())
}
