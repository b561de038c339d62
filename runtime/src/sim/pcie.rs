//! A simulated apex kernel driver with its Edge TPU behind it, at the system-call boundary
//! ([`Sys`]): the runtime's PCIe code runs unchanged against it.
//!
//! What it checks, as the kernel or the chip would refuse it (each failure is recorded as a
//! violation and fails the call or faults the chip):
//! * ioctls on the device node only, with arguments of the right size (an unknown ioctl is
//!   answered EPERM, as gasket answers it); the page table is partitioned before anything is
//!   mapped; mappings are page-aligned, inside the simple or the extended region, do not overlap,
//!   and cover host memory the process owns; unmaps match maps; the coherent allocator is disabled
//!   with the DMA address it gave at enable (EADDRNOTAVAIL otherwise);
//! * the instruction queue: descriptor size 16, enabled with its ring, status block and size
//!   programmed, the tail inside the ring, requests only while the core runs and the clock is
//!   not gated;
//! * every address linked into the instructions (parameters, inputs, outputs, scratch) lies in a
//!   mapping of the right direction; a request names a registered executable, whose parameters
//!   must be cached first (token), and whose parameter bytes must be the executable's;
//! * at the last close, no mapping and no coherent memory is left behind.
//!
//! Host memory behaves as gasket's streaming DMA makes it behave (PROTOCOL.md §7.1). The
//! simulator owns the memory it hands out ([`Sys::alloc`]) and sees every host write, so it
//! knows, per page, whether the host ever wrote it:
//! * a mapping to the device pins its pages read-only: a page the host never wrote is the
//!   kernel's shared zero page, and the chip reads zeros from it for the life of the mapping,
//!   whatever the host writes later (a mapping from the device, or both ways, pins writable pages
//!   and so faults them in);
//! * with [`SimApexConfig::coherent`] false (an Arm host whose PCIe is not cache-coherent), the
//!   chip reads a snapshot of host memory taken at map time, and its writes land in a shadow copy
//!   that the host sees only at unmap; coherent (x86), the chip reads written pages live and its
//!   writes are visible at once;
//! * the host touching memory while it is mapped for streaming DMA (a write under any mapping, a
//!   read under a mapping the chip may write) is recorded as a violation, and so is the chip
//!   reading a page pinned as the zero page. Coherent memory (the ring and the status block) is
//!   exempt: it is shared all the time.
//!
//! A completed request writes the outputs from the oracle into the output buffers, advances the
//! status block's completed head, counts scalar-core interrupt 0 in `sc_host_int_count` (16-bit
//! counters, which can start near the wrap) and signals the eventfds bound to interrupts 0 and 4.

use crate::device::csr;
use crate::device::pcie::ioctl::{self, Ioctl};
use crate::device::pcie::{check_access, Fd, Region, Sys, SysError};
use crate::package::{ExecutableType, Package};
use crate::sim::program::{self, fnv, LinkedAddresses, SimExe, FNV0};
use crate::sim::usb::{as_device, Oracle};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Duration;

/// Page size of the device's MMU.
const PAGE: u64 = 4096;
/// Entries of the device page table.
const PAGE_TABLE_ENTRIES: u64 = 8192;
/// Start of the extended region (bit 63).
pub const EXTENDED_BASE: u64 = 1 << 63;
/// Size of the extended region: 2048 second-level tables of 2 MiB.
const EXTENDED_SIZE: u64 = 2048 << 21;
/// The CSR pages user space may map.
const CSR_PAGES: [u64; 3] = [0x40000, 0x44000, 0x48000];
/// Host addresses the simulator hands out for memory and mappings.
const HOST_BASE: u64 = 0x5550_0000_0000;
/// The bus address the coherent allocator reports.
const COHERENT_DMA: u64 = 0x1_2340_0000;
/// Interrupts of the chip (eventfd indices).
const INTERRUPTS: u64 = 13;

/// How the simulated device and kernel behave.
#[derive(Debug, Clone)]
pub struct SimApexConfig {
    /// The device node (`/dev/apex_N`).
    pub node: String,
    /// The kernel knows `MAP_BUFFER_FLAGS` (newer gasket drivers); otherwise only `MAP_BUFFER`,
    /// and `MAP_BUFFER_FLAGS` is answered EPERM as any unknown ioctl.
    pub map_buffer_flags: bool,
    /// The host's PCIe is cache-coherent (x86; the default). Otherwise (the Dev Board's i.MX 8M,
    /// Raspberry Pi CM4/5) the chip sees host memory as it was when a buffer was mapped, and the
    /// host sees the chip's writes only once the buffer is unmapped.
    pub coherent: bool,
    /// Start value of the 16-bit completion counters (to exercise the wrap).
    pub initial_interrupt_count: u16,
    /// Another process owns the device: opening it fails with EPERM, as gasket answers a
    /// second writer.
    pub owned_elsewhere: bool,
    /// The chip works on queued descriptors later, while the host waits on an eventfd, instead
    /// of within the tail write (so the host sees requests still in flight).
    pub deferred: bool,
}

impl Default for SimApexConfig {
    fn default() -> Self {
        SimApexConfig {
            node: "/dev/apex_0".into(),
            map_buffer_flags: true,
            coherent: true,
            initial_interrupt_count: 0,
            owned_elsewhere: false,
            deferred: false,
        }
    }
}

