//! Hostile model files through the CPU interpreter: seeded mutations of small real models (shapes,
//! operator options, quantization, constant shapes/axes/paddings, any byte of the flatbuffer
//! tables) must load, plan and run or fail with an error, never panic, hang or allocate absurd
//! memory.
//!
//! `EDGETPU_MUTATIONS=N` sets the mutants per model (default 24) for a longer local hunt;
//! `EDGETPU_MUTANT=<model>:<seed>` replays one mutant and prints what it did.

mod common;

use edgetpu::cpu::{Interpreter, Options};
use edgetpu::Model;
use std::cell::RefCell;
use std::ops::Range;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Activation memory a mutant may ask for: enough for every test model, small enough that no
/// mutant can make a test run allocate or compute for long.
const MAX_ARENA: usize = 64 << 20;

/// Small deterministic generator (xorshift), so failures reproduce.
struct Rng(u64);
impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    fn pick<'a, T>(&mut self, v: &'a [T]) -> Option<&'a T> {
        if v.is_empty() {
            None
        } else {
            Some(&v[self.below(v.len())])
        }
    }
}

/// The models to mutate: (name, bytes).
fn models() -> Vec<(String, Vec<u8>)> {
    let shared = common::testdata();
    let mut paths: Vec<(String, PathBuf)> = [
        "tools/split_concat.tflite",
        "detection/detection_postprocess_float_regular_nms.tflite",
        "detection/detection_postprocess_uint8_fast_nms.tflite",
        "detection/detection_postprocess_uint8_regular_nms_nobg.tflite",
        "detection/ssd_mobilenet_v2_coco_postprocess_tail.tflite",
        "mobilenet_v1_0.25_128_quant.tflite",
        "keras_lstm_mnist_ptq.tflite",
    ]
    .iter()
    .map(|r| (r.to_string(), shared.join(r)))
    .collect();
    let data = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data");
    let mut local = Vec::new();
    for e in std::fs::read_dir(data.join("ops")).unwrap() {
        let p = e.unwrap().path().join("model.tflite");
        if p.is_file() {
            local.push((format!("ops/{}", p.parent().unwrap().file_name().unwrap().to_string_lossy()), p));
        }
    }
    for e in std::fs::read_dir(data.join("lstm")).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "tflite") {
            local.push((format!("lstm/{}", p.file_name().unwrap().to_string_lossy()), p));
        }
    }
    local.sort();
    assert!(local.len() >= 50, "expected the generated op and LSTM models, found {}", local.len());
    paths.extend(local);
    // EDGETPU_MODEL=<part of a name> narrows a local hunt.
    let only = std::env::var("EDGETPU_MODEL").unwrap_or_default();
    paths.retain(|(n, _)| n.contains(&only));
    paths.into_iter().map(|(n, p)| (n, std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display())))).collect()
}

/// Where in a model mutations are worth making.
struct Targets {
    /// Bytes outside large constant buffers (weights): the flatbuffer tables and small constants.
    meta: Vec<Range<usize>>,
    /// 4-byte-aligned offsets inside `meta`.
    meta_words: Vec<usize>,
    /// Offsets of shape dimensions (i32) of tensors.
    dims: Vec<usize>,
    /// Offsets of elements of small int32 / int64 constants (shapes, axes, paddings, begin/end),
    /// with the element size.
    ints: Vec<(usize, usize)>,
    /// Offsets of quantization scales (f32).
    scales: Vec<usize>,
    /// Offsets of zero points (i64).
    zero_points: Vec<usize>,
    /// Bytes around operator tables (where their options tables usually are).
    near_ops: Vec<usize>,
}

/// Offsets of `[len: u32][items]` vectors equal to `items` (4-byte aligned), inside `meta`.
fn find_vectors(bytes: &[u8], meta: &[Range<usize>], items: &[u8], count: usize) -> Vec<usize> {
    let mut pat = (count as u32).to_le_bytes().to_vec();
    pat.extend_from_slice(items);
    let mut out = Vec::new();
    for r in meta {
        let mut at = r.start.next_multiple_of(4);
        while at + pat.len() <= r.end {
            if bytes[at..at + pat.len()] == pat[..] {
                out.push(at + 4);
            }
            at += 4;
        }
    }
    out
}

