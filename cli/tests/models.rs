//! `edgetpu models list|fetch` and `--model NAME` end to end, against a local HTTP server
//! serving the shared test data's copies of the catalog's files (`EDGETPU_MODELS_BASE_URL`).

mod common;

use edgetpu_models::download::sha256_hex;
use edgetpu_models::testing::{Behaviour, Server};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;

const NAME: &str = "mobilenet_v1_0.25_128";
const CPU: &str = "mobilenet_v1_0.25_128_quant.tflite";
const TPU: &str = "mobilenet_v1_0.25_128_quant_edgetpu.tflite";
const LABELS: &str = "imagenet_labels.txt";

/// The three files of `NAME` from the test data, the CPU model served with `cpu`.
fn server(cpu: Behaviour, corrupt_cpu: bool) -> Server {
    let data = common::testdata();
    let read = |f: &str| std::fs::read(data.join(f)).unwrap_or_else(|e| panic!("{}: {e}", data.join(f).display()));
    let mut cpu_bytes = read(CPU);
    if corrupt_cpu {
        cpu_bytes[5000] ^= 0x80;
    }
    Server::start(vec![
        (CPU.into(), cpu_bytes, cpu),
        (TPU.into(), read(TPU), Behaviour::Normal),
        (LABELS.into(), read(LABELS), Behaviour::Normal),
    ])
    .unwrap()
}

