//! The typed report of a compiler run: what its stdout and its `*_edgetpu.log` files say.
//!
//! [`Report::parse`] reads either text (see [`crate::parse`] for the formats). Every figure is an
//! `Option` because each output carries only some of them: a `.log` file has the version, the
//! paths and the operator table, while stdout has the sizes, the memory figures and the counts.

use serde::{Serialize, Serializer};
use std::fmt;
use std::path::PathBuf;

/// A compiler version, e.g. `16.0.384591198` (major, minor, build number).
///
/// Versions seen in the wild: 2.0, 2.1, 14.1, 15.0 and 16.0 (the last release). Ordering
/// compares major, then minor, then build.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CompilerVersion {
    /// Major version (16 for `16.0.384591198`).
    pub major: u32,
    /// Minor version (0 for `16.0.384591198`).
    pub minor: u32,
    /// Build number (384591198 for `16.0.384591198`), when printed.
    pub build: Option<u64>,
}

/// The text before the version in the compiler's first line of output.
pub const VERSION_BANNER: &str = "Edge TPU Compiler version ";

/// The paragraph the compiler prints on stdout when some operations stay on the CPU, words joined
/// by single spaces (compiler 16 prints it on one line, 14.1 wraps it over four).
pub const PARTIAL_NOTICE: &str = "Model successfully compiled but not all operations are supported by the Edge TPU. \
    A percentage of the model will instead run on the CPU, which is slower. If possible, consider updating your \
    model to use only operations supported by the Edge TPU. For details, visit g.co/coral/model-reqs.";

impl CompilerVersion {
    /// Parses `16.0.384591198` or `16.0`; `None` for anything else.
    pub fn parse(text: &str) -> Option<Self> {
        let mut parts = text.trim().split('.');
        let major = parts.next()?.parse().ok()?;
        let minor = parts.next()?.parse().ok()?;
        let build = match parts.next() {
            Some(b) => Some(b.parse().ok()?),
            None => None,
        };
        if parts.next().is_some() {
            return None;
        }
        Some(CompilerVersion { major, minor, build })
    }

    /// Parses the banner line `Edge TPU Compiler version 16.0.384591198` (what `--version` prints
    /// and every output starts with).
    pub fn from_banner(line: &str) -> Option<Self> {
        Self::parse(line.trim().strip_prefix(VERSION_BANNER)?)
    }
}

impl fmt::Display for CompilerVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.major, self.minor)?;
        if let Some(b) = self.build {
            write!(f, ".{b}")?;
        }
        Ok(())
    }
}

impl Serialize for CompilerVersion {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// Why the compiler put an operator where it did: the status column of the operator table.
///
/// The variants are the status strings of the real logs (compiler 2.0 to 16.0) and of logs
/// quoted in Coral's issue tracker; anything else is kept verbatim in [`OpReason::Other`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OpReason {
    /// `Mapped to Edge TPU`.
    Mapped,
    /// `Operation not supported`: the op type has no Edge TPU implementation.
    UnsupportedOperation,
    /// `Operation is working on an unsupported data type`: float tensors, DEQUANTIZE, the SSD
    /// post-processing custom op.
    UnsupportedDataType,
    /// `More than one subgraph is not supported`: the op follows the first op that stayed on the
    /// CPU (compile with `-a` to allow more Edge TPU subgraphs).
    MultipleSubgraphs,
    /// `Operation is otherwise supported, but not mapped due to some unspecified limitation`:
    /// usually a size or precision limit of that instance.
    UnspecifiedLimitation,
    /// `Operation version not supported`: the converter wrote a newer op version than the
    /// compiler knows.
    UnsupportedVersion,
    /// `Tensor has unsupported rank (up to 3 innermost dimensions mapped)`.
    UnsupportedRank,
    /// A status about dynamic-sized tensors (the Edge TPU needs shapes fixed at compile time).
    DynamicTensors,
    /// `Filter, bias, or other param is not constant at compile-time` (compiler 2.0,
    /// google-coral/edgetpu#25), or another status about parameters that are not constant.
    NonConstantParameters,
    /// A status this parser does not know, verbatim.
    Other(String),
}

impl OpReason {
    /// Maps a status string of the operator table to its reason.
    pub fn from_status(status: &str) -> Self {
        let s = status.trim();
        let lower = s.to_ascii_lowercase();
        match s {
            "Mapped to Edge TPU" => OpReason::Mapped,
            "Operation not supported" => OpReason::UnsupportedOperation,
            "Operation is working on an unsupported data type" => OpReason::UnsupportedDataType,
            "More than one subgraph is not supported" => OpReason::MultipleSubgraphs,
            "Operation is otherwise supported, but not mapped due to some unspecified limitation" => {
                OpReason::UnspecifiedLimitation
            }
            "Operation version not supported" => OpReason::UnsupportedVersion,
            _ if s.starts_with("Tensor has unsupported rank") => OpReason::UnsupportedRank,
            _ if lower.contains("dynamic-sized") || lower.contains("dynamic size") => OpReason::DynamicTensors,
            _ if lower.contains("not constant") => OpReason::NonConstantParameters,
            _ => OpReason::Other(s.to_string()),
        }
    }

