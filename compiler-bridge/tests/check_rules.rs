//! The checker's rules on small models built here, on the one-operator models of the runtime's
//! tests, and against the real compiler logs whose CPU models are not available.

#[path = "check_support/data.rs"]
mod data;
#[path = "check_support/tiny.rs"]
mod tiny;

use data::testdata;
use edgetpu::Model;
use edgetpu_compiler::check::{check, Category, CheckOptions, CheckReport, NOT_CHECKED, SUPPORTED_OPERATIONS};
use std::collections::BTreeMap;
use std::path::PathBuf;
use tiny::{op, opts, Field, Options, Tiny, F32, I16, I32, I8, U8};

fn run(t: &Tiny, multiple_subgraphs: bool) -> CheckReport {
    let model = Model::from_bytes(t.build()).expect("the test model loads");
    check(&model, &CheckOptions { multiple_subgraphs })
}

fn categories(r: &CheckReport) -> Vec<Category> {
    r.operators.iter().map(|v| v.category).collect()
}

/// A 1x1 convolution from `x` (`[1, 8, 8, c_in]`) to a new `[1, 8, 8, c_out]` tensor.
fn conv(t: &mut Tiny, x: usize, c_in: i32, c_out: i32, dtype: i8, dilation: (i32, i32)) -> usize {
    let w = t.constant("w", &[c_out, 1, 1, c_in], dtype, vec![1; (c_out * c_in) as usize]);
    let b = t.constant("b", &[c_out], I32, vec![0; 4 * c_out as usize]);
    let y = t.tensor("conv", &[1, 8, 8, c_out], dtype);
    let opts = Options::new(
        opts::CONV_2D,
        &[Field::I32(1, 1), Field::I32(2, 1), Field::I32(4, dilation.0), Field::I32(5, dilation.1)],
    );
    t.op(op::CONV_2D, &[Some(x), Some(w), Some(b)], &[y], opts);
    y
}

fn unary(t: &mut Tiny, code: i32, x: usize, shape: &[i32], dtype: i8) -> usize {
    let y = t.tensor("y", shape, dtype);
    t.op(code, &[Some(x)], &[y], Options::default());
    y
}

#[test]
fn cut_after_a_cpu_operator_follows_data_flow() {
    // conv -> HARD_SWISH (not supported) -> ADD(hard_swish, conv); conv -> MAX_POOL (independent).
    let mut t = Tiny::new();
    let x = t.input("x", &[1, 8, 8, 3], I8);
    let c = conv(&mut t, x, 3, 4, I8, (1, 1));
    let h = unary(&mut t, op::HARD_SWISH, c, &[1, 8, 8, 4], I8);
    let a = t.tensor("add", &[1, 8, 8, 4], I8);
    t.op(op::ADD, &[Some(h), Some(c)], &[a], Options::default());
    let p = t.tensor("pool", &[1, 4, 4, 4], I8);
    t.op(op::MAX_POOL_2D, &[Some(c)], &[p], Options::new(opts::POOL_2D, &[Field::I32(3, 2), Field::I32(4, 2)]));
    t.output(a);
    t.output(p);

    let r = run(&t, false);
    use Category::*;
    assert_eq!(categories(&r), [Mapped, UnsupportedOperation, MoreThanOneSubgraph, Mapped]);
    assert!(r.operators[2].reason.contains("operator 1 (HARD_SWISH)"), "{}", r.operators[2].reason);
    assert!(r.operators[1].reason.starts_with("Operation not supported: builtin operator HARD_SWISH"));
    assert_eq!((r.tpu_ops, r.cpu_ops, r.tpu_subgraphs), (2, 2, 1));
    // Parameters: the conv's 12 weight bytes and 16 bias bytes (MAX_POOL has none).
    assert_eq!(r.estimated_parameter_bytes, 28);
    assert!(r.fits_on_chip);

    let r = run(&t, true);
    assert_eq!(categories(&r), [Mapped, UnsupportedOperation, Mapped, Mapped]);
    assert_eq!(r.tpu_subgraphs, 2, "the ADD needs a second subgraph after the CPU's HARD_SWISH");
}

#[test]
fn leading_cpu_operators_do_not_cut() {
    // float input -> QUANTIZE (stays on the CPU) -> conv -> DEQUANTIZE.
    let mut t = Tiny::new();
    let x = t.input("x", &[1, 8, 8, 3], F32);
    let q = unary(&mut t, op::QUANTIZE, x, &[1, 8, 8, 3], I8);
    let c = conv(&mut t, q, 3, 4, I8, (1, 1));
    let d = unary(&mut t, op::DEQUANTIZE, c, &[1, 8, 8, 4], F32);
    t.output(d);
    let r = run(&t, false);
    assert_eq!(categories(&r), [Category::Limitation, Category::Mapped, Category::UnsupportedDataType]);
    assert!(r.operators[0].reason.contains("QUANTIZE from a float tensor"), "{}", r.operators[0].reason);
    assert!(r.operators[2].reason.contains("float32"), "{}", r.operators[2].reason);
}

#[test]
fn model_requirements() {
    // Rank: only the 3 innermost dimensions may exceed 1.
    for (shape, want) in [(&[2, 4, 4, 3][..], Category::UnsupportedRank), (&[1, 1, 4, 4, 3][..], Category::Mapped)] {
        let mut t = Tiny::new();
        let x = t.input("x", shape, U8);
        let y = unary(&mut t, op::LOGISTIC, x, shape, U8);
        t.output(y);
        assert_eq!(categories(&run(&t, false)), [want], "{shape:?}");
    }
    // Static shapes: a dynamic non-batch dimension.
    let mut t = Tiny::new();
    let x = t.input("x", &[1, 8, 3], U8);
    t.signature(x, &[1, -1, 3]);
    let y = unary(&mut t, op::LOGISTIC, x, &[1, 8, 3], U8);
    t.output(y);
    assert_eq!(categories(&run(&t, false)), [Category::DynamicShape]);
    // Data types: int32 activations.
    let mut t = Tiny::new();
    let x = t.input("x", &[1, 8, 3], I32);
    let y = unary(&mut t, op::LOGISTIC, x, &[1, 8, 3], I32);
    t.output(y);
    assert_eq!(categories(&run(&t, false)), [Category::UnsupportedDataType]);
}

