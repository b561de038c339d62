#![doc = include_str!("doc.md")]

pub mod ioctl;
#[cfg(target_os = "linux")]
pub mod linux;
pub mod sys;
pub mod sysfs;

pub(crate) use sys::check_access;
pub use sys::{Fd, Region, Sys, SysError};

use super::chip::{self as sequence, CsrIo, Performance};
use super::csr::{self, Csr};
use super::program::{PreparedExecutable, Program};
use super::{Accelerator, DeviceInfo, Residency, RunInfo, Telemetry};
use crate::error::{DeviceKind, Error, ErrorKind, Result};
use crate::package::BufferAddresses;
use ioctl::Direction;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

/// Simple-region entries after partitioning (the rest of the 8192 go to the extended region).
const SIMPLE_ENTRIES: u64 = 6144;
/// Start of the extended region.
const EXTENDED_BASE: u64 = 1 << 63;
/// Queue ring entries (16 bytes each).
const RING: u64 = 256;
/// Coherent memory for the ring and the status block.
const COHERENT_BYTES: u64 = 0x4000;
const PAGE: u64 = 4096;
/// Interrupts bound to eventfds at open: instruction queue, scalar core 0-3, top level 0-3, fatal.
const BOUND_INTERRUPTS: [u64; 10] = [0, 4, 5, 6, 7, 8, 9, 10, 11, 12];

/// Options of a PCIe device.
///
/// ```
/// use edgetpu::device::{pcie::ApexOptions, Performance};
/// let options = ApexOptions::default().performance(Performance::High);
/// assert_eq!(options.performance, Performance::High);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ApexOptions {
    /// Performance expectation (PCIe defaults to Max, as libedgetpu's).
    pub performance: Performance,
    /// How long one request may take before the run fails with a timeout.
    pub timeout: Duration,
}

impl Default for ApexOptions {
    fn default() -> Self {
        ApexOptions { performance: Performance::Max, timeout: Duration::from_secs(6) }
    }
}

impl ApexOptions {
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
}

/// One buffer: host memory and where the device sees it.
#[derive(Debug, Clone, Copy)]
struct Buffer {
    region: Region,
    device: u64,
    /// Bytes mapped (whole pages).
    size: u64,
    /// Bytes in use (an instruction chunk's length, for its queue descriptor).
    len: u64,
}

/// A program's buffers on this device. Each is allocated once, at a device address of its own,
/// so that the instructions are linked once. gasket maps with streaming DMA and pins buffers
/// going to the device read-only (PROTOCOL.md §7.1), so, as libedgetpu does, the parameters are
/// written and then mapped once, and everything else is written, then mapped for each request
/// and unmapped when it completes: on a host whose PCIe is not cache-coherent, the map is where
/// the chip gets to see the host's writes and the unmap where the host gets to see the chip's.
#[derive(Debug, Default)]
struct Mapped {
    /// Per executable (caching first when present).
    exes: Vec<MappedExe>,
    /// Every buffer allocated (freed at release).
    all: Vec<Buffer>,
    /// The buffers mapped for the program's life (the parameters).
    resident: Vec<Buffer>,
}

#[derive(Debug, Default)]
struct MappedExe {
    inputs: Vec<Buffer>,
    outputs: Vec<Buffer>,
    /// The instruction chunks, in queue order (written once, at prepare).
    instructions: Vec<Buffer>,
    /// What a request maps, in order (its data, then its instructions, as libedgetpu), and
    /// unmaps once it completes.
    request: Vec<(Buffer, Direction)>,
}

