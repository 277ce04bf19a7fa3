//! User accounts: the users file, and password verification.
//!
//! This module owns the user records read from the users file an
//! administrator writes with standard tools, one user a line:
//!
//! ```text
//! # name:hash:home:perms[:options]
//! alice:$6$abc$IdWKNKTJEb8LxY7CGg8YBXlvtfZzFw7Mp/r6niK9YB2mdvgY..TKjv1T..8RadRt2qvUHYRLr/TsVArtr91iR1:/srv/ftp/alice:rw
//! bob:$2y$05$abcdefghijklmnopqrstuuOQiyCxlgf/oeuTqixKmWdcYUh4Hjl0a:public:r:download-rate=512K,upload-rate=2M
//! ```
//!
//! * `hash` is a crypt(3) string: SHA-512-crypt (`$6$`, as `openssl passwd -6`
//!   writes it, optionally `$6$rounds=N$`), SHA-256-crypt (`$5$`, `openssl
//!   passwd -5`) or bcrypt (`$2y$`, `$2b$`, `$2a$`, as `htpasswd -nbB user
//!   pass` writes it). Anything else is a load error.
//! * `home` is an absolute directory, or one relative to the server root; it
//!   must exist and be a directory when the file is loaded. The name and hash
//!   fields end at the first two `:`, and perms start after the last `:`, so a
//!   home path may itself contain `:`.
//! * `perms` is `r` (read-only), `rw` (read-write) or `w` (upload-only: a
//!   drop box, see [`crate::vfs::access`]).
//! * `options` (optional fifth field) is a comma-separated list of
//!   `key=value`: `download-rate=RATE`, `upload-rate=RATE` (bytes per
//!   second, `K` = 1024, `M` = 1048576, 0 = unlimited; they replace the
//!   server's `--max-download-rate`/`--max-upload-rate` and anonymous
//!   pair for this user). The last `:`-separated field is the options
//!   field if and only if it contains `=`; perms never do, so every
//!   four-field line reads as before (a home may still contain `:`, and
//!   even `=` before its last `:`). An unknown key, a repeated key or a bad
//!   value is a load error naming the line.
//! * Blank lines and lines starting with `#` are ignored, whitespace around
//!   lines and fields is trimmed, CRLF line ends are accepted.
//!
//! It also owns verification: [`Users::verify`] turns a user name and a
//! [`Password`] into a [`Grant`], or refuses.
//!
//! It never touches sockets or replies, and never decides anything about
//! anonymous logins beyond recognising the names ([`is_anonymous_name`]).
//! [`Users::verify`] is slow by design (it runs the password hash, with
//! whatever cost the administrator chose): it must run on a helper thread,
//! never on the reactor thread.
//!
//! # Invariants
//!
//! * A loaded [`Users`] holds only well-formed hashes of a supported scheme,
//!   unique valid names, and homes that were existing directories at load time.
//! * No hash and no password ever appears in a `Debug` or `Display` output
//!   or in an [`AuthError`]; [`Password`] overwrites its bytes with zeros when
//!   dropped.
//! * [`Users::verify`] does the same kind of work (one hash computation with
//!   the most common scheme and cost in the file) for an unknown name as for a
//!   known one, so response time does not reveal which users exist.
//! * Digests are compared in constant time.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// Longest password (in bytes) that is hashed. SHA-crypt costs grow with the
/// password length, so longer passwords are refused (after spending the usual
/// time) rather than hashed.
pub const MAX_PASSWORD_LEN: usize = 1024;

/// The crypt(3) base-64 alphabet (used by SHA-crypt and bcrypt alike, in a
/// different order for bcrypt).
const CRYPT_ALPHABET: &[u8; 64] =
    b"./0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const BCRYPT_ALPHABET: &[u8; 64] =
    b"./ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";

const SHA512_DIGEST_LEN: usize = 86;
const SHA256_DIGEST_LEN: usize = 43;
const SHA_SALT_MAX: usize = 16;
const BCRYPT_SALT_LEN: usize = 22;
const BCRYPT_DIGEST_LEN: usize = 31;
const BCRYPT_MIN_COST: u32 = 4;
const BCRYPT_MAX_COST: u32 = 31;

const EXPECTED_SCHEMES: &str = "expected $6$, $5$ or $2y$";

// ---------------------------------------------------------------------------
// Password

/// A password as received from PASS: bytes, never printed (Debug/Display print
/// `<redacted>`), overwritten with zeros on drop.
pub struct Password(Vec<u8>);

impl Password {
    /// Copies `bytes` into a new password. The caller's buffer is its own
    /// business.
    pub fn new(bytes: &[u8]) -> Password {
        Password(bytes.to_vec())
    }

