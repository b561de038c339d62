use super::*;
use std::collections::HashSet;

fn builtin() -> &'static Catalog {
    match Catalog::builtin() {
        Ok(c) => c,
        Err(e) => panic!("the built-in catalog does not load: {e}"),
    }
}

#[test]
fn builtin_catalog_parses_with_unique_names() {
    let c = builtin();
    assert_eq!(c.format, 1);
    assert!(c.models.len() >= 20, "{} models", c.models.len());
    let names: HashSet<&str> = c.models.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names.len(), c.models.len(), "names are unique");
}

#[test]
fn the_models_people_start_from_are_there() {
    let c = builtin();
    let want = [
        ("mobilenet_v1_1.0_224", Task::Classification, 224, 224),
        ("mobilenet_v2_1.0_224", Task::Classification, 224, 224),
        ("mobilenet_v2_inat_bird", Task::Classification, 224, 224),
        ("mobilenet_v2_inat_insect", Task::Classification, 224, 224),
        ("mobilenet_v2_inat_plant", Task::Classification, 224, 224),
        ("ssd_mobilenet_v1_coco", Task::Detection, 300, 300),
        ("ssd_mobilenet_v2_coco", Task::Detection, 300, 300),
        ("ssdlite_mobiledet_coco", Task::Detection, 320, 320),
        ("efficientdet_lite0", Task::Detection, 320, 320),
        ("efficientdet_lite1", Task::Detection, 384, 384),
        ("efficientdet_lite2", Task::Detection, 448, 448),
        ("deeplabv3_mnv2_pascal", Task::Segmentation, 513, 513),
        ("movenet_lightning", Task::Pose, 192, 192),
        ("movenet_thunder", Task::Pose, 256, 256),
        ("posenet_mobilenet_v1_353x481", Task::Pose, 481, 353),
    ];
    for (name, task, w, h) in want {
        let e = c.lookup(name).unwrap_or_else(|err| panic!("{err}"));
        assert_eq!((e.task, e.input.width, e.input.height), (task, w, h), "{name}");
        assert_eq!(e.labels.is_some(), task != Task::Pose, "{name}: label file");
    }
}

#[test]
fn every_file_has_an_https_url_ending_with_its_name() {
    let c = builtin();
    for e in &c.models {
        assert!(e.edgetpu.file.ends_with("_edgetpu.tflite"), "{}", e.edgetpu.file);
        assert!(e.cpu.file.ends_with(".tflite") && !e.cpu.file.contains("_edgetpu"), "{}", e.cpu.file);
        assert_eq!(e.cpu.file.replace(".tflite", "_edgetpu.tflite"), e.edgetpu.file, "{}: twin names", e.name);
        for (_, f) in e.files() {
            assert!(f.url.starts_with("https://") && f.url.starts_with(&c.upstream_base), "{}", f.url);
            assert!(f.url.ends_with(&format!("/{}", f.file)), "{}", f.url);
            assert_eq!(f.url_from(None), f.url);
            assert_eq!(format!("{}{}", c.upstream_base, f.path()), f.url);
            if let Some(sha) = &f.sha256 {
                assert_eq!(sha.len(), 64, "{}", f.file);
                assert!(f.size.is_some_and(|s| s > 0), "{}: a known digest comes with its size", f.file);
            }
        }
    }
}

#[test]
fn a_file_name_means_one_file_across_entries() {
    // Entries share label files; a shared name must describe the same file everywhere.
    let mut seen: std::collections::HashMap<&str, &RemoteFile> = Default::default();
    for e in &builtin().models {
        for (_, f) in e.files() {
            if let Some(prev) = seen.insert(f.file.as_str(), f) {
                assert_eq!(prev, f, "{} differs between entries", f.file);
            }
        }
    }
}

#[test]
fn lookup_of_an_unknown_name_lists_the_known_ones() {
    let e = builtin().lookup("ssd_mobilenet_v9").unwrap_err().to_string();
    assert!(e.contains("\"ssd_mobilenet_v9\"") && e.contains("ssd_mobilenet_v2_coco"), "{e}");
}

