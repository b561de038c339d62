//! `edgetpu models`: the model catalog. `list` shows it, `fetch` downloads a model into the
//! cache directory; and `--model NAME` (or `inspect NAME`) runs a model fetched there.
//!
//! How `--model NAME` resolves ([`resolve`]): a path that exists is always the file itself.
//! Otherwise a catalog name stands for its file in the cache directory (`EDGETPU_MODELS_DIR`,
//! else `$XDG_CACHE_HOME/edgetpu/models`, else `~/.cache/edgetpu/models`): the model compiled
//! for the Edge TPU when `--device` names Edge TPU devices (`usb`, `pci`, `sim`, ...), or is `auto`
//! and a Coral is attached (a USB Accelerator or a ready PCIe Coral); the CPU model otherwise
//! (`--device cpu`, or `auto` without a Coral).
//! `inspect NAME` takes the compiled model if it is there, else the CPU one. The model's label
//! file, when fetched, is the default `--labels`. Nothing is downloaded implicitly: a model not
//! in the cache is an error saying which `edgetpu models fetch` command to run.

use anyhow::{Context, Result};
use edgetpu_models::{Artifact, Catalog, Entry, Fetched, Progress};
use serde_json::{json, Value};
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

/// Arguments of `edgetpu models`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand, Debug)]
enum Sub {
    /// List the catalog: name, task, input size, which files are in the cache, whether their
    /// sha256 is known.
    List {
        /// Print a JSON document instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Download models of the catalog (by default both variants and the label file), check
    /// their sha256 when the catalog knows it, and save them in the cache directory. An
    /// interrupted download resumes where it stopped when the command runs again.
    Fetch {
        /// Catalog names (`edgetpu models list` shows them).
        #[arg(required = true, value_name = "NAME")]
        names: Vec<String>,
        /// Directory to save into (default: EDGETPU_MODELS_DIR, else $XDG_CACHE_HOME/edgetpu/models,
        /// else ~/.cache/edgetpu/models; `--model NAME` looks there).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// Only the CPU model (and the label file).
        #[arg(long, group = "variant")]
        cpu: bool,
        /// Only the model compiled for the Edge TPU (and the label file).
        #[arg(long, group = "variant")]
        edgetpu: bool,
        /// Both models and the label file (the default).
        #[arg(long, group = "variant")]
        all: bool,
    },
}

/// Runs `edgetpu models list` or `edgetpu models fetch`.
pub fn run(args: &Args) -> Result<()> {
    match &args.command {
        Sub::List { json } => list(*json),
        Sub::Fetch { names, dir, cpu, edgetpu, all: _ } => {
            let artifacts: &[Artifact] = match (cpu, edgetpu) {
                (true, _) => &[Artifact::Cpu, Artifact::Labels],
                (_, true) => &[Artifact::EdgeTpu, Artifact::Labels],
                _ => &Artifact::ALL,
            };
            fetch(names, dir.as_deref(), artifacts)
        }
    }
}

fn catalog() -> Result<&'static Catalog> {
    Ok(Catalog::builtin()?)
}

