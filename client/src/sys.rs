//! The system calls of the tensor protocol: an anonymous shared-memory file (`memfd_create`),
//! its mapping, and passing its descriptor over a Unix socket (`SCM_RIGHTS`). Everything unsafe
//! in this crate is here.
#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::ptr::NonNull;

/// A shared mapping of a memory file, `len` bytes, unmapped on drop.
///
/// The peer process maps the same pages and may write them at any time, so this type never
/// hands out references to the memory on the side that does not trust its peer: [`Region::read`]
/// and [`Region::write`] copy through raw pointers. The client, which trusts its server, may
/// borrow the memory with [`Region::slice`] and [`Region::slice_mut`].
#[derive(Debug)]
pub struct Region {
    ptr: NonNull<u8>,
    len: usize,
    fd: OwnedFd,
}

// SAFETY: the mapping is plain memory owned by this value; every access goes through &self or
// &mut self (raw copies or borrows tied to them), so moving it or sharing it between threads is
// as safe as for a Vec<u8>.
unsafe impl Send for Region {}
// SAFETY: see above; `read` only reads, and writes need `&mut self` or go through raw copies
// whose races with the peer are accepted by design (the bytes are untrusted values).
unsafe impl Sync for Region {}

impl Region {
    /// A new memory file of `len` bytes (zeroed), mapped read-write and shared.
    pub fn create(name: &str, len: usize) -> io::Result<Region> {
        let cname = std::ffi::CString::new(name).map_err(|_| io::Error::other("a NUL in the memory file's name"))?;
        // SAFETY: memfd_create reads the NUL-terminated name and returns a new descriptor or -1.
        let raw = unsafe { libc::memfd_create(cname.as_ptr(), libc::MFD_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `raw` is a descriptor we own from here on.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let size = libc::off_t::try_from(len).map_err(|_| io::Error::other("the region is too large"))?;
        // SAFETY: ftruncate on a descriptor we own.
        if unsafe { libc::ftruncate(fd.as_raw_fd(), size) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Region::map(fd, len)
    }

    /// Maps `len` bytes of a memory file received from the peer. The file must be at least that
    /// long: its size is checked first, so a short file is an error instead of a fault.
    pub fn map(fd: OwnedFd, len: usize) -> io::Result<Region> {
        // SAFETY: fstat fills the zeroed struct for a descriptor we own.
        let mut st: libc::stat = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        if unsafe { libc::fstat(fd.as_raw_fd(), &mut st) } != 0 {
            return Err(io::Error::last_os_error());
        }
        if (st.st_size as u64) < len as u64 {
            return Err(io::Error::other(format!("the shared memory has {} bytes, {len} expected", st.st_size)));
        }
        if len == 0 {
            return Ok(Region { ptr: NonNull::dangling(), len: 0, fd });
        }
        // SAFETY: a new shared mapping of `len` bytes of a file at least that long; the kernel
        // picks the address. The result is checked for MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd.as_raw_fd(),
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap returned null"))?;
        Ok(Region { ptr, len, fd })
    }

    /// Its size in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether it is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The memory file, to pass to the peer.
    pub fn fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    fn check(&self, offset: usize, n: usize) -> io::Result<()> {
        match offset.checked_add(n) {
            Some(end) if end <= self.len => Ok(()),
            _ => Err(io::Error::other(format!("bytes {offset}..+{n} are outside the {}-byte region", self.len))),
        }
    }

    /// Copies `dst.len()` bytes at `offset` out of the region.
    pub fn read(&self, offset: usize, dst: &mut [u8]) -> io::Result<()> {
        self.check(offset, dst.len())?;
        // SAFETY: the range is inside the live mapping (checked above) and `dst` is our own
        // buffer, which cannot overlap it. No reference to the shared memory is formed.
        unsafe { std::ptr::copy_nonoverlapping(self.ptr.as_ptr().add(offset), dst.as_mut_ptr(), dst.len()) };
        Ok(())
    }

    /// Copies `src` into the region at `offset`.
    pub fn write(&self, offset: usize, src: &[u8]) -> io::Result<()> {
        self.check(offset, src.len())?;
        // SAFETY: as in `read`, with the copy going the other way.
        unsafe { std::ptr::copy_nonoverlapping(src.as_ptr(), self.ptr.as_ptr().add(offset), src.len()) };
        Ok(())
    }

    /// Borrows `n` bytes at `offset`. For the client: the server writes this memory only while
    /// the client waits for an invoke reply, which needs `&mut` access to the model.
    pub fn slice(&self, offset: usize, n: usize) -> io::Result<&[u8]> {
        self.check(offset, n)?;
        // SAFETY: inside the mapping, which lives as long as `self`; the protocol keeps the peer
        // from writing it while the borrow is possible (see above).
        Ok(unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().add(offset), n) })
    }

    /// Borrows `n` bytes at `offset` mutably (client side, see [`Region::slice`]).
    pub fn slice_mut(&mut self, offset: usize, n: usize) -> io::Result<&mut [u8]> {
        self.check(offset, n)?;
        // SAFETY: as in `slice`; `&mut self` makes the borrow unique in this process.
        Ok(unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().add(offset), n) })
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        if self.len > 0 {
            // SAFETY: unmaps exactly the mapping made in `map`; no borrow outlives `self`.
            unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
        }
    }
}

