//! The command line, parsed by clap's builder API from the option table
//! (`options::OPTIONS`): clap splits `--opt value`, `--opt=value` and
//! flags and finds unknown options; the table's `set` functions parse
//! the values, so the command line and the file share every check.
//!
//! clap is built without its `help`, `usage`, `color` and `suggestions`
//! features: `--help` is the table's own text (`super::help`), and a usage
//! error is one line of ours (`leanftpd: unknown option --bogus (see
//! --help)`), exit code 2.

use clap::error::{ContextKind, ContextValue, ErrorKind};
use clap::{Arg, ArgAction, Command};

use super::options::{Kind, OPTIONS};
use super::UsageError;

/// What the command line said, before any value is parsed.
#[derive(Debug, Default, Clone)]
pub struct Given {
    pub help: bool,
    pub version: bool,
    /// `--config FILE`.
    pub config: Option<String>,
    /// Each option given, with its values in command-line order (a flag's
    /// value is `"true"`), in table order.
    pub values: Vec<(usize, Vec<String>)>,
}

fn command() -> Command {
    let mut cmd = Command::new("leanftpd")
        .no_binary_name(true)
        .disable_help_flag(true)
        .disable_version_flag(true)
        // Given twice, an option's last value counts (lists take all).
        .args_override_self(true)
        .arg(Arg::new("help").short('h').long("help").action(ArgAction::SetTrue))
        .arg(Arg::new("version").short('V').long("version").action(ArgAction::SetTrue))
        .arg(Arg::new("config").long("config").action(ArgAction::Set).num_args(1).allow_hyphen_values(true));
    for o in OPTIONS {
        let arg = Arg::new(o.name).long(o.name);
        cmd = cmd.arg(match o.kind {
            Kind::Flag => arg.action(ArgAction::SetTrue),
            Kind::Value(_) | Kind::List(_) => arg.action(ArgAction::Append).num_args(1).allow_hyphen_values(true),
        });
    }
    cmd
}

/// Split the command line (without the program name).
pub fn parse<I: IntoIterator<Item = String>>(args: I) -> Result<Given, UsageError> {
    let m = command().try_get_matches_from(args).map_err(usage)?;
    let mut g = Given {
        help: m.get_flag("help"),
        version: m.get_flag("version"),
        config: m.get_one::<String>("config").cloned(),
        values: Vec::new(),
    };
    for (i, o) in OPTIONS.iter().enumerate() {
        match o.kind {
            Kind::Flag => {
                if m.get_flag(o.name) {
                    g.values.push((i, vec!["true".into()]));
                }
            }
            Kind::Value(_) | Kind::List(_) => {
                if let Some(v) = m.get_many::<String>(o.name) {
                    g.values.push((i, v.cloned().collect()));
                }
            }
        }
    }
    Ok(g)
}

/// One line for a clap error.
fn usage(e: clap::Error) -> UsageError {
    let arg = match e.get(ContextKind::InvalidArg) {
        Some(ContextValue::String(s)) => s.clone(),
        _ => String::new(),
    };
    // `--listen <listen>` as clap names it: the option alone.
    let arg = arg.split([' ', '=']).next().unwrap_or("").to_string();
    UsageError(match e.kind() {
        ErrorKind::UnknownArgument => format!("unknown option {arg} (see --help)"),
        ErrorKind::InvalidValue | ErrorKind::NoEquals | ErrorKind::WrongNumberOfValues => format!("{arg} needs a value"),
        ErrorKind::TooManyValues => format!("{arg}: a flag takes no value (see --help)"),
        ErrorKind::InvalidUtf8 => "the command line is not UTF-8".into(),
        _ => {
            // Anything else clap says (e.g. a stray argument): its first line.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("").trim_start_matches("error: ").to_string();
            format!("{first} (see --help)")
        }
    })
}
