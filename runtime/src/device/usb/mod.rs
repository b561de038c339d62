#![doc = include_str!("doc.md")]

pub mod dfu;
pub mod discovery;
pub mod firmware;
pub mod frame;
mod io;
pub mod record;
#[cfg(feature = "usb")]
pub mod rusb;
pub mod sequence;
pub mod transport;

pub use io::{Setup, Speed, UsbBus, UsbDeviceInfo, UsbError, UsbErrorKind, UsbIo, UsbPath, APP_ID, DFU_ID};

use super::chip::Performance;
use super::csr;
use super::plan::{self as usb_plan, Source, Step};
use super::program::{PreparedExecutable, Program, Target};
use super::{Accelerator, DeviceInfo, Residency, RunInfo, Telemetry};
use crate::error::{DeviceKind, Error, ErrorKind, Result};
use frame::{Event, Tag};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use transport::{Transport, UsbTransport};

/// How to open a USB Accelerator.
///
/// ```
/// use edgetpu::device::{usb::UsbOptions, Performance};
/// let options = UsbOptions::default().performance(Performance::Max);
/// assert_eq!(options.performance, Performance::Max);
/// ```
#[derive(Clone)]
#[non_exhaustive]
pub struct UsbOptions {
    /// Clock setting; [`Performance::High`] by default.
    pub performance: Performance,
    /// Timeout of each USB transfer (libedgetpu's default: 6 s). Bulk-out and control transfers
    /// fail after it; output and event reads are posted again until [`Self::patience`].
    pub timeout: Duration,
    /// How long an output or event read may wait in all (60 s by default; libedgetpu waits for
    /// ever).
    pub patience: Duration,
    /// Open the device with DMA descriptors enabled on its event endpoint (`descr_ep` 0xFF: the
    /// device announces every transfer, and each announcement is matched against the transfers
    /// the DMA hints already made). Off by default, as in libedgetpu; the device turns it on by
    /// itself, once, when a program whose DMA hints are not fully deterministic is prepared on it.
    pub descriptors_from_device: bool,
    /// Firmware image file; `None`: `EDGETPU_FIRMWARE`, then the data directory
    /// (see [`firmware::locate`]).
    pub firmware: Option<PathBuf>,
    /// Called with (bytes sent, total) during a firmware download.
    pub progress: Option<Arc<dyn Fn(usize, usize) + Send + Sync>>,
}

impl Default for UsbOptions {
    fn default() -> Self {
        UsbOptions {
            performance: Performance::High,
            timeout: Duration::from_secs(6),
            patience: transport::DEFAULT_PATIENCE,
            descriptors_from_device: false,
            firmware: None,
            progress: None,
        }
    }
}

impl UsbOptions {
    /// Sets [`Self::performance`].
    pub fn performance(mut self, performance: Performance) -> Self {
        self.performance = performance;
        self
    }
    /// Sets [`Self::timeout`].
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }
    /// Sets [`Self::patience`].
    pub fn patience(mut self, patience: Duration) -> Self {
        self.patience = patience;
        self
    }
    /// Sets [`Self::descriptors_from_device`].
    pub fn descriptors_from_device(mut self, on: bool) -> Self {
        self.descriptors_from_device = on;
        self
    }
    /// Sets [`Self::firmware`].
    pub fn firmware(mut self, path: impl Into<PathBuf>) -> Self {
        self.firmware = Some(path.into());
        self
    }
    /// Sets [`Self::progress`].
    pub fn progress(mut self, progress: Arc<dyn Fn(usize, usize) + Send + Sync>) -> Self {
        self.progress = Some(progress);
        self
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
    let path = firmware::locate(explicit)?;
    let image = std::fs::read(&path).map_err(|source| Error::Io { path: path.clone(), source })?;
    if image.first() != Some(&0x02) {
        return Err(Error::argument(format!(
            "{} does not look like the accelerator's firmware (it does not start with 0x02)",
            path.display()
        )));
    }
    Ok(image)
}

