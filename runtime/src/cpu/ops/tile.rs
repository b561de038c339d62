//! TILE, for any fixed-size element type (TFLite's kernel handles every type of 1, 2, 4 or 8
//! bytes: bool, int8, uint8, int16, int32, int64, float32, ...): the input repeated
//! `multiples[k]` times along each axis `k`. Pure byte copies, so bit-exact by construction.
//!
//! The multiples (int32 or int64) may be a constant, which fixes the output shape at build time,
//! or a run-time tensor. In the second case TFLite resizes the output on every run; this runtime
//! plans static shapes, so the output shape must be in the file, the multiples it implies are
//! derived from it, and each run checks that the multiples tensor holds exactly those.

use super::common::set_output_shape;
use super::view::{const_ints, io_types};
use crate::cpu::kernel::{BuildCtx, Built, Io, Kernel};
use crate::error::{Error, Result};
use crate::model::TensorType;

struct Tile {
    /// Element size in bytes.
    es: usize,
    in_dims: Vec<usize>,
    multiples: Vec<usize>,
    /// First axis from which every multiple is 1: the blocks below it are copied whole.
    flat_from: usize,
    /// The multiples input is a run-time tensor of this type: each run checks its values.
    runtime: Option<TensorType>,
    /// Tensor index of the multiples input (for errors).
    multiples_tensor: usize,
}

pub(crate) fn build_tile(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    let (x, es) = io_types(ctx)?;
    if ctx.inputs.len() != 2 || ctx.outputs.len() != 1 {
        return Err(ctx.err(format!(
            "takes 2 inputs and 1 output, the node has {} and {}",
            ctx.inputs.len(),
            ctx.outputs.len()
        )));
    }
    let m = ctx.input(1)?.clone();
    if m.dtype != TensorType::INT32 && m.dtype != TensorType::INT64 {
        return Err(ctx.err(format!("multiples (tensor {}) have type {}, expected int32 or int64", m.index, m.dtype)));
    }
    let rank = x.shape.len();
    if m.num_elements() != rank {
        return Err(ctx.err(format!(
            "multiples (tensor {}) have {} values for an input of rank {rank} (shape {:?})",
            m.index,
            m.num_elements(),
            x.shape
        )));
    }
    let constant = ctx.constants.get(1).copied().flatten().is_some();
    let multiples: Vec<usize> = if constant {
        let v = const_ints(ctx, 1)?;
        let mut out = Vec::with_capacity(rank);
        for (k, (&d, &mk)) in x.shape.iter().zip(&v).enumerate() {
            // TFLite: multiples must be non-negative and every output dimension fit in int32.
            let fits =
                usize::try_from(mk).ok().and_then(|mk| d.checked_mul(mk)).is_some_and(|n| n <= i32::MAX as usize);
            if mk < 0 || !fits {
                return Err(ctx.err(format!(
                    "multiple {mk} of axis {k} (tensor {}) times the input dimension {d} is not in 0..=2^31-1",
                    m.index
                )));
            }
            out.push(mk as usize);
        }
        let shape = x.shape.iter().zip(&out).map(|(&d, &mk)| d * mk).collect();
        set_output_shape(ctx, 0, shape)?;
        out
    } else {
        // The output shape from the file fixes the multiples.
        let y = ctx.output(0)?;
        let implied = (y.shape.len() == rank)
            .then(|| {
                x.shape
                    .iter()
                    .zip(&y.shape)
                    .map(|(&d, &o)| match (d, o) {
                        (0, 0) => Some(0),
                        (0, _) => None,
                        (d, o) => o.is_multiple_of(d).then_some(o / d),
                    })
                    .collect::<Option<Vec<usize>>>()
            })
            .flatten();
        implied.ok_or_else(|| {
            ctx.err(format!(
                "the multiples (tensor {}) are computed at run time and the output (tensor {}) has shape {:?} in \
                 the file, not a tiling of the input shape {:?}; this runtime needs static shapes",
                m.index, y.index, y.shape, x.shape
            ))
        })?
    };
    let flat_from = multiples.iter().rposition(|&mk| mk != 1).map_or(0, |k| k + 1);
    let runtime = (!constant).then_some(m.dtype);
    let kernel = Tile { es, in_dims: x.shape.clone(), multiples, flat_from, runtime, multiples_tensor: m.index };
    Built::new(kernel)
}

