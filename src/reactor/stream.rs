//! The one stream type of control and data connections (rule 9 of the
//! design): plain TCP today; a `rustls` variant for AUTH TLS / PROT P joins
//! this enum without changing the reactor or the DTP.
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
}

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

    /// Register for both readable and writable readiness, once: mio is
    /// edge-triggered, so the reactor never needs to re-register.
    pub fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        match self {
            Stream::Plain(s) => registry.register(s, token, Interest::READABLE | Interest::WRITABLE),
        }
    }

    /// Register a control connection: also for priority readiness
    /// (`EPOLLPRI`), which tells that urgent data (an ABOR sent with
    /// `MSG_OOB`) arrived, so the reader knows to read past the urgent mark.
    pub fn register_control(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        match self {
            Stream::Plain(s) => {
                registry.register(s, token, Interest::READABLE | Interest::WRITABLE | Interest::PRIORITY)
            }
        }
    }

    /// Write as much of `buf` as the socket takes now; how much it took, or
    /// the error that lost the connection. With `last` (the bytes before
    /// the server closes) they may wait in the socket for the close's FIN
    /// and leave with it on one segment: one packet and one wake-up of the
    /// client instead of two.
    pub fn write_now(&mut self, buf: &[u8], last: bool) -> io::Result<usize> {
        let mut sent = 0;
        while sent < buf.len() {
            let r = match self {
                Stream::Plain(s) if last => crate::sys::send_more(s.as_raw_fd(), &buf[sent..]),
                Stream::Plain(s) => s.write(&buf[sent..]),
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
        match self {
            Stream::Plain(s) => s.peer_addr(),
        }
    }

    /// The pending socket error (`SO_ERROR`), e.g. a refused connect.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        match self {
            Stream::Plain(s) => s.take_error(),
        }
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
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Plain(s) => s.write(buf),
        }
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl AsRawFd for Stream {
    fn as_raw_fd(&self) -> RawFd {
        match self {
            Stream::Plain(s) => s.as_raw_fd(),
        }
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
