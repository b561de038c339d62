//! `edgetpu serve`: one process owns the Corals and serves every application on the host.
//!
//! The server opens its devices once and keeps models resident with the runtime's scheduler.
//! Today it speaks Frigate's `zmq` detector protocol ([`frigate`]) on ZeroMQ endpoints
//! (`ipc://PATH`, a Unix socket created mode 0660, or `tcp://HOST:PORT`), so Frigate's detector
//! config points at it with no code change. Each client connection runs on a thread of its own
//! and every request is answered, with an error reply when it is malformed. SIGTERM or SIGINT
//! stops it: no new connection is taken, requests in flight finish, devices are closed.
#![deny(unsafe_code)]

pub mod frigate;
pub mod http;
pub mod models;
pub mod native;
pub mod runner;
pub mod yolo;
pub mod zmtp;

use edgetpu::{DeviceSpec, Runtime, RuntimeOptions};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    /// An endpoint is malformed.
    #[error("endpoint {0:?}: use ipc:///path/to/socket or tcp://host:port")]
    Endpoint(String),
    /// Binding or preparing an endpoint failed.
    #[error("endpoint {endpoint}: {source}")]
    Bind {
        /// The endpoint.
        endpoint: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// Opening the devices failed.
    #[error(transparent)]
    Runtime(#[from] edgetpu::Error),
    /// Nothing to serve on.
    #[error("no endpoint to serve on: give at least one --zmq ENDPOINT, --http ADDRESS or --socket PATH")]
    NoEndpoint,
    /// HTTP on a non-loopback address without a token.
    #[error("--http {0}: an address other than loopback needs --http-token (a bearer token every request must carry)")]
    OpenHttp(String),
}

/// How a server runs.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct ServeOptions {
    /// The devices (`cpu` for none: CPU models only).
    pub devices: DeviceSpec,
    /// How they are opened.
    pub runtime: RuntimeOptions,
    /// Models by file name, and where uploads go.
    pub models_dir: Option<PathBuf>,
    /// Also look models up in the model catalog's cache.
    pub catalog_cache: bool,
    /// ZeroMQ endpoints for Frigate's protocol.
    pub zmq: Vec<String>,
    /// Address of the DeepStack-compatible HTTP API, metrics and status page (`127.0.0.1:PORT`).
    pub http: Option<String>,
    /// Bearer token the HTTP API requires (needed on any address other than loopback).
    pub http_token: Option<String>,
    /// The model of `POST /v1/vision/detection`.
    pub detect_model: Option<String>,
    /// The Unix socket of the tensor protocol ([`native`]).
    pub socket: Option<PathBuf>,
    /// The group that owns Unix sockets (mode 0660); `None`: the server's own.
    pub socket_group: Option<String>,
    /// Detections below this score are left out (Frigate's default 0.4).
    pub threshold: f32,
    /// Largest model upload, bytes.
    pub max_upload: usize,
    /// Largest request message, bytes.
    pub max_request: usize,
    /// Most connections at once; more are closed at once.
    pub max_connections: usize,
    /// Decode limits for images sent to the HTTP API.
    pub image_limits: edgetpu::vision::ImageLimits,
}

impl Default for ServeOptions {
    fn default() -> Self {
        ServeOptions {
            devices: DeviceSpec::Auto,
            runtime: RuntimeOptions::default(),
            models_dir: None,
            catalog_cache: true,
            zmq: Vec::new(),
            http: None,
            http_token: None,
            detect_model: None,
            socket: None,
            socket_group: None,
            threshold: 0.4,
            max_upload: 256 << 20,
            max_request: 64 << 20,
            max_connections: 64,
            image_limits: edgetpu::vision::ImageLimits::default(),
        }
    }
}