    /// The password bytes, exactly as received.
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for Password {
    fn drop(&mut self) {
        crate::sys::zeroize(&mut self.0);
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

// ---------------------------------------------------------------------------
// Perm, Grant

/// What a user may do in their home.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Perm {
    /// `r`: list and download only.
    Read,
    /// `rw`: also upload, delete, rename, make and remove directories.
    ReadWrite,
    /// `w`: upload-only, a drop box: upload new files and make
    /// directories, never read, list names, replace, delete or rename
    /// (see [`crate::vfs::access`]).
    Upload,
}

impl Perm {
    /// True for [`Perm::ReadWrite`].
    pub fn is_writable(self) -> bool {
        matches!(self, Perm::ReadWrite)
    }

    /// What the filesystem lets this user do.
    pub fn rights(self) -> crate::vfs::Rights {
        match self {
            Perm::Read => crate::vfs::Rights::ReadOnly,
            Perm::ReadWrite => crate::vfs::Rights::ReadWrite,
            Perm::Upload => crate::vfs::Rights::UploadOnly,
        }
    }
}

/// What a successful login grants.
#[derive(Clone, Debug)]
pub struct Grant {
    /// The user name, as written in the users file.
    pub name: Box<str>,
    /// The home directory: as written if absolute, else joined onto the root
    /// given at load time. It was an existing directory at load time.
    pub home: PathBuf,
    /// What the user may do.
    pub perm: Perm,
    /// The options of the users file's fifth field.
    pub options: UserOptions,
}

/// The options of a users-file line (its optional fifth field): each
/// `None` when not given, so the server-wide value applies.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UserOptions {
    /// `download-rate=RATE`: bytes per second (0: unlimited).
    pub download_rate: Option<u64>,
    /// `upload-rate=RATE`: bytes per second (0: unlimited).
    pub upload_rate: Option<u64>,
}

/// Split the optional fifth field off what follows `name:hash:` — the last
/// `:`-separated field, if it contains `=` (perms never do). Returns the
/// `home:perms` part and the options text.
fn split_options(rest: &str) -> (&str, Option<&str>) {
    match rest.rsplit_once(':') {
        Some((before, last)) if last.contains('=') => (before, Some(last)),
        _ => (rest, None),
    }
}

/// Parse the fifth field: `key=value` items separated by `,` (blanks
/// around them are trimmed). Each key at most once.
fn parse_options(text: &str) -> Result<UserOptions, String> {
    let mut o = UserOptions::default();
    for item in text.split(',') {
        let item = item.trim();
        let Some((key, value)) = item.split_once('=') else {
            return Err(format!("option {item:?}: expected key=value (download-rate, upload-rate)"));
        };
        let (key, value) = (key.trim(), value.trim());
        let slot = match key {
            "download-rate" => &mut o.download_rate,
            "upload-rate" => &mut o.upload_rate,
            _ => return Err(format!("unknown option {key:?} (expected download-rate or upload-rate)")),
        };
        if slot.is_some() {
            return Err(format!("option {key} given twice"));
        }
        *slot = Some(crate::dtp::throttle::parse_rate(value).map_err(|e| format!("{key}={e}"))?);
    }
    Ok(o)
}

/// A short-lived cache of successful verifications, so that a device that
/// logs in every minute does not pay a slow hash each time — without
/// weakening the hash.
///
/// What it stores: for each successful login, a 128-bit keyed digest of
/// (user name, password) under two per-process random SipHash keys, with
/// the grant and an expiry. No password and no unkeyed hash of one is kept,
/// so a memory dump does not give an offline guessing oracle beyond the
/// process's own keys, and the keys die with the process.
///
/// What it costs: a changed password in the users file is honoured at the
/// next reload (SIGHUP clears the cache) or after the time to live; a failed
/// login is never cached, so guessing still pays the full hash.
pub struct LoginCache {
    k1: std::collections::hash_map::RandomState,
    k2: std::collections::hash_map::RandomState,
    entries: HashMap<(u64, u64), (Grant, std::time::Instant)>,
    ttl: std::time::Duration,
    capacity: usize,
}

/// A keyed digest of a (user, password) pair; see [`LoginCache`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct LoginDigest((u64, u64));

impl LoginCache {
    /// A cache keeping entries for `ttl` (zero disables it), at most `capacity`.
    pub fn new(ttl: std::time::Duration, capacity: usize) -> LoginCache {
        LoginCache {
            k1: Default::default(),
            k2: Default::default(),
            entries: HashMap::new(),
            ttl,
            capacity,
        }
    }

    /// The keyed digest of a login attempt.
    pub fn digest(&self, user: &[u8], password: &Password) -> LoginDigest {
        use std::hash::{BuildHasher, Hasher};
        let h = |k: &std::collections::hash_map::RandomState| {
            let mut h = k.build_hasher();
            // Length prefixes keep ("ab","c") and ("a","bc") apart.
            h.write_usize(user.len());
            h.write(user);
            h.write_usize(password.as_bytes().len());
            h.write(password.as_bytes());
            h.finish()
        };
        LoginDigest((h(&self.k1), h(&self.k2)))
    }

    /// The grant of a cached successful login that has not expired.
    pub fn get(&mut self, d: LoginDigest, now: std::time::Instant) -> Option<Grant> {
        match self.entries.get(&d.0) {
            Some((g, until)) if now < *until => Some(g.clone()),
            Some(_) => {
                self.entries.remove(&d.0);
                None
            }
            None => None,
        }
    }

    /// Remember a successful login.
    pub fn insert(&mut self, d: LoginDigest, grant: Grant, now: std::time::Instant) {
        if self.ttl.is_zero() {
            return;
        }
        if self.entries.len() >= self.capacity {
            self.entries.retain(|_, (_, until)| now < *until);
            if self.entries.len() >= self.capacity {
                return;
            }
        }
        self.entries.insert(d.0, (grant, now + self.ttl));
    }

    /// Forget everything (the users file was reloaded).
    pub fn clear(&mut self) {
        self.entries.clear();
    }
}

// ---------------------------------------------------------------------------
// AuthError

/// A load error: file path, line number (1-based, 0 if not about a line),
/// reason. Displays as e.g.
/// `users.txt:3: unknown hash scheme (expected $6$, $5$ or $2y$)`.
/// Never includes a hash or password.
#[derive(Debug, Clone)]
pub struct AuthError {
    path: Option<PathBuf>,
    line: usize,
    reason: String,
}

impl AuthError {
    fn at_line(line: usize, reason: impl Into<String>) -> AuthError {
        AuthError {
            path: None,
            line,
            reason: reason.into(),
        }
    }

    fn with_path(mut self, path: &Path) -> AuthError {
        self.path = Some(path.to_path_buf());
        self
    }

    /// The users file, if the error came from [`Users::load`].
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The 1-based line number, or 0 if the error is not about one line.
    pub fn line(&self) -> usize {
        self.line
    }

    /// What is wrong, without file or line.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

impl fmt::Display for AuthError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.path, self.line) {
            (Some(p), 0) => write!(f, "{}: {}", p.display(), self.reason),
            (Some(p), n) => write!(f, "{}:{}: {}", p.display(), n, self.reason),
            (None, 0) => f.write_str(&self.reason),
            (None, n) => write!(f, "line {}: {}", n, self.reason),
        }
    }
}

impl std::error::Error for AuthError {}

// ---------------------------------------------------------------------------
// Hashes

/// A parsed, validated password hash. Deliberately not `Debug`-derived.
enum Hash {
    /// `$6$[rounds=N$]salt$digest`
    Sha512 {
        rounds: usize,
        salt: Box<[u8]>,
        digest: Box<[u8]>,
    },
    /// `$5$[rounds=N$]salt$digest`
    Sha256 {
        rounds: usize,
        salt: Box<[u8]>,
        digest: Box<[u8]>,
    },
    /// `$2y$NN$` + 22 salt chars + 31 digest chars (also `$2a$`, `$2b$`).
    Bcrypt {
        cost: u32,
        salt: [u8; 16],
        digest: Box<[u8]>,
    },
}

impl Hash {
    /// Parses and validates a crypt(3) string. Errors never quote it.
    fn parse(s: &str) -> Result<Hash, String> {
        if let Some(rest) = s.strip_prefix("$6$") {
            let (rounds, salt, digest) = parse_sha_crypt(rest, SHA512_DIGEST_LEN, "$6$")?;
            Ok(Hash::Sha512 {
                rounds,
                salt,
                digest,
            })
        } else if let Some(rest) = s.strip_prefix("$5$") {
            let (rounds, salt, digest) = parse_sha_crypt(rest, SHA256_DIGEST_LEN, "$5$")?;
            Ok(Hash::Sha256 {
                rounds,
                salt,
                digest,
            })
        } else if let Some(rest) = ["$2y$", "$2b$", "$2a$"]
            .iter()
            .find_map(|p| s.strip_prefix(p))
        {
            parse_bcrypt(rest)
        } else {
            Err(unknown_scheme_reason(s))
        }
    }

