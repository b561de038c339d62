//! Record and replay against a small scripted device.

use super::*;
use crate::device::usb::{Speed, UsbErrorKind, APP_ID, DFU_ID};
use std::collections::VecDeque;

/// A device that answers each call with the next scripted result: reads copy its bytes,
/// writes report everything sent.
#[derive(Debug)]
struct Fake {
    info: UsbDeviceInfo,
    script: VecDeque<Result<Vec<u8>, UsbError>>,
}

impl Fake {
    fn new(id: (u16, u16), script: Vec<Result<Vec<u8>, UsbError>>) -> Fake {
        let path = UsbPath { bus: 2, ports: vec![1, 4] };
        let info = UsbDeviceInfo { vendor: id.0, product: id.1, path, address: 7, speed: Speed::Super, node: None };
        Fake { info, script: script.into() }
    }

    fn next(&mut self, endpoint: u8) -> Result<Vec<u8>, UsbError> {
        self.script.pop_front().unwrap_or(Err(UsbError::new(UsbErrorKind::Other, endpoint)))
    }

    fn read(&mut self, endpoint: u8, buf: &mut [u8]) -> Result<usize, UsbError> {
        let data = self.next(endpoint)?;
        let n = data.len().min(buf.len());
        buf[..n].copy_from_slice(&data[..n]);
        Ok(n)
    }
}

impl UsbIo for Fake {
    fn info(&self) -> &UsbDeviceInfo {
        &self.info
    }
    fn claim_interface(&mut self, _interface: u8) -> Result<(), UsbError> {
        self.next(0).map(|_| ())
    }
    fn control_in(&mut self, _setup: Setup, buf: &mut [u8], _timeout: Duration) -> Result<usize, UsbError> {
        self.read(0, buf)
    }
    fn control_out(&mut self, _setup: Setup, _data: &[u8], _timeout: Duration) -> Result<(), UsbError> {
        self.next(0).map(|_| ())
    }
    fn bulk_out(&mut self, endpoint: u8, data: &[u8], _timeout: Duration) -> Result<usize, UsbError> {
        self.next(endpoint).map(|_| data.len())
    }
    fn bulk_in(&mut self, endpoint: u8, buf: &mut [u8], _timeout: Duration) -> Result<usize, UsbError> {
        self.read(endpoint, buf)
    }
    fn interrupt_in(&mut self, endpoint: u8, buf: &mut [u8], _timeout: Duration) -> Result<usize, UsbError> {
        self.read(endpoint, buf)
    }
    fn clear_halt(&mut self, endpoint: u8) -> Result<(), UsbError> {
        self.next(endpoint).map(|_| ())
    }
    fn reset(&mut self) -> Result<(), UsbError> {
        self.next(0).map(|_| ())
    }
}

/// A writer whose bytes the test can read back.
#[derive(Clone, Default)]
struct Shared(Arc<Mutex<Vec<u8>>>);

