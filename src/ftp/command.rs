//! The command parser: a cleaned control line → `Command { verb, arg }`.
//!
//! Hand-written and borrowing: the verb is matched from at most four ASCII
//! letters upper-cased into a `[u8; 4]` (RFC 959 §5.3: commands are
//! case-insensitive, three or four letters); the argument is the rest of the
//! line after one space, spaces included, kept as bytes (RFC 2640: UTF-8 is
//! expected, not guaranteed) until the vfs needs a path.
//!
//! It never allocates, never touches a socket and never fails on any input:
//! every outcome is a `Command` or a `ParseError` with a reply.
//!
//! # Invariants
//! - `arg` borrows from the input line; no copy is made.

macro_rules! verbs {
    ($($v:ident = $s:literal,)*) => {
        /// Every verb leanftpd recognises (implemented or answered `502`).
        #[allow(missing_docs)]
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Verb { $($v,)* }

        impl Verb {
            /// Look a verb up by its upper-case name.
            pub fn from_upper(name: &[u8]) -> Option<Verb> {
                match name { $($s => Some(Verb::$v),)* _ => None }
            }
            /// The verb's name as it appears on the wire.
            pub fn name(self) -> &'static str {
                match self { $(Verb::$v => {
                    // SAFETY-free: literals are ASCII.
                    match std::str::from_utf8($s) { Ok(s) => s, Err(_) => "?" }
                })* }
            }
            /// Every verb, in table order.
            pub const ALL: &'static [Verb] = &[$(Verb::$v,)*];
        }
    };
}

verbs! {
    User = b"USER", Pass = b"PASS", Acct = b"ACCT", Quit = b"QUIT", Rein = b"REIN",
    Noop = b"NOOP", Syst = b"SYST", Feat = b"FEAT", Opts = b"OPTS", Help = b"HELP",
    Stat = b"STAT", Site = b"SITE", Host = b"HOST", Lang = b"LANG",
    Auth = b"AUTH", Pbsz = b"PBSZ", Prot = b"PROT", Ccc = b"CCC",
    Pwd = b"PWD", Xpwd = b"XPWD", Cwd = b"CWD", Xcwd = b"XCWD", Cdup = b"CDUP", Xcup = b"XCUP",
    Smnt = b"SMNT",
    Mkd = b"MKD", Xmkd = b"XMKD", Rmd = b"RMD", Xrmd = b"XRMD", Dele = b"DELE",
    Rnfr = b"RNFR", Rnto = b"RNTO", Size = b"SIZE", Mdtm = b"MDTM", Mfmt = b"MFMT",
    Type = b"TYPE", Mode = b"MODE", Stru = b"STRU",
    Pasv = b"PASV", Epsv = b"EPSV", Port = b"PORT", Eprt = b"EPRT",
    List = b"LIST", Nlst = b"NLST", Mlsd = b"MLSD", Mlst = b"MLST",
    Retr = b"RETR", Stor = b"STOR", Appe = b"APPE", Stou = b"STOU", Rest = b"REST",
    Allo = b"ALLO", Abor = b"ABOR",
}

/// A parsed command; `arg` borrows from the line.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Command<'a> {
    /// The verb.
    pub verb: Verb,
    /// Everything after the first space (may be empty, may hold spaces).
    pub arg: &'a [u8],
}

/// Why a line is not a command. Each maps to a reply in `ftp::error`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParseError {
    /// An empty line (RFC 959 gives it no meaning): `500`.
    Empty,
    /// A verb we do not know: `500`.
    Unknown,
    /// An HTTP request line sent to the FTP port (cross-protocol attack,
    /// ALPACA): `500` and close at once.
    Http,
}