fn targets(model: &Model) -> Targets {
    let bytes = model.bytes();
    let offset = |s: &[u8]| s.as_ptr() as usize - bytes.as_ptr() as usize;
    let mut big: Vec<Range<usize>> = (0..model.num_buffers())
        .filter_map(|b| model.buffer(b))
        .filter(|d| d.len() > 256)
        .map(|d| offset(d)..offset(d) + d.len())
        .collect();
    big.sort_by_key(|r| r.start);
    let mut meta = Vec::new();
    let mut at = 0;
    for r in &big {
        if r.start > at {
            meta.push(at..r.start);
        }
        at = at.max(r.end);
    }
    meta.push(at..bytes.len());
    let meta_words =
        meta.iter().flat_map(|r| (r.start.next_multiple_of(4)..r.end.saturating_sub(3)).step_by(4)).collect();
    let (mut dims, mut ints, mut scales, mut zero_points, mut near_ops) = (vec![], vec![], vec![], vec![], vec![]);
    for sg in model.subgraphs() {
        for t in &sg.tensors {
            if !t.shape.is_empty() {
                let items: Vec<u8> = t.shape.iter().flat_map(|d| d.to_le_bytes()).collect();
                for v in find_vectors(bytes, &meta, &items, t.shape.len()) {
                    dims.extend((0..t.shape.len()).map(|k| v + 4 * k));
                }
            }
            if let Some(q) = &t.quantization {
                let items: Vec<u8> = q.scale.iter().take(8).flat_map(|d| d.to_le_bytes()).collect();
                if q.scale.len() <= 8 {
                    for v in find_vectors(bytes, &meta, &items, q.scale.len()) {
                        scales.extend((0..q.scale.len()).map(|k| v + 4 * k));
                    }
                }
                let items: Vec<u8> = q.zero_point.iter().take(8).flat_map(|d| d.to_le_bytes()).collect();
                if !q.zero_point.is_empty() && q.zero_point.len() <= 8 {
                    for v in find_vectors(bytes, &meta, &items, q.zero_point.len()) {
                        zero_points.extend((0..q.zero_point.len()).map(|k| v + 8 * k));
                    }
                }
            }
            let elem = match t.dtype.name().as_str() {
                "INT32" => 4,
                "INT64" => 8,
                _ => 0,
            };
            if let Some(d) = model.tensor_data(t).filter(|d| elem > 0 && d.len() <= 256) {
                ints.extend((0..d.len() / elem).map(|k| (offset(d) + k * elem, elem)));
            }
        }
        for op in &sg.operators {
            let lo = op.file_offset.saturating_sub(96);
            near_ops.extend(lo..(op.file_offset + 96).min(bytes.len()));
        }
    }
    for v in [&mut dims, &mut scales, &mut zero_points, &mut near_ops] {
        v.sort_unstable();
        v.dedup();
    }
    ints.sort_unstable();
    ints.dedup();
    Targets { meta, meta_words, dims, ints, scales, zero_points, near_ops }
}

/// Values that break code: zero, signs, powers of two, near-overflow.
const INTERESTING: &[i64] = &[
    0,
    1,
    -1,
    2,
    3,
    -2,
    4,
    5,
    6,
    7,
    8,
    16,
    100,
    255,
    256,
    0x7FFF,
    0xFFFF,
    0x1_0000,
    1 << 20,
    1 << 24,
    1 << 30,
    0x7FFF_FFFF,
    -0x8000_0000,
    0xFFFF_FFFF,
    i64::MAX,
    i64::MIN,
];

const FLOATS: &[f32] = &[
    0.0,
    -0.0,
    -1.0,
    1.0,
    f32::NAN,
    f32::INFINITY,
    f32::NEG_INFINITY,
    f32::MIN_POSITIVE,
    1e-30,
    1e-10,
    1e10,
    1e30,
    f32::MAX,
    f32::MIN,
    1.5e-45,
];

fn put(bytes: &mut [u8], at: usize, v: &[u8]) {
    let end = (at + v.len()).min(bytes.len());
    bytes[at..end].copy_from_slice(&v[..end - at]);
}

