//! Kafka's tools print tables with Java's `printf`: `%-Ns` columns (left-aligned, padded to
//! at least N, never cut) separated by one space, widths grown to the longest value.

/// One row: each value padded to its width (the last value unpadded when `widths` is
/// shorter than `values`).
pub fn row(widths: &[usize], values: &[&str]) -> String {
    let mut out = String::new();
    for (i, v) in values.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        match widths.get(i) {
            Some(w) => out.push_str(&format!("{v:<w$}")),
            None => out.push_str(v),
        }
    }
    out
}

/// The width of a column: at least `min`, at least the longest of `values`.
pub fn width<'a>(min: usize, values: impl Iterator<Item = &'a str>) -> usize {
    values.map(|v| v.chars().count()).fold(min, usize::max)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn columns_are_padded_like_printf() {
        assert_eq!(row(&[5, 3], &["ab", "c", "tail"]), "ab    c   tail");
        assert_eq!(row(&[2], &["long", "x"]), "long x");
        assert_eq!(width(15, ["a", "a-very-long-topic-name"].into_iter()), 22);
        assert_eq!(width(15, std::iter::empty()), 15);
    }
}
