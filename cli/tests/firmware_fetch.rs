//! `edgetpu firmware fetch` and `edgetpu firmware path` end to end, against a small HTTP/1.1
//! server on 127.0.0.1 serving the real image, a corrupted copy and a broken-off download.

use edgetpu_models::download::sha256_hex;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const SHA256: &str = "3b07311b174b81fd14fd2c887f40d646c0ebf2f140cc5ee5cf8befa0f3e3dc7f";
const FILE_NAME: &str = "apex_latest_single_ep.bin";

fn firmware() -> Vec<u8> {
    let testdata = match std::env::var_os("EDGETPU_TESTDATA") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata"),
    };
    let path = testdata.join("../firmware").join(FILE_NAME);
    std::fs::read(&path).unwrap_or_else(|e| {
        panic!("firmware image not found at {} ({e}): set EDGETPU_TESTDATA to the shared testdata", path.display())
    })
}

fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edgetpu-cli-firmware-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Serves `/good` (the image), `/corrupt` (one byte flipped) and `/half` (half the image, then
/// the connection closes) until stopped, for at most 30 s.
struct Server {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start() -> Server {
        let image = firmware();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let port = listener.local_addr().unwrap().port();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(30);
            while !stopped.load(Ordering::Relaxed) && Instant::now() < deadline {
                match listener.accept() {
                    Ok((stream, _)) => serve(stream, &image),
                    Err(_) => std::thread::sleep(Duration::from_millis(10)),
                }
            }
        });
        Server { port, stop, thread: Some(thread) }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(mut stream: TcpStream, image: &[u8]) {
    stream.set_nonblocking(false).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let mut request = Vec::new();
    let mut byte = [0u8; 1];
    while !request.ends_with(b"\r\n\r\n") {
        match stream.read(&mut byte) {
            Ok(1) => request.push(byte[0]),
            _ => return,
        }
    }
    let request = String::from_utf8_lossy(&request);
    let path = request.split(' ').nth(1).unwrap_or("");
    let header = |len: usize| format!("HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nConnection: close\r\n\r\n");
    let _ = match path {
        "/good" => stream.write_all(header(image.len()).as_bytes()).and_then(|_| stream.write_all(image)),
        "/corrupt" => {
            let mut bad = image.to_vec();
            bad[1000] ^= 0x40;
            stream.write_all(header(bad.len()).as_bytes()).and_then(|_| stream.write_all(&bad))
        }
        "/half" => {
            stream.write_all(header(image.len()).as_bytes()).and_then(|_| stream.write_all(&image[..image.len() / 2]))
        }
        _ => stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"),
    };
    let _ = stream.flush();
    let _ = stream.shutdown(std::net::Shutdown::Both);
}

/// Runs `edgetpu firmware ARGS` with the data directory under `home`; returns success, stdout
/// and stderr.
fn edgetpu(args: &[&str], home: &Path) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_edgetpu"))
        .arg("firmware")
        .args(args)
        .env("XDG_DATA_HOME", home.join("data"))
        .env("HOME", home)
        .env_remove("EDGETPU_FIRMWARE")
        .output()
        .unwrap();
    (out.status.success(), String::from_utf8(out.stdout).unwrap(), String::from_utf8(out.stderr).unwrap())
}

fn entries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default()
}

#[test]
fn fetch_writes_the_checked_image() {
    let home = temp_dir("good");
    let dir = home.join("fw");
    let server = Server::start();
    let (ok, stdout, stderr) =
        edgetpu(&["fetch", "--url", &server.url("/good"), "--dir", dir.to_str().unwrap()], &home);
    assert!(ok, "{stderr}");
    let written = std::fs::read(dir.join(FILE_NAME)).unwrap();
    assert_eq!(sha256_hex(&written), SHA256);
    assert_eq!(entries(&dir), vec![FILE_NAME.to_string()], "no temporary file is left");
    assert!(stdout.contains(&dir.join(FILE_NAME).display().to_string()), "{stdout}");
    assert!(stderr.contains("10783 / 10783 bytes"), "progress: {stderr}");

    // A second fetch finds the file in place and leaves it.
    let (ok, stdout, stderr) =
        edgetpu(&["fetch", "--url", &server.url("/none"), "--dir", dir.to_str().unwrap()], &home);
    assert!(ok && stdout.contains("already there"), "{stdout}{stderr}");
    std::fs::remove_dir_all(&home).unwrap();
}

