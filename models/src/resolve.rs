//! A catalog name given where a model file is expected (`--model NAME`): the entry's file in the
//! cache directory, and its label file. Nothing is downloaded here: a file not in the cache is an
//! error ([`Error::NotCached`]) naming the `edgetpu models fetch` command that puts it there.

use crate::{Artifact, Catalog, Entry, Error};
use std::path::{Path, PathBuf};

/// Which model file of a catalog entry a name stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    /// The CPU model.
    Cpu,
    /// The model compiled for the Edge TPU.
    EdgeTpu,
    /// The compiled model if it is in the cache, else the CPU model.
    CompiledIfCached,
    /// The CPU model if it is in the cache, else the compiled model.
    CpuIfCached,
}

impl Want {
    /// The files to look for, in order of preference.
    fn order(self) -> &'static [Artifact] {
        match self {
            Want::Cpu => &[Artifact::Cpu],
            Want::EdgeTpu => &[Artifact::EdgeTpu],
            Want::CompiledIfCached => &[Artifact::EdgeTpu, Artifact::Cpu],
            Want::CpuIfCached => &[Artifact::Cpu, Artifact::EdgeTpu],
        }
    }
}

/// A catalog model found in the cache directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cached {
    /// The catalog name.
    pub name: String,
    /// Which model file it is.
    pub artifact: Artifact,
    /// The model file.
    pub model: PathBuf,
    /// The entry's label file, when the entry has one and it is in the cache too.
    pub labels: Option<PathBuf>,
}

/// The model file of the catalog entry `name` in the cache directory ([`crate::cache_dir`]).
/// `Ok(None)` when `name` is not a catalog name (`want` is then not asked). Errors: the entry's
/// file is not in the cache ([`Error::NotCached`], naming the file and the `edgetpu models
/// fetch` command), or there is no cache directory ([`Error::NoCacheDirFor`]).
pub fn resolve_cached(name: &str, want: impl FnOnce() -> Want) -> Result<Option<Cached>, Error> {
    resolve_in(Catalog::builtin()?, name, want, crate::cache_dir)
}

/// [`resolve_cached`] with the catalog and the cache directory given.
pub(crate) fn resolve_in(
    catalog: &Catalog,
    name: &str,
    want: impl FnOnce() -> Want,
    dir: impl FnOnce() -> Result<PathBuf, Error>,
) -> Result<Option<Cached>, Error> {
    let Some(entry) = catalog.get(name) else { return Ok(None) };
    let dir = dir().map_err(|e| match e {
        Error::NoCacheDir => Error::NoCacheDirFor { name: entry.name.clone() },
        other => other,
    })?;
    let order = want().order();
    let found = order.iter().find_map(|&a| entry.cached(&dir, a).map(|p| (a, p)));
    let Some((artifact, model)) = found else {
        return Err(not_cached(entry, &dir, order[0]));
    };
    Ok(Some(Cached { name: entry.name.clone(), artifact, model, labels: entry.cached(&dir, Artifact::Labels) }))
}

fn not_cached(entry: &Entry, dir: &Path, artifact: Artifact) -> Error {
    Error::NotCached {
        name: entry.name.clone(),
        artifact,
        path: entry.path_in(dir, artifact).unwrap_or_else(|| dir.to_path_buf()),
    }
}