/// Counters of what happened.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SimApexStats {
    /// Executables completed (parameter caching included).
    pub runs: u64,
    /// Parameter bytes the chip read from host memory.
    pub parameter_bytes: u64,
    /// Instruction queue descriptors consumed.
    pub descriptors: u64,
    /// Live buffer mappings.
    pub mappings: usize,
    /// Map ioctls that succeeded.
    pub maps: u64,
    /// Unmap ioctls that succeeded.
    pub unmaps: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FdKind {
    Device,
    Event,
}

#[derive(Debug, Clone, Copy)]
enum Backing {
    /// A CSR page mapping: its CSR base offset.
    Csr(u64),
    /// Host memory (alloc) or the coherent buffer: key into `memory`.
    Memory,
}

/// Host memory the simulator hands out: an allocation or the coherent buffer.
struct Block {
    bytes: Vec<u8>,
    /// Per page: the host wrote it, or a writable pin faulted it in, so that it is a page of its
    /// own and no longer the kernel's shared zero page.
    touched: Vec<bool>,
    /// The coherent allocator's memory: the chip and the host always see the same bytes.
    coherent: bool,
}

impl Block {
    fn new(len: usize, coherent: bool) -> Block {
        Block { bytes: vec![0u8; len], touched: vec![false; len.div_ceil(PAGE as usize)], coherent }
    }
}

/// One buffer mapping of the device page table.
struct Mapping {
    device: u64,
    size: u64,
    host: u64,
    direction: u64,
    /// Start of the host memory block it covers.
    block: u64,
    /// A mapping of coherent memory: no pinning, no cache maintenance.
    coherent: bool,
    /// Per page of the mapping: pinned as the kernel's zero page (mapped to the device before
    /// the host ever wrote it), so the chip reads zeros there.
    zero: Vec<bool>,
    /// Streaming DMA on a non-coherent host: what the chip sees, a snapshot taken at map time
    /// that also takes the chip's writes until the unmap hands them to the host.
    shadow: Option<Vec<u8>>,
    /// Per page of the mapping: the chip wrote into the shadow copy.
    dirty: Vec<bool>,
}

impl Mapping {
    /// Offset of the mapping's start inside its first page.
    fn lead(&self) -> usize {
        (self.host % PAGE) as usize
    }

    fn overlaps(&self, address: u64, len: usize) -> bool {
        address < self.host + self.size && self.host < address + len as u64
    }
}

/// The pages (of a mapping starting `lead` bytes into its first page) that `len` bytes at offset
/// `start` of the mapping touch: (page index, offsets in the mapping).
fn spans(lead: usize, start: usize, len: usize) -> impl Iterator<Item = (usize, std::ops::Range<usize>)> {
    let (page, end) = (PAGE as usize, start + len);
    let mut at = start;
    std::iter::from_fn(move || {
        (at < end).then(|| {
            let k = (lead + at) / page;
            let stop = ((k + 1) * page - lead).min(end);
            let span = at..stop;
            at = stop;
            (k, span)
        })
    })
}

struct Run {
    exe: usize,
    chunk: usize,
    addr: LinkedAddresses,
}

struct State {
    config: SimApexConfig,
    next_fd: Fd,
    fds: HashMap<Fd, FdKind>,
    next_host: u64,
    /// Host memory by start address (allocations and the coherent buffer).
    memory: BTreeMap<u64, Block>,
    /// Mapped regions by start address.
    regions: HashMap<u64, Backing>,
    csrs: HashMap<u32, u64>,
    partition: Option<u64>,
    maps: Vec<Mapping>,
    coherent: Option<u64>,
    eventfds: HashMap<u64, Fd>,
    counters: HashMap<Fd, u64>,
    gated: bool,
    performance: Option<u32>,
    head: u64,
    run: Option<Run>,
    exes: Vec<SimExe>,
    cached_token: Option<u64>,
    cached: Vec<usize>,
    violations: Vec<String>,
    stats: SimApexStats,
    ioctl_log: Vec<&'static str>,
}

/// The simulated kernel driver and chip.
#[derive(Clone)]
pub struct SimApex {
    state: Arc<Mutex<State>>,
    signal: Arc<Condvar>,
}

impl std::fmt::Debug for SimApex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimApex").field("node", &self.lock().config.node).finish()
    }
}

fn err(call: &str, errno: i32, message: impl Into<String>) -> SysError {
    SysError::new(call, errno, message)
}

impl SimApex {
    fn write_locked(&self, s: &mut State, region: Region, offset: usize, data: &[u8]) {
        if let Some((start, off)) = s.host_access(region, offset, data.len(), true) {
            if let Some(m) = s.memory.get_mut(&start) {
                m.bytes[off..off + data.len()].copy_from_slice(data);
            }
        }
    }

