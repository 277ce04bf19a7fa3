//! Connections from a load balancer before their PROXY protocol header is
//! complete (`--proxy-protocol`, `--proxy-from`; the header itself is
//! `crate::proxy`'s). Such a connection is an `Entry::Proxy` holding only
//! its socket: no session, no greeting, no buffer. Each readable event
//! peeks (`MSG_PEEK`) at most `proxy::MAX_HEADER_BYTES` into the control
//! read scratch; once a whole header is there, exactly its bytes are read
//! off the socket, and the connection becomes what it was accepted for:
//! - on the control (or implicit FTPS) listener, a control connection
//!   whose session's peer is the client the header names, so logs,
//!   xferlog, `--max-per-ip`, failed-login accounting and the PORT/EPRT and
//!   passive checks all use the real client (`new_control` as for any
//!   connection, greeting included);
//! - on a passive listener, the session's data connection, if the header
//!   names the session's client (otherwise refused, as a foreign
//!   connection is).
//!
//! Peeking leaves the client's first bytes (a command sent with the
//! header, a TLS ClientHello, STOR data) in the socket, where the new
//! entry reads them as from any socket: nothing of the header is parsed as
//! FTP, and nothing after it is lost. Linux raises an edge-triggered event
//! for every segment that arrives, so a header split over many segments is
//! peeked again as each comes.
//!
//! # Bounds
//! - At most `--max-clients` connections wait for a header at once, over
//!   all workers (counted in `Shared`); more are closed at accept.
//! - A control connection waits at most `--login-timeout` for its header,
//!   a data connection `--data-timeout`; then it is closed.
//! - A peek reads at most `proxy::MAX_HEADER_BYTES` (1 KiB); a header
//!   longer than its bound, or bytes that are no header, close at once.
//!
//! # Invariants
//! - `Proxying::awaiting` is the number of `Entry::Proxy` in the slab, and
//!   each of them holds one `Shared::acquire_awaiting_header`.
//! - An `Entry::Proxy` always has its timer in the wheel.
//! - A connection from outside `--proxy-from` never becomes an
//!   `Entry::Proxy`, and one inside it never skips the header.

use super::*;
use crate::proxy::{self, Origin, Parsed};

/// What waiting for headers shares: how many wait.
pub(super) struct Proxying {
    pub(super) awaiting: usize,
}

/// A balancer's connection whose header is not complete yet.
pub struct Awaiting {
    /// The socket (registered for readable events only).
    tcp: TcpStream,
    /// The balancer's end of it.
    peer: SocketAddr,
    /// What it becomes once its header is in.
    purpose: Purpose,
    /// Its deadline: the login or data timeout.
    timer: Option<crate::timer::TimerId>,
}

/// What a connection was accepted for.
#[derive(Clone, Copy)]
enum Purpose {
    /// A control connection; `implicit`: from the implicit FTPS listener.
    Control { implicit: bool },
    /// A data connection to the passive listener `pasv` of the session at
    /// `owner` (named by `serial`, as a key may be reused meanwhile).
    Data { pasv: usize, owner: usize, serial: u64 },
}

impl Server {
    /// A connection accepted on the control or implicit FTPS listener under
    /// `--proxy-protocol`: from a balancer, it waits for its header; from
    /// anyone else, it is closed without a byte (a client cannot skip the
    /// balancer and pass for another).
    pub(super) fn accept_proxied_control(&mut self, tcp: TcpStream, peer: SocketAddr, implicit: bool) {
        let peer = session::canonical(peer);
        if !self.env.config.is_proxy_source(peer.ip()) {
            info!("refused {peer}: not in --proxy-from (a PROXY protocol header is required)");
            return;
        }
        let wait = self.env.config.login_timeout;
        self.await_header(tcp, peer, Purpose::Control { implicit }, wait);
    }

    /// A connection from a balancer to the passive listener `pasv` of the
    /// session at `owner`: it waits for its header, and the listener for
    /// the right client.
    pub(super) fn accept_proxied_data(&mut self, pasv: usize, owner: usize, tcp: TcpStream, peer: SocketAddr) {
        let Some(Entry::Ctrl(c)) = self.slab.get(owner) else { return };
        let purpose = Purpose::Data { pasv, owner, serial: c.serial };
        let wait = self.env.config.data_timeout;
        self.await_header(tcp, peer, purpose, wait);
    }

    fn await_header(&mut self, mut tcp: TcpStream, peer: SocketAddr, purpose: Purpose, wait: Duration) {
        if !self.shared.acquire_awaiting_header() {
            // The bound is --max-clients connections waiting at once.
            self.env.metrics.refused(crate::metrics::Limit::MaxClients);
            warn!("refused {peer}: {} connections already wait for their PROXY protocol header (--max-clients)", self.shared.awaiting_header());
            return;
        }
        let key = self.slab.vacant_key();
        if let Err(e) = self.poll.registry().register(&mut tcp, Token(key), Interest::READABLE) {
            warn!("register {peer}: {e}");
            self.shared.release_awaiting_header();
            return;
        }
        let timer = Some(self.wheel.schedule(self.now + wait, key));
        self.slab.insert(Entry::Proxy(Awaiting { tcp, peer, purpose, timer }));
        self.proxy.awaiting += 1;
        // The header may have come with the connection (HAProxy sends it at
        // once): its edge was raised before the registration.
        self.wake_later(key);
    }

