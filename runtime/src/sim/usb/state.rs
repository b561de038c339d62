//! The simulated device's state: DFU, CSR file, endpoints, runs, faults, clock.

use super::{ExecSink, Fault, FaultKind, SimConfig, SimStats, Violation};
use crate::device::csr;
use crate::device::plan::{Source, Step};
use crate::device::usb::frame::{Tag, MAX_BULK_OUT};
use crate::device::usb::{Setup, Speed, UsbDeviceInfo, UsbError, UsbErrorKind, APP_ID, DFU_ID};
use crate::sim::program::{self, Run, SimExe};
use std::collections::{HashMap, VecDeque};
use std::time::Duration;

/// DFU block size announced by the functional descriptor (what real devices report).
const DFU_TRANSFER_SIZE: usize = 256;
/// Bytes of device memory served by DFU UPLOAD (128 full blocks, then a short read).
const UPLOAD_BYTES: usize = 32 * 1024;
/// Most overshoot (ns) a real-time sleep may credit to the operations after it.
const MAX_SLEEP_CREDIT: i64 = 1_000_000;
const DFU_IDLE: u8 = 2;
const DFU_DNLOAD_IDLE: u8 = 5;
const DFU_ERROR: u8 = 10;
const ERR_WRITE: u8 = 0x03;

struct Dfu {
    image: Vec<u8>,
    next_block: u16,
    state: u8,
    status: u8,
    complete: bool,
}

impl Dfu {
    fn new() -> Dfu {
        Dfu { image: Vec::new(), next_block: 0, state: DFU_IDLE, status: 0, complete: false }
    }
}

pub(crate) struct SimState {
    pub config: SimConfig,
    pub generation: u64,
    address: u8,
    dfu_mode: bool,
    detach: bool,
    /// Failed enumerations left before an unplugged device comes back.
    pub gone: Option<u32>,
    pub firmware: Option<Vec<u8>>,
    dfu: Dfu,
    dfu_fail: bool,
    fatal_next: bool,
    csrs: HashMap<u32, u64>,
    pub halted: Vec<u8>,
    pub exes: Vec<SimExe>,
    run: Option<(Run, Vec<usize>)>,
    pub cached_token: Option<u64>,
    /// Parameter-caching executables (registry indices) whose parameters are in memory, all of
    /// the cached token (co-compiled models share one token and cache side by side).
    cached: Vec<usize>,
    out: VecDeque<u8>,
    events: VecDeque<[u8; 16]>,
    interrupts: VecDeque<[u8; 4]>,
    pub violations: Vec<String>,
    pub stats: SimStats,
    pub clock: Duration,
    /// Wall time spent handling transfers.
    pub device_wall: Duration,
    /// Modelled time not yet slept, in nanoseconds; negative when the last sleep overshot (the
    /// next operations are credited with the overshoot, up to [`MAX_SLEEP_CREDIT`]).
    sleep_debt: i64,
    faults: Vec<Fault>,
    /// Whether the chip has completed a run since its last reset (shows in `scu_ctrl_3`).
    has_run: bool,
}

/// CSR values after a reset: chosen so that the read-modify-write steps of the open sequence
/// write what a real device's log shows (PROTOCOL.md §1.10; research/traces).
fn initial_csrs(scu_ctrl_3: u32) -> HashMap<u32, u64> {
    HashMap::from([
        (csr::SCU_CTRL_0.offset, 0x000f_3f59),
        (csr::SCU_CTRL_2.offset, 0x0019_0000),
        (csr::SCU_CTRL_3.offset, scu_ctrl_3 as u64),
        (csr::OMC0_00.offset, 0x0100_0000),
        (csr::OMC0_D4.offset, 0x0000_0001),
        (csr::OMC0_D8.offset, 0),
        (csr::RAMBIST_CTRL_1.offset, 0x7f),
        (csr::SCU_CTR_7.offset, 0x3f),
    ])
}

fn w0c(offset: u32) -> bool {
    [
        csr::FATAL_ERR_INT_STATUS,
        csr::TOP_LEVEL_INT_0_STATUS,
        csr::TOP_LEVEL_INT_1_STATUS,
        csr::TOP_LEVEL_INT_2_STATUS,
        csr::TOP_LEVEL_INT_3_STATUS,
    ]
    .iter()
    .any(|c| c.offset == offset)
}