impl ServeOptions {
    /// Sets [`Self::devices`].
    pub fn devices(mut self, d: DeviceSpec) -> Self {
        self.devices = d;
        self
    }
    /// Sets [`Self::runtime`].
    pub fn runtime(mut self, r: RuntimeOptions) -> Self {
        self.runtime = r;
        self
    }
    /// Sets [`Self::models_dir`].
    pub fn models_dir(mut self, d: impl Into<PathBuf>) -> Self {
        self.models_dir = Some(d.into());
        self
    }
    /// Sets [`Self::catalog_cache`].
    pub fn catalog_cache(mut self, on: bool) -> Self {
        self.catalog_cache = on;
        self
    }
    /// Adds a ZeroMQ endpoint.
    pub fn zmq(mut self, endpoint: impl Into<String>) -> Self {
        self.zmq.push(endpoint.into());
        self
    }
    /// Sets [`Self::http`].
    pub fn http(mut self, addr: impl Into<String>) -> Self {
        self.http = Some(addr.into());
        self
    }
    /// Sets [`Self::http_token`].
    pub fn http_token(mut self, token: impl Into<String>) -> Self {
        self.http_token = Some(token.into());
        self
    }
    /// Sets [`Self::image_limits`].
    pub fn image_limits(mut self, limits: edgetpu::vision::ImageLimits) -> Self {
        self.image_limits = limits;
        self
    }
    /// Sets [`Self::detect_model`].
    pub fn detect_model(mut self, name: impl Into<String>) -> Self {
        self.detect_model = Some(name.into());
        self
    }
    /// Sets [`Self::socket`].
    pub fn socket(mut self, path: impl Into<PathBuf>) -> Self {
        self.socket = Some(path.into());
        self
    }
    /// Sets [`Self::socket_group`].
    pub fn socket_group(mut self, g: impl Into<String>) -> Self {
        self.socket_group = Some(g.into());
        self
    }
    /// Sets [`Self::threshold`].
    pub fn threshold(mut self, t: f32) -> Self {
        self.threshold = t;
        self
    }
    /// Sets [`Self::max_upload`].
    pub fn max_upload(mut self, n: usize) -> Self {
        self.max_upload = n;
        self
    }
    /// Sets [`Self::max_request`].
    pub fn max_request(mut self, n: usize) -> Self {
        self.max_request = n;
        self
    }
}

enum Listener {
    Unix(UnixListener, PathBuf),
    Tcp(TcpListener),
}

trait Stream: Read + Write + Send {
    fn close(&self);
}

impl Stream for UnixStream {
    fn close(&self) {
        let _ = self.shutdown(std::net::Shutdown::Both);
    }
}

impl Stream for TcpStream {
    fn close(&self) {
        let _ = self.shutdown(std::net::Shutdown::Both);
    }
}

/// Closes one connection (from the shutdown path, while its thread may be reading).
type Closer = Box<dyn Fn() + Send>;
/// The open connections, by id.
type OpenConnections = Arc<Mutex<Vec<(usize, Closer)>>>;

/// A running server.
pub struct Server {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    /// Open connections (to close at shutdown), by id.
    open: OpenConnections,
    shared: Arc<frigate::Shared>,
    endpoints: Vec<String>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server").field("endpoints", &self.endpoints).finish_non_exhaustive()
    }
}

fn bind(endpoint: &str, group: Option<&str>) -> Result<Listener, ServeError> {
    let err = |source| ServeError::Bind { endpoint: endpoint.to_string(), source };
    if let Some(path) = endpoint.strip_prefix("ipc://") {
        let path = PathBuf::from(path);
        if path.as_os_str().is_empty() {
            return Err(ServeError::Endpoint(endpoint.into()));
        }
        // A socket file left by a server that died: only a socket is replaced, never a file.
        if let Ok(meta) = std::fs::symlink_metadata(&path) {
            use std::os::unix::fs::FileTypeExt;
            if meta.file_type().is_socket() {
                if UnixStream::connect(&path).is_ok() {
                    return Err(err(std::io::Error::new(
                        std::io::ErrorKind::AddrInUse,
                        "another server is listening there",
                    )));
                }
                std::fs::remove_file(&path).map_err(err)?;
            } else {
                return Err(err(std::io::Error::new(std::io::ErrorKind::AlreadyExists, "a file that is no socket")));
            }
        }
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(err)?;
        }
        let l = UnixListener::bind(&path).map_err(err)?;
        secure_socket(&path, group).map_err(err)?;
        return Ok(Listener::Unix(l, path));
    }
    if let Some(addr) = endpoint.strip_prefix("tcp://") {
        return TcpListener::bind(addr).map(Listener::Tcp).map_err(err);
    }
    Err(ServeError::Endpoint(endpoint.into()))
}

/// Mode 0660, and the group when one is named.
fn secure_socket(path: &Path, group: Option<&str>) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o660))?;
    if let Some(g) = group {
        let gid = group_id(g).ok_or_else(|| {
            std::io::Error::new(std::io::ErrorKind::NotFound, format!("no group {g:?} in /etc/group"))
        })?;
        std::os::unix::fs::chown(path, None, Some(gid))?;
    }
    Ok(())
}

/// The id of group `name` (or a number), from /etc/group.
fn group_id(name: &str) -> Option<u32> {
    if let Ok(n) = name.parse() {
        return Some(n);
    }
    let text = std::fs::read_to_string("/etc/group").ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then(|| f.nth(1)?.parse().ok()).flatten()
    })
}

