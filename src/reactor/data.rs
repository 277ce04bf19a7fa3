//! Data connections and transfers: passive listeners (kept while unused),
//! active connects, accepting the client's data connection, moving the
//! bytes within the per-step and per-pass budgets, and the end of a
//! transfer (commit or keep what arrived, log, reply after the data
//! connection is closed).

use super::*;

/// What data connections and transfers share: the passive port picker,
/// the per-pass byte budget and the scratch buffer of a transfer step.
/// The counts checked against `--max-passive` and `--max-transfers` are in
/// `Shared`, one for every worker.
///
/// # Passive ports and several workers
/// Each worker's picker starts at its own random port of the one range
/// and tries each port once; `bind(2)` is the arbiter (passive listeners
/// never set `SO_REUSEPORT`), so two workers never hold one port: the
/// second gets `EADDRINUSE` and tries the next. A shared cursor would save
/// nothing that matters (a failed bind is one system call) and would make
/// the next port guessable, which random picking is there to prevent.
///
/// # Invariants
/// - Every `Entry::Pasv` in the slab holds one `Shared::acquire_passive`
///   and every `Entry::Data` one `Shared::acquire_transfer`, each with one
///   data slot of its owner's address: charged before the entry is
///   inserted, released where it becomes `Closed`.
/// - `pass_budget` is `PASS_BUDGET_BYTES` at the start of each pass of the
///   loop and only shrinks within it.
/// - `scratch` is `SCRATCH_BYTES` long; a step takes it and puts it back.
pub(super) struct Transfers {
    pub(super) ports: PortPicker,
    /// What is left of `PASS_BUDGET_BYTES` in this pass.
    pub(super) pass_budget: usize,
    /// Scratch for transfers (ASCII conversion, STOR without splice).
    pub(super) scratch: Vec<u8>,
}

impl Server {
    /// Close the session's passive listener or data connection, if any.
    pub(super) fn drop_data(&mut self, key: usize) {
        let data = match self.slab.get_mut(key) {
            Some(Entry::Ctrl(c)) => c.data.take(),
            _ => None,
        };
        if let Some(d) = data {
            self.close_entry(d);
        }
    }

    /// A PASV/EPSV while the session's passive listener still waits, unused
    /// and with no command pending, answers with the same port (its data
    /// timeout starts again) instead of closing it and opening another: the
    /// client connects to the port it was last given either way, and a
    /// pipelined PASV storm then costs a reply each, not a socket, bind,
    /// listen and close (the hostile benchmark's flooders sent thousands).
    pub(super) fn reuse_passive(&mut self, key: usize) -> Option<SocketAddr> {
        let Some(Entry::Ctrl(c)) = self.slab.get(key) else { return None };
        let pkey = c.data?;
        let Some(Entry::Pasv(p)) = self.slab.get_mut(pkey) else { return None };
        if p.pending.is_some() {
            return None;
        }
        // A connection already in the listener's backlog came for an
        // earlier command: a client that connects first and then sends a
        // command that is refused (a `550` RETR) leaves it there. Reusing
        // the port would hand that stale connection the next transfer,
        // and the client's new one would be refused (seen under PROT P as
        // a reset handshake and a `426`). It is closed, and a fresh
        // listener opened instead.
        match p.listener.accept() {
            Err(e) if would_block(&e) => {}
            _ => return None,
        }
        let addr = p.listener.local_addr().ok()?;
        set_timer(&mut self.wheel, &mut p.timer, self.now + self.env.config.data_timeout, pkey);
        Some(addr)
    }

