//! Glue between the flatbuffers verifier and the runtime's errors.
//!
//! The generated readers (flatc 25.12.19 with the flatbuffers 25 crate) trust the buffer they read:
//! following an offset of an unverified buffer can read out of bounds (RUSTSEC-2021-0122). The
//! runtime therefore (1) verifies every buffer with the verifier before the first read, (2) keeps
//! the generated modules private, and (3) re-derives roots only from buffers that passed
//! verification and that it owns immutably.

use crate::error::Error;
use flatbuffers::{ErrorTraceDetail, InvalidFlatbuffer, VerifierOptions};

/// Verifier limits for model files: TFLite's own limits are no stricter.
fn verifier_options() -> VerifierOptions {
    VerifierOptions {
        max_depth: 64,
        max_tables: 10_000_000,
        // 8 GiB, or all of a 32-bit address space.
        max_apparent_size: usize::try_from(1u64 << 33).unwrap_or(usize::MAX),
        ignore_missing_null_terminator: false,
    }
}

/// Runs the verifier on `buf` as a `T` root. The verifier of the flatbuffers 25 crate does its
/// offset arithmetic with checked and saturating operations, so hostile offsets give an error,
/// never a panic, with or without overflow checks (`runtime/tests/abort_check.rs` runs the
/// malformed corpus under `panic = "abort"`).
pub(crate) fn verify<'b, T>(buf: &'b [u8], base: usize, what: &str) -> Result<T::Inner, Error>
where
    T: 'b + flatbuffers::Follow<'b> + flatbuffers::Verifiable,
{
    flatbuffers::root_with_opts::<T>(&verifier_options(), buf).map_err(|e| invalid(&e, base, what))
}

/// Turns a verifier error into an [`Error::InvalidModel`] with an absolute byte offset.
/// `base` is the offset of the verified buffer in the file, `what` names that buffer.
pub(crate) fn invalid(err: &InvalidFlatbuffer, base: usize, what: &str) -> Error {
    let (position, trace) = match err {
        InvalidFlatbuffer::MissingRequiredField { error_trace, .. }
        | InvalidFlatbuffer::InconsistentUnion { error_trace, .. } => (None, Some(error_trace)),
        InvalidFlatbuffer::Utf8Error { range, error_trace, .. }
        | InvalidFlatbuffer::MissingNullTerminator { range, error_trace }
        | InvalidFlatbuffer::RangeOutOfBounds { range, error_trace } => (Some(range.start), Some(error_trace)),
        InvalidFlatbuffer::Unaligned { position, error_trace, .. }
        | InvalidFlatbuffer::SignedOffsetOutOfBounds { position, error_trace, .. } => {
            (Some(*position), Some(error_trace))
        }
        InvalidFlatbuffer::TooManyTables
        | InvalidFlatbuffer::ApparentSizeTooLarge
        | InvalidFlatbuffer::DepthLimitReached => (None, None),
    };
    let details: &[ErrorTraceDetail] = trace.map_or(&[], |t| t.as_ref());
    // The trace lists the innermost element first.
    let mut path = String::from(what);
    for d in details.iter().rev() {
        match d {
            ErrorTraceDetail::TableField { field_name, .. } => {
                path.push('.');
                path.push_str(field_name);
            }
            ErrorTraceDetail::VectorElement { index, .. } => path.push_str(&format!("[{index}]")),
            ErrorTraceDetail::UnionVariant { variant, .. } => path.push_str(&format!("<{variant}>")),
        }
    }
    let innermost = details.first().map(|d| match d {
        ErrorTraceDetail::TableField { position, .. }
        | ErrorTraceDetail::VectorElement { position, .. }
        | ErrorTraceDetail::UnionVariant { position, .. } => *position,
    });
    let offset = base + position.or(innermost).unwrap_or(0);
    let reason = match err {
        InvalidFlatbuffer::MissingRequiredField { required, .. } => format!("missing required field `{required}`"),
        InvalidFlatbuffer::InconsistentUnion { field, .. } => {
            format!("union `{field}` has a type without a value or a value without a type")
        }
        InvalidFlatbuffer::Utf8Error { error, .. } => format!("string is not UTF-8: {error}"),
        InvalidFlatbuffer::MissingNullTerminator { .. } => "string has no null terminator".to_string(),
        InvalidFlatbuffer::Unaligned { unaligned_type, .. } => format!("unaligned {unaligned_type}"),
        InvalidFlatbuffer::RangeOutOfBounds { range, .. } => {
            format!("data at [{}, {}) lies outside the buffer", base + range.start, base + range.end)
        }
        InvalidFlatbuffer::SignedOffsetOutOfBounds { soffset, .. } => {
            format!("vtable offset {soffset} points outside the buffer")
        }
        InvalidFlatbuffer::TooManyTables => "too many tables".to_string(),
        InvalidFlatbuffer::ApparentSizeTooLarge => {
            "apparent size too large (shared offsets blow up the structure)".to_string()
        }
        InvalidFlatbuffer::DepthLimitReached => "nesting too deep".to_string(),
    };
    Error::invalid(offset, path, format!("{reason}; the file is corrupt or not a model of this kind"))
}

/// Offset of `inner` within `outer`, for slices borrowed from `outer`.
pub(crate) fn offset_in(outer: &[u8], inner: &[u8]) -> usize {
    (inner.as_ptr() as usize).wrapping_sub(outer.as_ptr() as usize)
}

/// Reads a bool field as a byte: the generated accessors transmute the byte into a `bool`, which
/// is undefined behaviour for values other than 0 and 1 in a malformed file. The read is a
/// bounds-checked slice access on a table the verifier accepted.
pub(crate) fn get_bool(tab: &flatbuffers::Table<'_>, slot: flatbuffers::VOffsetT) -> bool {
    let field = tab.vtable().get(slot) as usize;
    field != 0 && tab.buf().get(tab.loc().saturating_add(field)).is_some_and(|b| *b != 0)
}

/// `part` (a slice the verifier found inside `file`) as a slice of `file`; an absent part becomes
/// the empty slice at `at`, so that offsets computed from it stay meaningful.
pub(crate) fn reborrow<'f>(file: &'f [u8], part: Option<&[u8]>, at: usize) -> &'f [u8] {
    let at = at.min(file.len());
    part.and_then(|p| {
        let start = offset_in(file, p);
        file.get(start..start.checked_add(p.len())?)
    })
    .unwrap_or(&file[at..at])
}
