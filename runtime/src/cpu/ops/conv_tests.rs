//! Property tests: the fast convolution kernels against the reference ones.
//!
//! Every case builds the same node twice, with `BuildCtx::reference` on and off, runs the
//! reference kernel once and the fast kernel on 1 and on 2 threads, and requires identical output
//! bytes. The fast kernel's output buffer is pre-filled with the complement of the expected bytes,
//! so an element it forgets to write is caught too. Tensor values come from a seeded generator
//! (proptest shrinks the shapes and options; the seed picks the values).

use super::common::{OutputStage, Q8};
use super::conv::build_conv;
use super::depthwise::build_depthwise;
use super::fully_connected::build_fully_connected;
use crate::cpu::gemm::{self, Isa, Packed};
use crate::cpu::kernel::{BuildCtx, Built, QuantParams, TensorInfo};
use crate::cpu::par::Par;
use crate::error::Result;
use crate::model::{Activation, OpOptions, Padding, TensorType};
use proptest::prelude::*;
use std::sync::OnceLock;

/// splitmix64.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: i64, hi: i64) -> i64 {
        lo + (self.next() % (hi - lo + 1) as u64) as i64
    }
    /// Uniform in `[0, 1)`.
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// `10^e` with `e` uniform in `[lo, hi)`.
    fn log_uniform(&mut self, lo: f64, hi: f64) -> f32 {
        10f64.powf(lo + (hi - lo) * self.unit()) as f32
    }
}

/// `n` 8-bit values: mode 0 uniform, 1 extremes of the type (and the zero point), 2 within 3 of
/// the zero point (many zeros once it is subtracted).
fn q8_values(r: &mut Rng, n: usize, int8: bool, zp: i32, mode: u8) -> Vec<u8> {
    let (lo, hi) = if int8 { (-128i64, 127i64) } else { (0, 255) };
    (0..n)
        .map(|_| {
            let v = match mode {
                0 => r.range(lo, hi),
                1 => [lo, hi, lo + 1, hi - 1, zp as i64][r.range(0, 4) as usize],
                _ => (zp as i64 + r.range(-3, 3)).clamp(lo, hi),
            };
            v as u8
        })
        .collect()
}