    pub(super) fn open_passive(&mut self, key: usize) -> io::Result<SocketAddr> {
        let Some(Entry::Ctrl(c)) = self.slab.get(key) else { return Err(io::ErrorKind::NotFound.into()) };
        if !self.shared.acquire_passive() {
            self.env.metrics.refused(Limit::MaxPassive);
            ctx_log!(warn, key, c.session, "passive listener limit ({}) reached", self.env.config.max_passive);
            return Err(io::Error::other("too many passive listeners"));
        }
        if !self.acquire_data_slot(key) {
            self.shared.release_passive();
            return Err(io::Error::other("too many data connections from this address"));
        }
        let listener = self.bind_passive(key);
        let (listener, addr) = match listener {
            Ok(x) => x,
            Err(e) => {
                self.shared.release_passive();
                self.release_data_slot(key);
                return Err(e);
            }
        };
        let pkey = self.slab.vacant_key();
        let timer = Some(self.wheel.schedule(self.now + self.env.config.data_timeout, pkey));
        self.slab.insert(Entry::Pasv(PasvListener { listener, owner: key, timer, pending: None }));
        self.env.metrics.passive_listeners(1);
        if let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) {
            c.data = Some(pkey);
        }
        Ok(addr)
    }

    /// Bind and register a passive listener for the session at `key`,
    /// its slots already charged.
    fn bind_passive(&mut self, key: usize) -> io::Result<(TcpListener, SocketAddr)> {
        let Some(Entry::Ctrl(c)) = self.slab.get(key) else { return Err(io::ErrorKind::NotFound.into()) };
        let ip = c.session.local_ip();
        let mut listener = match self.xfer.ports.bind(ip, self.env.config.passive_ports) {
            Ok(l) => {
                stream::prepare_listener(&l, false);
                l
            }
            Err(e) => {
                ctx_log!(warn, key, c.session, "cannot open a passive port: {e}");
                return Err(e);
            }
        };
        let addr = listener.local_addr()?;
        let pkey = self.slab.vacant_key();
        self.poll.registry().register(&mut listener, Token(pkey), Interest::READABLE)?;
        Ok((listener, addr))
    }

    pub(super) fn accept_data(&mut self, pkey: usize) {
        loop {
            let Some(Entry::Pasv(p)) = self.slab.get(pkey) else { return };
            let owner = p.owner;
            let accepted = p.listener.accept();
            let (tcp, peer) = match accepted {
                Ok(x) => x,
                Err(e) if would_block(&e) => return,
                Err(e) if interrupted(&e) => continue,
                Err(e) => {
                    debug!("[c{owner}] passive accept: {e}");
                    return;
                }
            };
            let Some(Entry::Ctrl(c)) = self.slab.get(owner) else { return };
            let peer = session::canonical(peer);
            // Through the balancer too: the header must name the client.
            #[cfg(feature = "proxy")]
            if self.env.config.is_proxy_source(peer.ip()) {
                self.accept_proxied_data(pkey, owner, tcp, peer);
                continue;
            }
            if peer.ip() != c.session.peer().ip() && !self.env.config.insecure_pasv_any_peer {
                ctx_log!(warn, owner, c.session, "refused data connection from foreign address {peer}");
                drop(tcp);
                continue;
            }
            self.data_connected(pkey, owner, tcp);
            return;
        }
    }

    /// The client's data connection to the passive listener `pkey` of the
    /// session at `owner`, checked: it replaces the listener (one
    /// connection per PASV), and a transfer command that came first starts.
    pub(super) fn data_connected(&mut self, pkey: usize, owner: usize, tcp: TcpStream) {
        let Some(Entry::Ctrl(c)) = self.slab.get(owner) else { return };
        if !self.shared.acquire_transfer() {
            self.env.metrics.refused(Limit::MaxTransfers);
            ctx_log!(warn, owner, c.session, "data connection limit ({}) reached", self.env.config.max_transfers);
            drop(tcp);
            let had = matches!(self.slab.get(pkey), Some(Entry::Pasv(p)) if p.pending.is_some());
            self.close_entry(pkey);
            if let Some(Entry::Ctrl(c)) = self.slab.get_mut(owner) {
                c.data = None;
            }
            if had {
                self.finish_transfer_reply(owner, Err(TransferError::CantOpen), true);
            }
            return;
        }
        // One connection per PASV: the listener goes, the port is free.
        let pending = match self.slab.get_mut(pkey) {
            Some(Entry::Pasv(p)) => p.pending.take(),
            _ => None,
        };
        // The data connection takes over the listener's data slot.
        self.hand_over_data_slot(owner);
        self.close_entry(pkey);
        let mut stream = Stream::accepted(tcp);
        let dkey = self.slab.vacant_key();
        if stream.register(self.poll.registry(), Token(dkey)).is_err() {
            self.shared.release_transfer();
            self.release_data_slot(owner);
            if let Some(Entry::Ctrl(c)) = self.slab.get_mut(owner) {
                c.data = None;
            }
            if pending.is_some() {
                self.finish_transfer_reply(owner, Err(TransferError::CantOpen), true);
            }
            return;
        }
        let running = pending.is_some();
        let state = match pending {
            Some(req) => DataState::Running(req),
            None => DataState::Idle,
        };
        // An idle data connection (no transfer command yet) waits at
        // most the data timeout too, as its listener did: a client
        // cannot hold a data slot forever by connecting and going quiet.
        let wait = if running { self.env.config.stall_timeout } else { self.env.config.data_timeout };
        self.insert_data(owner, dkey, stream, state, wait);
        if running {
            let mut out = std::mem::take(&mut self.ctl.out);
            out.clear();
            self.first_step(dkey, owner, false, &mut out);
            self.send(owner, &out);
            out.clear();
            self.ctl.out = out;
            self.refresh_deadline(owner);
            self.drain_lines(owner);
        }
    }

    /// Put a registered data connection at `dkey` (the slab's vacant key)
    /// for the session at `owner`, with its first deadline `wait` away, and
    /// link it to its session. Its transfer slot and its owner's data slot
    /// are charged already (`Shared`).
    fn insert_data(&mut self, owner: usize, dkey: usize, stream: Stream, state: DataState, wait: Duration) {
        debug_assert_eq!(dkey, self.slab.vacant_key());
        let timer = Some(self.wheel.schedule(self.now + wait, dkey));
        self.env.metrics.data_connections(1);
        self.slab.insert(Entry::Data(DataConn { stream, owner, state, timer, last_progress: self.now, started: self.now, bytes: 0 }));
        if let Some(Entry::Ctrl(c)) = self.slab.get_mut(owner) {
            c.data = Some(dkey);
        }
    }

    /// `150`/`125` for a transfer that is starting.
    pub(super) fn announce_start(&mut self, owner: usize, already_open: bool) {
        let Some(Entry::Ctrl(c)) = self.slab.get_mut(owner) else { return };
        let mut out = std::mem::take(&mut self.ctl.out);
        out.clear();
        let mut ctx = Ctx { out: &mut out, env: &self.env, now_unix: 0 };
        c.session.transfer_started(already_open, &mut ctx);
        self.send(owner, &out);
        out.clear();
        self.ctl.out = out;
    }

    pub(super) fn start_transfer(&mut self, key: usize, req: TransferRequest, out: &mut Vec<u8>) {
        let Some(Entry::Ctrl(c)) = self.slab.get(key) else { return };
        let mode = c.session.data_mode();
        let data = c.data;
        match (mode, data) {
            (DataMode::Passive, Some(k)) => match self.slab.get_mut(k) {
                Some(Entry::Pasv(p)) => p.pending = Some(Box::new(req)),
                Some(Entry::Data(d)) if matches!(d.state, DataState::Idle) => {
                    d.state = DataState::Running(Box::new(req));
                    d.started = self.now;
                    d.last_progress = self.now;
                    set_timer(&mut self.wheel, &mut d.timer, self.now + self.env.config.stall_timeout, k);
                    self.first_step(k, key, true, out);
                }
                _ => self.fail_start(key, req, out),
            },
            (DataMode::Active(addr), _) => {
                if !self.shared.acquire_transfer() {
                    self.env.metrics.refused(Limit::MaxTransfers);
                    warn!("[c{key}] data connection limit ({}) reached", self.env.config.max_transfers);
                    self.fail_start(key, req, out);
                    return;
                }
                if !self.acquire_data_slot(key) {
                    self.shared.release_transfer();
                    self.fail_start(key, req, out);
                    return;
                }
                self.drop_data(key);
                let connected = TcpStream::connect(addr).and_then(|tcp| {
                    let mut stream = Stream::plain(tcp);
                    stream.register(self.poll.registry(), Token(self.slab.vacant_key())).map(|()| stream)
                });
                match connected {
                    Ok(stream) => {
                        let dkey = self.slab.vacant_key();
                        let wait = self.env.config.data_timeout;
                        self.insert_data(key, dkey, stream, DataState::Connecting(Box::new(req)), wait);
                    }
                    Err(_) => {
                        self.shared.release_transfer();
                        self.release_data_slot(key);
                        self.fail_start(key, req, out);
                    }
                }
            }
            _ => self.fail_start(key, req, out),
        }
    }

    /// The data connection is gone or could not be made: `425`.
    pub(super) fn fail_start(&mut self, key: usize, req: TransferRequest, out: &mut Vec<u8>) {
        self.env.metrics.transfer(req.counted_as, TransferResult::Failed);
        drop(req);
        if let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) {
            c.data = None;
            let mut ctx = Ctx { out, env: &self.env, now_unix: 0 };
            c.session.transfer_finished(Err(TransferError::CantOpen), &mut ctx);
        }
    }

    pub(super) fn data_ready(&mut self, dkey: usize) {
        let outcome = {
            let Some(Entry::Data(d)) = self.slab.get_mut(dkey) else { return };
            match &mut d.state {
                DataState::Idle => None,
                DataState::Connecting(_) => match d.stream.take_error() {
                    Ok(Some(_)) | Err(_) => Some(Err(TransferError::CantOpen)),
                    Ok(None) => match d.stream.peer_addr() {
                        Ok(_) => {
                            let DataState::Connecting(req) = std::mem::replace(&mut d.state, DataState::Idle) else {
                                unreachable!()
                            };
                            d.state = DataState::Running(req);
                            d.started = self.now;
                            d.last_progress = self.now;
                            set_timer(&mut self.wheel, &mut d.timer, self.now + self.env.config.stall_timeout, dkey);
                            let owner = d.owner;
                            self.announce_start(owner, false);
                            self.wake_later(dkey);
                            return;
                        }
                        Err(e) if e.kind() == io::ErrorKind::NotConnected => None,
                        Err(_) => Some(Err(TransferError::CantOpen)),
                    },
                },
                DataState::Running(_) => {
                    if let Some(result) = self.step_data(dkey, true) {
                        self.end_transfer(dkey, result, true);
                    }
                    return;
                }
            }
        };
        if let Some(result) = outcome {
            self.end_transfer(dkey, result, true);
        }
    }

    /// Move a running transfer's bytes within the budget: `Some` when it
    /// ended, `None` when it waits for readiness (or for its next turn).
    pub(super) fn step_data(&mut self, dkey: usize, bulk: bool) -> Option<Result<(), TransferError>> {
        // Paused by its rate limit: only the wheel's deadline resumes it
        // (`resume_throttled`); a readiness event meanwhile moves nothing.
        if matches!(self.slab.get(dkey), Some(Entry::Data(DataConn { state: DataState::Running(req), .. })) if req.throttle.as_ref().is_some_and(|t| t.is_paused())) {
            return None;
        }
        if bulk && self.xfer.pass_budget == 0 {
            self.wake_later(dkey);
            return None;
        }
        #[cfg(feature = "tls")]
        if let Err(e) = self.protect_data(dkey) {
            return Some(Err(e));
        }
        let mut pause = false;
        let mut scratch = std::mem::take(&mut self.xfer.scratch);
        let outcome = match self.slab.get_mut(dkey) {
            Some(Entry::Data(DataConn { state: DataState::Running(req), stream, bytes, last_progress, .. })) => {
                let step = if req.transfer.is_upload() { UPLOAD_STEP_BYTES } else { DATA_BUDGET_BYTES };
                let mut budget = if bulk { step.min(self.xfer.pass_budget) } else { step };
                // The rate limit: what the bucket holds (a prefill is disk
                // work, and its step moves no network bytes).
                let throttled = !req.transfer.is_prefilling();
                if let Some(t) = req.throttle.as_mut().filter(|_| throttled) {
                    budget = budget.min(t.allowance(self.now));
                }
                if budget == 0 {
                    pause = true;
                }
                let mut moved = 0;
                let r = if pause { Ok(Progress::Budget) } else { req.transfer.step(stream, budget, &mut scratch, &mut moved) };
                if let Some(t) = &mut req.throttle {
                    t.charge(moved, self.now);
                }
                *bytes += moved;
                if req.transfer.is_upload() {
                    self.env.metrics.received(Channel::Data, moved);
                } else {
                    self.env.metrics.sent(Channel::Data, moved);
                }
                if bulk {
                    self.xfer.pass_budget = self.xfer.pass_budget.saturating_sub(moved as usize);
                }
                if moved > 0 {
                    *last_progress = self.now;
                }
                match r {
                    // Under TLS a transfer ends with close_notify, sent
                    // before the data connection closes and 226 is said
                    // (the step is called again on writable readiness, and
                    // finds its transfer done). An upload's comes after
                    // the client's: clients that wait for it (Python's
                    // `unwrap`) fail the upload without it.
                    Ok(Progress::Done) if stream.is_tls() => match stream.close_notify() {
                        Ok(()) => Some(Ok(())),
                        Err(e) if would_block(&e) => None,
                        // A transfer with nothing to move (an empty file
                        // or listing) finds a refused handshake here: 522.
                        Err(e) => Some(Err(crate::dtp::transfer::lost(&e))),
                    },
                    Ok(Progress::Done) => Some(Ok(())),
                    Ok(Progress::Blocked) => None,
                    Ok(Progress::Budget) if pause || req.throttle.as_mut().is_some_and(|t| t.allowance(self.now) == 0) => {
                        pause = true;
                        None
                    }
                    Ok(Progress::Budget) => {
                        // Not `wake_later`: a transfer may take several
                        // steps in one pass while the pass budget lasts
                        // (one 256 KiB step per pass cost a large RETR a
                        // quarter more CPU per GiB in loop turns). The
                        // duplicates end when the pass budget does (then
                        // `wake_later`, above, queues it once).
                        self.next_ready.push(dkey);
                        None
                    }
                    Err(e) => Some(Err(e)),
                }
            }
            _ => None,
        };
        self.xfer.scratch = scratch;
        if pause {
            self.pause_throttled(dkey);
        }
        outcome
    }

    /// The transfer's token bucket is empty: it stops moving bytes, and its
    /// timer (otherwise the stall timeout) becomes the deadline that
    /// resumes it — no wake-up before it. A paused upload also leaves the
    /// poll, so arriving bytes wake nothing (they wait in the kernel, whose
    /// receive window slows the client). Throttled time is not a stall.
    fn pause_throttled(&mut self, dkey: usize) {
        let Some(Entry::Data(d)) = self.slab.get_mut(dkey) else { return };
        let DataState::Running(req) = &mut d.state else { return };
        let Some(t) = &mut req.throttle else { return };
        t.pause();
        let upload = req.transfer.is_upload();
        let at = t.resume_at(self.now);
        d.last_progress = self.now;
        set_timer(&mut self.wheel, &mut d.timer, at, dkey);
        if upload {
            let _ = d.stream.deregister(self.poll.registry());
        }
        self.env.metrics.throttle_pause(upload);
    }

    /// The wheel's deadline of a throttle pause: the transfer goes on. mio
    /// is edge-triggered and the socket may have stayed writable (or, for
    /// an upload, readable) all along, so no event would come: this moves
    /// the next bytes itself. The timer is the stall timeout again, unless
    /// the step pauses once more.
    pub(super) fn resume_throttled(&mut self, dkey: usize) {
        let Some(Entry::Data(d)) = self.slab.get_mut(dkey) else { return };
        let DataState::Running(req) = &mut d.state else { return };
        let Some(t) = &mut req.throttle else { return };
        t.resume();
        d.last_progress = self.now;
        set_timer(&mut self.wheel, &mut d.timer, self.now + self.env.config.stall_timeout, dkey);
        if req.transfer.is_upload() && d.stream.register(self.poll.registry(), Token(dkey)).is_err() {
            self.end_transfer(dkey, Err(TransferError::ConnectionLost), true);
            return;
        }
        if let Some(result) = self.step_data(dkey, true) {
            self.end_transfer(dkey, result, true);
        }
    }

    /// PROT P: the data connection turns TLS when its transfer starts to
    /// move bytes (clients start their handshake after the `150`), and
    /// must resume its control connection's session unless
    /// `--insecure-tls-no-reuse`.
    #[cfg(feature = "tls")]
    fn protect_data(&mut self, dkey: usize) -> Result<(), TransferError> {
        let Some(Entry::Data(d)) = self.slab.get(dkey) else { return Ok(()) };
        let DataState::Running(req) = &d.state else { return Ok(()) };
        if !req.protected || d.stream.is_tls() {
            return Ok(());
        }
        let Some(tls) = &self.tls else { return Err(TransferError::TlsRefused) };
        let Some(Entry::Ctrl(c)) = self.slab.get(d.owner) else { return Err(TransferError::CantOpen) };
        let owner = crate::tls::OwnerId(c.serial);
        let role = crate::tls::stream::Role::Data {
            require_reuse: !self.env.config.insecure_tls_no_reuse,
            control_resumed: c.stream.tls_kept_session_of(),
        };
        let config = tls.data.clone();
        let Some(Entry::Data(d)) = self.slab.get_mut(dkey) else { return Ok(()) };
        if let DataState::Running(req) = &mut d.state {
            req.transfer.no_zero_copy();
        }
        d.stream.start_tls(&config, owner, role, Vec::new(), &self.env.metrics).map_err(|_| TransferError::TlsRefused)
    }

    /// A transfer whose data connection is open starts: for a download,
    /// move its first slice at once, and if that was all of it (a small
    /// file, a listing), send `125`/`150` and `226` in one write — one TCP
    /// segment and one wake-up of the client instead of two. The replies
    /// still come in their order, after the data connection was closed.
    pub(super) fn first_step(&mut self, dkey: usize, owner: usize, already_open: bool, out: &mut Vec<u8>) {
        let try_now = matches!(self.slab.get(dkey), Some(Entry::Data(DataConn { state: DataState::Running(r), .. })) if !r.transfer.is_upload());
        let outcome = if try_now { self.step_data(dkey, false) } else { None };
        if let Some(Entry::Ctrl(c)) = self.slab.get_mut(owner) {
            let mut ctx = Ctx { out: &mut *out, env: &self.env, now_unix: 0 };
            c.session.transfer_started(already_open, &mut ctx);
        }
        match outcome {
            Some(result) => {
                if let Some(result) = self.complete_transfer(dkey, result) {
                    self.reply_transfer_end(owner, result, out);
                }
            }
            None if !try_now => self.wake_later(dkey),
            None => {}
        }
    }

    /// A transfer ended: commit (STOR), close the data connection, log, and
    /// only then reply (the data connection is closed before `226`).
    pub(super) fn end_transfer(&mut self, dkey: usize, result: Result<(), TransferError>, drain: bool) {
        let owner = match self.slab.get(dkey) {
            Some(Entry::Data(d)) => d.owner,
            _ => return,
        };
        if let Some(result) = self.complete_transfer(dkey, result) {
            self.finish_transfer_reply(owner, result, drain);
        }
    }

    /// The data side of a transfer's end: commit (STOR), close the data
    /// connection, log. Returns the outcome to reply with, if the data
    /// connection carried a transfer.
    pub(super) fn complete_transfer(&mut self, dkey: usize, result: Result<(), TransferError>) -> Option<Result<u64, TransferError>> {
        let Some(entry @ Entry::Data(_)) = self.slab.get_mut(dkey) else { return None };
        let Entry::Data(d) = std::mem::replace(entry, Entry::Closed) else { return None };
        self.closed.push(dkey);
        self.env.metrics.data_connections(-1);
        self.shared.release_transfer();
        self.release_data_slot(d.owner);
        let DataConn { stream, owner, state, timer, started, bytes, .. } = d;
        if let Some(id) = timer {
            self.wheel.cancel(id);
        }
        // An upload's target and size for its hook, taken before the
        // commit consumes the upload (`--on-upload` only).
        let mut hook_facts = None;
        let (req, result) = match state {
            DataState::Running(req) => {
                let TransferRequest { transfer, kind, path, ascii, counted_as, .. } = *req;
                if result.is_ok() && self.env.config.on_upload.is_some() {
                    hook_facts = transfer.upload_facts().map(|f| (counted_as, f));
                }
                let result = match result {
                    Ok(()) => transfer.finish(),
                    Err(e) => {
                        transfer.interrupted();
                        Err(e)
                    }
                };
                self.env.metrics.transfer(counted_as, transfer_result(&result));
                (Some((kind, path, ascii)), result)
            }
            DataState::Connecting(req) => {
                // Never connected: nothing moved, nothing to keep.
                let TransferRequest { kind, path, ascii, counted_as, .. } = *req;
                let result = result.and(Err(TransferError::CantOpen));
                self.env.metrics.transfer(counted_as, transfer_result(&result));
                (Some((kind, path, ascii)), result)
            }
            DataState::Idle => (None, result),
        };
        // close(2) sends the FIN after the queued bytes; no shutdown needed.
        drop(stream);
        let secs = self.now.saturating_duration_since(started).as_secs_f64();
        if let (Some(Entry::Ctrl(c)), Some((kind, path, ascii))) = (self.slab.get(owner), &req) {
            ctx_log!(info, owner, c.session, "{:?} {} {} bytes in {:.3}s: {}", kind,
                sanitize(path.as_bytes()), bytes, secs,
                match &result { Ok(()) => "ok".to_string(), Err(e) => format!("{e:?}") });
            if let (Some(log), false) = (&mut self.xferlog, *kind == XferKind::List) {
                let record = xferlog::Record {
                    end_unix: unix_now(),
                    seconds: secs.round() as u64,
                    remote: c.session.peer().ip(),
                    bytes,
                    path: path.as_bytes(),
                    ascii: *ascii,
                    direction: if *kind == XferKind::Retr { xferlog::Direction::Outgoing } else { xferlog::Direction::Incoming },
                    anonymous: c.session.is_anonymous(),
                    user: c.session.user(),
                    complete: result.is_ok(),
                };
                if let Err(e) = log.write(&record) {
                    warn!("xferlog: {e}");
                }
            }
        }
        // Complete: committed, and the reply to come is `226`.
        if let (Ok(()), Some((counted_as, facts)), Some((_, path, _))) = (&result, hook_facts, &req) {
            self.upload_completed(owner, path, counted_as, facts);
        }
        if let Some(Entry::Ctrl(c)) = self.slab.get_mut(owner) {
            if c.data == Some(dkey) {
                c.data = None;
            }
        }
        req.map(|_| result.map(|_| bytes))
    }

    /// Tell the session how its transfer ended, then go on with its queue.
    pub(super) fn finish_transfer_reply(&mut self, owner: usize, result: Result<u64, TransferError>, drain: bool) {
        if !matches!(self.slab.get(owner), Some(Entry::Ctrl(c)) if matches!(c.session.pending(), Pending::Transfer(_))) {
            return;
        }
        let mut out = std::mem::take(&mut self.ctl.out);
        out.clear();
        self.reply_transfer_end(owner, result, &mut out);
        self.send(owner, &out);
        out.clear();
        self.ctl.out = out;
        self.refresh_deadline(owner);
        if drain {
            self.drain_lines(owner);
        }
    }

    /// The session's reply to the end of its transfer, into `out`.
    pub(super) fn reply_transfer_end(&mut self, owner: usize, result: Result<u64, TransferError>, out: &mut Vec<u8>) {
        let Some(Entry::Ctrl(c)) = self.slab.get_mut(owner) else { return };
        let mut ctx = Ctx { out: &mut *out, env: &self.env, now_unix: 0 };
        c.session.transfer_finished(result, &mut ctx);
        if self.life.shutting_down {
            c.session.shutting_down(out);
            c.close_after_flush = true;
        }
    }

    /// Abort the session's transfer, if one is running or waiting.
    pub(super) fn abort_transfer(&mut self, key: usize, why: TransferError, drain: bool) {
        let data = match self.slab.get(key) {
            Some(Entry::Ctrl(c)) => c.data,
            _ => None,
        };
        match data.and_then(|d| self.slab.get(d).map(|e| (d, matches!(e, Entry::Data(_))))) {
            Some((d, true)) => self.end_transfer(d, Err(why), drain),
            Some((d, false)) => {
                // Counted here with its reason, not as failed by `close_entry`.
                let pending = match self.slab.get_mut(d) {
                    Some(Entry::Pasv(p)) => p.pending.take(),
                    _ => None,
                };
                let had = pending.is_some();
                if let Some(req) = pending {
                    self.env.metrics.transfer(req.counted_as, transfer_result(&Err::<(), _>(why)));
                }
                self.close_entry(d);
                if let Some(Entry::Ctrl(c)) = self.slab.get_mut(key) {
                    c.data = None;
                }
                if had {
                    self.finish_transfer_reply(key, Err(why), drain);
                }
            }
            None => {}
        }
    }
}

/// How a transfer's end counts in `leanftpd_transfers_total`.
fn transfer_result<T>(result: &Result<T, TransferError>) -> TransferResult {
    match result {
        Ok(_) => TransferResult::Ok,
        Err(TransferError::Aborted) => TransferResult::Aborted,
        Err(_) => TransferResult::Failed,
    }
}
