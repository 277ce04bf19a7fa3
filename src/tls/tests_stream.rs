//! `TlsStream` against an in-process rustls client over loopback: the
//! handshake states, reading and writing, resumption by the right control
//! connection only, clean and unclean ends, ALPN, and the buffers an idle
//! connection keeps.

use std::io::{self, Read, Write};
use std::net::{TcpListener as StdListener, TcpStream as StdStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, ClientConnection, DigitallySignedStruct, SignatureScheme, StreamOwned};

use super::stream::{Role, TlsStream};
use super::{test_support, OwnerId, TlsConfig};

#[derive(Debug)]
struct AcceptAny(Arc<rustls::crypto::CryptoProvider>);

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(&self, _: &CertificateDer<'_>, _: &[CertificateDer<'_>], _: &ServerName<'_>, _: &[u8], _: UnixTime) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn verify_tls13_signature(&self, m: &[u8], c: &CertificateDer<'_>, d: &DigitallySignedStruct) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(m, c, d, &self.0.signature_verification_algorithms)
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn client_config(tls13: bool, alpn: &[&[u8]]) -> Arc<ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let versions: &[&rustls::SupportedProtocolVersion] = if tls13 { &[&rustls::version::TLS13] } else { &[&rustls::version::TLS12] };
    let mut c = ClientConfig::builder_with_provider(provider.clone())
        .with_protocol_versions(versions)
        .unwrap()
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny(provider)))
        .with_no_client_auth();
    c.alpn_protocols = alpn.iter().map(|p| p.to_vec()).collect();
    Arc::new(c)
}

fn server_config() -> TlsConfig {
    let (cert, key) = test_support::cert_files();
    TlsConfig::load(&cert, &key).unwrap()
}

/// A connected pair: the server's non-blocking socket and the client's
/// blocking one (with a timeout, so a test never hangs).
fn pair() -> (TcpStream, StdStream) {
    let l = StdListener::bind("127.0.0.1:0").unwrap();
    let c = StdStream::connect(l.local_addr().unwrap()).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let (s, _) = l.accept().unwrap();
    s.set_nonblocking(true).unwrap();
    (TcpStream::from_std(s), c)
}

/// Retry `f` while it would block, as the reactor does on readiness.
fn until<T>(mut f: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    let end = Instant::now() + Duration::from_secs(5);
    loop {
        match f() {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock && Instant::now() < end => std::thread::sleep(Duration::from_millis(1)),
            r => return r,
        }
    }
}

/// The client side in a thread: handshake, send `send`, read `expect_len`
/// bytes back, then close (with or without close_notify).
fn client(cfg: Arc<ClientConfig>, sock: StdStream, send: Vec<u8>, expect_len: usize, close_notify: bool) -> std::thread::JoinHandle<io::Result<Vec<u8>>> {
    std::thread::spawn(move || {
        let conn = ClientConnection::new(cfg, ServerName::try_from("localhost").unwrap()).map_err(io::Error::other)?;
        let mut s = StreamOwned::new(conn, sock);
        s.write_all(&send)?;
        s.flush()?;
        let mut got = vec![0; expect_len];
        s.read_exact(&mut got)?;
        if close_notify {
            s.conn.send_close_notify();
            s.flush()?;
        }
        Ok(got)
    })
}

/// Serve one connection: read `n` bytes, write them back reversed, then
/// read to the end. Returns the end (Ok(0) or the error).
fn echo(tls: &mut TlsStream, sock: &mut TcpStream, n: usize) -> io::Result<usize> {
    let mut got = Vec::new();
    let mut buf = [0u8; 1000];
    while got.len() < n {
        let k = until(|| tls.read(sock, &mut buf))?;
        assert!(k > 0, "the client closed early");
        got.extend_from_slice(&buf[..k]);
    }
    got.reverse();
    let mut sent = 0;
    while sent < got.len() {
        sent += until(|| tls.write(sock, &got[sent..]))?;
    }
    until(|| tls.flush(sock))?;
    until(|| tls.read(sock, &mut buf))
}

#[test]
fn bytes_cross_both_ways_under_tls_1_2_and_1_3_and_close_notify_reads_as_the_end() {
    let server = server_config();
    for tls13 in [false, true] {
        for n in [1usize, 100, 40_000, 200_000] {
            let (mut s, c) = pair();
            let data: Vec<u8> = (0..n).map(|i| (i * 7 % 251) as u8).collect();
            let h = client(client_config(tls13, &[]), c, data.clone(), n, true);
            let mut tls = TlsStream::new(&server.control, OwnerId::fresh(), Role::Control, Vec::new()).unwrap();
            let end = echo(&mut tls, &mut s, n);
            let mut want = data.clone();
            want.reverse();
            assert_eq!(h.join().unwrap().unwrap(), want, "tls13={tls13} n={n}");
            assert_eq!(end.unwrap(), 0, "close_notify is a clean end (tls13={tls13} n={n})");
            assert!(tls.describe().starts_with(if tls13 { "TLSv1_3" } else { "TLSv1_2" }), "{}", tls.describe());
        }
    }
}

