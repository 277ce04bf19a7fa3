//! The one stream type of control and data connections (rule 9 of the
//! design): plain TCP, or TCP with a TLS connection (AUTH TLS, implicit
//! FTPS, PROT P; see `crate::tls::stream`). The reactor and the DTP read
//! and write it the same way either way; only zero-copy paths (`sendfile`,
//! `splice`) ask `zero_copy` first, since they would bypass TLS.
//!
//! Owns a connected socket; knows how to read, write, register and report
//! its errors. Knows nothing of FTP.

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};

use mio::net::TcpStream;
use mio::{Interest, Registry, Token};

/// A control or data connection's byte stream.
#[derive(Debug)]
pub enum Stream {
    /// Plain TCP.
    Plain(TcpStream),
    /// TCP under TLS (boxed: the rustls connection is ~1 KiB, and the slab
    /// entry of a plain session stays small).
    #[cfg(feature = "tls")]
    Tls(TcpStream, Box<TlsStream>),
    /// Plain TCP again after CCC, with the plaintext the client sent in
    /// the same segments as its `close_notify` still to be read (less
    /// than one TLS read buffer); plain once that is read. Boxed: a rare,
    /// short state, and the slab entry of every session is as big as its
    /// biggest variant.
    #[cfg(feature = "tls")]
    Cleared(TcpStream, Box<Vec<u8>>),
    /// Between states (only while `start_tls`/`end_tls` swap them).
    Gone,
}

#[cfg(feature = "tls")]
use crate::tls::stream::{Role, TlsStream};
#[cfg(feature = "tls")]
use crate::tls::OwnerId;

/// Run `f` on a connection's TLS with a panic inside it (rustls is a
/// parser of hostile input, and a panic there would end every session of
/// the reactor) turned into an error that closes this connection only.
#[cfg(feature = "tls")]
fn guarded<T>(t: &mut TlsStream, f: impl FnOnce(&mut TlsStream) -> io::Result<T>) -> io::Result<T> {
    match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(t))) {
        Ok(r) => r,
        Err(_) => {
            log::error!("BUG: panic inside TLS processing; closing this connection only");
            t.poison();
            Err(io::Error::new(io::ErrorKind::InvalidData, "TLS processing panicked"))
        }
    }
}

/// Unsent plaintext handed to TLS when it starts (`AUTH TLS`'s `234`): it
/// leaves before the first TLS byte.
pub type Preface = Vec<u8>;

impl Stream {
    /// Wrap a freshly accepted or connected socket, with `TCP_NODELAY`
    /// (replies and small files should not wait ~40 ms for a delayed ACK).
    pub fn plain(tcp: TcpStream) -> Stream {
        let _ = tcp.set_nodelay(true);
        Stream::Plain(tcp)
    }

    /// A socket accepted from a listener prepared with `prepare_listener`:
    /// it inherits `TCP_NODELAY` (and, on the control listener,
    /// `SO_OOBINLINE`), so nothing is set per connection.
    pub fn accepted(tcp: TcpStream) -> Stream {
        Stream::Plain(tcp)
    }

    /// The socket.
    fn tcp(&self) -> &TcpStream {
        match self {
            Stream::Plain(s) => s,
            #[cfg(feature = "tls")]
            Stream::Tls(s, _) | Stream::Cleared(s, _) => s,
            Stream::Gone => unreachable!("a stream is only Gone inside start_tls/end_tls"),
        }
    }

    fn tcp_mut(&mut self) -> &mut TcpStream {
        match self {
            Stream::Plain(s) => s,
            #[cfg(feature = "tls")]
            Stream::Tls(s, _) | Stream::Cleared(s, _) => s,
            Stream::Gone => unreachable!("a stream is only Gone inside start_tls/end_tls"),
        }
    }

    /// Whether bytes may go between the socket and a file in the kernel
    /// (`sendfile`, `splice`): not under TLS.
    pub fn zero_copy(&self) -> bool {
        matches!(self, Stream::Plain(_))
    }

    /// Under TLS (whether or not its handshake is done).
    pub fn is_tls(&self) -> bool {
        #[cfg(feature = "tls")]
        return matches!(self, Stream::Tls(..));
        #[cfg(not(feature = "tls"))]
        false
    }

    /// Whether a read shorter than asked means the socket is drained (so
    /// no read just for `WouldBlock` is needed): only for plain TCP; TLS
    /// and a stream with bytes of its own say nothing of the socket.
    pub fn short_read_drains(&self) -> bool {
        matches!(self, Stream::Plain(_))
    }

    /// Under TLS and its handshake is not done yet.
    pub fn is_handshaking(&self) -> bool {
        match self {
            #[cfg(feature = "tls")]
            Stream::Tls(_, t) => t.is_handshaking(),
            _ => false,
        }
    }

