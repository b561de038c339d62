//! [`Sys`] over the real system calls (Linux).
#![allow(unsafe_code)]

use super::{check_access, ioctl::Ioctl, Fd, Region, Sys, SysError};
use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

/// The kernel's apex/gasket driver. It remembers the mappings it made, and touches memory only
/// inside one of them, so that no [`Region`] value (they are plain data) can make it read or
/// write anything else.
#[derive(Debug, Default)]
pub struct LinuxSys {
    /// Live mappings: start address to length.
    live: Mutex<BTreeMap<u64, usize>>,
}

impl LinuxSys {
    /// A handle on the system calls.
    pub fn new() -> LinuxSys {
        LinuxSys::default()
    }

    fn live(&self) -> MutexGuard<'_, BTreeMap<u64, usize>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The host address of `len` bytes at `offset` of `region`, when the region's range lies in
    /// a live mapping.
    fn checked(&self, region: Region, offset: usize, len: usize) -> Option<usize> {
        if !check_access(region, offset, len) {
            return None;
        }
        let start = region.address.checked_add(offset as u64)?;
        let end = start.checked_add(len as u64)?;
        let live = self.live();
        let (&base, &size) = live.range(..=start).next_back()?;
        (end <= base.checked_add(size as u64)?).then_some(start as usize)
    }

    fn unmap_live(&self, region: Region) {
        // Only a mapping this handle made, whole.
        if self.live().remove(&region.address) != Some(region.len) {
            return;
        }
        // SAFETY: the region is a live mapping of this length made by mmap here, and is
        // forgotten above, so no later access can reach it.
        unsafe { libc::munmap(region.address as *mut libc::c_void, region.len) };
    }
}

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
        // Coherent memory (anything but the CSR pages) is locked, as libedgetpu maps it.
        let locked = if [0x40000, 0x44000, 0x48000].contains(&offset) { 0 } else { libc::MAP_LOCKED };
        // SAFETY: a new shared mapping of the device; the kernel validates fd, offset and length.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED | locked,
                fd,
                off,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(last_error("mmap"));
        }
        self.live().insert(p as u64, len);
        Ok(Region { address: p as u64, len })
    }

    fn munmap(&self, region: Region) {
        self.unmap_live(region);
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
        self.live().insert(p as u64, len);
        Ok(Region { address: p as u64, len })
    }

    fn free(&self, region: Region) {
        self.unmap_live(region);
    }

    fn read64(&self, region: Region, offset: usize) -> u64 {
        match self.checked(region, offset, 8).filter(|a| a.is_multiple_of(8)) {
            // SAFETY: inside a live mapping made by this handle (checked), 8-byte aligned;
            // device registers need volatile accesses.
            Some(at) => unsafe { std::ptr::read_volatile(at as *const u64) },
            None => u64::MAX,
        }
    }

    fn write64(&self, region: Region, offset: usize, value: u64) {
        if let Some(at) = self.checked(region, offset, 8).filter(|a| a.is_multiple_of(8)) {
            // SAFETY: inside a live mapping made by this handle (checked), 8-byte aligned,
            // volatile for device memory.
            unsafe { std::ptr::write_volatile(at as *mut u64, value) }
        }
    }

    fn read(&self, region: Region, offset: usize, out: &mut [u8]) {
        if let Some(at) = self.checked(region, offset, out.len()) {
            // SAFETY: the source lies inside a live mapping made by this handle (checked) and
            // cannot overlap `out`, which is ordinary memory of this process.
            unsafe { std::ptr::copy_nonoverlapping(at as *const u8, out.as_mut_ptr(), out.len()) }
        }
    }

    fn write(&self, region: Region, offset: usize, data: &[u8]) {
        if let Some(at) = self.checked(region, offset, data.len()) {
            // SAFETY: the destination lies inside a live mapping made by this handle (checked).
            unsafe { std::ptr::copy_nonoverlapping(data.as_ptr(), at as *mut u8, data.len()) }
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
        if n == 8 {
            return Ok(count);
        }
        let e = last_error("read (eventfd)");
        if e.errno == libc::EAGAIN {
            return Ok(0); // another read took the count first
        }
        Err(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_touched_only_inside_live_mappings() {
        let sys = LinuxSys::new();
        let r = sys.alloc(100).unwrap();
        assert_eq!(r.len % 4096, 0);
        sys.write(r, 8, &[1, 2, 3, 4]);
        let mut b = [0u8; 4];
        sys.read(r, 8, &mut b);
        assert_eq!(b, [1, 2, 3, 4]);
        sys.write64(r, 16, 0x1122_3344_5566_7788);
        assert_eq!(sys.read64(r, 16), 0x1122_3344_5566_7788);
        // A part of the mapping works; past its end, or a forged region, does nothing.
        let part = Region { address: r.address + 8, len: 8 };
        sys.read(part, 0, &mut b);
        assert_eq!(b, [1, 2, 3, 4]);
        let forged = Region { address: r.address, len: r.len + 4096 };
        sys.write(forged, r.len, &[9; 8]);
        assert_eq!(sys.read64(forged, r.len), u64::MAX);
        // Freed: no access, and a second free or a forged unmap is ignored.
        sys.free(r);
        assert_eq!(sys.read64(r, 16), u64::MAX);
        sys.free(r);
        sys.munmap(Region { address: 0x1000, len: 4096 });
    }
}
