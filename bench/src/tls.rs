//! TLS for the load generator (issue 11): a rustls client (ring provider) for
//! explicit FTPS — `AUTH TLS` on the control connection, `PBSZ 0`, `PROT P`,
//! and data connections that resume their own control connection's session.
//!
//! Every client that opens data connections gets its own `ClientConfig` with
//! its own resumption store, shared by its control connection and its data
//! connections (same `ServerName`): a data connection resumes the session of
//! that control connection and never another client's (leanftpd, like
//! vsftpd's `require_ssl_reuse`, refuses a data connection that resumes
//! nothing, and leanftpd one that resumes another connection's session).
//! Logins and idle sessions use one shared config with resumption disabled,
//! so every control connection is a full handshake.
//!
//! `Conn` is one non-blocking socket, plain or TLS, with the calls the engine
//! needs; the engine keeps driving the socket (rustls is sans-IO).
//!
//! The client verifies the server's chain once and then trusts those exact
//! certificate bytes ([`VerifyOnce`]); the handshake's own signature
//! (CertificateVerify) is checked every time. The server's work is the
//! same, the load generator's smaller: a thousand logins a second are not
//! bounded by the client re-validating one chain.

use std::io::{self, Read, Write};
use std::net::Shutdown;
use std::sync::{Arc, Mutex};

use mio::net::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{ClientSessionMemoryCache, Resumption, WebPkiServerVerifier};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, HandshakeKind, RootCertStore, SignatureScheme};

/// How the bench speaks TLS to one server.
#[derive(Clone, Debug)]
pub struct TlsCfg {
    /// No resumption: every connection made with it is a full handshake.
    pub fresh: Arc<ClientConfig>,
    /// The template of per-client configs (each gets its own session store).
    base: Arc<ClientConfig>,
    pub name: ServerName<'static>,
}

impl TlsCfg {
    /// `cas`: PEM files of the trusted CAs; `name`: the server's name or IP as
    /// its certificate says; `version`: `1.2`, `1.3` or `any`; `suite`: one
    /// cipher suite by its rustls name (e.g. `TLS13_AES_128_GCM_SHA256`), or
    /// rustls's default order.
    pub fn load(cas: &[String], name: &str, version: &str, suite: Option<&str>) -> Result<TlsCfg, String> {
        let mut roots = RootCertStore::empty();
        for f in cas {
            let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(f)
                .map_err(|e| format!("--ca {f}: {e}"))?
                .collect::<Result<_, _>>()
                .map_err(|e| format!("--ca {f}: {e}"))?;
            if certs.is_empty() {
                return Err(format!("--ca {f}: no certificate"));
            }
            for c in certs {
                roots.add(c).map_err(|e| format!("--ca {f}: {e}"))?;
            }
        }
        let mut provider = rustls::crypto::ring::default_provider();
        if let Some(s) = suite {
            provider.cipher_suites.retain(|cs| format!("{:?}", cs.suite()).eq_ignore_ascii_case(s));
            if provider.cipher_suites.is_empty() {
                return Err(format!("--tls-suite {s:?}: not a ring cipher suite (e.g. TLS13_AES_128_GCM_SHA256)"));
            }
        }
        let provider = Arc::new(provider);
        let webpki = WebPkiServerVerifier::builder_with_provider(Arc::new(roots), provider.clone())
            .build()
            .map_err(|e| format!("--ca: {e}"))?;
        let verifier = Arc::new(VerifyOnce { inner: webpki, verified: Mutex::new(Vec::new()) });
        let versions: &[&'static rustls::SupportedProtocolVersion] = match version {
            "1.2" => &[&rustls::version::TLS12],
            "1.3" => &[&rustls::version::TLS13],
            "any" => &[&rustls::version::TLS13, &rustls::version::TLS12],
            v => return Err(format!("--tls-version {v:?}: 1.2, 1.3 or any")),
        };
        let mut base = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(versions)
            .map_err(|e| format!("TLS versions: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier)
            .with_no_client_auth();
        base.alpn_protocols = vec![b"ftp".to_vec()];
        let mut fresh = base.clone();
        fresh.resumption = Resumption::disabled();
        let name = ServerName::try_from(name.to_string()).map_err(|e| format!("--tls-name {name:?}: {e}"))?;
        Ok(TlsCfg { fresh: Arc::new(fresh), base: Arc::new(base), name })
    }

    /// A config with a resumption store of its own (for one client: its
    /// control connection and its data connections).
    pub fn per_client(&self) -> Arc<ClientConfig> {
        let mut c = (*self.base).clone();
        c.resumption = Resumption::store(Arc::new(ClientSessionMemoryCache::new(1)));
        Arc::new(c)
    }
}

/// rustls's WebPKI verifier, asked once per distinct chain: a chain it
/// accepted for the name is accepted again without re-validation (the
/// handshake signature is always verified).
#[derive(Debug)]
struct VerifyOnce {
    inner: Arc<WebPkiServerVerifier>,
    /// (server name, end entity, intermediates) already verified; a few.
    verified: Mutex<Vec<(String, Vec<Vec<u8>>)>>,
}

impl ServerCertVerifier for VerifyOnce {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let key = (
            server_name.to_str().into_owned(),
            std::iter::once(end_entity).chain(intermediates).map(|c| c.as_ref().to_vec()).collect::<Vec<_>>(),
        );
        if self.verified.lock().map(|v| v.contains(&key)).unwrap_or(false) {
            return Ok(ServerCertVerified::assertion());
        }
        let ok = self.inner.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)?;
        if let Ok(mut v) = self.verified.lock() {
            if v.len() >= 8 {
                v.remove(0);
            }
            v.push(key);
        }
        Ok(ok)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.inner.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.inner.supported_verify_schemes()
    }
}