    /// Under TLS, the owner of the session its handshake resumed (see
    /// `TlsStream::kept_session_of`).
    #[cfg(feature = "tls")]
    pub fn tls_kept_session_of(&self) -> Option<OwnerId> {
        match self {
            Stream::Tls(_, t) => t.kept_session_of(),
            _ => None,
        }
    }

    /// "TLSv1_3 TLS13_AES_128_GCM_SHA256 full" under TLS, for the log.
    pub fn describe_tls(&self) -> Option<String> {
        match self {
            #[cfg(feature = "tls")]
            Stream::Tls(_, t) => Some(t.describe()),
            _ => None,
        }
    }

    /// Start TLS as the server on this connection; `preface` leaves first.
    /// How the handshake ends is counted in `metrics`.
    #[cfg(feature = "tls")]
    pub fn start_tls(
        &mut self,
        config: &std::sync::Arc<rustls::ServerConfig>,
        owner: OwnerId,
        role: Role,
        preface: Preface,
        metrics: &std::sync::Arc<crate::metrics::Metrics>,
    ) -> io::Result<()> {
        let mut tls = TlsStream::new(config, owner, role, preface).map_err(io::Error::other)?;
        tls.count_handshake_in(metrics.clone());
        *self = match std::mem::replace(self, Stream::Gone) {
            Stream::Plain(s) | Stream::Tls(s, _) | Stream::Cleared(s, _) => Stream::Tls(s, tls),
            Stream::Gone => return Err(io::ErrorKind::NotConnected.into()),
        };
        Ok(())
    }

    /// Send TLS bytes that wait (handshake records, the tail of a record,
    /// `close_notify`); `WouldBlock` if some still wait. Plain: nothing.
    pub fn flush_tls(&mut self) -> io::Result<()> {
        match self {
            #[cfg(feature = "tls")]
            Stream::Tls(s, t) => guarded(t, |t| t.flush(s)),
            _ => Ok(()),
        }
    }

    /// Under TLS: finish the handshake if a transfer had nothing to move,
    /// then send `close_notify` (once) and what waits; `WouldBlock` until
    /// all of it is out. Plain: nothing.
    pub fn close_notify(&mut self) -> io::Result<()> {
        match self {
            #[cfg(feature = "tls")]
            Stream::Tls(s, t) => guarded(t, |t| {
                t.complete_handshake(s)?;
                t.close_notify(s)
            }),
            _ => Ok(()),
        }
    }

    /// CCC (RFC 4217 §6): once the client's `close_notify` arrives, the
    /// connection is plain again (see `read`).
    pub fn begin_clear(&mut self) {
        #[cfg(feature = "tls")]
        if let Stream::Tls(_, t) = self {
            t.begin_clear();
        }
    }

    /// Back to plain TCP; what the client sent after its `close_notify`
    /// is plaintext, read first.
    #[cfg(feature = "tls")]
    fn end_tls(&mut self) {
        *self = match std::mem::replace(self, Stream::Gone) {
            Stream::Tls(s, t) => {
                let rest = t.into_leftover();
                if rest.is_empty() {
                    Stream::Plain(s)
                } else {
                    Stream::Cleared(s, Box::new(rest))
                }
            }
            other => other,
        };
    }

    /// Read and drop up to `max` bytes from the socket itself (before a
    /// close, so that it is a FIN and not a RST); TLS is not decrypted.
    pub fn discard_input(&mut self, max: usize) {
        let mut sink = [0u8; 4096];
        let mut left = max;
        let s = self.tcp_mut();
        while left > 0 {
            match s.read(&mut sink[..left.min(4096)]) {
                Ok(0) | Err(_) => break,
                Ok(n) => left -= n,
            }
        }
    }

