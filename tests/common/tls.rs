//! FTPS for the integration tests (issue 11, RFC 4217).
//!
//! - Test certificates: a CA and a server certificate it signed (ECDSA
//!   P-256, SAN `localhost`, `127.0.0.1`, `::1`), made once per test binary
//!   by the `openssl` command line; the server gets the chain (leaf + CA)
//!   and the key, clients trust the CA only.
//!
//!   Why `openssl` and not `rcgen`: the suite already needs the `openssl`
//!   command (`.ci/setup.sh` installs it; the users-file tests hash with
//!   `openssl passwd`), so this adds nothing to install and no crate to
//!   build on a 2-core CI. The files are the kind real deployments use, and
//!   the real clients of `tests/clients.rs` (curl, lftp, Python) read the
//!   same PEM files.
//! - [`TlsClient`]: a rustls client configuration (TLS 1.2 or 1.3 only, an
//!   optional ALPN list, the test CA) with a [`CountingStore`] for its
//!   sessions, so a test can see the TLS 1.3 tickets that arrived.
//! - [`TlsCtl`]: a control connection that starts plain and is upgraded by
//!   `AUTH TLS` (or is TLS from the first byte: implicit FTPS), with the
//!   helpers of the plain `Ctl`, and data connections under `PROT P` in the
//!   four modes and every [`Order`] real clients use.
//!
//! # Session resumption
//! A data connection resumes the control connection's session when both
//! use the same [`TlsClient`] (one `Arc<ClientConfig>`, one store) and the
//! same server name ([`server_name`]). That is the default of [`TlsCtl`];
//! `data_client` can be replaced to make a data connection that does not
//! resume, or that resumes another control connection's session.
//!
//! A rustls client uses each TLS 1.3 ticket once (RFC 8446 C.4: clients
//! SHOULD NOT reuse one), so under TLS 1.3 a control connection can resume
//! as many data connections as the server sent it tickets. Tests that make
//! many transfers under TLS 1.3 open a control connection per transfer, or
//! check [`CountingStore::tls13_tickets_left`].
//!
//! Every socket has read and write timeouts of [`IO_TIMEOUT`]: a test never
//! hangs.

#![allow(dead_code)]

use std::io::{self, BufRead, BufReader, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use leanftpd::Config;
use rustls::client::{ClientSessionMemoryCache, ClientSessionStore, Tls12ClientSessionValue, Tls13ClientSessionValue};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, ClientConnection, HandshakeKind, NamedGroup, RootCertStore, StreamOwned};

use super::{accept_within, connect_data, eprt_arg, parse_code, parse_epsv, parse_pasv, port_arg, DataPrep, Mode, Reply, TestServer, IO_TIMEOUT};

// ---------------------------------------------------------------------------
// Certificates

/// The test PKI, as PEM text.
pub struct Certs {
    /// The CA certificate clients trust.
    pub ca: String,
    /// The server's chain: its certificate, then the CA's.
    pub chain: String,
    /// The server certificate's private key (PKCS#8).
    pub key: String,
}

/// The test PKI, made once per test binary.
pub fn certs() -> &'static Certs {
    static CERTS: OnceLock<Certs> = OnceLock::new();
    CERTS.get_or_init(make_certs)
}

fn openssl() -> &'static str {
    if Path::new("/usr/bin/openssl").exists() {
        "/usr/bin/openssl"
    } else {
        "openssl"
    }
}

#[track_caller]
fn run_openssl(dir: &Path, args: &[&str]) {
    let out = Command::new(openssl())
        .current_dir(dir)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("openssl is required to make the test certificates ({e}); install it: apt-get install openssl"));
    assert!(out.status.success(), "openssl {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
}