#[test]
fn fetch_without_dir_uses_the_data_directory_and_path_prints_it() {
    let home = temp_dir("default");
    let server = Server::start();
    let expected = home.join("data/edgetpu").join(FILE_NAME);
    let (ok, stdout, stderr) = edgetpu(&["path"], &home);
    assert!(ok, "{stderr}");
    assert_eq!(stdout.trim(), expected.display().to_string());
    assert!(stderr.contains("missing") && stderr.contains("edgetpu firmware fetch"), "{stderr}");

    let (ok, _, stderr) = edgetpu(&["fetch", "--url", &server.url("/good")], &home);
    assert!(ok, "{stderr}");
    assert_eq!(sha256_hex(&std::fs::read(&expected).unwrap()), SHA256);
    let (ok, stdout, stderr) = edgetpu(&["path"], &home);
    assert!(ok && stdout.trim() == expected.display().to_string() && stderr.contains("present"), "{stderr}");
    std::fs::remove_dir_all(&home).unwrap();
}

#[test]
fn a_corrupted_image_is_refused_and_nothing_is_kept() {
    let home = temp_dir("corrupt");
    let dir = home.join("fw");
    std::fs::create_dir_all(&dir).unwrap();
    let server = Server::start();
    let (ok, _, stderr) = edgetpu(&["fetch", "--url", &server.url("/corrupt"), "--dir", dir.to_str().unwrap()], &home);
    assert!(!ok);
    assert!(stderr.contains("not the expected firmware image"), "{stderr}");
    assert!(stderr.contains("received 10783 bytes with sha256") && stderr.contains(SHA256), "{stderr}");
    assert!(entries(&dir).is_empty(), "{:?}", entries(&dir));
    std::fs::remove_dir_all(&home).unwrap();
}

#[test]
fn a_broken_off_download_is_refused_and_nothing_is_kept() {
    let home = temp_dir("half");
    let dir = home.join("fw");
    std::fs::create_dir_all(&dir).unwrap();
    let server = Server::start();
    let (ok, _, stderr) = edgetpu(&["fetch", "--url", &server.url("/half"), "--dir", dir.to_str().unwrap()], &home);
    assert!(!ok);
    assert!(stderr.contains("broke off after") || stderr.contains("ended after"), "{stderr}");
    assert!(stderr.contains("of 10783 bytes") && stderr.contains("nothing was written"), "{stderr}");
    assert!(entries(&dir).is_empty(), "{:?}", entries(&dir));

    // A 404 names the status.
    let (ok, _, stderr) = edgetpu(&["fetch", "--url", &server.url("/missing"), "--dir", dir.to_str().unwrap()], &home);
    assert!(!ok && stderr.contains("HTTP 404"), "{stderr}");
    assert!(entries(&dir).is_empty());
    std::fs::remove_dir_all(&home).unwrap();
}

#[test]
fn an_unreachable_server_says_the_machine_needs_internet() {
    let home = temp_dir("offline");
    let dir = home.join("fw");
    // A port that was free a moment ago: nothing listens there.
    let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/{FILE_NAME}");
    let (ok, _, stderr) = edgetpu(&["fetch", "--url", &url, "--dir", dir.to_str().unwrap()], &home);
    assert!(!ok);
    assert!(stderr.contains("needs an internet connection"), "{stderr}");
    assert!(stderr.contains("driver/usb/apex_latest_single_ep.bin") && stderr.contains("libedgetpu"), "{stderr}");
    assert!(stderr.contains(&dir.join(FILE_NAME).display().to_string()), "{stderr}");
    assert!(stderr.contains("--firmware") && stderr.contains("EDGETPU_FIRMWARE"), "{stderr}");
    assert!(entries(&dir).is_empty());
    std::fs::remove_dir_all(&home).unwrap();
}
