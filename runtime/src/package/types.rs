//! Decoded, validated pieces of an Edge TPU executable.

use std::fmt;

/// What an executable does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ExecutableType {
    /// Runs an inference with all its parameters streamed in.
    StandAlone,
    /// Loads parameters into on-chip memory only.
    ParameterCaching,
    /// Runs an inference against parameters cached by its PARAMETER_CACHING partner.
    ExecutionOnly,
}

impl ExecutableType {
    pub(crate) fn from_code(code: i16) -> Option<Self> {
        match code {
            0 => Some(Self::StandAlone),
            1 => Some(Self::ParameterCaching),
            2 => Some(Self::ExecutionOnly),
            _ => None,
        }
    }

    /// The format's name: `STAND_ALONE`, `PARAMETER_CACHING` or `EXECUTION_ONLY`.
    pub fn name(self) -> &'static str {
        match self {
            Self::StandAlone => "STAND_ALONE",
            Self::ParameterCaching => "PARAMETER_CACHING",
            Self::ExecutionOnly => "EXECUTION_ONLY",
        }
    }
}

impl fmt::Display for ExecutableType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Element type of a layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DataType {
    /// uint8, affine.
    FixedPoint8,
    /// uint16, affine.
    FixedPoint16,
    /// int32.
    SignedFixedPoint32,
    /// bfloat16.
    BFloat,
    /// IEEE half.
    Half,
    /// IEEE single.
    Single,
    /// int8.
    SignedFixedPoint8,
    /// int16.
    SignedFixedPoint16,
}

impl DataType {
    pub(crate) fn from_code(code: i16) -> Option<Self> {
        Some(match code {
            0 => Self::FixedPoint8,
            1 => Self::FixedPoint16,
            2 => Self::SignedFixedPoint32,
            3 => Self::BFloat,
            4 => Self::Half,
            5 => Self::Single,
            8 => Self::SignedFixedPoint8,
            9 => Self::SignedFixedPoint16,
            _ => return None,
        })
    }

    /// Bytes per element.
    pub fn size_bytes(self) -> usize {
        match self {
            Self::FixedPoint8 | Self::SignedFixedPoint8 => 1,
            Self::FixedPoint16 | Self::SignedFixedPoint16 | Self::BFloat | Self::Half => 2,
            Self::SignedFixedPoint32 | Self::Single => 4,
        }
    }

    /// Whether the device works on this type in offset-binary form (the host flips the sign bit).
    pub fn is_signed_fixed_point(self) -> bool {
        matches!(self, Self::SignedFixedPoint8 | Self::SignedFixedPoint16)
    }

    /// The format's name, e.g. `FIXED_POINT8`.
    pub fn name(self) -> &'static str {
        match self {
            Self::FixedPoint8 => "FIXED_POINT8",
            Self::FixedPoint16 => "FIXED_POINT16",
            Self::SignedFixedPoint32 => "SIGNED_FIXED_POINT32",
            Self::BFloat => "BFLOAT",
            Self::Half => "HALF",
            Self::Single => "SINGLE",
            Self::SignedFixedPoint8 => "SIGNED_FIXED_POINT8",
            Self::SignedFixedPoint16 => "SIGNED_FIXED_POINT16",
        }
    }
}

/// Which base address a relocated instruction field receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Description {
    /// An output activation buffer.
    OutputActivation,
    /// An input activation buffer.
    InputActivation,
    /// The executable's parameter buffer.
    Parameter,
    /// The scratch buffer.
    Scratch,
}

impl Description {
    pub(crate) fn from_code(code: i16) -> Option<Self> {
        Some(match code {
            0 => Self::OutputActivation,
            1 => Self::InputActivation,
            2 => Self::Parameter,
            3 => Self::Scratch,
            _ => return None,
        })
    }

