//! UNIDIRECTIONAL_SEQUENCE_LSTM, fully integer (int8 activations and weights, int16 cell state):
//! TFLite's `EvalInteger8x8_16` (`kernels/lstm_eval.cc`) with the parameters of
//! `PopulateQuantizedLstmParams8x8_16` (`kernels/unidirectional_sequence_lstm.cc`).
//!
//! Supports CIFG, peephole, projection, layer normalisation, batch-major and time-major inputs,
//! as far as TFLite's integer path does, reproducing its quirks (peephole products over
//! `n_output` elements, clipping without zero point, the cell gate always using tanh).
//! Float and hybrid (float input, int8 weights) LSTMs are rejected at build time.
//!
//! State: the output and cell states are variable input tensors. Kernels only get read access to
//! their inputs, so each invocation starts from the state tensors' contents and evolves a copy
//! in scratch memory; the final state is not written back (TFLite writes it back, so a second
//! invocation of the same TFLite interpreter continues from the previous state).

use super::lstm_math::{
    apply_layer_norm, checked_log2, const_i16, const_i32, cwise_mul_scale, effective_bias, logistic16,
    matmul_accumulate, per_tensor, tanh16, update_cell, vector_batch_product_accumulate, weights_i8, LayerNorm,
};
use crate::cpu::kernel::{cast, cast_mut, BuildCtx, Built, Io, Kernel};
use crate::cpu::quant::quantize_multiplier;
use crate::error::{Error, Result};
use crate::model::TensorType;

// Input tensor positions (TFLite's `lstm::full` numbering).
const INPUT: usize = 0;
const INPUT_WEIGHTS: [usize; 4] = [1, 2, 3, 4]; // to input, forget, cell, output gates
const RECURRENT_WEIGHTS: [usize; 4] = [5, 6, 7, 8];
const PEEPHOLE_WEIGHTS: [usize; 3] = [9, 10, 11]; // input, forget, output gates
const GATE_BIAS: [usize; 4] = [12, 13, 14, 15];
const PROJECTION_WEIGHTS: usize = 16;
const PROJECTION_BIAS: usize = 17;
const OUTPUT_STATE: usize = 18;
const CELL_STATE: usize = 19;
const LAYER_NORM: [usize; 4] = [20, 21, 22, 23];

/// Sign with which the hidden zero point enters `CwiseMul(int16, int16 -> int8)` (`value +=
/// sign * hidden_zp`, then the clamp to int8); with a projection, its bias folds in `-sign *
/// hidden_zp * row_sum` to match. ai-edge-litert 2.3.0 BUILTIN_REF adds the zero point when the
/// hidden state is the output (no projection) and subtracts it (adding it back through the
/// projection bias) when a projection follows. The two agree but where the hidden value
/// saturates; randomized tests against the reference (tools/op_fuzz) found the difference.
fn hidden_zp_sign(use_projection: bool) -> i32 {
    if use_projection {
        -1
    } else {
        1
    }
}

/// One gate's constants.
struct Gate {
    w_in: Vec<i8>,
    bias_in: Vec<i32>,
    scale_in: (i32, i32),
    w_rec: Vec<i8>,
    bias_rec: Vec<i32>,
    scale_rec: (i32, i32),
    peephole: Option<(Vec<i16>, (i32, i32))>,
    layer_norm: Option<LayerNorm>,
}

#[derive(Clone, Copy, PartialEq)]
enum Act {
    Sigmoid,
    Tanh,
}

struct Projection {
    weights: Vec<i8>,
    bias: Vec<i32>,
    scale: (i32, i32),
}

struct LstmInteger {
    input_gate: Option<Gate>,
    forget_gate: Gate,
    cell_gate: Gate,
    output_gate: Gate,
    projection: Option<Projection>,
    time_major: bool,
    max_time: usize,
    n_batch: usize,
    n_input: usize,
    n_cell: usize,
    n_output: usize,
    cell_scale: i32,
    cell_clip: i16,
    proj_clip: i8,
    hidden_scale: (i32, i32),
    /// The hidden zero point with its sign ([`hidden_zp_sign`]).
    hidden_zp: i32,
    output_state_zp: i32,
}