fn i32_bytes(v: &[i32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

fn qtensor(
    index: usize,
    shape: &[usize],
    int8: bool,
    scale: Vec<f32>,
    zero_point: Vec<i32>,
    axis: usize,
) -> TensorInfo {
    TensorInfo {
        index,
        name: format!("t{index}"),
        shape: shape.to_vec(),
        dtype: if int8 { TensorType::INT8 } else { TensorType::UINT8 },
        quant: Some(QuantParams { scale, zero_point, axis }),
    }
}

/// Quantization of a convolution-like node.
struct Quant {
    in_scale: f32,
    in_zp: i32,
    filter_scales: Vec<f32>,
    filter_zp: i32,
    out_scale: f32,
    out_zp: i32,
}

/// uint8: per-tensor, random zero points. int8: filter zero point 0, per-channel scales (or, one
/// case in four, a single scale).
fn random_quant(r: &mut Rng, int8: bool, channels: usize) -> Quant {
    let in_scale = r.log_uniform(-3.0, 0.0);
    let f0 = r.log_uniform(-4.0, -1.0);
    // The effective multiplier in_scale * filter_scale / out_scale, mostly below 1, sometimes above.
    let real = r.log_uniform(-6.0, 0.5);
    let out_scale = in_scale * f0 / real;
    let (lo, hi) = if int8 { (-128, 127) } else { (0, 255) };
    let in_zp = r.range(lo, hi) as i32;
    let out_zp = r.range(lo, hi) as i32;
    let (filter_scales, filter_zp) = if !int8 {
        (vec![f0], r.range(0, 255) as i32)
    } else if r.range(0, 3) == 0 {
        (vec![f0], 0)
    } else {
        ((0..channels).map(|_| f0 * r.log_uniform(-1.0, 1.0)).collect(), 0)
    };
    Quant { in_scale, in_zp, filter_scales, filter_zp, out_scale, out_zp }
}

fn activation(a: u8) -> Activation {
    [Activation::None, Activation::Relu, Activation::Relu6][a as usize % 3]
}

fn random_bias(r: &mut Rng, n: usize, mode: u8) -> Vec<i32> {
    let b = if mode == 1 { 1i64 << 22 } else { 1 << 16 };
    (0..n).map(|_| r.range(-b, b) as i32).collect()
}

/// A node to build and run: inputs 0 (run-time), 1 (constant weights), 2 (optional constant bias).
struct Node {
    build: fn(&mut BuildCtx<'_>) -> Result<Built>,
    options: OpOptions,
    inputs: Vec<Option<TensorInfo>>,
    output: TensorInfo,
    input: Vec<u8>,
    filter: Vec<u8>,
    bias: Option<Vec<u8>>,
}

impl Node {
    fn build(&self, reference: bool, vnni: bool) -> Result<(Built, TensorInfo)> {
        let mut ctx = BuildCtx {
            op_name: "TEST",
            version: 1,
            node: 0,
            options: &self.options,
            custom_options: None,
            inputs: self.inputs.clone(),
            constants: vec![None, Some(&self.filter), self.bias.as_deref()],
            outputs: vec![self.output.clone()],
            intermediates: Vec::new(),
            reference,
            vnni,
            threads: 2,
        };
        let built = (self.build)(&mut ctx)?;
        Ok((built, ctx.outputs.remove(0)))
    }

    /// Runs `built` like the interpreter does: 8-byte aligned inputs, `scratch_bytes` per thread.
    fn run(&self, built: &Built, out_len: usize, par: &Par, fill: impl Fn(usize) -> u8) -> Result<Vec<u8>> {
        let mut ins: Vec<&[u8]> = vec![&self.input, &self.filter];
        if let Some(b) = &self.bias {
            ins.push(b);
        }
        let outs = super::test_util::run_kernel(built, &ins, &[out_len], par, |_, i| fill(i))?;
        Ok(outs.into_iter().next().unwrap_or_default())
    }

    /// Reference vs fast on 1 and 2 threads, byte for byte.
    fn check(&self) -> std::result::Result<(), TestCaseError> {
        let fail = |what: &str, e: crate::Error| TestCaseError::fail(format!("{what}: {e}"));
        let (rb, rout) = self.build(true, false).map_err(|e| fail("reference build", e))?;
        let len = rout.byte_len();
        let want = self.run(&rb, len, &pars()[0], |_| 0).map_err(|e| fail("reference run", e))?;
        // The AVX2/portable fast path, and the VNNI one where the CPU has it.
        let paths: &[bool] = if crate::cpu::gemm::vnni() { &[false, true] } else { &[false] };
        for &vnni in paths {
            let (fb, fout) = self.build(false, vnni).map_err(|e| fail("fast build", e))?;
            prop_assert_eq!(&rout.shape, &fout.shape);
            for par in pars() {
                let got = self.run(&fb, len, par, |i| !want[i]).map_err(|e| fail("fast run", e))?;
                if let Some(i) = (0..len).find(|&i| got[i] != want[i]) {
                    let bad = (0..len).filter(|&i| got[i] != want[i]).count();
                    let last = *rout.shape.last().unwrap_or(&1);
                    prop_assert!(
                        false,
                        "{} thread(s), output shape {:?}: {bad} of {len} bytes differ, first at flat index {i} \
                     (element {}, channel {}): reference {} fast {}",
                        par.threads(),
                        rout.shape,
                        i / last.max(1),
                        i % last.max(1),
                        want[i],
                        got[i]
                    );
                }
            }
        }
        Ok(())
    }
}

fn pars() -> &'static [Par; 2] {
    static PARS: OnceLock<[Par; 2]> = OnceLock::new();
    PARS.get_or_init(|| [Par::new(1).expect("1 thread"), Par::new(2).expect("2 threads")])
}

/// Shape and options of a CONV_2D or DEPTHWISE_CONV_2D case.
#[derive(Debug, Clone)]
struct ConvCase {
    int8: bool,
    batch: usize,
    /// Input height and width.
    hw: [usize; 2],
    /// Input channels; output channels (CONV_2D) or depth multiplier (DEPTHWISE_CONV_2D).
    ch: (usize, usize),
    kernel: [usize; 2],
    stride: [usize; 2],
    dilation: [usize; 2],
    valid: bool,
    act: u8,
    bias: bool,
    mode: u8,
    seed: u64,
}

fn conv_case(out_ch: std::ops::RangeInclusive<usize>) -> impl Strategy<Value = ConvCase> {
    (
        any::<bool>(),
        1usize..=2,
        [1usize..=12, 1usize..=12],
        (1usize..=40, out_ch),
        [1usize..=5, 1usize..=5],
        [1usize..=3, 1usize..=3],
        [1usize..=3, 1usize..=3],
        any::<bool>(),
        0u8..3,
        any::<bool>(),
        0u8..3,
        any::<u64>(),
    )
        .prop_map(|(int8, batch, hw, ch, kernel, stride, dilation, valid, act, bias, mode, seed)| ConvCase {
            int8,
            batch,
            hw,
            ch,
            kernel,
            stride,
            dilation,
            valid,
            act,
            bias,
            mode,
            seed,
        })
}

impl ConvCase {
    fn options(&self, depth_multiplier: usize) -> OpOptions {
        OpOptions {
            padding: if self.valid { Padding::Valid } else { Padding::Same },
            stride_h: self.stride[0] as i32,
            stride_w: self.stride[1] as i32,
            dilation_h: self.dilation[0] as i32,
            dilation_w: self.dilation[1] as i32,
            depth_multiplier: depth_multiplier as i32,
            activation: activation(self.act),
            ..OpOptions::default()
        }
    }

    /// The node; `depthwise` reads `ch.1` as the depth multiplier.
    fn node(&self, depthwise: bool) -> Node {
        let mut r = Rng(self.seed);
        let [h, w] = self.hw;
        let [kh, kw] = self.kernel;
        let ic = self.ch.0;
        let oc = if depthwise { ic * self.ch.1 } else { self.ch.1 };
        let q = random_quant(&mut r, self.int8, oc);
        let input_shape = [self.batch, h, w, ic];
        let (filter_shape, axis) = if depthwise { ([1, kh, kw, oc], 3) } else { ([oc, kh, kw, ic], 0) };
        let input = q8_values(&mut r, input_shape.iter().product(), self.int8, q.in_zp, self.mode);
        let filter = q8_values(&mut r, filter_shape.iter().product(), self.int8, q.filter_zp, self.mode);
        let bias = self.bias.then(|| i32_bytes(&random_bias(&mut r, oc, self.mode)));
        let f_zps = vec![q.filter_zp; q.filter_scales.len()];
        let bias_scale = q.in_scale * q.filter_scales.first().copied().unwrap_or(1.0);
        Node {
            build: if depthwise { build_depthwise } else { build_conv },
            options: self.options(if depthwise { self.ch.1 } else { 0 }),
            inputs: vec![
                Some(qtensor(0, &input_shape, self.int8, vec![q.in_scale], vec![q.in_zp], 0)),
                Some(qtensor(1, &filter_shape, self.int8, q.filter_scales, f_zps, axis)),
                self.bias.then(|| TensorInfo {
                    index: 2,
                    name: "bias".into(),
                    shape: vec![oc],
                    dtype: TensorType::INT32,
                    quant: Some(QuantParams { scale: vec![bias_scale], zero_point: vec![0], axis: 0 }),
                }),
            ],
            output: qtensor(3, &[], self.int8, vec![q.out_scale], vec![q.out_zp], 0),
            input,
            filter,
            bias,
        }
    }
}

/// Shape and options of a FULLY_CONNECTED case.
#[derive(Debug, Clone)]
struct FcCase {
    int8: bool,
    batches: usize,
    depth: usize,
    units: usize,
    act: u8,
    bias: bool,
    mode: u8,
    seed: u64,
}

fn fc_case() -> impl Strategy<Value = FcCase> {
    (any::<bool>(), 1usize..=5, 1usize..=300, 1usize..=70, 0u8..3, any::<bool>(), 0u8..3, any::<u64>()).prop_map(
        |(int8, batches, depth, units, act, bias, mode, seed)| FcCase {
            int8,
            batches,
            depth,
            units,
            act,
            bias,
            mode,
            seed,
        },
    )
}

impl FcCase {
    fn node(&self) -> Node {
        let mut r = Rng(self.seed);
        let q = random_quant(&mut r, self.int8, self.units);
        let input = q8_values(&mut r, self.batches * self.depth, self.int8, q.in_zp, self.mode);
        let filter = q8_values(&mut r, self.units * self.depth, self.int8, q.filter_zp, self.mode);
        let bias = self.bias.then(|| i32_bytes(&random_bias(&mut r, self.units, self.mode)));
        let f_zps = vec![q.filter_zp; q.filter_scales.len()];
        Node {
            build: build_fully_connected,
            options: OpOptions { activation: activation(self.act), ..OpOptions::default() },
            inputs: vec![
                Some(qtensor(0, &[self.batches, self.depth], self.int8, vec![q.in_scale], vec![q.in_zp], 0)),
                Some(qtensor(1, &[self.units, self.depth], self.int8, q.filter_scales, f_zps, 0)),
                self.bias.then(|| TensorInfo {
                    index: 2,
                    name: "bias".into(),
                    shape: vec![self.units],
                    dtype: TensorType::INT32,
                    quant: None,
                }),
            ],
            output: qtensor(3, &[], self.int8, vec![q.out_scale], vec![q.out_zp], 0),
            input,
            filter,
            bias,
        }
    }
}

/// TFLite's reference FULLY_CONNECTED written out on its own: exact int32 accumulators (the
/// filter zero point subtracted when it is per-tensor; per-channel weights are taken as
/// symmetric), bias, then `round(acc * (in_scale * filter_scale[u] / out_scale))` in
/// double precision, half away from zero, plus the output zero point, clamped to the activation.
fn fc_expected(node: &Node, act: Activation) -> Vec<u8> {
    let x = node.inputs[0].as_ref().unwrap();
    let w = node.inputs[1].as_ref().unwrap();
    let (xq, wq, yq) = (x.quant.as_ref().unwrap(), w.quant.as_ref().unwrap(), node.output.quant.as_ref().unwrap());
    let int8 = x.dtype == TensorType::INT8;
    let get = |b: &[u8], i: usize| if int8 { b[i] as i8 as i64 } else { b[i] as i64 };
    let (units, depth) = (w.shape[0], w.shape[1]);
    let batches = node.input.len().checked_div(depth).unwrap_or(0);
    let bias: Vec<i64> = node.bias.as_ref().map_or(vec![0; units], |b| {
        b.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64).collect()
    });
    let (qmin, qmax) = if int8 { (-128, 127) } else { (0, 255) };
    let (lo, hi) = crate::cpu::quant::activation_range_quantized(act, yq.scale[0], yq.zero_point[0], qmin, qmax);
    let mut out = Vec::with_capacity(batches * units);
    for b in 0..batches {
        for u in 0..units {
            let pick = |v: &[f32]| if v.len() == 1 { v[0] } else { v[u] };
            // Per-channel weights are symmetric to TFLite: their zero points are ignored.
            let wz = if wq.scale.len() == 1 { wq.zero_point[0] } else { 0 } as i64;
            let acc: i64 = (0..depth)
                .map(|i| {
                    (get(&node.filter, u * depth + i) - wz)
                        * (get(&node.input, b * depth + i) - xq.zero_point[0] as i64)
                })
                .sum::<i64>()
                + bias[u];
            let scale = xq.scale[0] as f64 * pick(&wq.scale) as f64 / yq.scale[0] as f64;
            let v = (acc as i32 as f64 * scale).round();
            // Outside the int32 range (absurd scales only) C++'s cast gives i32::MIN on x86.
            let v = if v.abs() < 2_147_483_648.0 { v as i64 } else { i32::MIN as i64 } + yq.zero_point[0] as i64;
            let v = v.clamp(lo as i64, hi as i64);
            out.push(if int8 { v as i8 as u8 } else { v as u8 });
        }
    }
    out
}

/// Per-channel int8 (and per-tensor int8 and uint8) FULLY_CONNECTED on fixed seeds: the reference
/// kernel and the fast ones (1 and 2 threads, VNNI where the CPU has it) against [`fc_expected`].
/// One case in three has power-of-two scales, where the exact product often ends in .25 or .75
/// and a fixed-point multiplier (rounding twice) would be off by one.
#[test]
fn fully_connected_matches_double_precision_requantization() {
    let mut r = Rng(0x5EED_F00D);
    let mut ties = 0;
    for case in 0..600 {
        let int8 = case % 4 != 3;
        let c = FcCase {
            int8,
            batches: r.range(1, 5) as usize,
            depth: r.range(1, 300) as usize,
            units: r.range(1, 70) as usize,
            act: r.range(0, 2) as u8,
            bias: r.range(0, 3) != 0,
            mode: r.range(0, 2) as u8,
            seed: r.next(),
        };
        let mut node = c.node();
        let mut q = Rng(c.seed ^ 0xA5A5);
        if int8 && case % 4 != 2 {
            // Per-channel scales (random_quant gives one scale now and then).
            let w = node.inputs[1].as_mut().unwrap().quant.as_mut().unwrap();
            let f0 = w.scale[0];
            w.scale = (0..c.units).map(|_| f0 * q.log_uniform(-1.0, 1.0)).collect();
            // Zero points (which TFLite ignores here) are 0 as the quantization spec says, or not.
            let nonzero = case % 8 == 1;
            w.zero_point = (0..c.units).map(|_| if nonzero { q.range(-20, 20) as i32 } else { 0 }).collect();
        }
        if case % 3 == 0 {
            // Powers of two: in_scale * filter_scale / out_scale = 2^-n exactly.
            let p2 = |e: i64| 2f32.powi(e as i32);
            node.inputs[0].as_mut().unwrap().quant.as_mut().unwrap().scale = vec![p2(-q.range(4, 9))];
            node.output.quant.as_mut().unwrap().scale = vec![p2(-q.range(0, 4))];
            let w = node.inputs[1].as_mut().unwrap().quant.as_mut().unwrap();
            for s in &mut w.scale {
                *s = p2(-q.range(2, 8));
            }
        }
        let act = activation(c.act);
        let want = fc_expected(&node, act);
        let (rb, rout) = node.build(true, false).unwrap();
        assert_eq!(rout.byte_len(), want.len(), "case {case}: {c:?}");
        let got = node.run(&rb, want.len(), &pars()[0], |i| !want[i]).unwrap();
        let bad: Vec<usize> = (0..want.len()).filter(|&i| got[i] != want[i]).collect();
        assert!(
            bad.is_empty(),
            "case {case} {c:?}, reference kernel: {} of {} differ, first at {}: {} vs {}",
            bad.len(),
            want.len(),
            bad[0],
            got[bad[0]] as i8,
            want[bad[0]] as i8
        );
        let paths: &[bool] = if gemm::vnni() { &[false, true] } else { &[false] };
        for &vnni in paths {
            let (fb, _) = node.build(false, vnni).unwrap();
            for par in pars() {
                let got = node.run(&fb, want.len(), par, |i| !want[i]).unwrap();
                let bad: Vec<usize> = (0..want.len()).filter(|&i| got[i] != want[i]).collect();
                assert!(
                    bad.is_empty(),
                    "case {case} {c:?}, fast kernel (vnni {vnni}, {} threads): {} of {} differ, first at {}",
                    par.threads(),
                    bad.len(),
                    want.len(),
                    bad[0]
                );
            }
        }
        // How many outputs a fixed-point multiplier would have got wrong (the test's own check
        // that it exercises double-rounding ties).
        ties += count_fixed_point_misses(&node, act, &want);
    }
    assert!(ties >= 20, "only {ties} double-rounding ties were exercised");
}

/// Outputs of `want` that `MultiplyByQuantizedMultiplier` (CONV_2D's requantization) would get
/// wrong for this FULLY_CONNECTED node.
fn count_fixed_point_misses(node: &Node, act: Activation, want: &[u8]) -> usize {
    let x = node.inputs[0].as_ref().unwrap();
    let w = node.inputs[1].as_ref().unwrap();
    let (xq, wq, yq) = (x.quant.as_ref().unwrap(), w.quant.as_ref().unwrap(), node.output.quant.as_ref().unwrap());
    let int8 = x.dtype == TensorType::INT8;
    let (units, depth) = (w.shape[0], w.shape[1]);
    if units == 0 || depth == 0 {
        return 0;
    }
    let get = |b: &[u8], i: usize| if int8 { b[i] as i8 as i32 } else { b[i] as i32 };
    let bias: Vec<i32> = node
        .bias
        .as_ref()
        .map_or(vec![0; units], |b| b.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect());
    let (qmin, qmax) = if int8 { (-128, 127) } else { (0, 255) };
    let (lo, hi) = crate::cpu::quant::activation_range_quantized(act, yq.scale[0], yq.zero_point[0], qmin, qmax);
    let mut misses = 0;
    for (i, &want) in want.iter().enumerate() {
        let (b, u) = (i / units, i % units);
        let wz = if wq.scale.len() == 1 { wq.zero_point[0] } else { 0 };
        let acc = (0..depth)
            .map(|k| (get(&node.filter, u * depth + k) - wz) * (get(&node.input, b * depth + k) - xq.zero_point[0]))
            .sum::<i32>()
            + bias[u];
        let fs = if wq.scale.len() == 1 { wq.scale[0] } else { wq.scale[u] };
        let (m, s) = crate::cpu::quant::quantize_multiplier(xq.scale[0] as f64 * fs as f64 / yq.scale[0] as f64);
        let v = crate::cpu::quant::multiply_by_quantized_multiplier(acc, m, s).saturating_add(yq.zero_point[0]);
        let v = v.clamp(lo, hi);
        misses += usize::from((if int8 { v as i8 as u8 } else { v as u8 }) != want);
    }
    misses
}

fn naive_gemm(a: &[i16], m: usize, w: &[i16], n: usize, kp: usize) -> Vec<i32> {
    let mut out = vec![0; m * n];
    for i in 0..m {
        for j in 0..n {
            out[i * n + j] = (0..kp).map(|k| a[i * kp + k] as i32 * w[j * kp + k] as i32).sum();
        }
    }
    out
}

/// Zero-point-subtracted 8-bit values (`-255..=255`), zero past `k` in each row of `kp`; `sparse`
/// zeroes most of them (the portable packed GEMM skips zero pairs).
fn operand(r: &mut Rng, rows: usize, k: usize, kp: usize, sparse: bool) -> Vec<i16> {
    let mut v = vec![0i16; rows * kp];
    for row in 0..rows {
        for x in &mut v[row * kp..row * kp + k] {
            if !sparse || r.range(0, 3) == 0 {
                *x = r.range(-255, 255) as i16;
            }
        }
    }
    v
}

impl Node {
    /// Degenerate shapes: the build may refuse them (both modes alike), else both kernels must run
    /// cleanly and agree.
    fn check_degenerate(&self) {
        match (self.build(true, false), self.build(false, crate::cpu::gemm::vnni())) {
            (Err(_), Err(_)) => {}
            (Ok(_), Ok(_)) => self.check().unwrap_or_else(|e| panic!("{e}")),
            (r, f) => panic!("reference build ok: {}, fast build ok: {}", r.is_ok(), f.is_ok()),
        }
    }
}

#[test]
fn degenerate_shapes_do_not_panic() {
    for int8 in [false, true] {
        for (batch, ic, ch, valid) in [(1, 3, 0, false), (1, 0, 2, false), (0, 3, 2, false), (1, 3, 2, true)] {
            let c = ConvCase {
                int8,
                batch,
                hw: [2, 3],
                ch: (ic, ch),
                kernel: [4, 4],
                stride: [1, 1],
                dilation: [1, 1],
                valid,
                act: 0,
                bias: true,
                mode: 0,
                seed: 7,
            };
            c.node(false).check_degenerate();
            c.node(true).check_degenerate();
        }
        for (batches, depth, units) in [(1, 5, 0), (0, 5, 3), (2, 0, 3)] {
            let c = FcCase { int8, batches, depth, units, act: 0, bias: true, mode: 0, seed: 7 };
            c.node().check_degenerate();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn conv_fast_equals_reference(c in conv_case(1..=40)) {
        c.node(false).check()?;
    }

    /// 1x1 stride-1 convolutions whose depth is a multiple of 16, which the random shapes above
    /// rarely draw: the fast kernels that read the input rows in place (no im2col copy).
    #[test]
    fn conv_1x1_fast_equals_reference(c in conv_case(1..=40), depth in 1usize..=3) {
        let oc = c.ch.1;
        ConvCase { kernel: [1, 1], stride: [1, 1], ch: (16 * depth, oc), ..c }.node(false).check()?;
    }

    /// One output pixel with at least 64 channels (a classifier's last layer), whose channels
    /// the fast kernel splits between two threads.
    #[test]
    fn conv_one_pixel_fast_equals_reference(c in conv_case(64..=300), one_by_one in any::<bool>()) {
        let [h, w] = if one_by_one { [1, 1] } else { c.hw };
        // VALID padding with the kernel the size of the input: one output pixel.
        let case = ConvCase { batch: 1, hw: [h, w], kernel: [h, w], dilation: [1, 1], valid: true, ..c };
        case.node(false).check()?;
    }

    #[test]
    fn depthwise_fast_equals_reference(c in conv_case(1..=3)) {
        c.node(true).check()?;
    }

    /// The usual depthwise layer, 3x3 with depth multiplier 1 and 16 or more channels, which the
    /// random shapes above rarely draw: the vector kernels' full-window path (tap pairs, and its
    /// fixed 9-tap variant on aarch64; blocks of 32 channels with AVX-512 VNNI, then a block of
    /// 16, then single channels) against the reference.
    #[test]
    fn depthwise_3x3_fast_equals_reference(c in conv_case(1..=1), ic in 16usize..=72) {
        ConvCase { kernel: [3, 3], ch: (ic, 1), ..c }.node(true).check()?;
    }

    /// Depth multiplier 1 with 16 or more channels, any kernel, stride and dilation: the row
    /// kernel (with AVX-512 VNNI: blocks of 32 channels, the last one partial, two pixels at a
    /// time) on the pixels of a row whose windows are inside the input, the pixel kernels on the
    /// others.
    #[test]
    fn depthwise_row_fast_equals_reference(c in conv_case(1..=1), ic in 16usize..=100) {
        ConvCase { ch: (ic, 1), ..c }.node(true).check()?;
    }

    #[test]
    fn fully_connected_fast_equals_reference(c in fc_case()) {
        c.node().check()?;
    }

    #[test]
    fn gemm_variants_equal_naive(
        m in 1usize..=70,
        n in 1usize..=70,
        k in 1usize..=300,
        sparse in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let mut r = Rng(seed);
        let kp = k.div_ceil(16) * 16;
        let a = operand(&mut r, m, k, kp, sparse);
        let w = operand(&mut r, n, k, kp, sparse);
        let want = naive_gemm(&a, m, &w, n, kp);
        let packed = Packed::new(&w, n, kp);
        let np = packed.np;
        let mut fast = vec![i32::MIN; m * np];
        gemm::gemm_packed(&a, m, &packed, &mut fast);
        let mut portable = vec![i32::MAX; m * np];
        gemm::gemm_packed_portable(&a, m, &packed, &mut portable);
        prop_assert_eq!(&fast, &portable);
        for i in 0..m {
            prop_assert_eq!(&fast[i * np..i * np + n], &want[i * n..(i + 1) * n]);
            prop_assert!(fast[i * np + n..(i + 1) * np].iter().all(|&x| x == 0));
        }
        for isa in [Isa::Portable, gemm::best()] {
            let mut got = vec![i32::MIN; m * n];
            gemm::gemm_with(isa, &a, m, &w, n, kp, &mut got);
            prop_assert_eq!(&got, &want, "{:?}", isa);
        }
        for par in pars() {
            let mut got = vec![i32::MIN; n];
            gemm::gemm_par(par, &a[..kp], 1, &w, n, kp, &mut got);
            prop_assert_eq!(&got[..], &want[..n], "gemm_par, {} thread(s)", par.threads());
        }
    }

    #[test]
    fn requantize_equals_output_stage(
        n in 1usize..=70,
        rows in 1usize..=3,
        int8 in any::<bool>(),
        act in 0u8..3,
        seed in any::<u64>(),
    ) {
        let mut r = Rng(seed);
        // Multipliers as quantize_multiplier makes them (0 or in [2^30, 2^31)); often exactly 2^30
        // (one half) with a small right shift, so that rounding ties (x.5, negative too) are common.
        let multiplier: Vec<i32> = (0..n)
            .map(|_| match r.range(0, 7) {
                0 => 0,
                1..=3 => 1 << 30,
                _ => r.range(1 << 30, i32::MAX as i64) as i32,
            })
            .collect();
        // Right shifts up to 31 (more is clamped), left shifts up to 8 on accumulators small enough
        // for the scalar stage not to overflow (it would panic in a debug build, wrap in release).
        let shift: Vec<i32> =
            (0..n).map(|_| if r.range(0, 1) == 0 { r.range(-3, 0) } else { r.range(-34, 8) } as i32).collect();
        let q = if int8 { Q8::I8 } else { Q8::U8 };
        let (lo, hi) = if int8 { (-128, 127) } else { (0, 255) };
        let offset = r.range(lo, hi) as i32;
        let (min, max) = match act { 0 => (lo as i32, hi as i32), 1 => (offset, hi as i32), _ => (offset, (offset + 20).min(hi as i32)) };
        // Accumulator magnitudes: half of them anything that does not overflow the scalar stage,
        // half of them small enough to land inside the output range (where rounding shows).
        let bits: Vec<i64> = shift
            .iter()
            .map(|&s| {
                let (left, right) = (s.max(0) as i64, (-s).clamp(0, 31) as i64);
                if r.range(0, 1) == 0 { 30 - left } else { (9 + right - left).clamp(1, 30) }
            })
            .collect();
        let stage = OutputStage::new(multiplier, shift, offset, min, max);
        let mut value = |b: i64| r.range(-(1 << b) + 1, (1 << b) - 1) as i32;
        let acc: Vec<i32> = (0..n).map(|c| value(bits[c])).collect();
        let mut got = vec![0u8; n];
        gemm::requantize_row(&acc, &stage, q, &mut got);
        let want: Vec<u8> = (0..n).map(|c| q.put(stage.apply(acc[c], c))).collect();
        prop_assert_eq!(&got, &want, "requantize_row");
        let acc: Vec<i32> = (0..rows * n).map(|i| value(bits[i % n] - 1)).collect();
        let bias: Vec<i32> = (0..n).map(|c| value(bits[c] - 1)).collect();
        let mut got = vec![0u8; rows * n];
        gemm::requantize(&acc, &bias, &stage, q, &mut got);
        let want: Vec<u8> = (0..rows * n).map(|i| q.put(stage.apply(acc[i] + bias[i % n], i % n))).collect();
        prop_assert_eq!(&got, &want, "requantize");
    }
}
