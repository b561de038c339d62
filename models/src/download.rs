//! HTTP(S) download into a file: resumable, checked, written atomically.
//!
//! [`download`] streams the body into `<dest>.part` beside the destination. With
//! [`Request::resume`], a `.part` file left by an earlier, interrupted download is continued with
//! an HTTP `Range` request (a server that ignores the range sends the whole file, which then
//! replaces the part). When the body is complete, its sha256 is checked if one is expected (a
//! mismatch deletes the part), and the part is renamed to the destination, so the destination is
//! either absent, the old file, or the whole new one.
//!
//! Two processes fetching the same file into the same directory at the same time share one
//! `.part` file; the checksum then fails and the second attempt starts afresh.

use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// What to download and how to check it.
#[derive(Debug, Clone)]
pub struct Request<'a> {
    /// Where from (`http://` or `https://`).
    pub url: &'a str,
    /// The file to create or replace.
    pub dest: &'a Path,
    /// The expected sha256, lower-case hex; `None` accepts any content.
    pub sha256: Option<&'a str>,
    /// The expected size in bytes, if known: a `.part` file that already has this size is
    /// checked without a request, and a longer one is discarded.
    pub size: Option<u64>,
    /// Refuse a body larger than this many bytes.
    pub max_bytes: Option<u64>,
    /// Keep the `.part` file when the transfer breaks off and continue it next time. Without it,
    /// a failed download leaves nothing behind and an old `.part` file is discarded.
    pub resume: bool,
}

/// How far a download is, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// Bytes in the part file so far (including those of an earlier, resumed attempt).
    pub done: u64,
    /// The whole file's size, when the server or the request says it.
    pub total: Option<u64>,
    /// Bytes already present when this attempt started (0 for a fresh download).
    pub resumed_from: u64,
}

/// A completed download.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Downloaded {
    /// Size of the file written.
    pub bytes: u64,
    /// Its sha256, lower-case hex.
    pub sha256: String,
    /// Bytes taken over from an earlier, interrupted download (0 when none were).
    pub resumed_from: u64,
}

/// Why a download failed. Each message names the URL or the path.
#[derive(Debug, thiserror::Error)]
pub enum DownloadError {
    /// The server could not be reached at all (no route, DNS failure, connection refused):
    /// usually no network connection.
    #[error("cannot reach {url} ({detail})")]
    Unreachable {
        /// The URL asked for.
        url: String,
        /// What the connection attempt reported.
        detail: String,
    },
    /// The server answered with an error status.
    #[error("{url} answered HTTP {code} {text}")]
    Status {
        /// The URL asked for.
        url: String,
        /// The HTTP status code.
        code: u16,
        /// The status text.
        text: String,
    },
    /// The body ended or failed before it was complete.
    #[error("the download from {url} broke off after {received} of {} bytes ({detail})", total.map_or_else(|| "?".to_string(), |t| t.to_string()))]
    BrokeOff {
        /// The URL asked for.
        url: String,
        /// Bytes received in all (including a resumed part).
        received: u64,
        /// The whole file's size, if the server said it.
        total: Option<u64>,
        /// What the transfer reported.
        detail: String,
        /// Whether the bytes received were kept in the `.part` file for a later resume.
        kept: bool,
    },
    /// The file arrived whole, but its sha256 is not the expected one; nothing was kept.
    #[error("the file from {url} has sha256 {actual} ({size} bytes), expected {expected}")]
    Checksum {
        /// The URL asked for.
        url: String,
        /// The expected sha256.
        expected: String,
        /// The sha256 of what arrived.
        actual: String,
        /// Bytes received.
        size: u64,
    },
    /// The server offered or sent more bytes than [`Request::max_bytes`].
    #[error("{url} sent more than {limit} bytes, more than the file can be")]
    TooLarge {
        /// The URL asked for.
        url: String,
        /// The limit.
        limit: u64,
    },
    /// The server's answer made no sense (e.g. a partial response for other bytes than asked).
    #[error("{url}: {detail}")]
    Protocol {
        /// The URL asked for.
        url: String,
        /// What was wrong.
        detail: String,
    },
    /// Any other transport failure (TLS, bad URL, too many redirects...).
    #[error("downloading {url} failed: {detail}")]
    Transport {
        /// The URL asked for.
        url: String,
        /// What the client reported.
        detail: String,
    },
    /// Reading or writing a local file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
}

impl DownloadError {
    /// The URL the error is about, if it is about one.
    pub fn url(&self) -> Option<&str> {
        match self {
            DownloadError::Unreachable { url, .. }
            | DownloadError::Status { url, .. }
            | DownloadError::BrokeOff { url, .. }
            | DownloadError::Checksum { url, .. }
            | DownloadError::TooLarge { url, .. }
            | DownloadError::Protocol { url, .. }
            | DownloadError::Transport { url, .. } => Some(url),
            DownloadError::Io { .. } => None,
        }
    }
}

