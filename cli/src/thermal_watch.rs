//! Watches the temperature of the PCIe Corals a benchmark runs on, so that `bench` can warn when
//! the apex driver throttled the clock during the run (its figures are then not the chip's best).

use crate::devices::pcie::{celsius, throttle_reason};
use edgetpu::device::pcie::sysfs::{self as apex_sysfs, Telemetry};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// The hottest reading of one device during the run.
#[derive(Debug, Clone)]
pub struct Hottest {
    /// `apex_N`.
    pub number: u32,
    /// The reading with the highest temperature.
    pub telemetry: Telemetry,
    /// Whether any reading was throttled.
    pub throttled: bool,
}

/// A sampling thread over some `apex_N` devices.
pub struct ThermalWatch {
    stop: Arc<AtomicBool>,
    seen: Arc<Mutex<Vec<Hottest>>>,
    thread: Option<JoinHandle<()>>,
}

/// The `apex_N` numbers of real PCIe devices among runtime device names (`pci:/dev/apex_N`).
pub fn apex_numbers(names: &[String]) -> Vec<u32> {
    names
        .iter()
        .filter_map(|n| n.strip_prefix("pci:"))
        .filter_map(|node| node.rsplit("apex_").next()?.parse().ok())
        .collect()
}

fn sample(root: &std::path::Path, numbers: &[u32], seen: &Mutex<Vec<Hottest>>) {
    let mut seen = seen.lock().unwrap_or_else(|p| p.into_inner());
    for &number in numbers {
        let Ok(t) = apex_sysfs::telemetry(root, number) else { continue };
        let throttled = t.throttled();
        match seen.iter_mut().find(|h| h.number == number) {
            Some(h) => {
                h.throttled |= throttled;
                if t.temp_mc > h.telemetry.temp_mc {
                    h.telemetry = t;
                }
            }
            None => seen.push(Hottest { number, telemetry: t, throttled }),
        }
    }
}

impl ThermalWatch {
    /// Samples the devices under `root` every `interval` until [`Self::finish`] (none: no
    /// thread).
    pub fn start(root: PathBuf, numbers: Vec<u32>, interval: Duration) -> ThermalWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let thread = (!numbers.is_empty()).then(|| {
            let (stop, seen) = (stop.clone(), seen.clone());
            std::thread::spawn(move || loop {
                sample(&root, &numbers, &seen);
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                std::thread::sleep(interval);
            })
        });
        ThermalWatch { stop, seen, thread }
    }

    /// Stops sampling (after one last reading) and returns each device's hottest reading.
    pub fn finish(mut self) -> Vec<Hottest> {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        std::mem::take(&mut *self.seen.lock().unwrap_or_else(|p| p.into_inner()))
    }
}

/// The warnings for devices that were throttled during the run.
pub fn warnings(seen: &[Hottest]) -> Vec<String> {
    seen.iter()
        .filter(|h| h.throttled)
        .map(|h| {
            let why = throttle_reason(&h.telemetry)
                .unwrap_or_else(|| h.telemetry.temp_mc.map_or_else(|| "a trip point was reached".into(), celsius));
            format!(
                "warning: apex_{} was throttled during the run ({why}; clock {}, derived from the temperature and \
                 the trip points): these figures are below the chip's; cool it (heatsink, airflow) and run again",
                h.number,
                h.telemetry.clock.map_or_else(|| "unknown".to_string(), |c| c.to_string())
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(temp_mc: i32) -> PathBuf {
        let root = std::env::temp_dir().join(format!("edgetpu-thermal-{}-{temp_mc}", std::process::id()));
        let dir = root.join("sys/class/apex/apex_0");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("temp"), format!("{temp_mc}\n")).unwrap();
        for (k, t) in [85000, 90000, 95000].iter().enumerate() {
            std::fs::write(dir.join(format!("trip_point{k}_temp")), format!("{t}\n")).unwrap();
        }
        std::fs::write(dir.join("temp_poll_interval"), "5000\n").unwrap();
        root
    }

    #[test]
    fn a_hot_device_gives_a_warning_and_a_cool_one_none() {
        assert_eq!(apex_numbers(&["pci:/dev/apex_1".into(), "sim:pci:0".into(), "usb:1-2".into()]), [1]);
        let hot = tree(91_000);
        let seen = ThermalWatch::start(hot.clone(), vec![0], Duration::from_millis(5)).finish();
        assert_eq!(seen.len(), 1);
        let w = warnings(&seen);
        assert_eq!(w.len(), 1, "{w:?}");
        assert!(w[0].contains("apex_0 was throttled") && w[0].contains("trip point 1"), "{}", w[0]);
        let cool = tree(60_000);
        assert!(warnings(&ThermalWatch::start(cool.clone(), vec![0], Duration::from_millis(5)).finish()).is_empty());
        assert!(ThermalWatch::start(cool.clone(), vec![], Duration::from_millis(5)).finish().is_empty());
        for d in [hot, cool] {
            let _ = std::fs::remove_dir_all(d);
        }
    }
}
