//! Errors of finding and running the compiler.

use std::path::PathBuf;
use std::time::Duration;

/// What to do when the compiler is missing.
const INSTALL_HINT: &str = "install it from Coral's apt repository (package `edgetpu-compiler`, x86-64 Debian/Ubuntu; \
     see https://coral.ai/docs/edgetpu/compiler/), or pass its path with --compiler PATH or the EDGETPU_COMPILER \
     environment variable";

/// An error of the compiler bridge. Each message names the program or file concerned and says what
/// to do.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// No compiler was found; `looked` lists where the search looked, in order.
    #[error("edgetpu_compiler not found (looked at: {}); {INSTALL_HINT}", looked.join("; "))]
    NotFound {
        /// The places searched, e.g. `$PATH: /usr/bin, /bin`.
        looked: Vec<String>,
    },
    /// No compiler was found, and none exists for this host.
    #[error(
        "edgetpu_compiler not found (looked at: {}), and Google builds it only for x86-64 Linux while this host is \
         {os}/{arch}; run it on an x86-64 Linux machine or in an x86-64 Linux container (e.g. `docker run --platform \
         linux/amd64` with a Debian image and Coral's apt repository), or pass --compiler PATH to a wrapper script that \
         does so",
        looked.join("; ")
    )]
    UnsupportedPlatform {
        /// Host operating system (`std::env::consts::OS`).
        os: String,
        /// Host architecture (`std::env::consts::ARCH`).
        arch: String,
        /// The places searched.
        looked: Vec<String>,
    },
    /// The compiler could not be started.
    #[error("cannot run edgetpu_compiler at {}: {source}{note}", path.display())]
    Spawn {
        /// The compiler path.
        path: PathBuf,
        /// Empty, or an explanation (the OS refused the file's executable format: the compiler
        /// runs only on x86-64 Linux).
        note: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// `--version` printed no `Edge TPU Compiler version …` line.
    #[error("{} --version printed no \"Edge TPU Compiler version\" line (it printed {output:?}); check that it is edgetpu_compiler", path.display())]
    UnexpectedVersion {
        /// The compiler path.
        path: PathBuf,
        /// What it printed (stdout and stderr).
        output: String,
    },
    /// An option or input the compiler would reject, caught before running it.
    #[error("invalid compile option {option}: {reason}")]
    InvalidOption {
        /// The option, with its compiler flag (`min_runtime_version (-m)`).
        option: String,
        /// What is wrong and what is accepted.
        reason: String,
    },
    /// A file or directory could not be read or created.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// The compiler ran past the wall-clock limit and was killed.
    #[error(
        "edgetpu_compiler ({}) did not finish within {} s and was killed; allow more time (CLI: --timeout SECS)",
        path.display(), limit.as_secs_f64()
    )]
    Timeout {
        /// The compiler path.
        path: PathBuf,
        /// The wall-clock limit.
        limit: Duration,
        /// What it printed on stdout before it was killed.
        stdout: String,
        /// What it printed on stderr before it was killed.
        stderr: String,
    },
    /// The compiler exited with a failure status.
    #[error("edgetpu_compiler ({}) failed ({status}): {message}", path.display())]
    Failed {
        /// The compiler path.
        path: PathBuf,
        /// `exit status 1`, or the signal that ended it.
        status: String,
        /// The compiler's own error text (its error lines, else the end of its output).
        message: String,
        /// Its whole stdout.
        stdout: String,
        /// Its whole stderr.
        stderr: String,
    },
    /// The compiler reported success but an expected output file is missing.
    #[error(
        "edgetpu_compiler ({}) reported success but did not write {}; its output was: {stdout_tail}",
        compiler.display(), missing.display()
    )]
    MissingOutput {
        /// The compiler path.
        compiler: PathBuf,
        /// The file that should exist.
        missing: PathBuf,
        /// The last lines of its stdout.
        stdout_tail: String,
    },
}

/// A result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