/// An open USB Accelerator.
#[derive(Debug)]
pub struct UsbAccelerator {
    bus: Arc<dyn UsbBus>,
    path: UsbPath,
    options: UsbOptions,
    transport: Option<UsbTransport<Box<dyn UsbIo>>>,
    /// The cached parameters in the chip's memory.
    residency: Residency,
    /// Whether the event endpoint reports every DMA descriptor (`descr_ep` 0xFF).
    descriptors: bool,
    info: DeviceInfo,
    speed: Speed,
    recoveries: u64,
}

impl UsbAccelerator {
    /// Opens the accelerator at `path` on `bus`: firmware if it needs it, port reset, the open
    /// sequence.
    pub fn open(bus: Arc<dyn UsbBus>, path: &UsbPath, options: UsbOptions) -> Result<UsbAccelerator> {
        let descriptors = options.descriptors_from_device;
        let mut acc = UsbAccelerator {
            bus,
            path: path.clone(),
            options,
            transport: None,
            residency: Residency::default(),
            descriptors,
            info: DeviceInfo::new(format!("usb:{path}"), DeviceKind::Usb, false),
            speed: Speed::Unknown,
            recoveries: 0,
        };
        acc.bring_up()?;
        log::info!("{}: opened ({}, {:?} performance)", acc.info.name, acc.speed, acc.options.performance);
        Ok(acc)
    }

    /// Marks the device as simulated and gives it another name (the simulators' `sim:N`).
    pub fn rename(&mut self, name: impl Into<String>, simulated: bool) {
        self.info.name = name.into();
        self.info.simulated = simulated;
    }

    /// Opens the accelerator chosen by a selection string (`usb`, `usb:N`, `usb:<path>`).
    pub fn open_selected(bus: Arc<dyn UsbBus>, selector: &str, options: UsbOptions) -> Result<UsbAccelerator> {
        let sel = discovery::Selector::parse(selector)?;
        let dev = discovery::select(bus.as_ref(), &sel)?;
        Self::open(bus, &dev.info.path, options)
    }

    fn bring_up(&mut self) -> Result<()> {
        self.transport = None;
        self.residency.clear();
        let explicit = self.options.firmware.clone();
        let mut firmware = || load_firmware(explicit.as_deref());
        let progress = self.options.progress.clone();
        let name = &self.info.name;
        let mut report = |sent: usize, total: usize| {
            if sent == 0 || sent == total {
                log::info!("{name}: firmware download: {sent} of {total} bytes");
            }
            if let Some(p) = &progress {
                p(sent, total)
            }
        };
        let io = dfu::prepare(self.bus.as_ref(), &self.path, &mut firmware, self.options.timeout, &mut report)?;
        self.speed = io.info().speed;
        if self.speed == Speed::Low {
            return Err(Error::usb(
                self.name(),
                ErrorKind::Unsupported,
                "the accelerator is on a low-speed USB link; plug it into a USB 3 port",
            ));
        }
        let mut t = UsbTransport::new(io, self.options.timeout);
        t.set_patience(self.options.patience);
        let usb2 = t.is_usb2();
        sequence::open(&mut t, self.options.performance, usb2, self.descriptors)?;
        self.transport = Some(t);
        Ok(())
    }

    /// The device's selection string, `usb:<path>`.
    pub fn name(&self) -> String {
        self.info.name.clone()
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
        self.residency.token()
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
        log::warn!("{}: resetting and reopening the device (recovery {})", self.info.name, self.recoveries);
        let r = self.bring_up();
        match &r {
            Ok(()) => log::info!("{}: recovered", self.info.name),
            Err(e) => log::warn!("{}: recovery failed: {e}", self.info.name),
        }
        r
    }

