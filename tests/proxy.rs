//! The PROXY protocol (`--proxy-protocol`, `--proxy-from`), issue 12.
//!
//! First without HAProxy, over loopback with hand-made headers sent from
//! 127.0.0.2 (the "balancer", the only `--proxy-from` source): headers
//! whole, split into 1-byte writes, with FTP bytes in the same segment,
//! and the hostile cases (garbage, an over-long v1 line, a v2 header
//! declaring a huge length, silence until the login timeout, a direct
//! connection from outside `--proxy-from`, a passive data connection whose
//! header names another client).
//!
//! Then with HAProxy (Debian's `haproxy`, installed by `.ci/setup.sh`) in
//! front of two leanftpd processes on one root: see the second half.

#![cfg(feature = "proxy")]

mod common;

use std::io::{Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

use common::balancer::*;
use common::*;

/// The balancer's address in these tests (the `--proxy-from` source).
const BALANCER: &str = "127.0.0.2";
/// The real clients the headers name.
const CLIENT: &str = "127.0.0.3";
const OTHER_CLIENT: &str = "127.0.0.4";

/// A server behind a "balancer" at 127.0.0.2, with `tweak` on top.
fn behind_balancer(tweak: impl FnOnce(&mut leanftpd::Config)) -> TestServer {
    TestServer::with(|c| {
        c.proxy_protocol = true;
        c.proxy_from = vec![format!("{BALANCER}/32").parse().unwrap()];
        tweak(c);
    })
}

/// A control connection through the "balancer" for `client`, header sent
/// and greeting read.
#[track_caller]
fn through_balancer(srv: &TestServer, header: &[u8]) -> Ctl {
    let mut s = connect_bound(BALANCER, srv.addr);
    s.write_all(header).unwrap();
    let mut c = Ctl::from_stream(s);
    let r = c.reply();
    assert_eq!(r.code, 220, "greeting after the header: {r:?}");
    c
}

#[test]
fn v1_header_and_commands_in_one_segment_are_all_run() {
    let srv = behind_balancer(|_| {});
    let mut s = connect_bound(BALANCER, srv.addr);
    let mut bytes = v1(CLIENT, 40001, srv.addr);
    bytes.extend_from_slice(b"USER anonymous\r\nPASS x@y\r\nPWD\r\n");
    s.write_all(&bytes).unwrap();
    let mut c = Ctl::from_stream(s);
    assert_eq!(c.reply().code, 220);
    assert_eq!(c.reply().code, 331);
    assert_eq!(c.reply().code, 230);
    assert_eq!(c.reply().code, 257);
    assert_eq!(seen_as(&mut c), CLIENT);
}

#[test]
fn v2_header_sent_one_byte_per_segment_is_assembled() {
    let srv = behind_balancer(|_| {});
    let mut s = connect_bound(BALANCER, srv.addr);
    for b in v2(CLIENT, 40002, srv.addr) {
        s.write_all(&[b]).unwrap();
        std::thread::sleep(Duration::from_millis(3));
    }
    // Nothing is said before the header is whole; then the greeting.
    let mut c = Ctl::from_stream(s);
    assert_eq!(c.reply().code, 220);
    c.login("anonymous", "x@y");
    assert_eq!(seen_as(&mut c), CLIENT);
}

#[test]
fn a_v2_local_header_uses_the_balancers_own_address() {
    let srv = behind_balancer(|_| {});
    let mut c = through_balancer(&srv, &v2_local());
    c.login("anonymous", "x@y");
    assert_eq!(seen_as(&mut c), BALANCER);
}

#[test]
fn bytes_that_are_no_header_close_the_connection_without_a_byte() {
    let srv = behind_balancer(|c| c.login_timeout = Duration::from_secs(60));
    let huge_v2 = b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\xff\xff".to_vec();
    let mut long_v1 = b"PROXY UNKNOWN ".to_vec();
    long_v1.resize(200, b'x');
    let cases: [(&str, Vec<u8>); 5] = [
        ("an FTP command", b"USER anonymous\r\n".to_vec()),
        ("a TLS ClientHello", b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03".to_vec()),
        ("a v1 line past 107 bytes", long_v1),
        ("a v2 header declaring 65,535 bytes", huge_v2),
        ("a v1 header with a bad address", b"PROXY TCP4 127.0.0.300 127.0.0.1 1 2\r\n".to_vec()),
    ];
    for (what, bytes) in cases {
        let mut s = connect_bound(BALANCER, srv.addr);
        s.write_all(&bytes).unwrap();
        // Closed at once (the login timeout is a minute away, the read
        // timeout 10 s), and nothing was said.
        let got = closed_silently(s);
        assert!(got.is_empty(), "{what}: the server sent {:?}", String::from_utf8_lossy(&got));
    }
    // And the server serves the next one.
    let mut c = through_balancer(&srv, &v1(CLIENT, 40003, srv.addr));
    c.login("anonymous", "x@y");
}

#[test]
fn no_header_until_the_login_timeout_is_closed_while_others_are_served() {
    let srv = behind_balancer(|c| c.login_timeout = Duration::from_secs(2));
    let silent = connect_bound(BALANCER, srv.addr);
    let mut half = connect_bound(BALANCER, srv.addr);
    half.write_all(&v1(CLIENT, 40004, srv.addr)[..10]).unwrap();
    let mut c = through_balancer(&srv, &v2(OTHER_CLIENT, 40005, srv.addr));
    c.login("anonymous", "x@y");
    for (what, s) in [("silent", silent), ("half a header", half)] {
        let got = closed_silently(s);
        assert!(got.is_empty(), "{what}: the server sent {:?}", String::from_utf8_lossy(&got));
    }
    assert_eq!(c.expect("NOOP", 200).code, 200);
    assert_eq!(seen_as(&mut c), OTHER_CLIENT);
}

#[test]
fn a_direct_connection_from_outside_proxy_from_is_closed() {
    let srv = behind_balancer(|_| {});
    for src in ["127.0.0.1", CLIENT] {
        let got = closed_silently(connect_bound(src, srv.addr));
        assert!(got.is_empty(), "from {src}: the server sent {:?}", String::from_utf8_lossy(&got));
    }
    // Even with a header: only the balancer may name a client.
    let mut s = connect_bound(CLIENT, srv.addr);
    let _ = s.write_all(&v1(OTHER_CLIENT, 40006, srv.addr));
    assert!(closed_silently(s).is_empty());
    let mut c = through_balancer(&srv, &v1(CLIENT, 40015, srv.addr));
    c.login("anonymous", "x@y");
}

#[test]
fn max_per_ip_counts_the_real_client_not_the_balancer() {
    let srv = behind_balancer(|c| c.max_per_ip = 1);
    let mut first = through_balancer(&srv, &v1(CLIENT, 40007, srv.addr));
    first.login("anonymous", "x@y");
    let mut s = connect_bound(BALANCER, srv.addr);
    s.write_all(&v1(CLIENT, 40008, srv.addr)).unwrap();
    let mut second = Ctl::from_stream(s);
    assert_eq!(second.reply().code, 421, "a second connection of the same real client");
    let mut other = through_balancer(&srv, &v2(OTHER_CLIENT, 40009, srv.addr));
    other.login("anonymous", "x@y");
    assert_eq!(first.expect("NOOP", 200).code, 200);
}

#[test]
fn port_and_eprt_must_name_the_real_client_and_active_mode_connects_to_it() {
    let srv = behind_balancer(|_| {});
    srv.put("f.txt", b"to the real client\n");
    let mut c = through_balancer(&srv, &v1(CLIENT, 40010, srv.addr));
    c.login("anonymous", "x@y");
    // The balancer's address is not the client's.
    let l = TcpListener::bind((BALANCER, 0)).unwrap();
    let r = c.cmd(&port_arg(l.local_addr().unwrap()));
    assert_eq!(r.code, 504, "PORT to the balancer: {r:?}");
    let r = c.cmd(&eprt_arg(l.local_addr().unwrap()));
    assert_eq!(r.code, 504, "EPRT to the balancer: {r:?}");
    // The real client's address is, and the server connects there.
    let l = TcpListener::bind((CLIENT, 0)).unwrap();
    c.expect(&port_arg(l.local_addr().unwrap()), 200);
    let (_, mut data) = c.start_on(DataPrep::Active(l), "RETR f.txt");
    let mut got = Vec::new();
    data.read_to_end(&mut got).unwrap();
    assert_eq!(got, b"to the real client\n");
    assert_eq!(c.reply().code, 226);
}

#[test]
fn passive_data_through_the_balancer_must_name_the_sessions_client() {
    let srv = behind_balancer(|c| c.data_timeout = Duration::from_secs(2));
    srv.put("f.bin", &pattern(100_000, 7));
    let mut c = through_balancer(&srv, &v1(CLIENT, 40011, srv.addr));
    c.login("anonymous", "x@y");
    c.expect("TYPE I", 200);

    // A header naming another client: refused, the transfer gets 425.
    let addr = c.pasv();
    c.send("RETR f.bin");
    let mut thief = connect_bound(BALANCER, addr);
    thief.write_all(&v2(OTHER_CLIENT, 40012, addr)).unwrap();
    let got = read_to_eof_within(&mut thief, IO_TIMEOUT).unwrap_or_default();
    assert!(got.is_empty(), "the foreign data connection got {} bytes", got.len());
    assert_eq!(c.reply().code, 425);

    // A direct connection from the real client is still fine.
    let addr = c.pasv();
    c.send("RETR f.bin");
    let mut data = connect_bound(CLIENT, addr);
    assert!(c.reply().is_preliminary());
    let mut got = Vec::new();
    data.read_to_end(&mut got).unwrap();
    assert_eq!(sha256(&got), sha256(&pattern(100_000, 7)));
    assert_eq!(c.reply().code, 226);

    // Through the balancer with the right header, the data in the same
    // segment as the header: every byte of the upload arrives.
    let upload = pattern(50_000, 9);
    let addr = c.pasv();
    c.send("STOR up.bin");
    let mut data = connect_bound(BALANCER, addr);
    let mut first = v2(CLIENT, 40013, addr);
    first.extend_from_slice(&upload);
    data.write_all(&first).unwrap();
    data.shutdown(Shutdown::Write).unwrap();
    assert!(c.reply().is_preliminary());
    drop(data);
    assert_eq!(c.reply().code, 226);
    assert_eq!(sha256(&std::fs::read(srv.path("up.bin")).unwrap()), sha256(&upload));

    // And a download through the balancer (v1 header, split in two).
    let addr = c.pasv();
    c.send("RETR f.bin");
    let mut data = connect_bound(BALANCER, addr);
    let h = v1(CLIENT, 40014, addr);
    data.write_all(&h[..7]).unwrap();
    std::thread::sleep(Duration::from_millis(20));
    data.write_all(&h[7..]).unwrap();
    assert!(c.reply().is_preliminary());
    let mut got = Vec::new();
    data.read_to_end(&mut got).unwrap();
    assert_eq!(sha256(&got), sha256(&pattern(100_000, 7)));
    assert_eq!(c.reply().code, 226);
}

// ---------------------------------------------------------------------------
// With HAProxy: one frontend (`send-proxy-v2`, once `send-proxy`) in front
// of two leanftpd processes on one root, HAProxy connecting from 127.0.0.2
// and the clients from 127.0.0.3 and 127.0.0.4. Passive data goes through
// HAProxy too: a frontend on each backend's passive range, routed by
// `dst_port` to the backend that owns the range, which connects to the same
// port there; the backends advertise HAProxy's address (`--passive-address`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Instant;

use common::process::{self, cmd, need, run, Out};

/// HAProxy's frontends listen here (the address clients use).
const FRONT_IP: &str = "127.0.0.1";
/// The two backends' addresses (each binds its passive ports there too,
/// so they never clash with HAProxy's frontends on 127.0.0.1).
const BACKEND_IPS: [&str; 2] = ["127.0.0.10", "127.0.0.11"];
/// Passive ports per backend.
const RANGE_PORTS: u16 = 8;

/// `n` consecutive ports free on every address in `ips` (checked by
/// binding; a random base under the ephemeral range).
fn free_range(n: u16, ips: &[&str]) -> (u16, u16) {
    let mut seed = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos() as u64
        ^ (std::process::id() as u64) << 20;
    for _ in 0..100 {
        seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let base = 20_000 + ((seed >> 33) % 12_000) as u16;
        let free = (base..base + n).all(|p| ips.iter().all(|ip| TcpListener::bind((*ip, p)).is_ok()));
        if free {
            return (base, base + n - 1);
        }
    }
    panic!("no {n} free consecutive ports");
}

/// A leanftpd behind HAProxy on `ip`, serving `root`.
struct Backend {
    server: process::Server,
    range: (u16, u16),
    xferlog: PathBuf,
    _xferdir: tempfile::TempDir,
}

impl Backend {
    #[track_caller]
    fn start(ip: &str, root: &Path, range: (u16, u16), extra: &[&str]) -> Backend {
        let xferdir = tempfile::tempdir().unwrap();
        let xferlog = xferdir.path().join("xferlog");
        let (ports, xfer) = (format!("{}-{}", range.0, range.1), xferlog.display().to_string());
        let mut args = vec!["--anonymous-write", "--passive-address", FRONT_IP, "--data-timeout", "5", "--passive-ports", &ports];
        args.extend(["--proxy-protocol", "--proxy-from", BALANCER, "--xferlog", &xfer]);
        args.extend_from_slice(extra);
        // No 220 to wait for: a connection from here is not the balancer's
        // and gets closed; the server is ready once its socket listens.
        let server = process::Server::start_unprobed_on(ip.parse().unwrap(), root, &args);
        Backend { server, range, xferlog, _xferdir: xferdir }
    }

    fn log(&self) -> String {
        self.server.log_text()
    }

    fn xferlog(&self) -> String {
        std::fs::read_to_string(&self.xferlog).unwrap_or_default()
    }
}

/// HAProxy in the foreground (`-db`), killed by PID on drop.
struct Haproxy {
    child: Option<Child>,
    /// The control frontend.
    addr: SocketAddr,
    log: PathBuf,
    _dir: tempfile::TempDir,
}

impl Haproxy {
    /// `send_proxy`: `send-proxy` (v1) or `send-proxy-v2`.
    #[track_caller]
    fn start(backends: &[&Backend], send_proxy: &str) -> Haproxy {
        let haproxy = need("haproxy", "haproxy");
        let dir = tempfile::tempdir().unwrap();
        let port = process::free_port(FRONT_IP.parse().unwrap());
        let mut cfg = format!(
            "global\n    maxconn 256\n\
             defaults\n    mode tcp\n    timeout connect 5s\n    timeout client 60s\n    timeout server 60s\n\
             frontend ftp\n    bind {FRONT_IP}:{port}\n    default_backend control\n\
             backend control\n    balance roundrobin\n"
        );
        for (i, b) in backends.iter().enumerate() {
            cfg += &format!("    server s{i} {} {send_proxy} source {BALANCER}\n", b.server.addr);
        }
        cfg += "frontend data\n";
        for b in backends {
            cfg += &format!("    bind {FRONT_IP}:{}-{}\n", b.range.0, b.range.1);
        }
        for (i, b) in backends.iter().enumerate() {
            cfg += &format!("    use_backend data{i} if {{ dst_port {}:{} }}\n", b.range.0, b.range.1);
        }
        for (i, b) in backends.iter().enumerate() {
            // No port: HAProxy connects to the port the client connected to.
            cfg += &format!("backend data{i}\n    server s{i} {} {send_proxy} source {BALANCER}\n", b.server.addr.ip());
        }
        let cfg_path = dir.path().join("haproxy.cfg");
        std::fs::write(&cfg_path, &cfg).unwrap();
        let log = dir.path().join("haproxy.log");
        let f = std::fs::File::create(&log).unwrap();
        let child = Command::new(haproxy)
            .arg("-db")
            .arg("-f")
            .arg(&cfg_path)
            .stdin(Stdio::null())
            .stdout(Stdio::from(f.try_clone().unwrap()))
            .stderr(Stdio::from(f))
            .spawn()
            .expect("spawn haproxy");
        let addr = SocketAddr::new(FRONT_IP.parse().unwrap(), port);
        let mut h = Haproxy { child: Some(child), addr, log, _dir: dir };
        let deadline = Instant::now() + process::START_TIMEOUT;
        let last_data = SocketAddr::new(addr.ip(), backends[backends.len() - 1].range.1);
        while !(is_listening(addr) && is_listening(last_data)) {
            if let Some(st) = h.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("haproxy exited early with {st:?}:\n{cfg}\n{}", std::fs::read_to_string(&h.log).unwrap_or_default());
            }
            assert!(Instant::now() < deadline, "haproxy did not listen:\n{cfg}\n{}", std::fs::read_to_string(&h.log).unwrap_or_default());
            std::thread::sleep(Duration::from_millis(20));
        }
        h
    }

    fn url(&self) -> String {
        format!("ftp://{}", self.addr)
    }
}

impl Drop for Haproxy {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("--- haproxy log ---\n{}", std::fs::read_to_string(&self.log).unwrap_or_default());
        }
    }
}