#[test]
fn per_operator_limits() {
    use Category::*;
    let limited = |t: &Tiny, what: &str| {
        let r = run(t, false);
        assert_eq!(r.operators.last().unwrap().category, Limitation, "{what}: {:?}", r.operators.last());
        r.operators.last().unwrap().reason.clone()
    };
    // Different dilations.
    let mut t = Tiny::new();
    let x = t.input("x", &[1, 8, 8, 3], U8);
    conv(&mut t, x, 3, 4, U8, (1, 2));
    assert!(limited(&t, "dilation").contains("dilations"));
    // Equal dilations map.
    let mut t = Tiny::new();
    let x = t.input("x", &[1, 8, 8, 3], U8);
    conv(&mut t, x, 3, 4, U8, (2, 2));
    assert_eq!(categories(&run(&t, false)), [Mapped]);
    // STRIDED_SLICE with a stride of 2.
    let mut t = Tiny::new();
    let x = t.input("x", &[1, 8, 8, 3], U8);
    let (b, e, s) = (t.ints("begin", &[0, 0, 0, 0]), t.ints("end", &[1, 8, 8, 3]), t.ints("strides", &[1, 2, 1, 1]));
    let y = t.tensor("y", &[1, 4, 8, 3], U8);
    t.op(op::STRIDED_SLICE, &[Some(x), Some(b), Some(e), Some(s)], &[y], Options::new(opts::STRIDED_SLICE, &[]));
    assert!(limited(&t, "strided slice").contains("strides"));
    // PAD in the batch dimension.
    let mut t = Tiny::new();
    let x = t.input("x", &[1, 8, 8, 3], U8);
    let p = t.ints("paddings", &[1, 0, 0, 0, 0, 0, 0, 0]);
    let y = t.tensor("y", &[2, 8, 8, 3], U8);
    t.op(op::PAD, &[Some(x), Some(p)], &[y], Options::default());
    let r = run(&t, false);
    // The [2, 8, 8, 3] output breaks the rank rule before the batch-padding limit is looked at.
    assert_eq!(categories(&r), [UnsupportedRank]);
    // MEAN over the batch dimension, and over a channel count that is not a multiple of 4.
    for (axes, what) in [(&[0][..], "batch"), (&[3][..], "multiple of 4")] {
        let mut t = Tiny::new();
        let x = t.input("x", &[1, 8, 8, 3], U8);
        let a = t.ints("axis", axes);
        let y = t.tensor("y", &[1, 8, 8, 1], U8);
        t.op(op::MEAN, &[Some(x), Some(a)], &[y], Options::new(opts::REDUCER, &[Field::I8(0, 1)]));
        assert!(limited(&t, what).contains(what), "{what}");
    }
    // CONCATENATION with a constant that is not all zeros.
    let mut t = Tiny::new();
    let x = t.input("x", &[1, 8, 8, 3], U8);
    let k = t.constant("k", &[1, 8, 8, 1], U8, vec![7; 64]);
    let y = t.tensor("y", &[1, 8, 8, 4], U8);
    t.op(op::CONCATENATION, &[Some(x), Some(k)], &[y], Options::new(opts::CONCATENATION, &[Field::I32(0, 3)]));
    assert!(limited(&t, "concat").contains("not all zeros"));
    // ... and with zero padding (value = zero point 128) it maps.
    let mut t = Tiny::new();
    let x = t.input("x", &[1, 8, 8, 3], U8);
    let k = t.constant("k", &[1, 8, 8, 1], U8, vec![128; 64]);
    let y = t.tensor("y", &[1, 8, 8, 4], U8);
    t.op(op::CONCATENATION, &[Some(x), Some(k)], &[y], Options::new(opts::CONCATENATION, &[Field::I32(0, 3)]));
    assert_eq!(categories(&run(&t, false)), [Mapped]);
    // MAX_POOL_2D with a fused RELU.
    let mut t = Tiny::new();
    let x = t.input("x", &[1, 8, 8, 3], U8);
    let y = t.tensor("y", &[1, 4, 4, 3], U8);
    let opts = Options::new(
        opts::POOL_2D,
        &[Field::I32(1, 2), Field::I32(2, 2), Field::I32(3, 2), Field::I32(4, 2), Field::I8(5, 1)],
    );
    t.op(op::MAX_POOL_2D, &[Some(x)], &[y], opts);
    assert!(limited(&t, "pool").contains("fused Relu"));
    // FULLY_CONNECTED with a two-dimensional output.
    let mut t = Tiny::new();
    let x = t.input("x", &[1, 4, 6], I8);
    let w = t.constant("w", &[5, 6], I8, vec![1; 30]);
    let y = t.tensor("y", &[1, 4, 5], I8);
    t.op(op::FULLY_CONNECTED, &[Some(x), Some(w), None], &[y], Options::new(opts::FULLY_CONNECTED, &[Field::I8(2, 1)]));
    assert!(limited(&t, "fc").contains("not one-dimensional"));
}

/// Requirement 3 on the four operators with weights and a bias, at the bias position of each
/// (TRANSPOSE_CONV: input 3, after output shape, weights and data).
#[test]
fn weights_and_biases_must_be_constant() {
    use Category::*;
    let status = "Filter, bias, or other param is not constant at compile-time";
    /// (operator, code, input shape, weights shape, bias position, output shape)
    type Case = (&'static str, i32, &'static [i32], &'static [i32], usize, &'static [i32]);
    let cases: [Case; 4] = [
        ("CONV_2D", op::CONV_2D, &[1, 8, 8, 8], &[4, 1, 1, 8], 2, &[1, 8, 8, 4]),
        ("DEPTHWISE_CONV_2D", op::DEPTHWISE_CONV_2D, &[1, 8, 8, 8], &[1, 1, 1, 8], 2, &[1, 8, 8, 8]),
        ("FULLY_CONNECTED", op::FULLY_CONNECTED, &[1, 8], &[4, 8], 2, &[1, 4]),
        ("TRANSPOSE_CONV", op::TRANSPOSE_CONV, &[1, 8, 8, 8], &[4, 1, 1, 8], 3, &[1, 8, 8, 4]),
    ];
    for (name, code, x_shape, w_shape, bias_at, y_shape) in cases {
        // `None` omits the bias; `Some(false)` makes it a graph input (computed at run time).
        let build = |weights_constant: bool, bias: Option<bool>| {
            let mut t = Tiny::new();
            let x = t.input("x", x_shape, I8);
            let n = w_shape.iter().product::<i32>() as usize;
            let w = if weights_constant { t.constant("w", w_shape, I8, vec![1; n]) } else { t.input("w", w_shape, I8) };
            let c = *y_shape.last().unwrap();
            let b = bias.map(|constant| {
                if constant {
                    t.constant("b", &[c], I32, vec![0; 4 * c as usize])
                } else {
                    t.input("b", &[c], I32)
                }
            });
            let y = t.tensor("y", y_shape, I8);
            let inputs = if code == op::TRANSPOSE_CONV {
                let s = t.ints("output_shape", y_shape);
                vec![Some(s), Some(w), Some(x), b]
            } else {
                vec![Some(x), Some(w), b]
            };
            t.op(code, &inputs, &[y], Options::default());
            t.output(y);
            run(&t, false)
        };
        assert_eq!(categories(&build(true, Some(true))), [Mapped], "{name}");
        let r = build(true, Some(false));
        assert_eq!(categories(&r), [NonConstantParameter], "{name}: {}", r.operators[0].reason);
        let v = &r.operators[0];
        assert_eq!(v.status, status);
        assert!(v.reason.starts_with(&format!("{status}: {name} bias (input {bias_at}) tensor ")), "{}", v.reason);
        assert!(v.reason.contains("int32") && v.reason.ends_with("is not constant"), "{}", v.reason);
        assert_eq!(r.cpu_ops, 1);
        let r = build(false, Some(true));
        assert_eq!(categories(&r), [NonConstantParameter], "{name}");
        assert!(r.operators[0].reason.contains(&format!("{name} weights (input 1)")), "{}", r.operators[0].reason);
        if matches!(name, "FULLY_CONNECTED" | "TRANSPOSE_CONV") {
            // The bias is optional for these two.
            assert_eq!(categories(&build(true, None)), [Mapped], "{name} without a bias");
        }
    }
    // The compiler's wording is read back as the parser's reason and the checker's category.
    assert_eq!(edgetpu_compiler::OpReason::from_status(status), edgetpu_compiler::OpReason::NonConstantParameters);
    assert_eq!(Category::from_status(status), Some(NonConstantParameter));
}

