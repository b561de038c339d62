//! The runner end to end against the stand-in compiler (`src/bin/standin.rs`), which takes the
//! real compiler's options and prints its output format but compiles nothing.

use edgetpu_compiler::{CompileOptions, Compiler, Error, OpReason, Progress, Search, Source};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

const STANDIN: &str = env!("CARGO_BIN_EXE_edgetpu-compiler-standin");

fn compiler() -> Compiler {
    Compiler::at(STANDIN)
}

/// A fresh directory holding `models` (small files: the stand-in copies them) and an output
/// directory `out` whose `standin.env` holds `settings`.
fn setup(name: &str, models: &[&str], settings: &[(&str, String)]) -> (PathBuf, Vec<PathBuf>, PathBuf) {
    let dir = std::env::temp_dir().join(format!("edgetpu-compiler-runner-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let out = dir.join("out");
    std::fs::create_dir_all(&out).unwrap();
    let paths: Vec<PathBuf> = models
        .iter()
        .map(|m| {
            let p = dir.join(m);
            std::fs::write(&p, format!("model {m}").repeat(100)).unwrap();
            p
        })
        .collect();
    let env: String = settings.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    std::fs::write(out.join("standin.env"), env).unwrap();
    (dir, paths, out)
}

fn options(out: &Path) -> CompileOptions {
    CompileOptions { out_dir: Some(out.to_path_buf()), ..Default::default() }
}

#[test]
fn version_is_read_from_the_banner() {
    let v = compiler().version().unwrap();
    assert_eq!(v.to_string(), "16.0.384591198");
    assert_eq!((v.major, v.minor), (16, 0));
}

#[test]
fn every_option_reaches_the_compiler_in_order() {
    let (dir, models, out) = setup("args", &["a.tflite"], &[]);
    let args_file = dir.join("args.txt");
    std::fs::write(out.join("standin.env"), format!("EDGETPU_STANDIN_ARGS_FILE={}\n", args_file.display())).unwrap();
    let opts = CompileOptions {
        num_segments: Some(1),
        min_runtime_version: Some(13),
        intermediate_tensors: vec!["conv1/out".into(), "head:0".into()],
        search_delegate: true,
        delegate_search_step: Some(30),
        enable_multiple_subgraphs: true,
        show_operations: true,
        timeout_sec: Some(60),
        ..options(&out)
    };
    let run = compiler().compile(&models, &opts).unwrap();
    let got = std::fs::read_to_string(&args_file).unwrap();
    let expected = [
        "-o",
        out.to_str().unwrap(),
        "-n",
        "1",
        "-m",
        "13",
        "-i",
        "conv1/out,head:0",
        "-d",
        "-k",
        "30",
        "-a",
        "-s",
        "-t",
        "60",
        models[0].to_str().unwrap(),
    ];
    assert_eq!(got.lines().collect::<Vec<_>>(), expected);
    assert_eq!(run.args.iter().map(|a| a.to_str().unwrap()).collect::<Vec<_>>(), expected);
    assert_eq!(run.report.timeout_timer_sec, Some(60));
    // -s prints the table on stdout.
    assert_eq!(run.report.models[0].operations.len(), 3);
}

#[test]
fn a_single_model_compiles_with_outputs_and_parsed_log() {
    let (_dir, models, out) = setup("single", &["net.tflite"], &[]);
    let mut lines = Vec::new();
    let run = compiler()
        .compile_with_progress(&models, &options(&out), &mut |p| {
            if let Progress::Stdout(l) = p {
                lines.push(l.to_string());
            }
        })
        .unwrap();
    assert_eq!(lines.first().map(String::as_str), Some("Edge TPU Compiler version 16.0.384591198"));
    assert_eq!(lines.len(), run.stdout.lines().count());
    assert_eq!(run.report.succeeded, Some(true));
    assert!(run.report.unparsed.is_empty(), "{:?}", run.report.unparsed);
    let m = run.report.single_model().unwrap();
    assert_eq!(m.input.as_deref(), Some(models[0].as_path()));
    // Printed with two decimals of KiB: within 0.005 KiB of the file size.
    let size = std::fs::metadata(&models[0]).unwrap().len();
    assert!(m.input_bytes.unwrap().abs_diff(size) <= 6, "{:?} for {size} B", m.input_bytes);
    assert_eq!((m.ops_total(), m.ops_on_tpu(), m.ops_on_cpu()), (Some(6), Some(6), Some(0)));
    assert_eq!(m.off_chip_streamed_bytes, Some(0));
    let file = &run.models[0].outputs[0];
    assert_eq!(file.paths.model, out.join("net_edgetpu.tflite"));
    assert_eq!(std::fs::read(&file.paths.model).unwrap(), std::fs::read(&models[0]).unwrap());
    let log = file.log_report.as_ref().unwrap();
    assert_eq!(log.single_model().unwrap().output.as_deref(), Some(file.paths.model.as_path()));
    assert!(file.log_text.as_deref().unwrap().contains("DEPTHWISE_CONV_2D"));
}

#[test]
fn two_models_are_cocompiled() {
    let (_dir, models, out) = setup("cocompile", &["bird.tflite", "insect.tflite"], &[]);
    let run = compiler().compile(&models, &options(&out)).unwrap();
    assert!(run.report.cocompiled);
    assert_eq!(run.report.models.len(), 2);
    assert_eq!(run.models.len(), 2);
    for (i, stem) in ["bird", "insect"].iter().enumerate() {
        assert_eq!(run.report.models[i].input.as_deref(), Some(models[i].as_path()));
        let f = &run.models[i].outputs[0];
        assert_eq!(f.paths.model, out.join(format!("{stem}_edgetpu.tflite")));
        assert!(f.paths.model.is_file() && f.log_text.is_some());
        let log_input = f.log_report.as_ref().unwrap().models[0].input.clone();
        assert_eq!(log_input.as_deref(), Some(models[i].as_path()));
    }
}

#[test]
fn segments_have_their_own_files() {
    let (_dir, models, out) = setup("segments", &["kp.tflite"], &[]);
    let run = compiler().compile(&models, &CompileOptions { num_segments: Some(2), ..options(&out) }).unwrap();
    let files = &run.models[0].outputs;
    assert_eq!(files.len(), 2);
    for (i, f) in files.iter().enumerate() {
        assert_eq!(f.paths.model, out.join(format!("kp_segment_{i}_of_2_edgetpu.tflite")));
        assert_eq!(f.paths.log, out.join(format!("kp_segment_{i}_of_2_edgetpu.log")));
        assert_eq!(f.paths.segment.map(|s| (s.index, s.count)), Some((i as u32, 2)));
        let input = f.log_report.as_ref().unwrap().models[0].input.clone().unwrap();
        assert_eq!(input, PathBuf::from(format!("kp_segment_{i}_of_2.tflite")));
    }
    assert_eq!(run.report.models.len(), 2);
}

#[test]
fn operator_rows_of_a_real_log_come_through() {
    let shared = match std::env::var_os("EDGETPU_SHARED") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
    };
    let log = shared.join("research/compiler-logs/05_v14.1_tiny_yolo_edgetpu.log");
    assert!(log.is_file(), "{} missing: set EDGETPU_SHARED", log.display());
    let (_dir, models, out) =
        setup("table", &["tiny_yolo.tflite"], &[("EDGETPU_STANDIN_TABLE", log.display().to_string())]);
    let run = compiler().compile(&models, &CompileOptions { show_operations: true, ..options(&out) }).unwrap();
    let m = run.report.single_model().unwrap();
    assert_eq!((m.ops_total(), m.ops_on_tpu(), m.ops_on_cpu()), (Some(25), Some(19), Some(6)));
    assert!(m
        .operations
        .iter()
        .any(|r| r.operator == "RESIZE_NEAREST_NEIGHBOR" && r.reason == OpReason::UnsupportedVersion));
    let from_log = run.models[0].outputs[0].log_report.as_ref().unwrap();
    assert_eq!(from_log.models[0].operations, m.operations);
}

#[test]
fn unknown_lines_are_kept() {
    let line = "Edge TPU Compiler warning: something new".to_string();
    let (_dir, models, out) = setup("unknown", &["m.tflite"], &[("EDGETPU_STANDIN_UNKNOWN_LINE", line.clone())]);
    let run = compiler().compile(&models, &options(&out)).unwrap();
    assert_eq!(run.report.unparsed, vec![line]);
    assert_eq!(run.report.single_model().unwrap().total_operations, Some(6));
}

#[test]
fn compiler_failure_carries_its_error_text() {
    let msg = "Model not quantized".to_string();
    let (_dir, models, out) = setup("fail", &["float.tflite"], &[("EDGETPU_STANDIN_FAIL", msg)]);
    let err = compiler().compile(&models, &options(&out)).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("exit status 1"), "{text}");
    assert!(text.contains("ERROR: Model not quantized"), "{text}");
    assert!(text.contains("Compilation failed: Model not quantized"), "{text}");
    let Error::Failed { stdout, stderr, .. } = err else { panic!("{text}") };
    assert!(stdout.contains("Compilation failed!") && stderr.contains("ERROR: Model not quantized"));
}