/// What a handshake negotiated, for the report: `TLSv1_3/TLS13_AES_256_GCM_SHA384/X25519`.
pub fn describe(t: &ClientConnection) -> String {
    let v = t.protocol_version().map(|v| format!("{v:?}")).unwrap_or_else(|| "?".into());
    let s = t.negotiated_cipher_suite().map(|s| format!("{:?}", s.suite())).unwrap_or_else(|| "?".into());
    let k = t.negotiated_key_exchange_group().map(|g| format!("{:?}", g.name())).unwrap_or_else(|| "?".into());
    format!("{v}/{s}/{k}")
}

fn would_block(e: &io::Error) -> bool {
    e.kind() == io::ErrorKind::WouldBlock || e.raw_os_error() == Some(libc::ENOTCONN)
}

/// One connection of a client: the socket, and its TLS state once started.
pub struct Conn {
    pub sock: TcpStream,
    pub tls: Option<Box<ClientConnection>>,
    /// A download ended by TCP EOF without `close_notify`.
    pub unclean_eof: bool,
}

impl Conn {
    pub fn plain(sock: TcpStream) -> Conn {
        Conn { sock, tls: None, unclean_eof: false }
    }

    /// Start the client side of a handshake; the ClientHello leaves at the next flush.
    pub fn start_tls(&mut self, cfg: Arc<ClientConfig>, name: ServerName<'static>) -> io::Result<()> {
        let c = ClientConnection::new(cfg, name).map_err(|e| io::Error::other(format!("TLS: {e}")))?;
        self.tls = Some(Box::new(c));
        self.flush_tls()
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Whether the handshake resumed a session (None before it ends or without TLS).
    pub fn resumed(&self) -> Option<bool> {
        let k = self.tls.as_ref()?.handshake_kind()?;
        Some(k == HandshakeKind::Resumed)
    }

    /// Write what rustls holds for the socket until the socket would block.
    pub fn flush_tls(&mut self) -> io::Result<()> {
        let Conn { sock, tls, .. } = self;
        match tls.as_mut() {
            Some(t) => flush(t, sock),
            None => Ok(()),
        }
    }

    /// Bytes rustls still holds for the socket.
    pub fn tls_pending(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.wants_write())
    }

