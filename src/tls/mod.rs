//! FTPS (RFC 4217) with rustls: the server's TLS configuration, and the
//! binding of a PROT P data connection to its own control connection.
//!
//! Owns the certificate, the key and rustls's `ServerConfig`s (one for
//! control connections, one for data connections, which sends no TLS 1.3
//! session tickets), and the ticket key and session cache they share.
//! Never touches a socket: `stream.rs` drives one connection's TLS over a
//! socket the reactor owns.
//!
//! # Data connections resume their own control connection's session
//! A PROT P data connection must resume the TLS session of the control
//! connection that asked for the transfer (as vsftpd's
//! `require_ssl_reuse` and FileZilla Server demand): otherwise anyone who
//! can reach the passive port could take the transfer. rustls's buffered
//! `ServerConnection` carries data of ours in the resumption state
//! (`set_resumption_data`); its `UnbufferedServerConnection`, which lets
//! every session share the reactor's buffers, does not (0.23). So the
//! binding is carried the same way one level down: rustls's own ticketer
//! and session cache are wrapped so that every ticket or cached session
//! carries the 8-byte id of the control connection it was made on
//! ([`OwnerId`]), and a resumption reports the id it found. The ticket is
//! encrypted and authenticated by rustls's ticketer, so a client cannot
//! forge the id. Which connection is being processed is told to the
//! wrappers through a thread-local around each call into rustls (the
//! reactor is single-threaded; each worker thread would have its own).
//!
//! # Invariants
//! - TLS 1.2 and 1.3 only; ALPN "ftp" or none (rustls refuses a ClientHello
//!   that offers only other protocols: the ALPACA defence).
//! - No early data (0-RTT) is accepted.
//! - Reloading the certificate (SIGHUP) keeps the ticket key and the
//!   session cache, so the sessions of connections made before the reload
//!   can still be resumed by their data connections.

pub mod stream;
#[cfg(test)]
mod tests_stream;

use std::cell::Cell;
use std::fmt;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::server::{ProducesTickets, ServerSessionMemoryCache, StoresServerSessions};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

pub use stream::{TlsStream, TLS_IN_BYTES, TLS_OUT_BYTES};

/// The ALPN protocol id of FTP (IANA registry; RFC 7301 §6 lists "ftp").
pub const ALPN_FTP: &[u8] = b"ftp";

/// TLS 1.2 sessions kept for resumption by session id, for clients that do
/// not take tickets (about 200 bytes each). Tickets, which TLS 1.3 and most
/// TLS 1.2 clients use, cost the server nothing per session.
pub const SESSION_CACHE_ENTRIES: usize = 4096;

/// TLS 1.3 session tickets sent on a control connection after its
/// handshake (about 170 bytes each on the wire, nothing kept by the
/// server: rustls's tickets are stateless and may be resumed more than
/// once). GnuTLS (lftp, FileZilla) and curl resume every data connection
/// from one ticket; a client that uses each ticket once, as RFC 8446 §C.4
/// advises and rustls's client does, can open this many PROT P data
/// connections per control connection, since data connections get no
/// tickets of their own (see `TlsConfig::data`).
pub const CONTROL_TLS13_TICKETS: usize = 4;

/// The id of the control connection a TLS session was made on: unique in
/// this process (never reused, unlike a slab key), and never 0, which
/// stands for none where an id is stored bare.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OwnerId(pub u64);

static NEXT_OWNER: AtomicU64 = AtomicU64::new(1);

impl OwnerId {
    /// A new id for a control connection.
    pub fn fresh() -> OwnerId {
        OwnerId(NEXT_OWNER.fetch_add(1, Ordering::Relaxed))
    }
}

thread_local! {
    /// The control connection whose TLS rustls is processing now (see the
    /// module doc), or 0.
    static PROCESSING: Cell<u64> = const { Cell::new(0) };
    /// The owner found in the last ticket or cached session rustls opened
    /// while processing, or 0.
    static RESUMED: Cell<u64> = const { Cell::new(0) };
    /// That session came from the TLS 1.2 session cache (a resumption by
    /// session id), not from a ticket.
    static RESUMED_BY_ID: Cell<bool> = const { Cell::new(false) };
}

/// Run `f` (a call into rustls) on behalf of `owner`'s connection; returns
/// what `f` returned and the owner of a session it resumed, if it did.
pub(crate) fn processing<T>(owner: OwnerId, f: impl FnOnce() -> T) -> (T, Option<OwnerId>) {
    PROCESSING.with(|p| p.set(owner.0));
    RESUMED.with(|r| r.set(0));
    RESUMED_BY_ID.with(|r| r.set(false));
    let t = f();
    PROCESSING.with(|p| p.set(0));
    let resumed = RESUMED.with(|r| r.replace(0));
    (t, (resumed != 0).then_some(OwnerId(resumed)))
}

