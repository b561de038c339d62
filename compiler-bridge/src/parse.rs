//! The line parser behind [`Report::parse`].
//!
//! One parser reads both outputs of the compiler, since they share their lines:
//!
//! * a `*_edgetpu.log` (the same layout from compiler 2.0 to 16.0): the version banner,
//!   `Input:` and `Output:` paths, then the operator table
//!   (`Operator  Count  Status` header, one row per operator and status);
//! * stdout: the banner, `Started a compilation timeout timer …` (16.0), `Model compiled
//!   successfully in N ms.` (`Models …` when co-compiling), then per model `Input model:`,
//!   `Input size:`, `Output model:`, `Output size:`, the three memory lines (2.0 says
//!   "available" for "remaining"), `Number of Edge TPU subgraphs:`, `Total number of
//!   operations:`, `Operation log:`; when ops stay on the CPU a paragraph (wrapped over several
//!   lines by 14.1) and the TPU/CPU op counts; the table (all rows with `-s`, else only the
//!   unmapped ones followed by "All other operators were mapped successfully"); `-d` search
//!   lines; error lines; and the closing `Compilation succeeded!` / `Compilation failed!`.
//!
//! A new `Input model:` / `Input:` line starts a new model block; every later model line and table
//! row belongs to the last block. The table runs from its header to the next statement (a line
//! this parser knows); unknown lines inside it do not end it. Lines with `\r\n` endings parse the same. A line that matches
//! nothing, or whose value does not parse, is kept in [`Report::unparsed`].
//!
//! The "not all operations are supported" paragraph ([`PARTIAL_NOTICE`]) is kept in
//! [`ModelReport::partial_notice`]. A line continues it only while the text read so far, words
//! joined by single spaces, is still the beginning of [`PARTIAL_NOTICE`]; the first line that
//! does not (a blank line, a statement, a `WARNING:`, other prose) ends it and is parsed, or kept
//! in [`Report::unparsed`], like any other line.

use crate::report::{parse_size, CompilerVersion, ModelReport, OpReason, OpRow, Report, PARTIAL_NOTICE};
use std::path::PathBuf;

/// Parses compiler stdout or a `*_edgetpu.log` into a [`Report`]; see the module docs.
pub fn parse(text: &str) -> Report {
    let mut p = Parser { report: Report::default(), in_table: false, in_notice: false };
    for raw in text.lines() {
        let line = raw.trim_end();
        if line.trim().is_empty() {
            p.in_notice = false;
            continue;
        }
        if !p.line(line) {
            p.report.unparsed.push(line.to_string());
        }
    }
    p.report
}

struct Parser {
    report: Report,
    in_table: bool,
    /// The last model's [`ModelReport::partial_notice`] may continue on the next line.
    in_notice: bool,
}

/// The words that start [`PARTIAL_NOTICE`] in every compiler version.
const NOTICE_START: &str = "Model successfully compiled but not all operations are supported";

impl Parser {
    fn model(&mut self) -> &mut ModelReport {
        if self.report.models.is_empty() {
            self.report.models.push(ModelReport::default());
        }
        let last = self.report.models.len() - 1;
        &mut self.report.models[last]
    }

    /// Starts a new model block unless the last one has no input yet.
    fn new_model(&mut self) -> &mut ModelReport {
        if self.report.models.last().is_none_or(|m| m.input.is_some()) {
            self.report.models.push(ModelReport::default());
        }
        self.model()
    }

    /// Reads one non-blank line; false when it matches nothing.
    fn line(&mut self, line: &str) -> bool {
        let t = line.trim();
        if std::mem::take(&mut self.in_notice) && self.continue_notice(t) {
            return true;
        }
        if is_table_header(t) {
            self.in_table = true;
            return true;
        }
        if self.in_table {
            if let Some(row) = table_row(t) {
                self.model().operations.push(row);
                return true;
            }
            // Only a statement ends the table; an unknown line inside it is kept and the rows
            // after it still count.
            let known = self.statement(t);
            self.in_table = !known;
            return known;
        }
        self.statement(t)
    }

    /// Appends `t` to the last model's notice when the notice stays a beginning of
    /// [`PARTIAL_NOTICE`]; false (nothing changed) otherwise.
    fn continue_notice(&mut self, t: &str) -> bool {
        let Some(so_far) = self.model().partial_notice.as_deref() else { return false };
        let joined = format!("{so_far} {}", words(t));
        if !PARTIAL_NOTICE.starts_with(&joined) {
            return false;
        }
        self.in_notice = joined.len() < PARTIAL_NOTICE.len();
        self.model().partial_notice = Some(joined);
        true
    }

