//! Property tests of the fast paths outside the convolutions: 8-bit ADD/SUB/MUL tables (with
//! broadcasting), requantize and RELU tables, the threaded uint8 bilinear resize and the byte
//! arg-max, each against its reference kernel on random shapes, scales and zero points.

use super::common::Q8;
use crate::cpu::kernel::{BuildCtx, Built, QuantParams, TensorInfo};
use crate::cpu::par::Par;
use crate::error::Result;
use crate::model::{Activation, OpOptions, TensorType};
use proptest::prelude::*;

type Builder = fn(&mut BuildCtx<'_>) -> Result<Built>;

fn tensor(index: usize, shape: &[usize], dtype: TensorType, q: Option<(f32, i32)>) -> TensorInfo {
    TensorInfo {
        index,
        name: format!("t{index}"),
        shape: shape.to_vec(),
        dtype,
        quant: q.map(|(s, z)| QuantParams { scale: vec![s], zero_point: vec![z], axis: 0 }),
    }
}

/// Builds `f` in reference or fast mode and runs it on `ins` with `threads`.
#[allow(clippy::too_many_arguments)]
fn run(
    f: Builder,
    op: &str,
    options: &OpOptions,
    inputs: &[TensorInfo],
    constants: &[Option<&[u8]>],
    output: &TensorInfo,
    ins: &[&[u8]],
    reference: bool,
    threads: usize,
) -> Result<Vec<u8>> {
    let mut ctx = BuildCtx {
        op_name: op,
        version: 1,
        node: 0,
        options,
        custom_options: None,
        inputs: inputs.iter().cloned().map(Some).collect(),
        constants: constants.to_vec(),
        outputs: vec![output.clone()],
        intermediates: Vec::new(),
        reference,
        vnni: false,
        threads: 2,
    };
    let built = f(&mut ctx)?;
    let len = ctx.outputs[0].byte_len();
    let outs = super::test_util::run_kernel(&built, ins, &[len], &Par::new(threads)?, |_, _| 0xA5)?;
    Ok(outs.into_iter().next().unwrap_or_default())
}

fn bytes(seed: u64, n: usize) -> Vec<u8> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 24) as u8
        })
        .collect()
}

fn q8() -> impl Strategy<Value = TensorType> {
    prop_oneof![Just(TensorType::UINT8), Just(TensorType::INT8)]
}

fn qparams(t: TensorType) -> impl Strategy<Value = (f32, i32)> {
    let (lo, hi) = if t == TensorType::UINT8 { (0, 255) } else { (-128, 127) };
    (-4.0f64..0.5, lo..=hi).prop_map(|(e, z)| (10f64.powf(e) as f32, z))
}

fn activation() -> impl Strategy<Value = Activation> {
    prop_oneof![Just(Activation::None), Just(Activation::Relu), Just(Activation::Relu6)]
}

