//! A small HTTP/1.1 file server on 127.0.0.1 for tests of downloads (feature `test-server`).
//!
//! It serves fixed files by path, honours `Range: bytes=N-` with `206 Partial Content`, can cut a
//! body short to imitate a dropped connection, and records every request's path and `Range`
//! header. It answers one connection at a time and stops when dropped (or after 60 s).

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How the server answers for one file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Whole file with `200`, or the range asked for with `206`.
    Normal,
    /// A request without `Range` announces the whole length but gets only the first `n` bytes,
    /// then the connection closes; a range request is answered normally.
    CutAfter(usize),
    /// Ignores `Range`: always the whole file with `200`.
    IgnoreRange,
}

/// One request the server received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seen {
    /// The request path, e.g. `/m.tflite`.
    pub path: String,
    /// The `Range` header, if any.
    pub range: Option<String>,
}

/// A running server; see the [module documentation](self).
pub struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Seen>>>,
    thread: Option<JoinHandle<()>>,
}

type Files = Vec<(String, Vec<u8>, Behaviour)>;

impl Server {
    /// Serves `files` (path without the leading `/`, contents, behaviour) on a free port.
    pub fn start(files: Vec<(String, Vec<u8>, Behaviour)>) -> std::io::Result<Server> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        listener.set_nonblocking(true)?;
        let port = listener.local_addr()?.port();
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (stopped, log) = (Arc::clone(&stop), Arc::clone(&seen));
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            while !stopped.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => serve(stream, &files, &log),
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
        });
        Ok(Server { port, stop, seen, thread: Some(thread) })
    }

    /// `http://127.0.0.1:PORT` (no trailing slash): the base URL of the files.
    pub fn base_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// The URL of `path`.
    pub fn url(&self, path: &str) -> String {
        format!("{}/{}", self.base_url(), path.trim_start_matches('/'))
    }

    /// The requests received so far, in order.
    pub fn requests(&self) -> Vec<Seen> {
        self.seen.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut stream: TcpStream, files: &Files, log: &Mutex<Vec<Seen>>) {
    if stream.set_nonblocking(false).is_err() || stream.set_read_timeout(Some(Duration::from_secs(5))).is_err() {
        return;
    }
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => return,
        }
    }
    let head = String::from_utf8_lossy(&head);
    let path = head.split(' ').nth(1).unwrap_or("").to_string();
    let range = head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim().eq_ignore_ascii_case("range").then(|| v.trim().to_string())
    });
    if let Ok(mut s) = log.lock() {
        s.push(Seen { path: path.clone(), range: range.clone() });
    }
    let found = files.iter().find(|(p, _, _)| format!("/{p}") == path);
    let _ = match found {
        None => stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
        Some((_, data, behaviour)) => answer(&mut stream, data, *behaviour, range.as_deref()),
    };
    let _ = stream.flush();
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

fn answer(stream: &mut TcpStream, data: &[u8], behaviour: Behaviour, range: Option<&str>) -> std::io::Result<()> {
    let first = range
        .filter(|_| behaviour != Behaviour::IgnoreRange)
        .and_then(|r| r.strip_prefix("bytes="))
        .and_then(|r| r.strip_suffix('-'))
        .and_then(|n| n.parse::<usize>().ok());
    match first {
        Some(first) if first >= data.len() => write!(
            stream,
            "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{}\r\nContent-Length: 0\r\nConnection: \
             close\r\n\r\n",
            data.len()
        ),
        Some(first) => {
            write!(
                stream,
                "HTTP/1.1 206 Partial Content\r\nContent-Range: bytes {first}-{}/{}\r\nContent-Length: {}\r\n\
                 Connection: close\r\n\r\n",
                data.len() - 1,
                data.len(),
                data.len() - first
            )?;
            stream.write_all(&data[first..])
        }
        None => {
            write!(stream, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", data.len())?;
            match behaviour {
                Behaviour::CutAfter(n) => stream.write_all(&data[..n.min(data.len())]),
                _ => stream.write_all(data),
            }
        }
    }
}
