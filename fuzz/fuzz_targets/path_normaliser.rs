//! The path normaliser (`leanftpd::vfs::path::VirtualPath::resolve`): a
//! client's CWD then its argument, `VirtualPath::root().resolve(a)` then
//! `.resolve(b)`, as CWD + RETR/STOR/... do.
//!
//! Input layout: `a` is everything before the first LF, `b` everything after
//! it (a control line can hold no LF, so no path the server sees does).
//!
//! Checked, for every input:
//! - no panic; `Err(InvalidName)` exactly when the argument holds NUL;
//! - the result starts with '/', holds no "//", no "." or ".." component, no
//!   trailing '/' unless it is the root, and no NUL;
//! - it is lexically inside the jail (`relative()` never starts with '/' or
//!   climbs with "..");
//! - `parent()` is a prefix of it and `starts_with` agrees; the root's parent
//!   is the root; `parent().child(file_name())` gives it back;
//! - resolve is idempotent on its own output (from any cwd, since it is
//!   absolute), and `""` and `"."` resolve to the cwd itself;
//! - an absolute argument does not depend on the cwd.

#![no_main]

use leanftpd::vfs::path::VirtualPath;
use leanftpd::vfs::FsError;
use libfuzzer_sys::fuzz_target;

fn check_shape(p: &VirtualPath) {
    let bytes = p.as_bytes();
    assert!(bytes.starts_with(b"/"), "{p:?} does not start with '/'");
    assert!(!bytes.windows(2).any(|w| w == b"//"), "{p:?} holds \"//\"");
    assert!(!bytes.contains(&0), "{p:?} holds NUL");
    if p.is_root() {
        assert_eq!(bytes, b"/");
    } else {
        assert!(!bytes.ends_with(b"/"), "{p:?} ends with '/'");
        for comp in bytes[1..].split(|&b| b == b'/') {
            assert!(!comp.is_empty(), "{p:?} has an empty component");
            assert!(comp != b"." && comp != b"..", "{p:?} has a dot component");
        }
    }
    let rel = p.relative();
    assert!(!rel.starts_with(b"/"), "relative {rel:?} is absolute");
    assert!(!rel.split(|&b| b == b'/').any(|c| c == b".."), "relative {rel:?} climbs");
    if p.is_root() {
        assert_eq!(rel, b".");
    } else {
        assert_eq!(rel, &bytes[1..]);
    }

    // parent / file_name / child / starts_with.
    let parent = p.parent();
    assert!(bytes.starts_with(parent.as_bytes()) || parent.is_root(), "parent of {p:?} is not a prefix");
    assert!(p.starts_with(&parent), "{p:?} is not under its parent");
    assert!(p.starts_with(&VirtualPath::root()));
    assert!(p.starts_with(p));
    if p.is_root() {
        assert!(parent.is_root(), "the root's parent is not the root");
        assert_eq!(p.file_name(), None);
    } else {
        assert!(parent.as_bytes().len() < bytes.len());
        let name = p.file_name().expect("a non-root path has a name");
        assert_eq!(parent.child(name).as_ref(), Some(p), "parent/name of {p:?} differs");
    }

    // Idempotent on its own output, from any cwd.
    let again = VirtualPath::root().resolve(bytes).expect("a normalised path resolves");
    assert_eq!(&again, p, "resolve is not idempotent");
    assert_eq!(&p.resolve(bytes).unwrap(), p, "resolve of an absolute path depends on the cwd");
    assert_eq!(&p.resolve(b"").unwrap(), p, "\"\" is not the cwd");
    assert_eq!(&p.resolve(b".").unwrap(), p, "\".\" is not the cwd");
    assert_eq!(p.resolve(b"..").unwrap(), parent, "\"..\" is not the parent");
}

fn resolve(cwd: &VirtualPath, arg: &[u8]) -> Option<VirtualPath> {
    match cwd.resolve(arg) {
        Ok(p) => {
            assert!(!arg.contains(&0), "an argument holding NUL was accepted");
            check_shape(&p);
            if arg.first() == Some(&b'/') {
                assert_eq!(VirtualPath::root().resolve(arg).unwrap(), p, "an absolute argument depends on the cwd");
            }
            Some(p)
        }
        Err(e) => {
            assert_eq!(e, FsError::InvalidName, "unexpected error {e:?}");
            assert!(arg.contains(&0), "an argument without NUL was refused");
            None
        }
    }
}

fuzz_target!(|data: &[u8]| {
    let (a, b) = match data.iter().position(|&c| c == b'\n') {
        Some(lf) => (&data[..lf], &data[lf + 1..]),
        None => (data, &data[data.len()..]),
    };
    let root = VirtualPath::root();
    check_shape(&root);
    let cwd = resolve(&root, a).unwrap_or_else(VirtualPath::root);
    if let Some(p) = resolve(&cwd, b) {
        // Joining then normalising equals normalising the join.
        if !b.starts_with(b"/") {
            let mut joined = cwd.as_bytes().to_vec();
            joined.push(b'/');
            joined.extend_from_slice(b);
            assert_eq!(root.resolve(&joined).unwrap(), p, "cwd + arg differs from resolving the join");
        }
    }
});
