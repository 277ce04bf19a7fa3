//! The command parser (`leanftpd::ftp::command::parse`) on arbitrary bytes,
//! raw and after the framer's `clean` (what the session really gets).
//!
//! Checked, for every input:
//! - no panic;
//! - `Empty` exactly for the empty line;
//! - a parsed command's `arg` is a suffix of the input, borrowed from it (no
//!   copy), and is everything after the first space;
//! - the word before that space is the verb's name in any case, and the
//!   verb round-trips through its name (upper and lower case);
//! - `Http` only for an HTTP request line's verb (ALPACA defence);
//! - for MDTM/MFMT-like arguments, `parse_mdtm` does not panic and a time it
//!   accepts formats back to the same 14 digits (leap second 60 excepted).

#![no_main]

use leanftpd::ftp::command::{parse, ParseError, Verb};
use leanftpd::line::clean;
use leanftpd::vfs::listing::{format_mdtm, parse_mdtm};
use libfuzzer_sys::fuzz_target;

const HTTP_VERBS: [&[u8]; 7] = [b"GET", b"POST", b"PUT", b"HEAD", b"CONNECT", b"DELETE", b"OPTIONS"];

fn check(line: &[u8]) {
    let first_space = line.iter().position(|&b| b == b' ');
    let word = &line[..first_space.unwrap_or(line.len())];
    match parse(line) {
        Ok(cmd) => {
            // The argument borrows the input's tail.
            assert!(line.ends_with(cmd.arg), "arg is not a suffix of the line");
            let line_end = line.as_ptr() as usize + line.len();
            assert_eq!(cmd.arg.as_ptr() as usize + cmd.arg.len(), line_end, "arg does not borrow from the line");
            match first_space {
                Some(sp) => assert_eq!(cmd.arg, &line[sp + 1..], "arg is not what follows the first space"),
                None => assert!(cmd.arg.is_empty(), "an argument without a space"),
            }
            // The verb and its name.
            let name = cmd.verb.name();
            assert!(word.eq_ignore_ascii_case(name.as_bytes()), "word {word:?} parsed as {name}");
            assert!((3..=4).contains(&name.len()), "verb name {name} is not 3 or 4 letters");
            assert_eq!(Verb::from_upper(name.as_bytes()), Some(cmd.verb));
            assert_eq!(parse(name.as_bytes()).map(|c| c.verb), Ok(cmd.verb), "{name} does not round-trip");
            let lower = name.to_ascii_lowercase();
            assert_eq!(parse(lower.as_bytes()).map(|c| c.verb), Ok(cmd.verb), "{lower} does not round-trip");
            assert!(Verb::ALL.contains(&cmd.verb));
            if matches!(cmd.verb, Verb::Mdtm | Verb::Mfmt) {
                check_mdtm(cmd.arg);
                if let Some(sp) = cmd.arg.iter().position(|&b| b == b' ') {
                    check_mdtm(&cmd.arg[..sp]);
                }
            }
        }
        Err(ParseError::Empty) => assert!(line.is_empty(), "Empty for a non-empty line"),
        Err(ParseError::Http) => {
            assert!(
                HTTP_VERBS.iter().any(|v| word.eq_ignore_ascii_case(v)) || word.eq_ignore_ascii_case(b"OPTS"),
                "Http for the word {word:?}"
            );
        }
        Err(ParseError::Unknown) => {
            assert!(!line.is_empty(), "Unknown for the empty line");
            // A known verb's name followed by nothing or a space must parse.
            if let Ok(w) = std::str::from_utf8(word) {
                let upper = w.to_ascii_uppercase();
                if let Some(v) = Verb::from_upper(upper.as_bytes()) {
                    panic!("{w:?} is {} but was not recognised", v.name());
                }
            }
        }
    }
}

fn check_mdtm(arg: &[u8]) {
    if let Some(t) = parse_mdtm(arg) {
        assert!(arg.len() >= 14);
        if &arg[12..14] != b"60" {
            assert_eq!(&format_mdtm(t)[..], &arg[..14], "MDTM time does not round-trip");
        }
    }
}

fuzz_target!(|data: &[u8]| {
    check(data);
    check_mdtm(data);
    // What the session really sees: the framer's cleaned line.
    let line = match data.iter().position(|&b| b == b'\n') {
        Some(lf) => &data[..lf],
        None => data,
    };
    let mut cleaned = Vec::new();
    clean(line, &mut cleaned);
    check(&cleaned);
});
