//! The Edge TPU package inside `edgetpu-custom-op`.
//!
//! A compiled model replaces the ops mapped to the Edge TPU with one custom operator whose
//! options are a FlexBuffer map; key `"4"` holds a `DWN1` package, a flatbuffer nesting a
//! MultiExecutable, which holds one to three Executables (instruction bitstreams with relocation
//! fields, a parameter blob, DMA hints and input/output layers). [`Package::decode`] verifies each
//! level, checks every index, offset, size and bit offset against what it points into, and
//! exposes the result with bitstreams and parameters borrowed from the model.
//!
//! ```no_run
//! let model = edgetpu::Model::open("mobilenet_v1_0.25_128_quant_edgetpu.tflite")?;
//! for pkg in edgetpu::package::Package::all(&model)? {
//!     pkg.ensure_runnable()?;
//!     println!("token {:#018x}, {} B cached", pkg.caching_token(), pkg.cached_parameter_bytes());
//! }
//! # Ok::<(), edgetpu::Error>(())
//! ```

#[allow(unsafe_code, unused_imports, dead_code, non_camel_case_types, non_snake_case, missing_docs, mismatched_lifetime_syntaxes)]
#[allow(clippy::all, clippy::pedantic)]
#[rustfmt::skip]
pub(crate) mod executable_generated;
mod executable;
pub mod flexbuffer;
mod link;
mod types;

pub use executable::Executable;
pub use link::{read_bits, write_bits, BufferAddresses};
pub use types::{
    Bitstream, DataType, Description, DmaHint, DmaHints, ExecutableType, FieldOffset, Layer, OutputInfo, OutputLayout,
    OutputSlice, Position,
};

use crate::error::{Error, Result};
use crate::fb::{offset_in, reborrow, verify};
use crate::model::{Model, Operator, Subgraph};
use executable_generated::platforms::darwinn as fb;
use flexbuffer::{FlexError, FlexRef};

/// Custom code of the operator that carries a package.
pub const CUSTOM_OP_CODE: &str = crate::model::EDGETPU_CUSTOM_OP;

/// Highest package `min_runtime_version` this runtime runs (the one libedgetpu 16.0 runs).
pub const RUNTIME_VERSION: i32 = 14;

/// On-chip memory available for cached parameters, in bytes.
pub const ON_CHIP_MEMORY_BYTES: usize = 8 << 20;

/// A decoded Edge TPU package, borrowing from its model.
#[derive(Debug, Clone)]
pub struct Package<'m> {
    /// Subgraph of the custom op.
    pub subgraph: usize,
    /// Index of the custom op in its subgraph.
    pub operator_index: usize,
    /// File offset of the custom op's options (the FlexBuffer).
    pub options_offset: usize,
    /// File offset of the package.
    pub offset: usize,
    /// The package bytes.
    pub bytes: &'m [u8],
    /// Whether the package carries the `DWN1` file identifier.
    pub has_identifier: bool,
    /// Custom op data version (options key "1").
    pub options_version: Option<i64>,
    /// Chip ids (options key "6").
    pub chip_ids: Vec<i64>,
    /// Packages beyond the first (options key "7"); this runtime runs only single-package ops.
    pub extra_packages: usize,
    /// Minimum runtime version the package needs.
    pub min_runtime_version: i32,
    /// Version string of the compiler that made it.
    pub compiler_version: String,
    /// Signature of the multi-executable (empty in files seen).
    pub signature: &'m [u8],
    /// Key pair version.
    pub keypair_version: i32,
    /// Chip position in a multi-chip package; -1 marks a multi-chip package.
    pub virtual_chip_id: i32,
    /// Number of per-chip packages nested in a multi-chip package.
    pub multi_chip_packages: usize,
    /// User tag.
    pub model_identifier: String,
    /// The executables, in file order.
    pub executables: Vec<Executable<'m>>,
    main: usize,
    caching: Option<usize>,
}

fn flex(e: FlexError, base: usize, field: &str) -> Error {
    Error::invalid(base + e.offset, format!("edgetpu-custom-op options: {field}"), e.reason)
}