#[test]
fn operator_versions_are_declared_unchecked() {
    let mut t = Tiny::new();
    let x = t.input("x", &[1, 8, 3], U8);
    let y = unary(&mut t, op::LOGISTIC, x, &[1, 8, 3], U8);
    t.output(y);
    let r = run(&t, false);
    assert_eq!(r.not_checked, edgetpu_compiler::check::NOT_CHECKED);
    assert!(
        r.not_checked.iter().any(|s| s.starts_with("operator versions") && s.contains("never predicted")),
        "{:?}",
        r.not_checked
    );
    let doc = serde_json::to_value(&r).unwrap();
    assert!(doc["not_checked"][0].as_str().unwrap().starts_with("operator versions"), "{doc}");
}

#[test]
fn custom_operators() {
    // An 8-bit custom operator is not supported (a float one fails the data-type rule first).
    let mut t = Tiny::new();
    let x = t.input("x", &[1, 8, 3], U8);
    let y = t.tensor("y", &[1, 8, 3], U8);
    t.custom("MyOp", &[x], &[y]);
    let r = run(&t, false);
    assert_eq!(categories(&r), [Category::UnsupportedOperation]);
    assert!(r.operators[0].reason.contains("custom operator MyOp"), "{}", r.operators[0].reason);
    // An edgetpu-custom-op without a package: reported as compiled, with the decoding error.
    let mut t = Tiny::new();
    let x = t.input("x", &[1, 8, 3], U8);
    let y = t.tensor("y", &[1, 8, 3], U8);
    t.custom("edgetpu-custom-op", &[x], &[y]);
    let z = unary(&mut t, op::LOGISTIC, y, &[1, 8, 3], U8);
    t.output(z);
    let r = run(&t, false);
    assert_eq!(categories(&r), [Category::CompiledCustomOp, Category::CompiledCpuOp]);
    let compiled = r.compiled.as_ref().unwrap();
    assert_eq!(compiled.len(), 1);
    assert!(compiled[0].error.as_deref().is_some_and(|e| e.contains("no options")), "{compiled:?}");
    assert_eq!(
        (compiled[0].inputs.as_slice(), compiled[0].outputs.as_slice()),
        (&["x".to_string()][..], &["y".to_string()][..])
    );
    assert_eq!((r.tpu_ops, r.cpu_ops, r.estimated_parameter_bytes), (1, 1, 0));
}

fn research() -> PathBuf {
    let shared = match std::env::var_os("EDGETPU_SHARED") {
        Some(d) => PathBuf::from(d),
        None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
    };
    let dir = shared.join("research/compiler-logs");
    assert!(dir.join("README.md").is_file(), "compiler logs not found at {}: set EDGETPU_SHARED", dir.display());
    dir
}

/// The operator table of a compiler log or stdout capture: `(operator, status) -> count`.
fn log_table(text: &str) -> BTreeMap<(String, String), usize> {
    let mut rows = BTreeMap::new();
    let mut in_table = false;
    for line in text.lines() {
        if line.starts_with("Operator") && line.contains("Status") {
            in_table = true;
            continue;
        }
        let mut words = line.split_whitespace();
        let (Some(name), Some(count)) = (words.next(), words.next()) else { continue };
        let Ok(count) = count.parse::<usize>() else { continue };
        if in_table {
            let status = words.collect::<Vec<_>>().join(" ");
            *rows.entry((name.to_string(), status)).or_default() += count;
        }
    }
    rows
}

fn predicted_table(r: &CheckReport) -> BTreeMap<(String, String), usize> {
    let mut rows = BTreeMap::new();
    for v in &r.operators {
        *rows.entry((v.op.clone(), v.status.to_string())).or_default() += 1;
    }
    rows
}

#[test]
fn every_status_of_the_real_logs_is_a_category() {
    let dir = research();
    let mut files = 0;
    let mut seen = std::collections::BTreeSet::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "log" || e == "txt") {
            let text = std::fs::read_to_string(&path).unwrap();
            let table = log_table(&text);
            assert!(!table.is_empty(), "{}: no operator table", path.display());
            for (name, status) in table.keys() {
                let c = Category::from_status(status)
                    .unwrap_or_else(|| panic!("{}: {name}: status {status:?} has no category", path.display()));
                assert_eq!(c.status(), status, "{}", path.display());
                seen.insert(format!("{c:?}"));
            }
            files += 1;
        }
    }
    assert_eq!(files, 16, "15 logs and 1 stdout capture expected in {}", dir.display());
    let want = ["Limitation", "Mapped", "MoreThanOneSubgraph", "UnsupportedDataType", "VersionNotSupported"];
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), want);
    // The status the rank rule uses is the one of issue-pasted 14.1 logs.
    assert_eq!(
        Category::from_status("Tensor has unsupported rank (up to 3 innermost dimensions mapped)"),
        Some(Category::UnsupportedRank)
    );
}

/// A chain of fully-connected layers (`sizes[0]` inputs), as in the keypoint classifier of logs
/// 10 to 12; `dtype` is the type of weights and activations.
fn classifier(t: &mut Tiny, mut x: usize, sizes: &[i32], dtype: i8) -> usize {
    for w in sizes.windows(2) {
        let bytes = if dtype == F32 { 4 } else { 1 };
        let weights = t.constant("w", &[w[1], w[0]], dtype, vec![0; (w[0] * w[1] * bytes) as usize]);
        let bias = t.constant("b", &[w[1]], if dtype == F32 { F32 } else { I32 }, vec![0; 4 * w[1] as usize]);
        let y = t.tensor("fc", &[1, w[1]], dtype);
        t.op(
            op::FULLY_CONNECTED,
            &[Some(x), Some(weights), Some(bias)],
            &[y],
            Options::new(opts::FULLY_CONNECTED, &[Field::I8(0, 1)]),
        );
        x = y;
    }
    x
}

