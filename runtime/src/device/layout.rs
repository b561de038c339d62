//! Moving an output between the device's padded or tiled layout and the TFLite tensor's dense
//! NHWC bytes (PROTOCOL.md §6), in both directions (the simulator needs the device layout), and
//! the MSB flip of signed layers. Nothing here allocates.

use crate::error::{Error, Result};
use crate::package::Layer;

/// Calls `f(device_offset, dense_offset, len)` for every contiguous run of an output, after
/// checking the buffer sizes.
fn runs(layer: &Layer, device_len: usize, dense_len: usize, mut f: impl FnMut(usize, usize, usize)) -> Result<()> {
    let out =
        layer.output.as_ref().ok_or_else(|| Error::argument(format!("layer {:?} is not an output", layer.name)))?;
    if let Some(slices) = &out.shape_info {
        return slice_runs(layer, slices, device_len, dense_len, f);
    }
    let es = layer.data_type.size_bytes();
    let one = layer.num_elements() * es;
    let padded = layer.size_bytes;
    let count = layer.execution_count.max(1);
    if dense_len != one * count || device_len < padded * count {
        return Err(Error::argument(format!(
            "output {:?}: {dense_len} dense bytes and {device_len} device bytes given, the layer needs {} and at \
             least {}",
            layer.name,
            one * count,
            padded * count
        )));
    }
    let tiled = match (&out.layout, layer.is_tiled()) {
        (Some(layout), true) => Some(layout),
        _ => None,
    };
    for run in 0..count {
        let (dev0, den0) = (run * padded, run * one);
        match tiled {
            Some(layout) => {
                let row = layer.z_dim * es;
                for y in 0..layer.y_dim {
                    for x in 0..layer.x_dim {
                        let at = layout
                            .index(y, x, 0)
                            .and_then(|i| usize::try_from(i).ok())
                            .map(|i| i * es)
                            .filter(|&at| at + row <= padded)
                            .ok_or_else(|| {
                                Error::argument(format!(
                                    "output {:?}: the tile of ({y}, {x}) lies outside the padded buffer",
                                    layer.name
                                ))
                            })?;
                        f(dev0 + at, den0 + (y * layer.x_dim + x) * row, row);
                    }
                }
            }
            // One-dimensional (or untiled): the first bytes, padding at the end.
            None => f(dev0, den0, one.min(padded)),
        }
    }
    Ok(())
}

/// Copies an output from the device's padded/tiled buffer into dense tensor bytes.
pub fn output_from_device(layer: &Layer, device: &[u8], dense: &mut [u8]) -> Result<()> {
    runs(layer, device.len(), dense.len(), |d, t, n| dense[t..t + n].copy_from_slice(&device[d..d + n]))
}

/// Lays dense tensor bytes out as the device would return them (padding bytes keep what
/// `device` held): what a simulator needs to produce device output from a reference result.
pub fn output_to_device(layer: &Layer, dense: &[u8], device: &mut [u8]) -> Result<()> {
    runs(layer, device.len(), dense.len(), |d, t, n| device[d..d + n].copy_from_slice(&dense[t..t + n]))
}

/// Flips the most significant bit of every element of a signed layer (the device works on
/// offset-binary values): the runtime does this to inputs before sending and to outputs after
/// receiving. No-op for unsigned layers.
pub fn flip_signed(layer: &Layer, bytes: &mut [u8]) {
    if layer.data_type.is_signed_fixed_point() {
        let es = layer.data_type.size_bytes().max(1);
        for e in bytes.chunks_exact_mut(es) {
            e[es - 1] ^= 0x80;
        }
    }
}

