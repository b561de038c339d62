//! Downloads against a local HTTP server: a checked download, a bad checksum, an interrupted
//! download resumed with `Range`, a server that ignores ranges, an unreachable server; and the
//! catalog's digests against the shared test data.

use edgetpu_models::download::{self, part_path, sha256_hex, Request};
use edgetpu_models::testing::{Behaviour, Seen, Server};
use edgetpu_models::{fetch_from, Artifact, Catalog, DownloadError, Error, Progress};
use std::path::{Path, PathBuf};

/// 300 KiB of deterministic, non-repeating bytes.
fn payload() -> Vec<u8> {
    let mut x = 0x1234_5678_u32;
    (0..300 * 1024)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 17;
            x ^= x << 5;
            x as u8
        })
        .collect()
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edgetpu-models-fetch-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn entries(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    v.sort();
    v
}

/// A catalog with one entry whose files are `m.tflite`, `sub/m_edgetpu.tflite` and `labels.txt`.
fn catalog(cpu_sha: Option<&str>, size: Option<u64>) -> Catalog {
    let q = |s: Option<&str>| s.map_or("null".to_string(), |s| format!("\"{s}\""));
    let n = |s: Option<u64>| s.map_or("null".to_string(), |s| s.to_string());
    let json = format!(
        r#"{{"format": 1, "about": "test", "upstream_base": "https://upstream.invalid/zoo/", "models": [
          {{"name": "m", "description": "test", "task": "classification", "input": {{"width": 8, "height": 8}},
            "cpu": {{"file": "m.tflite", "url": "https://upstream.invalid/zoo/m.tflite", "size": {}, "sha256": {}}},
            "edgetpu": {{"file": "m_edgetpu.tflite", "url": "https://upstream.invalid/zoo/sub/m_edgetpu.tflite",
                        "size": null, "sha256": null}},
            "labels": {{"file": "labels.txt", "url": "https://upstream.invalid/zoo/labels.txt", "size": 2,
                       "sha256": "{}"}}}}]}}"#,
        n(size),
        q(cpu_sha),
        sha256_hex(b"a\n"),
    );
    Catalog::parse(&json).unwrap()
}

fn no_progress() -> impl FnMut(Progress) {
    |_| {}
}

