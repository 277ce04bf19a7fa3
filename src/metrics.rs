//! The server's counters and gauges, and their rendering in the Prometheus
//! text exposition format, version 0.0.4
//! (<https://prometheus.io/docs/instrumenting/exposition_formats/>).
//!
//! One [`Metrics`] of atomics is shared (`Arc`) by every reactor of the
//! process, so a scrape of any of them sees the sum over all workers with
//! no merging step. Each event adds one with `Ordering::Relaxed` where it
//! happens (in the reactor or the PI): counters need no ordering with
//! anything else, a scrape is a snapshot of independent values, and an
//! increment never allocates. An idle session costs nothing: nothing is
//! counted per session over time, only events.
//!
//! Every label set is fixed and small (verbs, reply classes, transfer
//! kinds…): a client cannot add a series (an unknown verb counts as
//! `verb="other"`), so the rendered text has a bound, [`RENDER_MAX_BYTES`].
//!
//! It never touches a socket; the HTTP side is `reactor/scrape.rs`.
//!
//! # Invariants
//! - Label values are static ASCII `[a-z0-9_A-Z]` strings: no escaping is
//!   ever needed (checked by a unit test).
//! - Gauges go up and down in pairs at the two ends of a resource's life
//!   (`*_open`): with all of them closed they read 0.

use std::sync::atomic::{AtomicI64, AtomicU64, Ordering::Relaxed};

use crate::ftp::command::Verb;

/// Verbs known to the parser, then `other`.
const VERBS: usize = Verb::ALL.len();

/// The longest text `render` produces, with every counter at `u64::MAX`
/// (checked by a unit test): the bound of a scrape's response buffer.
pub const RENDER_MAX_BYTES: usize = 16 * 1024;

/// Where bytes went: the control connection or a data connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Channel {
    /// Commands and replies (after TLS decryption: application bytes).
    Control,
    /// Transfers and listings (after TLS decryption: application bytes).
    Data,
}

const CHANNELS: [&str; 2] = ["control", "data"];

/// The kind of a transfer, by its command (the `kind` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferKind {
    /// RETR.
    Retr,
    /// STOR.
    Stor,
    /// APPE.
    Appe,
    /// STOU.
    Stou,
    /// LIST.
    List,
    /// NLST.
    Nlst,
    /// MLSD.
    Mlsd,
}

const KINDS: [&str; 7] = ["retr", "stor", "appe", "stou", "list", "nlst", "mlsd"];

impl TransferKind {
    /// The kind of the transfer a command starts (STOR for any other verb,
    /// which cannot start one).
    pub fn of(verb: Verb) -> TransferKind {
        match verb {
            Verb::Retr => TransferKind::Retr,
            Verb::Appe => TransferKind::Appe,
            Verb::Stou => TransferKind::Stou,
            Verb::List => TransferKind::List,
            Verb::Nlst => TransferKind::Nlst,
            Verb::Mlsd => TransferKind::Mlsd,
            _ => TransferKind::Stor,
        }
    }
}

/// How a transfer ended (the `result` label).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TransferResult {
    /// `226`: every byte moved.
    Ok,
    /// Any other end but ABOR: the data connection could not be made or
    /// was lost, a stall, a file error, a TLS refusal.
    Failed,
    /// ABOR, or cut at the end of the shutdown grace period.
    Aborted,
}

const RESULTS: [&str; 3] = ["ok", "failed", "aborted"];

/// A limit that refused a connection or a request (the `limit` label,
/// named after its option).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Limit {
    /// `--max-clients`: a control connection refused with `421`.
    MaxClients,
    /// `--max-per-ip`: a control connection refused with `421`.
    MaxPerIp,
    /// `--max-passive`: a PASV/EPSV refused with `425`.
    MaxPassive,
    /// `--max-transfers`: a data connection refused (`425`).
    MaxTransfers,
    /// `--max-data-per-ip`: a PASV/EPSV or a data connection refused.
    MaxDataPerIp,
    /// The password-check queue is full: a login refused with `421`.
    PasswordQueue,
    /// `MAX_SCRAPES`: a metrics scrape refused with HTTP `503`.
    MetricsScrapes,
}