    /// Whether the operator runs on the Edge TPU.
    pub fn is_mapped(&self) -> bool {
        matches!(self, OpReason::Mapped)
    }

    /// A short explanation for people: what the status means and, where there is one, what to
    /// change.
    pub fn explanation(&self) -> &str {
        match self {
            OpReason::Mapped => "runs on the Edge TPU",
            OpReason::UnsupportedOperation => "the Edge TPU has no such operation",
            OpReason::UnsupportedDataType => "not int8/uint8 (float tensors, or a (de)quantize step at the edge)",
            OpReason::MultipleSubgraphs => {
                "follows an op that stays on the CPU; only one Edge TPU subgraph is allowed without -a"
            }
            OpReason::UnspecifiedLimitation => "this instance exceeds a limit of the compiler (often tensor size)",
            OpReason::UnsupportedVersion => "op version newer than the compiler knows; convert with an older converter",
            OpReason::UnsupportedRank => "tensor has more than 3 non-unit innermost dimensions",
            OpReason::DynamicTensors => "tensor shapes must be fixed at compile time",
            OpReason::NonConstantParameters => "weights and biases must be constant at compile time",
            OpReason::Other(s) => s,
        }
    }
}

/// One row of the operator table: `CONV_2D   63   Mapped to Edge TPU`.
///
/// The compiler prints one row per (operator, status) pair, so an operator whose instances got
/// different statuses appears on several rows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpRow {
    /// TFLite builtin operator name (`CONV_2D`), or `CUSTOM`.
    pub operator: String,
    /// Number of instances with this status.
    pub count: u32,
    /// The status text, verbatim.
    pub status: String,
    /// The status mapped to a reason.
    pub reason: OpReason,
}

/// What the compiler says about one compiled model (one block of stdout, or one `.log` file).
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct ModelReport {
    /// Input model path as printed (`Input model:` on stdout, `Input:` in a log).
    pub input: Option<PathBuf>,
    /// Input model size (stdout `Input size:`).
    pub input_bytes: Option<u64>,
    /// Output model path as printed.
    pub output: Option<PathBuf>,
    /// Output model size (stdout `Output size:`).
    pub output_bytes: Option<u64>,
    /// On-chip memory used for caching model parameters.
    pub on_chip_used_bytes: Option<u64>,
    /// On-chip memory remaining for caching model parameters (compiler 2.0 says "available").
    pub on_chip_remaining_bytes: Option<u64>,
    /// Off-chip memory used for streaming uncached parameters: sent with every inference.
    pub off_chip_streamed_bytes: Option<u64>,
    /// Number of Edge TPU subgraphs.
    pub subgraphs: Option<u32>,
    /// `Total number of operations`.
    pub total_operations: Option<u32>,
    /// `Number of operations that will run on Edge TPU` (printed only when some ops stay on the
    /// CPU; see [`ModelReport::ops_on_tpu`]).
    pub tpu_operations: Option<u32>,
    /// `Number of operations that will run on CPU`.
    pub cpu_operations: Option<u32>,
    /// Path of the operation log (stdout `Operation log:`).
    pub operation_log: Option<PathBuf>,
    /// The compiler said that not all operations are supported by the Edge TPU.
    pub partially_mapped: bool,
    /// That paragraph as printed, its lines joined by single spaces (compiler 14.1 wraps it over
    /// four lines; see [`PARTIAL_NOTICE`]).
    pub partial_notice: Option<String>,
    /// The table lists only the unmapped operators (stdout without `-s`: "All other operators
    /// were mapped successfully").
    pub only_unmapped_listed: bool,
    /// The operator table, in the compiler's order.
    pub operations: Vec<OpRow>,
}

impl ModelReport {
    fn table_sum(&self, mapped: Option<bool>) -> u32 {
        self.operations
            .iter()
            .filter(|r| mapped.is_none_or(|m| r.reason.is_mapped() == m))
            .fold(0u32, |n, r| n.saturating_add(r.count))
    }

    /// Operations in total: the stated number, else the sum of the table (when it is complete).
    pub fn ops_total(&self) -> Option<u32> {
        self.total_operations.or_else(|| self.full_table().then(|| self.table_sum(None)))
    }

