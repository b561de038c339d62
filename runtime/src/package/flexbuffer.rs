//! A bounds-checked, read-only FlexBuffer reader.
//!
//! The options of `edgetpu-custom-op` are a FlexBuffer map. This reader decodes the parts of the
//! format those options use (scalars, keys, strings, blobs, maps, untyped and typed vectors)
//! straight from the borrowed bytes. Every offset, width and length is checked against the buffer
//! before use; a malformed buffer gives a [`FlexError`] with the byte offset, never a panic.

use std::fmt;

/// A malformed FlexBuffer: what is wrong and at which byte of the buffer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlexError {
    /// Byte offset in the FlexBuffer.
    pub offset: usize,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for FlexError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "byte {}: {}", self.offset, self.reason)
    }
}

type Result<T> = std::result::Result<T, FlexError>;

fn err<T>(offset: usize, reason: impl Into<String>) -> Result<T> {
    Err(FlexError { offset, reason: reason.into() })
}

/// FlexBuffer value types (the upper six bits of a packed type byte).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlexType {
    /// No value.
    Null,
    /// Signed integer stored inline.
    Int,
    /// Unsigned integer stored inline.
    UInt,
    /// Float stored inline.
    Float,
    /// Null-terminated key string.
    Key,
    /// Length-prefixed, null-terminated string.
    String,
    /// Signed integer behind an offset.
    IndirectInt,
    /// Unsigned integer behind an offset.
    IndirectUInt,
    /// Float behind an offset.
    IndirectFloat,
    /// Map of keys to values.
    Map,
    /// Vector of values of any type.
    Vector,
    /// Typed vector of the given element type, with a length prefix (`fixed` = 0)
    /// or of a fixed length 2, 3 or 4 without one.
    TypedVector {
        /// Element type.
        element: ElementType,
        /// 0 for length-prefixed vectors, else the fixed length.
        fixed: usize,
    },
    /// Length-prefixed bytes.
    Blob,
    /// Boolean stored inline.
    Bool,
}

/// Element type of a typed vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ElementType {
    /// Signed integers.
    Int,
    /// Unsigned integers.
    UInt,
    /// Floats.
    Float,
    /// Keys (offsets to null-terminated strings).
    Key,
    /// Strings (deprecated by the format).
    String,
    /// Booleans.
    Bool,
}

impl FlexType {
    fn from_code(code: u8, offset: usize) -> Result<Self> {
        use ElementType as E;
        let t = match code {
            0 => FlexType::Null,
            1 => FlexType::Int,
            2 => FlexType::UInt,
            3 => FlexType::Float,
            4 => FlexType::Key,
            5 => FlexType::String,
            6 => FlexType::IndirectInt,
            7 => FlexType::IndirectUInt,
            8 => FlexType::IndirectFloat,
            9 => FlexType::Map,
            10 => FlexType::Vector,
            11..=15 => {
                let element = [E::Int, E::UInt, E::Float, E::Key, E::String][usize::from(code - 11)];
                FlexType::TypedVector { element, fixed: 0 }
            }
            16..=24 => {
                let k = code - 16;
                let element = [E::Int, E::UInt, E::Float][usize::from(k % 3)];
                FlexType::TypedVector { element, fixed: usize::from(k / 3) + 2 }
            }
            25 => FlexType::Blob,
            26 => FlexType::Bool,
            36 => FlexType::TypedVector { element: E::Bool, fixed: 0 },
            other => return err(offset, format!("unknown FlexBuffer type code {other}")),
        };
        Ok(t)
    }

    /// Whether values of this type are stored behind an offset.
    fn is_offset(self) -> bool {
        !matches!(self, FlexType::Null | FlexType::Int | FlexType::UInt | FlexType::Float | FlexType::Bool)
    }
}

/// A reference to one value inside a FlexBuffer.
#[derive(Clone, Copy)]
pub struct FlexRef<'a> {
    buf: &'a [u8],
    /// Position of the value's own slot (inline value or offset).
    pos: usize,
    /// Width of that slot in bytes.
    parent_width: usize,
    /// Width of the pointed-to data for offset types.
    byte_width: usize,
    ty: FlexType,
}

