//! The command line, split by lexopt and checked against the option table
//! (`options::OPTIONS`): lexopt splits `--opt value`, `--opt=value`,
//! flags and `-h`/`-V`; the table says which options exist and which take
//! a value, and its `set` functions parse the values, so the command line
//! and the file share every check. A usage error is one line of ours
//! (`leanftpd: unknown option --bogus (see --help)`), exit code 2.
//!
//! Why lexopt and not clap (measured, stripped release builds): with its
//! default features off (`std`, `error-context`) and the help text ours,
//! clap's builder API made the binary 182 KiB larger than lexopt does
//! (`--no-default-features`: 1,393,016 against 1,206,912 bytes; default
//! build 2,717,784 against 2,533,104), for splitting arguments that the
//! table already describes.

use super::options::{Kind, OPTIONS};
use super::UsageError;

/// What the command line said, before any value is parsed.
#[derive(Debug, Default, Clone)]
pub struct Given {
    /// `-h`/`--help`.
    pub help: bool,
    /// `-V`/`--version`.
    pub version: bool,
    /// `--config FILE`.
    pub config: Option<String>,
    /// Each option given (its row in `OPTIONS`) with its values in
    /// command-line order; a flag's value is `"true"`.
    pub values: Vec<(usize, Vec<String>)>,
}

fn utf8(v: std::ffi::OsString) -> Result<String, UsageError> {
    v.into_string().map_err(|v| UsageError(format!("{}: not UTF-8", v.to_string_lossy())))
}

/// Split the command line (without the program name).
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Given, UsageError> {
    use lexopt::Arg::{Long, Short, Value};
    let mut p = lexopt::Parser::from_args(args);
    let mut g = Given::default();
    while let Some(arg) = p.next().map_err(|e| UsageError(format!("{e} (see --help)")))? {
        match arg {
            Short('h') | Long("help") => g.help = true,
            Short('V') | Long("version") => g.version = true,
            Long("config") => {
                g.config = Some(utf8(p.value().map_err(|_| UsageError("--config needs a value".into()))?)?);
            }
            Long(name) => {
                let name = name.to_string();
                let Some(i) = OPTIONS.iter().position(|o| o.name == name) else {
                    return Err(UsageError(format!("unknown option --{name} (see --help)")));
                };
                let v = match OPTIONS[i].kind {
                    Kind::Flag => {
                        if p.optional_value().is_some() {
                            return Err(UsageError(format!("--{name}: a flag takes no value (see --help)")));
                        }
                        "true".to_string()
                    }
                    Kind::Value(_) | Kind::List(_) => {
                        utf8(p.value().map_err(|_| UsageError(format!("--{name} needs a value")))?)?
                    }
                };
                match g.values.iter_mut().find(|(j, _)| *j == i) {
                    Some((_, vs)) => vs.push(v),
                    None => g.values.push((i, vec![v])),
                }
            }
            Short(c) => return Err(UsageError(format!("unknown option -{c} (see --help)"))),
            Value(v) => return Err(UsageError(format!("unknown option {} (see --help)", v.to_string_lossy()))),
        }
    }
    Ok(g)
}
