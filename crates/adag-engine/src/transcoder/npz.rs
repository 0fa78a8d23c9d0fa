//! Checks the arrays an `.npz` file declares before they are read.
//!
//! candle's `read_npz` allocates each member from the shape in its `.npy` header, so a file that
//! declares `(10**12,)` aborts the process before a byte is read. Here every member's declared
//! size is compared with the bytes it actually holds (and those with the file's length), so a
//! corrupt or hostile file is a named error instead.

use std::io::Read;
use std::path::Path;

/// The largest `.npy` header read (numpy writes 64–128 bytes; version 2 allows 4 GiB).
const MAX_HEADER: usize = 1 << 16;
/// Deflate cannot compress better than about 1032:1; a member claiming more is lying.
const MAX_DEFLATE_RATIO: u64 = 1100;

/// Verifies that every member of the `.npz` at `path` holds as many bytes as its header's shape
/// and dtype declare. Returns a message naming the member on failure.
pub(crate) fn check_declared_sizes(path: &Path) -> Result<(), String> {
    let file = std::fs::File::open(path).map_err(|e| format!("cannot open: {e}"))?;
    let file_len = file.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
    let mut zip = zip::ZipArchive::new(file).map_err(|e| format!("not a zip archive: {e}"))?;
    for i in 0..zip.len() {
        let mut member = zip.by_index(i).map_err(|e| format!("member {i}: {e}"))?;
        let name = member
            .name()
            .map(|n| n.into_owned())
            .unwrap_or_else(|_| format!("#{i}"));
        let held = member.size();
        if member.compressed_size() > file_len
            || held
                > member
                    .compressed_size()
                    .saturating_mul(MAX_DEFLATE_RATIO)
                    .max(file_len)
        {
            return Err(format!(
                "member `{name}` declares {held} bytes, more than a {file_len}-byte file can hold"
            ));
        }
        let (header_len, elements, item) =
            read_npy_header(&mut member).map_err(|e| format!("member `{name}`: {e}"))?;
        let data = elements
            .checked_mul(item)
            .ok_or_else(|| format!("member `{name}`: its declared shape overflows"))?;
        if data.saturating_add(header_len) > held {
            return Err(format!(
                "member `{name}` declares {elements} elements of {item} bytes ({data} bytes) but holds {} bytes of data",
                held.saturating_sub(header_len)
            ));
        }
    }
    Ok(())
}

/// Reads an `.npy` header: (bytes before the data, element count, bytes per element).
fn read_npy_header(r: &mut impl Read) -> Result<(u64, u64, u64), String> {
    let mut pre = [0u8; 8];
    r.read_exact(&mut pre)
        .map_err(|_| "too short for an .npy header".to_string())?;
    if &pre[..6] != b"\x93NUMPY" {
        return Err("not an .npy array (bad magic)".into());
    }
    let (len, prefix) = if pre[6] == 1 {
        let mut b = [0u8; 2];
        r.read_exact(&mut b).map_err(|e| e.to_string())?;
        (u16::from_le_bytes(b) as usize, 10)
    } else {
        let mut b = [0u8; 4];
        r.read_exact(&mut b).map_err(|e| e.to_string())?;
        (u32::from_le_bytes(b) as usize, 12)
    };
    if len > MAX_HEADER {
        return Err(format!(
            "an .npy header of {len} bytes (at most {MAX_HEADER})"
        ));
    }
    let mut header = vec![0u8; len];
    r.read_exact(&mut header)
        .map_err(|_| "the .npy header is cut short".to_string())?;
    let header = String::from_utf8_lossy(&header);
    let item = field(&header, "descr")
        .and_then(|d| {
            let d = d.trim().trim_matches(|c| c == '\'' || c == '"');
            d.trim_start_matches(|c: char| !c.is_ascii_digit())
                .parse::<u64>()
                .ok()
        })
        .ok_or_else(|| format!("no dtype size in the .npy header `{}`", header.trim()))?;
    let shape = field(&header, "shape")
        .ok_or_else(|| format!("no shape in the .npy header `{}`", header.trim()))?;
    let mut elements: u64 = 1;
    for dim in shape
        .trim()
        .trim_start_matches('(')
        .trim_end_matches(')')
        .split(',')
        .map(str::trim)
        .filter(|d| !d.is_empty())
    {
        let d: u64 = dim
            .trim_end_matches('L')
            .parse()
            .map_err(|_| format!("bad dimension `{dim}` in the .npy shape"))?;
        elements = elements
            .checked_mul(d)
            .ok_or_else(|| "the declared shape overflows".to_string())?;
    }
    Ok(((prefix + len) as u64, elements, item))
}

/// The text of a key's value in an `.npy` header dict (`{'descr': '<f4', 'shape': (2, 3), }`).
fn field<'a>(header: &'a str, key: &str) -> Option<&'a str> {
    let at = header
        .find(&format!("'{key}'"))
        .or_else(|| header.find(&format!("\"{key}\"")))?;
    let rest = &header[at + key.len() + 2..];
    let rest = rest.trim_start().strip_prefix(':')?;
    let end = if rest.trim_start().starts_with('(') {
        rest.find(')')? + 1
    } else {
        rest.find(',').unwrap_or(rest.len())
    };
    Some(&rest[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    fn npy(shape: &str, data: &[u8]) -> Vec<u8> {
        let mut h = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': {shape}, }}");
        while (10 + h.len() + 1) % 64 != 0 {
            h.push(' ');
        }
        h.push('\n');
        let mut out = b"\x93NUMPY\x01\x00".to_vec();
        out.extend((h.len() as u16).to_le_bytes());
        out.extend(h.as_bytes());
        out.extend(data);
        out
    }

    fn npz(dir: &Path, members: &[(&str, Vec<u8>)]) -> std::path::PathBuf {
        let path = dir.join("params.npz");
        let mut z = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        for (name, bytes) in members {
            z.start_file(*name, zip::write::SimpleFileOptions::default())
                .unwrap();
            z.write_all(bytes).unwrap();
        }
        z.finish().unwrap();
        path
    }

    #[test]
    fn honest_arrays_pass_and_a_huge_declared_shape_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let ok = npz(dir.path(), &[("W_enc.npy", npy("(2, 3)", &[0u8; 24]))]);
        assert_eq!(check_declared_sizes(&ok), Ok(()));
        let huge = npz(
            dir.path(),
            &[
                ("b_enc.npy", npy("(3,)", &[0u8; 12])),
                ("W_enc.npy", npy("(1000000000000,)", &[0u8; 24])),
            ],
        );
        let e = check_declared_sizes(&huge).unwrap_err();
        assert!(
            e.contains("member `W_enc.npy` declares 1000000000000 elements of 4 bytes"),
            "{e}"
        );
        let overflow = npz(
            dir.path(),
            &[("W_dec.npy", npy("(4294967296, 4294967296, 16)", &[]))],
        );
        let e = check_declared_sizes(&overflow).unwrap_err();
        assert!(e.contains("`W_dec.npy`") && e.contains("overflows"), "{e}");
    }
}
