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
    /// Reply bytes the socket did not take yet (capacity 0 when empty).
    pub out: Vec<u8>,
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

/// A passive listener: accepts one connection, from the control peer only.
pub struct PasvListener {
    /// The socket.
    pub listener: TcpListener,
    /// The owning control connection.
    pub owner: usize,
    /// The data timeout.
    pub timer: Option<TimerId>,
    /// A transfer command that arrived before the client connected.
    pub pending: Option<TransferRequest>,
}

/// What a data connection is doing.
pub enum DataState {
    /// Active mode: connect in progress, the transfer waits.
    Connecting(TransferRequest),
    /// Passive mode: connected, no transfer command yet.
    Idle,
    /// Moving bytes.
    Running(TransferRequest),
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
    /// logged-in session in all.
    #[test]
    fn slab_entry_stays_small() {
        let size = std::mem::size_of::<super::Entry>();
        println!("size_of::<Entry>() = {size}");
        // 392: 384 until issue 13, plus a session's two transfer rates
        // (`Login::rates`, two `u32`s fixed at login), which no padding
        // could take. Still about 0.45 KiB with the timer node and name.
        assert!(size <= 392, "Entry grew to {size} bytes");
    }
}
