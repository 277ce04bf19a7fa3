//! Accepting control connections and the limits that apply then: the
//! connection limits (total and per address), eviction of the oldest
//! session that has not logged in, and the per-address share of passive
//! listeners and data connections.
//!
//! It never reads or writes a session's commands (see `control`).

use super::*;

/// What accepting owns: the control listener and this reactor's own
/// count of sessions. The counts behind the limits (in all and per
/// address, and the per-address share of data slots) are in `Shared`,
/// one for every worker, charged here (`acquire_data_slot` below too: it
/// is a limit charged to the client's address like `--max-per-ip`).
///
/// # Invariants
/// - `ctrl_count` is the number of `Entry::Ctrl` in this slab, each of
///   them charged once to `Shared` (`acquire_client`).
/// - `serial` grows by one per accepted session and is never reused, so a
///   `(key, serial)` pair names one session even after its key is reused.
/// - `accept_paused` is true exactly while an `ACCEPT_RETRY` timer is in
///   the wheel; `balance_retry`, while a `BALANCE_RETRY` timer is.
pub(super) struct Accepting {
    /// The control listener's slab key; `None` once shutdown closed it.
    pub(super) listener_key: Option<usize>,
    /// The address the control listener is bound to.
    pub(super) local_addr: SocketAddr,
    /// The implicit FTPS listener's slab key (TLS from the first byte).
    pub(super) implicit_key: Option<usize>,
    /// The address it is bound to.
    pub(super) implicit_addr: Option<SocketAddr>,
    pub(super) ctrl_count: usize,
    /// Sessions in connection order, for eviction of the oldest
    /// unauthenticated one at the limit; entries may be stale (checked by serial).
    pub(super) unauth: std::collections::VecDeque<(usize, u64)>,
    /// The serial of the newest session (see `next_serial`).
    pub(super) serial: u64,
    /// `accept` failed for lack of descriptors; retried from the wheel.
    pub(super) accept_paused: bool,
    /// The listeners (keys) whose accept queue every worker shares (socket
    /// activation with `--workers N`): accepts from them are balanced by
    /// session count (see `Shared::fewer_elsewhere`).
    pub(super) shared_queues: [Option<usize>; 2],
    /// A connection was left to the other workers; this one looks again
    /// at `BALANCE_RETRY`.
    pub(super) balance_retry: bool,
}

impl Server {
    /// Charge one more passive listener or data connection to the session
    /// at `owner`'s client address, if it holds fewer than
    /// `--max-data-per-ip` (over all workers), so one address cannot take
    /// every data slot. Released by `release_data_slot`.
    pub(super) fn acquire_data_slot(&self, owner: usize) -> bool {
        let Some(Entry::Ctrl(c)) = self.slab.get(owner) else { return false };
        if !self.shared.acquire_data_slot(c.session.peer().ip()) {
            self.env.metrics.refused(Limit::MaxDataPerIp);
            ctx_log!(warn, owner, c.session, "data connection limit for this address ({}) reached", self.env.config.max_data_per_ip);
            return false;
        }
        true
    }

    /// A data connection takes over its passive listener's slot (see
    /// `Shared::hand_over_data_slot`).
    pub(super) fn hand_over_data_slot(&self, owner: usize) {
        if let Some(Entry::Ctrl(c)) = self.slab.get(owner) {
            self.shared.hand_over_data_slot(c.session.peer().ip());
        }
    }

    pub(super) fn release_data_slot(&mut self, owner: usize) {
        let Some(Entry::Ctrl(c)) = self.slab.get(owner) else { return };
        self.shared.release_data_slot(c.session.peer().ip());
    }

    /// Accept from every listener whose queue other workers share: woken
    /// by a worker that left connections to this one (`balance`), or at
    /// `BALANCE_RETRY` (take what is left).
    pub(super) fn accept_shared_queues(&mut self, balance: bool) {
        for l in self.accept.shared_queues.into_iter().flatten() {
            self.accept_control(l, balance);
        }
    }