/// Flips the most significant bit of the first y·x·z elements of a signed layer, and nothing
/// else: what libedgetpu's `TransformSignedDataType` covers, on a padded input buffer before it is
/// sent and on a dense output after re-layout. Padding and, for iterative layers, what follows
/// the first y·x·z elements are left alone. No-op for unsigned layers.
pub fn flip_signed_layer(layer: &Layer, bytes: &mut [u8]) {
    if layer.data_type.is_signed_fixed_point() {
        let es = layer.data_type.size_bytes().max(1);
        let n = layer.y_dim.saturating_mul(layer.x_dim).saturating_mul(layer.z_dim).saturating_mul(es);
        let end = n.min(bytes.len());
        for e in bytes[..end].chunks_exact_mut(es) {
            e[es - 1] ^= 0x80;
        }
    }
}

/// Copies a dense input into the device's padded buffer: iteration i of an iterative layer
/// (`execution_count` > 1) starts at i · (padded size ÷ count), each followed by its padding
/// (libedgetpu's `ScatterInput`); otherwise the bytes lead and padding follows. Padding is zeroed.
pub fn scatter_input(layer: &Layer, dense: &[u8], padded: &mut [u8]) {
    let count = layer.execution_count.max(1);
    let actual = dense.len() / count;
    padded.fill(0);
    if count > 1 && dense.len() != padded.len() && actual > 0 {
        let step = padded.len() / count;
        for (i, part) in dense.chunks_exact(actual).enumerate().take(count) {
            let at = i * step;
            if let Some(dst) = padded.get_mut(at..at + actual.min(step)) {
                dst.copy_from_slice(&part[..dst.len()]);
            }
        }
    } else {
        let n = dense.len().min(padded.len());
        padded[..n].copy_from_slice(&dense[..n]);
    }
}

/// The inverse of [`scatter_input`]: the dense bytes (`dense_len` of them) the chip reads from a
/// padded input buffer, iteration by iteration, written over `out`.
pub fn gather_input(layer: &Layer, padded: &[u8], dense_len: usize, out: &mut Vec<u8>) {
    let count = layer.execution_count.max(1);
    let actual = dense_len / count;
    out.clear();
    if count > 1 && dense_len != padded.len() && actual > 0 {
        let step = padded.len() / count;
        out.reserve(dense_len);
        for i in 0..count {
            let at = (i * step).min(padded.len());
            let end = (at + actual.min(step)).min(padded.len());
            out.extend_from_slice(&padded[at..end]);
            out.resize((i + 1) * actual, 0);
        }
    } else {
        out.extend_from_slice(&padded[..dense_len.min(padded.len())]);
        out.resize(dense_len, 0);
    }
}

/// Most dimensions of a `shape_info` slice.
const MAX_DIMS: usize = 8;

