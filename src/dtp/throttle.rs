//! Transfer rate limits: the token bucket of one data transfer, and the
//! parsing of a rate (`512K`, `2M`) shared by the command line and the
//! users file.
//!
//! It owns arithmetic only: it never reads the clock (every call takes
//! `now`), never touches a socket and never schedules anything. The reactor
//! asks [`Throttle::allowance`] before a step, charges what moved, and when
//! the bucket is empty it stops moving bytes and puts a deadline at
//! [`Throttle::resume_at`] in the timing wheel (see `reactor/data.rs`).
//!
//! # The bucket
//! Kept as a *theoretical arrival time* (`tat`, the GCRA form of a token
//! bucket, as in ATM's generic cell rate algorithm): the instant by which
//! every byte charged so far would have gone at exactly `rate`. The tokens
//! at `now` are `rate × (now − tat)`, capped at `burst` by moving `tat`
//! forward. Charging `n` bytes moves `tat` by `n / rate`.
//!
//! - `burst` is a tenth of a second of the rate (at least
//!   [`MIN_BURST_BYTES`], at most the rate itself): a transfer of 10 s
//!   starts with at most 0.1 s of bytes in hand, so it ends within 1 % of
//!   `size / rate`.
//! - A transfer paused by the throttle resumes when a full burst is due.
//!   The wheel never fires early but may fire up to a tick (100 ms) late;
//!   the tokens of that lateness are not capped away (`resumed`), so the
//!   average rate stays exact whatever the wheel's granularity, and one
//!   step after a late wake-up is at most a burst plus a tick of bytes.
//! - A step never moves more than its allowance (the copy of an APPE's or
//!   resumed STOR's kept part is not network traffic and ends its step);
//!   should one overshoot, `tat` lies in the future and the next pause is
//!   longer (a debt), never lost.
//!
//! # Invariants
//! - `rate` is within `MIN_RATE..=MAX_RATE` (bytes per second).
//! - `allowance` never exceeds `burst` except right after a throttle pause,
//!   and then by at most the wheel's lateness times the rate.

use std::time::{Duration, Instant};

/// The lowest rate accepted, in bytes per second (`1K`): below it a single
/// TCP segment would take longer than a second, and a burst of one slice
/// would leave the transfer idle for minutes.
pub const MIN_RATE: u64 = 1024;
/// The highest rate accepted, in bytes per second (`4095M`, just under
/// 4 GiB/s): above what one connection moves, and it fits a `u32`, so a
/// session's two rates cost 8 bytes of its slab entry.
pub const MAX_RATE: u64 = 4095 * 1024 * 1024;
/// The smallest burst: one TLS record's worth (16 KiB), so that a low rate
/// still moves whole records and segments, a few wake-ups a second.
pub const MIN_BURST_BYTES: u64 = 16 * 1024;

