//! Typed compiler options and the files a run writes.

use crate::error::{Error, Result};
use serde::Serialize;
use std::collections::HashMap;
use std::ffi::OsString;
use std::ops::RangeInclusive;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The values `-m` accepts: Edge TPU runtime versions 10 (the lowest valid) to 14 (the current
/// runtime, libedgetpu 16.0).
pub const MIN_RUNTIME_VERSIONS: RangeInclusive<u32> = 10..=14;

/// The compiler's own timeout (`-t`) when none is given.
pub const DEFAULT_COMPILER_TIMEOUT_SEC: u32 = 180;

/// How much longer than the compiler's own timeout the run may take before it is killed, when no
/// wall-clock limit is given.
pub const DEFAULT_WALL_MARGIN: Duration = Duration::from_secs(60);

/// Options of one compiler run. `Default` gives the compiler's defaults.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CompileOptions {
    /// Output directory (`-o`); created when missing. `None`: the current directory.
    pub out_dir: Option<PathBuf>,
    /// Split each model into this many segments for a pipeline of Edge TPUs (`-n`).
    pub num_segments: Option<u32>,
    /// Lowest Edge TPU runtime version the output must run on (`-m`), one of
    /// [`MIN_RUNTIME_VERSIONS`].
    pub min_runtime_version: Option<u32>,
    /// Tensors that must become outputs of the Edge TPU part (`-i`, joined with commas); the ops
    /// after them run on the CPU.
    pub intermediate_tensors: Vec<String>,
    /// When compilation fails, search backwards for a cut that compiles (`-d`).
    pub search_delegate: bool,
    /// Step, in ops, of that search (`-k`); needs `search_delegate`.
    pub delegate_search_step: Option<u32>,
    /// Allow several Edge TPU subgraphs instead of stopping at the first op that stays on the
    /// CPU (`-a`, experimental in compiler 16).
    pub enable_multiple_subgraphs: bool,
    /// Print the operator table on stdout (`-s`).
    pub show_operations: bool,
    /// The compiler's own compilation timeout in seconds (`-t`; its default is 180).
    pub timeout_sec: Option<u32>,
    /// Wall-clock limit after which the compiler process is killed. `None`: the compiler's
    /// timeout plus [`DEFAULT_WALL_MARGIN`], or no limit with `search_delegate` (which compiles
    /// several times, each under the compiler's timeout).
    pub wall_timeout: Option<Duration>,
}

impl CompileOptions {
    /// Checks the options; the error names the option, its flag and what is accepted.
    pub fn validate(&self) -> Result<()> {
        let bad = |option: &str, reason: String| Err(Error::InvalidOption { option: option.into(), reason });
        if let Some(m) = self.min_runtime_version {
            if !MIN_RUNTIME_VERSIONS.contains(&m) {
                return bad(
                    "min_runtime_version (-m)",
                    format!(
                        "{m} is not an Edge TPU runtime version the compiler targets; use {} to {} (14 needs \
                         libedgetpu 16.0 or later; lower values also run on older runtimes)",
                        MIN_RUNTIME_VERSIONS.start(),
                        MIN_RUNTIME_VERSIONS.end()
                    ),
                );
            }
        }
        if self.num_segments == Some(0) {
            return bad("num_segments (-n)", "0 segments; use 1 or more".into());
        }
        if self.delegate_search_step == Some(0) {
            return bad("delegate_search_step (-k)", "a step of 0 ops; use 1 or more".into());
        }
        if self.delegate_search_step.is_some() && !self.search_delegate {
            return bad("delegate_search_step (-k)", "it applies only to the delegate search; add -d".into());
        }
        if self.timeout_sec == Some(0) {
            return bad("timeout_sec (-t)", "0 seconds; use 1 or more".into());
        }
        if self.wall_timeout == Some(Duration::ZERO) {
            return bad("wall_timeout", "a zero limit; give a positive duration".into());
        }
        for t in &self.intermediate_tensors {
            if t.trim().is_empty() || t.contains(',') {
                return bad(
                    "intermediate_tensors (-i)",
                    format!("{t:?} is not a tensor name (names are non-empty and contain no comma)"),
                );
            }
        }
        Ok(())
    }

    /// The wall-clock limit of a run (see [`CompileOptions::wall_timeout`]).
    pub fn effective_wall_timeout(&self) -> Option<Duration> {
        if self.wall_timeout.is_some() || self.search_delegate {
            return self.wall_timeout;
        }
        let sec = self.timeout_sec.unwrap_or(DEFAULT_COMPILER_TIMEOUT_SEC);
        Some(Duration::from_secs(u64::from(sec)) + DEFAULT_WALL_MARGIN)
    }

    /// The compiler's arguments: validated options, then the models. Fails on invalid options,
    /// on an empty model list, and when two models would write the same output files.
    pub fn args(&self, models: &[PathBuf]) -> Result<Vec<OsString>> {
        self.validate()?;
        check_models(models)?;
        let mut a: Vec<OsString> = Vec::new();
        if let Some(d) = &self.out_dir {
            a.extend(["-o".into(), d.clone().into_os_string()]);
        }
        if let Some(n) = self.num_segments {
            a.extend(["-n".into(), n.to_string().into()]);
        }
        if let Some(m) = self.min_runtime_version {
            a.extend(["-m".into(), m.to_string().into()]);
        }
        if !self.intermediate_tensors.is_empty() {
            a.extend(["-i".into(), self.intermediate_tensors.join(",").into()]);
        }
        if self.search_delegate {
            a.push("-d".into());
        }
        if let Some(k) = self.delegate_search_step {
            a.extend(["-k".into(), k.to_string().into()]);
        }
        if self.enable_multiple_subgraphs {
            a.push("-a".into());
        }
        if self.show_operations {
            a.push("-s".into());
        }
        if let Some(t) = self.timeout_sec {
            a.extend(["-t".into(), t.to_string().into()]);
        }
        a.extend(models.iter().map(|m| m.clone().into_os_string()));
        Ok(a)
    }

