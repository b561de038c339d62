//! The models a server serves: files by plain name in its models directory (where uploads go)
//! and in the model catalog's cache.

use std::path::{Path, PathBuf};

/// Why a model name, upload or lookup was refused.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    /// The name is not a plain file name.
    #[error("model name {0:?} is not a plain file name (no '/', '\\\\', '..', leading '.' or NUL; at most 255 bytes)")]
    BadName(String),
    /// The upload is larger than the limit.
    #[error("model upload of {size} bytes is larger than the server's limit of {limit} bytes")]
    TooLarge {
        /// Bytes sent.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The server has no directory to save uploads in.
    #[error("this server takes no uploads: it was started without --models DIR")]
    NoUploads,
    /// The bytes are no valid model.
    #[error("model upload {name:?} is not a valid model: {reason}")]
    Invalid {
        /// The name.
        name: String,
        /// Why.
        reason: String,
    },
    /// Writing the file failed.
    #[error("saving model {name:?}: {source}")]
    Io {
        /// The name.
        name: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// Checks that `name` is a plain file name: nothing that could leave the models directory.
pub fn check_name(name: &str) -> Result<(), ModelError> {
    let bad = name.is_empty()
        || name.len() > 255
        || name.starts_with('.')
        || name.contains(['/', '\\', '\0'])
        || Path::new(name).is_absolute();
    if bad {
        return Err(ModelError::BadName(name.to_string()));
    }
    Ok(())
}

/// Where models are found and uploads saved.
#[derive(Debug, Clone, Default)]
pub struct ModelStore {
    /// Models by file name, and where uploads are saved.
    pub dir: Option<PathBuf>,
    /// Models fetched with `edgetpu models fetch` (looked up by file name or catalog name).
    pub cache: Option<PathBuf>,
    /// Largest upload accepted.
    pub max_upload: usize,
}

impl ModelStore {
    /// The file of model `name`, if the store has it.
    pub fn find(&self, name: &str) -> Result<Option<PathBuf>, ModelError> {
        check_name(name)?;
        for dir in self.dir.iter().chain(&self.cache) {
            let p = dir.join(name);
            if p.is_file() {
                return Ok(Some(p));
            }
        }
        // A catalog name (`edgetpu models list`) whose compiled model was fetched.
        if self.cache.is_some() {
            if let Ok(Some(c)) = edgetpu_models::resolve_cached(name, || edgetpu_models::Want::EdgeTpu) {
                return Ok(Some(c.model));
            }
        }
        Ok(None)
    }

    /// The files of model `name`: the file of that name, or else the segments of a model split
    /// for several Edge TPUs, `STEM_segment_K_of_N_edgetpu.tflite` for a `name` of
    /// `STEM_edgetpu.tflite`, in order. An incomplete set of segments is an error that names the
    /// missing file.
    pub fn find_models(&self, name: &str) -> Result<Option<Vec<PathBuf>>, ModelError> {
        if let Some(p) = self.find(name)? {
            return Ok(Some(vec![p]));
        }
        let Some(stem) = name.strip_suffix("_edgetpu.tflite") else { return Ok(None) };
        let prefix = format!("{stem}_segment_0_of_");
        for dir in self.dir.iter().chain(&self.cache) {
            let Ok(entries) = std::fs::read_dir(dir) else { continue };
            let count = entries.filter_map(Result::ok).find_map(|e| {
                let file = e.file_name();
                let n = file.to_str()?.strip_prefix(&prefix)?.strip_suffix("_edgetpu.tflite")?.parse::<usize>().ok()?;
                (n >= 1).then_some(n)
            });
            let Some(n) = count else { continue };
            let paths: Vec<PathBuf> =
                (0..n).map(|k| dir.join(format!("{stem}_segment_{k}_of_{n}_edgetpu.tflite"))).collect();
            if let Some(missing) = paths.iter().find(|p| !p.is_file()) {
                return Err(ModelError::Io {
                    name: name.to_string(),
                    source: std::io::Error::new(
                        std::io::ErrorKind::NotFound,
                        format!("segment {} of the set is missing", missing.display()),
                    ),
                });
            }
            return Ok(Some(paths));
        }
        Ok(None)
    }

    /// Saves an uploaded model as `name` in the models directory, after checking that it loads.
    /// The file appears whole or not at all (written beside it, then renamed).
    pub fn save(&self, name: &str, bytes: &[u8]) -> Result<PathBuf, ModelError> {
        check_name(name)?;
        if bytes.len() > self.max_upload {
            return Err(ModelError::TooLarge { size: bytes.len(), limit: self.max_upload });
        }
        let dir = self.dir.as_ref().ok_or(ModelError::NoUploads)?;
        edgetpu::Model::from_bytes(bytes.to_vec())
            .map_err(|e| ModelError::Invalid { name: name.to_string(), reason: e.to_string() })?;
        let io = |source| ModelError::Io { name: name.to_string(), source };
        let tmp = dir.join(format!(".{name}.{}.part", std::process::id()));
        std::fs::write(&tmp, bytes).map_err(io)?;
        let dest = dir.join(name);
        std::fs::rename(&tmp, &dest).map_err(|e| {
            let _ = std::fs::remove_file(&tmp);
            io(e)
        })?;
        log::info!("saved uploaded model {name} ({} bytes)", bytes.len());
        Ok(dest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_that_could_leave_the_directory_are_refused() {
        for bad in ["", "../x", "/etc/passwd", "a/b", "a\\b", "..", ".", ".hidden", "x\0y"] {
            assert!(matches!(check_name(bad), Err(ModelError::BadName(_))), "{bad:?}");
        }
        let long = "x".repeat(256);
        assert!(check_name(&long).is_err());
        for good in ["model.tflite", "ssd_mobilenet_v2_coco_quant_postprocess_edgetpu.tflite", "a..b"] {
            check_name(good).unwrap();
        }
    }

    /// An empty models directory named by `tag`, and a store on it (64-byte uploads).
    fn store(tag: &str) -> (PathBuf, ModelStore) {
        let dir = std::env::temp_dir().join(format!("edgetpu-serve-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        (dir.clone(), ModelStore { dir: Some(dir), cache: None, max_upload: 64 })
    }

    #[test]
    fn a_model_name_finds_its_file_or_its_segments_in_order() {
        let (dir, store) = store("segments");
        assert!(store.find_models("m_edgetpu.tflite").unwrap().is_none());
        for k in [2, 0] {
            std::fs::write(dir.join(format!("m_segment_{k}_of_3_edgetpu.tflite")), b"x").unwrap();
        }
        let err = store.find_models("m_edgetpu.tflite").unwrap_err().to_string();
        assert!(err.contains("m_segment_1_of_3_edgetpu.tflite"), "{err}");
        std::fs::write(dir.join("m_segment_1_of_3_edgetpu.tflite"), b"x").unwrap();
        let found = store.find_models("m_edgetpu.tflite").unwrap().unwrap();
        let names: Vec<_> = found.iter().map(|p| p.file_name().unwrap().to_str().unwrap().to_string()).collect();
        assert_eq!(
            names,
            ["m_segment_0_of_3_edgetpu.tflite", "m_segment_1_of_3_edgetpu.tflite", "m_segment_2_of_3_edgetpu.tflite"]
        );
        // A file of the name itself comes first.
        std::fs::write(dir.join("m_edgetpu.tflite"), b"x").unwrap();
        assert_eq!(store.find_models("m_edgetpu.tflite").unwrap().unwrap(), [dir.join("m_edgetpu.tflite")]);
        assert!(matches!(store.find_models("../m_edgetpu.tflite"), Err(ModelError::BadName(_))));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn uploads_are_checked_and_land_only_in_the_directory() {
        let (dir, store) = store("store");
        assert!(matches!(store.save("../x.tflite", b"x"), Err(ModelError::BadName(_))));
        assert!(matches!(store.save("big.tflite", &[0; 65]), Err(ModelError::TooLarge { .. })));
        assert!(matches!(store.save("junk.tflite", b"not a model"), Err(ModelError::Invalid { .. })));
        assert_eq!(std::fs::read_dir(&dir).unwrap().count(), 0, "nothing was written");
        assert!(store.find("junk.tflite").unwrap().is_none());
        let none = ModelStore { max_upload: 64, ..ModelStore::default() };
        assert!(matches!(none.save("m.tflite", b"x"), Err(ModelError::NoUploads)));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
