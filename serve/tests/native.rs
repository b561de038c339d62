//! The tensor protocol of `edgetpu serve` (`--socket`) with the `edgetpu-client` crate: outputs
//! equal to in-process ones on the CPU and on a simulated Edge TPU, models by name and by bytes,
//! error replies that leave the connection usable, a client that dies mid-message, and the
//! socket's mode.

use edgetpu::{DeviceSpec, Interpreter, Model};
use edgetpu_client::{Client, ClientError};
use edgetpu_serve::{ServeOptions, Server};
use std::io::Write;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::Arc;

fn testdata() -> PathBuf {
    let dir = std::env::var_os("EDGETPU_TESTDATA")
        .map_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata"), PathBuf::from);
    assert!(dir.join("MANIFEST.md").is_file(), "test data not found at {}: set EDGETPU_TESTDATA", dir.display());
    dir
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("edgetpu-native-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const CPU_MODEL: &str = "mobilenet_v1_0.25_128_quant.tflite";
const TPU_MODEL: &str = "mobilenet_v1_0.25_128_quant_edgetpu.tflite";

/// A server on `devices` with the two models in its --models directory.
fn server(name: &str, devices: DeviceSpec) -> (Server, PathBuf) {
    let dir = scratch(name);
    let models = dir.join("models");
    std::fs::create_dir_all(&models).unwrap();
    for m in [CPU_MODEL, TPU_MODEL] {
        std::fs::copy(testdata().join(m), models.join(m)).unwrap();
    }
    let sock = dir.join("tensor.sock");
    let s =
        Server::start(ServeOptions::default().devices(devices).catalog_cache(false).models_dir(&models).socket(&sock))
            .unwrap();
    (s, sock)
}

fn frame(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 % 251) as u8).collect()
}

/// The in-process output of `model` (on `device`) for `input`.
fn in_process(model: &Path, device: DeviceSpec, input: &[u8]) -> Vec<u8> {
    let mut it = Interpreter::builder(Arc::new(Model::open(model).unwrap())).device(device).threads(1).build().unwrap();
    it.set_input(0, input).unwrap();
    it.invoke().unwrap();
    it.output(0).unwrap().to_vec()
}

#[test]
fn cpu_model_by_name_and_by_bytes_equals_in_process() {
    let (server, sock) = server("cpu", DeviceSpec::cpu());
    let want_input = frame(128 * 128 * 3);
    let want = in_process(&testdata().join(CPU_MODEL), DeviceSpec::cpu(), &want_input);
    let mut client = Client::connect(&sock).unwrap();
    {
        let mut m = client.open(CPU_MODEL).unwrap();
        assert_eq!(m.inputs()[0].shape, [1, 128, 128, 3]);
        assert_eq!(m.inputs()[0].dtype, "uint8");
        assert_eq!(m.outputs()[0].shape, [1, 1001]);
        assert!(m.inputs()[0].scale > 0.0);
        assert_eq!(m.server_invoke_time(), None, "no invoke yet");
        m.input_mut(0).unwrap().copy_from_slice(&want_input);
        let start = std::time::Instant::now();
        m.invoke().unwrap();
        let trip = start.elapsed();
        assert_eq!(m.output(0).unwrap(), &want[..]);
        // The server says how long its interpreter took: some time, within the round trip.
        let inside = m.server_invoke_time().expect("the reply carries invoke_us");
        assert!(inside > std::time::Duration::ZERO && inside <= trip, "server {inside:?}, round trip {trip:?}");
        // A second frame on the same shared memory.
        m.input_mut(0).unwrap().fill(7);
        m.invoke().unwrap();
        assert_eq!(m.output(0).unwrap(), &in_process(&testdata().join(CPU_MODEL), DeviceSpec::cpu(), &[7; 49152])[..]);
    }
    // A client that polls for its replies gets the same answers (a reply later than the budget
    // is read by the blocking path).
    client.set_busy_poll(std::time::Duration::from_micros(50));
    let bytes = std::fs::read(testdata().join(CPU_MODEL)).unwrap();
    let mut m = client.open_bytes(&bytes).unwrap();
    m.set_input(0, &want_input).unwrap();
    m.invoke().unwrap();
    assert_eq!(m.output(0).unwrap(), &want[..]);
    drop(m);
    // So does one that sleeps until shortly before each reply is due and then polls (the
    // default), and one that blocks: frames alternate, so a reply read too early or twice would
    // show.
    client.set_busy_poll(std::time::Duration::ZERO);
    let sevens = in_process(&testdata().join(CPU_MODEL), DeviceSpec::cpu(), &[7; 49152]);
    for predictive in [true, false] {
        client.set_predictive_wake(predictive);
        let mut m = client.open(CPU_MODEL).unwrap();
        for k in 0..20 {
            if k % 2 == 0 {
                m.set_input(0, &want_input).unwrap();
            } else {
                m.input_mut(0).unwrap().fill(7);
            }
            m.invoke().unwrap();
            let want = if k % 2 == 0 { &want[..] } else { &sevens[..] };
            assert_eq!(m.output(0).unwrap(), want, "invoke {k}, predictive wake {predictive}");
        }
    }
    server.shutdown();
}