    /// The files the compiler writes for `model`: `<stem>_edgetpu.tflite` and `.log` in the
    /// output directory, or with `-n N` (N > 1) `<stem>_segment_<i>_of_<N>_edgetpu.tflite` and
    /// `.log` for each segment.
    pub fn outputs_of(&self, model: &Path) -> Vec<OutputPaths> {
        let dir = self.out_dir.clone().unwrap_or_default();
        let stem = model.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
        let files = |base: String, segment: Option<Segment>| OutputPaths {
            segment,
            model: dir.join(format!("{base}_edgetpu.tflite")),
            log: dir.join(format!("{base}_edgetpu.log")),
        };
        match self.num_segments {
            Some(n) if n > 1 => (0..n)
                .map(|i| files(format!("{stem}_segment_{i}_of_{n}"), Some(Segment { index: i, count: n })))
                .collect(),
            _ => vec![files(stem, None)],
        }
    }
}

/// One segment of a segmented model (`-n`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Segment {
    /// Index, from 0.
    pub index: u32,
    /// Number of segments.
    pub count: u32,
}

/// The two files the compiler writes per output model.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OutputPaths {
    /// The segment, for a segmented model.
    pub segment: Option<Segment>,
    /// The compiled model, `*_edgetpu.tflite`.
    pub model: PathBuf,
    /// The operation log, `*_edgetpu.log`.
    pub log: PathBuf,
}

fn check_models(models: &[PathBuf]) -> Result<()> {
    if models.is_empty() {
        return Err(Error::InvalidOption { option: "models".into(), reason: "no model given".into() });
    }
    let mut stems: HashMap<OsString, &PathBuf> = HashMap::new();
    for m in models {
        match std::fs::metadata(m) {
            Ok(md) if md.is_file() => {}
            Ok(_) => {
                return Err(Error::InvalidOption {
                    option: "models".into(),
                    reason: format!("{} is not a file", m.display()),
                })
            }
            Err(source) => return Err(Error::Io { path: m.clone(), source }),
        }
        let stem = m.file_stem().unwrap_or_default().to_os_string();
        if let Some(first) = stems.insert(stem, m) {
            return Err(Error::InvalidOption {
                option: "models".into(),
                reason: format!(
                    "{} and {} would both write {}_edgetpu.tflite; rename one",
                    first.display(),
                    m.display(),
                    m.file_stem().unwrap_or_default().to_string_lossy()
                ),
            });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runtime_versions_outside_10_to_14_are_refused() {
        for m in [0, 9, 15, 16] {
            let o = CompileOptions { min_runtime_version: Some(m), ..Default::default() };
            let msg = o.validate().unwrap_err().to_string();
            assert!(msg.contains("-m") && msg.contains("10 to 14") && msg.contains(&m.to_string()), "{msg}");
        }
        for m in 10..=14 {
            assert!(CompileOptions { min_runtime_version: Some(m), ..Default::default() }.validate().is_ok());
        }
    }

    #[test]
    fn other_bad_options_name_their_flag() {
        let cases = [
            (CompileOptions { num_segments: Some(0), ..Default::default() }, "-n"),
            (CompileOptions { delegate_search_step: Some(3), ..Default::default() }, "add -d"),
            (CompileOptions { timeout_sec: Some(0), ..Default::default() }, "-t"),
            (CompileOptions { intermediate_tensors: vec!["a,b".into()], ..Default::default() }, "-i"),
            (CompileOptions { intermediate_tensors: vec![" ".into()], ..Default::default() }, "-i"),
        ];
        for (o, flag) in cases {
            let msg = o.validate().unwrap_err().to_string();
            assert!(msg.contains(flag), "{msg}");
        }
    }

    #[test]
    fn output_names_follow_the_compiler() {
        let o = CompileOptions { out_dir: Some("out".into()), ..Default::default() };
        let files = o.outputs_of(Path::new("models/yolo.v5.tflite"));
        assert_eq!(files.len(), 1);
        assert_eq!(files[0].model, Path::new("out/yolo.v5_edgetpu.tflite"));
        assert_eq!(files[0].log, Path::new("out/yolo.v5_edgetpu.log"));
        let o = CompileOptions { num_segments: Some(3), ..Default::default() };
        let files = o.outputs_of(Path::new("m.tflite"));
        assert_eq!(files.len(), 3);
        assert_eq!(files[2].model, Path::new("m_segment_2_of_3_edgetpu.tflite"));
        assert_eq!(files[2].segment, Some(Segment { index: 2, count: 3 }));
        assert_eq!(CompileOptions { num_segments: Some(1), ..Default::default() }.outputs_of(Path::new("m")).len(), 1);
    }

    #[test]
    fn wall_clock_limit_defaults_to_compiler_timeout_plus_margin() {
        assert_eq!(CompileOptions::default().effective_wall_timeout(), Some(Duration::from_secs(240)));
        let o = CompileOptions { timeout_sec: Some(10), ..Default::default() };
        assert_eq!(o.effective_wall_timeout(), Some(Duration::from_secs(70)));
        assert_eq!(CompileOptions { search_delegate: true, ..Default::default() }.effective_wall_timeout(), None);
    }
}
