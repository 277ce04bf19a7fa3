//! Where in the shared scratch buffer a file's bytes go, so that the
//! kernel's copy between the page cache and the buffer runs at full speed.
//!
//! The kernel copies `read(2)`/`write(2)` data with `rep movsb`. On AMD Zen
//! CPUs (and some Intel ones) that instruction slows to a third of its
//! speed when the destination lies a few bytes past the source modulo
//! 4 KiB ("4K aliasing": every store looks as if it overlapped a pending
//! load). The reactor's scratch buffer is a 128 KiB `malloc`, which glibc
//! serves with `mmap` plus a 16-byte header: its first byte sits 16 bytes
//! into a page, and a file read at a page-aligned offset lands exactly in
//! that window. Measured here (AMD EPYC, `pread` of 64 KiB from the page
//! cache): 0.56 s/GiB at a 16-byte gap, 0.20 s/GiB at 64 bytes or more;
//! the same for `pwrite` with the gap the other way. glibc's own `memmove`
//! avoids `rep movsb` in that window for the same reason (its
//! `memmove-vec-unaligned-erms`); the kernel does not.
//!
//! [`window`] picks the slice of the buffer whose address is [`GAP`] bytes
//! past the file offset's position in its page: the copy's destination is
//! then `GAP` bytes past its source on a read (page cache to buffer), and
//! `GAP` bytes before it on a write (buffer to page cache); both are fast.

/// The page size the aliasing is modulo (4 KiB on every x86-64 CPU).
const PAGE: usize = 4096;

/// How far apart (modulo [`PAGE`]) a copy's source and destination are put:
/// well outside the slow window (under 64 bytes) and within one cache-line
/// set's worth of the page.
const GAP: usize = 256;

/// At most `len` bytes of `buf`, starting where a copy to or from the file
/// at `file_offset` does not alias. `buf` must be longer than a page for
/// the window to be of any use; a shorter one is returned whole.
pub fn window(buf: &mut [u8], file_offset: u64, len: usize) -> &mut [u8] {
    let base = buf.as_ptr() as usize;
    let want = (file_offset as usize).wrapping_add(GAP) % PAGE;
    let skew = want.wrapping_sub(base % PAGE) % PAGE;
    if skew >= buf.len() {
        let n = len.min(buf.len());
        return &mut buf[..n];
    }
    let n = len.min(buf.len() - skew);
    &mut buf[skew..skew + n]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_sits_gap_bytes_past_the_file_offset_in_its_page() {
        let mut v = vec![0u8; 128 * 1024 + 4096];
        for start in [0usize, 1, 16, 4095] {
            let buf = &mut v[start..start + 128 * 1024];
            for off in [0u64, 1, 255, 256, 4095, 4096, 65_536, 1 << 40] {
                let w = window(buf, off, 64 * 1024);
                assert_eq!(w.len(), 64 * 1024, "start {start} offset {off}");
                let gap = (w.as_ptr() as usize).wrapping_sub(off as usize) % PAGE;
                assert_eq!(gap, GAP, "start {start} offset {off}");
            }
        }
    }

    #[test]
    fn the_window_never_leaves_the_buffer() {
        let mut v = vec![0u8; 5000];
        for off in 0..PAGE as u64 {
            let len = {
                let w = window(&mut v, off, 4096);
                assert!(!w.is_empty());
                w.len()
            };
            assert!(len <= 4096);
        }
        let mut short = [0u8; 100];
        assert_eq!(window(&mut short, 3, 4096).len(), 100);
        assert_eq!(window(&mut short, 3, 10).len(), 10);
    }
}
