//! Running a built kernel by hand in unit tests, the way the interpreter does: inputs copied to
//! 8-byte aligned buffers, `scratch_bytes` per thread, outputs pre-filled so that an element the
//! kernel forgets to write is noticed.

use crate::cpu::kernel::{Built, Io};
use crate::cpu::par::Par;
use crate::error::Result;

/// Runs `built` on `ins`; output `k` has `out_lens[k]` bytes, pre-filled with `fill(k, i)`.
pub(crate) fn run_kernel(
    built: &Built,
    ins: &[&[u8]],
    out_lens: &[usize],
    par: &Par,
    fill: impl Fn(usize, usize) -> u8,
) -> Result<Vec<Vec<u8>>> {
    let aligned: Vec<Vec<u64>> = ins
        .iter()
        .map(|b| {
            let mut v = vec![0u64; b.len().div_ceil(8)];
            bytemuck::cast_slice_mut::<u64, u8>(&mut v)[..b.len()].copy_from_slice(b);
            v
        })
        .collect();
    let in_slices: Vec<&[u8]> =
        aligned.iter().zip(ins).map(|(v, b)| &bytemuck::cast_slice::<u64, u8>(v)[..b.len()]).collect();
    let mut outs: Vec<Vec<u64>> = out_lens.iter().map(|&n| vec![0u64; n.div_ceil(8)]).collect();
    let mut scratch = vec![0u64; (built.scratch_bytes * par.threads()).div_ceil(8) + 1];
    {
        let mut out_slices: Vec<&mut [u8]> = outs
            .iter_mut()
            .zip(out_lens)
            .enumerate()
            .map(|(k, (o, &n))| {
                let bytes = &mut bytemuck::cast_slice_mut::<u64, u8>(o)[..n];
                for (i, b) in bytes.iter_mut().enumerate() {
                    *b = fill(k, i);
                }
                bytes
            })
            .collect();
        built.kernel.run(&mut Io {
            ins: &in_slices,
            outs: &mut out_slices,
            state: &mut [],
            scratch: bytemuck::cast_slice_mut(&mut scratch),
            par,
        })?;
    }
    Ok(outs.iter().zip(out_lens).map(|(o, &n)| bytemuck::cast_slice::<u64, u8>(o)[..n].to_vec()).collect())
}
