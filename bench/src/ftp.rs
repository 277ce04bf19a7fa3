//! The client side of the FTP control connection, without sockets: a reply
//! framer (RFC 959 §4.2 multi-line replies) and the PASV/EPSV address parsers.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// One complete reply: its code and the text of its first line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reply {
    pub code: u16,
    pub text: String,
}

/// Feeds bytes, yields complete replies.
#[derive(Debug, Default)]
pub struct ReplyParser {
    buf: Vec<u8>,
    /// Inside a multi-line reply: its code and first line.
    multi: Option<(u16, String)>,
}

fn code_of(line: &[u8]) -> Option<u16> {
    if line.len() >= 3 && line[..3].iter().all(u8::is_ascii_digit) {
        Some((line[0] - b'0') as u16 * 100 + (line[1] - b'0') as u16 * 10 + (line[2] - b'0') as u16)
    } else {
        None
    }
}

impl ReplyParser {
    pub fn feed(&mut self, bytes: &[u8]) {
        self.buf.extend_from_slice(bytes);
    }

    /// Bytes held for an incomplete line (so the caller can bound them).
    pub fn pending(&self) -> usize {
        self.buf.len()
    }

    /// The next complete reply, if one has arrived.
    pub fn next_reply(&mut self) -> Option<Reply> {
        loop {
            let nl = self.buf.iter().position(|&b| b == b'\n')?;
            let mut line: Vec<u8> = self.buf.drain(..=nl).collect();
            while matches!(line.last(), Some(b'\n' | b'\r')) {
                line.pop();
            }
            let code = code_of(&line);
            let sep = line.get(3).copied();
            let text = || String::from_utf8_lossy(line.get(4..).unwrap_or(&[])).into_owned();
            match (&self.multi, code) {
                (None, Some(c)) if sep == Some(b'-') => self.multi = Some((c, text())),
                (None, Some(c)) => return Some(Reply { code: c, text: text() }),
                (None, None) => {} // noise outside a reply: ignore
                (Some((mc, _)), Some(c)) if c == *mc && sep != Some(b'-') => {
                    let (code, text) = self.multi.take().unwrap_or_default();
                    return Some(Reply { code, text });
                }
                (Some(_), _) => {} // a middle line of a multi-line reply
            }
        }
    }
}

/// `227 Entering Passive Mode (h1,h2,h3,h4,p1,p2)`; a 0.0.0.0 host means the
/// control connection's server address (some servers say so behind NAT).
pub fn parse_pasv(text: &str, server: IpAddr) -> Option<SocketAddr> {
    let start = text.find(|c: char| c.is_ascii_digit())?;
    let nums: Vec<u16> = text[start..]
        .split(|c: char| !c.is_ascii_digit())
        .filter(|s| !s.is_empty())
        .take(6)
        .map(|s| s.parse().ok())
        .collect::<Option<Vec<u16>>>()?;
    if nums.len() != 6 || nums.iter().any(|&n| n > 255) {
        return None;
    }
    let ip = Ipv4Addr::new(nums[0] as u8, nums[1] as u8, nums[2] as u8, nums[3] as u8);
    let ip = if ip.is_unspecified() { server } else { IpAddr::V4(ip) };
    Some(SocketAddr::new(ip, nums[4] * 256 + nums[5]))
}

/// `229 Entering Extended Passive Mode (|||port|)`: the server's address, that port.
pub fn parse_epsv(text: &str, server: IpAddr) -> Option<SocketAddr> {
    let open = text.find('(')?;
    let inner = &text[open + 1..];
    let close = inner.find(')')?;
    let inner = &inner[..close];
    let d = inner.chars().next()?;
    let parts: Vec<&str> = inner.split(d).collect();
    let port: u16 = parts.get(3)?.parse().ok()?;
    Some(SocketAddr::new(server, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn single_and_multi_line_replies_split_anywhere() {
        let wire = b"220 hi\r\n211-Features:\r\n MLST type*;\r\n 211 not the end\r\n211 End\r\n230 ok\n";
        for cut in 0..wire.len() {
            let mut p = ReplyParser::default();
            let mut got = Vec::new();
            p.feed(&wire[..cut]);
            while let Some(r) = p.next_reply() {
                got.push(r);
            }
            p.feed(&wire[cut..]);
            while let Some(r) = p.next_reply() {
                got.push(r);
            }
            let codes: Vec<u16> = got.iter().map(|r| r.code).collect();
            assert_eq!(codes, vec![220, 211, 230], "cut at {cut}");
            assert_eq!(got[1].text, "Features:");
        }
    }

    #[test]
    fn passive_addresses() {
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(
            parse_pasv("Entering Passive Mode (127,0,0,1,195,80).", lo),
            Some("127.0.0.1:50000".parse().unwrap())
        );
        assert_eq!(parse_pasv("=0,0,0,0,4,1", lo), Some("127.0.0.1:1025".parse().unwrap()));
        assert_eq!(parse_pasv("(127,0,0,1,300,1)", lo), None);
        assert_eq!(
            parse_epsv("Entering Extended Passive Mode (|||40001|)", lo),
            Some("127.0.0.1:40001".parse().unwrap())
        );
        assert_eq!(parse_epsv("no parens", lo), None);
    }
}