    /// A hash of the same scheme and cost that no password matches in
    /// practice, for spending comparable time on unknown names.
    fn dummy_like(&self) -> Hash {
        match *self {
            Hash::Sha512 { rounds, .. } => Hash::Sha512 {
                rounds,
                salt: b"leanftpd.dummy".to_vec().into(),
                digest: vec![b'.'; SHA512_DIGEST_LEN].into(),
            },
            Hash::Sha256 { rounds, .. } => Hash::Sha256 {
                rounds,
                salt: b"leanftpd.dummy".to_vec().into(),
                digest: vec![b'.'; SHA256_DIGEST_LEN].into(),
            },
            Hash::Bcrypt { cost, .. } => Hash::Bcrypt {
                cost,
                salt: *b"leanftpd.dummy.s",
                digest: vec![b'.'; BCRYPT_DIGEST_LEN].into(),
            },
        }
    }

    /// Scheme and cost, the things that decide how long verification takes.
    fn cost_key(&self) -> (u8, usize) {
        match *self {
            Hash::Sha512 { rounds, .. } => (6, rounds),
            Hash::Sha256 { rounds, .. } => (5, rounds),
            Hash::Bcrypt { cost, .. } => (2, cost as usize),
        }
    }

    /// Human description without salt or digest.
    fn describe(&self) -> String {
        match *self {
            Hash::Sha512 { rounds, .. } => format!("sha512-crypt rounds={}", rounds),
            Hash::Sha256 { rounds, .. } => format!("sha256-crypt rounds={}", rounds),
            Hash::Bcrypt { cost, .. } => format!("bcrypt cost={}", cost),
        }
    }

    /// Slow: runs the hash. Compares digests in constant time.
    fn verify(&self, password: &[u8]) -> bool {
        match self {
            Hash::Sha512 {
                rounds,
                salt,
                digest,
            } => {
                let Ok(params) = sha_crypt::Sha512Params::new(*rounds) else {
                    return false;
                };
                match sha_crypt::sha512_crypt_b64(password, salt, &params) {
                    Ok(out) => ct_eq(out.as_bytes(), digest),
                    Err(_) => false,
                }
            }
            Hash::Sha256 {
                rounds,
                salt,
                digest,
            } => {
                let Ok(params) = sha_crypt::Sha256Params::new(*rounds) else {
                    return false;
                };
                match sha_crypt::sha256_crypt_b64(password, salt, &params) {
                    Ok(out) => ct_eq(out.as_bytes(), digest),
                    Err(_) => false,
                }
            }
            Hash::Bcrypt { cost, salt, digest } => {
                match bcrypt::hash_with_salt(password, *cost, *salt) {
                    Ok(parts) => {
                        let full = parts.format_for_version(bcrypt::Version::TwoB);
                        let full = full.as_bytes();
                        full.len() >= BCRYPT_DIGEST_LEN
                            && ct_eq(&full[full.len() - BCRYPT_DIGEST_LEN..], digest)
                    }
                    Err(_) => false,
                }
            }
        }
    }
}

/// Rounds, salt and digest of a SHA-crypt hash.
type ShaParts = (usize, Box<[u8]>, Box<[u8]>);

/// Parses what follows `$6$` / `$5$`: `[rounds=N$]salt$digest`, the way
/// glibc's crypt(3) writes it.
fn parse_sha_crypt(rest: &str, digest_len: usize, id: &str) -> Result<ShaParts, String> {
    let (rounds, rest) = match rest.strip_prefix("rounds=") {
        Some(r) => {
            let (n, rest) = r
                .split_once('$')
                .ok_or_else(|| format!("malformed {} hash: rounds=N must be followed by $", id))?;
            if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
                return Err(format!(
                    "malformed {} hash: rounds=N needs a decimal number",
                    id
                ));
            }
            let rounds: usize = n.parse().unwrap_or(usize::MAX);
            if !(sha_crypt::ROUNDS_MIN..=sha_crypt::ROUNDS_MAX).contains(&rounds) {
                return Err(format!(
                    "malformed {} hash: rounds must be {}..={}",
                    id,
                    sha_crypt::ROUNDS_MIN,
                    sha_crypt::ROUNDS_MAX
                ));
            }
            (rounds, rest)
        }
        None => (sha_crypt::ROUNDS_DEFAULT, rest),
    };
    let (salt, digest) = rest
        .split_once('$')
        .ok_or_else(|| format!("malformed {} hash: expected {}salt$digest", id, id))?;
    if salt.len() > SHA_SALT_MAX {
        return Err(format!(
            "malformed {} hash: salt longer than {} characters",
            id, SHA_SALT_MAX
        ));
    }
    if digest.len() != digest_len || !digest.bytes().all(|b| CRYPT_ALPHABET.contains(&b)) {
        return Err(format!(
            "malformed {} hash: digest must be {} characters of [./0-9A-Za-z]",
            id, digest_len
        ));
    }
    Ok((rounds, salt.as_bytes().into(), digest.as_bytes().into()))
}

/// Parses what follows `$2y$`: `NN$` + 22 salt + 31 digest characters.
fn parse_bcrypt(rest: &str) -> Result<Hash, String> {
    let bad =
        || "malformed bcrypt hash: expected $2y$NN$ and 53 characters of [./A-Za-z0-9]".to_string();
    let b = rest.as_bytes();
    if b.len() != 3 + BCRYPT_SALT_LEN + BCRYPT_DIGEST_LEN
        || !b[0].is_ascii_digit()
        || !b[1].is_ascii_digit()
        || b[2] != b'$'
    {
        return Err(bad());
    }
    let cost = u32::from(b[0] - b'0') * 10 + u32::from(b[1] - b'0');
    if !(BCRYPT_MIN_COST..=BCRYPT_MAX_COST).contains(&cost) {
        return Err(format!(
            "malformed bcrypt hash: cost must be {:02}..={}",
            BCRYPT_MIN_COST, BCRYPT_MAX_COST
        ));
    }
    let salt_chars = &b[3..3 + BCRYPT_SALT_LEN];
    let digest = &b[3 + BCRYPT_SALT_LEN..];
    if !digest.iter().all(|c| BCRYPT_ALPHABET.contains(c)) {
        return Err(bad());
    }
    let salt = bcrypt_decode_salt(salt_chars).ok_or_else(bad)?;
    Ok(Hash::Bcrypt {
        cost,
        salt,
        digest: digest.into(),
    })
}

/// Decodes bcrypt's 22-character salt into 16 bytes. Like crypt_blowfish,
/// ignores the 4 spare bits of the last character.
fn bcrypt_decode_salt(chars: &[u8]) -> Option<[u8; 16]> {
    let mut out = [0u8; 16];
    let mut acc: u32 = 0;
    let mut bits = 0;
    let mut n = 0;
    for &c in chars {
        let v = BCRYPT_ALPHABET.iter().position(|&a| a == c)? as u32;
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            if n < out.len() {
                out[n] = (acc >> bits) as u8;
                n += 1;
            }
            acc &= (1 << bits) - 1;
        }
    }
    (n == out.len()).then_some(out)
}