/// Builds the integer UNIDIRECTIONAL_SEQUENCE_LSTM kernel.
pub(crate) fn build(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    let n_in = ctx.inputs.len();
    if n_in != 20 && n_in != 24 {
        return Err(ctx.err(format!("the LSTM kernel expects 20 or 24 inputs, got {n_in}")));
    }
    if ctx.outputs.len() != 1 {
        return Err(ctx.err(format!("expected 1 output, got {}", ctx.outputs.len())));
    }
    let input = ctx.input(INPUT)?.clone();
    let i2o = ctx.input(INPUT_WEIGHTS[3])?.clone();
    match (input.dtype, i2o.dtype) {
        (TensorType::INT8, TensorType::INT8) => {}
        (TensorType::FLOAT32, TensorType::FLOAT32) => {
            return Err(ctx.err("float32 LSTM is not supported by this runtime (only the fully integer int8 LSTM)"))
        }
        (TensorType::FLOAT32, _) => {
            return Err(ctx.err(
                "hybrid LSTM (float input, quantized weights) is not supported by this runtime \
                 (only the fully integer int8 LSTM)",
            ))
        }
        (i, w) => {
            return Err(ctx.err(format!(
                "unsupported LSTM types: input {}, weights {} (only int8 input with int8 weights)",
                i.name(),
                w.name()
            )))
        }
    }
    if input.shape.len() != 3 {
        return Err(ctx.err(format!("input must have rank 3, has shape {:?}", input.shape)));
    }
    let time_major = ctx.options.time_major;
    let (max_time, n_batch) =
        if time_major { (input.shape[0], input.shape[1]) } else { (input.shape[1], input.shape[0]) };
    let n_input = input.shape[2];
    let r2o = ctx.input(RECURRENT_WEIGHTS[3])?;
    if i2o.shape.len() != 2 || i2o.shape[1] != n_input || r2o.shape.len() != 2 || r2o.shape[0] != i2o.shape[0] {
        return Err(ctx.err(format!(
            "weight shapes {:?} (input to output) and {:?} (recurrent to output) do not match the input {:?}",
            i2o.shape, r2o.shape, input.shape
        )));
    }
    let (n_cell, n_output) = (i2o.shape[0], r2o.shape[1]);
    let present = |i: usize| ctx.inputs.get(i).is_some_and(|t| t.is_some());
    let use_cifg = !present(INPUT_WEIGHTS[0]);
    if present(INPUT_WEIGHTS[0]) != present(RECURRENT_WEIGHTS[0]) {
        return Err(ctx.err("input-gate weights must be both present or both omitted (CIFG)"));
    }
    let use_peephole = present(PEEPHOLE_WEIGHTS[2]);
    let peephole_ok = if use_peephole {
        (use_cifg || present(PEEPHOLE_WEIGHTS[0])) && present(PEEPHOLE_WEIGHTS[1])
    } else {
        !present(PEEPHOLE_WEIGHTS[0]) && !present(PEEPHOLE_WEIGHTS[1])
    };
    if !peephole_ok {
        return Err(ctx.err("peephole weights must be all present or all omitted"));
    }
    if use_cifg == present(GATE_BIAS[0]) {
        return Err(ctx.err("the input-gate bias must be present exactly when the input-gate weights are"));
    }
    let use_projection = present(PROJECTION_WEIGHTS);
    if !use_projection && present(PROJECTION_BIAS) {
        return Err(ctx.err("projection bias without projection weights"));
    }
    let use_layer_norm = n_in == 24 && present(LAYER_NORM[1]);
    if !use_layer_norm && n_in == 24 && LAYER_NORM.iter().any(|&i| present(i)) {
        return Err(ctx.err("layer-norm coefficients without the forget-gate coefficients"));
    }
    if use_layer_norm && (use_cifg == present(LAYER_NORM[0]) || !present(LAYER_NORM[2]) || !present(LAYER_NORM[3])) {
        return Err(ctx.err("layer-norm coefficients must be present for every gate (but the CIFG input gate)"));
    }
    // TFLite's integer path copies the hidden state (n_cell wide) into the output state without
    // projection, and applies peephole weights over n_output elements: other sizes read out of
    // bounds there.
    if !use_projection && n_output != n_cell {
        return Err(
            ctx.err(format!("without projection the output size {n_output} must equal the cell count {n_cell}"))
        );
    }
    if use_peephole && n_output > n_cell {
        return Err(ctx.err(format!(
            "peephole weights with an output size {n_output} larger than the cell count {n_cell} are not supported"
        )));
    }
    if ctx.intermediates.len() != 5 {
        return Err(ctx.err(format!(
            "the integer LSTM needs 5 intermediate tensors (gate and hidden scales), the model has {}",
            ctx.intermediates.len()
        )));
    }

    // Types and shapes of the states and the output.
    let output_state = ctx.expect_input(OUTPUT_STATE, TensorType::INT8)?.clone();
    let cell_state = ctx.expect_input(CELL_STATE, TensorType::INT16)?.clone();
    if output_state.num_elements() != n_batch * n_output || cell_state.num_elements() != n_batch * n_cell {
        return Err(ctx.err(format!(
            "state shapes {:?} (output) and {:?} (cell) do not hold {n_batch} batches of {n_output} outputs and {n_cell} cells",
            output_state.shape, cell_state.shape
        )));
    }
    if ctx.outputs[0].dtype != TensorType::INT8 {
        return Err(ctx.err(format!("output has type {}, expected int8", ctx.outputs[0].dtype.name())));
    }
    let mut out_shape = input.shape.clone();
    out_shape[2] = n_output;
    ctx.outputs[0].shape = out_shape;

    // Scales (all f32 arithmetic, as in PopulateQuantizedLstmParams8x8_16).
    let (input_scale, input_zp) = per_tensor(ctx, &input, "input")?;
    let (output_state_scale, output_state_zp) = per_tensor(ctx, &output_state, "output state")?;
    let (cell_state_scale, _) = per_tensor(ctx, &cell_state, "cell state")?;
    let (output_scale, _) = per_tensor(ctx, &ctx.outputs[0].clone(), "output")?;
    let cell_scale = checked_log2(cell_state_scale)
        .ok_or_else(|| ctx.err(format!("the cell state scale {cell_state_scale} is not a power of two")))?;
    if !(-15..=-9).contains(&cell_scale) {
        return Err(
            ctx.err(format!("cell state scale 2^{cell_scale}: TFLite's integer LSTM handles 2^-15 ..= 2^-9 only"))
        );
    }
    let mut inter_scale = [2f32.powi(-12); 5];
    for (k, t) in ctx.intermediates.iter().enumerate() {
        if k == 4 || use_layer_norm {
            inter_scale[k] = per_tensor(ctx, t, "intermediate")?.0;
        }
    }
    let hidden_zp = per_tensor(ctx, &ctx.intermediates[4], "hidden intermediate")?.1;
    let cell_clip = ctx.options.cell_clip;
    let proj_clip = ctx.options.proj_clip;
    if cell_clip < 0.0 || proj_clip < 0.0 || cell_clip.is_nan() || proj_clip.is_nan() {
        return Err(ctx.err(format!("clip values must be >= 0, got cell {cell_clip} and projection {proj_clip}")));
    }
    let cell_clip = if cell_clip > 0.0 { (cell_clip / cell_state_scale).clamp(-32768.0, 32767.0) as i16 } else { 0 };
    let proj_clip = if proj_clip > 0.0 { (proj_clip / output_scale).clamp(-128.0, 127.0) as i8 } else { 0 };

    let gate = |ctx: &BuildCtx<'_>, g: usize| -> Result<Gate> {
        let w_in = weights_i8(ctx, INPUT_WEIGHTS[g], n_cell, n_input)?;
        let w_rec = weights_i8(ctx, RECURRENT_WEIGHTS[g], n_cell, n_output)?;
        let s_in = per_tensor(ctx, ctx.input(INPUT_WEIGHTS[g])?, "input weights")?.0;
        let s_rec = per_tensor(ctx, ctx.input(RECURRENT_WEIGHTS[g])?, "recurrent weights")?.0;
        let bias = const_i32(ctx, GATE_BIAS[g], n_cell)?;
        let peephole = match (g, use_peephole) {
            (2, _) | (_, false) => None,
            _ => {
                let i = PEEPHOLE_WEIGHTS[g.min(2)];
                let w = const_i16(ctx, i, n_cell)?;
                let s = per_tensor(ctx, ctx.input(i)?, "peephole weights")?.0;
                let eff = (2f64.powi(cell_scale) * s as f64 / inter_scale[g] as f64) as f32;
                Some((w, quantize_multiplier(eff as f64)))
            }
        };
        let layer_norm = if use_layer_norm {
            let i = LAYER_NORM[g];
            let s = per_tensor(ctx, ctx.input(i)?, "layer-norm coefficients")?.0;
            Some(LayerNorm {
                weights: const_i16(ctx, i, n_cell)?,
                bias: bias.clone(),
                scale: quantize_multiplier(s as f64),
                variance_guard: ((10000.0 * s) as i32).max(1),
            })
        } else {
            None
        };
        // Without layer norm the gate bias is folded into the input matmul's bias.
        let fold = if use_layer_norm { None } else { Some(&bias[..]) };
        Ok(Gate {
            bias_in: effective_bias(&w_in, n_input, -input_zp, fold),
            bias_rec: effective_bias(&w_rec, n_output, -output_state_zp, None),
            scale_in: quantize_multiplier((s_in * input_scale / inter_scale[g]) as f64),
            scale_rec: quantize_multiplier((s_rec * output_state_scale / inter_scale[g]) as f64),
            w_in,
            w_rec,
            peephole,
            layer_norm,
        })
    };
    let input_gate = if use_cifg { None } else { Some(gate(ctx, 0)?) };
    let forget_gate = gate(ctx, 1)?;
    let cell_gate = gate(ctx, 2)?;
    let output_gate = gate(ctx, 3)?;

    let projection = if use_projection {
        let weights = weights_i8(ctx, PROJECTION_WEIGHTS, n_output, n_cell)?;
        let s = per_tensor(ctx, ctx.input(PROJECTION_WEIGHTS)?, "projection weights")?.0;
        let bias = if present(PROJECTION_BIAS) { Some(const_i32(ctx, PROJECTION_BIAS, n_output)?) } else { None };
        Some(Projection {
            bias: effective_bias(&weights, n_cell, -hidden_zp_sign(true) * hidden_zp, bias.as_deref()),
            weights,
            scale: quantize_multiplier((s * inter_scale[4] / output_state_scale) as f64),
        })
    } else {
        None
    };
    let hidden = (2f64.powi(-15) / inter_scale[4] as f64 * 2f64.powi(-15)) as f32;
    let kernel = LstmInteger {
        input_gate,
        forget_gate,
        cell_gate,
        output_gate,
        projection,
        time_major,
        max_time,
        n_batch,
        n_input,
        n_cell,
        n_output,
        cell_scale,
        cell_clip,
        proj_clip,
        hidden_scale: quantize_multiplier(hidden as f64),
        hidden_zp: hidden_zp_sign(use_projection) * hidden_zp,
        output_state_zp,
    };
    let scratch = kernel.scratch_layout().total;
    Built::with_scratch(kernel, scratch)
}

