//! Element-wise ops: ADD, SUB, MUL, DIV, FLOOR_DIV, SQRT, CAST, QUANTIZE, DEQUANTIZE, RELU*.

use super::common::{set_output_shape, Broadcast, OutputStage, Q8};
use crate::cpu::gemm;
use crate::cpu::kernel::{cast, cast_mut, BuildCtx, Built, Io, Kernel, TensorInfo};
use crate::cpu::par::Par;
use crate::cpu::quant;
use crate::error::{Error, Result};
use crate::model::{Activation, TensorType};

/// Which arithmetic a binary kernel does.
#[derive(Clone, Copy, PartialEq)]
enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    FloorDiv,
}

enum Binary {
    /// uint8/int8 ADD or SUB with TFLite's 20-bit left shift scheme.
    QAddSub {
        q: Q8,
        sub: bool,
        in1_offset: i32,
        in2_offset: i32,
        out_offset: i32,
        m1: (i32, i32),
        m2: (i32, i32),
        mo: (i32, i32),
        act: (i32, i32),
    },
    QMul {
        q: Q8,
        in1_offset: i32,
        in2_offset: i32,
        out_offset: i32,
        m: (i32, i32),
        act: (i32, i32),
    },
    I32 {
        op: BinOp,
        act: (i32, i32),
    },
    F32 {
        op: BinOp,
        act: (f32, f32),
    },
}

struct BinaryKernel {
    bc: Broadcast,
    kind: Binary,
}

fn binary_common(ctx: &mut BuildCtx<'_>) -> Result<(TensorInfo, TensorInfo, TensorInfo, Broadcast)> {
    let a = ctx.input(0)?.clone();
    let b = ctx.input(1)?.clone();
    if a.dtype != b.dtype {
        return Err(ctx.err("the two inputs have different types"));
    }
    let (bc, shape) = Broadcast::new(ctx, &a.shape, &b.shape)?;
    set_output_shape(ctx, 0, shape)?;
    let out = ctx.output(0)?.clone();
    if out.dtype != a.dtype {
        return Err(ctx.err("the output type differs from the inputs"));
    }
    Ok((a, b, out, bc))
}

fn int_act(act: Activation) -> (i32, i32) {
    match act {
        Activation::Relu => (0, i32::MAX),
        Activation::Relu6 => (0, 6),
        Activation::ReluN1To1 => (-1, 1),
        _ => (i32::MIN, i32::MAX),
    }
}

fn q_act(out: &TensorInfo, act: Activation) -> Result<(i32, i32)> {
    let (s, z) = out.qparams()?;
    let (lo, hi) = quant::type_range(out.dtype);
    Ok(quant::activation_range_quantized(act, s, z, lo, hi))
}

pub(crate) fn build_add_sub(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    let sub = ctx.op_name == "SUB";
    let (a, b, out, bc) = binary_common(ctx)?;
    let act = ctx.options.activation;
    let kind = match a.dtype {
        TensorType::UINT8 | TensorType::INT8 => {
            let q = Q8::of(ctx, a.dtype)?;
            let (s1, z1) = a.qparams()?;
            let (s2, z2) = b.qparams()?;
            let (so, zo) = out.qparams()?;
            let left_shift = 20;
            let twice_max = (2.0 * s1.max(s2)) as f64;
            let r1 = s1 as f64 / twice_max;
            let r2 = s2 as f64 / twice_max;
            let ro = twice_max / ((1i32 << left_shift) as f32 * so) as f64;
            // TFLite's QuantizeMultiplierSmallerThanOneExp checks 0 < multiplier < 1.
            if !(r1 > 0.0 && r2 > 0.0 && ro > 0.0 && ro < 1.0) {
                return Err(ctx.err(format!(
                    "the scales (inputs {s1}, {s2}, output {so}) give rescaling multipliers outside (0, 1)"
                )));
            }
            Binary::QAddSub {
                q,
                sub,
                in1_offset: -z1,
                in2_offset: -z2,
                out_offset: zo,
                m1: quant::quantize_multiplier(r1),
                m2: quant::quantize_multiplier(r2),
                mo: quant::quantize_multiplier(ro),
                act: q_act(&out, act)?,
            }
        }
        TensorType::INT32 => Binary::I32 { op: if sub { BinOp::Sub } else { BinOp::Add }, act: int_act(act) },
        TensorType::FLOAT32 => {
            Binary::F32 { op: if sub { BinOp::Sub } else { BinOp::Add }, act: quant::activation_range_f32(act) }
        }
        t => return Err(ctx.err(format!("type {} is not supported", t.name()))),
    };
    finish(ctx, bc, kind)
}