impl<'m> Package<'m> {
    /// Decodes the package of every `edgetpu-custom-op` in the model, in operator order.
    pub fn all(model: &'m Model) -> Result<Vec<Package<'m>>> {
        let mut out = Vec::new();
        for sg in model.subgraphs() {
            for op in model.custom_ops(sg, CUSTOM_OP_CODE) {
                out.push(Self::decode(model, sg, op)?);
            }
        }
        Ok(out)
    }

    /// Decodes the package of one `edgetpu-custom-op`.
    pub fn decode(model: &'m Model, subgraph: &Subgraph, op: &Operator) -> Result<Package<'m>> {
        Self::decode_inner(model, subgraph, op).map_err(|e| e.with_path(model.path()))
    }

    fn decode_inner(model: &'m Model, subgraph: &Subgraph, op: &Operator) -> Result<Package<'m>> {
        let file = model.bytes();
        let op_field = format!("subgraphs[{}].operators[{}]", subgraph.index, op.index);
        let Some(options) = model.custom_options(op) else {
            return Err(Error::invalid(
                op.file_offset,
                format!("{op_field}.custom_options"),
                "edgetpu-custom-op has no options",
            ));
        };
        let base = offset_in(file, options);
        let map = FlexRef::root(options).and_then(|r| r.as_map()).map_err(|e| flex(e, base, "root map"))?;
        let key = |k: &str| map.get(k).map_err(|e| flex(e, base, k));
        let Some(pkg_ref) = key("4")? else {
            return Err(Error::invalid(
                base,
                format!("{op_field}.custom_options"),
                "no package (key \"4\") in the options",
            ));
        };
        let bytes = pkg_ref.as_bytes().map_err(|e| flex(e, base, "package (key \"4\")"))?;
        let options_version =
            key("1")?.map(|v| v.as_i64()).transpose().map_err(|e| flex(e, base, "version (key \"1\")"))?;
        let mut chip_ids = Vec::new();
        if let Some(v) = key("6")? {
            let v = v.as_vector().map_err(|e| flex(e, base, "chip ids (key \"6\")"))?;
            for i in 0..v.len() {
                chip_ids.push(v.get(i).and_then(|x| x.as_i64()).map_err(|e| flex(e, base, "chip ids (key \"6\")"))?);
            }
        }
        let extra_packages = match key("7")? {
            Some(v) => v.as_vector().map_err(|e| flex(e, base, "extra packages (key \"7\")"))?.len(),
            None => 0,
        };
        if !chip_ids.is_empty() && chip_ids.len() != 1 + extra_packages {
            return Err(Error::invalid(
                base,
                format!("{op_field}.custom_options"),
                format!("{} chip ids for {} packages", chip_ids.len(), 1 + extra_packages),
            ));
        }

        let offset = offset_in(file, bytes);
        if bytes.len() < 8 {
            return Err(Error::invalid(
                offset,
                "package",
                format!("{} bytes is too short for an Edge TPU package", bytes.len()),
            ));
        }
        let has_identifier = fb::package_buffer_has_identifier(bytes);
        let pkg = verify::<fb::Package>(bytes, offset, "package")?;
        let multi = reborrow(file, pkg.serialized_multi_executable().map(|v| v.bytes()), offset);
        let multi_offset = offset_in(file, multi);
        if multi.is_empty() {
            return Err(Error::invalid(
                offset,
                "package.serialized_multi_executable",
                "the package holds no executables",
            ));
        }
        let mut executables = Vec::new();
        for (i, exe) in serialized_strings(multi)
            .map_err(|e| Error::invalid(multi_offset + e.offset, "package.serialized_multi_executable", e.reason))?
            .into_iter()
            .enumerate()
        {
            executables.push(Executable::decode(file, exe, i)?);
        }
        let (main, caching) = select(&executables, multi_offset)?;
        Ok(Package {
            subgraph: subgraph.index,
            operator_index: op.index,
            options_offset: base,
            offset,
            bytes,
            has_identifier,
            options_version,
            chip_ids,
            extra_packages,
            min_runtime_version: pkg.min_runtime_version(),
            compiler_version: pkg.compiler_version().unwrap_or_default().to_string(),
            signature: reborrow(file, pkg.signature().map(|v| v.bytes()), offset),
            keypair_version: pkg.keypair_version(),
            virtual_chip_id: pkg.virtual_chip_id(),
            multi_chip_packages: pkg.multi_chip_package().map_or(0, |v| v.len()),
            model_identifier: pkg.model_identifier().unwrap_or_default().to_string(),
            executables,
            main,
            caching,
        })
    }

    /// Fails with [`crate::ErrorKind::Unsupported`] when this runtime cannot run the package.
    pub fn ensure_runnable(&self) -> Result<()> {
        let at = format!("edgetpu-custom-op at operator {}", self.operator_index);
        if self.min_runtime_version > RUNTIME_VERSION {
            return Err(Error::unsupported(format!(
                "{at} needs Edge TPU runtime version {} but this runtime implements version {RUNTIME_VERSION}; \
                 recompile the model with `edgetpu_compiler -m {RUNTIME_VERSION}`",
                self.min_runtime_version
            )));
        }
        if self.virtual_chip_id == -1 || self.multi_chip_packages > 0 {
            return Err(Error::unsupported(format!(
                "{at} is a multi-chip package; compile for a single chip, or split the model with `edgetpu_compiler -n N` \
                 and run the segments as a pipeline"
            )));
        }
        if self.extra_packages > 0 {
            return Err(Error::unsupported(format!(
                "{at} carries {} executable packages; only single-package custom ops are supported",
                1 + self.extra_packages
            )));
        }
        Ok(())
    }

    /// The executable that runs inferences.
    pub fn main(&self) -> &Executable<'m> {
        &self.executables[self.main]
    }

    /// The parameter-caching executable that must have run before [`Self::main`], if any.
    pub fn parameter_caching(&self) -> Option<&Executable<'m>> {
        self.caching.map(|i| &self.executables[i])
    }

    /// The parameter-caching token of the main executable (0: no caching).
    pub fn caching_token(&self) -> u64 {
        self.main().parameter_caching_token
    }

    /// Parameter bytes loaded into on-chip memory once.
    pub fn cached_parameter_bytes(&self) -> usize {
        self.parameter_caching().map_or(0, |e| e.parameters.len())
    }

    /// Parameter bytes sent with every inference.
    pub fn streamed_parameter_bytes(&self) -> usize {
        self.main().parameters.len()
    }

    /// Whether the cached parameters fit in the on-chip memory.
    pub fn fits_on_chip(&self) -> bool {
        self.cached_parameter_bytes() <= ON_CHIP_MEMORY_BYTES
    }
}

/// Picks the main and the parameter-caching executable by the legal type combinations.
fn select(exes: &[Executable<'_>], at: usize) -> Result<(usize, Option<usize>)> {
    let find = |t: ExecutableType| exes.iter().position(|e| e.kind == t);
    let count = |t: ExecutableType| exes.iter().filter(|e| e.kind == t).count();
    let kinds: Vec<&str> = exes.iter().map(|e| e.kind.name()).collect();
    let bad = || {
        Error::invalid(
            at,
            "multi-executable",
            format!(
                "illegal executable combination {kinds:?}; a package holds one executable, \
                 PARAMETER_CACHING + EXECUTION_ONLY, or those two plus STAND_ALONE"
            ),
        )
    };
    use ExecutableType::*;
    if [StandAlone, ParameterCaching, ExecutionOnly].iter().any(|&t| count(t) > 1) {
        return Err(bad());
    }
    match exes.len() {
        1 => Ok((0, None)),
        2 => match (find(ExecutionOnly), find(ParameterCaching)) {
            (Some(main), Some(pc)) => Ok((main, Some(pc))),
            _ => Err(bad()),
        },
        3 => find(StandAlone).map(|main| (main, None)).ok_or_else(bad),
        _ => Err(bad()),
    }
}

/// Reads field 0 of the root table of `buf` as a vector of length-prefixed byte strings.
///
/// The MultiExecutable declares its executables as `[string]`, but they are binary, so the
/// flatbuffer verifier (which checks UTF-8) cannot be used for this one table.
fn serialized_strings(buf: &[u8]) -> std::result::Result<Vec<&[u8]>, FlexError> {
    let e = |offset: usize, reason: &str| FlexError { offset, reason: reason.to_string() };
    let u32_at = |at: usize| -> std::result::Result<usize, FlexError> {
        buf.get(at..at.saturating_add(4))
            .filter(|s| s.len() == 4)
            .map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]) as usize)
            .ok_or_else(|| e(at, "4-byte value runs past the end of the buffer"))
    };
    let u16_at = |at: usize| -> std::result::Result<usize, FlexError> {
        buf.get(at..at.saturating_add(2))
            .filter(|s| s.len() == 2)
            .map(|s| usize::from(u16::from_le_bytes([s[0], s[1]])))
            .ok_or_else(|| e(at, "2-byte value runs past the end of the buffer"))
    };
    let table = u32_at(0)?;
    let vt_off = u32_at(table)? as u32 as i32;
    let vtable = i64::try_from(table).unwrap_or(i64::MAX) - i64::from(vt_off);
    let vtable = usize::try_from(vtable).map_err(|_| e(table, "vtable offset points outside the buffer"))?;
    let vt_len = u16_at(vtable)?;
    if vt_len < 4 || vt_len % 2 != 0 {
        return Err(e(vtable, "malformed vtable"));
    }
    let field = if vt_len >= 6 { u16_at(vtable + 4)? } else { 0 };
    if field == 0 {
        return Ok(Vec::new());
    }
    let slot = table + field;
    let vec = slot.checked_add(u32_at(slot)?).ok_or_else(|| e(slot, "offset overflows"))?;
    let len = u32_at(vec)?;
    if len.checked_mul(4).and_then(|n| n.checked_add(vec + 4)).is_none_or(|end| end > buf.len()) {
        return Err(e(vec, "executable vector runs past the end of the buffer"));
    }
    let mut out = Vec::with_capacity(len);
    for i in 0..len {
        let elem = vec + 4 + 4 * i;
        let s = elem.checked_add(u32_at(elem)?).ok_or_else(|| e(elem, "offset overflows"))?;
        let n = u32_at(s)?;
        let data = buf.get(s + 4..(s + 4).saturating_add(n)).filter(|d| d.len() == n);
        out.push(data.ok_or_else(|| e(s, "executable runs past the end of the multi-executable"))?);
    }
    Ok(out)
}
