//! What a call to `string.find`, `match`, `gmatch` or `gsub` will cost, counted before Lua's own
//! matcher runs, so that a pattern cannot run past the plugin's instruction limit.
//!
//! Why: Lua's pattern matcher is C code, and the instruction limit is a count hook on the Lua VM,
//! which does not fire inside C. Patterns backtrack: `string.find(string.rep("a", 3000),
//! ".-.-.-.-.-.-b")` runs for longer than the universe has existed, and a worker stuck there
//! cannot dead-letter the message or stop. Any log line can reach such a pattern.
//!
//! How: this module replays Lua 5.4's matching algorithm (lstrlib.c's `match`, `max_expand`,
//! `min_expand`, `lmemfind` and the loops of find, gmatch and gsub) step for step, without
//! building any result, and stops as soon as the steps exceed what the call has left of its
//! budget. The sandbox charges the steps to the instruction budget and then lets Lua's own
//! function do the work, so results and error messages stay exactly Lua's. The replay is only
//! an account: where it is unsure (a malformed pattern, a pattern too complex for Lua's
//! recursion limit) it stops counting and Lua raises its own error after no more work than was
//! counted.

/// Lua's limit on the matcher's recursion (`MAXCCALLS` in lstrlib.c).
const MAX_DEPTH: u32 = 200;
/// Lua's limit on captures per pattern (`LUA_MAXCAPTURES`).
const MAX_CAPTURES: usize = 32;
const CAP_UNFINISHED: isize = -1;
const CAP_POSITION: isize = -2;
/// The characters that make a `find` pattern a pattern rather than a plain string.
const SPECIALS: &[u8] = b"^$*+?.([%-";

/// Which library function is called, with the arguments that decide how much it searches.
#[derive(Debug, Clone, Copy)]
pub enum Call {
    /// `string.find(s, p, init, plain)`.
    Find { init: Option<i64>, plain: bool },
    /// `string.match(s, p, init)`.
    Match { init: Option<i64> },
    /// `string.gmatch(s, p, init)`: the whole iteration, as a loop over it may run to the end.
    Gmatch { init: Option<i64> },
    /// `string.gsub(s, p, repl, n)`; `repl_len` is the length of a string replacement, which
    /// Lua walks once per match (an empty match writes nothing, so the memory limit does not
    /// bound it).
    Gsub { max: Option<i64>, repl_len: usize },
}

/// The call would take more steps than it was allowed.
#[derive(Debug, PartialEq, Eq)]
pub struct OverBudget;

/// Why the replay stopped early.
enum Stop {
    /// The budget is used up.
    Over,
    /// Lua will raise an error here (malformed pattern, bad capture, too complex): the work up
    /// to this point is counted, and Lua stops at the same point.
    Invalid,
}

type Step<T> = Result<T, Stop>;

/// The steps `call` on subject `s` and pattern `p` takes, at most `allowed`.
pub fn cost(call: Call, s: &[u8], p: &[u8], allowed: u64) -> Result<u64, OverBudget> {
    let mut m = Replay {
        src: s,
        pat: p,
        depth: MAX_DEPTH,
        level: 0,
        capture: [(0, 0); MAX_CAPTURES],
        steps: 0,
        allowed,
    };
    match m.run(call) {
        Ok(()) | Err(Stop::Invalid) => Ok(m.steps),
        Err(Stop::Over) => Err(OverBudget),
    }
}

struct Replay<'a> {
    src: &'a [u8],
    /// The pattern, without the `^` anchor where the call strips it.
    pat: &'a [u8],
    depth: u32,
    level: usize,
    /// (start, length or CAP_*) of each capture.
    capture: [(usize, isize); MAX_CAPTURES],
    steps: u64,
    allowed: u64,
}

/// Lua's `posrelatI` minus one: a 1-based, possibly negative, start position as an offset.
fn start_offset(init: Option<i64>, len: usize) -> usize {
    let pos = init.unwrap_or(1);
    let len_i = i64::try_from(len).unwrap_or(i64::MAX);
    let one_based = if pos > 0 {
        pos
    } else if pos == 0 || pos < -len_i {
        1
    } else {
        len_i + pos + 1
    };
    usize::try_from(one_based - 1).unwrap_or(usize::MAX)
}