/// A new, independent test PKI (another CA): for a certificate reload.
pub fn make_certs() -> Certs {
    let dir = tempfile::Builder::new().prefix("leanftpd-certs-").tempdir().expect("temp dir for certificates");
    let d = dir.path();
    let ec = ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"];
    run_openssl(d, &[&["genpkey"][..], &ec, &["-out", "ca.key"]].concat());
    run_openssl(
        d,
        &[
            "req", "-x509", "-new", "-key", "ca.key", "-subj", "/CN=leanftpd test CA", "-days", "3650", "-out", "ca.pem",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    run_openssl(d, &[&["genpkey"][..], &ec, &["-out", "server.key"]].concat());
    run_openssl(d, &["req", "-new", "-key", "server.key", "-subj", "/CN=localhost", "-out", "server.csr"]);
    std::fs::write(
        d.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n\
         basicConstraints=critical,CA:FALSE\n\
         keyUsage=critical,digitalSignature\n\
         extendedKeyUsage=serverAuth\n",
    )
    .unwrap();
    run_openssl(
        d,
        &[
            "x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-set_serial", "2", "-days", "3650",
            "-out", "server.pem", "-extfile", "ext.cnf",
        ],
    );
    let read = |n: &str| std::fs::read_to_string(d.join(n)).unwrap_or_else(|e| panic!("read {n}: {e}"));
    let ca = read("ca.pem");
    Certs { chain: format!("{}{}", read("server.pem"), ca), key: read("server.key"), ca }
}

/// The PEM files of the test PKI, written somewhere.
#[derive(Clone, Debug)]
pub struct CertFiles {
    /// The CA certificate (what clients trust).
    pub ca: PathBuf,
    /// The server's chain (leaf + CA).
    pub chain: PathBuf,
    /// The server's key.
    pub key: PathBuf,
}

/// Write the test PKI into `dir` (created if needed).
#[track_caller]
pub fn write_certs(dir: &Path) -> CertFiles {
    write_cert_set(dir, certs())
}

/// Write `c` into `dir` (created if needed).
#[track_caller]
pub fn write_cert_set(dir: &Path, c: &Certs) -> CertFiles {
    std::fs::create_dir_all(dir).unwrap();
    let files = CertFiles { ca: dir.join("ca.pem"), chain: dir.join("chain.pem"), key: dir.join("key.pem") };
    std::fs::write(&files.ca, &c.ca).unwrap();
    std::fs::write(&files.chain, &c.chain).unwrap();
    std::fs::write(&files.key, &c.key).unwrap();
    files
}

/// Turn FTPS on in a [`TestServer`] configuration: the certificate files
/// go beside the root (outside the jail), and an implicit FTPS listener on
/// `127.0.0.1:0`.
pub fn enable(cfg: &mut Config) {
    let base = cfg.root.parent().expect("the test root has a parent").to_path_buf();
    let files = write_certs(&base.join("tls"));
    cfg.tls_cert = Some(files.chain);
    cfg.tls_key = Some(files.key);
    cfg.implicit_tls_listen = Some("127.0.0.1:0".parse().unwrap());
}

/// The command-line flags for the built binary (`tests/common/process.rs`),
/// with the files written into `dir`.
pub fn binary_args(dir: &Path) -> (CertFiles, Vec<String>) {
    let files = write_certs(dir);
    let args = vec![
        "--tls-cert".to_string(),
        files.chain.display().to_string(),
        "--tls-key".to_string(),
        files.key.display().to_string(),
    ];
    (files, args)
}

// ---------------------------------------------------------------------------
// The client configuration

/// A TLS protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    /// TLS 1.2 only.
    Tls12,
    /// TLS 1.3 only.
    Tls13,
}

/// Both versions the server must speak.
pub const VERSIONS: [Version; 2] = [Version::Tls12, Version::Tls13];

impl Version {
    fn rustls(self) -> &'static rustls::SupportedProtocolVersion {
        match self {
            Version::Tls12 => &rustls::version::TLS12,
            Version::Tls13 => &rustls::version::TLS13,
        }
    }

    /// The negotiated version a connection must report.
    pub fn wire(self) -> rustls::ProtocolVersion {
        match self {
            Version::Tls12 => rustls::ProtocolVersion::TLSv1_2,
            Version::Tls13 => rustls::ProtocolVersion::TLSv1_3,
        }
    }
}

/// rustls's in-memory session store, counting what passes through it.
#[derive(Debug)]
pub struct CountingStore {
    inner: ClientSessionMemoryCache,
    tls13_in: AtomicUsize,
    tls13_out: AtomicUsize,
    tls12_in: AtomicUsize,
}

impl CountingStore {
    fn new() -> CountingStore {
        CountingStore {
            inner: ClientSessionMemoryCache::new(64),
            tls13_in: AtomicUsize::new(0),
            tls13_out: AtomicUsize::new(0),
            tls12_in: AtomicUsize::new(0),
        }
    }

    /// TLS 1.3 tickets received so far (on every connection of this client).
    pub fn tls13_tickets_received(&self) -> usize {
        self.tls13_in.load(Ordering::SeqCst)
    }

    /// TLS 1.3 tickets received and not yet used (at most 8 are kept).
    pub fn tls13_tickets_left(&self) -> usize {
        self.tls13_in.load(Ordering::SeqCst).min(8).saturating_sub(self.tls13_out.load(Ordering::SeqCst))
    }

    /// TLS 1.2 sessions stored so far.
    pub fn tls12_sessions_stored(&self) -> usize {
        self.tls12_in.load(Ordering::SeqCst)
    }
}

impl ClientSessionStore for CountingStore {
    fn set_kx_hint(&self, server_name: ServerName<'static>, group: NamedGroup) {
        self.inner.set_kx_hint(server_name, group)
    }

    fn kx_hint(&self, server_name: &ServerName<'_>) -> Option<NamedGroup> {
        self.inner.kx_hint(server_name)
    }

    fn set_tls12_session(&self, server_name: ServerName<'static>, value: Tls12ClientSessionValue) {
        self.tls12_in.fetch_add(1, Ordering::SeqCst);
        self.inner.set_tls12_session(server_name, value)
    }

    fn tls12_session(&self, server_name: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        self.inner.tls12_session(server_name)
    }

    fn remove_tls12_session(&self, server_name: &ServerName<'static>) {
        self.inner.remove_tls12_session(server_name)
    }

    fn insert_tls13_ticket(&self, server_name: ServerName<'static>, value: Tls13ClientSessionValue) {
        self.tls13_in.fetch_add(1, Ordering::SeqCst);
        self.inner.insert_tls13_ticket(server_name, value)
    }

    fn take_tls13_ticket(&self, server_name: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        let t = self.inner.take_tls13_ticket(server_name);
        if t.is_some() {
            self.tls13_out.fetch_add(1, Ordering::SeqCst);
        }
        t
    }
}

