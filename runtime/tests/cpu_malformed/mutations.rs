//! Where and how to mutate a model file: the byte offsets of its shapes, constants, options,
//! quantization and operator codes (found by walking the flatbuffer), and a seeded mutator.

use edgetpu::model::TensorType;
use edgetpu::Model;
use std::ops::Range;

/// Small deterministic generator (xorshift), so failures reproduce.
pub struct Rng(u64);
impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1)
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub fn pick<'a, T>(&mut self, v: &'a [T]) -> Option<&'a T> {
        if v.is_empty() {
            None
        } else {
            Some(&v[self.below(v.len())])
        }
    }
}

/// Where in a model mutations are worth making.
pub struct Targets {
    /// Bytes outside large constant buffers (weights): the flatbuffer tables and small constants.
    pub meta: Vec<Range<usize>>,
    /// 4-byte-aligned offsets inside `meta`.
    pub meta_words: Vec<usize>,
    /// Offsets of shape dimensions (i32) of tensors.
    pub dims: Vec<usize>,
    /// Offsets of elements of int32 / int64 constants (all of small ones: shapes, axes, paddings,
    /// begin/end; the ends of large ones: biases), with the element size.
    pub ints: Vec<(usize, usize)>,
    /// Offsets of quantization scales (f32).
    pub scales: Vec<usize>,
    /// Offsets of zero points (i64).
    pub zero_points: Vec<usize>,
    /// Bytes around operator tables (where their options tables usually are).
    pub near_ops: Vec<usize>,
    /// Fields of operators' builtin options tables: (offset, bytes up to the next field, at most 4).
    pub options: Vec<(usize, usize)>,
    /// Operator codes: offsets of `deprecated_builtin_code` (i8) and `builtin_code` (i32).
    pub opcodes: Vec<(Option<usize>, Option<usize>)>,
}

/// Builtin codes of the ops the CPU interpreter has kernels for: swapping an operator's code for
/// another runs every kernel on tensors, options and types meant for a different op.
#[rustfmt::skip]
pub const BUILTINS: &[i32] = &[
    0, 1, 2, 3, 4, 5, 6, 9, 11, 14, 17, 18, 19, 20, 21, 22, 23, 25, 26, 28, 34, 37, 38, 39, 40, 41, 42, 43, 44, 45,
    49, 53, 54, 55, 56, 57, 60, 65, 67, 69, 75, 79, 83, 88, 90, 97, 98, 107, 114, 117,
];

/// The absolute offset of field `id` of the flatbuffer table at `table`, if present.
pub fn field(bytes: &[u8], table: usize, id: usize) -> Option<usize> {
    let soff = i32::from_le_bytes(bytes.get(table..table + 4)?.try_into().ok()?) as i64;
    let vt = usize::try_from(table as i64 - soff).ok()?;
    let vt_size = u16::from_le_bytes(bytes.get(vt..vt + 2)?.try_into().ok()?) as usize;
    if 4 + 2 * id + 2 > vt_size {
        return None;
    }
    let at = u16::from_le_bytes(bytes.get(vt + 4 + 2 * id..vt + 6 + 2 * id)?.try_into().ok()?) as usize;
    (at > 0).then_some(table + at)
}

/// The table an offset field at `at` points to.
pub fn follow(bytes: &[u8], at: usize) -> Option<usize> {
    Some(at + u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?) as usize)
}

/// Field positions of every operator code of the model.
fn opcode_fields(bytes: &[u8]) -> Vec<(Option<usize>, Option<usize>)> {
    let codes = follow(bytes, 0).and_then(|model| follow(bytes, field(bytes, model, 1)?));
    let Some(codes) = codes else { return Vec::new() };
    let n = bytes.get(codes..codes + 4).map_or(0, |b| u32::from_le_bytes(b.try_into().unwrap()) as usize);
    (0..n)
        .filter_map(|i| follow(bytes, codes + 4 + 4 * i))
        .map(|oc| (field(bytes, oc, 0), field(bytes, oc, 3)))
        .collect()
}

/// Sets an operator code to `code` (the loader takes the larger of the two fields).
pub fn set_opcode(bytes: &mut [u8], fields: (Option<usize>, Option<usize>), code: i32) -> bool {
    match fields {
        (d, Some(b)) => {
            if let Some(d) = d {
                bytes[d] = code.min(127) as u8;
            }
            put(bytes, b, &code.to_le_bytes());
            true
        }
        (Some(d), None) if code <= 127 => {
            bytes[d] = code as u8;
            true
        }
        _ => false,
    }
}

