//! The one table of commands (redis's command table, Twisted's
//! `PUBLIC_COMMANDS`): for every verb its handler, whether it needs a login,
//! whether it takes an argument, whether it needs TLS configured, its FEAT
//! line and its HELP text. The gate, FEAT and HELP all read this table, so
//! they cannot disagree.

use super::command::Verb;
use super::handlers::{self, Handler};
use super::session::Env;

/// Who may use a command.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Access {
    /// Before login too.
    Anyone,
    /// Only after a successful login (`530` before).
    LoggedIn,
}

/// Whether a command takes an argument.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arity {
    /// No argument (an argument is ignored, as clients add stray spaces).
    None,
    /// An argument is required (`501` without).
    Required,
    /// Either.
    Optional,
}

/// Whether a command is offered on this server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Offer {
    /// Always.
    Always,
    /// Only when a certificate is configured (`--tls-cert`): the FTPS
    /// commands of RFC 4217. Without one they are `502` and neither FEAT
    /// nor HELP names them.
    WithTls,
}

/// One row of the table.
pub struct Spec {
    /// The verb.
    pub verb: Verb,
    /// Its handler; `None` means recognised but not implemented (`502`).
    pub handler: Option<Handler>,
    /// Login requirement.
    pub access: Access,
    /// Argument requirement.
    pub arity: Arity,
    /// When the command is offered.
    pub offer: Offer,
    /// The line this command adds to FEAT (RFC 2389), if any.
    pub feat: Option<&'static str>,
    /// HELP text: the syntax.
    pub help: &'static str,
}

impl Spec {
    /// True if the command is implemented and offered on this server.
    pub fn is_offered(&self, env: &Env) -> bool {
        self.handler.is_some() && (self.offer == Offer::Always || env.tls_configured())
    }
}

macro_rules! row {
    ($verb:ident, $h:expr, $access:ident, $arity:ident, $feat:expr, $help:literal) => {
        row!($verb, $h, $access, $arity, $feat, $help, Always)
    };
    ($verb:ident, $h:expr, $access:ident, $arity:ident, $feat:expr, $help:literal, $offer:ident) => {
        Spec {
            verb: Verb::$verb,
            handler: $h,
            access: Access::$access,
            arity: Arity::$arity,
            offer: Offer::$offer,
            feat: $feat,
            help: $help,
        }
    };
}

use handlers::{dataconn as d, fileops as f, info as i, login as l, nav as n, security as sec, transfer as t};

