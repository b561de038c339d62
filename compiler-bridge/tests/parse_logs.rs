//! The parser over the real compiler outputs in `shared/research/compiler-logs`: fifteen
//! `*_edgetpu.log` files of compiler versions 2.0 to 16.0 and one stdout capture.

use edgetpu_compiler::{CompilerVersion, ModelReport, OpReason, Report};
use std::path::{Path, PathBuf};

/// `$EDGETPU_SHARED/research/compiler-logs`, else `../../shared` beside the crate. Panics (fails
/// the test) when it is missing: these tests never pass by skipping.
fn logs_dir() -> PathBuf {
    let shared = match std::env::var_os("EDGETPU_SHARED") {
        Some(d) => PathBuf::from(d),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared"),
    };
    let dir = shared.join("research/compiler-logs");
    assert!(
        dir.join("README.md").is_file(),
        "compiler logs not found at {}: set EDGETPU_SHARED to the shared data directory",
        dir.display()
    );
    dir
}

fn parse(name: &str) -> Report {
    let path = logs_dir().join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    Report::parse(&text)
}

/// Bytes of a size printed with two decimals, e.g. `mib(608)` for `6.08MiB`.
fn mib(hundredths: u64) -> u64 {
    (hundredths * 1_048_576 + 50) / 100
}

struct Expected {
    file: &'static str,
    version: &'static str,
    input: &'static str,
    output: &'static str,
    rows: usize,
    total: u32,
    tpu: u32,
    /// (reason, instances) for every unmapped reason in the file.
    unmapped: &'static [(OpReason, u32)],
    /// A few (operator, count, reason) rows that must be present.
    samples: &'static [(&'static str, u32, OpReason)],
}

use OpReason::{Mapped, MultipleSubgraphs, UnspecifiedLimitation, UnsupportedDataType, UnsupportedVersion};