    /// A device configured by `config`.
    pub fn new(config: SimApexConfig) -> SimApex {
        let mut csrs = HashMap::new();
        csrs.insert(csr::INSTRUCTION_QUEUE_DESCRIPTOR_SIZE.offset, 16);
        csrs.insert(csr::SC_HOST_INT_COUNT.offset, config.initial_interrupt_count as u64);
        let state = State {
            config,
            next_fd: 100,
            fds: HashMap::new(),
            next_host: HOST_BASE,
            memory: BTreeMap::new(),
            regions: HashMap::new(),
            csrs,
            partition: None,
            maps: Vec::new(),
            coherent: None,
            eventfds: HashMap::new(),
            counters: HashMap::new(),
            gated: false,
            performance: None,
            head: 0,
            run: None,
            exes: Vec::new(),
            cached_token: None,
            cached: Vec::new(),
            violations: Vec::new(),
            stats: SimApexStats::default(),
            ioctl_log: Vec::new(),
        };
        SimApex { state: Arc::new(Mutex::new(state)), signal: Arc::new(Condvar::new()) }
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Registers a compiled model's executables, with the oracle of its outputs.
    pub fn load(&self, package: &Package<'_>, name: &str, oracle: Option<Arc<Mutex<dyn Oracle>>>) -> crate::Result<()> {
        let exes = SimExe::from_package(package, name, oracle)?;
        self.lock().exes.extend(exes);
        Ok(())
    }

    /// The device node.
    pub fn node(&self) -> String {
        self.lock().config.node.clone()
    }

    /// What the kernel or the chip refused so far.
    pub fn violations(&self) -> Vec<String> {
        self.lock().violations.clone()
    }

    /// Counters.
    pub fn stats(&self) -> SimApexStats {
        let s = self.lock();
        SimApexStats { mappings: s.maps.len(), ..s.stats }
    }

    /// The ioctls issued so far, by name, in order.
    pub fn ioctl_log(&self) -> Vec<&'static str> {
        self.lock().ioctl_log.clone()
    }

    /// The caching token whose parameters the chip holds.
    pub fn cached_token(&self) -> Option<u64> {
        self.lock().cached_token
    }

    /// The value of a CSR.
    pub fn csr(&self, offset: u32) -> u64 {
        self.lock().csrs.get(&offset).copied().unwrap_or(0)
    }

    /// The performance level last requested (0 low .. 3 max).
    pub fn performance(&self) -> Option<u32> {
        self.lock().performance
    }

    /// Whether the clock is gated.
    pub fn clock_gated(&self) -> bool {
        self.lock().gated
    }

    /// What the chip's DMA reads at `device_address` now, through the page table (the zero page,
    /// or the snapshot of a non-coherent mapping, as an instruction of the chip would see them);
    /// an address that is not mapped is an error.
    pub fn dma_read(&self, device_address: u64, len: usize) -> Result<Vec<u8>, String> {
        as_device(|| {
            let mut out = vec![0u8; len];
            self.lock().read_device(device_address, &mut out)?;
            Ok(out)
        })
    }

    /// Writes as the chip's DMA would at `device_address`, through the page table (into the
    /// shadow copy of a non-coherent mapping until its unmap); an address that is not mapped, or
    /// mapped to the device only, is an error.
    pub fn dma_write(&self, device_address: u64, data: &[u8]) -> Result<(), String> {
        as_device(|| self.lock().write_device(device_address, data))
    }
}

impl State {
    fn violation(&mut self, what: String) {
        self.violations.push(what);
    }

    fn alloc_host(&mut self, len: usize, coherent: bool) -> u64 {
        let len = (len.max(1) as u64).div_ceil(PAGE) * PAGE;
        let at = self.next_host;
        self.next_host += len + PAGE; // a guard page between allocations
        self.memory.insert(at, Block::new(len as usize, coherent));
        at
    }

    /// The host memory holding `[address, address + len)`: its start and the offset in it.
    fn host(&self, address: u64, len: usize) -> Option<(u64, usize)> {
        let (&start, mem) = self.memory.range(..=address).next_back()?;
        let off = usize::try_from(address - start).ok()?;
        off.checked_add(len).filter(|&end| end <= mem.bytes.len())?;
        Some((start, off))
    }

    /// The mapping through which the chip reaches `len` bytes at device address `address`.
    fn mapping(&self, address: u64, len: usize, write: bool) -> Result<usize, String> {
        let k = self
            .maps
            .iter()
            .position(|m| address >= m.device && address - m.device < m.size)
            .ok_or_else(|| format!("device address {address:#x} is not mapped (page fault)"))?;
        let m = &self.maps[k];
        if address - m.device + len as u64 > m.size {
            return Err(format!("{len} bytes at {address:#x} run past the mapping at {:#x} (+{})", m.device, m.size));
        }
        if write && m.direction == ioctl::Direction::ToDevice as u64 {
            return Err(format!("the chip writes to {address:#x}, mapped host-to-device only"));
        }
        if !self.memory.contains_key(&m.block) {
            return Err(format!("the mapping at {:#x} covers memory that was freed", m.device));
        }
        Ok(k)
    }