/// The interrupts the open sequence bound to eventfds, each read by a thread of its own (as
/// libedgetpu does): a reader adds what its eventfd counted to the interrupt's total and wakes
/// whoever waits for it.
#[derive(Debug, Default)]
struct Interrupts {
    /// (interrupt, eventfd).
    fds: Vec<(u64, Fd)>,
    shared: Arc<InterruptCounts>,
    readers: Vec<std::thread::JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct InterruptCounts {
    /// Counts per interrupt number, and the first failure of a reader.
    counts: Mutex<([u64; 13], Option<Error>)>,
    changed: Condvar,
    stop: AtomicBool,
    /// Readers whose threads run, and its condition.
    running: Mutex<usize>,
    started: Condvar,
}

/// How long a reader waits on its eventfd before it checks whether to stop.
const READER_POLL: Duration = Duration::from_millis(20);

impl Interrupts {
    fn start(&mut self, sys: &Arc<dyn Sys>, name: &str) {
        let mut spawned = 0;
        for &(interrupt, fd) in &self.fds {
            let (sys, shared, name) = (sys.clone(), self.shared.clone(), name.to_string());
            let reader = std::thread::Builder::new().name(format!("apex-interrupt-{interrupt}")).spawn(move || {
                *shared.running.lock().unwrap_or_else(|p| p.into_inner()) += 1;
                shared.started.notify_all();
                while !shared.stop.load(Ordering::Relaxed) {
                    let n = match sys.wait_event(fd, READER_POLL) {
                        Ok(n) => n,
                        Err(e) => {
                            let mut c = shared.counts.lock().unwrap_or_else(|p| p.into_inner());
                            c.1.get_or_insert(sys_err(
                                &name,
                                e,
                                &format!("reading the eventfd of interrupt {interrupt}"),
                            ));
                            shared.changed.notify_all();
                            return;
                        }
                    };
                    if n > 0 {
                        let mut c = shared.counts.lock().unwrap_or_else(|p| p.into_inner());
                        c.0[interrupt as usize] += n;
                        shared.changed.notify_all();
                    }
                }
            });
            if let Ok(r) = reader {
                self.readers.push(r);
                spawned += 1;
            }
        }
        // Wait for every reader to run, so that the threads' own start-up (which allocates) is
        // over before the first request.
        let mut running = self.shared.running.lock().unwrap_or_else(|p| p.into_inner());
        while *running < spawned {
            running = self.shared.started.wait(running).unwrap_or_else(|p| p.into_inner());
        }
    }

    fn stop(&mut self) {
        self.shared.stop.store(true, Ordering::Relaxed);
        for r in self.readers.drain(..) {
            let _ = r.join();
        }
    }
}

/// The three CSR pages and the syscalls, as [`CsrIo`].
#[derive(Debug)]
struct Csrs {
    sys: Arc<dyn Sys>,
    pages: [Region; 3],
    name: String,
}

impl CsrIo for Csrs {
    fn name(&self) -> String {
        self.name.clone()
    }
    fn kind(&self) -> DeviceKind {
        DeviceKind::Pci
    }
    fn read_csr(&mut self, reg: Csr) -> Result<u64> {
        let (page, off) = self.page(reg)?;
        Ok(self.sys.read64(page, off))
    }
    fn write_csr(&mut self, reg: Csr, value: u64) -> Result<()> {
        let (page, off) = self.page(reg)?;
        self.sys.write64(page, off, value);
        Ok(())
    }
}

impl Csrs {
    fn page(&self, reg: Csr) -> Result<(Region, usize)> {
        let base = u64::from(reg.offset) & !0xFFF;
        let k = [0x40000u64, 0x44000, 0x48000].iter().position(|&b| b == base).ok_or_else(|| {
            Error::pci(
                self.name.clone(),
                ErrorKind::Unsupported,
                format!("{} (0x{:x}) is not in a CSR page user space can map", reg.name, reg.offset),
            )
        })?;
        Ok((self.pages[k], (u64::from(reg.offset) & 0xFFF) as usize))
    }
}

/// An open PCIe Edge TPU.
#[derive(Debug)]
pub struct ApexAccelerator {
    sys: Arc<dyn Sys>,
    node: PathBuf,
    /// Descriptors: registers and mappings, interrupts.
    /// The device node's descriptor (registers, mappings, interrupts).
    fd: Fd,
    csrs: Csrs,
    /// The coherent memory, mapped into this process.
    coherent: Option<Region>,
    /// The DMA address the coherent allocator returned at enable (disabling it takes it back).
    coherent_dma: Option<u64>,
    queue: [Buffer; 2],
    interrupts: Interrupts,
    /// Interrupt counts already handled.
    handled: [u64; 13],
    tail: u64,
    int_count: u16,
    next_device: u64,
    map_flags: bool,
    gated: bool,
    options: ApexOptions,
    residency: Residency,
    info: DeviceInfo,
    programs: HashMap<u64, Mapped>,
    closed: bool,
}

fn sys_err(device: &str, e: SysError, what: &str) -> Error {
    let hint = match e.errno {
        13 | 1 => "; this user may not write to the device node (the apex group)",
        16 => "; another process owns the device: stop it or choose another one",
        2 | 19 => "; the apex driver is not loaded, or the device is gone",
        _ => "",
    };
    Error::pci(device, e.kind(), format!("{what}: {e}{hint}"))
}

/// The error of a failed open of `node`. gasket answers EPERM both to a user without write
/// access and to a second writer while another process owns the device, so sysfs
/// (`is_device_owned`) tells which.
fn open_err(device: &str, node: &Path, e: SysError) -> Error {
    if e.errno != 1 {
        return sys_err(device, e, "opening the device");
    }
    let owned = node
        .file_name()
        .and_then(|n| std::fs::read_to_string(Path::new("/sys/class/apex").join(n).join("is_device_owned")).ok())
        .map(|v| v.trim() == "1");
    match owned {
        Some(true) => Error::pci(
            device,
            ErrorKind::Busy,
            format!(
                "opening the device: {e}; another process owns it (is_device_owned=1): stop it or pick another device"
            ),
        ),
        _ => Error::pci(
            device,
            ErrorKind::PermissionDenied,
            format!(
                "opening the device: {e}; either another process owns it (the driver refuses a second writer; \
                 sysfs' device_owner names it) or this user may not write to it (the apex group and its udev \
                 rule)"
            ),
        ),
    }
}

impl ApexAccelerator {
    /// Opens `node` (`/dev/apex_N`) and runs the open sequence.
    pub fn open(sys: Arc<dyn Sys>, node: &Path, options: ApexOptions) -> Result<ApexAccelerator> {
        let name = format!("pci:{}", node.display());
        let fd = sys.open(node).map_err(|e| open_err(&name, node, e))?;
        let none = Region { address: 0, len: 0 };
        let mut dev = ApexAccelerator {
            info: DeviceInfo::new(name.clone(), DeviceKind::Pci, false),
            csrs: Csrs { sys: sys.clone(), pages: [none; 3], name },
            sys,
            node: node.to_path_buf(),
            fd,
            coherent: None,
            coherent_dma: None,
            queue: [Buffer { region: none, device: 0, size: 0, len: 0 }; 2],
            interrupts: Interrupts::default(),
            handled: [0; 13],
            tail: 0,
            int_count: 0,
            next_device: EXTENDED_BASE,
            map_flags: true,
            gated: false,
            options,
            residency: Residency::default(),
            programs: HashMap::new(),
            closed: false,
        };
        if let Err(e) = dev.open_sequence() {
            let _ = dev.shutdown();
            return Err(e);
        }
        log::info!("{}: opened ({:?} performance)", dev.info.name, dev.options.performance);
        Ok(dev)
    }