impl Write for Shared {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        lock(&self.0).extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Shared {
    fn text(&self) -> String {
        String::from_utf8(lock(&self.0).clone()).unwrap()
    }
}

const T: Duration = Duration::from_millis(100);
const IN: Setup = Setup { request_type: 0xc0, request: 0x01, value: 0x1234, index: 0x0005 };
const OUT: Setup = Setup { request_type: 0x40, request: 0x00, value: 0x0001, index: 0x0002 };

fn big() -> Vec<u8> {
    (0..70_000u32).map(|i| (i * 7 % 251) as u8).collect()
}

fn script() -> Vec<Result<Vec<u8>, UsbError>> {
    let ok = || Ok(Vec::new());
    vec![
        ok(),
        Ok(vec![1, 2, 3, 4]),
        ok(),
        ok(),
        Err(UsbError::new(UsbErrorKind::Timeout, 0x81)),
        Ok((0..16).collect()),
        ok(),
        Ok(vec![0xaa; 32]),
        ok(),
        ok(),
    ]
}

/// A mixed session; returns every answer (results and bytes read) as text.
fn session(io: &mut dyn UsbIo) -> Vec<String> {
    let mut out = Vec::new();
    let mut buf = [0u8; 64];
    out.push(format!("{:?}", io.claim_interface(0)));
    out.push(format!("{:?} {:?}", io.control_in(IN, &mut buf[..8], T), &buf[..8]));
    out.push(format!("{:?}", io.control_out(OUT, &[9, 9], T)));
    out.push(format!("{:?}", io.bulk_out(0x01, &[5; 100], T)));
    out.push(format!("{:?}", io.bulk_in(0x81, &mut buf, T)));
    out.push(format!("{:?} {:?}", io.interrupt_in(0x83, &mut buf[..16], T), &buf[..16]));
    out.push(format!("{:?}", io.clear_halt(0x81)));
    out.push(format!("{:?} {:?}", io.bulk_in(0x81, &mut buf, T), &buf));
    out.push(format!("{:?}", io.bulk_out(0x01, &big(), T)));
    out.push(format!("{:?}", io.reset()));
    out
}

fn record() -> (Vec<String>, String) {
    let out = Shared::default();
    let mut rec = RecordingIo::new(Fake::new(APP_ID, script()), Box::new(out.clone())).unwrap();
    let answers = session(&mut rec);
    assert!(rec.finish().unwrap().script.is_empty());
    (answers, out.text())
}

fn replay(trace: &str) -> ReplayIo {
    ReplayIo::from_reader(trace.as_bytes()).unwrap()
}

#[test]
fn a_replayed_session_gets_the_recorded_answers() {
    let (answers, trace) = record();
    let lines: Vec<serde_json::Value> = trace.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 11);
    assert_eq!(lines[0]["format"], "edgetpu-usb-trace");
    assert_eq!(lines[0]["version"], 1);
    assert_eq!(lines[0]["device"]["vendor"], APP_ID.0);
    assert_eq!(lines[2]["op"], "control_in");
    assert_eq!(lines[2]["data"], "01020304");
    assert_eq!(lines[2]["length"], 8);
    assert_eq!(lines[2]["result"], "ok");
    assert!(lines[2]["t_us"].is_u64());
    assert_eq!(lines[4]["data"].as_str().unwrap().len(), 200);
    assert_eq!(lines[5]["result"], serde_json::json!({"error": "Timeout", "endpoint": 0x81}));
    assert_eq!(lines[9]["op"], "bulk_out");
    assert_eq!(lines[9]["length"], 70_000);
    assert!(lines[9].get("data").is_none(), "a payload over the limit keeps only its checksum");
    assert_eq!(lines[9]["fnv1a64"], format!("{:016x}", fnv1a64(&big())));

    let mut io = replay(&trace);
    assert_eq!(io.info().product, APP_ID.1);
    assert_eq!(session(&mut io), answers);
    assert_eq!(answers[4], format!("{:?}", Err::<usize, _>(UsbError::new(UsbErrorKind::Timeout, 0x81))));
    assert_eq!(io.done(), Ok(()));
    assert_eq!(io.mismatch(), None);
}