impl fmt::Debug for FlexRef<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "FlexRef({:?} at byte {})", self.ty, self.pos)
    }
}

fn read_uint(buf: &[u8], pos: usize, width: usize) -> Result<u64> {
    if !matches!(width, 1 | 2 | 4 | 8) {
        return err(pos, format!("invalid width {width}"));
    }
    let end = pos.checked_add(width).filter(|&e| e <= buf.len());
    let Some(end) = end else {
        return err(pos, format!("{width}-byte value runs past the end of the buffer ({} bytes)", buf.len()));
    };
    let mut bytes = [0u8; 8];
    bytes[..width].copy_from_slice(&buf[pos..end]);
    Ok(u64::from_le_bytes(bytes))
}

fn read_int(buf: &[u8], pos: usize, width: usize) -> Result<i64> {
    let raw = read_uint(buf, pos, width)?;
    let shift = 64 - 8 * width as u32;
    Ok(((raw << shift) as i64) >> shift)
}

fn read_float(buf: &[u8], pos: usize, width: usize) -> Result<f64> {
    let raw = read_uint(buf, pos, width)?;
    match width {
        4 => Ok(f64::from(f32::from_bits(raw as u32))),
        8 => Ok(f64::from_bits(raw)),
        _ => err(pos, format!("float of width {width} is not supported")),
    }
}

/// Follows the offset stored at `pos` (width `width`): the target lies that many bytes before `pos`.
fn indirect(buf: &[u8], pos: usize, width: usize) -> Result<usize> {
    let off = read_uint(buf, pos, width)?;
    usize::try_from(off)
        .ok()
        .and_then(|o| pos.checked_sub(o))
        .map_or_else(|| err(pos, format!("offset {off} points before the start of the buffer")), Ok)
}

fn width_from_packed(packed: u8) -> usize {
    1 << (packed & 3)
}

impl<'a> FlexRef<'a> {
    /// The root value of a FlexBuffer.
    pub fn root(buf: &'a [u8]) -> Result<Self> {
        if buf.len() < 3 {
            return err(0, format!("a FlexBuffer needs at least 3 bytes, got {}", buf.len()));
        }
        let last = buf.len() - 1;
        let parent_width = usize::from(buf[last]);
        if !matches!(parent_width, 1 | 2 | 4 | 8) {
            return err(last, format!("invalid root width {parent_width}"));
        }
        let packed = buf[last - 1];
        let Some(pos) = (last - 1).checked_sub(parent_width) else {
            return err(0, "root value runs past the start of the buffer");
        };
        Self::new(buf, pos, parent_width, packed, last - 1)
    }

    fn new(buf: &'a [u8], pos: usize, parent_width: usize, packed: u8, type_pos: usize) -> Result<Self> {
        let ty = FlexType::from_code(packed >> 2, type_pos)?;
        Ok(FlexRef { buf, pos, parent_width, byte_width: width_from_packed(packed), ty })
    }

    /// The value's type.
    pub fn flex_type(&self) -> FlexType {
        self.ty
    }

    /// Byte offset of the value's data (the target of an offset type, else its slot).
    pub fn data_offset(&self) -> Result<usize> {
        if self.ty.is_offset() {
            indirect(self.buf, self.pos, self.parent_width)
        } else {
            Ok(self.pos)
        }
    }

    fn type_error<T>(&self, wanted: &str) -> Result<T> {
        err(self.pos, format!("expected {wanted}, found {:?}", self.ty))
    }