/// Parse a rate: bytes per second as a decimal integer, with an optional
/// suffix `K` (× 1024) or `M` (× 1048576), binary units, either case.
/// `0` means unlimited (`Ok(0)`); any other value must be within
/// [`MIN_RATE`]..=[`MAX_RATE`].
pub fn parse_rate(v: &str) -> Result<u64, String> {
    let bad = || format!("{v}: expected bytes per second, e.g. 131072, 512K or 2M (K = 1024, M = 1048576), or 0 for unlimited");
    let (digits, unit) = match v.as_bytes().last() {
        Some(b'K' | b'k') => (&v[..v.len() - 1], 1024u64),
        Some(b'M' | b'm') => (&v[..v.len() - 1], 1024 * 1024),
        _ => (v, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let n: u64 = digits.parse().map_err(|_| bad())?;
    let rate = n.checked_mul(unit).ok_or_else(bad)?;
    if rate == 0 {
        return Ok(0);
    }
    if !(MIN_RATE..=MAX_RATE).contains(&rate) {
        return Err(format!("{v}: a rate must be 0 (unlimited) or from 1K to 4095M bytes per second"));
    }
    Ok(rate)
}

/// A session's rates, bytes per second (0: unlimited), fixed at login from
/// the configuration the reactor holds at that moment (so a reloaded one
/// applies to new sessions) and the user's own options.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rates {
    /// RETR.
    pub download: u32,
    /// STOR, APPE, STOU.
    pub upload: u32,
}

impl Rates {
    /// An anonymous session's: `--anonymous-max-*-rate` where set, else
    /// `--max-*-rate`.
    pub fn anonymous(c: &crate::config::Config) -> Rates {
        Rates {
            download: compact(c.anonymous_max_download_rate.unwrap_or(c.max_download_rate)),
            upload: compact(c.anonymous_max_upload_rate.unwrap_or(c.max_upload_rate)),
        }
    }

    /// A users-file user's: the line's own `download-rate=`/`upload-rate=`
    /// where given, else `--max-*-rate`.
    pub fn user(c: &crate::config::Config, own: &crate::auth::UserOptions) -> Rates {
        Rates { download: compact(own.download_rate.unwrap_or(c.max_download_rate)), upload: compact(own.upload_rate.unwrap_or(c.max_upload_rate)) }
    }

    /// The bucket of a transfer in this direction, if limited.
    pub fn throttle(&self, upload: bool) -> Option<Throttle> {
        let rate = if upload { self.upload } else { self.download };
        (rate > 0).then(|| Throttle::new(rate.into()))
    }
}

/// A rate as a session keeps it: every parsed rate is at most
/// [`MAX_RATE`], which fits (a larger one, never parsed, is clamped).
fn compact(rate: u64) -> u32 {
    rate.min(MAX_RATE) as u32
}

/// The token bucket of one transfer. Created when the transfer command is
/// accepted (the session's rate for its direction); it starts full at the
/// first step that asks.
#[derive(Clone, Debug)]
pub struct Throttle {
    /// Bytes per second.
    rate: u64,
    /// The most bytes in hand.
    burst: u64,
    /// Theoretical arrival time; `None` until the first step.
    tat: Option<Instant>,
    /// Paused by the throttle: the wheel's deadline resumes it.
    paused: bool,
    /// Just resumed by the wheel: the next allowance keeps the tokens of
    /// the wake-up's lateness.
    resumed: bool,
}

impl Throttle {
    /// A bucket for `rate` bytes per second (clamped to the accepted range).
    pub fn new(rate: u64) -> Throttle {
        let rate = rate.clamp(MIN_RATE, MAX_RATE);
        let burst = (rate / 10).max(MIN_BURST_BYTES).min(rate);
        Throttle { rate, burst, tat: None, paused: false, resumed: false }
    }

    /// The rate, bytes per second.
    pub fn rate(&self) -> u64 {
        self.rate
    }

    /// The burst, bytes.
    pub fn burst(&self) -> u64 {
        self.burst
    }

    /// The time `bytes` take at the rate, rounded up to the nanosecond.
    fn span(&self, bytes: u64) -> Duration {
        Duration::from_nanos((bytes as u128 * 1_000_000_000).div_ceil(self.rate as u128).min(u64::MAX as u128) as u64)
    }

    /// Bytes the transfer may move now.
    pub fn allowance(&mut self, now: Instant) -> usize {
        let resumed = std::mem::take(&mut self.resumed);
        self.allowance_with(now, resumed)
    }

    /// `allowance`; `resumed`: the wheel just ended a throttle pause, so
    /// the tokens earned while the wake-up was late are kept (see the
    /// module doc).
    fn allowance_with(&mut self, now: Instant, resumed: bool) -> usize {
        let full = now.checked_sub(self.span(self.burst)).unwrap_or(now);
        let tat = match self.tat {
            None => full,
            Some(t) if !resumed && t < full => full,
            Some(t) => t,
        };
        self.tat = Some(tat);
        let due = now.saturating_duration_since(tat);
        let tokens = due.as_nanos() * self.rate as u128 / 1_000_000_000;
        let cap = if resumed { usize::MAX as u128 } else { self.burst as u128 };
        tokens.min(cap) as usize
    }

    /// `bytes` moved.
    pub fn charge(&mut self, bytes: u64, now: Instant) {
        let tat = self.tat.unwrap_or(now);
        self.tat = Some(tat + self.span(bytes));
    }

    /// When a full burst is due again: the wheel's deadline of a pause.
    pub fn resume_at(&self, now: Instant) -> Instant {
        self.tat.unwrap_or(now) + self.span(self.burst)
    }

    /// True while paused by the throttle.
    pub fn is_paused(&self) -> bool {
        self.paused
    }

    /// The bucket is empty: the reactor stops moving bytes until
    /// `resume_at`.
    pub fn pause(&mut self) {
        self.paused = true;
    }

    /// The wheel's deadline came: bytes may move again.
    pub fn resume(&mut self) {
        self.paused = false;
        self.resumed = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rates_take_binary_suffixes_and_zero_is_unlimited() {
        assert_eq!(parse_rate("0"), Ok(0));
        assert_eq!(parse_rate("0K"), Ok(0));
        assert_eq!(parse_rate("131072"), Ok(131072));
        assert_eq!(parse_rate("512K"), Ok(512 * 1024));
        assert_eq!(parse_rate("512k"), Ok(512 * 1024));
        assert_eq!(parse_rate("2M"), Ok(2 * 1024 * 1024));
        assert_eq!(parse_rate("1K"), Ok(MIN_RATE));
        assert_eq!(parse_rate("4095M"), Ok(MAX_RATE));
        for bad in ["", "K", "-1", "1.5M", "2G", "2 M", "1023", "4096M", "4294967295", "99999999999999999999", "2MB", "+5"] {
            assert!(parse_rate(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn anonymous_pair_replaces_the_general_one_and_a_users_own_replaces_both() {
        let mut c = crate::config::Config::new("/tmp".into());
        c.max_download_rate = 1 << 20;
        c.max_upload_rate = 2 << 20;
        assert_eq!(Rates::anonymous(&c), Rates { download: 1 << 20, upload: 2 << 20 });
        c.anonymous_max_download_rate = Some(0);
        assert_eq!(Rates::anonymous(&c), Rates { download: 0, upload: 2 << 20 });
        let own = crate::auth::UserOptions { download_rate: Some(4096), upload_rate: None };
        assert_eq!(Rates::user(&c, &own), Rates { download: 4096, upload: 2 << 20 });
        assert_eq!(Rates::user(&c, &Default::default()), Rates { download: 1 << 20, upload: 2 << 20 });
        assert!(Rates::anonymous(&c).throttle(false).is_none());
        assert_eq!(Rates::anonymous(&c).throttle(true).map(|t| t.rate()), Some(2 << 20));
    }

    #[test]
    fn burst_is_a_tenth_of_a_second_within_its_bounds() {
        assert_eq!(Throttle::new(2 * 1024 * 1024).burst(), 2 * 1024 * 1024 / 10);
        assert_eq!(Throttle::new(128 * 1024).burst(), MIN_BURST_BYTES);
        assert_eq!(Throttle::new(4096).burst(), 4096);
    }

    #[test]
    fn a_bucket_starts_full_and_refills_at_its_rate_up_to_its_burst() {
        let t0 = Instant::now();
        let mut t = Throttle::new(1024 * 1024);
        let burst = t.burst() as usize;
        assert_eq!(t.allowance_with(t0, false), burst);
        t.charge(burst as u64, t0);
        assert_eq!(t.allowance_with(t0, false), 0);
        // 50 ms later: 50 ms of tokens (± rounding of a nanosecond).
        let a = t.allowance_with(t0 + Duration::from_millis(50), false);
        assert!((a as i64 - 1024 * 1024 / 20).abs() <= 1, "{a}");
        // Idle for a minute: capped at one burst.
        assert_eq!(t.allowance_with(t0 + Duration::from_secs(60), false), burst);
    }

    #[test]
    fn a_late_resume_keeps_the_tokens_of_its_lateness_so_the_average_is_exact() {
        let t0 = Instant::now();
        let rate = 2 * 1024 * 1024u64;
        let mut t = Throttle::new(rate);
        let mut now = t0;
        let mut sent = 0u64;
        let mut resumed = false;
        let mut last_send = t0;
        // Every wake-up is 100 ms late (a whole wheel tick).
        while sent < 20 * 1024 * 1024 {
            let a = t.allowance_with(now, resumed) as u64;
            let n = a.min(20 * 1024 * 1024 - sent);
            t.charge(n, now);
            sent += n;
            last_send = now;
            now = t.resume_at(now) + Duration::from_millis(100);
            resumed = true;
        }
        // 10 s of bytes, 0.1 s of them in hand at the start; the lateness
        // delays the last slice by at most a tick, and loses nothing.
        let secs = (last_send - t0).as_secs_f64();
        assert!((9.85..=10.05).contains(&secs), "{secs}");
    }

    #[test]
    fn an_overshoot_is_a_debt_paid_by_a_longer_pause() {
        let t0 = Instant::now();
        let mut t = Throttle::new(1024 * 1024);
        let _ = t.allowance_with(t0, false);
        t.charge(1024 * 1024 + t.burst(), t0);
        assert_eq!(t.allowance_with(t0 + Duration::from_millis(900), true), 0);
        let at = t.resume_at(t0);
        assert!(at >= t0 + Duration::from_millis(1090) && at <= t0 + Duration::from_millis(1110));
    }
}