impl Tile {
    /// Checks the run-time multiples against the planned ones.
    fn check_multiples(&self, bytes: &[u8], dtype: TensorType) -> Result<()> {
        let values: Vec<i64> = match dtype {
            TensorType::INT64 => {
                bytes.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8]))).collect()
            }
            _ => bytes.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]]) as i64).collect(),
        };
        let ok = values.len() == self.multiples.len()
            && values.iter().zip(&self.multiples).zip(&self.in_dims).all(|((&v, &m), &d)| {
                // An empty input axis gives an empty output whatever its (non-negative) multiple.
                if d == 0 {
                    v >= 0
                } else {
                    v == m as i64
                }
            });
        if ok {
            return Ok(());
        }
        Err(Error::argument(format!(
            "the multiples tensor {} holds {values:?}, but the output was planned with multiples {:?} (its shape \
             in the file); this runtime needs static shapes",
            self.multiples_tensor, self.multiples
        )))
    }

    /// TFLite's `TileOneDimension` from axis `axis` on: tiles the block of `input` below `axis`
    /// into `out`; returns the bytes read and written.
    fn tile(&self, axis: usize, input: &[u8], out: &mut [u8]) -> (usize, usize) {
        if axis >= self.flat_from {
            // Every multiple from here on is 1: the block is copied as it is.
            let n = self.in_dims[axis..].iter().product::<usize>() * self.es;
            out[..n].copy_from_slice(&input[..n]);
            return (n, n);
        }
        let (mut read, mut written) = (0, 0);
        for _ in 0..self.in_dims[axis] {
            let (r, w) = self.tile(axis + 1, &input[read..], &mut out[written..]);
            read += r;
            written += w;
        }
        for k in 1..self.multiples[axis] {
            out.copy_within(0..written, k * written);
        }
        (read, written * self.multiples[axis])
    }
}

