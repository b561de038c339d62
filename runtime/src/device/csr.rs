//! The chip's control/status registers (CSRs) the runtime uses, named once (PROTOCOL.md §1.6,
//! §1.9-1.11), and how a CSR access is encoded as a USB control request.

/// Access width of a CSR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Width {
    /// 32-bit access (`bRequest` 1).
    W32,
    /// 64-bit access (`bRequest` 0).
    W64,
}

/// One register: name, byte offset, access width and what it is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Csr {
    /// Name as in libedgetpu's beagle CSR offsets.
    pub name: &'static str,
    /// Byte offset.
    pub offset: u32,
    /// Access width.
    pub width: Width,
    /// What the runtime uses it for.
    pub meaning: &'static str,
}

macro_rules! csrs {
    ($($id:ident = $name:literal, $off:literal, $w:ident, $meaning:literal;)*) => {
        $(
            #[doc = $meaning]
            pub const $id: Csr = Csr { name: $name, offset: $off, width: Width::$w, meaning: $meaning };
        )*
        /// Every register above, in table order.
        pub const ALL: &[Csr] = &[$($id),*];
    };
}

csrs! {
    OMC0_00 = "omc0_00", 0x1a000, W32, "e-fuse programming revision (bits 24-31); credit poll trigger in multi-EP mode 1";
    OMC0_D4 = "omc0_d4", 0x1a0d4, W32, "thermal warning enable (bit 31 thm_warn_en)";
    OMC0_D8 = "omc0_d8", 0x1a0d8, W32, "thermal shutdown enable (bit 31 sd_en)";
    OMC0_DC = "omc0_dc", 0x1a0dc, W32, "thermal status: warn_o bit 31, sd_o bit 30, warn_clear bit 29, sd_clear bit 28";
    SCU_CTRL_0 = "scu_ctrl_0", 0x1a30c, W32, "PHY inactive modes (rg_pcie_inact_phy_mode bits 8-10, rg_usb_inact_phy_mode bits 11-13)";
    SCU_CTRL_2 = "scu_ctrl_2", 0x1a314, W32, "clock gating (rg_gated_gcb bits 18-19: 1 hardware gating, 2 none)";
    SCU_CTRL_3 = "scu_ctrl_3", 0x1a318, W32, "power state: rg_force_sleep bits 22-23, cur_pwr_state bits 8-9, clock fields";
    SCU_CTR_7 = "scu_ctr_7", 0x1a33c, W32, "boot failures: pll_lock_failure bit 16, usb_sel_failure bit 17 (W1C), rg_boot_failure_mask bits 18-19";
    SLV_ABM_EN = "slv_abm_en", 0x1a500, W32, "PCIe slave error reporting enable";
    SLV_WR_ERR_RESP = "slv_wr_err_resp", 0x1a540, W32, "PCIe slave write error response";
    SLV_RD_ERR_RESP = "slv_rd_err_resp", 0x1a544, W32, "PCIe slave read error response";
    SLV_ERR_RESP_ISR_MASK = "slv_err_resp_isr_mask", 0x1a558, W32, "PCIe slave error interrupt mask";
    MST_ABM_EN = "mst_abm_en", 0x1a600, W32, "PCIe master error reporting enable";
    MST_WR_ERR_RESP = "mst_wr_err_resp", 0x1a640, W32, "PCIe master write error response";
    MST_RD_ERR_RESP = "mst_rd_err_resp", 0x1a644, W32, "PCIe master read error response";
    MST_ERR_RESP_ISR_MASK = "mst_err_resp_isr_mask", 0x1a658, W32, "PCIe master error interrupt mask";
    RAMBIST_CTRL_1 = "rambist_ctrl_1", 0x1a704, W32, "MBIST: rg_mbist_int_status bits 16-18 (W1C), rg_mbist_int_mask bits 20-22";
    GCBB_CREDIT0 = "gcbb_credit0", 0x1907c, W32, "bulk credits, pulsed 0xF then 0 when entering reset";
    DEEP_SLEEP = "deepSleep", 0x40020, W64, "tile sleep delays (0x1E02: to_sleep 2, to_wake 30)";
    OP_RUN_CONTROL = "opRunControl", 0x400c0, W64, "tile op run control";
    WIDE_TO_NARROW_RUN_CONTROL = "wideToNarrowRunControl", 0x40110, W64, "tile wide-to-narrow run control";
    NARROW_TO_WIDE_RUN_CONTROL = "narrowToWideRunControl", 0x40150, W64, "tile narrow-to-wide run control";
    RING_BUS_CONSUMER0_RUN_CONTROL = "ringBusConsumer0RunControl", 0x40190, W64, "tile ring bus consumer 0 run control";
    RING_BUS_CONSUMER1_RUN_CONTROL = "ringBusConsumer1RunControl", 0x401d0, W64, "tile ring bus consumer 1 run control";
    RING_BUS_PRODUCER_RUN_CONTROL = "ringBusProducerRunControl", 0x40210, W64, "tile ring bus producer run control";
    MESH_BUS0_RUN_CONTROL = "meshBus0RunControl", 0x40250, W64, "tile mesh bus 0 run control";
    MESH_BUS1_RUN_CONTROL = "meshBus1RunControl", 0x40298, W64, "tile mesh bus 1 run control";
    MESH_BUS2_RUN_CONTROL = "meshBus2RunControl", 0x402e0, W64, "tile mesh bus 2 run control";
    MESH_BUS3_RUN_CONTROL = "meshBus3RunControl", 0x40328, W64, "tile mesh bus 3 run control";
    SCALAR_CORE_RUN_CONTROL = "scalarCoreRunControl", 0x44018, W64, "scalar core run control (0 idle, 1 run, 2 halt, 3 step); 0 after reset";
    AV_DATA_POP_RUN_CONTROL = "avDataPopRunControl", 0x44158, W64, "activation data pop run control";
    PARAMETER_POP_RUN_CONTROL = "parameterPopRunControl", 0x44198, W64, "parameter pop run control";
    INFEED_RUN_CONTROL = "infeedRunControl", 0x441d8, W64, "infeed run control";
    OUTFEED_RUN_CONTROL = "outfeedRunControl", 0x44218, W64, "outfeed run control";
    HIB_ERROR_STATUS = "hib_error_status", 0x486f0, W64, "host interface error bits (see usb_frame::HibErrors)";
    HIB_FIRST_ERROR_STATUS = "hib_first_error_status", 0x48700, W64, "the first host interface error";
    TILECONFIG0 = "tileconfig0", 0x48788, W64, "tile addressing: 0x7F broadcasts to all tiles";
    INSTRUCTION_QUEUE_CONTROL = "instruction_queue_control", 0x48568, W64, "PCIe instruction queue: bit 0 enable, bit 2 status-block writes";
    INSTRUCTION_QUEUE_STATUS = "instruction_queue_status", 0x48570, W64, "PCIe instruction queue status (1: enabled)";
    INSTRUCTION_QUEUE_DESCRIPTOR_SIZE = "instruction_queue_descriptor_size", 0x48578, W64, "PCIe queue descriptor bytes (16)";
    INSTRUCTION_QUEUE_BASE = "instruction_queue_base", 0x48590, W64, "PCIe queue ring device address";
    INSTRUCTION_QUEUE_STATUS_BLOCK_BASE = "instruction_queue_status_block_base", 0x48598, W64, "PCIe queue status block device address";
    INSTRUCTION_QUEUE_SIZE = "instruction_queue_size", 0x485a0, W64, "PCIe queue ring entries";
    INSTRUCTION_QUEUE_TAIL = "instruction_queue_tail", 0x485a8, W64, "PCIe queue tail (the host's next entry)";
    INSTRUCTION_QUEUE_INT_CONTROL = "instruction_queue_int_control", 0x485c0, W64, "PCIe queue interrupt enable";
    INSTRUCTION_QUEUE_INT_STATUS = "instruction_queue_int_status", 0x485c8, W64, "PCIe queue interrupt status (write 0 to clear)";
    SC_HOST_INT_CONTROL = "sc_host_int_control", 0x486a0, W64, "PCIe scalar-core host interrupts 0-3 enable";
    SC_HOST_INT_STATUS = "sc_host_int_status", 0x486a8, W64, "PCIe scalar-core host interrupt status (write 0 to clear)";
    HIB_FATAL_ERR_INT_CONTROL = "hib_fatal_err_int_control", 0x486c0, W64, "PCIe fatal error interrupt enable";
    HIB_FATAL_ERR_INT_STATUS = "hib_fatal_err_int_status", 0x486c8, W64, "PCIe fatal error interrupt status";
    SC_HOST_INT_COUNT = "sc_host_int_count", 0x486d0, W64, "PCIe scalar-core interrupt counts: four 16-bit counters";
    DMA_PAUSE = "dma_pause", 0x486d8, W64, "PCIe: 1 pauses the DMA engines (close)";
    DMA_PAUSED = "dma_paused", 0x486e0, W64, "PCIe: 1 once the DMA engines are paused";
    STATUS_BLOCK_UPDATE = "status_block_update", 0x486e8, W64, "PCIe status block update control (0 at open)";
    DMA_BURST_LIMITER = "dma_burst_limiter", 0x487a8, W64, "PCIe DMA burst limiter (0 at open)";
    IDLE_REGISTER = "idleRegister", 0x4a000, W64, "idle generator (1: enabled, counter 1)";
    OUTFEED_CHUNK_LENGTH = "outfeed_chunk_length", 0x4c058, W64, "bulk-in chunk, units of 8 bytes (0x80 SuperSpeed, 0x20 High-Speed)";
    FATAL_ERR_INT_CONTROL = "fatal_err_int_control", 0x4c060, W64, "fatal error interrupt enable";
    FATAL_ERR_INT_STATUS = "fatal_err_int_status", 0x4c068, W64, "fatal error interrupt status (write 0 to clear)";
    TOP_LEVEL_INT_0_CONTROL = "top_level_int_0_control", 0x4c070, W64, "thermal shutdown interrupt enable";
    TOP_LEVEL_INT_0_STATUS = "top_level_int_0_status", 0x4c078, W64, "thermal shutdown interrupt status (write 0 to clear)";
    TOP_LEVEL_INT_1_CONTROL = "top_level_int_1_control", 0x4c080, W64, "PCIe error interrupt enable";
    TOP_LEVEL_INT_1_STATUS = "top_level_int_1_status", 0x4c088, W64, "PCIe error interrupt status (write 0 to clear)";
    TOP_LEVEL_INT_2_CONTROL = "top_level_int_2_control", 0x4c090, W64, "MBIST interrupt enable";
    TOP_LEVEL_INT_2_STATUS = "top_level_int_2_status", 0x4c098, W64, "MBIST interrupt status (write 0 to clear)";
    TOP_LEVEL_INT_3_CONTROL = "top_level_int_3_control", 0x4c0a0, W64, "thermal warning interrupt enable";
    TOP_LEVEL_INT_3_STATUS = "top_level_int_3_status", 0x4c0a8, W64, "thermal warning interrupt status (write 0 to clear)";
    DESCR_EP = "descr_ep", 0x4c148, W64, "which descriptor tags the event endpoint reports (0xF0: interrupts only)";
    EP_STATUS_CREDIT = "ep_status_credit", 0x4c150, W64, "multi-EP mode 1 credits: three 21-bit counters in 8-byte units";
    MULTI_BO_EP = "multi_bo_ep", 0x4c160, W64, "0 single bulk-out endpoint, 1 multi-EP";
}

