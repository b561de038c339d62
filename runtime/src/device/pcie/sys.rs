//! The system-call seam of the PCIe path (`/dev/apex_N`, PROTOCOL.md §7).
//!
//! The driver code ([`crate::device::pcie`]) reaches the kernel only through [`Sys`], a small
//! trait over the system calls it needs: open/close, ioctl, mmap of device memory (CSR pages,
//! coherent memory), page-aligned host memory for DMA buffers, and eventfds. The Linux
//! implementation (`linux::LinuxSys`) makes the real calls; the simulator (`crate::sim`, feature
//! `sim`) stands in for the kernel driver and the chip.

use std::fmt;
use std::path::Path;
use std::time::Duration;

/// A file descriptor (of the device node or an eventfd).
pub type Fd = i32;

/// Memory the host and the device share: a mapping of device memory (CSR pages, coherent
/// memory) or page-aligned host memory that a DMA mapping can cover. `address` is the host
/// virtual address (the simulator hands out addresses of its own).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// Host virtual address of the first byte.
    pub address: u64,
    /// Length in bytes.
    pub len: usize,
}

/// A failed system call: which one, its errno, and a description.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysError {
    /// The call (`open`, an ioctl name, `mmap`, ...).
    pub call: String,
    /// The errno (`libc` numbering: 1 EPERM, 2 ENOENT, 13 EACCES, 16 EBUSY, 22 EINVAL, 25 ENOTTY).
    pub errno: i32,
    /// What the kernel (or the simulator) said.
    pub message: String,
}

impl SysError {
    /// A failure of `call` with `errno`.
    pub fn new(call: impl Into<String>, errno: i32, message: impl Into<String>) -> SysError {
        SysError { call: call.into(), errno, message: message.into() }
    }
    /// The error kind an errno stands for.
    pub fn kind(&self) -> crate::ErrorKind {
        use crate::ErrorKind as K;
        match self.errno {
            1 | 13 => K::PermissionDenied,
            2 | 6 | 19 => K::NotFound,
            16 => K::Busy,
            110 => K::Timeout,
            22 | 25 => K::Protocol,
            _ => K::Io,
        }
    }
}

impl fmt::Display for SysError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} failed (errno {}): {}", self.call, self.errno, self.message)
    }
}

/// The system calls of the PCIe backend.
pub trait Sys: Send + Sync + fmt::Debug {
    /// Opens a device node read-write.
    fn open(&self, path: &Path) -> Result<Fd, SysError>;
    /// Closes a descriptor.
    fn close(&self, fd: Fd);
    /// Issues `request` on `fd`; `arg` is the argument struct (exactly `request.size` bytes),
    /// updated in place for read-write ioctls. Requests taking their argument by value pass
    /// `arg`'s first word (or 0) as a plain integer.
    fn ioctl(&self, fd: Fd, request: super::ioctl::Ioctl, arg: &mut [u8]) -> Result<(), SysError>;
    /// Maps `len` bytes of the device at `offset` (CSR pages; coherent memory at its DMA address).
    fn mmap(&self, fd: Fd, offset: u64, len: usize) -> Result<Region, SysError>;
    /// Unmaps a region returned by [`Sys::mmap`].
    fn munmap(&self, region: Region);
    /// Page-aligned, zeroed host memory for DMA buffers.
    fn alloc(&self, len: usize) -> Result<Region, SysError>;
    /// Frees memory returned by [`Sys::alloc`].
    fn free(&self, region: Region);
    /// A 64-bit volatile read at `offset` (8-byte aligned) of a region.
    fn read64(&self, region: Region, offset: usize) -> u64;
    /// A 64-bit volatile write at `offset` (8-byte aligned) of a region.
    fn write64(&self, region: Region, offset: usize, value: u64);
    /// Copies bytes out of a region.
    fn read(&self, region: Region, offset: usize, out: &mut [u8]);
    /// Copies bytes into a region.
    fn write(&self, region: Region, offset: usize, data: &[u8]);
    /// A new eventfd (counter semantics, non-blocking reads).
    fn eventfd(&self) -> Result<Fd, SysError>;
    /// Waits up to `timeout` for the eventfd's counter and reads (resets) it: 0 when nothing
    /// arrived in time.
    fn wait_event(&self, fd: Fd, timeout: Duration) -> Result<u64, SysError>;
}

/// Bounds-checks an access of `len` bytes at `offset` of a region (used by every [`Sys`]
/// implementation before touching memory).
pub(crate) fn check_access(region: Region, offset: usize, len: usize) -> bool {
    offset.checked_add(len).is_some_and(|end| end <= region.len)
}