/// Applies one random mutation; returns what it did.
fn mutate(bytes: &mut [u8], t: &Targets, rng: &mut Rng) -> String {
    let int = |rng: &mut Rng| {
        if rng.below(4) == 0 {
            rng.next() as i64 >> rng.below(60)
        } else {
            INTERESTING[rng.below(INTERESTING.len())]
        }
    };
    loop {
        match rng.below(12) {
            0..=2 => {
                if let Some(&at) = rng.pick(&t.dims) {
                    let v = int(rng) as i32;
                    put(bytes, at, &v.to_le_bytes());
                    return format!("dim at {at} = {v}");
                }
            }
            3..=5 => {
                if let Some(&(at, size)) = rng.pick(&t.ints) {
                    let v = int(rng);
                    put(bytes, at, &v.to_le_bytes()[..size]);
                    return format!("constant int{} at {at} = {v}", size * 8);
                }
            }
            6 => {
                if let Some(&at) = rng.pick(&t.scales) {
                    let v = FLOATS[rng.below(FLOATS.len())];
                    put(bytes, at, &v.to_le_bytes());
                    return format!("scale at {at} = {v}");
                }
                if let Some(&at) = rng.pick(&t.zero_points) {
                    let v = int(rng);
                    put(bytes, at, &v.to_le_bytes());
                    return format!("zero point at {at} = {v}");
                }
            }
            7 | 8 => {
                if let Some(&at) = rng.pick(&t.near_ops) {
                    if rng.below(2) == 0 {
                        let v = int(rng) as i32;
                        put(bytes, at & !3, &v.to_le_bytes());
                        return format!("word near an operator at {} = {v}", at & !3);
                    }
                    let v = rng.next() as u8;
                    bytes[at] = v;
                    return format!("byte near an operator at {at} = {v}");
                }
            }
            9 => {
                if let Some(&at) = rng.pick(&t.meta_words) {
                    let v = int(rng) as i32;
                    put(bytes, at, &v.to_le_bytes());
                    return format!("word at {at} = {v}");
                }
            }
            _ => {
                let r = &t.meta[rng.below(t.meta.len())];
                if r.is_empty() {
                    continue;
                }
                let at = r.start + rng.below(r.len());
                if rng.below(2) == 0 {
                    let bit = rng.below(8);
                    bytes[at] ^= 1 << bit;
                    return format!("bit {bit} of byte {at} flipped");
                }
                let v = rng.next() as u8;
                bytes[at] = v;
                return format!("byte {at} = {v}");
            }
        }
    }
}

/// How far a mutant got.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Load,
    Plan,
    Invoke,
    Ran,
}

/// Loads, plans and runs one mutant, inputs filled from `rng`.
fn run(bytes: Vec<u8>, rng: &mut Rng, stage: &mut Stage) -> edgetpu::Result<()> {
    *stage = Stage::Load;
    let model = Arc::new(Model::from_bytes(bytes)?);
    *stage = Stage::Plan;
    let options = Options { threads: 1, max_arena_bytes: MAX_ARENA, ..Options::default() };
    let mut it = Interpreter::new(model, &options)?;
    *stage = Stage::Invoke;
    for i in 0..it.inputs().len() {
        if let Ok(input) = it.input_mut(i) {
            match rng.below(4) {
                0 => input.fill(0),
                1 => input.fill(rng.next() as u8),
                _ => input.iter_mut().for_each(|b| *b = rng.next() as u8),
            }
        }
    }
    it.invoke()?;
    // A second run: state (LSTM) carries over.
    it.invoke()?;
    for j in 0..it.outputs().len() {
        let _ = it.output(j)?;
    }
    *stage = Stage::Ran;
    Ok(())
}

thread_local! {
    /// Set while a mutant runs: the panic hook records the message here instead of printing it.
    static CAUGHT: RefCell<Option<String>> = const { RefCell::new(None) };
}

fn quiet_panics() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let captured = CAUGHT.with(|c| {
            let mut c = c.borrow_mut();
            match c.as_mut() {
                Some(s) => {
                    let msg = info
                        .payload()
                        .downcast_ref::<&str>()
                        .map(|s| s.to_string())
                        .or_else(|| info.payload().downcast_ref::<String>().cloned())
                        .unwrap_or_default();
                    let mut at = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
                    // Name the runtime's frames that led there.
                    let trace = std::backtrace::Backtrace::force_capture().to_string();
                    let mut lines = trace.lines().map(str::trim);
                    let mut frames = 0;
                    while let Some(l) = lines.next() {
                        if l.contains("edgetpu::") && !l.contains("cpu_malformed") && frames < 4 {
                            let place = lines.next().unwrap_or_default().trim_start_matches("at ./");
                            at = format!("{at} < {place}");
                            frames += 1;
                        }
                    }
                    *s = format!("{msg} at {at}");
                    true
                }
                None => false,
            }
        });
        if !captured {
            default(info);
        }
    }));
}

