//! The one wildcard dialect of the platform: `*` matches any run of characters.
//!
//! Storage type filters (`GET /api/events?type=job.*`), the in-process memory bus, WebSocket
//! topics (`events:job.*`) and webhook subscriptions all filter event types with this function,
//! so a pattern means the same thing everywhere.

/// Returns whether `text` matches `pattern`, where `*` matches any run of characters (including
/// none, and including dots) and every other character matches itself.
///
/// `job.*` matches `job.started` and `job.step.done` but not `job`; `*` matches everything;
/// `a.*.c` matches `a.b.c` and `a.b.x.c`. There is deliberately no `?`, `[...]` or escaping:
/// event type names cannot contain those characters, so they would only add surprises.
///
/// The match is iterative (greedy with backtracking to the last `*`), runs in
/// O(len(pattern) × len(text)) at worst, never recurses and never allocates — patterns come
/// from untrusted HTTP query strings and WebSocket messages.
///
/// ```
/// use events_envelope::glob_match;
/// assert!(glob_match("job.*", "job.step.done"));
/// assert!(!glob_match("job.*", "jobs.started"));
/// ```
pub fn glob_match(pattern: &str, text: &str) -> bool {
    // Byte-wise matching is exact for UTF-8: `*` is ASCII, and a literal byte sequence can only
    // match a whole character sequence because UTF-8 is self-synchronising.
    let pattern = pattern.as_bytes();
    let text = text.as_bytes();
    let (mut p, mut t) = (0usize, 0usize);
    // Position of the last `*` seen in the pattern and the text position it currently covers up to.
    let mut backtrack: Option<(usize, usize)> = None;
    while t < text.len() {
        match pattern.get(p) {
            Some(b'*') => {
                backtrack = Some((p, t));
                p += 1;
            }
            Some(&c) if c == text[t] => {
                p += 1;
                t += 1;
            }
            _ => match backtrack {
                // Let the last star swallow one more byte and retry from just after it.
                Some((star, covered)) => {
                    p = star + 1;
                    t = covered + 1;
                    backtrack = Some((star, covered + 1));
                }
                None => return false,
            },
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::glob_match;
    use proptest::prelude::*;

    /// Obviously-correct recursive definition, used as the oracle for the iterative matcher.
    fn reference(pattern: &[char], text: &[char]) -> bool {
        match pattern.split_first() {
            None => text.is_empty(),
            Some(('*', rest)) => (0..=text.len()).any(|skip| reference(rest, &text[skip..])),
            Some((c, rest)) => text.first() == Some(c) && reference(rest, &text[1..]),
        }
    }

    #[test]
    fn literal_patterns_match_only_themselves() {
        assert!(glob_match("job.completed", "job.completed"));
        assert!(!glob_match("job.completed", "job.completed2"));
        assert!(!glob_match("job.completed", "job.complete"));
        assert!(glob_match("", ""));
        assert!(!glob_match("", "a"));
    }

    #[test]
    fn star_matches_any_run_including_dots() {
        assert!(glob_match("*", ""));
        assert!(glob_match("*", "anything.at.all"));
        assert!(glob_match("job.*", "job.started"));
        assert!(glob_match("job.*", "job.step.done"));
        assert!(glob_match("job.*", "job."));
        assert!(!glob_match("job.*", "job"));
        assert!(!glob_match("job.*", "jobs.started"));
        assert!(glob_match("a.*.c", "a.b.c"));
        assert!(glob_match("a.*.c", "a.b.x.c"));
        assert!(!glob_match("a.*.c", "a.c"));
        assert!(glob_match("*.crashed", "system.worker.crashed"));
        assert!(glob_match("**", "x"));
        assert!(glob_match("a*b*c", "aXXbYYc"));
        assert!(!glob_match("a*b*c", "aXXbYY"));
    }

    #[test]
    fn other_glob_metacharacters_are_literal() {
        assert!(glob_match("a?c", "a?c"));
        assert!(!glob_match("a?c", "abc"));
        assert!(glob_match("[ab]", "[ab]"));
        assert!(!glob_match("[ab]", "a"));
    }

    #[test]
    fn unicode_is_matched_per_character() {
        assert!(glob_match("é*ü", "éxyzü"));
        assert!(glob_match("*ü", "ü"));
        assert!(!glob_match("é*", "e"));
    }

    #[test]
    fn pathological_pattern_stays_fast() {
        // Exponential for a naive recursive matcher; quadratic at worst here.
        let text = "a".repeat(2_000);
        let pattern = format!("{}b", "*a".repeat(50));
        assert!(!glob_match(&pattern, &text));
    }

    proptest! {
        #[test]
        fn agrees_with_recursive_reference(
            pattern in "[ab.*é]{0,8}",
            text in "[ab.é]{0,12}",
        ) {
            let p: Vec<char> = pattern.chars().collect();
            let t: Vec<char> = text.chars().collect();
            prop_assert_eq!(glob_match(&pattern, &text), reference(&p, &t));
        }

        #[test]
        fn star_prefix_and_suffix_match_their_text(prefix in "[a-z.]{0,6}", rest in "[a-z.]{0,6}") {
            let text = format!("{prefix}{rest}");
            let starred = format!("{prefix}*");
            prop_assert!(glob_match(&starred, &text));
            prop_assert!(glob_match(&text, &text));
        }
    }
}
