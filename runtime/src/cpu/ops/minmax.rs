//! MAXIMUM and MINIMUM of any numeric type, with NumPy broadcasting: the broadcast (dimensions
//! merged at build time) that PRELU shares.

use crate::cpu::kernel::{cast, cast_mut, BuildCtx, Built, Io, Kernel};
use crate::error::Result;
use crate::model::TensorType;

// ------------------------------------------------------------------------------------------ broadcasting

/// Most dimensions of a broadcast binary op (after merging).
const MAXD: usize = 8;

/// Element offsets of two operands broadcast to an output: dimensions of size 1 dropped and
/// adjacent dimensions merged where both operands stay contiguous.
pub(super) struct Broadcast {
    rank: usize,
    dims: [usize; MAXD],
    sa: [usize; MAXD],
    sb: [usize; MAXD],
}

/// NumPy broadcast shape of `a` and `b`, if compatible.
fn broadcast_shape(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    let at = |s: &[usize], i: usize| if i + s.len() >= rank { s[i + s.len() - rank] } else { 1 };
    (0..rank)
        .map(|i| match (at(a, i), at(b, i)) {
            (x, y) if x == y || y == 1 => Some(x),
            (1, y) => Some(y),
            _ => None,
        })
        .collect()
}

impl Broadcast {
    fn new(a: &[usize], b: &[usize], out: &[usize]) -> Option<Broadcast> {
        let rank = out.len();
        let strides = |s: &[usize]| {
            let mut st = vec![0usize; rank];
            let mut acc = 1;
            for i in (0..rank).rev() {
                let d = if i + s.len() >= rank { s[i + s.len() - rank] } else { 1 };
                st[i] = if d == 1 { 0 } else { acc };
                acc *= d;
            }
            st
        };
        let (sa, sb) = (strides(a), strides(b));
        let mut dims: Vec<(usize, usize, usize)> = Vec::new();
        for i in 0..rank {
            if out[i] == 1 {
                continue;
            }
            match dims.last_mut() {
                Some(l) if l.1 == sa[i] * out[i] && l.2 == sb[i] * out[i] => {
                    *l = (l.0 * out[i], sa[i], sb[i]);
                }
                _ => dims.push((out[i], sa[i], sb[i])),
            }
        }
        if dims.is_empty() {
            dims.push((1, 0, 0));
        }
        if dims.len() > MAXD {
            return None;
        }
        let mut bc = Broadcast { rank: dims.len(), dims: [1; MAXD], sa: [0; MAXD], sb: [0; MAXD] };
        for (k, &(d, x, y)) in dims.iter().enumerate() {
            (bc.dims[k], bc.sa[k], bc.sb[k]) = (d, x, y);
        }
        Some(bc)
    }

    /// Calls `f(out_offset, a_offset, b_offset)` for runs of the innermost dimension; the run's
    /// length and operand steps are `self.inner()`.
    fn for_each_run(&self, mut f: impl FnMut(usize, usize, usize)) {
        let outer = self.rank - 1;
        let inner = self.dims[outer];
        let mut idx = [0usize; MAXD];
        let (mut ia, mut ib, mut o) = (0usize, 0usize, 0usize);
        loop {
            f(o, ia, ib);
            o += inner;
            let mut k = outer;
            loop {
                if k == 0 {
                    return;
                }
                k -= 1;
                idx[k] += 1;
                ia += self.sa[k];
                ib += self.sb[k];
                if idx[k] < self.dims[k] {
                    break;
                }
                ia -= self.sa[k] * self.dims[k];
                ib -= self.sb[k] * self.dims[k];
                idx[k] = 0;
            }
        }
    }

    fn inner(&self) -> (usize, usize, usize) {
        let k = self.rank - 1;
        (self.dims[k], self.sa[k], self.sb[k])
    }
}

