//! The TLS session states of a control or data connection, with handshake
//! bytes fed in chunks as a socket would deliver them: whatever arrives,
//! `TlsStream` must not panic, must stop at `WouldBlock` when the input is
//! used up, must keep its buffers within their bounds, and must not move
//! plaintext before its handshake is done.
//!
//! Input: a role byte, then chunks, each a length byte and that many bytes.
//! The certificate in `fuzz/tls/` is a throw-away key for fuzzing only.
#![no_main]

use std::io::{self, Read, Write};
use std::sync::OnceLock;

use leanftpd::tls::stream::{Role, TlsStream};
use leanftpd::tls::{OwnerId, TlsConfig, TLS_IN_BYTES, TLS_OUT_BYTES};
use libfuzzer_sys::fuzz_target;

/// A socket over memory: reads hand out the chunks one by one, then
/// `WouldBlock`; writes are counted and dropped.
struct MemSock<'a> {
    chunks: Vec<&'a [u8]>,
    next: usize,
    written: usize,
}

impl Read for MemSock<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(chunk) = self.chunks.get(self.next) else { return Err(io::ErrorKind::WouldBlock.into()) };
        let n = chunk.len().min(buf.len());
        buf[..n].copy_from_slice(&chunk[..n]);
        if n == chunk.len() {
            self.next += 1;
        } else {
            self.chunks[self.next] = &chunk[n..];
        }
        Ok(n)
    }
}

impl Write for MemSock<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.written += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn config() -> &'static TlsConfig {
    static C: OnceLock<TlsConfig> = OnceLock::new();
    C.get_or_init(|| {
        TlsConfig::from_pem(include_bytes!("../tls/fuzz-only-cert.pem"), include_bytes!("../tls/fuzz-only-key.pem"))
            .expect("the fuzz certificate loads")
    })
}

fuzz_target!(|data: &[u8]| {
    let Some((&role, mut rest)) = data.split_first() else { return };
    let mut chunks = Vec::new();
    while let Some((&len, tail)) = rest.split_first() {
        // A zero length byte means "1": an empty read would read as the end.
        let n = (len as usize).max(1).min(tail.len());
        if n == 0 {
            break;
        }
        chunks.push(&tail[..n]);
        rest = &tail[n..];
    }
    let cfg = config();
    let (config, role) = match role % 3 {
        0 => (&cfg.control, Role::Control),
        1 => (&cfg.data, Role::Data { require_reuse: true, control_resumed: None }),
        _ => (&cfg.data, Role::Data { require_reuse: false, control_resumed: None }),
    };
    let mut tls = TlsStream::new(config, OwnerId(7), role, b"234 AUTH TLS ok.\r\n".to_vec()).expect("a server connection");
    let mut sock = MemSock { chunks, next: 0, written: 0 };
    let mut buf = [0u8; 4096];
    let mut plaintext = 0usize;
    // Every call either consumes input or ends; bound the calls anyway.
    for i in 0..10_000 {
        let r = if i % 5 == 4 { tls.write(&mut sock, b"226 ok\r\n") } else { tls.read(&mut sock, &mut buf) };
        assert!(tls.buffered_bytes() <= TLS_IN_BYTES + TLS_OUT_BYTES + 64 * 1024, "buffers past their bound");
        match r {
            Ok(0) => break,
            Ok(n) => {
                assert!(!tls.is_handshaking(), "plaintext moved before the handshake was done");
                plaintext += n;
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if sock.next >= sock.chunks.len() {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    let _ = (plaintext, sock.written);
});