const LOGS: &[Expected] = &[
    Expected {
        file: "01_v16_mobilenet_v2_1.0_224_quant_edgetpu.log",
        version: "16.0.384591198",
        input: "mobilenet_v2_1.0_224_quant.tflite",
        output: "mobilenet_v2_1.0_224_quant_edgetpu.tflite",
        rows: 8,
        total: 72,
        tpu: 72,
        unmapped: &[],
        samples: &[("FULLY_CONNECTED", 1, Mapped), ("CONV_2D", 36, Mapped), ("DEPTHWISE_CONV_2D", 17, Mapped)],
    },
    Expected {
        file: "02_v16_efficientdet_model_edgetpu.log",
        version: "16.0.384591198",
        input: "model.tflite",
        output: "model_edgetpu.tflite",
        rows: 16,
        total: 513,
        tpu: 510,
        unmapped: &[(UnsupportedDataType, 3)],
        samples: &[("CONV_2D", 152, Mapped), ("DEQUANTIZE", 3, UnsupportedDataType), ("L2_NORMALIZATION", 10, Mapped)],
    },
    Expected {
        file: "03_v16_yolov8n_full_integer_quant_edgetpu.log",
        version: "16.0.384591198",
        input: "yolov8n_saved_model/yolov8n_full_integer_quant.tflite",
        output: "yolov8n_saved_model/yolov8n_full_integer_quant_edgetpu.tflite",
        rows: 25,
        total: 254,
        tpu: 230,
        unmapped: &[(MultipleSubgraphs, 12), (UnspecifiedLimitation, 12)],
        samples: &[
            ("MAX_POOL_2D", 3, Mapped),
            ("ADD", 2, MultipleSubgraphs),
            ("TRANSPOSE", 3, UnspecifiedLimitation),
            ("QUANTIZE", 1, Mapped),
        ],
    },
    Expected {
        file: "04_v16_yolov5s-int8_edgetpu.log",
        version: "16.0.384591198",
        input: "yolov5s-int8.tflite",
        output: "./yolov5s-int8_edgetpu.tflite",
        rows: 20,
        total: 262,
        tpu: 242,
        unmapped: &[(UnspecifiedLimitation, 5), (MultipleSubgraphs, 15)],
        samples: &[("CONCATENATION", 1, UnspecifiedLimitation), ("MUL", 69, Mapped), ("MUL", 6, MultipleSubgraphs)],
    },
    Expected {
        file: "05_v14.1_tiny_yolo_edgetpu.log",
        version: "14.1.317412892",
        input: "tiny_yolo.tflite",
        output: "tiny_yolo_edgetpu.tflite",
        rows: 8,
        total: 25,
        tpu: 19,
        unmapped: &[(MultipleSubgraphs, 4), (UnsupportedVersion, 1), (UnspecifiedLimitation, 1)],
        samples: &[
            ("RESIZE_NEAREST_NEIGHBOR", 1, UnsupportedVersion),
            ("CONV_2D", 11, Mapped),
            ("QUANTIZE", 2, Mapped),
        ],
    },
    Expected {
        file: "07_v15_ssd_output_tflite_graph_edgetpu.log",
        version: "15.0.340273435",
        input: "output_tflite_graph.tflite",
        output: "output_tflite_graph_edgetpu.tflite",
        rows: 6,
        total: 64,
        tpu: 63,
        unmapped: &[(UnsupportedDataType, 1)],
        samples: &[("CUSTOM", 1, UnsupportedDataType), ("CONV_2D", 34, Mapped), ("RESHAPE", 13, Mapped)],
    },
    Expected {
        file: "08_v2.1_resnet_like_model_edgetpu.log",
        version: "2.1.302470888",
        input: "model.tflite",
        output: "model_edgetpu.tflite",
        rows: 8,
        total: 77,
        tpu: 75,
        unmapped: &[(UnspecifiedLimitation, 1), (UnsupportedDataType, 1)],
        samples: &[("CONV_2D", 53, Mapped), ("ADD", 17, Mapped), ("QUANTIZE", 1, UnspecifiedLimitation)],
    },
    Expected {
        file: "09_v2.0_mnist_edgetpu.log",
        version: "2.0.267685300",
        input: "mnist.tflite",
        output: "mnist_edgetpu.tflite",
        rows: 7,
        total: 8,
        tpu: 7,
        unmapped: &[(UnsupportedDataType, 1)],
        samples: &[("FULLY_CONNECTED", 2, Mapped), ("DEQUANTIZE", 1, UnsupportedDataType), ("QUANTIZE", 1, Mapped)],
    },
    Expected {
        file: "10_v16_segmented_keypoint_classifier_segment_0_of_2_edgetpu.log",
        version: "16.0.384591198",
        input: "keypoint_classifier_segment_0_of_2.tflite",
        output: "keypoint_classifier_segment_0_of_2_edgetpu.tflite",
        rows: 1,
        total: 2,
        tpu: 0,
        unmapped: &[(UnsupportedDataType, 2)],
        samples: &[("FULLY_CONNECTED", 2, UnsupportedDataType)],
    },
    Expected {
        file: "11_v16_segmented_keypoint_classifier_segment_1_of_2_edgetpu.log",
        version: "16.0.384591198",
        input: "keypoint_classifier_segment_1_of_2.tflite",
        output: "keypoint_classifier_segment_1_of_2_edgetpu.tflite",
        rows: 2,
        total: 3,
        tpu: 0,
        unmapped: &[(UnsupportedDataType, 3)],
        samples: &[("SOFTMAX", 1, UnsupportedDataType), ("FULLY_CONNECTED", 2, UnsupportedDataType)],
    },
    Expected {
        file: "12_v16_keypoint_classifier_int_quantization_edgetpu.log",
        version: "16.0.384591198",
        input: "keypoint_classifier_int_quantization.tflite",
        output: "keypoint_classifier_int_quantization_edgetpu.tflite",
        rows: 4,
        total: 7,
        tpu: 5,
        unmapped: &[(UnspecifiedLimitation, 1), (UnsupportedDataType, 1)],
        samples: &[("FULLY_CONNECTED", 4, Mapped), ("DEQUANTIZE", 1, UnsupportedDataType)],
    },
    Expected {
        file: "13_v16_cocompiled_mobilenet_v2_1.0_224_inat_bird_quant_edgetpu.log",
        version: "16.0.384591198",
        input: "test/model/mobilenet_v2_1.0_224_inat_bird_quant.tflite",
        output: "test/model/compiled/mobilenet_v2_1.0_224_inat_bird_quant_edgetpu.tflite",
        rows: 6,
        total: 65,
        tpu: 65,
        unmapped: &[],
        samples: &[("CONV_2D", 35, Mapped), ("AVERAGE_POOL_2D", 1, Mapped)],
    },
    Expected {
        file: "14_v16_cocompiled_efficientnet-edgetpu-M_quant_edgetpu.log",
        version: "16.0.384591198",
        input: "test/model/efficientnet-edgetpu-M_quant.tflite",
        output: "test/model/compiled/efficientnet-edgetpu-M_quant_edgetpu.tflite",
        rows: 7,
        total: 86,
        tpu: 86,
        unmapped: &[],
        samples: &[("CONV_2D", 50, Mapped), ("MEAN", 1, Mapped), ("ADD", 17, Mapped)],
    },
    Expected {
        file: "15_v16_float_model_all_cpu_model_edgetpu.log",
        version: "16.0.384591198",
        input: "model.tflite",
        output: "model_edgetpu.tflite",
        rows: 3,
        total: 4,
        tpu: 0,
        unmapped: &[(UnsupportedDataType, 4)],
        samples: &[("RESHAPE", 1, UnsupportedDataType), ("FULLY_CONNECTED", 2, UnsupportedDataType)],
    },
    Expected {
        file: "16_v16_yolov8n_160_all_mapped_edgetpu.log",
        version: "16.0.384591198",
        input: "yolov8n_saved_model/yolov8n_full_integer_quant.tflite",
        output: "yolov8n_saved_model/yolov8n_full_integer_quant_edgetpu.tflite",
        rows: 14,
        total: 257,
        tpu: 257,
        unmapped: &[],
        samples: &[("TRANSPOSE", 6, Mapped), ("STRIDED_SLICE", 20, Mapped), ("SUB", 2, Mapped)],
    },
];