/// Two backends on one fresh root, HAProxy in front.
struct Cluster {
    haproxy: Haproxy,
    backends: [Backend; 2],
    root: tempfile::TempDir,
}

impl Cluster {
    #[track_caller]
    fn start(send_proxy: &str, extra: &[&str]) -> Cluster {
        let root = tempfile::tempdir().unwrap();
        let ra = free_range(RANGE_PORTS, &[FRONT_IP, BACKEND_IPS[0]]);
        let a = Backend::start(BACKEND_IPS[0], root.path(), ra, extra);
        let rb = loop {
            let r = free_range(RANGE_PORTS, &[FRONT_IP, BACKEND_IPS[1]]);
            if r.1 < ra.0 || r.0 > ra.1 {
                break r;
            }
        };
        let b = Backend::start(BACKEND_IPS[1], root.path(), rb, extra);
        let haproxy = Haproxy::start(&[&a, &b], send_proxy);
        Cluster { haproxy, backends: [a, b], root }
    }

    /// The backend whose log holds `needle`, and that only one does.
    #[track_caller]
    fn served_by(&self, needle: &str) -> usize {
        let has: Vec<usize> = (0..2).filter(|&i| self.backends[i].log().contains(needle)).collect();
        assert_eq!(has.len(), 1, "{needle:?} in the logs of backends {has:?}\n--- a ---\n{}\n--- b ---\n{}",
            self.backends[0].log(), self.backends[1].log());
        has[0]
    }
}