/// The runs of an output described by `shape_info` (PROTOCOL.md §3.7, §6): each slice is a
/// strided block of the device buffer at its byte offset; element `p` of a slice (a position in
/// the layer's shape) sits at `offset + Σ stride[d]·(p[d] − start[d])` elements there, and at the
/// packed index of `p` in the layer's shape in the dense tensor.
fn slice_runs(
    layer: &Layer,
    slices: &[crate::package::OutputSlice],
    device_len: usize,
    dense_len: usize,
    mut f: impl FnMut(usize, usize, usize),
) -> Result<()> {
    let bad = |why: String| Error::argument(format!("output {:?}: shape_info {why}", layer.name));
    if layer.execution_count.max(1) != 1 {
        return Err(bad("with several executions per inference is not supported".into()));
    }
    let shape = layer.shape.as_deref().ok_or_else(|| bad("without a layer shape".into()))?;
    let dims = shape.len();
    if dims == 0 || dims > MAX_DIMS {
        return Err(bad(format!("has {dims} dimensions")));
    }
    let es = layer.data_type.size_bytes().max(1);
    // Packed strides of the layer's shape (the dense tensor).
    let mut dense_stride = [0i64; MAX_DIMS];
    let mut total = 1i64;
    for d in (0..dims).rev() {
        let (a, b) = shape[d];
        dense_stride[d] = total;
        total = total
            .checked_mul(i64::from(b) - i64::from(a) + 1)
            .filter(|&t| t > 0)
            .ok_or_else(|| bad(format!("has an empty or huge dimension {d}")))?;
    }
    if (total as u128) * es as u128 != dense_len as u128 {
        return Err(bad(format!("describes {total} elements, the tensor has {} bytes", dense_len)));
    }
    for (i, sl) in slices.iter().enumerate() {
        if sl.shape.len() != dims
            || sl.stride.len() != dims
            || sl.offset < 0
            || !(sl.offset as usize).is_multiple_of(es)
        {
            return Err(bad(format!(
                "slice {i} has {} dimensions, {} strides and offset {}",
                sl.shape.len(),
                sl.stride.len(),
                sl.offset
            )));
        }
        for (d, ((&(a, b), &(lo, hi)), &stride)) in sl.shape.iter().zip(shape).zip(&sl.stride).enumerate() {
            if a > b || a < lo || b > hi || stride < 0 {
                return Err(bad(format!(
                    "slice {i} dimension {d} ({a}..={b}, stride {stride}) lies outside the layer"
                )));
            }
        }
        // Walk the slice's positions, innermost dimension as one run when both sides are
        // contiguous in it.
        let inner = dims - 1;
        let run_len = (sl.shape[inner].1 - sl.shape[inner].0 + 1) as usize;
        let contiguous = sl.stride[inner] == 1;
        let mut pos = [0i64; MAX_DIMS];
        for (p, &(a, _)) in pos.iter_mut().zip(&sl.shape) {
            *p = i64::from(a);
        }
        loop {
            let mut src = i64::from(sl.offset) / es as i64;
            let mut dst = 0i64;
            for d in 0..dims {
                src += i64::from(sl.stride[d]) * (pos[d] - i64::from(sl.shape[d].0));
                dst += dense_stride[d] * (pos[d] - i64::from(shape[d].0));
            }
            let (count, step) = if contiguous { (1, run_len * es) } else { (run_len, es) };
            for k in 0..count as i64 {
                // Element indices are i64 (from i32 fields): no overflow; the byte range is
                // checked against both buffers before use.
                let s0 = (src + k * i64::from(sl.stride[inner])) * es as i64;
                let d0 = (dst + k) * es as i64;
                let fits = |at: i64, len: usize| at >= 0 && (at as u64).saturating_add(step as u64) <= len as u64;
                if !fits(s0, device_len) || !fits(d0, dense_len) {
                    return Err(bad(format!("slice {i} reaches past the buffers ({device_len} device bytes)")));
                }
                f(s0 as usize, d0 as usize, step);
            }
            // Next position (odometer over the outer dimensions; the innermost is done).
            let mut done = true;
            let mut d = inner;
            while d > 0 {
                d -= 1;
                pos[d] += 1;
                if pos[d] <= i64::from(sl.shape[d].1) {
                    done = false;
                    break;
                }
                pos[d] = i64::from(sl.shape[d].0);
            }
            if done {
                break;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::package::{DataType, OutputInfo, OutputSlice};

    /// An input of 2×3×1 signed bytes per iteration, run 3 times per inference, whose padded
    /// size per iteration is 8 bytes.
    fn iterative() -> Layer {
        Layer {
            name: "in".into(),
            size_bytes: 8,
            y_dim: 2,
            x_dim: 3,
            z_dim: 1,
            zero_point: 0,
            scale: 1.0,
            data_type: DataType::SignedFixedPoint8,
            execution_count: 3,
            cache_on_dram: false,
            shape: None,
            output: None,
        }
    }

    #[test]
    fn iterative_inputs_start_each_iteration_at_its_padded_multiple() {
        let l = iterative();
        let dense: Vec<u8> = (1..=18).collect();
        let mut padded = vec![0xAA; 24];
        scatter_input(&l, &dense, &mut padded);
        assert_eq!(
            padded,
            [1, 2, 3, 4, 5, 6, 0, 0, 7, 8, 9, 10, 11, 12, 0, 0, 13, 14, 15, 16, 17, 18, 0, 0],
            "one iteration per 8 bytes, not 18 dense bytes then padding"
        );
        let mut gathered = vec![9; 3];
        gather_input(&l, &padded, 18, &mut gathered);
        assert_eq!(gathered, dense);
        // The sign flip covers the first y·x·z elements only: not the padding.
        flip_signed_layer(&l, &mut padded);
        assert_eq!(&padded[..8], [0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0, 0]);
        assert_eq!(&padded[8..], [7, 8, 9, 10, 11, 12, 0, 0, 13, 14, 15, 16, 17, 18, 0, 0]);
        // A layer run once: dense bytes lead, padding follows, zeroed.
        let once = Layer { execution_count: 1, ..iterative() };
        let mut padded = vec![0xAA; 8];
        scatter_input(&once, &dense[..6], &mut padded);
        assert_eq!(padded, [1, 2, 3, 4, 5, 6, 0, 0]);
        flip_signed_layer(&once, &mut padded);
        assert_eq!(padded, [0x81, 0x82, 0x83, 0x84, 0x85, 0x86, 0, 0], "padding keeps its zeros");
    }

    /// A [2, 3, 4, 5] 16-bit output stored as two batch slices with z padded to 8 elements, the
    /// second slice after a 64-byte gap.
    fn sliced() -> Layer {
        let slice = |b: i32, offset: i32| OutputSlice {
            shape: vec![(b, b), (0, 2), (0, 3), (0, 4)],
            stride: vec![96, 32, 8, 1],
            offset,
        };
        Layer {
            name: "out".into(),
            size_bytes: 2 * 96 * 2 + 64,
            y_dim: 3,
            x_dim: 4,
            z_dim: 5,
            zero_point: 0,
            scale: 1.0,
            data_type: DataType::FixedPoint16,
            execution_count: 1,
            cache_on_dram: false,
            shape: Some(vec![(0, 1), (0, 2), (0, 3), (0, 4)]),
            output: Some(OutputInfo { layout: None, shape_info: Some(vec![slice(0, 0), slice(1, 96 * 2 + 64)]) }),
        }
    }

    #[test]
    fn shape_info_slices_round_trip_and_land_where_the_strides_say() {
        let l = sliced();
        let dense: Vec<u8> = (0..2 * 3 * 4 * 5 * 2).map(|i| (i * 7 % 251) as u8).collect();
        let mut device = vec![0xEEu8; l.size_bytes];
        output_to_device(&l, &dense, &mut device).unwrap();
        // Element (1, 2, 3, 4): dense index 1·60 + 2·20 + 3·5 + 4 = 119; device element
        // (96·2 + 64)/2 + 2·32 + 3·8 + 4 = 220.
        assert_eq!(device[220 * 2..220 * 2 + 2], dense[119 * 2..119 * 2 + 2]);
        // z padding is untouched.
        assert_eq!(device[5 * 2..8 * 2], [0xEE; 6]);
        let mut back = vec![0u8; dense.len()];
        output_from_device(&l, &device, &mut back).unwrap();
        assert_eq!(back, dense);
    }

    #[test]
    fn bad_shape_info_is_an_error_not_a_panic() {
        let mut l = sliced();
        let mut device = vec![0u8; l.size_bytes];
        let mut dense = vec![0u8; 240];
        if let Some(s) = l.output.as_mut().and_then(|o| o.shape_info.as_mut()) {
            s[1].offset = 10_000;
        }
        assert!(output_from_device(&l, &device, &mut dense).is_err());
        let mut l = sliced();
        if let Some(s) = l.output.as_mut().and_then(|o| o.shape_info.as_mut()) {
            s[0].shape[1] = (0, 9);
        }
        assert!(output_from_device(&l, &device, &mut dense).is_err());
        let mut l = sliced();
        l.shape = None;
        assert!(output_to_device(&l, &dense, &mut device).is_err());
    }
}