/// A USB control request (setup packet fields and, for writes, the data phase).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ControlRequest {
    /// `bmRequestType`.
    pub request_type: u8,
    /// `bRequest`.
    pub request: u8,
    /// `wValue`.
    pub value: u16,
    /// `wIndex`.
    pub index: u16,
    /// `wLength` (data length).
    pub length: u16,
    /// Data sent (writes; empty for reads).
    pub data: Vec<u8>,
}

fn setup(request_type: u8, csr: Csr) -> ControlRequest {
    let (request, length) = match csr.width {
        Width::W64 => (0, 8),
        Width::W32 => (1, 4),
    };
    ControlRequest {
        request_type,
        request,
        value: (csr.offset & 0xffff) as u16,
        index: (csr.offset >> 16) as u16,
        length,
        data: Vec::new(),
    }
}

/// The control request writing `value` to `csr` (vendor, host to device; little-endian data
/// of the register's width; a 32-bit register takes the low 32 bits).
pub fn write_request(csr: Csr, value: u64) -> ControlRequest {
    let mut r = setup(0x40, csr);
    r.data = value.to_le_bytes()[..r.length as usize].to_vec();
    r
}

/// The control request reading `csr` (vendor, device to host).
pub fn read_request(csr: Csr) -> ControlRequest {
    setup(0xc0, csr)
}