/// The name every test client gives the server: its address, which the
/// test certificate names (no SNI is sent for an IP address). Control and
/// data connections must use the same name to resume.
pub fn server_name() -> ServerName<'static> {
    ServerName::from(IpAddr::V4(Ipv4Addr::LOCALHOST))
}

/// A rustls client configuration and its session store. Clones share both.
#[derive(Clone, Debug)]
pub struct TlsClient {
    /// The configuration every connection of this client uses.
    pub config: Arc<ClientConfig>,
    /// Its session store (`None` when resumption is off).
    pub store: Option<Arc<CountingStore>>,
    /// The only version it offers.
    pub version: Version,
}

impl TlsClient {
    /// `version` only, no ALPN, resumption on.
    pub fn new(version: Version) -> TlsClient {
        TlsClient::build(version, &[], true)
    }

    /// `version` only, offering `alpn` (in this order).
    pub fn with_alpn(version: Version, alpn: &[&str]) -> TlsClient {
        TlsClient::build(version, alpn, true)
    }

    /// `version` only, never resuming (and storing nothing).
    pub fn without_resumption(version: Version) -> TlsClient {
        TlsClient::build(version, &[], false)
    }

    /// TLS 1.2 resuming by session id only, never by ticket (OpenSSL or
    /// Python's `ssl` with `OP_NO_TICKET`).
    pub fn session_id_only() -> TlsClient {
        let mut c = TlsClient::build(Version::Tls12, &[], true);
        let store = c.store.clone().expect("resumption is on");
        let mut config = (*c.config).clone();
        config.resumption = rustls::client::Resumption::store(store).tls12_resumption(rustls::client::Tls12Resumption::SessionIdOnly);
        c.config = Arc::new(config);
        c
    }

    /// `version` only, trusting `pki`'s CA instead of the usual test CA.
    pub fn trusting(version: Version, pki: &Certs) -> TlsClient {
        TlsClient::build_for(version, &[], true, &pki.ca)
    }

    fn build(version: Version, alpn: &[&str], resume: bool) -> TlsClient {
        TlsClient::build_for(version, alpn, resume, &certs().ca)
    }

    fn build_for(version: Version, alpn: &[&str], resume: bool, ca: &str) -> TlsClient {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca.as_bytes()) {
            roots.add(cert.expect("the test CA parses")).expect("the test CA is a valid trust anchor");
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[version.rustls()])
            .expect("ring supports TLS 1.2 and 1.3")
            .with_root_certificates(roots)
            .with_no_client_auth();
        config.alpn_protocols = alpn.iter().map(|p| p.as_bytes().to_vec()).collect();
        let store = if resume {
            let store = Arc::new(CountingStore::new());
            config.resumption = rustls::client::Resumption::store(store.clone());
            Some(store)
        } else {
            config.resumption = rustls::client::Resumption::disabled();
            None
        };
        TlsClient { config: Arc::new(config), store, version }
    }

    /// A new client connection to [`server_name`].
    pub fn connection(&self) -> ClientConnection {
        ClientConnection::new(self.config.clone(), server_name()).expect("a client connection")
    }

    /// The store's counters (panics without resumption).
    pub fn store(&self) -> &CountingStore {
        self.store.as_deref().expect("this client has no session store")
    }
}

/// A TLS stream over a blocking socket.
pub type TlsStream = StreamOwned<ClientConnection, TcpStream>;

/// Complete a client handshake on `tcp` (blocking, bounded by the socket's
/// timeouts). A refused handshake (an alert, a close) is an `Err`.
pub fn handshake(client: &TlsClient, tcp: TcpStream) -> io::Result<TlsStream> {
    finish_handshake(client.connection(), tcp)
}

fn finish_handshake(mut conn: ClientConnection, mut tcp: TcpStream) -> io::Result<TlsStream> {
    let deadline = Instant::now() + IO_TIMEOUT;
    while conn.is_handshaking() {
        if Instant::now() > deadline {
            return Err(io::Error::new(ErrorKind::TimedOut, "TLS handshake did not finish"));
        }
        match conn.complete_io(&mut tcp) {
            Ok((0, 0)) if conn.is_handshaking() => {
                return Err(io::Error::new(ErrorKind::UnexpectedEof, "connection closed during the TLS handshake"))
            }
            Ok(_) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(StreamOwned::new(conn, tcp))
}

/// Set read and write timeouts of [`IO_TIMEOUT`] on a socket.
pub fn with_timeouts(s: TcpStream) -> TcpStream {
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

// ---------------------------------------------------------------------------
// The control connection

/// When a client opens the data connection, relative to the transfer command.
// The names say what comes first; tests/orders.rs uses the same words.
#[allow(clippy::enum_variant_names)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Order {
    /// Send the command, then connect (passive) or accept (active); the TLS
    /// handshake after the `150`.
    CommandFirst,
    /// Connect, send the command, read the `150`, then the TLS handshake
    /// (curl, Python ftplib). Passive modes only.
    ConnectFirst,
    /// Connect and send the ClientHello, then the command, then finish the
    /// handshake (lftp, non-blocking: its ClientHello goes out as soon as
    /// the socket connects). Passive modes only.
    HelloFirst,
}

/// Every mode with every order it has (active modes have only CommandFirst).
pub fn ways() -> Vec<(Mode, Order)> {
    let mut v = Vec::new();
    for mode in super::MODES {
        v.push((mode, Order::CommandFirst));
        if matches!(mode, Mode::Pasv | Mode::Epsv) {
            v.push((mode, Order::ConnectFirst));
            v.push((mode, Order::HelloFirst));
        }
    }
    v
}

/// Who sends close_notify first after `CCC`'s `200`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseNotify {
    /// The client, then it waits for the server's (Python's `ssl` unwrap).
    ClientFirst,
    /// The server; the client answers with its own.
    ServerFirst,
    /// The server; the client sends none (curl's default "passive" CCC).
    ClientNever,
}

/// A control connection's byte stream: plain before AUTH TLS and after CCC.
enum Chan {
    Plain(TcpStream),
    Tls(Box<TlsStream>),
    /// Only while being switched.
    Switching,
}

impl Read for Chan {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Chan::Plain(s) => s.read(buf),
            Chan::Tls(s) => s.read(buf),
            Chan::Switching => Err(io::Error::other("control stream being switched")),
        }
    }
}

