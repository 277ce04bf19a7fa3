//! `--config FILE`: a TOML document of top-level `key = value` lines, a
//! key per option of the table (the long option without its dashes).
//!
//! Parsed with the `toml` crate's span-keeping parser (`DeTable`, without
//! serde), so that every error names the file's line: an unknown key, a
//! value of the wrong type, a value its option refuses, a table header
//! (`[section]`: the file has no sections) or a TOML syntax error. Values:
//! strings, integers and floats as written (`max-clients = 100` or
//! `"100"`), booleans for flags (`false` leaves the flag off), and for a
//! list option a string or an array of strings.

use std::path::Path;

use toml::de::{DeTable, DeValue};

use super::options::{self, Kind};
use super::UsageError;

/// The file is read whole; a configuration is a few kilobytes.
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// One key of the file: its option, its values (as strings, for the
/// option's `set`), the line and the value's source text (for errors).
#[derive(Debug, Clone)]
pub struct Entry {
    /// Its row in `options::OPTIONS`.
    pub opt: usize,
    /// Its values as the command line would give them (a flag: `"true"`).
    pub values: Vec<String>,
    /// The key's line, from 1.
    pub line: usize,
    /// The value as written in the file.
    pub raw: String,
}

/// Read and check `path`: every key known, every value of its option's
/// type. Values are not parsed here (`Opt::set` does that; `Entry` keeps
/// the line for its error).
pub fn read(path: &Path) -> Result<Vec<Entry>, UsageError> {
    let name = path.display();
    let f = std::fs::File::open(path).map_err(|e| UsageError(format!("--config {name}: {e}")))?;
    let mut text = String::new();
    use std::io::Read;
    let n = f
        .take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| UsageError(format!("--config {name}: {e}")))?;
    if n as u64 > MAX_FILE_BYTES {
        return Err(UsageError(format!("--config {name}: larger than {MAX_FILE_BYTES} bytes")));
    }
    parse(&name.to_string(), &text)
}

/// The line (from 1) of byte `at`.
fn line_of(text: &str, at: usize) -> usize {
    text.as_bytes()[..at.min(text.len())].iter().filter(|&&b| b == b'\n').count() + 1
}

/// Parse `text`, naming `name` in errors.
pub fn parse(name: &str, text: &str) -> Result<Vec<Entry>, UsageError> {
    let doc = DeTable::parse(text).map_err(|e| {
        let line = e.span().map(|s| line_of(text, s.start)).unwrap_or(1);
        let msg = e.message().lines().next().unwrap_or("").trim().to_string();
        UsageError(format!("{name}:{line}: not valid TOML: {msg}"))
    })?;
    // In the file's order, so the first error is the first in the file.
    let mut keys: Vec<_> = doc.get_ref().iter().collect();
    keys.sort_by_key(|(k, _)| k.span().start);
    let mut out = Vec::with_capacity(keys.len());
    for (key, value) in keys {
        let line = line_of(text, key.span().start);
        let raw = text.get(value.span()).unwrap_or("").trim().to_string();
        let key = key.get_ref().as_ref();
        let err = |what: &str| UsageError(format!("{name}:{line}: {key} = {raw}: {what}"));
        // A `[section]` header or a dotted key (`a.b = 1`); an inline
        // table (`key = {...}`) is a wrong type, below.
        if matches!(value.get_ref(), DeValue::Table(_)) && !raw.starts_with('{') {
            return Err(UsageError(format!(
                "{name}:{line}: {key}: the file has no tables (no [section], no dotted keys), only top-level `key = value` lines"
            )));
        }
        let (i, opt) = match options::OPTIONS.iter().enumerate().find(|(_, o)| o.name == key) {
            Some(found) => found,
            None if matches!(key, "config" | "help" | "version") => {
                return Err(UsageError(format!("{name}:{line}: {key}: not a key of the file (command line only)")))
            }
            None => return Err(UsageError(format!("{name}:{line}: unknown key {key} (see --help)"))),
        };
        let values = match (opt.kind, value.get_ref()) {
            (Kind::Flag, DeValue::Boolean(true)) => vec!["true".to_string()],
            (Kind::Flag, DeValue::Boolean(false)) => continue,
            (Kind::Flag, _) => return Err(err("expected true or false")),
            (Kind::List(_), DeValue::Array(items)) => {
                let mut v = Vec::with_capacity(items.len());
                for item in items {
                    v.push(scalar(item.get_ref()).ok_or_else(|| err("expected a string or an array of strings"))?);
                }
                v
            }
            // A number only where the option takes one (`N`, `SECS`,
            // `BYTES`, `RATE`, `N|auto`): `users = 5` is a type error at its
            // line, not the path `5`.
            (Kind::Value(name), v) if !matches!(v, DeValue::String(_)) && !numeric(name) => {
                return Err(err("expected a string"));
            }
            (_, v) => vec![scalar(v).ok_or_else(|| err(match opt.kind {
                Kind::List(_) => "expected a string or an array of strings",
                _ => "expected a string or a number",
            }))?],
        };
        out.push(Entry { opt: i, values, line, raw });
    }
    Ok(out)
}

/// Whether an option's value (named as `--help` names it) may be written
/// as a TOML number.
fn numeric(value_name: &str) -> bool {
    matches!(value_name, "N" | "SECS" | "BYTES" | "RATE" | "N|auto")
}

/// A string, integer or float as the command line would give it.
fn scalar(v: &DeValue<'_>) -> Option<String> {
    match v {
        DeValue::String(s) => Some(s.to_string()),
        DeValue::Integer(n) if n.radix() == 10 => Some(n.as_str().replace('_', "")),
        DeValue::Integer(n) => u64::from_str_radix(&n.as_str().replace('_', ""), n.radix()).ok().map(|n| n.to_string()),
        DeValue::Float(f) => Some(f.as_str().replace('_', "")),
        _ => None,
    }
}