const LIMITS: [&str; 7] =
    ["max_clients", "max_per_ip", "max_passive", "max_transfers", "max_data_per_ip", "password_queue", "metrics_scrapes"];

/// Every counter and gauge of the server. See the README's "Metrics" for
/// the names they are exposed under.
pub struct Metrics {
    sessions_open: AtomicI64,
    sessions: AtomicU64,
    logins_ok: AtomicU64,
    logins_failed: AtomicU64,
    /// By `Verb as usize`, then `other` last.
    commands: [AtomicU64; VERBS + 1],
    /// By reply class 1xx..5xx.
    replies: [AtomicU64; 5],
    received: [AtomicU64; 2],
    sent: [AtomicU64; 2],
    transfers: [[AtomicU64; 3]; 7],
    passive_listeners_open: AtomicI64,
    data_connections_open: AtomicI64,
    refused: [AtomicU64; 7],
    /// `[control, data][ok, failed]`.
    tls_handshakes: [[AtomicU64; 2]; 2],
    upload_temp_files_open: AtomicI64,
    hooks_started: AtomicU64,
    /// By [`HookResult`].
    hooks_finished: [AtomicU64; 3],
    /// By `hooks::DropReason` (queue_full, shutdown, spawn_error).
    hooks_dropped: [AtomicU64; 3],
    hooks_running: AtomicI64,
    hooks_queued: AtomicI64,
    /// Rate-limit pauses, `[download, upload]`.
    throttle_pauses: [AtomicU64; 2],
}

/// How an upload hook ended (the `result` label of
/// `leanftpd_upload_hooks_finished_total`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HookResult {
    /// Exit status 0.
    Ok,
    /// Another exit status, or a signal the server did not send.
    Failed,
    /// Killed by the server: `--hook-timeout`, or the end of the shutdown
    /// grace period.
    Killed,
}

const HOOK_RESULTS: [&str; 3] = ["ok", "failed", "killed"];
const HOOK_DROPS: [&str; 3] = ["queue_full", "shutdown", "spawn_error"];

impl Default for Metrics {
    fn default() -> Metrics {
        Metrics::new()
    }
}

impl Metrics {
    /// All zero.
    pub fn new() -> Metrics {
        Metrics {
            sessions_open: AtomicI64::new(0),
            sessions: AtomicU64::new(0),
            logins_ok: AtomicU64::new(0),
            logins_failed: AtomicU64::new(0),
            commands: std::array::from_fn(|_| AtomicU64::new(0)),
            replies: Default::default(),
            received: Default::default(),
            sent: Default::default(),
            transfers: Default::default(),
            passive_listeners_open: AtomicI64::new(0),
            data_connections_open: AtomicI64::new(0),
            refused: Default::default(),
            tls_handshakes: Default::default(),
            upload_temp_files_open: AtomicI64::new(0),
            hooks_started: AtomicU64::new(0),
            hooks_finished: Default::default(),
            hooks_dropped: Default::default(),
            hooks_running: AtomicI64::new(0),
            hooks_queued: AtomicI64::new(0),
            throttle_pauses: Default::default(),
        }
    }

    /// A control connection was accepted.
    pub fn session_opened(&self) {
        self.sessions.fetch_add(1, Relaxed);
        self.sessions_open.fetch_add(1, Relaxed);
    }

    /// A control connection was closed.
    pub fn session_closed(&self) {
        self.sessions_open.fetch_sub(1, Relaxed);
    }

    /// A login succeeded (`230`) or failed (the `530` to come).
    pub fn login(&self, ok: bool) {
        if ok { &self.logins_ok } else { &self.logins_failed }.fetch_add(1, Relaxed);
    }

    /// A command line was handed to the PI; `None`: not a known verb.
    pub fn command(&self, verb: Option<Verb>) {
        let i = verb.map_or(VERBS, |v| v as usize);
        self.commands[i.min(VERBS)].fetch_add(1, Relaxed);
    }