/// Scratch regions, each 8-byte aligned: output state, cell state, 4 gates, hidden state.
struct Layout {
    c: usize,
    gate_len: usize,
    total: usize,
}

impl LstmInteger {
    fn scratch_layout(&self) -> Layout {
        let up = |b: usize| b.div_ceil(8) * 8;
        let cells = self.n_batch * self.n_cell;
        let c = up(self.n_batch * self.n_output);
        let gate_len = up(cells * 2);
        Layout { c, gate_len, total: c + 5 * gate_len + up(cells) }
    }

    /// One gate: matmuls, peephole, layer norm and activation, for `nb` batches.
    #[allow(clippy::too_many_arguments)]
    fn gate(&self, g: &Gate, act: Act, x: &[i8], h: &[i8], c: &[i16], nb: usize, out: &mut [i16]) {
        let (nc, ni, no) = (self.n_cell, self.n_input, self.n_output);
        out.fill(0);
        let i16_range = (-32768, 32767);
        matmul_accumulate(x, &g.bias_in, &g.w_in, g.scale_in, nb, ni, nc, 0, out, i16_range, |v| v as i16);
        matmul_accumulate(h, &g.bias_rec, &g.w_rec, g.scale_rec, nb, no, nc, 0, out, i16_range, |v| v as i16);
        if let Some((w, scale)) = &g.peephole {
            // TFLite passes n_output as the vector size here.
            vector_batch_product_accumulate(w, no, c, nb, *scale, out);
        }
        if let Some(ln) = &g.layer_norm {
            apply_layer_norm(out, ln, nb, nc);
        }
        for v in out.iter_mut() {
            *v = match act {
                Act::Sigmoid => logistic16(*v, 3),
                Act::Tanh => tanh16(*v, 3),
            };
        }
    }

