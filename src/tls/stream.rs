//! One connection's TLS, driven over a non-blocking socket the reactor
//! owns (any `Read + Write`: the fuzz target drives it over memory), with rustls's unbuffered (sans-IO) API.
//!
//! Owns the rustls connection and the bytes of this connection that are in
//! flight: ciphertext that is not yet a whole record, ciphertext not yet
//! sent, and plaintext the reader has not taken. Each is a `Vec` freed as
//! soon as it is empty, so an idle TLS session holds its keys and nothing
//! else. The work buffers are per thread ([`TLS_IN_BYTES`],
//! [`TLS_OUT_BYTES`]), shared by every session of the reactor, as the plain
//! path shares its read buffer. Never registers anything with the poll and
//! knows nothing of FTP.
//!
//! # Reading and writing
//! `read` and `write` behave like a socket's: plaintext in and out,
//! `WouldBlock` only when the socket said so (so mio's edge-triggered
//! readiness stays right), `Ok(0)` on the peer's `close_notify`, and
//! `UnexpectedEof` when TCP ends without one (a truncation). Either one
//! drives the handshake as far as the bytes allow. `write` takes plaintext
//! only when no ciphertext waits (at most [`TLS_OUT_BYTES`] wait).
//!
//! # Invariants
//! - Bytes in flight per connection: `pending_in` < [`TLS_IN_BYTES`],
//!   `pending_out` ≤ one write's records plus the handshake, `plain` < one
//!   record (16 KiB) after a read, or what was already buffered
//!   (< [`TLS_IN_BYTES`]) when a write found records waiting.
//! - rustls gets back the same unconsumed input on every call (it keeps
//!   offsets into it); the fuzz target `tls_session` found the crash when
//!   it did not.
//! - A data connection ([`Role::Data`]) that finishes its handshake without
//!   resuming its owner's session fails with `PermissionDenied`, before a
//!   byte of the file moves.

use std::cell::RefCell;
use std::io::{self, Read, Write};
use std::sync::Arc;

use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{ConnectionState, EncodeError};
use rustls::{HandshakeKind, ServerConfig};

use super::{processing, OwnerId};

/// The per-thread buffer TLS records are read into: room for several full
/// records (16 KiB of plaintext plus at most 2 KiB of overhead each), so
/// that a bulk upload reads many records per `read(2)`.
pub const TLS_IN_BYTES: usize = 80 * 1024;

/// Plaintext encrypted per `write`: four full records.
const WRITE_PLAIN_BYTES: usize = 4 * 16 * 1024;

/// The per-thread buffer records are encrypted into: four full records and
/// their overhead.
pub const TLS_OUT_BYTES: usize = WRITE_PLAIN_BYTES + 4 * 256;

thread_local! {
    static IN_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
    static OUT_BUF: RefCell<Vec<u8>> = const { RefCell::new(Vec::new()) };
}

/// The bytes of the per-thread in-buffer not yet consumed by rustls:
/// `start..end` (consumed records move `start`, reads move `end`).
#[derive(Clone, Copy)]
struct Window {
    start: usize,
    end: usize,
}

/// What a call wants of rustls.
enum Op<'a> {
    /// Plaintext into this buffer.
    Read(&'a mut [u8]),
    /// This plaintext out.
    Write(&'a [u8]),
    /// `close_notify` out.
    CloseNotify,
    /// Only the handshake.
    Handshake,
}

/// What the connection is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// A control connection (AUTH TLS or implicit FTPS).
    Control,
    /// A PROT P data connection of the control connection `owner`; with
    /// `require_reuse`, it must resume that connection's session.
    Data {
        /// Refuse a full handshake, or a session of another connection.
        require_reuse: bool,
        /// The owner of the session the control connection itself resumed
        /// by TLS 1.2 session id ([`TlsStream::kept_session_of`]): such a
        /// resumption keeps that session (and its owner's id) instead of
        /// making a new one, so it is the control connection's session
        /// too, and its data connections resume it under that id. (A
        /// ticket resumption gets new tickets of its own: `None`.)
        control_resumed: Option<OwnerId>,
    },
}