    /// The value as a signed integer (inline, indirect, or an unsigned one that fits).
    pub fn as_i64(&self) -> Result<i64> {
        match self.ty {
            FlexType::Int => read_int(self.buf, self.pos, self.parent_width),
            FlexType::UInt | FlexType::Bool => {
                let v = read_uint(self.buf, self.pos, self.parent_width)?;
                i64::try_from(v).map_or_else(|_| err(self.pos, format!("{v} does not fit in i64")), Ok)
            }
            FlexType::IndirectInt => read_int(self.buf, self.data_offset()?, self.byte_width),
            FlexType::IndirectUInt => {
                let v = read_uint(self.buf, self.data_offset()?, self.byte_width)?;
                i64::try_from(v).map_or_else(|_| err(self.pos, format!("{v} does not fit in i64")), Ok)
            }
            _ => self.type_error("an integer"),
        }
    }

    /// The value as a float.
    pub fn as_f64(&self) -> Result<f64> {
        match self.ty {
            FlexType::Float => read_float(self.buf, self.pos, self.parent_width),
            FlexType::IndirectFloat => read_float(self.buf, self.data_offset()?, self.byte_width),
            _ => self.type_error("a float"),
        }
    }

    /// Length-prefixed bytes of a string or blob (without a string's terminator).
    pub fn as_bytes(&self) -> Result<&'a [u8]> {
        match self.ty {
            FlexType::String | FlexType::Blob => {
                let start = self.data_offset()?;
                let len_pos = start
                    .checked_sub(self.byte_width)
                    .map_or_else(|| err(start, "length prefix before the start of the buffer"), Ok)?;
                let len = read_uint(self.buf, len_pos, self.byte_width)?;
                let end = usize::try_from(len).ok().and_then(|l| start.checked_add(l));
                match end {
                    Some(end) if end <= self.buf.len() => Ok(&self.buf[start..end]),
                    _ => {
                        err(len_pos, format!("length {len} runs past the end of the buffer ({} bytes)", self.buf.len()))
                    }
                }
            }
            FlexType::Key => {
                let start = self.data_offset()?;
                key_at(self.buf, start)
            }
            _ => self.type_error("a string or blob"),
        }
    }

    /// The value as UTF-8 text.
    pub fn as_str(&self) -> Result<&'a str> {
        let bytes = self.as_bytes()?;
        std::str::from_utf8(bytes).map_or_else(|e| err(self.pos, format!("string is not UTF-8: {e}")), Ok)
    }

    /// The value as a vector (untyped, typed or fixed-length typed).
    pub fn as_vector(&self) -> Result<FlexVector<'a>> {
        let start = self.data_offset()?;
        let width = self.byte_width;
        let (len, element) = match self.ty {
            FlexType::Vector | FlexType::Map => (self.length_prefix(start)?, None),
            FlexType::TypedVector { element, fixed: 0 } => (self.length_prefix(start)?, Some(element)),
            FlexType::TypedVector { element, fixed } => (fixed, Some(element)),
            _ => return self.type_error("a vector"),
        };
        // Elements, and for untyped vectors one type byte per element, must lie in the buffer.
        let per_elem = if element.is_none() { width + 1 } else { width };
        let fits =
            len.checked_mul(per_elem).and_then(|n| start.checked_add(n)).is_some_and(|end| end <= self.buf.len());
        if !fits {
            return err(start, format!("vector of {len} elements of {width} bytes runs past the end of the buffer"));
        }
        Ok(FlexVector { buf: self.buf, start, width, len, element })
    }

    /// The value as a map.
    pub fn as_map(&self) -> Result<FlexMap<'a>> {
        if self.ty != FlexType::Map {
            return self.type_error("a map");
        }
        let values = self.as_vector()?;
        let w = self.byte_width;
        let keys_slot = values
            .start
            .checked_sub(3 * w)
            .map_or_else(|| err(values.start, "map header before the start of the buffer"), Ok)?;
        let keys_start = indirect(self.buf, keys_slot, w)?;
        let keys_width = read_uint(self.buf, keys_slot + w, w)?;
        let keys_width = usize::try_from(keys_width).unwrap_or(0);
        if !matches!(keys_width, 1 | 2 | 4 | 8) {
            return err(keys_slot + w, format!("invalid key width {keys_width}"));
        }
        let keys_len_pos = keys_start
            .checked_sub(keys_width)
            .map_or_else(|| err(keys_start, "key vector length before the start of the buffer"), Ok)?;
        let keys_len = read_uint(self.buf, keys_len_pos, keys_width)?;
        if keys_len != values.len as u64 {
            return err(keys_len_pos, format!("map has {keys_len} keys but {} values", values.len));
        }
        let fits = values
            .len
            .checked_mul(keys_width)
            .and_then(|n| keys_start.checked_add(n))
            .is_some_and(|end| end <= self.buf.len());
        if !fits {
            return err(keys_start, "key vector runs past the end of the buffer");
        }
        Ok(FlexMap { values, keys_start, keys_width })
    }

    fn length_prefix(&self, start: usize) -> Result<usize> {
        let pos = start
            .checked_sub(self.byte_width)
            .map_or_else(|| err(start, "length prefix before the start of the buffer"), Ok)?;
        let len = read_uint(self.buf, pos, self.byte_width)?;
        usize::try_from(len).map_or_else(|_| err(pos, format!("absurd length {len}")), Ok)
    }
}

