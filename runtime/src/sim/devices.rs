//! Simulated devices as runtime devices: a USB or PCIe accelerator of the real driver code, over
//! a simulator, that registers each program it prepares with its simulator and the oracle that
//! answers for it.

use super::pcie::{SimApex, SimApexConfig};
use super::program::{CpuTwinOracle, Oracle, SeededOracle};
use super::usb::{SimBus, SimConfig, TimeModel};
use crate::device::pcie::{ApexAccelerator, ApexOptions};
use crate::device::program::Program;
use crate::device::spec::SimKind;
use crate::device::usb::{UsbAccelerator, UsbOptions, UsbPath};
use crate::device::{Accelerator, DeviceInfo, Residency, RunInfo, Telemetry};
use crate::error::Result;
use crate::model::{cpu_twin_path, Model};
use crate::package::Package;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// Where simulated devices take output values from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OracleChoice {
    /// The CPU model beside each compiled model (its name without `_edgetpu`), else seeded bytes.
    #[default]
    Twin,
    /// This CPU model, for every compiled model.
    Model(PathBuf),
    /// Seeded bytes (not real results).
    Seeded,
}

/// How simulated devices behave.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct SimOptions {
    /// Where output values come from.
    pub oracle: OracleChoice,
    /// The USB simulator's time model (USB 3 by default).
    pub time: TimeModel,
    /// Whether simulated USB Accelerators start in DFU mode and get their firmware first;
    /// `None`: when a firmware image is found (as a real one would need it).
    pub start_in_dfu: Option<bool>,
}

impl Default for SimOptions {
    fn default() -> Self {
        SimOptions { oracle: OracleChoice::Twin, time: TimeModel::usb3(), start_in_dfu: None }
    }
}

impl SimOptions {
    /// Sets [`Self::oracle`].
    pub fn oracle(mut self, oracle: OracleChoice) -> Self {
        self.oracle = oracle;
        self
    }
    /// Sets [`Self::time`].
    pub fn time(mut self, time: TimeModel) -> Self {
        self.time = time;
        self
    }
    /// Sets [`Self::start_in_dfu`].
    pub fn start_in_dfu(mut self, dfu: bool) -> Self {
        self.start_in_dfu = Some(dfu);
        self
    }
}

/// The simulator behind a simulated device.
#[derive(Debug, Clone)]
pub enum SimHandle {
    /// A simulated USB Accelerator.
    Usb(SimBus),
    /// A simulated apex kernel driver and chip.
    Pci(SimApex),
}

/// Oracles shared by the devices opened together, one per compiled package, so that a twin model
/// is opened once however many devices run it.
type Oracles = Arc<Mutex<Vec<(Arc<Model>, usize, Arc<Mutex<dyn Oracle>>)>>>;

/// A simulated device: the real USB or PCIe driver over a simulator.
pub struct SimAccelerator {
    inner: Box<dyn Accelerator>,
    handle: SimHandle,
    oracle: OracleChoice,
    oracles: Oracles,
    /// Packages registered with this simulator: (model bytes address, package offset).
    registered: Vec<(usize, usize)>,
}

impl std::fmt::Debug for SimAccelerator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SimAccelerator")
            .field("inner", &self.inner)
            .field("oracle", &self.oracle)
            .finish_non_exhaustive()
    }
}

impl SimAccelerator {
    /// The simulator, for its violations, statistics and injected faults.
    pub fn handle(&self) -> &SimHandle {
        &self.handle
    }

    fn oracle_for(&self, model: &Arc<Model>, package: &Package<'_>) -> Result<Arc<Mutex<dyn Oracle>>> {
        let mut oracles = self.oracles.lock().unwrap_or_else(|p| p.into_inner());
        if let Some((_, _, o)) = oracles.iter().find(|(m, off, _)| Arc::ptr_eq(m, model) && *off == package.offset) {
            return Ok(o.clone());
        }
        let twin = match &self.oracle {
            OracleChoice::Twin => model.path().and_then(cpu_twin_path),
            OracleChoice::Model(p) => Some(p.clone()),
            OracleChoice::Seeded => None,
        };
        let exe = package.main();
        let oracle: Arc<Mutex<dyn Oracle>> = match twin {
            Some(t) => {
                log::debug!("{}: outputs of {} from {}", self.info().name, describe(model), t.display());
                let twin = Arc::new(Model::open(&t)?);
                Arc::new(Mutex::new(CpuTwinOracle::new(twin, &exe.input_layers, &exe.output_layers)?))
            }
            None => {
                log::warn!("{}: {} has no CPU twin: its outputs are seeded bytes", self.info().name, describe(model));
                Arc::new(Mutex::new(SeededOracle::new(package.operator_index as u64)))
            }
        };
        oracles.push((model.clone(), package.offset, oracle.clone()));
        Ok(oracle)
    }
}