impl Write for Chan {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Chan::Plain(s) => s.write(buf),
            Chan::Tls(s) => s.write(buf),
            Chan::Switching => Err(io::Error::other("control stream being switched")),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Chan::Plain(s) => s.flush(),
            Chan::Tls(s) => s.flush(),
            Chan::Switching => Ok(()),
        }
    }
}

/// A control connection that speaks TLS after `AUTH TLS` (or from the
/// first byte), with the helpers of the plain `Ctl`.
pub struct TlsCtl {
    reader: BufReader<Chan>,
    /// A second handle on the socket (to shut it down or write raw bytes).
    tcp: TcpStream,
    /// The control connection's client configuration.
    pub client: TlsClient,
    /// What data connections use: `client` by default (so they resume).
    pub data_client: TlsClient,
    /// Whether data connections are TLS (after `PROT P`).
    pub prot_p: bool,
    /// Our address.
    pub local: SocketAddr,
    /// The server's address.
    pub peer: SocketAddr,
}

impl TlsCtl {
    /// Connect without reading anything.
    #[track_caller]
    pub fn connect(addr: SocketAddr, client: TlsClient) -> TlsCtl {
        let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        TlsCtl::from_stream(s, client)
    }

    /// Wrap a connected plain stream.
    pub fn from_stream(s: TcpStream, client: TlsClient) -> TlsCtl {
        let s = with_timeouts(s);
        let _ = s.set_nodelay(true);
        let local = s.local_addr().unwrap();
        let peer = s.peer_addr().unwrap();
        let tcp = s.try_clone().unwrap();
        TlsCtl { reader: BufReader::new(Chan::Plain(s)), tcp, data_client: client.clone(), client, prot_p: false, local, peer }
    }

    /// Connect, read the `220` greeting, `AUTH TLS` → `234`, handshake.
    #[track_caller]
    pub fn open(addr: SocketAddr, client: TlsClient) -> TlsCtl {
        let mut c = TlsCtl::connect(addr, client);
        let r = c.reply();
        assert_eq!(r.code, 220, "greeting: {r:?}");
        c.auth();
        c
    }

    /// Implicit FTPS: the handshake first, then the `220` inside TLS.
    #[track_caller]
    pub fn implicit(addr: SocketAddr, client: TlsClient) -> TlsCtl {
        let mut c = TlsCtl::connect(addr, client);
        c.upgrade().unwrap_or_else(|e| panic!("implicit FTPS handshake with {addr}: {e}"));
        let r = c.reply();
        assert_eq!(r.code, 220, "greeting inside TLS: {r:?}");
        c
    }

    /// `AUTH TLS` → `234`, then the handshake.
    #[track_caller]
    pub fn auth(&mut self) {
        self.expect("AUTH TLS", 234);
        self.upgrade().unwrap_or_else(|e| panic!("TLS handshake after AUTH TLS: {e}"));
    }

    /// Start TLS on the control connection now. Panics if the server sent
    /// plaintext that has not been read (nothing may follow `234`).
    pub fn upgrade(&mut self) -> io::Result<()> {
        assert!(self.reader.buffer().is_empty(), "plaintext after 234: {:?}", String::from_utf8_lossy(self.reader.buffer()));
        let chan = std::mem::replace(self.reader.get_mut(), Chan::Switching);
        let Chan::Plain(tcp) = chan else { panic!("upgrade: the control connection is already TLS") };
        let tls = handshake(&self.client, tcp)?;
        *self.reader.get_mut() = Chan::Tls(Box::new(tls));
        Ok(())
    }

    /// Whether the control connection is TLS now.
    pub fn is_tls(&self) -> bool {
        matches!(self.reader.get_ref(), Chan::Tls(_))
    }

    /// The control connection's TLS state (panics if plain).
    pub fn tls(&self) -> &ClientConnection {
        match self.reader.get_ref() {
            Chan::Tls(s) => &s.conn,
            _ => panic!("the control connection is not TLS"),
        }
    }

    /// `CCC` → `200`, then the close_notify exchange (RFC 4217 §6) with
    /// ours sent first; the connection is plaintext afterwards.
    #[track_caller]
    pub fn ccc(&mut self) {
        self.ccc_with(CloseNotify::ClientFirst)
    }

