//! Thermal telemetry of a PCIe Coral: temperature, trip points and the clock step.
//!
//! The apex driver throttles in software: every `temp_poll_interval` milliseconds it compares
//! the temperature with the three trip points (default 85, 90 and 95 °C) and sets the TPU
//! clock divider to 1, 2 or 3 at or above trip point 0, 1 or 2 (250, 125, 62.5 MHz), and back
//! to 0 (500 MHz) below trip point 0. sysfs does not expose the divider, so
//! [`Telemetry::clock`] is **derived** the same way from the values sysfs does expose; when
//! `temp_poll_interval` is `0` the driver's poller is off and the clock is not lowered.

use super::{parse_flag, read_attr, CLASS_DIR};
use crate::{Error, ErrorKind, Result};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;

/// The apex driver's default trip points, in milli-°C (used for a trip point sysfs does not
/// give).
pub const DEFAULT_TRIP_POINTS_MC: [i32; 3] = [85_000, 90_000, 95_000];

/// The TPU core clock: 500 MHz divided by 1, 2, 4 or 8.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum ClockStep {
    /// 500 MHz (divider 0): full speed.
    Mhz500,
    /// 250 MHz (divider 1).
    Mhz250,
    /// 125 MHz (divider 2).
    Mhz125,
    /// 62.5 MHz (divider 3).
    Mhz62_5,
}

impl ClockStep {
    /// The step for the driver's divider value 0..=3.
    pub fn from_divider(divider: u8) -> Option<ClockStep> {
        [ClockStep::Mhz500, ClockStep::Mhz250, ClockStep::Mhz125, ClockStep::Mhz62_5].get(usize::from(divider)).copied()
    }

    /// The driver's divider value, 0..=3.
    pub fn divider(self) -> u8 {
        self as u8
    }

    /// The clock in kHz.
    pub fn khz(self) -> u32 {
        500_000 >> self.divider()
    }

    /// The clock in MHz.
    pub fn mhz(self) -> f64 {
        f64::from(self.khz()) / 1000.0
    }

    /// Whether the clock is below 500 MHz.
    pub fn throttled(self) -> bool {
        self != ClockStep::Mhz500
    }
}

impl fmt::Display for ClockStep {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} MHz", self.mhz())
    }
}

/// The clock step the apex driver's thermal poller sets at `temp_mc` with trip points
/// `trips_mc` (all milli-°C): divider `i + 1` for the highest trip point `i` reached, 0 below
/// them all.
pub fn derive_clock(temp_mc: i32, trips_mc: [i32; 3]) -> ClockStep {
    let reached = trips_mc.iter().rposition(|&t| temp_mc >= t);
    // `rposition` returns 0..=2; +1 fits the divider range.
    reached.and_then(|i| ClockStep::from_divider(i as u8 + 1)).unwrap_or(ClockStep::Mhz500)
}

/// The thermal attributes of one PCIe Coral. A missing or unparseable attribute is `None`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Telemetry {
    /// `temp`: the die temperature, milli-°C.
    pub temp_mc: Option<i32>,
    /// `trip_point0_temp`..`trip_point2_temp`, milli-°C.
    pub trip_points_mc: [Option<i32>; 3],
    /// `hw_temp_warn1`, `hw_temp_warn2`: the chip's own warning and shutdown thresholds,
    /// milli-°C.
    pub hw_temp_warn_mc: [Option<i32>; 2],
    /// `hw_temp_warn1_en`, `hw_temp_warn2_en`.
    pub hw_temp_warn_en: [Option<bool>; 2],
    /// `temp_poll_interval`: milliseconds between the driver's thermal checks (0 = off).
    pub temp_poll_interval_ms: Option<i32>,
    /// `unique_id`: the chip's e-fuse id (newer drivers only).
    pub unique_id: Option<String>,
    /// The clock step, derived from the temperature and the trip points (see the module
    /// documentation); `None` without a temperature.
    pub clock: Option<ClockStep>,
}

impl Telemetry {
    /// Whether the (derived) clock is below 500 MHz.
    pub fn throttled(&self) -> bool {
        self.clock.is_some_and(ClockStep::throttled)
    }

    /// The temperature in °C.
    pub fn temp_celsius(&self) -> Option<f64> {
        self.temp_mc.map(|t| f64::from(t) / 1000.0)
    }

    /// The trip points in use for the derivation: sysfs's, else the driver's defaults.
    pub fn effective_trip_points_mc(&self) -> [i32; 3] {
        let mut out = DEFAULT_TRIP_POINTS_MC;
        for (o, t) in out.iter_mut().zip(self.trip_points_mc) {
            if let Some(t) = t {
                *o = t;
            }
        }
        out
    }
}

/// Reads the thermal attributes in a device's sysfs directory; never fails (a missing
/// attribute is `None`).
pub fn read_telemetry(dir: &Path) -> Telemetry {
    let int = |name: &str| read_attr(dir, name).and_then(|t| t.parse::<i32>().ok());
    let flag = |name: &str| read_attr(dir, name).and_then(|t| parse_flag(&t));
    let mut t = Telemetry {
        temp_mc: int("temp"),
        trip_points_mc: [int("trip_point0_temp"), int("trip_point1_temp"), int("trip_point2_temp")],
        hw_temp_warn_mc: [int("hw_temp_warn1"), int("hw_temp_warn2")],
        hw_temp_warn_en: [flag("hw_temp_warn1_en"), flag("hw_temp_warn2_en")],
        temp_poll_interval_ms: int("temp_poll_interval"),
        unique_id: read_attr(dir, "unique_id"),
        clock: None,
    };
    t.clock = match (t.temp_mc, t.temp_poll_interval_ms) {
        (None, _) => None,
        (Some(_), Some(0)) => Some(ClockStep::Mhz500),
        (Some(temp), _) => Some(derive_clock(temp, t.effective_trip_points_mc())),
    };
    t
}

/// The telemetry of `apex_<number>` under `root`. A missing device is an error of kind
/// [`ErrorKind::NotFound`] naming its sysfs directory.
pub fn telemetry(root: &Path, number: u32) -> Result<Telemetry> {
    let dir = root.join(CLASS_DIR).join(format!("apex_{number}"));
    if !dir.is_dir() {
        return Err(Error::pci(
            format!("apex_{number}"),
            ErrorKind::NotFound,
            format!("no such PCIe Coral: {} does not exist", dir.display()),
        ));
    }
    Ok(read_telemetry(&dir))
}
