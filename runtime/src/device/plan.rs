//! The USB transfers of one executable run, derived from its DMA hints in order (PROTOCOL.md
//! §2.2-2.4), single-endpoint mode: each host-to-device request is an 8-byte header then its
//! payload in bulk-outs of at most 1 MiB on endpoint 0x01; outputs are read on 0x81; the run
//! ends with an event of tag 4 on 0x82.

use crate::error::{Error, Result};
use crate::package::{DmaHint, Executable};

/// Descriptor tag of a DMA request or event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tag {
    /// Instructions (0).
    Instructions,
    /// Input activations (1).
    InputActivations,
    /// Parameters (2).
    Parameters,
    /// Output activations (3).
    OutputActivations,
    /// Scalar-core interrupt 0..3 (tags 4..7); interrupt 0 signals the end of an inference.
    Interrupt(u8),
    /// Tags 8..15: no scalar-core interrupt and no DMA; the host ignores such events, as
    /// libedgetpu does.
    Unknown(u8),
}

impl Tag {
    /// The 4-bit tag value.
    pub fn code(self) -> u8 {
        match self {
            Tag::Instructions => 0,
            Tag::InputActivations => 1,
            Tag::Parameters => 2,
            Tag::OutputActivations => 3,
            Tag::Interrupt(n) => 4 + (n & 3),
            Tag::Unknown(c) => c & 0xf,
        }
    }
    /// The tag of a 4-bit value.
    pub fn from_code(code: u8) -> Tag {
        match code & 0xf {
            0 => Tag::Instructions,
            1 => Tag::InputActivations,
            2 => Tag::Parameters,
            3 => Tag::OutputActivations,
            c @ 4..=7 => Tag::Interrupt(c - 4),
            c => Tag::Unknown(c),
        }
    }
}

/// Most bytes in one bulk-out transfer.
pub const MAX_BULK_OUT: usize = 1 << 20;

/// Where the bytes of a bulk-out request come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Linked instruction bitstream `chunk`, whole.
    Instructions {
        /// Bitstream index.
        chunk: usize,
    },
    /// Bytes `[offset, offset + size)` of input layer `layer` (index into the executable's
    /// input layers), batch `batch`, padded buffer.
    Input {
        /// Input layer index.
        layer: usize,
        /// Batch.
        batch: usize,
        /// Byte offset.
        offset: usize,
    },
    /// Bytes `[offset, offset + size)` of the executable's parameters.
    Parameters {
        /// Byte offset.
        offset: usize,
    },
    /// Bytes of the scratch buffer.
    Scratch {
        /// Byte offset.
        offset: usize,
    },
}

/// One step of a run.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Step {
    /// A request on endpoint 0x01: the header, then `size` bytes of `source` in bulk-outs of at
    /// most [`MAX_BULK_OUT`] bytes. When `after_outputs` is set, every earlier bulk-in must have
    /// completed before this request starts (bulk-out traffic can block output completion).
    BulkOut {
        /// Header tag.
        tag: Tag,
        /// Payload bytes.
        size: usize,
        /// Where they come from.
        source: Source,
        /// Wait for earlier outputs first.
        after_outputs: bool,
    },
    /// Read `size` bytes on endpoint 0x81 into output layer `layer` (batch `batch`) at `offset`.
    BulkIn {
        /// Output layer index (or `usize::MAX` for scratch).
        layer: usize,
        /// Batch.
        batch: usize,
        /// Byte offset in the padded output buffer.
        offset: usize,
        /// Bytes.
        size: usize,
    },
    /// Wait for an event packet with tag 4 + `number` on endpoint 0x82.
    WaitInterrupt {
        /// Scalar-core interrupt number.
        number: u8,
    },
    /// Wait until every earlier transfer has completed.
    Fence,
    /// The rest of the run is driven by the device (PROTOCOL.md §2.3, device-descriptor mode):
    /// the event endpoint reports each input, parameter or output transfer the chip wants, with
    /// its address and length, and the run ends with a scalar-core interrupt (tag 4). Only
    /// executables whose hints are not fully deterministic end with this step.
    DeviceDriven,
}

