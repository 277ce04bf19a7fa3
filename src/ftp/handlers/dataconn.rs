//! PASV, EPSV, PORT, EPRT: how the next data connection is made.
//!
//! Rule 6 of the design: data connections belong to their client. PORT and
//! EPRT may only name the control connection's peer address and a port of at
//! least 1024, checked here, before anything connects (the FTP bounce attack,
//! RFC 2577 §3), unless `--insecure-port-any-host`.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use crate::ftp::error::CmdError;
use crate::ftp::reply::{self, ReplyCode};
use crate::ftp::session::{Action, Ctx, DataMode, Session};

/// PASV — RFC 959 §4.1.1: "requests the server-DTP to 'listen' on a data
/// port … and to wait for a connection rather than initiate one". IPv4 only
/// (its reply cannot carry an IPv6 address); refused after `EPSV ALL`.
pub fn pasv(s: &mut Session, _arg: &[u8], _ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    if s.epsv_all {
        return Err(CmdError::BadSequence("EPSV ALL in effect; use EPSV."));
    }
    if s.local.is_ipv6() {
        return Err(CmdError::CantOpenData("PASV is for IPv4; use EPSV."));
    }
    Ok(Action::OpenPassive { extended: false })
}

/// EPSV — RFC 2428 §3: "EPSV<space><net-prt>" or "EPSV<space>ALL": "upon
/// receipt of an EPSV ALL command, the server MUST reject all data
/// connection setup commands other than EPSV". A protocol number other than
/// the control connection's is `522`.
pub fn epsv(s: &mut Session, arg: &[u8], ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    let arg = arg.trim_ascii();
    if arg.eq_ignore_ascii_case(b"ALL") {
        s.epsv_all = true;
        reply::reply(ctx.out, ReplyCode::Ok, "EPSV ALL ok.");
        return Ok(Action::None);
    }
    let ours: &[u8] = if s.local.is_ipv6() { b"2" } else { b"1" };
    match arg {
        b"" => {}
        b"1" | b"2" if arg == ours => {}
        b"1" | b"2" => {
            return Err(CmdError::ProtocolNotSupported(if s.local.is_ipv6() {
                "Network protocol not supported, use (2)"
            } else {
                "Network protocol not supported, use (1)"
            }))
        }
        _ if arg.iter().all(u8::is_ascii_digit) => {
            return Err(CmdError::ProtocolNotSupported("Network protocol not supported, use (1,2)"))
        }
        _ => return Err(CmdError::Syntax("Syntax error in EPSV.")),
    }
    Ok(Action::OpenPassive { extended: true })
}

/// PORT — RFC 959 §4.1.1: "PORT h1,h2,h3,h4,p1,p2" — "a concatenation of a
/// 32-bit internet host address and a 16-bit TCP port address".
pub fn port(s: &mut Session, arg: &[u8], ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    if s.epsv_all {
        return Err(CmdError::BadSequence("EPSV ALL in effect; use EPSV."));
    }
    let addr = parse_port(arg.trim_ascii()).ok_or(CmdError::Syntax("Syntax error in PORT: expected h1,h2,h3,h4,p1,p2."))?;
    set_active(s, addr, ctx)
}

/// EPRT — RFC 2428 §2: "EPRT<space><d><net-prt><d><net-addr><d><tcp-port><d>",
/// protocol 1 (IPv4) or 2 (IPv6); another protocol is `522`.
pub fn eprt(s: &mut Session, arg: &[u8], ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    if s.epsv_all {
        return Err(CmdError::BadSequence("EPSV ALL in effect; use EPSV."));
    }
    let addr = parse_eprt(arg.trim_ascii())?;
    set_active(s, addr, ctx)
}