/// The text of [`Error::NotCached`].
pub(crate) fn not_cached_message(name: &str, artifact: Artifact, path: &Path) -> String {
    let (what, only) = match artifact {
        Artifact::Cpu => ("CPU model", format!(" (or `edgetpu models fetch {name} --cpu` for that file only)")),
        Artifact::EdgeTpu => {
            ("compiled Edge TPU model", format!(" (or `edgetpu models fetch {name} --edgetpu` for that file only)"))
        }
        Artifact::Labels => ("label file", String::new()),
    };
    format!(
        "{name} is a model of the catalog whose {what} is not downloaded (no {}): run `edgetpu models fetch \
         {name}`{only}, or set EDGETPU_MODELS_DIR to the directory that holds it",
        path.display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A fresh directory holding `files` (empty files).
    fn dir_with(name: &str, files: &[&str]) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("edgetpu-models-resolve-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        for f in files {
            std::fs::write(dir.join(f), b"").unwrap();
        }
        dir
    }

    const NAME: &str = "mobilenet_v1_0.25_128";
    const CPU: &str = "mobilenet_v1_0.25_128_quant.tflite";
    const TPU: &str = "mobilenet_v1_0.25_128_quant_edgetpu.tflite";
    const LABELS: &str = "imagenet_labels.txt";

    fn resolve(dir: &Path, name: &str, want: Want) -> Result<Option<Cached>, Error> {
        resolve_in(Catalog::builtin().unwrap(), name, || want, || Ok(dir.to_path_buf()))
    }

    #[test]
    fn a_name_not_in_the_catalog_is_none_and_nothing_is_asked() {
        let c = Catalog::builtin().unwrap();
        let got = resolve_in(c, "my_model.tflite", || panic!("want asked"), || panic!("dir asked")).unwrap();
        assert_eq!(got, None);
    }

    #[test]
    fn the_wanted_file_and_the_labels_come_from_the_cache() {
        let dir = dir_with("both", &[CPU, TPU, LABELS]);
        let got = resolve(&dir, NAME, Want::EdgeTpu).unwrap().unwrap();
        assert_eq!((got.artifact, &got.model), (Artifact::EdgeTpu, &dir.join(TPU)));
        assert_eq!(got.labels, Some(dir.join(LABELS)));
        assert_eq!(got.name, NAME);
        assert_eq!(resolve(&dir, NAME, Want::Cpu).unwrap().unwrap().model, dir.join(CPU));
        assert_eq!(resolve(&dir, NAME, Want::CpuIfCached).unwrap().unwrap().model, dir.join(CPU));
        assert_eq!(resolve(&dir, NAME, Want::CompiledIfCached).unwrap().unwrap().model, dir.join(TPU));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn the_fallbacks_take_the_other_file_and_labels_may_be_missing() {
        let dir = dir_with("cpuonly", &[CPU]);
        let got = resolve(&dir, NAME, Want::CompiledIfCached).unwrap().unwrap();
        assert_eq!((got.artifact, got.model, got.labels), (Artifact::Cpu, dir.join(CPU), None));
        std::fs::remove_dir_all(&dir).unwrap();
        let dir = dir_with("tpuonly", &[TPU]);
        let got = resolve(&dir, NAME, Want::CpuIfCached).unwrap().unwrap();
        assert_eq!((got.artifact, got.model), (Artifact::EdgeTpu, dir.join(TPU)));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_file_not_in_the_cache_names_it_and_the_fetch_command() {
        let dir = dir_with("cpuonly2", &[CPU]);
        let e = resolve(&dir, NAME, Want::EdgeTpu).unwrap_err();
        assert!(matches!(&e, Error::NotCached { artifact: Artifact::EdgeTpu, .. }), "{e:?}");
        let text = e.to_string();
        assert!(text.contains("compiled Edge TPU model is not downloaded"), "{text}");
        assert!(text.contains(&dir.join(TPU).display().to_string()), "{text}");
        assert!(text.contains(&format!("`edgetpu models fetch {NAME}`")), "{text}");
        assert!(text.contains(&format!("`edgetpu models fetch {NAME} --edgetpu`")), "{text}");
        assert!(text.contains("EDGETPU_MODELS_DIR"), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();

        // Neither file: the error is about the preferred one.
        let dir = dir_with("none", &[]);
        let text = resolve(&dir, NAME, Want::CpuIfCached).unwrap_err().to_string();
        assert!(text.contains("CPU model is not downloaded") && text.contains("--cpu`"), "{text}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn no_cache_directory_names_the_model() {
        let c = Catalog::builtin().unwrap();
        let e = resolve_in(c, NAME, || Want::Cpu, || Err(Error::NoCacheDir)).unwrap_err().to_string();
        assert!(e.starts_with(&format!("{NAME} is a model of the catalog")) && e.contains("EDGETPU_MODELS_DIR"), "{e}");
    }
}
