//! In-memory measurements of a rustls 0.23 `UnbufferedServerConnection` with
//! the crypto provider chosen by cargo feature (`ring` or `aws-lc-rs`).
//!
//! The client is an ordinary buffered `rustls::ClientConnection` in the same
//! thread; only the server's calls are timed, with CLOCK_THREAD_CPUTIME_ID
//! (user + sys CPU of this thread) around batches of server work, so the
//! client's share never enters a figure.
//!
//! Usage: tlsbench CERTDIR [bulk|handshake|memory|all] [--gib N] [--runs N]
//! CERTDIR holds rsa.crt/rsa.key (RSA-2048) and ecdsa.crt/ecdsa.key (P-256),
//! self-signed for DNS:localhost (bench/tls-provider/run.sh makes them).
//! Output: one `RESULT <key> <value>` line per figure (plus notes on stderr).

#[cfg(all(feature = "ring", feature = "aws-lc-rs"))]
compile_error!("enable exactly one of the features `ring` and `aws-lc-rs`");

use std::alloc::{GlobalAlloc, Layout, System};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::sync::Arc;

use rustls::client::Resumption;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};
use rustls::{ClientConfig, ClientConnection, HandshakeKind, ServerConfig, SupportedCipherSuite};

#[cfg(feature = "aws-lc-rs")]
use rustls::crypto::aws_lc_rs as prov;
#[cfg(feature = "ring")]
use rustls::crypto::ring as prov;

const PROVIDER: &str = if cfg!(feature = "ring") { "ring" } else { "aws-lc-rs" };

// ---------------------------------------------------------------- allocator

/// Counts live bytes handed out by the Rust global allocator.
struct Counting;
static LIVE: AtomicIsize = AtomicIsize::new(0);

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let p = System.alloc(l);
        if !p.is_null() {
            LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        }
        p
    }
    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        let p = System.alloc_zeroed(l);
        if !p.is_null() {
            LIVE.fetch_add(l.size() as isize, Ordering::Relaxed);
        }
        p
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        System.dealloc(p, l);
        LIVE.fetch_sub(l.size() as isize, Ordering::Relaxed);
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new: usize) -> *mut u8 {
        let q = System.realloc(p, l, new);
        if !q.is_null() {
            LIVE.fetch_add(new as isize - l.size() as isize, Ordering::Relaxed);
        }
        q
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Bytes in use in glibc malloc (all arenas' in-use chunks plus mmapped
/// blocks): this also sees C allocations (aws-lc's OPENSSL_malloc), which
/// the Rust counter cannot.
fn malloc_in_use() -> isize {
    let mi = unsafe { libc::mallinfo2() };
    (mi.uordblks + mi.hblkhd) as isize
}

// ---------------------------------------------------------------- clocks

fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Accumulates server CPU time over many timed sections.
#[derive(Default)]
struct Stopwatch {
    ns: u64,
}
impl Stopwatch {
    fn time<R>(&mut self, f: impl FnOnce() -> R) -> R {
        let t0 = thread_cpu_ns();
        let r = f();
        self.ns += thread_cpu_ns() - t0;
        r
    }
}

// ---------------------------------------------------------------- configs

struct Certs {
    chain: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
}

fn load(dir: &str, name: &str) -> Certs {
    let chain = CertificateDer::pem_file_iter(format!("{dir}/{name}.crt"))
        .expect("cert file")
        .collect::<Result<Vec<_>, _>>()
        .expect("cert pem");
    let key = PrivateKeyDer::from_pem_file(format!("{dir}/{name}.key")).expect("key pem");
    Certs { chain, key }
}

fn provider(suite: Option<SupportedCipherSuite>) -> Arc<CryptoProvider> {
    let mut p = prov::default_provider();
    if let Some(s) = suite {
        p.cipher_suites = vec![s];
    }
    Arc::new(p)
}

fn versions(suite: Option<SupportedCipherSuite>) -> &'static [&'static rustls::SupportedProtocolVersion] {
    static V12: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS12];
    static V13: &[&rustls::SupportedProtocolVersion] = &[&rustls::version::TLS13];
    match suite {
        Some(SupportedCipherSuite::Tls12(_)) => V12,
        _ => V13,
    }
}

