//! The control connection's line framer: Twisted's `LineReceiver`.
//!
//! It owns the bytes of a partial (or queued) command line and nothing else:
//! the reactor reads into its own scratch buffer and hands the bytes here only
//! when a line is incomplete or the session is busy, so an idle session holds
//! no buffer at all.
//!
//! Framing rules (RFC 959 §4.1.1, RFC 854):
//! - a line ends with CRLF; a bare LF is accepted too (many scripts send it);
//! - Telnet IAC sequences are dropped (`IAC IAC` is a literal 0xFF byte,
//!   `IAC WILL/WONT/DO/DONT x` is three bytes, other `IAC x` two), so the
//!   "Telnet IP / Synch" that clients put before ABOR never reaches the parser;
//! - a line longer than the maximum is an error: the caller replies `500` and
//!   closes the connection (Twisted's `lineLengthExceeded`).
//!
//! It never touches a socket and never reads the clock.
//!
//! # Invariants
//! - `pending` has capacity 0 whenever it is empty (`release` frees it).
//! - `start <= pending.len()`; bytes before `start` were consumed.

/// Default maximum length of one command line, terminator excluded.
pub const MAX_LINE_BYTES: usize = 8 * 1024;

const IAC: u8 = 255;
const WILL: u8 = 251;
const DONT: u8 = 254;
/// The lowest Telnet command byte (EOF, RFC 1184).
const FIRST_COMMAND: u8 = 236;

/// What framing found at the front of some bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Frame {
    /// A complete line: its content is `input[..end]` (terminator excluded,
    /// CR included if present) and `consumed` bytes including the LF.
    Line {
        /// Length of the line content (without LF).
        end: usize,
        /// Bytes to consume, LF included.
        consumed: usize,
    },
    /// No LF yet and still within the limit: wait for more bytes.
    Partial,
    /// No LF within the limit: protocol violation.
    TooLong,
}

/// Find the first line at the front of `input`.
pub fn frame(input: &[u8], max_line_bytes: usize) -> Frame {
    frame_from(input, 0, max_line_bytes)
}

/// `frame`, knowing that `input[..scanned]` holds no LF: a partial line that
/// grows a byte at a time (a slowloris client) is then scanned once in all,
/// not once per byte.
pub fn frame_from(input: &[u8], scanned: usize, max_line_bytes: usize) -> Frame {
    // +1 allows the CR of a CRLF at exactly the limit.
    let window = &input[..input.len().min(max_line_bytes + 2)];
    let from = scanned.min(window.len());
    match window[from..].iter().position(|&b| b == b'\n').map(|i| i + from) {
        Some(lf) if lf <= max_line_bytes + 1 => {
            let end = if lf > 0 && window[lf - 1] == b'\r' { lf - 1 } else { lf };
            if end > max_line_bytes {
                return Frame::TooLong;
            }
            Frame::Line { end: lf, consumed: lf + 1 }
        }
        _ if input.len() > max_line_bytes + 1 => Frame::TooLong,
        _ => Frame::Partial,
    }
}

/// Copy a framed line into `out` with the trailing CR and every Telnet IAC
/// sequence removed. `out` is cleared first; it is the reactor's scratch and
/// keeps its capacity, so this does not allocate once warmed up.
pub fn clean(line: &[u8], out: &mut Vec<u8>) {
    out.clear();
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let mut i = 0;
    while i < line.len() {
        let b = line[i];
        if b != IAC {
            out.push(b);
            i += 1;
            continue;
        }
        match line.get(i + 1) {
            Some(&IAC) => {
                out.push(IAC);
                i += 2;
            }
            Some(&c) if (WILL..=DONT).contains(&c) => i += 3,
            // A Telnet command (EOF 236 … GA 249, DM 242, IP 244, …).
            Some(&c) if c >= FIRST_COMMAND => i += 2,
            // IAC before an ordinary byte: the Synch's DM was taken out of
            // band, or garbage. Drop the IAC only, keep the byte ("ABOR").
            _ => i += 1,
        }
    }
    // A CR left in the middle (e.g. "NOOP\r\r\n") is not part of a command.
    while out.last() == Some(&b'\r') {
        out.pop();
    }
}