fn key_at(buf: &[u8], start: usize) -> Result<&[u8]> {
    let rest = buf.get(start..).map_or_else(|| err(start, "key starts past the end of the buffer"), Ok)?;
    match rest.iter().position(|&b| b == 0) {
        Some(n) => Ok(&rest[..n]),
        None => err(start, "key has no null terminator"),
    }
}

/// A vector inside a FlexBuffer.
#[derive(Debug, Clone, Copy)]
pub struct FlexVector<'a> {
    buf: &'a [u8],
    start: usize,
    width: usize,
    len: usize,
    element: Option<ElementType>,
}

impl<'a> FlexVector<'a> {
    /// Number of elements.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the vector is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Element `i`.
    pub fn get(&self, i: usize) -> Result<FlexRef<'a>> {
        if i >= self.len {
            return err(self.start, format!("index {i} out of range for a vector of {} elements", self.len));
        }
        let pos = self.start + i * self.width;
        match self.element {
            None => {
                let type_pos = self.start + self.len * self.width + i;
                FlexRef::new(self.buf, pos, self.width, self.buf[type_pos], type_pos)
            }
            Some(element) => {
                let ty = match element {
                    ElementType::Int => FlexType::Int,
                    ElementType::UInt => FlexType::UInt,
                    ElementType::Float => FlexType::Float,
                    ElementType::Key => FlexType::Key,
                    ElementType::String => FlexType::String,
                    ElementType::Bool => FlexType::Bool,
                };
                Ok(FlexRef { buf: self.buf, pos, parent_width: self.width, byte_width: self.width, ty })
            }
        }
    }
}

/// A map inside a FlexBuffer (keys sorted, as the format requires of writers).
#[derive(Debug, Clone, Copy)]
pub struct FlexMap<'a> {
    values: FlexVector<'a>,
    keys_start: usize,
    keys_width: usize,
}

impl<'a> FlexMap<'a> {
    /// Number of entries.
    pub fn len(&self) -> usize {
        self.values.len
    }

    /// Whether the map is empty.
    pub fn is_empty(&self) -> bool {
        self.values.len == 0
    }

    /// Key `i`.
    pub fn key(&self, i: usize) -> Result<&'a [u8]> {
        if i >= self.len() {
            return err(self.keys_start, format!("key index {i} out of range"));
        }
        let slot = self.keys_start + i * self.keys_width;
        let start = indirect(self.values.buf, slot, self.keys_width)?;
        key_at(self.values.buf, start)
    }

    /// Value `i`.
    pub fn value(&self, i: usize) -> Result<FlexRef<'a>> {
        self.values.get(i)
    }

    /// The value of `key`, if present. A linear scan: these maps are tiny, and a scan does not
    /// depend on the writer having sorted the keys.
    pub fn get(&self, key: &str) -> Result<Option<FlexRef<'a>>> {
        for i in 0..self.len() {
            if self.key(i)? == key.as_bytes() {
                return self.value(i).map(Some);
            }
        }
        Ok(None)
    }
}
