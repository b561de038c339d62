//! Video capture from a V4L2 camera (`/dev/videoN`): a USB webcam, or a Raspberry Pi camera
//! through libcamera's V4L2 compatibility layer (`libcamerify ./camera ...`, or `LD_PRELOAD` of
//! its `v4l2-compat.so`), which turns the camera's raw sensor output into YUYV.
//!
//! The minimum of the V4L2 API a capture needs, on the kernel's ioctls directly: QUERYCAP,
//! S_FMT (MJPEG or YUYV), then memory-mapped streaming (REQBUFS, QUERYBUF + mmap, QBUF,
//! STREAMON, DQBUF / QBUF per frame, STREAMOFF), or `read()` for drivers without streaming.
//! The structures below are laid out as `linux/videodev2.h` declares them.
#![allow(unsafe_code)]

use crate::frames::{CaptureOptions, Frame, FrameSource, PixelFormat};
use anyhow::{bail, Context, Result};
use std::fs::{File, OpenOptions};
use std::io::Read;
use std::marker::PhantomData;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

const BUF_TYPE_VIDEO_CAPTURE: u32 = 1;
const MEMORY_MMAP: u32 = 1;
const FIELD_NONE: u32 = 1;
const CAP_VIDEO_CAPTURE: u32 = 0x0000_0001;
const CAP_READWRITE: u32 = 0x0100_0000;
const CAP_STREAMING: u32 = 0x0400_0000;
const CAP_DEVICE_CAPS: u32 = 0x8000_0000;
/// Buffers the driver fills while a frame is being processed.
const BUFFERS: u32 = 4;
/// How long to wait for a frame before calling the camera stuck.
const FRAME_TIMEOUT_MS: i32 = 5000;

/// A pixel format code: four characters, little-endian.
const fn fourcc(c: &[u8; 4]) -> u32 {
    u32::from_le_bytes(*c)
}
const MJPG: u32 = fourcc(b"MJPG");
const JPEG: u32 = fourcc(b"JPEG");
const YUYV: u32 = fourcc(b"YUYV");

fn fourcc_name(code: u32) -> String {
    code.to_le_bytes().iter().map(|&b| if b.is_ascii_graphic() { b as char } else { '?' }).collect()
}

#[repr(C)]
#[derive(Default)]
struct Capability {
    driver: [u8; 16],
    card: [u8; 32],
    bus_info: [u8; 32],
    version: u32,
    capabilities: u32,
    device_caps: u32,
    reserved: [u32; 3],
}

/// `struct v4l2_format`: the type, then a 200-byte union aligned like a pointer (one of its
/// members holds pointers). Only its `v4l2_pix_format` member is used, read and written as
/// twelve native-endian `u32` at the start of `raw`.
#[repr(C)]
struct Format {
    type_: u32,
    fmt: FormatData,
}

#[repr(C)]
struct FormatData {
    _align: [usize; 0],
    raw: [u8; 200],
}

/// The fields of `struct v4l2_pix_format` used here: the value is the field's index (each is a
/// `u32`).
#[derive(Clone, Copy)]
enum Pix {
    Width = 0,
    Height = 1,
    PixelFormat = 2,
    Field = 3,
    BytesPerLine = 4,
    SizeImage = 5,
}

impl Format {
    fn capture() -> Format {
        Format { type_: BUF_TYPE_VIDEO_CAPTURE, fmt: FormatData { _align: [], raw: [0; 200] } }
    }
    fn get(&self, field: Pix) -> u32 {
        let i = 4 * field as usize;
        let b = &self.fmt.raw[i..i + 4];
        u32::from_ne_bytes([b[0], b[1], b[2], b[3]])
    }
    fn set(&mut self, field: Pix, v: u32) {
        let i = 4 * field as usize;
        self.fmt.raw[i..i + 4].copy_from_slice(&v.to_ne_bytes());
    }
}

#[repr(C)]
#[derive(Default)]
struct RequestBuffers {
    count: u32,
    type_: u32,
    memory: u32,
    capabilities: u32,
    flags: u8,
    reserved: [u8; 3],
}

#[repr(C)]
#[derive(Default)]
struct Timecode {
    type_: u32,
    flags: u32,
    frames: u8,
    seconds: u8,
    minutes: u8,
    hours: u8,
    userbits: [u8; 4],
}

/// The union `m` of `struct v4l2_buffer` (offset / userptr / planes / fd): as large and aligned
/// as an `unsigned long`; the mmap offset is its first four bytes.
#[repr(C)]
#[derive(Default)]
struct BufferM {
    _align: [libc::c_ulong; 0],
    offset: u32,
    _rest: [u8; std::mem::size_of::<libc::c_ulong>() - 4],
}