fn server_config(certs: &Certs, suite: Option<SupportedCipherSuite>, tickets: bool) -> Arc<ServerConfig> {
    let mut cfg = ServerConfig::builder_with_provider(provider(suite))
        .with_protocol_versions(versions(suite))
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(certs.chain.clone(), certs.key.clone_key())
        .expect("server cert");
    if tickets {
        cfg.ticketer = prov::Ticketer::new().unwrap();
    }
    Arc::new(cfg)
}

fn client_config(certs: &Certs, suite: Option<SupportedCipherSuite>, resume: bool) -> Arc<ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(certs.chain[0].clone()).unwrap();
    let mut cfg = ClientConfig::builder_with_provider(provider(suite))
        .with_protocol_versions(versions(suite))
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    cfg.resumption = if resume {
        Resumption::in_memory_sessions(64)
    } else {
        Resumption::disabled()
    };
    Arc::new(cfg)
}

// ---------------------------------------------------------------- server

/// The server side: an unbuffered connection, its incoming ciphertext buffer
/// (consumed from `start`, compacted only when empty) and where its outgoing
/// TLS records go (`out`, read by the client).
struct Server {
    conn: UnbufferedServerConnection,
    inbuf: Vec<u8>,
    start: usize,
    end: usize,
    /// plaintext bytes delivered by ReadTraffic
    received: u64,
    /// a cheap checksum of the delivered plaintext, so it is really touched
    sum: u64,
    established: bool,
}

#[derive(Debug, PartialEq)]
enum Stop {
    /// needs more bytes from the peer
    Blocked,
    /// handshake done, nothing pending: may write application data
    CanWrite,
    Closed,
}

impl Server {
    fn new(cfg: &Arc<ServerConfig>) -> Server {
        Server {
            conn: UnbufferedServerConnection::new(cfg.clone()).unwrap(),
            inbuf: Vec::new(),
            start: 0,
            end: 0,
            received: 0,
            sum: 0,
            established: false,
        }
    }

    fn feed(&mut self, data: &[u8]) {
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        if self.inbuf.len() < self.end + data.len() {
            // compact, then grow
            self.inbuf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
            if self.inbuf.len() < self.end + data.len() {
                self.inbuf.resize(self.end + data.len(), 0);
            }
        }
        self.inbuf[self.end..self.end + data.len()].copy_from_slice(data);
        self.end += data.len();
    }

    /// Runs the state machine until it blocks on input or may write,
    /// appending everything it wants to send to `out`.
    fn drive(&mut self, out: &mut Vec<u8>) -> Stop {
        loop {
            let UnbufferedStatus { mut discard, state } = self
                .conn
                .process_tls_records(&mut self.inbuf[self.start..self.end]);
            let stop = match state.expect("server TLS error") {
                ConnectionState::ReadTraffic(mut r) => {
                    while let Some(rec) = r.next_record() {
                        let rec = rec.expect("record");
                        discard += rec.discard;
                        self.received += rec.payload.len() as u64;
                        self.sum = self
                            .sum
                            .wrapping_add(rec.payload[0] as u64)
                            .wrapping_add(rec.payload[rec.payload.len() - 1] as u64);
                    }
                    None
                }
                ConnectionState::EncodeTlsData(mut e) => {
                    let at = out.len();
                    out.resize(at + 4096, 0);
                    let n = match e.encode(&mut out[at..]) {
                        Ok(n) => n,
                        Err(EncodeError::InsufficientSize(InsufficientSizeError { required_size })) => {
                            out.resize(at + required_size, 0);
                            e.encode(&mut out[at..]).unwrap()
                        }
                        Err(err) => panic!("encode: {err:?}"),
                    };
                    out.truncate(at + n);
                    None
                }
                ConnectionState::TransmitTlsData(t) => {
                    // `out` already holds the bytes: the "socket write" is free
                    t.done();
                    None
                }
                ConnectionState::BlockedHandshake => Some(Stop::Blocked),
                // Every complete record has been processed (else this would
                // be ReadTraffic): at most a partial record is left.
                ConnectionState::WriteTraffic(_) => {
                    self.established = true;
                    Some(Stop::CanWrite)
                }
                ConnectionState::PeerClosed | ConnectionState::Closed => Some(Stop::Closed),
                ConnectionState::ReadEarlyData(_) => panic!("no early data expected"),
                other => panic!("unexpected state {other:?}"),
            };
            self.start += discard;
            if let Some(s) = stop {
                return s;
            }
        }
    }