impl Replay<'_> {
    fn charge(&mut self, n: u64) -> Step<()> {
        self.steps = self.steps.saturating_add(n);
        if self.steps > self.allowed {
            Err(Stop::Over)
        } else {
            Ok(())
        }
    }

    /// The pattern byte at `i`, or 0 past its end (Lua's strings end in a NUL the matcher
    /// reads).
    fn pc(&self, i: usize) -> u8 {
        self.pat.get(i).copied().unwrap_or(0)
    }

    fn sc(&self, i: usize) -> u8 {
        self.src.get(i).copied().unwrap_or(0)
    }

    /// The search loops of the library functions around `do_match`.
    fn run(&mut self, call: Call) -> Step<()> {
        let len = self.src.len();
        match call {
            Call::Find { init, plain } => {
                let init = start_offset(init, len);
                if init > len {
                    return Ok(());
                }
                if plain || !self.pat.iter().any(|b| SPECIALS.contains(b)) {
                    return self.plain_find(init);
                }
                self.anchored_search(init)
            }
            Call::Match { init } => {
                let init = start_offset(init, len);
                if init > len {
                    return Ok(());
                }
                self.anchored_search(init)
            }
            Call::Gmatch { init } => {
                // gmatch does not treat `^` as an anchor.
                let mut src = start_offset(init, len);
                let mut last = None;
                while src <= len {
                    self.reset();
                    match self.do_match(src, 0)? {
                        Some(e) if Some(e) != last => {
                            src = e;
                            last = Some(e);
                        }
                        _ => src += 1,
                    }
                }
                Ok(())
            }
            Call::Gsub { max, repl_len } => {
                let anchor = self.strip_anchor();
                let max = max.unwrap_or(i64::try_from(len).unwrap_or(i64::MAX - 1) + 1);
                let (mut src, mut n, mut last) = (0, 0i64, None);
                while n < max {
                    self.reset();
                    match self.do_match(src, 0)? {
                        Some(e) if Some(e) != last => {
                            n += 1;
                            self.charge(1 + repl_len as u64)?;
                            src = e;
                            last = Some(e);
                        }
                        _ if src < len => {
                            self.charge(1)?;
                            src += 1;
                        }
                        _ => break,
                    }
                    if anchor {
                        break;
                    }
                }
                Ok(())
            }
        }
    }

    fn strip_anchor(&mut self) -> bool {
        let anchor = self.pat.first() == Some(&b'^');
        if anchor {
            self.pat = &self.pat[1..];
        }
        anchor
    }

    /// find and match: try each start from `init` (only `init` when anchored) until one
    /// matches.
    fn anchored_search(&mut self, init: usize) -> Step<()> {
        let anchor = self.strip_anchor();
        let mut s1 = init;
        loop {
            self.reset();
            if self.do_match(s1, 0)?.is_some() || anchor || s1 >= self.src.len() {
                return Ok(());
            }
            s1 += 1;
        }
    }

    /// Lua's `lmemfind`: each candidate found by `memchr` costs one step and the bytes compared
    /// after it; the scanning itself a step per 64 bytes (memchr is vectorised).
    fn plain_find(&mut self, init: usize) -> Step<()> {
        let (hay, needle) = (&self.src[init..], self.pat);
        let Some((&first, rest)) = needle.split_first() else {
            return Ok(());
        };
        if needle.len() > hay.len() {
            return Ok(());
        }
        let last_start = hay.len() - needle.len();
        let mut at = 0;
        while at <= last_start {
            let Some(off) = hay[at..=last_start].iter().position(|&b| b == first) else {
                self.charge((last_start - at) as u64 / 64)?;
                return Ok(());
            };
            let cand = at + off;
            let same = hay[cand + 1..]
                .iter()
                .zip(rest)
                .take_while(|(a, b)| a == b)
                .count();
            self.charge(1 + off as u64 / 64 + same as u64)?;
            if same == rest.len() {
                return Ok(());
            }
            at = cand + 1;
        }
        Ok(())
    }

    fn reset(&mut self) {
        self.level = 0;
        self.depth = MAX_DEPTH;
    }

    /// Lua's `classEnd`: the index just past the single-character class at `p`.
    fn class_end(&self, mut p: usize) -> Step<usize> {
        let c = self.pc(p);
        p += 1;
        match c {
            b'%' => {
                if p >= self.pat.len() {
                    return Err(Stop::Invalid);
                }
                Ok(p + 1)
            }
            b'[' => {
                if self.pc(p) == b'^' {
                    p += 1;
                }
                // The first character is part of the set even when it is `]`.
                loop {
                    if p >= self.pat.len() {
                        return Err(Stop::Invalid);
                    }
                    let c = self.pc(p);
                    p += 1;
                    if c == b'%' && p < self.pat.len() {
                        p += 1;
                    }
                    if self.pc(p) == b']' {
                        break;
                    }
                }
                Ok(p + 1)
            }
            _ => Ok(p),
        }
    }

    /// Lua's `singlematch`, charged by the width of the class it tests (a set is scanned).
    fn single(&mut self, s: usize, p: usize, ep: usize) -> Step<bool> {
        if s >= self.src.len() {
            return Ok(false);
        }
        let c = self.src[s];
        Ok(match self.pc(p) {
            b'.' => {
                self.charge(1)?;
                true
            }
            b'%' => {
                self.charge(1)?;
                class(c, self.pc(p + 1))
            }
            b'[' => {
                self.charge((ep - p) as u64)?;
                self.bracket(c, p, ep - 1)
            }
            lit => {
                self.charge(1)?;
                lit == c
            }
        })
    }

    /// Lua's `matchbracketclass`: the set from `[` at `p` to `]` at `ec`.
    fn bracket(&self, c: u8, mut p: usize, ec: usize) -> bool {
        let mut sig = true;
        if self.pc(p + 1) == b'^' {
            sig = false;
            p += 1;
        }
        loop {
            p += 1;
            if p >= ec {
                return !sig;
            }
            if self.pc(p) == b'%' {
                p += 1;
                if class(c, self.pc(p)) {
                    return sig;
                }
            } else if self.pc(p + 1) == b'-' && p + 2 < ec {
                p += 2;
                if self.pc(p - 2) <= c && c <= self.pc(p) {
                    return sig;
                }
            } else if self.pc(p) == c {
                return sig;
            }
        }
    }

    /// Lua's `match`: the end of the match of the pattern from `p` at subject offset `s`.
    fn do_match(&mut self, mut s: usize, mut p: usize) -> Step<Option<usize>> {
        if self.depth == 0 {
            return Err(Stop::Invalid);
        }
        self.depth -= 1;
        let result = loop {
            self.charge(1)?;
            if p >= self.pat.len() {
                break Some(s);
            }
            match self.pc(p) {
                b'(' => {
                    break if self.pc(p + 1) == b')' {
                        self.start_capture(s, p + 2, CAP_POSITION)?
                    } else {
                        self.start_capture(s, p + 1, CAP_UNFINISHED)?
                    };
                }
                b')' => break self.end_capture(s, p + 1)?,
                b'$' if p + 1 == self.pat.len() => {
                    break (s == self.src.len()).then_some(s);
                }
                b'%' if self.pc(p + 1) == b'b' => match self.balance(s, p + 2)? {
                    Some(e) => {
                        s = e;
                        p += 4;
                    }
                    None => break None,
                },
                b'%' if self.pc(p + 1) == b'f' => {
                    p += 2;
                    if self.pc(p) != b'[' {
                        return Err(Stop::Invalid);
                    }
                    let ep = self.class_end(p)?;
                    let previous = if s == 0 { 0 } else { self.src[s - 1] };
                    self.charge((ep - p) as u64)?;
                    if !self.bracket(previous, p, ep - 1) && self.bracket(self.sc(s), p, ep - 1) {
                        p = ep;
                    } else {
                        break None;
                    }
                }
                b'%' if self.pc(p + 1).is_ascii_digit() => {
                    match self.match_capture(s, self.pc(p + 1))? {
                        Some(e) => {
                            s = e;
                            p += 2;
                        }
                        None => break None,
                    }
                }
                _ => {
                    let ep = self.class_end(p)?;
                    let after = self.pc(ep);
                    if !self.single(s, p, ep)? {
                        if matches!(after, b'*' | b'?' | b'-') {
                            p = ep + 1;
                            continue;
                        }
                        break None;
                    }
                    match after {
                        b'?' => match self.do_match(s + 1, ep + 1)? {
                            Some(e) => break Some(e),
                            None => p = ep + 1,
                        },
                        b'+' => break self.max_expand(s + 1, p, ep)?,
                        b'*' => break self.max_expand(s, p, ep)?,
                        b'-' => break self.min_expand(s, p, ep)?,
                        _ => {
                            s += 1;
                            p = ep;
                        }
                    }
                }
            }
        };
        self.depth += 1;
        Ok(result)
    }

    fn max_expand(&mut self, s: usize, p: usize, ep: usize) -> Step<Option<usize>> {
        let mut i = 0;
        while self.single(s + i, p, ep)? {
            i += 1;
        }
        loop {
            if let Some(e) = self.do_match(s + i, ep + 1)? {
                return Ok(Some(e));
            }
            if i == 0 {
                return Ok(None);
            }
            i -= 1;
        }
    }

    fn min_expand(&mut self, mut s: usize, p: usize, ep: usize) -> Step<Option<usize>> {
        loop {
            if let Some(e) = self.do_match(s, ep + 1)? {
                return Ok(Some(e));
            }
            if !self.single(s, p, ep)? {
                return Ok(None);
            }
            s += 1;
        }
    }

    fn start_capture(&mut self, s: usize, p: usize, what: isize) -> Step<Option<usize>> {
        if self.level >= MAX_CAPTURES {
            return Err(Stop::Invalid);
        }
        self.capture[self.level] = (s, what);
        self.level += 1;
        let res = self.do_match(s, p)?;
        if res.is_none() {
            self.level -= 1;
        }
        Ok(res)
    }

    fn end_capture(&mut self, s: usize, p: usize) -> Step<Option<usize>> {
        let Some(l) = (0..self.level)
            .rev()
            .find(|&l| self.capture[l].1 == CAP_UNFINISHED)
        else {
            return Err(Stop::Invalid);
        };
        self.capture[l].1 = (s - self.capture[l].0) as isize;
        let res = self.do_match(s, p)?;
        if res.is_none() {
            self.capture[l].1 = CAP_UNFINISHED;
        }
        Ok(res)
    }

    /// `%1`..`%9`: the text of an earlier capture again.
    fn match_capture(&mut self, s: usize, digit: u8) -> Step<Option<usize>> {
        let l = usize::from(digit).wrapping_sub(usize::from(b'1'));
        if l >= self.level || self.capture[l].1 == CAP_UNFINISHED {
            return Err(Stop::Invalid);
        }
        let (start, len) = self.capture[l];
        // A position capture has no text; Lua compares its (negative) length as a huge size,
        // which never fits.
        let Ok(len) = usize::try_from(len) else {
            return Ok(None);
        };
        self.charge(1 + len as u64 / 16)?;
        let fits =
            self.src.len() - s >= len && self.src[start..start + len] == self.src[s..s + len];
        Ok(fits.then_some(s + len))
    }

    /// `%bxy`: a balanced run from `x` to its matching `y`.
    fn balance(&mut self, s: usize, p: usize) -> Step<Option<usize>> {
        if p + 1 >= self.pat.len() {
            return Err(Stop::Invalid);
        }
        if self.sc(s) != self.pc(p) {
            return Ok(None);
        }
        let (open, close) = (self.pc(p), self.pc(p + 1));
        let mut depth = 1;
        for (i, &c) in self.src.iter().enumerate().skip(s + 1) {
            self.charge(1)?;
            if c == close {
                depth -= 1;
                if depth == 0 {
                    return Ok(Some(i + 1));
                }
            } else if c == open {
                depth += 1;
            }
        }
        Ok(None)
    }
}