fn describe(model: &Model) -> String {
    model.path().map_or_else(|| "model".to_string(), |p| p.display().to_string())
}

impl Accelerator for SimAccelerator {
    fn info(&self) -> &DeviceInfo {
        self.inner.info()
    }
    fn prepare(&mut self, model: &Arc<Model>, package: &Package<'_>) -> Result<Program> {
        let id = (model.bytes().as_ptr() as usize, package.offset);
        if !self.registered.contains(&id) {
            let oracle = self.oracle_for(model, package)?;
            let name = describe(model);
            match &self.handle {
                SimHandle::Usb(sim) => sim.load(package, &name, Some(oracle))?,
                SimHandle::Pci(sim) => sim.load(package, &name, Some(oracle))?,
            }
            self.registered.push(id);
        }
        self.inner.prepare(model, package)
    }
    fn run(&mut self, program: &mut Program, inputs: &[&[u8]], outputs: &mut [&mut [u8]]) -> Result<RunInfo> {
        self.inner.run(program, inputs, outputs)
    }
    fn residency(&self) -> &Residency {
        self.inner.residency()
    }
    fn telemetry(&mut self) -> Telemetry {
        let mut t = self.inner.telemetry();
        if let SimHandle::Usb(sim) = &self.handle {
            t.device_time = Some(sim.elapsed());
        }
        t
    }
    fn close(self: Box<Self>) -> Result<()> {
        self.inner.close()
    }
}

/// Opens `n` simulated devices of `kind`: USB Accelerators named `sim:0`, `sim:1`, … on ports
/// 1-1, 1-2, …; PCIe Edge TPUs named `sim:pci:0`, … at `/dev/apex_0`, … (`sim:pci-noncoherent:0`,
/// …, for a host whose PCIe is not cache-coherent). The USB ones start in
/// DFU mode and get the firmware of `usb` when [`SimOptions::start_in_dfu`] says so (by default
/// when a firmware image is found).
pub fn open(
    kind: SimKind,
    n: usize,
    options: &SimOptions,
    usb: &UsbOptions,
    pcie: &ApexOptions,
) -> Result<Vec<SimAccelerator>> {
    let oracles: Oracles = Arc::default();
    let mut out = Vec::with_capacity(n);
    let firmware = crate::device::usb::firmware::locate(usb.firmware.as_deref()).ok();
    let in_dfu = options.start_in_dfu.unwrap_or(firmware.is_some());
    let usb = UsbOptions { firmware: usb.firmware.clone().or(firmware), ..usb.clone() };
    for k in 0..n {
        let (inner, handle): (Box<dyn Accelerator>, SimHandle) = match kind {
            SimKind::Pci | SimKind::PciNoncoherent => {
                let coherent = kind == SimKind::Pci;
                let sim =
                    SimApex::new(SimApexConfig { node: format!("/dev/apex_{k}"), coherent, ..Default::default() });
                let mut acc = ApexAccelerator::open(Arc::new(sim.clone()), Path::new(&sim.node()), pcie.clone())?;
                acc.rename(format!("{}:{k}", kind.as_str()), true);
                (Box::new(acc), SimHandle::Pci(sim))
            }
            SimKind::Usb => {
                let config = SimConfig {
                    path: UsbPath { bus: 1, ports: vec![k as u8 + 1] },
                    start_in_dfu: in_dfu,
                    time: options.time,
                    ..Default::default()
                };
                let sim = SimBus::new(config);
                let mut acc = UsbAccelerator::open(Arc::new(sim.clone()), &sim.config_path(), usb.clone())?;
                acc.rename(format!("sim:{k}"), true);
                (Box::new(acc), SimHandle::Usb(sim))
            }
        };
        out.push(SimAccelerator {
            inner,
            handle,
            oracle: options.oracle.clone(),
            oracles: oracles.clone(),
            registered: Vec::new(),
        });
    }
    Ok(out)
}
