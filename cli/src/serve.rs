//! `edgetpu serve`: one process owns the Corals, and every app on the host shares them.

use crate::tpu::DeviceArgs;
use anyhow::{Context, Result};
use edgetpu::DeviceSpec;
use edgetpu_serve::{ServeOptions, Server};
use std::path::PathBuf;

/// Arguments of `edgetpu serve`.
#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub device: DeviceArgs,
    /// Models by file name (a model compiled in segments, NAME_segment_K_of_N_edgetpu.tflite, is
    /// served as NAME_edgetpu.tflite); model uploads are saved here (never outside it).
    #[arg(long, value_name = "DIR")]
    pub models: Option<PathBuf>,
    /// Serve Frigate's `zmq` detector protocol on this ZeroMQ endpoint (ipc:///path or
    /// tcp://host:port); repeatable. Frigate's default is ipc:///tmp/cache/zmq_detector.
    #[arg(long, value_name = "ENDPOINT")]
    pub zmq: Vec<String>,
    /// Serve the DeepStack-compatible HTTP API, Prometheus metrics (/metrics) and a status page (/)
    /// on this address, e.g. 127.0.0.1:5000 (any other address than loopback needs --http-token).
    #[arg(long, value_name = "ADDRESS")]
    pub http: Option<String>,
    /// A bearer token every HTTP request must carry (`Authorization: Bearer TOKEN`).
    #[arg(long)]
    pub http_token: Option<String>,
    /// The model of POST /v1/vision/detection (a file name in --models or the model cache).
    #[arg(long, value_name = "NAME")]
    pub detect_model: Option<String>,
    /// Serve the tensor protocol on this Unix socket: applications open models and invoke them
    /// with their tensors in shared memory (the Rust client is the `edgetpu-client` crate).
    #[arg(long, value_name = "PATH")]
    pub socket: Option<PathBuf>,
    /// Group owning the Unix sockets (created mode 0660).
    #[arg(long)]
    pub socket_group: Option<String>,
    /// Detections scoring below this are left out of Frigate replies.
    #[arg(long, default_value_t = 0.4)]
    pub threshold: f32,
    /// Largest model upload, in MiB.
    #[arg(long, default_value_t = 256)]
    pub max_upload_mib: usize,
    /// Refuse HTTP images wider or higher than this many pixels (from the header, before decoding).
    #[arg(long, default_value_t = 16384, value_name = "PIXELS")]
    pub max_image_side: u32,
    /// Refuse HTTP images whose decoding would allocate more than this many MiB.
    #[arg(long, default_value_t = 1024, value_name = "MIB")]
    pub max_image_mib: u64,
}

/// `edgetpu serve`.
pub fn run(args: &Args) -> Result<()> {
    let devices = match DeviceSpec::parse(&args.device.device).map_err(|e| anyhow::anyhow!("--device: {e}"))? {
        // auto: every attached Coral, or the CPU alone when there is none.
        DeviceSpec::Auto => {
            let found = edgetpu::device::spec::attached_in(&crate::devices::pcie::sysfs_root());
            if found.is_empty() {
                log::warn!("no Coral attached: serving CPU models only");
                DeviceSpec::Cpu
            } else {
                DeviceSpec::Devices(found)
            }
        }
        other => other,
    };
    let mut options = ServeOptions::default()
        .devices(devices)
        .runtime(crate::tpu::runtime_options(&args.device)?)
        .threshold(args.threshold)
        .max_upload(args.max_upload_mib.saturating_mul(1 << 20))
        .image_limits(edgetpu::vision::ImageLimits {
            max_side: args.max_image_side,
            max_alloc: args.max_image_mib.saturating_mul(1 << 20),
        });
    if let Some(dir) = &args.models {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        options = options.models_dir(dir);
    }
    if let Some(g) = &args.socket_group {
        options = options.socket_group(g);
    }
    if let Some(p) = &args.socket {
        options = options.socket(p);
    }
    for e in &args.zmq {
        options = options.zmq(e);
    }
    if let Some(a) = &args.http {
        options = options.http(a);
    }
    if let Some(t) = &args.http_token {
        options = options.http_token(t);
    }
    if let Some(m) = &args.detect_model {
        options = options.detect_model(m);
    }
    let server = Server::start(options)?;
    let devices = server.devices();
    eprintln!(
        "serving on {} with {}; SIGTERM or Ctrl-C stops",
        server.endpoints().join(", "),
        if devices.is_empty() { "the CPU".to_string() } else { devices.join(", ") }
    );
    server.run_until_signal()?;
    Ok(())
}
