//! Shell-style wildcards for the last component of a listing argument
//! (`NLST *.txt`, `LIST sub/file?.[ch]`, `STAT *.jpg`): `*`, `?` and
//! bracket expressions, matched on bytes.
//!
//! It owns only the pattern and the matching; it never touches the
//! filesystem (the listing decides when to glob, see
//! [`super::Vfs::open_glob`]) and never allocates while matching.
//!
//! # The rules
//! - `*` matches any run of bytes (also none), `?` exactly one byte.
//! - `[set]` matches one byte of the set; `[!set]` and `[^set]` one byte
//!   not in it. `a-z` inside is a range of byte values (a reversed range
//!   such as `z-a` contains nothing); `]` first in the set and `-` first or
//!   last are members, as in POSIX `fnmatch`. A `[` with no closing `]` is
//!   a literal `[`. Character classes (`[[:alpha:]]`) are not supported.
//! - No escapes: `\` is an ordinary byte (a name may hold one). A name
//!   that exists literally is listed literally before any globbing, so
//!   `NLST a*b` lists a file named `a*b`; `[*]` matches a `*` in a name.
//! - Bytes, not characters: `?` matches one byte of a multi-byte UTF-8
//!   character (RFC 2640 names are UTF-8 only by convention). Case is
//!   significant.
//! - A name starting with `.` is matched only by a pattern starting with a
//!   literal `.` (the shell's rule: `*` does not show hidden files, `.*`
//!   does), so `mget *` does not fetch `.htaccess` or `.ssh`.
//!
//! # Linear time, no recursion (CVE-2011-0762)
//! vsftpd's recursive matcher let `STAT {{*},{*},…}` burn the CPU. Here a
//! pattern compiles once into a bit-parallel automaton (Shift-And, Baeza-
//! Yates and Gonnet 1992, with a `*` as a state that loops on every byte):
//! bit `i` of the state set says "the first `i` single-byte items of the
//! pattern match the name read so far". Each name byte updates the whole
//! set with a shift, an AND with that byte's mask and an OR of the looping
//! states: `GLOB_MAX_ITEMS + 1` bits are at most 4 words, so a name of `n`
//! bytes costs at most `4n` word steps whatever the pattern, with no
//! backtracking at all (the classic two-pointer matcher is O(n·m) in the
//! worst case, e.g. `*aaaa…ab` against `aaaa…a`). Compiling is O(pattern)
//! plus 256 masks; a pattern is at most one command line.
//!
//! # Invariants
//! - [`Glob::matches`] reads each byte of the name once and does at most
//!   [`Glob::words`] word operations per byte; it never recurses and never
//!   allocates.
//! - A pattern of more than [`GLOB_MAX_ITEMS`] single-byte items (which no
//!   name of at most 255 bytes could match) is not compiled.

/// The most single-byte items (`?`, a literal byte, a bracket expression) a
/// pattern may hold: Linux names are at most 255 bytes (`NAME_MAX`), so a
/// longer pattern could match nothing. It bounds the state set to 256 bits.
pub const GLOB_MAX_ITEMS: usize = 255;

/// Words of the largest state set: `GLOB_MAX_ITEMS + 1` bits.
const MAX_WORDS: usize = (GLOB_MAX_ITEMS + 1).div_ceil(64);

/// Whether `component` holds a wildcard character (`*`, `?`, `[`), i.e.
/// whether a name that does not exist should be tried as a pattern.
pub fn has_wildcards(component: &[u8]) -> bool {
    component.iter().any(|b| matches!(b, b'*' | b'?' | b'['))
}

/// A compiled pattern (see the module docs for its rules).
#[derive(Clone, Debug)]
pub struct Glob {
    /// Words per state set: `(items + 1).div_ceil(64)`, 1 to 4.
    words: usize,
    /// `masks[c * words + w]`: bit `i + 1` is set when item `i` matches
    /// byte `c` (state `i` can advance to `i + 1` on `c`).
    masks: Box<[u64]>,
    /// Bit `i` set when a `*` follows the first `i` items (state `i`
    /// loops on every byte).
    stars: [u64; MAX_WORDS],
    /// The accepting state: every item matched.
    items: usize,
    /// The pattern starts with a literal `.` (so it may match hidden names).
    dot_first: bool,
}

/// One single-byte item of a pattern, while compiling.
type ByteSet = [u64; 4];

fn set_has(set: &ByteSet, b: u8) -> bool {
    set[usize::from(b >> 6)] & (1 << (b & 63)) != 0
}