    /// Host memory behind `len` bytes at `offset` of a region (which may be a part of an
    /// allocation, such as the status block inside coherent memory); an access outside memory
    /// the process owns is a violation. The host touching memory while it is mapped for
    /// streaming DMA is one too: a write under any mapping (the chip does not see it: the
    /// zero page, or the snapshot taken at map time), a read under a mapping the chip may write
    /// (its writes reach the host at the unmap).
    fn host_access(&mut self, region: Region, offset: usize, len: usize, write: bool) -> Option<(u64, usize)> {
        let what = if write { "write" } else { "read" };
        let found = check_access(region, offset, len)
            .then(|| self.host(region.address.checked_add(offset as u64)?, len))
            .flatten();
        let Some((start, off)) = found else {
            self.violation(format!(
                "a host {what} of {len} bytes at offset {offset} of region {:#x} (+{}) outside memory the process owns",
                region.address, region.len
            ));
            return None;
        };
        let address = start + off as u64;
        let clash = self.maps.iter().find(|m| {
            !m.coherent && m.overlaps(address, len) && (write || m.direction != ioctl::Direction::ToDevice as u64)
        });
        if let Some(m) = clash {
            let advice = if write {
                "the chip does not see host writes made after the map: write the buffer, then map it"
            } else {
                "the chip's writes reach the host when the buffer is unmapped: unmap it, then read"
            };
            let device = m.device;
            self.violation(format!(
                "a host {what} of {len} bytes at {address:#x} while they are mapped for DMA at device address \
                 {device:#x}; {advice}"
            ));
        }
        if write {
            if let Some(b) = self.memory.get_mut(&start) {
                for p in off / PAGE as usize..(off + len).div_ceil(PAGE as usize) {
                    b.touched[p] = true;
                }
            }
        }
        Some((start, off))
    }

    /// What the chip reads at a device address: through the shadow copy of a non-coherent
    /// mapping, else host memory; zeros from pages pinned as the zero page.
    fn read_device(&mut self, address: u64, out: &mut [u8]) -> Result<(), String> {
        let k = self.mapping(address, out.len(), false)?;
        let m = &self.maps[k];
        let o = (address - m.device) as usize;
        match &m.shadow {
            Some(s) => out.copy_from_slice(&s[o..o + out.len()]),
            None => {
                let base = (m.host - m.block) as usize + o;
                out.copy_from_slice(&self.memory[&m.block].bytes[base..base + out.len()]);
            }
        }
        let mut zeros = false;
        for (p, span) in spans(m.lead(), o, out.len()) {
            if m.zero[p] {
                out[span.start - o..span.end - o].fill(0);
                zeros = true;
            }
        }
        if zeros {
            let device = m.device;
            self.violation(format!(
                "the chip read {} bytes at {address:#x} from a page the kernel pinned as its zero page: the buffer \
                 at device address {device:#x} was mapped to the device before the host wrote it",
                out.len()
            ));
        }
        Ok(())
    }

    /// The chip writes at a device address: into the shadow copy of a non-coherent mapping,
    /// else host memory.
    fn write_device(&mut self, address: u64, data: &[u8]) -> Result<(), String> {
        let k = self.mapping(address, data.len(), true)?;
        let m = &mut self.maps[k];
        let o = (address - m.device) as usize;
        match &mut m.shadow {
            Some(s) => {
                s[o..o + data.len()].copy_from_slice(data);
                for (p, _) in spans(m.lead(), o, data.len()) {
                    m.dirty[p] = true;
                }
            }
            None => {
                let base = (m.host - m.block) as usize + o;
                if let Some(b) = self.memory.get_mut(&m.block) {
                    b.bytes[base..base + data.len()].copy_from_slice(data);
                }
            }
        }
        Ok(())
    }

    fn signal(&mut self, interrupt: u64) -> bool {
        match self.eventfds.get(&interrupt) {
            Some(fd) => {
                *self.counters.entry(*fd).or_insert(0) += 1;
                true
            }
            None => false,
        }
    }

    fn map(&mut self, request: Ioctl, arg: &[u8]) -> Result<(), SysError> {
        let (size, host, device) = (ioctl::word(arg, 1), ioctl::word(arg, 2), ioctl::word(arg, 3));
        let direction = if request == ioctl::MAP_BUFFER_FLAGS { ioctl::word(arg, 4) >> 1 & 3 } else { 0 };
        let fail = |s: &mut State, what: String| {
            s.violation(format!("{}: {what}", request.name));
            Err(err(request.name, 22, what))
        };
        let Some(simple) = self.partition else {
            return fail(self, "a mapping before the page table was partitioned".into());
        };
        if size == 0 || device % PAGE != host % PAGE {
            return fail(self, format!("size {size}, host {host:#x} and device {device:#x} are not page-compatible"));
        }
        if direction > 2 {
            return fail(self, format!("DMA direction {direction} in the flags"));
        }
        let end = device.checked_add(size);
        let in_simple = end.is_some_and(|e| e <= simple * PAGE);
        let in_extended =
            device >= EXTENDED_BASE && end.is_some_and(|e| e <= EXTENDED_BASE.wrapping_add(EXTENDED_SIZE));
        if !in_simple && !in_extended {
            return fail(
                self,
                format!("device range {device:#x}+{size:#x} is in neither the simple nor the extended region"),
            );
        }
        let Some((block, off)) = self.host(host, size as usize) else {
            return fail(self, format!("host range {host:#x}+{size:#x} is not memory of this process"));
        };
        if self.maps.iter().any(|m| device < m.device + m.size && m.device < device + size) {
            return fail(self, format!("device range {device:#x}+{size:#x} overlaps an existing mapping"));
        }
        let coherent_host = self.config.coherent;
        let Some(b) = self.memory.get_mut(&block) else {
            return fail(self, format!("host range {host:#x}+{size:#x} is not memory of this process"));
        };
        let (lead, size_b) = ((host % PAGE) as usize, size as usize);
        let pages = (lead + size_b).div_ceil(PAGE as usize);
        let first = off / PAGE as usize;
        let mut zero = vec![false; pages];
        if !b.coherent {
            // get_user_pages: writable for a mapping the chip may write, which faults untouched
            // pages in; read-only to the device, which leaves an untouched page the zero page.
            for (p, z) in zero.iter_mut().enumerate() {
                if direction == ioctl::Direction::ToDevice as u64 {
                    *z = !b.touched[first + p];
                } else {
                    b.touched[first + p] = true;
                }
            }
        }
        let shadow = (!coherent_host && !b.coherent).then(|| {
            let mut s = b.bytes[off..off + size_b].to_vec();
            for (p, span) in spans(lead, 0, size_b) {
                if zero[p] {
                    s[span].fill(0);
                }
            }
            s
        });
        let coherent = b.coherent;
        self.maps.push(Mapping {
            device,
            size,
            host,
            direction,
            block,
            coherent,
            zero,
            shadow,
            dirty: vec![false; pages],
        });
        self.stats.maps += 1;
        Ok(())
    }

