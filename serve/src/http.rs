//! The DeepStack-compatible HTTP API, Prometheus metrics and a status page.
//!
//! - `POST /v1/vision/detection` (the model given by `--detect-model`) and
//!   `POST /v1/vision/custom/NAME` (any model by name), each a `multipart/form-data` body with an
//!   `image` part (JPEG, PNG or BMP) and an optional `min_confidence` field (0.4 by default), answer
//!   `{"success": true, "predictions": [{"label", "confidence", "x_min", "y_min", "x_max",
//!   "y_max"}]}` with boxes in image pixels and labels from the model's packed label file.
//! - `GET /metrics`: Prometheus text format, per device and per request kind.
//! - `GET /`: a status page (devices, models, live latency), no external assets.
//!
//! HTTP/1.1 with `Content-Length` bodies (no chunked uploads), limits on the header and body
//! sizes, and a token (`--http-token`) that any address other than loopback requires, sent as
//! `Authorization: Bearer TOKEN` or, as DeepStack clients such as Frigate do, as the `api_key`
//! form field.

use crate::frigate::Shared;
use crate::runner::Runner;
use edgetpu::vision::{open_image_bytes_within, ImageLimits, Labels, Preprocess};
use edgetpu::Model;
use serde_json::{json, Value};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// Latency histogram bucket bounds, seconds.
const BUCKETS: [f64; 10] = [0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0];

/// Request counts and latencies, for `/metrics` and the status page.
#[derive(Debug, Default)]
pub struct Stats {
    requests: u64,
    errors: u64,
    buckets: [u64; BUCKETS.len()],
    sum_seconds: f64,
    last_ms: f64,
}

/// Runners of one model, reused across requests.
struct Pool {
    /// The model, or its segments in order.
    models: Vec<Arc<Model>>,
    labels: Option<Labels>,
    idle: Vec<Runner>,
}

/// What the HTTP side shares.
pub struct Http {
    shared: Arc<Shared>,
    detect_model: Option<String>,
    token: Option<String>,
    max_body: usize,
    image_limits: ImageLimits,
    pools: Mutex<HashMap<String, Pool>>,
    stats: Mutex<Stats>,
    started: Instant,
}

struct Request {
    method: String,
    path: String,
    headers: HashMap<String, String>,
    body: Vec<u8>,
    /// The client asked for the connection to close after the reply: `Connection: close`, or
    /// HTTP/1.0 without `Connection: keep-alive`.
    close: bool,
}

/// An HTTP error: status and message.
type Failure = (u16, String);

