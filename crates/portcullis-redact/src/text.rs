//! Byte-offset helpers shared by the detectors: char boundaries, and the "is this token
//! isolated" checks that keep a detector from matching inside a longer word or number.

/// The largest char boundary at or below `index` (clamped to the text's length).
pub(crate) fn floor_boundary(text: &str, index: usize) -> usize {
    if index >= text.len() {
        return text.len();
    }
    let mut index = index;
    while !text.is_char_boundary(index) {
        index -= 1;
    }
    index
}

/// The smallest char boundary at or above `index` (clamped to the text's length).
pub(crate) fn ceil_boundary(text: &str, index: usize) -> usize {
    if index >= text.len() {
        return text.len();
    }
    let mut index = index;
    while !text.is_char_boundary(index) {
        index += 1;
    }
    index
}

/// The byte before `index`, if any.
pub(crate) fn byte_before(text: &str, index: usize) -> Option<u8> {
    index.checked_sub(1).map(|i| text.as_bytes()[i])
}

/// The byte at `index`, if any.
pub(crate) fn byte_at(text: &str, index: usize) -> Option<u8> {
    text.as_bytes().get(index).copied()
}

/// True when the span is not glued to a letter or digit on either side.
pub(crate) fn alnum_isolated(text: &str, start: usize, end: usize) -> bool {
    !byte_before(text, start).is_some_and(|b| b.is_ascii_alphanumeric())
        && !byte_at(text, end).is_some_and(|b| b.is_ascii_alphanumeric())
}

/// True when a number-like span does not continue a longer number on either side: no letter
/// or digit next to it, and no separator (`-`, `.`, `/`) that joins it to another digit
/// (`12-123-45-6789`, `1.2.3.4.5`).
pub(crate) fn number_isolated(text: &str, start: usize, end: usize) -> bool {
    if !alnum_isolated(text, start, end) {
        return false;
    }
    let joined_before = byte_before(text, start)
        .is_some_and(|b| matches!(b, b'-' | b'.' | b'/' | b'_'))
        && start >= 2
        && text.as_bytes()[start - 2].is_ascii_digit();
    let joined_after = byte_at(text, end).is_some_and(|b| matches!(b, b'-' | b'.' | b'/' | b'_'))
        && byte_at(text, end + 1).is_some_and(|b| b.is_ascii_digit());
    !joined_before && !joined_after
}

/// Shannon entropy of the string's bytes, in bits per byte.
pub(crate) fn shannon_entropy(value: &str) -> f64 {
    let bytes = value.as_bytes();
    if bytes.is_empty() {
        return 0.0;
    }
    let mut counts = [0u32; 256];
    for &b in bytes {
        counts[usize::from(b)] += 1;
    }
    let len = bytes.len() as f64;
    counts
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / len;
            -p * p.log2()
        })
        .sum()
}

/// How many of the classes lower case, upper case and digit occur in the string.
pub(crate) fn char_classes(value: &str) -> usize {
    let lower = value.bytes().any(|b| b.is_ascii_lowercase());
    let upper = value.bytes().any(|b| b.is_ascii_uppercase());
    let digit = value.bytes().any(|b| b.is_ascii_digit());
    usize::from(lower) + usize::from(upper) + usize::from(digit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn boundaries_round_towards_char_edges() {
        let text = "aé€b";
        assert_eq!(floor_boundary(text, 2), 1);
        assert_eq!(ceil_boundary(text, 2), 3);
        assert_eq!(floor_boundary(text, 99), text.len());
        assert_eq!(ceil_boundary(text, 4), 6);
    }

    #[test]
    fn isolation_rejects_glued_numbers() {
        let text = "x 123-45-6789 y";
        assert!(number_isolated(text, 2, 13));
        let glued = "12-123-45-6789";
        assert!(!number_isolated(glued, 3, 14));
        assert!(!alnum_isolated("a123", 1, 4));
    }

    #[test]
    fn entropy_orders_random_above_repetitive() {
        assert_eq!(shannon_entropy("aaaaaaaa"), 0.0);
        assert!(shannon_entropy("q8Zr2LxT0pWv9NbK3mHy") > 4.0);
        assert_eq!(char_classes("abc123"), 2);
    }
}
