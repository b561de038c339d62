//! Decoding and checking one executable.

use super::executable_generated::platforms::darwinn as fb;
use super::types::*;
use crate::error::{Error, Result};
use crate::fb::{get_bool, offset_in, reborrow, verify};

/// One executable of a package.
#[derive(Debug, Clone)]
pub struct Executable<'m> {
    /// Position in the package's multi-executable.
    pub index: usize,
    /// File offset of the executable's flatbuffer.
    pub offset: usize,
    /// The executable's flatbuffer bytes.
    pub bytes: &'m [u8],
    /// Type.
    pub kind: ExecutableType,
    /// Format version.
    pub version: i32,
    /// Name (`model`, `Unknown`, ...).
    pub name: String,
    /// Internal model description (empty in files seen).
    pub serialized_model: &'m [u8],
    /// Native batch size (at least 1).
    pub batch_size: usize,
    /// Scratch buffer bytes for batch 1.
    pub scratch_size_bytes: usize,
    /// Instruction chunks.
    pub bitstreams: Vec<Bitstream<'m>>,
    /// Parameter blob, borrowed from the model.
    pub parameters: &'m [u8],
    /// File offset of the parameter blob.
    pub parameters_offset: usize,
    /// DMA recipe.
    pub dma_hints: DmaHints,
    /// Inputs, in the order of the custom op's inputs.
    pub input_layers: Vec<Layer>,
    /// Outputs, in the order of the custom op's outputs.
    pub output_layers: Vec<Layer>,
    /// Target chip (`beagle`).
    pub chip: String,
    /// Deprecated cycle estimate.
    pub estimated_cycles: i32,
    /// Narrow memory used per tile.
    pub used_narrow_memory_bytes_per_tile: i32,
    /// Parameter-caching token.
    pub parameter_caching_token: u64,
    /// Whether parameters go to TPU DRAM (chips with DRAM only).
    pub use_tpu_dram_for_parameters: bool,
    /// Cycle estimate.
    pub estimated_cycles_64bit: i64,
}

fn non_negative(v: i32, at: usize, field: &str) -> Result<usize> {
    usize::try_from(v).map_err(|_| Error::invalid(at, field.to_string(), format!("negative value {v}")))
}

