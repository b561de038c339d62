//! The DeepStack-compatible HTTP API, metrics and status page of `edgetpu serve`.

use edgetpu::DeviceSpec;
use edgetpu_serve::{ServeError, ServeOptions, Server};
use serde_json::Value;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;

fn testdata() -> PathBuf {
    let dir = std::env::var_os("EDGETPU_TESTDATA")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata"), PathBuf::from);
    assert!(dir.join("MANIFEST.md").is_file(), "test data not found at {}: set EDGETPU_TESTDATA", dir.display());
    dir
}

/// One HTTP/1.1 request on a new connection: (status, body).
fn request(addr: &str, method: &str, path: &str, headers: &[(&str, &str)], body: &[u8]) -> (u16, Vec<u8>) {
    let mut s = TcpStream::connect(addr).unwrap();
    let mut head = format!("{method} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n", body.len());
    for (k, v) in headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("Connection: close\r\n\r\n");
    s.write_all(head.as_bytes()).unwrap();
    s.write_all(body).unwrap();
    s.shutdown(std::net::Shutdown::Write).unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).unwrap();
    let split = out.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
    let status = String::from_utf8_lossy(&out[9..12]).parse().unwrap();
    (status, out[split + 4..].to_vec())
}

fn form(image: &[u8], min_confidence: &str) -> (String, Vec<u8>) {
    let b = "edgetpuboundary42";
    let mut body = Vec::new();
    body.extend_from_slice(format!("--{b}\r\nContent-Disposition: form-data; name=\"image\"; filename=\"f.bmp\"\r\nContent-Type: image/bmp\r\n\r\n").as_bytes());
    body.extend_from_slice(image);
    body.extend_from_slice(format!("\r\n--{b}\r\nContent-Disposition: form-data; name=\"min_confidence\"\r\n\r\n{min_confidence}\r\n--{b}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={b}"), body)
}

/// A CPU server with the HTTP API on a free loopback port and the traffic SSD as the detection
/// model: the server, its address and the model directory.
fn traffic_server(limits: edgetpu::vision::ImageLimits) -> (Server, String, PathBuf) {
    let models = testdata().join("automl_video_ondevice");
    let server = Server::start(
        ServeOptions::default()
            .devices(DeviceSpec::cpu())
            .models_dir(&models)
            .catalog_cache(false)
            .http("127.0.0.1:0")
            .detect_model("traffic_model.tflite")
            .image_limits(limits),
    )
    .unwrap();
    let addr = server.endpoints().iter().find_map(|e| e.strip_prefix("http://")).unwrap().to_string();
    (server, addr, models)
}

#[test]
fn deepstack_detection_metrics_and_status_page() {
    let (server, addr, models) = traffic_server(edgetpu::vision::ImageLimits::default());
    let image = std::fs::read(models.join("traffic_frames/0001.bmp")).unwrap();
    let (ct, body) = form(&image, "0.3");
    let (status, out) = request(&addr, "POST", "/v1/vision/detection", &[("Content-Type", &ct)], &body);
    let v: Value = serde_json::from_slice(&out).unwrap();
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["success"], true);
    let p = v["predictions"].as_array().unwrap();
    // The README's traffic-frame detections at 0.3: three objects, the best scoring 0.414, in
    // image pixels.
    assert_eq!(p.len(), 3, "{v}");
    assert!((p[0]["confidence"].as_f64().unwrap() - 0.414).abs() < 0.01, "{v}");
    for d in p {
        assert!(d["x_min"].as_i64().unwrap() < d["x_max"].as_i64().unwrap(), "{d}");
        assert!(d["y_max"].as_i64().unwrap() <= 256 && d["label"].is_string(), "{d}");
    }
    // The custom route names any model; an unknown one, a broken form and no image are errors.
    let (status, _) = request(&addr, "POST", "/v1/vision/custom/traffic_model", &[("Content-Type", &ct)], &body);
    assert_eq!(status, 200);
    let (status, out) = request(&addr, "POST", "/v1/vision/custom/nothing", &[("Content-Type", &ct)], &body);
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&out));
    let (status, _) = request(&addr, "POST", "/v1/vision/detection", &[("Content-Type", "text/plain")], b"x");
    assert_eq!(status, 400);
    let (ct2, junk) = form(b"not an image", "0.4");
    let (status, out) = request(&addr, "POST", "/v1/vision/detection", &[("Content-Type", &ct2)], &junk);
    assert_eq!(status, 400, "{}", String::from_utf8_lossy(&out));
    let (status, _) = request(&addr, "POST", "/v1/vision/custom/..%2Fx", &[("Content-Type", &ct)], &body);
    assert!(status == 400 || status == 404);

    // Metrics in Prometheus text format, counting what happened.
    let (status, out) = request(&addr, "GET", "/metrics", &[], b"");
    let text = String::from_utf8(out).unwrap();
    assert_eq!(status, 200);
    assert!(text.contains("# TYPE edgetpu_http_request_seconds histogram"), "{text}");
    assert!(text.contains("edgetpu_http_request_seconds_count 6"), "{text}");
    assert!(text.contains("edgetpu_http_request_errors_total 4"), "{text}");
    // The status page is self-contained HTML.
    let (status, out) = request(&addr, "GET", "/", &[], b"");
    let html = String::from_utf8(out).unwrap();
    assert_eq!(status, 200);
    assert!(html.starts_with("<!doctype html>") && html.contains("traffic_model.tflite"), "{html}");
    assert!(!html.contains("http://") && !html.contains("https://"), "no external assets");
    server.shutdown();
}