    /// Encrypts `data` as one record (at most 16 KiB) into `out`, which has
    /// room (no per-record zeroing or growth in the timed path); returns
    /// the bytes written.
    fn encrypt(&mut self, data: &[u8], out: &mut [u8]) -> usize {
        let UnbufferedStatus { discard, state } = self
            .conn
            .process_tls_records(&mut self.inbuf[self.start..self.end]);
        assert_eq!(discard, 0);
        match state.expect("server TLS error") {
            ConnectionState::WriteTraffic(mut w) => match w.encrypt(data, out) {
                Ok(n) => n,
                Err(EncryptError::InsufficientSize(e)) => panic!("encrypt: {e:?}"),
                Err(e) => panic!("encrypt: {e:?}"),
            },
            other => panic!("not writable: {other:?}"),
        }
    }
}

// ---------------------------------------------------------------- client side

/// Moves the client's pending TLS bytes to `to_server`.
fn client_flush(c: &mut ClientConnection, to_server: &mut Vec<u8>) {
    while c.wants_write() {
        c.write_tls(to_server).unwrap();
    }
}

/// Gives the client all of `from_server`, decrypting and discarding
/// plaintext into `sink` (counting bytes).
fn client_absorb(c: &mut ClientConnection, from_server: &mut Vec<u8>, plain: &mut u64) {
    let mut rd: &[u8] = &from_server[..];
    let mut buf = [0u8; 16384];
    while !rd.is_empty() {
        c.read_tls(&mut rd).unwrap();
        let st = c.process_new_packets().expect("client TLS error");
        let mut left = st.plaintext_bytes_to_read();
        while left > 0 {
            let n = c.reader().read(&mut buf).unwrap();
            *plain += n as u64;
            left -= n;
        }
    }
    from_server.clear();
}

/// Full handshake between a fresh client and server; server calls timed.
fn handshake(
    scfg: &Arc<ServerConfig>,
    ccfg: &Arc<ClientConfig>,
    sw: &mut Stopwatch,
    s2c: &mut Vec<u8>,
    c2s: &mut Vec<u8>,
) -> (Server, ClientConnection) {
    let mut client =
        ClientConnection::new(ccfg.clone(), ServerName::try_from("localhost").unwrap()).unwrap();
    let mut server = sw.time(|| Server::new(scfg));
    let mut plain = 0;
    for _ in 0..20 {
        client_flush(&mut client, c2s);
        let stop = sw.time(|| {
            server.feed(c2s);
            server.drive(s2c)
        });
        c2s.clear();
        client_absorb(&mut client, s2c, &mut plain);
        if stop == Stop::CanWrite && !client.is_handshaking() && !client.wants_write() {
            return (server, client);
        }
    }
    panic!("handshake did not finish");
}

// ---------------------------------------------------------------- benches

const REC: usize = 16384;
const BATCH: usize = 256; // records per timed batch: 4 MiB

fn suites() -> Vec<(&'static str, SupportedCipherSuite, &'static str)> {
    vec![
        ("tls13_aes128gcm", prov::cipher_suite::TLS13_AES_128_GCM_SHA256, "ecdsa"),
        ("tls13_aes256gcm", prov::cipher_suite::TLS13_AES_256_GCM_SHA384, "ecdsa"),
        ("tls13_chacha20", prov::cipher_suite::TLS13_CHACHA20_POLY1305_SHA256, "ecdsa"),
        ("tls12_ecdhe_rsa_aes128gcm", prov::cipher_suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, "rsa"),
    ]
}

/// Server sends `bytes` in 16 KiB records; returns server CPU seconds.
fn bulk_send(dir: &str, suite: SupportedCipherSuite, cert: &str, bytes: u64) -> f64 {
    let certs = load(dir, cert);
    let scfg = server_config(&certs, Some(suite), false);
    let ccfg = client_config(&certs, Some(suite), false);
    let (mut s2c, mut c2s) = (Vec::new(), Vec::new());
    let mut hs = Stopwatch::default();
    let (mut server, mut client) = handshake(&scfg, &ccfg, &mut hs, &mut s2c, &mut c2s);
    assert_eq!(server.conn.negotiated_cipher_suite(), Some(suite));
    let payload: Vec<u8> = (0..REC).map(|i| (i * 7 + 1) as u8).collect();
    let mut sw = Stopwatch::default();
    let (mut sent, mut got) = (0u64, 0u64);
    let mut wire = vec![0u8; BATCH * (REC + 64)];
    while sent < bytes {
        let used = sw.time(|| {
            let mut at = 0;
            for _ in 0..BATCH {
                at += server.encrypt(&payload, &mut wire[at..]);
            }
            at
        });
        sent += (BATCH * REC) as u64;
        // The client decrypts everything (untimed): proves the records valid.
        s2c.clear();
        s2c.extend_from_slice(&wire[..used]);
        client_absorb(&mut client, &mut s2c, &mut got);
    }
    assert_eq!(got, sent, "client received all plaintext");
    sw.ns as f64 / 1e9
}