/// Whether the session the last [`processing`] call reported came from the
/// TLS 1.2 session cache (by session id) rather than from a ticket.
pub(crate) fn resumed_by_id() -> bool {
    RESUMED_BY_ID.with(|r| r.get())
}

/// Append the processing connection's id to a session value.
fn tag(mut value: Vec<u8>) -> Vec<u8> {
    value.extend_from_slice(&PROCESSING.with(|p| p.get()).to_be_bytes());
    value
}

/// Take the id back off a session value, and report it as resumed.
fn untag(mut value: Vec<u8>) -> Option<Vec<u8>> {
    let at = value.len().checked_sub(8)?;
    let id = u64::from_be_bytes(value[at..].try_into().ok()?);
    value.truncate(at);
    RESUMED.with(|r| r.set(id));
    Some(value)
}

/// rustls's ticketer, with the owner's id inside each ticket.
struct OwnedTickets(Arc<dyn ProducesTickets>);

impl fmt::Debug for OwnedTickets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OwnedTickets")
    }
}

impl ProducesTickets for OwnedTickets {
    fn enabled(&self) -> bool {
        self.0.enabled()
    }
    fn lifetime(&self) -> u32 {
        self.0.lifetime()
    }
    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.0.encrypt(&tag(plain.to_vec()))
    }
    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        untag(self.0.decrypt(cipher)?)
    }
}

/// rustls's session cache (TLS 1.2 session ids), with the owner's id in
/// each value.
struct OwnedSessions(Arc<ServerSessionMemoryCache>);

impl fmt::Debug for OwnedSessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("OwnedSessions")
    }
}

impl StoresServerSessions for OwnedSessions {
    fn put(&self, key: Vec<u8>, value: Vec<u8>) -> bool {
        self.0.put(key, tag(value))
    }
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        let v = untag(self.0.get(key)?);
        RESUMED_BY_ID.with(|r| r.set(v.is_some()));
        v
    }
    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        let v = untag(self.0.take(key)?);
        RESUMED_BY_ID.with(|r| r.set(v.is_some()));
        v
    }
    fn can_cache(&self) -> bool {
        true
    }
}

/// The certificate chain and key from PEM text; on error, which of the
/// two and why.
fn parse_pem(cert: &[u8], key: &[u8]) -> Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>), (&'static str, String)> {
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(cert)
        .collect::<Result<_, _>>()
        .map_err(|e| ("--tls-cert", e.to_string()))?;
    if chain.is_empty() {
        return Err(("--tls-cert", "no CERTIFICATE in the file".into()));
    }
    let private = PrivateKeyDer::from_pem_slice(key).map_err(|e| ("--tls-key", e.to_string()))?;
    Ok((chain, private))
}

/// What data connections see of the ticket key: they resume tickets but
/// never make one. A data connection makes no session of its own, so
/// nothing it does can be resumed later as its control connection's.
struct ResumeOnlyTickets(Arc<dyn ProducesTickets>);

impl fmt::Debug for ResumeOnlyTickets {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResumeOnlyTickets")
    }
}

impl ProducesTickets for ResumeOnlyTickets {
    fn enabled(&self) -> bool {
        self.0.enabled()
    }
    fn lifetime(&self) -> u32 {
        self.0.lifetime()
    }
    fn encrypt(&self, _: &[u8]) -> Option<Vec<u8>> {
        None
    }
    fn decrypt(&self, cipher: &[u8]) -> Option<Vec<u8>> {
        self.0.decrypt(cipher)
    }
}

/// What data connections see of the session cache: they look sessions up
/// but never store one. rustls stores a TLS 1.2 session when it checks the
/// client's Finished, before the data connection's resumption check can
/// refuse it: a full handshake on a stolen passive port would otherwise
/// leave a session tagged with its victim's id, resumable later as the
/// victim's (the red team's finding).
struct ResumeOnlySessions(Arc<dyn StoresServerSessions>);

impl fmt::Debug for ResumeOnlySessions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResumeOnlySessions")
    }
}

impl StoresServerSessions for ResumeOnlySessions {
    fn put(&self, _: Vec<u8>, _: Vec<u8>) -> bool {
        false
    }
    fn get(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.0.get(key)
    }
    fn take(&self, key: &[u8]) -> Option<Vec<u8>> {
        self.0.take(key)
    }
    fn can_cache(&self) -> bool {
        // False would stop rustls from looking sessions up at all.
        true
    }
}

/// Why the certificate or key could not be used (printed by `main`, exit
/// code 2; on SIGHUP logged, and the old ones are kept).
#[derive(Debug)]
pub struct TlsError(pub String);

impl fmt::Display for TlsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TlsError {}