/// Why an unrecognised hash field was refused, with a hint for common
/// mistakes. Never quotes the field.
fn unknown_scheme_reason(s: &str) -> String {
    let hint = if s.starts_with("$apr1$") || s.starts_with("$1$") {
        "; MD5-crypt is not supported, use `openssl passwd -6` or `htpasswd -nB`"
    } else if s.starts_with("$2x$") {
        "; the buggy $2x$ bcrypt variant is not supported"
    } else if s.starts_with("{SHA}") {
        "; unsalted {SHA} is not supported, use `htpasswd -nB`"
    } else if !s.starts_with('$') {
        "; the hash field must be a crypt hash, not a password"
    } else {
        ""
    };
    format!("unknown hash scheme ({}){}", EXPECTED_SCHEMES, hint)
}

/// Constant-time equality for byte strings of public length.
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut diff = 0u8;
    for (x, y) in a.iter().zip(b) {
        diff |= x ^ y;
    }
    std::hint::black_box(diff) == 0
}

// ---------------------------------------------------------------------------
// Users

struct User {
    name: Box<str>,
    hash: Hash,
    home: PathBuf,
    perm: Perm,
    options: UserOptions,
}

/// The loaded user records. `Debug` shows names, homes, perms and hash
/// schemes, never hashes.
pub struct Users {
    users: Vec<User>,
    by_name: HashMap<Box<[u8]>, usize>,
    /// Verified against for unknown names, to spend comparable time.
    dummy: Hash,
}

impl fmt::Debug for Users {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        struct Entry<'a>(&'a User);
        impl fmt::Debug for Entry<'_> {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.debug_struct("User")
                    .field("name", &self.0.name)
                    .field("home", &self.0.home)
                    .field("perm", &self.0.perm)
                    .field("options", &self.0.options)
                    .field("hash", &format_args!("<{}>", self.0.hash.describe()))
                    .finish()
            }
        }
        f.debug_struct("Users")
            .field("users", &self.users.iter().map(Entry).collect::<Vec<_>>())
            .finish()
    }
}

impl Users {
    /// No users: every [`verify`](Users::verify) refuses (after spending the
    /// time of a default SHA-512-crypt hash).
    pub fn empty() -> Users {
        Users {
            users: Vec::new(),
            by_name: HashMap::new(),
            dummy: Hash::Sha512 {
                rounds: sha_crypt::ROUNDS_DEFAULT,
                salt: Box::new([]),
                digest: Box::new([]),
            }
            .dummy_like(),
        }
    }

    /// Every user's home and permission, in file order (the sandbox's
    /// served trees, `crate::sandbox`).
    pub fn homes(&self) -> impl Iterator<Item = (&Path, Perm)> + '_ {
        self.users.iter().map(|u| (u.home.as_path(), u.perm))
    }

    /// [`Users::homes`] with each user's name.
    pub fn named_homes(&self) -> impl Iterator<Item = (&str, &Path, Perm)> + '_ {
        self.users.iter().map(|u| (&*u.name, u.home.as_path(), u.perm))
    }

    /// Reads and parses the users file at `path`; relative homes are resolved
    /// against `root`.
    ///
    /// # Errors
    ///
    /// The file cannot be read or is not UTF-8, or any line is invalid (see
    /// [`Users::parse`]). The error names the file and, if about a line, its
    /// number.
    pub fn load(path: &Path, root: &Path) -> Result<Users, AuthError> {
        let bytes = std::fs::read(path).map_err(|e| {
            AuthError::at_line(0, format!("cannot read users file: {}", e)).with_path(path)
        })?;
        let text = String::from_utf8(bytes).map_err(|e| {
            let upto = &e.as_bytes()[..e.utf8_error().valid_up_to()];
            let line = upto.iter().filter(|&&b| b == b'\n').count() + 1;
            AuthError::at_line(line, "not valid UTF-8").with_path(path)
        })?;
        warn_if_world_readable(path);
        let users = Users::parse(&text, root).map_err(|e| e.with_path(path))?;
        log::debug!("loaded {} user(s) from {}", users.len(), path.display());
        Ok(users)
    }

    /// Parses users-file text; relative homes are resolved against `root`.
    /// Homes are checked on the file system.
    ///
    /// # Errors
    ///
    /// The first invalid line: wrong number of fields, bad name, duplicate
    /// name, unknown or malformed hash, bad perms, or a home that is not an
    /// existing directory. The error names the line but no file.
    pub fn parse(text: &str, root: &Path) -> Result<Users, AuthError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut users = Vec::new();
        let mut by_name: HashMap<Box<[u8]>, usize> = HashMap::new();
        let mut first_line: Vec<usize> = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let lineno = i + 1;
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let err = |reason: String| AuthError::at_line(lineno, reason);
            let (name, rest) = line.split_once(':').ok_or_else(|| err(fields_reason()))?;
            let (hash, rest) = rest.split_once(':').ok_or_else(|| err(fields_reason()))?;
            let (rest, options) = split_options(rest);
            let options = options.map(parse_options).transpose().map_err(err)?.unwrap_or_default();
            let (home, perms) = rest.rsplit_once(':').ok_or_else(|| err(fields_reason()))?;
            let (name, hash, home, perms) = (name.trim(), hash.trim(), home.trim(), perms.trim());

            if !valid_name(name) {
                return Err(err(
                    "user name must be non-empty printable ASCII without spaces or ':'".into(),
                ));
            }
            if let Some(&idx) = by_name.get(name.as_bytes()) {
                return Err(err(format!(
                    "duplicate user {:?} (first defined on line {})",
                    name, first_line[idx]
                )));
            }
            let hash = Hash::parse(hash).map_err(err)?;
            let perm = match perms {
                "r" => Perm::Read,
                "rw" => Perm::ReadWrite,
                "w" => Perm::Upload,
                _ => return Err(err("bad permissions (expected r, rw or w)".into())),
            };
            let home = resolve_home(home, root).map_err(err)?;

            by_name.insert(name.as_bytes().into(), users.len());
            first_line.push(lineno);
            users.push(User {
                name: name.into(),
                hash,
                home,
                perm,
                options,
            });
        }
        let dummy = most_common_cost(&users)
            .map(Hash::dummy_like)
            .unwrap_or_else(|| Users::empty().dummy);
        Ok(Users {
            users,
            by_name,
            dummy,
        })
    }

    /// Number of users.
    pub fn len(&self) -> usize {
        self.users.len()
    }

    /// True if there are no users.
    pub fn is_empty(&self) -> bool {
        self.users.is_empty()
    }

    /// Slow (runs on a helper thread, never the reactor). Returns Some(grant)
    /// if the name exists and the password matches.
    /// For an unknown name it still spends comparable time (verifies against a
    /// fixed dummy hash) so response time does not reveal which users exist.
    ///
    /// Names match exactly (case-sensitive). Anonymous names get no special
    /// treatment here; see [`is_anonymous_name`]. Passwords longer than
    /// [`MAX_PASSWORD_LEN`] bytes are refused.
    pub fn verify(&self, name: &[u8], password: &Password) -> Option<Grant> {
        let pw = password.as_bytes();
        if pw.len() > MAX_PASSWORD_LEN {
            self.dummy.verify(&pw[..MAX_PASSWORD_LEN]);
            return None;
        }
        match self.by_name.get(name) {
            Some(&idx) => {
                let user = &self.users[idx];
                if user.hash.verify(pw) {
                    Some(Grant {
                        name: user.name.clone(),
                        home: user.home.clone(),
                        perm: user.perm,
                        options: user.options,
                    })
                } else {
                    None
                }
            }
            None => {
                // Result ignored: an unknown name never logs in.
                std::hint::black_box(self.dummy.verify(pw));
                None
            }
        }
    }
}