pub(crate) fn build_mul(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    let (a, b, out, bc) = binary_common(ctx)?;
    let act = ctx.options.activation;
    let kind = match a.dtype {
        TensorType::UINT8 | TensorType::INT8 => {
            let q = Q8::of(ctx, a.dtype)?;
            let (s1, z1) = a.qparams()?;
            let (s2, z2) = b.qparams()?;
            let (so, zo) = out.qparams()?;
            let real = s1 as f64 * s2 as f64 / so as f64;
            Binary::QMul {
                q,
                in1_offset: -z1,
                in2_offset: -z2,
                out_offset: zo,
                m: quant::quantize_multiplier(real),
                act: q_act(&out, act)?,
            }
        }
        TensorType::INT32 => Binary::I32 { op: BinOp::Mul, act: int_act(act) },
        TensorType::FLOAT32 => Binary::F32 { op: BinOp::Mul, act: quant::activation_range_f32(act) },
        t => return Err(ctx.err(format!("type {} is not supported", t.name()))),
    };
    finish(ctx, bc, kind)
}

pub(crate) fn build_div(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    let (a, _, _, bc) = binary_common(ctx)?;
    let act = ctx.options.activation;
    let kind = match a.dtype {
        TensorType::FLOAT32 => Binary::F32 { op: BinOp::Div, act: quant::activation_range_f32(act) },
        TensorType::INT32 => Binary::I32 { op: BinOp::Div, act: int_act(act) },
        t => return Err(ctx.err(format!("type {} is not supported (float32 or int32)", t.name()))),
    };
    finish(ctx, bc, kind)
}

pub(crate) fn build_floor_div(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    let (a, _, _, bc) = binary_common(ctx)?;
    let kind = match a.dtype {
        TensorType::FLOAT32 => Binary::F32 { op: BinOp::FloorDiv, act: (f32::MIN, f32::MAX) },
        TensorType::INT32 => Binary::I32 { op: BinOp::FloorDiv, act: (i32::MIN, i32::MAX) },
        t => return Err(ctx.err(format!("type {} is not supported (float32 or int32)", t.name()))),
    };
    finish(ctx, bc, kind)
}

fn division_by_zero() -> Error {
    Error::argument("integer division by zero")
}

/// Fast path of 8-bit ADD/SUB/MUL: the output byte depends only on the two input bytes, so a
/// 64 KiB table filled with the reference arithmetic gives identical results.
struct Table2 {
    bc: Broadcast,
    table: Vec<u8>,
}

/// Below this many output elements, filling a 64 KiB table costs more than it saves even over
/// many invocations: such nodes compute each element.
const TABLE_MIN_ELEMENTS: usize = 1024;