#[test]
fn success_without_output_file_is_an_error() {
    let (_dir, models, out) = setup("nooutput", &["m.tflite"], &[("EDGETPU_STANDIN_NO_OUTPUT", "1".into())]);
    let err = compiler().compile(&models, &options(&out)).unwrap_err();
    assert!(matches!(err, Error::MissingOutput { .. }), "{err}");
    assert!(err.to_string().contains("m_edgetpu.tflite"), "{err}");
}

#[test]
fn the_wall_clock_limit_kills_the_compiler_and_its_child() {
    let (dir, models, out) = setup("timeout", &["slow.tflite"], &[]);
    let pid_file = dir.join("child.pid");
    let settings = format!("EDGETPU_STANDIN_SLEEP_MS=30000\nEDGETPU_STANDIN_SLEEP_IN_CHILD={}\n", pid_file.display());
    std::fs::write(out.join("standin.env"), settings).unwrap();
    let opts = CompileOptions { wall_timeout: Some(Duration::from_millis(700)), ..options(&out) };
    let start = Instant::now();
    let mut ticks = 0;
    let err = compiler()
        .compile_with_progress(&models, &opts, &mut |p| {
            if let Progress::Elapsed(_) = p {
                ticks += 1;
            }
        })
        .unwrap_err();
    let took = start.elapsed();
    assert!(took >= Duration::from_millis(700) && took < Duration::from_secs(5), "{took:?}");
    assert!(ticks >= 3, "{ticks} progress ticks");
    let text = err.to_string();
    assert!(text.contains("did not finish within 0.7 s and was killed"), "{text}");
    let Error::Timeout { stdout, .. } = err else { panic!("{text}") };
    assert!(stdout.contains("Started a compilation timeout timer of 180 seconds."), "{stdout}");
    // The compiler's own child process is gone too (or a zombie waiting for its reaper).
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let stat = Path::new("/proc").join(pid.trim()).join("stat");
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let state = std::fs::read_to_string(&stat).ok().and_then(|s| {
            let after = &s[s.rfind(')')? + 1..];
            after.split_whitespace().next().map(str::to_string)
        });
        if state.is_none() || state.as_deref() == Some("Z") {
            break;
        }
        assert!(Instant::now() < deadline, "child process {} still running ({state:?})", pid.trim());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn invalid_options_fail_before_running() {
    let (dir, models, out) = setup("invalid", &["m.tflite"], &[]);
    let args_file = dir.join("args.txt");
    std::fs::write(out.join("standin.env"), format!("EDGETPU_STANDIN_ARGS_FILE={}\n", args_file.display())).unwrap();
    let err = compiler().compile(&models, &CompileOptions { min_runtime_version: Some(15), ..options(&out) });
    let text = err.unwrap_err().to_string();
    assert!(text.contains("min_runtime_version (-m)") && text.contains("10 to 14"), "{text}");
    assert!(!args_file.exists(), "the compiler ran");
    let missing = vec![dir.join("absent.tflite")];
    let text = compiler().compile(&missing, &options(&out)).unwrap_err().to_string();
    assert!(text.contains("absent.tflite"), "{text}");
    let same_stem = vec![models[0].clone(), out.join("m.tflite")];
    std::fs::write(&same_stem[1], b"x").unwrap();
    let text = compiler().compile(&same_stem, &options(&out)).unwrap_err().to_string();
    assert!(text.contains("m_edgetpu.tflite; rename one"), "{text}");
}

#[cfg(unix)]
#[test]
fn the_compiler_is_found_on_path_and_its_absence_is_explained() {
    let (dir, models, out) = setup("path", &["m.tflite"], &[]);
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    std::os::unix::fs::symlink(STANDIN, bin.join("edgetpu_compiler")).unwrap();
    let search = |path_var: &Path, explicit: Option<&str>| Search {
        explicit: explicit.map(PathBuf::from),
        path_var: Some(path_var.as_os_str().to_owned()),
        os: "linux".into(),
        arch: "x86_64".into(),
        ..Search::default()
    };
    let found = Compiler::locate_in(&search(&bin, None)).unwrap();
    assert_eq!((found.path.clone(), found.source), (bin.join("edgetpu_compiler"), Source::Path));
    assert!(found.compile(&models, &options(&out)).is_ok());
    // A bare name given explicitly is looked up on PATH too.
    let named = Compiler::locate_in(&search(&bin, Some("edgetpu_compiler"))).unwrap();
    assert_eq!(named.source, Source::Explicit);
    // EDGETPU_COMPILER wins over PATH.
    let env = Search { env_value: Some(STANDIN.into()), ..search(&bin, None) };
    assert_eq!(Compiler::locate_in(&env).unwrap().source, Source::Environment);

    let empty = dir.join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let text = Compiler::locate_in(&search(&empty, None)).unwrap_err().to_string();
    assert!(text.starts_with("edgetpu_compiler not found"), "{text}");
    assert!(text.contains(&empty.display().to_string()) && text.contains("EDGETPU_COMPILER (unset)"), "{text}");
    assert!(text.contains("edgetpu-compiler") && text.contains("--compiler PATH"), "{text}");
    let arm = Search { arch: "aarch64".into(), ..search(&empty, None) };
    let text = Compiler::locate_in(&arm).unwrap_err().to_string();
    assert!(text.contains("only for x86-64 Linux while this host is linux/aarch64"), "{text}");
    // A file that is not a program.
    let not_program = Compiler::at(&models[0]);
    let text = not_program.version().unwrap_err().to_string();
    assert!(text.contains("cannot run edgetpu_compiler at") && text.contains("m.tflite"), "{text}");
    // A program that is not the compiler.
    let text = Compiler::at("/bin/echo").version().unwrap_err().to_string();
    assert!(text.contains("printed no \"Edge TPU Compiler version\" line") && text.contains("--version"), "{text}");
}