#[repr(C)]
struct Buffer {
    index: u32,
    type_: u32,
    bytesused: u32,
    flags: u32,
    field: u32,
    timestamp: libc::timeval,
    timecode: Timecode,
    sequence: u32,
    memory: u32,
    m: BufferM,
    length: u32,
    reserved2: u32,
    request_fd: i32,
}

impl Buffer {
    fn mmap(index: u32) -> Buffer {
        Buffer {
            index,
            type_: BUF_TYPE_VIDEO_CAPTURE,
            bytesused: 0,
            flags: 0,
            field: 0,
            timestamp: libc::timeval { tv_sec: 0, tv_usec: 0 },
            timecode: Timecode::default(),
            sequence: 0,
            memory: MEMORY_MMAP,
            m: BufferM::default(),
            length: 0,
            reserved2: 0,
            request_fd: 0,
        }
    }
}

// The sizes the kernel expects on 64-bit targets (they are encoded in the request codes).
#[cfg(target_pointer_width = "64")]
const _: () = {
    assert!(std::mem::size_of::<Capability>() == 104);
    assert!(std::mem::size_of::<Format>() == 208);
    assert!(std::mem::size_of::<RequestBuffers>() == 20);
    assert!(std::mem::size_of::<Buffer>() == 88);
};

/// An ioctl request code together with the type of its argument, so that a request can only be
/// made with the structure it was encoded for.
struct Request<T>(u32, PhantomData<T>);

// Request codes as `_IOC(dir, 'V', nr, size)` builds them: asm-generic layout, or the one of
// powerpc, mips and sparc (3 direction bits at bit 29, 13 size bits).
const OLD_IOC: bool = cfg!(any(
    target_arch = "powerpc",
    target_arch = "powerpc64",
    target_arch = "mips",
    target_arch = "mips64",
    target_arch = "sparc",
    target_arch = "sparc64"
));
mod dir {
    pub const READ: u32 = 2;
    pub const WRITE: u32 = if super::OLD_IOC { 4 } else { 1 };
    pub const SHIFT: u32 = if super::OLD_IOC { 29 } else { 30 };
}

impl<T> Request<T> {
    const fn new(dir: u32, nr: u32) -> Request<T> {
        Request(
            (dir << dir::SHIFT) | ((std::mem::size_of::<T>() as u32) << 16) | ((b'V' as u32) << 8) | nr,
            PhantomData,
        )
    }
}

const QUERYCAP: Request<Capability> = Request::new(dir::READ, 0);
const S_FMT: Request<Format> = Request::new(dir::READ | dir::WRITE, 5);
const REQBUFS: Request<RequestBuffers> = Request::new(dir::READ | dir::WRITE, 8);
const QUERYBUF: Request<Buffer> = Request::new(dir::READ | dir::WRITE, 9);
const QBUF: Request<Buffer> = Request::new(dir::READ | dir::WRITE, 15);
const DQBUF: Request<Buffer> = Request::new(dir::READ | dir::WRITE, 17);
const STREAMON: Request<libc::c_int> = Request::new(dir::WRITE, 18);
const STREAMOFF: Request<libc::c_int> = Request::new(dir::WRITE, 19);