fn finish(ctx: &BuildCtx<'_>, bc: Broadcast, kind: Binary) -> Result<Built> {
    if bc.len < TABLE_MIN_ELEMENTS {
        return Built::new(BinaryKernel { bc, kind });
    }
    let table = match (&kind, ctx.reference) {
        (&Binary::QAddSub { q, sub, in1_offset, in2_offset, out_offset, m1, m2, mo, act }, false) => {
            // The scaled operands depend on one byte each: 2 x 256 products, then one per entry.
            let scaled = |offset: i32, m: (i32, i32)| -> Vec<i32> {
                (0..=255u8)
                    .map(|b| {
                        let v = (offset + q.get(&[b], 0)) * (1 << 20);
                        quant::multiply_by_quantized_multiplier_smaller_than_one_exp(v, m.0, m.1)
                    })
                    .collect()
            };
            let (sa, sb) = (scaled(in1_offset, m1), scaled(in2_offset, m2));
            let mut table = vec![0u8; 65536];
            if (-31..=0).contains(&mo.1) {
                // The output stage of a row of 256 sums at a time, on the vector kernels: the
                // same arithmetic as `multiply_by_quantized_multiplier_smaller_than_one_exp` for
                // these shifts.
                let stage = OutputStage::new(vec![mo.0; 256], vec![mo.1; 256], out_offset, act.0, act.1);
                let mut raw = [0i32; 256];
                for (row, &a) in table.chunks_exact_mut(256).zip(&sa) {
                    for (r, &b) in raw.iter_mut().zip(&sb) {
                        *r = if sub { a.wrapping_sub(b) } else { a.wrapping_add(b) };
                    }
                    gemm::requantize_row(&raw, &stage, q, row);
                }
            } else {
                for (row, &a) in table.chunks_exact_mut(256).zip(&sa) {
                    for (t, &b) in row.iter_mut().zip(&sb) {
                        let raw = if sub { a.wrapping_sub(b) } else { a.wrapping_add(b) };
                        let v = quant::multiply_by_quantized_multiplier_smaller_than_one_exp(raw, mo.0, mo.1)
                            .wrapping_add(out_offset);
                        *t = q.put(v.clamp(act.0, act.1));
                    }
                }
            }
            table
        }
        (&Binary::QMul { q, in1_offset, in2_offset, out_offset, m, act }, false) => {
            // A row of 256 products at a time through the output stage, which is the reference's
            // `out_offset + multiply_by_quantized_multiplier(product)`, clamped.
            let stage = OutputStage::new(vec![m.0; 256], vec![m.1; 256], out_offset, act.0, act.1);
            let mut table = vec![0u8; 65536];
            let mut raw = [0i32; 256];
            for (a, row) in table.chunks_exact_mut(256).enumerate() {
                let x = in1_offset + q.get(&[a as u8], 0);
                for (b, r) in raw.iter_mut().enumerate() {
                    *r = x * (in2_offset + q.get(&[b as u8], 0));
                }
                gemm::requantize_row(&raw, &stage, q, row);
            }
            table
        }
        _ => return Built::new(BinaryKernel { bc, kind }),
    };
    Built::new(Table2 { bc, table })
}

impl Kernel for Table2 {
    fn run(&self, io: &mut Io<'_, '_>) -> Result<()> {
        let (x, y) = (io.ins[0], io.ins[1]);
        let out = &mut *io.outs[0];
        if self.bc.same {
            io.par.rows(out, 1, BINARY_PART, &mut [], |first, part, _| {
                let (x, y) = (&x[first..], &y[first..]);
                for ((o, &a), &b) in part.iter_mut().zip(x).zip(y) {
                    *o = self.table[(a as usize) << 8 | b as usize];
                }
            });
        } else if let Some(p) = self.bc.b_period {
            // b repeats along the leading dimensions (e.g. a per-channel constant).
            // Short periods (a per-channel constant of an RGB image) repeated to at least 64
            // elements, so that the inner loop is long.
            let mut buf = [0u8; 128];
            let pattern: &[u8] = if p < 64 {
                let span = p * 64usize.div_ceil(p);
                for (d, &b) in buf[..span].iter_mut().zip(y[..p].iter().cycle()) {
                    *d = b;
                }
                &buf[..span]
            } else {
                &y[..p]
            };
            let span = pattern.len();
            io.par.rows(out, span, BINARY_PART.div_ceil(span), &mut [], |first, part, _| {
                for (oc, xc) in part.chunks_mut(span).zip(x[first * span..].chunks(span)) {
                    for ((o, &a), &b) in oc.iter_mut().zip(xc).zip(pattern) {
                        *o = self.table[(a as usize) << 8 | b as usize];
                    }
                }
            });
        } else {
            par_broadcast(io.par, &self.bc, out, |o, i, j| *o = self.table[(x[i] as usize) << 8 | y[j] as usize]);
        }
        Ok(())
    }
}