    /// Replies as they are handed to the socket: every line that ends a
    /// reply (`DDD SP`, RFC 959 §4.2) counts once, by its first digit.
    /// Lines inside a multi-line reply never start so: leanftpd indents
    /// them (`ftp::reply`).
    pub fn replies(&self, bytes: &[u8]) {
        for line in bytes.split(|&b| b == b'\n') {
            if let [c @ b'1'..=b'5', b'0'..=b'9', b'0'..=b'9', b' ', ..] = line {
                self.replies[usize::from(c - b'1')].fetch_add(1, Relaxed);
            }
        }
    }

    /// Bytes read from a client.
    pub fn received(&self, channel: Channel, bytes: u64) {
        self.received[channel as usize].fetch_add(bytes, Relaxed);
    }

    /// Bytes written to a client.
    pub fn sent(&self, channel: Channel, bytes: u64) {
        self.sent[channel as usize].fetch_add(bytes, Relaxed);
    }

    /// A transfer command ended (whatever its reply, or with its session).
    pub fn transfer(&self, kind: TransferKind, result: TransferResult) {
        self.transfers[kind as usize][result as usize].fetch_add(1, Relaxed);
    }

    /// A passive listener was opened (`+1`) or closed (`-1`).
    pub fn passive_listeners(&self, delta: i64) {
        self.passive_listeners_open.fetch_add(delta, Relaxed);
    }

    /// A data connection was opened (`+1`) or closed (`-1`).
    pub fn data_connections(&self, delta: i64) {
        self.data_connections_open.fetch_add(delta, Relaxed);
    }

    /// A limit refused something.
    pub fn refused(&self, limit: Limit) {
        self.refused[limit as usize].fetch_add(1, Relaxed);
    }

    /// A TLS handshake ended: completed (and, on a data connection, with
    /// its control connection's session resumed) or not.
    pub fn tls_handshake(&self, channel: Channel, ok: bool) {
        self.tls_handshakes[channel as usize][usize::from(!ok)].fetch_add(1, Relaxed);
    }

    /// An upload's temporary file was created (`+1`) or committed or
    /// removed (`-1`); see [`TempFileGauge`].
    pub fn upload_temp_files(&self, delta: i64) {
        self.upload_temp_files_open.fetch_add(delta, Relaxed);
    }

    /// An upload hook was started.
    pub fn hook_started(&self) {
        self.hooks_started.fetch_add(1, Relaxed);
        self.hooks_running.fetch_add(1, Relaxed);
    }

    /// An upload hook ended and was reaped.
    pub fn hook_finished(&self, result: HookResult) {
        self.hooks_finished[result as usize].fetch_add(1, Relaxed);
        self.hooks_running.fetch_sub(1, Relaxed);
    }

    /// An upload hook's job was queued (`+1`) or left the queue (`-1`: it
    /// started, or was dropped at shutdown).
    pub fn hooks_queued(&self, delta: i64) {
        self.hooks_queued.fetch_add(delta, Relaxed);
    }

    /// An upload hook's job was dropped, never run.
    pub fn hook_dropped(&self, reason: crate::hooks::DropReason) {
        use crate::hooks::DropReason;
        let i = match reason {
            DropReason::QueueFull => 0,
            DropReason::Shutdown => 1,
            DropReason::SpawnError => 2,
        };
        debug_assert_eq!(HOOK_DROPS[i], reason.label());
        self.hooks_dropped[i].fetch_add(1, Relaxed);
    }

    /// A rate-limited transfer emptied its token bucket and was paused
    /// until the timing wheel resumes it (`--max-*-rate`).
    pub fn throttle_pause(&self, upload: bool) {
        self.throttle_pauses[usize::from(upload)].fetch_add(1, Relaxed);
    }