    /// Accept from the listener `key`, up to `ACCEPT_BUDGET` connections.
    /// From a queue shared with other workers, only while no other worker
    /// holds fewer sessions, unless `balance` is false (the retry: whatever
    /// the others left in the queue is taken).
    pub(super) fn accept_control(&mut self, key: usize, balance: bool) {
        if self.accept.accept_paused || self.life.shutting_down {
            return;
        }
        let balance = balance && self.accept.shared_queues.contains(&Some(key));
        for _ in 0..ACCEPT_BUDGET {
            if balance && self.shared.fewer_elsewhere(self.worker, self.accept.ctrl_count) {
                self.shared.leave_to_fewer(self.worker, self.accept.ctrl_count);
                if !self.accept.balance_retry {
                    self.accept.balance_retry = true;
                    self.wheel.schedule(self.now + BALANCE_RETRY_AFTER, BALANCE_RETRY);
                }
                return;
            }
            let accepted = match self.slab.get(key) {
                Some(Entry::Listener(l)) => l.accept(),
                _ => return,
            };
            match accepted {
                #[cfg(feature = "proxy")]
                Ok((tcp, peer)) if self.env.config.proxy_protocol => {
                    self.accept_proxied_control(tcp, peer, Some(key) == self.accept.implicit_key)
                }
                Ok((tcp, peer)) => self.new_control(tcp, peer, Some(key) == self.accept.implicit_key),
                Err(e) if would_block(&e) => return,
                Err(e) if interrupted(&e) => continue,
                Err(e) => {
                    // EMFILE/ENFILE/ENOBUFS: back off instead of spinning
                    // on a listener that stays readable.
                    warn!("accept failed: {e}; pausing accepts for {ACCEPT_BACKOFF:?}");
                    self.accept.accept_paused = true;
                    self.wheel.schedule(self.now + ACCEPT_BACKOFF, ACCEPT_RETRY);
                    return;
                }
            }
        }
        self.wake_later(key);
    }