fn list(as_json: bool) -> Result<()> {
    let catalog = catalog()?;
    let dir = edgetpu_models::cache_dir().ok();
    let cached = |e: &Entry, a: Artifact| dir.as_deref().and_then(|d| e.cached(d, a));
    if as_json {
        let file_json = |e: &Entry, a: Artifact| {
            e.file(a).map(|f| {
                json!({
                    "file": f.file,
                    "url": f.url_from(edgetpu_models::base_url_override().as_deref()),
                    "size": f.size,
                    "sha256": f.sha256,
                    "cached": cached(e, a).map(|p| p.display().to_string()),
                })
            })
        };
        let models: Vec<Value> = catalog
            .models
            .iter()
            .map(|e| {
                json!({
                    "name": e.name,
                    "description": e.description,
                    "task": e.task.name(),
                    "input": {"width": e.input.width, "height": e.input.height},
                    "sha256_known": e.all_checksums_known(),
                    "cpu": file_json(e, Artifact::Cpu),
                    "edgetpu": file_json(e, Artifact::EdgeTpu),
                    "labels": file_json(e, Artifact::Labels),
                })
            })
            .collect();
        let doc = json!({
            "cache_dir": dir.as_ref().map(|d| d.display().to_string()),
            "base_url": edgetpu_models::base_url_override(),
            "models": models,
        });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    let width = catalog.models.iter().map(|e| e.name.len()).max().unwrap_or(4).max(4);
    println!("{:<width$}  {:<14}  {:>7}  {:<20}  SHA256", "NAME", "TASK", "INPUT", "CACHED");
    for e in &catalog.models {
        let have: Vec<&str> = e.files().filter(|(a, _)| cached(e, *a).is_some()).map(|(a, _)| a.name()).collect();
        let have = if have.is_empty() { "-".to_string() } else { have.join(",") };
        let input = format!("{}x{}", e.input.width, e.input.height);
        let sha = if e.all_checksums_known() { "known" } else { "unknown" };
        println!("{:<width$}  {:<14}  {input:>7}  {have:<20}  {sha}", e.name, e.task.name());
    }
    println!();
    match &dir {
        Some(d) => println!("cache: {} (EDGETPU_MODELS_DIR chooses another)", d.display()),
        None => println!("cache: none (HOME, XDG_CACHE_HOME and EDGETPU_MODELS_DIR are unset)"),
    }
    println!(
        "sha256 unknown: the catalog has no digest for that model's files yet; `edgetpu models fetch` downloads \
         them unchecked and prints the digest it got."
    );
    Ok(())
}

fn fetch(names: &[String], dir: Option<&Path>, artifacts: &[Artifact]) -> Result<()> {
    let catalog = catalog()?;
    // Every name is checked before anything is downloaded.
    let entries = names.iter().map(|n| catalog.lookup(n)).collect::<Result<Vec<_>, _>>()?;
    let dir = match dir {
        Some(d) => d.to_path_buf(),
        None => edgetpu_models::cache_dir()?,
    };
    let mirror = edgetpu_models::base_url_override();
    let terminal = std::io::stderr().is_terminal();
    for entry in entries {
        for &artifact in artifacts {
            let Some(file) = entry.file(artifact) else { continue };
            let mut bar = Bar::new(&file.file, file.url_from(mirror.as_deref()), terminal);
            let got = edgetpu_models::fetch_from(entry, artifact, &dir, mirror.as_deref(), &mut |p| bar.update(p));
            bar.finish();
            let got = got.with_context(|| format!("fetching the {} file of {}", artifact.name(), entry.name))?;
            println!("{}", report(&got));
        }
    }
    Ok(())
}

/// One line on a fetched file.
fn report(got: &Fetched) -> String {
    let check = if got.verified { "sha256 checked" } else { "sha256 not in the catalog, not checked" };
    if got.already_present {
        format!("{}: already there ({check})", got.path.display())
    } else {
        format!("{}: {} bytes, sha256 {} ({check})", got.path.display(), got.bytes, got.sha256)
    }
}

/// Download progress on stderr: a bar redrawn in place on a terminal, else one line per file.
struct Bar {
    file: String,
    url: String,
    terminal: bool,
    started: bool,
    drawn: Option<Instant>,
}

impl Bar {
    fn new(file: &str, url: String, terminal: bool) -> Bar {
        Bar { file: file.to_string(), url, terminal, started: false, drawn: None }
    }

    fn update(&mut self, p: Progress) {
        let mut err = std::io::stderr();
        if !self.started {
            self.started = true;
            let resume =
                if p.resumed_from > 0 { format!(" (resuming after {} bytes)", p.resumed_from) } else { String::new() };
            if !self.terminal {
                let _ = writeln!(err, "fetching {}{resume}", self.url);
                return;
            }
            if !resume.is_empty() {
                let _ = writeln!(err, "{}{resume}", self.file);
            }
        }
        if !self.terminal {
            return;
        }
        let complete = p.total == Some(p.done);
        if self.drawn.is_some_and(|t| t.elapsed() < Duration::from_millis(100)) && !complete {
            return;
        }
        self.drawn = Some(Instant::now());
        let line = bar_line(&self.file, p);
        let _ = write!(err, "\r{line}\x1b[K");
        let _ = err.flush();
    }

    fn finish(&mut self) {
        if self.terminal && self.started {
            eprintln!();
        }
    }
}

/// `file [#####-----]  50% 1.2/2.4 MB`, or `file 1.2 MB` when the size is unknown.
fn bar_line(file: &str, p: Progress) -> String {
    let mb = |n: u64| n as f64 / 1e6;
    match p.total.filter(|&t| t > 0) {
        Some(total) => {
            let frac = (p.done as f64 / total as f64).clamp(0.0, 1.0);
            let filled = (frac * 30.0).round() as usize;
            format!(
                "{file} [{}{}] {:>3.0}% {:.1}/{:.1} MB",
                "#".repeat(filled),
                "-".repeat(30 - filled),
                frac * 100.0,
                mb(p.done),
                mb(total)
            )
        }
        None => format!("{file} {:.1} MB", mb(p.done)),
    }
}

/// Which file of a catalog model a name stands for.
pub use edgetpu_models::Want;

/// A model argument after catalog resolution.
#[derive(Debug, Clone)]
pub struct Resolved {
    /// The file to open.
    pub path: PathBuf,
    /// The catalog model's label file, when the argument was a catalog name and the file is cached.
    pub labels: Option<PathBuf>,
}

/// What `--device` asks of a catalog name: see the module documentation.
pub fn want_for_device(device: &str) -> Want {
    match edgetpu::DeviceSpec::parse(device) {
        Ok(edgetpu::DeviceSpec::Cpu) => Want::Cpu,
        Ok(edgetpu::DeviceSpec::Auto) if coral_attached() => Want::EdgeTpu,
        Ok(edgetpu::DeviceSpec::Auto) => Want::Cpu,
        // A bad device string is reported where the devices are opened.
        _ => Want::EdgeTpu,
    }
}

/// Whether a Coral is attached that `--device auto` would take: a USB Accelerator, or a ready
/// PCIe Coral (see [`edgetpu::DeviceSpec::resolve`]).
fn coral_attached() -> bool {
    edgetpu::DeviceSpec::auto().resolve_in(&crate::devices::pcie::sysfs_root()).is_some()
}

/// Resolves a model argument: the path itself if it exists or is not a catalog name, else the
/// catalog model's file in the cache directory (`want` is asked only then; see
/// [`edgetpu_models::resolve_cached`]).
pub fn resolve(given: &Path, want: impl FnOnce() -> Want) -> Result<Resolved> {
    let unchanged = || Ok(Resolved { path: given.to_path_buf(), labels: None });
    if given.exists() {
        return unchanged();
    }
    let Some(name) = given.to_str() else { return unchanged() };
    let Some(cached) = edgetpu_models::resolve_cached(name, want)? else { return unchanged() };
    eprintln!("model: {} = {}", cached.name, cached.model.display());
    Ok(Resolved { path: cached.model, labels: cached.labels })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn devices_choose_the_variant() {
        assert_eq!(want_for_device("cpu"), Want::Cpu);
        assert_eq!(want_for_device("usb"), Want::EdgeTpu);
        assert_eq!(want_for_device("sim:0,sim:1"), Want::EdgeTpu);
    }

    #[test]
    fn an_existing_path_or_an_unknown_name_is_left_alone() {
        let here = Path::new(env!("CARGO_MANIFEST_DIR"));
        let r = resolve(here, || panic!("not asked for a path that exists")).unwrap();
        assert_eq!(r.path, here);
        let r = resolve(Path::new("no_such_model_anywhere.tflite"), || panic!("not asked")).unwrap();
        assert_eq!(r.path, Path::new("no_such_model_anywhere.tflite"));
        assert!(r.labels.is_none());
    }

    #[test]
    fn the_bar_shows_the_fraction_and_sizes() {
        let p = Progress { done: 1_500_000, total: Some(3_000_000), resumed_from: 0 };
        assert_eq!(bar_line("m.tflite", p), format!("m.tflite [{}{}]  50% 1.5/3.0 MB", "#".repeat(15), "-".repeat(15)));
        let p = Progress { done: 2_000_000, total: None, resumed_from: 0 };
        assert_eq!(bar_line("m.tflite", p), "m.tflite 2.0 MB");
    }

    #[test]
    fn the_report_says_whether_the_digest_was_checked() {
        let got = Fetched {
            path: PathBuf::from("/c/m.tflite"),
            bytes: 10,
            sha256: "ab".into(),
            verified: false,
            already_present: false,
            url: "https://x/m.tflite".into(),
            resumed_from: 0,
        };
        assert_eq!(report(&got), "/c/m.tflite: 10 bytes, sha256 ab (sha256 not in the catalog, not checked)");
        let there = Fetched { verified: true, already_present: true, ..got };
        assert_eq!(report(&there), "/c/m.tflite: already there (sha256 checked)");
    }
}