/// Logs whose network is small enough to rebuild: the predicted operator table must equal the
/// log's table row for row.
#[test]
fn rebuilt_networks_of_the_small_logs_match_their_tables() {
    let dir = research();
    let table = |name: &str| log_table(&std::fs::read_to_string(dir.join(name)).unwrap());
    let softmax = |t: &mut Tiny, x: usize, n: i32, dtype: i8| unary(t, op::SOFTMAX, x, &[1, n], dtype);

    // 10: segment 0 of the float keypoint classifier (two dense layers).
    let mut t = Tiny::new();
    let x = t.input("x", &[1, 42], F32);
    let y = classifier(&mut t, x, &[42, 20, 10], F32);
    t.output(y);
    assert_eq!(
        predicted_table(&run(&t, false)),
        table("10_v16_segmented_keypoint_classifier_segment_0_of_2_edgetpu.log")
    );

    // 11: segment 1: two dense layers and the softmax.
    let mut t = Tiny::new();
    let x = t.input("x", &[1, 10], F32);
    let y = classifier(&mut t, x, &[10, 10, 4], F32);
    let y = softmax(&mut t, y, 4, F32);
    t.output(y);
    assert_eq!(
        predicted_table(&run(&t, false)),
        table("11_v16_segmented_keypoint_classifier_segment_1_of_2_edgetpu.log")
    );

    // 12: the same network fully int8-quantized, with float input and output.
    let mut t = Tiny::new();
    let x = t.input("x", &[1, 42], F32);
    let q = unary(&mut t, op::QUANTIZE, x, &[1, 42], I8);
    let y = classifier(&mut t, q, &[42, 20, 10, 10, 4], I8);
    let y = softmax(&mut t, y, 4, I8);
    let d = unary(&mut t, op::DEQUANTIZE, y, &[1, 4], F32);
    t.output(d);
    assert_eq!(predicted_table(&run(&t, false)), table("12_v16_keypoint_classifier_int_quantization_edgetpu.log"));

    // 15: a float model (two dense layers, LOGISTIC, RESHAPE).
    let mut t = Tiny::new();
    let x = t.input("x", &[1, 16], F32);
    let y = classifier(&mut t, x, &[16, 8, 1], F32);
    let y = unary(&mut t, op::LOGISTIC, y, &[1, 1], F32);
    let s = t.ints("shape", &[1]);
    let r = t.tensor("r", &[1], F32);
    t.op(op::RESHAPE, &[Some(y), Some(s)], &[r], Options::default());
    t.output(r);
    assert_eq!(predicted_table(&run(&t, false)), table("15_v16_float_model_all_cpu_model_edgetpu.log"));
}

/// Operators that the logs report with a fixed non-mapped status get that status on the test
/// data's real models: DEQUANTIZE (logs 02, 08, 09, 12) and the SSD post-processing custom op
/// (log 07) as unsupported data type, a float-input QUANTIZE (logs 08, 12) as unspecified
/// limitation.
#[test]
fn real_models_get_the_statuses_the_logs_show_for_the_same_operators() {
    let root = testdata();
    let mut checked = BTreeMap::<String, usize>::new();
    for rel in [
        "detection/ssd_mobilenet_v2_coco_postprocess_tail.tflite",
        "automl_video_ondevice/traffic_model.tflite",
        "movenet_single_pose_lightning_ptq.tflite",
    ] {
        let model = Model::open(root.join(rel)).unwrap();
        let r = check(&model, &CheckOptions::default());
        let sg = &model.subgraphs()[0];
        for v in &r.operators {
            let float_in = sg.operators[v.index]
                .inputs
                .first()
                .copied()
                .flatten()
                .is_some_and(|i| sg.tensors[i].dtype == edgetpu::model::TensorType::FLOAT32);
            let want = match v.op.as_str() {
                "DEQUANTIZE" | "TFLite_Detection_PostProcess" => Category::UnsupportedDataType,
                "QUANTIZE" if float_in => Category::Limitation,
                _ => continue,
            };
            assert_eq!(v.category, want, "{rel}: #{} {}: {}", v.index, v.op, v.reason);
            *checked.entry(v.op.clone()).or_default() += 1;
        }
    }
    let names: Vec<&str> = checked.keys().map(String::as_str).collect();
    assert_eq!(names, ["DEQUANTIZE", "QUANTIZE", "TFLite_Detection_PostProcess"], "{checked:?}");
}

/// The one-operator models of the runtime's kernel tests (in this repository).
#[test]
fn one_operator_models_of_the_runtime_tests() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../runtime/tests/data/ops");
    use Category::*;
    let cases = [
        ("hard_swish_i8", UnsupportedOperation),
        ("leaky_relu_u8", UnsupportedOperation),
        ("tanh_u8", Mapped),
        ("tanh_f32", UnsupportedDataType),
        ("l2_norm_i8", Mapped),
        ("transpose_i8_6d", UnsupportedRank),
        ("strided_slice_i8_ellipsis_new_axis", Limitation),
        ("strided_slice_u8_basic", UnsupportedRank),
        ("strided_slice_u8_clamped", Limitation),
        ("strided_slice_i8_shrink", Mapped),
        ("prelu_i8_same_shape", Limitation),
        ("space_to_depth_u8", Mapped),
        ("depth_to_space_u8", UnsupportedOperation),
        ("prelu_u8_channel", Mapped),
    ];
    for (case, want) in cases {
        let path = dir.join(case).join("model.tflite");
        let model = Model::open(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        let r = check(&model, &CheckOptions::default());
        assert_eq!(r.operators.len(), 1, "{case}");
        assert_eq!(r.operators[0].category, want, "{case}: {}", r.operators[0].reason);
    }
}

/// Untrusted input: every model of the test data and of the runtime's tests, and every input of
/// the loader's fuzz corpus that loads, is checked without a panic and with consistent counts.
#[test]
fn every_loadable_model_is_checked_without_panic() {
    let here = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let mut stack = vec![testdata(), here.join("../runtime/tests/data"), here.join("../fuzz/corpus")];
    let mut n = 0;
    while let Some(dir) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            let Ok(model) = Model::from_bytes(std::fs::read(&path).unwrap()) else { continue };
            for multiple_subgraphs in [false, true] {
                let r = check(&model, &CheckOptions { multiple_subgraphs });
                assert_eq!(r.tpu_ops + r.cpu_ops, r.total_ops, "{}", path.display());
                assert_eq!(r.total_ops, model.subgraphs()[0].operators.len(), "{}", path.display());
                assert!(r.operators.iter().all(|v| v.on_tpu == v.category.on_tpu()), "{}", path.display());
                let _ = serde_json::to_string(&r).unwrap();
            }
            n += 1;
        }
    }
    assert!(n > 100, "only {n} models found");
}

// ---------------------------------------------------------------------------------------------
// Coral's table of supported operations, row by row (docs/edgetpu-ops.md).

