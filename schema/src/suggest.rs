//! Close names for a name that is not there.

use crate::escape::escape;

/// `; did you mean `x`? (services: a, b, c)` for an unknown `name` among `known`, which are
/// escaped: they may be the server's.
pub fn suggestions(name: &str, known: &[String], what: &str) -> String {
    let mut text = String::new();
    let lower = name.to_ascii_lowercase();
    let close = known
        .iter()
        .min_by_key(|k| distance(&lower, &k.to_ascii_lowercase()));
    if let Some(close) = close {
        let d = distance(&lower, &close.to_ascii_lowercase());
        if d <= (name.len() / 3).max(2) {
            text.push_str(&format!("; did you mean `{}`?", escape(close)));
        }
    }
    if known.is_empty() {
        text.push_str(&format!(" (there are no {what})"));
    } else {
        let known: Vec<_> = known.iter().map(|k| escape(k)).collect();
        text.push_str(&format!(" ({what}: {})", known.join(", ")));
    }
    text
}

/// Levenshtein distance, for suggestions.
fn distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut previous = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous + usize::from(ca != *cb);
            previous = row[j + 1];
            row[j + 1] = substitute.min(previous + 1).min(row[j] + 1);
        }
    }
    row[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suggests_the_closest_name() {
        let known = vec!["Unary".to_owned(), "ServerStream".to_owned()];
        assert!(suggestions("Unray", &known, "methods").contains("did you mean `Unary`?"));
        assert!(!suggestions("Zzzzzzzzzz", &known, "methods").contains("did you mean"));
        assert_eq!(distance("kitten", "sitting"), 3);
    }
}
