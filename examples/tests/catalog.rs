//! `--model NAME` through the model catalog: the catalog's file names are those of the test data,
//! so the test data directory serves as the cache directory. (One test in this binary: it sets
//! `EDGETPU_MODELS_DIR` for the whole process.)

mod common;

use edgetpu_examples::device::{self, resolve_model};
use edgetpu_examples::{DeviceArgs, Session};
use std::path::Path;

#[test]
fn catalog_names_resolve_to_fetched_files_and_their_labels() {
    let td = common::testdata();
    std::env::set_var("EDGETPU_MODELS_DIR", &td);

    let (path, labels) = resolve_model(Path::new("mobilenet_v1_0.25_128")).unwrap();
    assert_eq!(path, td.join("mobilenet_v1_0.25_128_quant.tflite"), "the CPU model first");
    assert_eq!(labels, Some(td.join("imagenet_labels.txt")));
    // With a Coral attached, auto then takes the compiled twin beside it.
    let (chosen, list, _) = device::choose(&path, "auto", || vec!["usb:1-1".into()]).unwrap();
    assert_eq!((chosen, list.as_deref()), (td.join("mobilenet_v1_0.25_128_quant_edgetpu.tflite"), Some("usb:1-1")));

    // A session on the CPU classifies with the catalog's label file.
    let cpu = DeviceArgs { device: "cpu".into(), threads: 1 };
    let mut s = Session::open(Path::new("mobilenet_v1_0.25_128"), &cpu).unwrap();
    assert_eq!(s.model_path, td.join("mobilenet_v1_0.25_128_quant.tflite"));
    let labels = s.labels(None).unwrap().unwrap();
    let image = edgetpu_examples::open_image(&td.join("cat.bmp")).unwrap();
    let top = s.classify(&image, 1, Some(&labels)).unwrap().value;
    assert_eq!((top[0].id, top[0].label.as_deref()), (283, Some("tiger cat")));

    // A model without labels, and one that was never fetched.
    assert_eq!(resolve_model(Path::new("movenet_lightning")).unwrap().1, None);
    let e = format!("{:#}", resolve_model(Path::new("ssd_mobilenet_v2_coco")).unwrap_err());
    assert!(e.contains("edgetpu models fetch ssd_mobilenet_v2_coco") && e.contains(&td.display().to_string()), "{e}");
    // Files and unknown names are left as they are (opening them names the path).
    let file = td.join("cat.bmp");
    assert_eq!(resolve_model(&file).unwrap(), (file, None));
    assert_eq!(resolve_model(Path::new("no_such_model")).unwrap().0, Path::new("no_such_model"));
}