/// The bytes of a connection that are not yet consumed: a partial line, or
/// whole lines queued while the session is busy.
///
/// While a transfer runs, the reactor *sifts* the queue: each line that
/// arrives is looked at once, an urgent one (ABOR, STAT) is taken out and
/// answered at once, the others stay queued in order. `sifted` is how many
/// leading bytes are such whole, already-sifted lines; only the bytes after
/// them are ever looked at again, so a burst of lines costs linear time
/// however many of them are urgent.
///
/// # Invariants
/// - `pending[start..start + sifted]` is whole lines (each ends in LF), none
///   of them urgent.
/// - `pending[start + sifted..][..scanned]` holds no LF.
/// - An empty buffer holds no heap memory: the queue lives behind one
///   `Option<Box<_>>`, so the buffer of an idle session is one null pointer
///   (8 bytes of its slab entry instead of 48: the entry is paid by every
///   session, idle or not, and counted in thousands).
#[derive(Debug, Default)]
pub struct LineBuffer {
    queued: Option<Box<Queued>>,
}

/// The bytes of a non-empty [`LineBuffer`].
#[derive(Debug, Default)]
struct Queued {
    pending: Vec<u8>,
    start: usize,
    /// Leading unconsumed bytes that are whole, sifted lines.
    sifted: usize,
    /// Bytes after the sifted lines known to hold no LF.
    scanned: usize,
}

impl LineBuffer {
    /// An empty buffer; allocates nothing.
    pub const fn new() -> LineBuffer {
        LineBuffer { queued: None }
    }

    /// True if no bytes are waiting.
    pub fn is_empty(&self) -> bool {
        self.queued.as_ref().is_none_or(|q| q.start >= q.pending.len())
    }

    /// Number of bytes waiting.
    pub fn len(&self) -> usize {
        self.queued.as_ref().map_or(0, |q| q.pending.len() - q.start)
    }

    /// Keep `bytes` after whatever is already waiting.
    ///
    /// Consumed bytes are dropped from the front once they are at least
    /// half of the buffer: a client whose reads always end inside a line
    /// keeps the buffer from ever becoming empty, and without this it would
    /// grow by every byte the client ever sent. Each byte is moved at most
    /// about once more, so the cost stays linear.
    pub fn push(&mut self, bytes: &[u8]) {
        if bytes.is_empty() {
            return;
        }
        let q = self.queued.get_or_insert_with(Box::default);
        if q.start > 0 && q.start * 2 >= q.pending.len() {
            q.pending.drain(..q.start);
            q.start = 0;
        }
        q.pending.extend_from_slice(bytes);
    }

    /// The unconsumed bytes.
    pub fn bytes(&self) -> &[u8] {
        self.queued.as_ref().map_or(&[], |q| &q.pending[q.start..])
    }

    /// How many leading unconsumed bytes are whole lines already sifted.
    pub fn sifted(&self) -> usize {
        self.queued.as_ref().map_or(0, |q| q.sifted)
    }

    /// How many bytes after the sifted lines are known to hold no LF.
    pub fn scanned(&self) -> usize {
        self.queued.as_ref().map_or(0, |q| q.scanned)
    }

    /// Record that the bytes after the sifted lines hold no LF (a partial
    /// line).
    pub fn mark_scanned(&mut self) {
        if let Some(q) = &mut self.queued {
            q.scanned = q.pending.len() - q.start - q.sifted;
        }
    }

    /// Move the bytes after the sifted lines into `into` (appended), for the
    /// sifter to walk once; it gives back what it keeps with
    /// [`push_sifted`](Self::push_sifted) and [`push`](Self::push).
    pub fn take_unsifted(&mut self, into: &mut Vec<u8>) {
        let Some(q) = &mut self.queued else { return };
        let from = q.start + q.sifted;
        into.extend_from_slice(&q.pending[from..]);
        q.pending.truncate(from);
        q.scanned = 0;
        if self.is_empty() {
            self.release();
        }
    }

    /// Append a whole line that was sifted and is not urgent. Only valid
    /// while nothing unsifted is waiting (after `take_unsifted`).
    pub fn push_sifted(&mut self, line: &[u8]) {
        debug_assert_eq!(self.sifted(), self.len(), "unsifted bytes would be overtaken");
        self.push(line);
        if let Some(q) = &mut self.queued {
            q.sifted += line.len();
        }
    }