/// The smallest model in which `builtin`, a row of Coral's table, should map: 8-bit activations,
/// constant parameters, nothing the table limits.
fn minimal(builtin: &str) -> Tiny {
    let mut t = Tiny::new();
    let img = [1, 8, 8, 4];
    let unary = |t: &mut Tiny, code: i32| {
        let x = t.input("x", &img, I8);
        let y = t.tensor("y", &img, I8);
        t.op(code, &[Some(x)], &[y], Options::default());
        vec![y]
    };
    let binary = |t: &mut Tiny, code: i32| {
        let (a, b) = (t.input("a", &img, I8), t.input("b", &img, I8));
        let y = t.tensor("y", &img, I8);
        t.op(code, &[Some(a), Some(b)], &[y], Options::default());
        vec![y]
    };
    let reduce = |t: &mut Tiny, code: i32| {
        let x = t.input("x", &img, I8);
        let axes = t.ints("axes", &[1, 2]);
        let y = t.tensor("y", &[1, 1, 1, 4], I8);
        t.op(code, &[Some(x), Some(axes)], &[y], Options::new(opts::REDUCER, &[Field::I8(0, 1)]));
        vec![y]
    };
    let pool = |t: &mut Tiny, code: i32| {
        let x = t.input("x", &img, I8);
        let y = t.tensor("y", &[1, 4, 4, 4], I8);
        let strides = [Field::I32(1, 2), Field::I32(2, 2), Field::I32(3, 2), Field::I32(4, 2)];
        t.op(code, &[Some(x)], &[y], Options::new(opts::POOL_2D, &strides));
        vec![y]
    };
    let resize = |t: &mut Tiny, code: i32| {
        let x = t.input("x", &img, I8);
        let size = t.ints("size", &[16, 16]);
        let y = t.tensor("y", &[1, 16, 16, 4], I8);
        t.op(code, &[Some(x), Some(size)], &[y], Options::default());
        vec![y]
    };
    let outputs = match builtin {
        "ADD" => binary(&mut t, op::ADD),
        "MUL" => binary(&mut t, op::MUL),
        "SUB" => binary(&mut t, op::SUB),
        "MAXIMUM" => binary(&mut t, op::MAXIMUM),
        "MINIMUM" => binary(&mut t, op::MINIMUM),
        "SQUARED_DIFFERENCE" => binary(&mut t, op::SQUARED_DIFFERENCE),
        "L2_NORMALIZATION" => unary(&mut t, op::L2_NORMALIZATION),
        "LOGISTIC" => unary(&mut t, op::LOGISTIC),
        "RELU" => unary(&mut t, op::RELU),
        "RELU6" => unary(&mut t, op::RELU6),
        "RELU_N1_TO_1" => unary(&mut t, op::RELU_N1_TO_1),
        "TANH" => unary(&mut t, op::TANH),
        "RSQRT" => unary(&mut t, op::RSQRT),
        // An int8 to int8 requantization (a float input is another matter, see
        // `leading_cpu_operators_do_not_cut`).
        "QUANTIZE" => unary(&mut t, op::QUANTIZE),
        "AVERAGE_POOL_2D" => pool(&mut t, op::AVERAGE_POOL_2D),
        "MAX_POOL_2D" => pool(&mut t, op::MAX_POOL_2D),
        "MEAN" => reduce(&mut t, op::MEAN),
        "SUM" => reduce(&mut t, op::SUM),
        "REDUCE_MAX" => reduce(&mut t, op::REDUCE_MAX),
        "REDUCE_MIN" => reduce(&mut t, op::REDUCE_MIN),
        "RESIZE_BILINEAR" => resize(&mut t, op::RESIZE_BILINEAR),
        "RESIZE_NEAREST_NEIGHBOR" => resize(&mut t, op::RESIZE_NEAREST_NEIGHBOR),
        "CONV_2D" => {
            let x = t.input("x", &img, I8);
            vec![conv(&mut t, x, 4, 4, I8, (1, 1))]
        }
        "DEPTHWISE_CONV_2D" => {
            let x = t.input("x", &img, I8);
            let w = t.constant("w", &[1, 1, 1, 4], I8, vec![1; 4]);
            let b = t.constant("b", &[4], I32, vec![0; 16]);
            let y = t.tensor("y", &img, I8);
            let o = Options::new(opts::DEPTHWISE_CONV_2D, &[Field::I32(1, 1), Field::I32(2, 1), Field::I32(3, 1)]);
            t.op(op::DEPTHWISE_CONV_2D, &[Some(x), Some(w), Some(b)], &[y], o);
            vec![y]
        }
        "TRANSPOSE_CONV" => {
            let x = t.input("x", &img, I8);
            let shape = t.ints("output_shape", &img);
            let w = t.constant("w", &[4, 1, 1, 4], I8, vec![1; 16]);
            let b = t.constant("b", &[4], I32, vec![0; 16]);
            let y = t.tensor("y", &img, I8);
            t.op(op::TRANSPOSE_CONV, &[Some(shape), Some(w), Some(x), Some(b)], &[y], Options::default());
            vec![y]
        }
        "FULLY_CONNECTED" => {
            let x = t.input("x", &[1, 8], I8);
            let w = t.constant("w", &[4, 8], I8, vec![1; 32]);
            let b = t.constant("b", &[4], I32, vec![0; 16]);
            let y = t.tensor("y", &[1, 4], I8);
            t.op(op::FULLY_CONNECTED, &[Some(x), Some(w), Some(b)], &[y], Options::default());
            vec![y]
        }
        "UNIDIRECTIONAL_SEQUENCE_LSTM" => vec![lstm(&mut t, op::UNIDIRECTIONAL_SEQUENCE_LSTM)],
        "CONCATENATION" => {
            let (a, b) = (t.input("a", &img, I8), t.input("b", &img, I8));
            let y = t.tensor("y", &[1, 8, 8, 8], I8);
            t.op(op::CONCATENATION, &[Some(a), Some(b)], &[y], Options::new(opts::CONCATENATION, &[Field::I32(0, 3)]));
            vec![y]
        }
        "EXPAND_DIMS" => {
            let x = t.input("x", &[8, 4], I8);
            let axis = t.ints("axis", &[0]);
            let y = t.tensor("y", &[1, 8, 4], I8);
            t.op(op::EXPAND_DIMS, &[Some(x), Some(axis)], &[y], Options::default());
            vec![y]
        }
        "SQUEEZE" => {
            let x = t.input("x", &[1, 8, 1, 4], I8);
            let y = t.tensor("y", &[1, 8, 4], I8);
            t.op(op::SQUEEZE, &[Some(x)], &[y], Options::default());
            vec![y]
        }
        "RESHAPE" => {
            let x = t.input("x", &img, I8);
            let shape = t.ints("shape", &[1, 256]);
            let y = t.tensor("y", &[1, 256], I8);
            t.op(op::RESHAPE, &[Some(x), Some(shape)], &[y], Options::default());
            vec![y]
        }
        "PACK" => {
            let (a, b) = (t.input("a", &[1, 8, 4], I8), t.input("b", &[1, 8, 4], I8));
            let y = t.tensor("y", &[1, 8, 4, 2], I8);
            t.op(op::PACK, &[Some(a), Some(b)], &[y], Options::new(opts::PACK, &[Field::I32(0, 2), Field::I32(1, 3)]));
            vec![y]
        }
        "PAD" => {
            let x = t.input("x", &img, I8);
            let p = t.ints("paddings", &[0, 0, 1, 1, 1, 1, 0, 0]);
            let y = t.tensor("y", &[1, 10, 10, 4], I8);
            t.op(op::PAD, &[Some(x), Some(p)], &[y], Options::default());
            vec![y]
        }
        "PRELU" => {
            let x = t.input("x", &img, I8);
            let alpha = t.constant("alpha", &[1, 1, 4], I8, vec![1; 4]);
            let y = t.tensor("y", &img, I8);
            t.op(op::PRELU, &[Some(x), Some(alpha)], &[y], Options::default());
            vec![y]
        }
        "SLICE" => {
            let x = t.input("x", &img, I8);
            let (b, s) = (t.ints("begin", &[0, 0, 0, 0]), t.ints("size", &[1, 4, 4, 4]));
            let y = t.tensor("y", &[1, 4, 4, 4], I8);
            t.op(op::SLICE, &[Some(x), Some(b), Some(s)], &[y], Options::default());
            vec![y]
        }
        "STRIDED_SLICE" => {
            let x = t.input("x", &img, I8);
            let (b, e) = (t.ints("begin", &[0, 0, 0, 0]), t.ints("end", &[1, 4, 4, 4]));
            let s = t.ints("strides", &[1, 1, 1, 1]);
            let y = t.tensor("y", &[1, 4, 4, 4], I8);
            t.op(
                op::STRIDED_SLICE,
                &[Some(x), Some(b), Some(e), Some(s)],
                &[y],
                Options::new(opts::STRIDED_SLICE, &[]),
            );
            vec![y]
        }
        "SOFTMAX" => {
            let x = t.input("x", &[1, 10], I8);
            let y = t.tensor("y", &[1, 10], I8);
            t.op(op::SOFTMAX, &[Some(x)], &[y], Options::default());
            vec![y]
        }
        "SPACE_TO_DEPTH" => {
            let x = t.input("x", &img, I8);
            let y = t.tensor("y", &[1, 4, 4, 16], I8);
            t.op(op::SPACE_TO_DEPTH, &[Some(x)], &[y], Options::default());
            vec![y]
        }
        "SPLIT" => {
            let x = t.input("x", &img, I8);
            let axis = t.ints("axis", &[3]);
            let (a, b) = (t.tensor("a", &[1, 8, 8, 2], I8), t.tensor("b", &[1, 8, 8, 2], I8));
            t.op(op::SPLIT, &[Some(axis), Some(x)], &[a, b], Options::new(opts::SPLIT, &[Field::I32(0, 2)]));
            vec![a, b]
        }
        "TRANSPOSE" => {
            let x = t.input("x", &[1, 8, 6, 4], I8);
            let perm = t.ints("perm", &[0, 2, 1, 3]);
            let y = t.tensor("y", &[1, 6, 8, 4], I8);
            t.op(op::TRANSPOSE, &[Some(x), Some(perm)], &[y], Options::default());
            vec![y]
        }
        other => panic!("no minimal model for {other}: add one for the new row of the table"),
    };
    for y in outputs {
        t.output(y);
    }
    t
}