    /// Render every metric into `out`, in the text format 0.0.4: a `HELP`
    /// and a `TYPE` line per family, then its samples. At most
    /// [`RENDER_MAX_BYTES`]; `out` is not cleared first.
    pub fn render(&self, out: &mut Vec<u8>) {
        let mut w = Writer { out };
        w.family("leanftpd_sessions_open", "gauge", "Control connections open.");
        w.gauge("leanftpd_sessions_open", &[], &self.sessions_open);
        w.family("leanftpd_sessions_total", "counter", "Control connections accepted.");
        w.counter("leanftpd_sessions_total", &[], &self.sessions);
        w.family("leanftpd_logins_total", "counter", "Logins by result (a failure counts when it is decided, before its delayed 530).");
        w.counter("leanftpd_logins_total", &[("result", "ok")], &self.logins_ok);
        w.counter("leanftpd_logins_total", &[("result", "failed")], &self.logins_failed);
        w.family("leanftpd_commands_total", "counter", "Command lines handled, by verb (unknown verbs as other).");
        for (i, c) in self.commands.iter().enumerate() {
            let verb = Verb::ALL.get(i).map_or("other", |v| v.name());
            w.counter("leanftpd_commands_total", &[("verb", verb)], c);
        }
        w.family("leanftpd_replies_total", "counter", "Replies sent on control connections, by class.");
        for (i, c) in self.replies.iter().enumerate() {
            w.counter("leanftpd_replies_total", &[("class", ["1xx", "2xx", "3xx", "4xx", "5xx"][i])], c);
        }
        w.family("leanftpd_received_bytes_total", "counter", "Bytes received from clients (after TLS), by channel.");
        for (i, c) in self.received.iter().enumerate() {
            w.counter("leanftpd_received_bytes_total", &[("channel", CHANNELS[i])], c);
        }
        w.family("leanftpd_sent_bytes_total", "counter", "Bytes sent to clients (before TLS), by channel.");
        for (i, c) in self.sent.iter().enumerate() {
            w.counter("leanftpd_sent_bytes_total", &[("channel", CHANNELS[i])], c);
        }
        w.family("leanftpd_transfers_total", "counter", "Transfers ended (transfer commands accepted), by kind and result.");
        for (k, row) in self.transfers.iter().enumerate() {
            for (r, c) in row.iter().enumerate() {
                w.counter("leanftpd_transfers_total", &[("kind", KINDS[k]), ("result", RESULTS[r])], c);
            }
        }
        w.family("leanftpd_passive_listeners_open", "gauge", "Passive data listeners open.");
        w.gauge("leanftpd_passive_listeners_open", &[], &self.passive_listeners_open);
        w.family("leanftpd_data_connections_open", "gauge", "Data connections open.");
        w.gauge("leanftpd_data_connections_open", &[], &self.data_connections_open);
        w.family("leanftpd_limit_refusals_total", "counter", "Connections and requests refused by a limit, by limit.");
        for (i, c) in self.refused.iter().enumerate() {
            w.counter("leanftpd_limit_refusals_total", &[("limit", LIMITS[i])], c);
        }
        if crate::TLS_BUILT_IN {
            w.family("leanftpd_tls_handshakes_total", "counter", "TLS handshakes ended, by channel and result.");
            for (ch, row) in self.tls_handshakes.iter().enumerate() {
                for (r, c) in row.iter().enumerate() {
                    w.counter("leanftpd_tls_handshakes_total", &[("channel", CHANNELS[ch]), ("result", ["ok", "failed"][r])], c);
                }
            }
        }
        w.family("leanftpd_upload_temp_files_open", "gauge", "Temporary files of uploads in progress.");
        w.gauge("leanftpd_upload_temp_files_open", &[], &self.upload_temp_files_open);
        w.family("leanftpd_upload_hooks_started_total", "counter", "Upload hooks (--on-upload) started.");
        w.counter("leanftpd_upload_hooks_started_total", &[], &self.hooks_started);
        w.family("leanftpd_upload_hooks_finished_total", "counter", "Upload hooks ended, by result (killed: by --hook-timeout or shutdown).");
        for (i, c) in self.hooks_finished.iter().enumerate() {
            w.counter("leanftpd_upload_hooks_finished_total", &[("result", HOOK_RESULTS[i])], c);
        }
        w.family("leanftpd_upload_hooks_dropped_total", "counter", "Upload hook jobs never run, by reason.");
        for (i, c) in self.hooks_dropped.iter().enumerate() {
            w.counter("leanftpd_upload_hooks_dropped_total", &[("reason", HOOK_DROPS[i])], c);
        }
        w.family("leanftpd_upload_hooks_running", "gauge", "Upload hooks running (at most --max-hooks over all workers).");
        w.gauge("leanftpd_upload_hooks_running", &[], &self.hooks_running);
        w.family("leanftpd_upload_hooks_queued", "gauge", "Upload hook jobs waiting for a slot.");
        w.gauge("leanftpd_upload_hooks_queued", &[], &self.hooks_queued);
        w.family("leanftpd_transfer_throttle_pauses_total", "counter", "Pauses of rate-limited transfers (their token bucket empty), by direction.");
        for (i, c) in self.throttle_pauses.iter().enumerate() {
            w.counter("leanftpd_transfer_throttle_pauses_total", &[("direction", ["download", "upload"][i])], c);
        }
    }
}