#[test]
fn compiled_model_on_a_simulated_edge_tpu_equals_in_process() {
    let (server, sock) = server("sim", DeviceSpec::parse("sim").unwrap());
    let input = frame(128 * 128 * 3);
    let want = in_process(&testdata().join(TPU_MODEL), DeviceSpec::parse("sim").unwrap(), &input);
    let mut client = Client::connect(&sock).unwrap();
    let mut m = client.open(TPU_MODEL).unwrap();
    m.set_input(0, &input).unwrap();
    m.invoke().unwrap();
    assert_eq!(m.output(0).unwrap(), &want[..]);
    drop(m);
    drop(client);
    server.shutdown();
}

#[test]
fn errors_are_replies_and_the_connection_goes_on() {
    let (server, sock) = server("errors", DeviceSpec::cpu());
    let mut client = Client::connect(&sock).unwrap();
    let e = client.open("missing.tflite").unwrap_err();
    assert!(matches!(&e, ClientError::Server(m) if m.contains("missing.tflite")), "{e}");
    let e = client.open("../etc/passwd").unwrap_err();
    assert!(matches!(e, ClientError::Server(_)), "{e}");
    let e = client.open_bytes(b"not a model at all").unwrap_err();
    assert!(matches!(e, ClientError::Server(_)), "{e}");
    // A compiled model on a CPU-only server.
    let e = client.open(TPU_MODEL).unwrap_err();
    assert!(matches!(&e, ClientError::Server(m) if m.contains("Edge TPU")), "{e}");
    let mut m = client.open(CPU_MODEL).unwrap();
    assert!(matches!(m.input_mut(3), Err(ClientError::NoTensor { kind: "input", index: 3, count: 1 })));
    assert!(m.set_input(0, &[1, 2, 3]).is_err());
    m.invoke().unwrap();
    drop(m);

    // Raw messages: an unknown op, an invoke of a model never opened.
    let raw = UnixStream::connect(&sock).unwrap();
    for header in [serde_json::json!({"op": "dance"}), serde_json::json!({"op": "invoke", "id": 99})] {
        edgetpu_client::wire::send(&raw, &header, &[], None).unwrap();
        let r = edgetpu_client::wire::recv(&raw, 1 << 20).unwrap();
        assert_eq!(r.header["ok"], false, "{}", r.header);
        assert!(r.header["error"].is_string());
    }
    // An oversized message: an error reply, then the server closes this connection.
    (&raw).write_all(&u32::MAX.to_le_bytes()).unwrap();
    let r = edgetpu_client::wire::recv(&raw, 1 << 20).unwrap();
    assert!(r.header["error"].as_str().unwrap().contains("limit"), "{}", r.header);

    // A client that dies mid-message leaves the server serving.
    let dying = UnixStream::connect(&sock).unwrap();
    (&dying).write_all(&100u32.to_le_bytes()).unwrap();
    (&dying).write_all(b"{\"op\"").unwrap();
    drop(dying);
    let mut again = Client::connect(&sock).unwrap();
    let mut m = again.open(CPU_MODEL).unwrap();
    m.invoke().unwrap();
    drop(m);
    server.shutdown();
}

#[test]
fn socket_is_group_only() {
    use std::os::unix::fs::PermissionsExt;
    let (server, sock) = server("mode", DeviceSpec::cpu());
    assert_eq!(std::fs::metadata(&sock).unwrap().permissions().mode() & 0o777, 0o660);
    assert!(server.endpoints().iter().any(|e| e.starts_with("unix://")));
    server.shutdown();
    assert!(!sock.exists(), "the socket is removed at shutdown");
}
