//! Releasing pages of read-only file mappings after their bytes were copied out.

/// Drops this process's mapping of the pages holding `bytes` (part of a read-only file
/// mapping) once they have been copied out.
///
/// Why: every page of a mapped weight file that was read stays resident in the process until
/// the kernel needs the memory. Loading a bf16 gemma-2-2b counted its 5 GB twice (the mapped
/// file and the loaded copy), and a graph over its 16k-feature transcoders (every encoder read
/// once for the forward pass, the active features' decoders read for edges) counted 7 GB of
/// file pages in its peak RSS on top of what it really holds. The pages stay in the page cache, so a
/// later read of the same rows is a minor fault, not I/O; the file's contents are unchanged,
/// so the slices into the mapping stay valid.
pub fn release_mapped_pages(bytes: &[u8]) {
    #[cfg(unix)]
    {
        if bytes.is_empty() {
            return;
        }
        // SAFETY: sysconf has no preconditions.
        let page = match unsafe { libc::sysconf(libc::_SC_PAGESIZE) } {
            p if p > 0 => p as usize,
            _ => 4096,
        };
        let start = bytes.as_ptr() as usize & !(page - 1);
        let end = (bytes.as_ptr() as usize + bytes.len()).div_ceil(page) * page;
        // SAFETY: [start, end) lies inside the page-aligned, read-only shared file mapping
        // that `bytes` points into (a mapping covers whole pages). MADV_DONTNEED on such a
        // mapping only unmaps resident pages; the next access maps them again from the file,
        // whose contents adag never changes while mapped. A failure leaves the pages resident,
        // which is harmless.
        unsafe {
            libc::madvise(start as *mut libc::c_void, end - start, libc::MADV_DONTNEED);
        }
    }
    #[cfg(not(unix))]
    let _ = bytes;
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    use super::release_mapped_pages;
    use std::io::Write;

    /// Resident pages of this process, from /proc/self/statm.
    fn resident_bytes() -> usize {
        let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
        let pages: usize = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
        pages * 4096
    }

    #[test]
    fn released_pages_leave_the_process_and_read_back_unchanged() {
        const LEN: usize = 64 << 20;
        let mut f = tempfile::tempfile().unwrap();
        let pattern: Vec<u8> = (0..LEN).map(|i| (i % 251) as u8).collect();
        f.write_all(&pattern).unwrap();
        f.sync_all().unwrap();
        // SAFETY: a private temporary file nobody else writes.
        let map = unsafe { memmap2::Mmap::map(&f) }.unwrap();
        let sum = |b: &[u8]| b.iter().map(|&x| x as u64).sum::<u64>();
        let before = sum(&map);
        let touched = resident_bytes();
        // An unaligned interior range: the whole pages around it are released.
        release_mapped_pages(&map[1000..LEN - 1000]);
        let released = resident_bytes();
        assert!(
            touched.saturating_sub(released) >= LEN / 2,
            "resident {touched} → {released} bytes after releasing a {LEN}-byte mapping"
        );
        assert_eq!(sum(&map), before, "contents changed after release");
        assert_eq!(&map[..], &pattern[..]);
        release_mapped_pages(&[]);
    }
}