#[test]
fn a_good_download_is_checked_and_renamed_into_place() {
    let data = payload();
    let sha = sha256_hex(&data);
    let server = Server::start(vec![
        ("m.tflite".into(), data.clone(), Behaviour::Normal),
        ("sub/m_edgetpu.tflite".into(), b"compiled".to_vec(), Behaviour::Normal),
        ("labels.txt".into(), b"a\n".to_vec(), Behaviour::Normal),
    ])
    .unwrap();
    let cat = catalog(Some(&sha), Some(data.len() as u64));
    let entry = cat.lookup("m").unwrap();
    let dir = temp_dir("good");
    let mut last = None;
    let got = fetch_from(entry, Artifact::Cpu, &dir, Some(&server.base_url()), &mut |p| last = Some(p)).unwrap();
    assert_eq!(got.path, dir.join("m.tflite"));
    assert_eq!(std::fs::read(&got.path).unwrap(), data);
    assert!(got.verified && !got.already_present && got.sha256 == sha && got.resumed_from == 0, "{got:?}");
    let len = data.len() as u64;
    assert_eq!(last, Some(Progress { done: len, total: Some(len), resumed_from: 0 }));

    // The compiled model (no digest in the catalog: unchecked) comes from its sub-path.
    let tpu = fetch_from(entry, Artifact::EdgeTpu, &dir, Some(&server.base_url()), &mut no_progress()).unwrap();
    assert!(!tpu.verified && tpu.sha256 == sha256_hex(b"compiled"), "{tpu:?}");
    fetch_from(entry, Artifact::Labels, &dir, Some(&server.base_url()), &mut no_progress()).unwrap();
    assert_eq!(entries(&dir), ["labels.txt", "m.tflite", "m_edgetpu.tflite"], "no .part left");
    let paths: Vec<String> = server.requests().into_iter().map(|s| s.path).collect();
    assert_eq!(paths, ["/m.tflite", "/sub/m_edgetpu.tflite", "/labels.txt"]);

    // Fetching again finds the checked file and asks nothing.
    let again = fetch_from(entry, Artifact::Cpu, &dir, Some(&server.base_url()), &mut no_progress()).unwrap();
    assert!(again.already_present && again.verified, "{again:?}");
    assert_eq!(server.requests().len(), 3);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_bad_checksum_deletes_the_download_and_names_url_and_digests() {
    let data = payload();
    let mut bad = data.clone();
    bad[4096] ^= 1;
    let server = Server::start(vec![("m.tflite".into(), bad.clone(), Behaviour::Normal)]).unwrap();
    let expected = sha256_hex(&data);
    let cat = catalog(Some(&expected), None);
    let dir = temp_dir("bad");
    let err = fetch_from(cat.lookup("m").unwrap(), Artifact::Cpu, &dir, Some(&server.base_url()), &mut no_progress())
        .unwrap_err();
    let text = err.to_string();
    assert!(text.contains(&server.url("m.tflite")), "{text}");
    assert!(text.contains(&expected) && text.contains(&sha256_hex(&bad)), "{text}");
    assert!(text.contains("was deleted"), "{text}");
    assert!(matches!(&err, Error::Fetch { error, .. } if matches!(**error, DownloadError::Checksum { .. })));
    assert!(entries(&dir).is_empty(), "{:?}", entries(&dir));

    // A damaged copy already in place is replaced by a good download.
    std::fs::write(dir.join("m.tflite"), b"damaged").unwrap();
    let good = Server::start(vec![("m.tflite".into(), data.clone(), Behaviour::Normal)]).unwrap();
    let got =
        fetch_from(cat.lookup("m").unwrap(), Artifact::Cpu, &dir, Some(&good.base_url()), &mut no_progress()).unwrap();
    assert!(!got.already_present && got.verified);
    assert_eq!(std::fs::read(dir.join("m.tflite")).unwrap(), data);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_interrupted_download_resumes_with_a_range_request() {
    let data = payload();
    let cut = 100_000;
    let server = Server::start(vec![("m.tflite".into(), data.clone(), Behaviour::CutAfter(cut))]).unwrap();
    let cat = catalog(Some(&sha256_hex(&data)), Some(data.len() as u64));
    let entry = cat.lookup("m").unwrap();
    let dir = temp_dir("resume");

    let err = fetch_from(entry, Artifact::Cpu, &dir, Some(&server.base_url()), &mut no_progress()).unwrap_err();
    let text = err.to_string();
    assert!(text.contains("broke off after") && text.contains(&format!("of {} bytes", data.len())), "{text}");
    assert!(text.contains("run the same command again to resume"), "{text}");
    let part = part_path(&dir.join("m.tflite"));
    let kept = std::fs::read(&part).unwrap();
    assert!(!kept.is_empty() && kept.len() <= cut, "{} bytes kept", kept.len());
    assert_eq!(kept[..], data[..kept.len()]);
    assert!(!dir.join("m.tflite").exists());

    let mut first = None;
    let got = fetch_from(entry, Artifact::Cpu, &dir, Some(&server.base_url()), &mut |p| {
        first.get_or_insert(p);
    })
    .unwrap();
    assert_eq!(got.resumed_from, kept.len() as u64);
    assert_eq!(first.map(|p| p.resumed_from), Some(kept.len() as u64));
    assert_eq!(std::fs::read(&got.path).unwrap(), data);
    assert!(got.verified);
    let seen = server.requests();
    assert_eq!(
        seen,
        [
            Seen { path: "/m.tflite".into(), range: None },
            Seen { path: "/m.tflite".into(), range: Some(format!("bytes={}-", kept.len())) },
        ]
    );
    assert_eq!(entries(&dir), ["m.tflite"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_server_ignoring_ranges_sends_the_whole_file_again() {
    let data = payload();
    let server = Server::start(vec![("f.bin".into(), data.clone(), Behaviour::IgnoreRange)]).unwrap();
    let dir = temp_dir("norange");
    let dest = dir.join("f.bin");
    // A stale part (here: wrong bytes) from an earlier attempt.
    std::fs::write(part_path(&dest), vec![0u8; 5000]).unwrap();
    let sha = sha256_hex(&data);
    let url = server.url("f.bin");
    let req = Request { url: &url, dest: &dest, sha256: Some(&sha), size: None, max_bytes: None, resume: true };
    let got = download::download(&req, &mut no_progress()).unwrap();
    assert_eq!((got.bytes, got.sha256.as_str()), (data.len() as u64, sha.as_str()));
    assert_eq!(got.resumed_from, 0, "nothing of the stale part was kept");
    assert_eq!(std::fs::read(&dest).unwrap(), data);
    assert_eq!(server.requests()[0].range.as_deref(), Some("bytes=5000-"));
    assert_eq!(entries(&dir), ["f.bin"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_complete_part_is_checked_without_a_request_and_a_stale_one_restarts() {
    let data = payload();
    let sha = sha256_hex(&data);
    let server = Server::start(vec![("f.bin".into(), data.clone(), Behaviour::Normal)]).unwrap();
    let dir = temp_dir("settle");
    let dest = dir.join("f.bin");
    let url = server.url("f.bin");

    // Everything arrived last time, but the rename did not happen: no request is needed.
    std::fs::write(part_path(&dest), &data).unwrap();
    let size = Some(data.len() as u64);
    let req = Request { url: &url, dest: &dest, sha256: Some(&sha), size, max_bytes: None, resume: true };
    let got = download::download(&req, &mut no_progress()).unwrap();
    assert_eq!(got.resumed_from, data.len() as u64);
    assert!(server.requests().is_empty(), "{:?}", server.requests());
    assert_eq!(std::fs::read(&dest).unwrap(), data);

    // A part longer than the file on the server (size unknown here): 416, then the whole file.
    std::fs::write(part_path(&dest), vec![7u8; data.len() + 10]).unwrap();
    let req = Request { url: &url, dest: &dest, sha256: Some(&sha), size: None, max_bytes: None, resume: true };
    let got = download::download(&req, &mut no_progress()).unwrap();
    assert_eq!((got.bytes, got.resumed_from), (data.len() as u64, 0));
    let ranges: Vec<Option<String>> = server.requests().into_iter().map(|s| s.range).collect();
    assert_eq!(ranges, [Some(format!("bytes={}-", data.len() + 10)), None]);
    assert_eq!(entries(&dir), ["f.bin"]);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn without_resume_a_broken_download_leaves_nothing_and_too_large_is_refused() {
    let data = payload();
    let server = Server::start(vec![
        ("cut.bin".into(), data.clone(), Behaviour::CutAfter(1000)),
        ("big.bin".into(), data.clone(), Behaviour::Normal),
    ])
    .unwrap();
    let dir = temp_dir("noresume");
    let dest = dir.join("x.bin");
    let url = server.url("cut.bin");
    let req = Request { url: &url, dest: &dest, sha256: None, size: None, max_bytes: None, resume: false };
    let err = download::download(&req, &mut no_progress()).unwrap_err();
    assert!(matches!(err, DownloadError::BrokeOff { kept: false, total: Some(t), .. } if t == data.len() as u64));
    assert!(entries(&dir).is_empty(), "{:?}", entries(&dir));

    let url = server.url("big.bin");
    let req = Request { url: &url, dest: &dest, sha256: None, size: None, max_bytes: Some(1024), resume: false };
    let err = download::download(&req, &mut no_progress()).unwrap_err();
    assert!(matches!(err, DownloadError::TooLarge { limit: 1024, .. }), "{err}");
    assert!(entries(&dir).is_empty(), "{:?}", entries(&dir));

    let url = server.url("missing.bin");
    let req = Request { url: &url, dest: &dest, sha256: None, size: None, max_bytes: None, resume: true };
    let err = download::download(&req, &mut no_progress()).unwrap_err().to_string();
    assert!(err.contains("HTTP 404") && err.contains(&url), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_unreachable_server_says_to_download_by_hand_into_the_cache() {
    // A port that was free a moment ago: nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let mirror = format!("http://127.0.0.1:{port}");
    let cat = catalog(None, None);
    let dir = temp_dir("offline");
    let err = fetch_from(cat.lookup("m").unwrap(), Artifact::EdgeTpu, &dir, Some(&mirror), &mut no_progress())
        .unwrap_err()
        .to_string();
    let url = format!("{mirror}/sub/m_edgetpu.tflite");
    assert!(err.starts_with(&format!("cannot reach {url}")), "{err}");
    assert!(err.contains("needs an internet connection") && err.contains(&format!("download {url} by hand")), "{err}");
    assert!(err.contains(&dir.join("m_edgetpu.tflite").display().to_string()), "{err}");
    assert!(entries(&dir).is_empty(), "{:?}", entries(&dir));
    std::fs::remove_dir_all(&dir).unwrap();
}

fn testdata() -> PathBuf {
    match std::env::var_os("EDGETPU_TESTDATA") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata"),
    }
}

#[test]
fn catalog_digests_match_the_shared_copies_of_upstream_files() {
    let dir = testdata();
    assert!(
        dir.join("MANIFEST.md").is_file(),
        "shared test data not found at {}: set EDGETPU_TESTDATA to the shared testdata directory",
        dir.display()
    );
    let mut checked = 0;
    for entry in &Catalog::builtin().unwrap().models {
        for (_, f) in entry.files() {
            let local = dir.join(f.path());
            let Ok(data) = std::fs::read(&local) else { continue };
            assert_eq!(f.sha256.as_deref(), Some(sha256_hex(&data).as_str()), "{}: digest", f.file);
            assert_eq!(f.size, Some(data.len() as u64), "{}: size", f.file);
            checked += 1;
        }
    }
    assert!(checked >= 30, "only {checked} catalog files found in {}", dir.display());
}