/// An LSTM of `code` (uni- or bidirectional layout of the first 24 inputs) over `[1, 4, 8]` int8
/// steps with 4 cells: int8 weights, int32 biases, variable int8 output and int16 cell states.
fn lstm(t: &mut Tiny, code: i32) -> usize {
    let x = t.input("x", &[1, 4, 8], I8);
    let mut inputs = vec![Some(x)];
    for _ in 0..4 {
        inputs.push(Some(t.constant("input_weights", &[4, 8], I8, vec![1; 32])));
    }
    for _ in 0..4 {
        inputs.push(Some(t.constant("recurrent_weights", &[4, 4], I8, vec![1; 16])));
    }
    inputs.extend([None, None, None]); // no peephole weights
    for _ in 0..4 {
        inputs.push(Some(t.constant("bias", &[4], I32, vec![0; 16])));
    }
    inputs.extend([None, None]); // no projection
    inputs.push(Some(t.variable("output_state", &[1, 4], I8)));
    inputs.push(Some(t.variable("cell_state", &[1, 4], I16)));
    inputs.extend([None, None, None, None]); // no layer normalisation
    let y = t.tensor("y", &[1, 4, 4], I8);
    t.op(code, &inputs, &[y], Options::default());
    y
}

#[test]
fn every_operator_of_the_table_maps_in_its_plain_form() {
    assert_eq!(SUPPORTED_OPERATIONS.len(), 40, "Coral's table has 40 rows");
    for row in SUPPORTED_OPERATIONS {
        let r = run(&minimal(row.builtin), false);
        assert_eq!(r.operators.len(), 1, "{}", row.builtin);
        let v = &r.operators[0];
        assert_eq!(v.op, row.builtin);
        assert_eq!(v.category, Category::Mapped, "{} ({}): {}", row.builtin, row.coral_name, v.reason);
    }
}

/// The last operator's verdict, which must be `want`; returns its reason.
fn last(t: &Tiny, want: Category) -> String {
    let r = run(t, false);
    let v = r.operators.last().expect("an operator");
    assert_eq!(v.category, want, "{} {}", v.op, v.reason);
    v.reason.clone()
}

#[test]
fn fused_activations_other_than_the_relu_family_do_not_map() {
    // ADD with a fused TANH (ActivationFunctionType 4), then with RELU6 (3).
    for (activation, want) in [(4, Category::Limitation), (3, Category::Mapped)] {
        let mut t = Tiny::new();
        let (a, b) = (t.input("a", &[1, 8, 4], I8), t.input("b", &[1, 8, 4], I8));
        let y = t.tensor("y", &[1, 8, 4], I8);
        t.op(op::ADD, &[Some(a), Some(b)], &[y], Options::new(opts::ADD, &[Field::I8(0, activation)]));
        let reason = last(&t, want);
        if want == Category::Limitation {
            assert!(reason.contains("fused Tanh activation"), "{reason}");
        }
    }
}

#[test]
fn average_pool_and_concatenation_take_no_fused_activation() {
    let mut t = Tiny::new();
    let x = t.input("x", &[1, 8, 8, 4], I8);
    let y = t.tensor("y", &[1, 4, 4, 4], I8);
    let o = [Field::I32(1, 2), Field::I32(2, 2), Field::I32(3, 2), Field::I32(4, 2), Field::I8(5, 1)];
    t.op(op::AVERAGE_POOL_2D, &[Some(x)], &[y], Options::new(opts::POOL_2D, &o));
    assert!(last(&t, Category::Limitation).contains("AVERAGE_POOL_2D with a fused Relu"));

    let mut t = Tiny::new();
    let (a, b) = (t.input("a", &[1, 8, 4], I8), t.input("b", &[1, 8, 4], I8));
    let y = t.tensor("y", &[1, 8, 8], I8);
    let o = Options::new(opts::CONCATENATION, &[Field::I32(0, 2), Field::I8(1, 1)]);
    t.op(op::CONCATENATION, &[Some(a), Some(b)], &[y], o);
    assert!(last(&t, Category::Limitation).contains("CONCATENATION with a fused Relu"));
}

#[test]
fn concatenation_with_a_constant_has_exactly_two_inputs() {
    let mut t = Tiny::new();
    let (a, b) = (t.input("a", &[1, 8, 4], I8), t.input("b", &[1, 8, 4], I8));
    let zeros = t.constant("zeros", &[1, 8, 4], I8, vec![0; 32]);
    let y = t.tensor("y", &[1, 8, 12], I8);
    let o = Options::new(opts::CONCATENATION, &[Field::I32(0, 2)]);
    t.op(op::CONCATENATION, &[Some(a), Some(b), Some(zeros)], &[y], o);
    assert!(last(&t, Category::Limitation).contains("CONCATENATION of 3 inputs with constant input 2"));
}

#[test]
fn depthwise_convolution_uses_one_dilation() {
    for (dilation, want) in [((1, 2), Category::Limitation), ((2, 2), Category::Mapped)] {
        let mut t = Tiny::new();
        let x = t.input("x", &[1, 8, 8, 4], I8);
        let w = t.constant("w", &[1, 3, 3, 4], I8, vec![1; 36]);
        let b = t.constant("b", &[4], I32, vec![0; 16]);
        let y = t.tensor("y", &[1, 8, 8, 4], I8);
        let o = [
            Field::I32(1, 1),
            Field::I32(2, 1),
            Field::I32(3, 1),
            Field::I32(5, dilation.0),
            Field::I32(6, dilation.1),
        ];
        t.op(op::DEPTHWISE_CONV_2D, &[Some(x), Some(w), Some(b)], &[y], Options::new(opts::DEPTHWISE_CONV_2D, &o));
        let reason = last(&t, want);
        if want == Category::Limitation {
            assert!(reason.contains("DEPTHWISE_CONV_2D with different dilations in x (1) and y (2)"), "{reason}");
        }
    }
}

