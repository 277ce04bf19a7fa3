//! Virtual paths: what a client sees as a path inside its jail.
//!
//! This module owns the purely lexical side of path handling: resolving a
//! client's argument against the current directory and normalising the
//! result (`.`, `..`, repeated and trailing `/`). It never touches the
//! filesystem and never interprets symbolic links; making a normalised path
//! safe to open is the job of [`super::jail`], which resolves it beneath the
//! root handle with `openat2(RESOLVE_IN_ROOT)`.
//!
//! # Invariants
//! - A [`VirtualPath`] is either the root (stored as an empty, unallocated
//!   buffer, shown as `/`) or `/c1/c2/...` where every component is
//!   non-empty, is neither `.` nor `..`, and contains neither `/` nor NUL.
//! - Therefore two `VirtualPath`s are equal exactly when their byte strings
//!   are equal, and `..` can never climb above `/`.
//! - Bytes other than `/` and NUL are kept as they are (RFC 2640: UTF-8 is
//!   expected but not guaranteed; `\` is an ordinary byte).

use super::FsError;
use std::fmt;

/// An absolute, normalised virtual path: starts with '/', no '.', '..',
/// empty components or trailing '/'; the root is "/". Bytes (RFC 2640:
/// UTF-8 expected, not guaranteed). The root does not allocate
/// ([`VirtualPath::root`] is free), so an idle session at "/" holds no heap
/// memory.
#[derive(Clone, Debug, PartialEq, Eq, Default, Hash)]
pub struct VirtualPath {
    /// Empty for the root, otherwise `/c1/c2...` (see the module invariants).
    bytes: Box<[u8]>,
}

impl VirtualPath {
    /// The root directory `/` (no allocation).
    pub fn root() -> VirtualPath {
        VirtualPath {
            bytes: Box::default(),
        }
    }

    /// Resolve a client argument against `self` (the cwd): absolute args
    /// replace it, relative ones join; then normalise. `Err(FsError::InvalidName)`
    /// if the arg contains NUL. Backslash is an ordinary byte. Empty arg = self.
    pub fn resolve(&self, arg: &[u8]) -> Result<VirtualPath, FsError> {
        if arg.contains(&0) {
            return Err(FsError::InvalidName);
        }
        if arg.is_empty() {
            return Ok(self.clone());
        }
        let mut out: Vec<u8> = if arg[0] == b'/' {
            Vec::new()
        } else {
            let mut v = Vec::with_capacity(self.bytes.len() + 1 + arg.len());
            v.extend_from_slice(&self.bytes);
            v
        };
        for comp in arg.split(|&b| b == b'/') {
            match comp {
                b"" | b"." => {}
                b".." => {
                    let cut = out.iter().rposition(|&b| b == b'/').unwrap_or(0);
                    out.truncate(cut);
                }
                name => {
                    out.push(b'/');
                    out.extend_from_slice(name);
                }
            }
        }
        Ok(VirtualPath {
            bytes: out.into_boxed_slice(),
        })
    }

    /// The path as bytes: `b"/"` for the root, `b"/a/b"` otherwise.
    pub fn as_bytes(&self) -> &[u8] {
        if self.bytes.is_empty() {
            b"/"
        } else {
            &self.bytes
        }
    }

    /// Whether this is the root `/`.
    pub fn is_root(&self) -> bool {
        self.bytes.is_empty()
    }

    /// The containing directory; the root's parent is the root.
    pub fn parent(&self) -> VirtualPath {
        let cut = self.bytes.iter().rposition(|&b| b == b'/').unwrap_or(0);
        VirtualPath {
            bytes: self.bytes[..cut].into(),
        }
    }

    /// The last component; `None` for the root.
    pub fn file_name(&self) -> Option<&[u8]> {
        let cut = self.bytes.iter().rposition(|&b| b == b'/')?;
        Some(&self.bytes[cut + 1..])
    }