fn stall() -> UsbError {
    UsbError::new(UsbErrorKind::Stall, 0)
}

struct Sink<'a> {
    out: &'a mut VecDeque<u8>,
    events: &'a mut VecDeque<[u8; 16]>,
    interrupts: &'a mut VecDeque<[u8; 4]>,
    csrs: &'a mut HashMap<u32, u64>,
    /// Compute time of the instructions executed, for [`SimState::advance`] once the sink is gone.
    computed: &'a mut Duration,
    compute_per_byte: Duration,
    fatal: &'a mut bool,
    runs: &'a mut u64,
    has_run: &'a mut bool,
}

impl ExecSink for Sink<'_> {
    fn output(&mut self, bytes: &[u8]) {
        self.out.extend(bytes);
    }
    fn event(&mut self, tag: Tag) {
        if *self.fatal {
            *self.fatal = false;
            let bit = 1u64 << 9;
            self.csrs.insert(csr::HIB_ERROR_STATUS.offset, bit);
            self.csrs.insert(csr::HIB_FIRST_ERROR_STATUS.offset, bit);
            self.csrs.insert(csr::FATAL_ERR_INT_STATUS.offset, 1);
            self.interrupts.push_back(1u32.to_le_bytes());
            return;
        }
        let mut e = [0u8; 16];
        e[12] = tag.code();
        self.events.push_back(e);
        if matches!(tag, Tag::Interrupt(0)) {
            *self.runs += 1;
            *self.has_run = true;
        }
    }
    fn descriptor(&mut self, tag: Tag, address: u64, length: usize) {
        let mut e = [0u8; 16];
        e[..8].copy_from_slice(&address.to_le_bytes());
        e[8..12].copy_from_slice(&u32::try_from(length).unwrap_or(u32::MAX).to_le_bytes());
        e[12] = tag.code();
        self.events.push_back(e);
    }
    fn reports(&self, tag: Tag) -> bool {
        let mask = self.csrs.get(&csr::DESCR_EP.offset).copied().unwrap_or(0);
        mask >> tag.code() & 1 == 1
    }
    fn compute_time(&mut self, instruction_bytes: usize) {
        *self.computed += self.compute_per_byte * instruction_bytes as u32;
    }
}

impl std::fmt::Debug for SimState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimState")
            .field("path", &self.config.path)
            .field("dfu_mode", &self.dfu_mode)
            .field("generation", &self.generation)
            .field("cached_token", &self.cached_token)
            .field("violations", &self.violations.len())
            .finish_non_exhaustive()
    }
}

impl SimState {
    pub fn new(config: SimConfig) -> SimState {
        let scu3 = config.scu_ctrl_3_at_reset;
        SimState {
            dfu_mode: config.start_in_dfu,
            firmware: None,
            config,
            generation: 1,
            address: 5,
            detach: false,
            gone: None,
            dfu: Dfu::new(),
            dfu_fail: false,
            fatal_next: false,
            csrs: initial_csrs(scu3),
            halted: Vec::new(),
            exes: Vec::new(),
            run: None,
            cached_token: None,
            cached: Vec::new(),
            out: VecDeque::new(),
            events: VecDeque::new(),
            interrupts: VecDeque::new(),
            violations: Vec::new(),
            stats: SimStats::default(),
            clock: Duration::ZERO,
            device_wall: Duration::ZERO,
            sleep_debt: 0,
            faults: Vec::new(),
            has_run: false,
        }
    }

