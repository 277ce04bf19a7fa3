//! The PROXY protocol header a load balancer (HAProxy) sends before the
//! client's own bytes, versions 1 (text) and 2 (binary), as specified in
//! HAProxy's `proxy-protocol.txt`: it names the client's real address.
//!
//! Sans-IO: `parse` looks at the bytes received so far (the reactor peeks
//! them with `MSG_PEEK`, so the client's first FTP bytes, or its TLS
//! ClientHello, stay in the socket) and says whether a complete header is
//! there, how long it is, and what it says. The decoding itself is the
//! `proxy-header` crate's; this module adds the bounds and the policy.
//! It never touches a socket.
//!
//! # Bounds
//! - A v1 header is at most `V1_MAX_BYTES` (107, the spec's own limit); a
//!   v1 line without its CRLF by then is refused.
//! - A v2 header is at most `V2_MAX_BYTES` (the 16-byte fixed part and
//!   1008 bytes of addresses and TLVs: room for the 216 of the largest
//!   address block, `AF_UNIX`, and the TLVs HAProxy adds with
//!   `proxy-v2-options`). A header that declares more is refused as soon as
//!   its 16-byte fixed part is in, without waiting for the rest.
//! - Bytes that cannot begin either signature are refused at once: no
//!   waiting for 16 bytes of garbage.
//!
//! # Invariants
//! - `parse` is linear in its input, never panics on any input, and never
//!   looks past `V2_MAX_BYTES`.
//! - `Parsed::Header { len, .. }` has `len <= input.len()` and `len <=
//!   V2_MAX_BYTES`: the reactor consumes exactly `len` bytes.

use std::net::SocketAddr;

use proxy_header::{ParseConfig, Protocol, ProxyHeader};

use crate::ftp::session::canonical;

/// The longest v1 header, CRLF included (spec, section 2.1).
pub const V1_MAX_BYTES: usize = 107;
/// The longest v2 header accepted: 16 bytes of fixed part, and addresses
/// plus TLVs up to 1008 bytes. The spec allows up to 16 + 65,535; a
/// balancer that sends more is misconfigured, and the bytes a connection
/// may make the server look at before it is anyone stay small.
pub const V2_MAX_BYTES: usize = 1024;
/// The most bytes `parse` needs to see: what the reactor peeks.
pub const MAX_HEADER_BYTES: usize = V2_MAX_BYTES;

const V1_SIGNATURE: &[u8] = b"PROXY ";
const V2_SIGNATURE: &[u8] = b"\r\n\r\n\x00\r\nQUIT\n";

/// Where a connection really comes from, according to its header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Proxied TCP: the client's address (`source`) and the address it
    /// connected to on the balancer (`destination`).
    Proxied {
        /// The real client (IPv4-mapped IPv6 made IPv4).
        source: SocketAddr,
        /// The balancer's frontend address the client connected to.
        destination: SocketAddr,
    },
    /// No client address: a v2 `LOCAL` command (the balancer's own health
    /// check), v1 `UNKNOWN`, or a v2 family this server does not take
    /// (`AF_UNSPEC`, `AF_UNIX`). The spec says to use the connection's own
    /// addresses then, and so does the reactor.
    Local,
}

/// What the bytes received so far hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parsed {
    /// A prefix of a valid header: wait for more bytes.
    Incomplete,
    /// A complete header of `len` bytes; what follows is the client's.
    Header {
        /// Bytes of the header, to consume from the socket.
        len: usize,
        /// What it says.
        origin: Origin,
    },
    /// Not a valid header (or past its bound): close the connection.
    Invalid(&'static str),
}

/// Look at the first bytes of a connection. See the module's bounds.
pub fn parse(input: &[u8]) -> Parsed {
    let input = &input[..input.len().min(MAX_HEADER_BYTES)];
    if input.is_empty() {
        return Parsed::Incomplete;
    }
    let max = if is_prefix(input, V1_SIGNATURE) {
        V1_MAX_BYTES
    } else if is_prefix(input, V2_SIGNATURE) {
        if input.len() < 16 {
            return Parsed::Incomplete;
        }
        let declared = u16::from_be_bytes([input[14], input[15]]) as usize;
        if 16 + declared > V2_MAX_BYTES {
            return Parsed::Invalid("v2 header longer than its bound");
        }
        // The whole header is the 16 bytes and what they declare: past
        // that, "too short" means the declared length is wrong, and the
        // bytes after it (the client's) must not be read as addresses.
        16 + declared
    } else {
        return Parsed::Invalid("not a PROXY protocol header");
    };
    let config = ParseConfig { include_tlvs: false, allow_v1: true, allow_v2: true };
    match ProxyHeader::parse(&input[..input.len().min(max)], config) {
        Ok((header, len)) => {
            let origin = match header.proxied_address() {
                Some(a) if a.protocol == Protocol::Stream => {
                    Origin::Proxied { source: canonical(a.source), destination: canonical(a.destination) }
                }
                Some(_) => return Parsed::Invalid("a datagram (UDP) header on a TCP connection"),
                None => Origin::Local,
            };
            Parsed::Header { len, origin }
        }
        // A v1 line that has its end already is all there is: "too short"
        // then means too few fields (or a bare LF), which more bytes
        // cannot mend. Refused now, not at --login-timeout.
        Err(proxy_header::Error::BufferTooShort) if max == V1_MAX_BYTES && input[..input.len().min(max)].contains(&b'\n') => {
            Parsed::Invalid("malformed PROXY protocol v1 line")
        }
        Err(proxy_header::Error::BufferTooShort) if input.len() < max => Parsed::Incomplete,
        Err(proxy_header::Error::BufferTooShort) => Parsed::Invalid("header longer than its bound"),
        Err(_) => Parsed::Invalid("malformed PROXY protocol header"),
    }
}