impl Binary {
    /// The reference arithmetic of the quantized variants for element 0 of `x` and `y`.
    #[inline(always)]
    fn quantized(&self, x: &[u8], y: &[u8]) -> u8 {
        match *self {
            Binary::QAddSub { q, sub, in1_offset, in2_offset, out_offset, m1, m2, mo, act } => {
                let a = (in1_offset + q.get(x, 0)) * (1 << 20);
                let b = (in2_offset + q.get(y, 0)) * (1 << 20);
                let sa = quant::multiply_by_quantized_multiplier_smaller_than_one_exp(a, m1.0, m1.1);
                let sb = quant::multiply_by_quantized_multiplier_smaller_than_one_exp(b, m2.0, m2.1);
                let raw = if sub { sa - sb } else { sa + sb };
                let v = quant::multiply_by_quantized_multiplier_smaller_than_one_exp(raw, mo.0, mo.1)
                    .wrapping_add(out_offset);
                q.put(v.clamp(act.0, act.1))
            }
            Binary::QMul { q, in1_offset, in2_offset, out_offset, m, act } => {
                let p = (in1_offset + q.get(x, 0)) * (in2_offset + q.get(y, 0));
                let v = out_offset.wrapping_add(quant::multiply_by_quantized_multiplier(p, m.0, m.1));
                q.put(v.clamp(act.0, act.1))
            }
            _ => 0,
        }
    }
}

impl Kernel for BinaryKernel {
    fn run(&self, io: &mut Io<'_, '_>) -> Result<()> {
        match self.kind {
            Binary::QAddSub { .. } | Binary::QMul { .. } => {
                let (x, y) = (io.ins[0], io.ins[1]);
                let out = &mut *io.outs[0];
                par_broadcast(io.par, &self.bc, out, |o, i, j| *o = self.kind.quantized(&x[i..i + 1], &y[j..j + 1]));
            }
            Binary::I32 { op, act } => {
                let x: &[i32] = cast(io.ins[0])?;
                let y: &[i32] = cast(io.ins[1])?;
                let out: &mut [i32] = cast_mut(io.outs[0])?;
                let mut zero = false;
                self.bc.for_each(|o, i, j| {
                    let (a, b) = (x[i], y[j]);
                    let v = match op {
                        BinOp::Add => a.wrapping_add(b),
                        BinOp::Sub => a.wrapping_sub(b),
                        BinOp::Mul => a.wrapping_mul(b),
                        BinOp::Div | BinOp::FloorDiv if b == 0 => {
                            zero = true;
                            0
                        }
                        BinOp::Div => a.wrapping_div(b),
                        BinOp::FloorDiv => {
                            let d = a.wrapping_div(b);
                            if (a % b != 0) && ((a < 0) != (b < 0)) {
                                d - 1
                            } else {
                                d
                            }
                        }
                    };
                    out[o] = v.clamp(act.0, act.1);
                });
                if zero {
                    return Err(division_by_zero());
                }
            }
            Binary::F32 { op, act } => {
                let x: &[f32] = cast(io.ins[0])?;
                let y: &[f32] = cast(io.ins[1])?;
                let out: &mut [f32] = cast_mut(io.outs[0])?;
                let (lo, hi) = act;
                // One loop per operation, so that each is vectorised.
                match op {
                    BinOp::Add => map2(io.par, &self.bc, x, y, out, |a, b| clamp(a + b, lo, hi)),
                    BinOp::Sub => map2(io.par, &self.bc, x, y, out, |a, b| clamp(a - b, lo, hi)),
                    BinOp::Mul => map2(io.par, &self.bc, x, y, out, |a, b| clamp(a * b, lo, hi)),
                    BinOp::Div => map2(io.par, &self.bc, x, y, out, |a, b| clamp(a / b, lo, hi)),
                    BinOp::FloorDiv => map2(io.par, &self.bc, x, y, out, |a, b| clamp((a / b).floor(), lo, hi)),
                }
            }
        }
        Ok(())
    }
}

/// `v.clamp(lo, hi)` (NaN stays NaN) without `f32::clamp`'s check that `lo <= hi`, whose panic
/// keeps loops from being vectorised (the bounds come from the model's activation: `lo <= hi`).
#[inline(always)]
fn clamp(v: f32, lo: f32, hi: f32) -> f32 {
    let v = if v < lo { lo } else { v };
    if v > hi {
        hi
    } else {
        v
    }
}

/// Fewest output elements per thread for the binary kernels.
const BINARY_PART: usize = 8192;