/// Every verb of `Verb`, in the order HELP lists them.
pub static COMMANDS: &[Spec] = &[
    row!(User, Some(l::user), Anyone, Required, None, "USER <sp> username"),
    row!(Pass, Some(l::pass), Anyone, Optional, None, "PASS <sp> password"),
    row!(Acct, None, Anyone, Required, None, "ACCT (not implemented)"),
    row!(Quit, Some(l::quit), Anyone, None, None, "QUIT (end the session)"),
    // REIN stays unimplemented (RFC 959 §5.3.1 lets a server leave it out),
    // so RFC 4217 §12's question (back to the AUTH'd state or close?) does
    // not arise.
    row!(Rein, None, Anyone, None, None, "REIN (not implemented)"),
    row!(Noop, Some(i::noop), Anyone, None, None, "NOOP"),
    row!(Syst, Some(i::syst), Anyone, None, None, "SYST (system type)"),
    row!(Feat, Some(i::feat), Anyone, None, None, "FEAT (list extensions)"),
    row!(Opts, Some(i::opts), Anyone, Required, Some("UTF8"), "OPTS <sp> UTF8 ON|OFF"),
    row!(Help, Some(i::help), Anyone, Optional, None, "HELP [<sp> command]"),
    row!(Stat, Some(i::stat), LoggedIn, Optional, None, "STAT [<sp> pathname]"),
    row!(Site, Some(f::site), LoggedIn, Required, None, "SITE <sp> CHMOD <sp> mode <sp> pathname | HELP"),
    row!(Host, Some(i::host), Anyone, Required, Some("HOST"), "HOST <sp> hostname (RFC 7151)"),
    row!(Lang, None, Anyone, Optional, None, "LANG (not implemented)"),
    row!(Auth, Some(sec::auth), Anyone, Required, Some("AUTH TLS"), "AUTH <sp> TLS (RFC 4217)", WithTls),
    row!(Pbsz, Some(sec::pbsz), Anyone, Required, Some("PBSZ"), "PBSZ <sp> 0", WithTls),
    row!(Prot, Some(sec::prot), Anyone, Required, Some("PROT"), "PROT <sp> C|P", WithTls),
    row!(Ccc, Some(sec::ccc), LoggedIn, None, None, "CCC (clear the control connection)", WithTls),
    row!(Pwd, Some(n::pwd), LoggedIn, None, None, "PWD (print working directory)"),
    row!(Xpwd, Some(n::pwd), LoggedIn, None, None, "XPWD (same as PWD)"),
    row!(Cwd, Some(n::cwd), LoggedIn, Required, None, "CWD <sp> pathname"),
    row!(Xcwd, Some(n::cwd), LoggedIn, Required, None, "XCWD <sp> pathname (same as CWD)"),
    row!(Cdup, Some(n::cdup), LoggedIn, None, None, "CDUP (change to parent directory)"),
    row!(Xcup, Some(n::cdup), LoggedIn, None, None, "XCUP (same as CDUP)"),
    row!(Smnt, None, LoggedIn, Required, None, "SMNT (not implemented)"),
    row!(Mkd, Some(f::mkd), LoggedIn, Required, None, "MKD <sp> pathname"),
    row!(Xmkd, Some(f::mkd), LoggedIn, Required, None, "XMKD <sp> pathname (same as MKD)"),
    row!(Rmd, Some(f::rmd), LoggedIn, Required, None, "RMD <sp> pathname"),
    row!(Xrmd, Some(f::rmd), LoggedIn, Required, None, "XRMD <sp> pathname (same as RMD)"),
    row!(Dele, Some(f::dele), LoggedIn, Required, None, "DELE <sp> pathname"),
    row!(Rnfr, Some(f::rnfr), LoggedIn, Required, None, "RNFR <sp> pathname"),
    row!(Rnto, Some(f::rnto), LoggedIn, Required, None, "RNTO <sp> pathname"),
    row!(Size, Some(f::size), LoggedIn, Required, Some("SIZE"), "SIZE <sp> pathname"),
    row!(Mdtm, Some(f::mdtm), LoggedIn, Required, Some("MDTM"), "MDTM <sp> pathname"),
    row!(Mfmt, Some(f::mfmt), LoggedIn, Required, Some("MFMT"), "MFMT <sp> YYYYMMDDHHMMSS <sp> pathname"),
    row!(Type, Some(t::type_), LoggedIn, Required, None, "TYPE <sp> A|I|L 8"),
    row!(Mode, Some(t::mode), LoggedIn, Required, None, "MODE <sp> S"),
    row!(Stru, Some(t::stru), LoggedIn, Required, None, "STRU <sp> F"),
    row!(Pasv, Some(d::pasv), LoggedIn, None, Some("PASV"), "PASV (passive mode, IPv4)"),
    row!(Epsv, Some(d::epsv), LoggedIn, Optional, Some("EPSV"), "EPSV [<sp> 1|2|ALL]"),
    row!(Port, Some(d::port), LoggedIn, Required, None, "PORT <sp> h1,h2,h3,h4,p1,p2"),
    row!(Eprt, Some(d::eprt), LoggedIn, Required, Some("EPRT"), "EPRT <sp> |proto|addr|port|"),
    row!(List, Some(t::list), LoggedIn, Optional, None, "LIST [<sp> pathname]"),
    row!(Nlst, Some(t::nlst), LoggedIn, Optional, None, "NLST [<sp> pathname]"),
    row!(Mlsd, Some(t::mlsd), LoggedIn, Optional, None, "MLSD [<sp> pathname]"),
    row!(Mlst, Some(f::mlst), LoggedIn, Optional, Some("MLST"), "MLST [<sp> pathname]"),
    row!(Retr, Some(t::retr), LoggedIn, Required, None, "RETR <sp> pathname"),
    row!(Stor, Some(t::stor), LoggedIn, Required, None, "STOR <sp> pathname"),
    row!(Appe, Some(t::appe), LoggedIn, Required, None, "APPE <sp> pathname"),
    row!(Stou, Some(t::stou), LoggedIn, Optional, None, "STOU [<sp> pathname]"),
    row!(Rest, Some(t::rest), LoggedIn, Required, Some("REST STREAM"), "REST <sp> byte-offset"),
    row!(Allo, Some(t::allo), LoggedIn, Optional, None, "ALLO <sp> size"),
    row!(Abor, Some(t::abor), LoggedIn, None, None, "ABOR (abort the transfer)"),
];

/// The row of `verb`.
pub fn spec(verb: Verb) -> &'static Spec {
    // The table is small and in `Verb` order; a linear scan would do, but
    // the index is direct when the order holds (checked by a test).
    let i = verb as usize;
    match COMMANDS.get(i) {
        Some(s) if s.verb == verb => s,
        _ => COMMANDS.iter().find(|s| s.verb == verb).unwrap_or(&COMMANDS[0]),
    }
}

/// The extra FEAT lines that do not belong to one verb.
pub const EXTRA_FEATURES: &[&str] = &["TVFS"];

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_has_every_verb_once_in_verb_order() {
        assert_eq!(COMMANDS.len(), Verb::ALL.len());
        for (i, &v) in Verb::ALL.iter().enumerate() {
            assert_eq!(COMMANDS[i].verb, v, "row {i}");
            assert_eq!(spec(v).verb, v);
        }
    }

    #[test]
    fn only_the_rfc_4217_commands_need_tls() {
        for s in COMMANDS {
            let tls = matches!(s.verb, Verb::Auth | Verb::Pbsz | Verb::Prot | Verb::Ccc);
            assert_eq!(s.offer == Offer::WithTls, tls, "{:?}", s.verb);
        }
    }

    #[test]
    fn feat_lines_belong_to_implemented_commands() {
        for s in COMMANDS {
            if s.feat.is_some() {
                assert!(s.handler.is_some(), "{:?} advertised but not implemented", s.verb);
            }
        }
    }
}