impl Server {
    /// Opens the devices, binds every endpoint and starts serving.
    pub fn start(options: ServeOptions) -> Result<Server, ServeError> {
        let runtime = match &options.devices {
            DeviceSpec::Cpu => None,
            spec => Some(Runtime::open(spec, options.runtime.clone())?),
        };
        Server::start_with(options, runtime)
    }

    /// Starts serving on a runtime opened elsewhere (`None`: CPU models only), e.g. simulated
    /// devices whose faults a test injects; `options.devices` and `options.runtime` are not used.
    pub fn start_with(options: ServeOptions, runtime: Option<Runtime>) -> Result<Server, ServeError> {
        if options.zmq.is_empty() && options.http.is_none() && options.socket.is_none() {
            return Err(ServeError::NoEndpoint);
        }
        let http_listener = match &options.http {
            None => None,
            Some(addr) => {
                let l = TcpListener::bind(addr)
                    .map_err(|source| ServeError::Bind { endpoint: format!("http://{addr}"), source })?;
                let loopback = l.local_addr().is_ok_and(|a| a.ip().is_loopback());
                if !loopback && options.http_token.is_none() {
                    return Err(ServeError::OpenHttp(addr.clone()));
                }
                Some(l)
            }
        };
        if let Some(rt) = &runtime {
            log::info!("devices: {}", rt.devices().join(", "));
        }
        let store = models::ModelStore {
            dir: options.models_dir.clone(),
            cache: if options.catalog_cache { edgetpu_models::cache_dir().ok() } else { None },
            max_upload: options.max_upload,
        };
        let shared = Arc::new(frigate::Shared { runtime, store, threshold: options.threshold });
        let listeners =
            options.zmq.iter().map(|e| bind(e, options.socket_group.as_deref())).collect::<Result<Vec<_>, _>>()?;
        let tensor_listener = match &options.socket {
            None => None,
            Some(path) => Some(native::bind(path, options.socket_group.as_deref())?),
        };
        let stop = Arc::new(AtomicBool::new(false));
        let open: OpenConnections = Arc::default();
        let active = Arc::new(AtomicUsize::new(0));
        let accept = || Accept {
            stop: stop.clone(),
            open: open.clone(),
            active: active.clone(),
            shared: shared.clone(),
            max_connections: options.max_connections,
        };
        let mut threads = Vec::new();
        let limit = options.max_request;
        for (listener, endpoint) in listeners.into_iter().zip(&options.zmq) {
            log::info!("serving Frigate's zmq protocol on {endpoint}");
            let ctx = accept();
            threads.push(std::thread::spawn(move || ctx.run(listener, move |c, sh| serve_zmq(c, sh, limit))));
        }
        let mut endpoints = options.zmq.clone();
        if let Some(l) = tensor_listener {
            let path = options.socket.clone().unwrap_or_default();
            log::info!("serving the tensor protocol on {}", path.display());
            endpoints.push(format!("unix://{}", path.display()));
            let ctx = accept();
            let max_upload = options.max_upload;
            threads.push(std::thread::spawn(move || {
                ctx.run(l, move |c, sh| match c {
                    Conn::Unix(s) => native::serve(s, sh, limit, max_upload),
                    Conn::Tcp(_) => {}
                })
            }));
        }
        if let Some(l) = http_listener {
            let addr = l.local_addr().map(|a| a.to_string()).unwrap_or_default();
            log::info!("serving HTTP (DeepStack API, /metrics, status page) on {addr}");
            endpoints.push(format!("http://{addr}"));
            let http = Arc::new(http::Http::new(
                shared.clone(),
                options.detect_model.clone(),
                options.http_token.clone(),
                options.max_request,
                options.image_limits,
            ));
            let ctx = accept();
            threads.push(std::thread::spawn(move || {
                ctx.run(Listener::Tcp(l), move |c, _| {
                    if let Conn::Tcp(s) = c {
                        http.serve(s)
                    }
                })
            }));
        }
        Ok(Server { stop, threads, open, shared, endpoints })
    }

    /// Where it serves: the ZeroMQ endpoints, then `http://ADDRESS` (with the bound port).
    pub fn endpoints(&self) -> &[String] {
        &self.endpoints
    }

    /// The devices served, by name (empty for CPU only).
    pub fn devices(&self) -> Vec<String> {
        self.shared.runtime.as_ref().map(|r| r.devices().to_vec()).unwrap_or_default()
    }