impl Kernel for Tile {
    fn run(&self, io: &mut Io<'_, '_>) -> Result<()> {
        if let Some(dtype) = self.runtime {
            self.check_multiples(io.ins[1], dtype)?;
        }
        let out = &mut *io.outs[0];
        if out.is_empty() {
            return Ok(());
        }
        self.tile(0, io.ins[0], out);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::kernel::TensorInfo;
    use crate::cpu::ops::test_util::run_kernel;
    use crate::cpu::par::Par;
    use crate::model::OpOptions;

    fn info(index: usize, shape: &[usize], dtype: TensorType) -> TensorInfo {
        TensorInfo { index, name: format!("t{index}"), shape: shape.to_vec(), dtype, quant: None }
    }

    /// Builds TILE of an int16 input of `shape` with int32 `multiples` (constant or not; a
    /// run-time one needs `out_shape`) and runs it on `0, 1, 2, ...` with `runtime` multiples.
    fn tile_i16(
        shape: &[usize],
        multiples: &[i32],
        constant: bool,
        out_shape: &[usize],
        runtime: &[i32],
    ) -> Result<(Vec<usize>, Vec<i16>)> {
        let m_bytes: Vec<u8> = multiples.iter().flat_map(|v| v.to_le_bytes()).collect();
        let options = OpOptions::default();
        let mut ctx = BuildCtx {
            op_name: "TILE",
            version: 1,
            node: 0,
            options: &options,
            custom_options: None,
            inputs: vec![Some(info(0, shape, TensorType::INT16)), Some(info(1, &[multiples.len()], TensorType::INT32))],
            constants: vec![None, constant.then_some(&m_bytes[..])],
            outputs: vec![info(2, out_shape, TensorType::INT16)],
            intermediates: Vec::new(),
            reference: false,
            vnni: false,
            threads: 1,
        };
        let built = build_tile(&mut ctx)?;
        let out_shape = ctx.outputs[0].shape.clone();
        let n: usize = shape.iter().product();
        let input: Vec<u8> = (0..n as i16).flat_map(|v| v.to_le_bytes()).collect();
        let rt: Vec<u8> = runtime.iter().flat_map(|v| v.to_le_bytes()).collect();
        let out_len = out_shape.iter().product::<usize>() * 2;
        let par = Par::new(1)?;
        let outs = run_kernel(&built, &[&input, &rt], &[out_len], &par, |_, _| 0xAA)?;
        Ok((out_shape, outs[0].chunks_exact(2).map(|c| i16::from_le_bytes([c[0], c[1]])).collect()))
    }

    /// `out[i] = in[j]` with `j[k] = i[k] % in_dims[k]`, element by element.
    fn naive(shape: &[usize], multiples: &[usize]) -> Vec<i16> {
        let out_dims: Vec<usize> = shape.iter().zip(multiples).map(|(d, m)| d * m).collect();
        let total: usize = out_dims.iter().product();
        (0..total)
            .map(|mut i| {
                let mut j = 0;
                let mut stride = 1;
                for k in (0..shape.len()).rev() {
                    let idx = i % out_dims[k];
                    i /= out_dims[k];
                    j += (idx % shape[k]) * stride;
                    stride *= shape[k];
                }
                j as i16
            })
            .collect()
    }

    #[test]
    fn matches_the_definition() {
        let cases: &[(&[usize], &[i32])] = &[
            (&[3], &[4]),
            (&[2, 3], &[1, 1]),
            (&[2, 3], &[3, 1]),
            (&[2, 3], &[1, 3]),
            (&[2, 1, 3], &[2, 5, 1]),
            (&[1, 2, 2, 3], &[2, 1, 3, 2]),
            (&[2, 1, 2, 1, 2, 1, 2], &[1, 2, 1, 3, 1, 2, 2]),
            (&[], &[]),
        ];
        for &(shape, multiples) in cases {
            let m: Vec<usize> = multiples.iter().map(|&v| v as usize).collect();
            let (out_shape, got) = tile_i16(shape, multiples, true, &[], &[]).unwrap();
            let want_shape: Vec<usize> = shape.iter().zip(&m).map(|(d, m)| d * m).collect();
            assert_eq!(out_shape, want_shape, "{shape:?} x {multiples:?}");
            assert_eq!(got, naive(shape, &m), "{shape:?} x {multiples:?}");
            // The same with run-time multiples and the output shape from the file.
            let (_, got_rt) = tile_i16(shape, multiples, false, &want_shape, multiples).unwrap();
            assert_eq!(got_rt, got, "{shape:?} x {multiples:?} at run time");
        }
    }

    #[test]
    fn bad_multiples_are_refused() {
        let msg = |r: Result<(Vec<usize>, Vec<i16>)>| r.err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg(tile_i16(&[2, 3], &[1, -1], true, &[], &[])).contains("multiple -1 of axis 1"));
        assert!(msg(tile_i16(&[2, 3], &[1], true, &[], &[])).contains("1 values for an input of rank 2"));
        assert!(msg(tile_i16(&[2, 3], &[i32::MAX, 1], true, &[], &[])).contains("not in 0..=2^31-1"));
        // Run-time multiples: the output shape must be a tiling of the input's...
        assert!(msg(tile_i16(&[2, 3], &[2, 2], false, &[4, 7], &[2, 2])).contains("needs static shapes"));
        assert!(msg(tile_i16(&[2, 3], &[2, 2], false, &[], &[2, 2])).contains("needs static shapes"));
        // ...and each run's multiples must give that shape.
        let e = msg(tile_i16(&[2, 3], &[2, 2], false, &[4, 6], &[2, 3]));
        assert!(e.contains("holds [2, 3]") && e.contains("planned with multiples [2, 2]"), "{e}");
    }
}
