//! A Motion JPEG stream over HTTP: every client that asks for `/` gets
//! `multipart/x-mixed-replace`, one JPEG part per published frame, which browsers show as live
//! video (`http://127.0.0.1:8080/`).
//!
//! One thread accepts connections and one serves each client (at most [`MAX_CLIENTS`]); a client
//! that falls behind skips to the newest frame instead of queueing old ones.

use anyhow::{Context, Result};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::Duration;

/// Clients served at once; more are answered `503` and closed.
pub const MAX_CLIENTS: usize = 8;

/// The multipart boundary between frames.
pub const BOUNDARY: &str = "edgetpu-frame";

struct Shared {
    /// The newest frame and its sequence number (0: none yet).
    latest: Mutex<(u64, Arc<Vec<u8>>)>,
    fresh: Condvar,
    stop: AtomicBool,
    clients: AtomicUsize,
}

impl Shared {
    fn latest(&self) -> MutexGuard<'_, (u64, Arc<Vec<u8>>)> {
        // A client thread cannot panic while holding the lock; recover the data if one did.
        self.latest.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Serves published JPEG frames as a Motion JPEG stream until dropped.
pub struct MjpegServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    acceptor: Option<JoinHandle<()>>,
}

impl MjpegServer {
    /// Listens on `addr` (e.g. `127.0.0.1:8080`; port 0 picks a free one, see [`Self::local_addr`]).
    pub fn bind(addr: impl ToSocketAddrs + std::fmt::Debug) -> Result<MjpegServer> {
        let listener = TcpListener::bind(&addr).with_context(|| {
            format!("listening on {addr:?}: is the port in use? pick another with --http ADDR:PORT")
        })?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            latest: Mutex::new((0, Arc::new(Vec::new()))),
            fresh: Condvar::new(),
            stop: AtomicBool::new(false),
            clients: AtomicUsize::new(0),
        });
        let s = shared.clone();
        let acceptor = std::thread::Builder::new()
            .name("mjpeg-accept".into())
            .spawn(move || accept(listener, s))
            .context("starting the HTTP server thread")?;
        Ok(MjpegServer { addr, shared, acceptor: Some(acceptor) })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// Clients connected now.
    pub fn clients(&self) -> usize {
        self.shared.clients.load(Ordering::SeqCst)
    }

    /// Makes `jpeg` the frame every client gets next.
    pub fn publish(&self, jpeg: Vec<u8>) {
        let mut latest = self.shared.latest();
        *latest = (latest.0 + 1, Arc::new(jpeg));
        self.shared.fresh.notify_all();
    }
}

impl Drop for MjpegServer {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        self.shared.fresh.notify_all();
        // Wake the acceptor, blocked in accept(), with a connection of our own.
        let mut wake = self.addr;
        if wake.ip().is_unspecified() {
            wake.set_ip(std::net::Ipv4Addr::LOCALHOST.into());
        }
        let _ = TcpStream::connect_timeout(&wake, Duration::from_secs(1));
        if let Some(h) = self.acceptor.take() {
            let _ = h.join();
        }
    }
}

fn accept(listener: TcpListener, shared: Arc<Shared>) {
    for stream in listener.incoming() {
        if shared.stop.load(Ordering::SeqCst) {
            break;
        }
        let Ok(stream) = stream else { continue };
        let s = shared.clone();
        if s.clients.fetch_add(1, Ordering::SeqCst) >= MAX_CLIENTS {
            s.clients.fetch_sub(1, Ordering::SeqCst);
            let _ = respond(&stream, "503 Service Unavailable", "too many clients\n");
            continue;
        }
        let spawned = std::thread::Builder::new().name("mjpeg-client".into()).spawn(move || {
            // A client that goes away ends its thread: the error has no one to go to.
            let _ = serve(stream, &s);
            s.clients.fetch_sub(1, Ordering::SeqCst);
        });
        if spawned.is_err() {
            shared.clients.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

fn respond(mut stream: &TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    write!(
        stream,
        "HTTP/1.0 {status}\r\nContent-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

fn serve(stream: TcpStream, shared: &Shared) -> std::io::Result<()> {
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    stream.set_write_timeout(Some(Duration::from_secs(10)))?;
    // The request line, then headers up to the blank line (bounded, so a client cannot make us
    // read forever).
    let mut reader = BufReader::new(&stream);
    let mut request = String::new();
    reader.by_ref().take(8192).read_line(&mut request)?;
    let mut line = String::new();
    for _ in 0..100 {
        line.clear();
        if reader.by_ref().take(8192).read_line(&mut line)? == 0 || line.trim().is_empty() {
            break;
        }
    }
    let path = request.split_whitespace().nth(1).unwrap_or("");
    if !request.starts_with("GET ") || !(path == "/" || path.starts_with("/?") || path == "/stream") {
        return respond(&stream, "404 Not Found", "the stream is at /\n");
    }
    let mut out = &stream;
    write!(
        out,
        "HTTP/1.0 200 OK\r\nContent-Type: multipart/x-mixed-replace; boundary={BOUNDARY}\r\n\
         Cache-Control: no-cache, no-store\r\nPragma: no-cache\r\nConnection: close\r\n\r\n"
    )?;
    let mut seen = 0;
    loop {
        let frame = {
            let mut latest = shared.latest();
            while latest.0 == seen && !shared.stop.load(Ordering::SeqCst) {
                latest = shared
                    .fresh
                    .wait_timeout(latest, Duration::from_millis(500))
                    .map_or_else(|e| e.into_inner().0, |r| r.0);
            }
            if shared.stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            seen = latest.0;
            latest.1.clone()
        };
        write!(out, "--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n", frame.len())?;
        out.write_all(&frame)?;
        out.write_all(b"\r\n")?;
        out.flush()?;
    }
}
