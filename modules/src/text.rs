//! Text normalisation for word matching and similarity: full-width forms folded to half-width
//! (U+FF01..U+FF5E to ASCII, the ideographic space dropped), every whitespace character
//! dropped, ASCII letters lower-cased. Written by hand because it is four lines and NFKC (the
//! `unicode-normalization` crate) would also rewrite characters staff type on purpose (e.g.
//! compatibility ideographs and circled digits).

use std::collections::HashSet;

/// The normalised form of `s`.
pub fn normalize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        let c = match c as u32 {
            0xFF01..=0xFF5E => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
            _ => c,
        };
        if c.is_whitespace() {
            continue;
        }
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// The set of character `n`-grams of the normalised text (the whole text when shorter).
pub fn ngrams(s: &str, n: usize) -> HashSet<String> {
    let chars: Vec<char> = normalize(s)
        .chars()
        .filter(|c| {
            !c.is_ascii_punctuation()
                && !matches!(
                    c,
                    '，' | '。' | '、' | '：' | '；' | '（' | '）' | '“' | '”'
                )
        })
        .collect();
    let n = n.max(1);
    if chars.len() <= n {
        return std::iter::once(chars.iter().collect())
            .filter(|s: &String| !s.is_empty())
            .collect();
    }
    chars.windows(n).map(|w| w.iter().collect()).collect()
}

/// Dice similarity of the character `n`-gram sets of two texts: 0 (nothing shared) to 1.
pub fn similarity(a: &str, b: &str, n: usize) -> f64 {
    let (x, y) = (ngrams(a, n), ngrams(b, n));
    if x.is_empty() || y.is_empty() {
        return 0.0;
    }
    let shared = x.intersection(&y).count();
    2.0 * shared as f64 / (x.len() + y.len()) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn full_width_and_whitespace_are_folded() {
        assert_eq!(normalize("ＡＢＣ　１２３ 扬 言\t跳楼"), "abc123扬言跳楼");
        assert_eq!(normalize("Ｘｉｎ Fang！"), "xinfang!");
    }

    #[test]
    fn similar_summaries_score_high_unrelated_low() {
        let a = "小区电梯近半年频繁故障停运，多次发生困人事件";
        let b = "小区电梯半年来频繁故障停运，多次困人";
        let c = "开发商逾期交房，拒绝支付违约金";
        assert!(similarity(a, b, 2) > 0.6, "{}", similarity(a, b, 2));
        assert!(similarity(a, c, 2) < 0.1, "{}", similarity(a, c, 2));
        assert_eq!(similarity(a, a, 2), 1.0);
        assert_eq!(similarity("", a, 2), 0.0);
    }
}