    /// `CCC` → `200`, then the close_notify exchange in the order `how`
    /// says; the connection is plaintext afterwards. The server's
    /// close_notify must arrive whatever the client does: without it a
    /// client cannot know where the TLS stream ends and plaintext begins
    /// (RFC 8446 §6.1), and curl waits for it without sending its own.
    #[track_caller]
    pub fn ccc_with(&mut self, how: CloseNotify) {
        self.expect("CCC", 200);
        assert!(self.reader.buffer().is_empty(), "bytes after the CCC reply: {:?}", String::from_utf8_lossy(self.reader.buffer()));
        let chan = std::mem::replace(self.reader.get_mut(), Chan::Switching);
        let Chan::Tls(mut tls) = chan else { panic!("CCC on a plain control connection") };
        let send = |tls: &mut TlsStream| {
            tls.conn.send_close_notify();
            tls.flush().unwrap_or_else(|e| panic!("sending close_notify after CCC: {e}"));
        };
        if how == CloseNotify::ClientFirst {
            send(&mut tls);
        }
        let mut buf = [0u8; 256];
        match tls.read(&mut buf) {
            Ok(0) => {}
            Ok(n) => panic!("data after CCC's 200 inside TLS: {:?}", String::from_utf8_lossy(&buf[..n])),
            Err(e) => panic!("no close_notify from the server after CCC ({how:?}): {e}"),
        }
        if how == CloseNotify::ServerFirst {
            send(&mut tls);
        }
        let tcp = tls.sock;
        *self.reader.get_mut() = Chan::Plain(tcp);
    }

    /// Change the read timeout.
    pub fn set_read_timeout(&mut self, t: Duration) {
        self.tcp.set_read_timeout(Some(t)).unwrap();
    }

    /// Read one reply, or the I/O error.
    pub fn try_reply(&mut self) -> io::Result<Reply> {
        read_reply(&mut self.reader)
    }

    /// Read one reply; panic on timeout or EOF.
    #[track_caller]
    pub fn reply(&mut self) -> Reply {
        self.try_reply().unwrap_or_else(|e| panic!("reading a reply: {e}"))
    }

    /// Send `line` + CRLF (inside TLS once upgraded).
    #[track_caller]
    pub fn send(&mut self, line: &str) {
        let mut b = line.as_bytes().to_vec();
        b.extend_from_slice(b"\r\n");
        self.send_raw(&b);
    }

    /// Send bytes as they are (inside TLS once upgraded).
    #[track_caller]
    pub fn send_raw(&mut self, bytes: &[u8]) {
        self.try_send_raw(bytes).unwrap_or_else(|e| panic!("sending on the control connection: {e}"));
    }

