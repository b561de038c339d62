//! The gasket and apex ioctls (PROTOCOL.md §7): numbers and argument layouts in one table.
//!
//! Numbers follow Linux's generic `_IOC` encoding (direction bits 30-31, argument size bits
//! 16-29, type bits 8-15, number bits 0-7). Arguments are encoded into little-endian byte arrays
//! of exactly the C struct's size (structs are padded to a multiple of 64 bits, pointers held in
//! `u64`), so one encoding serves the kernel and the simulator; the tests assert every size.

/// `_IOC` direction: no argument.
const NONE: u32 = 0;
/// `_IOC` direction: user space writes the argument.
const WRITE: u32 = 1;
/// `_IOC` direction: user space reads the argument.
const READ: u32 = 2;

/// Encodes an ioctl number.
pub const fn ioc(dir: u32, kind: u8, nr: u8, size: usize) -> u32 {
    (dir << 30) | ((size as u32) << 16) | ((kind as u32) << 8) | nr as u32
}

/// Gasket ioctl type byte.
pub const GASKET: u8 = 0xDC;
/// Apex ioctl type byte.
pub const APEX: u8 = 0x7F;

/// One ioctl: its name, number and argument size in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ioctl {
    /// Name as in the kernel headers.
    pub name: &'static str,
    /// The request number.
    pub number: u32,
    /// Argument bytes (0: no argument).
    pub size: usize,
    /// The argument is passed as a plain integer, not a pointer (`CLEAR_EVENTFD` takes the
    /// interrupt number so, although its number encodes an `unsigned long`).
    pub by_value: bool,
}

const fn entry(name: &'static str, dir: u32, kind: u8, nr: u8, size: usize) -> Ioctl {
    Ioctl { name, number: ioc(dir, kind, nr, size), size, by_value: size == 0 }
}

/// `struct gasket_interrupt_eventfd { u64 interrupt; u64 event_fd; }`.
pub const EVENTFD_SIZE: usize = 16;
/// `struct gasket_page_table_ioctl { u64 page_table_index, size, host_address, device_address; }`.
pub const PAGE_TABLE_SIZE: usize = 32;
/// `struct gasket_page_table_ioctl_flags { struct gasket_page_table_ioctl base; u32 flags; }`,
/// padded to 64 bits.
pub const PAGE_TABLE_FLAGS_SIZE: usize = 40;
/// `struct gasket_coherent_alloc_config_ioctl { u64 page_table_index, enable, size, dma_address; }`.
pub const COHERENT_SIZE: usize = 32;
/// `struct gasket_page_table_ioctl_dmabuf { u64 page_table_index, device_address; int dmabuf_fd;
/// u32 num_pages, map, flags; }`.
pub const DMABUF_SIZE: usize = 32;
/// `struct apex_gate_clock_ioctl { u64 enable; u64 force_idle; }`.
pub const GATE_CLOCK_SIZE: usize = 16;
/// `struct apex_performance_expectation_ioctl { u32 performance; }`.
pub const PERFORMANCE_SIZE: usize = 4;

/// `GASKET_IOCTL_RESET`.
pub const RESET: Ioctl = entry("GASKET_IOCTL_RESET", NONE, GASKET, 0, 0);
/// `GASKET_IOCTL_SET_EVENTFD`.
pub const SET_EVENTFD: Ioctl = entry("GASKET_IOCTL_SET_EVENTFD", WRITE, GASKET, 1, EVENTFD_SIZE);
/// `GASKET_IOCTL_CLEAR_EVENTFD` (argument: the interrupt number, an `unsigned long`).
pub const CLEAR_EVENTFD: Ioctl = Ioctl { by_value: true, ..entry("GASKET_IOCTL_CLEAR_EVENTFD", WRITE, GASKET, 2, 8) };
/// `GASKET_IOCTL_NUMBER_PAGE_TABLES`.
pub const NUMBER_PAGE_TABLES: Ioctl = entry("GASKET_IOCTL_NUMBER_PAGE_TABLES", READ, GASKET, 4, 8);
/// `GASKET_IOCTL_PAGE_TABLE_SIZE`.
pub const PAGE_TABLE_SIZE_IOCTL: Ioctl =
    entry("GASKET_IOCTL_PAGE_TABLE_SIZE", READ | WRITE, GASKET, 5, PAGE_TABLE_SIZE);