/// Runs `edgetpu ARGS` with the model cache in `cache` and files from `base` (if any); returns
/// success, stdout and stderr.
fn edgetpu(args: &[&str], cache: &Path, base: Option<&str>) -> (bool, String, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgetpu"));
    cmd.args(args).env("EDGETPU_MODELS_DIR", cache).env("HOME", cache).env_remove("EDGETPU_FIRMWARE");
    match base {
        Some(b) => cmd.env("EDGETPU_MODELS_BASE_URL", b),
        None => cmd.env_remove("EDGETPU_MODELS_BASE_URL"),
    };
    let out = cmd.output().unwrap();
    (out.status.success(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

fn model<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["models"].as_array().unwrap().iter().find(|m| m["name"] == name).unwrap_or_else(|| panic!("{name} listed"))
}

#[test]
fn list_json_describes_the_catalog_and_the_cache() {
    let cache = common::scratch("models", "list");
    let (ok, stdout, stderr) = edgetpu(&["models", "list", "--json"], &cache, None);
    assert!(ok, "{stderr}");
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["cache_dir"], cache.display().to_string());
    assert!(doc["models"].as_array().unwrap().len() >= 20);
    let ssd = model(&doc, "ssd_mobilenet_v2_coco");
    assert_eq!(
        (ssd["task"].as_str(), &ssd["input"]["width"], &ssd["input"]["height"]),
        (Some("detection"), &300.into(), &300.into())
    );
    assert_eq!(ssd["sha256_known"], false);
    assert_eq!(ssd["edgetpu"]["file"], "ssd_mobilenet_v2_coco_quant_postprocess_edgetpu.tflite");
    assert!(ssd["edgetpu"]["url"].as_str().unwrap().starts_with("https://"), "{ssd}");
    assert_eq!(ssd["labels"]["file"], "coco_labels.txt");
    assert_eq!(model(&doc, "movenet_lightning")["labels"], Value::Null);

    // A file in the cache shows as cached.
    let m = model(&doc, NAME);
    assert_eq!(m["sha256_known"], true);
    assert_eq!(m["cpu"]["cached"], Value::Null);
    std::fs::write(cache.join(TPU), b"x").unwrap();
    let (_, stdout, _) = edgetpu(&["models", "list", "--json"], &cache, Some("http://mirror.invalid/m"));
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    let m = model(&doc, NAME);
    assert_eq!(m["edgetpu"]["cached"], cache.join(TPU).display().to_string());
    assert_eq!(m["edgetpu"]["url"], format!("http://mirror.invalid/m/{TPU}"));

    let (ok, stdout, _) = edgetpu(&["models", "list"], &cache, None);
    assert!(ok);
    let row = stdout.lines().find(|l| l.starts_with(&format!("{NAME} "))).unwrap();
    assert!(row.contains("classification") && row.contains("128x128") && row.contains("edgetpu"), "{row}");
    assert!(row.ends_with(" known"), "{row}");
    let row = stdout.lines().find(|l| l.starts_with("efficientdet_lite0 ")).unwrap();
    assert!(row.contains("320x320") && row.ends_with("unknown"), "{row}");
    assert!(stdout.contains("sha256 unknown:"), "{stdout}");
    std::fs::remove_dir_all(&cache).unwrap();
}

#[test]
fn fetch_downloads_checks_and_then_model_name_runs_it() {
    let cache = common::scratch("models", "fetch");
    let server = server(Behaviour::Normal, false);
    let base = server.base_url();
    let (ok, stdout, stderr) = edgetpu(&["models", "fetch", NAME], &cache, Some(&base));
    assert!(ok, "{stderr}");
    assert_eq!(entries(&cache), [LABELS, CPU, TPU]);
    assert_eq!(stdout.matches("(sha256 checked)").count(), 3, "{stdout}");
    let data = common::testdata();
    for f in [CPU, TPU, LABELS] {
        assert_eq!(std::fs::read(cache.join(f)).unwrap(), std::fs::read(data.join(f)).unwrap(), "{f}");
        // Not a terminal: one plain line per download, no bar.
        assert!(stderr.contains(&format!("fetching {base}/{f}\n")), "{stderr}");
    }
    assert!(!stderr.contains('\r'), "{stderr}");

    // Again: already there, nothing requested.
    let (ok, stdout, _) = edgetpu(&["models", "fetch", NAME], &cache, Some(&base));
    assert!(ok && stdout.matches("already there").count() == 3, "{stdout}");
    assert_eq!(server.requests().len(), 3);

    // --model NAME on the CPU: the CPU model, with the catalog's label file.
    let image = data.join("cat.bmp");
    let args = ["classify", "--model", NAME, "--image", image.to_str().unwrap(), "--device", "cpu", "--json"];
    let (ok, stdout, stderr) = edgetpu(&args, &cache, None);
    assert!(ok, "{stderr}");
    assert!(stderr.contains(&format!("model: {NAME} = {}", cache.join(CPU).display())), "{stderr}");
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["labels"], cache.join(LABELS).display().to_string());
    assert_eq!((&doc["classes"][0]["id"], &doc["classes"][0]["label"]), (&283.into(), &"tiger cat".into()));

    // On a simulated Edge TPU: the compiled model (outputs from its CPU twin beside it).
    let args = ["classify", "--model", NAME, "--image", image.to_str().unwrap(), "--device", "sim", "--json"];
    let (ok, stdout, stderr) = edgetpu(&args, &cache, None);
    assert!(ok, "{stderr}");
    assert!(stderr.contains(&format!("model: {NAME} = {}", cache.join(TPU).display())), "{stderr}");
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["classes"][0]["id"], 283);

    // --sim-oracle NAME: the catalog's CPU model gives the simulated outputs, for a compiled
    // file with no twin beside it.
    let lone = cache.join("lone").join("copy_edgetpu.tflite");
    std::fs::create_dir_all(lone.parent().unwrap()).unwrap();
    std::fs::copy(cache.join(TPU), &lone).unwrap();
    let lone = lone.to_str().unwrap();
    let args = [
        "classify",
        "--model",
        lone,
        "--image",
        image.to_str().unwrap(),
        "--device",
        "sim",
        "--sim-oracle",
        NAME,
        "--json",
    ];
    let (ok, stdout, stderr) = edgetpu(&args, &cache, None);
    assert!(ok, "{stderr}");
    assert!(stderr.contains(&format!("the CPU model {}", cache.join(CPU).display())), "{stderr}");
    let doc: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(doc["classes"][0]["id"], 283);

    // inspect NAME takes the compiled model when it is there.
    let (ok, stdout, stderr) = edgetpu(&["inspect", NAME], &cache, None);
    assert!(ok && stdout.contains("edgetpu-custom-op"), "{stdout}{stderr}");

    // doctor --record --model NAME runs the catalog's compiled model in the recorded session.
    let trace = cache.join("session.jsonl");
    let args = ["doctor", "--device", "sim", "--record", trace.to_str().unwrap(), "--model", NAME];
    let (ok, stdout, stderr) = edgetpu(&args, &cache, None);
    assert!(ok, "{stderr}");
    assert!(stderr.contains(&format!("model: {NAME} = {}", cache.join(TPU).display())), "{stderr}");
    assert!(stdout.contains("recorded") && trace.is_file(), "{stdout}");
    std::fs::remove_dir_all(&cache).unwrap();
}