/// A shape with dimensions from `dims` and rank from `rank`, and a second shape
/// broadcast-compatible with it (each dimension 1 on one side or the other, or equal).
fn broadcast_pair(
    dims: std::ops::Range<usize>,
    rank: std::ops::RangeInclusive<usize>,
) -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    prop::collection::vec((dims, 0u8..3), rank).prop_map(|dims| {
        let a: Vec<usize> = dims.iter().map(|d| if d.1 == 1 { 1 } else { d.0 }).collect();
        let b: Vec<usize> = dims.iter().map(|d| if d.1 == 2 { 1 } else { d.0 }).collect();
        (a, b)
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(96))]

    #[test]
    fn binary_tables_equal_reference(
        t in q8(),
        // At least 11^3 output elements: smaller nodes skip the tables.
        (sa, sb) in broadcast_pair(11..32, 3..=4),
        op in prop_oneof![Just("ADD"), Just("SUB"), Just("MUL")],
        qa in qparams(TensorType::UINT8), qb in qparams(TensorType::UINT8), qo in qparams(TensorType::UINT8),
        act in activation(),
        seed in any::<u64>(),
    ) {
        // Zero points drawn in the uint8 range are shifted for int8.
        let shift = |q: (f32, i32)| if t == TensorType::INT8 { (q.0, q.1 - 128) } else { q };
        let (qa, qb, qo) = (shift(qa), shift(qb), shift(qo));
        let a = tensor(0, &sa, t, Some(qa));
        let b = tensor(1, &sb, t, Some(qb));
        let out = tensor(2, &[], t, Some(qo));
        let xa = bytes(seed, a.num_elements());
        let xb = bytes(seed ^ 0x55, b.num_elements());
        let options = OpOptions { activation: act, ..OpOptions::default() };
        let f: Builder = match op { "MUL" => super::elementwise::build_mul, _ => super::elementwise::build_add_sub };
        let inputs = [a, b];
        let want = run(f, op, &options, &inputs, &[None, None], &out, &[&xa, &xb], true, 1).unwrap();
        let got = run(f, op, &options, &inputs, &[None, None], &out, &[&xa, &xb], false, 1).unwrap();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn byte_tables_equal_reference(
        ti in q8(), to in q8(),
        qi in qparams(TensorType::UINT8), qo in qparams(TensorType::UINT8),
        op in prop_oneof![Just("QUANTIZE"), Just("RELU"), Just("RELU6"), Just("RELU_N1_TO_1")],
    ) {
        let to = if op == "QUANTIZE" { to } else { ti };
        let shift = |t: TensorType, q: (f32, i32)| if t == TensorType::INT8 { (q.0, q.1 - 128) } else { q };
        let input = tensor(0, &[256], ti, Some(shift(ti, qi)));
        let out = tensor(1, &[256], to, Some(shift(to, qo)));
        let all: Vec<u8> = (0..=255).collect();
        let f: Builder = if op == "QUANTIZE" { super::elementwise::build_quantize } else { super::elementwise::build_relu };
        let options = OpOptions::default();
        let want = run(f, op, &options, std::slice::from_ref(&input), &[None], &out, &[&all], true, 1).unwrap();
        let got = run(f, op, &options, &[input], &[None], &out, &[&all], false, 1).unwrap();
        prop_assert_eq!(got, want);
    }

    #[test]
    fn resize_bilinear_u8_equals_reference(
        n in 1usize..3, ih in 1usize..9, iw in 1usize..9, c in 1usize..24,
        oh in 1usize..20, ow in 1usize..20,
        align in any::<bool>(), half in any::<bool>(),
        threads in 1usize..3,
        seed in any::<u64>(),
    ) {
        prop_assume!(!(align && half));
        let input = tensor(0, &[n, ih, iw, c], TensorType::UINT8, Some((0.1, 3)));
        let size = tensor(1, &[2], TensorType::INT32, None);
        let size_bytes: Vec<u8> = [oh as i32, ow as i32].iter().flat_map(|v| v.to_le_bytes()).collect();
        let out = tensor(2, &[], TensorType::UINT8, Some((0.1, 3)));
        let x = bytes(seed, input.num_elements());
        let options = OpOptions { align_corners: align, half_pixel_centers: half, ..OpOptions::default() };
        let f: Builder = super::resize::build_bilinear;
        let inputs = [input, size];
        let consts = [None, Some(size_bytes.as_slice())];
        let want = run(f, "RESIZE_BILINEAR", &options, &inputs, &consts, &out, &[&x, &size_bytes], true, 1).unwrap();
        let got = run(f, "RESIZE_BILINEAR", &options, &inputs, &consts, &out, &[&x, &size_bytes], false, threads).unwrap();
        prop_assert_eq!(got, want);
    }
}

#[test]
fn q8_helpers_round_trip() {
    for b in 0..=255u8 {
        assert_eq!(Q8::U8.put(Q8::U8.get(&[b], 0)), b);
        assert_eq!(Q8::I8.put(Q8::I8.get(&[b], 0)), b);
    }
}