fn one_entry(url: &str, sha: &str) -> String {
    format!(
        r#"{{"format": 1, "about": "", "upstream_base": "https://example.org/base/", "models": [
          {{"name": "m", "description": "", "task": "detection", "input": {{"width": 4, "height": 4}},
            "cpu": {{"file": "m.tflite", "url": "{url}", "size": null, "sha256": {sha}}},
            "edgetpu": {{"file": "m_edgetpu.tflite", "url": "https://example.org/base/d/m_edgetpu.tflite",
                        "size": null, "sha256": null}},
            "labels": null}}]}}"#
    )
}

#[test]
fn parse_checks_urls_and_digests() {
    let ok = Catalog::parse(&one_entry("https://example.org/base/m.tflite", "null")).unwrap();
    let e = &ok.models[0];
    assert_eq!(e.edgetpu.path(), "d/m_edgetpu.tflite");
    assert_eq!(e.edgetpu.url_from(Some("http://127.0.0.1:9/mirror/")), "http://127.0.0.1:9/mirror/d/m_edgetpu.tflite");
    assert!(e.file(Artifact::Labels).is_none());

    for (url, sha, why) in [
        ("http://example.org/base/m.tflite", "null", "not https"),
        ("https://example.org/other/m.tflite", "null", "does not start with upstream_base"),
        ("https://example.org/base/x.tflite", "null", "does not end with the file name"),
        ("https://example.org/base/../m.tflite", "null", "path segment"),
        ("https://example.org/base/m.tflite", "\"abc\"", "64 lower-case hex"),
    ] {
        let err = Catalog::parse(&one_entry(url, sha)).unwrap_err().to_string();
        assert!(err.contains(why), "{url} {sha}: {err}");
    }
    let twice = one_entry("https://example.org/base/m.tflite", "null").replace(
        "\"labels\": null}]",
        "\"labels\": null}, {\"name\": \"m\", \"description\": \"\", \"task\": \"pose\", \"input\": {\"width\": 1, \
         \"height\": 1}, \"cpu\": {\"file\": \"a.tflite\", \"url\": \"https://example.org/base/a.tflite\", \"size\": \
         null, \"sha256\": null}, \"edgetpu\": {\"file\": \"a_edgetpu.tflite\", \"url\": \
         \"https://example.org/base/a_edgetpu.tflite\", \"size\": null, \"sha256\": null}, \"labels\": null}]",
    );
    let err = Catalog::parse(&twice).unwrap_err().to_string();
    assert!(err.contains("appears twice"), "{err}");
    let err = Catalog::parse("{").unwrap_err().to_string();
    assert!(err.contains("does not parse"), "{err}");
}

#[test]
fn cache_dir_follows_the_environment() {
    let env = |vars: &'static [(&'static str, &'static str)]| {
        move |name: &str| vars.iter().find(|(k, _)| *k == name).map(|(_, v)| PathBuf::from(v))
    };
    assert_eq!(cache_dir_with(env(&[("EDGETPU_MODELS_DIR", "/m"), ("HOME", "/h")])).unwrap(), PathBuf::from("/m"));
    assert_eq!(
        cache_dir_with(env(&[("XDG_CACHE_HOME", "/x"), ("HOME", "/h")])).unwrap(),
        PathBuf::from("/x/edgetpu/models")
    );
    // A relative XDG_CACHE_HOME is ignored, as the XDG specification says.
    assert_eq!(
        cache_dir_with(env(&[("XDG_CACHE_HOME", "x"), ("HOME", "/h")])).unwrap(),
        PathBuf::from("/h/.cache/edgetpu/models")
    );
    let err = cache_dir_with(env(&[])).unwrap_err().to_string();
    assert!(err.contains("EDGETPU_MODELS_DIR"), "{err}");
}

#[test]
fn an_offline_error_says_how_to_download_by_hand() {
    let e = Error::Fetch {
        error: Box::new(DownloadError::Unreachable {
            url: "https://example.org/m.tflite".into(),
            detail: "Connection refused".into(),
        }),
        dest: PathBuf::from("/cache/edgetpu/models/m.tflite"),
    }
    .to_string();
    assert!(e.starts_with("cannot reach https://example.org/m.tflite (Connection refused)"), "{e}");
    assert!(e.contains("internet connection") && e.contains("by hand"), "{e}");
    assert!(e.contains("/cache/edgetpu/models/m.tflite") && e.contains("EDGETPU_MODELS_DIR"), "{e}");
}