    /// Runs until SIGTERM or SIGINT, then shuts down.
    pub fn run_until_signal(self) -> std::io::Result<()> {
        let flag = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGTERM, flag.clone())?;
        signal_hook::flag::register(signal_hook::consts::SIGINT, flag.clone())?;
        while !flag.load(Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(100));
        }
        log::info!("stopping: finishing the requests in flight");
        self.shutdown();
        Ok(())
    }

    /// Stops taking connections, lets the requests in flight finish, closes the connections and
    /// the devices.
    pub fn shutdown(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        for (_, close) in crate_lock(&self.open).iter() {
            close();
        }
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
        // The last connection threads end once their current request is answered.
        while Arc::strong_count(&self.shared) > 1 {
            std::thread::sleep(Duration::from_millis(10));
        }
        log::info!("stopped");
    }
}

fn crate_lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

struct Accept {
    stop: Arc<AtomicBool>,
    open: OpenConnections,
    active: Arc<AtomicUsize>,
    shared: Arc<frigate::Shared>,
    max_connections: usize,
}

/// An accepted connection.
enum Conn {
    Unix(UnixStream),
    Tcp(TcpStream),
}

impl Conn {
    fn closer(&self) -> std::io::Result<Closer> {
        Ok(match self {
            Conn::Unix(s) => {
                let c = s.try_clone()?;
                Box::new(move || c.close())
            }
            Conn::Tcp(s) => {
                let c = s.try_clone()?;
                Box::new(move || c.close())
            }
        })
    }
}

impl Accept {
    /// Accepts connections until the server stops, each served by `serve` on a thread of its
    /// own, at most `max_connections` at once.
    fn run(self, listener: Listener, serve: impl Fn(Conn, Arc<frigate::Shared>) + Send + Sync + 'static) {
        let nonblocking = match &listener {
            Listener::Unix(l, _) => l.set_nonblocking(true),
            Listener::Tcp(l) => l.set_nonblocking(true),
        };
        if let Err(e) = nonblocking {
            log::error!("cannot poll the listener: {e}");
            return;
        }
        let serve = Arc::new(serve);
        let mut next_id = 0usize;
        while !self.stop.load(Ordering::SeqCst) {
            let accepted = match &listener {
                Listener::Unix(l, _) => l.accept().and_then(|(s, _)| {
                    s.set_nonblocking(false)?;
                    Ok(Conn::Unix(s))
                }),
                Listener::Tcp(l) => l.accept().and_then(|(s, _)| {
                    s.set_nonblocking(false)?;
                    s.set_nodelay(true)?;
                    Ok(Conn::Tcp(s))
                }),
            };
            match accepted.and_then(|c| Ok((c.closer()?, c))) {
                Ok((close, conn)) => {
                    if self.active.load(Ordering::SeqCst) >= self.max_connections {
                        log::warn!("refusing a connection: {} are open (the limit)", self.max_connections);
                        close();
                        continue;
                    }
                    next_id += 1;
                    let id = next_id;
                    crate_lock(&self.open).push((id, close));
                    self.active.fetch_add(1, Ordering::SeqCst);
                    let (shared, open, active, serve) =
                        (self.shared.clone(), self.open.clone(), self.active.clone(), serve.clone());
                    std::thread::spawn(move || {
                        serve(conn, shared);
                        crate_lock(&open).retain(|(i, _)| *i != id);
                        active.fetch_sub(1, Ordering::SeqCst);
                    });
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => std::thread::sleep(Duration::from_millis(20)),
                Err(e) => {
                    log::warn!("accept: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
        if let Listener::Unix(_, path) = &listener {
            let _ = std::fs::remove_file(path);
        }
    }
}

fn serve_zmq(conn: Conn, shared: Arc<frigate::Shared>, limit: usize) {
    let stream: Box<dyn Stream> = match conn {
        Conn::Unix(s) => Box::new(s),
        Conn::Tcp(s) => Box::new(s),
    };
    let mut conn = match zmtp::Connection::accept(stream, limit) {
        Ok(c) => c,
        Err(e) => {
            log::debug!("handshake: {e}");
            return;
        }
    };
    let mut session = frigate::Session::new(shared);
    loop {
        let frames = match conn.recv() {
            Ok(f) => f,
            Err(zmtp::ZmtpError::Io(_)) => return,
            Err(e) => {
                // The message cannot be read to its end: answer, then drop the connection.
                log::warn!("closing a connection: {e}");
                let _ = conn.send(&[serde_json::json!({"error": e.to_string()}).to_string().as_bytes()]);
                return;
            }
        };
        let reply = session.handle(&frames);
        let refs: Vec<&[u8]> = reply.iter().map(Vec::as_slice).collect();
        if conn.send(&refs).is_err() {
            // The client went away (a REQ that timed out): nothing is left behind.
            return;
        }
    }
}
