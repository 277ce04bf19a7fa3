//! The control connection's line framer (`leanftpd::line`: `frame`, `clean`,
//! `LineBuffer`), fed exactly as the reactor feeds it (`Reactor::on_bytes` and
//! `drain_lines` in src/reactor/mod.rs): a chunk is framed in place while the
//! buffer is empty, and only a partial line is kept in the `LineBuffer`.
//!
//! Input layout: byte 0 picks the line limit (small limits reach `TooLong`
//! quickly, 0 selects the real `MAX_LINE_BYTES`), byte 1 seeds the chunk
//! sizes, the rest is the byte stream from the client.
//!
//! Checked, for every input:
//! - no panic;
//! - every cleaned line holds no LF and does not end with CR, is no longer
//!   than its raw line, equals the raw line (trailing CRs removed) when the
//!   raw line holds no IAC byte, and equals a reference Telnet clean-up
//!   (RFC 854: `IAC IAC`, `IAC WILL/WONT/DO/DONT x`, `IAC cmd`) written
//!   apart as a state machine;
//! - the stream split into arbitrary chunks gives the same lines, the same
//!   outcome and the same left-over bytes as the stream in one piece;
//! - both agree with a reference framing written independently
//!   (split on LF): `TooLong` exactly when a line's content (CR of CRLF
//!   excluded) exceeds the limit, or unterminated bytes exceed limit + 1
//!   (the +1 is a CR whose LF has not come yet);
//! - an empty `LineBuffer` holds no memory (an idle session holds no buffer).

#![no_main]

use leanftpd::line::{clean, frame, Frame, LineBuffer, MAX_LINE_BYTES};
use libfuzzer_sys::fuzz_target;

#[derive(Debug, PartialEq, Eq)]
enum End {
    /// Every complete line was framed; these bytes wait for their LF.
    Partial(Vec<u8>),
    /// The connection is closed with `500` after the lines before.
    TooLong,
}

/// Feed `chunks` as the reactor does; return the cleaned lines and the end.
fn reactor_feed(chunks: &[&[u8]], max: usize) -> (Vec<Vec<u8>>, End) {
    let mut buf = LineBuffer::new();
    let mut lines = Vec::new();
    let mut cleaned = Vec::new();
    for &bytes in chunks {
        if !buf.is_empty() {
            // on_bytes: a partial line is waiting: queue and drain.
            buf.push(bytes);
            loop {
                match frame(buf.bytes(), max) {
                    Frame::Line { end, consumed } => {
                        assert!(end < consumed && consumed <= buf.len(), "frame out of range");
                        clean(&buf.bytes()[..end], &mut cleaned);
                        check_line(&buf.bytes()[..end], &cleaned);
                        lines.push(cleaned.clone());
                        buf.consume(consumed);
                    }
                    Frame::Partial => break,
                    Frame::TooLong => return (lines, End::TooLong),
                }
            }
        } else {
            // on_bytes: frame in place, keep only the partial tail.
            let mut pos = 0;
            while pos < bytes.len() {
                match frame(&bytes[pos..], max) {
                    Frame::Line { end, consumed } => {
                        assert!(end < consumed && pos + consumed <= bytes.len(), "frame out of range");
                        clean(&bytes[pos..pos + end], &mut cleaned);
                        check_line(&bytes[pos..pos + end], &cleaned);
                        lines.push(cleaned.clone());
                        pos += consumed;
                    }
                    Frame::Partial => {
                        buf.push(&bytes[pos..]);
                        break;
                    }
                    Frame::TooLong => return (lines, End::TooLong),
                }
            }
        }
        // Design rule 3: an idle connection holds no read buffer.
        if buf.is_empty() {
            assert_eq!(buf.capacity(), 0, "an empty LineBuffer still holds memory");
        }
        assert!(buf.len() <= max + 1, "a partial line longer than the limit is kept");
    }
    (lines, End::Partial(buf.bytes().to_vec()))
}