/// Lower-case hex sha256 of `data`.
pub fn sha256_hex(data: &[u8]) -> String {
    hex(&Sha256::digest(data))
}

/// Lower-case hex sha256 of the file at `path`, read in chunks.
pub fn sha256_file(path: &Path) -> std::io::Result<String> {
    let mut file = File::open(path)?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match file.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => hasher.update(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(hex(&hasher.finalize()))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The partial file of a download into `dest`: `dest` with `.part` appended to its name.
pub fn part_path(dest: &Path) -> PathBuf {
    let mut name = dest.file_name().map(|n| n.to_os_string()).unwrap_or_default();
    name.push(".part");
    dest.with_file_name(name)
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> DownloadError + '_ {
    move |source| DownloadError::Io { path: path.to_path_buf(), source }
}

fn remove(path: &Path) {
    // The file may not exist; nothing else can be done about a failure here.
    let _ = std::fs::remove_file(path);
}

/// Downloads `req.url` into `req.dest` (see the [module documentation](self)), calling
/// `progress` as bytes arrive.
pub fn download(req: &Request<'_>, progress: &mut dyn FnMut(Progress)) -> Result<Downloaded, DownloadError> {
    let part = part_path(req.dest);
    if let Some(dir) = req.dest.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let mut have = if req.resume { std::fs::metadata(&part).map_or(0, |m| m.len()) } else { 0 };
    if !req.resume || req.size.is_some_and(|size| have > size) {
        remove(&part);
        have = 0;
    }
    if have > 0 && Some(have) == req.size {
        // An earlier attempt received everything but did not finish: check it as it is.
        progress(Progress { done: have, total: req.size, resumed_from: have });
        return finish(req, &part, have);
    }
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(15))
        .timeout_read(Duration::from_secs(30))
        .build();
    let (response, start, total) = match open(&agent, req, have) {
        Ok(r) => r,
        Err(Retry::FromScratch) => {
            // 416: the part does not fit the file on the server (it changed, or the part is
            // already complete but unchecked). Start again.
            remove(&part);
            match open(&agent, req, 0) {
                Ok(r) => r,
                Err(Retry::FromScratch) => {
                    return Err(DownloadError::Protocol {
                        url: req.url.to_string(),
                        detail: "the server refused a request for the whole file as out of range (HTTP 416)".into(),
                    })
                }
                Err(Retry::Fail(e)) => return Err(e),
            }
        }
        Err(Retry::Fail(e)) => return Err(e),
    };
    let total = total.or(req.size);
    if let (Some(limit), Some(t)) = (req.max_bytes, total) {
        if t > limit {
            remove(&part);
            return Err(DownloadError::TooLarge { url: req.url.to_string(), limit });
        }
    }
    let mut file = if start == 0 { File::create(&part) } else { OpenOptions::new().append(true).open(&part) }
        .map_err(io_err(&part))?;
    // `start` is 0 unless the server sent the rest of the part (206).
    let received = copy_body(req, response.into_reader(), &mut file, &part, start, total, progress);
    let done = match received {
        Ok(done) => done,
        Err(e) => {
            drop(file);
            if !req.resume || !matches!(e, DownloadError::BrokeOff { .. }) {
                remove(&part);
            }
            return Err(e);
        }
    };
    file.sync_all().map_err(io_err(&part))?;
    drop(file);
    if let Some(t) = total.filter(|&t| t != done) {
        let short = done < t;
        if !(req.resume && short) {
            remove(&part);
        }
        return Err(DownloadError::BrokeOff {
            url: req.url.to_string(),
            received: done,
            total: Some(t),
            detail: if short { "the connection closed early" } else { "more bytes than announced" }.into(),
            kept: req.resume && short,
        });
    }
    finish(req, &part, start)
}

/// Streams the body into `file`, after the `start` bytes already there; returns the part's new
/// length.
fn copy_body(
    req: &Request<'_>,
    mut body: impl Read,
    file: &mut File,
    part: &Path,
    start: u64,
    total: Option<u64>,
    progress: &mut dyn FnMut(Progress),
) -> Result<u64, DownloadError> {
    let resumed_from = start;
    let mut done = start;
    let mut chunk = vec![0u8; 64 * 1024];
    progress(Progress { done, total, resumed_from });
    loop {
        let n = match body.read(&mut chunk) {
            Ok(0) => return Ok(done),
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                // Keep what arrived: it is the part a later attempt resumes from.
                let _ = file.sync_all();
                return Err(DownloadError::BrokeOff {
                    url: req.url.to_string(),
                    received: done,
                    total,
                    detail: e.to_string(),
                    kept: req.resume,
                });
            }
        };
        if let Some(limit) = req.max_bytes.filter(|&limit| done + n as u64 > limit) {
            return Err(DownloadError::TooLarge { url: req.url.to_string(), limit });
        }
        file.write_all(&chunk[..n]).map_err(io_err(part))?;
        done += n as u64;
        progress(Progress { done, total, resumed_from });
    }
}