#[test]
fn fetch_cpu_only_into_a_directory() {
    let cache = common::scratch("models", "cpuonly");
    let dir = cache.join("elsewhere");
    let server = server(Behaviour::Normal, false);
    let (ok, _, stderr) =
        edgetpu(&["models", "fetch", NAME, "--cpu", "--dir", dir.to_str().unwrap()], &cache, Some(&server.base_url()));
    assert!(ok, "{stderr}");
    assert_eq!(entries(&dir), [LABELS, CPU]);
    assert_eq!(entries(&cache), ["elsewhere"], "the cache directory is left alone");
    let (ok, _, stderr) = edgetpu(&["models", "fetch", NAME, "--cpu", "--edgetpu"], &cache, None);
    assert!(!ok && stderr.contains("cannot be used with"), "{stderr}");
    std::fs::remove_dir_all(&cache).unwrap();
}

#[test]
fn a_bad_checksum_names_url_and_digests_and_keeps_nothing() {
    let cache = common::scratch("models", "badsum");
    let server = server(Behaviour::Normal, true);
    let (ok, _, stderr) = edgetpu(&["models", "fetch", NAME, "--cpu"], &cache, Some(&server.base_url()));
    assert!(!ok);
    let good = sha256_hex(&std::fs::read(common::testdata().join(CPU)).unwrap());
    assert!(stderr.contains(&server.url(CPU)) && stderr.contains(&good), "{stderr}");
    assert!(stderr.contains("has sha256 ") && stderr.contains("was deleted"), "{stderr}");
    assert!(entries(&cache).is_empty(), "{:?}", entries(&cache));
    std::fs::remove_dir_all(&cache).unwrap();
}

#[test]
fn an_interrupted_fetch_resumes_on_the_next_run() {
    let cache = common::scratch("models", "resume");
    let server = server(Behaviour::CutAfter(200_000), false);
    let (ok, _, stderr) = edgetpu(&["models", "fetch", NAME, "--cpu"], &cache, Some(&server.base_url()));
    assert!(!ok && stderr.contains("run the same command again to resume"), "{stderr}");
    let part = std::fs::metadata(cache.join(format!("{CPU}.part"))).unwrap().len();
    assert!(part > 0 && part <= 200_000, "{part}");

    let (ok, stdout, stderr) = edgetpu(&["models", "fetch", NAME, "--cpu"], &cache, Some(&server.base_url()));
    assert!(ok, "{stderr}");
    assert!(stderr.contains(&format!("(resuming after {part} bytes)")), "{stderr}");
    assert!(stdout.contains("(sha256 checked)"), "{stdout}");
    assert_eq!(entries(&cache), [LABELS, CPU]);
    let ranges: Vec<Option<String>> =
        server.requests().into_iter().filter(|s| s.path == format!("/{CPU}")).map(|s| s.range).collect();
    assert_eq!(ranges, [None, Some(format!("bytes={part}-"))]);
    std::fs::remove_dir_all(&cache).unwrap();
}

#[test]
fn offline_unknown_and_not_fetched_say_what_to_do() {
    let cache = common::scratch("models", "errors");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let base = format!("http://127.0.0.1:{port}");
    let (ok, _, stderr) = edgetpu(&["models", "fetch", "ssd_mobilenet_v2_coco"], &cache, Some(&base));
    assert!(!ok);
    let url = format!("{base}/ssd_mobilenet_v2_coco_quant_postprocess.tflite");
    assert!(stderr.contains(&format!("cannot reach {url}")) && stderr.contains("internet connection"), "{stderr}");
    assert_eq!(stderr.matches("cannot reach").count(), 1, "said once: {stderr}");
    let dest: PathBuf = cache.join("ssd_mobilenet_v2_coco_quant_postprocess.tflite");
    assert!(stderr.contains(&format!("download {url} by hand")) && stderr.contains(&dest.display().to_string()));

    let (ok, _, stderr) = edgetpu(&["models", "fetch", "ssd_mobilenet_v9"], &cache, Some(&base));
    assert!(!ok && stderr.contains("no model named \"ssd_mobilenet_v9\"") && stderr.contains("ssd_mobilenet_v2_coco"));

    let (ok, _, stderr) = edgetpu(&["classify", "--model", "ssd_mobilenet_v2_coco", "--image", "x.bmp"], &cache, None);
    assert!(!ok && stderr.contains("is not downloaded"), "{stderr}");
    assert!(stderr.contains("`edgetpu models fetch ssd_mobilenet_v2_coco`"), "{stderr}");
    assert!(entries(&cache).is_empty(), "nothing is fetched implicitly: {:?}", entries(&cache));
    std::fs::remove_dir_all(&cache).unwrap();
}