/// Calls `f(out_element, index_a, index_b)` for every output element of a broadcast, split over
/// the threads in parts of whole broadcast rows of at least [`BINARY_PART`] elements.
fn par_broadcast<T: Send>(par: &Par, bc: &Broadcast, out: &mut [T], f: impl Fn(&mut T, usize, usize) + Sync) {
    if bc.same {
        par.rows(out, 1, BINARY_PART, &mut [], |first, part, _| {
            for (k, o) in part.iter_mut().enumerate() {
                f(o, first + k, first + k);
            }
        });
        return;
    }
    let unit = bc.row_len().max(1);
    par.rows(out, unit, BINARY_PART.div_ceil(unit), &mut [], |first, part, _| bc.for_rows(first, part, &f));
}

/// `out = g(x, y)` element by element with broadcasting, over the threads; inputs of the same
/// shape take a loop the compiler vectorises.
fn map2<T: Copy + Sync, U: Copy + Send>(
    par: &Par,
    bc: &Broadcast,
    x: &[T],
    y: &[T],
    out: &mut [U],
    g: impl Fn(T, T) -> U + Sync + Copy,
) {
    if bc.same {
        par.rows(out, 1, BINARY_PART, &mut [], |first, part, _| {
            gemm::with_avx512(move || {
                for ((o, &a), &b) in part.iter_mut().zip(&x[first..]).zip(&y[first..]) {
                    *o = g(a, b);
                }
            })
        });
    } else {
        par_broadcast(par, bc, out, |o, i, j| *o = g(x[i], y[j]));
    }
}

struct Sqrt;

impl Kernel for Sqrt {
    fn run(&self, io: &mut Io<'_, '_>) -> Result<()> {
        let x: &[f32] = cast(io.ins[0])?;
        let out: &mut [f32] = cast_mut(io.outs[0])?;
        for (o, &v) in out.iter_mut().zip(x) {
            *o = v.sqrt();
        }
        Ok(())
    }
}

pub(crate) fn build_sqrt(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    ctx.expect_input(0, TensorType::FLOAT32)?;
    ctx.outputs[0].shape = ctx.input(0)?.shape.clone();
    Built::new(Sqrt)
}

/// Numeric element types CAST converts between.
#[derive(Clone, Copy)]
enum Num {
    F32,
    I32,
    U8,
    I8,
    I64,
    I16,
    Bool,
}

impl Num {
    fn of(t: TensorType) -> Option<Num> {
        Some(match t {
            TensorType::FLOAT32 => Num::F32,
            TensorType::INT32 => Num::I32,
            TensorType::UINT8 => Num::U8,
            TensorType::INT8 => Num::I8,
            TensorType::INT64 => Num::I64,
            TensorType::INT16 => Num::I16,
            TensorType::BOOL => Num::Bool,
            _ => return None,
        })
    }
    fn size(self) -> usize {
        match self {
            Num::F32 | Num::I32 => 4,
            Num::U8 | Num::I8 | Num::Bool => 1,
            Num::I64 => 8,
            Num::I16 => 2,
        }
    }
    /// Reads element `i` as f64 (exact for every type but i64 beyond 2^53).
    fn read(self, b: &[u8], i: usize) -> f64 {
        let s = self.size();
        let c = &b[i * s..(i + 1) * s];
        match self {
            Num::F32 => f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64,
            Num::I32 => i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64,
            Num::U8 => c[0] as f64,
            Num::I8 => c[0] as i8 as f64,
            Num::I64 => i64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]) as f64,
            Num::I16 => i16::from_le_bytes([c[0], c[1]]) as f64,
            Num::Bool => (c[0] != 0) as u8 as f64,
        }
    }
    /// Writes `v` like C++'s `static_cast` (float -> int truncates; Rust saturates where C++ is
    /// undefined).
    fn write(self, b: &mut [u8], i: usize, v: f64, from_float: bool) {
        let s = self.size();
        let c = &mut b[i * s..(i + 1) * s];
        match self {
            Num::F32 => c.copy_from_slice(&(v as f32).to_le_bytes()),
            Num::I32 => c.copy_from_slice(&(v as i32).to_le_bytes()),
            Num::U8 => c[0] = if from_float { v as u8 } else { v as i64 as u8 },
            Num::I8 => c[0] = if from_float { v as i8 as u8 } else { v as i64 as i8 as u8 },
            Num::I64 => c.copy_from_slice(&(v as i64).to_le_bytes()),
            Num::I16 => c.copy_from_slice(&(if from_float { v as i16 } else { v as i64 as i16 }).to_le_bytes()),
            Num::Bool => c[0] = (v != 0.0) as u8,
        }
    }
}