    /// Drive the handshake as far as the socket allows: true once it is done.
    pub fn handshake(&mut self) -> io::Result<bool> {
        let Conn { sock, tls, .. } = self;
        let t = tls.as_mut().ok_or_else(|| io::Error::other("no TLS"))?;
        loop {
            flush(t, sock)?;
            if !t.is_handshaking() {
                return Ok(true);
            }
            if !t.wants_read() {
                return Ok(false);
            }
            match t.read_tls(sock) {
                Ok(0) => return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "closed during the TLS handshake")),
                Ok(_) => process(t, sock)?,
                Err(e) if would_block(&e) => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Read plaintext. Ok(0) at the end: `close_notify`, or (TLS) a TCP EOF
    /// without it, which sets `unclean_eof`.
    pub fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Conn { sock, tls, unclean_eof } = self;
        let Some(t) = tls.as_mut() else { return sock.read(buf) };
        let mut eof = false;
        loop {
            match t.reader().read(buf) {
                Ok(n) => return Ok(n),
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    *unclean_eof = true;
                    return Ok(0);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            if eof {
                *unclean_eof = true;
                return Ok(0);
            }
            match t.read_tls(sock) {
                Ok(n) => {
                    eof = n == 0;
                    process(t, sock)?;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }

    /// Write plaintext: Err(WouldBlock) while rustls holds a full buffer
    /// (64 KiB) that the socket will not take.
    pub fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let Conn { sock, tls, .. } = self;
        let Some(t) = tls.as_mut() else { return sock.write(data) };
        flush(t, sock)?;
        let n = t.writer().write(data)?;
        flush(t, sock)?;
        if n == 0 && !data.is_empty() {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    }

    /// Queue `close_notify` (TLS only) and flush it as far as possible.
    pub fn close_notify(&mut self) -> io::Result<()> {
        if let Some(t) = self.tls.as_mut() {
            t.send_close_notify();
        }
        self.flush_tls()
    }

    pub fn shutdown_write(&self) {
        let _ = self.sock.shutdown(Shutdown::Write);
    }
}

fn flush(t: &mut ClientConnection, sock: &mut TcpStream) -> io::Result<()> {
    while t.wants_write() {
        match t.write_tls(sock) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(_) => {}
            Err(e) if would_block(&e) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Process what `read_tls` brought; on a TLS error, send the alert rustls
/// queued (best effort) and fail.
fn process(t: &mut ClientConnection, sock: &mut TcpStream) -> io::Result<()> {
    match t.process_new_packets() {
        Ok(_) => flush(t, sock),
        Err(e) => {
            let _ = flush(t, sock);
            Err(io::Error::new(io::ErrorKind::InvalidData, format!("TLS: {e}")))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::PrivateKeyDer;
    use std::path::{Path, PathBuf};
    use std::time::{Duration, Instant};

    /// An ECDSA CA and a leaf for 127.0.0.1 made by `openssl` in a fresh
    /// directory (as compare.sh makes them); None without openssl.
    fn certs() -> Option<PathBuf> {
        let dir = std::env::temp_dir().join(format!("leanftpd-bench-tls-{}-{:?}", std::process::id(), std::thread::current().id()));
        std::fs::create_dir_all(&dir).ok()?;
        let sh = r#"set -e
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out ca.key 2>/dev/null
openssl req -x509 -new -key ca.key -out ca.pem -days 2 -subj /CN=test-ca -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out leaf.key 2>/dev/null
openssl req -new -key leaf.key -out leaf.csr -subj /CN=localhost
printf 'subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n' > leaf.ext
openssl x509 -req -in leaf.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out leaf.pem -days 2 -extfile leaf.ext 2>/dev/null"#;
        let ok = std::process::Command::new("sh").arg("-c").arg(sh).current_dir(&dir).status().ok()?.success();
        ok.then_some(dir)
    }

    /// A blocking rustls server: per connection, read `up` bytes, send
    /// `down` bytes, close_notify, then read to the end; reports whether
    /// each connection resumed a session.
    fn server(dir: &Path, conns: usize, up: usize, down: usize) -> (std::net::SocketAddr, std::thread::JoinHandle<Vec<bool>>) {
        let chain: Vec<CertificateDer<'static>> =
            CertificateDer::pem_file_iter(dir.join("leaf.pem")).unwrap().collect::<Result<_, _>>().unwrap();
        let key = PrivateKeyDer::from_pem_file(dir.join("leaf.key")).unwrap();
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let cfg = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .unwrap();
        let cfg = Arc::new(cfg);
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let h = std::thread::spawn(move || {
            let mut resumed = Vec::new();
            for _ in 0..conns {
                let (s, _) = l.accept().unwrap();
                let mut t = rustls::StreamOwned::new(rustls::ServerConnection::new(cfg.clone()).unwrap(), s);
                let mut buf = vec![0u8; 64 << 10];
                let mut got = 0;
                while got < up {
                    let n = t.read(&mut buf).unwrap();
                    assert!(n > 0, "client closed early");
                    got += n;
                }
                resumed.push(t.conn.handshake_kind() == Some(HandshakeKind::Resumed));
                let chunk = vec![7u8; 64 << 10];
                let mut sent = 0;
                while sent < down {
                    let n = chunk.len().min(down - sent);
                    t.write_all(&chunk[..n]).unwrap();
                    sent += n;
                }
                t.conn.send_close_notify();
                t.flush().unwrap();
                while t.read(&mut buf).map(|n| n > 0).unwrap_or(false) {}
            }
            resumed
        });
        (addr, h)
    }

    /// Retry a non-blocking call until it stops saying WouldBlock.
    fn spin<T>(mut f: impl FnMut() -> io::Result<T>) -> T {
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            match f() {
                Ok(v) => return v,
                Err(e) if would_block(&e) && Instant::now() < until => std::thread::sleep(Duration::from_micros(200)),
                Err(e) => panic!("{e}"),
            }
        }
    }

    /// One connection: handshake, `up` bytes written, `down` read to close_notify.
    fn session(addr: std::net::SocketAddr, cfg: Arc<ClientConfig>, name: &ServerName<'static>, up: usize, down: usize) -> Conn {
        let sock = crate::engine::connect_from(None, addr).unwrap();
        let mut c = Conn::plain(sock);
        c.start_tls(cfg, name.clone()).unwrap();
        spin(|| match c.handshake()? {
            true => Ok(()),
            false => Err(io::ErrorKind::WouldBlock.into()),
        });
        let data = vec![1u8; 100_000];
        let mut sent = 0;
        while sent < up {
            let n = (up - sent).min(data.len());
            sent += spin(|| c.write(&data[..n]));
        }
        spin(|| match c.tls_pending() {
            true => c.flush_tls().and(Err(io::ErrorKind::WouldBlock.into())),
            false => Ok(()),
        });
        let mut buf = vec![0u8; 256 << 10];
        let mut got = 0;
        loop {
            match spin(|| c.read(&mut buf)) {
                0 => break,
                n => got += n,
            }
        }
        assert_eq!(got, down);
        assert!(!c.unclean_eof, "the server sent close_notify");
        c.close_notify().unwrap();
        c.shutdown_write();
        c
    }

    #[test]
    fn round_trip_and_resumption_of_the_first_session() {
        let Some(dir) = certs() else {
            eprintln!("no openssl: skipped");
            return;
        };
        let (addr, h) = server(&dir, 3, 300_000, 1_000_000);
        let ca = dir.join("ca.pem").to_string_lossy().into_owned();
        let t = TlsCfg::load(std::slice::from_ref(&ca), "127.0.0.1", "1.3", Some("tls13_aes_128_gcm_sha256")).unwrap();
        assert!(matches!(t.name, ServerName::IpAddress(_)));
        assert!(!Arc::ptr_eq(&t.per_client(), &t.per_client()));
        // A client's "control" connection (full handshake) and two "data"
        // connections that resume it through the client's own store.
        let mine = t.per_client();
        let a = session(addr, mine.clone(), &t.name, 300_000, 1_000_000);
        assert_eq!(a.resumed(), Some(false));
        assert!(describe(a.tls.as_ref().unwrap()).starts_with("TLSv1_3/"));
        let b = session(addr, mine.clone(), &t.name, 300_000, 1_000_000);
        assert_eq!(b.resumed(), Some(true));
        let c = session(addr, t.fresh.clone(), &t.name, 300_000, 1_000_000);
        assert_eq!(c.resumed(), Some(false), "the shared config never resumes");
        assert_eq!(h.join().unwrap(), vec![false, true, false]);
        assert!(describe(c.tls.as_ref().unwrap()).contains("TLS13_AES_128_GCM_SHA256"));
        // The chain is checked: a name the certificate does not carry fails.
        let (addr, h) = server(&dir, 1, 0, 0);
        let wrong = TlsCfg::load(&[ca], "127.0.0.2", "1.3", None).unwrap();
        let mut c = Conn::plain(crate::engine::connect_from(None, addr).unwrap());
        c.start_tls(wrong.fresh.clone(), wrong.name.clone()).unwrap();
        let until = Instant::now() + Duration::from_secs(10);
        let err = loop {
            match c.handshake() {
                Ok(false) if Instant::now() < until => std::thread::sleep(Duration::from_millis(1)),
                Ok(done) => panic!("handshake with the wrong name: done={done}"),
                Err(e) => break e,
            }
        };
        assert!(err.to_string().contains("certificate"), "{err}");
        drop(c);
        let _ = h.join();
        let _ = std::fs::remove_dir_all(dir);
    }

    #[test]
    fn bad_options_are_refused() {
        assert!(TlsCfg::load(&[], "localhost", "1.4", None).is_err());
        assert!(TlsCfg::load(&[], "localhost", "any", Some("NOPE")).is_err());
        assert!(TlsCfg::load(&["/nonexistent.pem".into()], "localhost", "any", None).is_err());
        // No CA at all: the WebPKI verifier refuses to be built.
        assert!(TlsCfg::load(&[], "127.0.0.1", "1.3", None).is_err());
    }
}
