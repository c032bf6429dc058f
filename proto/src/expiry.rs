//! Expiry as users write it: a whole number and a unit, or an RFC 3339 time.
//!
//! Units (the same the VMS CLI takes): `Y` 365 days, `M` 30 days,
//! `w`/`W` weeks, `d`/`D` days, `h`/`H` hours, `m` minutes, `s`/`S` seconds.
//! Case matters only where it must: `M` is months and `m` minutes.

use serde::{Deserialize, Serialize};

/// An expiry before it is pinned to a creation time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Expiry {
    /// This many seconds after creation.
    After(u64),
    /// At this Unix time (seconds, UTC).
    At(i64),
}

impl Expiry {
    /// The Unix time at which a token created at `created` expires.
    pub fn resolve(self, created: i64) -> i64 {
        match self {
            Expiry::After(secs) => created.saturating_add(i64::try_from(secs).unwrap_or(i64::MAX)),
            Expiry::At(t) => t,
        }
    }
}

/// Why an expiry is refused: the input (escaped, bounded) and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid expiry `{input}`: {problem}")]
pub struct ExpiryError {
    pub input: String,
    pub problem: &'static str,
}

const EXPECTED: &str = "expected a whole number and a unit (Y, M, w, d or D, h, m, s; e.g. 180D, 12h) or an RFC 3339 time (e.g. 2027-01-31T00:00:00Z)";

/// The last instant an expiry may name: 9999-12-31T23:59:59Z. Later times
/// cannot be written in RFC 3339, which is how expiries are shown.
pub const MAX_EXPIRY: i64 = 253_402_300_799;

fn unit_seconds(unit: char) -> Option<u64> {
    const DAY: u64 = 86_400;
    Some(match unit {
        'Y' => 365 * DAY,
        'M' => 30 * DAY,
        'w' | 'W' => 7 * DAY,
        'd' | 'D' => DAY,
        'h' | 'H' => 3_600,
        'm' => 60,
        's' | 'S' => 1,
        _ => return None,
    })
}

/// Parses `180D`, `12h`, `1Y`, … or an RFC 3339 time, up to
/// [`MAX_EXPIRY`] (a duration is held to that bound from the Unix epoch,
/// so it also holds counted from any creation time before 9999).
pub fn parse_expiry(s: &str) -> Result<Expiry, ExpiryError> {
    let err = |problem| ExpiryError {
        input: s.chars().take(64).flat_map(char::escape_debug).collect(),
        problem,
    };
    let t = s.trim();
    if let Some(unit) = t.chars().last()
        && let Some(per) = unit_seconds(unit)
    {
        let digits = &t[..t.len() - unit.len_utf8()];
        if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) {
            let too_far = "it lies beyond 9999-12-31T23:59:59Z";
            let n: u64 = digits.parse().map_err(|_| err(too_far))?;
            if n == 0 {
                return Err(err("a duration must be at least 1 of its unit"));
            }
            let secs = n.checked_mul(per).ok_or_else(|| err(too_far))?;
            if secs > MAX_EXPIRY as u64 {
                return Err(err(too_far));
            }
            return Ok(Expiry::After(secs));
        }
    }
    let at = time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
        .map_err(|_| err(EXPECTED))?;
    if at.unix_timestamp() > MAX_EXPIRY {
        return Err(err("it lies beyond 9999-12-31T23:59:59Z"));
    }
    Ok(Expiry::At(at.unix_timestamp()))
}

/// Formats a Unix time as RFC 3339 UTC, for people and JSON.
pub fn format_time(unix: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp(unix)
        .ok()
        .and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok())
        .unwrap_or_else(|| unix.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_first() {
        for bad in [
            "",
            "D",
            "180",
            "180x",
            "-1D",
            "1.5D",
            "0D",
            "0s",
            "1 D",
            "D1",
            "1DD",
            "١D",
            "99999999999999999999Y",
            "999999999999999999Y",
            "2027-13-01T00:00:00Z",
            "tomorrow",
            "1y",
            "1Ms",
        ] {
            assert!(parse_expiry(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn zero_and_far_futures_say_what_is_wrong() {
        let e = parse_expiry("0s").unwrap_err().to_string();
        assert!(e.contains("at least 1"), "{e}");
        for far in ["99999999Y", "10000Y", "99999999999999999999Y"] {
            let e = parse_expiry(far).unwrap_err().to_string();
            assert!(e.contains("9999-12-31"), "{far}: {e}");
        }
        assert!(parse_expiry("8000Y").is_ok());
        let e = parse_expiry("tomorrow").unwrap_err().to_string();
        assert!(e.contains("RFC 3339") && e.contains("d or D"), "{e}");
    }

    #[test]
    fn units_and_case() {
        let cases = [
            ("1Y", 365 * 86_400),
            ("1M", 30 * 86_400),
            ("1m", 60),
            ("2w", 14 * 86_400),
            ("2W", 14 * 86_400),
            ("180D", 180 * 86_400),
            ("1d", 86_400),
            ("12h", 12 * 3_600),
            ("12H", 12 * 3_600),
            ("30s", 30),
            ("30S", 30),
        ];
        for (s, want) in cases {
            assert_eq!(parse_expiry(s).unwrap(), Expiry::After(want), "{s}");
        }
    }

    #[test]
    fn rfc3339() {
        assert_eq!(parse_expiry("2027-01-31T00:00:00Z").unwrap(), Expiry::At(1_801_353_600));
        assert_eq!(parse_expiry("2027-01-31T02:00:00+02:00").unwrap(), Expiry::At(1_801_353_600));
        assert_eq!(format_time(1_801_353_600), "2027-01-31T00:00:00Z");
    }

    #[test]
    fn resolve_counts_from_creation() {
        assert_eq!(Expiry::After(60).resolve(1_000), 1_060);
        assert_eq!(Expiry::At(5).resolve(1_000), 5);
        assert_eq!(Expiry::After(u64::MAX).resolve(1), i64::MAX);
    }
}