/// Checks the complete part file and renames it to the destination.
fn finish(req: &Request<'_>, part: &Path, resumed_from: u64) -> Result<Downloaded, DownloadError> {
    let bytes = std::fs::metadata(part).map_err(io_err(part))?.len();
    let sha256 = sha256_file(part).map_err(io_err(part))?;
    if let Some(expected) = req.sha256.filter(|e| !e.eq_ignore_ascii_case(&sha256)) {
        remove(part);
        return Err(DownloadError::Checksum {
            url: req.url.to_string(),
            expected: expected.to_ascii_lowercase(),
            actual: sha256,
            size: bytes,
        });
    }
    std::fs::rename(part, req.dest).map_err(io_err(req.dest))?;
    if let Some(dir) = req.dest.parent() {
        // Make the rename durable where the platform allows syncing a directory.
        if let Ok(d) = File::open(dir) {
            let _ = d.sync_all();
        }
    }
    Ok(Downloaded { bytes, sha256, resumed_from })
}

enum Retry {
    /// The server answered 416 to a range request.
    FromScratch,
    Fail(DownloadError),
}

/// Sends the request (with a `Range` from `have` when it is not 0). Returns the response, the
/// offset its body starts at, and the whole file's size if known.
fn open(agent: &ureq::Agent, req: &Request<'_>, have: u64) -> Result<(ureq::Response, u64, Option<u64>), Retry> {
    let url = req.url;
    let mut request = agent.get(url);
    if have > 0 {
        request = request.set("Range", &format!("bytes={have}-"));
    }
    let response = match request.call() {
        Ok(r) => r,
        Err(ureq::Error::Status(416, _)) if have > 0 => return Err(Retry::FromScratch),
        Err(ureq::Error::Status(code, r)) => {
            return Err(Retry::Fail(DownloadError::Status {
                url: url.to_string(),
                code,
                text: r.status_text().to_string(),
            }))
        }
        Err(ureq::Error::Transport(t)) => {
            // ureq's message starts with the URL; say it once.
            let text = t.to_string();
            let detail = text.strip_prefix(&format!("{url}: ")).unwrap_or(&text).to_string();
            let url = url.to_string();
            return Err(Retry::Fail(match t.kind() {
                ureq::ErrorKind::Dns | ureq::ErrorKind::ConnectionFailed | ureq::ErrorKind::ProxyConnect => {
                    DownloadError::Unreachable { url, detail }
                }
                _ => DownloadError::Transport { url, detail },
            }));
        }
    };
    let length: Option<u64> = response.header("Content-Length").and_then(|v| v.trim().parse().ok());
    if response.status() == 206 && have > 0 {
        let range = response.header("Content-Range").unwrap_or("");
        let (first, total) = parse_content_range(range).ok_or_else(|| {
            Retry::Fail(DownloadError::Protocol {
                url: url.to_string(),
                detail: format!("a partial response with an unreadable Content-Range {range:?}"),
            })
        })?;
        if first != have {
            return Err(Retry::Fail(DownloadError::Protocol {
                url: url.to_string(),
                detail: format!("asked for the bytes from {have} on, the server sent those from {first} on"),
            }));
        }
        return Ok((response, have, total.or(length.map(|n| n + have))));
    }
    // A whole-file answer (a server that ignores ranges included): start from zero.
    Ok((response, 0, length))
}

/// `bytes FIRST-LAST/TOTAL` (TOTAL may be `*`) → (FIRST, TOTAL).
fn parse_content_range(value: &str) -> Option<(u64, Option<u64>)> {
    let rest = value.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (first, _last) = range.split_once('-')?;
    let first = first.trim().parse().ok()?;
    let total = match total.trim() {
        "*" => None,
        t => Some(t.parse().ok()?),
    };
    Some((first, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parses() {
        assert_eq!(parse_content_range("bytes 100-199/200"), Some((100, Some(200))));
        assert_eq!(parse_content_range("bytes 5-9/*"), Some((5, None)));
        assert_eq!(parse_content_range("bytes */200"), None);
        assert_eq!(parse_content_range("items 1-2/3"), None);
    }

    #[test]
    fn part_path_appends_to_the_name() {
        assert_eq!(part_path(Path::new("/a/b/m.tflite")), PathBuf::from("/a/b/m.tflite.part"));
    }

    #[test]
    fn sha256_of_known_input() {
        assert_eq!(sha256_hex(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