/// `GASKET_IOCTL_PARTITION_PAGE_TABLE`.
pub const PARTITION_PAGE_TABLE: Ioctl = entry("GASKET_IOCTL_PARTITION_PAGE_TABLE", WRITE, GASKET, 7, PAGE_TABLE_SIZE);
/// `GASKET_IOCTL_MAP_BUFFER`.
pub const MAP_BUFFER: Ioctl = entry("GASKET_IOCTL_MAP_BUFFER", WRITE, GASKET, 8, PAGE_TABLE_SIZE);
/// `GASKET_IOCTL_UNMAP_BUFFER`.
pub const UNMAP_BUFFER: Ioctl = entry("GASKET_IOCTL_UNMAP_BUFFER", WRITE, GASKET, 9, PAGE_TABLE_SIZE);
/// `GASKET_IOCTL_CLEAR_INTERRUPT_COUNTS`.
pub const CLEAR_INTERRUPT_COUNTS: Ioctl = entry("GASKET_IOCTL_CLEAR_INTERRUPT_COUNTS", NONE, GASKET, 10, 0);
/// `GASKET_IOCTL_CONFIG_COHERENT_ALLOCATOR`.
pub const CONFIG_COHERENT_ALLOCATOR: Ioctl =
    entry("GASKET_IOCTL_CONFIG_COHERENT_ALLOCATOR", READ | WRITE, GASKET, 11, COHERENT_SIZE);
/// `GASKET_IOCTL_MAP_BUFFER_FLAGS` (newer kernels; [`MAP_BUFFER`] is the fallback).
pub const MAP_BUFFER_FLAGS: Ioctl = entry("GASKET_IOCTL_MAP_BUFFER_FLAGS", WRITE, GASKET, 12, PAGE_TABLE_FLAGS_SIZE);
/// `GASKET_IOCTL_MAP_DMABUF` (listed for completeness; the runtime does not use dma-bufs).
pub const MAP_DMABUF: Ioctl = entry("GASKET_IOCTL_MAP_DMABUF", WRITE, GASKET, 13, DMABUF_SIZE);
/// `APEX_IOCTL_GATE_CLOCK`.
pub const GATE_CLOCK: Ioctl = entry("APEX_IOCTL_GATE_CLOCK", WRITE, APEX, 0, GATE_CLOCK_SIZE);
/// `APEX_IOCTL_PERFORMANCE_EXPECTATION`.
pub const PERFORMANCE_EXPECTATION: Ioctl =
    entry("APEX_IOCTL_PERFORMANCE_EXPECTATION", WRITE, APEX, 1, PERFORMANCE_SIZE);

/// Every ioctl of the table.
pub const ALL: &[Ioctl] = &[
    RESET,
    SET_EVENTFD,
    CLEAR_EVENTFD,
    NUMBER_PAGE_TABLES,
    PAGE_TABLE_SIZE_IOCTL,
    PARTITION_PAGE_TABLE,
    MAP_BUFFER,
    UNMAP_BUFFER,
    CLEAR_INTERRUPT_COUNTS,
    CONFIG_COHERENT_ALLOCATOR,
    MAP_BUFFER_FLAGS,
    MAP_DMABUF,
    GATE_CLOCK,
    PERFORMANCE_EXPECTATION,
];

/// The entry with this number.
pub fn by_number(number: u32) -> Option<Ioctl> {
    ALL.iter().copied().find(|i| i.number == number)
}

/// DMA direction of a mapping (`gasket_page_table_ioctl_flags.flags` bits 2:1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Both ways.
    Bidirectional = 0,
    /// Host to device (instructions, parameters, inputs).
    ToDevice = 1,
    /// Device to host (outputs).
    FromDevice = 2,
}

/// Encodes `u64` fields into an argument of `size` bytes.
pub fn words(fields: &[u64], size: usize) -> Vec<u8> {
    let mut b = vec![0u8; size];
    encode(fields, &mut b);
    b
}

/// Encodes `u64` fields into an argument of `N` bytes on the stack (the ioctls of every
/// request: no allocation).
pub fn fields<const N: usize>(fields: &[u64]) -> [u8; N] {
    let mut b = [0u8; N];
    encode(fields, &mut b);
    b
}

fn encode(fields: &[u64], out: &mut [u8]) {
    for (chunk, v) in out.chunks_mut(8).zip(fields) {
        let n = chunk.len();
        chunk.copy_from_slice(&v.to_le_bytes()[..n]);
    }
}

