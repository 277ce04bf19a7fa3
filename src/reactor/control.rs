//! Control connections: reading and framing command lines, the queue of
//! lines a busy or paused session keeps (sifted once during a transfer),
//! the reply budget and the per-turn budget, handing lines to the session
//! and carrying out its actions, sending replies, deadlines, and closing.
//!
//! # Invariants
//! - A session runs at most `LINES_PER_TURN` commands and produces at most
//!   `REPLY_BYTES_PER_TURN` of replies per dispatch.
//! - A session with `REPLY_HIGH_WATER_BYTES` unsent stops reading and
//!   running lines until a writable event drains it under
//!   `REPLY_LOW_WATER_BYTES`.

use super::*;

/// What all control connections share, used by one session at a time: the
/// scratch buffers a line passes through on its way in (`read_buf`,
/// `sift_buf`, `cleaned`) and its replies on their way out (`out`), and the
/// turn of the session being dispatched. Reactor-owned so that an idle
/// session holds no buffer (DESIGN.md rule 3).
///
/// # Invariants
/// - The buffers hold nothing meaningful between uses: each use clears or
///   overwrites what it reads, and a use that takes one out
///   (`std::mem::take`) gives it back for its capacity.
/// - `read_buf` is `CTRL_READ_CHUNK_BYTES` long.
/// - `turn` is reset by `new_turn` at the start of every dispatch.
pub(super) struct ControlShared {
    /// Scratch for control reads.
    pub(super) read_buf: Vec<u8>,
    /// The lines the sifter walks (see `sift`); kept for its capacity.
    pub(super) sift_buf: Vec<u8>,
    /// One line, Telnet sequences and line end removed, as the session gets it.
    pub(super) cleaned: Vec<u8>,
    /// Replies being formatted, before `send`.
    pub(super) out: Vec<u8>,
    /// What the session being dispatched may still do (see `Turn`).
    pub(super) turn: Turn,
}

/// One dispatch's share of work for a session: it may run
/// `LINES_PER_TURN` commands and produce `REPLY_BYTES_PER_TURN` of replies
/// before it must wait for the next pass of the loop. A field of its own,
/// so that it can be checked while a session entry is borrowed.
pub(super) struct Turn {
    lines: usize,
    bytes: usize,
}

impl Turn {
    pub(super) fn new() -> Turn {
        Turn { lines: LINES_PER_TURN, bytes: REPLY_BYTES_PER_TURN }
    }

    fn is_over(&self) -> bool {
        self.lines == 0 || self.bytes == 0
    }
}