/// Lines of the text format. Label values and names are static and need
/// no escaping (see the module's invariants).
struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

impl Writer<'_> {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        for part in ["# HELP ", name, " ", help, "\n# TYPE ", name, " ", kind, "\n"] {
            self.out.extend_from_slice(part.as_bytes());
        }
    }

    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: &str) {
        self.out.extend_from_slice(name.as_bytes());
        for (i, (k, v)) in labels.iter().enumerate() {
            debug_assert!(v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'));
            for part in [if i == 0 { "{" } else { "," }, k, "=\"", v, "\""] {
                self.out.extend_from_slice(part.as_bytes());
            }
        }
        if !labels.is_empty() {
            self.out.push(b'}');
        }
        self.out.push(b' ');
        self.out.extend_from_slice(value.as_bytes());
        self.out.push(b'\n');
    }

    fn counter(&mut self, name: &str, labels: &[(&str, &str)], c: &AtomicU64) {
        let mut buf = [0u8; 20];
        self.sample(name, labels, decimal(c.load(Relaxed), false, &mut buf));
    }

    fn gauge(&mut self, name: &str, labels: &[(&str, &str)], g: &AtomicI64) {
        let v = g.load(Relaxed);
        let mut buf = [0u8; 20];
        let digits = decimal(v.unsigned_abs(), v < 0, &mut buf);
        self.sample(name, labels, digits);
    }
}

/// `n` in decimal (with a `-` if `negative`), written at the end of `buf`:
/// no formatting machinery, no allocation.
fn decimal(mut n: u64, negative: bool, buf: &mut [u8; 20]) -> &str {
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    if negative {
        // u64::MAX has 20 digits, but a negative i64 has at most 19.
        i -= 1;
        buf[i] = b'-';
    }
    std::str::from_utf8(&buf[i..]).unwrap_or("0")
}

/// Held by an upload while its temporary file exists: counts it in
/// `leanftpd_upload_temp_files_open` and takes it out when dropped (the
/// upload committed, kept or removed its file).
pub struct TempFileGauge(std::sync::Arc<Metrics>);

impl TempFileGauge {
    /// Count one temporary file until the gauge is dropped.
    pub fn new(metrics: &std::sync::Arc<Metrics>) -> TempFileGauge {
        metrics.upload_temp_files(1);
        TempFileGauge(metrics.clone())
    }
}

impl Drop for TempFileGauge {
    fn drop(&mut self) {
        self.0.upload_temp_files(-1);
    }
}

