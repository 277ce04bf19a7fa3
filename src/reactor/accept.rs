//! Accepting control connections and the limits that apply then: the
//! connection limits (total and per address), eviction of the oldest
//! session that has not logged in, and the per-address share of passive
//! listeners and data connections.
//!
//! It never reads or writes a session's commands (see `control`).

use super::*;

impl Server {
    /// Whether the session at `owner` may open one more passive listener or
    /// data connection: its client address holds fewer than
    /// `--max-data-per-ip`, so one address cannot take every data slot.
    pub(super) fn data_slot_free(&self, owner: usize) -> bool {
        let Some(Entry::Ctrl(c)) = self.slab.get(owner) else { return false };
        let held = self.data_per_ip.get(&c.session.peer().ip()).copied().unwrap_or(0);
        if held as usize >= self.env.config.max_data_per_ip {
            ctx_log!(warn, owner, c.session, "data connection limit for this address ({}) reached", self.env.config.max_data_per_ip);
            return false;
        }
        true
    }

    pub(super) fn take_data_slot(&mut self, owner: usize) {
        if let Some(Entry::Ctrl(c)) = self.slab.get(owner) {
            count_up(&mut self.data_per_ip, c.session.peer().ip());
        }
    }

    pub(super) fn release_data_slot(&mut self, owner: usize) {
        let Some(Entry::Ctrl(c)) = self.slab.get(owner) else { return };
        let ip = c.session.peer().ip();
        count_down(&mut self.data_per_ip, ip);
    }

    pub(super) fn accept_control(&mut self, key: usize) {
        if self.accept_paused || self.life.shutting_down {
            return;
        }
        for _ in 0..ACCEPT_BUDGET {
            let accepted = match self.slab.get(key) {
                Some(Entry::Listener(l)) => l.accept(),
                _ => return,
            };
            match accepted {
                Ok((tcp, peer)) => self.new_control(tcp, peer),
                Err(e) if would_block(&e) => return,
                Err(e) if interrupted(&e) => continue,
                Err(e) => {
                    // EMFILE/ENFILE/ENOBUFS: back off instead of spinning
                    // on a listener that stays readable.
                    warn!("accept failed: {e}; pausing accepts for {ACCEPT_BACKOFF:?}");
                    self.accept_paused = true;
                    self.wheel.schedule(self.now + ACCEPT_BACKOFF, ACCEPT_RETRY);
                    return;
                }
            }
        }
        self.wake_later(key);
    }

    pub(super) fn new_control(&mut self, tcp: TcpStream, peer: SocketAddr) {
        let peer = session::canonical(peer);
        let cfg = &self.env.config;
        let from_ip = self.per_ip.get(&peer.ip()).copied().unwrap_or(0);
        let full = self.ctrl_count >= cfg.max_clients && !self.evict_unauthenticated();
        if full || from_ip as usize >= self.env.config.max_per_ip {
            // Refused before any per-session allocation.
            let mut tcp = tcp;
            let _ = tcp.write(b"421 Too many connections; try again later.\r\n");
            debug!("refused {peer}: too many connections");
            return;
        }
        let cfg = &self.env.config;
        // Bound to one address, the listener knows our end already.
        let local = if self.local_addr.ip().is_unspecified() {
            match tcp.local_addr() {
                Ok(a) => a,
                Err(_) => return,
            }
        } else {
            self.local_addr
        };
        let mut stream = Stream::accepted(tcp);
        let key = self.slab.vacant_key();
        if let Err(e) = stream.register_control(self.poll.registry(), Token(key)) {
            warn!("register {peer}: {e}");
            return;
        }
        self.serial += 1;
        let session = Session::new(peer, local);
        let deadline = self.now + cfg.login_timeout;
        let timer = Some(self.wheel.schedule(deadline, key));
        let ctrl = Control {
            stream,
            session,
            line: LineBuffer::new(),
            out: Vec::new(),
            timer,
            data: None,
            serial: self.serial,
            close_after_flush: false,
            read_paused: false,
            read_eof: false,
            started: self.now,
        };
        ctx_log!(info, key, ctrl.session, "connected");
        let mut out = std::mem::take(&mut self.out);
        out.clear();
        ctrl.session.greeting(&mut out);
        self.slab.insert(Entry::Ctrl(ctrl));
        self.unauth.push_back((key, self.serial));
        if self.unauth.len() > 2 * self.ctrl_count + 64 {
            // Forget sessions that logged in or left (amortised O(1)).
            let slab = &self.slab;
            self.unauth.retain(|&(k, serial)| matches!(slab.get(k), Some(Entry::Ctrl(c)) if c.serial == serial && !c.session.is_logged_in()));
        }
        count_up(&mut self.per_ip, peer.ip());
        self.ctrl_count += 1;
        self.send(key, &out);
        self.out = out;
    }

    /// At the connection limit, make room by closing the oldest session that
    /// has not logged in: honest clients log in within a second, so a flood
    /// of silent or trickling connections (slowloris) cannot lock them out.
    pub(super) fn evict_unauthenticated(&mut self) -> bool {
        while let Some((key, serial)) = self.unauth.pop_front() {
            let victim = matches!(self.slab.get(key), Some(Entry::Ctrl(c)) if c.serial == serial && !c.session.is_logged_in() && !c.session.is_busy());
            if victim {
                if let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) {
                    ctx_log!(info, key, c.session, "evicted: connection limit reached and not logged in");
                    let _ = c.stream.write(b"421 Server busy; connection closed.\r\n");
                }
                self.close_control(key, "evicted");
                return true;
            }
        }
        false
    }
}