impl<'m> Executable<'m> {
    pub(super) fn decode(file: &'m [u8], bytes: &'m [u8], index: usize) -> Result<Executable<'m>> {
        let offset = offset_in(file, bytes);
        let what = format!("executables[{index}]");
        let exe = verify::<fb::Executable>(bytes, offset, &what)?;
        let at = offset + exe._tab.loc();
        let field = |f: &str| format!("{what}.{f}");
        let kind = ExecutableType::from_code(exe.type_().0)
            .ok_or_else(|| Error::invalid(at, field("type"), format!("unknown executable type {}", exe.type_().0)))?;
        let batch_size = non_negative(exe.batch_size(), at, &field("batch_size"))?;
        if batch_size == 0 {
            return Err(Error::invalid(at, field("batch_size"), "batch size must be at least 1"));
        }
        let scratch_size_bytes = non_negative(exe.scratch_size_bytes(), at, &field("scratch_size_bytes"))?;
        let parameters = reborrow(file, exe.parameters().map(|v| v.bytes()), offset);
        let mut input_layers = Vec::new();
        for (i, l) in exe.input_layers().iter().flatten().enumerate() {
            input_layers.push(decode_layer(&l, offset, &field(&format!("input_layers[{i}]")), false)?);
        }
        let mut output_layers = Vec::new();
        for (i, l) in exe.output_layers().iter().flatten().enumerate() {
            output_layers.push(decode_layer(&l, offset, &field(&format!("output_layers[{i}]")), true)?);
        }
        let mut e = Executable {
            index,
            offset,
            bytes,
            kind,
            version: exe.version(),
            name: exe.name().unwrap_or_default().to_string(),
            serialized_model: reborrow(file, exe.serialized_model().map(|v| v.bytes()), offset),
            batch_size,
            scratch_size_bytes,
            bitstreams: Vec::new(),
            parameters,
            parameters_offset: offset_in(file, parameters),
            dma_hints: DmaHints::default(),
            input_layers,
            output_layers,
            chip: exe.chip().unwrap_or_default().to_string(),
            estimated_cycles: exe.estimated_cycles(),
            used_narrow_memory_bytes_per_tile: exe.used_narrow_memory_bytes_per_tile(),
            parameter_caching_token: exe.parameter_caching_token(),
            use_tpu_dram_for_parameters: get_bool(&exe._tab, fb::Executable::VT_USE_TPU_DRAM_FOR_PARAMETERS),
            estimated_cycles_64bit: exe.estimated_cycles_64bit(),
        };
        for (i, b) in exe.instruction_bitstreams().iter().flatten().enumerate() {
            let bs = e.decode_bitstream(file, &b, offset, &field(&format!("instruction_bitstreams[{i}]")))?;
            e.bitstreams.push(bs);
        }
        if let Some(h) = exe.dma_hints() {
            e.dma_hints = e.decode_hints(&h, offset, &field("dma_hints"))?;
        }
        Ok(e)
    }

    /// Input layer called `name`.
    pub fn input_layer(&self, name: &str) -> Option<&Layer> {
        self.input_layers.iter().find(|l| l.name == name)
    }

    /// Output layer called `name`.
    pub fn output_layer(&self, name: &str) -> Option<&Layer> {
        self.output_layers.iter().find(|l| l.name == name)
    }

    /// Checks that a layer reference (by name and batch) exists.
    fn layer_ref<'a>(
        &'a self,
        desc: Description,
        name: Option<&str>,
        batch: i32,
        at: usize,
        field: &str,
    ) -> Result<(&'a Layer, usize)> {
        let layers = match desc {
            Description::InputActivation => &self.input_layers,
            _ => &self.output_layers,
        };
        let Some(name) = name else {
            return Err(Error::invalid(
                at,
                field.to_string(),
                format!("{} reference without a layer name", desc.name()),
            ));
        };
        let Some(layer) = layers.iter().find(|l| l.name == name) else {
            return Err(Error::invalid(
                at,
                field.to_string(),
                format!("no {} layer named {name:?}", desc.name().to_lowercase()),
            ));
        };
        let batch = usize::try_from(batch).ok().filter(|&b| b < self.batch_size).ok_or_else(|| {
            Error::invalid(
                at,
                field.to_string(),
                format!("batch {batch} out of range (batch size {})", self.batch_size),
            )
        })?;
        Ok((layer, batch))
    }

    fn decode_bitstream(
        &self,
        file: &'m [u8],
        b: &fb::InstructionBitstream<'_>,
        base: usize,
        what: &str,
    ) -> Result<Bitstream<'m>> {
        let data = reborrow(file, b.bitstream().map(|v| v.bytes()), base + b._tab.loc());
        let bits = data.len().saturating_mul(8);
        let mut field_offsets = Vec::new();
        for (i, f) in b.field_offsets().iter().flatten().enumerate() {
            let at = base + f._tab.loc();
            let field = format!("{what}.field_offsets[{i}]");
            let offset_bit =
                usize::try_from(f.offset_bit()).ok().filter(|&o| o.checked_add(32).is_some_and(|e| e <= bits));
            let Some(offset_bit) = offset_bit else {
                return Err(Error::invalid(
                    at,
                    format!("{field}.offset_bit"),
                    format!("32-bit field at bit {} does not fit in the {}-byte bitstream", f.offset_bit(), data.len()),
                ));
            };
            let Some(meta) = f.meta() else {
                return Err(Error::invalid(at, format!("{field}.meta"), "field offset without metadata"));
            };
            let desc = Description::from_code(meta.desc().0).ok_or_else(|| {
                Error::invalid(at, format!("{field}.meta.desc"), format!("unknown description {}", meta.desc().0))
            })?;
            let position = match meta.position().0 {
                0 => Position::Lower32,
                1 => Position::Upper32,
                p => return Err(Error::invalid(at, format!("{field}.meta.position"), format!("unknown position {p}"))),
            };
            let (name, batch) = match desc {
                Description::InputActivation | Description::OutputActivation => {
                    let (layer, batch) =
                        self.layer_ref(desc, meta.name(), meta.batch(), at, &format!("{field}.meta"))?;
                    (Some(layer.name.clone()), batch)
                }
                Description::Scratch if meta.batch() != 0 => {
                    return Err(Error::invalid(at, format!("{field}.meta.batch"), "scratch fields must have batch 0"));
                }
                _ => (None, 0),
            };
            field_offsets.push(FieldOffset { desc, position, batch, name, offset_bit });
        }
        Ok(Bitstream { data, offset: offset_in(file, data), field_offsets })
    }

    fn decode_hints(&self, h: &fb::DmaHints<'_>, base: usize, what: &str) -> Result<DmaHints> {
        let mut hints = Vec::new();
        for (i, hint) in h.hints().iter().flatten().enumerate() {
            let at = base + hint._tab.loc();
            let field = format!("{what}.hints[{i}]");
            let bad = |reason: String| Error::invalid(at, field.clone(), reason);
            let infeed = match hint.direction().0 {
                0 => true,
                1 => false,
                d => return Err(bad(format!("unknown direction {d}"))),
            };
            let decoded = if let Some(ins) = hint.any_hint_as_instruction_hint() {
                let chunk = usize::try_from(ins.instruction_chunk_index()).ok().filter(|&c| c < self.bitstreams.len());
                DmaHint::Instruction {
                    chunk: chunk.ok_or_else(|| {
                        bad(format!(
                            "instruction chunk {} out of range ({} bitstreams)",
                            ins.instruction_chunk_index(),
                            self.bitstreams.len()
                        ))
                    })?,
                }
            } else if let Some(int) = hint.any_hint_as_interrupt_hint() {
                match u8::try_from(int.type_().0).ok().filter(|&n| n < 4) {
                    Some(number) => DmaHint::Interrupt { number },
                    None => return Err(bad(format!("unknown interrupt {}", int.type_().0))),
                }
            } else if hint.any_hint_as_fence_hint().is_some() {
                DmaHint::Fence
            } else if let Some(d) = hint.any_hint_as_dma_descriptor_hint() {
                self.decode_descriptor(&d, infeed, at, &field)?
            } else {
                return Err(bad(format!("unknown hint type {}", hint.any_hint_type().0)));
            };
            hints.push(decoded);
        }
        Ok(DmaHints { hints, fully_deterministic: get_bool(&h._tab, fb::DmaHints::VT_FULLY_DETERMINISTIC) })
    }

    fn decode_descriptor(
        &self,
        d: &fb::DmaDescriptorHint<'_>,
        infeed: bool,
        at: usize,
        field: &str,
    ) -> Result<DmaHint> {
        let bad = |reason: String| Error::invalid(at, field.to_string(), reason);
        let offset = non_negative(d.offset_in_bytes(), at, &format!("{field}.offset_in_bytes"))?;
        let size = non_negative(d.size_in_bytes(), at, &format!("{field}.size_in_bytes"))?;
        let end = offset.checked_add(size).ok_or_else(|| bad("offset + size overflows".into()))?;
        let Some(meta) = d.meta() else {
            return Err(bad("DMA descriptor hint without metadata".into()));
        };
        let desc = Description::from_code(meta.desc().0)
            .ok_or_else(|| bad(format!("unknown description {}", meta.desc().0)))?;
        let hint = match (desc, infeed) {
            (Description::InputActivation, true) | (Description::OutputActivation, false) => {
                let (layer, batch) = self.layer_ref(desc, meta.name(), meta.batch(), at, field)?;
                if end > layer.padded_size_bytes() {
                    return Err(bad(format!(
                        "bytes [{offset}, {end}) lie outside layer {:?} of {} padded bytes",
                        layer.name,
                        layer.padded_size_bytes()
                    )));
                }
                let name = layer.name.clone();
                if infeed {
                    DmaHint::Input { name, batch, offset, size }
                } else {
                    DmaHint::Output { name, batch, offset, size }
                }
            }
            (Description::Parameter, true) => {
                if end > self.parameters.len() {
                    return Err(bad(format!(
                        "bytes [{offset}, {end}) lie outside the {}-byte parameters",
                        self.parameters.len()
                    )));
                }
                DmaHint::Parameter { offset, size }
            }
            (Description::Scratch, _) => {
                if end > self.scratch_size_bytes {
                    return Err(bad(format!(
                        "bytes [{offset}, {end}) lie outside the {}-byte scratch buffer",
                        self.scratch_size_bytes
                    )));
                }
                DmaHint::Scratch { infeed, offset, size }
            }
            (desc, _) => {
                return Err(bad(format!(
                    "{} transfer in the {} direction",
                    desc.name(),
                    if infeed { "infeed" } else { "outfeed" }
                )))
            }
        };
        Ok(hint)
    }
}