fn check_model(e: &Expected, m: &ModelReport) {
    let f = e.file;
    assert_eq!(m.input.as_deref(), Some(Path::new(e.input)), "{f}");
    assert_eq!(m.output.as_deref(), Some(Path::new(e.output)), "{f}");
    assert_eq!(m.operations.len(), e.rows, "{f}: rows");
    assert_eq!(m.ops_total(), Some(e.total), "{f}: total");
    assert_eq!(m.ops_on_tpu(), Some(e.tpu), "{f}: on TPU");
    assert_eq!(m.ops_on_cpu(), Some(e.total - e.tpu), "{f}: on CPU");
    for (reason, n) in e.unmapped {
        let got: u32 = m.unmapped().filter(|r| &r.reason == reason).map(|r| r.count).sum();
        assert_eq!(got, *n, "{f}: instances with {reason:?}");
    }
    let listed: u32 = e.unmapped.iter().map(|(_, n)| n).sum();
    assert_eq!(listed, e.total - e.tpu, "{f}: the expected reasons cover every CPU op");
    for (op, count, reason) in e.samples {
        assert!(
            m.operations.iter().any(|r| r.operator == *op && r.count == *count && r.reason == *reason),
            "{f}: no row {op} {count} {reason:?} in {:?}",
            m.operations
        );
    }
    // Logs carry no stdout figures.
    assert_eq!((m.input_bytes, m.on_chip_used_bytes, m.off_chip_streamed_bytes, m.subgraphs), (None, None, None, None));
}

#[test]
fn every_log_parses_with_its_figures() {
    let dir = logs_dir();
    let on_disk: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".log"))
        .collect();
    assert_eq!(on_disk.len(), 15, "{on_disk:?}");
    for name in &on_disk {
        assert!(LOGS.iter().any(|e| e.file == name), "{name} has no expectations");
    }
    for e in LOGS {
        let r = parse(e.file);
        assert!(r.unparsed.is_empty(), "{}: unparsed {:?}", e.file, r.unparsed);
        assert!(r.errors.is_empty() && r.succeeded.is_none(), "{}", e.file);
        assert_eq!(r.version, CompilerVersion::parse(e.version), "{}", e.file);
        assert_eq!(r.version.map(|v| v.to_string()).as_deref(), Some(e.version), "{}", e.file);
        let m = r.single_model().unwrap_or_else(|| panic!("{}: {} models", e.file, r.models.len()));
        check_model(e, m);
    }
}