/// The server's TLS configuration: one `ServerConfig` for control
/// connections and one for data connections.
#[derive(Clone)]
pub struct TlsConfig {
    /// AUTH TLS and implicit FTPS control connections.
    pub control: Arc<ServerConfig>,
    /// PROT P data connections: no TLS 1.3 session tickets (curl 7.88 and
    /// lftp 4.9 lose the tail of an upload when a server sends them there).
    pub data: Arc<ServerConfig>,
    tickets: Arc<dyn ProducesTickets>,
    sessions: Arc<dyn StoresServerSessions>,
}

/// *ring* with its cipher suites reordered: AES-128-GCM, then AES-256-GCM,
/// then ChaCha20-Poly1305, for TLS 1.3 and 1.2 alike. The server picks
/// from this order whatever the client prefers (`ignore_client_order`):
/// AES-128-GCM is as safe as AES-256-GCM for TLS (Mozilla's
/// "intermediate" profile lists it first) and, with 10 rounds instead of
/// 14, cheaper per byte, and its key schedule is 64 bytes smaller in each
/// direction of every idle session.
fn provider() -> Arc<CryptoProvider> {
    let mut p = rustls::crypto::ring::default_provider();
    use rustls::CipherSuite as S;
    p.cipher_suites.sort_by_key(|s| match s.suite() {
        S::TLS13_AES_128_GCM_SHA256 | S::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 | S::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256 => 0,
        S::TLS13_AES_256_GCM_SHA384 | S::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384 | S::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384 => 1,
        _ => 2,
    });
    Arc::new(p)
}