    /// Short name: `OUTPUT`, `INPUT`, `PARAMETER`, `SCRATCH`.
    pub fn name(self) -> &'static str {
        match self {
            Self::OutputActivation => "OUTPUT",
            Self::InputActivation => "INPUT",
            Self::Parameter => "PARAMETER",
            Self::Scratch => "SCRATCH",
        }
    }
}

/// Which half of a 64-bit address a field receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Position {
    /// Bits 0..32.
    Lower32,
    /// Bits 32..64.
    Upper32,
}

impl Position {
    /// `LOWER` or `UPPER`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Lower32 => "LOWER",
            Self::Upper32 => "UPPER",
        }
    }
}

/// A place in an instruction bitstream that linking patches with a 32-bit address half.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldOffset {
    /// Which buffer's address.
    pub desc: Description,
    /// Which half of it.
    pub position: Position,
    /// Batch index (inputs, outputs, scratch).
    pub batch: usize,
    /// Layer name (inputs and outputs).
    pub name: Option<String>,
    /// Absolute bit offset of the 32-bit field; checked to lie inside the bitstream.
    pub offset_bit: usize,
}

/// One instruction chunk.
#[derive(Debug, Clone)]
pub struct Bitstream<'m> {
    /// The encoded instructions, borrowed from the model.
    pub data: &'m [u8],
    /// Byte offset of `data` in the model file.
    pub offset: usize,
    /// Fields to patch when linking.
    pub field_offsets: Vec<FieldOffset>,
}

/// One step of an executable's DMA recipe.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DmaHint {
    /// Send instruction chunk `chunk` whole.
    Instruction {
        /// Index into [`super::Executable::bitstreams`].
        chunk: usize,
    },
    /// Send bytes `[offset, offset + size)` of an input layer's buffer.
    Input {
        /// Layer name.
        name: String,
        /// Batch index.
        batch: usize,
        /// Byte offset in the padded layer buffer.
        offset: usize,
        /// Bytes to send.
        size: usize,
    },
    /// Receive `size` bytes into an output layer's padded buffer at `offset`.
    Output {
        /// Layer name.
        name: String,
        /// Batch index.
        batch: usize,
        /// Byte offset in the padded layer buffer.
        offset: usize,
        /// Bytes to receive.
        size: usize,
    },
    /// Send bytes `[offset, offset + size)` of the executable's parameters.
    Parameter {
        /// Byte offset in the parameters.
        offset: usize,
        /// Bytes to send.
        size: usize,
    },
    /// Move part of the scratch buffer.
    Scratch {
        /// `true` = host to device.
        infeed: bool,
        /// Byte offset in the scratch buffer.
        offset: usize,
        /// Bytes to move.
        size: usize,
    },
    /// Wait for scalar-core interrupt `number` (0..=3).
    Interrupt {
        /// Interrupt number.
        number: u8,
    },
    /// Wait until every earlier transfer has completed.
    Fence,
}

/// The DMA recipe of an executable.
#[derive(Debug, Clone, Default)]
pub struct DmaHints {
    /// Hints in order.
    pub hints: Vec<DmaHint>,
    /// Whether the hints cover every DMA of a run.
    pub fully_deterministic: bool,
}

/// Tables mapping an output coordinate (y, x, z) to its place in the device's tiled output.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OutputLayout {
    /// Per y: linear id of the first tile of the tile row holding that y.
    pub y_coordinate_to_linear_tile_id_map: Vec<i32>,
    /// Per x: tile id within the tile row.
    pub x_coordinate_to_linear_tile_id_map: Vec<i32>,
    /// Per tile: offset of its data.
    pub linearized_tile_byte_offset: Vec<i32>,
    /// Per x: offset within the tile row.
    pub x_coordinate_to_local_byte_offset: Vec<i32>,
    /// Per y: row within the tile.
    pub y_coordinate_to_local_y_offset: Vec<i32>,
    /// Per x: size of one row of the tile holding that x.
    pub x_coordinate_to_local_y_row_size: Vec<i32>,
}

