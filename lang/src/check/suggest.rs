//! "Did you mean" suggestions: the nearest name by edit distance.

/// The optimal-string-alignment distance between `a` and `b` (Levenshtein plus the swap of
/// two adjacent characters, so `mena` is one edit from `mean`).
pub(crate) fn distance(a: &str, b: &str) -> usize {
    let a: Vec<char> = a.chars().collect();
    let b: Vec<char> = b.chars().collect();
    let width = b.len() + 1;
    // Three rows are enough: the current one, the previous one and the one before it
    // (needed for transpositions).
    let mut before: Vec<usize> = vec![0; width];
    let mut prev: Vec<usize> = (0..width).collect();
    let mut cur: Vec<usize> = vec![0; width];
    for i in 1..=a.len() {
        cur[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (prev[j] + 1).min(cur[j - 1] + 1).min(prev[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(before[j - 2] + 1);
            }
            cur[j] = best;
        }
        std::mem::swap(&mut before, &mut prev);
        std::mem::swap(&mut prev, &mut cur);
    }
    prev[b.len()]
}

/// The candidate closest to `name`, when it is close enough to be a likely typo (at most
/// one edit for short names, a third of the length for longer ones). Ties go to the
/// alphabetically first candidate, so suggestions do not depend on hash order.
pub(crate) fn nearest<'a, I>(name: &str, candidates: I) -> Option<String>
where
    I: IntoIterator<Item = &'a str>,
{
    let limit = (name.chars().count() / 3).max(1);
    let mut best: Option<(usize, &str)> = None;
    for cand in candidates {
        if cand == name || cand.starts_with('#') {
            continue;
        }
        let d = distance(name, cand);
        if d > limit {
            continue;
        }
        let better = match best {
            None => true,
            Some((bd, bn)) => d < bd || (d == bd && cand < bn),
        };
        if better {
            best = Some((d, cand));
        }
    }
    best.map(|(_, n)| n.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distances() {
        for (a, b, d) in [
            ("mena", "mean", 1),
            ("mean", "mean", 0),
            ("", "abc", 3),
            ("kitten", "sitting", 3),
            ("relu", "rleu", 1),
            ("x", "", 1),
        ] {
            assert_eq!(distance(a, b), d, "{a} / {b}");
        }
    }

    #[test]
    fn nearest_names() {
        let names = ["mean", "max", "min", "matmul", "x"];
        assert_eq!(nearest("mena", names).as_deref(), Some("mean"));
        assert_eq!(nearest("mxa", names).as_deref(), Some("max"));
        assert_eq!(nearest("zzzzzz", names), None);
        assert_eq!(nearest("y", names).as_deref(), Some("x"));
    }
}