    fn statement(&mut self, t: &str) -> bool {
        if let Some(v) = CompilerVersion::from_banner(t) {
            self.report.version = Some(v);
            return true;
        }
        if t.starts_with(NOTICE_START) {
            let notice = words(t);
            self.in_notice = PARTIAL_NOTICE.starts_with(&notice) && notice.len() < PARTIAL_NOTICE.len();
            let m = self.model();
            m.partially_mapped = true;
            m.partial_notice = Some(notice);
            return true;
        }
        if t.contains("All other operators were mapped successfully") {
            self.model().only_unmapped_listed = true;
            return true;
        }
        match t {
            "Compilation succeeded!" => {
                self.report.succeeded = Some(true);
                return true;
            }
            "Compilation failed!" => {
                self.report.succeeded = Some(false);
                return true;
            }
            "Compilation child process completed within timeout period." => {
                self.report.finished_within_timeout = true;
                return true;
            }
            "See the operation log file for individual operation details." => return true,
            _ => {}
        }
        if t.starts_with("Internal compiler error") {
            self.report.errors.push(t.to_string());
            self.report.succeeded = Some(false);
            return true;
        }
        if let Some(rest) = t.strip_prefix("Started a compilation timeout timer of ") {
            return set(&mut self.report.timeout_timer_sec, number(rest.strip_suffix(" seconds.")));
        }
        for prefix in ["Model compiled successfully in ", "Models compiled successfully in "] {
            if let Some(rest) = t.strip_prefix(prefix) {
                if !set(&mut self.report.compile_time_ms, number(rest.strip_suffix(" ms."))) {
                    return false;
                }
                self.report.cocompiled = prefix.starts_with("Models");
                if self.report.succeeded.is_none() {
                    self.report.succeeded = Some(true);
                }
                return true;
            }
        }
        if let Some(rest) = t.strip_prefix("Searching for valid delegate with step ") {
            return set(&mut self.report.delegate_search_step, number(Some(rest)));
        }
        if let Some(rest) = t.strip_prefix("Try to compile segment with ") {
            let Some(n) = number(rest.strip_suffix(" ops")) else { return false };
            self.report.delegate_search_attempts.push(n);
            return true;
        }
        let Some((key, value)) = t.split_once(':') else { return false };
        let value = value.trim();
        match key {
            "ERROR" | "Compilation failed" | "Invalid model" => {
                self.report.errors.push(t.to_string());
                true
            }
            "Input" | "Input model" => {
                let m = self.new_model();
                m.input = Some(PathBuf::from(value));
                true
            }
            "Output" | "Output model" => set(&mut self.model().output, path(value)),
            "Operation log" => set(&mut self.model().operation_log, path(value)),
            "Input size" => set(&mut self.model().input_bytes, parse_size(value)),
            "Output size" => set(&mut self.model().output_bytes, parse_size(value)),
            "On-chip memory used for caching model parameters" => {
                set(&mut self.model().on_chip_used_bytes, parse_size(value))
            }
            "On-chip memory remaining for caching model parameters"
            | "On-chip memory available for caching model parameters" => {
                set(&mut self.model().on_chip_remaining_bytes, parse_size(value))
            }
            "Off-chip memory used for streaming uncached model parameters" => {
                set(&mut self.model().off_chip_streamed_bytes, parse_size(value))
            }
            "Number of Edge TPU subgraphs" => set(&mut self.model().subgraphs, number(Some(value))),
            "Total number of operations" => set(&mut self.model().total_operations, number(Some(value))),
            "Number of operations that will run on Edge TPU" => {
                set(&mut self.model().tpu_operations, number(Some(value)))
            }
            "Number of operations that will run on CPU" => set(&mut self.model().cpu_operations, number(Some(value))),
            _ => false,
        }
    }
}

/// Stores a parsed value; false (the line is kept as unparsed) when it did not parse.
fn set<T>(slot: &mut Option<T>, value: Option<T>) -> bool {
    match value {
        Some(v) => {
            *slot = Some(v);
            true
        }
        None => false,
    }
}

