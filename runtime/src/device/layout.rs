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
    if out.shape_info.is_some() {
        return Err(Error::unsupported(format!(
            "output {:?} is described by shape_info slices, which this runtime does not re-lay-out yet",
            layer.name
        )));
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