/// Decodes the data phase of a CSR read, which must be exactly the register's width.
pub fn read_value(csr: Csr, data: &[u8]) -> crate::Result<u64> {
    let want = match csr.width {
        Width::W64 => 8,
        Width::W32 => 4,
    };
    if data.len() != want {
        return Err(crate::Error::argument(format!(
            "reading {} (0x{:x}) returned {} bytes, expected {want}",
            csr.name,
            csr.offset,
            data.len()
        )));
    }
    let mut b = [0u8; 8];
    b[..want].copy_from_slice(data);
    Ok(u64::from_le_bytes(b))
}

/// Names of the host interface (HIB) error bits of `hib_error_status`.
pub const HIB_ERRORS: [&str; 15] = [
    "inbound page fault",
    "extended page fault",
    "CSR parity error",
    "AXI slave B error",
    "AXI slave R error",
    "bad instruction queue configuration",
    "bad input queue configuration",
    "bad parameter queue configuration",
    "bad output queue configuration",
    "invalid instruction queue",
    "invalid input queue",
    "invalid parameter queue",
    "invalid output queue",
    "zero-length DMA",
    "virtual table uncorrectable read",
];

/// The names of the error bits set in a `hib_error_status` value (unknown bits by number).
pub fn hib_errors(status: u64) -> Vec<String> {
    (0..64)
        .filter(|b| status >> b & 1 == 1)
        .map(|b| HIB_ERRORS.get(b).map_or_else(|| format!("unknown error bit {b}"), |s| s.to_string()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_offsets_are_unique() {
        for (i, a) in ALL.iter().enumerate() {
            for b in &ALL[i + 1..] {
                assert_ne!(a.name, b.name);
                assert_ne!(a.offset, b.offset, "{} and {}", a.name, b.name);
            }
        }
        assert!(ALL.len() >= 50);
    }

    #[test]
    fn requests_are_encoded_as_protocol_1_6() {
        // W32 scu_ctrl_3 := 0x0085025C (the Max-performance trace of PROTOCOL.md §1.10 step 5).
        let w = write_request(SCU_CTRL_3, 0x0085_025C);
        assert_eq!((w.request_type, w.request, w.value, w.index, w.length), (0x40, 1, 0xa318, 0x1, 4));
        assert_eq!(w.data, [0x5C, 0x02, 0x85, 0x00]);
        // W64 idleRegister := 1.
        let w = write_request(IDLE_REGISTER, 1);
        assert_eq!((w.request_type, w.request, w.value, w.index, w.length), (0x40, 0, 0xa000, 0x4, 8));
        assert_eq!(w.data, [1, 0, 0, 0, 0, 0, 0, 0]);
        // R64 scalarCoreRunControl.
        let r = read_request(SCALAR_CORE_RUN_CONTROL);
        assert_eq!((r.request_type, r.request, r.value, r.index, r.length), (0xc0, 0, 0x4018, 0x4, 8));
        assert!(r.data.is_empty());
        assert_eq!(read_value(SCU_CTRL_3, &[0x5C, 0x02, 0xC5, 0x00]).unwrap(), 0x00C5_025C);
        assert!(read_value(SCU_CTRL_3, &[0; 8]).is_err());
    }
}
