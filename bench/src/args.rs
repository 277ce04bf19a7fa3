//! Hand-written command-line parsing: `SCENARIO --key value --flag ...`.
//!
//! Every option is taken by the scenario that uses it; whatever is left over
//! at `finish()` is an error, so a typo never silently falls back to a default.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

/// Options that take no value.
const FLAGS: &[&str] = &["help", "no-epsv", "mlsd-only", "list-only", "tls"];

/// The parsed command line: the scenario name and its `--key value` options.
#[derive(Debug)]
pub struct Args {
    pub scenario: String,
    opts: BTreeMap<String, String>,
}

impl Args {
    /// Parse `argv` without the program name.
    pub fn parse<I: IntoIterator<Item = String>>(argv: I) -> Result<Args, String> {
        let mut it = argv.into_iter();
        let mut scenario = String::new();
        let mut opts = BTreeMap::new();
        while let Some(a) = it.next() {
            if a == "-h" {
                opts.insert("help".to_string(), String::new());
            } else if let Some(k) = a.strip_prefix("--") {
                let (k, v) = match k.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None if FLAGS.contains(&k) => (k.to_string(), String::new()),
                    None => {
                        let v = it.next().ok_or_else(|| format!("--{k} needs a value"))?;
                        (k.to_string(), v)
                    }
                };
                if opts.insert(k.clone(), v).is_some() {
                    return Err(format!("--{k} given twice"));
                }
            } else if scenario.is_empty() {
                scenario = a;
            } else {
                return Err(format!("unexpected argument {a:?}"));
            }
        }
        Ok(Args { scenario, opts })
    }

    pub fn flag(&mut self, k: &str) -> bool {
        self.opts.remove(k).is_some()
    }

    pub fn str_or(&mut self, k: &str, default: &str) -> String {
        self.opts.remove(k).unwrap_or_else(|| default.to_string())
    }

    pub fn opt_str(&mut self, k: &str) -> Option<String> {
        self.opts.remove(k)
    }

    pub fn num_or<T: FromStr>(&mut self, k: &str, default: T) -> Result<T, String> {
        match self.opts.remove(k) {
            None => Ok(default),
            Some(v) => parse_num(&v).ok_or_else(|| format!("--{k}: cannot parse {v:?}")),
        }
    }

    pub fn addr(&mut self) -> Result<SocketAddr, String> {
        let v = self.str_or("addr", "127.0.0.1:2121");
        v.parse().map_err(|_| format!("--addr: {v:?} is not IP:PORT"))
    }

    /// Error on any option that no one took.
    pub fn finish(self) -> Result<(), String> {
        match self.opts.keys().next() {
            None => Ok(()),
            Some(k) => Err(format!("unknown option --{k} for scenario {:?}", self.scenario)),
        }
    }
}

/// A number with an optional binary suffix: `4096`, `256M`, `1G`, `64k`.
pub fn parse_num<T: FromStr>(s: &str) -> Option<T> {
    let s = s.trim().replace('_', "");
    let (digits, mult) = match s.chars().last()? {
        'k' | 'K' => (&s[..s.len() - 1], 1u64 << 10),
        'm' | 'M' => (&s[..s.len() - 1], 1 << 20),
        'g' | 'G' => (&s[..s.len() - 1], 1 << 30),
        _ => (&s[..], 1),
    };
    if mult == 1 {
        return digits.parse().ok();
    }
    let n: u64 = digits.parse().ok()?;
    (n * mult).to_string().parse().ok()
}

/// `127.0.0.1,127.0.0.2` or a range `127.0.0.1-127.0.0.10` (IPv4 only).
pub fn parse_sources(v: &str) -> Result<Vec<IpAddr>, String> {
    let mut out = Vec::new();
    for part in v.split(',').filter(|p| !p.is_empty()) {
        if let Some((a, b)) = part.split_once('-') {
            let a: std::net::Ipv4Addr = a.parse().map_err(|_| format!("bad source {a:?}"))?;
            let b: std::net::Ipv4Addr = b.parse().map_err(|_| format!("bad source {b:?}"))?;
            let (a, b) = (u32::from(a), u32::from(b));
            if b < a || b - a > 65536 {
                return Err(format!("bad source range {part:?}"));
            }
            out.extend((a..=b).map(|x| IpAddr::V4(x.into())));
        } else {
            out.push(part.parse().map_err(|_| format!("bad source {part:?}"))?);
        }
    }
    if out.is_empty() {
        return Err("--sources is empty".into());
    }
    Ok(out)
}

/// Quote one word for a POSIX shell, only when it needs it.
pub fn shell_quote(w: &str) -> String {
    let safe = !w.is_empty()
        && w.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_./:,=@+%".contains(&b));
    if safe {
        w.to_string()
    } else {
        format!("'{}'", w.replace('\'', "'\\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(v: &[&str]) -> Args {
        Args::parse(v.iter().map(|s| s.to_string())).unwrap()
    }

    #[test]
    fn options_flags_and_leftovers() {
        let mut a = args(&["small", "--clients", "32", "--seconds=5", "--no-epsv"]);
        assert_eq!(a.scenario, "small");
        assert_eq!(a.num_or::<u32>("clients", 1).unwrap(), 32);
        assert_eq!(a.num_or::<u64>("seconds", 1).unwrap(), 5);
        assert!(a.flag("no-epsv"));
        assert_eq!(a.num_or::<u32>("absent", 7).unwrap(), 7);
        a.finish().unwrap();
        let a = args(&["idle", "--sesions", "3"]);
        assert!(a.finish().is_err());
        assert!(Args::parse(["x".to_string(), "--clients".to_string()]).is_err());
    }

    #[test]
    fn numbers_with_suffixes() {
        assert_eq!(parse_num::<u64>("4096"), Some(4096));
        assert_eq!(parse_num::<u64>("256M"), Some(256 << 20));
        assert_eq!(parse_num::<u64>("1G"), Some(1 << 30));
        assert_eq!(parse_num::<u64>("19_000"), Some(19000));
        assert_eq!(parse_num::<f64>("2.5"), Some(2.5));
        assert_eq!(parse_num::<u64>("x"), None);
    }

    #[test]
    fn sources_lists_and_ranges() {
        let v = parse_sources("127.0.0.1-127.0.0.3,127.0.1.1").unwrap();
        assert_eq!(v.len(), 4);
        assert_eq!(v[3].to_string(), "127.0.1.1");
        assert!(parse_sources("127.0.0.3-127.0.0.1").is_err());
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("--addr"), "--addr");
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
    }
}