#[test]
fn status_strings_of_the_logs_all_map_to_known_reasons() {
    for e in LOGS {
        for row in &parse(e.file).models[0].operations {
            assert!(!matches!(row.reason, OpReason::Other(_)), "{}: {:?}", e.file, row.status);
            assert_eq!(OpReason::from_status(&row.status), row.reason);
        }
    }
}

/// The capture's first line: the command line, which is not compiler output.
const COMMAND_LINE: &str = "edgetpu_compiler -sa yolov5s-int8-224.tflite";

#[test]
fn stdout_capture_with_show_operations() {
    let r = parse("stdout_v16_yolov5s-int8-224_show_operations.txt");
    assert_eq!(r.unparsed, vec![COMMAND_LINE]);
    assert_yolov5s_stdout(&r);
    assert_eq!(r.models[0].partial_notice.as_deref(), Some(edgetpu_compiler::PARTIAL_NOTICE));
}

/// Every figure of the YOLOv5s stdout capture.
fn assert_yolov5s_stdout(r: &Report) {
    assert_eq!(r.version.map(|v| v.to_string()).as_deref(), Some("16.0.384591198"));
    assert_eq!(r.timeout_timer_sec, Some(180));
    assert_eq!(r.compile_time_ms, Some(3173));
    assert!(!r.cocompiled);
    assert_eq!(r.succeeded, Some(true));
    assert!(r.finished_within_timeout);
    assert!(r.errors.is_empty());
    let m = r.single_model().unwrap();
    assert_eq!(m.input.as_deref(), Some(Path::new("yolov5s-int8-224.tflite")));
    assert_eq!(m.output.as_deref(), Some(Path::new("yolov5s-int8-224_edgetpu.tflite")));
    assert_eq!(m.operation_log.as_deref(), Some(Path::new("yolov5s-int8-224_edgetpu.log")));
    assert_eq!(m.input_bytes, Some(7_728_005)); // 7.37MiB
    assert_eq!(m.output_bytes, Some(8_745_124)); // 8.34MiB
    assert_eq!(m.on_chip_used_bytes, Some(6_375_342)); // 6.08MiB
    assert_eq!(m.on_chip_remaining_bytes, Some(0)); // 0.00B
    assert_eq!(m.off_chip_streamed_bytes, Some(1_782_579)); // 1.70MiB
    assert_eq!(m.off_chip_streamed_bytes, Some(mib(170)));
    assert_eq!(m.subgraphs, Some(2));
    assert_eq!((m.total_operations, m.tpu_operations, m.cpu_operations), (Some(294), Some(289), Some(5)));
    assert!(m.partially_mapped && !m.only_unmapped_listed);
    // The table agrees with the stated counts.
    assert_eq!(m.operations.len(), 17);
    assert_eq!(m.operations.iter().map(|r| r.count).sum::<u32>(), 294);
    assert_eq!(m.operations.iter().filter(|r| r.reason.is_mapped()).map(|r| r.count).sum::<u32>(), 289);
    let first = &m.operations[0];
    assert_eq!(
        (first.operator.as_str(), first.count, &first.reason),
        ("RESIZE_NEAREST_NEIGHBOR", 2, &OpReason::Mapped)
    );
    let last = &m.operations[16];
    assert_eq!((last.operator.as_str(), last.count, &last.reason), ("CONV_2D", 62, &OpReason::Mapped));
    let unmapped: Vec<(&str, u32)> = m.unmapped().map(|r| (r.operator.as_str(), r.count)).collect();
    assert_eq!(unmapped, vec![("CONCATENATION", 1), ("TRANSPOSE", 1), ("QUANTIZE", 2), ("RESHAPE", 1)]);
    assert!(m.unmapped().all(|r| r.reason == OpReason::UnspecifiedLimitation));
}