fn ints(v: Option<flatbuffers::Vector<'_, i32>>) -> Vec<i32> {
    v.iter().flatten().collect()
}

fn ranges(shape: Option<fb::TensorShape<'_>>) -> Option<Vec<(i32, i32)>> {
    shape.map(|s| s.dimension().unwrap_or_default().iter().map(|r| (r.start(), r.end())).collect())
}

fn decode_layer(l: &fb::Layer<'_>, base: usize, what: &str, is_output: bool) -> Result<Layer> {
    let at = base + l._tab.loc();
    let bad = |f: &str, reason: String| Error::invalid(at, format!("{what}.{f}"), reason);
    let data_type = DataType::from_code(l.data_type().0)
        .ok_or_else(|| bad("data_type", format!("unknown data type {}", l.data_type().0)))?;
    let numerics = l.numerics();
    let execution_count =
        non_negative(l.execution_count_per_inference(), at, &format!("{what}.execution_count_per_inference"))?;
    if execution_count == 0 {
        return Err(bad("execution_count_per_inference", "must be at least 1".into()));
    }
    let mut layer = Layer {
        name: l.name().unwrap_or_default().to_string(),
        size_bytes: non_negative(l.size_bytes(), at, &format!("{what}.size_bytes"))?,
        y_dim: non_negative(l.y_dim(), at, &format!("{what}.y_dim"))?,
        x_dim: non_negative(l.x_dim(), at, &format!("{what}.x_dim"))?,
        z_dim: non_negative(l.z_dim(), at, &format!("{what}.z_dim"))?,
        zero_point: numerics.map_or(0, |n| n.zero_point()),
        scale: numerics.map_or(0.0, |n| n.dequantization_factor()),
        data_type,
        execution_count,
        cache_on_dram: get_bool(&l._tab, fb::Layer::VT_CACHE_ON_DRAM),
        shape: ranges(l.shape()),
        output: None,
    };
    if let Some(dims) = &layer.shape {
        if let Some(&(s, e)) = dims.iter().find(|&&(s, e)| s < 0 || e < s) {
            return Err(bad("shape", format!("bad dimension range ({s}, {e})")));
        }
    }
    let actual = layer.checked_num_elements().and_then(|n| n.checked_mul(data_type.size_bytes()));
    if actual.is_none_or(|a| a > layer.size_bytes) {
        return Err(bad(
            "size_bytes",
            format!("padded size {} is smaller than the {:?} bytes of the layer's elements", layer.size_bytes, actual),
        ));
    }
    if is_output {
        let out = l.any_layer_as_output_layer();
        let mut info = OutputInfo::default();
        if let Some(o) = out {
            if let Some(lay) = o.layout() {
                let layout = OutputLayout {
                    y_coordinate_to_linear_tile_id_map: ints(lay.y_coordinate_to_linear_tile_id_map()),
                    x_coordinate_to_linear_tile_id_map: ints(lay.x_coordinate_to_linear_tile_id_map()),
                    linearized_tile_byte_offset: ints(lay.linearized_tile_byte_offset()),
                    x_coordinate_to_local_byte_offset: ints(lay.x_coordinate_to_local_byte_offset()),
                    y_coordinate_to_local_y_offset: ints(lay.y_coordinate_to_local_y_offset()),
                    x_coordinate_to_local_y_row_size: ints(lay.x_coordinate_to_local_y_row_size()),
                };
                check_layout(&layout, &layer).map_err(|r| bad("any_layer.layout", r))?;
                info.layout = Some(layout);
            }
            if let Some(si) = o.shape_info() {
                let offsets = ints(si.slice_offset());
                let layouts: Vec<_> = si.slice_layout().iter().flatten().collect();
                if offsets.len() != layouts.len() {
                    return Err(bad(
                        "any_layer.shape_info",
                        format!("{} slice offsets for {} slices", offsets.len(), layouts.len()),
                    ));
                }
                let mut slices = Vec::new();
                for (tl, &offset) in layouts.iter().zip(&offsets) {
                    let slice = OutputSlice {
                        shape: ranges(tl.shape()).unwrap_or_default(),
                        stride: ints(tl.stride()),
                        offset,
                    };
                    check_slice(&slice, &layer).map_err(|r| bad("any_layer.shape_info", r))?;
                    slices.push(slice);
                }
                info.shape_info = Some(slices);
            }
        }
        layer.output = Some(info);
    }
    Ok(layer)
}

