//! The catalog: its entries, parsing and checking the manifest, and fetching an entry's files.

use crate::download::{self, DownloadError, Progress, Request};
use crate::Error;
use serde::{Deserialize, Serialize};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The manifest built into the crate (`models/catalog.json`).
pub const BUILTIN_JSON: &str = include_str!("../catalog.json");

/// What a model does, which decides how its outputs are read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// Scores per class (`edgetpu classify`).
    Classification,
    /// Boxes, classes and scores (`edgetpu detect`).
    Detection,
    /// A class per pixel (`edgetpu segment`).
    Segmentation,
    /// Body keypoints.
    Pose,
}

impl Task {
    /// The lower-case name used in the manifest.
    pub fn name(self) -> &'static str {
        match self {
            Task::Classification => "classification",
            Task::Detection => "detection",
            Task::Segmentation => "segmentation",
            Task::Pose => "pose",
        }
    }
}

/// The image size a model takes, in pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct InputSize {
    /// Width.
    pub width: u32,
    /// Height.
    pub height: u32,
}

/// One file of an entry, as published upstream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemoteFile {
    /// Its file name, also its name in the cache directory.
    pub file: String,
    /// Where it is published (https).
    pub url: String,
    /// Its size in bytes, if known.
    pub size: Option<u64>,
    /// Its sha256 (lower-case hex), if known. A file without one is downloaded unchecked.
    pub sha256: Option<String>,
    /// `url` without the catalog's `upstream_base`: the file's path in a mirror.
    #[serde(skip)]
    path: String,
}

impl RemoteFile {
    /// Its path relative to the upstream base URL (e.g. `posenet/posenet_...tflite`); a mirror
    /// keeps the same relative paths.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The URL to download it from: the upstream URL, or the same relative path under `mirror`
    /// (see [`base_url_override`](crate::base_url_override)).
    pub fn url_from(&self, mirror: Option<&str>) -> String {
        match mirror {
            Some(base) => format!("{}/{}", base.trim_end_matches('/'), self.path),
            None => self.url.clone(),
        }
    }
}

/// Which file of an entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Artifact {
    /// The model for the CPU (`.tflite`).
    Cpu,
    /// The model compiled for the Edge TPU (`_edgetpu.tflite`).
    EdgeTpu,
    /// The label file.
    Labels,
}

impl Artifact {
    /// `cpu`, `edgetpu` or `labels`.
    pub fn name(self) -> &'static str {
        match self {
            Artifact::Cpu => "cpu",
            Artifact::EdgeTpu => "edgetpu",
            Artifact::Labels => "labels",
        }
    }

    /// The three, in the order a fetch takes them.
    pub const ALL: [Artifact; 3] = [Artifact::Cpu, Artifact::EdgeTpu, Artifact::Labels];
}

/// A model of the catalog.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    /// Short name, e.g. `ssd_mobilenet_v2_coco`: what `--model NAME` and `models fetch NAME`
    /// take.
    pub name: String,
    /// One line on what it is and what it was trained on.
    pub description: String,
    /// What it does.
    pub task: Task,
    /// Its image input size.
    pub input: InputSize,
    /// The CPU model.
    pub cpu: RemoteFile,
    /// The model compiled for the Edge TPU.
    pub edgetpu: RemoteFile,
    /// The label file (line N names class N), if the model has classes.
    pub labels: Option<RemoteFile>,
}

impl Entry {
    /// The file for `artifact` (`None` for the labels of a model without classes).
    pub fn file(&self, artifact: Artifact) -> Option<&RemoteFile> {
        match artifact {
            Artifact::Cpu => Some(&self.cpu),
            Artifact::EdgeTpu => Some(&self.edgetpu),
            Artifact::Labels => self.labels.as_ref(),
        }
    }

    /// The entry's files with what they are.
    pub fn files(&self) -> impl Iterator<Item = (Artifact, &RemoteFile)> {
        Artifact::ALL.into_iter().filter_map(move |a| self.file(a).map(|f| (a, f)))
    }