/// A control connection from `client` through HAProxy, greeted.
#[track_caller]
fn via(h: &Haproxy, client: &str) -> Ctl {
    let mut c = Ctl::from_stream(connect_bound(client, h.addr));
    let r = c.reply();
    assert_eq!(r.code, 220, "greeting through haproxy: {r:?}");
    c
}

/// PASV, then a data connection from `client` to the address it names.
#[track_caller]
fn pasv_from(c: &mut Ctl, client: &str) -> (SocketAddr, impl FnOnce() -> TcpStream) {
    let addr = c.pasv();
    assert_eq!(addr.ip().to_string(), FRONT_IP, "PASV must name HAProxy's address");
    let client = client.to_string();
    (addr, move || connect_bound(&client, addr))
}

/// Upload through one session, download through another that lands on the
/// other backend; every log names the real client.
fn upload_on_one_backend_download_on_the_other(send_proxy: &str) {
    let cl = Cluster::start(send_proxy, &[]);
    let body = pattern(3 * MIB + 17, 12);
    let name = unique("up");

    let mut up = via(&cl.haproxy, CLIENT);
    up.login("anonymous", "x@y");
    up.expect("TYPE I", 200);
    let (_, connect) = pasv_from(&mut up, CLIENT);
    up.send(&format!("STOR {name}"));
    let mut data = connect();
    assert!(up.reply().is_preliminary());
    data.write_all(&body).unwrap();
    data.shutdown(Shutdown::Write).unwrap();
    drop(data);
    assert_eq!(up.reply().code, 226);

    // Round robin: the next session goes to the other backend.
    let mut down = via(&cl.haproxy, CLIENT);
    down.login("anonymous", "x@y");
    down.expect("TYPE I", 200);
    let (_, connect) = pasv_from(&mut down, CLIENT);
    down.send(&format!("RETR {name}"));
    let mut data = connect();
    assert!(down.reply().is_preliminary());
    let mut got = Vec::new();
    data.read_to_end(&mut got).unwrap();
    assert_eq!(down.reply().code, 226);
    assert_eq!(sha256(&got), sha256(&body), "downloaded bytes differ");
    assert_eq!(sha256_file(&cl.root.path().join(&name)), sha256(&body), "bytes on disk differ");
    up.expect("QUIT", 221);
    down.expect("QUIT", 221);

    let stored = cl.served_by(&format!("Stor /{name} "));
    let retrieved = cl.served_by(&format!("Retr /{name} "));
    assert_ne!(stored, retrieved, "both sessions on one backend");
    for b in &cl.backends {
        let log = b.log();
        // Every session line is prefixed `[cN client:port user]`.
        let sessions: Vec<&str> = log.lines().filter(|l| l.contains("] [c")).collect();
        assert!(sessions.len() >= 3, "too few session lines: {log}");
        for l in sessions {
            assert!(l.contains(&format!(" {CLIENT}:")), "a session line without the real client: {l}");
            assert!(!l.contains(BALANCER), "a session line naming the balancer: {l}");
        }
        let x = b.xferlog();
        assert_eq!(x.lines().count(), 1, "one transfer per backend: {x}");
        assert!(x.contains(&format!(" {CLIENT} ")), "xferlog without the real client: {x}");
        assert!(!x.contains(BALANCER), "xferlog names the balancer: {x}");
    }
    // A direct connection to a backend (not from the balancer) is closed.
    let got = closed_silently(connect_bound(CLIENT, cl.backends[0].server.addr));
    assert!(got.is_empty(), "a direct connection got {:?}", String::from_utf8_lossy(&got));
}

