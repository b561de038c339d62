//! Fuzz target: a Frigate client's side of a ZMTP connection (greeting, NULL handshake, READY
//! properties, frames), each message handled by `frigate::Session` on the CPU with a model store
//! holding one small CPU model (`probe.tflite`, from runtime/tests/data/ops). Uploads are refused
//! (`max_upload` 0), so nothing is written to disk.
#![no_main]

use edgetpu_serve::frigate::{Session, Shared};
use edgetpu_serve::models::ModelStore;
use edgetpu_serve::zmtp::Connection;
use libfuzzer_sys::fuzz_target;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

/// The client's bytes in, the server's replies discarded.
struct Peer<'a> {
    input: &'a [u8],
}

impl Read for Peer<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.input.read(buf)
    }
}

impl Write for Peer<'_> {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn shared() -> Arc<Shared> {
    static SHARED: OnceLock<Arc<Shared>> = OnceLock::new();
    SHARED
        .get_or_init(|| {
            let dir: PathBuf = std::env::temp_dir().join(format!("edgetpu-fuzz-frigate-{}", std::process::id()));
            std::fs::create_dir_all(&dir).expect("creates the model directory");
            let model = include_bytes!("../../runtime/tests/data/ops/depth_to_space_u8/model.tflite");
            std::fs::write(dir.join("probe.tflite"), model).expect("writes the model");
            Arc::new(Shared {
                runtime: None,
                store: ModelStore { dir: Some(dir), cache: None, max_upload: 0 },
                threshold: 0.4,
            })
        })
        .clone()
}

fuzz_target!(|data: &[u8]| {
    let Ok(mut conn) = Connection::accept(Peer { input: data }, 1 << 20) else { return };
    let mut session = Session::new(shared());
    for _ in 0..32 {
        let Ok(frames) = conn.recv() else { return };
        let reply = session.handle(&frames);
        let refs: Vec<&[u8]> = reply.iter().map(Vec::as_slice).collect();
        if conn.send(&refs).is_err() {
            return;
        }
    }
});