/// Client sends `bytes` in 16 KiB records; returns server CPU seconds to
/// decrypt them (process_tls_records + ReadTraffic::next_record).
fn bulk_recv(dir: &str, suite: SupportedCipherSuite, cert: &str, bytes: u64) -> f64 {
    let certs = load(dir, cert);
    let scfg = server_config(&certs, Some(suite), false);
    let ccfg = client_config(&certs, Some(suite), false);
    let (mut s2c, mut c2s) = (Vec::new(), Vec::new());
    let mut hs = Stopwatch::default();
    let (mut server, mut client) = handshake(&scfg, &ccfg, &mut hs, &mut s2c, &mut c2s);
    client.set_buffer_limit(None);
    let payload: Vec<u8> = (0..REC).map(|i| (i * 7 + 1) as u8).collect();
    let mut sw = Stopwatch::default();
    let mut sent = 0u64;
    c2s.reserve(BATCH * (REC + 64));
    while sent < bytes {
        for _ in 0..BATCH {
            client.writer().write_all(&payload).unwrap();
        }
        client_flush(&mut client, &mut c2s);
        sent += (BATCH * REC) as u64;
        let stop = sw.time(|| {
            server.feed(&c2s);
            server.drive(&mut s2c)
        });
        assert_eq!(stop, Stop::CanWrite);
        c2s.clear();
        s2c.clear(); // nothing expected
    }
    assert_eq!(server.received, sent, "server received all plaintext");
    std::hint::black_box(server.sum);
    sw.ns as f64 / 1e9
}

/// Mean server CPU microseconds per handshake over `n` handshakes.
/// `resumed`: the client keeps a ticket store and each handshake must resume.
fn handshakes(dir: &str, cert: &str, n: usize, resumed: bool) -> f64 {
    let certs = load(dir, cert);
    let scfg = server_config(&certs, None, true);
    let ccfg = client_config(&certs, None, resumed);
    let (mut s2c, mut c2s) = (Vec::new(), Vec::new());
    if resumed {
        // prime the client's ticket store with one full handshake
        let mut sw = Stopwatch::default();
        handshake(&scfg, &ccfg, &mut sw, &mut s2c, &mut c2s);
    }
    let mut sw = Stopwatch::default();
    for _ in 0..n {
        let (server, client) = handshake(&scfg, &ccfg, &mut sw, &mut s2c, &mut c2s);
        let want = if resumed { HandshakeKind::Resumed } else { HandshakeKind::Full };
        assert_eq!(server.conn.handshake_kind(), Some(want));
        assert_eq!(client.handshake_kind(), Some(want));
        assert_eq!(server.conn.protocol_version(), Some(rustls::ProtocolVersion::TLSv1_3));
        sw.time(|| drop(server));
    }
    sw.ns as f64 / 1e3 / n as f64
}