fn ioctl<T>(file: &File, req: &Request<T>, arg: &mut T) -> std::io::Result<()> {
    loop {
        // SAFETY: `file` is an open descriptor; `req.0` encodes an ioctl whose argument is a `T`
        // (the `Request<T>` type ties the two together, and `T` is laid out as the kernel
        // declares it); `arg` is a live, exclusive `T` for the duration of the call, which is
        // all the kernel reads or writes.
        let r = unsafe { libc::ioctl(file.as_raw_fd(), req.0 as _, arg as *mut T) };
        if r != -1 {
            return Ok(());
        }
        let e = std::io::Error::last_os_error();
        if e.kind() != std::io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// One driver buffer mapped into this process.
struct Mapping {
    ptr: *mut libc::c_void,
    len: usize,
}

impl Mapping {
    fn new(file: &File, offset: u32, len: usize) -> std::io::Result<Mapping> {
        // SAFETY: a fresh shared mapping of `len` bytes of the device at the offset the driver
        // gave for this buffer (QUERYBUF); no Rust memory is aliased. The result is checked.
        let ptr = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                file.as_raw_fd(),
                offset as libc::off_t,
            )
        };
        if ptr == libc::MAP_FAILED {
            return Err(std::io::Error::last_os_error());
        }
        Ok(Mapping { ptr, len })
    }

    /// The first `n` bytes (at most the mapping's length).
    fn bytes(&self, n: usize) -> &[u8] {
        // SAFETY: `ptr` is a live mapping of `len` bytes (unmapped only in drop), readable; the
        // driver does not write to a buffer between DQBUF and QBUF, which is when this is read.
        unsafe { std::slice::from_raw_parts(self.ptr as *const u8, n.min(self.len)) }
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` are exactly what mmap returned, and nothing borrows it any more.
        unsafe {
            libc::munmap(self.ptr, self.len);
        }
    }
}

enum Io {
    Streaming(Vec<Mapping>),
    Read(Vec<u8>),
}

/// An open camera, capturing.
pub struct Camera {
    path: PathBuf,
    card: String,
    file: File,
    io: Io,
    width: u32,
    height: u32,
    format: u32,
    stride: usize,
    frames: usize,
}

fn open_error(path: &Path, e: std::io::Error) -> anyhow::Error {
    let p = path.display();
    let hint = match e.raw_os_error() {
        Some(libc::ENOENT) | Some(libc::ENODEV) | Some(libc::ENXIO) => {
            "no such camera: `ls /dev/video*` lists the cameras (a Raspberry Pi camera needs libcamera's V4L2 \
             layer: see BOARDS.md); or give a directory of images or an .mjpeg file"
        }
        Some(libc::EACCES) | Some(libc::EPERM) => {
            "permission denied: add your user to the video group (`sudo usermod -aG video $USER`, then log in again)"
        }
        Some(libc::EBUSY) => "the camera is busy: another program is using it",
        _ => "is it a V4L2 camera?",
    };
    anyhow::anyhow!("{p}: {e}: {hint}")
}

impl Camera {
    /// Opens `path` and starts capturing at about the size and in the format `capture` asks for.
    pub fn open(path: &Path, capture: &CaptureOptions) -> Result<Camera> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(|e| open_error(path, e))?;
        let mut cap = Capability::default();
        ioctl(&file, &QUERYCAP, &mut cap).map_err(|e| open_error(path, e))?;
        let card = String::from_utf8_lossy(&cap.card).trim_end_matches('\0').to_string();
        let caps = if cap.capabilities & CAP_DEVICE_CAPS != 0 { cap.device_caps } else { cap.capabilities };
        if caps & CAP_VIDEO_CAPTURE == 0 {
            bail!(
                "{} ({card}) is not a video capture device; try the other /dev/video* nodes (`v4l2-ctl --list-devices`)",
                path.display()
            );
        }
        let wanted: &[u32] = match capture.format {
            PixelFormat::Auto => &[MJPG, YUYV],
            PixelFormat::Mjpeg => &[MJPG],
            PixelFormat::Yuyv => &[YUYV],
        };
        let mut got = Vec::new();
        let mut chosen = None;
        for &code in wanted {
            let mut f = Format::capture();
            f.set(Pix::Width, capture.width);
            f.set(Pix::Height, capture.height);
            f.set(Pix::PixelFormat, code);
            f.set(Pix::Field, FIELD_NONE);
            ioctl(&file, &S_FMT, &mut f).map_err(|e| open_error(path, e)).context("setting the format")?;
            let code = f.get(Pix::PixelFormat);
            if [MJPG, JPEG, YUYV].contains(&code) && wanted.contains(&if code == JPEG { MJPG } else { code }) {
                chosen = Some(f);
                break;
            }
            got.push(fourcc_name(code));
        }
        let Some(f) = chosen else {
            bail!(
                "{} ({card}) offers {} instead of {}: this example reads MJPEG or YUYV (a Raspberry Pi camera gives YUYV \
                 through libcamera's V4L2 layer: run under `libcamerify`, see BOARDS.md)",
                path.display(),
                got.join(", "),
                wanted.iter().map(|&c| fourcc_name(c)).collect::<Vec<_>>().join(" or ")
            );
        };
        let (width, height, format) = (f.get(Pix::Width), f.get(Pix::Height), f.get(Pix::PixelFormat));
        let stride = (f.get(Pix::BytesPerLine) as usize).max(2 * width as usize);
        let io = if caps & CAP_STREAMING != 0 {
            Io::Streaming(start_streaming(&file).map_err(|e| open_error(path, e)).context("starting the capture")?)
        } else if caps & CAP_READWRITE != 0 {
            Io::Read(vec![0; (f.get(Pix::SizeImage) as usize).max(stride * height as usize)])
        } else {
            bail!("{} ({card}) supports neither streaming nor read(): it cannot be captured from", path.display());
        };
        Ok(Camera { path: path.to_path_buf(), card, file, io, width, height, format, stride, frames: 0 })
    }

    /// Width and height of the frames.
    pub fn size(&self) -> (u32, u32) {
        (self.width, self.height)
    }

    /// Waits for the camera to have a frame.
    fn wait(&self) -> Result<()> {
        let mut pfd = libc::pollfd { fd: self.file.as_raw_fd(), events: libc::POLLIN, revents: 0 };
        loop {
            // SAFETY: `pfd` is one live pollfd and the count passed is 1.
            let r = unsafe { libc::poll(&mut pfd, 1, FRAME_TIMEOUT_MS) };
            match r {
                -1 if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => continue,
                -1 => {
                    return Err(std::io::Error::last_os_error()).context(format!("waiting for {}", self.path.display()))
                }
                0 => bail!(
                    "{} ({}) sent no frame in {} s: is the camera connected and not used by another program?",
                    self.path.display(),
                    self.card,
                    FRAME_TIMEOUT_MS / 1000
                ),
                _ => return Ok(()),
            }
        }
    }

    /// The raw bytes of the next frame.
    fn grab(&mut self) -> Result<Vec<u8>> {
        loop {
            self.wait()?;
            match &mut self.io {
                Io::Streaming(maps) => {
                    let mut b = Buffer::mmap(0);
                    match ioctl(&self.file, &DQBUF, &mut b) {
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                        r => r.with_context(|| format!("taking a frame from {}", self.path.display()))?,
                    }
                    let data = maps.get(b.index as usize).map(|m| m.bytes(b.bytesused as usize).to_vec());
                    // Hand the buffer back to the driver before converting the copy.
                    ioctl(&self.file, &QBUF, &mut b)
                        .with_context(|| format!("requeueing a buffer of {}", self.path.display()))?;
                    return data.context("the driver returned a buffer it never announced");
                }
                Io::Read(buf) => match self.file.read(buf) {
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
                    r => {
                        let n = r.with_context(|| format!("reading a frame from {}", self.path.display()))?;
                        return Ok(buf[..n].to_vec());
                    }
                },
            }
        }
    }
}

fn start_streaming(file: &File) -> std::io::Result<Vec<Mapping>> {
    let mut req =
        RequestBuffers { count: BUFFERS, type_: BUF_TYPE_VIDEO_CAPTURE, memory: MEMORY_MMAP, ..Default::default() };
    ioctl(file, &REQBUFS, &mut req)?;
    let mut maps = Vec::new();
    for index in 0..req.count {
        let mut b = Buffer::mmap(index);
        ioctl(file, &QUERYBUF, &mut b)?;
        maps.push(Mapping::new(file, b.m.offset, b.length as usize)?);
        ioctl(file, &QBUF, &mut b)?;
    }
    let mut type_ = BUF_TYPE_VIDEO_CAPTURE as libc::c_int;
    ioctl(file, &STREAMON, &mut type_)?;
    Ok(maps)
}

impl FrameSource for Camera {
    fn next_frame(&mut self) -> Result<Option<Frame>> {
        // A webcam's first MJPEG frames are sometimes cut short: skip a few bad ones.
        let mut failures = 0;
        loop {
            let data = self.grab()?;
            let image = if self.format == YUYV {
                crate::frames::yuyv_to_rgb(&data, self.width, self.height, self.stride)
            } else {
                crate::mjpeg::decode(&data)
            };
            match image {
                Ok(image) => {
                    self.frames += 1;
                    return Ok(Some(Frame { image, name: format!("frame {}", self.frames - 1) }));
                }
                Err(e) if failures < 10 => {
                    failures += 1;
                    eprintln!("{}: skipping a bad frame: {e:#}", self.path.display());
                }
                Err(e) => return Err(e.context(format!("{}: ten bad frames in a row", self.path.display()))),
            }
        }
    }

    fn describe(&self) -> String {
        format!("{} ({}, {}x{} {})", self.path.display(), self.card, self.width, self.height, fourcc_name(self.format))
    }
}

impl Drop for Camera {
    fn drop(&mut self) {
        if matches!(self.io, Io::Streaming(_)) {
            let mut type_ = BUF_TYPE_VIDEO_CAPTURE as libc::c_int;
            let _ = ioctl(&self.file, &STREAMOFF, &mut type_);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_codes_match_videodev2_h() {
        // The values of linux/videodev2.h on x86-64 and aarch64.
        if cfg!(target_pointer_width = "64") && dir::SHIFT == 30 {
            assert_eq!(QUERYCAP.0, 0x8068_5600);
            assert_eq!(S_FMT.0, 0xc0d0_5605);
            assert_eq!(REQBUFS.0, 0xc014_5608);
            assert_eq!(QUERYBUF.0, 0xc058_5609);
            assert_eq!(QBUF.0, 0xc058_560f);
            assert_eq!(DQBUF.0, 0xc058_5611);
            assert_eq!(STREAMON.0, 0x4004_5612);
            assert_eq!(STREAMOFF.0, 0x4004_5613);
        }
        assert_eq!(fourcc_name(MJPG), "MJPG");
        assert_eq!(fourcc_name(YUYV), "YUYV");
    }

    #[test]
    fn a_missing_camera_says_what_to_do() {
        let e = Camera::open(Path::new("/dev/video-none"), &CaptureOptions::default()).err().unwrap();
        let msg = format!("{e:#}");
        assert!(msg.contains("/dev/video-none") && msg.contains("ls /dev/video*"), "{msg}");
    }
}
