//! Files packed into a model: TFLite metadata writers append a zip archive (label files and the
//! like) after the flatbuffer. This reads its central directory and hands out stored entries as
//! slices of the model bytes.

use crate::error::{Error, Result};

/// A file packed into the model.
#[derive(Debug, Clone, Copy)]
pub struct AssociatedFile<'a> {
    /// File name inside the archive, e.g. `imagenet_labels.txt`.
    pub name: &'a str,
    /// Contents, borrowed from the model.
    pub data: &'a [u8],
    /// Byte offset of the contents in the model file.
    pub offset: usize,
}

const EOCD_SIG: u32 = 0x0605_4b50;
const CENTRAL_SIG: u32 = 0x0201_4b50;
const LOCAL_SIG: u32 = 0x0403_4b50;

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    b.get(at..at.checked_add(2)?).map(|s| u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], at: usize) -> Option<u32> {
    b.get(at..at.checked_add(4)?).map(|s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn bad(at: usize, field: &str, reason: impl Into<String>) -> Error {
    Error::invalid(at, format!("associated files: {field}"), reason)
}

/// Finds the archive at the end of `bytes`; an empty list when there is none.
pub(super) fn read(bytes: &[u8]) -> Result<Vec<AssociatedFile<'_>>> {
    // The end-of-central-directory record is 22 bytes plus a comment of up to 64 KiB.
    let min_start = bytes.len().saturating_sub(22 + 0xFFFF);
    let Some(eocd) = (min_start..=bytes.len().saturating_sub(22)).rev().find(|&p| u32_at(bytes, p) == Some(EOCD_SIG))
    else {
        return Ok(Vec::new());
    };
    let count = usize::from(u16_at(bytes, eocd + 10).unwrap_or(0));
    let cd_size = u32_at(bytes, eocd + 12).unwrap_or(0) as usize;
    let cd_offset = u32_at(bytes, eocd + 16).unwrap_or(0) as usize;
    // Archives appended to a file keep offsets relative to the archive start: find that start from
    // where the central directory really is (it ends where the EOCD record begins).
    let Some(cd_start) = eocd.checked_sub(cd_size) else {
        return Err(bad(
            eocd + 12,
            "central directory size",
            format!("{cd_size} bytes does not fit before byte {eocd}"),
        ));
    };
    let Some(archive_start) = cd_start.checked_sub(cd_offset) else {
        return Err(bad(eocd + 16, "central directory offset", format!("{cd_offset} points before the file start")));
    };
    if count > 0 && u32_at(bytes, cd_start) != Some(CENTRAL_SIG) {
        // The signature bytes occurred by chance (e.g. in weights): there is no archive.
        return Ok(Vec::new());
    }
    let mut files = Vec::with_capacity(count);
    let mut p = cd_start;
    for i in 0..count {
        let field = |f: &str| format!("entry {i} {f}");
        if u32_at(bytes, p) != Some(CENTRAL_SIG) {
            return Err(bad(p, &field("signature"), "missing central directory entry"));
        }
        let header = (|| {
            Some((
                u16_at(bytes, p + 10)?,
                u32_at(bytes, p + 20)? as usize,
                u32_at(bytes, p + 24)? as usize,
                usize::from(u16_at(bytes, p + 28)?),
                usize::from(u16_at(bytes, p + 30)?),
                usize::from(u16_at(bytes, p + 32)?),
                u32_at(bytes, p + 42)? as usize,
            ))
        })();
        let Some((method, comp_size, size, name_len, extra_len, comment_len, local_rel)) = header else {
            return Err(bad(p, &field("header"), "truncated central directory entry"));
        };
        let name = bytes
            .get(p + 46..p + 46 + name_len)
            .ok_or_else(|| bad(p + 46, &field("name"), "name runs past the end of the file"))?;
        let name = std::str::from_utf8(name).map_err(|_| bad(p + 46, &field("name"), "file name is not UTF-8"))?;
        if method != 0 {
            return Err(Error::unsupported(format!(
                "packed file {name:?} is compressed (zip method {method}); only stored entries are supported yet. \
                 Use the label file beside the model instead"
            )));
        }
        if comp_size != size {
            return Err(bad(p + 20, &field("size"), format!("stored entry {name:?} has sizes {comp_size} and {size}")));
        }
        let local = archive_start + local_rel;
        if u32_at(bytes, local) != Some(LOCAL_SIG) {
            return Err(bad(local, &field("local header"), format!("no local header for {name:?}")));
        }
        let (Some(lname), Some(lextra)) = (u16_at(bytes, local + 26), u16_at(bytes, local + 28)) else {
            return Err(bad(local, &field("local header"), "truncated local header"));
        };
        let start = local + 30 + usize::from(lname) + usize::from(lextra);
        let data = bytes.get(start..start.saturating_add(size)).ok_or_else(|| {
            bad(start, &field("data"), format!("{size} bytes of {name:?} run past the end of the file"))
        })?;
        files.push(AssociatedFile { name, data, offset: start });
        p += 46 + name_len + extra_len + comment_len;
    }
    Ok(files)
}