    /// Runs one inference of `program`: its parameter-caching executable first when the chip
    /// does not hold its parameters, then the main executable with `inputs` (dense, one per
    /// input layer); `outputs` receive the dense outputs. A device left broken by an earlier
    /// failure is recovered first.
    pub fn run(&mut self, program: &mut Program, inputs: &[&[u8]], outputs: &mut [&mut [u8]]) -> Result<RunInfo> {
        if self.transport.is_none() {
            self.recover()?;
        }
        // Inputs the device takes as they are go out straight from the caller's buffers, unless
        // the device may ask for them itself (descriptors on).
        let direct = !self.descriptors && !program.device_driven();
        program.stage_inputs(inputs, direct)?;
        match self.run_prepared(program, if direct { inputs } else { &[] }) {
            Ok(info) => program.get_outputs(outputs).map(|()| info),
            Err(e) => {
                if matches!(
                    e.kind(),
                    ErrorKind::Timeout | ErrorKind::Disconnected | ErrorKind::Protocol | ErrorKind::DeviceFault
                ) {
                    // The device's state is unknown: drop the handle; the next run recovers.
                    log::warn!("{}: {e}; the device will be reset before its next run", self.info.name);
                    if let Some(mut t) = self.transport.take() {
                        t.discard_pending();
                    }
                    self.residency.clear();
                }
                Err(e)
            }
        }
    }

    fn run_prepared(&mut self, program: &mut Program, inputs: &[&[u8]]) -> Result<RunInfo> {
        let t = self.transport.as_mut().ok_or_else(|| {
            Error::usb(format!("usb:{}", self.path), ErrorKind::Disconnected, "the device is not open")
        })?;
        let token = program.token;
        let key = program.caching_key;
        let mut info = RunInfo { cache_hit: true, parameter_bytes: 0 };
        let model = program.model().clone();
        let bytes = model.bytes();
        // A program whose hints are not fully deterministic needs the device to announce its
        // transfers: the event endpoint's descriptors are turned on once, between runs, and stay
        // on (libedgetpu sets them at open only; re-opening after a reset keeps them on).
        if program.device_driven() && !self.descriptors {
            log::info!("{}: enabling DMA descriptors from the device (descr_ep 0xFF)", self.info.name);
            t.write_csr(csr::DESCR_EP, sequence::descr_ep(true))?;
            self.descriptors = true;
        }
        let descriptors = self.descriptors;
        if let Some(pc) = program.caching.as_mut() {
            if self.residency.must_load(token, key) {
                let params = pc.parameters.clone();
                info.cache_hit = false;
                info.parameter_bytes += params.len();
                log::debug!("{}: loading {} B of cached parameters (token {token:#x})", self.info.name, params.len());
                run_executable(t, pc, &bytes[params], &[], descriptors)?;
                self.residency.loaded(token, key);
            }
        }
        let params = program.main.parameters.clone();
        info.parameter_bytes += params.len();
        run_executable(t, &mut program.main, &bytes[params], inputs, descriptors)?;
        Ok(info)
    }

    /// Closes the device: the close sequence, then the handle is released (no port reset).
    pub fn close(mut self) -> Result<()> {
        log::info!("{}: closing", self.info.name);
        match self.transport.take() {
            Some(mut t) => sequence::close(&mut t),
            None => Ok(()),
        }
    }
}

impl Accelerator for UsbAccelerator {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }
    fn run(&mut self, program: &mut Program, inputs: &[&[u8]], outputs: &mut [&mut [u8]]) -> Result<RunInfo> {
        UsbAccelerator::run(self, program, inputs, outputs)
    }
    fn residency(&self) -> &Residency {
        &self.residency
    }
    fn telemetry(&mut self) -> Telemetry {
        Telemetry {
            temperature_c: None,
            recoveries: self.recoveries,
            link: Some(self.speed.to_string()),
            device_time: None,
        }
    }
    fn close(self: Box<Self>) -> Result<()> {
        UsbAccelerator::close(*self)
    }
}