fn set_add(set: &mut ByteSet, b: u8) {
    set[usize::from(b >> 6)] |= 1 << (b & 63);
}

/// Parse the bracket expression starting at `pattern[0] == b'['`: its set
/// and its length, or `None` when no `]` closes it (then `[` is literal).
fn parse_bracket(pattern: &[u8]) -> Option<(ByteSet, usize)> {
    let mut i = 1;
    let negate = matches!(pattern.get(i), Some(b'!' | b'^'));
    if negate {
        i += 1;
    }
    let mut set = [0u64; 4];
    let mut first = true;
    loop {
        let b = *pattern.get(i)?;
        if b == b']' && !first {
            i += 1;
            break;
        }
        first = false;
        match (pattern.get(i + 1), pattern.get(i + 2)) {
            (Some(b'-'), Some(&hi)) if hi != b']' => {
                for c in b..=hi {
                    set_add(&mut set, c);
                }
                i += 3;
            }
            _ => {
                set_add(&mut set, b);
                i += 1;
            }
        }
    }
    if negate {
        for w in &mut set {
            *w = !*w;
        }
    }
    Some((set, i))
}

impl Glob {
    /// Compile `pattern` (one path component: it holds no `/`); `None` if
    /// it has more than [`GLOB_MAX_ITEMS`] single-byte items.
    pub fn new(pattern: &[u8]) -> Option<Glob> {
        debug_assert!(!pattern.contains(&b'/'));
        // First pass: the items, as byte sets, and where the stars are.
        let mut items: Vec<ByteSet> = Vec::new();
        let mut stars = [0u64; MAX_WORDS];
        let mut i = 0;
        while i < pattern.len() {
            let set = match pattern[i] {
                b'*' => {
                    let state = items.len();
                    stars[state / 64] |= 1 << (state % 64);
                    i += 1;
                    continue;
                }
                b'?' => {
                    i += 1;
                    [u64::MAX; 4]
                }
                b'[' => match parse_bracket(&pattern[i..]) {
                    Some((set, len)) => {
                        i += len;
                        set
                    }
                    None => {
                        i += 1;
                        let mut set = [0; 4];
                        set_add(&mut set, b'[');
                        set
                    }
                },
                b => {
                    i += 1;
                    let mut set = [0; 4];
                    set_add(&mut set, b);
                    set
                }
            };
            if items.len() == GLOB_MAX_ITEMS {
                return None;
            }
            items.push(set);
        }
        let words = (items.len() + 1).div_ceil(64);
        let mut masks = vec![0u64; 256 * words].into_boxed_slice();
        for (n, set) in items.iter().enumerate() {
            let bit = n + 1;
            for c in 0..=255u8 {
                if set_has(set, c) {
                    masks[usize::from(c) * words + bit / 64] |= 1 << (bit % 64);
                }
            }
        }
        Some(Glob { words, masks, stars, items: items.len(), dot_first: pattern.first() == Some(&b'.') })
    }

    /// Bytes of heap the pattern holds: its byte masks (2 to 8 KiB).
    pub fn heap_bytes(&self) -> usize {
        self.masks.len() * std::mem::size_of::<u64>()
    }

    /// Words per state set (1 to 4): the cost of each name byte.
    pub fn words(&self) -> usize {
        self.words
    }

    /// Whether `name` matches the whole pattern.
    pub fn matches(&self, name: &[u8]) -> bool {
        self.matches_counting(name).0
    }

