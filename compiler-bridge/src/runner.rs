//! Running the compiler: progress, wall-clock limit, outputs.

use crate::error::{Error, Result};
use crate::locate::Compiler;
use crate::options::{CompileOptions, OutputPaths};
use crate::report::Report;
use serde::{Serialize, Serializer};
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// How often [`Progress::Elapsed`] is reported while the compiler runs.
pub const TICK: Duration = Duration::from_millis(100);

/// How long output is still collected after the compiler exits (a child process of its own may
/// hold the pipes open).
const DRAIN: Duration = Duration::from_secs(2);

/// What a running compiler did, for a progress display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress<'a> {
    /// A line it printed on stdout (without the line end).
    Stdout(&'a str),
    /// A line it printed on stderr.
    Stderr(&'a str),
    /// Time since it started; reported about every [`TICK`].
    Elapsed(Duration),
}

/// One compiled model's files.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OutputFile {
    /// Where the files are, and the segment for a segmented model.
    #[serde(flatten)]
    pub paths: OutputPaths,
    /// The operation log's text, when the compiler wrote one.
    pub log_text: Option<String>,
    /// The operation log, parsed.
    pub log_report: Option<Report>,
}

/// The outputs of one input model: one file, or one per segment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompiledModel {
    /// The input model, as given.
    pub input: PathBuf,
    /// Its compiled model(s) and log(s).
    pub outputs: Vec<OutputFile>,
}

/// A successful compiler run.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CompileOutput {
    /// The compiler that ran.
    pub compiler: PathBuf,
    /// Its arguments.
    #[serde(serialize_with = "lossy_args")]
    pub args: Vec<OsString>,
    /// How long it ran.
    #[serde(rename = "elapsed_ms", serialize_with = "millis")]
    pub elapsed: Duration,
    /// Its stdout.
    pub stdout: String,
    /// Its stderr.
    pub stderr: String,
    /// Its stdout, parsed.
    pub report: Report,
    /// The input models, in the order given, with their outputs.
    pub models: Vec<CompiledModel>,
}

fn lossy_args<S: Serializer>(args: &[OsString], s: S) -> std::result::Result<S::Ok, S::Error> {
    s.collect_seq(args.iter().map(|a| a.to_string_lossy()))
}

