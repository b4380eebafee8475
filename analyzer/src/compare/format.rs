//! Deterministic number formatting for the sentences a person reads in a CI log.
//!
//! Rust's float formatting is exact decimal rounding (an exact tie such as 1234.5 goes to the even
//! digit), independent of platform and locale; on top of it we fix the conventions: three significant digits for measured quantities (no scientific
//! notation, thousands separated by commas), one decimal for relative changes, p-values to three
//! decimals with "< 0.001" below, and never a "-0".

/// `12400` → `12,400`.
pub fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

/// The number of decimals that shows `magnitude` with three significant digits (0 from 100 up,
/// at most 9).
pub fn decimals_for(magnitude: f64) -> usize {
    let m = magnitude.abs();
    if !m.is_finite() || m >= 100.0 || m == 0.0 {
        return 0;
    }
    let digits_before = m.log10().floor() as i64 + 1;
    (3 - digits_before).clamp(0, 9) as usize
}

/// `v` with `decimals` decimals and thousands separators: `1234.5, 1` → `1,234.5`; `-0.04, 1` →
/// `0.0`.
pub fn fixed(v: f64, decimals: usize) -> String {
    if !v.is_finite() {
        return v.to_string();
    }
    let text = format!("{:.*}", decimals, v.abs());
    let (int, frac) = text.split_once('.').map_or((text.as_str(), None), |(i, f)| (i, Some(f)));
    let mut out = String::new();
    let is_zero = text.bytes().all(|b| b == b'0' || b == b'.');
    if v < 0.0 && !is_zero {
        out.push('-');
    }
    out.push_str(&thousands(int.parse().unwrap_or(0)));
    if let Some(frac) = frac {
        out.push('.');
        out.push_str(frac);
    }
    out
}

/// Like [`fixed`] with an explicit `+` on positive values: `+74`, `-3.2`, `0`.
pub fn signed(v: f64, decimals: usize) -> String {
    let text = fixed(v, decimals);
    if v > 0.0 && text.bytes().any(|b| (b'1'..=b'9').contains(&b)) { format!("+{text}") } else { text }
}

/// A relative change (a ratio, 0.188 for +18.8%) with one decimal: `+18.8%`.
pub fn percent_change(ratio: f64) -> String {
    format!("{}%", signed(ratio * 100.0, 1))
}

/// A p-value as it follows "p": `< 0.001`, `= 0.127`.
pub fn p_value(p: f64) -> String {
    if p < 0.001 { "< 0.001".to_string() } else { format!("= {:.3}", p.min(1.0)) }
}

/// A share (0.92 for 92%) for a sentence: whole percents from 1% to 99%, one decimal near the
/// ends so that 99.6% is not shown as 100% nor 0.4% as 0%: `92%`, `0.4%`, `<0.1%`.
pub fn share(fraction: f64) -> String {
    let pct = fraction * 100.0;
    if pct <= 0.0 {
        return "0%".to_string();
    }
    if pct >= 100.0 {
        return "100%".to_string();
    }
    let whole = pct.round();
    if (1.0..=99.0).contains(&whole) {
        return format!("{whole:.0}%");
    }
    let one = format!("{pct:.1}");
    match one.as_str() {
        "0.0" => "<0.1%".to_string(),
        "100.0" => ">99.9%".to_string(),
        _ => format!("{one}%"),
    }
}

/// The shortest text for a setting such as a percentile or a confidence: `95`, `99.9`.
pub fn trim_number(v: f64) -> String {
    let rounded = (v * 1e6).round() / 1e6;
    format!("{rounded}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        assert_eq!(thousands(0), "0");
        assert_eq!(thousands(999), "999");
        assert_eq!(thousands(12_400), "12,400");
        assert_eq!(thousands(1_234_567), "1,234,567");
        assert_eq!(decimals_for(512.0), 0);
        assert_eq!(decimals_for(43.1), 1);
        assert_eq!(decimals_for(4.31), 2);
        assert_eq!(decimals_for(0.0431), 4);
        assert_eq!(fixed(1234.56, 1), "1,234.6");
        assert_eq!(fixed(-0.04, 1), "0.0");
        assert_eq!(fixed(-12.25, 1), "-12.2");
        assert_eq!(signed(74.2, 0), "+74");
        assert_eq!(signed(0.2, 0), "0");
        assert_eq!(signed(-3.24, 1), "-3.2");
        assert_eq!(percent_change(0.18793), "+18.8%");
        assert_eq!(percent_change(-0.05), "-5.0%");
        assert_eq!(p_value(0.000_2), "< 0.001");
        assert_eq!(p_value(0.127_24), "= 0.127");
        assert_eq!(share(0.92), "92%");
        assert_eq!(share(0.004), "0.4%");
        assert_eq!(share(0.996), "99.6%");
        assert_eq!(share(0.000_01), "<0.1%");
        assert_eq!(share(0.0), "0%");
        assert_eq!(trim_number(0.95 * 100.0), "95");
        assert_eq!(trim_number(99.9), "99.9");
    }
}