#[test]
fn fully_connected_weights_use_the_default_format() {
    let mut t = Tiny::new();
    let x = t.input("x", &[1, 16], I8);
    let w = t.constant("w", &[16, 16], I8, vec![1; 256]);
    let y = t.tensor("y", &[1, 16], I8);
    // weights_format SHUFFLED4x16INT8 (1).
    t.op(op::FULLY_CONNECTED, &[Some(x), Some(w), None], &[y], Options::new(opts::FULLY_CONNECTED, &[Field::I8(1, 1)]));
    assert!(last(&t, Category::Limitation).contains("non-default weights format 1"));
}

#[test]
fn sum_reduce_max_and_reduce_min_stay_off_the_batch_dimension() {
    for (code, name) in [(op::SUM, "SUM"), (op::REDUCE_MAX, "REDUCE_MAX"), (op::REDUCE_MIN, "REDUCE_MIN")] {
        // Over the batch, over x and y, and over a channel count that is no multiple of 4 (a
        // limit of MEAN only).
        for (axes, out, want) in [
            (&[0][..], &[1, 8, 8, 3][..], Category::Limitation),
            (&[1, 2][..], &[1, 1, 1, 3][..], Category::Mapped),
            (&[3][..], &[1, 8, 8, 1][..], Category::Mapped),
        ] {
            let mut t = Tiny::new();
            let x = t.input("x", &[1, 8, 8, 3], I8);
            let a = t.ints("axes", axes);
            let y = t.tensor("y", out, I8);
            t.op(code, &[Some(x), Some(a)], &[y], Options::new(opts::REDUCER, &[Field::I8(0, 1)]));
            let reason = last(&t, want);
            if want == Category::Limitation {
                assert_eq!(reason.split(": ").nth(1), Some(&*format!("{name} over the batch dimension (axis 0)")));
            }
        }
    }
    // An axis computed at run time is an int32 activation: not an 8-bit tensor.
    let mut t = Tiny::new();
    let x = t.input("x", &[1, 8, 8, 3], I8);
    let a = t.input("axes", &[2], I32);
    let y = t.tensor("y", &[1, 1, 1, 3], I8);
    t.op(op::SUM, &[Some(x), Some(a)], &[y], Options::new(opts::REDUCER, &[Field::I8(0, 1)]));
    assert!(last(&t, Category::UnsupportedDataType).contains("input 1 is tensor"));
}

#[test]
fn pack_not_along_the_batch_dimension() {
    let mut t = Tiny::new();
    let (a, b) = (t.input("a", &[8, 4], I8), t.input("b", &[8, 4], I8));
    let y = t.tensor("y", &[2, 8, 4], I8);
    t.op(op::PACK, &[Some(a), Some(b)], &[y], Options::new(opts::PACK, &[Field::I32(0, 2), Field::I32(1, 0)]));
    assert!(last(&t, Category::Limitation).contains("PACK along the batch dimension (axis 0)"));
}

#[test]
fn pad_not_in_the_batch_dimension() {
    let mut t = Tiny::new();
    let x = t.input("x", &[1, 8, 3], I8);
    let p = t.ints("paddings", &[1, 0, 0, 0, 0, 0]);
    let y = t.tensor("y", &[2, 8, 3], I8);
    t.op(op::PAD, &[Some(x), Some(p)], &[y], Options::default());
    assert!(last(&t, Category::Limitation).contains("PAD in the batch dimension (1 before, 0 after)"));
}

#[test]
fn prelu_alpha_has_only_its_innermost_dimension() {
    for (alpha, want) in [(&[1, 8, 4][..], Category::Limitation), (&[1, 1, 4][..], Category::Mapped)] {
        let mut t = Tiny::new();
        let x = t.input("x", &[1, 8, 8, 4], I8);
        let n = alpha.iter().product::<i32>() as usize;
        let a = t.constant("alpha", alpha, I8, vec![1; n]);
        let y = t.tensor("y", &[1, 8, 8, 4], I8);
        t.op(op::PRELU, &[Some(x), Some(a)], &[y], Options::default());
        let reason = last(&t, want);
        if want == Category::Limitation {
            assert!(reason.contains("has more than the innermost dimension"), "{reason}");
        }
    }
}

#[test]
fn softmax_over_at_most_16000_elements() {
    for (n, want) in [(16_000, Category::Mapped), (16_001, Category::Limitation)] {
        let mut t = Tiny::new();
        let x = t.input("x", &[1, n], I8);
        let y = t.tensor("y", &[1, n], I8);
        t.op(op::SOFTMAX, &[Some(x)], &[y], Options::default());
        let reason = last(&t, want);
        if want == Category::Limitation {
            assert!(reason.contains("SOFTMAX over 16001 elements (at most 16000)"), "{reason}");
        }
    }
}

#[test]
fn split_not_along_the_batch_dimension() {
    let mut t = Tiny::new();
    let x = t.input("x", &[2, 8, 3], I8);
    let axis = t.ints("axis", &[0]);
    let (a, b) = (t.tensor("a", &[1, 8, 3], I8), t.tensor("b", &[1, 8, 3], I8));
    t.op(op::SPLIT, &[Some(axis), Some(x)], &[a, b], Options::new(opts::SPLIT, &[Field::I32(0, 2)]));
    assert!(last(&t, Category::Limitation).contains("SPLIT along the batch dimension (axis 0)"));
}

#[test]
fn strided_slice_without_ellipsis_or_new_axis_masks() {
    for (field, what) in [(2, "ellipsis mask 1"), (3, "new-axis mask 1")] {
        let mut t = Tiny::new();
        let x = t.input("x", &[1, 8, 8, 4], I8);
        let (b, e) = (t.ints("begin", &[0, 0, 0, 0]), t.ints("end", &[1, 4, 4, 4]));
        let s = t.ints("strides", &[1, 1, 1, 1]);
        let y = t.tensor("y", &[1, 4, 4, 4], I8);
        let o = Options::new(opts::STRIDED_SLICE, &[Field::I32(field, 1)]);
        t.op(op::STRIDED_SLICE, &[Some(x), Some(b), Some(e), Some(s)], &[y], o);
        assert!(last(&t, Category::Limitation).contains(what), "{what}");
    }
}

#[test]
fn resize_works_on_three_dimensions_and_not_with_align_corners() {
    // align_corners (field 2) stays on the CPU, as DeepLab v3's resizes did; half-pixel centres
    // (field 3) map, as MoveNet's did.
    for (field, want) in [(2, Category::Limitation), (3, Category::Mapped)] {
        let mut t = Tiny::new();
        let x = t.input("x", &[1, 8, 8, 4], I8);
        let size = t.ints("size", &[16, 16]);
        let y = t.tensor("y", &[1, 16, 16, 4], I8);
        let o = Options::new(opts::RESIZE_BILINEAR, &[Field::I8(field, 1)]);
        t.op(op::RESIZE_BILINEAR, &[Some(x), Some(size)], &[y], o);
        let reason = last(&t, want);
        if want == Category::Limitation {
            assert!(reason.contains("align_corners=true ([1, 8, 8, 4] to [1, 16, 16, 4])"), "{reason}");
        }
    }
    // "Input/output is a 3-dimensional tensor": a batch of two breaks the rank rule.
    for code in [op::RESIZE_BILINEAR, op::RESIZE_NEAREST_NEIGHBOR] {
        let mut t = Tiny::new();
        let x = t.input("x", &[2, 8, 8, 4], I8);
        let size = t.ints("size", &[16, 16]);
        let y = t.tensor("y", &[2, 16, 16, 4], I8);
        t.op(code, &[Some(x), Some(size)], &[y], Options::default());
        last(&t, Category::UnsupportedRank);
    }
}

