//! Bit-exactness of single CPU kernels: every case of `tests/data/ops/` (a one-op model with its
//! inputs and the outputs TFLite's reference kernels computed, see that directory's README) is
//! reproduced byte for byte with the reference options (1 thread) and with the default options.
//! The cases live in this repository, so these tests need nothing else.

mod common;

use edgetpu::cpu::{Interpreter, Options};
use edgetpu::Model;
use std::path::PathBuf;
use std::sync::Arc;

fn ops_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/ops")
}

fn read(path: &std::path::Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn check(case: &str, options: Options) {
    let dir = ops_dir().join(case);
    assert!(dir.is_dir(), "case directory {} is missing", dir.display());
    let model = Arc::new(Model::from_bytes(read(&dir.join("model.tflite"))).unwrap_or_else(|e| panic!("{case}: {e}")));
    let mut it = Interpreter::new(model, &options).unwrap_or_else(|e| panic!("{case}: {e}"));
    let (n_in, n_out) = (it.inputs().len(), it.outputs().len());
    assert!(n_out > 0, "{case}: the model has no outputs");
    for i in 0..n_in {
        let bytes = read(&dir.join(format!("in{i}.bin")));
        it.set_input(i, &bytes).unwrap_or_else(|e| panic!("{case}: {e}"));
    }
    for extra in [format!("in{n_in}.bin"), format!("out{n_out}.bin")] {
        assert!(!dir.join(&extra).exists(), "{case}: {extra} exists but the model has no such tensor");
    }
    it.invoke().unwrap_or_else(|e| panic!("{case}: {e}"));
    let mut failures = Vec::new();
    for j in 0..n_out {
        let want = read(&dir.join(format!("out{j}.bin")));
        let d = common::diff_summary(it.output(j).unwrap(), &want);
        if !d.is_empty() {
            failures.push(format!("output {j}: {d}"));
        }
    }
    assert!(failures.is_empty(), "{case} ({options:?}): {}", failures.join("; "));
}

macro_rules! cases {
    ($($name:ident,)*) => {
        const CASES: &[&str] = &[$(stringify!($name)),*];
        mod reference {
            $( #[test] fn $name() { super::check(stringify!($name), super::Options { reference: true, threads: 1, ..Default::default() }); } )*
        }
        mod fast {
            $( #[test] fn $name() { super::check(stringify!($name), super::Options::default()); } )*
        }
    };
}

cases! {
    batch_to_space_f32,
    batch_to_space_i8_3d,
    batch_to_space_u8_crops,
    fuzz_pad_u8_i64_paddings,
    fuzz_padv2_f32_i64_paddings,
    depth_to_space_f32,
    depth_to_space_i8_bs3,
    depth_to_space_u8,
    fully_connected_i8_per_channel_ties,
    fully_connected_i8_per_channel_zero_points,
    fully_connected_i8_per_tensor_ties,
    fully_connected_u8_ties,
    gather_f32_runtime_indices,
    gather_i32_int64_indices,
    gather_i8_axis_last_2d_indices,
    gather_u8_axis0,
    gather_u8_batch_dims,
    hard_swish_f32,
    hard_swish_i8,
    hard_swish_i8_equal_scales,
    hard_swish_i8_tiny_scale,
    hard_swish_i8_wide,
    hard_swish_u8,
    hard_swish_u8_huge_scale,
    hard_swish_u8_narrow,
    l2_norm_f32,
    l2_norm_i8,
    l2_norm_u8,
    l2_norm_u8_deep,
    leaky_relu_f32,
    leaky_relu_f32_alpha_gt1,
    leaky_relu_f32_alpha_negative,
    leaky_relu_i8,
    leaky_relu_i8_alpha_gt1,
    leaky_relu_u8,
    leaky_relu_u8_alpha_small,
    maximum_f32_const,
    maximum_i8_5d,
    maximum_i8_same,
    maximum_u8_broadcast,
    minimum_i32,
    minimum_i8_scalar_const,
    minimum_u8_broadcast,
    prelu_f32,
    prelu_i8_channel,
    prelu_i8_same_shape,
    prelu_u8_broadcast_hw,
    prelu_u8_channel,
    slice_f32_5d_i64,
    slice_i8_3d,
    slice_u8_4d,
    space_to_batch_f32,
    space_to_batch_i8_3d,
    space_to_batch_u8_pad,
    space_to_depth_f32,
    space_to_depth_i8_bs3,
    space_to_depth_u8,
    strided_slice_f32_ellipsis,
    strided_slice_f32_shrink_negative,
    strided_slice_i32_reverse_all,
    strided_slice_i8_5d,
    strided_slice_i8_ellipsis_new_axis,
    strided_slice_i8_masks,
    strided_slice_i8_shrink,
    strided_slice_u8_basic,
    strided_slice_u8_clamped,
    strided_slice_u8_new_axis,
    strided_slice_u8_offset,
    strided_slice_u8_partial_spec,
    sum_f32,
    sum_i8_channels_neg_axis,
    sum_i8_saturating,
    sum_u8_hw,
    sum_u8_300x300x3,
    sum_u8_two_axes_apart,
    tanh_f32,
    tanh_i8,
    tanh_u8,
    tanh_u8_odd_scales,
    tile_bool_2d,
    tile_f32_2d,
    tile_f32_all_ones,
    tile_f32_runtime_i64_multiples,
    tile_i16_3d_ones,
    tile_i32_1d,
    tile_i64_2d,
    tile_i8_3d_i64_multiples,
    tile_i8_4d,
    tile_u8_4d,
    tile_u8_6d,
    tile_u8_runtime_multiples,
    transpose_conv_f32_same_s2,
    transpose_conv_i8_per_tensor,
    transpose_conv_i8_relu_big,
    transpose_conv_i8_same_s21,
    transpose_conv_i8_same_s2_odd,
    transpose_conv_i8_valid_s1,
    transpose_conv_u8_relu6_s3,
    transpose_conv_u8_same_s2_bias,
    transpose_conv_u8_valid_s2,
    transpose_f32_5d,
    transpose_i8_3d,
    transpose_i8_6d,
    transpose_u8_2d,
    transpose_u8_nchw,
}

/// Every case directory is listed above (and so is run), and every listed case has files.
#[test]
fn every_case_is_listed() {
    let mut dirs: Vec<String> = std::fs::read_dir(ops_dir())
        .unwrap_or_else(|e| panic!("{}: {e}", ops_dir().display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_dir())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    dirs.sort();
    let mut listed: Vec<String> = CASES.iter().map(|s| s.to_string()).collect();
    listed.sort();
    assert_eq!(dirs, listed, "case directories and the list in tests/ops.rs differ");
    for case in CASES {
        for file in ["model.tflite", "out0.bin"] {
            let len = std::fs::metadata(ops_dir().join(case).join(file)).map_or(0, |m| m.len());
            assert!(len > 0, "{case}/{file} is missing or empty");
        }
    }
}
