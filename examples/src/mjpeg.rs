//! Motion JPEG: a stream of whole JPEG images, one per frame, as USB webcams send them and as
//! `.mjpeg` / `.mjpg` files store them (concatenated, with nothing or anything between frames).
//!
//! [`MjpegReader`] splits such a stream into frames by walking each JPEG's markers from its start
//! (SOI, `FF D8`) to its end (EOI, `FF D9`): segment lengths are skipped, so a thumbnail inside
//! an EXIF segment does not end a frame early, and bytes between frames (multipart headers of a
//! saved HTTP stream, say) are skipped. [`decode`] decodes a frame, adding the standard Huffman
//! tables that webcam frames often leave out.

use anyhow::{bail, Context, Result};
use edgetpu::vision::image::{self, codecs::jpeg::JpegEncoder, ImageFormat, RgbImage};
use std::borrow::Cow;
use std::io::Read;

/// A frame larger than this is taken for a broken stream.
pub const MAX_FRAME_BYTES: usize = 64 << 20;

/// How far a JPEG that starts at byte 0 of a buffer goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JpegEnd {
    /// It ends after this many bytes (EOI included).
    At(usize),
    /// The buffer ends inside it.
    NeedMore,
    /// The bytes are not a JPEG: what is wrong, and at which byte.
    Invalid(String),
}

/// Walks the markers of the JPEG at the start of `buf` (which must start with SOI) to its EOI.
pub fn jpeg_end(buf: &[u8]) -> JpegEnd {
    if buf.len() < 2 {
        return JpegEnd::NeedMore;
    }
    if buf[..2] != [0xFF, 0xD8] {
        return JpegEnd::Invalid("no SOI marker (FF D8) at byte 0".into());
    }
    let mut i = 2;
    loop {
        if i + 2 > buf.len() {
            return JpegEnd::NeedMore;
        }
        let (ff, m) = (buf[i], buf[i + 1]);
        if ff != 0xFF {
            return JpegEnd::Invalid(format!("byte {i}: {ff:#04x} where a marker (FF xx) should be"));
        }
        match m {
            0xFF => i += 1, // fill byte before a marker
            0xD9 => return JpegEnd::At(i + 2),
            0xD8 => return JpegEnd::Invalid(format!("byte {i}: a second SOI marker inside the frame")),
            0x01 | 0xD0..=0xD7 => i += 2, // markers without a length
            _ => {
                let Some(len) = buf.get(i + 2..i + 4).map(|b| u16::from_be_bytes([b[0], b[1]]) as usize) else {
                    return JpegEnd::NeedMore;
                };
                if len < 2 {
                    return JpegEnd::Invalid(format!("byte {i}: marker FF {m:02X} has length {len}"));
                }
                i += 2 + len;
                if m == 0xDA {
                    // Start of scan: entropy-coded data, in which FF is followed by 00 (a stuffed
                    // FF) or a restart marker, until the next real marker.
                    match scan_end(buf, i) {
                        Some(end) => i = end,
                        None => return JpegEnd::NeedMore,
                    }
                }
            }
        }
    }
}

/// The position of the first marker after entropy-coded data starting at `from`, or `None` when
/// the buffer ends first.
fn scan_end(buf: &[u8], from: usize) -> Option<usize> {
    let mut i = from;
    loop {
        let j = i + buf.get(i..)?.iter().position(|&b| b == 0xFF)?;
        match *buf.get(j + 1)? {
            0x00 | 0xD0..=0xD7 => i = j + 2,
            _ => return Some(j),
        }
    }
}

/// Splits a Motion JPEG stream into frames (see the module documentation).
pub struct MjpegReader<R> {
    inner: R,
    buf: Vec<u8>,
    eof: bool,
    offset: u64,
    frames: usize,
    skipped: u64,
}

impl<R: Read> MjpegReader<R> {
    /// A reader over `inner` (buffer it if it is a file: reads are 64 KiB at a time anyway).
    pub fn new(inner: R) -> Self {
        MjpegReader { inner, buf: Vec::new(), eof: false, offset: 0, frames: 0, skipped: 0 }
    }

    /// Frames returned so far.
    pub fn frames(&self) -> usize {
        self.frames
    }

    /// Bytes skipped so far: between frames, and frames that were not valid JPEG.
    pub fn skipped_bytes(&self) -> u64 {
        self.skipped
    }