    /// The path relative to the jail root, as the kernel should see it:
    /// `.` for the root, `a/b` for `/a/b`.
    pub fn relative(&self) -> &[u8] {
        if self.bytes.is_empty() {
            b"."
        } else {
            &self.bytes[1..]
        }
    }

    /// `self/name` for a single name that came from the filesystem
    /// (a directory entry). Returns `None` if `name` is not a valid single
    /// component (empty, `.`, `..`, or containing `/` or NUL).
    pub fn child(&self, name: &[u8]) -> Option<VirtualPath> {
        if name.is_empty()
            || name == b"."
            || name == b".."
            || name.iter().any(|&b| b == b'/' || b == 0)
        {
            return None;
        }
        let mut v = Vec::with_capacity(self.bytes.len() + 1 + name.len());
        v.extend_from_slice(&self.bytes);
        v.push(b'/');
        v.extend_from_slice(name);
        Some(VirtualPath {
            bytes: v.into_boxed_slice(),
        })
    }

    /// Whether `self` is `other` or lies beneath it (lexically).
    pub fn starts_with(&self, other: &VirtualPath) -> bool {
        other.is_root()
            || (self.bytes.starts_with(&other.bytes)
                && matches!(self.bytes.get(other.bytes.len()), None | Some(b'/')))
    }

    /// The rest of `self` beneath `prefix`, as a path from a jail rooted at
    /// `prefix`: `/in/a/b` beneath `/in` is `/a/b`, `/in` is `/`. `None`
    /// unless `self.starts_with(prefix)`.
    pub fn strip_prefix(&self, prefix: &VirtualPath) -> Option<VirtualPath> {
        if !self.starts_with(prefix) {
            return None;
        }
        Some(VirtualPath { bytes: self.bytes[prefix.bytes.len()..].into() })
    }
}