/// Checks that every element of a 3-D output lands inside the padded buffer.
fn check_layout(layout: &OutputLayout, layer: &Layer) -> std::result::Result<(), String> {
    if layer.y_dim == 1 && layer.x_dim == 1 {
        return Ok(()); // 1-D outputs are copied as a prefix; the tables are unused.
    }
    let lens = [
        ("y_coordinate_to_linear_tile_id_map", layout.y_coordinate_to_linear_tile_id_map.len(), layer.y_dim),
        ("y_coordinate_to_local_y_offset", layout.y_coordinate_to_local_y_offset.len(), layer.y_dim),
        ("x_coordinate_to_linear_tile_id_map", layout.x_coordinate_to_linear_tile_id_map.len(), layer.x_dim),
        ("x_coordinate_to_local_byte_offset", layout.x_coordinate_to_local_byte_offset.len(), layer.x_dim),
        ("x_coordinate_to_local_y_row_size", layout.x_coordinate_to_local_y_row_size.len(), layer.x_dim),
    ];
    for (name, got, want) in lens {
        if got != want {
            return Err(format!("{name} has {got} entries for a dimension of {want}"));
        }
    }
    let elem = layer.data_type.size_bytes() as i64;
    let limit = layer.size_bytes as i64;
    let z_last = layer.z_dim.saturating_sub(1);
    for y in 0..layer.y_dim {
        for x in 0..layer.x_dim {
            let Some(first) = layout.index(y, x, 0) else {
                return Err(format!("element ({y}, {x}) refers to a tile that does not exist"));
            };
            let last = first + z_last as i64;
            if first < 0 || (last + 1) * elem > limit {
                return Err(format!("element ({y}, {x}) lands at {} outside the {limit}-byte output", first * elem));
            }
        }
    }
    Ok(())
}

/// Checks that every element of an output slice lands inside the padded buffer.
fn check_slice(slice: &OutputSlice, layer: &Layer) -> std::result::Result<(), String> {
    if slice.shape.len() != slice.stride.len() {
        return Err(format!("slice has {} dimensions but {} strides", slice.shape.len(), slice.stride.len()));
    }
    let elem = layer.data_type.size_bytes() as i64;
    let mut max = 0i64;
    for (&(s, e), &stride) in slice.shape.iter().zip(&slice.stride) {
        if s < 0 || e < s || stride < 0 {
            return Err(format!("bad slice dimension ({s}, {e}) with stride {stride}"));
        }
        max += i64::from(e - s) * i64::from(stride);
    }
    let end = i64::from(slice.offset) + (max + 1) * elem;
    if slice.offset < 0 || end > layer.size_bytes as i64 {
        return Err(format!(
            "slice at byte {} ends at {end}, outside the {}-byte output",
            slice.offset, layer.size_bytes
        ));
    }
    Ok(())
}
