//! Catalog of known Edge TPU models, and downloading them into a cache directory.
//!
//! The catalog ([`Catalog::builtin`]) is a manifest checked into this crate
//! (`models/catalog.json`) listing the models of Coral's model zoo that people start from:
//! MobileNet v1/v2 classifiers (ImageNet and the iNaturalist birds, insects and plants), SSD
//! MobileNet v1/v2, SSDLite MobileDet and EfficientDet-Lite0..2 detectors (COCO), DeepLab v3
//! segmentation (PASCAL VOC), and MoveNet Lightning/Thunder and PoseNet pose models. Each
//! [`Entry`] names its task, input size, the CPU model, the model compiled for the Edge TPU,
//! and its label file, each with its upstream URL, and size and sha256 where the catalog knows
//! them. No model binaries are part of this crate.
//!
//! [`fetch`] downloads an entry's file into a directory, by default [`cache_dir`]: resumably
//! (HTTP `Range` on a `.part` file), checked against the sha256 when known, and written
//! atomically. The general downloader is [`download::download`]. [`resolve_cached`] turns a
//! catalog name given where a model file is expected (`--model NAME`) into that file in the cache
//! directory, never downloading.
//!
//! ```no_run
//! use edgetpu_models::{cache_dir, fetch, Artifact, Catalog};
//!
//! let catalog = Catalog::builtin()?;
//! let entry = catalog.lookup("ssd_mobilenet_v2_coco")?;
//! let dir = cache_dir()?;
//! let got = fetch(entry, Artifact::EdgeTpu, &dir, &mut |p| eprint!("\r{} bytes", p.done))?;
//! println!("{} (sha256 {})", got.path.display(), got.sha256);
//! # Ok::<(), edgetpu_models::Error>(())
//! ```
//!
//! Environment:
//!
//! - `EDGETPU_MODELS_DIR`: the cache directory (default `$XDG_CACHE_HOME/edgetpu/models`, else
//!   `~/.cache/edgetpu/models`).
//! - `EDGETPU_MODELS_BASE_URL`: a mirror with the same relative paths as upstream, used instead
//!   of the upstream URLs (for tests, and for machines that reach a local mirror only).
//!
//! The `test-server` feature adds the `testing` module, a local HTTP server for tests of
//! downloads.
#![forbid(unsafe_code)]

mod catalog;
pub mod download;
mod resolve;
#[cfg(feature = "test-server")]
pub mod testing;

pub use catalog::{fetch, fetch_from, Artifact, Catalog, Entry, Fetched, InputSize, RemoteFile, Task, BUILTIN_JSON};
pub use download::{DownloadError, Progress};
pub use resolve::{resolve_cached, Cached, Want};

use std::path::{Path, PathBuf};

/// Environment variable naming the cache directory.
pub const MODELS_DIR_ENV: &str = "EDGETPU_MODELS_DIR";

/// Environment variable naming a mirror of the upstream files.
pub const BASE_URL_ENV: &str = "EDGETPU_MODELS_BASE_URL";

/// Errors of the catalog and of fetching.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The manifest is invalid (a bug of the catalog, or of a catalog given to [`Catalog::parse`]).
    #[error("model catalog: {0}")]
    Catalog(String),
    /// No entry has this name.
    #[error("no model named {name:?} in the catalog; it has: {}", known.join(", "))]
    UnknownModel {
        /// The name asked for.
        name: String,
        /// The names there are.
        known: Vec<String>,
    },
    /// The entry has no such file (a model without classes has no label file).
    #[error("model {name} has no {artifact} file")]
    NoSuchFile {
        /// The entry.
        name: String,
        /// `cpu`, `edgetpu` or `labels`.
        artifact: &'static str,
    },
    /// Neither `EDGETPU_MODELS_DIR`, `XDG_CACHE_HOME` nor `HOME` is set.
    #[error(
        "no cache directory for models: EDGETPU_MODELS_DIR, XDG_CACHE_HOME and HOME are all unset; set \
         EDGETPU_MODELS_DIR (or pass --dir DIR)"
    )]
    NoCacheDir,
    /// A catalog model was named where a model file is expected, but there is no cache
    /// directory to look for it in.
    #[error(
        "{name} is a model of the catalog, but there is no cache directory to look for it in: EDGETPU_MODELS_DIR, \
         XDG_CACHE_HOME and HOME are all unset; set EDGETPU_MODELS_DIR to the directory that holds its files \
         (`edgetpu models fetch {name}` saves them there)"
    )]
    NoCacheDirFor {
        /// The catalog name.
        name: String,
    },
    /// A catalog model was named where a model file is expected, but its file is not in the
    /// cache directory (nothing is downloaded implicitly).
    #[error("{}", resolve::not_cached_message(name, *artifact, path))]
    NotCached {
        /// The catalog name.
        name: String,
        /// The file that is missing.
        artifact: Artifact,
        /// Where it was looked for.
        path: PathBuf,
    },
    /// Downloading a file failed; the message says what to do.
    #[error("{}", fetch_message(error, dest))]
    Fetch {
        /// What failed (its message is part of this error's, so it is not a separate source).
        error: Box<DownloadError>,
        /// The file that was to be written.
        dest: PathBuf,
    },
}

/// The error and what to do about it.
fn fetch_message(e: &DownloadError, dest: &Path) -> String {
    let dir = dest.parent().map_or_else(|| ".".to_string(), |d| d.display().to_string());
    let url = e.url().unwrap_or("");
    match e {
        DownloadError::Unreachable { .. } => format!(
            "{e}: fetching a model needs an internet connection. Without one, download {url} by hand (on another \
             machine if need be) and save it as {} (the model cache directory {dir}; {MODELS_DIR_ENV} chooses \
             another)",
            dest.display()
        ),
        DownloadError::BrokeOff { kept: true, .. } => format!(
            "{e}; the bytes received are kept in {}: run the same command again to resume",
            download::part_path(dest).display()
        ),
        DownloadError::Checksum { .. } => format!(
            "{e}; the download was deleted. Run the command again; if the digest is wrong again, the file at {url} \
             is not the one the catalog describes"
        ),
        DownloadError::Status { code: 404, .. } => format!(
            "{e}: the file is not there; download it by hand and save it as {}, or set {BASE_URL_ENV} to a mirror",
            dest.display()
        ),
        _ => e.to_string(),
    }
}

fn env_path(name: &str) -> Option<PathBuf> {
    std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// Where fetched models are kept: `EDGETPU_MODELS_DIR`, else `$XDG_CACHE_HOME/edgetpu/models`
/// (when that is an absolute path), else `~/.cache/edgetpu/models`.
pub fn cache_dir() -> Result<PathBuf, Error> {
    cache_dir_with(env_path)
}

/// [`cache_dir`] with the environment given as a function (variable name → non-empty value).
fn cache_dir_with(var: impl Fn(&str) -> Option<PathBuf>) -> Result<PathBuf, Error> {
    if let Some(dir) = var(MODELS_DIR_ENV) {
        return Ok(dir);
    }
    if let Some(xdg) = var("XDG_CACHE_HOME").filter(|p| p.is_absolute()) {
        return Ok(xdg.join("edgetpu").join("models"));
    }
    var("HOME").map(|home| home.join(".cache").join("edgetpu").join("models")).ok_or(Error::NoCacheDir)
}

/// The mirror named by `EDGETPU_MODELS_BASE_URL`, if set.
pub fn base_url_override() -> Option<String> {
    std::env::var(BASE_URL_ENV).ok().filter(|v| !v.trim().is_empty())
}

#[cfg(test)]
mod tests;
