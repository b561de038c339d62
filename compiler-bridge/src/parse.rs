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
//! row belongs to the last block. Lines with `\r\n` endings parse the same. A line that matches
//! nothing, or whose value does not parse, is kept in [`Report::unparsed`].

use crate::report::{parse_size, CompilerVersion, ModelReport, OpReason, OpRow, Report};
use std::path::PathBuf;

/// Parses compiler stdout or a `*_edgetpu.log` into a [`Report`]; see the module docs.
pub fn parse(text: &str) -> Report {
    let mut p = Parser { report: Report::default(), in_table: false, paragraph: None };
    for raw in text.lines() {
        let line = raw.trim_end();
        if line.trim().is_empty() {
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
    /// The "not all operations are supported" paragraph read so far, while it may continue.
    paragraph: Option<String>,
}

const PARTIAL_PARAGRAPH: &str = "Model successfully compiled but not all operations are supported";

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
        if let Some(par) = self.paragraph.take() {
            if !self.is_known(t) {
                let par = format!("{par} {t}");
                if !par.contains("model-reqs") {
                    self.paragraph = Some(par);
                }
                return true;
            }
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
            self.in_table = false;
        }
        self.statement(t)
    }

    /// Whether a line is one of the statements (used to end a wrapped paragraph).
    fn is_known(&self, t: &str) -> bool {
        let mut probe = Parser { report: Report::default(), in_table: false, paragraph: None };
        is_table_header(t) || probe.statement(t)
    }

    fn statement(&mut self, t: &str) -> bool {
        if let Some(v) = CompilerVersion::from_banner(t) {
            self.report.version = Some(v);
            return true;
        }
        if t.starts_with(PARTIAL_PARAGRAPH) {
            self.model().partially_mapped = true;
            if !t.contains("model-reqs") {
                self.paragraph = Some(t.to_string());
            }
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
            Operator  Count  Status\nCONV_2D  3  Mapped to Edge TPU\nCONV_2D  x  Mapped\nEXP 1 Operation not supported\n";
        let r = parse(text);
        assert_eq!(r.delegate_search_step, Some(10));
        assert_eq!(r.delegate_search_attempts, vec![246, 236]);
        assert_eq!(
            r.unparsed,
            vec![
                "Input size: lots",
                "INFO: Initialized TensorFlow Lite runtime.",
                "CONV_2D  x  Mapped",
                "EXP 1 Operation not supported"
            ]
        );
        assert_eq!(r.models[0].operations.len(), 1);
    }
}