impl fmt::Display for VirtualPath {
    /// Lossy UTF-8 rendering, for logs.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&String::from_utf8_lossy(self.as_bytes()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn r(cwd: &str, arg: &str) -> String {
        let cwd = VirtualPath::root().resolve(cwd.as_bytes()).unwrap();
        String::from_utf8(cwd.resolve(arg.as_bytes()).unwrap().as_bytes().to_vec()).unwrap()
    }

    #[test]
    fn dotdot_above_root_stays_at_root() {
        assert_eq!(r("/", ".."), "/");
        assert_eq!(r("/", "../../.."), "/");
        assert_eq!(r("/a", "../../../b"), "/b");
        assert_eq!(r("/", "/../etc/passwd"), "/etc/passwd");
        assert_eq!(r("/a/b", "../.."), "/");
    }

    #[test]
    fn dotdot_pops_one_component() {
        assert_eq!(r("/", "/a/../b"), "/b");
        assert_eq!(r("/a/b/c", ".."), "/a/b");
        assert_eq!(r("/a/b", "c/../../d"), "/a/d");
    }

    #[test]
    fn repeated_slashes_collapse() {
        assert_eq!(r("/", "//a///b//"), "/a/b");
        assert_eq!(r("/x", "a//b"), "/x/a/b");
        assert_eq!(r("/x", "//"), "/");
    }

    #[test]
    fn single_dots_vanish() {
        assert_eq!(r("/a", "."), "/a");
        assert_eq!(r("/a", "./b/./c/."), "/a/b/c");
        assert_eq!(r("/", "/./."), "/");
    }

    #[test]
    fn trailing_slash_is_dropped() {
        assert_eq!(r("/", "dir/"), "/dir");
        assert_eq!(r("/", "/dir/sub/"), "/dir/sub");
    }

    #[test]
    fn backslash_is_an_ordinary_byte() {
        assert_eq!(r("/", "a\\..\\b"), "/a\\..\\b");
        assert_eq!(r("/d", "..\\x"), "/d/..\\x");
        // `..\` is not `..`: it cannot climb.
        assert_eq!(r("/", "..\\..\\etc"), "/..\\..\\etc");
    }

    #[test]
    fn relative_args_join_the_cwd() {
        assert_eq!(r("/home/u", "file.txt"), "/home/u/file.txt");
        assert_eq!(r("/", "file.txt"), "/file.txt");
    }

    #[test]
    fn absolute_args_replace_the_cwd() {
        assert_eq!(r("/home/u", "/etc"), "/etc");
        assert_eq!(r("/home/u", "/"), "/");
    }

    #[test]
    fn empty_arg_is_the_cwd() {
        assert_eq!(r("/home/u", ""), "/home/u");
        assert_eq!(r("/", ""), "/");
    }

    #[test]
    fn nul_is_rejected() {
        assert_eq!(
            VirtualPath::root().resolve(b"a\0b"),
            Err(FsError::InvalidName)
        );
        assert_eq!(
            VirtualPath::root().resolve(b"\0"),
            Err(FsError::InvalidName)
        );
    }

    #[test]
    fn long_components_are_kept_for_the_os_to_refuse() {
        let long = "x".repeat(300);
        assert_eq!(r("/", &long), format!("/{long}"));
    }

    #[test]
    fn non_utf8_bytes_are_kept() {
        let p = VirtualPath::root().resolve(b"/caf\xe9/\xff").unwrap();
        assert_eq!(p.as_bytes(), b"/caf\xe9/\xff");
    }

    #[test]
    fn root_is_free_and_canonical() {
        let root = VirtualPath::root();
        assert!(root.is_root());
        assert_eq!(root.as_bytes(), b"/");
        assert_eq!(root, VirtualPath::default());
        assert_eq!(root.resolve(b"/a/..").unwrap(), root);
        assert_eq!(root.resolve(b"/a/..").unwrap().bytes.len(), 0);
        assert_eq!(root.relative(), b".");
    }

    #[test]
    fn parent_and_file_name() {
        let p = VirtualPath::root().resolve(b"/a/b/c").unwrap();
        assert_eq!(p.file_name(), Some(&b"c"[..]));
        assert_eq!(p.parent().as_bytes(), b"/a/b");
        assert_eq!(p.parent().parent().parent(), VirtualPath::root());
        assert_eq!(VirtualPath::root().parent(), VirtualPath::root());
        assert_eq!(VirtualPath::root().file_name(), None);
        assert_eq!(p.relative(), b"a/b/c");
    }

    #[test]
    fn child_accepts_only_single_components() {
        let d = VirtualPath::root().resolve(b"/d").unwrap();
        assert_eq!(d.child(b"x").unwrap().as_bytes(), b"/d/x");
        assert_eq!(VirtualPath::root().child(b"x").unwrap().as_bytes(), b"/x");
        for bad in [&b""[..], b".", b"..", b"a/b", b"a\0"] {
            assert!(d.child(bad).is_none());
        }
    }

    #[test]
    fn starts_with_respects_component_boundaries() {
        let a = VirtualPath::root().resolve(b"/a").unwrap();
        assert!(VirtualPath::root()
            .resolve(b"/a/b")
            .unwrap()
            .starts_with(&a));
        assert!(a.starts_with(&a));
        assert!(!VirtualPath::root().resolve(b"/ab").unwrap().starts_with(&a));
        assert!(a.starts_with(&VirtualPath::root()));
    }

    #[test]
    fn strip_prefix_gives_the_path_beneath() {
        let p = |s: &str| VirtualPath::root().resolve(s.as_bytes()).unwrap();
        assert_eq!(p("/in/a/b").strip_prefix(&p("/in")), Some(p("/a/b")));
        assert_eq!(p("/in").strip_prefix(&p("/in")), Some(VirtualPath::root()));
        assert_eq!(p("/in/a").strip_prefix(&VirtualPath::root()), Some(p("/in/a")));
        assert_eq!(p("/inbox/a").strip_prefix(&p("/in")), None);
        assert_eq!(p("/").strip_prefix(&p("/in")), None);
    }
}
