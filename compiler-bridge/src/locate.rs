//! Finding `edgetpu_compiler` and reading its version.

use crate::error::{Error, Result};
use crate::report::CompilerVersion;
use crate::runner::{exec, Progress};
use serde::Serialize;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The compiler's program name, searched for on `PATH`.
pub const PROGRAM: &str = "edgetpu_compiler";

/// The environment variable naming the compiler's path.
pub const ENV_VAR: &str = "EDGETPU_COMPILER";

/// How long `--version` may take before the compiler is killed.
pub const VERSION_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether Google builds `edgetpu_compiler` for this operating system and architecture (the
/// values of `std::env::consts::OS` and `ARCH`): only x86-64 Linux (ARM64 builds stopped at
/// compiler 2.1).
pub fn platform_supported(os: &str, arch: &str) -> bool {
    os == "linux" && arch == "x86_64"
}

/// Where a [`Compiler`] was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// Given explicitly (`--compiler PATH`).
    Explicit,
    /// The `EDGETPU_COMPILER` environment variable.
    Environment,
    /// Found on `PATH`.
    Path,
}

/// Where [`Compiler::locate_in`] looks: an explicit path, the value of `EDGETPU_COMPILER`, the
/// value of `PATH`, and the host platform. [`Search::from_env`] fills it from the process.
#[derive(Debug, Clone, Default)]
pub struct Search {
    /// An explicit path (`--compiler`); a bare name without a directory is looked up on `PATH`.
    pub explicit: Option<PathBuf>,
    /// The value of `EDGETPU_COMPILER` (an empty value counts as unset).
    pub env_value: Option<OsString>,
    /// The value of `PATH`.
    pub path_var: Option<OsString>,
    /// Host operating system, as `std::env::consts::OS`.
    pub os: String,
    /// Host architecture, as `std::env::consts::ARCH`.
    pub arch: String,
}

impl Search {
    /// The search of this process: `explicit`, then `EDGETPU_COMPILER`, then `PATH`.
    pub fn from_env(explicit: Option<&Path>) -> Search {
        Search {
            explicit: explicit.map(Path::to_path_buf),
            env_value: std::env::var_os(ENV_VAR),
            path_var: std::env::var_os("PATH"),
            os: std::env::consts::OS.to_string(),
            arch: std::env::consts::ARCH.to_string(),
        }
    }

    fn missing(&self, looked: Vec<String>) -> Error {
        if platform_supported(&self.os, &self.arch) {
            Error::NotFound { looked }
        } else {
            Error::UnsupportedPlatform { os: self.os.clone(), arch: self.arch.clone(), looked }
        }
    }

    fn on_path(&self, name: &Path, looked: &mut Vec<String>) -> Option<PathBuf> {
        let Some(var) = self.path_var.as_ref().filter(|v| !v.is_empty()) else {
            looked.push("$PATH (unset)".into());
            return None;
        };
        let dirs: Vec<PathBuf> = std::env::split_paths(var).collect();
        let found = dirs.iter().map(|d| d.join(name)).find(|p| is_executable(p));
        if found.is_none() {
            let list: Vec<String> = dirs.iter().map(|d| d.display().to_string()).collect();
            looked.push(format!("{} in $PATH ({})", name.display(), list.join(", ")));
        }
        found
    }
}

/// A located `edgetpu_compiler`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Compiler {
    /// Its path.
    pub path: PathBuf,
    /// How it was found.
    pub source: Source,
}

impl Compiler {
    /// A compiler at a known path, without checking it.
    pub fn at(path: impl Into<PathBuf>) -> Compiler {
        Compiler { path: path.into(), source: Source::Explicit }
    }

    /// Finds the compiler: `explicit` (the `--compiler` option), else `EDGETPU_COMPILER`, else
    /// `edgetpu_compiler` on `PATH`.
    pub fn locate(explicit: Option<&Path>) -> Result<Compiler> {
        Self::locate_in(&Search::from_env(explicit))
    }