#[test]
fn lstm_is_unidirectional_only() {
    let mut t = Tiny::new();
    let y = lstm(&mut t, op::BIDIRECTIONAL_SEQUENCE_LSTM);
    t.output(y);
    let reason = last(&t, Category::UnsupportedOperation);
    assert!(reason.contains("builtin operator BIDIRECTIONAL_SEQUENCE_LSTM is not in"), "{reason}");
    assert!(reason.ends_with("(its LSTM row is for unidirectional LSTM only)"), "{reason}");
    let mut t = Tiny::new();
    let y = lstm(&mut t, op::UNIDIRECTIONAL_SEQUENCE_LSTM);
    t.output(y);
    last(&t, Category::Mapped);
}

/// `TILE` is in no version of Coral's table that could be sourced (docs/edgetpu-ops.md), so it
/// stays on the CPU. What follows it stays on the Edge TPU unless it depends on the `TILE`'s
/// result after Edge TPU operators: a `TILE` that only feeds the Edge TPU subgraph (on a graph
/// input or a constant) runs before it on the CPU and cuts nothing.
#[test]
fn operators_outside_the_table_cut_only_what_depends_on_them() {
    use Category::*;
    let tile = |t: &mut Tiny, x: usize, from: &[i32], multiples: &[i32]| {
        let m = t.ints("multiples", multiples);
        let shape: Vec<i32> = from.iter().zip(multiples).map(|(d, k)| d * k).collect();
        let y = t.tensor("tile", &shape, I8);
        t.op(op::TILE, &[Some(x), Some(m)], &[y], Options::default());
        y
    };
    // conv -> TILE -> ADD(tile, conv); conv -> MAX_POOL.
    let mut t = Tiny::new();
    let x = t.input("x", &[1, 8, 8, 3], I8);
    let c = conv(&mut t, x, 3, 4, I8, (1, 1));
    let k = tile(&mut t, c, &[1, 8, 8, 4], &[1, 1, 1, 1]);
    let a = t.tensor("add", &[1, 8, 8, 4], I8);
    t.op(op::ADD, &[Some(k), Some(c)], &[a], Options::default());
    let p = t.tensor("pool", &[1, 4, 4, 4], I8);
    t.op(op::MAX_POOL_2D, &[Some(c)], &[p], Options::new(opts::POOL_2D, &[Field::I32(3, 2), Field::I32(4, 2)]));
    t.output(a);
    t.output(p);
    let r = run(&t, false);
    assert_eq!(categories(&r), [Mapped, UnsupportedOperation, MoreThanOneSubgraph, Mapped]);
    assert!(
        r.operators[1]
            .reason
            .starts_with("Operation not supported: builtin operator TILE is not in the Edge TPU's list"),
        "{}",
        r.operators[1].reason
    );
    assert!(r.operators[2].reason.contains("depends on operator 1 (TILE)"), "{}", r.operators[2].reason);
    let r = run(&t, true);
    assert_eq!(categories(&r), [Mapped, UnsupportedOperation, Mapped, Mapped]);
    assert_eq!(r.tpu_subgraphs, 2);

    // TILE on the graph input, then conv -> ADD(conv, tile of a constant): both TILEs run on the
    // CPU before the Edge TPU subgraph, and everything after them maps in one subgraph.
    let mut t = Tiny::new();
    let x = t.input("x", &[1, 4, 8, 3], I8);
    let k = tile(&mut t, x, &[1, 4, 8, 3], &[1, 2, 1, 1]);
    let c = conv(&mut t, k, 3, 4, I8, (1, 1));
    let bias = t.constant("row", &[1, 1, 8, 4], I8, vec![0; 32]);
    let rows = tile(&mut t, bias, &[1, 1, 8, 4], &[1, 8, 1, 1]);
    let a = t.tensor("add", &[1, 8, 8, 4], I8);
    t.op(op::ADD, &[Some(c), Some(rows)], &[a], Options::default());
    t.output(a);
    let r = run(&t, false);
    assert_eq!(categories(&r), [UnsupportedOperation, Mapped, UnsupportedOperation, Mapped]);
    assert_eq!((r.tpu_ops, r.tpu_subgraphs), (2, 1));

    // GATHER, another operator outside the table, is reported the same way.
    let mut t = Tiny::new();
    let x = t.input("x", &[1, 8, 4], I8);
    let idx = t.ints("indices", &[0, 2]);
    let y = t.tensor("y", &[1, 2, 4], I8);
    t.op(op::GATHER, &[Some(x), Some(idx)], &[y], Options::default());
    t.output(y);
    assert!(last(&t, UnsupportedOperation).contains("builtin operator GATHER is not in"));
}

#[test]
fn not_checked_names_what_the_table_leaves_open() {
    assert_eq!(NOT_CHECKED.len(), 4, "{NOT_CHECKED:?}");
    assert!(NOT_CHECKED[0].starts_with("operator versions"), "{NOT_CHECKED:?}");
    assert!(NOT_CHECKED[2].contains("beyond Coral's table") && NOT_CHECKED[2].contains("TILE"), "{NOT_CHECKED:?}");
    assert!(NOT_CHECKED[3].starts_with("the runtime version") && NOT_CHECKED[3].contains("-m"), "{NOT_CHECKED:?}");
    assert!(NOT_CHECKED.iter().all(|s| !s.ends_with('.')), "items are sentence fragments: {NOT_CHECKED:?}");
}

/// `docs/edgetpu-ops.md` lists the rows of `SUPPORTED_OPERATIONS`, in the same order, with the
/// same builtin, Coral name and compiler release.
#[test]
fn the_documented_table_is_the_one_the_rules_use() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../docs/edgetpu-ops.md");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let cells = |line: &str| -> Vec<String> {
        line.trim().trim_matches('|').split('|').map(|c| c.trim().to_string()).collect()
    };
    let mut lines = text.lines().skip_while(|l| !l.starts_with("| Coral operation | TFLite builtin | Added in |"));
    lines.next().expect("the table of supported operations");
    let rows: Vec<Vec<String>> = lines.skip(1).take_while(|l| l.starts_with('|')).map(cells).collect();
    assert_eq!(rows.len(), SUPPORTED_OPERATIONS.len(), "rows of the documented table");
    for (row, op) in rows.iter().zip(SUPPORTED_OPERATIONS) {
        assert_eq!(row[0], op.coral_name, "{row:?}");
        assert_eq!(row[1], format!("`{}`", op.builtin), "{row:?}");
        assert_eq!(row[2], op.added_in.unwrap_or("not sourced"), "{row:?}");
    }
}
