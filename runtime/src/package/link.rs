//! Linking: writing buffer addresses into a copy of an executable's instruction bitstreams
//! (PROTOCOL.md §4).
//!
//! Every [`FieldOffset`] names a buffer (the executable's parameters, the scratch buffer, or an
//! input/output activation by layer name and batch) and a half of its 64-bit address. Linking
//! stores that 32-bit half LSB-first at the field's absolute bit offset (bit `b` is bit `b % 8` of
//! byte `b / 8`), preserving every other bit. Fields whose buffer does not exist (parameters of an
//! executable without any, scratch when there is none) are left as they are; a field naming an
//! activation the caller did not provide is an error.

use super::{Description, Executable, FieldOffset, Position};
use crate::error::{Error, Result};

/// Addresses of the buffers an executable's instructions refer to. Over USB these are opaque,
/// stable per-buffer tags; over PCIe they are device-virtual addresses.
#[derive(Debug, Clone, Default)]
pub struct BufferAddresses {
    /// The executable's parameter buffer, when it has parameters.
    pub parameters: Option<u64>,
    /// The scratch buffer, when the executable needs one.
    pub scratch: Option<u64>,
    /// Input activations: (layer name, batch, address).
    pub inputs: Vec<(String, usize, u64)>,
    /// Output activations: (layer name, batch, address).
    pub outputs: Vec<(String, usize, u64)>,
}

impl BufferAddresses {
    /// The address a field refers to: `Ok(None)` when its buffer does not exist (the field stays
    /// untouched), an error when it names an activation that was not provided.
    pub fn resolve(&self, f: &FieldOffset) -> Result<Option<u64>> {
        let find = |list: &[(String, usize, u64)], what: &str| -> Result<Option<u64>> {
            let name = f.name.as_deref().unwrap_or("");
            list.iter().find(|(n, b, _)| n == name && *b == f.batch).map(|e| Some(e.2)).ok_or_else(|| {
                Error::argument(format!(
                    "the instructions refer to {what} {name:?} batch {} (bit {}), but no such buffer was given",
                    f.batch, f.offset_bit
                ))
            })
        };
        match f.desc {
            Description::Parameter => Ok(self.parameters),
            Description::Scratch => Ok(self.scratch),
            Description::InputActivation => find(&self.inputs, "input"),
            Description::OutputActivation => find(&self.outputs, "output"),
        }
    }
}

/// Stores `value` LSB-first at absolute bit `bit` of `buf`, keeping all other bits.
///
/// Fails when the 32 bits do not fit in `buf` (the decoder checks this for every field offset;
/// this re-check keeps the function safe to call on anything).
pub fn write_bits(buf: &mut [u8], bit: usize, value: u32) -> Result<()> {
    let end = bit.checked_add(32).filter(|&e| e <= buf.len().saturating_mul(8)).ok_or_else(|| {
        Error::argument(format!("a 32-bit field at bit {bit} does not fit in {} bytes of instructions", buf.len()))
    })?;
    let first = bit / 8;
    let last = (end - 1) / 8;
    let shift = bit % 8;
    let mut window = [0u8; 8];
    window[..=last - first].copy_from_slice(&buf[first..=last]);
    let mut v = u64::from_le_bytes(window);
    let mask = 0xFFFF_FFFFu64 << shift;
    v = (v & !mask) | ((value as u64) << shift);
    buf[first..=last].copy_from_slice(&v.to_le_bytes()[..=last - first]);
    Ok(())
}

/// Reads the 32-bit field at absolute bit `bit` (the inverse of [`write_bits`]).
pub fn read_bits(buf: &[u8], bit: usize) -> Result<u32> {
    let end = bit.checked_add(32).filter(|&e| e <= buf.len().saturating_mul(8)).ok_or_else(|| {
        Error::argument(format!("a 32-bit field at bit {bit} does not fit in {} bytes of instructions", buf.len()))
    })?;
    let first = bit / 8;
    let last = (end - 1) / 8;
    let mut window = [0u8; 8];
    window[..=last - first].copy_from_slice(&buf[first..=last]);
    Ok((u64::from_le_bytes(window) >> (bit % 8)) as u32)
}

impl Executable<'_> {
    /// Copies every instruction bitstream into `out` (one buffer per bitstream, resized as
    /// needed: no allocation once they have the right capacity) and links them with `addr`.
    pub fn link_into(&self, addr: &BufferAddresses, out: &mut Vec<Vec<u8>>) -> Result<()> {
        out.resize_with(self.bitstreams.len(), Vec::new);
        for (bs, buf) in self.bitstreams.iter().zip(out.iter_mut()) {
            buf.clear();
            buf.extend_from_slice(bs.data);
            for f in &bs.field_offsets {
                if let Some(a) = addr.resolve(f)? {
                    let half = match f.position {
                        Position::Lower32 => a as u32,
                        Position::Upper32 => (a >> 32) as u32,
                    };
                    write_bits(buf, f.offset_bit, half)?;
                }
            }
        }
        Ok(())
    }

    /// Linked copies of the instruction bitstreams.
    pub fn link(&self, addr: &BufferAddresses) -> Result<Vec<Vec<u8>>> {
        let mut out = Vec::new();
        self.link_into(addr, &mut out)?;
        Ok(out)
    }

    /// Buffer addresses that give every buffer of this executable a distinct tag:
    /// `base + k * 2^32` for the k-th buffer, so that both halves of the address differ between
    /// buffers. Over USB, where the device never dereferences them, this is all linking needs.
    pub fn tag_addresses(&self, base: u64) -> BufferAddresses {
        let mut k = 0u64;
        let mut next = || {
            k += 1;
            base.wrapping_add(k << 32)
        };
        let mut addr = BufferAddresses::default();
        if !self.parameters.is_empty() {
            addr.parameters = Some(next());
        }
        if self.scratch_size_bytes > 0 {
            addr.scratch = Some(next());
        }
        for b in 0..self.batch_size {
            for l in &self.input_layers {
                addr.inputs.push((l.name.clone(), b, next()));
            }
            for l in &self.output_layers {
                addr.outputs.push((l.name.clone(), b, next()));
            }
        }
        addr
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn naive_write(buf: &mut [u8], bit: usize, value: u32) {
        for i in 0..32 {
            let b = bit + i;
            let set = (value >> i) & 1 == 1;
            if set {
                buf[b / 8] |= 1 << (b % 8);
            } else {
                buf[b / 8] &= !(1 << (b % 8));
            }
        }
    }

    proptest! {
        #[test]
        fn write_bits_matches_bit_by_bit(len in 4usize..40, bit_frac in 0.0f64..1.0, value in any::<u32>(), fill in any::<u8>()) {
            let max_bit = len * 8 - 32;
            let bit = ((max_bit as f64) * bit_frac) as usize;
            let mut a = vec![fill; len];
            let mut b = a.clone();
            write_bits(&mut a, bit, value).unwrap();
            naive_write(&mut b, bit, value);
            prop_assert_eq!(&a, &b);
            prop_assert_eq!(read_bits(&a, bit).unwrap(), value);
        }
    }

    #[test]
    fn fields_that_do_not_fit_are_errors() {
        let mut buf = [0u8; 5];
        assert!(write_bits(&mut buf, 8, 1).is_ok());
        assert!(write_bits(&mut buf, 9, 1).is_err());
        assert!(write_bits(&mut buf, usize::MAX - 3, 1).is_err());
        assert!(read_bits(&buf, 9).is_err());
        assert!(write_bits(&mut [], 0, 1).is_err());
    }
}