fn millis<S: Serializer>(d: &Duration, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

impl Compiler {
    /// Compiles `models` (several are co-compiled: they share the on-chip parameter cache).
    pub fn compile(&self, models: &[PathBuf], options: &CompileOptions) -> Result<CompileOutput> {
        self.compile_with_progress(models, options, &mut |_| {})
    }

    /// [`Compiler::compile`], reporting output lines and elapsed time to `progress` as the
    /// compiler runs.
    ///
    /// Fails with [`Error::Timeout`] when the wall-clock limit
    /// ([`CompileOptions::effective_wall_timeout`]) passes (the compiler and its child processes
    /// are killed), [`Error::Failed`] with the compiler's error text when it exits with a failure,
    /// and [`Error::MissingOutput`] when it claims success without writing a compiled model.
    pub fn compile_with_progress(
        &self,
        models: &[PathBuf],
        options: &CompileOptions,
        progress: &mut dyn FnMut(Progress<'_>),
    ) -> Result<CompileOutput> {
        let args = options.args(models)?;
        if let Some(dir) = &options.out_dir {
            std::fs::create_dir_all(dir).map_err(|source| Error::Io { path: dir.clone(), source })?;
        }
        let run = exec(&self.path, &args, options.effective_wall_timeout(), progress)?;
        let report = Report::parse(&run.stdout);
        if !run.status.success() || report.succeeded == Some(false) {
            return Err(Error::Failed {
                path: self.path.clone(),
                status: describe(run.status),
                message: error_text(&report, &run.stdout, &run.stderr),
                stdout: run.stdout,
                stderr: run.stderr,
            });
        }
        let mut compiled = Vec::new();
        for m in models {
            let mut outputs = Vec::new();
            for paths in options.outputs_of(m) {
                if !paths.model.is_file() {
                    return Err(Error::MissingOutput {
                        compiler: self.path.clone(),
                        missing: paths.model,
                        stdout_tail: tail(&run.stdout, 8),
                    });
                }
                let log_text = match std::fs::read(&paths.log) {
                    Ok(bytes) => Some(String::from_utf8_lossy(&bytes).into_owned()),
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
                    Err(source) => return Err(Error::Io { path: paths.log, source }),
                };
                let log_report = log_text.as_deref().map(Report::parse);
                outputs.push(OutputFile { paths, log_text, log_report });
            }
            compiled.push(CompiledModel { input: m.clone(), outputs });
        }
        Ok(CompileOutput {
            compiler: self.path.clone(),
            args,
            elapsed: run.elapsed,
            stdout: run.stdout,
            stderr: run.stderr,
            report,
            models: compiled,
        })
    }
}

/// What a finished process printed.
pub(crate) struct Captured {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
    pub elapsed: Duration,
}

#[derive(Clone, Copy)]
enum Stream {
    Out,
    Err,
}

fn reader(pipe: impl Read + Send + 'static, stream: Stream, tx: mpsc::Sender<(Stream, String)>) {
    std::thread::spawn(move || {
        let mut r = BufReader::new(pipe);
        let mut buf = Vec::new();
        loop {
            buf.clear();
            match r.read_until(b'\n', &mut buf) {
                Ok(0) | Err(_) => return,
                Ok(_) => {
                    let line = String::from_utf8_lossy(&buf).into_owned();
                    if tx.send((stream, line)).is_err() {
                        return;
                    }
                }
            }
        }
    });
}

/// Runs `path args`, collecting stdout and stderr, reporting progress, and killing it (with its
/// child processes) when `limit` passes.
pub(crate) fn exec(
    path: &Path,
    args: &[OsString],
    limit: Option<Duration>,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Captured> {
    let start = Instant::now();
    let mut child = Command::new(path)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|source| Error::Spawn {
            path: path.to_path_buf(),
            note: if source.raw_os_error() == Some(8) {
                " (the OS does not recognise it as an executable for this host: edgetpu_compiler runs only on x86-64 \
                 Linux)"
                    .into()
            } else {
                String::new()
            },
            source,
        })?;
    let (tx, rx) = mpsc::channel();
    if let Some(out) = child.stdout.take() {
        reader(out, Stream::Out, tx.clone());
    }
    if let Some(err) = child.stderr.take() {
        reader(err, Stream::Err, tx);
    }
    let (mut stdout, mut stderr) = (String::new(), String::new());
    let mut take = |msg: (Stream, String), progress: &mut dyn FnMut(Progress<'_>)| {
        let (stream, line) = msg;
        let text = line.trim_end_matches(['\n', '\r']);
        match stream {
            Stream::Out => {
                progress(Progress::Stdout(text));
                stdout.push_str(&line);
            }
            Stream::Err => {
                progress(Progress::Stderr(text));
                stderr.push_str(&line);
            }
        }
    };
    let mut last_tick = start;
    let mut exited: Option<(ExitStatus, Instant)> = None;
    let mut readers_done = false;
    let status = loop {
        if readers_done {
            std::thread::sleep(TICK);
        } else {
            match rx.recv_timeout(TICK) {
                Ok(msg) => take(msg, progress),
                Err(mpsc::RecvTimeoutError::Disconnected) => readers_done = true,
                Err(mpsc::RecvTimeoutError::Timeout) => {}
            }
        }
        if last_tick.elapsed() >= TICK {
            last_tick = Instant::now();
            progress(Progress::Elapsed(start.elapsed()));
        }
        if exited.is_none() {
            if let Some(status) = child.try_wait().map_err(|source| Error::Io { path: path.to_path_buf(), source })? {
                exited = Some((status, Instant::now()));
            } else if limit.is_some_and(|l| start.elapsed() >= l) {
                kill_tree(&mut child);
                // Whatever was already printed belongs in the error.
                let grace = Instant::now();
                while !readers_done && grace.elapsed() < Duration::from_millis(200) {
                    match rx.recv_timeout(Duration::from_millis(20)) {
                        Ok(msg) => take(msg, progress),
                        Err(mpsc::RecvTimeoutError::Timeout) => {}
                        Err(mpsc::RecvTimeoutError::Disconnected) => break,
                    }
                }
                return Err(Error::Timeout {
                    path: path.to_path_buf(),
                    limit: limit.unwrap_or_default(),
                    stdout,
                    stderr,
                });
            }
        }
        if let Some((status, at)) = exited {
            if readers_done || at.elapsed() >= DRAIN {
                break status;
            }
        }
    };
    Ok(Captured { status, stdout, stderr, elapsed: start.elapsed() })
}

/// Kills `child` and, on Linux, every process descended from it (the compiler does its work in a
/// child process of its own).
fn kill_tree(child: &mut Child) {
    let descendants = descendants(child.id());
    let _ = child.kill();
    if !descendants.is_empty() {
        let _ = Command::new("kill")
            .arg("-KILL")
            .args(descendants.iter().map(u32::to_string))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    let _ = child.wait();
}

/// The processes descended from `root`, from `/proc` (empty where there is no `/proc`).
fn descendants(root: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    let parents: Vec<(u32, u32)> = dir
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(e.path().join("stat")).ok()?;
            // pid (comm) state ppid …; comm may hold spaces and parentheses.
            let after = &stat[stat.rfind(')')? + 1..];
            let ppid = after.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid))
        })
        .collect();
    let mut out = vec![];
    let mut frontier = vec![root];
    while let Some(p) = frontier.pop() {
        for &(pid, ppid) in &parents {
            if ppid == p && !out.contains(&pid) {
                out.push(pid);
                frontier.push(pid);
            }
        }
    }
    out
}

/// `exit status 1`, or the signal that ended the process.
fn describe(status: ExitStatus) -> String {
    if let Some(code) = status.code() {
        return format!("exit status {code}");
    }
    #[cfg(unix)]
    {
        use std::os::unix::process::ExitStatusExt;
        if let Some(sig) = status.signal() {
            return format!("killed by signal {sig}");
        }
    }
    status.to_string()
}

/// The compiler's error text: its error lines and stderr, else the end of its output.
fn error_text(report: &Report, stdout: &str, stderr: &str) -> String {
    let mut lines: Vec<&str> = report.errors.iter().map(String::as_str).collect();
    for l in stderr.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if !lines.contains(&l) {
            lines.push(l);
        }
    }
    if lines.is_empty() {
        let t = tail(stdout, 8);
        return if t.is_empty() { "it printed nothing".into() } else { t };
    }
    lines.join("; ")
}

/// The last `n` non-blank lines, joined with "; ".
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    lines[lines.len().saturating_sub(n)..].join("; ")
}