    /// Bytes arrived on a connection waiting for its header.
    pub(super) fn proxy_ready(&mut self, key: usize) {
        let Some(Entry::Proxy(w)) = self.slab.get(key) else { return };
        let mut buf = std::mem::take(&mut self.ctl.read_buf);
        let want = proxy::MAX_HEADER_BYTES.min(buf.len());
        let peeked = loop {
            match w.tcp.peek(&mut buf[..want]) {
                Err(e) if interrupted(&e) => continue,
                other => break other,
            }
        };
        let (peer, purpose) = (w.peer, w.purpose);
        let parsed = match peeked {
            Ok(0) => Err("closed before its PROXY protocol header".to_string()),
            Ok(n) => match proxy::parse(&buf[..n]) {
                Parsed::Invalid(why) => Err(format!("{why}: {}", sanitize(&buf[..n.min(64)]))),
                other => Ok(other),
            },
            Err(e) if would_block(&e) => Ok(Parsed::Incomplete),
            Err(e) => Err(format!("read: {e}")),
        };
        let (len, origin) = match parsed {
            Ok(Parsed::Incomplete) => {
                self.ctl.read_buf = buf;
                return;
            }
            Ok(Parsed::Header { len, origin }) => (len, origin),
            Ok(Parsed::Invalid(_)) => unreachable!("mapped to Err above"),
            Err(why) => {
                self.ctl.read_buf = buf;
                info!("closed {peer}: {why}");
                self.close_entry(key);
                return;
            }
        };
        // Read exactly the header: the bytes after it stay in the socket.
        let consumed = match self.slab.get_mut(key) {
            Some(Entry::Proxy(w)) => read_exactly(&mut w.tcp, &mut buf[..len]),
            _ => Ok(()),
        };
        self.ctl.read_buf = buf;
        if let Err(e) = consumed {
            info!("closed {peer}: reading its PROXY protocol header: {e}");
            self.close_entry(key);
            return;
        }
        let Some(mut tcp) = self.take_awaiting(key) else { return };
        if let Err(e) = self.poll.registry().deregister(&mut tcp) {
            warn!("deregister {peer}: {e}");
            return;
        }
        let real = match origin {
            Origin::Proxied { source, .. } => source,
            Origin::Local => peer,
        };
        match purpose {
            Purpose::Control { implicit } => {
                info!("{real}: connected through {peer} (PROXY protocol{})",
                    if origin == Origin::Local { ", LOCAL or UNKNOWN: the balancer's own address" } else { "" });
                let next = self.slab.vacant_key();
                let serial = self.accept.serial;
                self.new_control(tcp, real, implicit);
                // A command sent with the header raises no new edge.
                if matches!(self.slab.get(next), Some(Entry::Ctrl(c)) if c.serial != serial) {
                    self.wake_later(next);
                }
            }
            Purpose::Data { pasv, owner, serial } => {
                let listening = matches!(self.slab.get(pasv), Some(Entry::Pasv(p)) if p.owner == owner);
                let Some(Entry::Ctrl(c)) = self.slab.get(owner) else { return };
                if c.serial != serial || !listening {
                    ctx_log!(info, owner, c.session, "data connection through {peer} came after its listener closed");
                    return;
                }
                if real.ip() != c.session.peer().ip() && !self.env.config.insecure_pasv_any_peer {
                    ctx_log!(warn, owner, c.session, "refused data connection from foreign address {real} (through {peer})");
                    return;
                }
                let next = self.slab.vacant_key();
                self.data_connected(pasv, owner, tcp);
                if matches!(self.slab.get(next), Some(Entry::Data(d)) if d.owner == owner) {
                    self.wake_later(next);
                }
            }
        }
    }

    /// Its deadline passed with no complete header.
    pub(super) fn proxy_timeout(&mut self, key: usize) {
        if let Some(Entry::Proxy(w)) = self.slab.get_mut(key) {
            w.timer = None;
            info!("closed {}: no PROXY protocol header in time", w.peer);
            self.close_entry(key);
        }
    }

    /// Close the connections still waiting for their header at shutdown:
    /// at its start the control ones (no session to drain), and with
    /// `data_too` once the grace period is over (before it, a passive data
    /// connection may still be a transfer's that is allowed to finish).
    pub(super) fn close_awaiting(&mut self, data_too: bool) {
        let keys: Vec<usize> = self
            .slab
            .iter()
            .filter(|(_, e)| matches!(e, Entry::Proxy(w) if data_too || matches!(w.purpose, Purpose::Control { .. })))
            .map(|(k, _)| k)
            .collect();
        for key in keys {
            self.close_entry(key);
        }
    }

    /// The bookkeeping of an `Entry::Proxy` that `close_entry` turned into
    /// a tombstone; its socket closes when `w` drops.
    pub(super) fn forget_awaiting(&mut self, w: Awaiting) {
        self.proxy.awaiting -= 1;
        self.shared.release_awaiting_header();
        if let Some(id) = w.timer {
            self.wheel.cancel(id);
        }
    }

    /// Take the socket out of an `Entry::Proxy`, leaving a tombstone.
    fn take_awaiting(&mut self, key: usize) -> Option<TcpStream> {
        let entry = self.slab.get_mut(key)?;
        if !matches!(entry, Entry::Proxy(_)) {
            return None;
        }
        let Entry::Proxy(w) = std::mem::replace(entry, Entry::Closed) else { return None };
        self.closed.push(key);
        self.proxy.awaiting -= 1;
        self.shared.release_awaiting_header();
        if let Some(id) = w.timer {
            self.wheel.cancel(id);
        }
        Some(w.tcp)
    }
}

/// Read exactly `buf.len()` bytes that a peek has shown are in the socket.
fn read_exactly(tcp: &mut TcpStream, buf: &mut [u8]) -> io::Result<()> {
    let mut got = 0;
    while got < buf.len() {
        match tcp.read(&mut buf[got..]) {
            Ok(0) => return Err(io::ErrorKind::UnexpectedEof.into()),
            Ok(n) => got += n,
            Err(e) if interrupted(&e) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(())
}
