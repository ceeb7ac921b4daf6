//! How every command writes for people: error chains with each cause once,
//! quiet exit on a closed pipe, plurals and UTC dates.

use std::fmt::Write as _;

/// Makes a closed stdout (`isnad inbox | head -1`) end the process quietly
/// with [`crate::exit::USAGE`] instead of a panic (exit 101). `println!`
/// panics when stdout is a closed pipe; the hook recognises that panic.
pub(crate) fn quiet_broken_pipe() {
    let default = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        let payload = info.payload();
        let msg = payload
            .downcast_ref::<String>()
            .map(String::as_str)
            .or_else(|| payload.downcast_ref::<&str>().copied())
            .unwrap_or_default();
        if msg.starts_with("failed printing to std") && msg.contains("Broken pipe") {
            std::process::exit(crate::exit::USAGE.into());
        }
        default(info);
    }));
}

/// The error and its causes joined by ": ", each cause once. Many error
/// types both print their source and return it from `source()`; a cause
/// already contained in the message before it is left out, so
/// "cannot read x: No such file or directory (os error 2)" is not followed
/// by the same "No such file or directory (os error 2)" again.
pub(crate) fn causes(err: &anyhow::Error) -> String {
    let mut out = String::new();
    let mut prev = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if !prev.is_empty() && prev.contains(&text) {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
        prev = text;
    }
    out
}

/// `1 agency`, `2 agencies`: `n` and the word in the right number.
pub(crate) fn count(n: impl Into<u64>, one: &str, many: &str) -> String {
    let n = n.into();
    format!("{n} {}", if n == 1 { one } else { many })
}

/// `YYYY-MM-DDTHH:MM:SSZ` (ISO 8601, UTC) for seconds since the Unix epoch.
pub(crate) fn utc_secs(secs: u64) -> String {
    let mut s = utc(secs.saturating_mul(1000));
    // Drop the milliseconds: ".000Z" -> "Z".
    s.truncate(s.len() - 5);
    s.push('Z');
    s
}

/// `YYYY-MM-DDTHH:MM:SS.mmmZ` (ISO 8601, UTC) for milliseconds since the
/// Unix epoch.
pub(crate) fn utc(ms: u64) -> String {
    let secs = ms / 1000;
    let mut days = secs / 86_400;
    let rem = secs % 86_400;
    let leap = |y: u64| (y.is_multiple_of(4) && !y.is_multiple_of(100)) || y.is_multiple_of(400);
    let mut year = 1970;
    loop {
        let n = if leap(year) { 366 } else { 365 };
        if days < n {
            break;
        }
        days -= n;
        year += 1;
    }
    let lengths = [
        31,
        if leap(year) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let mut month = 1;
    for len in lengths {
        if days < len {
            break;
        }
        days -= len;
        month += 1;
    }
    let mut s = String::with_capacity(24);
    let _ = write!(
        s,
        "{year:04}-{month:02}-{:02}T{:02}:{:02}:{:02}.{:03}Z",
        days + 1,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    );
    s
}

#[cfg(test)]
mod tests {
    #[test]
    fn utc_formats_known_times() {
        assert_eq!(super::utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(super::utc(1_709_164_800_123), "2024-02-29T00:00:00.123Z");
        assert_eq!(super::utc(1_797_292_799_000), "2026-12-14T23:59:59.000Z");
        assert_eq!(super::utc_secs(1_797_292_799), "2026-12-14T23:59:59Z");
    }

    #[test]
    fn each_cause_is_printed_once() {
        let io = std::io::Error::new(std::io::ErrorKind::NotFound, "gone (os error 2)");
        /// Prints its source and returns it from `source()`, as many do.
        #[derive(Debug)]
        struct Wraps(std::io::Error);
        impl std::fmt::Display for Wraps {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                write!(f, "read x: {}", self.0)
            }
        }
        impl std::error::Error for Wraps {
            fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = anyhow::Error::new(Wraps(io)).context("cannot open log x");
        assert_eq!(
            super::causes(&e),
            "cannot open log x: read x: gone (os error 2)"
        );
    }

    #[test]
    fn plurals() {
        assert_eq!(super::count(1u64, "agency", "agencies"), "1 agency");
        assert_eq!(super::count(2u64, "agency", "agencies"), "2 agencies");
        assert_eq!(super::count(0u64, "tile", "tiles"), "0 tiles");
    }
}