impl TlsConfig {
    /// Load `cert` (a PEM chain, leaf first) and `key` (PEM: PKCS#8,
    /// PKCS#1 or SEC1) and build the configurations.
    pub fn load(cert: &Path, key: &Path) -> Result<TlsConfig, TlsError> {
        let provider = provider();
        let tickets: Arc<dyn ProducesTickets> = Arc::new(OwnedTickets(
            rustls::crypto::ring::Ticketer::new().map_err(|e| TlsError(format!("cannot make a ticket key: {e}")))?,
        ));
        let sessions: Arc<dyn StoresServerSessions> =
            Arc::new(OwnedSessions(ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES)));
        TlsConfig::build(provider, cert, key, tickets, sessions)
    }

    /// A configuration from PEM text (the fuzz targets, which have no
    /// files); a fresh ticket key and cache.
    pub fn from_pem(cert_pem: &[u8], key_pem: &[u8]) -> Result<TlsConfig, TlsError> {
        let provider = provider();
        let tickets: Arc<dyn ProducesTickets> = Arc::new(OwnedTickets(
            rustls::crypto::ring::Ticketer::new().map_err(|e| TlsError(format!("cannot make a ticket key: {e}")))?,
        ));
        let sessions: Arc<dyn StoresServerSessions> =
            Arc::new(OwnedSessions(ServerSessionMemoryCache::new(SESSION_CACHE_ENTRIES)));
        let (chain, private) = parse_pem(cert_pem, key_pem).map_err(|(which, e)| TlsError(format!("{which}: {e}")))?;
        TlsConfig::configure(provider, chain, private, tickets, sessions)
    }

    /// The same ticket key and session cache with a new certificate and
    /// key (SIGHUP).
    pub fn reload(&self, cert: &Path, key: &Path) -> Result<TlsConfig, TlsError> {
        let provider = self.control.crypto_provider().clone();
        TlsConfig::build(provider, cert, key, self.tickets.clone(), self.sessions.clone())
    }

    fn build(
        provider: Arc<CryptoProvider>,
        cert: &Path,
        key: &Path,
        tickets: Arc<dyn ProducesTickets>,
        sessions: Arc<dyn StoresServerSessions>,
    ) -> Result<TlsConfig, TlsError> {
        let cert_pem = std::fs::read(cert).map_err(|e| TlsError(format!("--tls-cert {}: {e}", cert.display())))?;
        let key_pem = std::fs::read(key).map_err(|e| TlsError(format!("--tls-key {}: {e}", key.display())))?;
        let (chain, private) = parse_pem(&cert_pem, &key_pem)
            .map_err(|(which, e)| TlsError(format!("{which} {}: {e}", if which == "--tls-cert" { cert } else { key }.display())))?;
        TlsConfig::configure(provider, chain, private, tickets, sessions)
    }

    fn configure(
        provider: Arc<CryptoProvider>,
        chain: Vec<CertificateDer<'static>>,
        private: PrivateKeyDer<'static>,
        tickets: Arc<dyn ProducesTickets>,
        sessions: Arc<dyn StoresServerSessions>,
    ) -> Result<TlsConfig, TlsError> {
        let mut control = ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13, &rustls::version::TLS12])
            .map_err(|e| TlsError(format!("TLS: {e}")))?
            .with_no_client_auth()
            .with_single_cert(chain, private)
            .map_err(|e| TlsError(format!("--tls-cert/--tls-key: {e}")))?;
        control.alpn_protocols = vec![ALPN_FTP.to_vec()];
        control.ticketer = tickets.clone();
        control.session_storage = sessions.clone();
        control.send_tls13_tickets = CONTROL_TLS13_TICKETS;
        control.max_early_data_size = 0;
        // The server's CPU is what a transfer costs on a small device:
        // AES-GCM first, whatever the client prefers (ring's order; on
        // this x86_64 with AES instructions ChaCha20 costs twice the CPU
        // per GiB: bench/results/tls-provider.md).
        control.ignore_client_order = true;
        let mut data = control.clone();
        data.send_tls13_tickets = 0;
        data.ticketer = Arc::new(ResumeOnlyTickets(tickets.clone()));
        data.session_storage = Arc::new(ResumeOnlySessions(sessions.clone()));
        Ok(TlsConfig { control: Arc::new(control), data: Arc::new(data), tickets, sessions })
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! A throw-away CA-less self-signed certificate for unit tests, made
    //! with the `openssl` command once per test process.
    use std::path::PathBuf;
    use std::sync::OnceLock;

    /// (cert.pem, key.pem) for "localhost" / 127.0.0.1.
    pub fn cert_files() -> (PathBuf, PathBuf) {
        static FILES: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
        FILES
            .get_or_init(|| {
                let dir = std::env::temp_dir().join(format!("leanftpd-unit-tls-{}", std::process::id()));
                std::fs::create_dir_all(&dir).unwrap();
                let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
                let ok = std::process::Command::new("openssl")
                    .args(["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2"])
                    .args(["-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
                    .arg("-keyout")
                    .arg(&key)
                    .arg("-out")
                    .arg(&cert)
                    .stderr(std::process::Stdio::null())
                    .status()
                    .expect("openssl (apt-get install openssl) makes the unit tests' certificate");
                assert!(ok.success(), "openssl req failed");
                (cert, key)
            })
            .clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pem_pair_loads_and_a_bad_file_is_a_clear_error() {
        let (cert, key) = test_support::cert_files();
        let c = TlsConfig::load(&cert, &key).unwrap();
        assert_eq!(c.control.alpn_protocols, vec![b"ftp".to_vec()]);
        assert_eq!(c.data.send_tls13_tickets, 0);
        let e = TlsConfig::load(&key, &key).err().unwrap().to_string();
        assert!(e.contains("--tls-cert") && e.contains("no CERTIFICATE"), "{e}");
        let e = TlsConfig::load(&cert, &cert).err().unwrap().to_string();
        assert!(e.contains("--tls-key"), "{e}");
        let e = TlsConfig::load(Path::new("/nonexistent/c.pem"), &key).err().unwrap().to_string();
        assert!(e.contains("/nonexistent/c.pem"), "{e}");
    }

    /// The red team's finding: rustls stores a TLS 1.2 session before a
    /// data connection's resumption check refuses it; data connections
    /// must never store or issue one (they only resume).
    #[test]
    fn data_connections_resume_sessions_but_never_make_one() {
        let (cert, key) = test_support::cert_files();
        let c = TlsConfig::load(&cert, &key).unwrap();
        let (stored, _) = processing(OwnerId(3), || c.data.session_storage.put(b"id".to_vec(), b"session".to_vec()));
        assert!(!stored, "a data connection stored a session");
        assert!(c.data.ticketer.enabled(), "data connections must still accept tickets");
        assert_eq!(c.data.ticketer.encrypt(b"session"), None, "a data connection made a ticket");
        // What a control connection makes, a data connection can open.
        let (ticket, _) = processing(OwnerId(3), || c.control.ticketer.encrypt(b"session").unwrap());
        let (plain, owner) = processing(OwnerId(3), || c.data.ticketer.decrypt(&ticket));
        assert_eq!((plain.as_deref(), owner), (Some(&b"session"[..]), Some(OwnerId(3))));
        let (_, _) = processing(OwnerId(3), || c.control.session_storage.put(b"id".to_vec(), b"session".to_vec()));
        let (plain, owner) = processing(OwnerId(9), || c.data.session_storage.get(b"id"));
        assert_eq!((plain.as_deref(), owner), (Some(&b"session"[..]), Some(OwnerId(3))));
    }

    #[test]
    fn a_session_value_carries_its_owner_through_the_wrappers() {
        let (v, resumed) = processing(OwnerId(42), || tag(b"state".to_vec()));
        assert_eq!(resumed, None);
        let (back, resumed) = processing(OwnerId(7), || untag(v.clone()));
        assert_eq!(back.as_deref(), Some(&b"state"[..]));
        assert_eq!(resumed, Some(OwnerId(42)));
        assert_eq!(untag(vec![1, 2, 3]), None, "a value shorter than an id is not a session");
    }
}