    /// Unmaps mapping `k`: on a non-coherent host, the pages the chip wrote reach host memory
    /// now (dma_unmap_page of a mapping from the device).
    fn unmap(&mut self, k: usize) {
        let m = self.maps.remove(k);
        self.stats.unmaps += 1;
        let (Some(shadow), Some(b)) = (&m.shadow, self.memory.get_mut(&m.block)) else {
            return;
        };
        if m.direction == ioctl::Direction::ToDevice as u64 {
            return;
        }
        let base = (m.host - m.block) as usize;
        for (p, span) in spans(m.lead(), 0, m.size as usize) {
            if m.dirty[p] {
                b.bytes[base + span.start..base + span.end].copy_from_slice(&shadow[span]);
            }
        }
    }

    fn csr_read(&self, offset: u32) -> u64 {
        self.csrs.get(&offset).copied().unwrap_or(0)
    }

    fn csr_write(&mut self, offset: u32, value: u64) {
        match offset {
            o if o == csr::INSTRUCTION_QUEUE_CONTROL.offset => {
                self.csrs.insert(csr::INSTRUCTION_QUEUE_STATUS.offset, value & 1);
                if value & 1 == 0 {
                    self.head = 0;
                }
            }
            o if o == csr::DMA_PAUSE.offset => {
                self.csrs.insert(csr::DMA_PAUSED.offset, value & 1);
            }
            o if o == csr::SC_HOST_INT_STATUS.offset || o == csr::INSTRUCTION_QUEUE_INT_STATUS.offset => {
                // Write-0-to-clear.
                let v = self.csr_read(o) & value;
                self.csrs.insert(o, v);
                return;
            }
            _ => {}
        }
        self.csrs.insert(offset, value);
        if offset == csr::INSTRUCTION_QUEUE_TAIL.offset && !self.config.deferred {
            self.consume(value);
        }
    }

    fn core_running(&self) -> bool {
        self.csr_read(csr::SCALAR_CORE_RUN_CONTROL.offset) == 1 && self.csr_read(csr::OP_RUN_CONTROL.offset) == 1
    }

    /// The chip consumes queue descriptors up to `tail`.
    fn consume(&mut self, tail: u64) {
        if tail == self.head {
            return; // nothing queued (the close sequence zeroes the tail of a disabled queue)
        }
        let size = self.csr_read(csr::INSTRUCTION_QUEUE_SIZE.offset);
        let problems = [
            (self.csr_read(csr::INSTRUCTION_QUEUE_STATUS.offset) != 1, "the queue is not enabled"),
            (size == 0 || tail >= size, "the tail lies outside the ring"),
            (!self.core_running(), "the scalar core and tiles are not in RUN"),
            (self.gated, "the clock is gated"),
            (self.csr_read(csr::INSTRUCTION_QUEUE_DESCRIPTOR_SIZE.offset) != 16, "the descriptor size is not 16"),
        ];
        if let Some((_, what)) = problems.iter().find(|(bad, _)| *bad) {
            self.violation(format!("instruction queue tail := {tail}: {what}"));
            return;
        }
        let base = self.csr_read(csr::INSTRUCTION_QUEUE_BASE.offset);
        while self.head != tail {
            let mut d = [0u8; 16];
            if let Err(e) = self.read_device(base + self.head * 16, &mut d) {
                self.fault(format!("reading queue descriptor {}: {e}", self.head));
                return;
            }
            let address = u64::from_le_bytes(d[..8].try_into().unwrap_or_default());
            let len = u32::from_le_bytes(d[8..12].try_into().unwrap_or_default()) as usize;
            self.head = (self.head + 1) % size;
            self.stats.descriptors += 1;
            if let Err(e) = self.execute(address, len) {
                self.fault(e);
                return;
            }
            let status = self.csr_read(csr::INSTRUCTION_QUEUE_STATUS_BLOCK_BASE.offset);
            let head = self.head as u32;
            if let Err(e) = self.write_device(status, &head.to_le_bytes()) {
                self.fault(format!("writing the status block: {e}"));
                return;
            }
            if self.csr_read(csr::INSTRUCTION_QUEUE_INT_CONTROL.offset) & 1 == 1 {
                self.signal(0);
            }
        }
    }