/// Reference framing, written without `frame`: split on LF.
fn reference(input: &[u8], max: usize) -> (Vec<Vec<u8>>, End) {
    let mut lines = Vec::new();
    let mut cleaned = Vec::new();
    let mut rest = input;
    while let Some(lf) = rest.iter().position(|&b| b == b'\n') {
        let raw = &rest[..lf];
        let content = raw.strip_suffix(b"\r").unwrap_or(raw);
        if content.len() > max {
            return (lines, End::TooLong);
        }
        clean(raw, &mut cleaned);
        lines.push(cleaned.clone());
        rest = &rest[lf + 1..];
    }
    if rest.len() > max + 1 {
        return (lines, End::TooLong);
    }
    (lines, End::Partial(rest.to_vec()))
}

/// Reference Telnet clean-up (RFC 854), written as a state machine apart
/// from `clean`: drop the CR of CRLF, then `IAC IAC` is a literal 0xFF,
/// `IAC WILL/WONT/DO/DONT opt` goes, `IAC cmd` (cmd >= 236) goes, an `IAC`
/// before an ordinary byte goes alone; then trailing CRs go.
fn reference_clean(raw: &[u8]) -> Vec<u8> {
    enum St {
        Text,
        Iac,
        Opt,
    }
    let raw = raw.strip_suffix(b"\r").unwrap_or(raw);
    let mut st = St::Text;
    let mut out = Vec::new();
    for &b in raw {
        st = match st {
            St::Text if b == 0xFF => St::Iac,
            St::Text => {
                out.push(b);
                St::Text
            }
            St::Iac => match b {
                0xFF => {
                    out.push(0xFF);
                    St::Text
                }
                251..=254 => St::Opt,
                236..=250 => St::Text,
                _ => {
                    out.push(b);
                    St::Text
                }
            },
            St::Opt => St::Text,
        };
    }
    while out.last() == Some(&b'\r') {
        out.pop();
    }
    out
}

fn check_line(raw: &[u8], cleaned: &[u8]) {
    assert_eq!(cleaned, reference_clean(raw), "clean differs from the reference Telnet clean-up");
    assert!(!raw.contains(&b'\n'), "a framed line holds its LF");
    assert!(!cleaned.contains(&b'\n'), "a cleaned line holds an LF");
    assert!(cleaned.last() != Some(&b'\r'), "a cleaned line ends with CR");
    assert!(cleaned.len() <= raw.len(), "clean made a line longer");
    if !raw.contains(&0xFF) {
        let mut want = raw;
        while let Some(r) = want.strip_suffix(b"\r") {
            want = r;
        }
        assert_eq!(cleaned, want, "a line without IAC changed");
    }
    // Cleaning is idempotent on lines without IAC left in them.
    if !cleaned.contains(&0xFF) {
        let mut again = Vec::new();
        clean(cleaned, &mut again);
        assert_eq!(again, cleaned, "clean is not idempotent");
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let max = match data[0] {
        0 => MAX_LINE_BYTES,
        n => usize::from(n % 64) + 1,
    };
    let mut seed = u32::from(data[1]) | 1;
    let input = &data[2..];

    let whole = reactor_feed(&[input], max);
    let want = reference(input, max);
    assert_eq!(whole, want, "framing the whole input differs from the reference");

    // The same bytes in arbitrary chunks (a tiny xorshift on the seed byte).
    let mut chunks = Vec::new();
    let mut rest = input;
    while !rest.is_empty() {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let n = (seed as usize % (max + 3)).clamp(1, rest.len());
        let (a, b) = rest.split_at(n);
        chunks.push(a);
        rest = b;
    }
    let chunked = reactor_feed(&chunks, max);
    assert_eq!(chunked, want, "framing in chunks differs from framing whole");

    // One byte at a time (what a slow or hostile client does). Framing
    // rescans the partial line on every byte, so this is quadratic in the
    // line length: kept to short inputs, the small limits cover the rest.
    if input.len() > 1024 {
        return;
    }
    let bytes: Vec<&[u8]> = input.chunks(1).collect();
    let byte_by_byte = reactor_feed(&bytes, max);
    assert_eq!(byte_by_byte, want, "framing byte by byte differs from framing whole");
});