    /// Marks the device as simulated and gives it another name (the simulators' `sim:pci:N`).
    pub fn rename(&mut self, name: impl Into<String>, simulated: bool) {
        self.info.name = name.into();
        self.info.simulated = simulated;
    }

    /// Its selection name (`pci:/dev/apex_N`).
    pub fn name(&self) -> String {
        self.csrs.name.clone()
    }

    /// The device node.
    pub fn node(&self) -> &Path {
        &self.node
    }

    fn ioctl(&self, request: ioctl::Ioctl, arg: &mut [u8]) -> Result<()> {
        self.sys.ioctl(self.fd, request, arg).map_err(|e| sys_err(&self.csrs.name, e, request.name))
    }

    fn open_sequence(&mut self) -> Result<()> {
        let level = match self.options.performance {
            Performance::Low => 0,
            Performance::Medium => 1,
            Performance::High => 2,
            Performance::Max => 3,
        };
        for (k, base) in [0x40000u64, 0x44000, 0x48000].into_iter().enumerate() {
            self.csrs.pages[k] = self
                .sys
                .mmap(self.fd, base, PAGE as usize)
                .map_err(|e| sys_err(&self.csrs.name, e, "mapping the CSRs"))?;
        }
        // libedgetpu only warns when the driver lacks this ioctl (older apex drivers).
        match self.sys.ioctl(self.fd, ioctl::PERFORMANCE_EXPECTATION, &mut ioctl::performance(level)) {
            Err(e) if e.errno == 25 || e.errno == 22 => eprintln!(
                "warning: {}: the apex driver does not take a performance expectation ({e}); it keeps its own clock",
                self.csrs.name
            ),
            r => r.map_err(|e| sys_err(&self.csrs.name, e, ioctl::PERFORMANCE_EXPECTATION.name))?,
        }
        let errors = self.csrs.read_csr(csr::HIB_ERROR_STATUS)?;
        if errors != 0 {
            return Err(Error::pci(
                self.name(),
                ErrorKind::DeviceFault,
                format!("the chip reports host interface errors {errors:#x} at open; reload the apex driver or reboot"),
            ));
        }
        self.csrs.write_csr(csr::DMA_BURST_LIMITER, 0)?;
        self.ioctl(ioctl::PARTITION_PAGE_TABLE, &mut ioctl::page_table(SIMPLE_ENTRIES, 0, 0))?;
        for interrupt in BOUND_INTERRUPTS {
            let fd = self.sys.eventfd().map_err(|e| sys_err(&self.csrs.name, e, "creating an eventfd"))?;
            self.interrupts.fds.push((interrupt, fd));
        }
        // The instruction queue: ring and status block in coherent memory, simple region.
        if self.csrs.read_csr(csr::INSTRUCTION_QUEUE_DESCRIPTOR_SIZE)? != 16 {
            return Err(Error::pci(self.name(), ErrorKind::Protocol, "the queue descriptor size is not 16 bytes"));
        }
        let mut cfg = ioctl::fields::<{ ioctl::COHERENT_SIZE }>(&[0, 1, COHERENT_BYTES, 0]);
        self.ioctl(ioctl::CONFIG_COHERENT_ALLOCATOR, &mut cfg)?;
        let dma = ioctl::word(&cfg, 3);
        self.coherent_dma = Some(dma);
        let coherent = self
            .sys
            .mmap(self.fd, dma, COHERENT_BYTES as usize)
            .map_err(|e| sys_err(&self.csrs.name, e, "mapping coherent memory"))?;
        self.coherent = Some(coherent);
        let ring = Region { address: coherent.address, len: (RING * 16) as usize };
        let status = Region { address: coherent.address + RING * 16, len: PAGE as usize };
        self.queue = [
            Buffer { region: ring, device: 0, size: RING * 16, len: RING * 16 },
            Buffer { region: status, device: RING * 16, size: PAGE, len: PAGE },
        ];
        for b in self.queue {
            self.map(b, Direction::Bidirectional)?;
        }
        self.csrs.write_csr(csr::INSTRUCTION_QUEUE_BASE, self.queue[0].device)?;
        self.csrs.write_csr(csr::INSTRUCTION_QUEUE_STATUS_BLOCK_BASE, self.queue[1].device)?;
        self.csrs.write_csr(csr::INSTRUCTION_QUEUE_SIZE, RING)?;
        self.csrs.write_csr(csr::INSTRUCTION_QUEUE_CONTROL, 0x5)?;
        sequence::poll(&mut self.csrs, csr::INSTRUCTION_QUEUE_STATUS, "1 (enabled)", |v| v & 1 == 1)?;
        self.tail = 0;
        self.int_count = self.csrs.read_csr(csr::SC_HOST_INT_COUNT)? as u16;
        sequence::run_control(&mut self.csrs, sequence::RUN)?;
        self.csrs.write_csr(csr::STATUS_BLOCK_UPDATE, 0)?;
        for &(interrupt, fd) in &self.interrupts.fds {
            self.ioctl(ioctl::SET_EVENTFD, &mut ioctl::fields::<{ ioctl::EVENTFD_SIZE }>(&[interrupt, fd as u64]))?;
        }
        self.interrupts.start(&self.sys, &self.csrs.name);
        self.csrs.write_csr(csr::SC_HOST_INT_CONTROL, 0xF)?;
        self.csrs.write_csr(csr::INSTRUCTION_QUEUE_INT_CONTROL, 1)?;
        self.csrs.write_csr(csr::HIB_FATAL_ERR_INT_CONTROL, 1)?;
        self.gate(true)
    }