impl OutputLayout {
    /// Element index of (y, x, z) in the device buffer (multiply by the element size for bytes).
    /// `None` if y or x is outside the tables.
    pub fn index(&self, y: usize, x: usize, z: usize) -> Option<i64> {
        let tile = i64::from(*self.y_coordinate_to_linear_tile_id_map.get(y)?)
            + i64::from(*self.x_coordinate_to_linear_tile_id_map.get(x)?);
        let tile_off = i64::from(*self.linearized_tile_byte_offset.get(usize::try_from(tile).ok()?)?);
        Some(
            tile_off
                + i64::from(*self.y_coordinate_to_local_y_offset.get(y)?)
                    * i64::from(*self.x_coordinate_to_local_y_row_size.get(x)?)
                + i64::from(*self.x_coordinate_to_local_byte_offset.get(x)?)
                + z as i64,
        )
    }
}

/// One slice of an output described by `shape_info`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutputSlice {
    /// Inclusive (start, end) range per dimension.
    pub shape: Vec<(i32, i32)>,
    /// Stride per dimension, in elements.
    pub stride: Vec<i32>,
    /// Byte offset of the slice's first element.
    pub offset: i32,
}

/// Output-only layer information.
#[derive(Debug, Clone, Default)]
pub struct OutputInfo {
    /// Tiled layout, when the output is laid out in tiles.
    pub layout: Option<OutputLayout>,
    /// Slice description, used instead of `layout` when present.
    pub shape_info: Option<Vec<OutputSlice>>,
}

/// An input or output of an executable.
#[derive(Debug, Clone)]
pub struct Layer {
    /// Name, matching the TFLite tensor of the custom op at the same position.
    pub name: String,
    /// Padded size in bytes of one execution for batch 1.
    pub size_bytes: usize,
    /// Y dimension (1 if absent).
    pub y_dim: usize,
    /// X dimension (1 if absent).
    pub x_dim: usize,
    /// Z (channel) dimension.
    pub z_dim: usize,
    /// Zero point.
    pub zero_point: i32,
    /// Dequantization scale.
    pub scale: f32,
    /// Element type.
    pub data_type: DataType,
    /// How often the layer runs per inference.
    pub execution_count: usize,
    /// Whether activations are kept in TPU DRAM (chips with DRAM only).
    pub cache_on_dram: bool,
    /// Inclusive (start, end) per dimension, when the file gives a shape.
    pub shape: Option<Vec<(i32, i32)>>,
    /// Output information; `None` for inputs.
    pub output: Option<OutputInfo>,
}

impl Layer {
    /// Elements of one execution: from `shape` if present, else y·x·z.
    pub fn num_elements(&self) -> usize {
        // Checked at decode: the count exists and fits in the padded size.
        self.checked_num_elements().unwrap_or(0)
    }

    /// Elements of one execution, `None` on a bad range or overflow.
    pub(crate) fn checked_num_elements(&self) -> Option<usize> {
        match &self.shape {
            Some(dims) => dims.iter().try_fold(1usize, |acc, &(s, e)| {
                acc.checked_mul(usize::try_from(i64::from(e) - i64::from(s) + 1).ok()?)
            }),
            None => self.y_dim.checked_mul(self.x_dim)?.checked_mul(self.z_dim),
        }
    }

    /// Unpadded bytes per inference.
    pub fn actual_size_bytes(&self) -> usize {
        self.num_elements() * self.data_type.size_bytes() * self.execution_count
    }

    /// Padded bytes per inference.
    pub fn padded_size_bytes(&self) -> usize {
        self.size_bytes * self.execution_count
    }

    /// Whether the device output needs a tiled re-layout (not a plain prefix copy).
    pub fn is_tiled(&self) -> bool {
        self.output.as_ref().is_some_and(|o| o.shape_info.is_none() && o.layout.is_some())
            && !(self.y_dim == 1 && self.x_dim == 1)
    }
}