/// Runs `bytes` under `catch_unwind`: `Err(panic message and place)` when it panicked.
fn try_bytes(bytes: Vec<u8>, rng: &mut Rng) -> Result<Stage, String> {
    let mut stage = Stage::Load;
    CAUGHT.with(|c| *c.borrow_mut() = Some(String::new()));
    let result = catch_unwind(AssertUnwindSafe(|| run(bytes, rng, &mut stage)));
    let caught = CAUGHT.with(|c| c.borrow_mut().take()).unwrap_or_default();
    match result {
        Ok(Ok(())) => Ok(stage),
        Ok(Err(e)) => {
            if std::env::var_os("EDGETPU_MUTANT").is_some() {
                println!("{stage:?}: {e}");
            }
            Ok(stage)
        }
        Err(_) => Err(format!("panicked at stage {stage:?}: {caught}")),
    }
}

/// Runs one random mutant. Returns `Err(report)` when it panicked.
fn mutant(name: &str, original: &[u8], targets: &Targets, seed: u64) -> Result<Stage, String> {
    let mut rng = Rng::new(seed);
    let mut bytes = original.to_vec();
    let what: Vec<String> = (0..1 + rng.below(3)).map(|_| mutate(&mut bytes, targets, &mut rng)).collect();
    try_bytes(bytes, &mut rng).map_err(|e| format!("{name}:{seed} ({}) {e}", what.join("; ")))
}

fn seed_of(name: &str, i: usize) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3)) ^ (i as u64) << 32
}

