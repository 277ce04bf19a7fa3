//! Passive port allocation: a listener on the control connection's local
//! address, on a port picked at random from the configured range (so that
//! the next port cannot be guessed and stolen), or chosen by the kernel.
//!
//! Owns nothing after it returns; never registers with the poll.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::io;
use std::net::{IpAddr, SocketAddr};

use mio::net::TcpListener;

/// Random ports tried in the system's ephemeral range before falling back
/// to `bind(…:0)`.
const EPHEMERAL_TRIES: u32 = 16;

/// Picks and binds passive ports. Holds a small random number generator
/// seeded per process from the standard library's random hash keys (no
/// dependency, no syscall per call) and the system's ephemeral port range.
///
/// # Why not `bind(…:0)`
/// Letting the kernel choose looks free but is not: with many data
/// connections in TIME_WAIT (one per small transfer), the kernel's search
/// for a free ephemeral port walks its bind hash chains, and measured
/// here it took most of the server's CPU in a small-file benchmark. One
/// random port of the same range, bound directly, costs one lookup.
#[derive(Debug)]
pub struct PortPicker {
    state: u64,
    ephemeral: (u16, u16),
}

impl PortPicker {
    /// Seeded from process randomness.
    pub fn new() -> PortPicker {
        let mut h = RandomState::new().build_hasher();
        h.write_u64(0x6c65_616e_6674_7064);
        PortPicker { state: h.finish() | 1, ephemeral: ephemeral_range() }
    }

    fn next(&mut self) -> u64 {
        // xorshift64*
        let mut x = self.state;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.state = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Bind a passive listener on `ip`: in `range` starting at a random
    /// port and trying each port of the range once, or on port 0.
    /// `AddrInUse` for every port means the range is exhausted.
    pub fn bind(&mut self, ip: IpAddr, range: Option<(u16, u16)>) -> io::Result<TcpListener> {
        let Some((lo, hi)) = range else {
            let (lo, hi) = self.ephemeral;
            let span = u64::from(hi - lo) + 1;
            for _ in 0..EPHEMERAL_TRIES {
                let port = lo + (self.next() % span) as u16;
                match TcpListener::bind(SocketAddr::new(ip, port)) {
                    Ok(l) => return Ok(l),
                    Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
                    Err(e) => return Err(e),
                }
            }
            return TcpListener::bind(SocketAddr::new(ip, 0));
        };
        let span = u32::from(hi - lo) + 1;
        let start = (self.next() % u64::from(span)) as u32;
        for i in 0..span {
            let port = lo + ((start + i) % span) as u16;
            match TcpListener::bind(SocketAddr::new(ip, port)) {
                Ok(l) => return Ok(l),
                Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
                Err(e) => return Err(e),
            }
        }
        Err(io::Error::new(io::ErrorKind::AddrInUse, "passive port range exhausted"))
    }
}

/// `/proc/sys/net/ipv4/ip_local_port_range`, or Linux's default (also
/// what the sandbox lets passive listeners bind without `--passive-ports`).
pub fn ephemeral_range() -> (u16, u16) {
    let parsed = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").ok().and_then(|t| {
        let mut it = t.split_whitespace().map(|w| w.parse::<u16>().ok());
        match (it.next()??, it.next()??) {
            (lo, hi) if 1024 <= lo && lo <= hi => Some((lo, hi)),
            _ => None,
        }
    });
    parsed.unwrap_or((32768, 60999))
}

impl Default for PortPicker {
    fn default() -> Self {
        PortPicker::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_inside_the_range_and_reports_exhaustion() {
        let mut p = PortPicker::new();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        // Find two free adjacent ports by asking the kernel, then use them as a range.
        let probe = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = probe.local_addr().unwrap().port();
        drop(probe);
        if !(1024..65534).contains(&base) {
            return;
        }
        let a = p.bind(ip, Some((base, base))).unwrap();
        assert_eq!(a.local_addr().unwrap().port(), base);
        let err = p.bind(ip, Some((base, base))).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::AddrInUse);
    }
}