    /// The next frame's bytes (one whole JPEG), or `None` at the end of the stream. A stream
    /// that ends inside a frame is an error naming the byte offset where that frame started.
    pub fn next_frame(&mut self) -> Result<Option<Vec<u8>>> {
        loop {
            // Drop what comes before the next SOI.
            match self.buf.windows(2).position(|w| w == [0xFF, 0xD8]) {
                Some(0) => {}
                Some(k) => self.skip(k),
                None => {
                    // Keep a last FF: it may start an SOI.
                    let keep = usize::from(self.buf.last() == Some(&0xFF));
                    self.skip(self.buf.len() - keep);
                    if self.eof {
                        self.skip(self.buf.len());
                        return Ok(None);
                    }
                    self.fill()?;
                    continue;
                }
            }
            match jpeg_end(&self.buf) {
                JpegEnd::At(n) => {
                    let frame: Vec<u8> = self.buf.drain(..n).collect();
                    self.offset += n as u64;
                    self.frames += 1;
                    return Ok(Some(frame));
                }
                // Not a JPEG after all: skip its SOI and look for the next one.
                JpegEnd::Invalid(_) => self.skip(2),
                JpegEnd::NeedMore if self.eof => bail!(
                    "the stream ends inside frame {} (which starts at byte {}, {} bytes read of it): the file is cut short",
                    self.frames,
                    self.offset,
                    self.buf.len()
                ),
                JpegEnd::NeedMore if self.buf.len() > MAX_FRAME_BYTES => bail!(
                    "frame {} (at byte {}) is larger than {} MiB: this is not a Motion JPEG stream",
                    self.frames,
                    self.offset,
                    MAX_FRAME_BYTES >> 20
                ),
                JpegEnd::NeedMore => self.fill()?,
            }
        }
    }

    fn skip(&mut self, n: usize) {
        self.buf.drain(..n);
        self.offset += n as u64;
        self.skipped += n as u64;
    }

    fn fill(&mut self) -> Result<()> {
        let mut chunk = [0u8; 64 * 1024];
        let n = loop {
            match self.inner.read(&mut chunk) {
                Ok(n) => break n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e).context(format!("reading the Motion JPEG stream at byte {}", self.offset)),
            }
        };
        self.eof = n == 0;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(())
    }
}

/// Whether a JPEG defines Huffman tables (a DHT marker before its first scan).
pub fn has_huffman_tables(jpeg: &[u8]) -> bool {
    let mut i = 2;
    while i + 4 <= jpeg.len() && jpeg[i] == 0xFF {
        match jpeg[i + 1] {
            0xC4 => return true,
            0xDA | 0xD9 => return false,
            0xFF => i += 1,
            0x01 | 0xD0..=0xD7 => i += 2,
            _ => i += 2 + u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]) as usize,
        }
    }
    false
}

/// `jpeg` as a decoder takes it: webcam (Motion JPEG) frames often omit the Huffman tables and
/// rely on the standard ones (JPEG Annex K.3, as the OpenDML AVI format prescribes). For such a
/// frame an `AVI1` APP0 segment is put after SOI, which tells the decoder to use those tables.
pub fn with_standard_tables(jpeg: &[u8]) -> Cow<'_, [u8]> {
    if jpeg.len() < 2 || has_huffman_tables(jpeg) {
        return Cow::Borrowed(jpeg);
    }
    let mut out = Vec::with_capacity(jpeg.len() + 9);
    out.extend_from_slice(&jpeg[..2]);
    out.extend_from_slice(&[0xFF, 0xE0, 0x00, 0x07, b'A', b'V', b'I', b'1', 0x00]);
    out.extend_from_slice(&jpeg[2..]);
    Cow::Owned(out)
}

/// Decodes one Motion JPEG frame to RGB.
pub fn decode(jpeg: &[u8]) -> Result<RgbImage> {
    let data = with_standard_tables(jpeg);
    let img = image::load_from_memory_with_format(&data, ImageFormat::Jpeg).context("decoding a JPEG frame")?;
    Ok(img.to_rgb8())
}

/// Encodes an RGB image as JPEG at `quality` (1..=100).
pub fn encode(img: &RgbImage, quality: u8) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    JpegEncoder::new_with_quality(&mut out, quality.clamp(1, 100))
        .encode_image(img)
        .context("encoding a JPEG frame")?;
    Ok(out)
}