#[test]
fn mutated_models_never_panic_in_the_cpu_interpreter() {
    quiet_panics();
    let models = models();
    if let Ok(one) = std::env::var("EDGETPU_MUTANT") {
        let (name, seed) = one.rsplit_once(':').expect("EDGETPU_MUTANT=<model>:<seed>");
        let (_, bytes) = models.iter().find(|(n, _)| n == name).unwrap_or_else(|| panic!("no model {name}"));
        let model = Model::from_bytes(bytes.clone()).unwrap();
        let r = mutant(name, bytes, &targets(&model), seed.parse().unwrap());
        assert!(r.is_ok(), "{}", r.unwrap_err());
        return;
    }
    let per_model: usize = std::env::var("EDGETPU_MUTATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(24);
    let start = Instant::now();
    let mut panics = Vec::new();
    let mut slow = Vec::new();
    let mut stages = [0usize; 4];
    for (name, bytes) in &models {
        // The originals load and plan (a kernel still being written may fail to run).
        let model = Model::from_bytes(bytes.clone()).unwrap_or_else(|e| panic!("{name}: {e}"));
        let t = targets(&model);
        assert!(!t.dims.is_empty(), "{name}: no shape vectors found");
        let it = Interpreter::new(
            Arc::new(model),
            &Options { threads: 1, max_arena_bytes: MAX_ARENA, ..Options::default() },
        );
        if let Err(e) = it {
            println!("{name}: the original does not plan: {e}");
        }
        for i in 0..per_model {
            let seed = seed_of(name, i);
            let t0 = Instant::now();
            match mutant(name, bytes, &t, seed) {
                Ok(stage) => stages[stage as usize] += 1,
                Err(report) => panics.push(report),
            }
            if t0.elapsed() > Duration::from_secs(2) {
                slow.push(format!("{name}:{seed} took {:?}", t0.elapsed()));
            }
        }
    }
    let runs = models.len() * per_model;
    println!(
        "{runs} mutants of {} models in {:?}: {} rejected at load, {} at plan, {} failed to run, {} ran; {} panicked",
        models.len(),
        start.elapsed(),
        stages[0],
        stages[1],
        stages[2],
        stages[3],
        panics.len()
    );
    assert!(panics.is_empty(), "{} of {runs} mutants panicked:\n{}", panics.len(), panics.join("\n"));
    assert!(slow.is_empty(), "slow mutants (replay with EDGETPU_MUTANT):\n{}", slow.join("\n"));
    // The mutations must reach the interpreter, not just the loader.
    assert!(stages[1] + stages[2] + stages[3] > runs / 4, "too few mutants got past the loader: {stages:?}");
    assert!(stages[3] > runs / 10, "too few mutants ran: {stages:?}");
}

/// Every shape dimension, small integer constant element and quantization scale / zero point of
/// every model, set in turn to each edge value (at most `EDGETPU_EDGE_EDITS`, default 120, per
/// model, spread evenly over its edits).
#[test]
fn edge_values_never_panic_in_the_cpu_interpreter() {
    quiet_panics();
    let most: usize = std::env::var("EDGETPU_EDGE_EDITS").ok().and_then(|v| v.parse().ok()).unwrap_or(120);
    let start = Instant::now();
    let mut panics = Vec::new();
    let mut stages = [0usize; 4];
    let mut slow = Vec::new();
    let mut runs = 0;
    for (name, bytes) in &models() {
        let model = Model::from_bytes(bytes.clone()).unwrap();
        let t = targets(&model);
        let mut edits: Vec<(usize, Vec<u8>)> = Vec::new();
        for &at in &t.dims {
            for v in [0i32, 1, 2, 3, 7, 255, 1 << 20, 0x7FFF_FFFF] {
                edits.push((at, v.to_le_bytes().to_vec()));
            }
        }
        for &(at, size) in &t.ints {
            for &v in INTERESTING {
                edits.push((at, v.to_le_bytes()[..size].to_vec()));
            }
        }
        for &at in &t.scales {
            for &v in FLOATS {
                edits.push((at, v.to_le_bytes().to_vec()));
            }
        }
        for &at in &t.zero_points {
            for v in [-129i64, -128, 127, 128, 255, 256] {
                edits.push((at, v.to_le_bytes().to_vec()));
            }
        }
        let step = edits.len().div_ceil(most).max(1);
        for (k, (at, v)) in edits.iter().enumerate().filter(|(k, _)| k % step == 0) {
            let mut mutated = bytes.clone();
            put(&mut mutated, *at, v);
            let mut rng = Rng::new(seed_of(name, k));
            runs += 1;
            let t0 = Instant::now();
            match try_bytes(mutated, &mut rng) {
                Ok(stage) => stages[stage as usize] += 1,
                Err(e) => panics.push(format!("{name}: bytes {at}.. = {v:?}: {e}")),
            }
            if t0.elapsed() > Duration::from_secs(2) {
                slow.push(format!("{name}: bytes {at}.. = {v:?} took {:?}", t0.elapsed()));
            }
        }
    }
    println!(
        "{runs} edits in {:?}: {} rejected at load, {} at plan, {} failed to run, {} ran; {} panicked",
        start.elapsed(),
        stages[0],
        stages[1],
        stages[2],
        stages[3],
        panics.len()
    );
    assert!(panics.is_empty(), "{} of {runs} edits panicked:\n{}", panics.len(), panics.join("\n"));
    assert!(slow.is_empty(), "slow edits:\n{}", slow.join("\n"));
}

/// Patches the first shape vector of the input tensor of `rel` (a shared model) to `dims`.
fn with_input_shape(bytes: &[u8], dims: &[i32]) -> Vec<u8> {
    let model = Model::from_bytes(bytes.to_vec()).unwrap();
    let sg = &model.subgraphs()[0];
    let t = &sg.tensors[sg.inputs[0]];
    assert_eq!(t.shape.len(), dims.len());
    let items: Vec<u8> = t.shape.iter().flat_map(|d| d.to_le_bytes()).collect();
    let at = find_vectors(bytes, &[0..bytes.len()], &items, t.shape.len())[0];
    let mut out = bytes.to_vec();
    for (k, d) in dims.iter().enumerate() {
        put(&mut out, at + 4 * k, &d.to_le_bytes());
    }
    out
}

#[test]
fn huge_tensors_are_rejected_at_plan_time() {
    quiet_panics();
    let bytes = std::fs::read(common::testdata().join("mobilenet_v1_0.25_128_quant.tflite")).unwrap();
    // 2^40 elements: representable, but no arena for it.
    let cases: &[(&[i32], &str)] = &[
        (&[1 << 10, 1 << 10, 1 << 10, 1 << 10], "bytes of activations"),
        // The product overflows 64 bits.
        (&[0x7FFF_FFFF, 0x7FFF_FFFF, 0x7FFF_FFFF, 0x7FFF_FFFF], "overflow"),
    ];
    for (dims, want) in cases {
        let model = Arc::new(Model::from_bytes(with_input_shape(&bytes, dims)).unwrap());
        CAUGHT.with(|c| *c.borrow_mut() = Some(String::new()));
        let r =
            catch_unwind(AssertUnwindSafe(|| Interpreter::new(model, &Options { threads: 1, ..Options::default() })));
        let caught = CAUGHT.with(|c| c.borrow_mut().take()).unwrap_or_default();
        let err =
            r.unwrap_or_else(|_| panic!("{dims:?}: panicked: {caught}")).expect_err("a huge tensor must not plan");
        assert!(err.to_string().contains(want), "{dims:?}: {err}");
    }
    // A limit below what the model needs is an error that says how much it needs.
    let model = Arc::new(Model::from_bytes(bytes).unwrap());
    let err =
        Interpreter::new(model, &Options { threads: 1, max_arena_bytes: 1000, ..Options::default() }).unwrap_err();
    assert!(err.to_string().contains("bytes of activations"), "{err}");
}