/// Whether `input` and `signature` agree on their common length.
fn is_prefix(input: &[u8], signature: &[u8]) -> bool {
    let n = input.len().min(signature.len());
    input[..n] == signature[..n]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v2(command: u8, family: u8, body: &[u8]) -> Vec<u8> {
        let mut h = V2_SIGNATURE.to_vec();
        h.push(command);
        h.push(family);
        h.extend_from_slice(&(body.len() as u16).to_be_bytes());
        h.extend_from_slice(body);
        h
    }

    fn v2_tcp4(src: [u8; 4], dst: [u8; 4], sport: u16, dport: u16) -> Vec<u8> {
        let mut body = Vec::new();
        body.extend_from_slice(&src);
        body.extend_from_slice(&dst);
        body.extend_from_slice(&sport.to_be_bytes());
        body.extend_from_slice(&dport.to_be_bytes());
        v2(0x21, 0x11, &body)
    }

    fn proxied(s: &str, d: &str) -> Origin {
        Origin::Proxied { source: s.parse().unwrap(), destination: d.parse().unwrap() }
    }

    #[test]
    fn v1_tcp4_with_ftp_bytes_after_it() {
        let h = b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 21\r\nUSER anonymous\r\n";
        let len = h.len() - b"USER anonymous\r\n".len();
        assert_eq!(parse(h), Parsed::Header { len, origin: proxied("192.0.2.7:40000", "198.51.100.1:21") });
    }

    #[test]
    fn v1_tcp6_and_unknown() {
        let h = b"PROXY TCP6 2001:db8::1 2001:db8::2 5000 21\r\n";
        assert_eq!(parse(h), Parsed::Header { len: h.len(), origin: proxied("[2001:db8::1]:5000", "[2001:db8::2]:21") });
        let u = b"PROXY UNKNOWN\r\n";
        assert_eq!(parse(u), Parsed::Header { len: u.len(), origin: Origin::Local });
    }

    #[test]
    fn v2_tcp4_local_and_unspec() {
        let h = v2_tcp4([127, 0, 0, 3], [127, 0, 0, 1], 5555, 2121);
        assert_eq!(parse(&h), Parsed::Header { len: 28, origin: proxied("127.0.0.3:5555", "127.0.0.1:2121") });
        let local = v2(0x20, 0x00, &[]);
        assert_eq!(parse(&local), Parsed::Header { len: 16, origin: Origin::Local });
        let unspec = v2(0x21, 0x00, &[]);
        assert_eq!(parse(&unspec), Parsed::Header { len: 16, origin: Origin::Local });
    }

    #[test]
    fn v2_tlvs_are_skipped_within_the_bound() {
        let mut body = vec![127, 0, 0, 3, 127, 0, 0, 1, 0, 1, 0, 2];
        body.extend_from_slice(&[0x04, 0x00, 0x03, b'a', b'b', b'c']); // PP2_TYPE_NOOP
        let h = v2(0x21, 0x11, &body);
        assert_eq!(parse(&h), Parsed::Header { len: h.len(), origin: proxied("127.0.0.3:1", "127.0.0.1:2") });
    }

    #[test]
    fn every_prefix_of_a_header_is_incomplete() {
        let v1 = b"PROXY TCP4 192.0.2.7 198.51.100.1 40000 21\r\n".to_vec();
        for h in [v1, v2_tcp4([1, 2, 3, 4], [5, 6, 7, 8], 1, 2)] {
            for n in 0..h.len() {
                assert_eq!(parse(&h[..n]), Parsed::Incomplete, "prefix of {n} bytes");
            }
            assert!(matches!(parse(&h), Parsed::Header { .. }));
        }
    }

    #[test]
    fn garbage_is_refused_from_its_first_wrong_byte() {
        assert!(matches!(parse(b"U"), Parsed::Invalid(_)));
        assert!(matches!(parse(b"USER anonymous\r\n"), Parsed::Invalid(_)));
        assert!(matches!(parse(b"PROXX"), Parsed::Invalid(_)));
        assert!(matches!(parse(b"\x16\x03\x01"), Parsed::Invalid(_))); // a TLS ClientHello
        assert!(matches!(parse(b"\r\n\r\n\x00\r\nQUIX"), Parsed::Invalid(_)));
        assert!(matches!(parse(b"PROXY TCP9 1 2 3 4\r\n"), Parsed::Invalid(_)));
        assert!(matches!(parse(b"PROXY TCP4 300.1.1.1 1.1.1.1 1 2\r\n"), Parsed::Invalid(_)));
    }

    #[test]
    fn a_complete_but_malformed_v1_line_is_refused_at_once() {
        for h in [&b"PROXY TCP4 1.2.3.4\r\n"[..], b"PROXY \r\n", b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", b"PROXY TCP4\r\n"] {
            assert!(matches!(parse(h), Parsed::Invalid(_)), "{:?}", String::from_utf8_lossy(h));
        }
    }

    #[test]
    fn an_over_long_v1_line_is_refused_at_107_bytes() {
        let mut h = b"PROXY UNKNOWN ".to_vec();
        h.resize(V1_MAX_BYTES - 1, b'x');
        assert_eq!(parse(&h), Parsed::Incomplete);
        h.push(b'x');
        assert!(matches!(parse(&h), Parsed::Invalid(_)));
        h.resize(4000, b'x');
        assert!(matches!(parse(&h), Parsed::Invalid(_)));
        // The longest legal v1 header (an UNKNOWN may carry anything).
        let mut ok = b"PROXY UNKNOWN ".to_vec();
        ok.resize(V1_MAX_BYTES - 2, b'x');
        ok.extend_from_slice(b"\r\n");
        assert_eq!(parse(&ok), Parsed::Header { len: V1_MAX_BYTES, origin: Origin::Local });
    }

    #[test]
    fn a_v2_header_declaring_a_huge_length_is_refused_at_16_bytes() {
        let mut h = V2_SIGNATURE.to_vec();
        h.extend_from_slice(&[0x21, 0x11, 0xff, 0xff]);
        assert!(matches!(parse(&h), Parsed::Invalid(_)));
        let mut just = V2_SIGNATURE.to_vec();
        just.extend_from_slice(&[0x21, 0x11]);
        just.extend_from_slice(&((V2_MAX_BYTES - 16) as u16).to_be_bytes());
        assert_eq!(parse(&just), Parsed::Incomplete);
        let mut over = V2_SIGNATURE.to_vec();
        over.extend_from_slice(&[0x21, 0x11]);
        over.extend_from_slice(&((V2_MAX_BYTES - 15) as u16).to_be_bytes());
        assert!(matches!(parse(&over), Parsed::Invalid(_)));
    }

    #[test]
    fn udp_and_bad_versions_are_refused() {
        let udp = v2(0x21, 0x12, &[1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2]);
        assert!(matches!(parse(&udp), Parsed::Invalid(_)));
        let v3 = v2(0x31, 0x11, &[1, 2, 3, 4, 5, 6, 7, 8, 0, 1, 0, 2]);
        assert!(matches!(parse(&v3), Parsed::Invalid(_)));
        let short = v2(0x21, 0x11, &[1, 2, 3]); // declares fewer bytes than IPv4 needs
        assert!(matches!(parse(&short), Parsed::Invalid(_)));
    }

    #[test]
    fn ipv4_mapped_sources_become_ipv4() {
        let h = b"PROXY TCP6 ::ffff:192.0.2.7 ::ffff:192.0.2.1 1 2\r\n";
        assert_eq!(parse(h), Parsed::Header { len: h.len(), origin: proxied("192.0.2.7:1", "192.0.2.1:2") });
    }

    #[test]
    fn no_input_makes_it_panic() {
        // A cheap deterministic sweep: every byte value at every position
        // of both signatures' first 20 bytes, and pseudo-random tails.
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        let bases: [&[u8]; 2] = [b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n", &v2_tcp4([1, 2, 3, 4], [5, 6, 7, 8], 1, 2)];
        for base in bases {
            for i in 0..base.len() {
                for b in 0..=255u8 {
                    let mut h = base.to_vec();
                    h[i] = b;
                    let _ = parse(&h);
                    let _ = parse(&h[..i + 1]);
                }
            }
            for _ in 0..2000 {
                let mut h = base.to_vec();
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                let cut = (seed % base.len() as u64) as usize;
                h.truncate(cut);
                h.extend((0..(seed >> 32) % 300).map(|k| (seed >> (k % 56)) as u8));
                let _ = parse(&h);
            }
        }
    }
}
