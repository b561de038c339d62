//! The tensor protocol's messages, shared by the client and `edgetpu serve`.
//!
//! Over a Unix stream socket, each message is
//!
//! ```text
//! u32 LE  length of the rest
//! u32 LE  length of the header
//! header  a JSON object
//! payload the rest (model bytes of an upload; empty otherwise)
//! ```
//!
//! A reply that hands over shared memory carries its descriptor (`SCM_RIGHTS`) on the message's
//! first bytes. Requests and replies:
//!
//! | request | reply |
//! |---|---|
//! | `{"op": "open", "model": NAME}` | `{"ok": true, "id": N, "size": BYTES, "inputs": [T...], "outputs": [T...]}` + descriptor |
//! | `{"op": "open"}` + model bytes as payload | the same |
//! | `{"op": "invoke", "id": N}` | `{"ok": true, "invoke_us": MICROSECONDS}` |
//! | `{"op": "close", "id": N}` | `{"ok": true}` |
//! | anything that fails | `{"ok": false, "error": TEXT}` |
//!
//! A tensor `T` is `{"name", "shape", "dtype", "scale", "zero_point", "offset", "len"}`: where its
//! bytes live in the shared memory. On invoke the server reads the inputs from there and writes
//! the outputs back before it replies; the client writes inputs and reads outputs in place, so a
//! frame never travels through the socket. `invoke_us` is the time the server spent inside the
//! interpreter's invoke for that request, so a client can tell the protocol's cost from the model's.

use serde_json::Value;
use std::io::{self, Read, Write};
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

/// Offsets of tensors in the shared memory are multiples of this.
pub const ALIGN: usize = 64;

/// One message.
#[derive(Debug, Default)]
pub struct Message {
    /// The JSON header.
    pub header: Value,
    /// The payload.
    pub payload: Vec<u8>,
    /// A descriptor that came with it.
    pub fd: Option<OwnedFd>,
}

fn encode(header: &Value, payload: &[u8]) -> io::Result<Vec<u8>> {
    let h = header.to_string().into_bytes();
    let rest = 4 + h.len() + payload.len();
    let rest32 = u32::try_from(rest).map_err(|_| io::Error::other("the message is larger than 4 GiB"))?;
    let mut out = Vec::with_capacity(4 + rest);
    out.extend_from_slice(&rest32.to_le_bytes());
    out.extend_from_slice(&(h.len() as u32).to_le_bytes());
    out.extend_from_slice(&h);
    out.extend_from_slice(payload);
    Ok(out)
}

/// Sends a message, with descriptor `fd` attached when given.
pub fn send(sock: &UnixStream, header: &Value, payload: &[u8], fd: Option<RawFd>) -> io::Result<()> {
    let bytes = encode(header, payload)?;
    match fd {
        Some(fd) => crate::sys::send_with_fd(sock, &bytes, fd),
        None => (&*sock).write_all(&bytes),
    }
}

/// [`recv`], after polling the socket without sleeping for up to `spin`: a reply or request
/// that arrives within `spin` is read without the wake-up of a blocking read.
pub fn recv_spinning(sock: &UnixStream, limit: usize, spin: std::time::Duration) -> io::Result<Message> {
    if !spin.is_zero() {
        crate::sys::spin_until_readable(sock, spin);
    }
    recv(sock, limit)
}

/// Receives a message of at most `limit` bytes. A larger one is an error (the connection cannot
/// go on after it: its end is not read).
pub fn recv(sock: &UnixStream, limit: usize) -> io::Result<Message> {
    let mut len = [0u8; 4];
    let fd = crate::sys::recv_with_fd(sock, &mut len)?;
    let rest = u32::from_le_bytes(len) as usize;
    if rest < 4 || rest > limit {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a {rest}-byte message (the limit is {limit} bytes, the least 4)"),
        ));
    }
    let mut body = vec![0u8; rest];
    (&*sock).read_exact(&mut body)?;
    parse_body(body, fd)
}

/// Decodes one whole message held in memory (its length prefix included), as [`recv`] reads it
/// from a socket: a message over `limit` bytes, a length that disagrees with `bytes`, an
/// oversized header or one that is not JSON is an error.
///
/// ```
/// let msg = edgetpu_client::wire::decode(b"\x08\x00\x00\x00\x02\x00\x00\x00{}xy", 1024).unwrap();
/// assert!(msg.header.is_object());
/// assert_eq!(msg.payload, b"xy");
/// assert!(edgetpu_client::wire::decode(b"\x08\x00\x00\x00\x09\x00\x00\x00{}xy", 1024).is_err());
/// ```
pub fn decode(bytes: &[u8], limit: usize) -> io::Result<Message> {
    let invalid = |msg: String| io::Error::new(io::ErrorKind::InvalidData, msg);
    let len: [u8; 4] = bytes
        .get(..4)
        .and_then(|l| l.try_into().ok())
        .ok_or_else(|| invalid(format!("a message of {} bytes has no length", bytes.len())))?;
    let rest = u32::from_le_bytes(len) as usize;
    if rest < 4 || rest > limit {
        return Err(invalid(format!("a {rest}-byte message (the limit is {limit} bytes, the least 4)")));
    }
    if bytes.len() - 4 != rest {
        return Err(invalid(format!("a {rest}-byte message in {} bytes", bytes.len() - 4)));
    }
    parse_body(bytes[4..].to_vec(), None)
}

/// The header and payload of a message body (`rest` bytes).
fn parse_body(mut body: Vec<u8>, fd: Option<OwnedFd>) -> io::Result<Message> {
    let rest = body.len();
    let hlen = match body.get(..4) {
        Some(&[a, b, c, d]) => u32::from_le_bytes([a, b, c, d]) as usize,
        _ => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("a {rest}-byte message has no header length"),
            ))
        }
    };
    if hlen > rest - 4 {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a {hlen}-byte header in a {rest}-byte message"),
        ));
    }
    let header = serde_json::from_slice(&body[4..4 + hlen])
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("the header is not JSON: {e}")))?;
    let payload = body.split_off(4 + hlen);
    Ok(Message { header, payload, fd })
}

/// Rounds `n` up to [`ALIGN`].
pub fn align(n: usize) -> Option<usize> {
    n.checked_add(ALIGN - 1).map(|v| v / ALIGN * ALIGN)
}