#[test]
fn haproxy_v2_upload_on_one_backend_download_on_the_other() {
    upload_on_one_backend_download_on_the_other("send-proxy-v2");
}

#[test]
fn haproxy_v1_upload_on_one_backend_download_on_the_other() {
    upload_on_one_backend_download_on_the_other("send-proxy");
}

fn curl_cmd(args: &[&str]) -> Command {
    let mut c = cmd(&need("curl", "curl"), &["-sS", "--connect-timeout", "5", "--max-time", "25", "--interface", CLIENT]);
    c.args(args);
    c
}

fn lftp(h: &Haproxy, script: &str) -> Out {
    let lftp = need("lftp", "lftp");
    let full = format!(
        "set cmd:fail-exit yes; set net:max-retries 1; set net:timeout 10; set net:reconnect-interval-base 1; \
         set net:socket-bind-ipv4 {CLIENT}; set ftp:passive-mode on; {script}; quit"
    );
    run(cmd(&lftp, &["-e", &full, &format!("ftp://anonymous:x@{}", h.addr)]), None)
}

#[test]
fn haproxy_curl_and_lftp_in_passive_mode() {
    let cl = Cluster::start("send-proxy-v2", &[]);
    let work = tempfile::tempdir().unwrap();
    let body = pattern(MIB + 5, 21);
    let src = work.path().join("src.bin");
    std::fs::write(&src, &body).unwrap();

    // curl: upload, then download (two sessions: one per backend).
    let url = format!("{}/curl.bin", cl.haproxy.url());
    run(curl_cmd(&["-T", src.to_str().unwrap(), &url]), None).ok();
    let out = work.path().join("curl.out");
    run(curl_cmd(&["-o", out.to_str().unwrap(), &url]), None).ok();
    assert_eq!(sha256_file(&out), sha256(&body), "curl download");

    // lftp: the same file back, and an upload of its own.
    let got = work.path().join("lftp.out");
    lftp(&cl.haproxy, &format!("get /curl.bin -o '{}'", got.display())).ok();
    assert_eq!(sha256_file(&got), sha256(&body), "lftp download");
    lftp(&cl.haproxy, &format!("put '{}' -o /lftp.bin", src.display())).ok();
    assert_eq!(sha256_file(&cl.root.path().join("lftp.bin")), sha256(&body), "lftp upload on disk");

    // Four transfers of 1 MiB over the two backends, each logged with the
    // real client's address.
    let records: Vec<String> = cl.backends.iter().flat_map(|b| b.xferlog().lines().map(String::from).collect::<Vec<_>>()).collect();
    let big: Vec<&String> = records.iter().filter(|l| l.contains(&format!(" {} ", body.len()))).collect();
    assert_eq!(big.len(), 4, "xferlog records: {records:#?}");
    for r in big {
        assert!(r.contains(&format!(" {CLIENT} ")), "xferlog record without the real client: {r}");
    }
}