/// The fields present in the vtable of the flatbuffer table at `table`: (offset, size guess).
fn table_fields(bytes: &[u8], table: usize) -> Vec<(usize, usize)> {
    let rd = |at: usize, n: usize| bytes.get(at..at + n).map(|b| b.iter().rev().fold(0i64, |v, &x| v << 8 | x as i64));
    let Some(soff) = rd(table, 4).map(|v| v as i32 as i64) else { return Vec::new() };
    let Some(vt) = usize::try_from(table as i64 - soff).ok() else { return Vec::new() };
    let (Some(vt_size), Some(obj_size)) = (rd(vt, 2), rd(vt + 2, 2)) else { return Vec::new() };
    let mut offs: Vec<usize> =
        (4..vt_size as usize).step_by(2).filter_map(|k| rd(vt + k, 2)).map(|o| o as usize).filter(|&o| o > 0).collect();
    offs.sort_unstable();
    let ends: Vec<usize> = offs.iter().skip(1).copied().chain([obj_size as usize]).collect();
    offs.iter().zip(ends).map(|(&o, e)| (table + o, e.saturating_sub(o).clamp(1, 4))).collect()
}

/// The builtin options table of the operator table at `op`, if it has one.
fn options_table(bytes: &[u8], op: usize) -> Option<usize> {
    // Operator fields: opcode_index, inputs, outputs, builtin_options_type, builtin_options, ...
    follow(bytes, field(bytes, op, 4)?)
}

/// Offsets of `[len: u32][items]` vectors equal to `items` (4-byte aligned), inside `meta`.
pub fn find_vectors(bytes: &[u8], meta: &[Range<usize>], items: &[u8], count: usize) -> Vec<usize> {
    let mut pat = (count as u32).to_le_bytes().to_vec();
    pat.extend_from_slice(items);
    let mut out = Vec::new();
    for r in meta {
        let mut at = r.start.next_multiple_of(4);
        while at + pat.len() <= r.end {
            if bytes[at..at + pat.len()] == pat[..] {
                out.push(at + 4);
            }
            at += 4;
        }
    }
    out
}

pub fn targets(model: &Model) -> Targets {
    let bytes = model.bytes();
    let offset = |s: &[u8]| s.as_ptr() as usize - bytes.as_ptr() as usize;
    let mut big: Vec<Range<usize>> = (0..model.num_buffers())
        .filter_map(|b| model.buffer(b))
        .filter(|d| d.len() > 256)
        .map(|d| offset(d)..offset(d) + d.len())
        .collect();
    big.sort_by_key(|r| r.start);
    let mut meta = Vec::new();
    let mut at = 0;
    for r in &big {
        if r.start > at {
            meta.push(at..r.start);
        }
        at = at.max(r.end);
    }
    meta.push(at..bytes.len());
    let meta_words =
        meta.iter().flat_map(|r| (r.start.next_multiple_of(4)..r.end.saturating_sub(3)).step_by(4)).collect();
    let (mut dims, mut ints, mut scales, mut zero_points, mut near_ops) = (vec![], vec![], vec![], vec![], vec![]);
    let mut options = Vec::new();
    for sg in model.subgraphs() {
        for t in &sg.tensors {
            if !t.shape.is_empty() {
                let items: Vec<u8> = t.shape.iter().flat_map(|d| d.to_le_bytes()).collect();
                for v in find_vectors(bytes, &meta, &items, t.shape.len()) {
                    dims.extend((0..t.shape.len()).map(|k| v + 4 * k));
                }
            }
            if let Some(q) = &t.quantization {
                let items: Vec<u8> = q.scale.iter().take(8).flat_map(|d| d.to_le_bytes()).collect();
                if q.scale.len() <= 8 {
                    for v in find_vectors(bytes, &meta, &items, q.scale.len()) {
                        scales.extend((0..q.scale.len()).map(|k| v + 4 * k));
                    }
                }
                let items: Vec<u8> = q.zero_point.iter().take(8).flat_map(|d| d.to_le_bytes()).collect();
                if !q.zero_point.is_empty() && q.zero_point.len() <= 8 {
                    for v in find_vectors(bytes, &meta, &items, q.zero_point.len()) {
                        zero_points.extend((0..q.zero_point.len()).map(|k| v + 8 * k));
                    }
                }
            }
            let elem = match t.dtype {
                TensorType::INT32 => 4,
                TensorType::INT64 => 8,
                _ => 0,
            };
            if let Some(d) = model.tensor_data(t).filter(|_| elem > 0) {
                // Every element of small ones (shapes, axes, paddings), the ends of large ones (biases).
                let n = d.len() / elem;
                let ks = (0..n).filter(|&k| n <= 64 || k < 4 || k >= n - 4);
                ints.extend(ks.map(|k| (offset(d) + k * elem, elem)));
            }
        }
        for op in &sg.operators {
            let lo = op.file_offset.saturating_sub(96);
            near_ops.extend(lo..(op.file_offset + 96).min(bytes.len()));
            if let Some(table) = options_table(bytes, op.file_offset) {
                options.extend(table_fields(bytes, table));
            }
        }
    }
    for v in [&mut dims, &mut scales, &mut zero_points, &mut near_ops] {
        v.sort_unstable();
        v.dedup();
    }
    ints.sort_unstable();
    ints.dedup();
    options.sort_unstable();
    options.dedup();
    let opcodes = opcode_fields(bytes);
    Targets { meta, meta_words, dims, ints, scales, zero_points, near_ops, options, opcodes }
}

