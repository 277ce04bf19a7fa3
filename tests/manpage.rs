//! `man/leanftpd.8` against the binary and the option table, so that the
//! man page cannot drift from `--help` (generated from the table) nor the
//! table from the man page:
//!
//! - the OPTIONS section's `.TP` tags (`--root DIR`, `--anonymous`,
//!   `-h, --help`) are exactly the option lines of `leanftpd --help`, value
//!   names included, both ways;
//! - every row of `options::OPTIONS` (each is also a `--config` key) has
//!   its entry, with its value name, ending in the sentence its reload
//!   column says (`SIGHUP applies it.` or `Needs a restart.`), and every
//!   key of `contrib/leanftpd.toml` is a documented option;
//! - every variable the upload hook gets (`.env("…")` in `src/hooks.rs`)
//!   is in UPLOAD HOOK, and the exit statuses 0, 1, 2 in EXIT STATUS;
//! - `mandoc -Tlint -Wwarning` says nothing and exits 0. mandoc is
//!   installed by `.ci/setup.sh`; without it the test fails.

use std::collections::BTreeSet;
use std::process::Command;

use leanftpd::config::options::{Kind, Reload, OPTIONS};

const MAN: &str = include_str!("../man/leanftpd.8");
const MAN_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/man/leanftpd.8");
const TOML: &str = include_str!("../contrib/leanftpd.toml");
const HOOKS_RS: &str = include_str!("../src/hooks.rs");

/// The sentences that end an option's entry, by its reload column.
const LIVE: &str = "SIGHUP applies it.";
const RESTART: &str = "Needs a restart.";

/// `--help`'s left column width (`options::options_help`'s `COL`).
const HELP_COL: usize = 31;

/// The lines of section `name` (between `.SH name` and the next `.SH`).
fn section(name: &str) -> Vec<&'static str> {
    let mut lines = MAN.lines().skip_while(|l| l.trim() != format!(".SH {name}") && l.trim() != format!(".SH \"{name}\""));
    assert!(lines.next().is_some(), "man page has no section {name}");
    lines.take_while(|l| !l.starts_with(".SH")).collect()
}

/// Split a macro line's arguments as roff does (double quotes group).
fn roff_args(s: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut chars = s.chars().peekable();
    loop {
        while chars.peek() == Some(&' ') {
            chars.next();
        }
        let Some(&c) = chars.peek() else { break };
        let mut arg = String::new();
        if c == '"' {
            chars.next();
            while let Some(c) = chars.next() {
                if c == '"' {
                    if chars.peek() == Some(&'"') {
                        chars.next();
                        arg.push('"');
                        continue;
                    }
                    break;
                }
                arg.push(c);
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ' ' {
                    break;
                }
                arg.push(c);
                chars.next();
            }
        }
        out.push(arg);
    }
    out
}

/// The text a line prints: font macros' arguments joined (`.BI \-\-root " DIR"`
/// is `--root DIR`), the escapes this page uses resolved.
fn text(line: &str) -> String {
    let joined = match line.split_once(' ') {
        Some((m, rest)) if m.starts_with('.') => roff_args(rest).concat(),
        None if line.starts_with('.') => String::new(),
        _ => line.to_string(),
    };
    let mut s = joined;
    for (esc, plain) in [("\\-", "-"), ("\\(dq", "\""), ("\\&", ""), ("\\%", ""), ("\\fR", ""), ("\\fP", ""), ("\\fB", ""), ("\\fI", ""), ("\\e", "\\")] {
        s = s.replace(esc, plain);
    }
    s
}

/// The `.TP` entries of a section: (tag, body text joined by spaces).
fn entries(name: &str) -> Vec<(String, String)> {
    let lines = section(name);
    let mut out: Vec<(String, String)> = Vec::new();
    let mut i = 0;
    while i < lines.len() {
        if lines[i].trim() == ".TP" {
            let tag = text(lines.get(i + 1).unwrap_or_else(|| panic!("{name}: .TP without a tag")));
            let mut body = Vec::new();
            i += 2;
            while i < lines.len() && lines[i].trim() != ".TP" && !lines[i].starts_with(".PP") {
                body.push(text(lines[i]));
                i += 1;
            }
            out.push((tag, body.join(" ")));
        } else {
            i += 1;
        }
    }
    out
}

/// The option lines of `leanftpd --help` (the built binary), as their
/// left column: `--root DIR`, `--anonymous`, `-h, --help`.
fn help_options() -> BTreeSet<String> {
    let out = Command::new(env!("CARGO_BIN_EXE_leanftpd")).arg("--help").output().expect("run leanftpd --help");
    assert!(out.status.success(), "leanftpd --help: {:?}", out.status);
    let help = String::from_utf8(out.stdout).expect("--help is UTF-8");
    let options = help.split("\nOPTIONS:\n").nth(1).expect("--help has OPTIONS:");
    let options = options.split("\n\n").next().unwrap();
    let set: BTreeSet<String> = options
        .lines()
        .filter(|l| l.starts_with("    -"))
        .map(|l| {
            // The help text starts at column HELP_COL after at least one
            // space; a longer left column stands alone on its line.
            let b = l.as_bytes();
            if b.len() > HELP_COL && b[HELP_COL - 1] == b' ' && b[HELP_COL] != b' ' {
                l[..HELP_COL].trim().to_string()
            } else {
                l.trim().to_string()
            }
        })
        .collect();
    assert!(set.len() > OPTIONS.len(), "--help lists {} options, the table has {}", set.len(), OPTIONS.len());
    set
}