/// Reads `u64` field `k` of an argument (0 past its end).
pub fn word(arg: &[u8], k: usize) -> u64 {
    let mut w = [0u8; 8];
    if let Some(s) = arg.get(k * 8..) {
        let n = s.len().min(8);
        w[..n].copy_from_slice(&s[..n]);
    }
    u64::from_le_bytes(w)
}

/// A `gasket_page_table_ioctl` (map, unmap, partition): page table 0.
pub fn page_table(size: u64, host_address: u64, device_address: u64) -> [u8; PAGE_TABLE_SIZE] {
    fields(&[0, size, host_address, device_address])
}

/// A `gasket_page_table_ioctl_flags` with the DMA direction in bits 2:1.
pub fn page_table_flags(
    size: u64,
    host_address: u64,
    device_address: u64,
    direction: Direction,
) -> [u8; PAGE_TABLE_FLAGS_SIZE] {
    let flags = (direction as u64) << 1;
    fields(&[0, size, host_address, device_address, flags])
}

/// The `performance` value of the performance-expectation ioctl.
pub fn performance(level: u32) -> Vec<u8> {
    level.to_le_bytes().to_vec()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_match_the_kernel_headers() {
        // Values computed from the headers' _IOW/_IOWR/_IO macros by hand.
        assert_eq!(RESET.number, 0x0000_DC00);
        assert_eq!(SET_EVENTFD.number, 0x4010_DC01);
        assert_eq!(CLEAR_EVENTFD.number, 0x4008_DC02);
        assert_eq!(NUMBER_PAGE_TABLES.number, 0x8008_DC04);
        assert_eq!(PAGE_TABLE_SIZE_IOCTL.number, 0xC020_DC05);
        assert_eq!(PARTITION_PAGE_TABLE.number, 0x4020_DC07);
        assert_eq!(MAP_BUFFER.number, 0x4020_DC08);
        assert_eq!(UNMAP_BUFFER.number, 0x4020_DC09);
        assert_eq!(CLEAR_INTERRUPT_COUNTS.number, 0x0000_DC0A);
        assert_eq!(CONFIG_COHERENT_ALLOCATOR.number, 0xC020_DC0B);
        assert_eq!(MAP_BUFFER_FLAGS.number, 0x4028_DC0C);
        assert_eq!(MAP_DMABUF.number, 0x4020_DC0D);
        assert_eq!(GATE_CLOCK.number, 0x4010_7F00);
        assert_eq!(PERFORMANCE_EXPECTATION.number, 0x4004_7F01);
    }

    #[test]
    fn struct_sizes_match_their_layouts() {
        #[repr(C)]
        struct PageTable {
            _index: u64,
            _size: u64,
            _host: u64,
            _device: u64,
        }
        #[repr(C)]
        struct PageTableFlags {
            _base: PageTable,
            _flags: u32,
        }
        #[repr(C)]
        struct Dmabuf {
            _index: u64,
            _device: u64,
            _fd: i32,
            _pages: u32,
            _map: u32,
            _flags: u32,
        }
        assert_eq!(std::mem::size_of::<[u64; 2]>(), EVENTFD_SIZE);
        assert_eq!(std::mem::size_of::<PageTable>(), PAGE_TABLE_SIZE);
        assert_eq!(std::mem::size_of::<PageTableFlags>(), PAGE_TABLE_FLAGS_SIZE);
        assert_eq!(std::mem::size_of::<[u64; 4]>(), COHERENT_SIZE);
        assert_eq!(std::mem::size_of::<Dmabuf>(), DMABUF_SIZE);
        assert_eq!(std::mem::size_of::<[u64; 2]>(), GATE_CLOCK_SIZE);
        assert_eq!(std::mem::size_of::<u32>(), PERFORMANCE_SIZE);
        for i in ALL {
            assert_eq!((i.number >> 16 & 0x3FFF) as usize, if i.number >> 30 == 0 { 0 } else { i.size }, "{}", i.name);
            assert_eq!(by_number(i.number), Some(*i));
        }
    }

    #[test]
    fn arguments_encode_little_endian_fields() {
        let a = page_table_flags(0x2000, 0x7f00_1000, 0x8000_0000_0000_0000, Direction::FromDevice);
        assert_eq!(a.len(), 40);
        assert_eq!(word(&a, 1), 0x2000);
        assert_eq!(word(&a, 2), 0x7f00_1000);
        assert_eq!(word(&a, 3), 1 << 63);
        assert_eq!(word(&a, 4), 4, "direction 2 in bits 2:1");
        assert_eq!(performance(3), [3, 0, 0, 0]);
    }
}
