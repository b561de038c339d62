//! Output re-layout (PROTOCOL.md §6) on the real layouts of the test data: every tiled or padded
//! output of every compiled model round-trips dense -> device -> dense, the device copy puts each
//! element at a distinct place, and deeplab's tiles and posenet's padded Z really move bytes.

mod common;

use edgetpu::device::layout::{flip_signed, output_from_device, output_to_device};
use edgetpu::package::{DataType, Package};
use edgetpu::Model;

#[test]
fn every_output_layout_round_trips() {
    let mut tiled = 0;
    for rel in common::all_models().iter().filter(|r| r.ends_with("_edgetpu.tflite")) {
        let model = Model::open(common::testdata().join(rel)).unwrap();
        for pkg in Package::all(&model).unwrap() {
            for l in &pkg.main().output_layers {
                let es = l.data_type.size_bytes();
                let n = l.num_elements() * es * l.execution_count.max(1);
                // Distinct values per element (wrapping at 2^16 via two bytes where the layer is wide).
                let dense: Vec<u8> = (0..n).map(|i| (i * 7 + i / 251) as u8).collect();
                let mut device = vec![0xEEu8; l.size_bytes * l.execution_count.max(1)];
                output_to_device(l, &dense, &mut device).unwrap_or_else(|e| panic!("{rel}: {e}"));
                let mut back = vec![0u8; n];
                output_from_device(l, &device, &mut back).unwrap();
                assert_eq!(back, dense, "{rel}: {}", l.name);
                // Exactly the dense bytes were written (padding kept 0xEE): count the writes.
                let mut marks = vec![0u8; device.len()];
                output_to_device(l, &vec![1u8; n], &mut marks).unwrap();
                assert_eq!(marks.iter().filter(|&&m| m == 1).count(), n, "{rel}: {} overlapping places", l.name);
                if l.is_tiled() && device[..n] != dense[..] {
                    tiled += 1;
                }
            }
        }
    }
    // deeplab, movenet, posenet, the SSD segments and split_concat have outputs whose device
    // layout differs from the dense one.
    assert!(tiled >= 10, "only {tiled} outputs needed a real re-layout");
}

#[test]
fn signed_layers_flip_the_msb_of_each_element() {
    let model = Model::open(common::testdata().join("keras_lstm_mnist_ptq_edgetpu.tflite")).unwrap();
    let pkg = Package::all(&model).unwrap().remove(0);
    let l16 = pkg.main().output_layers.iter().find(|l| l.data_type == DataType::SignedFixedPoint16).unwrap();
    let mut b = [0x00, 0x00, 0xff, 0x7f];
    flip_signed(l16, &mut b);
    assert_eq!(b, [0x00, 0x80, 0xff, 0xff]);
    let u8l = pkg.main().output_layers.iter().find(|l| l.data_type == DataType::FixedPoint8).unwrap();
    let mut c = [1u8, 2];
    flip_signed(u8l, &mut c);
    assert_eq!(c, [1, 2]);
}