    /// [`Compiler::locate`] over a given [`Search`]. An explicit path or `EDGETPU_COMPILER` that
    /// names no file is an error (the search does not go on past it). When nothing is found the
    /// error lists where it looked, and says so when the host is not x86-64 Linux.
    pub fn locate_in(search: &Search) -> Result<Compiler> {
        let mut looked = Vec::new();
        if let Some(p) = &search.explicit {
            if p.is_file() {
                return Ok(Compiler { path: p.clone(), source: Source::Explicit });
            }
            if p.components().count() == 1 && !p.exists() {
                if let Some(path) = search.on_path(p, &mut looked) {
                    return Ok(Compiler { path, source: Source::Explicit });
                }
                return Err(search.missing(looked));
            }
            return Err(search.missing(vec![format!("--compiler {}: no such file", p.display())]));
        }
        match search.env_value.as_ref().filter(|v| !v.is_empty()) {
            Some(v) => {
                let p = PathBuf::from(v);
                if p.is_file() {
                    return Ok(Compiler { path: p, source: Source::Environment });
                }
                return Err(search.missing(vec![format!("{ENV_VAR}={}: no such file", p.display())]));
            }
            None => looked.push(format!("{ENV_VAR} (unset)")),
        }
        match search.on_path(Path::new(PROGRAM), &mut looked) {
            Some(path) => Ok(Compiler { path, source: Source::Path }),
            None => Err(search.missing(looked)),
        }
    }

    /// Runs `--version` and parses the `Edge TPU Compiler version …` line.
    pub fn version(&self) -> Result<CompilerVersion> {
        let out = exec(&self.path, &["--version".into()], Some(VERSION_TIMEOUT), &mut |_: Progress<'_>| {})?;
        let found = out.stdout.lines().chain(out.stderr.lines()).find_map(CompilerVersion::from_banner);
        match found {
            Some(v) if out.status.success() => Ok(v),
            _ => Err(Error::UnexpectedVersion {
                path: self.path.clone(),
                output: format!("{}{}", out.stdout, out.stderr).trim().to_string(),
            }),
        }
    }
}

#[cfg(unix)]
fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(not(unix))]
fn is_executable(p: &Path) -> bool {
    p.is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_x86_64_linux_is_supported() {
        assert!(platform_supported("linux", "x86_64"));
        for (os, arch) in [("linux", "aarch64"), ("macos", "x86_64"), ("macos", "aarch64"), ("windows", "x86_64")] {
            assert!(!platform_supported(os, arch), "{os}/{arch}");
        }
    }

    #[test]
    fn missing_compiler_names_every_place_searched() {
        let dir = std::env::temp_dir().join(format!("edgetpu-locate-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let search = Search {
            path_var: Some(std::env::join_paths([&dir, Path::new("/nonexistent/bin")]).unwrap()),
            os: "linux".into(),
            arch: "x86_64".into(),
            ..Search::default()
        };
        let msg = Compiler::locate_in(&search).unwrap_err().to_string();
        assert!(msg.contains("EDGETPU_COMPILER (unset)"), "{msg}");
        assert!(msg.contains(&dir.display().to_string()) && msg.contains("/nonexistent/bin"), "{msg}");
        assert!(msg.contains("apt") && msg.contains("--compiler"), "{msg}");

        let mac = Search { os: "macos".into(), arch: "aarch64".into(), ..search.clone() };
        let msg = Compiler::locate_in(&mac).unwrap_err().to_string();
        assert!(msg.contains("only for x86-64 Linux") && msg.contains("macos/aarch64"), "{msg}");
        assert!(msg.contains("container"), "{msg}");

        let env = Search { env_value: Some(dir.join("nope").into()), ..search.clone() };
        let msg = Compiler::locate_in(&env).unwrap_err().to_string();
        assert!(msg.contains("EDGETPU_COMPILER=") && msg.contains("nope: no such file"), "{msg}");

        let explicit = Search { explicit: Some(dir.join("nope")), ..search };
        let msg = Compiler::locate_in(&explicit).unwrap_err().to_string();
        assert!(msg.contains("--compiler") && msg.contains("nope: no such file"), "{msg}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
