//! `edgetpu firmware`: download the USB Accelerator's firmware image, or show where the runtime
//! looks for it.
//!
//! The runtime does not ship the firmware: `fetch` downloads the single-endpoint image from its
//! upstream location with the model catalog's downloader (`edgetpu_models::download`), which
//! checks its sha256 and writes it atomically (a `.part` file, then a rename) where
//! [`edgetpu::device::usb::firmware::locate`] finds it. A failed download leaves nothing behind.

use anyhow::{Context, Result};
use edgetpu::device::usb::firmware::{self as firmware_path, FILE_NAME, SINGLE_EP_LEN, SINGLE_EP_SHA256};
use edgetpu_models::download::{self, DownloadError, Request};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Where the single-endpoint firmware image is downloaded from by default.
pub const DEFAULT_URL: &str =
    "https://github.com/google-coral/libedgetpu/raw/master/driver/usb/apex_latest_single_ep.bin";

/// Where the image lives in a libedgetpu checkout, for copying it by hand.
const UPSTREAM_PATH: &str = "driver/usb/apex_latest_single_ep.bin";

/// A response larger than this is not the firmware; reading stops there.
const MAX_BYTES: u64 = 1 << 20;

/// Arguments of `edgetpu firmware`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand, Debug)]
enum Sub {
    /// Download the firmware image, check its length and sha256, and save it where the runtime
    /// looks for it.
    Fetch {
        /// Directory to save it in (default: $XDG_DATA_HOME/edgetpu, else ~/.local/share/edgetpu).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Where to download it from.
        #[arg(long, default_value = DEFAULT_URL)]
        url: String,
    },
    /// Print the firmware file the runtime uses when no --firmware is given.
    Path,
}

/// Runs `edgetpu firmware fetch` or `edgetpu firmware path`.
pub fn run(args: &Args) -> Result<()> {
    match &args.command {
        Sub::Fetch { dir, url } => fetch(dir.as_deref(), url),
        Sub::Path => path(),
    }
}

/// The default data directory, or an error saying what to pass instead.
fn default_dir() -> Result<PathBuf> {
    firmware_path::data_dir()
        .context("no data directory: HOME and XDG_DATA_HOME are both unset; pass --dir DIR to choose one")
}

fn path() -> Result<()> {
    let (path, origin) = match std::env::var_os(firmware_path::ENV_VAR).filter(|v| !v.is_empty()) {
        Some(p) => (PathBuf::from(p), format!("named by {}", firmware_path::ENV_VAR)),
        None => (default_dir()?.join(FILE_NAME), "the default location".to_string()),
    };
    println!("{}", path.display());
    if path.is_file() {
        eprintln!("({origin}; present)");
    } else {
        eprintln!(
            "({origin}; missing: run `edgetpu firmware fetch`, or pass --firmware PATH or set {})",
            firmware_path::ENV_VAR
        );
    }
    Ok(())
}

/// Whether `data` is the expected image; else what was received instead.
fn check(data: &[u8]) -> std::result::Result<(), String> {
    let sha = download::sha256_hex(data);
    if data.len() == SINGLE_EP_LEN && sha == SINGLE_EP_SHA256 {
        return Ok(());
    }
    Err(format!(
        "received {} bytes with sha256 {sha}, expected {SINGLE_EP_LEN} bytes with sha256 {SINGLE_EP_SHA256}",
        data.len()
    ))
}

fn fetch(dir: Option<&Path>, url: &str) -> Result<()> {
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => default_dir()?,
    };
    let dest = dir.join(FILE_NAME);
    if std::fs::read(&dest).is_ok_and(|have| check(&have).is_ok()) {
        println!("{} is already there and checks out (sha256 {SINGLE_EP_SHA256})", dest.display());
        return Ok(());
    }
    let req = Request {
        url,
        dest: &dest,
        sha256: Some(SINGLE_EP_SHA256),
        size: Some(SINGLE_EP_LEN as u64),
        max_bytes: Some(MAX_BYTES),
        resume: false,
    };
    let mut stderr = std::io::stderr();
    let got = download::download(&req, &mut |p| {
        let of_total = p.total.map_or(String::new(), |n| format!(" / {n}"));
        let _ = write!(stderr, "\rdownloading firmware: {}{of_total} bytes", p.done);
        let _ = stderr.flush();
    });
    eprintln!();
    let got = got.map_err(|e| anyhow::anyhow!(explain(e, url, &dest)))?;
    println!("wrote {} ({} bytes, sha256 {SINGLE_EP_SHA256})", dest.display(), got.bytes);
    Ok(())
}

/// What to do without a network connection.
fn by_hand(dest: &Path) -> String {
    format!(
        "copy {UPSTREAM_PATH} from a libedgetpu checkout to {}, or give its path with --firmware PATH or {}=PATH",
        dest.display(),
        firmware_path::ENV_VAR
    )
}

/// A failed download in the terms of the firmware (nothing is ever kept of one).
fn explain(e: DownloadError, url: &str, dest: &Path) -> String {
    match e {
        DownloadError::Status { code, text, .. } => {
            format!("{url} answered HTTP {code} {text}; check --url (the default is {DEFAULT_URL})")
        }
        DownloadError::Unreachable { detail, .. } => format!(
            "cannot reach {url} ({detail}): fetching the firmware needs an internet connection. Without one, {}",
            by_hand(dest)
        ),
        DownloadError::BrokeOff { received, total, detail, .. } => format!(
            "the download from {url} broke off after {received} of {} bytes ({detail}); nothing was written; try \
             again, or {}",
            total.unwrap_or(SINGLE_EP_LEN as u64),
            by_hand(dest)
        ),
        DownloadError::Checksum { actual, size, .. } => format!(
            "the file at {url} is not the expected firmware image: received {size} bytes with sha256 {actual}, \
             expected {SINGLE_EP_LEN} bytes with sha256 {SINGLE_EP_SHA256}; nothing was written"
        ),
        DownloadError::TooLarge { .. } => format!(
            "{url} sent more than {MAX_BYTES} bytes, far more than the {SINGLE_EP_LEN}-byte firmware image; check --url"
        ),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn check_names_what_came() {
        let e = check(b"abc").unwrap_err();
        assert!(
            e.contains("received 3 bytes with sha256 ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert!(e.contains(SINGLE_EP_SHA256));
    }
}