    /// A fatal chip error: recorded, HIB error bits set, interrupt 12 signalled.
    fn fault(&mut self, what: String) {
        self.violation(what);
        self.run = None;
        self.csrs.insert(csr::HIB_ERROR_STATUS.offset, 1 << 1);
        // The status block's fatal_error word, then the queue interrupt.
        let status = self.csr_read(csr::INSTRUCTION_QUEUE_STATUS_BLOCK_BASE.offset);
        if status != 0 && self.write_device(status + 4, &1u32.to_le_bytes()).is_ok() {
            self.signal(0);
        }
        if self.csr_read(csr::HIB_FATAL_ERR_INT_CONTROL.offset) & 1 == 1 {
            self.signal(12);
        }
    }

    /// One instruction chunk arrives: identify its executable, and run it after its last chunk.
    fn execute(&mut self, address: u64, len: usize) -> Result<(), String> {
        let mut chunk = vec![0u8; len];
        self.read_device(address, &mut chunk).map_err(|e| format!("reading {len} bytes of instructions: {e}"))?;
        let mut run = match self.run.take() {
            Some(r) => r,
            None => {
                let found = (0..self.exes.len())
                    .find(|&i| {
                        self.exes[i].chunks.first().is_some_and(|c| c.0.len() == len) && {
                            let mut copy = chunk.clone();
                            self.exes[i].chunk_matches(0, &mut copy)
                        }
                    })
                    .ok_or_else(|| format!("{len} bytes of instructions that match no registered executable"))?;
                Run { exe: found, chunk: 0, addr: LinkedAddresses::default() }
            }
        };
        let exe = &self.exes[run.exe];
        exe.read_addresses(run.chunk, &chunk, &mut run.addr);
        if !exe.chunk_matches(run.chunk, &mut chunk) {
            return Err(format!("{}: instruction chunk {} differs (linked fields aside)", exe.name, run.chunk));
        }
        run.chunk += 1;
        if run.chunk < exe.chunks.len() {
            self.run = Some(run);
            return Ok(());
        }
        self.complete(run)
    }

    fn complete(&mut self, run: Run) -> Result<(), String> {
        let i = run.exe;
        let (name, kind, token, partner) = {
            let e = &self.exes[i];
            (e.name.clone(), e.kind, e.token, e.partner.map(|d| i - d))
        };
        if partner.is_some_and(|p| self.cached_token != Some(token) || !self.cached.contains(&p)) {
            return Err(format!("{name}: an inference while its parameters are not cached (token {token:#x})"));
        }
        let param_len = self.exes[i].param_len;
        if param_len > 0 {
            let mut params = vec![0u8; param_len];
            self.read_device(run.addr.parameters, &mut params).map_err(|e| format!("{name}: parameters: {e}"))?;
            if fnv(FNV0, &params) != self.exes[i].param_hash {
                return Err(format!("{name}: the parameter bytes differ from the executable's"));
            }
            self.stats.parameter_bytes += param_len as u64;
        }
        if kind == ExecutableType::ParameterCaching {
            if self.cached_token != Some(token) {
                self.cached.clear();
            }
            self.cached_token = Some(token);
            if !self.cached.contains(&i) {
                self.cached.push(i);
            }
        } else {
            let n_in = self.exes[i].batch * self.exes[i].inputs.len();
            let mut inputs = program::Pooled(Vec::with_capacity(n_in));
            for k in 0..n_in {
                let mut b = program::zeroed(self.exes[i].input_len(k));
                let at = run.addr.inputs.get(k).copied().unwrap_or(0);
                let read = self.read_device(at, &mut b);
                inputs.0.push(b);
                read.map_err(|e| format!("{name}: input {k}: {e}"))?;
            }
            let outputs = program::Pooled(self.exes[i].compute(&inputs.0).map_err(|e| format!("{name}: {e}"))?);
            for (k, out) in outputs.0.iter().enumerate() {
                let at = run.addr.outputs.get(k).copied().unwrap_or(0);
                self.write_device(at, out).map_err(|e| format!("{name}: output {k}: {e}"))?;
            }
        }
        self.stats.runs += 1;
        // Scalar-core interrupt 0: counter 0 of sc_host_int_count (16 bits, wrapping).
        let count = self.csr_read(csr::SC_HOST_INT_COUNT.offset);
        let c0 = (count as u16).wrapping_add(1) as u64;
        self.csrs.insert(csr::SC_HOST_INT_COUNT.offset, (count & !0xFFFF) | c0);
        let status = self.csr_read(csr::SC_HOST_INT_STATUS.offset);
        self.csrs.insert(csr::SC_HOST_INT_STATUS.offset, status | 1);
        if self.csr_read(csr::SC_HOST_INT_CONTROL.offset) & 1 == 1 {
            self.signal(4);
        }
        Ok(())
    }
}