fn fields_reason() -> String {
    "expected name:hash:home:perms".to_string()
}

/// Non-empty printable ASCII, no space, no ':'.
fn valid_name(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| b.is_ascii_graphic() && b != b':')
}

fn resolve_home(home: &str, root: &Path) -> Result<PathBuf, String> {
    if home.is_empty() {
        return Err("empty home directory (use . for the root directory)".into());
    }
    let given = Path::new(home);
    let path = if given.is_absolute() {
        given.to_path_buf()
    } else {
        root.join(given)
    };
    match std::fs::metadata(&path) {
        Ok(m) if m.is_dir() => Ok(path),
        Ok(_) => Err(format!("home {} is not a directory", path.display())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            Err(format!("home directory {} does not exist", path.display()))
        }
        Err(e) => Err(format!(
            "cannot access home directory {}: {}",
            path.display(),
            e
        )),
    }
}

/// The hash whose scheme and cost occur most often (first seen on ties).
fn most_common_cost(users: &[User]) -> Option<&Hash> {
    let mut counts: Vec<((u8, usize), usize, &Hash)> = Vec::new();
    for u in users {
        let key = u.hash.cost_key();
        match counts.iter_mut().find(|(k, _, _)| *k == key) {
            Some(entry) => entry.1 += 1,
            None => counts.push((key, 1, &u.hash)),
        }
    }
    let mut best: Option<(usize, &Hash)> = None;
    for (_, n, h) in counts {
        match best {
            Some((bn, _)) if n <= bn => {}
            _ => best = Some((n, h)),
        }
    }
    best.map(|(_, h)| h)
}

fn warn_if_world_readable(path: &Path) {
    use std::os::unix::fs::PermissionsExt;
    if let Ok(m) = std::fs::metadata(path) {
        if m.permissions().mode() & 0o004 != 0 {
            log::warn!(
                "users file {} is readable by every local user; consider chmod 600",
                path.display()
            );
        }
    }
}

/// "anonymous" or "ftp", ASCII case-insensitive (RFC 1635).
pub fn is_anonymous_name(name: &[u8]) -> bool {
    name.eq_ignore_ascii_case(b"anonymous") || name.eq_ignore_ascii_case(b"ftp")
}

