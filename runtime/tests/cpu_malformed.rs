//! Hostile model files through the CPU interpreter: seeded mutations of small real models (shapes,
//! operator options, quantization, constant shapes/axes/paddings, any byte of the flatbuffer
//! tables) must load, plan and run or fail with an error, never panic, hang or allocate absurd
//! memory.
//!
//! `EDGETPU_MUTATIONS=N` sets the mutants per model (default 200) for a longer local hunt;
//! `EDGETPU_SEED=N` starts another series of seeds; `EDGETPU_MUTANT=<model>:<seed>` replays one
//! mutant and prints what it did; `EDGETPU_MODEL=<part of a name>` keeps only matching models.

mod common;
#[path = "cpu_malformed/mutations.rs"]
mod mutations;

use edgetpu::cpu::{Interpreter, Options};
use edgetpu::Model;
use mutations::{field, find_vectors, follow, mutate, put, set_opcode, targets, Rng, Targets};
use mutations::{BUILTINS, FLOATS, INTERESTING};
use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Activation memory a mutant may ask for: at least twice what any original needs (the largest,
/// the SSD tail, about 1 MB), small enough that no mutant can make a test allocate or compute for
/// long.
const MAX_ARENA: usize = 4 << 20;

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
    // Some mutants run the reference kernels (the default is the fast ones): a quarter of those
    // of small models, fewer of MobileNet, whose reference convolutions are slow.
    let reference = rng.below(if bytes.len() < 1 << 16 { 4 } else { 32 }) == 0;
    *stage = Stage::Load;
    let model = Arc::new(Model::from_bytes(bytes)?);
    *stage = Stage::Plan;
    let options = Options { threads: 1, max_arena_bytes: MAX_ARENA, reference, ..Options::default() };
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

/// Installs (once) the panic hook that records panics of mutants instead of printing them.
fn quiet_panics() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(install_hook);
}

fn install_hook() {
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
    if std::env::var_os("EDGETPU_MUTANT").is_some() {
        println!("{name}:{seed}: {}", what.join("; "));
    }
    try_bytes(bytes, &mut rng).map_err(|e| format!("{name}:{seed} ({}) {e}", what.join("; ")))
}

/// The seed of mutant `i` of model `name`; `EDGETPU_SEED=N` starts another series.
fn seed_of(name: &str, i: usize) -> u64 {
    let series: u64 = std::env::var("EDGETPU_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0);
    let h = name.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3));
    h ^ (i as u64) << 32 ^ series.wrapping_mul(0x9e37_79b9_7f4a_7c15)
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
    let per_model: usize = std::env::var("EDGETPU_MUTATIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
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
        match it {
            Err(e) => println!("{name}: the original does not plan: {e}"),
            Ok(it) => {
                assert!(it.arena_bytes() <= MAX_ARENA / 2, "{name} needs {} bytes: raise MAX_ARENA", it.arena_bytes())
            }
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

/// Every shape dimension, integer constant element, builtin option field and quantization scale /
/// zero point of every model, set in turn to each edge value: at most `EDGETPU_EDGE_EDITS`
/// (default 120) edits per model, spread evenly over all of them.
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
        for &(at, size) in &t.options {
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
        // Operator code swaps: every kernel on every model's operators (not subsampled).
        for (k, &f) in t.opcodes.iter().enumerate() {
            for &code in BUILTINS {
                let mut mutated = bytes.clone();
                if set_opcode(&mut mutated, f, code) {
                    runs += 1;
                    match try_bytes(mutated, &mut Rng::new(seed_of(name, k))) {
                        Ok(stage) => stages[stage as usize] += 1,
                        Err(e) => panics.push(format!("{name}: operator code {k} = {code}: {e}")),
                    }
                }
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
    let whole = 0..bytes.len();
    let at = find_vectors(bytes, std::slice::from_ref(&whole), &items, t.shape.len())[0];
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

#[test]
fn one_variable_tensor_twice_as_lstm_state_is_an_error() {
    quiet_panics();
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/lstm/basic.tflite");
    let mut bytes = std::fs::read(path).unwrap();
    let model = Model::from_bytes(bytes.clone()).unwrap();
    let op = &model.subgraphs()[0].operators[0];
    assert_eq!(model.op_name(op), "UNIDIRECTIONAL_SEQUENCE_LSTM");
    // Inputs 18 and 19 are the output and cell states: make both the output state.
    let inputs = follow(&bytes, field(&bytes, op.file_offset, 1).unwrap()).unwrap();
    let output_state = op.inputs[18].unwrap() as i32;
    put(&mut bytes, inputs + 4 + 4 * 19, &output_state.to_le_bytes());
    let model = Arc::new(Model::from_bytes(bytes).unwrap());
    assert_eq!(model.subgraphs()[0].operators[0].inputs[19], op.inputs[18]);
    CAUGHT.with(|c| *c.borrow_mut() = Some(String::new()));
    let r = catch_unwind(AssertUnwindSafe(|| Interpreter::new(model, &Options { threads: 1, ..Options::default() })));
    let caught = CAUGHT.with(|c| c.borrow_mut().take()).unwrap_or_default();
    let err = r.unwrap_or_else(|_| panic!("panicked: {caught}")).expect_err("the state tensor repeats");
    assert!(err.to_string().contains("repeats"), "{err}");
}

#[test]
fn arena_over_the_limit_is_refused_at_build_naming_the_largest_tensor() {
    let path = common::testdata().join("mobilenet_v1_0.25_128_quant.tflite");
    let model = Arc::new(Model::open(&path).unwrap());
    let it = Interpreter::new(model.clone(), &Options { threads: 1, ..Options::default() }).unwrap();
    let sg = &model.subgraphs()[0];
    let largest = it
        .plan()
        .tensors()
        .iter()
        .filter(|t| model.tensor_data(&sg.tensors[t.index]).is_none())
        .max_by_key(|t| t.byte_len())
        .unwrap()
        .clone();
    // Every tensor fits under the limit on its own; the arena as a whole does not.
    let limit = largest.byte_len();
    assert!(it.arena_bytes() > limit, "arena {} bytes, largest tensor {limit}", it.arena_bytes());
    drop(it);
    let err = Interpreter::new(model.clone(), &Options { threads: 1, max_arena_bytes: limit, ..Options::default() })
        .unwrap_err();
    let msg = err.to_string();
    assert_eq!(err.kind(), edgetpu::ErrorKind::Unsupported, "{msg}");
    assert!(msg.contains(&format!("the largest is tensor {} ({:?}", largest.index, largest.name)), "{msg}");
    assert!(msg.contains(&format!("more than the limit of {limit} (Options::max_arena_bytes)")), "{msg}");
    assert!(msg.contains("mobilenet_v1_0.25_128_quant.tflite"), "{msg}");
    // The builder of the public API takes the same path.
    let Err(err) = edgetpu::Interpreter::builder(model)
        .device(edgetpu::DeviceSpec::cpu())
        .threads(1)
        .max_arena_bytes(limit)
        .build()
    else {
        panic!("an arena over the limit was built");
    };
    assert!(err.to_string().contains(&format!("the largest is tensor {}", largest.index)), "{err}");
    // One byte under a single tensor's size names that tensor in the per-tensor check.
    let model = Arc::new(Model::open(&path).unwrap());
    let err =
        Interpreter::new(model, &Options { threads: 1, max_arena_bytes: limit - 1, ..Options::default() }).unwrap_err();
    assert!(err.to_string().contains("takes") && err.to_string().contains("tensor "), "{err}");
}