    pub fn advance(&mut self, d: Duration) {
        self.clock += d;
        if self.config.time.realtime {
            // Sleep in steps of at least a millisecond: shorter sleeps overshoot by more than
            // they last. A sleep's overshoot is owed back, so wall time keeps up with the
            // modelled clock instead of drifting behind it by the host's timer slack.
            self.sleep_debt = self.sleep_debt.saturating_add(i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
            if self.sleep_debt >= 1_000_000 {
                let start = std::time::Instant::now();
                std::thread::sleep(Duration::from_nanos(self.sleep_debt as u64));
                let slept = i64::try_from(start.elapsed().as_nanos()).unwrap_or(i64::MAX);
                self.sleep_debt = (self.sleep_debt - slept).max(-MAX_SLEEP_CREDIT);
            }
        }
    }

    fn transfer_time(&mut self, bytes: usize) {
        let d = self.config.time.transfer(bytes);
        self.advance(d);
    }

    pub fn inject(&mut self, fault: Fault) {
        match fault.kind {
            FaultKind::DfuFail => self.dfu_fail = true,
            FaultKind::FatalError => self.fatal_next = true,
            _ => self.faults.push(fault),
        }
    }

    /// The fault that fires on this transfer to `endpoint`, if any.
    fn fault(&mut self, endpoint: u8) -> Option<FaultKind> {
        let i = self.faults.iter().position(|f| f.endpoint == endpoint)?;
        if self.faults[i].after > 0 {
            self.faults[i].after -= 1;
            return None;
        }
        let f = self.faults.remove(i);
        if f.kind == FaultKind::Disconnect {
            self.gone = Some(1);
        }
        Some(f.kind)
    }

    /// Applies a fault to a transfer: the error to return, or `None` to go on (short reads are
    /// applied by the caller).
    fn fault_error(&mut self, endpoint: u8, kind: FaultKind, timeout: Duration) -> Option<UsbError> {
        match kind {
            FaultKind::Stall => {
                if endpoint != 0 {
                    self.halted.push(endpoint);
                }
                Some(UsbError::new(UsbErrorKind::Stall, endpoint))
            }
            FaultKind::Timeout => {
                self.advance(timeout);
                Some(UsbError::new(UsbErrorKind::Timeout, endpoint))
            }
            FaultKind::Disconnect => Some(UsbError::new(UsbErrorKind::Disconnected, endpoint)),
            _ => None,
        }
    }

    pub fn enumerate(&mut self) -> Option<UsbDeviceInfo> {
        if let Some(n) = self.gone {
            if n > 0 {
                self.gone = Some(n - 1);
                return None;
            }
            // Plugged back in: powered up again, so in DFU mode without firmware.
            self.gone = None;
            self.firmware = None;
            self.dfu_mode = true;
            self.generation += 1;
            self.address = self.address.wrapping_add(1);
            self.reset_state();
        }
        let (vendor, product) = if self.dfu_mode { DFU_ID } else { APP_ID };
        Some(UsbDeviceInfo {
            vendor,
            product,
            path: self.config.path.clone(),
            address: self.address,
            // The boot ROM enumerates at High-Speed; the firmware at the port's speed.
            speed: if self.dfu_mode && !self.config.speed.is_usb2() { Speed::High } else { self.config.speed },
            node: None,
        })
    }

    fn reset_state(&mut self) {
        self.dfu = Dfu::new();
        self.csrs = initial_csrs(self.config.scu_ctrl_3_at_reset);
        self.has_run = false;
        self.halted.clear();
        self.run = None;
        self.cached_token = None;
        self.cached.clear();
        self.out.clear();
        self.events.clear();
        self.interrupts.clear();
    }

    pub fn port_reset(&mut self) {
        self.stats.resets += 1;
        if self.dfu_mode && self.dfu.complete {
            // The firmware must look like 8051 code (it starts with an LJMP) and be more than a
            // stub; anything else does not boot and the device stays in DFU mode.
            let image = std::mem::take(&mut self.dfu.image);
            if image.first() == Some(&0x02) && image.len() >= 1024 {
                self.firmware = Some(image);
                self.dfu_mode = false;
                self.stats.firmware_downloads += 1;
            }
        } else if !self.dfu_mode && self.detach {
            self.dfu_mode = true;
            self.firmware = None;
        }
        self.detach = false;
        self.generation += 1;
        self.address = self.address.wrapping_add(1);
        self.reset_state();
    }

    pub fn csr_read(&self, offset: u32) -> u64 {
        let v = self.csrs.get(&offset).copied().unwrap_or(0);
        if offset == csr::SCU_CTRL_3.offset {
            // cur_pwr_state (bits 8-9) follows rg_force_sleep (bits 22-23): 3 puts the core to
            // sleep (state 2), anything else wakes it (state 0). The low byte is read-only
            // status; its values are those of real devices' logs: 0x5c asleep, 0x04 awake after
            // a reset, 0x0c awake once the chip has run a program.
            let asleep = (v >> 22) & 3 == 3;
            let status = match (asleep, self.has_run) {
                (true, _) => 0x25c,
                (false, false) => 0x04,
                (false, true) => 0x0c,
            };
            return (v & !0x3ff) | status;
        }
        v
    }

    fn csr_write(&mut self, offset: u32, value: u64) {
        if offset == csr::HIB_ERROR_STATUS.offset || offset == csr::HIB_FIRST_ERROR_STATUS.offset {
            return;
        }
        if w0c(offset) {
            let old = self.csrs.get(&offset).copied().unwrap_or(0);
            self.csrs.insert(offset, old & value);
            return;
        }
        if offset == csr::SCU_CTRL_3.offset {
            self.csrs.insert(offset, value & !0x3ff);
            return;
        }
        self.csrs.insert(offset, value);
    }

    fn core_running(&self) -> bool {
        let awake = (self.csr_read(csr::SCU_CTRL_3.offset) >> 8) & 3 == 0;
        let run = [
            csr::SCALAR_CORE_RUN_CONTROL,
            csr::AV_DATA_POP_RUN_CONTROL,
            csr::PARAMETER_POP_RUN_CONTROL,
            csr::INFEED_RUN_CONTROL,
            csr::OUTFEED_RUN_CONTROL,
            csr::OP_RUN_CONTROL,
        ]
        .iter()
        .all(|c| self.csr_read(c.offset) == 1);
        awake && run
    }

    fn device_descriptor(&self) -> [u8; 18] {
        let (vid, pid) = if self.dfu_mode { DFU_ID } else { APP_ID };
        let ss = !self.dfu_mode && !self.config.speed.is_usb2();
        let (bcd, mps0): (u16, u8) = if ss { (0x0310, 9) } else { (0x0210, 64) };
        let mut d = [0u8; 18];
        d[0] = 18;
        d[1] = 1;
        d[2..4].copy_from_slice(&bcd.to_le_bytes());
        d[7] = mps0;
        d[8..10].copy_from_slice(&vid.to_le_bytes());
        d[10..12].copy_from_slice(&pid.to_le_bytes());
        d[12..14].copy_from_slice(&0x0100u16.to_le_bytes());
        d[17] = 1;
        d
    }

    fn config_descriptor(&self) -> Vec<u8> {
        let mut body = Vec::new();
        if self.dfu_mode {
            body.extend_from_slice(&[9, 4, 0, 0, 0, 0xFE, 0x01, 0x02, 0]);
            let ts = (DFU_TRANSFER_SIZE as u16).to_le_bytes();
            body.extend_from_slice(&[9, 0x21, 0x0b, 0xe8, 0x03, ts[0], ts[1], 0x01, 0x01]);
        } else {
            let mps: u16 = if self.config.speed.is_usb2() { 512 } else { 1024 };
            let m = mps.to_le_bytes();
            body.extend_from_slice(&[9, 4, 0, 0, 6, 0xFF, 0xFF, 0xFF, 0]);
            for ep in [0x01u8, 0x02, 0x03, 0x81, 0x82] {
                body.extend_from_slice(&[7, 5, ep, 2, m[0], m[1], 0]);
            }
            body.extend_from_slice(&[7, 5, 0x83, 3, 64, 0, 1]);
        }
        let total = (9 + body.len()) as u16;
        let t = total.to_le_bytes();
        let mut d = vec![9, 2, t[0], t[1], 1, 1, 0, 0xC0, 0];
        d.extend_from_slice(&body);
        d
    }

    fn upload_memory(&self, block: usize) -> Vec<u8> {
        let start = block.saturating_mul(DFU_TRANSFER_SIZE).min(UPLOAD_BYTES);
        let end = (start + DFU_TRANSFER_SIZE).min(UPLOAD_BYTES);
        let image = self.dfu.image.as_slice();
        (start..end).map(|i| image.get(i).copied().unwrap_or((i as u8).wrapping_mul(0x5b) | 1)).collect()
    }

    /// Counts a control transfer, applies a fault scheduled for it, and takes its time.
    fn control_start(&mut self, bytes: usize, timeout: Duration) -> Result<(), UsbError> {
        self.stats.control_transfers += 1;
        if let Some(e) = self.fault(0).and_then(|k| self.fault_error(0, k, timeout)) {
            return Err(e);
        }
        self.transfer_time(bytes);
        Ok(())
    }

    pub fn control_in(&mut self, setup: Setup, buf: &mut [u8], timeout: Duration) -> Result<usize, UsbError> {
        self.control_start(buf.len(), timeout)?;
        let reply: Vec<u8> = match (setup.request_type, setup.request) {
            (0x80, 6) => match setup.value >> 8 {
                1 => self.device_descriptor().to_vec(),
                2 => self.config_descriptor(),
                _ => return Err(stall()),
            },
            (0xA1, 3) if self.dfu_mode => {
                vec![self.dfu.status, 1, 0, 0, self.dfu.state, 0]
            }
            (0xA1, 5) if self.dfu_mode => vec![self.dfu.state],
            (0xA1, 2) if self.dfu_mode => self.upload_memory(setup.value as usize),
            (0xC0, r @ (0 | 1)) if !self.dfu_mode => {
                let width = if r == 0 { 8 } else { 4 };
                if buf.len() != width {
                    self.violations.push(format!("CSR read with wLength {} (bRequest {r} needs {width})", buf.len()));
                    return Err(stall());
                }
                let offset = (setup.index as u32) << 16 | setup.value as u32;
                self.csr_read(offset).to_le_bytes()[..width].to_vec()
            }
            _ => {
                self.violations.push(format!(
                    "control request {:#04x}/{} not understood in {} mode",
                    setup.request_type,
                    setup.request,
                    if self.dfu_mode { "DFU" } else { "application" }
                ));
                return Err(stall());
            }
        };
        let n = reply.len().min(buf.len());
        buf[..n].copy_from_slice(&reply[..n]);
        Ok(n)
    }

    pub fn control_out(&mut self, setup: Setup, data: &[u8], timeout: Duration) -> Result<(), UsbError> {
        self.control_start(data.len(), timeout)?;
        match (setup.request_type, setup.request) {
            (0x21, 1) if self.dfu_mode => self.dfu_download(setup.value, data),
            (0x21, 4) if self.dfu_mode => {
                self.dfu.status = 0;
                self.dfu.state = DFU_IDLE;
                Ok(())
            }
            (0x21, 6) if self.dfu_mode => {
                self.dfu = Dfu::new();
                Ok(())
            }
            (0x21, 0) => {
                self.detach = true;
                Ok(())
            }
            (0x40, r @ (0 | 1)) if !self.dfu_mode => {
                let width = if r == 0 { 8 } else { 4 };
                if data.len() != width {
                    self.violations.push(format!("CSR write of {} bytes (bRequest {r} needs {width})", data.len()));
                    return Err(stall());
                }
                let mut v = [0u8; 8];
                v[..width].copy_from_slice(data);
                let offset = (setup.index as u32) << 16 | setup.value as u32;
                self.csr_write(offset, u64::from_le_bytes(v));
                Ok(())
            }
            _ => {
                self.violations.push(format!(
                    "control request {:#04x}/{} not understood in {} mode",
                    setup.request_type,
                    setup.request,
                    if self.dfu_mode { "DFU" } else { "application" }
                ));
                Err(stall())
            }
        }
    }

    fn dfu_download(&mut self, block: u16, data: &[u8]) -> Result<(), UsbError> {
        let d = &mut self.dfu;
        if d.state == DFU_ERROR || data.len() > DFU_TRANSFER_SIZE || block != d.next_block {
            let msg = format!(
                "DFU_DNLOAD block {block} of {} bytes in state {} (next block {}, at most {DFU_TRANSFER_SIZE} bytes)",
                data.len(),
                d.state,
                d.next_block
            );
            d.state = DFU_ERROR;
            self.violations.push(msg);
            return Err(stall());
        }
        d.next_block = d.next_block.wrapping_add(1);
        if data.is_empty() {
            d.complete = !d.image.is_empty();
            d.state = if d.complete { DFU_IDLE } else { DFU_ERROR };
        } else if std::mem::take(&mut self.dfu_fail) {
            self.stats.dfu_failures += 1;
            d.status = ERR_WRITE;
            d.state = DFU_ERROR;
        } else {
            d.image.extend_from_slice(data);
            d.state = DFU_DNLOAD_IDLE;
        }
        Ok(())
    }

    fn bulk_common(&mut self, endpoint: u8, timeout: Duration) -> Result<Option<FaultKind>, UsbError> {
        if self.dfu_mode {
            return Err(UsbError::new(UsbErrorKind::InvalidParam, endpoint));
        }
        if self.halted.contains(&endpoint) {
            return Err(UsbError::new(UsbErrorKind::Stall, endpoint));
        }
        match self.fault(endpoint) {
            Some(k) => match self.fault_error(endpoint, k, timeout) {
                Some(e) => Err(e),
                None => Ok(Some(k)),
            },
            None => Ok(None),
        }
    }

    pub fn bulk_out(&mut self, endpoint: u8, data: &[u8], timeout: Duration) -> Result<usize, UsbError> {
        self.bulk_common(endpoint, timeout)?;
        if endpoint != 0x01 {
            self.violations
                .push(format!("bulk-out on endpoint {endpoint:#04x}; the single-endpoint firmware has 0x01"));
            return Err(UsbError::new(UsbErrorKind::Stall, endpoint));
        }
        self.transfer_time(data.len());
        self.stats.bulk_out_transfers += 1;
        self.stats.bulk_out_bytes += data.len() as u64;
        if let Err(v) = self.absorb(data) {
            self.run = None;
            if v.fault {
                self.fatal_next = false;
            }
            self.violations.push(v.message);
            self.halted.push(0x01);
            return Err(UsbError::new(UsbErrorKind::Stall, 0x01));
        }
        Ok(data.len())
    }

    fn absorb(&mut self, data: &[u8]) -> Result<(), Violation> {
        let receiving = self.run.as_ref().and_then(|(r, _)| r.receiving);
        match receiving {
            Some((tag, total, got)) => {
                if data.len() > MAX_BULK_OUT {
                    return Err(Violation::host(format!(
                        "a bulk-out of {} bytes (at most {MAX_BULK_OUT})",
                        data.len()
                    )));
                }
                if got + data.len() > total {
                    return Err(Violation::host(format!(
                        "{} payload bytes after a header of {total} bytes with {got} already received",
                        data.len()
                    )));
                }
                let (run, _) = self.run.as_mut().expect("receiving implies a run");
                let exe = &self.exes[run.exe];
                let step = exe.steps[run.step].clone();
                program::absorb(exe, run, &step, got, data);
                if tag == Tag::Parameters {
                    self.stats.parameter_bytes += data.len() as u64;
                }
                run.receiving = Some((tag, total, got + data.len()));
                if got + data.len() == total {
                    self.request_complete()?;
                }
                Ok(())
            }
            None => self.header(data),
        }
    }

    fn header(&mut self, data: &[u8]) -> Result<(), Violation> {
        let h: &[u8; 8] = data.try_into().map_err(|_| {
            Violation::host(format!("a {}-byte bulk-out where an 8-byte request header was due", data.len()))
        })?;
        let len = u32::from_le_bytes([h[0], h[1], h[2], h[3]]) as usize;
        if h[4] > 7 || h[5..] != [0, 0, 0] {
            return Err(Violation::host(format!("a malformed request header {h:02x?}")));
        }
        let tag = Tag::from_code(h[4]);
        if !self.core_running() {
            return Err(Violation::host(
                "a request before the open sequence put the chip in RUN (power state awake and every run control 1)",
            ));
        }
        if self.csr_read(csr::MULTI_BO_EP.offset) != 0 {
            return Err(Violation::host(
                "a request on 0x01 in multi-endpoint mode, which the simulator does not emulate",
            ));
        }
        if len == 0 {
            return Err(Violation::host(format!("a zero-length {tag:?} request (the chip reports a zero-length DMA)")));
        }
        match &mut self.run {
            None => {
                if !self.out.is_empty() {
                    return Err(Violation::host(format!(
                        "a new run's {tag:?} request while {} bytes of the last output are unread (the device could \
                         deadlock)",
                        self.out.len()
                    )));
                }
                if tag != Tag::Instructions {
                    return Err(Violation::host(format!(
                        "a {tag:?} request of {len} bytes where a run must begin with instructions"
                    )));
                }
                let candidates: Vec<usize> = (0..self.exes.len())
                    .filter(|&i| {
                        matches!(self.exes[i].steps.first(), Some(Step::BulkOut { tag: Tag::Instructions, size, .. }) if *size == len)
                    })
                    .collect();
                let Some(&first) = candidates.first() else {
                    return Err(Violation::host(format!(
                        "instructions of {len} bytes begin no registered executable ({} registered)",
                        self.exes.len()
                    )));
                };
                let exe = &self.exes[first];
                let mut run = Run::new(first, exe.instruction_bytes, exe.input_buffers());
                run.receiving = Some((tag, len, 0));
                self.run = Some((run, candidates));
            }
            Some((run, _)) => {
                let exe = &self.exes[run.exe];
                match exe.steps.get(run.step) {
                    Some(Step::BulkOut { tag: t, size, after_outputs, .. }) => {
                        if *t != tag || *size != len {
                            return Err(Violation::host(format!(
                                "{}: a header says {tag:?} of {len} bytes where hint {} wants {t:?} of {size} bytes",
                                exe.name, run.step
                            )));
                        }
                        if *after_outputs && !self.out.is_empty() {
                            return Err(Violation::host(format!(
                                "{}: a {tag:?} request while {} bytes of an earlier output are unread (the device could \
                                 deadlock)",
                                exe.name,
                                self.out.len()
                            )));
                        }
                    }
                    other => {
                        return Err(Violation::host(format!(
                            "{}: a {tag:?} request where hint {} is {other:?}",
                            exe.name, run.step
                        )))
                    }
                }
                run.receiving = Some((tag, len, 0));
            }
        }
        Ok(())
    }

    fn request_complete(&mut self) -> Result<(), Violation> {
        let (mut run, candidates) = self.run.take().expect("a request completes within a run");
        let step = self.exes[run.exe].steps[run.step].clone();
        if let Step::BulkOut { source: Source::Instructions { chunk }, .. } = step {
            let mut instr = std::mem::take(&mut run.instr);
            // The output addresses the device will report come from the linked fields.
            let reader = if run.identified { Some(run.exe) } else { candidates.first().copied() };
            if let Some(i) = reader {
                self.exes[i].read_addresses(chunk, &instr, &mut run.addr);
            }
            if !run.identified {
                let found = match candidates.as_slice() {
                    // One candidate: mask the received bytes in place.
                    [only] => Some(*only).filter(|&i| self.exes[i].chunk_matches(0, &mut instr)),
                    _ => candidates.iter().copied().find(|&i| self.exes[i].chunk_matches(0, &mut instr.clone())),
                };
                let Some(i) = found else {
                    return Err(Violation::host(format!(
                        "{} bytes of instructions that match no registered executable (linked fields aside)",
                        instr.len()
                    )));
                };
                run.exe = i;
                run.identified = true;
                let exe = &self.exes[i];
                let partner = exe.partner.map(|d| i - d);
                if partner.is_some_and(|p| self.cached_token != Some(exe.token) || !self.cached.contains(&p)) {
                    return Err(Violation::host(format!(
                        "{}: an inference while its parameters are not cached (the device holds {}, it needs token \
                         {:#x}); run the parameter-caching executable first",
                        exe.name,
                        self.cached_token.map_or("none".to_string(), |t| format!("token {t:#x}")),
                        exe.token
                    )));
                }
            } else if !self.exes[run.exe].chunk_matches(chunk, &mut instr) {
                return Err(Violation::host(format!(
                    "{}: instruction chunk {chunk} differs from the executable's (linked fields aside)",
                    self.exes[run.exe].name
                )));
            }
            instr.clear();
            run.instr = instr;
        }
        run.receiving = None;
        run.step += 1;
        let exe = &self.exes[run.exe];
        let mut computed = Duration::ZERO;
        let mut sink = Sink {
            out: &mut self.out,
            events: &mut self.events,
            interrupts: &mut self.interrupts,
            csrs: &mut self.csrs,
            computed: &mut computed,
            compute_per_byte: self.config.time.compute_per_instruction_byte,
            fatal: &mut self.fatal_next,
            runs: &mut self.stats.runs,
            has_run: &mut self.has_run,
        };
        program::announce(exe, &run, &step, &mut sink);
        let executed = program::device_steps(exe, &mut run, &mut sink);
        // The chip computes in modelled time, slept like the transfers' in real-time mode.
        self.advance(computed);
        executed?;
        let exe = &self.exes[run.exe];
        if run.step < exe.steps.len() {
            self.run = Some((run, candidates));
            return Ok(());
        }
        // The run is over: its parameter stream must be the executable's parameters.
        let has_params = exe.steps.iter().any(|s| matches!(s, Step::BulkOut { source: Source::Parameters { .. }, .. }));
        if has_params && run.param_hash != exe.param_hash {
            return Err(Violation::host(format!("{}: the parameter bytes differ from the executable's", exe.name)));
        }
        if exe.kind == crate::package::ExecutableType::ParameterCaching {
            if self.cached_token != Some(exe.token) {
                self.cached.clear();
            }
            self.cached_token = Some(exe.token);
            if !self.cached.contains(&run.exe) {
                self.cached.push(run.exe);
            }
        }
        Ok(())
    }

    pub fn bulk_in(&mut self, endpoint: u8, buf: &mut [u8], timeout: Duration) -> Result<usize, UsbError> {
        let fault = self.bulk_common(endpoint, timeout)?;
        let n = match endpoint {
            0x81 => {
                if self.out.is_empty() {
                    self.advance(timeout);
                    return Err(UsbError::new(UsbErrorKind::Timeout, endpoint));
                }
                let chunk = match self.csr_read(csr::OUTFEED_CHUNK_LENGTH.offset) {
                    0 => 1024,
                    c => (c as usize).saturating_mul(8),
                };
                let n = buf.len().min(chunk).min(self.out.len());
                let keep = if fault == Some(FaultKind::ShortRead) { n / 2 } else { n };
                for (dst, src) in buf.iter_mut().zip(self.out.drain(..n)).take(keep) {
                    *dst = src;
                }
                self.stats.bulk_in_transfers += 1;
                self.stats.bulk_in_bytes += keep as u64;
                keep
            }
            0x82 => match take_packet(&mut self.events, buf, fault == Some(FaultKind::ShortRead), endpoint)? {
                Some(n) => n,
                None => {
                    self.advance(timeout);
                    return Err(UsbError::new(UsbErrorKind::Timeout, endpoint));
                }
            },
            _ => return Err(UsbError::new(UsbErrorKind::InvalidParam, endpoint)),
        };
        self.transfer_time(n);
        Ok(n)
    }

    pub fn interrupt_in(&mut self, endpoint: u8, buf: &mut [u8], timeout: Duration) -> Result<usize, UsbError> {
        let fault = self.bulk_common(endpoint, timeout)?;
        if endpoint != 0x83 {
            return Err(UsbError::new(UsbErrorKind::InvalidParam, endpoint));
        }
        match take_packet(&mut self.interrupts, buf, fault == Some(FaultKind::ShortRead), endpoint)? {
            Some(n) => Ok(n),
            None => {
                self.advance(timeout);
                Err(UsbError::new(UsbErrorKind::Timeout, endpoint))
            }
        }
    }
}

/// Hands the next packet of `queue` to a read (`None`: nothing queued); a short read delivers
/// half of it and loses the rest.
fn take_packet<const N: usize>(
    queue: &mut VecDeque<[u8; N]>,
    buf: &mut [u8],
    short: bool,
    endpoint: u8,
) -> Result<Option<usize>, UsbError> {
    let Some(p) = queue.front().copied() else { return Ok(None) };
    if buf.len() < N {
        return Err(UsbError::new(UsbErrorKind::Overflow, endpoint));
    }
    queue.pop_front();
    let keep = if short { N / 2 } else { N };
    buf[..keep].copy_from_slice(&p[..keep]);
    Ok(Some(keep))
}