struct Cast {
    from: Num,
    to: Num,
    n: usize,
}

impl Kernel for Cast {
    fn run(&self, io: &mut Io<'_, '_>) -> Result<()> {
        match (self.from, self.to) {
            (Num::I32, Num::F32) => {
                let x: &[i32] = cast(io.ins[0])?;
                io.par.rows(cast_mut::<f32>(io.outs[0])?, 1, CHEAP_PART, &mut [], |first, part, _| {
                    gemm::with_avx512(move || {
                        for (o, &v) in part.iter_mut().zip(&x[first..]) {
                            *o = v as f32;
                        }
                    })
                });
                return Ok(());
            }
            (Num::U8, Num::F32) => {
                // Split like the QUANTIZE that usually follows (an image turned into floats and
                // quantized again), so that each thread's half stays in its own cache.
                let x = io.ins[0];
                io.par.rows(cast_mut::<f32>(io.outs[0])?, 1, CHEAP_PART, &mut [], |first, part, _| {
                    gemm::with_avx512(move || {
                        for (o, &v) in part.iter_mut().zip(&x[first..]) {
                            *o = v as f32;
                        }
                    })
                });
                return Ok(());
            }
            _ => {}
        }
        let from_float = matches!(self.from, Num::F32);
        for i in 0..self.n {
            let v = self.from.read(io.ins[0], i);
            self.to.write(io.outs[0], i, v, from_float);
        }
        Ok(())
    }
}

pub(crate) fn build_cast(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    let input = ctx.input(0)?.clone();
    let output = ctx.output(0)?.clone();
    let from = Num::of(input.dtype).ok_or_else(|| ctx.err("unsupported input type"))?;
    let to = Num::of(output.dtype).ok_or_else(|| ctx.err("unsupported output type"))?;
    ctx.outputs[0].shape = input.shape.clone();
    Built::new(Cast { from, to, n: input.num_elements() })
}

enum Quantize {
    FromFloat { q: Q8, scale: f32, zp: i32 },
    Requantize { qi: Q8, qo: Q8, in_zp: i32, out_zp: i32, m: (i32, i32) },
}

/// A 256-entry table kernel filled by `f` (the fast path of byte-to-byte ops).
fn byte_table(f: impl Fn(u8) -> u8) -> super::activation::Lut {
    let mut table = [0u8; 256];
    for (i, t) in table.iter_mut().enumerate() {
        *t = f(i as u8);
    }
    super::activation::Lut::new(table)
}

impl Quantize {
    fn requantize_byte(&self, b: u8) -> u8 {
        match *self {
            Quantize::Requantize { qi, qo, in_zp, out_zp, m } => {
                let (lo, hi) = if qo == Q8::U8 { (0, 255) } else { (-128, 127) };
                let v = quant::multiply_by_quantized_multiplier(qi.get(&[b], 0) - in_zp, m.0, m.1).wrapping_add(out_zp);
                qo.put(v.clamp(lo, hi))
            }
            Quantize::FromFloat { .. } => 0,
        }
    }
}

/// Fewest elements per thread for the cheapest element-wise kernels (casts, QUANTIZE,
/// DEQUANTIZE): below this, handing half of the data to another core's cache costs more than
/// the work saved.
const CHEAP_PART: usize = 16384;

/// `f32::round` (half away from zero) in operations that vectorise: the integer part, plus one
/// away from zero when the fraction (exact: `v - trunc(v)` loses no bits) is at least a half.
/// NaN and infinities come out as `f32::round` gives them.
#[inline(always)]
fn round_half_away(v: f32) -> f32 {
    let t = v.trunc();
    if (v - t).abs() >= 0.5 {
        t + 1f32.copysign(v)
    } else {
        t
    }
}