#[test]
fn tcp_end_without_close_notify_is_unexpected_eof() {
    let server = server_config();
    let (mut s, c) = pair();
    let h = client(client_config(true, &[]), c, b"abc".to_vec(), 3, false);
    let mut tls = TlsStream::new(&server.control, OwnerId::fresh(), Role::Control, Vec::new()).unwrap();
    let end = echo(&mut tls, &mut s, 3);
    h.join().unwrap().unwrap();
    assert_eq!(end.unwrap_err().kind(), io::ErrorKind::UnexpectedEof);
}

#[test]
fn an_idle_connection_keeps_no_buffers() {
    let server = server_config();
    let (mut s, c) = pair();
    let h = client(client_config(true, &[]), c, vec![9; 50_000], 50_000, true);
    let mut tls = TlsStream::new(&server.control, OwnerId::fresh(), Role::Control, Vec::new()).unwrap();
    assert_eq!(echo(&mut tls, &mut s, 50_000).unwrap(), 0);
    h.join().unwrap().unwrap();
    assert_eq!(tls.buffered_bytes(), 0, "nothing in flight, nothing held");
}

/// A control connection, then a data connection from the same client
/// config (so it may resume): what the data side's check says.
fn data_after_control(require_reuse: bool, same_owner: bool, resume: bool, tls13: bool) -> io::Result<usize> {
    let server = server_config();
    let cfg = client_config(tls13, &[b"ftp"]);
    let owner = OwnerId::fresh();
    let (mut s, c) = pair();
    let h = client(cfg.clone(), c, b"ctl".to_vec(), 3, true);
    let mut ctl = TlsStream::new(&server.control, owner, Role::Control, Vec::new()).unwrap();
    assert_eq!(echo(&mut ctl, &mut s, 3).unwrap(), 0);
    h.join().unwrap().unwrap();

    let data_cfg = if resume { cfg } else { client_config(tls13, &[b"ftp"]) };
    let (mut s, c) = pair();
    let h = client(data_cfg, c, b"data".to_vec(), 4, true);
    let data_owner = if same_owner { owner } else { OwnerId::fresh() };
    let mut data = TlsStream::new(&server.data, data_owner, Role::Data { require_reuse }, Vec::new()).unwrap();
    let r = echo(&mut data, &mut s, 4);
    drop(s);
    let _ = h.join();
    r
}

#[test]
fn a_data_connection_must_resume_its_own_control_connections_session() {
    for tls13 in [false, true] {
        assert_eq!(data_after_control(true, true, true, tls13).unwrap(), 0, "resumed, same owner (tls13={tls13})");
        let e = data_after_control(true, true, false, tls13).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "full handshake (tls13={tls13}): {e}");
        let e = data_after_control(true, false, true, tls13).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "another connection's session (tls13={tls13}): {e}");
        assert_eq!(data_after_control(false, false, false, tls13).unwrap(), 0, "--insecure-tls-no-reuse (tls13={tls13})");
    }
}

#[test]
fn alpn_other_than_ftp_is_refused_and_ftp_or_none_is_accepted() {
    let server = server_config();
    for (alpn, ok) in [(&[][..], true), (&[&b"ftp"[..]][..], true), (&[&b"http/1.1"[..]][..], false), (&[&b"h2"[..], &b"ftp"[..]][..], true)] {
        let (mut s, c) = pair();
        let h = client(client_config(true, alpn), c, b"x".to_vec(), 1, true);
        let mut tls = TlsStream::new(&server.control, OwnerId::fresh(), Role::Control, Vec::new()).unwrap();
        let r = echo(&mut tls, &mut s, 1);
        drop(s);
        let client_ok = h.join().unwrap().is_ok();
        assert_eq!(r.is_ok(), ok, "alpn {alpn:?}: {r:?}");
        assert_eq!(client_ok, ok, "alpn {alpn:?}");
    }
}

#[test]
fn garbage_instead_of_a_client_hello_fails_the_handshake_with_an_error() {
    let server = server_config();
    let (mut s, mut c) = pair();
    c.write_all(b"USER anonymous\r\n").unwrap();
    let mut tls = TlsStream::new(&server.control, OwnerId::fresh(), Role::Control, Vec::new()).unwrap();
    let mut buf = [0u8; 100];
    let e = until(|| tls.read(&mut s, &mut buf)).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::PermissionDenied, "a failed handshake is a refusal: {e}");
    // An alert went out before the refusal.
    let mut alert = [0u8; 7];
    c.read_exact(&mut alert).unwrap();
    assert_eq!(alert[0], 21, "a TLS alert record: {alert:?}");
    assert_eq!(until(|| tls.read(&mut s, &mut buf)).unwrap_err().kind(), io::ErrorKind::InvalidData, "and stays failed");
}