/// Runs one executable's steps over a transport (PROTOCOL.md §2.2-2.4). Transfers are
/// synchronous, so every bulk-out starts after earlier outputs were read.
///
/// The hinted transfers go out and come in in hint order; an interrupt hint does not block the
/// transfers after it (libedgetpu never waits on one in the middle of a hint list). Then the
/// events of the event endpoint are read until every hinted interrupt has arrived. With
/// `descriptors` (`descr_ep` 0xFF) the device also announces every transfer: each announcement
/// is first matched against the hinted transfers not yet announced, and only one that matches
/// none is a new transfer to serve, as libedgetpu's `HandleDmaDescriptor` does. An executable
/// whose hints are not fully deterministic ends in [`Step::DeviceDriven`]: the host serves what
/// the device asks for (tag 1 input, 2 parameters, 3 output, each naming a linked address and a
/// length) until the scalar-core interrupt 0 that no hint announced. Events with tags 8-15 are
/// ignored.
///
/// `inputs` are the caller's dense inputs of batch 0: a layer marked in
/// [`PreparedExecutable::direct_inputs`] is sent from there (its padded buffer was not filled);
/// empty to send every input from the padded buffers.
pub fn run_executable<T: Transport + ?Sized>(
    t: &mut T,
    p: &mut PreparedExecutable,
    parameters: &[u8],
    inputs: &[&[u8]],
    descriptors: bool,
) -> Result<()> {
    let driven = usb_plan::device_driven(&p.steps);
    if driven && !descriptors {
        return Err(Error::usb(
            t.name(),
            ErrorKind::Unsupported,
            format!(
                "executable {} ({}) has DMA hints that are not fully deterministic: it needs the device's DMA \
                 descriptors (UsbOptions::descriptors_from_device)",
                p.index,
                p.kind.name()
            ),
        ));
    }
    p.pending.fill(false);
    // Every range below was checked against its buffer when the executable was prepared.
    for i in 0..p.steps.len() {
        match &p.steps[i] {
            Step::BulkOut { tag, size, source, .. } => {
                let bytes: &[u8] = match source {
                    Source::Instructions { chunk } => &p.linked[*chunk],
                    Source::Input { layer, batch, offset } => {
                        let direct = (*batch == 0 && p.direct_inputs.get(*layer) == Some(&true))
                            .then(|| inputs.get(*layer))
                            .flatten()
                            .and_then(|d| d.get(*offset..offset + size));
                        match direct {
                            Some(bytes) => bytes,
                            None => &p.inputs[p.input_index(*layer, *batch)][*offset..offset + size],
                        }
                    }
                    Source::Parameters { offset } => &parameters[*offset..offset + size],
                    Source::Scratch { offset } => &p.scratch[*offset..offset + size],
                };
                t.send(*tag, bytes)?;
                // The device never announces instructions.
                p.pending[i] = descriptors && *tag != Tag::Instructions;
            }
            &Step::BulkIn { layer, batch, offset, size } => {
                let buf = if layer == usize::MAX {
                    &mut p.scratch[offset..offset + size]
                } else {
                    let k = p.output_index(layer, batch);
                    &mut p.outputs[k][offset..offset + size]
                };
                t.recv(buf)?;
                p.pending[i] = descriptors;
            }
            Step::WaitInterrupt { .. } => p.pending[i] = true,
            Step::Fence | Step::DeviceDriven => {}
        }
    }
    // The events: hinted interrupts and announcements, and in device-driven mode the transfers
    // the device asks for, until the completion.
    let mut complete = false;
    while p.pending.contains(&true) || (driven && !complete) {
        let e = t.wait_event()?;
        if let Tag::Unknown(code) = e.tag {
            log::debug!("{}: ignoring an event with tag {code}", t.name());
            continue;
        }
        if match_hint(p, &e) {
            continue;
        }
        match e.tag {
            // An interrupt no hint names: the end of a device-driven run; others are ignored.
            Tag::Interrupt(0) if driven => complete = true,
            Tag::Interrupt(_) => {}
            _ if descriptors => serve_transfer(t, p, parameters, &e)?,
            _ => return Err(unknown_buffer(t.name(), &e, p)),
        }
    }
    Ok(())
}