/// Lua's `match_class` in the C locale: `%a`, `%d`, ... (upper case for the complement), or
/// the character itself.
fn class(c: u8, cl: u8) -> bool {
    let res = match cl.to_ascii_lowercase() {
        b'a' => c.is_ascii_alphabetic(),
        b'c' => c.is_ascii_control(),
        b'd' => c.is_ascii_digit(),
        b'g' => c.is_ascii_graphic(),
        b'l' => c.is_ascii_lowercase(),
        b'p' => c.is_ascii_punctuation(),
        // C's isspace includes the vertical tab, Rust's is_ascii_whitespace does not.
        b's' => c == b' ' || (9..=13).contains(&c),
        b'u' => c.is_ascii_uppercase(),
        b'w' => c.is_ascii_alphanumeric(),
        b'x' => c.is_ascii_hexdigit(),
        _ => return cl == c,
    };
    if cl.is_ascii_uppercase() {
        !res
    } else {
        res
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find(s: &str, p: &str) -> Result<u64, OverBudget> {
        cost(
            Call::Find {
                init: None,
                plain: false,
            },
            s.as_bytes(),
            p.as_bytes(),
            10_000_000,
        )
    }

    #[test]
    fn ordinary_patterns_cost_about_the_length_of_the_subject() {
        let line = r#"192.0.2.1 - - [01/Jan/2024:00:00:01 +0000] "GET /id/eprint/1/1/a.pdf HTTP/1.1" 200 123 "-" "Mozilla/5.0""#;
        for p in [
            r#"^(%S+) %S+ %S+ %[([^%]]+)%] "(%u+) (%S+)"#,
            "/id/eprint/(%d+)/",
            r#""([^"]*)"$"#,
            "%f[%w]%w+",
            "%b[]",
        ] {
            let n = find(line, p).unwrap();
            assert!(n > 0 && n < 20 * line.len() as u64, "{p}: {n}");
        }
    }

    #[test]
    fn backtracking_patterns_are_over_budget() {
        let s = "a".repeat(3000);
        assert_eq!(find(&s, ".-.-.-.-.-.-b"), Err(OverBudget));
        assert_eq!(find(&s, "(.*)(.*)(.*)%1%2%3b"), Err(OverBudget));
        for call in [
            Call::Match { init: None },
            Call::Gmatch { init: None },
            Call::Gsub {
                max: None,
                repl_len: 0,
            },
        ] {
            assert_eq!(
                cost(call, s.as_bytes(), b".-.-.-.-b", 10_000_000),
                Err(OverBudget),
                "{call:?}"
            );
        }
    }

    #[test]
    fn plain_find_counts_the_comparisons() {
        let hay = "a".repeat(100_000);
        let needle = format!("{}b", "a".repeat(10_000));
        let plain = Call::Find {
            init: None,
            plain: true,
        };
        assert_eq!(
            cost(plain, hay.as_bytes(), needle.as_bytes(), 10_000_000),
            Err(OverBudget)
        );
        // A needle without specials is searched plainly even without `plain`.
        assert_eq!(find(&hay, &needle), Err(OverBudget));
        assert!(cost(plain, hay.as_bytes(), b"b", 10_000_000).unwrap() < 5_000);
    }

    #[test]
    fn a_malformed_pattern_stops_the_count_where_lua_raises_its_error() {
        for p in ["[a", "%", "(()", "%1", "%b(", "%fx", "a)"] {
            assert!(find("some text", p).unwrap() < 100, "{p}");
        }
        // Deep recursion ends where Lua says "pattern too complex".
        let deep = "a?".repeat(300);
        assert!(find(&"a".repeat(300), &deep).is_ok());
    }

    #[test]
    fn anchors_and_start_positions_bound_the_search() {
        let s = "x".repeat(10_000);
        let anchored = find(&s, "^y+").unwrap();
        let free = find(&s, "y+").unwrap();
        assert!(anchored < 5 && free > 10_000, "{anchored} {free}");
        let late = cost(
            Call::Match { init: Some(-10) },
            s.as_bytes(),
            b"y+",
            10_000_000,
        )
        .unwrap();
        assert!(late < 50, "{late}");
        // Beyond the end: nothing is searched.
        assert_eq!(
            cost(Call::Match { init: Some(20_000) }, s.as_bytes(), b"y", 100),
            Ok(0)
        );
    }

    #[test]
    fn classes_follow_the_c_locale() {
        assert!(class(0x0b, b's'), "vertical tab is a space in C");
        assert!(class(b'a', b'S') && !class(b' ', b'S'));
        assert!(class(b'!', b'p') && !class(b'a', b'p'));
        assert!(!class(0xe9, b'a'), "no letters beyond ASCII");
        assert!(class(b'.', b'.'));
    }
}
