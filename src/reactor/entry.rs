//! The kinds of slab entry. An entry's slab key is its `mio::Token`; data
//! entries know the key of the control connection that owns them, and the
//! control connection knows the key of its (at most one) data entry, so
//! closing a session closes what it owns.

use std::time::Instant;

use mio::net::TcpListener;

use super::stream::Stream;
use crate::ftp::session::{Session, TransferRequest};
use crate::line::LineBuffer;
use crate::timer::TimerId;

/// One entry of the reactor's slab.
pub enum Entry {
    /// The control listener.
    Listener(TcpListener),
    /// A control connection and its protocol interpreter.
    Ctrl(Control),
    /// A passive data listener waiting for its client.
    Pasv(PasvListener),
    /// A data connection.
    Data(DataConn),
    /// A connection from a load balancer waiting for its PROXY protocol
    /// header (`--proxy-protocol`; see `reactor/proxy.rs`).
    #[cfg(feature = "proxy")]
    Proxy(super::proxy::Awaiting),
    /// The metrics listener (`--metrics-listen`).
    #[cfg(feature = "metrics")]
    MetricsListener(TcpListener),
    /// A metrics scrape connection.
    #[cfg(feature = "metrics")]
    Scrape(super::scrape::Scrape),
    /// A running upload hook, its source the process's pidfd
    /// (`--on-upload`; see `reactor/hook.rs`).
    Hook(super::hook::Running),
    /// Closed during this loop iteration; removed at its end, so that a key
    /// is never reused while events for it may still be in the batch.
    Closed,
}

/// A control connection.
pub struct Control {
    /// The socket.
    pub stream: Stream,
    /// The protocol interpreter.
    pub session: Session,
    /// A partial line or lines queued while the session is busy.
    pub line: LineBuffer,
    /// Reply bytes the socket did not take yet.
    pub out: Unsent,
    /// The control deadline (login, idle or failed-login delay).
    pub timer: Option<TimerId>,
    /// The key of this session's passive listener or data connection.
    pub data: Option<usize>,
    /// Distinguishes this session from a later one with the same key.
    pub serial: u64,
    /// Close once `out` is flushed.
    pub close_after_flush: bool,
    /// Reading stopped: the queue is full while the session is busy, or its
    /// unsent replies passed the budget; resumed when both are over.
    pub read_paused: bool,
    /// The client's input ended (half-close): run what it sent, then close.
    pub read_eof: bool,
    /// Listed in `Shared` as not logged in (several workers; see
    /// `Shared::note_unauthenticated`), until it logs in or closes.
    pub listed: bool,
    /// When the session started (for the log).
    pub started: Instant,
}

/// Reply bytes the socket did not take yet: one null pointer while there
/// are none (8 bytes of every session's slab entry instead of an empty
/// `Vec`'s 24; replies go straight to the socket and are kept only on
/// `WouldBlock`).
///
/// Invariant: `Some` holds at least one byte.
// An `Option<Box<Vec>>` on purpose: one pointer in the entry while empty,
// and a second allocation only while replies wait.
#[allow(clippy::box_collection)]
#[derive(Debug, Default)]
pub struct Unsent(Option<Box<Vec<u8>>>);

impl Unsent {
    /// True if nothing waits.
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    /// Bytes waiting.
    pub fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |v| v.len())
    }

    /// The bytes waiting, oldest first.
    pub fn bytes(&self) -> &[u8] {
        self.0.as_deref().map_or(&[], |v| v.as_slice())
    }

    /// Keep `bytes` after what already waits.
    pub fn push(&mut self, bytes: &[u8]) {
        if !bytes.is_empty() {
            self.0.get_or_insert_with(Box::default).extend_from_slice(bytes);
        }
    }

    /// The socket took the first `n` bytes; the memory goes back once all
    /// are sent.
    pub fn consume(&mut self, n: usize) {
        if let Some(v) = &mut self.0 {
            v.drain(..n.min(v.len()));
            if v.is_empty() {
                self.0 = None;
            }
        }
    }

    /// Everything waiting, leaving nothing.
    pub fn take(&mut self) -> Vec<u8> {
        self.0.take().map_or_else(Vec::new, |v| *v)
    }
}

/// A passive listener: accepts one connection, from the control peer only.
pub struct PasvListener {
    /// The socket.
    pub listener: TcpListener,
    /// The owning control connection.
    pub owner: usize,
    /// The data timeout.
    pub timer: Option<TimerId>,
    /// A transfer command that arrived before the client connected (boxed,
    /// as in [`DataState`]).
    pub pending: Option<Box<TransferRequest>>,
}

/// What a data connection is doing.
///
/// The request is boxed: it is ~200 bytes, and every slab entry is as big
/// as the biggest variant, idle control sessions included. One allocation
/// per transfer is nothing next to the transfer's own socket and file.
pub enum DataState {
    /// Active mode: connect in progress, the transfer waits.
    Connecting(Box<TransferRequest>),
    /// Passive mode: connected, no transfer command yet.
    Idle,
    /// Moving bytes.
    Running(Box<TransferRequest>),
}

/// A data connection.
pub struct DataConn {
    /// The socket.
    pub stream: Stream,
    /// The owning control connection.
    pub owner: usize,
    /// What it is doing.
    pub state: DataState,
    /// The data (connect) or stall timeout.
    pub timer: Option<TimerId>,
    /// Last time bytes moved (the stall timeout is lazy: it is checked
    /// against this when it fires, not reset per chunk).
    pub last_progress: Instant,
    /// When the transfer started.
    pub started: Instant,
    /// Bytes moved so far.
    pub bytes: u64,
}

#[cfg(test)]
mod tests {
    /// An idle session costs its slab entry (plus a timer node and its user
    /// name): keep the entry small. Target: 0.5 KiB of user space per idle
    /// logged-in session in all (plain), 4 KiB under TLS (issue 11), where
    /// rustls's own state is ~3.3 KiB and this entry is most of the rest.
    ///
    /// 312 bytes in a debug build, 296 in a release build (mio keeps a
    /// selector id in each socket only under `debug_assertions`): 288 after
    /// issue 11's follow-up, plus a session's two transfer rates (issue 13,
    /// `Login::rates`, two `u32`s fixed at login), which no padding took.
    #[test]
    fn slab_entry_stays_small() {
        let size = std::mem::size_of::<super::Entry>();
        println!("size_of::<Entry>() = {size}");
        let limit = if cfg!(debug_assertions) { 312 } else { 296 };
        assert!(size <= limit, "Entry grew to {size} bytes (limit {limit})");
    }
}
