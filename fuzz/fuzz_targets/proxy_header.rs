//! The PROXY protocol header parser (`leanftpd::proxy::parse`) on arbitrary
//! bytes: what a balancer's connection (or anyone inside `--proxy-from`)
//! sends first.
//!
//! Checked, for every input:
//! - no panic;
//! - a complete header's length is within the input and within
//!   `MAX_HEADER_BYTES` (the reactor reads exactly that many bytes);
//! - the verdict depends only on the first `MAX_HEADER_BYTES` (what the
//!   reactor peeks);
//! - every prefix of a complete header is `Incomplete` (a header split over
//!   many segments is assembled, never refused half-way), and the header
//!   with other bytes after it parses the same.

#![no_main]

use leanftpd::proxy::{parse, Parsed, MAX_HEADER_BYTES};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let verdict = parse(data);
    if data.len() > MAX_HEADER_BYTES {
        assert_eq!(parse(&data[..MAX_HEADER_BYTES]), verdict, "looked past the peek bound");
    }
    if let Parsed::Header { len, origin } = verdict {
        assert!(len > 0 && len <= data.len() && len <= MAX_HEADER_BYTES, "length {len} out of bounds");
        for n in 0..len {
            assert_eq!(parse(&data[..n]), Parsed::Incomplete, "a {n}-byte prefix of a {len}-byte header");
        }
        let mut more = data[..len].to_vec();
        more.extend_from_slice(b"USER anonymous\r\n");
        assert_eq!(parse(&more), Parsed::Header { len, origin }, "bytes after the header changed it");
    }
});