#[test]
fn fnv1a64_matches_the_reference_values() {
    assert_eq!(fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
    assert_eq!(fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    assert_eq!(fnv1a64(b"foobar"), 0x8594_4171_f739_67e8);
}

#[test]
fn a_different_setup_is_a_mismatch_naming_the_line() {
    let (_, trace) = record();
    let mut io = replay(&trace);
    io.claim_interface(0).unwrap();
    let other = Setup { value: 0x1235, ..IN };
    let err = io.control_in(other, &mut [0; 8], T).unwrap_err();
    assert_eq!(err.kind, UsbErrorKind::ReplayMismatch);
    let m = io.mismatch().unwrap().to_string();
    assert!(m.contains("line 3") && m.contains("value 0x1234") && m.contains("value 0x1235"), "{m}");
    // Once out of step, everything fails, and done() reports the first mismatch.
    assert_eq!(io.control_in(IN, &mut [0; 8], T).unwrap_err().kind, UsbErrorKind::ReplayMismatch);
    assert_eq!(io.done(), Err(m));
}

#[test]
fn different_bulk_out_data_is_a_mismatch() {
    let (_, trace) = record();
    let mut io = replay(&trace);
    io.claim_interface(0).unwrap();
    io.control_in(IN, &mut [0; 8], T).unwrap();
    io.control_out(OUT, &[9, 9], T).unwrap();
    let mut data = [5u8; 100];
    data[17] = 6;
    let err = io.bulk_out(0x01, &data, T).unwrap_err();
    assert_eq!(err, UsbError::new(UsbErrorKind::ReplayMismatch, 0x01));
    let m = io.mismatch().unwrap();
    assert!(m.contains("line 5") && m.contains("differs at byte 17 (recorded 0x05, sent 0x06)"), "{m}");

    // A shorter transfer differs by its length.
    let mut io2 = replay(&trace);
    io2.claim_interface(0).unwrap();
    io2.control_in(IN, &mut [0; 8], T).unwrap();
    io2.control_out(OUT, &[9, 9], T).unwrap();
    io2.bulk_out(0x01, &[5; 99], T).unwrap_err();
    let m = io2.mismatch().unwrap();
    assert!(m.contains("expected bulk_out on endpoint 0x01 of 100 bytes, got bulk_out on endpoint 0x01 of 99"), "{m}");
}

#[test]
fn a_big_payload_is_checked_by_its_checksum() {
    let (_, trace) = record();
    let mut io = replay(&trace);
    let mut buf = [0u8; 64];
    io.claim_interface(0).unwrap();
    io.control_in(IN, &mut buf[..8], T).unwrap();
    io.control_out(OUT, &[9, 9], T).unwrap();
    io.bulk_out(0x01, &[5; 100], T).unwrap();
    io.bulk_in(0x81, &mut buf, T).unwrap_err();
    io.interrupt_in(0x83, &mut buf[..16], T).unwrap();
    io.clear_halt(0x81).unwrap();
    io.bulk_in(0x81, &mut buf, T).unwrap();
    let mut other = big();
    other[69_999] ^= 1;
    io.bulk_out(0x01, &other, T).unwrap_err();
    let m = io.mismatch().unwrap();
    assert!(m.contains("line 10") && m.contains("fnv1a64"), "{m}");
}

#[test]
fn the_data_limit_is_configurable() {
    let out = Shared::default();
    let fake = Fake::new(APP_ID, vec![Ok(Vec::new()), Ok(Vec::new())]);
    let mut rec = RecordingIo::new(fake, Box::new(out.clone())).unwrap().with_data_limit(16);
    rec.bulk_out(0x01, &[1; 16], T).unwrap();
    rec.bulk_out(0x01, &[1; 17], T).unwrap();
    rec.finish().unwrap();
    let text = out.text();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines[1]["data"].as_str().unwrap().len(), 32);
    assert!(lines[2].get("data").is_none());
    let mut io = replay(&text);
    io.bulk_out(0x01, &[1; 16], T).unwrap();
    assert_eq!(io.bulk_out(0x01, &[1; 17], T), Ok(17));
    assert_eq!(io.done(), Ok(()));
}

#[test]
fn an_extra_call_is_a_mismatch() {
    let (answers, trace) = record();
    let mut io = replay(&trace);
    assert_eq!(session(&mut io), answers);
    assert_eq!(io.reset().unwrap_err().kind, UsbErrorKind::ReplayMismatch);
    let m = io.mismatch().unwrap();
    assert!(m.contains("ends at line 11") && m.contains("went on with reset"), "{m}");
    assert!(io.done().is_err());
}

#[test]
fn done_fails_while_operations_remain() {
    let (_, trace) = record();
    let mut io = replay(&trace);
    io.claim_interface(0).unwrap();
    io.control_in(IN, &mut [0; 8], T).unwrap();
    io.control_out(OUT, &[9, 9], T).unwrap();
    let e = io.done().unwrap_err();
    assert!(e.contains("7 recorded operation(s)") && e.contains("line 5: bulk_out on endpoint 0x01"), "{e}");
}

fn parse_error(trace: &str) -> String {
    ReplayIo::from_reader(trace.as_bytes()).unwrap_err().to_string()
}

#[test]
fn malformed_traces_name_the_line() {
    let (_, trace) = record();
    // Truncated in the middle of the fourth line.
    let cut = trace.match_indices('\n').nth(2).unwrap().0 + 20;
    let e = parse_error(&trace[..cut]);
    assert!(e.contains("line 4") && e.contains("malformed"), "{e}");
    let garbled = trace.replacen("\"data\":\"01020304\"", "\"data\":\"01zz0304\"", 1);
    let e = parse_error(&garbled);
    assert!(e.contains("line 3") && e.contains("bad digit at position 2"), "{e}");
    let e = parse_error(&trace.replacen("\"op\":\"reset\"", "\"op\":\"rest\"", 1));
    assert!(e.contains("line 11") && e.contains("rest"), "{e}");
    let e = parse_error(&trace.replacen("\"data\":\"01020304\"", "\"data\":\"0102030405060708090a\"", 1));
    assert!(e.contains("line 3") && e.contains("more than the 8 asked for"), "{e}");
    let e = parse_error(&trace.replacen("\"length\":100,", "\"length\":101,", 1));
    assert!(e.contains("line 5") && e.contains("inconsistent"), "{e}");
    assert!(parse_error("").contains("line 1: the trace is empty"));
    assert!(parse_error("{\"op\":\"reset\",\"result\":\"ok\"}\n").contains("line 1: not an edgetpu-usb-trace header"));
    let e = parse_error("{\"format\":\"edgetpu-usb-trace\",\"version\":2,\"device\":null}\n");
    assert!(e.contains("version 2 is not supported"), "{e}");
    let e = parse_error(&trace.replacen("\"result\":\"ok\"", "\"result\":{\"error\":\"Melted\"}", 1));
    assert!(e.contains("line 2") && e.contains("Melted"), "{e}");
    let e = ReplayIo::from_file("/nonexistent/x.trace").unwrap_err();
    assert!(e.to_string().contains("/nonexistent/x.trace"), "{e}");
}

/// A bus whose devices come from a queue: each open at the right path takes the next one.
#[derive(Debug)]
struct FakeBus(Mutex<VecDeque<Fake>>);

impl UsbBus for FakeBus {
    fn devices(&self) -> Result<Vec<UsbDeviceInfo>, UsbError> {
        Ok(lock(&self.0).front().map(|f| f.info.clone()).into_iter().collect())
    }
    fn open(&self, path: &UsbPath) -> Result<Box<dyn UsbIo>, UsbError> {
        let mut q = lock(&self.0);
        match q.front() {
            Some(f) if f.info.path == *path => Ok(Box::new(q.pop_front().unwrap())),
            _ => Err(UsbError::new(UsbErrorKind::NotFound, 0)),
        }
    }
}

/// Opens the DFU device, resets it, opens the application device; returns every answer.
fn bus_session(bus: &dyn UsbBus) -> Vec<String> {
    let mut out = Vec::new();
    let path = UsbPath { bus: 2, ports: vec![1, 4] };
    let ids = |bus: &dyn UsbBus| bus.devices().unwrap().iter().map(|d| (d.vendor, d.product)).collect::<Vec<_>>();
    out.push(format!("{:?}", ids(bus)));
    out.push(format!("{:?}", bus.open(&UsbPath { bus: 3, ports: vec![1] }).err()));
    let mut dfu = bus.open(&path).unwrap();
    out.push(format!("{:?}", dfu.control_out(OUT, &[1, 2, 3], T)));
    out.push(format!("{:?}", dfu.reset()));
    out.push(format!("{:?}", ids(bus)));
    let mut app = bus.open(&path).unwrap();
    let product = app.info().product;
    out.push(format!("{product:?} {:?}", app.claim_interface(0)));
    let mut buf = [0u8; 4];
    out.push(format!("{:?} {:?}", app.bulk_in(0x81, &mut buf, T), buf));
    out
}

#[test]
fn a_bus_session_with_a_reset_is_one_trace() {
    let out = Shared::default();
    let devices = vec![
        Fake::new(DFU_ID, vec![Ok(Vec::new()), Ok(Vec::new())]),
        Fake::new(APP_ID, vec![Ok(Vec::new()), Ok(vec![4, 3, 2, 1])]),
    ];
    let bus = RecordingBus::new(FakeBus(Mutex::new(devices.into())), Box::new(out.clone())).unwrap();
    let answers = bus_session(&bus);
    bus.finish().unwrap();
    assert!(lock(&bus.get_ref().0).is_empty());
    let trace = out.text();
    let opens = trace.lines().filter(|l| l.starts_with("{\"op\":\"open\"")).count();
    assert_eq!(opens, 3, "{trace}");
    assert!(trace.lines().next().unwrap().contains("\"device\":null"));

    let replay = ReplayBus::from_reader(trace.as_bytes()).unwrap();
    assert_eq!(bus_session(&replay), answers);
    assert!(answers[4].contains(&format!("({}, {})", APP_ID.0, APP_ID.1)), "{answers:?}");
    assert_eq!(replay.done(), Ok(()));

    // Opening another path than the recorded one is a mismatch.
    let replay = ReplayBus::from_reader(trace.as_bytes()).unwrap();
    replay.open(&UsbPath { bus: 3, ports: vec![1] }).unwrap_err();
    let e = replay.open(&UsbPath { bus: 1, ports: vec![1] }).err().unwrap();
    assert_eq!(e.kind, UsbErrorKind::ReplayMismatch);
    assert!(replay.mismatch().unwrap().contains("line 3: expected open of 2-1.4, got open of 1-1"));
    // A bus trace is not a single-device trace.
    assert!(ReplayIo::from_reader(trace.as_bytes()).unwrap_err().to_string().contains("ReplayBus"));
}

#[test]
fn a_single_device_trace_replays_on_a_bus() {
    let (answers, trace) = record();
    let bus = ReplayBus::from_reader(trace.as_bytes()).unwrap();
    assert!(bus.done().unwrap_err().contains("never opened"));
    assert_eq!(bus.devices().unwrap().len(), 1);
    let mut io = bus.open(&UsbPath { bus: 2, ports: vec![1, 4] }).unwrap();
    assert_eq!(session(&mut *io), answers);
    assert_eq!(bus.done(), Ok(()));
}

#[test]
fn a_failing_writer_is_reported_by_finish() {
    /// Takes one write (the header), then fails.
    struct Broken(bool);
    impl Write for Broken {
        fn write(&mut self, b: &[u8]) -> io::Result<usize> {
            if std::mem::replace(&mut self.0, true) {
                return Err(io::Error::other("disk full"));
            }
            Ok(b.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }
    let mut rec = RecordingIo::new(Fake::new(APP_ID, vec![Ok(vec![7])]), Box::new(Broken(false))).unwrap();
    // The session still sees the device's answers.
    let mut buf = [0u8; 4];
    assert_eq!(rec.bulk_in(0x81, &mut buf, T), Ok(1));
    assert_eq!(rec.finish().unwrap_err().to_string(), "disk full");
    assert!(RecordingIo::new(Fake::new(APP_ID, Vec::new()), Box::new(Broken(true))).is_err());
}