    /// Register for both readable and writable readiness, once: mio is
    /// edge-triggered, so the reactor never needs to re-register.
    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(self.tcp_mut(), token, Interest::READABLE | Interest::WRITABLE)
    }

    /// Take the socket out of the poll (a rate-limited upload paused by the
    /// wheel: arriving bytes would wake the loop for nothing); `register`
    /// puts it back, and reports it at once if it is readable.
    pub fn deregister(&mut self, registry: &Registry) -> io::Result<()> {
        registry.deregister(self.tcp_mut())
    }

    /// Register a control connection: also for priority readiness
    /// (`EPOLLPRI`), which tells that urgent data (an ABOR sent with
    /// `MSG_OOB`) arrived, so the reader knows to read past the urgent mark.
    pub fn register_control(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(self.tcp_mut(), token, Interest::READABLE | Interest::WRITABLE | Interest::PRIORITY)
    }

    /// Write as much of `buf` as the socket takes now; how much it took, or
    /// the error that lost the connection. With `last` (the bytes before
    /// the server closes) they may wait in the socket for the close's FIN
    /// and leave with it on one segment: one packet and one wake-up of the
    /// client instead of two.
    pub fn write_now(&mut self, buf: &[u8], last: bool) -> io::Result<usize> {
        match self.flush_tls() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(0),
            Err(e) => return Err(e),
            Ok(()) => {}
        }
        let mut sent = 0;
        while sent < buf.len() {
            let r = match self {
                Stream::Plain(s) if last => crate::sys::send_more(s.as_raw_fd(), &buf[sent..]),
                _ => Write::write(self, &buf[sent..]),
            };
            match r {
                Ok(0) => break,
                Ok(n) => sent += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) => return Err(e),
            }
        }
        Ok(sent)
    }

    /// The peer, if connected (a non-blocking connect in progress gives `NotConnected`).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.tcp().peer_addr()
    }

    /// The pending socket error (`SO_ERROR`), e.g. a refused connect.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.tcp().take_error()
    }
}

/// Set on a listener the options its accepted sockets inherit (Linux copies
/// the socket's flags at accept): `TCP_NODELAY` always; for the control
/// listener also `SO_OOBINLINE`, so that an ABOR sent as urgent data stays
/// in the stream (see `sys::set_oobinline`).
pub fn prepare_listener(listener: &mio::net::TcpListener, control: bool) {
    let fd = listener.as_raw_fd();
    let _ = crate::sys::set_nodelay(fd);
    if control {
        let _ = crate::sys::set_oobinline(fd);
        let _ = crate::sys::set_send_buffer(fd, CONTROL_SEND_BUFFER_BYTES);
        let _ = crate::sys::set_receive_buffer(fd, CONTROL_RECEIVE_BUFFER_BYTES);
        let _ = crate::sys::set_backlog(fd, CONTROL_BACKLOG);
    }
}

/// The control listener's backlog (mio's default is 1,024): a flood of
/// connections that reset at once fills a short queue for an instant, and
/// an honest client's SYN dropped then waits a whole second to be sent
/// again. The kernel caps it at `net.core.somaxconn` (4,096 by default).
pub const CONTROL_BACKLOG: i32 = 4096;

/// The kernel receive buffer of a control connection, in bytes (Linux
/// reserves twice this). Commands are lines of at most a few kilobytes;
/// what a session that stopped reading (busy, or its client not reading
/// replies) leaves in the kernel is bounded by this instead of the
/// megabytes autotuning would grant a flooding client.
pub const CONTROL_RECEIVE_BUFFER_BYTES: usize = 16 * 1024;

/// The kernel send buffer of a control connection, in bytes (Linux
/// reserves twice this). Replies are small; a client that does not read
/// them should meet the server's reply budget after a few kilobytes, not
/// after the megabytes an autotuned loopback buffer takes — until then the
/// loop would keep running its commands. It also bounds the kernel memory
/// a non-reading client holds.
pub const CONTROL_SEND_BUFFER_BYTES: usize = 32 * 1024;

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.read(buf),
            #[cfg(feature = "tls")]
            Stream::Tls(s, t) => {
                let r = guarded(t, |t| t.read(s, buf));
                if matches!(r, Ok(0)) && t.is_clearing() {
                    // CCC done: the client's close_notify came (or it went
                    // on in the clear); what follows is plaintext.
                    self.end_tls();
                    return self.read(buf);
                }
                r
            }
            #[cfg(feature = "tls")]
            Stream::Cleared(_, rest) => {
                let n = rest.len().min(buf.len());
                buf[..n].copy_from_slice(&rest[..n]);
                rest.drain(..n);
                if rest.is_empty() {
                    if let Stream::Cleared(s, _) = std::mem::replace(self, Stream::Gone) {
                        *self = Stream::Plain(s);
                    }
                }
                Ok(n)
            }
            Stream::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
            #[cfg(feature = "tls")]
            Stream::Tls(s, t) => guarded(t, |t| t.write(s, buf)),
            #[cfg(feature = "tls")]
            Stream::Cleared(s, _) => s.write(buf),
            Stream::Gone => Err(io::ErrorKind::NotConnected.into()),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        self.flush_tls()
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        self.tcp().as_raw_fd()
    }
}

impl crate::dtp::transfer::DataStream for Stream {
    fn zero_copy(&self) -> bool {
        Stream::zero_copy(self)
    }
}

/// `WouldBlock`: wait for readiness.
pub fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock
}

/// `Interrupted`: retry at once.
pub fn interrupted(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::Interrupted
}
