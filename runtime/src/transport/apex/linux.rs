//! [`Sys`] over the real system calls (Linux).
#![allow(unsafe_code)]

use super::{check_access, ioctl::Ioctl, Fd, Region, Sys, SysError};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::time::Duration;

/// The kernel's apex/gasket driver.
#[derive(Debug, Default, Clone, Copy)]
pub struct LinuxSys;

fn last_error(call: &str) -> SysError {
    let e = std::io::Error::last_os_error();
    SysError::new(call, e.raw_os_error().unwrap_or(0), e.to_string())
}

fn page_size() -> usize {
    // SAFETY: sysconf has no memory effects.
    let p = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(p).ok().filter(|&p| p > 0).unwrap_or(4096)
}

impl Sys for LinuxSys {
    fn open(&self, path: &Path) -> Result<Fd, SysError> {
        let c = CString::new(path.as_os_str().as_bytes())
            .map_err(|_| SysError::new("open", libc::EINVAL, "the path contains a NUL byte"))?;
        // SAFETY: `c` is a valid NUL-terminated string for the duration of the call.
        let fd = unsafe { libc::open(c.as_ptr(), libc::O_RDWR | libc::O_CLOEXEC) };
        if fd < 0 {
            return Err(last_error(&format!("open {}", path.display())));
        }
        Ok(fd)
    }

    fn close(&self, fd: Fd) {
        // SAFETY: closing a descriptor this process opened; errors are irrelevant here.
        unsafe { libc::close(fd) };
    }

    fn ioctl(&self, fd: Fd, request: Ioctl, arg: &mut [u8]) -> Result<(), SysError> {
        let rc = if request.by_value {
            let value = super::ioctl::word(arg, 0) as libc::c_ulong;
            // SAFETY: the request takes a plain integer argument, no memory is passed.
            unsafe { libc::ioctl(fd, request.number as _, value) }
        } else {
            if arg.len() != request.size {
                return Err(SysError::new(request.name, libc::EINVAL, "argument of the wrong size"));
            }
            // The kernel reads (and for read-write ioctls writes) exactly `size` bytes; an
            // 8-byte-aligned copy keeps the u64 fields aligned.
            let mut aligned = vec![0u64; request.size.div_ceil(8)];
            let bytes: &mut [u8] = bytemuck::cast_slice_mut(&mut aligned);
            bytes[..arg.len()].copy_from_slice(arg);
            // SAFETY: `aligned` holds at least `request.size` bytes, as the request's encoded size
            // tells the kernel, and lives for the duration of the call.
            let rc = unsafe { libc::ioctl(fd, request.number as _, aligned.as_mut_ptr()) };
            let bytes: &[u8] = bytemuck::cast_slice(&aligned);
            arg.copy_from_slice(&bytes[..arg.len()]);
            rc
        };
        if rc < 0 {
            return Err(last_error(request.name));
        }
        Ok(())
    }

    fn mmap(&self, fd: Fd, offset: u64, len: usize) -> Result<Region, SysError> {
        let off = libc::off_t::try_from(offset).map_err(|_| SysError::new("mmap", libc::EINVAL, "offset too large"))?;
        // SAFETY: a new shared mapping of the device; the kernel validates fd, offset and length.
        let p = unsafe {
            libc::mmap(std::ptr::null_mut(), len, libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED, fd, off)
        };
        if p == libc::MAP_FAILED {
            return Err(last_error("mmap"));
        }
        Ok(Region { address: p as u64, len })
    }

    fn munmap(&self, region: Region) {
        // SAFETY: the region was returned by mmap/alloc with this length and is no longer used.
        unsafe { libc::munmap(region.address as *mut libc::c_void, region.len) };
    }

    fn alloc(&self, len: usize) -> Result<Region, SysError> {
        let len = len.max(1).div_ceil(page_size()) * page_size();
        // SAFETY: a new private anonymous mapping; no existing memory is affected.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(last_error("mmap (DMA buffer)"));
        }
        Ok(Region { address: p as u64, len })
    }

    fn free(&self, region: Region) {
        self.munmap(region);
    }

    fn read64(&self, region: Region, offset: usize) -> u64 {
        if !check_access(region, offset, 8) || !offset.is_multiple_of(8) {
            return u64::MAX;
        }
        // SAFETY: inside the mapping (checked above), 8-byte aligned; device registers need
        // volatile accesses.
        unsafe { std::ptr::read_volatile((region.address as usize + offset) as *const u64) }
    }

    fn write64(&self, region: Region, offset: usize, value: u64) {
        if !check_access(region, offset, 8) || !offset.is_multiple_of(8) {
            return;
        }
        // SAFETY: inside the mapping (checked above), 8-byte aligned, volatile for device memory.
        unsafe { std::ptr::write_volatile((region.address as usize + offset) as *mut u64, value) }
    }

    fn read(&self, region: Region, offset: usize, out: &mut [u8]) {
        if !check_access(region, offset, out.len()) {
            return;
        }
        // SAFETY: the source range lies inside the mapping (checked above) and does not overlap
        // `out`, which is host memory of this process.
        unsafe {
            std::ptr::copy_nonoverlapping((region.address as usize + offset) as *const u8, out.as_mut_ptr(), out.len())
        }
    }

    fn write(&self, region: Region, offset: usize, data: &[u8]) {
        if !check_access(region, offset, data.len()) {
            return;
        }
        // SAFETY: the destination range lies inside the mapping (checked above).
        unsafe {
            std::ptr::copy_nonoverlapping(data.as_ptr(), (region.address as usize + offset) as *mut u8, data.len())
        }
    }

    fn eventfd(&self) -> Result<Fd, SysError> {
        // SAFETY: creates a new descriptor; no memory is passed.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(last_error("eventfd"));
        }
        Ok(fd)
    }

    fn wait_event(&self, fd: Fd, timeout: Duration) -> Result<u64, SysError> {
        let mut p = libc::pollfd { fd, events: libc::POLLIN, revents: 0 };
        let ms = libc::c_int::try_from(timeout.as_millis()).unwrap_or(libc::c_int::MAX);
        // SAFETY: one valid pollfd for the duration of the call.
        let rc = unsafe { libc::poll(&mut p, 1, ms) };
        if rc < 0 {
            return Err(last_error("poll (eventfd)"));
        }
        if rc == 0 {
            return Ok(0);
        }
        let mut count = 0u64;
        // SAFETY: reads 8 bytes into `count`, the size an eventfd read returns.
        let n = unsafe { libc::read(fd, (&mut count as *mut u64).cast(), 8) };
        if n != 8 {
            return Ok(0);
        }
        Ok(count)
    }
}