    /// Send bytes, or the error.
    pub fn try_send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        let chan = self.reader.get_mut();
        chan.write_all(bytes)?;
        chan.flush()
    }

    /// Bytes straight onto the socket, under any TLS.
    #[track_caller]
    pub fn send_on_socket(&mut self, bytes: &[u8]) {
        self.tcp.write_all(bytes).unwrap_or_else(|e| panic!("writing to the control socket: {e}"));
    }

    /// Encrypt `plaintext` as the control connection's next TLS records
    /// without sending them (for a client that writes on the socket and
    /// never reads: rustls's own I/O would read while a write blocks).
    pub fn seal(&mut self, plaintext: &[u8]) -> Vec<u8> {
        let Chan::Tls(s) = self.reader.get_mut() else { panic!("seal: the control connection is not TLS") };
        let mut out = Vec::with_capacity(plaintext.len() + plaintext.len() / 64 + 64);
        for chunk in plaintext.chunks(16 * 1024) {
            s.conn.writer().write_all(chunk).expect("rustls takes a record's worth of plaintext");
            while s.conn.wants_write() {
                s.conn.write_tls(&mut out).expect("write_tls into a Vec");
            }
        }
        out
    }

    /// The control connection's `close_notify` as TLS bytes, not sent (for
    /// a client that pipelines it with what follows).
    pub fn seal_close_notify(&mut self) -> Vec<u8> {
        let Chan::Tls(s) = self.reader.get_mut() else { panic!("seal_close_notify: the control connection is not TLS") };
        s.conn.send_close_notify();
        let mut out = Vec::new();
        while s.conn.wants_write() {
            s.conn.write_tls(&mut out).expect("write_tls into a Vec");
        }
        out
    }

    /// A TLS 1.3 KeyUpdate (update_requested) as TLS bytes, not sent.
    pub fn seal_key_update(&mut self) -> Vec<u8> {
        let Chan::Tls(s) = self.reader.get_mut() else { panic!("seal_key_update: the control connection is not TLS") };
        s.conn.refresh_traffic_keys().expect("a TLS 1.3 connection updates its keys");
        let mut out = Vec::new();
        while s.conn.wants_write() {
            s.conn.write_tls(&mut out).expect("write_tls into a Vec");
        }
        out
    }

    /// Send a command, read its (first) reply.
    #[track_caller]
    pub fn cmd(&mut self, line: &str) -> Reply {
        self.send(line);
        self.reply()
    }

    /// Send a command and assert the code of its reply.
    #[track_caller]
    pub fn expect(&mut self, line: &str, code: u16) -> Reply {
        let r = self.cmd(line);
        assert_eq!(r.code, code, "{line:?} -> {r:?}");
        r
    }

    /// USER + PASS; asserts `331` and `230`.
    #[track_caller]
    pub fn login(&mut self, user: &str, pass: &str) {
        self.expect(&format!("USER {user}"), 331);
        self.expect(&format!("PASS {pass}"), 230);
    }

    /// `PBSZ 0` and `PROT P`, both `200`.
    #[track_caller]
    pub fn protect(&mut self) {
        self.expect("PBSZ 0", 200);
        self.expect("PROT P", 200);
        self.prot_p = true;
    }

    /// `PROT C` (`200`): data connections are plain again.
    #[track_caller]
    pub fn clear(&mut self) {
        self.expect("PROT C", 200);
        self.prot_p = false;
    }

    /// The socket itself.
    pub fn socket(&self) -> &TcpStream {
        &self.tcp
    }

    /// Close both directions now.
    pub fn shutdown(&self) {
        let _ = self.tcp.shutdown(Shutdown::Both);
    }

    /// Assert that the server closes the connection within `IO_TIMEOUT`
    /// (a reset, an error alert or a TLS error counts as closed).
    #[track_caller]
    pub fn expect_closed(&mut self) {
        let deadline = Instant::now() + IO_TIMEOUT;
        let mut buf = [0u8; 4096];
        loop {
            assert!(Instant::now() < deadline, "connection not closed by the server");
            match self.reader.read(&mut buf) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::TimedOut => {
                    panic!("connection not closed by the server ({e})")
                }
                Err(_) => return,
            }
        }
    }

    // ----- data connections --------------------------------------------

    /// PASV; asserts `227`, returns the address it names.
    #[track_caller]
    pub fn pasv(&mut self) -> SocketAddr {
        let r = self.expect("PASV", 227);
        parse_pasv(&r.lines[0]).unwrap_or_else(|| panic!("cannot parse PASV reply {r:?}"))
    }

    /// EPSV; asserts `229`, returns the control peer's IP with its port.
    #[track_caller]
    pub fn epsv(&mut self) -> SocketAddr {
        let r = self.expect("EPSV", 229);
        let port = parse_epsv(&r.lines[0]).unwrap_or_else(|| panic!("cannot parse EPSV reply {r:?}"));
        SocketAddr::new(self.peer.ip(), port)
    }

    /// Listen on our address, send PORT for it; asserts `200`.
    #[track_caller]
    pub fn port(&mut self) -> std::net::TcpListener {
        let l = std::net::TcpListener::bind((self.local.ip(), 0)).expect("bind active listener");
        let a = l.local_addr().unwrap();
        self.expect(&port_arg(a), 200);
        l
    }

    /// Listen on our address, send EPRT for it; asserts `200`.
    #[track_caller]
    pub fn eprt(&mut self) -> std::net::TcpListener {
        let l = std::net::TcpListener::bind((self.local.ip(), 0)).expect("bind active listener");
        let a = l.local_addr().unwrap();
        self.expect(&eprt_arg(a), 200);
        l
    }

    /// Ask for the next data connection in `mode`.
    #[track_caller]
    pub fn prepare(&mut self, mode: Mode) -> DataPrep {
        match mode {
            Mode::Pasv => DataPrep::Passive(self.pasv()),
            Mode::Epsv => DataPrep::Passive(self.epsv()),
            Mode::Port => DataPrep::Active(self.port()),
            Mode::Eprt => DataPrep::Active(self.eprt()),
        }
    }

    /// Send `command` with the data connection made as `prep` and `order`
    /// say. `Err` with the reply when the command was refused before any
    /// data connection (not 1xx); otherwise the preliminary reply and the
    /// data connection, or the error of its TLS handshake (then the final
    /// reply is still to be read).
    #[track_caller]
    pub fn try_start(&mut self, prep: DataPrep, order: Order, command: &str) -> Result<(Reply, io::Result<Data>), Reply> {
        let prot_p = self.prot_p;
        let client = self.data_client.clone();
        let secure = move |tcp: TcpStream| -> io::Result<Data> {
            if prot_p {
                handshake(&client, tcp).map(|s| Data::Tls(Box::new(s)))
            } else {
                Ok(Data::Plain(tcp))
            }
        };
        match (prep, order) {
            (DataPrep::Passive(addr), Order::CommandFirst) => {
                self.send(command);
                let tcp = connect_data(addr);
                let first = self.reply();
                if !first.is_preliminary() {
                    return Err(first);
                }
                Ok((first, secure(tcp)))
            }
            (DataPrep::Passive(addr), Order::ConnectFirst) => {
                let tcp = connect_data(addr);
                self.send(command);
                let first = self.reply();
                if !first.is_preliminary() {
                    return Err(first);
                }
                Ok((first, secure(tcp)))
            }
            (DataPrep::Passive(addr), Order::HelloFirst) => {
                let mut tcp = connect_data(addr);
                let data = if prot_p {
                    let mut conn = self.data_client.connection();
                    let hello = conn.write_tls(&mut tcp);
                    self.send(command);
                    hello.and_then(|_| finish_handshake(conn, tcp)).map(|s| Data::Tls(Box::new(s)))
                } else {
                    self.send(command);
                    Ok(Data::Plain(tcp))
                };
                let first = self.reply();
                if !first.is_preliminary() {
                    return Err(first);
                }
                Ok((first, data))
            }
            (DataPrep::Active(listener), _) => {
                self.send(command);
                let first = self.reply();
                if !first.is_preliminary() {
                    return Err(first);
                }
                let tcp = accept_within(&listener, IO_TIMEOUT).unwrap_or_else(|| panic!("the server did not connect for {command:?}"));
                Ok((first, secure(tcp)))
            }
        }
    }

    /// Like [`TlsCtl::try_start`], asserting that the command was accepted
    /// and the data connection (and its handshake) made.
    #[track_caller]
    pub fn start(&mut self, prep: DataPrep, order: Order, command: &str) -> (Reply, Data) {
        match self.try_start(prep, order, command) {
            Ok((first, Ok(data))) => (first, data),
            Ok((first, Err(e))) => {
                let r = self.try_reply();
                panic!("{command:?} ({order:?}): {first:?}, then the data connection's TLS handshake failed: {e}; final reply {r:?}")
            }
            Err(r) => panic!("{command:?} ({order:?}) -> {r:?}, expected 1xx"),
        }
    }

    /// Set up `mode`, send `command` in `order`.
    #[track_caller]
    pub fn open_transfer(&mut self, mode: Mode, order: Order, command: &str) -> (Reply, Data) {
        let prep = self.prepare(mode);
        self.start(prep, order, command)
    }

    /// RETR `path`: 1xx, every byte to close_notify, 226.
    #[track_caller]
    pub fn retr(&mut self, mode: Mode, order: Order, path: &str) -> Vec<u8> {
        let what = format!("RETR {path} ({mode:?}, {order:?})");
        let (_, mut data) = self.open_transfer(mode, order, &format!("RETR {path}"));
        self.assert_resumed(&data, &what);
        let got = data.read_all().unwrap_or_else(|e| panic!("{what}: reading data: {e}"));
        drop(data);
        let r = self.reply();
        assert_eq!(r.code, 226, "{what} after {} bytes: {r:?}", got.len());
        got
    }

    /// STOR (or APPE, with `command`) of `bytes`: 1xx, write, close_notify, 226.
    #[track_caller]
    pub fn upload(&mut self, mode: Mode, order: Order, command: &str, bytes: &[u8]) {
        let what = format!("{command} ({mode:?}, {order:?}) of {} bytes", bytes.len());
        let (_, mut data) = self.open_transfer(mode, order, command);
        self.assert_resumed(&data, &what);
        data.write_all(bytes).unwrap_or_else(|e| panic!("{what}: writing data: {e}"));
        data.finish().unwrap_or_else(|e| panic!("{what}: closing the data connection: {e}"));
        let r = self.reply();
        assert_eq!(r.code, 226, "{what}: {r:?}");
    }

    /// STOR `path`.
    #[track_caller]
    pub fn stor(&mut self, mode: Mode, order: Order, path: &str, bytes: &[u8]) {
        self.upload(mode, order, &format!("STOR {path}"), bytes)
    }

    /// LIST, NLST or MLSD (`command`): the listing as text.
    #[track_caller]
    pub fn listing(&mut self, mode: Mode, order: Order, command: &str) -> String {
        let what = format!("{command} ({mode:?}, {order:?})");
        let (_, mut data) = self.open_transfer(mode, order, command);
        self.assert_resumed(&data, &what);
        let got = data.read_all().unwrap_or_else(|e| panic!("{what}: reading the listing: {e}"));
        drop(data);
        let r = self.reply();
        assert_eq!(r.code, 226, "{what}: {r:?}");
        String::from_utf8_lossy(&got).into_owned()
    }

    /// Under PROT P with the default data client, a data connection must
    /// have resumed the control connection's session (else a 226 would not
    /// show that the server checks resumption).
    #[track_caller]
    fn assert_resumed(&self, data: &Data, what: &str) {
        if let Data::Tls(s) = data {
            if Arc::ptr_eq(&self.client.config, &self.data_client.config) {
                assert_eq!(s.conn.handshake_kind(), Some(HandshakeKind::Resumed), "{what}: the data connection did not resume");
            }
            assert_eq!(s.conn.protocol_version(), Some(self.data_client.version.wire()), "{what}: data connection version");
        }
    }
}