    /// [`Glob::matches`], and the word steps it took (at most
    /// `name.len() * self.words()`; tests hold it to that).
    pub fn matches_counting(&self, name: &[u8]) -> (bool, usize) {
        if name.first() == Some(&b'.') && !self.dot_first {
            return (false, 0);
        }
        let w = self.words;
        let mut state = [0u64; MAX_WORDS];
        state[0] = 1; // nothing matched yet
        let mut steps = 0;
        for &c in name {
            let mask = &self.masks[usize::from(c) * w..usize::from(c) * w + w];
            let mut carry = 0;
            let mut alive = 0;
            for i in 0..w {
                let s = state[i];
                let next = (((s << 1) | carry) & mask[i]) | (s & self.stars[i]);
                carry = s >> 63;
                state[i] = next;
                alive |= next;
                steps += 1;
            }
            if alive == 0 {
                return (false, steps); // no state left: no suffix can help
            }
        }
        (state[self.items / 64] & (1 << (self.items % 64)) != 0, steps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(pattern: &str, name: &str) -> bool {
        Glob::new(pattern.as_bytes()).expect("compiles").matches(name.as_bytes())
    }

    /// (pattern, name, matches, why)
    const CATALOGUE: &[(&str, &str, bool, &str)] = &[
        ("*", "a.txt", true, "* matches any name"),
        ("*", "", true, "* matches nothing at all too"),
        ("*.txt", "a.txt", true, "suffix"),
        ("*.txt", ".txt", false, "a leading dot is not matched by *"),
        ("*.txt", "a.txt.gz", false, "the whole name must match"),
        ("*.txt", "a.TXT", false, "case is significant"),
        ("a*", "a", true, "a trailing * matches the empty rest"),
        ("*a*", "bab", true, "infix"),
        ("*a*", "bbb", false, "infix absent"),
        ("a*b*c", "aXbYc", true, "several stars"),
        ("a*b*c", "aXcYb", false, "order matters"),
        ("a**b", "ab", true, "consecutive stars are one"),
        ("file?.txt", "file1.txt", true, "? is one byte"),
        ("file?.txt", "file.txt", false, "? is exactly one byte, not none"),
        ("file?.txt", "file12.txt", false, "? is not two bytes"),
        ("??", "é", true, "? is a byte: é is two bytes in UTF-8"),
        ("?", "é", false, "? is not a UTF-8 character"),
        ("[a-c]x", "bx", true, "range"),
        ("[a-c]x", "dx", false, "outside the range"),
        ("[abc]", "c", true, "list"),
        ("[!a]", "b", true, "! negates"),
        ("[!a]", "a", false, "! negates"),
        ("[^a]", "b", true, "^ negates too"),
        ("[^a]", "a", false, "^ negates too"),
        ("[]]", "]", true, "] first is a member"),
        ("[]a]", "a", true, "] first, then more members"),
        ("[!]]", "a", true, "] first after ! is a member"),
        ("[!]]", "]", false, "] first after ! is a member"),
        ("[a-]", "-", true, "- last is a member"),
        ("[-a]", "-", true, "- first is a member"),
        ("[z-a]", "m", false, "a reversed range is empty"),
        ("[*]", "*", true, "a bracketed * is literal"),
        ("[*]", "x", false, "a bracketed * is literal"),
        ("[?]x", "?x", true, "a bracketed ? is literal"),
        ("[ab", "[ab", true, "an unterminated [ is a literal ["),
        ("[ab", "a", false, "an unterminated [ is not a set"),
        ("a[", "a[", true, "a [ at the end is literal"),
        ("[!]", "[!]", true, "[!] is unterminated: three literal bytes"),
        ("\\*", "\\x", true, "no escapes: \\ is a byte and * a wildcard"),
        ("\\*", "*", false, "no escapes: the name must start with \\"),
        (".*", ".hidden", true, "a pattern with a leading dot shows hidden names"),
        (".*", "visible", false, "… and only those"),
        ("?hidden", ".hidden", false, "? does not match a leading dot"),
        ("[.]hidden", ".hidden", false, "nor does a bracket (POSIX)"),
        ("a.*", "a.b", true, "a dot inside is an ordinary byte"),
        ("*", "\u{ff}\u{fe}", true, "any bytes"),
    ];

    #[test]
    fn catalogue() {
        for &(p, n, want, why) in CATALOGUE {
            assert_eq!(m(p, n), want, "{p:?} vs {n:?}: {why}");
        }
    }

    #[test]
    fn non_utf8_bytes_and_byte_ranges() {
        let g = Glob::new(b"[\x80-\xff]*").unwrap();
        assert!(g.matches(b"\xe9t\xe9"));
        assert!(!g.matches(b"ete"));
        let g = Glob::new(b"a\xff?").unwrap();
        assert!(g.matches(b"a\xff\x00"));
    }

    #[test]
    fn wildcards_are_star_question_and_bracket() {
        for (c, want) in [("a*", true), ("a?", true), ("a[b]", true), ("a[", true), ("a]", false), ("a.txt", false), ("a\\b", false), ("{a,b}", false)] {
            assert_eq!(has_wildcards(c.as_bytes()), want, "{c}");
        }
    }

    #[test]
    fn pathological_patterns_cost_at_most_words_steps_per_name_byte() {
        let name = vec![b'a'; 255];
        // The classic backtracking worst cases, none of which match.
        let long_segment = format!("*{}b", "a".repeat(127));
        let many_stars = "a*".repeat(127) + "b";
        for p in ["a*a*a*a*a*b", "*a*a*a*a*a*a*a*a*a*a*a*a*b", long_segment.as_str(), many_stars.as_str()] {
            let g = Glob::new(p.as_bytes()).unwrap();
            let (hit, steps) = g.matches_counting(&name);
            assert!(!hit, "{p}");
            assert!(steps <= name.len() * g.words(), "{p}: {steps} steps");
            assert!(steps <= name.len() * 4, "{p}: {steps} steps");
        }
        // The same with a final byte that makes them match: still linear.
        let mut name_b = name.clone();
        *name_b.last_mut().unwrap() = b'b';
        let g = Glob::new(b"a*a*a*a*a*b").unwrap();
        assert_eq!(g.matches_counting(&name_b), (true, 255));
    }

    /// The textbook dynamic-programming matcher (O(n·m) table), written
    /// from the rules independently of the automaton: `dp[i][j]` = the
    /// first `i` name bytes match the first `j` pattern items.
    fn reference(pattern: &[u8], name: &[u8]) -> bool {
        if name.first() == Some(&b'.') && pattern.first() != Some(&b'.') {
            return false;
        }
        // Items: None for `*`, Some(set) for one byte.
        let mut items: Vec<Option<Vec<u8>>> = Vec::new();
        let mut i = 0;
        while i < pattern.len() {
            match pattern[i] {
                b'*' => {
                    items.push(None);
                    i += 1;
                }
                b'?' => {
                    items.push(Some((0..=255).collect()));
                    i += 1;
                }
                b'[' if parse_bracket(&pattern[i..]).is_some() => {
                    let (set, len) = parse_bracket(&pattern[i..]).unwrap();
                    items.push(Some((0..=255u8).filter(|&c| set_has(&set, c)).collect()));
                    i += len;
                }
                b => {
                    items.push(Some(vec![b]));
                    i += 1;
                }
            }
        }
        let (n, m) = (name.len(), items.len());
        let mut dp = vec![vec![false; m + 1]; n + 1];
        dp[0][0] = true;
        for i in 0..=n {
            for j in 1..=m {
                dp[i][j] = match &items[j - 1] {
                    None => dp[i][j - 1] || (i > 0 && dp[i - 1][j]),
                    Some(set) => i > 0 && dp[i - 1][j - 1] && set.contains(&name[i - 1]),
                };
            }
        }
        dp[n][m]
    }

    #[test]
    fn agrees_with_the_textbook_matcher_on_30000_random_cases() {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
        let mut next = |k: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % k
        };
        let pattern_bytes = b"ab.*?[]!^-";
        for _ in 0..30_000 {
            let plen = next(9) as usize;
            let pattern: Vec<u8> = (0..plen).map(|_| pattern_bytes[next(pattern_bytes.len() as u64) as usize]).collect();
            let nlen = next(9) as usize;
            let name: Vec<u8> = (0..nlen).map(|_| b"ab.]-!"[next(6) as usize]).collect();
            let g = Glob::new(&pattern).unwrap();
            assert_eq!(
                g.matches(&name),
                reference(&pattern, &name),
                "{:?} vs {:?}",
                String::from_utf8_lossy(&pattern),
                String::from_utf8_lossy(&name)
            );
        }
    }

    #[test]
    fn a_mismatch_stops_as_soon_as_no_state_is_left() {
        let g = Glob::new(b"abc*").unwrap();
        assert_eq!(g.matches_counting(b"xbc-and-a-long-tail"), (false, 1));
    }

    #[test]
    fn the_item_cap_is_255_single_byte_items_however_many_stars() {
        let at_cap = "?".repeat(GLOB_MAX_ITEMS);
        let g = Glob::new(at_cap.as_bytes()).expect("255 items compile");
        assert_eq!(g.words(), 4);
        assert!(g.matches(&[b'x'; 255]));
        assert!(!g.matches(&[b'x'; 254]));
        assert!(Glob::new(format!("{at_cap}?").as_bytes()).is_none());
        assert!(Glob::new(format!("*{}*", "[ab]".repeat(GLOB_MAX_ITEMS)).as_bytes()).is_some());
        // Item 64 and 128 straddle words: the carry between words works.
        for n in [63, 64, 65, 127, 128, 200] {
            let p = format!("{}*z", "a".repeat(n));
            let g = Glob::new(p.as_bytes()).unwrap();
            let name = format!("{}bbz", "a".repeat(n));
            assert!(g.matches(name.as_bytes()), "{n}");
            assert!(!g.matches(&name.as_bytes()[1..]), "{n}");
        }
    }
}
