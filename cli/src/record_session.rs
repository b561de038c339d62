//! `edgetpu doctor --record FILE`: one whole device session (firmware if needed, open, an
//! optional inference, close) written as a JSON-lines trace, for bug reports and for replay in
//! tests.

use anyhow::{Context, Result};
use edgetpu::device::program::Program;
use edgetpu::device::usb::record::RecordingBus;
use edgetpu::device::usb::UsbBus;
use edgetpu::device::usb::{UsbAccelerator, UsbOptions};
use edgetpu::package::Package;
use edgetpu::sim::usb::{SeededOracle, SimBus, SimConfig};
use edgetpu::Model;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Records a session with the device chosen by `device` (`usb`, `usb:N`, `usb:<path>`, or `sim`)
/// into `file`; with `model`, the session includes one inference on zero inputs.
pub fn record(file: &Path, device: &str, firmware: Option<&Path>, model: Option<&Path>) -> Result<()> {
    let model = model.map(Model::open).transpose()?.map(Arc::new);
    let pkgs = model.as_deref().map(Package::all).transpose()?;
    let sim = device == "sim" || device == "sim:usb";
    let firmware_file = edgetpu::device::usb::firmware::locate(firmware).ok();
    let bus: Box<dyn UsbBus> = if sim {
        let s = SimBus::new(SimConfig { start_in_dfu: firmware_file.is_some(), ..Default::default() });
        if let Some(p) = pkgs.as_ref().and_then(|p| p.first()) {
            s.load(p, "model", Some(Arc::new(Mutex::new(SeededOracle::new(0)))))?;
        }
        Box::new(s)
    } else {
        Box::new(crate::devices::open_bus()?)
    };
    let out = std::fs::File::create(file).map_err(|source| edgetpu::Error::Io { path: file.to_path_buf(), source })?;
    let recording = Arc::new(RecordingBus::new(bus, Box::new(std::io::BufWriter::new(out)))?);
    let mut options = UsbOptions::default();
    options.firmware = firmware_file;
    let selector = if sim { "usb" } else { device };
    let session = || -> Result<()> {
        let mut acc = UsbAccelerator::open_selected(recording.clone(), selector, options)?;
        if let Some(pkg) = pkgs.as_ref().and_then(|p| p.first()) {
            let mut program = Program::new(model.as_ref().expect("packages come from the model"), pkg)?;
            let exe = pkg.main();
            let size =
                |l: &edgetpu::package::Layer| l.num_elements() * l.data_type.size_bytes() * l.execution_count.max(1);
            let inputs: Vec<Vec<u8>> = exe.input_layers.iter().map(|l| vec![0u8; size(l)]).collect();
            let mut outputs: Vec<Vec<u8>> = exe.output_layers.iter().map(|l| vec![0u8; size(l)]).collect();
            let ins: Vec<&[u8]> = inputs.iter().map(|v| v.as_slice()).collect();
            let mut outs: Vec<&mut [u8]> = outputs.iter_mut().map(|v| v.as_mut_slice()).collect();
            acc.run(&mut program, &ins, &mut outs).context("the recorded inference")?;
        }
        acc.close()?;
        Ok(())
    };
    let result = session();
    recording.finish().with_context(|| format!("writing {}", file.display()))?;
    let lines = std::fs::read_to_string(file).map(|t| t.lines().count()).unwrap_or(0);
    match result {
        Ok(()) => {
            println!("recorded {lines} lines to {}{}", file.display(), if sim { " (simulated device)" } else { "" });
            Ok(())
        }
        Err(e) => {
            println!("recorded {lines} lines to {} up to the failure below; attach it to your report", file.display());
            Err(e)
        }
    }
}
