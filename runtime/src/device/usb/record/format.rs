//! The trace's lines: header, operations and their fields, and how a call is matched against
//! a recorded operation.

use super::fnv1a64;
use crate::device::usb::{Setup, UsbDeviceInfo, UsbError, UsbErrorKind, UsbPath};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::fmt;

/// Bytes written as a lowercase hex string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub(super) struct Hex(pub(super) Vec<u8>);

impl From<Hex> for String {
    fn from(h: Hex) -> String {
        use std::fmt::Write as _;
        h.0.iter().fold(String::with_capacity(h.0.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
    }
}

impl TryFrom<String> for Hex {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Hex, String> {
        if !s.len().is_multiple_of(2) {
            return Err(format!("hex data has an odd number of digits ({})", s.len()));
        }
        let digit = |i: usize| {
            char::from(s.as_bytes()[i]).to_digit(16).ok_or_else(|| format!("hex data has a bad digit at position {i}"))
        };
        (0..s.len() / 2).map(|i| Ok((digit(2 * i)? * 16 + digit(2 * i + 1)?) as u8)).collect::<Result<_, _>>().map(Hex)
    }
}

/// An FNV-1a 64 checksum, written as 16 hex digits (a JSON number would lose precision).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub(super) struct Fnv(pub(super) u64);

impl From<Fnv> for String {
    fn from(f: Fnv) -> String {
        format!("{:016x}", f.0)
    }
}

impl TryFrom<String> for Fnv {
    type Error = String;
    fn try_from(s: String) -> std::result::Result<Fnv, String> {
        u64::from_str_radix(&s, 16).map(Fnv).map_err(|_| format!("fnv1a64 {s:?} is not a 64-bit hex number"))
    }
}

/// How an operation ended: `"ok"` or `{"error":"<UsbErrorKind>","endpoint":N}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "Value", into = "Value")]
pub(super) enum Outcome {
    Ok,
    Err(UsbError),
}

impl From<Outcome> for Value {
    fn from(o: Outcome) -> Value {
        match o {
            Outcome::Ok => Value::from("ok"),
            Outcome::Err(e) => serde_json::json!({ "error": e.kind, "endpoint": e.endpoint }),
        }
    }
}

impl TryFrom<Value> for Outcome {
    type Error = String;
    fn try_from(v: Value) -> std::result::Result<Outcome, String> {
        if v == "ok" {
            return Ok(Outcome::Ok);
        }
        let kind = v.get("error").ok_or_else(|| format!("result must be \"ok\" or {{\"error\": ..}}, not {v}"))?;
        let kind: UsbErrorKind =
            serde_json::from_value(kind.clone()).map_err(|_| format!("unknown USB error kind {kind} in result"))?;
        let endpoint = match v.get("endpoint") {
            None => 0,
            Some(e) => {
                e.as_u64().and_then(|e| u8::try_from(e).ok()).ok_or_else(|| format!("bad error endpoint {e}"))?
            }
        };
        Ok(Outcome::Err(UsbError::new(kind, endpoint)))
    }
}

impl<T> From<&std::result::Result<T, UsbError>> for Outcome {
    fn from(r: &std::result::Result<T, UsbError>) -> Outcome {
        r.as_ref().map_or_else(|e| Outcome::Err(*e), |_| Outcome::Ok)
    }
}

/// One recorded operation.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum Op {
    Open {
        path: UsbPath,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        device: Option<UsbDeviceInfo>,
        result: Outcome,
    },
    ClaimInterface {
        interface: u8,
        result: Outcome,
    },
    ControlIn {
        setup: Setup,
        length: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data: Option<Hex>,
        result: Outcome,
    },
    ControlOut {
        setup: Setup,
        length: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data: Option<Hex>,
        fnv1a64: Fnv,
        result: Outcome,
    },
    BulkOut {
        endpoint: u8,
        length: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data: Option<Hex>,
        fnv1a64: Fnv,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        sent: Option<usize>,
        result: Outcome,
    },
    BulkIn {
        endpoint: u8,
        length: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data: Option<Hex>,
        result: Outcome,
    },
    InterruptIn {
        endpoint: u8,
        length: usize,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        data: Option<Hex>,
        result: Outcome,
    },
    ClearHalt {
        endpoint: u8,
        result: Outcome,
    },
    Reset {
        result: Outcome,
    },
}

/// An operation line: the operation and when it started.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Line {
    #[serde(flatten)]
    pub(super) op: Op,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(super) t_us: Option<u64>,
}

/// The first line of a trace.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Header {
    pub(super) format: String,
    pub(super) version: u32,
    pub(super) device: Option<UsbDeviceInfo>,
}

fn setup_text(s: &Setup) -> String {
    format!(
        "request type 0x{:02x} request 0x{:02x} value 0x{:04x} index 0x{:04x}",
        s.request_type, s.request, s.value, s.index
    )
}

/// What a session asks for, described the same way for the recorded and the actual call.
#[derive(Debug, Clone, Copy)]
pub(super) enum Call<'a> {
    Open(&'a UsbPath),
    ClaimInterface(u8),
    ControlIn(Setup, usize),
    ControlOut(Setup, &'a [u8]),
    BulkOut(u8, &'a [u8]),
    BulkIn(u8, usize),
    InterruptIn(u8, usize),
    ClearHalt(u8),
    Reset,
}

impl fmt::Display for Call<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Call::Open(p) => write!(f, "open of {p}"),
            Call::ClaimInterface(i) => write!(f, "claim_interface {i}"),
            Call::ControlIn(s, n) => write!(f, "control_in ({}) of {n} bytes", setup_text(s)),
            Call::ControlOut(s, d) => write!(f, "control_out ({}) of {} bytes", setup_text(s), d.len()),
            Call::BulkOut(e, d) => write!(f, "bulk_out on endpoint 0x{e:02x} of {} bytes", d.len()),
            Call::BulkIn(e, n) => write!(f, "bulk_in on endpoint 0x{e:02x} of {n} bytes"),
            Call::InterruptIn(e, n) => write!(f, "interrupt_in on endpoint 0x{e:02x} of {n} bytes"),
            Call::ClearHalt(e) => write!(f, "clear_halt of endpoint 0x{e:02x}"),
            Call::Reset => f.write_str("reset"),
        }
    }
}