impl std::fmt::Debug for TempFileGauge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TempFileGauge")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(m: &Metrics) -> String {
        let mut out = Vec::new();
        m.render(&mut out);
        String::from_utf8(out).unwrap()
    }

    fn value(text: &str, series: &str) -> String {
        let line = text.lines().find(|l| l.starts_with(series) && l[series.len()..].starts_with(' '));
        line.unwrap_or_else(|| panic!("no {series} in\n{text}"))[series.len() + 1..].to_string()
    }

    #[test]
    fn a_fresh_server_renders_every_series_at_zero() {
        let t = text(&Metrics::new());
        assert_eq!(value(&t, "leanftpd_sessions_open"), "0");
        assert_eq!(value(&t, "leanftpd_commands_total{verb=\"USER\"}"), "0");
        assert_eq!(value(&t, "leanftpd_commands_total{verb=\"other\"}"), "0");
        assert_eq!(value(&t, "leanftpd_transfers_total{kind=\"mlsd\",result=\"aborted\"}"), "0");
        assert_eq!(value(&t, "leanftpd_limit_refusals_total{limit=\"metrics_scrapes\"}"), "0");
        assert_eq!(t.contains("leanftpd_tls_handshakes_total"), crate::TLS_BUILT_IN);
        // One HELP and one TYPE per family, before its samples.
        let families: Vec<&str> = t.lines().filter_map(|l| l.strip_prefix("# TYPE ")).collect();
        assert_eq!(families.len(), if crate::TLS_BUILT_IN { 19 } else { 18 });
        for f in families {
            let name = f.split(' ').next().unwrap();
            let kind = f.split(' ').nth(1).unwrap();
            assert_eq!(name.ends_with("_total"), kind == "counter", "{f}: counters and only counters end in _total");
            assert!(t.contains(&format!("# HELP {name} ")), "{name} has HELP");
        }
        assert!(t.ends_with('\n'));
    }

    #[test]
    fn events_show_in_their_series() {
        let m = Metrics::new();
        m.session_opened();
        m.session_opened();
        m.session_closed();
        m.login(true);
        m.login(false);
        m.login(false);
        m.command(Some(Verb::User));
        m.command(Some(Verb::User));
        m.command(Some(Verb::Abor));
        m.command(None);
        m.replies(b"220 hi\r\n211-Features:\r\n MDTM\r\n211 End\r\n150 x\r\n226 y\r\n");
        m.replies(b"530 no\r\n421 bye\r\n");
        m.received(Channel::Data, 10);
        m.sent(Channel::Control, 7);
        m.sent(Channel::Control, 8);
        m.transfer(TransferKind::of(Verb::Retr), TransferResult::Ok);
        m.transfer(TransferKind::of(Verb::Appe), TransferResult::Aborted);
        m.passive_listeners(1);
        m.data_connections(1);
        m.data_connections(1);
        m.data_connections(-1);
        m.refused(Limit::MaxPerIp);
        m.tls_handshake(Channel::Data, false);
        m.throttle_pause(true);
        m.throttle_pause(true);
        let g = TempFileGauge::new(&std::sync::Arc::new(Metrics::new()));
        drop(g);
        m.hooks_queued(1);
        m.hooks_queued(-1);
        m.hook_started();
        m.hook_started();
        m.hook_finished(HookResult::Killed);
        m.hook_dropped(crate::hooks::DropReason::QueueFull);
        m.hook_dropped(crate::hooks::DropReason::QueueFull);
        let t = text(&m);
        assert_eq!(value(&t, "leanftpd_sessions_open"), "1");
        assert_eq!(value(&t, "leanftpd_sessions_total"), "2");
        assert_eq!(value(&t, "leanftpd_transfer_throttle_pauses_total{direction=\"upload\"}"), "2");
        assert_eq!(value(&t, "leanftpd_transfer_throttle_pauses_total{direction=\"download\"}"), "0");
        assert_eq!(value(&t, "leanftpd_logins_total{result=\"ok\"}"), "1");
        assert_eq!(value(&t, "leanftpd_logins_total{result=\"failed\"}"), "2");
        assert_eq!(value(&t, "leanftpd_commands_total{verb=\"USER\"}"), "2");
        assert_eq!(value(&t, "leanftpd_commands_total{verb=\"ABOR\"}"), "1");
        assert_eq!(value(&t, "leanftpd_commands_total{verb=\"other\"}"), "1");
        assert_eq!(value(&t, "leanftpd_replies_total{class=\"1xx\"}"), "1");
        assert_eq!(value(&t, "leanftpd_replies_total{class=\"2xx\"}"), "3", "a multi-line reply counts once");
        assert_eq!(value(&t, "leanftpd_replies_total{class=\"3xx\"}"), "0");
        assert_eq!(value(&t, "leanftpd_replies_total{class=\"4xx\"}"), "1");
        assert_eq!(value(&t, "leanftpd_replies_total{class=\"5xx\"}"), "1");
        assert_eq!(value(&t, "leanftpd_received_bytes_total{channel=\"data\"}"), "10");
        assert_eq!(value(&t, "leanftpd_sent_bytes_total{channel=\"control\"}"), "15");
        assert_eq!(value(&t, "leanftpd_transfers_total{kind=\"retr\",result=\"ok\"}"), "1");
        assert_eq!(value(&t, "leanftpd_transfers_total{kind=\"appe\",result=\"aborted\"}"), "1");
        assert_eq!(value(&t, "leanftpd_passive_listeners_open"), "1");
        assert_eq!(value(&t, "leanftpd_data_connections_open"), "1");
        assert_eq!(value(&t, "leanftpd_limit_refusals_total{limit=\"max_per_ip\"}"), "1");
        if crate::TLS_BUILT_IN {
            assert_eq!(value(&t, "leanftpd_tls_handshakes_total{channel=\"data\",result=\"failed\"}"), "1");
        }
        assert_eq!(value(&t, "leanftpd_transfer_throttle_pauses_total{direction=\"download\"}"), "0");
        assert_eq!(value(&t, "leanftpd_upload_temp_files_open"), "0");
        assert_eq!(value(&t, "leanftpd_upload_hooks_started_total"), "2");
        assert_eq!(value(&t, "leanftpd_upload_hooks_finished_total{result=\"killed\"}"), "1");
        assert_eq!(value(&t, "leanftpd_upload_hooks_finished_total{result=\"ok\"}"), "0");
        assert_eq!(value(&t, "leanftpd_upload_hooks_dropped_total{reason=\"queue_full\"}"), "2");
        assert_eq!(value(&t, "leanftpd_upload_hooks_dropped_total{reason=\"spawn_error\"}"), "0");
        assert_eq!(value(&t, "leanftpd_upload_hooks_running"), "1");
        assert_eq!(value(&t, "leanftpd_upload_hooks_queued"), "0");
    }

    #[test]
    fn negative_and_extreme_values_render_as_decimal() {
        let mut buf = [0u8; 20];
        assert_eq!(decimal(0, false, &mut buf), "0");
        assert_eq!(decimal(u64::MAX, false, &mut buf), "18446744073709551615");
        assert_eq!(decimal(i64::MIN.unsigned_abs(), true, &mut buf), "-9223372036854775808");
        let m = Metrics::new();
        m.passive_listeners(-3);
        assert_eq!(value(&text(&m), "leanftpd_passive_listeners_open"), "-3");
    }

    /// The response buffer's bound holds whatever the counters hold.
    #[test]
    fn the_text_stays_under_its_bound_with_every_counter_at_its_largest() {
        let m = Metrics::new();
        let all_u64 = m
            .commands
            .iter()
            .chain(&m.replies)
            .chain(&m.received)
            .chain(&m.sent)
            .chain(m.transfers.iter().flatten())
            .chain(&m.refused)
            .chain(m.tls_handshakes.iter().flatten())
            .chain(&m.hooks_finished)
            .chain(&m.hooks_dropped)
            .chain(&m.throttle_pauses)
            .chain([&m.sessions, &m.logins_ok, &m.logins_failed, &m.hooks_started]);
        for c in all_u64 {
            c.store(u64::MAX, Relaxed);
        }
        for g in [&m.sessions_open, &m.passive_listeners_open, &m.data_connections_open, &m.upload_temp_files_open, &m.hooks_running, &m.hooks_queued] {
            g.store(i64::MIN, Relaxed);
        }
        let t = text(&m);
        println!("{} bytes at the largest", t.len());
        assert!(t.len() <= RENDER_MAX_BYTES, "{} bytes", t.len());
        assert!(t.lines().all(|l| l.starts_with('#') || l.ends_with("18446744073709551615") || l.ends_with("-9223372036854775808")));
    }

    #[test]
    fn label_values_need_no_escaping() {
        let all = Verb::ALL.iter().map(|v| v.name()).chain(CHANNELS).chain(KINDS).chain(RESULTS).chain(LIMITS).chain(HOOK_RESULTS).chain(HOOK_DROPS);
        for v in all {
            assert!(!v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'), "{v:?}");
        }
    }

    #[test]
    fn transfer_kinds_follow_their_verbs() {
        for (verb, kind) in [(Verb::Retr, "retr"), (Verb::Stor, "stor"), (Verb::Appe, "appe"), (Verb::Stou, "stou"), (Verb::List, "list"), (Verb::Nlst, "nlst"), (Verb::Mlsd, "mlsd")] {
            assert_eq!(KINDS[TransferKind::of(verb) as usize], kind);
        }
    }
}