impl Sys for SimApex {
    fn open(&self, path: &Path) -> Result<Fd, SysError> {
        as_device(|| {
            let mut s = self.lock();
            if path.to_str() != Some(s.config.node.as_str()) {
                return Err(err(&format!("open {}", path.display()), 2, "No such file or directory"));
            }
            if s.config.owned_elsewhere {
                return Err(err(&format!("open {}", path.display()), 1, "Operation not permitted"));
            }
            s.next_fd += 1;
            let fd = s.next_fd;
            s.fds.insert(fd, FdKind::Device);
            Ok(fd)
        })
    }

    fn close(&self, fd: Fd) {
        as_device(|| {
            let mut s = self.lock();
            let kind = s.fds.remove(&fd);
            if kind == Some(FdKind::Device) && !s.fds.values().any(|k| *k == FdKind::Device) {
                // The last close: the kernel resets the chip; nothing may be left mapped.
                if !s.maps.is_empty() {
                    let n = s.maps.len();
                    s.violation(format!("the device was closed with {n} buffer mappings left"));
                    s.maps.clear();
                }
                if s.coherent.is_some() {
                    s.violation("the device was closed with the coherent allocator still enabled".into());
                }
                s.cached_token = None;
                s.cached.clear();
                s.eventfds.clear();
                let initial = s.config.initial_interrupt_count as u64;
                s.csrs.retain(|&o, _| o == csr::INSTRUCTION_QUEUE_DESCRIPTOR_SIZE.offset);
                s.csrs.insert(csr::SC_HOST_INT_COUNT.offset, initial);
                s.partition = None;
                s.head = 0;
            }
        })
    }

    fn ioctl(&self, fd: Fd, request: Ioctl, arg: &mut [u8]) -> Result<(), SysError> {
        as_device(|| {
            let mut s = self.lock();
            if s.fds.get(&fd) != Some(&FdKind::Device) {
                return Err(err(request.name, 25, "not the device node"));
            }
            if ioctl::by_number(request.number).is_none() {
                // gasket's permission check knows no such ioctl.
                return Err(err(request.name, 1, "Operation not permitted"));
            }
            if ioctl::by_number(request.number) != Some(request) || (request.size > 0 && arg.len() != request.size) {
                s.violation(format!("{}: argument of {} bytes", request.name, arg.len()));
                return Err(err(request.name, 22, "bad argument"));
            }
            s.ioctl_log.push(request.name);
            match request {
                r if r == ioctl::PERFORMANCE_EXPECTATION => {
                    let level = ioctl::word(arg, 0) as u32;
                    if level > 3 {
                        return Err(err(r.name, 22, format!("performance {level}")));
                    }
                    s.performance = Some(level);
                }
                r if r == ioctl::GATE_CLOCK => s.gated = ioctl::word(arg, 0) != 0,
                r if r == ioctl::PARTITION_PAGE_TABLE => {
                    let size = ioctl::word(arg, 1);
                    if size > PAGE_TABLE_ENTRIES || !s.maps.is_empty() {
                        let live = s.maps.len();
                        s.violation(format!("{}: size {size} with {live} mappings live", r.name));
                        return Err(err(r.name, 22, "cannot partition"));
                    }
                    s.partition = Some(size);
                }
                r if r == ioctl::MAP_BUFFER_FLAGS && !s.config.map_buffer_flags => {
                    // An older gasket: an unknown ioctl, refused by its permission check.
                    return Err(err(r.name, 1, "Operation not permitted"));
                }
                r if r == ioctl::MAP_BUFFER || r == ioctl::MAP_BUFFER_FLAGS => s.map(r, arg)?,
                r if r == ioctl::UNMAP_BUFFER => {
                    let (size, device) = (ioctl::word(arg, 1), ioctl::word(arg, 3));
                    match s.maps.iter().position(|m| m.device == device && m.size == size) {
                        Some(k) => s.unmap(k),
                        None => {
                            s.violation(format!("{}: no mapping of {size:#x} bytes at {device:#x}", r.name));
                            return Err(err(r.name, 22, "no such mapping"));
                        }
                    }
                }
                r if r == ioctl::CONFIG_COHERENT_ALLOCATOR => {
                    if ioctl::word(arg, 1) != 0 {
                        let size = ioctl::word(arg, 2) as usize;
                        let at = s.alloc_host(size, true);
                        s.coherent = Some(at);
                        arg[24..32].copy_from_slice(&COHERENT_DMA.to_le_bytes());
                    } else {
                        // gasket_free_coherent_memory: only the address it handed out.
                        let dma = ioctl::word(arg, 3);
                        if dma != COHERENT_DMA {
                            s.violation(format!(
                                "{}: disabled with DMA address {dma:#x}, not {COHERENT_DMA:#x} (the one returned at \
                                 enable)",
                                r.name
                            ));
                            return Err(err(r.name, 99, "Cannot assign requested address"));
                        }
                        if let Some(at) = s.coherent.take() {
                            s.memory.remove(&at);
                        }
                    }
                }
                r if r == ioctl::SET_EVENTFD => {
                    let (interrupt, efd) = (ioctl::word(arg, 0), ioctl::word(arg, 1) as Fd);
                    if interrupt >= INTERRUPTS || s.fds.get(&efd) != Some(&FdKind::Event) {
                        s.violation(format!("{}: interrupt {interrupt}, fd {efd}", r.name));
                        return Err(err(r.name, 22, "bad interrupt or eventfd"));
                    }
                    s.eventfds.insert(interrupt, efd);
                }
                r if r == ioctl::CLEAR_EVENTFD => {
                    let interrupt = ioctl::word(arg, 0);
                    s.eventfds.remove(&interrupt);
                }
                _ => {}
            }
            Ok(())
        })
    }

