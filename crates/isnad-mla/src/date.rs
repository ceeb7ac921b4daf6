//! Calendar dates (`YYYY-MM-DD`, proleptic Gregorian, UTC) to Unix time.

/// Seconds since the Unix epoch at 00:00 UTC of `date`, or `None` if it is
/// not a valid `YYYY-MM-DD` date on or after 1970-01-01.
pub(crate) fn day_start_secs(date: &str) -> Option<u64> {
    let b = date.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| -> Option<u32> {
        let s = date.get(r)?;
        if s.bytes().all(|c| c.is_ascii_digit()) {
            s.parse().ok()
        } else {
            None
        }
    };
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y, m) || y < 1970 {
        return None;
    }
    let days = days_since_epoch(y, m, d);
    Some(u64::from(days) * 86_400)
}

fn is_leap(y: u32) -> bool {
    (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400)
}

fn days_in_month(y: u32, m: u32) -> u32 {
    match m {
        2 if is_leap(y) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1970-01-01 to the date (y ≥ 1970), counted year by year and
/// month by month: at most 8030 years of 4-digit dates, cheap enough.
fn days_since_epoch(y: u32, m: u32, d: u32) -> u32 {
    let years: u32 = (1970..y)
        .map(|yy| if is_leap(yy) { 366 } else { 365 })
        .sum();
    let months: u32 = (1..m).map(|mm| days_in_month(y, mm)).sum();
    years + months + d - 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_dates() {
        assert_eq!(day_start_secs("1970-01-01"), Some(0));
        assert_eq!(day_start_secs("2000-03-01"), Some(951_868_800));
        assert_eq!(day_start_secs("2024-02-29"), Some(1_709_164_800));
        assert_eq!(day_start_secs("2026-12-15"), Some(1_797_292_800));
    }

    #[test]
    fn invalid_dates() {
        for d in [
            "2026-02-29",
            "2025-13-01",
            "2025-00-10",
            "2025-04-31",
            "1969-12-31",
            "2025-1-01",
            "2025-01-01x",
            "+025-01-01",
            "",
        ] {
            assert_eq!(day_start_secs(d), None, "{d}");
        }
    }
}