impl Kernel for Quantize {
    fn run(&self, io: &mut Io<'_, '_>) -> Result<()> {
        let out = &mut *io.outs[0];
        match *self {
            Quantize::FromFloat { q, scale, zp } => {
                let x: &[f32] = cast(io.ins[0])?;
                let (lo, hi) = if q == Q8::U8 { (0, 255) } else { (-128, 127) };
                // `round(v / scale) as i32` saturating, plus zp, clamped to the type: the same as
                // clamping the rounded value to [lo - zp, hi - zp] first (NaN counts as 0), which
                // keeps it small enough for the exact float-to-int trick below, all in vector
                // operations.
                let (lo_f, hi_f) = ((lo - zp) as f32, (hi - zp) as f32);
                io.par.rows(out, 1, CHEAP_PART, &mut [], |first, part, _| {
                    // `move`: byte stores could alias captured references, which would keep the
                    // loop from being vectorised.
                    crate::cpu::gemm::with_avx512(move || {
                        for (o, &v) in part.iter_mut().zip(&x[first..]) {
                            let r = round_half_away(v / scale);
                            let r = if r.is_nan() { 0.0 } else { r.max(lo_f).min(hi_f) };
                            // 1.5 * 2^23 puts an integer of magnitude below 2^22 in the low
                            // mantissa bits.
                            let i = (r + 12_582_912.0).to_bits() as i32 - 0x4B40_0000;
                            *o = q.put(i + zp);
                        }
                    })
                });
            }
            Quantize::Requantize { .. } => {
                for (o, &b) in out.iter_mut().zip(io.ins[0]) {
                    *o = self.requantize_byte(b);
                }
            }
        }
        Ok(())
    }
}

pub(crate) fn build_quantize(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    let input = ctx.input(0)?.clone();
    ctx.outputs[0].shape = input.shape.clone();
    let output = ctx.output(0)?.clone();
    let qo = Q8::of(ctx, output.dtype)?;
    let (os, oz) = output.qparams()?;
    if output.quant.as_ref().is_some_and(|q| q.scale.len() > 1) {
        return Err(ctx.err("per-channel QUANTIZE outputs are not supported"));
    }
    let k = match input.dtype {
        TensorType::FLOAT32 => Quantize::FromFloat { q: qo, scale: os, zp: oz },
        _ => {
            let qi = Q8::of(ctx, input.dtype)?;
            let (is, iz) = input.qparams()?;
            Quantize::Requantize { qi, qo, in_zp: iz, out_zp: oz, m: quant::quantize_multiplier(is as f64 / os as f64) }
        }
    };
    if let (Quantize::Requantize { .. }, false) = (&k, ctx.reference) {
        return Built::new(byte_table(|b| k.requantize_byte(b)));
    }
    Built::new(k)
}

struct Dequantize {
    q: Option<Q8>,
    scale: f64,
    zp: i32,
}

impl Kernel for Dequantize {
    fn run(&self, io: &mut Io<'_, '_>) -> Result<()> {
        let out: &mut [f32] = cast_mut(io.outs[0])?;
        let input = io.ins[0];
        match self.q {
            Some(q) => io.par.rows(out, 1, CHEAP_PART, &mut [], |first, part, _| {
                crate::cpu::gemm::with_avx512(|| {
                    let (scale, zp) = (self.scale, self.zp);
                    let src = &input[first..];
                    match q {
                        Q8::U8 => {
                            for (o, &b) in part.iter_mut().zip(src) {
                                *o = (scale * (i32::from(b) - zp) as f64) as f32;
                            }
                        }
                        Q8::I8 => {
                            for (o, &b) in part.iter_mut().zip(src) {
                                *o = (scale * (i32::from(b as i8) - zp) as f64) as f32;
                            }
                        }
                    }
                })
            }),
            None => {
                let x: &[i16] = cast(io.ins[0])?;
                for (o, &v) in out.iter_mut().zip(x) {
                    *o = (self.scale * (v as i32 - self.zp) as f64) as f32;
                }
            }
        }
        Ok(())
    }
}