    /// Operations on the Edge TPU: the stated number; else all of them when the compiler did not
    /// say that some stay on the CPU; else the mapped rows of a complete table.
    pub fn ops_on_tpu(&self) -> Option<u32> {
        if let Some(n) = self.tpu_operations {
            return Some(n);
        }
        if self.full_table() {
            return Some(self.table_sum(Some(true)));
        }
        if !self.partially_mapped && self.cpu_operations.is_none() {
            return self.total_operations;
        }
        match (self.total_operations, self.cpu_operations) {
            (Some(t), Some(c)) => t.checked_sub(c),
            _ => None,
        }
    }

    /// Operations on the CPU, by the same rules as [`ModelReport::ops_on_tpu`].
    pub fn ops_on_cpu(&self) -> Option<u32> {
        if let Some(n) = self.cpu_operations {
            return Some(n);
        }
        if !self.operations.is_empty() {
            // Listed unmapped rows are all of them, whether or not the mapped rows are listed.
            return Some(self.table_sum(Some(false)));
        }
        if !self.partially_mapped && self.tpu_operations.is_none() && self.total_operations.is_some() {
            return Some(0);
        }
        match (self.total_operations, self.tpu_operations) {
            (Some(t), Some(m)) => t.checked_sub(m),
            _ => None,
        }
    }

    /// The rows whose operators stay on the CPU.
    pub fn unmapped(&self) -> impl Iterator<Item = &OpRow> {
        self.operations.iter().filter(|r| !r.reason.is_mapped())
    }

    fn full_table(&self) -> bool {
        !self.operations.is_empty() && !self.only_unmapped_listed
    }
}

/// Everything a compiler output says: stdout of a run, or one `*_edgetpu.log`.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct Report {
    /// The compiler version of the banner line.
    pub version: Option<CompilerVersion>,
    /// `Started a compilation timeout timer of N seconds.` (compiler 16).
    pub timeout_timer_sec: Option<u64>,
    /// `Model compiled successfully in N ms.`
    pub compile_time_ms: Option<u64>,
    /// `Models compiled successfully` (plural): several models were co-compiled.
    pub cocompiled: bool,
    /// `Searching for valid delegate with step N` (`-d`).
    pub delegate_search_step: Option<u32>,
    /// The op counts of `Try to compile segment with N ops`, in order (`-d`).
    pub delegate_search_attempts: Vec<u32>,
    /// One entry per compiled model (co-compiled runs list several; a log file has one).
    pub models: Vec<ModelReport>,
    /// Error lines: `ERROR: …`, `Compilation failed: …`, `Internal compiler error. Aborting!`.
    pub errors: Vec<String>,
    /// Whether the compiler said it succeeded (`Model compiled successfully`, `Compilation
    /// succeeded!`) or failed (`Compilation failed!`, an internal error); `None` when it said
    /// neither, as in a log file.
    pub succeeded: Option<bool>,
    /// `Compilation child process completed within timeout period.`
    pub finished_within_timeout: bool,
    /// Lines this parser does not know, verbatim and in order (blank lines are not kept).
    pub unparsed: Vec<String>,
}

impl Report {
    /// Parses compiler stdout or a `*_edgetpu.log`; never fails (unknown lines land in
    /// [`Report::unparsed`]).
    pub fn parse(text: &str) -> Report {
        crate::parse::parse(text)
    }

    /// The only model of a single-model run or a log file; `None` when there are none or several.
    pub fn single_model(&self) -> Option<&ModelReport> {
        match self.models.as_slice() {
            [m] => Some(m),
            _ => None,
        }
    }
}

/// Parses a size as the compiler prints it (`3.05MiB`, `320.00KiB`, `0.00B`; also `GiB`, and
/// `KB`/`MB`/`GB` read as binary units) into bytes, rounded to the nearest byte. `None` when the
/// text is not such a size.
pub fn parse_size(text: &str) -> Option<u64> {
    let t = text.trim();
    let split = t.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(t.len());
    let (number, unit) = t.split_at(split);
    let unit: u128 = match unit.trim() {
        "B" | "" => 1,
        "KiB" | "KB" | "K" => 1 << 10,
        "MiB" | "MB" | "M" => 1 << 20,
        "GiB" | "GB" | "G" => 1 << 30,
        _ => return None,
    };
    let (int, frac) = number.split_once('.').unwrap_or((number, ""));
    if int.is_empty() || frac.len() > 18 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let int: u128 = int.parse().ok()?;
    let scale = 10u128.pow(frac.len() as u32);
    let frac: u128 = if frac.is_empty() { 0 } else { frac.parse().ok()? };
    let scaled = int.checked_mul(scale)?.checked_add(frac)?.checked_mul(unit)?;
    u64::try_from(scaled.checked_add(scale / 2)? / scale).ok()
}