fn man_options() -> Vec<(String, String)> {
    let e = entries("OPTIONS");
    assert!(!e.is_empty(), "no .TP entries in OPTIONS");
    e
}

/// The long option a tag names (`--root DIR` → `root`).
fn long_name(tag: &str) -> Option<&str> {
    tag.split([' ', ',']).find_map(|w| w.strip_prefix("--"))
}

#[test]
fn man_page_options_are_exactly_the_help_options() {
    let help = help_options();
    let man: BTreeSet<String> = man_options().into_iter().map(|(t, _)| t).collect();
    let missing: Vec<_> = help.difference(&man).collect();
    let extra: Vec<_> = man.difference(&help).collect();
    assert!(
        missing.is_empty() && extra.is_empty(),
        "man/leanftpd.8 OPTIONS and `leanftpd --help` differ:\n  in --help, not in the man page: {missing:?}\n  in the man page, not in --help: {extra:?}"
    );
}

#[test]
fn every_option_of_the_table_is_documented_with_its_value_and_reload() {
    let man = man_options();
    let mut seen = BTreeSet::new();
    for (tag, _) in &man {
        let name = long_name(tag).unwrap_or_else(|| panic!("OPTIONS entry without a long option: {tag:?}"));
        assert!(seen.insert(name.to_string()), "--{name} documented twice");
    }
    for o in OPTIONS {
        let want = match o.kind {
            Kind::Flag => format!("--{}", o.name),
            Kind::Value(v) | Kind::List(v) => format!("--{} {v}", o.name),
        };
        let Some((tag, body)) = man.iter().find(|(t, _)| long_name(t) == Some(o.name)) else {
            panic!("--{} (and its --config key {}) is not in man/leanftpd.8's OPTIONS", o.name, o.name);
        };
        assert_eq!(tag, &want, "--{}: the man page's tag differs from the table's value name", o.name);
        let (right, wrong) = match o.reload {
            Reload::Live => (LIVE, RESTART),
            Reload::Restart => (RESTART, LIVE),
        };
        assert!(
            body.contains(right) && !body.contains(wrong),
            "--{}: the table says {:?}: its man page entry must say {right:?} (and not {wrong:?}); it says: {body}",
            o.name,
            o.reload
        );
    }
    // Only the command-line-only options are outside the table.
    let table: BTreeSet<&str> = OPTIONS.iter().map(|o| o.name).collect();
    let others: BTreeSet<&str> =
        man.iter().filter_map(|(t, _)| long_name(t)).filter(|n| !table.contains(n)).collect();
    assert_eq!(others, BTreeSet::from(["config", "help", "version"]), "man page options that are not in the table");
}

#[test]
fn every_key_of_the_sample_config_is_a_documented_option() {
    let man: BTreeSet<String> = man_options().iter().filter_map(|(t, _)| long_name(t).map(str::to_string)).collect();
    let mut keys = 0;
    for line in TOML.lines() {
        let l = line.trim_start_matches('#').trim();
        let Some((key, _)) = l.split_once(" = ") else { continue };
        if key.is_empty() || !key.bytes().all(|b| b.is_ascii_lowercase() || b == b'-') || line.contains('`') {
            continue;
        }
        keys += 1;
        assert!(man.contains(key), "contrib/leanftpd.toml's key {key} is not in man/leanftpd.8's OPTIONS");
    }
    assert!(keys >= OPTIONS.len(), "found {keys} keys in contrib/leanftpd.toml, the table has {}", OPTIONS.len());
}

#[test]
fn hook_environment_and_exit_statuses_are_documented() {
    let hook: BTreeSet<String> = entries("UPLOAD HOOK").into_iter().map(|(t, _)| t).collect();
    let vars: Vec<&str> =
        HOOKS_RS.split(".env(\"").skip(1).map(|s| s.split('"').next().unwrap()).collect();
    assert!(vars.len() >= 7, "found only {vars:?} in src/hooks.rs");
    for v in vars {
        assert!(hook.contains(v), "the hook's variable {v} is not in man/leanftpd.8's UPLOAD HOOK: {hook:?}");
    }
    let codes: Vec<String> = entries("EXIT STATUS").into_iter().map(|(t, _)| t).collect();
    assert_eq!(codes, ["0", "1", "2"]);
}

#[test]
fn mandoc_lint_is_clean() {
    let out = Command::new("mandoc")
        .args(["-Tlint", "-Wwarning", MAN_PATH])
        .output()
        .unwrap_or_else(|e| panic!("cannot run mandoc ({e}): run .ci/setup.sh (Debian package mandoc)"));
    let said = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success() && said.is_empty(), "mandoc -Tlint -Wwarning man/leanftpd.8: {:?}\n{said}", out.status);
}
