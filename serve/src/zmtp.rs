//! The ZeroMQ wire protocol (ZMTP 3.0/3.1, NULL security) on one stream connection, as the
//! ROUTER side of a REQ or DEALER peer: what Frigate's `zmq` detector speaks.
//!
//! A connection starts with a 64-byte greeting each way (signature `FF … 7F`, version 3, the
//! mechanism `NULL`), then a READY command each way carrying the socket type. After that both
//! sides exchange frames: a flags byte (bit 0 more frames follow, bit 1 a long 8-byte size, bit 2 a
//! command), the size, the body. A REQ peer starts each request with an empty delimiter frame,
//! and expects it back before the reply. Every size and every value the peer sends is checked
//! against limits before anything is allocated for it.

use std::io::{self, Read, Write};

/// What went wrong on a connection.
#[derive(Debug, thiserror::Error)]
pub enum ZmtpError {
    /// The stream failed or closed.
    #[error("connection: {0}")]
    Io(#[from] io::Error),
    /// The peer broke the protocol.
    #[error("ZMTP protocol error: {0}")]
    Protocol(String),
    /// A message larger than the limit.
    #[error("a message of more than {limit} bytes (the server's limit)")]
    TooLarge {
        /// The limit in bytes.
        limit: usize,
    },
}

fn protocol(what: impl Into<String>) -> ZmtpError {
    ZmtpError::Protocol(what.into())
}

/// Our greeting: signature, version 3.1, mechanism NULL, as-server 1, filler.
fn greeting() -> [u8; 64] {
    let mut g = [0u8; 64];
    g[0] = 0xFF;
    g[8] = 0x01;
    g[9] = 0x7F;
    g[10] = 3;
    g[11] = 1;
    g[12..16].copy_from_slice(b"NULL");
    g[32] = 1;
    g
}

/// Encodes a READY command announcing `socket_type`.
fn ready(socket_type: &str) -> Vec<u8> {
    let mut body = vec![5];
    body.extend_from_slice(b"READY");
    body.push(11);
    body.extend_from_slice(b"Socket-Type");
    body.extend_from_slice(&(socket_type.len() as u32).to_be_bytes());
    body.extend_from_slice(socket_type.as_bytes());
    let mut frame = vec![0x04, body.len() as u8];
    frame.extend_from_slice(&body);
    frame
}

/// The properties of a READY command body (after the name), checked.
fn parse_ready(body: &[u8]) -> Result<Vec<(String, Vec<u8>)>, ZmtpError> {
    let rest = body.strip_prefix(b"\x05READY").ok_or_else(|| protocol("the first command is not READY"))?;
    let mut props = Vec::new();
    let mut at = 0;
    while at < rest.len() {
        let n = rest[at] as usize;
        let name = rest.get(at + 1..at + 1 + n).ok_or_else(|| protocol("a READY property name runs past the end"))?;
        at += 1 + n;
        let len = rest.get(at..at + 4).ok_or_else(|| protocol("a READY property has no value length"))?;
        let len = u32::from_be_bytes([len[0], len[1], len[2], len[3]]) as usize;
        at += 4;
        let value =
            rest.get(at..at.saturating_add(len)).ok_or_else(|| protocol("a READY property value runs past the end"))?;
        at += len;
        props.push((String::from_utf8_lossy(name).into_owned(), value.to_vec()));
    }
    Ok(props)
}

/// One frame as read.
struct Frame {
    more: bool,
    command: bool,
    body: Vec<u8>,
}

/// A ZMTP connection on a stream, after the handshake.
pub struct Connection<S: Read + Write> {
    stream: S,
    /// The peer's socket type (`REQ`, `DEALER`, ...).
    pub peer_type: String,
    /// Largest message (sum of its frames) accepted.
    limit: usize,
    /// This end is a REQ socket: its messages start with the empty delimiter.
    req: bool,
}

impl<S: Read + Write> Connection<S> {
    /// Runs the greeting and the NULL handshake as a ROUTER. Refuses a peer that is not ZMTP 3,
    /// asks for another mechanism, or whose socket type cannot talk to a ROUTER.
    pub fn accept(mut stream: S, limit: usize) -> Result<Connection<S>, ZmtpError> {
        stream.write_all(&greeting())?;
        stream.flush()?;
        let mut peer = [0u8; 64];
        stream.read_exact(&mut peer)?;
        if peer[0] != 0xFF || peer[9] != 0x7F {
            return Err(protocol("the peer's greeting has no ZMTP signature"));
        }
        if peer[10] < 3 {
            return Err(protocol(format!("the peer speaks ZMTP {}.{}, this server 3.x", peer[10], peer[11])));
        }
        let mechanism = &peer[12..32];
        if mechanism.iter().take_while(|&&b| b != 0).copied().collect::<Vec<_>>() != b"NULL" {
            return Err(protocol("the peer asks for a security mechanism other than NULL"));
        }
        stream.write_all(&ready("ROUTER"))?;
        stream.flush()?;
        let mut conn = Connection { stream, peer_type: String::new(), limit, req: false };
        let f = conn.read_frame(1024)?;
        if !f.command {
            return Err(protocol("the peer sent a message before its READY command"));
        }
        let props = parse_ready(&f.body)?;
        let peer_type = props
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("Socket-Type"))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .ok_or_else(|| protocol("the peer's READY has no Socket-Type"))?;
        if !matches!(peer_type.as_str(), "REQ" | "DEALER" | "ROUTER") {
            return Err(protocol(format!("a {peer_type} socket cannot talk to this ROUTER (use REQ or DEALER)")));
        }
        conn.peer_type = peer_type;
        Ok(conn)
    }