/// Sends `bytes` with descriptor `fd` attached (SCM_RIGHTS), all of it.
pub fn send_with_fd(sock: &UnixStream, bytes: &[u8], fd: RawFd) -> io::Result<()> {
    let space = cmsg_space();
    let mut control = vec![0u8; space];
    let mut iov = libc::iovec { iov_base: bytes.as_ptr() as *mut libc::c_void, iov_len: bytes.len() };
    // SAFETY: a zeroed msghdr is valid; its pointers are set to live buffers below.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: CMSG_FIRSTHDR of a msghdr whose control buffer holds one SCM_RIGHTS header and
    // one descriptor (CMSG_SPACE); the writes stay inside `control`.
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&msg);
        if c.is_null() {
            return Err(io::Error::other("no room for the descriptor"));
        }
        (*c).cmsg_level = libc::SOL_SOCKET;
        (*c).cmsg_type = libc::SCM_RIGHTS;
        (*c).cmsg_len = libc::CMSG_LEN(std::mem::size_of::<RawFd>() as u32) as _;
        std::ptr::write_unaligned(libc::CMSG_DATA(c).cast::<RawFd>(), fd);
    }
    // SAFETY: sendmsg reads the iovec and control buffers set up above, both alive.
    let n = unsafe { libc::sendmsg(sock.as_raw_fd(), &msg, libc::MSG_NOSIGNAL) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    // The descriptor went with the first byte; the rest, if any, follows plainly.
    let n = n as usize;
    if n < bytes.len() {
        use std::io::Write;
        (&*sock).write_all(&bytes[n..])?;
    }
    Ok(())
}

/// Reads exactly `buf.len()` bytes, returning a descriptor the peer attached to them, if any.
/// Extra descriptors are closed.
pub fn recv_with_fd(sock: &UnixStream, buf: &mut [u8]) -> io::Result<Option<OwnedFd>> {
    let space = cmsg_space();
    let mut control = vec![0u8; space];
    let mut iov = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: buf.len() };
    // SAFETY: as in `send_with_fd`.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    // SAFETY: recvmsg writes at most `buf.len()` bytes and `space` control bytes, into buffers
    // that are alive and that long.
    let n = unsafe { libc::recvmsg(sock.as_raw_fd(), &mut msg, libc::MSG_CMSG_CLOEXEC) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    if n == 0 && !buf.is_empty() {
        return Err(io::ErrorKind::UnexpectedEof.into());
    }
    let mut received = None;
    // SAFETY: walks the control headers the kernel wrote, within `msg_controllen`.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(&msg);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(c).cast::<RawFd>();
                let count = ((*c).cmsg_len as usize - libc::CMSG_LEN(0) as usize) / std::mem::size_of::<RawFd>();
                for k in 0..count {
                    let fd = OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(k)));
                    if received.is_none() {
                        received = Some(fd);
                    }
                }
            }
            c = libc::CMSG_NXTHDR(&msg, c);
        }
    }
    let n = n as usize;
    if n < buf.len() {
        use std::io::Read;
        (&*sock).read_exact(&mut buf[n..])?;
    }
    Ok(received)
}

/// Polls `sock` without sleeping until it has bytes to read (or the peer hung up), for at most
/// `budget`. A caller that then reads does not sleep, so it avoids the wake-up a blocking read
/// costs, at the price of a busy core for up to `budget`. Between polls it yields, so a thread
/// waiting for this core (on a small machine, often the one that will send the reply) runs first.
pub fn spin_until_readable(sock: &UnixStream, budget: std::time::Duration) {
    let start = std::time::Instant::now();
    let mut pfd = libc::pollfd { fd: sock.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    loop {
        pfd.revents = 0;
        // SAFETY: poll reads and writes the one `pollfd` it is given, with a zero timeout.
        let n = unsafe { libc::poll(&mut pfd, 1, 0) };
        let failed = n < 0 && io::Error::last_os_error().kind() != io::ErrorKind::Interrupted;
        if n > 0 || failed || start.elapsed() >= budget {
            return;
        }
        // SAFETY: sched_yield takes no arguments.
        unsafe { libc::sched_yield() };
    }
}

/// Sleeps until `sock` has bytes to read (or the peer hung up) or `deadline` passes, whichever
/// comes first; returns whether it is readable. The timeout has microsecond resolution (`ppoll`),
/// though the kernel may end the sleep a little late (its timer slack, 50 µs by default).
pub fn sleep_until_readable(sock: &UnixStream, deadline: std::time::Instant) -> bool {
    let mut pfd = libc::pollfd { fd: sock.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    loop {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        let timeout = libc::timespec {
            tv_sec: left.as_secs().min(i32::MAX as u64) as libc::time_t,
            tv_nsec: left.subsec_nanos() as libc::c_long,
        };
        pfd.revents = 0;
        // SAFETY: ppoll reads the one `pollfd` and the timeout it is given and writes the
        // former's `revents`; no signal mask is passed.
        let n = unsafe { libc::ppoll(&mut pfd, 1, &timeout, std::ptr::null()) };
        if n > 0 {
            return true;
        }
        if n == 0 || io::Error::last_os_error().kind() != io::ErrorKind::Interrupted {
            return false;
        }
    }
}

fn cmsg_space() -> usize {
    // SAFETY: CMSG_SPACE is arithmetic on its argument.
    unsafe { libc::CMSG_SPACE(std::mem::size_of::<RawFd>() as u32) as usize }
}
