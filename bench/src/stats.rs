//! Order statistics of measured samples (pure).

/// Median of `xs` (mean of the two middle values for an even count); `None` when empty.
pub fn median(xs: &[f64]) -> Option<f64> {
    let v = sorted(xs);
    let n = v.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(v[n / 2]),
        _ => Some((v[n / 2 - 1] + v[n / 2]) / 2.0),
    }
}

/// The `p`-th percentile (0 < p ≤ 100) by the nearest-rank method: the smallest sample with
/// at least `p`% of the samples at or below it; `None` when empty.
#[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)] // rank is in 1..=len
pub fn percentile(xs: &[f64], p: f64) -> Option<f64> {
    let v = sorted(xs);
    if v.is_empty() {
        return None;
    }
    let rank = (p / 100.0 * v.len() as f64).ceil().max(1.0) as usize;
    v.get(rank.min(v.len()) - 1).copied()
}

/// The largest sample; `None` when empty.
pub fn max(xs: &[f64]) -> Option<f64> {
    xs.iter().copied().reduce(f64::max)
}

/// The smallest sample; `None` when empty.
pub fn min(xs: &[f64]) -> Option<f64> {
    xs.iter().copied().reduce(f64::min)
}

fn sorted(xs: &[f64]) -> Vec<f64> {
    let mut v: Vec<f64> = xs.iter().copied().filter(|x| !x.is_nan()).collect();
    v.sort_by(f64::total_cmp);
    v
}

/// `12.3` / `1234` style: one decimal below 100, none above; `–` for `None`.
pub fn fmt_ms(x: Option<f64>) -> String {
    match x {
        None => "–".into(),
        Some(v) if v.abs() < 100.0 => format!("{v:.1}"),
        Some(v) => format!("{v:.0}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_even_and_empty() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
        assert_eq!(median(&[]), None);
    }

    #[test]
    fn nearest_rank_percentiles() {
        let xs: Vec<f64> = (1..=200).map(f64::from).collect();
        assert_eq!(percentile(&xs, 50.0), Some(100.0));
        assert_eq!(percentile(&xs, 90.0), Some(180.0));
        assert_eq!(percentile(&xs, 99.0), Some(198.0));
        assert_eq!(percentile(&xs, 100.0), Some(200.0));
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[5.0, 1.0], 1.0), Some(1.0));
        assert_eq!(percentile(&[], 50.0), None);
        assert_eq!(max(&[1.0, 9.0, 3.0]), Some(9.0));
        assert_eq!(min(&[4.0, 2.0, 3.0]), Some(2.0));
    }

    #[test]
    fn formatting() {
        assert_eq!(fmt_ms(Some(12.345)), "12.3");
        assert_eq!(fmt_ms(Some(1234.4)), "1234");
        assert_eq!(fmt_ms(None), "–");
    }
}