impl Server {
    /// Write replies, straight to the socket when nothing is queued; only an
    /// unsent tail is copied into the session.
    pub(super) fn send(&mut self, key: usize, bytes: &[u8]) {
        self.ctl.turn.bytes = self.ctl.turn.bytes.saturating_sub(bytes.len());
        let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) else { return };
        if c.listed && c.session.is_logged_in() && self.shared.forget_unauthenticated(c.serial) {
            // Before its `230` leaves: once the client has it, another
            // worker must not evict the session (it would, in the instant
            // between this write and `refresh_deadline`, with the client
            // already connecting again). If another worker took it over
            // first, it stays listed and its socket is shut down: the
            // client sees the close, not a `230`.
            c.listed = false;
        }
        self.env.metrics.replies(bytes);
        if bytes.is_empty() && c.out.is_empty() {
            if c.close_after_flush {
                self.close_control(key, "closed by server");
            }
            return;
        }
        if !c.out.is_empty() {
            c.out.push(bytes);
            self.flush(key);
            return;
        }
        let sent = match c.stream.write_now(bytes, c.close_after_flush) {
            Ok(n) => {
                self.env.metrics.sent(Channel::Control, n as u64);
                n
            }
            Err(e) => {
                debug!("[c{key}] write: {e}");
                self.close_control(key, "connection lost");
                return;
            }
        };
        if sent < bytes.len() {
            c.out.push(&bytes[sent..]);
        } else if c.close_after_flush {
            self.close_control(key, "closed by server");
        }
    }

    pub(super) fn flush(&mut self, key: usize) {
        let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) else { return };
        let sent = match c.stream.write_now(c.out.bytes(), c.close_after_flush) {
            Ok(n) => {
                self.env.metrics.sent(Channel::Control, n as u64);
                n
            }
            Err(e) => {
                debug!("[c{key}] write: {e}");
                self.close_control(key, "connection lost");
                return;
            }
        };
        c.out.consume(sent);
        if c.out.is_empty() && c.close_after_flush {
            self.close_control(key, "closed by server");
        }
    }

    pub(super) fn read_control(&mut self, key: usize, to_eagain: bool) {
        // Its own buffer, not the transfers' scratch: a command read here
        // may start a transfer whose first slice runs at once and needs the
        // scratch (lending one buffer to both made a TYPE A RETR whose data
        // connection was already open read 0 bytes and answer 226).
        // Lines left from an earlier turn go first; more is read only once
        // they are done, so the queue never grows past a read.
        if matches!(self.slab.get(key), Some(Entry::Ctrl(c)) if !c.line.is_empty()) {
            self.drain_lines(key);
        }
        let mut scratch = std::mem::take(&mut self.ctl.read_buf);
        let mut budget = CTRL_READ_BUDGET_BYTES;
        while let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) {
            if c.read_paused || c.close_after_flush || c.read_eof {
                break;
            }
            if self.ctl.turn.is_over() {
                self.wake_later(key);
                break;
            }
            let want = budget.min(CTRL_READ_CHUNK_BYTES);
            match c.stream.read(&mut scratch[..want]) {
                Ok(0) => {
                    // End of input. With whole commands still queued it is
                    // a half-close (`nc -N`, a script piped in): what the
                    // client sent still counts, so finish those commands
                    // and the transfers they start, then close. With none,
                    // the client is gone: cut what runs and close now (a
                    // FIN cannot tell a half-close from a close; queued
                    // commands can).
                    let queued = matches!(line::frame(c.line.bytes(), self.env.config.max_line_bytes), Frame::Line { .. });
                    if !queued {
                        self.close_control(key, "client closed");
                        break;
                    }
                    c.read_eof = true;
                    self.drain_lines(key);
                    self.close_if_input_done(key);
                    break;
                }
                Ok(n) => {
                    self.env.metrics.received(Channel::Control, n as u64);
                    let drains = c.stream.short_read_drains();
                    self.on_bytes(key, &scratch[..n]);
                    budget -= n;
                    if budget == 0 {
                        self.wake_later(key);
                        break;
                    }
                    // A short read drained the socket, and bytes that arrive
                    // later raise a new edge: no read just for EAGAIN. Not
                    // so with urgent data (EPOLLPRI): with SO_OOBINLINE a
                    // read stops at the urgent mark (ftplib sends ABOR's LF
                    // as urgent data), and the rest raises no new edge.
                    // (Under TLS a short read says nothing of the socket.)
                    if n < want && !to_eagain && drains {
                        break;
                    }
                }
                Err(e) if interrupted(&e) => continue,
                Err(e) if would_block(&e) => break,
                Err(e) => {
                    debug!("[c{key}] read: {e}");
                    self.close_control(key, "connection lost");
                    break;
                }
            }
        }
        self.ctl.read_buf = scratch;
    }

    /// Frame and handle lines straight from the read buffer; only a partial
    /// line, or lines that must wait while the session is busy, are copied
    /// into the session's `LineBuffer`.
    pub(super) fn on_bytes(&mut self, key: usize, bytes: &[u8]) {
        let max = self.env.config.max_line_bytes;
        {
            let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) else { return };
            if !c.line.is_empty() {
                c.line.push(bytes);
                self.drain_lines(key);
                return;
            }
        }
        let mut pos = 0;
        while pos < bytes.len() {
            let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) else { return };
            if c.close_after_flush {
                return;
            }
            if c.stream.is_handshaking() {
                // AUTH TLS was the last line: what came after it in the
                // clear is never run (CVE-2011-1575).
                ctx_log!(warn, key, c.session, "discarded {} bytes sent in the clear after AUTH TLS", bytes.len() - pos);
                return;
            }
            if c.session.is_busy() {
                c.line.push(&bytes[pos..]);
                self.check_queue(key);
                return;
            }
            if c.out.len() >= REPLY_HIGH_WATER_BYTES {
                // The client does not read its replies: keep the rest (at
                // most one read) and stop reading until it does.
                c.line.push(&bytes[pos..]);
                c.read_paused = true;
                return;
            }
            if self.ctl.turn.is_over() {
                // This session had its share of the pass: the rest waits
                // (reading stops, see `read_control`) for the next one.
                c.line.push(&bytes[pos..]);
                self.wake_later(key);
                return;
            }
            match line::frame(&bytes[pos..], max) {
                Frame::Line { end, consumed } => {
                    line::clean(&bytes[pos..pos + end], &mut self.ctl.cleaned);
                    pos += consumed;
                    self.run_line(key);
                }
                Frame::Partial => {
                    c.line.push(&bytes[pos..]);
                    return;
                }
                Frame::TooLong => {
                    self.line_too_long(key);
                    return;
                }
            }
        }
    }

    /// Handle queued lines while the session is free and its client reads
    /// its replies; stop reading while it does not.
    pub(super) fn drain_lines(&mut self, key: usize) {
        let max = self.env.config.max_line_bytes;
        loop {
            let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) else { return };
            if c.close_after_flush {
                return;
            }
            if c.session.is_busy() {
                self.check_queue(key);
                return;
            }
            if c.out.len() >= REPLY_HIGH_WATER_BYTES {
                c.read_paused = true;
                return;
            }
            if c.read_paused && c.out.len() <= REPLY_LOW_WATER_BYTES {
                // Bytes may wait in the socket with no new edge to come.
                c.read_paused = false;
                self.wake_later(key);
                continue;
            }
            if self.ctl.turn.is_over() {
                if !c.line.is_empty() {
                    self.wake_later(key);
                }
                return;
            }
            let hint = if c.line.sifted() == 0 { c.line.scanned() } else { 0 };
            match line::frame_from(c.line.bytes(), hint, max) {
                Frame::Line { end, consumed } => {
                    line::clean(&c.line.bytes()[..end], &mut self.ctl.cleaned);
                    c.line.consume(consumed);
                    self.run_line(key);
                }
                Frame::Partial => {
                    c.line.mark_scanned();
                    self.close_if_input_done(key);
                    return;
                }
                Frame::TooLong => {
                    self.line_too_long(key);
                    return;
                }
            }
        }
    }

    /// The client's input ended and every whole line it sent was handled
    /// (and the transfers they started are over): send what is left, then
    /// close. A partial last line without its LF is dropped, as a line
    /// that never ended.
    pub(super) fn close_if_input_done(&mut self, key: usize) {
        let max = self.env.config.max_line_bytes;
        let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) else { return };
        if !c.read_eof || c.close_after_flush || c.session.is_busy() {
            return;
        }
        if matches!(line::frame(c.line.bytes(), max), Frame::Line { .. }) {
            return; // still lines to run (paused on the reply budget)
        }
        c.line.release();
        c.close_after_flush = true;
        self.send(key, &[]);
    }

    /// After a writable event: a session paused because its client did not
    /// read goes on once its unsent replies are under the low-water mark.
    pub(super) fn resume_if_drained(&mut self, key: usize) {
        let Some(Entry::Ctrl(c)) = self.slab.get(key) else { return };
        if c.read_paused && c.out.len() <= REPLY_LOW_WATER_BYTES {
            self.drain_lines(key);
        }
    }

    /// While busy: sift the queue if a transfer runs (ABOR and STAT are
    /// answered at once: they are what clients send during one), and stop
    /// reading once more than a line is queued (back-pressure: the kernel's
    /// socket buffer holds the rest).
    pub(super) fn check_queue(&mut self, key: usize) {
        let max = self.env.config.max_line_bytes;
        self.sift(key);
        if let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) {
            if c.line.len() > max {
                c.read_paused = true;
            }
        }
    }

    /// Look once at each queued line that arrived during a transfer: take an
    /// ABOR or a STAT without argument out and answer it now; keep the
    /// others, in order, for after the transfer. Linear in the bytes that
    /// arrived: each byte is walked once and copied at most twice. STAT's
    /// replies obey the reply budget: past it the sifting (and reading)
    /// stops until the client reads.
    pub(super) fn sift(&mut self, key: usize) {
        let max = self.env.config.max_line_bytes;
        let mut tail = std::mem::take(&mut self.ctl.sift_buf);
        tail.clear();
        match self.slab.get_mut(key) {
            Some(Entry::Ctrl(c)) if matches!(c.session.pending(), Pending::Transfer(_)) => {
                c.line.take_unsifted(&mut tail);
            }
            _ => {
                self.ctl.sift_buf = tail;
                return;
            }
        }
        let mut pos = 0;
        let mut partial = false;
        let mut abort = false;
        while let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) {
            if !matches!(c.session.pending(), Pending::Transfer(_)) || c.close_after_flush {
                break;
            }
            if c.out.len() >= REPLY_HIGH_WATER_BYTES {
                c.read_paused = true;
                break;
            }
            let (end, consumed) = match line::frame(&tail[pos..], max) {
                Frame::Line { end, consumed } => (end, consumed),
                Frame::Partial => {
                    partial = true;
                    break;
                }
                // Left queued: it is refused once the transfer is over.
                Frame::TooLong => break,
            };
            line::clean(&tail[pos..pos + end], &mut self.ctl.cleaned);
            let urgent = match command::parse(&self.ctl.cleaned) {
                Ok(cmd) if cmd.verb == Verb::Abor => Some(Verb::Abor),
                Ok(cmd) if cmd.verb == Verb::Stat && cmd.arg.trim_ascii().is_empty() => Some(Verb::Stat),
                _ => None,
            };
            let Some(verb) = urgent else {
                c.line.push_sifted(&tail[pos..pos + consumed]);
                pos += consumed;
                continue;
            };
            pos += consumed;
            if verb == Verb::Abor {
                abort = true;
                break;
            }
            let progress = match c.data.and_then(|d| self.slab.get(d)) {
                Some(Entry::Data(d)) => d.bytes,
                _ => 0,
            };
            let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) else { break };
            ctx_log!(debug, key, c.session, "<- STAT (during transfer)");
            let mut out = std::mem::take(&mut self.ctl.out);
            out.clear();
            let mut ctx = Ctx { out: &mut out, env: &self.env, now_unix: unix_now() };
            c.session.handle_urgent(verb, progress, &mut ctx);
            self.send(key, &out);
            self.ctl.out = out;
        }
        if let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) {
            c.line.push(&tail[pos..]);
            if partial {
                c.line.mark_scanned();
            }
        }
        self.ctl.sift_buf = tail;
        if abort {
            let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) else { return };
            ctx_log!(debug, key, c.session, "<- ABOR (during transfer)");
            self.abort_transfer(key, TransferError::Aborted, false);
            let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) else { return };
            let mut out = std::mem::take(&mut self.ctl.out);
            out.clear();
            let mut ctx = Ctx { out: &mut out, env: &self.env, now_unix: 0 };
            c.session.aborted(&mut ctx);
            self.send(key, &out);
            self.ctl.out = out;
            self.refresh_deadline(key);
            self.drain_lines(key);
        }
    }

    pub(super) fn line_too_long(&mut self, key: usize) {
        if let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) {
            ctx_log!(info, key, c.session, "command line too long; closing");
            c.line.release();
        }
        self.send_and_close(key, b"500 Command line too long.\r\n");
    }

    pub(super) fn send_and_close(&mut self, key: usize, bytes: &[u8]) {
        if let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) {
            c.close_after_flush = true;
        }
        self.send(key, bytes);
    }

    /// Hand the line in `self.ctl.cleaned` to the session, with a panic in its
    /// handling contained to this session.
    pub(super) fn run_line(&mut self, key: usize) {
        self.ctl.turn.lines = self.ctl.turn.lines.saturating_sub(1);
        let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) else { return };
        let mut out = std::mem::take(&mut self.ctl.out);
        out.clear();
        if log::log_enabled!(log::Level::Debug) {
            let shown = if self.ctl.cleaned.len() >= 5 && self.ctl.cleaned[..5].eq_ignore_ascii_case(b"PASS ") {
                "PASS <redacted>".to_string()
            } else {
                sanitize(&self.ctl.cleaned)
            };
            ctx_log!(debug, key, c.session, "<- {shown}");
        }
        let session = &mut c.session;
        let line = &self.ctl.cleaned;
        let env = &self.env;
        let result = catch_unwind(AssertUnwindSafe(|| {
            let mut ctx = Ctx { out: &mut out, env, now_unix: unix_now() };
            session.handle(line, &mut ctx)
        }));
        let action = match result {
            Ok(a) => a,
            Err(_) => {
                error!("[c{key}] BUG: panic while handling a command; closing this session only");
                out.clear();
                out.extend_from_slice(b"421 Internal error; closing connection.\r\n");
                Action::Close
            }
        };
        self.ctl.out = out;
        self.after_step(key, action);
    }

    /// Carry out an action (adding replies to `self.ctl.out`), send the replies,
    /// and set the control deadline for the session's new state.
    pub(super) fn after_step(&mut self, key: usize, action: Action) {
        let mut out = std::mem::take(&mut self.ctl.out);
        self.perform(key, action, &mut out);
        self.send(key, &out);
        out.clear();
        self.ctl.out = out;
        self.refresh_deadline(key);
    }

    pub(super) fn perform(&mut self, key: usize, action: Action, out: &mut Vec<u8>) {
        match action {
            Action::None => {}
            Action::StartTls => self.start_tls(key, out),
            Action::EndTls => self.end_tls(key, out),
            Action::Close => {
                if let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) {
                    c.close_after_flush = true;
                }
            }
            Action::CheckLogin { user, password } => {
                let Some(Entry::Ctrl(c)) = self.slab.get(key) else { return };
                let serial = c.serial;
                let digest = self.auth.login_cache.digest(&user, &password);
                if let Some(grant) = self.auth.login_cache.get(digest, self.now) {
                    // Answered after this iteration's events, like a helper
                    // verdict (not from inside the handler that asked). The
                    // socket was read to a short read, so no extra pass is
                    // needed: lines that came with PASS wait in the buffer.
                    self.auth.cached_verdicts.push(Verdict { key, serial, grant: Some(grant), digest: None });
                    return;
                }
                let ip = c.session.peer().ip();
                let job = Job { key, serial, ip, user, password, users: self.auth.users.clone(), digest };
                match self.auth.helper.submit(job) {
                    Ok(None) => {}
                    Ok(Some((evicted, evicted_serial))) => {
                        // A flooding address's newest job made room.
                        if matches!(self.slab.get(evicted), Some(Entry::Ctrl(c)) if c.serial == evicted_serial) {
                            if let Some(Entry::Ctrl(c)) = self.slab.get(evicted) {
                                ctx_log!(warn, evicted, c.session, "password check dropped for a fairer share; closing");
                            }
                            self.env.metrics.refused(Limit::PasswordQueue);
                            self.send_and_close(evicted, LOGINS_BUSY);
                        }
                    }
                    Err(full) => {
                        // Waiting would only lengthen the queue for everyone:
                        // refuse now, clearly, and let the client retry.
                        self.env.metrics.refused(Limit::PasswordQueue);
                        if let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) {
                            ctx_log!(warn, key, c.session, "password queue full ({full:?}); closing");
                            out.extend_from_slice(LOGINS_BUSY);
                            c.close_after_flush = true;
                        }
                    }
                }
            }
            Action::Delay(d) => {
                let at = self.now + d;
                if let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) {
                    set_timer(&mut self.wheel, &mut c.timer, at, key);
                }
            }
            Action::OpenPassive { extended } => {
                let result = match self.reuse_passive(key) {
                    Some(addr) => Ok(addr),
                    None => {
                        self.drop_data(key);
                        self.open_passive(key)
                    }
                };
                if let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) {
                    let mut ctx = Ctx { out, env: &self.env, now_unix: 0 };
                    c.session.passive_opened(result, extended, &mut ctx);
                }
            }
            Action::DropData => self.drop_data(key),
            Action::Transfer(req) => self.start_transfer(key, req, out),
        }
    }

    /// AUTH TLS: the replies so far (ending with `234`) go first, in the
    /// clear, then the handshake; lines queued after the AUTH line are
    /// dropped unrun (CVE-2011-1575), and so is the rest of the read they
    /// came in (`on_bytes` stops at a handshaking stream).
    fn start_tls(&mut self, key: usize, out: &mut Vec<u8>) {
        #[cfg(feature = "tls")]
        {
            let Some(tls) = &self.tls else { return };
            let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) else { return };
            let mut preface = c.out.take();
            preface.extend_from_slice(out);
            // The `234` goes out with the handshake, not through `send`.
            self.env.metrics.replies(out);
            self.env.metrics.sent(Channel::Control, preface.len() as u64);
            out.clear();
            if !c.line.is_empty() {
                ctx_log!(warn, key, c.session, "discarded {} bytes queued in the clear after AUTH TLS", c.line.bytes().len());
                c.line.release();
            }
            let owner = crate::tls::OwnerId(c.serial);
            if let Err(e) = c.stream.start_tls(&tls.control, owner, crate::tls::stream::Role::Control, preface, &self.env.metrics) {
                ctx_log!(warn, key, c.session, "cannot start TLS: {e}");
                c.close_after_flush = true;
                return;
            }
            match c.stream.flush_tls() {
                Ok(()) => {}
                Err(e) if would_block(&e) => {}
                Err(e) => {
                    debug!("[c{key}] write: {e}");
                    self.close_control(key, "connection lost");
                }
            }
        }
        #[cfg(not(feature = "tls"))]
        let _ = (key, out);
    }

    /// CCC (RFC 4217 §6): the `200` goes under TLS, then `close_notify`;
    /// after that the control connection is plain again.
    fn end_tls(&mut self, key: usize, out: &mut Vec<u8>) {
        #[cfg(feature = "tls")]
        {
            self.send(key, out);
            out.clear();
            let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) else { return };
            if !c.out.is_empty() {
                // Cannot happen with a reply budget of 64 KiB and a 200
                // line; a client that does not read its replies gets none.
                c.close_after_flush = true;
                return;
            }
            c.stream.begin_clear();
            match c.stream.close_notify() {
                Ok(()) => ctx_log!(info, key, c.session, "CCC: in the clear after the client's close_notify"),
                Err(e) if would_block(&e) => {}
                Err(e) => {
                    debug!("[c{key}] CCC: {e}");
                    self.close_control(key, "connection lost");
                }
            }
        }
        #[cfg(not(feature = "tls"))]
        let _ = (key, out);
    }

    pub(super) fn refresh_deadline(&mut self, key: usize) {
        let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) else { return };
        if c.listed && c.session.is_logged_in() && self.shared.forget_unauthenticated(c.serial) {
            // Logged in: no longer another worker's to evict. (If another
            // worker evicted it first, it stays listed, so that its close
            // releases nothing: its slot was taken over.)
            c.listed = false;
        }
        let cfg = &self.env.config;
        match c.session.deadline() {
            // The login deadline counts from the connection (or the last
            // failed login), not from the last command: a client that sends
            // a command every minute must still log in or go (slowloris).
            Deadline::Login => {
                if c.timer.is_none() {
                    c.timer = Some(self.wheel.schedule(self.now + cfg.login_timeout, key));
                }
            }
            Deadline::Idle => set_timer(&mut self.wheel, &mut c.timer, self.now + cfg.idle_timeout, key),
            Deadline::None => {
                // The failed-login delay keeps its timer; transfers have their own.
                if c.session.pending() != Pending::LoginDelay {
                    if let Some(id) = c.timer.take() {
                        self.wheel.cancel(id);
                    }
                }
            }
        }
    }

    pub(super) fn close_control(&mut self, key: usize, why: &str) {
        let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) else { return };
        if let Some(id) = c.timer.take() {
            self.wheel.cancel(id);
        }
        if c.close_after_flush {
            // Our last reply is sent. Bytes the client sent that we never
            // read (a session paused on a full queue, the rest of an
            // over-long line) would make close(2) send a RST, and a RST
            // can destroy that reply before the client reads it. Discard
            // what is already here (bounded), so the close is a FIN.
            // (The reactor's read buffer may be lent out to the read that
            // led here: a small buffer of its own.)
            let _ = c.stream.close_notify();
            c.stream.discard_input(CLOSE_DISCARD_BYTES);
        } else {
            let _ = c.stream.close_notify();
        }
        let secs = self.now.saturating_duration_since(c.started).as_secs_f64();
        ctx_log!(info, key, c.session, "disconnected ({why}) after {secs:.1}s");
        let ip = c.session.peer().ip();
        if c.session.pending() == Pending::Login {
            // Its password would be hashed for no one.
            self.auth.helper.cancel(key, c.serial);
        }
        self.shared.release_session(c.serial, ip, c.listed);
        self.accept.ctrl_count -= 1;
        self.shared.publish_sessions(self.worker, self.accept.ctrl_count);
        self.env.metrics.session_closed();
        // A transfer cut short by the control connection closing still ends
        // with its log line and xferlog record (incomplete).
        if let Some(d) = c.data {
            if matches!(self.slab.get(d), Some(Entry::Data(DataConn { state: DataState::Running(_) | DataState::Connecting(_), .. }))) {
                self.complete_transfer(d, Err(TransferError::ConnectionLost));
            }
        }
        self.drop_data(key);
        self.close_entry(key);
    }
}