/// The tag and device buffer (address, length) of hinted step `i`, as the device would announce
/// it; interrupts have no buffer.
fn hinted_buffer(p: &PreparedExecutable, i: usize) -> Option<(Tag, Option<(u64, usize)>)> {
    let a = &p.addresses;
    let at = |base: Option<u64>, offset: usize, size: usize| base.map(|b| (b.wrapping_add(offset as u64), size));
    match &p.steps[i] {
        Step::BulkOut { tag, size, source, .. } => {
            let buffer = match source {
                Source::Instructions { .. } => None,
                Source::Input { layer, batch, offset } => {
                    at(a.inputs.get(p.input_index(*layer, *batch)).map(|x| x.2), *offset, *size)
                }
                Source::Parameters { offset } => at(a.parameters, *offset, *size),
                Source::Scratch { offset } => at(a.scratch, *offset, *size),
            };
            Some((*tag, buffer))
        }
        &Step::BulkIn { layer, batch, offset, size } => {
            let base =
                if layer == usize::MAX { a.scratch } else { a.outputs.get(p.output_index(layer, batch)).map(|x| x.2) };
            Some((Tag::OutputActivations, at(base, offset, size)))
        }
        Step::WaitInterrupt { number } => Some((Tag::Interrupt(*number), None)),
        Step::Fence | Step::DeviceDriven => None,
    }
}

/// Matches an event against the hinted transfers and interrupts not yet announced, in hint
/// order (libedgetpu's `HandleDmaDescriptor`): the first pending hint of another tag ends the
/// search (the event is a new transfer); one of the same tag matches when it is an interrupt or
/// names the same buffer.
fn match_hint(p: &mut PreparedExecutable, e: &Event) -> bool {
    for i in 0..p.steps.len() {
        if !p.pending[i] {
            continue;
        }
        let Some((tag, buffer)) = hinted_buffer(p, i) else { continue };
        if tag != e.tag {
            return false;
        }
        let same = match (tag, buffer) {
            (Tag::Interrupt(_), _) => true,
            (_, Some((address, length))) => address == e.offset && length == e.length as usize,
            (_, None) => false,
        };
        if same {
            p.pending[i] = false;
            return true;
        }
    }
    false
}

/// Serves one transfer the device asks for and no hint made.
fn serve_transfer<T: Transport + ?Sized>(
    t: &mut T,
    p: &mut PreparedExecutable,
    parameters: &[u8],
    e: &Event,
) -> Result<()> {
    let len = e.length as usize;
    let target = match e.tag {
        Tag::Instructions => None,
        _ => p.resolve(e.offset, len),
    };
    match (e.tag, target) {
        (Tag::InputActivations, Some(Target::Input { index, offset })) => {
            t.send(Tag::InputActivations, &p.inputs[index][offset..offset + len])
        }
        (Tag::InputActivations, Some(Target::Scratch { offset })) => {
            t.send(Tag::InputActivations, &p.scratch[offset..offset + len])
        }
        (Tag::Parameters, Some(Target::Parameters { offset })) => match parameters.get(offset..offset + len) {
            Some(bytes) => t.send(Tag::Parameters, bytes),
            None => Err(unknown_buffer(t.name(), e, p)),
        },
        (Tag::OutputActivations, Some(Target::Output { index, offset })) => {
            t.recv(&mut p.outputs[index][offset..offset + len])
        }
        (Tag::OutputActivations, Some(Target::Scratch { offset })) => t.recv(&mut p.scratch[offset..offset + len]),
        _ => Err(unknown_buffer(t.name(), e, p)),
    }
}