    /// A new control connection; `implicit`: from the implicit FTPS
    /// listener, so TLS starts at once and the greeting waits for it.
    pub(super) fn new_control(&mut self, tcp: TcpStream, peer: SocketAddr, implicit: bool) {
        let peer = session::canonical(peer);
        // Charged to the limits of every worker at once; at `--max-clients`
        // the oldest session of this reactor that has not logged in makes
        // room (another worker's are not ours to close).
        let charged = loop {
            match self.shared.acquire_client(peer.ip()) {
                Err(shared::Refused::Clients) if self.evict_unauthenticated() => continue,
                // None of ours to evict: another worker's (see `shared.rs`).
                Err(shared::Refused::Clients) => break self.shared.take_over_unauthenticated(self.worker, peer.ip()),
                other => break other,
            }
        };
        if let Err(why) = charged {
            // Refused before any per-session allocation.
            self.env.metrics.refused(if matches!(why, shared::Refused::Clients) { Limit::MaxClients } else { Limit::MaxPerIp });
            let mut tcp = tcp;
            self.send_unbuffered(&mut tcp, b"421 Too many connections; try again later.\r\n");
            debug!("refused {peer}: too many connections ({why:?})");
            return;
        }
        let cfg = &self.env.config;
        // Bound to one address, the listener knows our end already.
        let local = if implicit || self.accept.local_addr.ip().is_unspecified() {
            match tcp.local_addr() {
                Ok(a) => a,
                Err(_) => {
                self.shared.release_client(peer.ip());
                return;
            }
            }
        } else {
            self.accept.local_addr
        };
        let mut stream = Stream::accepted(tcp);
        let key = self.slab.vacant_key();
        if let Err(e) = stream.register_control(self.poll.registry(), Token(key)) {
            warn!("register {peer}: {e}");
            self.shared.release_client(peer.ip());
            return;
        }
        self.accept.serial = next_serial();
        #[allow(unused_mut)]
        let mut session = Session::new(peer, local);
        if implicit {
            #[cfg(feature = "tls")]
            {
                let Some(tls) = &self.tls else {
                    self.shared.release_client(peer.ip());
                    return;
                };
                let owner = crate::tls::OwnerId(self.accept.serial);
                if let Err(e) = stream.start_tls(&tls.control, owner, crate::tls::stream::Role::Control, Vec::new(), &self.env.metrics) {
                    warn!("TLS for {peer}: {e}");
                    self.shared.release_client(peer.ip());
                    return;
                }
                session.set_implicit_tls();
            }
        }
        let deadline = self.now + cfg.login_timeout;
        let timer = Some(self.wheel.schedule(deadline, key));
        let ctrl = Control {
            stream,
            session,
            line: LineBuffer::new(),
            out: Unsent::default(),
            timer,
            data: None,
            serial: self.accept.serial,
            close_after_flush: false,
            read_paused: false,
            read_eof: false,
            listed: self.shared.is_cross_worker(),
            started: self.now,
        };
        if ctrl.listed {
            use std::os::fd::AsRawFd;
            self.shared.note_unauthenticated(self.worker, self.accept.serial, ctrl.stream.as_raw_fd(), peer.ip());
        }
        ctx_log!(info, key, ctrl.session, "connected");
        let mut out = std::mem::take(&mut self.ctl.out);
        out.clear();
        ctrl.session.greeting(&mut out);
        self.slab.insert(Entry::Ctrl(ctrl));
        self.accept.unauth.push_back((key, self.accept.serial));
        if self.accept.unauth.len() > 2 * self.accept.ctrl_count + 64 {
            // Forget sessions that logged in or left (amortised O(1)).
            let slab = &self.slab;
            self.accept.unauth.retain(|&(k, serial)| matches!(slab.get(k), Some(Entry::Ctrl(c)) if c.serial == serial && !c.session.is_logged_in()));
        }
        self.accept.ctrl_count += 1;
        self.shared.publish_sessions(self.worker, self.accept.ctrl_count);
        self.env.metrics.session_opened();
        self.send(key, &out);
        self.ctl.out = out;
    }

    /// At the connection limit, make room by closing the oldest session that
    /// has not logged in: honest clients log in within a second, so a flood
    /// of silent or trickling connections (slowloris) cannot lock them out.
    pub(super) fn evict_unauthenticated(&mut self) -> bool {
        while let Some((key, serial)) = self.accept.unauth.pop_front() {
            let victim = matches!(self.slab.get(key), Some(Entry::Ctrl(c)) if c.serial == serial && !c.session.is_logged_in() && !c.session.is_busy());
            if victim {
                if let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) {
                    ctx_log!(info, key, c.session, "evicted: connection limit reached and not logged in");
                    const BUSY: &[u8] = b"421 Server busy; connection closed.\r\n";
                    if let Ok(n) = c.stream.write(BUSY) {
                        self.env.metrics.replies(BUSY);
                        self.env.metrics.sent(Channel::Control, n as u64);
                    }
                }
                self.close_control(key, "evicted");
                return true;
            }
        }
        false
    }
}

impl Server {
    /// A reply written once, best effort, to a connection that is then
    /// dropped (a refusal), counted like any other.
    fn send_unbuffered(&self, tcp: &mut TcpStream, reply: &[u8]) {
        if let Ok(n) = tcp.write(reply) {
            self.env.metrics.replies(reply);
            self.env.metrics.sent(Channel::Control, n as u64);
        }
    }
}

/// A session serial unique in the process, not only in this reactor: it is
/// also the id a TLS session carries to bind data connections to their
/// control connection (`crate::tls::OwnerId`), and reactors per core
/// (issue 12) must not hand out the same one.
fn next_serial() -> u64 {
    use std::sync::atomic::AtomicU64;
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}