    /// Where `artifact` lives in the cache directory `dir` (whether it is there or not).
    pub fn path_in(&self, dir: &Path, artifact: Artifact) -> Option<PathBuf> {
        self.file(artifact).map(|f| dir.join(&f.file))
    }

    /// The path of `artifact` in `dir` if the file is there.
    pub fn cached(&self, dir: &Path, artifact: Artifact) -> Option<PathBuf> {
        self.path_in(dir, artifact).filter(|p| p.is_file())
    }

    /// Whether every file has a sha256 in the catalog.
    pub fn all_checksums_known(&self) -> bool {
        self.files().all(|(_, f)| f.sha256.is_some())
    }
}

/// The catalog of models.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Catalog {
    /// Manifest format version (1).
    pub format: u32,
    /// What the catalog holds and where it comes from.
    pub about: String,
    /// The URL every file's URL starts with; a mirror replaces it.
    pub upstream_base: String,
    /// The models, in the manifest's order.
    pub models: Vec<Entry>,
}

static BUILTIN: OnceLock<Result<Catalog, String>> = OnceLock::new();

impl Catalog {
    /// The catalog built into this crate (parsed and checked on first use).
    pub fn builtin() -> Result<&'static Catalog, Error> {
        BUILTIN
            .get_or_init(|| Catalog::parse(BUILTIN_JSON).map_err(|e| e.to_string()))
            .as_ref()
            .map_err(|e| Error::Catalog(e.clone()))
    }

    /// Parses and checks a manifest: format 1, unique names, https URLs under `upstream_base`
    /// whose last segment is the file name, sha256 digests of 64 hex digits.
    pub fn parse(json: &str) -> Result<Catalog, Error> {
        let mut catalog: Catalog =
            serde_json::from_str(json).map_err(|e| Error::Catalog(format!("the manifest does not parse: {e}")))?;
        if catalog.format != 1 {
            return Err(Error::Catalog(format!("manifest format {} (this version reads format 1)", catalog.format)));
        }
        if !catalog.upstream_base.ends_with('/') {
            return Err(Error::Catalog(format!("upstream_base {:?} must end with '/'", catalog.upstream_base)));
        }
        let mut names = HashSet::new();
        let base = catalog.upstream_base.clone();
        for entry in &mut catalog.models {
            let name = entry.name.clone();
            if name.is_empty() || name.contains(['/', '\\']) || name.chars().any(char::is_whitespace) {
                return Err(Error::Catalog(format!("model name {name:?} is empty or has a slash or a space")));
            }
            if !names.insert(name.clone()) {
                return Err(Error::Catalog(format!("model name {name:?} appears twice")));
            }
            if entry.input.width == 0 || entry.input.height == 0 {
                return Err(Error::Catalog(format!("{name}: input size must not be 0")));
            }
            for file in [Some(&mut entry.cpu), Some(&mut entry.edgetpu), entry.labels.as_mut()].into_iter().flatten() {
                check_file(&name, &base, file)?;
            }
            if entry.cpu.file == entry.edgetpu.file {
                return Err(Error::Catalog(format!("{name}: the CPU and Edge TPU models are the same file")));
            }
        }
        Ok(catalog)
    }

    /// The entry named `name`.
    pub fn get(&self, name: &str) -> Option<&Entry> {
        self.models.iter().find(|e| e.name == name)
    }

    /// The entry named `name`, or an error listing the names there are.
    pub fn lookup(&self, name: &str) -> Result<&Entry, Error> {
        self.get(name).ok_or_else(|| Error::UnknownModel {
            name: name.to_string(),
            known: self.models.iter().map(|e| e.name.clone()).collect(),
        })
    }
}