/// Where rustls stopped.
enum Next {
    /// Call it again.
    Again,
    /// It needs more bytes from the peer.
    NeedInput,
    /// The handshake is done and nothing is left to do but application data.
    Writable,
    /// The reader's buffer is full.
    Full,
    /// `op`'s plaintext (this many bytes) is encrypted into the out buffer
    /// (that many bytes), or its close_notify (0 bytes of plaintext).
    Wrote(usize, usize),
    /// The peer's `close_notify` came: no more input.
    PeerClosed,
    /// Both sides sent `close_notify`.
    Closed,
    /// The connection failed.
    Failed(rustls::Error),
}

/// A connection's bytes in flight (see the module doc for their bounds).
#[derive(Default)]
struct InFlight {
    /// Ciphertext received and not yet processed (a partial record).
    pending_in: Vec<u8>,
    /// Bytes for the wire not yet sent, from `out_pos` (an offset, so that
    /// a partial write does not move the rest).
    pending_out: Vec<u8>,
    out_pos: usize,
    /// Plaintext decrypted and not yet read, from `plain_pos`.
    plain: Vec<u8>,
    plain_pos: usize,
}

impl InFlight {
    fn is_empty(&self) -> bool {
        self.pending_in.is_empty() && self.out_pos == self.pending_out.len() && self.plain_pos == self.plain.len()
    }
}

/// Get, or make, a connection's in-flight bytes.
fn inflight(slot: &mut Option<Box<InFlight>>) -> &mut InFlight {
    slot.get_or_insert_with(Box::default)
}

/// A server-side TLS connection over a socket it does not own.
pub struct TlsStream {
    conn: UnbufferedServerConnection,
    owner: OwnerId,
    // The role, stored flat (`role()` puts it back together): a `Role`
    // with its `Option<OwnerId>` would take 24 bytes of every control
    // connection's box, counted in thousands while idle. Ids are never 0
    // (see `OwnerId`), so 0 stands for none.
    is_data: bool,
    require_reuse: bool,
    control_resumed: u64,
    /// The bytes in flight, only while there are some: an idle session
    /// keeps one pointer here instead of three empty `Vec`s (a few dozen
    /// bytes less per idle TLS session, which are counted in thousands).
    inflight: Option<Box<InFlight>>,
    /// The session this connection resumed belonged to this connection
    /// (0: none resumed).
    resumed_from: u64,
    /// ... and came from the TLS 1.2 session cache (by session id).
    resumed_by_id: bool,
    handshake_done: bool,
    peer_closed: bool,
    close_notify_queued: bool,
    failed: bool,
    clearing: bool,
    /// Where the handshake's end is counted (`leanftpd_tls_handshakes_total`);
    /// `None` until the reactor hands it over, and once counted.
    metrics: Option<Arc<crate::metrics::Metrics>>,
}

/// A connection dropped while its handshake was still going on (a
/// timeout, a client that went away) counts as a failed handshake.
impl Drop for TlsStream {
    fn drop(&mut self) {
        self.count_handshake(false);
    }
}

impl std::fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TlsStream({:?}, {})", self.role(), self.describe())
    }
}