    /// `LstmStepInteger8x8_16` for `nb` batches: updates `h` and `c` and writes `out`.
    #[allow(clippy::too_many_arguments)]
    fn step(
        &self,
        x: &[i8],
        nb: usize,
        h: &mut [i8],
        c: &mut [i16],
        out: &mut [i8],
        gates: &mut [&mut [i16]; 4],
        hidden: &mut [i8],
    ) {
        let cells = nb * self.n_cell;
        let [ig, fg, cg, og] = gates;
        let (ig, fg, cg, og) = (&mut ig[..cells], &mut fg[..cells], &mut cg[..cells], &mut og[..cells]);
        let hidden = &mut hidden[..cells];
        if let Some(g) = &self.input_gate {
            self.gate(g, Act::Sigmoid, x, h, c, nb, ig);
        }
        self.gate(&self.forget_gate, Act::Sigmoid, x, h, c, nb, fg);
        self.gate(&self.cell_gate, Act::Tanh, x, h, c, nb, cg);

        let input_gate = self.input_gate.as_ref().map(|_| &*ig);
        update_cell(c, input_gate, fg, cg, 30 + self.cell_scale, self.cell_clip);
        self.gate(&self.output_gate, Act::Sigmoid, x, h, c, nb, og);

        // CalculateLstmOutputInteger8x8_16 (tanh of the cell state goes to the input-gate buffer).
        let bits = 15 + self.cell_scale;
        for (t, &cv) in ig.iter_mut().zip(c.iter()) {
            *t = tanh16(cv, bits);
        }
        cwise_mul_scale(og, ig, self.hidden_scale, self.hidden_zp, hidden);
        let h = &mut h[..nb * self.n_output];
        match &self.projection {
            Some(p) => {
                h.fill(0);
                let range = (-128, 127);
                let (nc, no) = (self.n_cell, self.n_output);
                matmul_accumulate(
                    hidden,
                    &p.bias,
                    &p.weights,
                    p.scale,
                    nb,
                    nc,
                    no,
                    self.output_state_zp,
                    h,
                    range,
                    |v| v as i8,
                );
                if self.proj_clip > 0 {
                    let clip = self.proj_clip;
                    for v in h.iter_mut() {
                        *v = (*v).clamp(-clip, clip);
                    }
                }
            }
            None => h.copy_from_slice(&hidden[..h.len()]),
        }
        out[..h.len()].copy_from_slice(h);
    }
}