    /// The client side of a REQ socket (for benchmarks and tests of this server): the greeting
    /// and NULL handshake announcing `REQ`; messages then carry REQ's empty delimiter.
    pub fn connect_req(mut stream: S, limit: usize) -> Result<Connection<S>, ZmtpError> {
        let mut g = greeting();
        g[32] = 0; // as-server: no
        stream.write_all(&g)?;
        stream.write_all(&ready("REQ"))?;
        stream.flush()?;
        let mut peer = [0u8; 64];
        stream.read_exact(&mut peer)?;
        if peer[0] != 0xFF || peer[9] != 0x7F {
            return Err(protocol("the peer's greeting has no ZMTP signature"));
        }
        let mut conn = Connection { stream, peer_type: String::new(), limit, req: true };
        let f = conn.read_frame(1024)?;
        let props = parse_ready(&f.body)?;
        conn.peer_type = props
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("Socket-Type"))
            .map(|(_, v)| String::from_utf8_lossy(v).into_owned())
            .ok_or_else(|| protocol("the peer's READY has no Socket-Type"))?;
        Ok(conn)
    }

    fn read_frame(&mut self, limit: usize) -> Result<Frame, ZmtpError> {
        let mut flags = [0u8; 1];
        self.stream.read_exact(&mut flags)?;
        let flags = flags[0];
        if flags & !0x07 != 0 {
            return Err(protocol(format!("a frame with reserved flag bits set ({flags:#04x})")));
        }
        let size = if flags & 0x02 != 0 {
            let mut b = [0u8; 8];
            self.stream.read_exact(&mut b)?;
            u64::from_be_bytes(b)
        } else {
            let mut b = [0u8; 1];
            self.stream.read_exact(&mut b)?;
            u64::from(b[0])
        };
        let size = usize::try_from(size).ok().filter(|&s| s <= limit).ok_or(ZmtpError::TooLarge { limit })?;
        let mut body = vec![0u8; size];
        self.stream.read_exact(&mut body)?;
        Ok(Frame { more: flags & 0x01 != 0, command: flags & 0x04 != 0, body })
    }

    /// Reads the next message: its frames, without a REQ peer's empty delimiter. Answers PING
    /// commands (heartbeats) and skips other commands.
    pub fn recv(&mut self) -> Result<Vec<Vec<u8>>, ZmtpError> {
        loop {
            let mut frames = Vec::new();
            let mut total = 0usize;
            loop {
                let f = self.read_frame(self.limit.saturating_sub(total))?;
                if f.command {
                    if f.body.starts_with(b"\x04PING") {
                        self.pong(&f.body)?;
                    }
                    if frames.is_empty() {
                        break;
                    }
                    return Err(protocol("a command in the middle of a message"));
                }
                total += f.body.len();
                frames.push(f.body);
                if !f.more {
                    break;
                }
            }
            if frames.is_empty() {
                continue;
            }
            if self.peer_type == "REQ" || self.req {
                if !frames[0].is_empty() {
                    return Err(protocol("a REQ message without its empty delimiter frame"));
                }
                frames.remove(0);
            }
            return Ok(frames);
        }
    }

    fn pong(&mut self, ping: &[u8]) -> Result<(), ZmtpError> {
        // PING: name, 2-byte TTL, context (up to 16 bytes); PONG echoes the context.
        let context = ping.get(7..).unwrap_or(&[]);
        let context = &context[..context.len().min(16)];
        let mut body = b"\x04PONG".to_vec();
        body.extend_from_slice(context);
        let mut frame = vec![0x04, body.len() as u8];
        frame.extend_from_slice(&body);
        self.stream.write_all(&frame)?;
        self.stream.flush()?;
        Ok(())
    }

    /// Sends a message (a REQ peer gets its empty delimiter first).
    pub fn send(&mut self, frames: &[&[u8]]) -> Result<(), ZmtpError> {
        let mut out = Vec::new();
        let delimiter: &[&[u8]] = if self.peer_type == "REQ" || self.req { &[&[]] } else { &[] };
        let all: Vec<&[u8]> = delimiter.iter().chain(frames).copied().collect();
        for (i, f) in all.iter().enumerate() {
            let more = u8::from(i + 1 < all.len());
            if f.len() > 255 {
                out.push(more | 0x02);
                out.extend_from_slice(&(f.len() as u64).to_be_bytes());
            } else {
                out.push(more);
                out.push(f.len() as u8);
            }
            out.extend_from_slice(f);
        }
        self.stream.write_all(&out)?;
        self.stream.flush()?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;

    /// A stream that plays back `input` and keeps what is written.
    struct Pipe {
        input: VecDeque<u8>,
        output: Vec<u8>,
    }

    impl Read for Pipe {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = buf.len().min(self.input.len());
            for b in buf.iter_mut().take(n) {
                *b = self.input.pop_front().unwrap_or(0);
            }
            Ok(n)
        }
    }

    impl Write for Pipe {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.output.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    fn peer_handshake(socket_type: &str) -> Vec<u8> {
        let mut v = greeting().to_vec();
        v[32] = 0;
        v.extend_from_slice(&ready(socket_type));
        v
    }

    #[test]
    fn a_req_peer_is_accepted_and_its_delimiter_stripped_and_restored() {
        let mut input = peer_handshake("REQ");
        // [delimiter, "hello", 300 bytes]
        input.extend_from_slice(&[0x01, 0x00, 0x01, 5]);
        input.extend_from_slice(b"hello");
        input.extend_from_slice(&[0x02]);
        input.extend_from_slice(&300u64.to_be_bytes());
        input.extend_from_slice(&[7u8; 300]);
        let pipe = Pipe { input: input.into(), output: Vec::new() };
        let mut c = Connection::accept(pipe, 1 << 20).unwrap();
        assert_eq!(c.peer_type, "REQ");
        let m = c.recv().unwrap();
        assert_eq!(m, [b"hello".to_vec(), vec![7u8; 300]]);
        c.send(&[b"ok"]).unwrap();
        let out = &c.stream.output;
        assert_eq!(&out[..64], &greeting());
        // The delimiter (more), then "ok".
        assert_eq!(&out[out.len() - 6..], &[0x01, 0x00, 0x00, 2, b'o', b'k']);
    }

    #[test]
    fn hostile_peers_get_errors_not_allocations() {
        // A frame claiming 2^62 bytes is refused before any allocation.
        let mut input = peer_handshake("REQ");
        input.push(0x02);
        input.extend_from_slice(&(1u64 << 62).to_be_bytes());
        let mut c = Connection::accept(Pipe { input: input.into(), output: Vec::new() }, 1 << 20).unwrap();
        assert!(matches!(c.recv(), Err(ZmtpError::TooLarge { .. })));
        // No signature, a PUB socket, another mechanism, a truncated READY.
        let mut bad = greeting().to_vec();
        bad[0] = 0;
        assert!(Connection::accept(Pipe { input: bad.into(), output: Vec::new() }, 1024).is_err());
        assert!(Connection::accept(Pipe { input: peer_handshake("PUB").into(), output: Vec::new() }, 1024).is_err());
        let mut plain = peer_handshake("REQ");
        plain[12..17].copy_from_slice(b"PLAIN");
        assert!(Connection::accept(Pipe { input: plain.into(), output: Vec::new() }, 1024).is_err());
        let mut short = greeting().to_vec();
        short.extend_from_slice(&[0x04, 20, 5, b'R', b'E', b'A', b'D', b'Y', 11]);
        assert!(Connection::accept(Pipe { input: short.into(), output: Vec::new() }, 1024).is_err());
    }
}