fn set_active(s: &mut Session, addr: SocketAddr, ctx: &mut Ctx<'_>) -> Result<Action, CmdError> {
    let addr = crate::ftp::session::canonical(addr);
    if !ctx.env.config.insecure_port_any_host {
        if addr.ip() != s.peer.ip() {
            return Err(CmdError::NotForParameter("Illegal PORT: the address must be the client's own."));
        }
        if addr.port() < 1024 {
            return Err(CmdError::NotForParameter("Illegal PORT: ports below 1024 are refused."));
        }
    }
    if addr.port() == 0 {
        return Err(CmdError::Syntax("Illegal PORT: port 0."));
    }
    s.data = DataMode::Active(addr);
    reply::reply(ctx.out, ReplyCode::Ok, "PORT command successful. Consider using PASV.");
    Ok(Action::DropData)
}

fn parse_port(arg: &[u8]) -> Option<SocketAddr> {
    let text = std::str::from_utf8(arg).ok()?;
    let mut n = [0u8; 6];
    let mut parts = text.split(',');
    for slot in n.iter_mut() {
        let p = parts.next()?.trim();
        if p.is_empty() || p.len() > 3 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *slot = p.parse::<u16>().ok().filter(|&v| v <= 255)? as u8;
    }
    if parts.next().is_some() {
        return None;
    }
    let ip = Ipv4Addr::new(n[0], n[1], n[2], n[3]);
    Some(SocketAddr::new(IpAddr::V4(ip), u16::from(n[4]) << 8 | u16::from(n[5])))
}

fn parse_eprt(arg: &[u8]) -> Result<SocketAddr, CmdError> {
    const BAD: CmdError = CmdError::Syntax("Syntax error in EPRT: expected |proto|address|port|.");
    let text = std::str::from_utf8(arg).map_err(|_| BAD)?;
    let d = text.chars().next().ok_or(BAD)?;
    // RFC 2428: the delimiter is an ASCII character in 33..=126.
    if !(('!'..='~').contains(&d)) || d.is_ascii_alphanumeric() || d == '.' || d == ':' {
        return Err(BAD);
    }
    let fields: Vec<&str> = text.split(d).collect();
    if fields.len() != 5 || !fields[0].is_empty() || !fields[4].is_empty() {
        return Err(BAD);
    }
    let port: u16 = fields[3].parse().map_err(|_| BAD)?;
    let ip: IpAddr = match fields[1] {
        "1" => IpAddr::V4(fields[2].parse().map_err(|_| BAD)?),
        "2" => IpAddr::V6(fields[2].parse().map_err(|_| BAD)?),
        _ => return Err(CmdError::ProtocolNotSupported("Network protocol not supported, use (1,2)")),
    };
    Ok(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn port_parses_six_numbers() {
        assert_eq!(parse_port(b"127,0,0,1,4,1"), Some("127.0.0.1:1025".parse().unwrap()));
        assert_eq!(parse_port(b"127,0,0,1,4"), None);
        assert_eq!(parse_port(b"127,0,0,1,4,1,9"), None);
        assert_eq!(parse_port(b"256,0,0,1,4,1"), None);
        assert_eq!(parse_port(b"127,0,0,1,4,-1"), None);
        assert_eq!(parse_port(b"127,0,0,1,4,99999999999"), None);
        assert_eq!(parse_port(b""), None);
    }

    #[test]
    fn eprt_parses_both_protocols_and_refuses_others_with_522() {
        assert_eq!(parse_eprt(b"|1|127.0.0.1|6275|"), Ok("127.0.0.1:6275".parse().unwrap()));
        assert_eq!(parse_eprt(b"|2|::1|6275|"), Ok("[::1]:6275".parse().unwrap()));
        assert_eq!(parse_eprt(b"!1!127.0.0.1!6275!"), Ok("127.0.0.1:6275".parse().unwrap()));
        assert_eq!(parse_eprt(b"|3|127.0.0.1|6275|").unwrap_err().code(), 522);
        assert_eq!(parse_eprt(b"|1|::1|6275|").unwrap_err().code(), 501);
        assert_eq!(parse_eprt(b"|1|127.0.0.1|99999|").unwrap_err().code(), 501);
        assert_eq!(parse_eprt(b"|1|127.0.0.1|").unwrap_err().code(), 501);
    }
}