    fn gate(&mut self, enable: bool) -> Result<()> {
        if self.gated != enable {
            // On every request: an argument on the stack, no allocation.
            let mut arg = [0u8; ioctl::GATE_CLOCK_SIZE];
            arg[0] = u8::from(enable);
            self.sys
                .ioctl(self.fd, ioctl::GATE_CLOCK, &mut arg)
                .map_err(|e| sys_err(&self.csrs.name, e, ioctl::GATE_CLOCK.name))?;
            self.gated = enable;
        }
        Ok(())
    }

    /// Maps a buffer, with `MAP_BUFFER_FLAGS`; when the kernel refuses it (an older gasket
    /// answers EPERM to an ioctl it does not know), with `MAP_BUFFER` from then on, as
    /// libedgetpu does. A buffer going to the device must be written before: gasket pins it
    /// read-only, and a page never written would be the kernel's zero page. No allocation: the
    /// argument is on the stack (a request maps its buffers).
    fn map(&mut self, b: Buffer, direction: Direction) -> Result<()> {
        if self.map_flags {
            let mut arg = ioctl::page_table_flags(b.size, b.region.address, b.device, direction);
            match self.sys.ioctl(self.fd, ioctl::MAP_BUFFER_FLAGS, &mut arg) {
                Ok(()) => return Ok(()),
                Err(e) => {
                    log::info!(
                        "{}: {e}; the driver lacks DMA directions, mapping with GASKET_IOCTL_MAP_BUFFER from now on",
                        self.info.name
                    );
                    self.map_flags = false;
                }
            }
        }
        self.ioctl(ioctl::MAP_BUFFER, &mut ioctl::page_table(b.size, b.region.address, b.device))
    }