fn fail(status: u16, msg: impl Into<String>) -> Failure {
    (status, msg.into())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn read_request<R: BufRead>(r: &mut R, max_body: usize) -> Result<Option<Request>, Failure> {
    let mut line = String::new();
    let mut header_bytes = 0usize;
    let mut read_line = |r: &mut R, line: &mut String| -> Result<usize, Failure> {
        line.clear();
        let n = r.by_ref().take(8193).read_line(line).map_err(|e| fail(400, e.to_string()))?;
        header_bytes += n;
        if n > 8192 || header_bytes > 65536 {
            return Err(fail(431, "request header too large"));
        }
        Ok(n)
    };
    if read_line(r, &mut line)? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let (Some(method), Some(path)) = (parts.next(), parts.next()) else {
        return Err(fail(400, "malformed request line"));
    };
    let http10 = parts.next() == Some("HTTP/1.0");
    let (method, path) = (method.to_string(), path.to_string());
    let mut headers = HashMap::new();
    loop {
        if read_line(r, &mut line)? == 0 {
            return Err(fail(400, "the connection closed inside the header"));
        }
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').ok_or_else(|| fail(400, format!("malformed header line {l:?}")))?;
        headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        if headers.len() > 100 {
            return Err(fail(431, "too many header fields"));
        }
    }
    if headers.get("transfer-encoding").is_some_and(|v| !v.eq_ignore_ascii_case("identity")) {
        return Err(fail(411, "chunked bodies are not accepted: send Content-Length"));
    }
    let len: usize = match headers.get("content-length") {
        Some(v) => v.parse().map_err(|_| fail(400, "Content-Length is not a number"))?,
        None => 0,
    };
    if len > max_body {
        return Err(fail(413, format!("body of {len} bytes is over the limit of {max_body}")));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).map_err(|e| fail(400, format!("reading the body: {e}")))?;
    let connection = |token: &str| {
        headers.get("connection").is_some_and(|v| v.split(',').any(|t| t.trim().eq_ignore_ascii_case(token)))
    };
    let close = connection("close") || (http10 && !connection("keep-alive"));
    Ok(Some(Request { method, path, headers, body, close }))
}

/// Parses one request from `bytes` as [`Http::serve`] reads it from a connection, then its
/// `multipart/form-data` body when it has one: the parsers a client reaches before any model
/// runs, for the fuzz target `http_request`. `Ok(Some(n))`: a request with `n` form fields;
/// `Ok(None)`: an empty connection; an error is the HTTP status and message the server would
/// answer with.
#[doc(hidden)]
pub fn parse_request(bytes: &[u8], max_body: usize) -> Result<Option<usize>, (u16, String)> {
    let Some(req) = read_request(&mut std::io::Cursor::new(bytes), max_body)? else { return Ok(None) };
    let fields = match req.headers.get("content-type") {
        Some(ct) if ct.to_ascii_lowercase().starts_with("multipart/") => multipart(ct, &req.body)?.len(),
        _ => 0,
    };
    Ok(Some(fields))
}

/// The fields of a `multipart/form-data` body: name → bytes.
fn multipart(content_type: &str, body: &[u8]) -> Result<HashMap<String, Vec<u8>>, Failure> {
    let boundary = content_type
        .split(';')
        .find_map(|p| p.trim().strip_prefix("boundary="))
        .map(|b| b.trim_matches('"'))
        .filter(|b| !b.is_empty() && b.len() <= 200)
        .ok_or_else(|| fail(400, "expected multipart/form-data with a boundary"))?;
    let delim = format!("--{boundary}").into_bytes();
    let find = |hay: &[u8], from: usize| -> Option<usize> {
        hay.get(from..)?.windows(delim.len()).position(|w| w == delim.as_slice()).map(|p| p + from)
    };
    let mut fields = HashMap::new();
    let mut at = find(body, 0).ok_or_else(|| fail(400, "no multipart boundary in the body"))?;
    loop {
        at += delim.len();
        if body.get(at..at + 2) == Some(b"--") {
            break;
        }
        let part_start = at + 2; // CRLF after the boundary
        let next = find(body, part_start).ok_or_else(|| fail(400, "a multipart part has no end"))?;
        let part = body.get(part_start..next.saturating_sub(2)).ok_or_else(|| fail(400, "a malformed part"))?;
        let split =
            part.windows(4).position(|w| w == b"\r\n\r\n").ok_or_else(|| fail(400, "a part without headers"))?;
        let head = String::from_utf8_lossy(&part[..split]);
        let name = head
            .lines()
            .find(|l| l.to_ascii_lowercase().starts_with("content-disposition"))
            .and_then(|l| {
                l.split(';').find_map(|p| p.trim().strip_prefix("name=").map(|n| n.trim_matches('"').to_string()))
            })
            .ok_or_else(|| fail(400, "a part without a name"))?;
        fields.insert(name, part[split + 4..].to_vec());
        at = next;
    }
    Ok(fields)
}

impl Http {
    /// The HTTP side of a server.
    pub fn new(
        shared: Arc<Shared>,
        detect_model: Option<String>,
        token: Option<String>,
        max_body: usize,
        image_limits: ImageLimits,
    ) -> Http {
        Http {
            shared,
            detect_model,
            token,
            max_body,
            image_limits,
            pools: Mutex::default(),
            stats: Mutex::default(),
            started: Instant::now(),
        }
    }

    /// Serves one connection until it closes.
    pub fn serve(&self, stream: TcpStream) {
        let mut reader = BufReader::new(&stream);
        loop {
            let ((status, content_type, body), close) = match read_request(&mut reader, self.max_body) {
                Ok(None) => return,
                Ok(Some(req)) => (self.route(&req), req.close),
                Err((status, msg)) => {
                    let body = json!({"success": false, "error": msg}).to_string().into_bytes();
                    let _ = respond(&stream, status, "application/json", &body, true);
                    return;
                }
            };
            if respond(&stream, status, content_type, &body, close).is_err() || close {
                return;
            }
        }
    }

    fn route(&self, req: &Request) -> (u16, &'static str, Vec<u8>) {
        if let Some(token) = &self.token {
            // `Authorization: Bearer TOKEN`, or DeepStack's own way: an `api_key` form field
            // (what Frigate's deepstack detector sends).
            let bearer =
                req.headers.get("authorization").is_some_and(|v| v.strip_prefix("Bearer ") == Some(token.as_str()));
            let form_key = || {
                let ct = req.headers.get("content-type").map(String::as_str).unwrap_or("");
                req.method == "POST"
                    && multipart(ct, &req.body).is_ok_and(|f| f.get("api_key").is_some_and(|k| k == token.as_bytes()))
            };
            if !bearer && !form_key() {
                return (
                    401,
                    "application/json",
                    json!({"success": false, "error": "a token is required: Authorization: Bearer TOKEN, or an api_key form field"})
                        .to_string()
                        .into_bytes(),
                );
            }
        }
        let path = req.path.split('?').next().unwrap_or("");
        match (req.method.as_str(), path) {
            ("GET", "/metrics") => (200, "text/plain; version=0.0.4", self.metrics().into_bytes()),
            ("GET", "/") => (200, "text/html; charset=utf-8", self.status_page().into_bytes()),
            ("POST", "/v1/vision/detection") => match self.detect_model.clone() {
                Some(m) => self.detection(req, &m),
                None => json_error(404, "this server has no detection model: start it with --detect-model NAME"),
            },
            ("POST", p) if p.starts_with("/v1/vision/custom/") => {
                let name = &p["/v1/vision/custom/".len()..];
                let name = if name.ends_with(".tflite") { name.to_string() } else { format!("{name}.tflite") };
                self.detection(req, &name)
            }
            _ => json_error(404, format!("no route {} {path}", req.method)),
        }
    }

    fn detection(&self, req: &Request, model: &str) -> (u16, &'static str, Vec<u8>) {
        let start = Instant::now();
        let result = self.try_detection(req, model);
        let seconds = start.elapsed().as_secs_f64();
        let mut s = lock(&self.stats);
        s.requests += 1;
        s.sum_seconds += seconds;
        s.last_ms = seconds * 1e3;
        if let Some(k) = BUCKETS.iter().position(|&b| seconds <= b) {
            s.buckets[k] += 1;
        }
        match result {
            Ok(v) => (200, "application/json", v.to_string().into_bytes()),
            Err((status, msg)) => {
                s.errors += 1;
                json_error(status, msg)
            }
        }
    }

    fn try_detection(&self, req: &Request, name: &str) -> Result<Value, Failure> {
        let ct = req.headers.get("content-type").map(String::as_str).unwrap_or("");
        let fields = multipart(ct, &req.body)?;
        let image = fields.get("image").ok_or_else(|| fail(400, "the form has no image field"))?;
        let min_confidence = match fields.get("min_confidence") {
            Some(v) => String::from_utf8_lossy(v)
                .trim()
                .parse::<f32>()
                .map_err(|_| fail(400, "min_confidence is not a number"))?,
            None => 0.4,
        };
        let image =
            open_image_bytes_within(image, &self.image_limits).map_err(|e| fail(400, format!("the image: {e}")))?;
        let mut it = self.checkout(name)?;
        let result = (|| -> Result<Value, Failure> {
            let info = it.inputs()[0].clone();
            let (input, transform) = edgetpu::vision::prepare(&image, &info, &Preprocess::default())
                .map_err(|e| fail(400, format!("preparing the image: {e}")))?;
            it.set_input(0, &input).map_err(|e| fail(500, e.to_string()))?;
            it.invoke().map_err(|e| fail(503, e.to_string()))?;
            let v = crate::frigate::decode_ssd(&it, min_confidence).map_err(|e| fail(422, e))?;
            let labels = lock(&self.pools).get(name).and_then(|p| p.labels.clone());
            let mut predictions = Vec::new();
            for r in v.chunks_exact(6).filter(|r| r[1] > 0.0) {
                let (x0, y0) = transform.normalized_to_image(f64::from(r[3]), f64::from(r[2]));
                let (x1, y1) = transform.normalized_to_image(f64::from(r[5]), f64::from(r[4]));
                let id = r[0] as usize;
                let label = labels.as_ref().and_then(|l| l.get(id)).map_or_else(|| id.to_string(), str::to_string);
                predictions.push(json!({
                    "label": label, "confidence": r[1],
                    "x_min": x0.round() as i64, "y_min": y0.round() as i64,
                    "x_max": x1.round() as i64, "y_max": y1.round() as i64,
                }));
            }
            Ok(json!({"success": true, "predictions": predictions}))
        })();
        self.checkin(name, it);
        result
    }

    fn checkout(&self, name: &str) -> Result<Runner, Failure> {
        if let Some(it) = lock(&self.pools).get_mut(name).and_then(|p| p.idle.pop()) {
            return Ok(it);
        }
        let known = lock(&self.pools).get(name).map(|p| p.models.clone());
        let models = match known {
            Some(m) => m,
            None => {
                let paths = self.shared.store.find_models(name).map_err(|e| fail(400, e.to_string()))?;
                let paths = paths.ok_or_else(|| fail(404, format!("no model {name:?} on this server")))?;
                let models = crate::frigate::open_models(&paths).map_err(|e| fail(500, e))?;
                // The labels of a model in segments are in one of them (the last, usually).
                let labels = models.iter().rev().find_map(|m| Labels::from_model(m).ok().flatten());
                lock(&self.pools).entry(name.to_string()).or_insert(Pool {
                    models: models.clone(),
                    labels,
                    idle: Vec::new(),
                });
                models
            }
        };
        if self.shared.runtime.is_none() && models.iter().any(|m| m.is_compiled()) {
            return Err(fail(503, format!("{name} needs an Edge TPU and this server has none")));
        }
        Runner::new(&self.shared, name, &models).map_err(|e| fail(500, e))
    }

    fn checkin(&self, name: &str, it: Runner) {
        if let Some(p) = lock(&self.pools).get_mut(name) {
            p.idle.push(it);
        }
    }

    /// Prometheus text exposition.
    pub fn metrics(&self) -> String {
        let mut out = String::new();
        let mut line = |s: String| {
            out.push_str(&s);
            out.push('\n');
        };
        if let Some(rt) = &self.shared.runtime {
            let metrics = rt.metrics();
            let telemetry = rt.telemetry();
            line("# HELP edgetpu_device_inferences_total Edge TPU steps run.".into());
            line("# TYPE edgetpu_device_inferences_total counter".into());
            for m in &metrics {
                line(format!("edgetpu_device_inferences_total{{device=\"{}\"}} {}", m.name, m.inferences));
            }
            line("# TYPE edgetpu_device_errors_total counter".into());
            for m in &metrics {
                line(format!("edgetpu_device_errors_total{{device=\"{}\"}} {}", m.name, m.errors));
            }
            line("# TYPE edgetpu_device_cache_hits_total counter".into());
            for m in &metrics {
                line(format!("edgetpu_device_cache_hits_total{{device=\"{}\"}} {}", m.name, m.cache_hits));
            }
            line("# TYPE edgetpu_device_cache_misses_total counter".into());
            for m in &metrics {
                line(format!("edgetpu_device_cache_misses_total{{device=\"{}\"}} {}", m.name, m.cache_misses));
            }
            line("# TYPE edgetpu_device_busy_seconds_total counter".into());
            for m in &metrics {
                line(format!("edgetpu_device_busy_seconds_total{{device=\"{}\"}} {}", m.name, m.busy.as_secs_f64()));
            }
            line("# TYPE edgetpu_device_temperature_celsius gauge".into());
            for (m, t) in metrics.iter().zip(&telemetry) {
                if let Some(c) = t.temperature_c {
                    line(format!("edgetpu_device_temperature_celsius{{device=\"{}\"}} {c}", m.name));
                }
            }
            line("# TYPE edgetpu_queue_depth gauge".into());
            line(format!("edgetpu_queue_depth {}", rt.queue_depth()));
        }
        let s = lock(&self.stats);
        line("# HELP edgetpu_http_request_seconds Detection request latency.".into());
        line("# TYPE edgetpu_http_request_seconds histogram".into());
        let mut cumulative = 0;
        for (b, n) in BUCKETS.iter().zip(s.buckets) {
            cumulative += n;
            line(format!("edgetpu_http_request_seconds_bucket{{le=\"{b}\"}} {cumulative}"));
        }
        line(format!("edgetpu_http_request_seconds_bucket{{le=\"+Inf\"}} {}", s.requests));
        line(format!("edgetpu_http_request_seconds_sum {}", s.sum_seconds));
        line(format!("edgetpu_http_request_seconds_count {}", s.requests));
        line("# TYPE edgetpu_http_request_errors_total counter".into());
        line(format!("edgetpu_http_request_errors_total {}", s.errors));
        out
    }

    /// The status page.
    pub fn status_page(&self) -> String {
        let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
        let devices = match &self.shared.runtime {
            None => "<tr><td colspan=4>the CPU only</td></tr>".to_string(),
            Some(rt) => rt
                .metrics()
                .iter()
                .zip(rt.telemetry())
                .map(|(m, t)| {
                    format!(
                        "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                        esc(&m.name),
                        m.inferences,
                        m.errors,
                        t.temperature_c.map_or_else(|| "-".to_string(), |c| format!("{c:.1} °C"))
                    )
                })
                .collect(),
        };
        let models: String =
            lock(&self.pools).keys().map(|k| format!("<li>{}</li>", esc(k))).collect::<Vec<_>>().join("");
        let s = lock(&self.stats);
        let mean = if s.requests > 0 { s.sum_seconds * 1e3 / s.requests as f64 } else { 0.0 };
        format!(
            "<!doctype html><html><head><meta charset=utf-8><meta http-equiv=refresh content=5><title>edgetpu \
             serve</title><style>body{{font:15px \
             sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse}}td,th{{border:1px solid \
             #ccc;padding:4px 10px}}h1{{font-size:20px}}</style></head><body><h1>edgetpu serve</h1><p>up {:.0} \
             s</p><h2>Devices</h2><table><tr><th>device</th><th>inferences</th><th>errors</th><th>temperature</th></tr>{devices}</table><h2>Models \
             in use</h2><ul>{}</ul><h2>Detection requests</h2><p>{} requests, {} errors, last {:.1} ms, mean {mean:.1} \
             ms</p></body></html>",
            self.started.elapsed().as_secs_f64(),
            if models.is_empty() { "<li>none yet</li>".to_string() } else { models },
            s.requests,
            s.errors,
            s.last_ms
        )
    }
}

fn json_error(status: u16, msg: impl std::fmt::Display) -> (u16, &'static str, Vec<u8>) {
    (status, "application/json", json!({"success": false, "error": msg.to_string()}).to_string().into_bytes())
}

/// Writes a response; `close` says the connection closes after it (`Connection: close`).
fn respond(mut stream: &TcpStream, status: u16, content_type: &str, body: &[u8], close: bool) -> std::io::Result<()> {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        411 => "Length Required",
        413 => "Payload Too Large",
        422 => "Unprocessable Entity",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    };
    let connection = if close { "Connection: close\r\n" } else { "" };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n{connection}\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes())?;
    stream.write_all(body)?;
    stream.flush()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn form(boundary: &str, fields: &[(&str, &[u8])]) -> Vec<u8> {
        let mut body = Vec::new();
        for (name, value) in fields {
            body.extend_from_slice(
                format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            );
            body.extend_from_slice(value);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
        body
    }

    fn request(head: &str, body: &[u8]) -> Vec<u8> {
        let mut r = format!("{head}Content-Length: {}\r\n\r\n", body.len()).into_bytes();
        r.extend_from_slice(body);
        r
    }

    #[test]
    fn a_deepstack_upload_parses_into_its_fields() {
        let body = form("XyZ", &[("image", b"\xff\xd8 jpeg bytes \r\n--X"), ("min_confidence", b"0.6")]);
        let bytes =
            request("POST /v1/vision/detection HTTP/1.1\r\nContent-Type: multipart/form-data; boundary=XyZ\r\n", &body);
        let req = read_request(&mut std::io::Cursor::new(&bytes), 1 << 20).unwrap().unwrap();
        assert_eq!((req.method.as_str(), req.path.as_str()), ("POST", "/v1/vision/detection"));
        let fields = multipart(&req.headers["content-type"], &req.body).unwrap();
        assert_eq!(fields.len(), 2);
        assert_eq!(fields["image"], b"\xff\xd8 jpeg bytes \r\n--X");
        assert_eq!(fields["min_confidence"], b"0.6");
        assert_eq!(parse_request(&bytes, 1 << 20), Ok(Some(2)));
        // A quoted boundary and header names in any case.
        let bytes = request("POST / HTTP/1.1\r\ncOnTeNt-TyPe: multipart/form-data; boundary=\"XyZ\"\r\n", &body);
        assert_eq!(parse_request(&bytes, 1 << 20), Ok(Some(2)));
    }

    #[test]
    fn requests_without_a_body_or_bytes_parse() {
        assert_eq!(parse_request(b"", 100), Ok(None));
        assert_eq!(parse_request(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", 100), Ok(Some(0)));
    }

    #[test]
    fn malformed_requests_get_the_status_a_client_can_act_on() {
        let status = |bytes: &[u8], max: usize| parse_request(bytes, max).unwrap_err().0;
        assert_eq!(status(b"GARBAGE\r\n\r\n", 100), 400, "request line without a path");
        assert_eq!(status(b"GET / HTTP/1.1\r\nno colon here\r\n\r\n", 100), 400);
        assert_eq!(status(b"GET / HTTP/1.1\r\nHost: x\r\n", 100), 400, "connection closed inside the header");
        assert_eq!(status(b"POST / HTTP/1.1\r\nContent-Length: ten\r\n\r\n", 100), 400);
        assert_eq!(status(b"POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n", 100), 413);
        assert_eq!(status(b"POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nshort", 100), 400, "truncated body");
        assert_eq!(status(b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", 100), 411);
        let long_line = format!("GET /{} HTTP/1.1\r\n\r\n", "a".repeat(9000));
        assert_eq!(status(long_line.as_bytes(), 100), 431);
        let many: String = (0..101).map(|i| format!("X-{i}: y\r\n")).collect();
        assert_eq!(status(format!("GET / HTTP/1.1\r\n{many}\r\n").as_bytes(), 100), 431);
        let (code, msg) = parse_request(b"POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n", 100).unwrap_err();
        assert!(code == 413 && msg.contains("101") && msg.contains("100"), "{msg}");
    }

    #[test]
    fn malformed_multipart_bodies_are_refused_not_misread() {
        let ct = "multipart/form-data; boundary=B";
        let err = |body: &[u8]| multipart(ct, body).unwrap_err();
        assert!(multipart("multipart/form-data", b"").unwrap_err().1.contains("boundary"));
        assert!(err(b"no delimiter at all").1.contains("no multipart boundary"));
        assert!(err(b"--B\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nvalue without end")
            .1
            .contains("no end"));
        assert!(err(b"--B\r\nno blank line\r\n--B--").1.contains("without headers"));
        assert!(err(b"--B\r\nContent-Type: text/plain\r\n\r\nv\r\n--B--").1.contains("without a name"));
        // Truncated right after the boundary: refused, with no out-of-range slice.
        assert!(multipart(ct, b"--B").is_err());
        assert!(multipart(ct, b"--B\r").is_err());
        // The closing delimiter alone is an empty form.
        assert_eq!(multipart(ct, b"--B--\r\n").unwrap().len(), 0);
    }
}