#[test]
fn haproxy_max_per_ip_applies_to_the_real_client() {
    let root = tempfile::tempdir().unwrap();
    let range = free_range(RANGE_PORTS, &[FRONT_IP, BACKEND_IPS[0]]);
    let b = Backend::start(BACKEND_IPS[0], root.path(), range, &["--max-per-ip", "1"]);
    let h = Haproxy::start(&[&b], "send-proxy-v2");
    let mut first = via(&h, CLIENT);
    first.login("anonymous", "x@y");
    let mut second = Ctl::from_stream(connect_bound(CLIENT, h.addr));
    assert_eq!(second.reply().code, 421, "the second connection of {CLIENT}");
    let mut other = via(&h, OTHER_CLIENT);
    other.login("anonymous", "x@y");
    assert_eq!(first.expect("NOOP", 200).code, 200);
    assert_eq!(seen_as(&mut first), CLIENT);
    assert_eq!(seen_as(&mut other), OTHER_CLIENT);
}

#[test]
fn haproxy_pasv_data_connection_from_another_real_client_is_refused() {
    let root = tempfile::tempdir().unwrap();
    std::fs::write(root.path().join("secret.bin"), pattern(10_000, 3)).unwrap();
    let range = free_range(RANGE_PORTS, &[FRONT_IP, BACKEND_IPS[0]]);
    let b = Backend::start(BACKEND_IPS[0], root.path(), range, &["--data-timeout", "2"]);
    let h = Haproxy::start(&[&b], "send-proxy-v2");
    let mut c = via(&h, CLIENT);
    c.login("anonymous", "x@y");
    c.expect("TYPE I", 200);
    let (addr, _) = pasv_from(&mut c, CLIENT);
    c.send("RETR secret.bin");
    // Another client reaches the same port through HAProxy: its header
    // names 127.0.0.4, and it gets nothing.
    let mut thief = connect_bound(OTHER_CLIENT, addr);
    let got = read_to_eof_within(&mut thief, IO_TIMEOUT).unwrap_or_default();
    assert!(got.is_empty(), "the other client got {} bytes", got.len());
    assert_eq!(c.reply().code, 425);
    assert!(b.log().contains(&format!("refused data connection from foreign address {OTHER_CLIENT}")), "{}", b.log());
    // The real client's own next try works.
    let (_, connect) = pasv_from(&mut c, CLIENT);
    c.send("RETR secret.bin");
    let mut data = connect();
    assert!(c.reply().is_preliminary());
    let mut got = Vec::new();
    data.read_to_end(&mut got).unwrap();
    assert_eq!(c.reply().code, 226);
    assert_eq!(sha256(&got), sha256(&pattern(10_000, 3)));
}