    fn unmap(&self, b: Buffer) -> Result<()> {
        self.ioctl(ioctl::UNMAP_BUFFER, &mut ioctl::page_table(b.size, b.region.address, b.device))
    }

    /// Host memory of `len` bytes (or one page), at device addresses of its own in the extended
    /// region (not mapped yet).
    fn buffer(&mut self, len: usize, all: &mut Vec<Buffer>) -> Result<Buffer> {
        let region = self.sys.alloc(len.max(1)).map_err(|e| sys_err(&self.csrs.name, e, "allocating a DMA buffer"))?;
        let size = (region.len as u64).div_ceil(PAGE) * PAGE;
        let b = Buffer { region, device: self.next_device, size, len: len as u64 };
        self.next_device += size;
        all.push(b);
        Ok(b)
    }

    /// Allocates the buffers of one executable, links its instructions with their device
    /// addresses and writes them; writes and maps its parameters.
    fn map_exe(&mut self, p: &PreparedExecutable, params: &[u8], mapped: &mut Mapped) -> Result<MappedExe> {
        let mut m = MappedExe::default();
        let mut addr = BufferAddresses::default();
        if !params.is_empty() {
            let b = self.buffer(params.len(), &mut mapped.all)?;
            self.sys.write(b.region, 0, params);
            self.map(b, Direction::ToDevice)?;
            mapped.resident.push(b);
            addr.parameters = Some(b.device);
        }
        for (k, buf) in p.inputs.iter().enumerate() {
            let b = self.buffer(buf.len(), &mut mapped.all)?;
            let (name, batch, _) = &p.addresses.inputs[k];
            addr.inputs.push((name.clone(), *batch, b.device));
            m.inputs.push(b);
            m.request.push((b, Direction::ToDevice));
        }
        for (k, buf) in p.outputs.iter().enumerate() {
            let b = self.buffer(buf.len(), &mut mapped.all)?;
            let (name, batch, _) = &p.addresses.outputs[k];
            addr.outputs.push((name.clone(), *batch, b.device));
            m.outputs.push(b);
            m.request.push((b, Direction::FromDevice));
        }
        if !p.scratch.is_empty() {
            let b = self.buffer(p.scratch.len(), &mut mapped.all)?;
            addr.scratch = Some(b.device);
            m.request.push((b, Direction::Bidirectional));
        }
        for chunk in p.relink(&addr)? {
            let b = self.buffer(chunk.len(), &mut mapped.all)?;
            self.sys.write(b.region, 0, &chunk);
            m.instructions.push(b);
            m.request.push((b, Direction::ToDevice));
        }
        Ok(m)
    }