/// Read one reply (multi-line included) from `r`.
pub fn read_reply(r: &mut impl BufRead) -> io::Result<Reply> {
    let first = read_line(r)?;
    let code = parse_code(&first).ok_or_else(|| io::Error::new(ErrorKind::InvalidData, format!("not a reply line: {first:?}")))?;
    let mut lines = vec![first.clone()];
    if first.as_bytes().get(3) == Some(&b'-') {
        let end = format!("{code:03} ");
        loop {
            let l = read_line(r)?;
            let done = l.starts_with(&end) || l == end.trim_end();
            lines.push(l);
            if done {
                break;
            }
        }
    }
    Ok(Reply { code, lines })
}

fn read_line(r: &mut impl BufRead) -> io::Result<String> {
    let mut buf = Vec::new();
    let n = r.read_until(b'\n', &mut buf)?;
    if n == 0 || !buf.ends_with(b"\n") {
        return Err(io::Error::new(
            ErrorKind::UnexpectedEof,
            format!("connection closed (partial line {:?})", String::from_utf8_lossy(&buf)),
        ));
    }
    buf.pop();
    if buf.ends_with(b"\r") {
        buf.pop();
    }
    Ok(String::from_utf8_lossy(&buf).into_owned())
}

// ---------------------------------------------------------------------------
// Data connections