fn tls_error(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl TlsStream {
    /// A new server connection for `owner`'s control connection or one of
    /// its data connections. `preface` is sent before any TLS byte (the
    /// `234` reply of AUTH TLS that the socket did not take yet).
    pub fn new(config: &Arc<ServerConfig>, owner: OwnerId, role: Role, preface: Vec<u8>) -> Result<Box<TlsStream>, rustls::Error> {
        Ok(Box::new(TlsStream {
            conn: UnbufferedServerConnection::new(config.clone())?,
            owner,
            is_data: matches!(role, Role::Data { .. }),
            require_reuse: matches!(role, Role::Data { require_reuse: true, .. }),
            control_resumed: match role {
                Role::Data { control_resumed: Some(o), .. } => o.0,
                _ => 0,
            },
            inflight: (!preface.is_empty()).then(|| Box::new(InFlight { pending_out: preface, ..InFlight::default() })),
            resumed_from: 0,
            resumed_by_id: false,
            handshake_done: false,
            peer_closed: false,
            close_notify_queued: false,
            failed: false,
            clearing: false,
            metrics: None,
        }))
    }

    /// Fail the connection for good (after a panic inside rustls was
    /// caught: its state can no longer be trusted).
    pub fn poison(&mut self) {
        self.failed = true;
    }

    /// The handshake is still going on.
    pub fn is_handshaking(&self) -> bool {
        !self.handshake_done
    }

    /// Ciphertext waits to be sent (flush on writable readiness).
    pub fn has_pending_out(&self) -> bool {
        self.inflight.as_ref().is_some_and(|f| f.out_pos < f.pending_out.len())
    }

    /// Ciphertext received and not yet processed.
    fn pending_in(&self) -> &[u8] {
        self.inflight.as_ref().map_or(&[], |f| &f.pending_in)
    }

    /// Drop the in-flight box once nothing is in it.
    fn release(&mut self) {
        if self.inflight.as_ref().is_some_and(|f| f.is_empty()) {
            self.inflight = None;
        }
    }

    /// Bytes held for this connection now (for tests and the bound).
    pub fn buffered_bytes(&self) -> usize {
        self.inflight
            .as_ref()
            .map_or(0, |f| std::mem::size_of::<InFlight>() + f.pending_in.capacity() + f.pending_out.capacity() + f.plain.capacity())
    }

    /// The control connection whose session this one resumed.
    pub fn resumed_from(&self) -> Option<OwnerId> {
        (self.resumed_from != 0).then_some(OwnerId(self.resumed_from))
    }

    /// What the connection is for (put back together from its flat fields).
    fn role(&self) -> Role {
        if !self.is_data {
            return Role::Control;
        }
        Role::Data { require_reuse: self.require_reuse, control_resumed: (self.control_resumed != 0).then_some(OwnerId(self.control_resumed)) }
    }

    /// The owner of the session this connection's handshake resumed by
    /// TLS 1.2 session id, which stays this connection's session (`None`
    /// after a full handshake, a ticket, or a session looked up but not
    /// taken).
    pub fn kept_session_of(&self) -> Option<OwnerId> {
        self.resumed_from().filter(|_| self.resumed_by_id && self.handshake_done && self.conn.handshake_kind() == Some(HandshakeKind::Resumed))
    }

    /// "TLSv1_3 TLS13_AES_128_GCM_SHA256 resumed", for the log.
    pub fn describe(&self) -> String {
        let version = self.conn.protocol_version().map(|v| format!("{v:?}")).unwrap_or_else(|| "TLS".into());
        let suite = self.conn.negotiated_cipher_suite().map(|s| format!("{:?}", s.suite())).unwrap_or_default();
        let kind = match self.conn.handshake_kind() {
            Some(HandshakeKind::Resumed) => "resumed",
            Some(_) => "full",
            None => "handshaking",
        };
        format!("{version} {suite} {kind}")
    }

    /// Send what waits; `WouldBlock` if the socket did not take all of it.
    pub fn flush<S: Read + Write>(&mut self, sock: &mut S) -> io::Result<()> {
        let Some(f) = self.inflight.as_mut() else { return Ok(()) };
        while f.out_pos < f.pending_out.len() {
            match sock.write(&f.pending_out[f.out_pos..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => f.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
        f.pending_out = Vec::new();
        f.out_pos = 0;
        self.release();
        Ok(())
    }

    /// Queue `close_notify` (once) and send what waits.
    pub fn close_notify<S: Read + Write>(&mut self, sock: &mut S) -> io::Result<()> {
        if !self.close_notify_queued && self.handshake_done && !self.failed {
            self.pump(sock, Op::CloseNotify)?;
        }
        self.flush(sock)
    }

    /// Drive the handshake to its end; `WouldBlock` until it is done (a
    /// transfer with nothing to send, an empty file, still owes its client
    /// a handshake and a `close_notify`).
    pub fn complete_handshake<S: Read + Write>(&mut self, sock: &mut S) -> io::Result<()> {
        if self.failed {
            return Err(io::ErrorKind::InvalidData.into());
        }
        if self.handshake_done {
            return Ok(());
        }
        let r = self.pump(sock, Op::Handshake);
        let f = self.flush(sock);
        r?;
        match f {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
            _ => {}
        }
        if self.handshake_done {
            Ok(())
        } else {
            Err(io::ErrorKind::WouldBlock.into())
        }
    }

    /// Read plaintext into `buf` (see the module doc).
    pub fn read<S: Read + Write>(&mut self, sock: &mut S, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if let Some(f) = self.inflight.as_mut().filter(|f| f.plain_pos < f.plain.len()) {
            let n = (f.plain.len() - f.plain_pos).min(buf.len());
            buf[..n].copy_from_slice(&f.plain[f.plain_pos..f.plain_pos + n]);
            f.plain_pos += n;
            if f.plain_pos == f.plain.len() {
                f.plain = Vec::new();
                f.plain_pos = 0;
                self.release();
            }
            return Ok(n);
        }
        if self.peer_closed {
            return Ok(0);
        }
        if self.failed {
            return Err(io::ErrorKind::InvalidData.into());
        }
        if self.clearing && self.close_notify_queued && self.client_went_plain(sock)? {
            // CCC: this client goes on in the clear without a close_notify
            // of its own (curl's default). Its bytes are plaintext, left in
            // `pending_in` for `into_leftover`.
            self.peer_closed = true;
            return Ok(0);
        }
        let r = self.pump(sock, Op::Read(buf));
        // Handshake records and alerts go out now; if the socket is full,
        // the reactor flushes them on writable readiness.
        match self.flush(sock) {
            Err(e) if e.kind() != io::ErrorKind::WouldBlock && r.is_ok() => return Err(e),
            _ => {}
        }
        r.map(|(n, _)| n)
    }

    /// Encrypt and send plaintext from `buf`; how much was taken (see the
    /// module doc).
    pub fn write<S: Read + Write>(&mut self, sock: &mut S, buf: &[u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.failed {
            return Err(io::ErrorKind::InvalidData.into());
        }
        self.flush(sock)?;
        if self.close_notify_queued {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        let r = self.pump(sock, Op::Write(buf));
        // Whatever happened, the records made so far go out now: mio is
        // edge-triggered, and a writable socket raises no new edge.
        let f = self.flush(sock);
        let (_, wrote) = r?;
        match f {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && wrote > 0 => {}
            Err(e) => return Err(e),
        }
        if wrote == 0 {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(wrote)
    }

    /// Run rustls over what was kept and what the socket has, until `op`
    /// is done or the socket would block. Returns (plaintext read,
    /// plaintext written).
    fn pump<S: Read + Write>(&mut self, sock: &mut S, mut op: Op<'_>) -> io::Result<(usize, usize)> {
        IN_BUF.with(|in_cell| {
            OUT_BUF.with(|out_cell| {
                let mut inb = in_cell.borrow_mut();
                let mut outb = out_cell.borrow_mut();
                if inb.len() < TLS_IN_BYTES {
                    inb.resize(TLS_IN_BYTES, 0);
                }
                if outb.len() < TLS_OUT_BYTES {
                    outb.resize(TLS_OUT_BYTES, 0);
                }
                // rustls keeps offsets into this buffer between calls (a
                // handshake message split over records): it must get the
                // same bytes back, never an empty or shorter buffer.
                let kept = self.pending_in();
                let mut win = Window { start: 0, end: kept.len() };
                inb[..win.end].copy_from_slice(kept);
                if let Some(f) = self.inflight.as_mut() {
                    f.pending_in = Vec::new();
                }
                let mut got = 0;
                let r = self.pump_in(sock, &mut inb, &mut win, &mut op, &mut got, &mut outb);
                if win.end > win.start {
                    inflight(&mut self.inflight).pending_in.extend_from_slice(&inb[win.start..win.end]);
                }
                self.release();
                r.map(|wrote| (got, wrote))
            })
        })
    }

    fn pump_in<S: Read + Write>(
        &mut self,
        sock: &mut S,
        inb: &mut [u8],
        win: &mut Window,
        op: &mut Op<'_>,
        got: &mut usize,
        outb: &mut [u8],
    ) -> io::Result<usize> {
        loop {
            if let Op::Read(b) = op {
                if b.len() == *got {
                    return Ok(0);
                }
            }
            let next = self.step(inb, win, op, got, outb);
            if !self.handshake_done && !self.conn.is_handshaking() {
                self.handshake_done = true;
                let reused = self.check_reuse();
                self.count_handshake(reused.is_ok());
                reused?;
            }
            match next {
                Next::Again => {}
                Next::Full => return Ok(0),
                Next::Wrote(plain, cipher) => {
                    // Straight from the shared buffer to the socket when
                    // nothing waits before it; only the tail is kept.
                    let mut sent = 0;
                    while !self.has_pending_out() && sent < cipher {
                        match sock.write(&outb[sent..cipher]) {
                            Ok(0) => break,
                            Ok(n) => sent += n,
                            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(e) => return Err(e),
                        }
                    }
                    if sent < cipher {
                        inflight(&mut self.inflight).pending_out.extend_from_slice(&outb[sent..cipher]);
                    }
                    return Ok(plain);
                }
                Next::PeerClosed => {
                    self.peer_closed = true;
                    if matches!(op, Op::Read(_)) {
                        return Ok(0);
                    }
                }
                Next::Closed => {
                    self.peer_closed = true;
                    return if matches!(op, Op::Read(_)) { Ok(0) } else { Err(io::ErrorKind::BrokenPipe.into()) };
                }
                Next::Failed(e) => {
                    self.failed = true;
                    // Encode the alert rustls queued (it comes out before
                    // any input is looked at again); it leaves with the
                    // next flush. Only once: the bytes that failed would
                    // fail again.
                    let _ = self.step(inb, win, &mut Op::Handshake, got, outb);
                    *win = Window { start: 0, end: 0 };
                    if !self.handshake_done {
                        self.count_handshake(false);
                        // The handshake failed: the data connection is
                        // refused (`522`), a control connection closed.
                        return Err(io::Error::new(io::ErrorKind::PermissionDenied, e));
                    }
                    return Err(tls_error(e));
                }
                // Only completing the handshake, and it is complete.
                Next::Writable if self.handshake_done && matches!(op, Op::Handshake) => return Ok(0),
                // The handshake was completed by this very step: now `op`
                // may write (the next step encrypts).
                Next::Writable if self.handshake_done && matches!(op, Op::Write(_) | Op::CloseNotify) => {}
                Next::Writable | Next::NeedInput => {
                    if *got > 0 {
                        // Give the reader what it has; it calls again.
                        return Ok(0);
                    }
                    if win.end == inb.len() {
                        if win.start == 0 {
                            return Err(io::Error::new(io::ErrorKind::InvalidData, "TLS record larger than the read buffer"));
                        }
                        // Room at the back, by moving what is left to the
                        // front (once per buffer, not once per record).
                        inb.copy_within(win.start..win.end, 0);
                        *win = Window { start: 0, end: win.end - win.start };
                    }
                    match sock.read(&mut inb[win.end..]) {
                        Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
                        Ok(n) => win.end += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => return Err(e),
                    }
                }
            }
        }
    }

    /// One call into rustls, with its state handled. In `WriteTraffic`,
    /// `op`'s plaintext is encrypted (or `close_notify` queued) only if the
    /// handshake was already done before this call: never TLS 1.3's
    /// half-round-trip data, which would send file bytes before a data
    /// connection's resumption is checked.
    fn step(&mut self, inb: &mut [u8], win: &mut Window, op: &mut Op<'_>, got: &mut usize, outb: &mut [u8]) -> Next {
        let may_write = self.handshake_done;
        let TlsStream { conn, inflight: slot, owner, close_notify_queued, .. } = self;
        let ((discard, next), resumed) = processing(*owner, || {
            let status = conn.process_tls_records(&mut inb[win.start..win.end]);
            let mut discard = status.discard;
            let next = match status.state {
                Err(e) => Next::Failed(e),
                Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                    let mut next = Next::Again;
                    while let Some(record) = traffic.next_record() {
                        let record = match record {
                            Ok(r) => r,
                            Err(e) => {
                                next = Next::Failed(e);
                                break;
                            }
                        };
                        discard += record.discard;
                        let payload = record.payload;
                        let n = match op {
                            Op::Read(buf) => {
                                let n = payload.len().min(buf.len() - *got);
                                buf[*got..*got + n].copy_from_slice(&payload[..n]);
                                *got += n;
                                n
                            }
                            // Not reading now: kept for the next read
                            // (bounded by the input already buffered).
                            _ => 0,
                        };
                        if n < payload.len() {
                            inflight(slot).plain.extend_from_slice(&payload[n..]);
                            if matches!(op, Op::Read(_)) {
                                next = Next::Full;
                                break;
                            }
                        }
                    }
                    next
                }
                Ok(ConnectionState::EncodeTlsData(mut enc)) => {
                    let pending_out = &mut inflight(slot).pending_out;
                    let start = pending_out.len();
                    let mut want = 4096;
                    loop {
                        pending_out.resize(start + want, 0);
                        match enc.encode(&mut pending_out[start..]) {
                            Ok(n) => {
                                pending_out.truncate(start + n);
                                break Next::Again;
                            }
                            Err(EncodeError::InsufficientSize(s)) => want = s.required_size,
                            Err(EncodeError::AlreadyEncoded) => {
                                pending_out.truncate(start);
                                break Next::Again;
                            }
                        }
                    }
                }
                Ok(ConnectionState::TransmitTlsData(t)) => {
                    // The records are in `pending_out`, in order; they
                    // leave with the next flush.
                    t.done();
                    Next::Again
                }
                Ok(ConnectionState::BlockedHandshake) => Next::NeedInput,
                Ok(ConnectionState::PeerClosed) => Next::PeerClosed,
                Ok(ConnectionState::Closed) => Next::Closed,
                Ok(ConnectionState::WriteTraffic(mut w)) if may_write => match op {
                    Op::Write(data) => {
                        let take = data.len().min(WRITE_PLAIN_BYTES);
                        match w.encrypt(&data[..take], outb) {
                            Ok(n) => Next::Wrote(take, n),
                            Err(e) => Next::Failed(rustls::Error::General(e.to_string())),
                        }
                    }
                    Op::CloseNotify => {
                        *close_notify_queued = true;
                        match w.queue_close_notify(outb) {
                            Ok(n) => Next::Wrote(0, n),
                            Err(e) => Next::Failed(rustls::Error::General(e.to_string())),
                        }
                    }
                    _ => Next::Writable,
                },
                Ok(ConnectionState::WriteTraffic(_)) => Next::Writable,
                Ok(_) => Next::Failed(rustls::Error::General("unexpected early data".into())),
            };
            (discard, next)
        });
        win.start += discard;
        if win.start == win.end {
            *win = Window { start: 0, end: 0 };
        }
        if let Some(r) = resumed {
            self.resumed_from = r.0;
            self.resumed_by_id = super::resumed_by_id();
        }
        next
    }

    /// After CCC and our `close_notify`: whether what the client sends next
    /// is plaintext (an FTP command starts with a letter; a TLS record with
    /// a content type of 20 to 24). Reads a little from the socket if
    /// nothing waits; `WouldBlock` if nothing came yet. rustls is not
    /// asked: after its close_notify it treats bad input as a second fatal
    /// alert.
    fn client_went_plain<S: Read + Write>(&mut self, sock: &mut S) -> io::Result<bool> {
        if self.pending_in().is_empty() {
            let mut first = [0u8; 512];
            let n = loop {
                match sock.read(&mut first) {
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    r => break r?,
                }
            };
            if n == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            inflight(&mut self.inflight).pending_in.extend_from_slice(&first[..n]);
        }
        Ok(!(20..=24).contains(&self.pending_in()[0]))
    }

    /// Count how this connection's handshake ends in `metrics`: completed
    /// (for a data connection, with its owner's session resumed), failed,
    /// or abandoned (the connection dropped before it ended).
    pub fn count_handshake_in(&mut self, metrics: Arc<crate::metrics::Metrics>) {
        if !self.handshake_done {
            self.metrics = Some(metrics);
        }
    }

    /// Count the handshake's end, once.
    fn count_handshake(&mut self, ok: bool) {
        if let Some(m) = self.metrics.take() {
            let channel = if self.is_data { crate::metrics::Channel::Data } else { crate::metrics::Channel::Control };
            m.tls_handshake(channel, ok);
        }
    }

    /// After CCC: the ciphertext-free rest, i.e. what the client sent after
    /// its `close_notify` (plaintext) and plaintext not yet read.
    pub fn into_leftover(mut self) -> Vec<u8> {
        self.metrics = None;
        let Some(f) = self.inflight.take() else { return Vec::new() };
        let mut rest = f.plain[f.plain_pos..].to_vec();
        rest.extend_from_slice(&f.pending_in);
        rest
    }

    /// CCC: the connection goes back to plaintext once the peer's
    /// `close_notify` has been read.
    pub fn begin_clear(&mut self) {
        self.clearing = true;
    }

    /// See `begin_clear`.
    pub fn is_clearing(&self) -> bool {
        self.clearing
    }

    /// A data connection must have resumed its owner's session: one made
    /// on its control connection, or the one that connection resumed.
    fn check_reuse(&mut self) -> io::Result<()> {
        if !self.is_data {
            return Ok(());
        }
        let resumed = self.conn.handshake_kind() == Some(HandshakeKind::Resumed);
        let own = self.resumed_from != 0 && (self.resumed_from == self.owner.0 || self.resumed_from == self.control_resumed);
        if self.require_reuse && !(resumed && own) {
            self.failed = true;
            return Err(io::Error::new(
                io::ErrorKind::PermissionDenied,
                if resumed { "TLS session of another control connection" } else { "TLS session not resumed" },
            ));
        }
        Ok(())
    }
}