const WARNING: &str = "WARNING: an unexpected line from a newer compiler";

/// The stdout capture's text with its paragraph replaced by `paragraph` (lines).
fn stdout_with_paragraph(paragraph: &[&str]) -> String {
    let path = logs_dir().join("stdout_v16_yolov5s-int8-224_show_operations.txt");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let at = text.find("Model successfully compiled but").expect("the capture has the paragraph");
    let end = at + text[at..].find('\n').unwrap();
    format!("{}{}{}", &text[..at], paragraph.join("\n"), &text[end..])
}

/// `text` with `line` inserted after its `n`-th line.
fn insert_after(text: &str, n: usize, line: &str) -> String {
    let mut lines: Vec<&str> = text.lines().collect();
    lines.insert(n, line);
    lines.join("\n") + "\n"
}

/// The paragraph as compiler 14.1 wraps it.
const WRAPPED: [&str; 4] = [
    "Model successfully compiled but not all operations are supported by the",
    "Edge TPU. A percentage of the model will instead run on the CPU, which is",
    "slower. If possible, consider updating your model to use only operations",
    "supported by the Edge TPU. For details, visit g.co/coral/model-reqs.",
];

/// An unknown line is kept wherever it appears, before, in or after the "not all operations are
/// supported" paragraph, with or without the paragraph's closing `model-reqs` sentence, on one
/// line or wrapped; the figures around it still parse.
#[test]
fn unknown_lines_around_the_paragraph_are_kept() {
    let full = edgetpu_compiler::PARTIAL_NOTICE;
    let short = full.strip_suffix(" For details, visit g.co/coral/model-reqs.").unwrap();
    let variants: [(&str, Vec<&str>, &str); 4] = [
        ("one line", vec![full], full),
        ("one line without model-reqs", vec![short], short),
        ("wrapped", WRAPPED.to_vec(), full),
        ("wrapped without model-reqs", vec![WRAPPED[0], WRAPPED[1], WRAPPED[2], "supported by the Edge TPU."], short),
    ];
    for (what, paragraph, notice) in variants {
        let text = stdout_with_paragraph(&paragraph);
        // Without an extra line: the paragraph is read whole.
        let r = Report::parse(&text);
        assert_eq!(r.unparsed, vec![COMMAND_LINE], "{what}");
        assert_eq!(r.models[0].partial_notice.as_deref(), Some(notice), "{what}");
        assert_yolov5s_stdout(&r);
        let start = text.lines().position(|l| l.starts_with("Model successfully")).unwrap() + 1;
        let last = start + paragraph.len() - 1;
        // After the banner, right after the paragraph, after the CPU count, in the table, at the end.
        for n in [2, last, last + 2, last + 8, text.lines().count()] {
            let r = Report::parse(&insert_after(&text, n, WARNING));
            assert_eq!(r.unparsed, vec![COMMAND_LINE, WARNING], "{what}, after line {n}");
            assert_eq!(r.models[0].partial_notice.as_deref(), Some(notice), "{what}, after line {n}");
            assert_yolov5s_stdout(&r);
        }
    }
    // Inside the wrapped paragraph the line ends it: the notice is cut there, and the rest of the
    // paragraph is kept as unparsed prose, in order; the figures still parse.
    let text = stdout_with_paragraph(&WRAPPED);
    let start = text.lines().position(|l| l.starts_with("Model successfully")).unwrap() + 1;
    let r = Report::parse(&insert_after(&text, start + 1, WARNING));
    assert_eq!(r.unparsed, vec![COMMAND_LINE, WARNING, WRAPPED[2], WRAPPED[3]]);
    assert_eq!(r.models[0].partial_notice.as_deref(), Some(format!("{} {}", WRAPPED[0], WRAPPED[1]).as_str()));
    assert_yolov5s_stdout(&r);
    // A blank line ends it too.
    let r = Report::parse(&insert_after(&text, start + 1, ""));
    assert_eq!(r.unparsed, vec![COMMAND_LINE, WRAPPED[2], WRAPPED[3]]);
    assert_yolov5s_stdout(&r);
}