fn check_file(name: &str, base: &str, file: &mut RemoteFile) -> Result<(), Error> {
    let bad = |what: String| Err(Error::Catalog(format!("{name}: {}: {what}", file.file)));
    if !file.url.starts_with("https://") {
        return bad(format!("URL {} is not https", file.url));
    }
    let Some(path) = file.url.strip_prefix(base) else {
        return bad(format!("URL {} does not start with upstream_base {base}", file.url));
    };
    if path.rsplit('/').next() != Some(file.file.as_str()) || file.file.is_empty() {
        return bad(format!("URL {} does not end with the file name", file.url));
    }
    if path.split('/').any(|seg| seg.is_empty() || seg == "." || seg == "..") {
        return bad(format!("URL {} has an empty, . or .. path segment", file.url));
    }
    if let Some(sha) = &file.sha256 {
        if sha.len() != 64 || !sha.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
            return bad(format!("sha256 {sha:?} is not 64 lower-case hex digits"));
        }
    }
    file.path = path.to_string();
    Ok(())
}

/// The outcome of [`fetch`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    /// The file in the directory.
    pub path: PathBuf,
    /// Its size.
    pub bytes: u64,
    /// Its sha256.
    pub sha256: String,
    /// Whether that sha256 was checked against the catalog (false: the catalog has none).
    pub verified: bool,
    /// Whether the file was already there (nothing was downloaded).
    pub already_present: bool,
    /// The URL it came from (or would have).
    pub url: String,
    /// Bytes taken over from an interrupted earlier download.
    pub resumed_from: u64,
}

/// Downloads `artifact` of `entry` into `dir` (usually [`cache_dir`](crate::cache_dir)), from
/// its upstream URL or the mirror named by `EDGETPU_MODELS_BASE_URL`
/// ([`base_url_override`](crate::base_url_override)). See [`fetch_from`].
pub fn fetch(
    entry: &Entry,
    artifact: Artifact,
    dir: &Path,
    progress: &mut dyn FnMut(Progress),
) -> Result<Fetched, Error> {
    fetch_from(entry, artifact, dir, crate::base_url_override().as_deref(), progress)
}

/// Downloads `artifact` of `entry` into `dir`, from `mirror` when given (same relative paths as
/// upstream), else from the upstream URL.
///
/// A file already in `dir` whose sha256 matches the catalog (or, when the catalog has no
/// sha256, that is simply there) is left as it is. Otherwise the download resumes a `.part` file
/// left by an interrupted attempt, checks the sha256 when the catalog has one, and renames the
/// result into place.
pub fn fetch_from(
    entry: &Entry,
    artifact: Artifact,
    dir: &Path,
    mirror: Option<&str>,
    progress: &mut dyn FnMut(Progress),
) -> Result<Fetched, Error> {
    let file = entry
        .file(artifact)
        .ok_or_else(|| Error::NoSuchFile { name: entry.name.clone(), artifact: artifact.name() })?;
    let dest = dir.join(&file.file);
    let url = file.url_from(mirror);
    if dest.is_file() {
        let sha256 = download::sha256_file(&dest).map_err(|source| Error::Fetch {
            error: Box::new(DownloadError::Io { path: dest.clone(), source }),
            dest: dest.clone(),
        })?;
        let good = file.sha256.as_deref().is_none_or(|want| want == sha256);
        if good {
            let bytes = std::fs::metadata(&dest).map_or(0, |m| m.len());
            let verified = file.sha256.is_some();
            return Ok(Fetched { path: dest, bytes, sha256, verified, already_present: true, url, resumed_from: 0 });
        }
        // A damaged or outdated copy: download it again (the rename replaces it).
    }
    let req = Request {
        url: &url,
        dest: &dest,
        sha256: file.sha256.as_deref(),
        size: file.size,
        max_bytes: None,
        resume: true,
    };
    match download::download(&req, progress) {
        Ok(d) => Ok(Fetched {
            path: dest,
            bytes: d.bytes,
            sha256: d.sha256,
            verified: file.sha256.is_some(),
            already_present: false,
            url,
            resumed_from: d.resumed_from,
        }),
        Err(e) => Err(Error::Fetch { error: Box::new(e), dest }),
    }
}
