//! Framing on the USB endpoints (PROTOCOL.md §1.7-1.9): the 8-byte header before each bulk-out
//! request, the 16-byte event packets of endpoint 0x82 and the 4-byte interrupt word of 0x83.

pub use crate::device::plan::{Tag, MAX_BULK_OUT};
use crate::error::{Error, Result};

/// The 8-byte header sent on endpoint 0x01 before each request: total payload length (u32 LE)
/// and the tag in the low nibble of byte 4.
pub fn bulk_out_header(tag: Tag, length: usize) -> Result<[u8; 8]> {
    let len = u32::try_from(length)
        .map_err(|_| Error::argument(format!("a {length}-byte request does not fit the 32-bit header length")))?;
    let mut h = [0u8; 8];
    h[..4].copy_from_slice(&len.to_le_bytes());
    h[4] = tag.code();
    Ok(h)
}

/// A 16-byte packet of the event endpoint (0x82).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Event {
    /// Device-side address of the DMA.
    pub offset: u64,
    /// Length.
    pub length: u32,
    /// Descriptor tag.
    pub tag: Tag,
}

impl Event {
    /// Decodes a packet; anything but 16 bytes is a protocol error (data loss).
    pub fn parse(p: &[u8]) -> Result<Event> {
        let p: &[u8; 16] = p.try_into().map_err(|_| {
            Error::argument(format!("an event packet of {} bytes; events are 16 bytes (data lost?)", p.len()))
        })?;
        Ok(Event {
            offset: u64::from_le_bytes([p[0], p[1], p[2], p[3], p[4], p[5], p[6], p[7]]),
            length: u32::from_le_bytes([p[8], p[9], p[10], p[11]]),
            tag: Tag::from_code(p[12]),
        })
    }
}

/// The 4-byte word of the interrupt endpoint (0x83).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InterruptWord {
    /// Bit 0: a fatal error (read `hib_error_status`).
    pub fatal: bool,
    /// Bits 1-4: top-level interrupts 0-3 (thermal shutdown, PCIe error, MBIST, thermal warning).
    pub top_level: [bool; 4],
}

impl InterruptWord {
    /// Decodes the 4-byte word.
    pub fn parse(p: &[u8]) -> Result<InterruptWord> {
        let p: &[u8; 4] = p
            .try_into()
            .map_err(|_| Error::argument(format!("an interrupt packet of {} bytes; it is 4 bytes", p.len())))?;
        let w = u32::from_le_bytes(*p);
        Ok(InterruptWord { fatal: w & 1 != 0, top_level: [w & 2 != 0, w & 4 != 0, w & 8 != 0, w & 16 != 0] })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn headers_events_and_interrupts() {
        assert_eq!(bulk_out_header(Tag::InputActivations, 49152).unwrap(), [0x00, 0xc0, 0, 0, 1, 0, 0, 0]);
        assert_eq!(bulk_out_header(Tag::Instructions, 170032).unwrap(), [0x30, 0x98, 0x02, 0, 0, 0, 0, 0]);
        assert!(bulk_out_header(Tag::Parameters, 1 << 32).is_err());
        for c in 0..16 {
            assert_eq!(Tag::from_code(c).code(), c);
        }
        // Tags 8-15 are no scalar-core interrupts: tag 8 must not read as interrupt 0.
        assert_eq!(Tag::from_code(8), Tag::Unknown(8));
        assert_eq!(Tag::from_code(15), Tag::Unknown(15));
        assert_eq!(Tag::from_code(7), Tag::Interrupt(3));
        let mut p = [0u8; 16];
        p[..8].copy_from_slice(&0x1122_3344_5566_7788u64.to_le_bytes());
        p[8..12].copy_from_slice(&1008u32.to_le_bytes());
        p[12] = 4;
        let e = Event::parse(&p).unwrap();
        assert_eq!((e.offset, e.length, e.tag), (0x1122_3344_5566_7788, 1008, Tag::Interrupt(0)));
        assert!(Event::parse(&p[..15]).is_err());
        let w = InterruptWord::parse(&[0b10011, 0, 0, 0]).unwrap();
        assert!(w.fatal);
        assert_eq!(w.top_level, [true, false, false, true]);
        assert!(InterruptWord::parse(&[0; 3]).is_err());
        assert_eq!(crate::device::csr::hib_errors(1 << 13 | 1), ["inbound page fault", "zero-length DMA"]);
        assert_eq!(crate::device::csr::hib_errors(1 << 40), ["unknown error bit 40"]);
    }
}