/// Applies `op` element-wise with broadcasting.
pub(super) fn broadcast_apply<A: Copy, B: Copy, O>(
    bc: &Broadcast,
    a: &[A],
    b: &[B],
    out: &mut [O],
    op: impl Fn(A, B) -> O,
) {
    if out.is_empty() {
        return;
    }
    let (len, sa, sb) = bc.inner();
    bc.for_each_run(|o, ia, ib| {
        let dst = &mut out[o..o + len];
        if sa == 1 && sb == 1 {
            for ((d, &x), &y) in dst.iter_mut().zip(&a[ia..ia + len]).zip(&b[ib..ib + len]) {
                *d = op(x, y);
            }
        } else {
            for (i, d) in dst.iter_mut().enumerate() {
                *d = op(a[ia + i * sa], b[ib + i * sb]);
            }
        }
    });
}

// ------------------------------------------------------------------------------------------ MAXIMUM / MINIMUM

struct MaxMin<T> {
    bc: Broadcast,
    max: bool,
    _t: std::marker::PhantomData<T>,
}

impl<T: bytemuck::Pod + PartialOrd + Send + Sync> Kernel for MaxMin<T> {
    fn run(&self, io: &mut Io<'_, '_>) -> Result<()> {
        let (a, b) = (cast::<T>(io.ins[0])?, cast::<T>(io.ins[1])?);
        let out = cast_mut::<T>(io.outs[0])?;
        if self.max {
            broadcast_apply(&self.bc, a, b, out, |x, y| if x > y { x } else { y });
        } else {
            broadcast_apply(&self.bc, a, b, out, |x, y| if x < y { x } else { y });
        }
        Ok(())
    }
}

/// Checks two inputs broadcast to the output, sets the output shape.
pub(super) fn binary_broadcast(ctx: &mut BuildCtx<'_>) -> Result<Broadcast> {
    let (a, b) = (ctx.input(0)?.shape.clone(), ctx.input(1)?.shape.clone());
    let out =
        broadcast_shape(&a, &b).ok_or_else(|| ctx.err(format!("input shapes {a:?} and {b:?} do not broadcast")))?;
    let bc = Broadcast::new(&a, &b, &out).ok_or_else(|| ctx.err("too many dimensions to broadcast"))?;
    ctx.outputs[0].shape = out;
    Ok(bc)
}

pub(crate) fn build_max_min(ctx: &mut BuildCtx<'_>) -> Result<Built> {
    let t = ctx.input(0)?.dtype;
    if ctx.input(1)?.dtype != t || ctx.output(0)?.dtype != t {
        return Err(ctx.err("inputs and output must have the same type"));
    }
    let bc = binary_broadcast(ctx)?;
    let max = ctx.op_name == "MAXIMUM";
    macro_rules! k {
        ($t:ty) => {
            Built::new(MaxMin::<$t> { bc, max, _t: std::marker::PhantomData })
        };
    }
    match t {
        TensorType::FLOAT32 => k!(f32),
        TensorType::UINT8 => k!(u8),
        TensorType::INT8 => k!(i8),
        TensorType::INT16 => k!(i16),
        TensorType::INT32 => k!(i32),
        TensorType::INT64 => k!(i64),
        _ => Err(ctx.err("MAXIMUM/MINIMUM support float32, uint8, int8, int16, int32 and int64")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn broadcast_merges_dimensions() {
        let out = broadcast_shape(&[2, 1, 4, 3], &[5, 1, 3]).unwrap();
        assert_eq!(out, vec![2, 5, 4, 3]);
        let bc = Broadcast::new(&[2, 1, 4, 3], &[5, 1, 3], &out).unwrap();
        let a: Vec<i32> = (0..24).collect();
        let b: Vec<i32> = (0..15).map(|v| v * 100).collect();
        let mut o = vec![0; 120];
        broadcast_apply(&bc, &a, &b, &mut o, |x, y| x + y);
        // o[n, h, w, c] = a[n, 0, w, c] + b[h, 0, c]
        let (n, h, w, c) = (1, 3, 2, 1);
        assert_eq!(o[((n * 5 + h) * 4 + w) * 3 + c], (n * 12 + w * 3 + c) as i32 + (h * 3 + c) as i32 * 100);
        assert!(broadcast_shape(&[2, 3], &[4, 3]).is_none());
        let same = Broadcast::new(&[3, 4], &[3, 4], &[3, 4]).unwrap();
        assert_eq!((same.rank, same.inner()), (1, (12, 1, 1)));
    }
}