impl Op {
    pub(super) fn result(&self) -> Outcome {
        match self {
            Op::Open { result, .. }
            | Op::ClaimInterface { result, .. }
            | Op::ControlIn { result, .. }
            | Op::ControlOut { result, .. }
            | Op::BulkOut { result, .. }
            | Op::BulkIn { result, .. }
            | Op::InterruptIn { result, .. }
            | Op::ClearHalt { result, .. }
            | Op::Reset { result } => *result,
        }
    }

    /// A description of the recorded call (outgoing data shown by length only).
    pub(super) fn describe(&self) -> String {
        match self {
            Op::Open { path, .. } => Call::Open(path).to_string(),
            Op::ClaimInterface { interface, .. } => Call::ClaimInterface(*interface).to_string(),
            Op::ControlIn { setup, length, .. } => Call::ControlIn(*setup, *length).to_string(),
            Op::ControlOut { setup, length, .. } => {
                format!("control_out ({}) of {length} bytes", setup_text(setup))
            }
            Op::BulkOut { endpoint, length, .. } => format!("bulk_out on endpoint 0x{endpoint:02x} of {length} bytes"),
            Op::BulkIn { endpoint, length, .. } => Call::BulkIn(*endpoint, *length).to_string(),
            Op::InterruptIn { endpoint, length, .. } => Call::InterruptIn(*endpoint, *length).to_string(),
            Op::ClearHalt { endpoint, .. } => Call::ClearHalt(*endpoint).to_string(),
            Op::Reset { .. } => Call::Reset.to_string(),
        }
    }

    /// Checks that the fields the recorder writes together agree.
    pub(super) fn validate(&self) -> std::result::Result<(), String> {
        let ok = self.result() == Outcome::Ok;
        match self {
            Op::ControlOut { length, data, fnv1a64: sum, .. } | Op::BulkOut { length, data, fnv1a64: sum, .. } => {
                if let Some(Hex(d)) = data {
                    if d.len() != *length {
                        return Err(format!("data has {} bytes but length is {length}", d.len()));
                    }
                    if fnv1a64(d) != sum.0 {
                        return Err("data does not match its fnv1a64".into());
                    }
                }
                if let Op::BulkOut { sent, .. } = self {
                    match sent {
                        None if ok => return Err("an ok bulk_out needs \"sent\"".into()),
                        Some(s) if s > length => return Err(format!("sent {s} is more than length {length}")),
                        _ => {}
                    }
                }
            }
            Op::ControlIn { length, data, .. }
            | Op::BulkIn { length, data, .. }
            | Op::InterruptIn { length, data, .. } => match data {
                None if ok => return Err("an ok read needs \"data\"".into()),
                Some(Hex(d)) if d.len() > *length => {
                    return Err(format!("data has {} bytes, more than the {length} asked for", d.len()))
                }
                _ => {}
            },
            Op::Open { device: None, .. } if ok => return Err("an ok open needs \"device\"".into()),
            _ => {}
        }
        Ok(())
    }

    /// Whether `call` repeats this recorded operation; `Err` carries a detail of the difference
    /// (empty when the description of both says it all).
    pub(super) fn check(&self, call: &Call<'_>) -> std::result::Result<(), String> {
        let same = match (self, call) {
            (Op::Open { path, .. }, Call::Open(p)) => path == *p,
            (Op::ClaimInterface { interface, .. }, Call::ClaimInterface(i)) => interface == i,
            (Op::ControlIn { setup, length, .. }, Call::ControlIn(s, n)) => setup == s && length == n,
            (Op::BulkIn { endpoint, length, .. }, Call::BulkIn(e, n))
            | (Op::InterruptIn { endpoint, length, .. }, Call::InterruptIn(e, n)) => endpoint == e && length == n,
            (Op::ClearHalt { endpoint, .. }, Call::ClearHalt(e)) => endpoint == e,
            (Op::Reset { .. }, Call::Reset) => true,
            (Op::ControlOut { setup, length, data, fnv1a64, .. }, Call::ControlOut(s, d)) if setup == s => {
                return check_payload(*length, data.as_ref(), *fnv1a64, d)
            }
            (Op::BulkOut { endpoint, length, data, fnv1a64, .. }, Call::BulkOut(e, d)) if endpoint == e => {
                return check_payload(*length, data.as_ref(), *fnv1a64, d)
            }
            _ => false,
        };
        if same {
            Ok(())
        } else {
            Err(String::new())
        }
    }
}

fn check_payload(length: usize, data: Option<&Hex>, fnv: Fnv, actual: &[u8]) -> std::result::Result<(), String> {
    if length != actual.len() {
        return Err(String::new());
    }
    if let Some(Hex(d)) = data {
        if let Some(i) = d.iter().zip(actual).position(|(a, b)| a != b) {
            return Err(format!(" whose data differs at byte {i} (recorded 0x{:02x}, sent 0x{:02x})", d[i], actual[i]));
        }
        return Ok(());
    }
    let got = fnv1a64(actual);
    if got != fnv.0 {
        return Err(format!(" whose data differs (fnv1a64 {got:016x}, recorded {:016x})", fnv.0));
    }
    Ok(())
}