/// Parse one cleaned line (no CRLF, no Telnet sequences).
pub fn parse(line: &[u8]) -> Result<Command<'_>, ParseError> {
    let (word, arg) = match line.iter().position(|&b| b == b' ') {
        Some(sp) => (&line[..sp], &line[sp + 1..]),
        None => (line, &line[line.len()..]),
    };
    if word.is_empty() {
        return Err(if line.is_empty() { ParseError::Empty } else { ParseError::Unknown });
    }
    if is_http(word, arg) {
        return Err(ParseError::Http);
    }
    if word.len() > 4 {
        return Err(ParseError::Unknown);
    }
    let mut upper = [0u8; 4];
    for (dst, src) in upper.iter_mut().zip(word) {
        *dst = src.to_ascii_uppercase();
    }
    match Verb::from_upper(&upper[..word.len()]) {
        Some(verb) => Ok(Command { verb, arg }),
        None => Err(ParseError::Unknown),
    }
}

/// `GET / HTTP/1.1`, `POST …`, `CONNECT host:443 HTTP/1.1`, … — a browser or
/// an attacker's page speaking HTTP to us (vsftpd 3.0.4's ALPACA defence).
fn is_http(word: &[u8], arg: &[u8]) -> bool {
    const ALWAYS: [&[u8]; 6] = [b"GET", b"POST", b"PUT", b"HEAD", b"CONNECT", b"DELETE"];
    if ALWAYS.iter().any(|v| word.eq_ignore_ascii_case(v)) {
        return true;
    }
    // OPTS is an FTP verb: only an HTTP-looking argument makes it HTTP.
    word.eq_ignore_ascii_case(b"OPTIONS")
        || (word.eq_ignore_ascii_case(b"OPTS") && contains_http_version(arg))
}

fn contains_http_version(arg: &[u8]) -> bool {
    arg.windows(5).any(|w| w.eq_ignore_ascii_case(b"HTTP/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn verbs_are_case_insensitive() {
        // RFC 959 §5.3: "The command codes themselves are alphabetic characters…
        // upper or lower case alphabetic characters are to be treated identically."
        assert_eq!(parse(b"noop").unwrap().verb, Verb::Noop);
        assert_eq!(parse(b"NoOp").unwrap().verb, Verb::Noop);
        assert_eq!(parse(b"pwd").unwrap().verb, Verb::Pwd);
    }

    #[test]
    fn argument_is_the_rest_of_the_line_with_spaces() {
        let c = parse(b"RETR  my file .txt ").unwrap();
        assert_eq!(c.verb, Verb::Retr);
        assert_eq!(c.arg, b" my file .txt ");
    }

    #[test]
    fn no_argument_is_an_empty_slice() {
        assert_eq!(parse(b"PASV").unwrap().arg, b"");
        assert_eq!(parse(b"PASV ").unwrap().arg, b"");
    }

    #[test]
    fn empty_and_unknown_lines_are_errors() {
        assert_eq!(parse(b""), Err(ParseError::Empty));
        assert_eq!(parse(b" NOOP"), Err(ParseError::Unknown));
        assert_eq!(parse(b"XYZZ"), Err(ParseError::Unknown));
        assert_eq!(parse(b"NOOPS"), Err(ParseError::Unknown));
        assert_eq!(parse(&[0xC3, 0xA9]), Err(ParseError::Unknown));
        assert_eq!(parse(b"\0\0\0"), Err(ParseError::Unknown));
    }

    #[test]
    fn http_request_lines_are_recognised() {
        assert_eq!(parse(b"GET / HTTP/1.1"), Err(ParseError::Http));
        assert_eq!(parse(b"post /x HTTP/1.0"), Err(ParseError::Http));
        assert_eq!(parse(b"CONNECT a:443 HTTP/1.1"), Err(ParseError::Http));
        assert_eq!(parse(b"OPTIONS * HTTP/1.1"), Err(ParseError::Http));
        assert_eq!(parse(b"OPTS * HTTP/1.1"), Err(ParseError::Http));
        assert_eq!(parse(b"OPTS UTF8 ON").unwrap().verb, Verb::Opts);
    }

    #[test]
    fn every_verb_round_trips_through_its_name() {
        for &v in Verb::ALL {
            let c = parse(v.name().as_bytes()).unwrap();
            assert_eq!(c.verb, v);
            let lower = v.name().to_ascii_lowercase();
            assert_eq!(parse(lower.as_bytes()).unwrap().verb, v);
        }
    }
}
