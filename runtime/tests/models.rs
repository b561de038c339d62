//! Golden tests of the model loader over every model of the shared test data, against
//! `models.json` (written by an independent flatbuffer parser).

mod common;

use edgetpu::model::OpKind;
use edgetpu::Model;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};

fn tensor_json(model_sg: &edgetpu::Subgraph, idx: usize) -> Value {
    let t = &model_sg.tensors[idx];
    let quant = t.quantization.as_ref().map(|q| {
        let mut v = serde_json::json!({
            "scale": q.scale.iter().map(|&s| f64::from(s)).collect::<Vec<_>>(),
            "zero_point": q.zero_point,
        });
        if q.scale.len() > 1 {
            v["quantized_dimension"] = q.quantized_dimension.into();
        }
        v
    });
    serde_json::json!({ "index": idx, "name": t.name, "shape": t.shape, "dtype": t.dtype.name(), "quantization": quant })
}

#[test]
fn every_model_matches_models_json() {
    let root = common::testdata();
    let golden: Vec<Value> = serde_json::from_slice(&std::fs::read(root.join("models.json")).unwrap()).unwrap();
    let files = common::all_models();
    assert_eq!(golden.len(), files.len(), "models.json and the test data list different models");
    let mut checked = 0;
    for g in &golden {
        let file = g["file"].as_str().unwrap();
        let model = Model::open(root.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(model.version(), g["schema_version"].as_u64().unwrap() as u32, "{file}");
        assert_eq!(model.description().unwrap_or(""), g["description"].as_str().unwrap(), "{file}");
        let names: Vec<&str> = model.metadata().iter().map(|m| m.name.as_str()).collect();
        let want: Vec<&str> = g["metadata"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        assert_eq!(names, want, "{file} metadata");
        let gsubs = g["subgraphs"].as_array().unwrap();
        assert_eq!(model.subgraphs().len(), gsubs.len(), "{file}");
        for (sg, gs) in model.subgraphs().iter().zip(gsubs) {
            assert_eq!(sg.name.as_deref().unwrap_or(""), gs["name"].as_str().unwrap(), "{file}");
            assert_eq!(sg.tensors.len() as u64, gs["num_tensors"].as_u64().unwrap(), "{file}");
            let mut dtypes: BTreeMap<String, u64> = BTreeMap::new();
            for t in &sg.tensors {
                *dtypes.entry(t.dtype.name()).or_default() += 1;
            }
            let want: BTreeMap<String, u64> = gs["tensor_dtypes"]
                .as_object()
                .unwrap()
                .iter()
                .map(|(k, v)| (k.clone(), v.as_u64().unwrap()))
                .collect();
            assert_eq!(dtypes, want, "{file} tensor dtypes");

            // Operators grouped as models.json does: (kind, name, version) -> count and dtype signatures.
            let mut ops: BTreeMap<(String, String, i32), (u64, BTreeSet<String>)> = BTreeMap::new();
            let dt = |i: &Option<usize>| i.map_or("none".to_string(), |i| sg.tensors[i].dtype.name());
            for op in &sg.operators {
                let code = model.opcode(op);
                let kind = match code.kind {
                    OpKind::Builtin(_) => "builtin",
                    OpKind::Custom(_) => "custom",
                };
                let sig = format!(
                    "{}->{}",
                    op.inputs.iter().map(dt).collect::<Vec<_>>().join(","),
                    op.outputs.iter().map(dt).collect::<Vec<_>>().join(",")
                );
                let e = ops.entry((kind.to_string(), code.name().to_string(), code.version)).or_default();
                e.0 += 1;
                e.1.insert(sig);
            }
            let got: Vec<Value> = ops
                .into_iter()
                .map(|((k, n, v), (c, s))| {
                    serde_json::json!({ "kind": k, "name": n, "version": v, "count": c, "dtype_signatures": s.into_iter().collect::<Vec<_>>() })
                })
                .collect();
            assert_eq!(Value::from(got), gs["ops"], "{file} operators");
            let inputs: Vec<Value> = sg.inputs.iter().map(|&i| tensor_json(sg, i)).collect();
            let outputs: Vec<Value> = sg.outputs.iter().map(|&i| tensor_json(sg, i)).collect();
            assert_eq!(Value::from(inputs), gs["inputs"], "{file} inputs");
            assert_eq!(Value::from(outputs), gs["outputs"], "{file} outputs");
        }
        checked += 1;
    }
    assert_eq!(checked, 31);
}

#[test]
fn constant_data_is_borrowed_from_the_file() {
    let path = common::testdata().join("mobilenet_v1_0.25_128_quant.tflite");
    let model = Model::open(&path).unwrap();
    let file = std::fs::read(&path).unwrap();
    let bytes = model.bytes();
    let range = bytes.as_ptr() as usize..bytes.as_ptr() as usize + bytes.len();
    let mut constants = 0;
    for t in &model.subgraphs()[0].tensors {
        if let Some(d) = model.tensor_data(t) {
            assert!(range.contains(&(d.as_ptr() as usize)), "tensor {} data is not a slice of the map", t.name);
            let off = d.as_ptr() as usize - range.start;
            assert_eq!(d, &file[off..off + d.len()]);
            assert_eq!(d.len(), t.num_elements() * t.dtype.size_bytes().unwrap());
            constants += 1;
        }
    }
    // 28 conv/depthwise layers have weights and biases, plus reshape's shape tensor... at least 50.
    assert!(constants >= 50, "only {constants} constant tensors");
}

#[test]
fn labels_packed_in_models() {
    let root = common::testdata();
    let model = Model::open(root.join("mobilenet_v1_0.25_128_quant_edgetpu.tflite")).unwrap();
    let files = model.associated_files().unwrap();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].name, "imagenet_labels.txt");
    assert_eq!(files[0].data.len(), 21686);
    let labels = model.labels().unwrap().unwrap();
    assert_eq!(labels.len(), 1001);
    assert_eq!(labels[0], "background");
    assert_eq!(labels[1], "tench, Tinca tinca");
    // The packed file is the same as the label file shipped beside the models.
    let beside = std::fs::read_to_string(root.join("imagenet_labels.txt")).unwrap();
    let beside: Vec<&str> = beside.lines().collect();
    assert_eq!(labels.len(), beside.len());

    let birds = Model::open(root.join("mobilenet_v2_1.0_224_inat_bird_quant.tflite")).unwrap();
    let labels = birds.labels().unwrap().unwrap();
    assert_eq!(labels.len(), 965);
    assert_eq!(labels[0], "Haemorhous cassinii (Cassin's Finch)");

    let none = Model::open(root.join("deeplabv3_mnv2_dm05_pascal_quant.tflite")).unwrap();
    assert!(none.labels().unwrap().is_none());
    assert_eq!(none.min_runtime_version(), Some("1.14.0"));
}