    fn prepare(&mut self, program: &Program) -> Result<()> {
        if self.programs.contains_key(&program.id) {
            return Ok(());
        }
        let bytes = program.model().bytes();
        let mut mapped = Mapped::default();
        let mut result = Ok(());
        for p in program.caching.iter().chain([&program.main]) {
            match self.map_exe(p, &bytes[p.parameters.clone()], &mut mapped) {
                Ok(m) => mapped.exes.push(m),
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        if let Err(e) = result {
            let _ = self.release(&mapped);
            return Err(e);
        }
        self.programs.insert(program.id, mapped);
        Ok(())
    }

    /// Runs one inference: the parameter-caching executable first when the chip lacks the
    /// model's parameters (by token and key, as over USB), then the main executable.
    pub fn run(&mut self, program: &mut Program, inputs: &[&[u8]], outputs: &mut [&mut [u8]]) -> Result<RunInfo> {
        if self.closed {
            return Err(Error::pci(self.name(), ErrorKind::Disconnected, "the device was closed"));
        }
        program.set_inputs(inputs)?;
        self.gate(false)?;
        let result = self.prepare(program).and_then(|()| self.run_prepared(program));
        let gate = self.gate(true);
        let info = result?;
        gate?;
        program.get_outputs(outputs)?;
        Ok(info)
    }

    fn run_prepared(&mut self, program: &mut Program) -> Result<RunInfo> {
        let mut info = RunInfo { cache_hit: true, parameter_bytes: program.main.parameters.len() };
        let has_caching = program.caching.is_some();
        if let Some(pc) = &program.caching {
            if self.residency.must_load(program.token, program.caching_key) {
                info.cache_hit = false;
                info.parameter_bytes += pc.parameters.len();
                log::debug!(
                    "{}: loading {} B of cached parameters (token {:#x})",
                    self.info.name,
                    pc.parameters.len(),
                    program.token
                );
                if let Err(e) = self.request(program, 0, false) {
                    self.residency.clear();
                    return Err(e);
                }
                self.residency.loaded(program.token, program.caching_key);
            }
        }
        if let Err(e) = self.request(program, usize::from(has_caching), true) {
            self.residency.clear();
            return Err(e);
        }
        Ok(info)
    }

    /// One request of executable `exe` of a program: the inputs written (the main executable),
    /// the request's buffers mapped, its instruction chunks queued and its completion awaited,
    /// the buffers unmapped (after a failure too), then the outputs read (the main executable).
    fn request(&mut self, program: &mut Program, exe: usize, main: bool) -> Result<()> {
        let id = program.id;
        if main {
            for (k, data) in program.main.inputs.iter().enumerate() {
                let b = self.programs[&id].exes[exe].inputs[k];
                self.sys.write(b.region, 0, data);
            }
        }
        let n = self.programs[&id].exes[exe].request.len();
        let mut mapped = 0;
        let mut result = Ok(());
        while mapped < n {
            let (b, direction) = self.programs[&id].exes[exe].request[mapped];
            if let Err(e) = self.map(b, direction) {
                result = Err(e);
                break;
            }
            mapped += 1;
        }
        if result.is_ok() {
            result = self.submit(id, exe);
        }
        for k in 0..mapped {
            let (b, _) = self.programs[&id].exes[exe].request[k];
            let unmapped = self.unmap(b);
            if result.is_ok() {
                result = unmapped;
            }
        }
        result?;
        if main {
            for (k, data) in program.main.outputs.iter_mut().enumerate() {
                let b = self.programs[&id].exes[exe].outputs[k];
                self.sys.read(b.region, 0, data);
            }
        }
        Ok(())
    }

    /// Queues the instruction chunks of executable `exe` of a program and waits for its
    /// completion (one count of scalar-core interrupt 0).
    fn submit(&mut self, program: u64, exe: usize) -> Result<()> {
        let chunks = self.programs[&program].exes[exe].instructions.len();
        for k in 0..chunks {
            let c = self.programs[&program].exes[exe].instructions[k];
            let next = (self.tail + 1) % RING;
            // The ring holds RING - 1 entries: wait for the chip to consume one.
            let start = Instant::now();
            while next == self.completed_head() {
                self.wait_interrupt(0, start)?;
            }
            let mut d = [0u8; 16];
            d[..8].copy_from_slice(&c.device.to_le_bytes());
            d[8..12].copy_from_slice(&(c.len as u32).to_le_bytes());
            self.sys.write(self.queue[0].region, (self.tail * 16) as usize, &d);
            self.tail = next;
            self.csrs.write_csr(csr::INSTRUCTION_QUEUE_TAIL, self.tail)?;
        }
        let start = Instant::now();
        loop {
            // Interrupt 4 (scalar core 0): clear its status, then count completions.
            self.wait_interrupt(4, start)?;
            self.csrs.write_csr(csr::SC_HOST_INT_STATUS, 0xF & !1)?;
            let count = self.csrs.read_csr(csr::SC_HOST_INT_COUNT)? as u16;
            let done = count.wrapping_sub(self.int_count);
            self.int_count = count;
            if done > 0 {
                return Ok(());
            }
        }
    }

    fn completed_head(&self) -> u64 {
        let mut b = [0u8; 4];
        self.sys.read(self.queue[1].region, 0, &mut b);
        u64::from(u32::from_le_bytes(b)) % RING
    }

    /// Waits until the readers saw `interrupt` again, handling on the way the fatal-error
    /// interrupt (an error), the queue interrupt (acknowledged) and scalar-core interrupts 1-3
    /// (only cleared); fails after the request timeout.
    fn wait_interrupt(&mut self, interrupt: u64, start: Instant) -> Result<()> {
        let shared = self.interrupts.shared.clone();
        let mut guard = shared.counts.lock().unwrap_or_else(|p| p.into_inner());
        loop {
            if let Some(e) = guard.1.take() {
                return Err(e);
            }
            let counts = guard.0;
            let fresh = |k: usize| counts[k] > self.handled[k];
            if fresh(12) {
                drop(guard);
                self.handled[12] = counts[12];
                self.csrs.write_csr(csr::HIB_FATAL_ERR_INT_CONTROL, 0)?;
                self.csrs.write_csr(csr::HIB_FATAL_ERR_INT_STATUS, 0)?;
                let bits = self.csrs.read_csr(csr::HIB_ERROR_STATUS)?;
                return Err(Error::pci(
                    self.name(),
                    ErrorKind::DeviceFault,
                    format!(
                        "fatal error: {}; close and reopen the device",
                        crate::device::csr::hib_errors(bits).join(", ")
                    ),
                ));
            }
            let queue = fresh(0);
            let others = (5..=7).any(fresh);
            let done = fresh(interrupt as usize);
            if queue || others || done {
                drop(guard);
                if queue {
                    let mut block = [0u8; StatusBlock::SIZE];
                    self.sys.read(self.queue[1].region, 0, &mut block);
                    self.csrs.write_csr(csr::INSTRUCTION_QUEUE_INT_STATUS, 0)?;
                    let code = StatusBlock::parse(&block)?.fatal_error;
                    if code != 0 {
                        return Err(Error::pci(
                            self.name(),
                            ErrorKind::DeviceFault,
                            format!("the instruction queue reports fatal error {code:#x}; close and reopen the device"),
                        ));
                    }
                }
                for k in (5..=7).filter(|&k| counts[k] > self.handled[k]) {
                    self.csrs.write_csr(csr::SC_HOST_INT_STATUS, 0xF & !(1 << (k - 4)))?;
                }
                for k in [0, 5, 6, 7, interrupt as usize] {
                    self.handled[k] = counts[k];
                }
                if done {
                    return Ok(());
                }
                guard = shared.counts.lock().unwrap_or_else(|p| p.into_inner());
                continue;
            }
            let left = self.options.timeout.checked_sub(start.elapsed()).ok_or_else(|| {
                Error::pci(
                    self.name(),
                    ErrorKind::Timeout,
                    format!("no interrupt {interrupt} within {:?}; the device may need a reset", self.options.timeout),
                )
            })?;
            guard = shared.changed.wait_timeout(guard, left).map(|(g, _)| g).unwrap_or_else(|p| p.into_inner().0);
        }
    }

    /// Unmaps a program's resident buffers and frees all of them.
    fn release(&self, mapped: &Mapped) -> Result<()> {
        let mut first = Ok(());
        for b in &mapped.resident {
            let r = self.unmap(*b);
            if first.is_ok() {
                first = r;
            }
        }
        for b in &mapped.all {
            self.sys.free(b.region);
        }
        first
    }

    /// The close sequence (PROTOCOL.md §7), best effort: every step runs even when an earlier
    /// one failed (the first failure is returned), so that nothing stays mapped or open. Also
    /// undoes a partly done open.
    fn shutdown(&mut self) -> Result<()> {
        let mut first: Result<()> = Ok(());
        let mut keep = |r: Result<()>| {
            if first.is_ok() {
                first = r;
            }
        };
        let registers = self.csrs.pages.iter().all(|p| p.len > 0);
        if registers {
            keep(self.gate(false));
            keep(self.csrs.write_csr(csr::DMA_PAUSE, 1));
            keep(sequence::poll(&mut self.csrs, csr::DMA_PAUSED, "1 (paused)", |v| v & 1 == 1));
            keep(sequence::run_control(&mut self.csrs, sequence::HALT));
            for reg in [csr::SC_HOST_INT_CONTROL, csr::INSTRUCTION_QUEUE_INT_CONTROL, csr::HIB_FATAL_ERR_INT_CONTROL] {
                keep(self.csrs.write_csr(reg, 0));
            }
        }
        self.interrupts.stop();
        for &(interrupt, fd) in &self.interrupts.fds {
            let _ = self.sys.ioctl(self.fd, ioctl::CLEAR_EVENTFD, &mut interrupt.to_le_bytes().to_vec());
            self.sys.close(fd);
        }
        self.interrupts.fds.clear();
        if registers {
            keep(self.csrs.write_csr(csr::INSTRUCTION_QUEUE_CONTROL, 0));
            keep(sequence::poll(&mut self.csrs, csr::INSTRUCTION_QUEUE_STATUS, "0 (disabled)", |v| v & 1 == 0));
            for reg in
                [csr::INSTRUCTION_QUEUE_TAIL, csr::INSTRUCTION_QUEUE_BASE, csr::INSTRUCTION_QUEUE_STATUS_BLOCK_BASE]
            {
                keep(self.csrs.write_csr(reg, 0));
            }
        }
        if let Some(c) = self.coherent.take() {
            for b in self.queue {
                keep(self.unmap(b));
            }
            self.sys.munmap(c);
        }
        if let Some(dma) = self.coherent_dma.take() {
            // gasket frees the coherent memory only given the DMA address it returned at enable.
            let mut arg = ioctl::fields::<{ ioctl::COHERENT_SIZE }>(&[0, 0, COHERENT_BYTES, dma]);
            keep(self.ioctl(ioctl::CONFIG_COHERENT_ALLOCATOR, &mut arg));
        }
        let programs: Vec<Mapped> = self.programs.drain().map(|(_, m)| m).collect();
        for m in programs {
            keep(self.release(&m));
        }
        for page in self.csrs.pages {
            if page.len > 0 {
                self.sys.munmap(page);
            }
        }
        self.csrs.pages = [Region { address: 0, len: 0 }; 3];
        self.sys.close(self.fd);
        self.closed = true;
        first
    }

    /// The close sequence; every mapping and descriptor is released.
    pub fn close(mut self) -> Result<()> {
        log::info!("{}: closing", self.info.name);
        self.shutdown()
    }
}

impl Accelerator for ApexAccelerator {
    fn info(&self) -> &DeviceInfo {
        &self.info
    }
    fn run(&mut self, program: &mut Program, inputs: &[&[u8]], outputs: &mut [&mut [u8]]) -> Result<RunInfo> {
        ApexAccelerator::run(self, program, inputs, outputs)
    }
    fn residency(&self) -> &Residency {
        &self.residency
    }
    fn telemetry(&mut self) -> Telemetry {
        // The driver's thermal attributes, in the node's sysfs class directory.
        let temperature_c = match (self.info.simulated, self.node.file_name()) {
            (false, Some(n)) => {
                let t = sysfs::read_telemetry(&Path::new(sysfs::ROOT).join(sysfs::CLASS_DIR).join(n));
                if t.throttled() {
                    log::warn!(
                        "{}: throttled to {} at {:.1} °C",
                        self.info.name,
                        t.clock.map_or_else(|| "?".into(), |c| format!("{} MHz", c.mhz())),
                        t.temp_celsius().unwrap_or(f64::NAN)
                    );
                }
                t.temp_celsius()
            }
            _ => None,
        };
        Telemetry { temperature_c, recoveries: 0, link: Some("PCIe".into()), device_time: None }
    }
    fn close(self: Box<Self>) -> Result<()> {
        ApexAccelerator::close(*self)
    }
}

impl Drop for ApexAccelerator {
    fn drop(&mut self) {
        if !self.closed {
            let _ = self.shutdown();
        }
    }
}

/// The instruction queue's status block, which the device writes in coherent host memory:
/// `{u32 completed_head, u32 fatal_error, u64 reserved}`, little-endian.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusBlock {
    /// Index of the last instruction-queue entry the device completed.
    pub completed_head: u32,
    /// Non-zero after a fatal error of the queue.
    pub fatal_error: u32,
}

impl StatusBlock {
    /// Bytes of the block.
    pub const SIZE: usize = 16;

    /// Decodes the block; fewer than 8 bytes is an error, bytes past the two words are ignored.
    ///
    /// ```
    /// use edgetpu::device::pcie::StatusBlock;
    /// let b = StatusBlock::parse(&[3, 0, 0, 0, 1, 0, 0, 0]).unwrap();
    /// assert_eq!((b.completed_head, b.fatal_error), (3, 1));
    /// assert!(StatusBlock::parse(&[0; 7]).is_err());
    /// ```
    pub fn parse(bytes: &[u8]) -> Result<StatusBlock> {
        let word =
            |at: usize| -> Result<u32> {
                bytes.get(at..at + 4).and_then(|w| w.try_into().ok()).map(u32::from_le_bytes).ok_or_else(|| {
                    Error::argument(format!("a status block of {} bytes; it has at least 8", bytes.len()))
                })
            };
        Ok(StatusBlock { completed_head: word(0)?, fatal_error: word(4)? })
    }
}