/// A data connection: plain (PROT C) or TLS (PROT P).
pub enum Data {
    /// PROT C.
    Plain(TcpStream),
    /// PROT P.
    Tls(Box<TlsStream>),
}

impl Data {
    /// Read to the end. Under TLS the end must be a close_notify: a TCP
    /// close without one is an `UnexpectedEof` error (a truncation).
    pub fn read_all(&mut self) -> io::Result<Vec<u8>> {
        let mut got = Vec::new();
        match self.read_to_end(&mut got) {
            Ok(_) => Ok(got),
            Err(e) => Err(io::Error::new(e.kind(), format!("after {} bytes: {e}", got.len()))),
        }
    }

    /// End an upload properly: close_notify (TLS), FIN, then drain what
    /// the server still sends (its close_notify) until it closes, so that
    /// our close does not reset the connection.
    pub fn finish(self) -> io::Result<()> {
        match self {
            Data::Plain(s) => {
                s.shutdown(Shutdown::Write)?;
                drain(&mut &s);
                Ok(())
            }
            Data::Tls(mut s) => {
                s.conn.send_close_notify();
                s.flush()?;
                while s.conn.wants_write() {
                    s.conn.write_tls(&mut s.sock)?;
                }
                s.sock.shutdown(Shutdown::Write)?;
                drain(&mut *s);
                Ok(())
            }
        }
    }

    /// End an upload with a TCP FIN and no close_notify (a truncation
    /// attack, or a client that crashed).
    pub fn cut(self) {
        match self {
            Data::Plain(s) => {
                let _ = s.shutdown(Shutdown::Write);
                drain(&mut &s);
            }
            Data::Tls(mut s) => {
                let _ = s.flush();
                let _ = s.sock.shutdown(Shutdown::Write);
                drain(&mut s.sock);
            }
        }
    }

    /// The TLS state, if TLS.
    pub fn tls(&self) -> Option<&ClientConnection> {
        match self {
            Data::Plain(_) => None,
            Data::Tls(s) => Some(&s.conn),
        }
    }

    /// The socket.
    pub fn socket(&self) -> &TcpStream {
        match self {
            Data::Plain(s) => s,
            Data::Tls(s) => &s.sock,
        }
    }
}

/// Read and drop until EOF, an error, or 5 s.
fn drain(r: &mut impl Read) {
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut buf = [0u8; 16 * 1024];
    while Instant::now() < deadline {
        match r.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

impl Read for Data {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Data::Plain(s) => s.read(buf),
            Data::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Data {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Data::Plain(s) => s.write(buf),
            Data::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Data::Plain(s) => s.flush(),
            Data::Tls(s) => s.flush(),
        }
    }
}

// ---------------------------------------------------------------------------
// The test server with FTPS

impl TestServer {
    /// A server with FTPS on (see [`enable`]), after `tweak`.
    #[track_caller]
    pub fn tls_with(tweak: impl FnOnce(&mut Config)) -> TestServer {
        TestServer::with(|cfg| {
            enable(cfg);
            tweak(cfg);
        })
    }

    /// A server with FTPS on, anonymous read-write.
    #[track_caller]
    pub fn tls() -> TestServer {
        TestServer::tls_with(|_| {})
    }

    /// The implicit FTPS address (panics if there is none).
    #[track_caller]
    pub fn implicit_addr(&self) -> SocketAddr {
        self.implicit_tls.expect("this server has no implicit FTPS listener")
    }

    /// A control connection after `AUTH TLS`, not logged in.
    #[track_caller]
    pub fn tls_ctl(&self, version: Version) -> TlsCtl {
        TlsCtl::open(self.addr, TlsClient::new(version))
    }

    /// A control connection after `AUTH TLS`, logged in as anonymous, with
    /// `PBSZ 0` and `PROT P`.
    #[track_caller]
    pub fn tls_anon(&self, version: Version) -> TlsCtl {
        let mut c = self.tls_ctl(version);
        c.login("anonymous", "test@example.com");
        c.protect();
        c
    }
}

// ---------------------------------------------------------------------------
// The built binary with FTPS

/// The built binary (`super::process::Server`) with FTPS, serving a root
/// that holds `small.bin` (20,000 bytes of `pattern`).
pub struct Binary {
    /// The server process (stopped on drop).
    pub srv: super::process::Server,
    _dir: tempfile::TempDir,
    /// The contents of `small.bin`.
    pub small: Vec<u8>,
}

/// Start it with the test certificate and the `extra` flags.
#[track_caller]
pub fn binary_with(extra: &[&str]) -> Binary {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir(&root).unwrap();
    let small = super::pattern(20_000, 14);
    std::fs::write(root.join("small.bin"), &small).unwrap();
    let (_, args) = binary_args(&dir.path().join("tls"));
    let mut args: Vec<&str> = args.iter().map(String::as_str).collect();
    args.extend_from_slice(extra);
    let srv = super::process::Server::start(&root, &args);
    Binary { srv, _dir: dir, small }
}

/// `binary_with` no extra flags.
#[track_caller]
pub fn binary() -> Binary {
    binary_with(&[])
}