/// The words of `text` joined by single spaces.
fn words(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn number<T: std::str::FromStr>(text: Option<&str>) -> Option<T> {
    text?.trim().parse().ok()
}

fn path(text: &str) -> Option<PathBuf> {
    (!text.is_empty()).then(|| PathBuf::from(text))
}

fn is_table_header(t: &str) -> bool {
    t.split_whitespace().eq(["Operator", "Count", "Status"])
}

/// `OPERATOR   COUNT   STATUS TEXT`: the operator is one word, the count a number, the status
/// the rest of the line.
fn table_row(t: &str) -> Option<OpRow> {
    let (operator, rest) = t.split_once(char::is_whitespace)?;
    let rest = rest.trim_start();
    let (count, status) = rest.split_once(char::is_whitespace)?;
    let status = status.trim();
    if status.is_empty() || !count.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(OpRow {
        operator: operator.to_string(),
        count: count.parse().ok()?,
        status: status.to_string(),
        reason: OpReason::from_status(status),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrapped_paragraph_of_14_1_is_one_statement() {
        let text = "Edge TPU Compiler version 14.1.317412892\n\nModel compiled successfully in 113 ms.\n\n\
            Input model: T1.tflite\nInput size: 28.19KiB\nTotal number of operations: 24\n\n\
            Model successfully compiled but not all operations are supported by the\n\
            Edge TPU. A percentage of the model will instead run on the CPU, which is\n\
            slower. If possible, consider updating your model to use only operations\n\
            supported by the Edge TPU. For details, visit g.co/coral/model-reqs.\n\
            Number of operations that will run on Edge TPU: 6\n\
            Number of operations that will run on CPU: 18\n\
            See the operation log file for individual operation details.\n";
        let r = parse(text);
        assert!(r.unparsed.is_empty(), "{:?}", r.unparsed);
        let m = r.single_model().unwrap();
        assert!(m.partially_mapped);
        assert_eq!(m.partial_notice.as_deref(), Some(PARTIAL_NOTICE));
        assert_eq!((m.ops_total(), m.ops_on_tpu(), m.ops_on_cpu()), (Some(24), Some(6), Some(18)));
        assert_eq!(m.input_bytes, Some(28_867)); // 28.19 * 1024 = 28866.56
    }

    #[test]
    fn failure_output_gives_errors_and_crlf_is_accepted() {
        let text = "Edge TPU Compiler version 16.0.384591198\r\n\
            Started a compilation timeout timer of 180 seconds.\r\n\
            ERROR: Attempting to use a delegate that only supports static-sized tensors with a graph that has dynamic-sized tensors.\r\n\
            Compilation failed: Model failed in Tflite interpreter. Please ensure model can be loaded/run in Tflite interpreter.\r\n\
            Compilation child process completed within timeout period.\r\nCompilation failed! \r\n";
        let r = parse(text);
        assert_eq!(r.succeeded, Some(false));
        assert_eq!(r.errors.len(), 2);
        assert!(r.errors[0].starts_with("ERROR: Attempting"));
        assert_eq!(r.timeout_timer_sec, Some(180));
        assert!(r.finished_within_timeout && r.unparsed.is_empty() && r.models.is_empty());
    }

    #[test]
    fn delegate_search_and_odd_lines() {
        let text = "Searching for valid delegate with step 10\nTry to compile segment with 246 ops\n\
            Try to compile segment with 236 ops\nInput size: lots\nINFO: Initialized TensorFlow Lite runtime.\n\
            Operator  Count  Status\nCONV_2D  3  Mapped to Edge TPU\nCONV_2D  x  Mapped\nEXP 1 Operation not supported\n\
            Compilation succeeded!\nLATE 2 After the table\n";
        let r = parse(text);
        assert_eq!(r.delegate_search_step, Some(10));
        assert_eq!(r.delegate_search_attempts, vec![246, 236]);
        assert_eq!(
            r.unparsed,
            vec![
                "Input size: lots",
                "INFO: Initialized TensorFlow Lite runtime.",
                "CONV_2D  x  Mapped",
                "LATE 2 After the table"
            ]
        );
        // The odd line does not end the table; the statement does.
        let ops: Vec<(&str, u32)> = r.models[0].operations.iter().map(|o| (o.operator.as_str(), o.count)).collect();
        assert_eq!(ops, [("CONV_2D", 3), ("EXP", 1)]);
        assert_eq!(r.models[0].operations[1].reason, OpReason::UnsupportedOperation);
        assert_eq!(r.succeeded, Some(true));
    }

    #[test]
    fn the_notice_ends_at_the_first_line_that_does_not_continue_it() {
        let head = "Model successfully compiled but not all operations are supported by the";
        // A statement, an unknown line, and prose that is not the notice's next words.
        for next in ["Number of operations that will run on CPU: 3", "WARNING: x", "Edge TPU, and more."] {
            let r = parse(&format!("Input model: m.tflite\n{head}\n{next}\nOperation log: m_edgetpu.log\n"));
            let m = &r.models[0];
            assert!(m.partially_mapped);
            assert_eq!(m.partial_notice.as_deref(), Some(head), "{next}");
            assert_eq!(m.operation_log.as_deref(), Some(std::path::Path::new("m_edgetpu.log")), "{next}");
            let unparsed: Vec<&str> = r.unparsed.iter().map(String::as_str).collect();
            if next.starts_with("Number") {
                assert!(unparsed.is_empty() && m.cpu_operations == Some(3), "{unparsed:?}");
            } else {
                assert_eq!(unparsed, [next]);
            }
        }
        // Once complete it takes nothing more, even words that would read on.
        let r = parse(&format!("{PARTIAL_NOTICE}\nFor details, visit g.co/coral/model-reqs.\n"));
        assert_eq!(r.models[0].partial_notice.as_deref(), Some(PARTIAL_NOTICE));
        assert_eq!(r.unparsed, ["For details, visit g.co/coral/model-reqs."]);
    }
}