impl Kernel for LstmInteger {
    fn run(&self, io: &mut Io<'_, '_>) -> Result<()> {
        let (nb, nt, ni, nc, no) = (self.n_batch, self.max_time, self.n_input, self.n_cell, self.n_output);
        let x: &[i8] = cast(io.ins[INPUT])?;
        // The plan passes the variable state tensors as writable `state` (output state, then
        // cell state); a kernel run on its own may pass them as plain inputs instead.
        let (state_h, state_c) = match &mut *io.state {
            [h, c] => (Some(&mut **h), Some(&mut **c)),
            _ => (None, None),
        };
        let h0: &[i8] = match &state_h {
            Some(h) => cast(h)?,
            None => cast(io.ins[OUTPUT_STATE])?,
        };
        let c0: &[i16] = match &state_c {
            Some(c) => cast(c)?,
            None => cast(io.ins[CELL_STATE])?,
        };
        let layout = self.scratch_layout();
        let out: &mut [i8] = cast_mut(&mut *io.outs[0])?;
        if x.len() != nb * nt * ni || h0.len() != nb * no || c0.len() != nb * nc || out.len() != nb * nt * no {
            return Err(Error::argument("LSTM tensor sizes differ from the planned ones"));
        }
        let scratch = io.scratch.get_mut(..layout.total).ok_or_else(|| Error::argument("LSTM scratch too small"))?;
        let (h_bytes, rest) = scratch.split_at_mut(layout.c);
        let (c_bytes, rest) = rest.split_at_mut(layout.gate_len);
        let gate_len = layout.gate_len;
        let (g_bytes, hidden_bytes) = rest.split_at_mut(4 * gate_len);
        let h: &mut [i8] = &mut cast_mut(h_bytes)?[..nb * no];
        let c: &mut [i16] = &mut cast_mut(c_bytes)?[..nb * nc];
        let hidden: &mut [i8] = cast_mut(hidden_bytes)?;
        let mut g_iter = g_bytes.chunks_exact_mut(gate_len);
        let mut next_gate = || -> Result<&mut [i16]> {
            cast_mut(g_iter.next().ok_or_else(|| Error::argument("LSTM scratch too small"))?)
        };
        let mut gates = [next_gate()?, next_gate()?, next_gate()?, next_gate()?];
        h.copy_from_slice(h0);
        c.copy_from_slice(c0);
        if self.time_major {
            for t in 0..nt {
                let xs = &x[t * nb * ni..(t + 1) * nb * ni];
                let os = &mut out[t * nb * no..(t + 1) * nb * no];
                self.step(xs, nb, h, c, os, &mut gates, hidden);
            }
        } else {
            for b in 0..nb {
                for t in 0..nt {
                    let k = b * nt + t;
                    let xs = &x[k * ni..(k + 1) * ni];
                    let os = &mut out[k * no..(k + 1) * no];
                    let (hb, cb) = (&mut h[b * no..(b + 1) * no], &mut c[b * nc..(b + 1) * nc]);
                    self.step(xs, 1, hb, cb, os, &mut gates, hidden);
                }
            }
        }
        // Carry the final state over to the next invocation, as TFLite does.
        if let (Some(sh), Some(sc)) = (state_h, state_c) {
            sh.copy_from_slice(bytemuck::cast_slice(h));
            sc.copy_from_slice(bytemuck::cast_slice(c));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::kernel::{QuantParams, TensorInfo};
    use crate::cpu::par::Par;
    use crate::model::Model;
    use std::path::{Path, PathBuf};

    fn info(t: &crate::model::Tensor) -> TensorInfo {
        TensorInfo {
            index: t.index,
            name: t.name.clone(),
            shape: t.shape.iter().map(|&d| d.max(0) as usize).collect(),
            dtype: t.dtype,
            quant: t.quantization.as_ref().map(|q| QuantParams {
                scale: q.scale.clone(),
                zero_point: if q.zero_point.is_empty() {
                    vec![0; q.scale.len()]
                } else {
                    q.zero_point.iter().map(|&z| z as i32).collect()
                },
                axis: q.quantized_dimension.max(0) as usize,
            }),
        }
    }

    /// The build context the plan would make for `node` of subgraph 0.
    fn make_ctx(model: &Model, node: usize) -> BuildCtx<'_> {
        let sg = &model.subgraphs()[0];
        let op = &sg.operators[node];
        let infos: Vec<TensorInfo> = sg.tensors.iter().map(info).collect();
        BuildCtx {
            op_name: model.op_name(op),
            version: model.opcode(op).version,
            node,
            options: &op.options,
            custom_options: None,
            inputs: op.inputs.iter().map(|i| i.map(|t| infos[t].clone())).collect(),
            constants: op.inputs.iter().map(|i| i.and_then(|t| model.tensor_data(&sg.tensors[t]))).collect(),
            outputs: op.outputs.iter().map(|o| infos[o.unwrap()].clone()).collect(),
            intermediates: op.intermediates.iter().map(|&t| infos[t].clone()).collect(),
            reference: true,
            vnni: false,
            threads: 1,
        }
    }

    /// Builds the LSTM kernel of `node` from the model file and runs it once on `input` (the
    /// bytes of the op's input 0), with the state tensors as TFLite resets them.
    fn run_node(path: &Path, node: usize, input: &[u8]) -> Result<Vec<u8>> {
        let model = Model::open(path)?;
        let mut ctx = make_ctx(&model, node);
        let built = build(&mut ctx)?;
        let sg = &model.subgraphs()[0];
        let op = &sg.operators[node];
        let infos: Vec<TensorInfo> = sg.tensors.iter().map(info).collect();
        let mut bufs: Vec<Vec<u64>> = Vec::new();
        for (k, inp) in op.inputs.iter().enumerate() {
            let bytes: Vec<u8> = match *inp {
                None => Vec::new(),
                Some(t) => match model.tensor_data(&sg.tensors[t]) {
                    Some(d) => d.to_vec(),
                    None if k == INPUT => input.to_vec(),
                    None => {
                        // TFLite's ResetVariableTensor: int8 variables hold their zero point.
                        let fill = match (&infos[t].quant, infos[t].dtype) {
                            (Some(q), TensorType::INT8) => q.zero_point() as i8 as u8,
                            _ => 0,
                        };
                        vec![fill; infos[t].byte_len()]
                    }
                },
            };
            let mut b = vec![0u64; bytes.len().div_ceil(8)];
            bytemuck::cast_slice_mut::<u64, u8>(&mut b)[..bytes.len()].copy_from_slice(&bytes);
            bufs.push(b);
        }
        let lens: Vec<usize> = op.inputs.iter().map(|i| i.map_or(0, |t| infos[t].byte_len())).collect();
        let ins: Vec<&[u8]> = bufs.iter().zip(&lens).map(|(b, &n)| &bytemuck::cast_slice::<u64, u8>(b)[..n]).collect();
        let out_len = ctx.outputs[0].byte_len();
        let mut out = vec![0u64; out_len.div_ceil(8)];
        let mut scratch = vec![0u64; built.scratch_bytes.div_ceil(8)];
        let par = Par::new(1)?;
        let mut outs = [&mut bytemuck::cast_slice_mut::<u64, u8>(&mut out)[..out_len]];
        built.kernel.run(&mut Io {
            ins: &ins,
            outs: &mut outs,
            state: &mut [],
            scratch: bytemuck::cast_slice_mut(&mut scratch),
            par: &par,
        })?;
        Ok(bytemuck::cast_slice::<u64, u8>(&out)[..out_len].to_vec())
    }

    fn data(file: &str) -> Vec<u8> {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/lstm").join(file);
        std::fs::read(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
    }

    fn shared_testdata() -> PathBuf {
        let dir = match std::env::var_os("EDGETPU_TESTDATA") {
            Some(d) => PathBuf::from(d),
            None => PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/testdata"),
        };
        assert!(dir.join("MANIFEST.md").is_file(), "test data not found at {}: set EDGETPU_TESTDATA", dir.display());
        dir
    }

    fn assert_same(tag: &str, got: &[u8], want: &[u8]) {
        assert_eq!(got.len(), want.len(), "{tag}: length");
        let diff: Vec<(usize, i8, i8)> = got
            .iter()
            .zip(want)
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .map(|(i, (&a, &b))| (i, a as i8, b as i8))
            .collect();
        assert!(
            diff.is_empty(),
            "{tag}: {} of {} bytes differ, first (index, got, want): {:?}",
            diff.len(),
            got.len(),
            &diff[..diff.len().min(8)]
        );
    }

    /// Generated one-op models (tests/data/lstm/*.tflite, made with the flatbuffer schema and run
    /// through ai-edge-litert 2.3.0 BUILTIN_REF): CIFG, peephole, projection (narrower and wider than the
    /// cells, with and without bias and clip), layer norm, time-major, several batches; and
    /// `projection_saturated_hidden`, a random model of tools/op_fuzz whose hidden state saturates
    /// before the projection (see [`hidden_zp_sign`]).
    #[test]
    fn generated_variants_match_tflite() {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/data/lstm");
        for name in [
            "basic",
            "time_major",
            "cifg_peephole_projection",
            "layer_norm_peephole_projection",
            "layer_norm_cifg",
            "projection_wide",
            "projection_saturated_hidden",
        ] {
            let got = run_node(&dir.join(format!("{name}.tflite")), 0, &data(&format!("{name}.in.bin")))
                .unwrap_or_else(|e| panic!("{name}: {e}"));
            assert_same(name, &got, &data(&format!("{name}.out.bin")));
        }
    }

    #[test]
    fn unsupported_variants_fail_in_build() {
        let model = Model::open(shared_testdata().join("keras_lstm_mnist_ptq.tflite")).unwrap();
        let expect_err = |change: &dyn Fn(&mut BuildCtx<'_>), what: &str| {
            let mut ctx = make_ctx(&model, 1);
            change(&mut ctx);
            let e = build(&mut ctx).err().unwrap_or_else(|| panic!("{what}: built")).to_string();
            assert!(e.contains(what) && e.contains("UNIDIRECTIONAL_SEQUENCE_LSTM"), "{what}: {e}");
        };
        expect_err(&|c| c.inputs[0].as_mut().unwrap().dtype = TensorType::FLOAT32, "hybrid LSTM");
        expect_err(
            &|c| {
                for t in c.inputs.iter_mut().flatten() {
                    t.dtype = TensorType::FLOAT32;
                }
            },
            "float32 LSTM",
        );
        expect_err(&|c| c.intermediates.clear(), "5 intermediate tensors");
        expect_err(&|c| c.inputs[19].as_mut().unwrap().quant.as_mut().unwrap().scale[0] = 0.0003, "power of two");
        expect_err(&|c| c.inputs[19].as_mut().unwrap().quant.as_mut().unwrap().scale[0] = 2f32.powi(-20), "2^-20");
        expect_err(&|c| c.inputs[2].as_mut().unwrap().quant.as_mut().unwrap().scale.push(0.1), "per-tensor");
        expect_err(&|c| c.constants[2] = None, "must be a constant");
    }
}