#[test]
fn open_and_from_bytes_agree() {
    let path = common::testdata().join("movenet_single_pose_lightning_ptq_edgetpu.tflite");
    let a = Model::open(&path).unwrap();
    let b = Model::from_bytes(std::fs::read(&path).unwrap()).unwrap();
    assert_eq!(a.subgraphs().len(), b.subgraphs().len());
    let (sa, sb) = (&a.subgraphs()[0], &b.subgraphs()[0]);
    assert_eq!(sa.operators.len(), 60);
    assert_eq!(sa.operators.len(), sb.operators.len());
    for (x, y) in sa.operators.iter().zip(&sb.operators) {
        assert_eq!(a.op_name(x), b.op_name(y));
        assert_eq!(x.inputs, y.inputs);
        assert_eq!(a.custom_options(x), b.custom_options(y));
    }
    // The custom op is operator 2 of 60 in this model.
    assert_eq!(a.op_name(&sa.operators[2]), "edgetpu-custom-op");
    assert_eq!(a.path(), Some(path.as_path()));
    assert_eq!(b.path(), None);
}

#[test]
fn missing_file_names_the_path() {
    let err = Model::open("/nonexistent/model.tflite").unwrap_err();
    assert_eq!(err.kind(), edgetpu::ErrorKind::NotFound);
    assert!(err.to_string().contains("/nonexistent/model.tflite"), "{err}");
}

#[test]
fn signature_defs() {
    let root = common::testdata();
    let lstm = Model::open(root.join("keras_lstm_mnist_ptq.tflite")).unwrap();
    let sigs = lstm.signatures();
    assert_eq!(sigs.len(), 1);
    let sg = &lstm.subgraphs()[0];
    assert_eq!((sigs[0].key.as_str(), sigs[0].subgraph), ("serving_default", 0));
    // Named inputs and outputs are the subgraph's own tensors.
    assert_eq!(sigs[0].inputs.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["x"]);
    assert_eq!(sigs[0].outputs.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(), ["output_0"]);
    assert_eq!(sigs[0].inputs[0].1, sg.inputs[0]);
    assert_eq!(sigs[0].outputs[0].1, sg.outputs[0]);
    let plain = Model::open(root.join("mobilenet_v1_0.25_128_quant.tflite")).unwrap();
    assert!(plain.signatures().is_empty());
}