/// Implicit FTPS behind the balancer: the header and the TLS ClientHello
/// in one segment; the handshake sees every byte of the hello, and the
/// session the real client.
#[cfg(feature = "tls")]
#[test]
fn implicit_ftps_header_and_client_hello_in_one_segment() {
    use std::io::BufRead;
    let srv = behind_balancer(common::tls::enable);
    let addr = srv.implicit_tls.expect("implicit FTPS listener");
    for version in common::tls::VERSIONS {
        let client = common::tls::TlsClient::new(version);
        let mut conn = client.connection();
        let mut tcp = connect_bound(BALANCER, addr);
        let mut first = v2(CLIENT, 40020, addr);
        conn.write_tls(&mut first).unwrap();
        tcp.write_all(&first).unwrap();
        while conn.is_handshaking() {
            let (rd, wr) = conn.complete_io(&mut tcp).unwrap_or_else(|e| panic!("{version:?} handshake: {e}"));
            assert!(rd + wr > 0 || !conn.is_handshaking(), "{version:?}: closed during the handshake");
        }
        let mut tls = std::io::BufReader::new(rustls::StreamOwned::new(conn, tcp));
        let mut line = String::new();
        tls.read_line(&mut line).unwrap();
        assert!(line.starts_with("220"), "{version:?} greeting inside TLS: {line:?}");
        tls.get_mut().write_all(b"USER anonymous\r\nPASS x@y\r\nSTAT\r\n").unwrap();
        let mut text = String::new();
        while !text.contains("211 ") {
            line.clear();
            assert!(tls.read_line(&mut line).unwrap() > 0, "{version:?}: closed; got {text:?}");
            text += &line;
        }
        assert!(text.contains("230 "), "{version:?}: {text}");
        assert!(text.contains(&format!("Connected to {CLIENT}")), "{version:?}: {text}");
    }
}