fn unknown_buffer(device: String, e: &Event, p: &PreparedExecutable) -> Error {
    Error::usb(
        device,
        ErrorKind::Protocol,
        format!(
            "the device asked for a {:?} transfer of {} bytes at {:#x}, which is no buffer of executable {} ({}); \
             reset the device (replug it) if this repeats",
            e.tag,
            e.length,
            e.offset,
            p.index,
            p.kind.name()
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::{BufferAddresses, ExecutableType};
    use std::collections::VecDeque;

    /// A transport that plays back scripted events and output bytes and logs what the host does.
    #[derive(Debug, Default)]
    struct Scripted {
        events: VecDeque<Event>,
        output: VecDeque<u8>,
        log: Vec<String>,
    }

    impl Transport for Scripted {
        fn name(&self) -> String {
            "scripted".into()
        }
        fn read_csr(&mut self, _: csr::Csr) -> Result<u64> {
            Ok(0)
        }
        fn write_csr(&mut self, reg: csr::Csr, value: u64) -> Result<()> {
            self.log.push(format!("{}={value:#x}", reg.name));
            Ok(())
        }
        fn send(&mut self, tag: Tag, bytes: &[u8]) -> Result<()> {
            self.log.push(format!("send {tag:?} {bytes:?}"));
            Ok(())
        }
        fn recv(&mut self, buf: &mut [u8]) -> Result<()> {
            for b in buf.iter_mut() {
                *b = self.output.pop_front().ok_or_else(|| Error::argument("no output scripted"))?;
            }
            self.log.push(format!("recv {}", buf.len()));
            Ok(())
        }
        fn wait_event(&mut self) -> Result<Event> {
            let e = self.events.pop_front().ok_or_else(|| Error::usb("scripted", ErrorKind::Timeout, "no event"))?;
            self.log.push(format!("event {:?}", e.tag));
            Ok(e)
        }
        fn is_usb2(&self) -> bool {
            false
        }
    }

    const P: u64 = 0x7f01_0000_0000;
    const I: u64 = 0x7f02_0000_0000;
    const O: u64 = 0x7f03_0000_0000;

    fn exe() -> PreparedExecutable {
        PreparedExecutable {
            index: 0,
            kind: ExecutableType::ExecutionOnly,
            steps: vec![Step::Fence, Step::DeviceDriven],
            linked: vec![],
            inputs: vec![(0..16).collect()],
            outputs: vec![vec![0; 8]],
            scratch: vec![],
            input_layers: 1,
            output_layers: 1,
            parameters: 0..8,
            addresses: BufferAddresses {
                parameters: Some(P),
                scratch: None,
                inputs: vec![("in".into(), 0, I)],
                outputs: vec![("out".into(), 0, O)],
            },
            fields: vec![],
            direct_inputs: vec![false],
            pending: vec![false; 2],
        }
    }

    fn ev(tag: Tag, offset: u64, length: u32) -> Event {
        Event { offset, length, tag }
    }

    #[test]
    fn device_driven_transfers_are_served_by_address() {
        let mut t = Scripted {
            events: [
                ev(Tag::InputActivations, I + 4, 4),
                ev(Tag::Parameters, P + 2, 3),
                ev(Tag::OutputActivations, O + 2, 6),
                ev(Tag::Interrupt(0), 0, 0),
            ]
            .into(),
            output: (100..106).collect(),
            ..Default::default()
        };
        let mut p = exe();
        run_executable(&mut t, &mut p, &[9, 8, 7, 6, 5, 4, 3, 2], &[], true).unwrap();
        // descr_ep is the device's setting, written at open (or once when a device-driven program
        // first runs), never around a run.
        assert_eq!(
            t.log,
            [
                "event InputActivations",
                "send InputActivations [4, 5, 6, 7]",
                "event Parameters",
                "send Parameters [7, 6, 5]",
                "event OutputActivations",
                "recv 6",
                "event Interrupt(0)"
            ]
        );
        assert_eq!(p.outputs[0], [0, 0, 100, 101, 102, 103, 104, 105]);
        // Without the device's descriptors such an executable cannot run.
        let err = run_executable(&mut Scripted::default(), &mut exe(), &[0; 8], &[], false).unwrap_err();
        assert_eq!(err.kind(), ErrorKind::Unsupported, "{err}");
    }

    /// An executable whose hints send an input, wait for interrupt 1, send parameters, read an
    /// output and wait for interrupt 0.
    fn hinted() -> PreparedExecutable {
        let steps = vec![
            Step::BulkOut {
                tag: Tag::InputActivations,
                size: 4,
                source: Source::Input { layer: 0, batch: 0, offset: 4 },
                after_outputs: false,
            },
            Step::WaitInterrupt { number: 1 },
            Step::BulkOut {
                tag: Tag::Parameters,
                size: 3,
                source: Source::Parameters { offset: 2 },
                after_outputs: false,
            },
            Step::BulkIn { layer: 0, batch: 0, offset: 2, size: 6 },
            Step::WaitInterrupt { number: 0 },
        ];
        PreparedExecutable { pending: vec![false; steps.len()], steps, ..exe() }
    }

    #[test]
    fn hinted_transfers_announced_by_the_device_are_matched_not_served_again() {
        // With descriptors on, the device announces every hinted transfer (interleaved with the
        // interrupts); each announcement matches its hint, and nothing is sent twice.
        let mut t = Scripted {
            events: [
                ev(Tag::InputActivations, I + 4, 4),
                ev(Tag::Interrupt(1), 0, 0),
                ev(Tag::Parameters, P + 2, 3),
                ev(Tag::OutputActivations, O + 2, 6),
                ev(Tag::Interrupt(0), 0, 0),
            ]
            .into(),
            output: (100..106).collect(),
            ..Default::default()
        };
        let mut p = hinted();
        run_executable(&mut t, &mut p, &[9, 8, 7, 6, 5, 4, 3, 2], &[], true).unwrap();
        let sends = t.log.iter().filter(|l| !l.starts_with("event")).collect::<Vec<_>>();
        assert_eq!(sends, ["send InputActivations [4, 5, 6, 7]", "send Parameters [7, 6, 5]", "recv 6"]);
        assert!(t.events.is_empty(), "every announcement was read");
        assert!(p.pending.iter().all(|&x| !x));
    }

    #[test]
    fn an_interrupt_hint_in_the_middle_does_not_block_later_transfers() {
        // Descriptors off: only interrupts arrive, after the transfers; the parameters and the
        // output after the interrupt-1 hint go out before any event is read.
        let mut t = Scripted {
            events: [ev(Tag::Interrupt(1), 0, 0), ev(Tag::Interrupt(0), 0, 0)].into(),
            output: (100..106).collect(),
            ..Default::default()
        };
        run_executable(&mut t, &mut hinted(), &[9, 8, 7, 6, 5, 4, 3, 2], &[], false).unwrap();
        assert_eq!(
            t.log,
            [
                "send InputActivations [4, 5, 6, 7]",
                "send Parameters [7, 6, 5]",
                "recv 6",
                "event Interrupt(1)",
                "event Interrupt(0)"
            ]
        );
        assert!(t.events.is_empty());
    }

    #[test]
    fn event_tags_8_to_15_are_ignored() {
        // Tag 8 is no scalar-core interrupt: it must not end the run before interrupt 0.
        let mut t = Scripted {
            events: [
                ev(Tag::Interrupt(1), 0, 0),
                ev(Tag::Unknown(8), 0, 0),
                ev(Tag::Unknown(15), 7, 7),
                ev(Tag::Interrupt(0), 0, 0),
            ]
            .into(),
            output: (100..106).collect(),
            ..Default::default()
        };
        run_executable(&mut t, &mut hinted(), &[0; 8], &[], false).unwrap();
        assert!(t.events.is_empty(), "the run waited for interrupt 0 past tags 8 and 15");
    }

    #[test]
    fn a_transfer_outside_every_buffer_is_a_protocol_error() {
        for bad in [
            ev(Tag::OutputActivations, O + 4, 6),
            ev(Tag::InputActivations, O, 4),
            ev(Tag::Parameters, P, 9),
            ev(Tag::Instructions, I, 4),
            ev(Tag::InputActivations, 0, 1),
        ] {
            let mut t = Scripted { events: [bad].into(), output: (0..16).collect(), ..Default::default() };
            let err = run_executable(&mut t, &mut exe(), &[0; 8], &[], true).unwrap_err();
            assert_eq!(err.kind(), ErrorKind::Protocol, "{bad:?}: {err}");
            assert!(err.to_string().contains("no buffer of executable 0"), "{err}");
        }
    }
}
