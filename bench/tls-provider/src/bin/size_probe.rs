//! Binary-size probe: the smallest program that does what leanftpd's FTPS
//! needs from rustls. It reads a PEM certificate chain and key, builds a
//! ServerConfig (TLS 1.2 + 1.3, stateless tickets), accepts one TCP
//! connection on 127.0.0.1:PORT, runs an UnbufferedServerConnection
//! handshake, sends "hello\n" and close_notify.
//!
//! Built without the `tls` feature it keeps the same shape (reads the two
//! files, accepts, writes "hello\n" in clear): the difference of the two
//! stripped release binaries is what rustls + the provider cost.
//!
//! Usage: size-probe CERT.pem KEY.pem PORT

use std::net::TcpListener;

fn main() {
    let a: Vec<String> = std::env::args().collect();
    if a.len() != 4 {
        eprintln!("usage: size-probe CERT.pem KEY.pem PORT");
        std::process::exit(2);
    }
    let listener = TcpListener::bind(("127.0.0.1", a[3].parse::<u16>().expect("port"))).expect("bind");
    #[cfg(feature = "tls")]
    let cfg = tls::config(&a[1], &a[2]);
    #[cfg(not(feature = "tls"))]
    let (cert, key) = (std::fs::read(&a[1]).expect("cert"), std::fs::read(&a[2]).expect("key"));
    let (mut sock, _) = listener.accept().expect("accept");
    #[cfg(feature = "tls")]
    tls::serve(cfg, &mut sock);
    #[cfg(not(feature = "tls"))]
    {
        use std::io::{Read, Write};
        let _ = (cert.len(), key.len());
        sock.write_all(b"hello\n").expect("write");
        let _ = sock.read(&mut [0u8; 1]);
    }
}

#[cfg(feature = "tls")]
mod tls {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::sync::Arc;

    #[cfg(feature = "aws-lc-rs")]
    use rustls::crypto::aws_lc_rs as prov;
    #[cfg(feature = "ring")]
    use rustls::crypto::ring as prov;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    use rustls::server::UnbufferedServerConnection;
    use rustls::unbuffered::{ConnectionState, UnbufferedStatus};
    use rustls::ServerConfig;

    pub fn config(cert: &str, key: &str) -> Arc<ServerConfig> {
        let chain = CertificateDer::pem_file_iter(cert)
            .expect("cert file")
            .collect::<Result<Vec<_>, _>>()
            .expect("cert pem");
        let key = PrivateKeyDer::from_pem_file(key).expect("key pem");
        let mut cfg = ServerConfig::builder_with_provider(Arc::new(prov::default_provider()))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .expect("cert/key");
        cfg.ticketer = prov::Ticketer::new().unwrap();
        Arc::new(cfg)
    }

    pub fn serve(cfg: Arc<ServerConfig>, sock: &mut TcpStream) {
        let mut conn = UnbufferedServerConnection::new(cfg).unwrap();
        let mut inbuf = vec![0u8; 18 * 1024];
        let mut used = 0;
        let mut out = vec![0u8; 18 * 1024];
        let mut out_len = 0;
        let mut sent_hello = false;
        loop {
            let UnbufferedStatus { mut discard, state } = conn.process_tls_records(&mut inbuf[..used]);
            match state {
                Err(e) => {
                    eprintln!("tls: {e}");
                    return;
                }
                Ok(ConnectionState::EncodeTlsData(mut e)) => {
                    out_len += e.encode(&mut out[out_len..]).expect("encode");
                }
                Ok(ConnectionState::TransmitTlsData(t)) => {
                    sock.write_all(&out[..out_len]).expect("write");
                    out_len = 0;
                    t.done();
                }
                Ok(ConnectionState::BlockedHandshake) => {
                    let n = sock.read(&mut inbuf[used..]).expect("read");
                    if n == 0 {
                        return;
                    }
                    used += n;
                }
                Ok(ConnectionState::ReadTraffic(mut r)) => {
                    while let Some(rec) = r.next_record() {
                        discard += rec.expect("record").discard;
                    }
                }
                Ok(ConnectionState::WriteTraffic(mut w)) => {
                    if sent_hello {
                        // drain until the peer closes, so closing never resets
                        let _ = sock.shutdown(std::net::Shutdown::Write);
                        while sock.read(&mut inbuf).map_or(false, |n| n > 0) {}
                        return;
                    }
                    let mut n = w.encrypt(b"hello\n", &mut out).expect("encrypt");
                    n += w.queue_close_notify(&mut out[n..]).expect("close");
                    sock.write_all(&out[..n]).expect("write");
                    sent_hello = true;
                }
                Ok(ConnectionState::PeerClosed) | Ok(ConnectionState::Closed) => return,
                Ok(other) => {
                    eprintln!("unexpected {other:?}");
                    return;
                }
            }
            if discard > 0 {
                inbuf.copy_within(discard..used, 0);
                used -= discard;
            }
        }
    }
}