#[test]
fn shutdown_closes_connections_waiting_for_their_header() {
    let srv = behind_balancer(|c| c.login_timeout = Duration::from_secs(600));
    let silent = connect_bound(BALANCER, srv.addr);
    let mut c = through_balancer(&srv, &v1(CLIENT, 40030, srv.addr));
    c.login("anonymous", "x@y");
    srv.stop();
    assert_eq!(c.reply().code, 421, "an idle session is told");
    // Closed at once, not after the 600 s login timeout.
    assert!(closed_silently(silent).is_empty());
    wait_until("the server to stop", STOP_WAIT, || srv.is_finished());
}

#[test]
fn connections_waiting_for_a_header_are_bounded_by_max_clients() {
    let srv = behind_balancer(|c| {
        c.max_clients = 3;
        c.login_timeout = Duration::from_secs(600);
    });
    let silent: Vec<TcpStream> = (0..3).map(|_| connect_bound(BALANCER, srv.addr)).collect();
    // The wait list is full: one more is closed at once, without a byte.
    let mut extra = connect_bound(BALANCER, srv.addr);
    let _ = extra.write_all(&v1(CLIENT, 40040, srv.addr));
    assert!(closed_silently(extra).is_empty());
    // One of the silent ones sends its header: room again for a session.
    let mut s = silent.into_iter().next().unwrap();
    s.write_all(&v1(CLIENT, 40041, srv.addr)).unwrap();
    let mut c = Ctl::from_stream(s);
    assert_eq!(c.reply().code, 220);
    c.login("anonymous", "x@y");
    assert_eq!(seen_as(&mut c), CLIENT);
}