/// Values that break code: zero, signs, powers of two, near-overflow.
#[rustfmt::skip]
pub const INTERESTING: &[i64] = &[
    0, 1, -1, 2, 3, -2, 4, 5, 6, 7, 8, 16, 100, 255, 256, 0x7FFF, 0xFFFF, 0x1_0000, 1 << 20, 1 << 24, 1 << 30,
    0x7FFF_FFFF, -0x8000_0000, 0xFFFF_FFFF, i64::MAX, i64::MIN,
];

/// Scales no converter writes, and the extremes of those it might.
#[rustfmt::skip]
pub const FLOATS: &[f32] = &[
    0.0, -0.0, -1.0, 1.0, f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::MIN_POSITIVE, 1e-30, 1e-10, 1e10, 1e30,
    f32::MAX, f32::MIN, 1.5e-45,
];

pub fn put(bytes: &mut [u8], at: usize, v: &[u8]) {
    let end = (at + v.len()).min(bytes.len());
    bytes[at..end].copy_from_slice(&v[..end - at]);
}

/// Applies one random mutation; returns what it did.
pub fn mutate(bytes: &mut [u8], t: &Targets, rng: &mut Rng) -> String {
    let int = |rng: &mut Rng| {
        if rng.below(4) == 0 {
            rng.next() as i64 >> rng.below(60)
        } else {
            INTERESTING[rng.below(INTERESTING.len())]
        }
    };
    loop {
        match rng.below(13) {
            0..=2 => {
                if let Some(&at) = rng.pick(&t.dims) {
                    let v = int(rng) as i32;
                    put(bytes, at, &v.to_le_bytes());
                    return format!("dim at {at} = {v}");
                }
            }
            3..=5 => {
                if let Some(&(at, size)) = rng.pick(&t.ints) {
                    let v = int(rng);
                    put(bytes, at, &v.to_le_bytes()[..size]);
                    return format!("constant int{} at {at} = {v}", size * 8);
                }
            }
            6 => {
                if let Some(&at) = rng.pick(&t.scales).filter(|_| rng.below(3) > 0) {
                    let v = FLOATS[rng.below(FLOATS.len())];
                    put(bytes, at, &v.to_le_bytes());
                    return format!("scale at {at} = {v}");
                }
                if let Some(&at) = rng.pick(&t.zero_points) {
                    let v = int(rng);
                    put(bytes, at, &v.to_le_bytes());
                    return format!("zero point at {at} = {v}");
                }
            }
            7 => {
                if let Some(&(at, size)) = rng.pick(&t.options) {
                    let v = int(rng);
                    put(bytes, at, &v.to_le_bytes()[..size]);
                    return format!("option field at {at} = {v} ({size} bytes)");
                }
            }
            8 => {
                if let Some(&at) = rng.pick(&t.near_ops) {
                    if rng.below(2) == 0 {
                        let v = int(rng) as i32;
                        put(bytes, at & !3, &v.to_le_bytes());
                        return format!("word near an operator at {} = {v}", at & !3);
                    }
                    let v = rng.next() as u8;
                    bytes[at] = v;
                    return format!("byte near an operator at {at} = {v}");
                }
            }
            10 => {
                let code = BUILTINS[rng.below(BUILTINS.len())];
                if let Some(&f) = rng.pick(&t.opcodes) {
                    if set_opcode(bytes, f, code) {
                        return format!("operator code {f:?} = {code}");
                    }
                }
            }
            9 => {
                if let Some(&at) = rng.pick(&t.meta_words) {
                    let v = int(rng) as i32;
                    put(bytes, at, &v.to_le_bytes());
                    return format!("word at {at} = {v}");
                }
            }
            _ => {
                let r = &t.meta[rng.below(t.meta.len())];
                if r.is_empty() {
                    continue;
                }
                let at = r.start + rng.below(r.len());
                if rng.below(2) == 0 {
                    let bit = rng.below(8);
                    bytes[at] ^= 1 << bit;
                    return format!("bit {bit} of byte {at} flipped");
                }
                let v = rng.next() as u8;
                bytes[at] = v;
                return format!("byte {at} = {v}");
            }
        }
    }
}