#[test]
fn images_over_the_decode_limits_get_400_naming_the_limit() {
    let (server, addr, models) = traffic_server(edgetpu::vision::ImageLimits { max_side: 100, ..Default::default() });
    // The traffic frames are 256 pixels high: over a 100-pixel limit.
    let image = std::fs::read(models.join("traffic_frames/0001.bmp")).unwrap();
    let (ct, body) = form(&image, "0.3");
    let (status, out) = request(&addr, "POST", "/v1/vision/detection", &[("Content-Type", &ct)], &body);
    let text = String::from_utf8_lossy(&out);
    assert_eq!(status, 400, "{text}");
    assert!(text.contains("100 pixels a side") && text.contains("--max-image-side"), "{text}");
    server.shutdown();
}

#[test]
fn a_token_is_required_where_one_is_set_and_on_open_addresses() {
    let server = Server::start(
        ServeOptions::default()
            .devices(DeviceSpec::cpu())
            .catalog_cache(false)
            .http("127.0.0.1:0")
            .http_token("s3cret"),
    )
    .unwrap();
    let addr = server.endpoints()[0].strip_prefix("http://").unwrap().to_string();
    assert_eq!(request(&addr, "GET", "/metrics", &[], b"").0, 401);
    assert_eq!(request(&addr, "GET", "/metrics", &[("Authorization", "Bearer wrong")], b"").0, 401);
    assert_eq!(request(&addr, "GET", "/metrics", &[("Authorization", "Bearer s3cret")], b"").0, 200);
    // DeepStack clients (Frigate's deepstack detector) send the key as the api_key form field.
    let b = "KeyBoundary";
    let with_key = |key: &str| {
        format!("--{b}\r\nContent-Disposition: form-data; name=\"api_key\"\r\n\r\n{key}\r\n--{b}--\r\n").into_bytes()
    };
    let ct = format!("multipart/form-data; boundary={b}");
    let (status, out) = request(&addr, "POST", "/v1/vision/detection", &[("Content-Type", &ct)], &with_key("s3cret"));
    // Past the token check: this server has no detection model.
    assert_eq!(status, 404, "{}", String::from_utf8_lossy(&out));
    let (status, _) = request(&addr, "POST", "/v1/vision/detection", &[("Content-Type", &ct)], &with_key("nope"));
    assert_eq!(status, 401);
    server.shutdown();
    let open = Server::start(ServeOptions::default().devices(DeviceSpec::cpu()).catalog_cache(false).http("0.0.0.0:0"));
    assert!(matches!(open, Err(ServeError::OpenHttp(_))), "{open:?}");
}

#[test]
fn connections_stay_open_between_requests_unless_the_client_asks_to_close() {
    let server =
        Server::start(ServeOptions::default().devices(DeviceSpec::cpu()).catalog_cache(false).http("127.0.0.1:0"))
            .unwrap();
    let addr = server.endpoints()[0].strip_prefix("http://").unwrap().to_string();
    // A regression shows as a timed-out read, not a hang.
    let connect = || {
        let s = TcpStream::connect(&addr).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10))).unwrap();
        s
    };
    // One response, read by its Content-Length.
    let response = |s: &mut TcpStream| -> String {
        let mut head = Vec::new();
        let mut b = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") {
            s.read_exact(&mut b).unwrap();
            head.push(b[0]);
        }
        let head = String::from_utf8(head).unwrap();
        let len: usize =
            head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).and_then(|v| v.trim().parse().ok()).unwrap();
        let mut body = vec![0u8; len];
        s.read_exact(&mut body).unwrap();
        head
    };
    // HTTP/1.1 keeps the connection: two requests on one.
    let mut s = connect();
    for _ in 0..2 {
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        let head = response(&mut s);
        assert!(head.starts_with("HTTP/1.1 200") && !head.contains("Connection: close"), "{head}");
    }
    // `Connection: close`, and HTTP/1.0 without keep-alive: the server answers, then closes,
    // without waiting for the client to close its side first.
    for request in ["GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", "GET /metrics HTTP/1.0\r\n\r\n"] {
        let mut s = connect();
        s.write_all(request.as_bytes()).unwrap();
        let head = response(&mut s);
        assert!(head.starts_with("HTTP/1.1 200") && head.contains("Connection: close"), "{head}");
        let mut rest = Vec::new();
        s.read_to_end(&mut rest).expect("the server closes the connection");
        assert!(rest.is_empty());
    }
    // HTTP/1.0 with keep-alive stays open.
    let mut s = connect();
    for _ in 0..2 {
        s.write_all(b"GET /metrics HTTP/1.0\r\nConnection: keep-alive\r\n\r\n").unwrap();
        assert!(response(&mut s).starts_with("HTTP/1.1 200"));
    }
    server.shutdown();
}