/// Shapes of rank 3 or 4, large enough that the kernels split them over two threads, and a
/// second shape broadcast-compatible with the first.
fn large_broadcast_shapes() -> impl Strategy<Value = (Vec<usize>, Vec<usize>)> {
    broadcast_pair(1..48, 3..=4)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// The broadcast's rows, taken in any parts (as threads take them), visit the same elements
    /// with the same input indices as the whole walk.
    #[test]
    fn broadcast_rows_equal_the_whole_walk((sa, sb) in large_broadcast_shapes(), cuts in prop::collection::vec(0usize..64, 0..4)) {
        let options = OpOptions::default();
        let ctx = BuildCtx {
            op_name: "ADD",
            version: 1,
            node: 0,
            options: &options,
            custom_options: None,
            inputs: Vec::new(),
            constants: Vec::new(),
            outputs: Vec::new(),
            intermediates: Vec::new(),
            reference: false,
            vnni: false,
            threads: 2,
        };
        let (bc, out) = super::common::Broadcast::new(&ctx, &sa, &sb).unwrap();
        let len: usize = out.iter().product();
        let mut whole = Vec::with_capacity(len);
        bc.for_each(|o, i, j| whole.push((o, i, j)));
        prop_assert_eq!(whole.len(), len);
        let row = bc.row_len();
        let rows = len / row;
        let mut bounds: Vec<usize> = cuts.iter().map(|c| c * rows / 64).chain([0, rows]).collect();
        bounds.sort_unstable();
        let mut parts = vec![(0usize, 0usize, 0usize); len];
        for w in bounds.windows(2) {
            let (first, last) = (w[0], w[1]);
            let part = &mut parts[first * row..last * row];
            let mut o = first * row;
            bc.for_rows(first, part, |slot, i, j| {
                *slot = (o, i, j);
                o += 1;
            });
        }
        prop_assert_eq!(parts, whole);
    }

    /// 8-bit ADD/SUB/MUL and float ADD/SUB/MUL/DIV with broadcasting split over two threads give
    /// the single-threaded reference kernels' bytes.
    #[test]
    fn binary_split_over_threads_equals_reference(
        (sa, sb) in large_broadcast_shapes(),
        op in prop_oneof![Just("ADD"), Just("SUB"), Just("MUL"), Just("DIV")],
        float in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let (t, q) = if float || op == "DIV" { (TensorType::FLOAT32, None) } else { (TensorType::INT8, Some((0.05f32, -3))) };
        let a = tensor(0, &sa, t, q);
        let b = tensor(1, &sb, t, q.map(|(s, z)| (s * 1.5, z + 7)));
        let out = tensor(2, &[], t, q.map(|(s, z)| (s * 2.5, z - 5)));
        let width = if t == TensorType::FLOAT32 { 4 } else { 1 };
        let values = |seed: u64, n: usize| -> Vec<u8> {
            if width == 1 {
                return bytes(seed, n);
            }
            // Floats in [-8, 8), none zero (DIV).
            bytes(seed, n).iter().flat_map(|&v| ((v as f32 - 127.5) / 16.0).to_le_bytes()).collect()
        };
        let xa = values(seed, a.num_elements());
        let xb = values(seed ^ 0x55, b.num_elements());
        let options = OpOptions { activation: Activation::Relu6, ..OpOptions::default() };
        let f: Builder = match op {
            "MUL" => super::elementwise::build_mul,
            "DIV" => super::elementwise::build_div,
            _ => super::elementwise::build_add_sub,
        };
        let inputs = [a, b];
        let want = run(f, op, &options, &inputs, &[None, None], &out, &[&xa, &xb], true, 1).unwrap();
        let got = run(f, op, &options, &inputs, &[None, None], &out, &[&xa, &xb], false, 2).unwrap();
        prop_assert_eq!(got, want);
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    /// The byte ARG_MAX / ARG_MIN (blocks of the inner dimension walked along the axis) give the
    /// indices the float path gives for the same values, ties to the first.
    #[test]
    fn byte_arg_min_max_equals_float_path(
        t in q8(),
        shape in prop::collection::vec(1usize..90, 1..=3),
        axis_pick in any::<prop::sample::Index>(),
        max in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let axis = axis_pick.index(shape.len());
        let op = if max { "ARG_MAX" } else { "ARG_MIN" };
        // Few distinct values, so that ties are common.
        let x: Vec<u8> = bytes(seed, shape.iter().product()).iter().map(|b| b % 5 * 50).collect();
        let floats: Vec<u8> = x
            .iter()
            .flat_map(|&b| (if t == TensorType::INT8 { b as i8 as f32 } else { b as f32 }).to_le_bytes())
            .collect();
        let axis_bytes = (axis as i32).to_le_bytes();
        let axis_t = tensor(1, &[1], TensorType::INT32, None);
        let out = tensor(2, &[], TensorType::INT32, None);
        let options = OpOptions::default();
        let f: Builder = super::reduce::build_arg_min_max;
        let consts = [None, Some(&axis_bytes[..])];
        let byte_in = [tensor(0, &shape, t, Some((0.5, 0))), axis_t.clone()];
        let float_in = [tensor(0, &shape, TensorType::FLOAT32, None), axis_t];
        let want = run(f, op, &options, &float_in, &consts, &out, &[&floats, &axis_bytes], false, 1).unwrap();
        let got = run(f, op, &options, &byte_in, &consts, &out, &[&x, &axis_bytes], false, 2).unwrap();
        prop_assert_eq!(got, want);
    }
}
