//! Text from the server, made safe to print on a terminal.
//!
//! A status message, a metadata value, a service or file name: the server chooses them, and
//! a terminal acts on the control characters in what it prints (ESC starts a sequence that
//! can recolour, move the cursor, set the window title or, on some terminals, answer back).
//! So every such character is printed as an escape, `\u{1b}`, instead. JSON output needs none
//! of this: serde_json escapes control characters in strings itself.

use std::borrow::Cow;
use std::fmt::Write as _;

/// `text` with each control character (C0, DEL and C1, newlines and tabs included) and each
/// bidirectional-override character written as a `\u{..}` escape: for text from the server
/// that belongs on one line (a status message, a metadata value, a name).
pub fn escape(text: &str) -> Cow<'_, str> {
    escape_unless(text, |_| false)
}

/// As [`escape`], but keeping line breaks (`\n`): for a whole message of several lines
/// (an error with a hint, `describe`'s output) that may hold text from the server.
pub fn escape_keeping_lines(text: &str) -> Cow<'_, str> {
    escape_unless(text, |c| c == '\n')
}

fn escape_unless(text: &str, keep: impl Fn(char) -> bool) -> Cow<'_, str> {
    let unsafe_char = |c: char| is_unsafe(c) && !keep(c);
    if !text.chars().any(unsafe_char) {
        return Cow::Borrowed(text);
    }
    let mut escaped = String::with_capacity(text.len() + 16);
    for c in text.chars() {
        if unsafe_char(c) {
            // Writing to a String cannot fail.
            let _ = write!(escaped, "\\u{{{:x}}}", u32::from(c));
        } else {
            escaped.push(c);
        }
    }
    Cow::Owned(escaped)
}

/// Whether a terminal could act on `c` rather than show it: a control character, or one of
/// the bidirectional marks, embeddings, overrides and isolates that reorder what follows.
fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200e}' | '\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_become_escapes() {
        assert_eq!(escape("plain text, ünïcode"), "plain text, ünïcode");
        assert!(matches!(escape("plain"), Cow::Borrowed(_)));
        assert_eq!(escape("\x1b[31mred\x07"), "\\u{1b}[31mred\\u{7}");
        assert_eq!(escape("a\u{9b}b\u{7f}c"), "a\\u{9b}b\\u{7f}c");
        assert_eq!(escape("tab\tline\r\n"), "tab\\u{9}line\\u{d}\\u{a}");
        assert_eq!(escape("\u{202e}txt"), "\\u{202e}txt");
    }

    #[test]
    fn line_breaks_can_be_kept() {
        assert_eq!(
            escape_keeping_lines("one\ntwo\x1b]0;title\x07\r\n"),
            "one\ntwo\\u{1b}]0;title\\u{7}\\u{d}\n"
        );
    }
}
