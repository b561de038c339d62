//! `edgetpu firmware`: download the USB Accelerator's firmware image, or show where the runtime
//! looks for it.
//!
//! The runtime does not ship the firmware: `fetch` downloads the single-endpoint image from its
//! upstream location, checks its length and sha256, and writes it atomically (temporary file,
//! then rename) where [`edgetpu::device::firmware_path::locate`] finds it.

use anyhow::{bail, Context, Result};
use edgetpu::device::firmware_path::{self, FILE_NAME, SINGLE_EP_LEN, SINGLE_EP_SHA256};
use sha2::{Digest, Sha256};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Where the single-endpoint firmware image is downloaded from by default.
pub const DEFAULT_URL: &str =
    "https://github.com/google-coral/libedgetpu/raw/master/driver/usb/apex_latest_single_ep.bin";

/// Where the image lives in a libedgetpu checkout, for copying it by hand.
const UPSTREAM_PATH: &str = "driver/usb/apex_latest_single_ep.bin";

/// A response larger than this is not the firmware; reading stops there.
const MAX_BYTES: usize = 1 << 20;

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

fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data).iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `data` is the expected image; else what was received instead.
fn check(data: &[u8]) -> std::result::Result<(), String> {
    let sha = sha256_hex(data);
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
    let data = download(url, &dest)?;
    if let Err(what) = check(&data) {
        bail!("the file at {url} is not the expected firmware image: {what}; nothing was written");
    }
    write_atomically(&dir, &dest, &data)?;
    println!("wrote {} ({} bytes, sha256 {SINGLE_EP_SHA256})", dest.display(), data.len());
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

fn download(url: &str, dest: &Path) -> Result<Vec<u8>> {
    let agent = ureq::AgentBuilder::new()
        .timeout_connect(Duration::from_secs(15))
        .timeout_read(Duration::from_secs(30))
        .build();
    let response = match agent.get(url).call() {
        Ok(r) => r,
        Err(ureq::Error::Status(code, r)) => {
            bail!("{url} answered HTTP {code} {}; check --url (the default is {DEFAULT_URL})", r.status_text())
        }
        Err(ureq::Error::Transport(t)) => {
            // ureq's message starts with the URL; say it once.
            let text = t.to_string();
            let what = text.strip_prefix(&format!("{url}: ")).unwrap_or(&text);
            match t.kind() {
                ureq::ErrorKind::Dns | ureq::ErrorKind::ConnectionFailed | ureq::ErrorKind::ProxyConnect => bail!(
                    "cannot reach {url} ({what}): fetching the firmware needs an internet connection. \
                     Without one, {}",
                    by_hand(dest)
                ),
                _ => bail!("downloading {url} failed: {what}"),
            }
        }
    };
    let total: Option<usize> = response.header("Content-Length").and_then(|v| v.trim().parse().ok());
    if let Some(n) = total.filter(|&n| n > MAX_BYTES) {
        bail!("{url} offers {n} bytes, far more than the {SINGLE_EP_LEN}-byte firmware image; check --url");
    }
    let mut reader = response.into_reader();
    let mut data = Vec::with_capacity(total.unwrap_or(SINGLE_EP_LEN));
    let mut chunk = [0u8; 4096];
    let mut stderr = std::io::stderr();
    let of_total = total.map_or(String::new(), |n| format!(" / {n}"));
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                let _ = writeln!(stderr);
                bail!(
                    "the download from {url} broke off after {} of {} bytes ({e}); nothing was written; try again, \
                     or {}",
                    data.len(),
                    total.unwrap_or(SINGLE_EP_LEN),
                    by_hand(dest)
                );
            }
        };
        if data.len() + n > MAX_BYTES {
            let _ = writeln!(stderr);
            bail!("{url} sent more than {MAX_BYTES} bytes: this is not the firmware image; check --url");
        }
        data.extend_from_slice(&chunk[..n]);
        let _ = write!(stderr, "\rdownloading firmware: {}{of_total} bytes", data.len());
        let _ = stderr.flush();
    }
    let _ = writeln!(stderr);
    if let Some(n) = total.filter(|&n| n != data.len()) {
        bail!(
            "the download from {url} ended after {} of {n} bytes; nothing was written; try again, or {}",
            data.len(),
            by_hand(dest)
        );
    }
    Ok(data)
}

/// Writes `data` to `dest` through a temporary file in the same directory and a rename, so that
/// `dest` is either the old file or the whole new one.
fn write_atomically(dir: &Path, dest: &Path, data: &[u8]) -> Result<()> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tmp = dir.join(format!(".{FILE_NAME}.{}.tmp", std::process::id()));
    let written = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
        std::fs::rename(&tmp, dest)
    })();
    if let Err(e) = written {
        let _ = std::fs::remove_file(&tmp);
        return Err(e).with_context(|| format!("cannot write {}", dest.display()));
    }
    Ok(())
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