impl Step {
    /// Sizes of the bulk-out transfers of a request step (after its 8-byte header).
    pub fn chunks(&self) -> impl Iterator<Item = usize> {
        let size = match self {
            Step::BulkOut { size, .. } => *size,
            _ => 0,
        };
        (0..size.div_ceil(MAX_BULK_OUT)).map(move |i| (size - i * MAX_BULK_OUT).min(MAX_BULK_OUT))
    }
}

/// The steps of one run of `exe`. Executables whose hints are not fully deterministic (the hints
/// stop before the outputs) run their hinted transfers, then [`Step::DeviceDriven`] (a fence
/// first, as libedgetpu appends one in this mode).
pub fn plan(exe: &Executable<'_>) -> Result<Vec<Step>> {
    let layer = |layers: &[crate::package::Layer], name: &str, what: &str| {
        layers.iter().position(|l| l.name == name).ok_or_else(|| {
            Error::unsupported(format!("a DMA hint names {what} layer {name:?}, which the executable does not have"))
        })
    };
    let mut steps = Vec::with_capacity(exe.dma_hints.hints.len());
    let mut outputs_pending = false;
    for hint in &exe.dma_hints.hints {
        let out = |tag, size, source| Step::BulkOut { tag, size, source, after_outputs: outputs_pending };
        let step = match hint {
            DmaHint::Instruction { chunk } => {
                let size = exe.bitstreams.get(*chunk).map(|b| b.data.len()).ok_or_else(|| {
                    Error::unsupported(format!("an instruction hint names chunk {chunk}, which does not exist"))
                })?;
                out(Tag::Instructions, size, Source::Instructions { chunk: *chunk })
            }
            DmaHint::Input { name, batch, offset, size } => {
                let l = layer(&exe.input_layers, name, "input")?;
                out(Tag::InputActivations, *size, Source::Input { layer: l, batch: *batch, offset: *offset })
            }
            DmaHint::Parameter { offset, size } => out(Tag::Parameters, *size, Source::Parameters { offset: *offset }),
            DmaHint::Scratch { infeed: true, offset, size } => {
                out(Tag::InputActivations, *size, Source::Scratch { offset: *offset })
            }
            DmaHint::Scratch { infeed: false, offset, size } => {
                outputs_pending = true;
                Step::BulkIn { layer: usize::MAX, batch: 0, offset: *offset, size: *size }
            }
            DmaHint::Output { name, batch, offset, size } => {
                outputs_pending = true;
                let l = layer(&exe.output_layers, name, "output")?;
                Step::BulkIn { layer: l, batch: *batch, offset: *offset, size: *size }
            }
            DmaHint::Interrupt { number } => Step::WaitInterrupt { number: *number },
            DmaHint::Fence => {
                outputs_pending = false;
                Step::Fence
            }
        };
        steps.push(step);
    }
    if !exe.dma_hints.fully_deterministic {
        steps.push(Step::Fence);
        steps.push(Step::DeviceDriven);
    }
    Ok(steps)
}

/// Whether a run of these steps needs the device to report its transfers (the event endpoint's
/// descriptor mask 0xFF rather than 0xF0).
pub fn device_driven(steps: &[Step]) -> bool {
    steps.last() == Some(&Step::DeviceDriven)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_are_at_most_one_mebibyte() {
        let s = |size| Step::BulkOut {
            tag: Tag::Parameters,
            size,
            source: Source::Parameters { offset: 0 },
            after_outputs: false,
        };
        assert_eq!(s(0).chunks().collect::<Vec<_>>(), Vec::<usize>::new());
        assert_eq!(s(566_912).chunks().collect::<Vec<_>>(), [566_912]);
        assert_eq!(s(3 << 20).chunks().collect::<Vec<_>>(), [1 << 20, 1 << 20, 1 << 20]);
        assert_eq!(s((1 << 20) + 5).chunks().collect::<Vec<_>>(), [1 << 20, 5]);
    }
}