// ---------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// From `openssl passwd -6 -salt abc secret` (OpenSSL 3.0); glibc
    /// crypt(3) gives the same for salt `$6$rounds=5000$abc$`.
    const SHA512_SECRET: &str = "$6$abc$IdWKNKTJEb8LxY7CGg8YBXlvtfZzFw7Mp/r6niK9YB2mdvgY..TKjv1T..8RadRt2qvUHYRLr/TsVArtr91iR1";
    /// Test vector from Drepper's SHA-crypt specification
    /// (https://www.akkadia.org/drepper/SHA-crypt.txt), password
    /// "This is just a test"; the 17-character salt is cut to 16.
    const SHA512_SPEC: &str = "$6$rounds=5000$toolongsaltstrin$lQ8jolhgVRVhY4b5pZKaysCLi0QBxGoNeKQzQ3glMhwllF7oGDZxUhx1yxdYcz/e1JSbq3y6JMxxl8audkUEm0";
    /// Same specification, SHA-256 variant, same password.
    const SHA256_SPEC: &str =
        "$5$rounds=5000$toolongsaltstrin$Un/5jzAHMgOGZ5.mWJpuVolil07guHPvOW8mGRcvxa5";
    /// From `openssl passwd -5 -salt abc secret`.
    const SHA256_SECRET: &str = "$5$abc$qsg6EHbUzHQzF1POlD7zUwBINSELQxypPaeDcZe6vH0";
    /// Password "secret", from libxcrypt's crypt(3) (the crypt_blowfish code
    /// htpasswd also uses): `perl -e 'print crypt("secret",
    /// q{$2y$05$abcdefghijklmnopqrstuu})'`.
    const BCRYPT_2Y_SECRET: &str = "$2y$05$abcdefghijklmnopqrstuuOQiyCxlgf/oeuTqixKmWdcYUh4Hjl0a";

    static COUNTER: AtomicUsize = AtomicUsize::new(0);

    /// A fresh temporary directory, removed on drop.
    struct TempDir(PathBuf);
    impl TempDir {
        fn new() -> TempDir {
            let n = COUNTER.fetch_add(1, Ordering::SeqCst);
            let p = std::env::temp_dir().join(format!(
                "leanftpd-auth-test-{}-{}-{}",
                std::process::id(),
                n,
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_nanos())
                    .unwrap_or(0)
            ));
            std::fs::create_dir_all(&p).unwrap();
            TempDir(p)
        }
        fn mkdir(&self, rel: &str) -> PathBuf {
            let p = self.0.join(rel);
            std::fs::create_dir_all(&p).unwrap();
            p
        }
    }
    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    fn pw(s: &str) -> Password {
        Password::new(s.as_bytes())
    }

    fn one_user(hash: &str) -> (TempDir, Users) {
        let t = TempDir::new();
        t.mkdir("home");
        let users = Users::parse(&format!("u:{}:home:rw\n", hash), &t.0).unwrap();
        (t, users)
    }

    fn parse_err(text: &str) -> AuthError {
        let t = TempDir::new();
        t.mkdir("home");
        Users::parse(text, &t.0).unwrap_err()
    }

    fn openssl_sha512(salt: &str, password: &str) -> Option<String> {
        let out = std::process::Command::new("openssl")
            .args(["passwd", "-6", "-salt", salt, password])
            .output()
            .ok()?;
        if !out.status.success() {
            return None;
        }
        Some(String::from_utf8(out.stdout).ok()?.trim().to_string())
    }

    #[test]
    fn openssl_sha512_hash_is_accepted() {
        let hash = openssl_sha512("abc", "secret").unwrap_or_else(|| {
            eprintln!("openssl not runnable; using the recorded vector");
            SHA512_SECRET.to_string()
        });
        assert_eq!(hash, SHA512_SECRET);
        let t = TempDir::new();
        let home = t.mkdir("alice");
        let users = Users::parse(&format!("alice:{}:{}:rw\n", hash, home.display()), &t.0).unwrap();
        assert_eq!(users.len(), 1);
        let g = users.verify(b"alice", &pw("secret")).expect("login");
        assert_eq!(&*g.name, "alice");
        assert_eq!(g.home, home);
        assert_eq!(g.perm, Perm::ReadWrite);
        assert!(g.perm.is_writable());
    }

    #[test]
    fn sha512_with_explicit_rounds_is_accepted() {
        let (_t, users) = one_user(SHA512_SPEC);
        assert!(users.verify(b"u", &pw("This is just a test")).is_some());
        assert!(users.verify(b"u", &pw("This is just a tesT")).is_none());
        // rounds=5000 written out is the same hash as the default.
        let explicit = SHA512_SECRET.replacen("$6$", "$6$rounds=5000$", 1);
        let (_t, users) = one_user(&explicit);
        assert!(users.verify(b"u", &pw("secret")).is_some());
    }

    #[test]
    fn sha256_crypt_is_accepted() {
        let (_t, users) = one_user(SHA256_SPEC);
        assert!(users.verify(b"u", &pw("This is just a test")).is_some());
        let (_t, users) = one_user(SHA256_SECRET);
        assert!(users.verify(b"u", &pw("secret")).is_some());
        assert!(users.verify(b"u", &pw("Secret")).is_none());
    }

    #[test]
    fn bcrypt_hash_generated_now_is_accepted_in_all_prefixes() {
        let parts = bcrypt::hash_with_result("hunter2", 4).unwrap();
        for v in [
            bcrypt::Version::TwoY,
            bcrypt::Version::TwoB,
            bcrypt::Version::TwoA,
        ] {
            let (_t, users) = one_user(&parts.format_for_version(v));
            assert!(users.verify(b"u", &pw("hunter2")).is_some());
            assert!(users.verify(b"u", &pw("hunter3")).is_none());
        }
    }

    #[test]
    fn recorded_2y_bcrypt_hash_is_accepted() {
        let (_t, users) = one_user(BCRYPT_2Y_SECRET);
        assert!(users.verify(b"u", &pw("secret")).is_some());
        assert!(users.verify(b"u", &pw("secreT")).is_none());
    }

    #[test]
    fn wrong_password_is_refused() {
        let (_t, users) = one_user(SHA512_SECRET);
        assert!(users.verify(b"u", &pw("Secret")).is_none());
        assert!(users.verify(b"u", &pw("")).is_none());
        assert!(users.verify(b"u", &Password::new(b"secret\0")).is_none());
        assert!(users.verify(b"u", &Password::new(&[0xff, 0xfe])).is_none());
    }

    #[test]
    fn unknown_user_is_refused() {
        let (_t, users) = one_user(SHA512_SECRET);
        assert!(users.verify(b"nobody", &pw("secret")).is_none());
        assert!(
            users.verify(b"U", &pw("secret")).is_none(),
            "names are case-sensitive"
        );
        assert!(users.verify(b"", &pw("secret")).is_none());
        assert!(Users::empty().verify(b"u", &pw("secret")).is_none());
        assert!(Users::empty().is_empty());
    }

    #[test]
    fn unknown_user_costs_comparable_time() {
        // bcrypt cost 8 makes the hash dominate everything else.
        let hash = bcrypt::hash_with_result("pw", 8)
            .unwrap()
            .format_for_version(bcrypt::Version::TwoY);
        let (_t, users) = one_user(&hash);
        let time = |name: &[u8]| {
            let start = std::time::Instant::now();
            users.verify(name, &pw("wrong"));
            start.elapsed()
        };
        // Interleaved, best of five: robust against other tests' load.
        let (mut known, mut unknown) = (std::time::Duration::MAX, std::time::Duration::MAX);
        for _ in 0..5 {
            known = known.min(time(b"u"));
            unknown = unknown.min(time(b"nobody"));
        }
        let ratio = unknown.as_secs_f64() / known.as_secs_f64();
        assert!(
            (0.5..2.0).contains(&ratio),
            "known {:?}, unknown {:?}",
            known,
            unknown
        );
    }

    #[test]
    fn too_long_password_is_refused() {
        let long = "x".repeat(MAX_PASSWORD_LEN + 1);
        let hash = bcrypt::hash_with_result(&long, 4)
            .unwrap()
            .format_for_version(bcrypt::Version::TwoY);
        let (_t, users) = one_user(&hash);
        assert!(users.verify(b"u", &pw(&long)).is_none());
    }

    #[test]
    fn relative_home_is_resolved_against_root() {
        let t = TempDir::new();
        t.mkdir("pub/files");
        let text = format!(
            "bob:{}:pub/files:r\nroot:{}:.:r\n",
            BCRYPT_2Y_SECRET, BCRYPT_2Y_SECRET
        );
        let users = Users::parse(&text, &t.0).unwrap();
        let g = users.verify(b"bob", &pw("secret")).unwrap();
        assert_eq!(g.home, t.0.join("pub/files"));
        assert_eq!(g.perm, Perm::Read);
        assert!(!g.perm.is_writable());
        assert_eq!(
            users.verify(b"root", &pw("secret")).unwrap().home,
            t.0.join(".")
        );
    }

    #[test]
    fn home_path_may_contain_colons() {
        let t = TempDir::new();
        t.mkdir("a:b");
        let users = Users::parse(&format!("u:{}:a:b:rw", SHA256_SECRET), &t.0).unwrap();
        assert_eq!(
            users.verify(b"u", &pw("secret")).unwrap().home,
            t.0.join("a:b")
        );
    }

    #[test]
    fn a_fifth_field_of_options_sets_the_users_rates() {
        let t = TempDir::new();
        t.mkdir("a:b");
        t.mkdir("home");
        let text = format!(
            "plain:{h}:home:rw\nboth:{h}:home:r:download-rate=512K,upload-rate=2M\n\
             one:{h}:a:b:rw: upload-rate = 0 \ncolon:{h}:a:b:r\n",
            h = SHA256_SECRET
        );
        let users = Users::parse(&text, &t.0).unwrap();
        let grant = |n: &str| users.verify(n.as_bytes(), &pw("secret")).unwrap();
        assert_eq!(grant("plain").options, UserOptions::default());
        assert_eq!(grant("plain").perm, Perm::ReadWrite);
        let both = grant("both");
        assert_eq!((both.options.download_rate, both.options.upload_rate), (Some(512 * 1024), Some(2 * 1024 * 1024)));
        assert_eq!((both.home.clone(), both.perm), (t.0.join("home"), Perm::Read));
        // A home with `:`, with and without options.
        let one = grant("one");
        assert_eq!((one.home.clone(), one.perm), (t.0.join("a:b"), Perm::ReadWrite));
        assert_eq!(one.options, UserOptions { download_rate: None, upload_rate: Some(0) });
        let colon = grant("colon");
        assert_eq!((colon.home.clone(), colon.perm, colon.options), (t.0.join("a:b"), Perm::Read, UserOptions::default()));
    }

    #[test]
    fn bad_options_are_errors_naming_the_line() {
        for (options, want) in [
            ("speed=1M", "unknown option \"speed\""),
            ("download-rate=fast", "download-rate=fast: expected bytes per second"),
            ("upload-rate=2G", "upload-rate=2G: expected"),
            ("upload-rate=100", "upload-rate=100: a rate must be"),
            ("download-rate=1M,download-rate=2M", "option download-rate given twice"),
            ("download-rate=1M,", "option \"\": expected key=value"),
            ("download-rate=1M;upload-rate=1M", "download-rate=1M;upload-rate=1M: expected"),
        ] {
            let e = parse_err(&format!("# users\nu:{}:home:rw:{}\n", SHA256_SECRET, options));
            assert_eq!(e.line(), 2, "{options}");
            assert!(e.reason().starts_with(want), "{options}: {e}");
            assert!(!e.to_string().contains(SHA256_SECRET));
        }
        // No `=`: read as perms, as before the fifth field existed.
        let e = parse_err(&format!("u:{}:home:rw:fast", SHA256_SECRET));
        assert_eq!(e.reason(), "bad permissions (expected r, rw or w)");
    }

    #[test]
    fn missing_home_is_an_error_naming_the_line() {
        let e = parse_err(&format!(
            "# users\n\nu:{}:home:rw\nv:{}:nope:r\n",
            SHA256_SECRET, SHA256_SECRET
        ));
        assert_eq!(e.line(), 4);
        assert!(
            e.to_string().starts_with("line 4: home directory "),
            "{}",
            e
        );
        assert!(e.to_string().contains("does not exist"), "{}", e);
    }

    #[test]
    fn home_that_is_a_file_is_an_error() {
        let t = TempDir::new();
        std::fs::write(t.0.join("f"), b"").unwrap();
        let e = Users::parse(&format!("u:{}:f:r", SHA256_SECRET), &t.0).unwrap_err();
        assert_eq!(e.line(), 1);
        assert!(e.reason().contains("not a directory"), "{}", e);
        let e = parse_err(&format!("u:{}::r", SHA256_SECRET));
        assert!(e.reason().contains("empty home"), "{}", e);
    }

    #[test]
    fn bad_perms_are_an_error() {
        for perms in ["W", "RW", "", "rwx", "r w", "wr"] {
            let e = parse_err(&format!("u:{}:home:{}", SHA256_SECRET, perms));
            assert_eq!(e.line(), 1);
            assert_eq!(e.reason(), "bad permissions (expected r, rw or w)");
        }
    }

    #[test]
    fn w_is_the_upload_only_permission() {
        let t = TempDir::new();
        t.mkdir("drop");
        let users = Users::parse(&format!("cam:{}:drop:w", SHA256_SECRET), &t.0).unwrap();
        let g = users.verify(b"cam", &pw("secret")).unwrap();
        assert_eq!(g.perm, Perm::Upload);
        assert!(!g.perm.is_writable(), "w is not rw: no delete, rename, overwrite");
        assert_eq!(g.perm.rights(), crate::vfs::Rights::UploadOnly);
    }

    #[test]
    fn duplicate_user_is_an_error() {
        let e = parse_err(&format!(
            "u:{}:home:r\n#\nu:{}:home:rw\n",
            SHA256_SECRET, SHA512_SECRET
        ));
        assert_eq!(e.line(), 3);
        assert!(e.reason().contains("duplicate user \"u\""), "{}", e);
        assert!(e.reason().contains("line 1"), "{}", e);
    }

    #[test]
    fn comments_blank_lines_crlf_and_whitespace_are_accepted() {
        let t = TempDir::new();
        t.mkdir("home");
        let text = format!(
            "\u{feff}# a comment\r\n\r\n   \r\n  # indented comment\r\n  a:{}:home:rw  \r\n\tb : {} : home : r\r\n",
            SHA256_SECRET, BCRYPT_2Y_SECRET
        );
        let users = Users::parse(&text, &t.0).unwrap();
        assert_eq!(users.len(), 2);
        assert!(users.verify(b"a", &pw("secret")).is_some());
        assert_eq!(users.verify(b"b", &pw("secret")).unwrap().perm, Perm::Read);
        assert_eq!(Users::parse("# nothing\n\n", &t.0).unwrap().len(), 0);
    }

    #[test]
    fn unknown_hash_scheme_is_an_error_naming_the_line() {
        for hash in [
            "$1$abc$0123456789012345678901",
            "$apr1$abc$0123456789012345678901",
            "$2x$05$abcdefghijklmnopqrstuuOQiyCxlgf/oeuTqixKmWdcYUh4Hjl0a",
            "{SHA}5en6G6MezRroT3XKqkdPOmY/BfQ=",
            "plaintextpassword",
            "$y$j9T$abc$def",
        ] {
            let e = parse_err(&format!("\nu:{}:home:r", hash));
            assert_eq!(e.line(), 2);
            assert!(
                e.to_string()
                    .starts_with("line 2: unknown hash scheme (expected $6$, $5$ or $2y$)"),
                "{}",
                e
            );
            assert!(!e.to_string().contains(hash), "{}", e);
        }
    }

    #[test]
    fn malformed_known_hashes_are_errors_without_the_hash() {
        let sha_tail = &SHA512_SECRET[7..];
        for hash in [
            "$6$abc$short".to_string(),
            "$6$abc".to_string(),
            format!("$6$rounds=999${}", &SHA512_SECRET[3..]),
            format!("$6$rounds=x${}", &SHA512_SECRET[3..]),
            format!("$6$seventeenchars!!!${}", sha_tail),
            format!("$6$abc${}!", &sha_tail[..85]),
            "$2y$05$abcdefghijklmnopqrstuuOQiyCxlgf/oeuTqixKmWdcYUh4Hjl0".to_string(),
            "$2y$03$abcdefghijklmnopqrstuuOQiyCxlgf/oeuTqixKmWdcYUh4Hjl0a".to_string(),
            "$2y$5$abcdefghijklmnopqrstuuOQiyCxlgf/oeuTqixKmWdcYUh4Hjl0a".to_string(),
            "$2y$05$abcdefghijklmnopqrstuuOQiyCxlgf/oeuTqixKmWdcYUh4Hjl0!".to_string(),
        ] {
            let e = parse_err(&format!("u:{}:home:r", hash));
            assert_eq!(e.line(), 1, "{}", hash);
            assert!(e.reason().starts_with("malformed"), "{} -> {}", hash, e);
            assert!(!e.to_string().contains(&hash[4..]), "{}", e);
        }
    }

    #[test]
    fn bad_names_and_short_lines_are_errors() {
        for line in [
            format!(":{}:home:r", SHA256_SECRET),
            format!("a b:{}:home:r", SHA256_SECRET),
            format!("j\u{f6}rg:{}:home:r", SHA256_SECRET),
            format!("a\u{7f}:{}:home:r", SHA256_SECRET),
        ] {
            let e = parse_err(&line);
            assert!(e.reason().starts_with("user name must be"), "{}", e);
        }
        let e = parse_err(&format!("u:{}:home", SHA256_SECRET));
        assert_eq!(e.reason(), "expected name:hash:home:perms");
        assert!(!e.to_string().contains(SHA256_SECRET));
        let e = parse_err("just-a-name");
        assert_eq!(e.line(), 1);
    }

    #[test]
    fn load_reads_a_file_and_errors_name_it() {
        let t = TempDir::new();
        t.mkdir("home");
        let file = t.0.join("users.txt");
        std::fs::write(&file, format!("u:{}:home:rw\r\n", SHA512_SECRET)).unwrap();
        let users = Users::load(&file, &t.0).unwrap();
        assert!(users.verify(b"u", &pw("secret")).is_some());

        std::fs::write(
            &file,
            format!("# x\nu:{}:home:rw\nv:$1$x$y:home:r\n", SHA512_SECRET),
        )
        .unwrap();
        let e = Users::load(&file, &t.0).unwrap_err();
        assert_eq!(e.path(), Some(file.as_path()));
        assert_eq!(e.line(), 3);
        assert!(
            e.to_string().starts_with(&format!(
                "{}:3: unknown hash scheme (expected $6$, $5$ or $2y$)",
                file.display()
            )),
            "{}",
            e
        );

        std::fs::write(&file, b"# ok\n\xff\n").unwrap();
        let e = Users::load(&file, &t.0).unwrap_err();
        assert_eq!(e.line(), 2);
        assert!(e.reason().contains("UTF-8"));

        let e = Users::load(&t.0.join("missing.txt"), &t.0).unwrap_err();
        assert_eq!(e.line(), 0);
        assert!(e.to_string().starts_with(&format!(
            "{}: cannot read",
            t.0.join("missing.txt").display()
        )));
    }

    #[test]
    fn debug_output_never_contains_hashes_or_passwords() {
        let t = TempDir::new();
        t.mkdir("home");
        let text = format!(
            "a:{}:home:rw\nb:{}:home:r\nc:{}:home:r\n",
            SHA512_SECRET, BCRYPT_2Y_SECRET, SHA256_SECRET
        );
        let users = Users::parse(&text, &t.0).unwrap();
        let dbg = format!("{:?}", users);
        for h in [SHA512_SECRET, BCRYPT_2Y_SECRET, SHA256_SECRET] {
            let digest = h.rsplit('$').next().unwrap();
            assert!(!dbg.contains(&digest[digest.len() - 20..]), "{}", dbg);
        }
        assert!(!dbg.contains("abc$"), "{}", dbg);
        assert!(!dbg.contains("abcdefghijklmnopqrstuu"), "{}", dbg);
        assert!(dbg.contains("\"a\""), "{}", dbg);

        let p = pw("hunter2");
        assert_eq!(format!("{:?}", p), "<redacted>");
        assert_eq!(format!("{}", p), "<redacted>");
        assert_eq!(format!("{:#?}", p), "<redacted>");
        let g = users.verify(b"a", &pw("secret")).unwrap();
        assert!(!format!("{:?}", g).contains("secret"));
    }

    #[test]
    fn anonymous_names_are_recognised_case_insensitively() {
        for n in [
            &b"anonymous"[..],
            b"ANONYMOUS",
            b"Anonymous",
            b"ftp",
            b"FTP",
            b"fTp",
        ] {
            assert!(is_anonymous_name(n));
        }
        for n in [&b"anon"[..], b"ftp ", b"", b"ftpuser", b"anonymous\0"] {
            assert!(!is_anonymous_name(n));
        }
    }

    #[test]
    fn dummy_follows_the_most_common_cost() {
        let t = TempDir::new();
        t.mkdir("home");
        let b4 = bcrypt::hash_with_result("x", 4)
            .unwrap()
            .format_for_version(bcrypt::Version::TwoY);
        let text = format!(
            "a:{}:home:r\nb:{}:home:r\nc:{}:home:r\n",
            SHA512_SECRET, b4, b4
        );
        let users = Users::parse(&text, &t.0).unwrap();
        assert_eq!(users.dummy.cost_key(), (2, 4));
        assert_eq!(Users::empty().dummy.cost_key(), (6, 5000));
    }

    #[test]
    fn bcrypt_salt_decoding_matches_the_crate() {
        let parts = bcrypt::hash_with_salt("pw", 4, *b"0123456789abcdef").unwrap();
        let s = parts.format_for_version(bcrypt::Version::TwoB);
        assert_eq!(
            bcrypt_decode_salt(&s.as_bytes()[7..29]),
            Some(*b"0123456789abcdef")
        );
    }

    #[test]
    fn users_can_be_shared_with_helper_threads() {
        fn assert_send_sync<T: Send + Sync>() {}
        assert_send_sync::<Users>();
        assert_send_sync::<Password>();
        assert_send_sync::<Grant>();
        assert_send_sync::<AuthError>();
    }

    #[test]
    fn constant_time_compare_is_equality() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(ct_eq(b"", b""));
    }

    #[test]
    fn login_cache_remembers_success_until_it_expires() {
        use std::time::{Duration, Instant};
        let mut c = LoginCache::new(Duration::from_secs(60), 8);
        let t0 = Instant::now();
        let g = Grant { name: "alice".into(), home: PathBuf::from("/tmp"), perm: Perm::Read, options: UserOptions::default() };
        let right = c.digest(b"alice", &Password::new(b"secret"));
        let wrong = c.digest(b"alice", &Password::new(b"secreT"));
        let shifted = c.digest(b"alices", &Password::new(b"ecret"));
        assert_ne!(right, wrong);
        assert_ne!(right, shifted);
        c.insert(right, g, t0);
        assert!(c.get(right, t0 + Duration::from_secs(59)).is_some());
        assert!(c.get(wrong, t0).is_none());
        assert!(c.get(right, t0 + Duration::from_secs(61)).is_none());
    }

    #[test]
    fn login_cache_digests_differ_between_processes_keys() {
        let a = LoginCache::new(std::time::Duration::from_secs(1), 1);
        let b = LoginCache::new(std::time::Duration::from_secs(1), 1);
        let p = Password::new(b"pw");
        assert_ne!(a.digest(b"u", &p), b.digest(b"u", &p));
    }
}