/// Formats a byte count as the compiler prints sizes: two decimals and a binary unit, no space
/// (`0.00B`, `320.00KiB`, `6.08MiB`, `1.50GiB`). The unit is the largest of B, KiB, MiB and GiB
/// not above the count; [`parse_size`] reads the text back to the count, give or take the
/// rounding to two decimals (at most half a hundredth of the unit).
pub fn format_size(bytes: u64) -> String {
    let (unit, name): (u128, &str) = match bytes {
        0..0x400 => (1, "B"),
        0x400..0x10_0000 => (1 << 10, "KiB"),
        0x10_0000..0x4000_0000 => (1 << 20, "MiB"),
        _ => (1 << 30, "GiB"),
    };
    // Hundredths of the unit, rounded half up, in integers (no float rounding surprises).
    let hundredths = (u128::from(bytes) * 100 + unit / 2) / unit;
    format!("{}.{:02}{name}", hundredths / 100, hundredths % 100)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn format_size_reads_like_the_compiler_and_parses_back() {
        assert_eq!(format_size(0), "0.00B");
        assert_eq!(format_size(12), "12.00B");
        assert_eq!(format_size(1023), "1023.00B");
        assert_eq!(format_size(1024), "1.00KiB");
        assert_eq!(format_size(320 * 1024), "320.00KiB");
        assert_eq!(format_size(6_375_342), "6.08MiB");
        assert_eq!(format_size(3 << 29), "1.50GiB");
        assert_eq!(format_size(u64::MAX), "17179869184.00GiB");
        // The compiler's own figures (the stdout captures and 14.1's wrapped output) survive
        // parse then format unchanged.
        for text in ["0.00B", "7.37MiB", "8.34MiB", "6.08MiB", "1.70MiB", "28.19KiB", "320.00KiB", "8.00MiB"] {
            let bytes = parse_size(text).unwrap();
            assert_eq!(format_size(bytes), text, "{bytes}");
        }
        // Counts that two decimals hold exactly come back exactly; others within the rounding.
        for bytes in [0, 1, 12, 1023, 1024, 320 * 1024, 1 << 20, 3 << 29, 5 << 30] {
            assert_eq!(parse_size(&format_size(bytes)), Some(bytes), "{bytes}");
        }
        for bytes in [1025u64, 6_375_342, 7_728_005, 1_782_579, 999_999_999, 123_456_789_012] {
            let unit = [1u64 << 30, 1 << 20, 1 << 10, 1].into_iter().find(|&u| bytes >= u).unwrap();
            let back = parse_size(&format_size(bytes)).unwrap();
            assert!(back.abs_diff(bytes) <= unit / 200 + 1, "{bytes} -> {} -> {back}", format_size(bytes));
        }
    }

    #[test]
    fn sizes_are_binary_units_rounded_to_bytes() {
        assert_eq!(parse_size("0.00B"), Some(0));
        assert_eq!(parse_size("320.00KiB"), Some(320 * 1024));
        assert_eq!(parse_size("3.05MiB"), Some(3_198_157)); // 3.05 * 1048576 = 3198156.8
        assert_eq!(parse_size("7.75KiB"), Some(7936));
        assert_eq!(parse_size("1.5GiB"), Some(3 << 29));
        assert_eq!(parse_size("12B"), Some(12));
        for bad in ["", "MiB", "1.2.3MiB", "1,5MiB", "3.05 furlongs", "-1B", "99999999999999999999999GiB"] {
            assert_eq!(parse_size(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn versions_parse_and_order() {
        let v = CompilerVersion::from_banner("Edge TPU Compiler version 16.0.384591198").unwrap();
        assert_eq!((v.major, v.minor, v.build), (16, 0, Some(384_591_198)));
        assert_eq!(v.to_string(), "16.0.384591198");
        assert!(CompilerVersion::parse("2.1.302470888").unwrap() < CompilerVersion::parse("14.1").unwrap());
        assert_eq!(CompilerVersion::parse("16"), None);
        assert_eq!(CompilerVersion::parse("16.0.1.2"), None);
        assert_eq!(CompilerVersion::parse("sixteen.0"), None);
        assert_eq!(CompilerVersion::from_banner("Edge TPU Compiler 16.0"), None);
    }

    #[test]
    fn statuses_map_to_reasons() {
        assert_eq!(OpReason::from_status("Mapped to Edge TPU"), OpReason::Mapped);
        assert_eq!(
            OpReason::from_status("Tensor has unsupported rank (up to 3 innermost dimensions mapped)"),
            OpReason::UnsupportedRank
        );
        assert_eq!(OpReason::from_status("Operation not supported"), OpReason::UnsupportedOperation);
        let odd = "For example, a fully-connected or softmax layer with 2D output";
        assert_eq!(OpReason::from_status(odd), OpReason::Other(odd.into()));
        assert!(!OpReason::from_status(odd).is_mapped());
    }
}
