//! The status page in a real browser: Debian's headless Chromium loads it from a server on two
//! simulated Edge TPUs, its DOM holds the devices and the model in use, and its screenshot is a
//! rendered page (text and table lines on a white background), not a blank or an error page.
//!
//! Chromium comes from `EDGETPU_TEST_CHROMIUM` or `chromium` on the PATH (Debian: `apt-get
//! install chromium`); the test fails, never skips, without it.

use edgetpu::DeviceSpec;
use edgetpu_serve::{ServeOptions, Server};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::Command;

fn testdata() -> PathBuf {
    let dir = std::env::var_os("EDGETPU_TESTDATA")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata"), PathBuf::from);
    assert!(dir.join("MANIFEST.md").is_file(), "test data not found at {}: set EDGETPU_TESTDATA", dir.display());
    dir
}

fn chromium() -> PathBuf {
    let exe = std::env::var_os("EDGETPU_TEST_CHROMIUM").map_or_else(|| PathBuf::from("chromium"), PathBuf::from);
    let ok = Command::new(&exe).arg("--version").output().is_ok_and(|o| o.status.success());
    assert!(ok, "this test needs Chromium: apt-get install chromium, or set EDGETPU_TEST_CHROMIUM to its path");
    exe
}

fn headless(exe: &PathBuf, profile: &std::path::Path, args: &[&str]) -> std::process::Output {
    Command::new(exe)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars", "--no-first-run"])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .output()
        .expect("Chromium runs")
}

#[test]
fn status_page_renders_in_headless_chromium() {
    let exe = chromium();
    let data = testdata();
    let models = data.join("automl_video_ondevice");
    let server = Server::start(
        ServeOptions::default()
            .devices(DeviceSpec::parse("sim:0,sim:1").unwrap())
            .models_dir(&models)
            .catalog_cache(false)
            .http("127.0.0.1:0")
            .detect_model("traffic_model.tflite"),
    )
    .unwrap();
    let addr = server.endpoints().iter().find_map(|e| e.strip_prefix("http://")).unwrap().to_string();
    // One detection, so that a model is in use and the latency line has numbers.
    let image = std::fs::read(models.join("traffic_frames/0001.bmp")).unwrap();
    let b = "XbOuNdArY";
    let mut body = format!(
        "--{b}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"f.bmp\"\r\nContent-Type: image/bmp\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(&image);
    body.extend_from_slice(format!("\r\n--{b}--\r\n").as_bytes());
    let mut s = TcpStream::connect(&addr).unwrap();
    write!(
        s,
        "POST /v1/vision/detection HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary={b}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .unwrap();
    s.write_all(&body).unwrap();
    // The status line is enough: the server keeps the connection open.
    let mut head = [0u8; 12];
    s.read_exact(&mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 200", "{}", String::from_utf8_lossy(&head));
    drop(s);

    let dir = std::env::temp_dir().join(format!("edgetpu-status-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let url = format!("http://{addr}/");
    let dom = headless(&exe, &dir.join("profile"), &["--dump-dom", &url]);
    let dom = String::from_utf8_lossy(&dom.stdout);
    for want in ["<h1>edgetpu serve</h1>", "sim:0", "sim:1", "traffic_model.tflite", "1 requests, 0 errors"] {
        assert!(dom.contains(want), "the browser's DOM lacks {want:?}: {dom}");
    }
    let png = dir.join("status.png");
    let out = headless(
        &exe,
        &dir.join("profile"),
        &[&format!("--screenshot={}", png.display()), "--window-size=800,600", &url],
    );
    assert!(png.is_file(), "no screenshot: {}", String::from_utf8_lossy(&out.stderr));
    let img = image::open(&png).unwrap().to_rgb8();
    assert_eq!(img.dimensions(), (800, 600));
    let pixels = img.pixels().count();
    let white = img.pixels().filter(|p| p.0.iter().all(|&c| c >= 250)).count();
    let dark = img.pixels().filter(|p| p.0.iter().all(|&c| c < 100)).count();
    let grey = img.pixels().filter(|p| p.0.iter().all(|&c| (190..=215).contains(&c))).count();
    // A white page with dark text and the tables' light grey (#ccc) lines.
    assert!(white > pixels / 2, "not a white page: {white} of {pixels} pixels white");
    assert!(dark > 500, "no text rendered: {dark} dark pixels");
    assert!(grey > 200, "no table lines rendered: {grey} grey pixels");
    server.shutdown();
    let _ = std::fs::remove_dir_all(&dir);
}