    fn mmap(&self, fd: Fd, offset: u64, len: usize) -> Result<Region, SysError> {
        as_device(|| {
            let mut s = self.lock();
            if s.fds.get(&fd) != Some(&FdKind::Device) {
                return Err(err("mmap", 19, "not the device node"));
            }
            if CSR_PAGES.contains(&offset) && len == PAGE as usize {
                let at = s.next_host;
                s.next_host += 2 * PAGE;
                s.regions.insert(at, Backing::Csr(offset));
                return Ok(Region { address: at, len });
            }
            if offset == COHERENT_DMA {
                if let Some(at) = s.coherent {
                    if s.memory.get(&at).is_some_and(|m| len <= m.bytes.len()) {
                        s.regions.insert(at, Backing::Memory);
                        return Ok(Region { address: at, len });
                    }
                }
            }
            s.violation(format!(
                "mmap of {len} bytes at offset {offset:#x}, which is neither a CSR page nor coherent memory"
            ));
            Err(err("mmap", 22, "Invalid argument"))
        })
    }

    fn munmap(&self, region: Region) {
        as_device(|| {
            self.lock().regions.remove(&region.address);
        })
    }

    fn alloc(&self, len: usize) -> Result<Region, SysError> {
        as_device(|| {
            let mut s = self.lock();
            let at = s.alloc_host(len, false);
            let len = s.memory[&at].bytes.len();
            Ok(Region { address: at, len })
        })
    }

    fn free(&self, region: Region) {
        as_device(|| {
            let mut s = self.lock();
            if s.maps.iter().any(|m| m.host >= region.address && m.host < region.address + region.len as u64) {
                s.violation(format!("host memory at {:#x} freed while still mapped for DMA", region.address));
            }
            s.memory.remove(&region.address);
        })
    }

    fn read64(&self, region: Region, offset: usize) -> u64 {
        as_device(|| {
            let mut s = self.lock();
            if let Some(Backing::Csr(base)) = s.regions.get(&region.address) {
                return s.csr_read((base + offset as u64) as u32);
            }
            let mut b = [0u8; 8];
            if let Some((start, off)) = s.host_access(region, offset, 8, false) {
                b.copy_from_slice(&s.memory[&start].bytes[off..off + 8]);
            }
            u64::from_le_bytes(b)
        })
    }

    fn write64(&self, region: Region, offset: usize, value: u64) {
        as_device(|| {
            let mut s = self.lock();
            if let Some(Backing::Csr(base)) = s.regions.get(&region.address).copied() {
                s.csr_write((base + offset as u64) as u32, value);
                drop(s);
                self.signal.notify_all();
                return;
            }
            self.write_locked(&mut s, region, offset, &value.to_le_bytes());
        })
    }

    fn read(&self, region: Region, offset: usize, out: &mut [u8]) {
        as_device(|| {
            let mut s = self.lock();
            if let Some((start, off)) = s.host_access(region, offset, out.len(), false) {
                out.copy_from_slice(&s.memory[&start].bytes[off..off + out.len()]);
            }
        })
    }

    fn write(&self, region: Region, offset: usize, data: &[u8]) {
        as_device(|| {
            let mut s = self.lock();
            self.write_locked(&mut s, region, offset, data);
        })
    }

    fn eventfd(&self) -> Result<Fd, SysError> {
        as_device(|| {
            let mut s = self.lock();
            s.next_fd += 1;
            let fd = s.next_fd;
            s.fds.insert(fd, FdKind::Event);
            s.counters.insert(fd, 0);
            Ok(fd)
        })
    }

    fn wait_event(&self, fd: Fd, timeout: Duration) -> Result<u64, SysError> {
        as_device(|| {
            let mut s = self.lock();
            if s.fds.get(&fd) != Some(&FdKind::Event) {
                return Err(err("read (eventfd)", 9, "Bad file descriptor"));
            }
            let deadline = std::time::Instant::now() + timeout;
            if s.config.deferred {
                // The chip catches up with the queue while the host waits.
                let tail = s.csr_read(csr::INSTRUCTION_QUEUE_TAIL.offset);
                if tail != s.head {
                    s.consume(tail);
                    self.signal.notify_all();
                }
            }
            loop {
                let n = s.counters.get(&fd).copied().unwrap_or(0);
                if n > 0 {
                    s.counters.insert(fd, 0);
                    return Ok(n);
                }
                let now = std::time::Instant::now();
                if now >= deadline {
                    return Ok(0);
                }
                s = self.signal.wait_timeout(s, deadline - now).map(|(g, _)| g).unwrap_or_else(|p| p.into_inner().0);
            }
        })
    }
}