pub(crate) fn build_dequantize(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    let input = ctx.input(0)?.clone();
    ctx.outputs[0].shape = input.shape.clone();
    if ctx.output(0)?.dtype != TensorType::FLOAT32 {
        return Err(ctx.err("the output must be float32"));
    }
    let q = match input.dtype {
        TensorType::INT16 => None,
        t => Some(Q8::of(ctx, t)?),
    };
    if input.quant.as_ref().is_some_and(|q| q.scale.len() > 1) {
        return Err(ctx.err("per-channel DEQUANTIZE is not supported"));
    }
    let (s, z) = input.qparams()?;
    Built::new(Dequantize { q, scale: s as f64, zp: z })
}

enum Relu {
    Q { q: Q8, in_zp: i32, out_zp: i32, m: (i32, i32), act: (i32, i32) },
    F { lo: f32, hi: f32 },
}

impl Relu {
    fn byte(&self, b: u8) -> u8 {
        match *self {
            Relu::Q { q, in_zp, out_zp, m, act } => {
                let v = out_zp.wrapping_add(quant::multiply_by_quantized_multiplier(q.get(&[b], 0) - in_zp, m.0, m.1));
                q.put(v.clamp(act.0, act.1))
            }
            Relu::F { .. } => 0,
        }
    }
}

impl Kernel for Relu {
    fn run(&self, io: &mut Io<'_, '_>) -> Result<()> {
        match *self {
            Relu::Q { .. } => {
                for (o, &b) in io.outs[0].iter_mut().zip(io.ins[0]) {
                    *o = self.byte(b);
                }
            }
            Relu::F { lo, hi } => {
                let x: &[f32] = cast(io.ins[0])?;
                let out: &mut [f32] = cast_mut(io.outs[0])?;
                for (o, &v) in out.iter_mut().zip(x) {
                    *o = v.max(lo).min(hi);
                }
            }
        }
        Ok(())
    }
}

pub(crate) fn build_relu(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    let input = ctx.input(0)?.clone();
    ctx.outputs[0].shape = input.shape.clone();
    let output = ctx.output(0)?.clone();
    let (lo, hi) = match ctx.op_name {
        "RELU6" => (0.0f32, 6.0f32),
        "RELU_N1_TO_1" => (-1.0, 1.0),
        _ => (0.0, f32::INFINITY),
    };
    if input.dtype == TensorType::FLOAT32 {
        return Built::new(Relu::F { lo, hi });
    }
    let q = Q8::of(ctx, input.dtype)?;
    let (is, iz) = input.qparams()?;
    let (os, oz) = output.qparams()?;
    let (tmin, tmax) = quant::type_range(output.dtype);
    // Saturating: a tiny (absurd) output scale must not overflow.
    let amin = tmin.max(oz.saturating_add((lo / os).round() as i32));
    let amax = if hi.is_infinite() { tmax } else { tmax.min(oz.saturating_add((hi / os).round() as i32)) };
    let m = quant::quantize_multiplier((is / os) as f64);
    let k = Relu::Q { q, in_zp: iz, out_zp: oz, m, act: (amin, amax) };
    if !ctx.reference {
        return Built::new(byte_table(|b| k.byte(b)));
    }
    Built::new(k)
}

#[cfg(test)]
mod tests {
    use super::round_half_away;

    #[test]
    fn round_half_away_is_f32_round() {
        let specials = [
            0.0f32,
            -0.0,
            0.5,
            -0.5,
            1.5,
            -2.5,
            0.49999997,
            -0.49999997,
            8388607.5,
            -8388607.5,
            8388608.0,
            16777217.0,
            f32::MAX,
            f32::MIN,
            f32::INFINITY,
            f32::NEG_INFINITY,
            f32::MIN_POSITIVE,
        ];
        for v in specials {
            assert_eq!(round_half_away(v).to_bits(), v.round().to_bits(), "{v}");
        }
        assert!(round_half_away(f32::NAN).is_nan());
        // Every 4099th bit pattern: all exponents, both signs.
        for bits in (0..=u32::MAX).step_by(4099) {
            let v = f32::from_bits(bits);
            if !v.is_nan() {
                assert_eq!(round_half_away(v).to_bits(), v.round().to_bits(), "{v} ({bits:#x})");
            }
        }
    }
}