    /// Mark `n` bytes as consumed; frees the buffer when it becomes empty.
    pub fn consume(&mut self, n: usize) {
        let Some(q) = &mut self.queued else { return };
        if n <= q.sifted {
            // The bytes after the sifted lines did not change.
            q.sifted -= n;
        } else {
            q.sifted = 0;
            q.scanned = 0;
        }
        q.start = (q.start + n).min(q.pending.len());
        if self.is_empty() {
            self.release();
        }
    }

    /// Drop everything and give the memory back.
    pub fn release(&mut self) {
        self.queued = None;
    }

    /// Heap bytes held (for the idle-memory checks).
    pub fn capacity(&self) -> usize {
        self.queued.as_ref().map_or(0, |q| std::mem::size_of::<Queued>() + q.pending.capacity())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feed `input` in the given chunks through a LineBuffer and collect the
    /// cleaned lines, as the reactor does.
    fn run(chunks: &[&[u8]], max: usize) -> Result<Vec<Vec<u8>>, ()> {
        let mut buf = LineBuffer::new();
        let mut lines = Vec::new();
        let mut scratch = Vec::new();
        for chunk in chunks {
            buf.push(chunk);
            loop {
                match frame(buf.bytes(), max) {
                    Frame::Line { end, consumed } => {
                        clean(&buf.bytes()[..end], &mut scratch);
                        lines.push(scratch.clone());
                        buf.consume(consumed);
                    }
                    Frame::Partial => break,
                    Frame::TooLong => return Err(()),
                }
            }
        }
        assert!(buf.is_empty() || buf.capacity() > 0);
        Ok(lines)
    }

    const DIALOGUE: &[u8] = b"USER anonymous\r\nPASS x@y\r\nNOOP\nCWD a b \r\n";

    fn expected() -> Vec<Vec<u8>> {
        vec![b"USER anonymous".to_vec(), b"PASS x@y".to_vec(), b"NOOP".to_vec(), b"CWD a b ".to_vec()]
    }

    #[test]
    fn whole_input_gives_every_line() {
        assert_eq!(run(&[DIALOGUE], MAX_LINE_BYTES).unwrap(), expected());
    }

    #[test]
    fn byte_by_byte_gives_the_same_lines() {
        let chunks: Vec<&[u8]> = DIALOGUE.chunks(1).collect();
        assert_eq!(run(&chunks, MAX_LINE_BYTES).unwrap(), expected());
    }

    #[test]
    fn every_split_point_gives_the_same_lines() {
        for at in 0..=DIALOGUE.len() {
            let (a, b) = DIALOGUE.split_at(at);
            assert_eq!(run(&[a, b], MAX_LINE_BYTES).unwrap(), expected(), "split at {at}");
        }
    }

    #[test]
    fn bare_lf_ends_a_line() {
        assert_eq!(run(&[b"NOOP\n"], 100).unwrap(), vec![b"NOOP".to_vec()]);
    }

    #[test]
    fn line_at_the_limit_is_accepted_and_one_more_byte_is_too_long() {
        let mut ok = vec![b'A'; 10];
        ok.extend_from_slice(b"\r\n");
        assert_eq!(run(&[&ok], 10).unwrap(), vec![vec![b'A'; 10]]);
        let mut long = vec![b'A'; 11];
        long.extend_from_slice(b"\r\n");
        assert!(run(&[&long], 10).is_err());
    }

    #[test]
    fn endless_line_without_lf_is_too_long_before_it_grows_further() {
        let junk = vec![b'x'; 20];
        assert_eq!(frame(&junk, 10), Frame::TooLong);
        assert_eq!(frame(&junk[..11], 10), Frame::Partial);
    }

    #[test]
    fn telnet_ip_and_synch_before_abor_are_dropped() {
        // IAC IP IAC DM ABOR (RFC 959 §4.1.3), and option negotiation.
        let line = [255, 244, 255, 242, b'A', b'B', b'O', b'R', b'\r', b'\n'];
        assert_eq!(run(&[&line], 100).unwrap(), vec![b"ABOR".to_vec()]);
        let neg = [255, 251, 1, b'N', b'O', b'O', b'P', b'\n'];
        assert_eq!(run(&[&neg], 100).unwrap(), vec![b"NOOP".to_vec()]);
    }

    #[test]
    fn synch_with_its_dm_taken_out_of_band_still_gives_abor() {
        // IAC IP IAC (DM taken out of band) ABOR
        let line = [255, 244, 255, b'A', b'B', b'O', b'R', b'\r', b'\n'];
        assert_eq!(run(&[&line], 100).unwrap(), vec![b"ABOR".to_vec()]);
    }

    #[test]
    fn sifting_keeps_order_and_scans_each_byte_once() {
        let mut buf = LineBuffer::new();
        buf.push(b"NOOP\r\nAB");
        let mut tail = Vec::new();
        buf.take_unsifted(&mut tail);
        assert!(buf.is_empty());
        assert_eq!(buf.capacity(), 0, "an emptied buffer holds no memory");
        buf.push_sifted(&tail[..6]);
        buf.push(&tail[6..]);
        buf.mark_scanned();
        assert_eq!((buf.sifted(), buf.scanned()), (6, 2));
        // More bytes arrive: only what follows the sifted line is taken.
        buf.push(b"OR\r\nPWD\r\n");
        tail.clear();
        buf.take_unsifted(&mut tail);
        assert_eq!(tail, b"ABOR\r\nPWD\r\n");
        assert_eq!(buf.bytes(), b"NOOP\r\n");
        // ABOR taken out (urgent), PWD kept after NOOP.
        buf.push_sifted(&tail[6..]);
        assert_eq!(buf.bytes(), b"NOOP\r\nPWD\r\n");
        // Consuming sifted lines keeps the rest sifted.
        buf.consume(6);
        assert_eq!((buf.sifted(), buf.bytes()), (5, &b"PWD\r\n"[..]));
        buf.consume(5);
        assert_eq!(buf.capacity(), 0);
    }

    #[test]
    fn reads_that_always_end_inside_a_line_do_not_grow_the_buffer() {
        // "NOOP\r\nNO", "OP\r\nNO", ...: never empty after the lines are taken.
        let mut buf = LineBuffer::new();
        buf.push(b"NO");
        let mut most = 0;
        for _ in 0..100_000 {
            buf.push(b"OP\r\nNO");
            match frame(buf.bytes(), MAX_LINE_BYTES) {
                Frame::Line { consumed, .. } => buf.consume(consumed),
                other => panic!("{other:?}"),
            }
            assert_eq!(buf.bytes(), b"NO");
            most = most.max(buf.capacity());
        }
        assert!(most <= 64, "the buffer grew to {most} bytes for a 2-byte partial line");
    }

    #[test]
    fn consuming_past_the_sifted_lines_forgets_the_scan() {
        let mut buf = LineBuffer::new();
        buf.push(b"abc");
        buf.mark_scanned();
        assert_eq!(buf.scanned(), 3);
        buf.push(b"\nrest");
        buf.consume(4);
        assert_eq!((buf.sifted(), buf.scanned()), (0, 0));
        assert_eq!(buf.bytes(), b"rest");
    }

    #[test]
    fn doubled_iac_is_a_literal_ff_byte() {
        let line = [b'R', b'E', b'T', b'R', b' ', 255, 255, b'\n'];
        assert_eq!(run(&[&line], 100).unwrap(), vec![vec![b'R', b'E', b'T', b'R', b' ', 255]]);
    }

    #[test]
    fn frame_from_a_scanned_prefix_finds_the_same_lines() {
        let input = b"abcdef\r\nrest";
        for from in 0..=6 {
            assert_eq!(frame_from(input, from, 100), Frame::Line { end: 7, consumed: 8 });
        }
        assert_eq!(frame_from(b"abc", 3, 100), Frame::Partial);
        assert_eq!(frame_from(&[b'x'; 20], 15, 10), Frame::TooLong);
    }

    #[test]
    fn buffer_is_freed_when_drained() {
        let mut buf = LineBuffer::new();
        assert_eq!(buf.capacity(), 0);
        buf.push(b"NOOP\r\n");
        buf.consume(6);
        assert!(buf.is_empty());
        assert_eq!(buf.capacity(), 0);
    }
}
