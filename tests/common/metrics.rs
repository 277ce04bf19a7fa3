//! Helpers of the metrics tests (`tests/metrics.rs`, `tests/scale.rs`): an
//! FTP control connection that counts its bytes and replies by class (what
//! the server's counters must show), scrapes with curl, the parsed samples,
//! and `promtool check metrics`.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::process::{need, run};
use super::{parse_epsv, IO_TIMEOUT};

/// A control connection that counts every byte it sends and receives and
/// every reply by class: what the server's counters must show.
pub struct Ftp {
    pub s: TcpStream,
    pub buf: Vec<u8>,
    pub sent: u64,
    pub received: u64,
    pub classes: [u64; 5],
}

impl Ftp {
    #[track_caller]
    pub fn connect(addr: SocketAddr) -> Ftp {
        let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).unwrap();
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut f = Ftp { s, buf: Vec::new(), sent: 0, received: 0, classes: [0; 5] };
        assert_eq!(f.reply().0, 220);
        f
    }

    pub fn send(&mut self, line: &str) {
        let bytes = format!("{line}\r\n");
        self.s.write_all(bytes.as_bytes()).unwrap();
        self.sent += bytes.len() as u64;
    }

    /// One whole reply (multi-line included): its code and text.
    #[track_caller]
    pub fn reply(&mut self) -> (u16, String) {
        loop {
            if let Some(end) = reply_end(&self.buf) {
                let text = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end);
                let code: u16 = text[..3].parse().unwrap();
                self.classes[usize::from(code / 100 - 1)] += 1;
                return (code, text);
            }
            let mut chunk = [0u8; 4096];
            let n = self.s.read(&mut chunk).expect("read a reply");
            assert!(n > 0, "connection closed; have {:?}", String::from_utf8_lossy(&self.buf));
            self.received += n as u64;
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    #[track_caller]
    pub fn cmd(&mut self, line: &str) -> (u16, String) {
        self.send(line);
        self.reply()
    }

    #[track_caller]
    pub fn expect(&mut self, line: &str, code: u16) -> String {
        let (got, text) = self.cmd(line);
        assert_eq!(got, code, "{line} → {text}");
        text
    }

    /// A transfer command: `150`, or `125` if the server had accepted the
    /// data connection before it read the command (both are right).
    #[track_caller]
    pub fn start(&mut self, line: &str) {
        let (code, text) = self.cmd(line);
        assert!(code == 150 || code == 125, "{line} → {text}");
    }

    /// EPSV and connect to the port it names.
    #[track_caller]
    pub fn data(&mut self) -> TcpStream {
        let text = self.expect("EPSV", 229);
        let port = parse_epsv(text.trim_end()).expect("EPSV port");
        let d = TcpStream::connect_timeout(&SocketAddr::new(self.s.peer_addr().unwrap().ip(), port), IO_TIMEOUT).unwrap();
        d.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        d
    }
}

/// The end of the first whole reply in `buf` (RFC 959 §4.2: a multi-line
/// reply ends with a line that starts with its code and a space).
pub fn reply_end(buf: &[u8]) -> Option<usize> {
    let first = buf.iter().position(|&b| b == b'\n')? + 1;
    if buf.get(3) != Some(&b'-') {
        return Some(first);
    }
    let mut pos = first;
    loop {
        let end = pos + buf[pos..].iter().position(|&b| b == b'\n')? + 1;
        if buf[pos..end].starts_with(&buf[..3]) && buf.get(pos + 3) == Some(&b' ') {
            return Some(end);
        }
        pos = end;
    }
}

/// A scrape with curl: the status, the headers (lower-case names) and the
/// body.
pub fn curl(args: &[&str], url: &str) -> (u16, HashMap<String, String>, String) {
    let curl = need("curl", "curl");
    let mut cmd = Command::new(curl);
    cmd.args(["-sS", "-i", "--max-time", "10"]).args(args).arg(url);
    let out = run(cmd, None).ok();
    let (head, body) = out.stdout.split_once("\r\n\r\n").unwrap_or_else(|| panic!("no head in {}", out.describe()));
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers = lines.filter_map(|l| l.split_once(": ")).map(|(k, v)| (k.to_ascii_lowercase(), v.to_string())).collect();
    (status, headers, body.to_string())
}

/// `GET /metrics` with curl at `url`: the text, checked to be 200 with
/// the text format's media type and its exact length.
#[track_caller]
pub fn scrape_url(url: &str) -> Metrics {
    let (status, headers, body) = curl(&[], url);
    assert_eq!(status, 200, "{body}");
    assert_eq!(headers["content-type"], "text/plain; version=0.0.4; charset=utf-8");
    assert_eq!(headers["content-length"], body.len().to_string());
    Metrics::parse(body)
}

/// Samples by series (`name{labels}`), and the text they came from.
pub struct Metrics {
    pub text: String,
    pub samples: HashMap<String, i64>,
}

impl Metrics {
    pub fn parse(text: String) -> Metrics {
        let samples = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let (series, value) = l.rsplit_once(' ').unwrap_or_else(|| panic!("bad sample line {l:?}"));
                (series.to_string(), value.parse().unwrap_or_else(|_| panic!("bad value in {l:?}")))
            })
            .collect();
        Metrics { text, samples }
    }

    #[track_caller]
    pub fn get(&self, series: &str) -> i64 {
        *self.samples.get(series).unwrap_or_else(|| panic!("no series {series} in\n{}", self.text))
    }

    /// Every series of `family` whose labels are not in `nonzero` is 0,
    /// and those in it have their value.
    #[track_caller]
    pub fn family_is(&self, family: &str, nonzero: &[(&str, i64)]) {
        let prefix = format!("{family}{{");
        let mut seen = 0;
        for (series, value) in &self.samples {
            let Some(labels) = series.strip_prefix(&prefix) else { continue };
            let labels = labels.trim_end_matches('}');
            let want = nonzero.iter().find(|(l, _)| *l == labels).map_or(0, |(_, v)| *v);
            assert_eq!(*value, want, "{series}");
            seen += 1;
        }
        assert!(seen >= nonzero.len(), "{family}: {seen} series\n{}", self.text);
    }

    /// `promtool check metrics` finds nothing to say.
    #[track_caller]
    pub fn promtool_clean(&self) {
        let promtool = need("promtool", "prometheus");
        let mut child = Command::new(promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run promtool");
        child.stdin.take().unwrap().write_all(self.text.as_bytes()).unwrap();
        let deadline = Instant::now() + Duration::from_secs(30);
        while child.try_wait().unwrap().is_none() {
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("promtool did not finish in 30 s");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let out = child.wait_with_output().unwrap();
        let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success() && said.trim().is_empty(), "promtool check metrics: {:?}\n{said}\n--- text ---\n{}", out.status, self.text);
    }
}

/// Read a data connection to its end, counting the bytes.
pub fn drain(mut d: TcpStream) -> u64 {
    let mut total = 0u64;
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match d.read(&mut chunk) {
            Ok(0) => return total,
            Ok(n) => total += n as u64,
            Err(e) => panic!("data connection: {e} after {total} bytes"),
        }
    }
}