/// Live bytes per idle established server connection (after its client is
/// dropped), measured over `n` connections.
fn memory(dir: &str, n: usize) {
    let certs = load(dir, "ecdsa");
    let scfg = server_config(&certs, None, true);
    let ccfg = client_config(&certs, None, false);
    let (mut s2c, mut c2s) = (Vec::with_capacity(1 << 16), Vec::with_capacity(1 << 16));
    let mut servers: Vec<UnbufferedServerConnection> = Vec::with_capacity(n);
    let mut clients: Vec<ClientConnection> = Vec::with_capacity(n);
    let mut sw = Stopwatch::default();
    // warm up lazily initialised statics (provider, RNG, allocator arenas)
    drop(handshake(&scfg, &ccfg, &mut sw, &mut s2c, &mut c2s));
    s2c.clear();
    c2s.clear();
    let (rust0, malloc0) = (LIVE.load(Ordering::Relaxed), malloc_in_use());
    for _ in 0..n {
        let (server, client) = handshake(&scfg, &ccfg, &mut sw, &mut s2c, &mut c2s);
        // keep only the connection: the harness buffers are the app's
        let Server { conn, inbuf, .. } = server;
        drop(inbuf);
        servers.push(conn);
        clients.push(client);
    }
    clients.clear(); // drops the clients, keeps the Vec's buffer
    let (rust1, malloc1) = (LIVE.load(Ordering::Relaxed), malloc_in_use());
    // What the servers hold is also what dropping them gives back (the
    // connections are moved out of the Vec first, so its storage stays).
    let conns: Vec<UnbufferedServerConnection> = servers.drain(..).collect();
    let (rust2, malloc2) = (LIVE.load(Ordering::Relaxed), malloc_in_use());
    drop(conns);
    let (rust3, malloc3) = (LIVE.load(Ordering::Relaxed), malloc_in_use());
    let per = |d: isize| format!("{:.0}", d as f64 / n as f64);
    println!("RESULT mem_size_of {}", std::mem::size_of::<UnbufferedServerConnection>());
    println!("RESULT mem_rust_heap_growth_per_conn {}", per(rust1 - rust0));
    println!("RESULT mem_malloc_heap_growth_per_conn {}", per(malloc1 - malloc0));
    // subtract the drained Vec's own buffer (n * size_of), freed with it
    let vecbuf = (n * std::mem::size_of::<UnbufferedServerConnection>()) as isize;
    println!("RESULT mem_rust_heap_freed_per_conn {}", per(rust2 - rust3 - vecbuf));
    println!("RESULT mem_malloc_heap_freed_per_conn {}", per(malloc2 - malloc3 - vecbuf));
}

/// Minimum of `runs` runs; every run is also printed (`# key: a b c`) so the
/// spread on a noisy machine is visible.
fn min_of(key: &str, runs: usize, mut f: impl FnMut() -> f64) -> f64 {
    let all: Vec<f64> = (0..runs).map(|_| f()).collect();
    let txt: Vec<String> = all.iter().map(|v| format!("{v:.4}")).collect();
    println!("RUNS {key} {}", txt.join(" "));
    all.into_iter().fold(f64::INFINITY, f64::min)
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).expect("usage: tlsbench CERTDIR [bulk|handshake|memory|all] [--gib N] [--runs N]").clone();
    let what = args.get(2).cloned().unwrap_or_else(|| "all".into());
    let mut gib = 2.0f64;
    let mut runs = 3usize;
    let mut i = 3;
    while i < args.len() {
        match args[i].as_str() {
            "--gib" => gib = args[i + 1].parse().unwrap(),
            "--runs" => runs = args[i + 1].parse().unwrap(),
            a => panic!("unknown argument {a}"),
        }
        i += 2;
    }
    println!("RESULT provider {PROVIDER}");
    let bytes = (gib * (1u64 << 30) as f64) as u64;
    let all = what == "all";
    if all || what == "bulk" {
        for (name, suite, cert) in suites() {
            let k = format!("send_{name}_cpu_s_per_gib");
            let s = min_of(&k, runs, || bulk_send(&dir, suite, cert, bytes) / gib);
            println!("RESULT {k} {s:.4}");
            let k = format!("recv_{name}_cpu_s_per_gib");
            let s = min_of(&k, runs, || bulk_recv(&dir, suite, cert, bytes) / gib);
            println!("RESULT {k} {s:.4}");
        }
    }
    if all || what == "handshake" {
        let us = min_of("hs_full_rsa2048_us", runs, || handshakes(&dir, "rsa", 500, false));
        println!("RESULT hs_full_rsa2048_us {us:.1}");
        let us = min_of("hs_full_ecdsa_p256_us", runs, || handshakes(&dir, "ecdsa", 2000, false));
        println!("RESULT hs_full_ecdsa_p256_us {us:.1}");
        let us = min_of("hs_resumed_us", runs, || handshakes(&dir, "ecdsa", 2000, true));
        println!("RESULT hs_resumed_us {us:.1}");
    }
    if all || what == "memory" {
        memory(&dir, 1000);
    }
}
