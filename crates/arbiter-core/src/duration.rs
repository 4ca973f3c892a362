//! Durations as people write them: `250ms`, `30s`, `5m`, `1h30m`, `2d`.
//!
//! A duration is one or more `<digits><unit>` parts, largest unit first, each unit at most
//! once; units are `d`, `h`, `m`, `s`, `ms`. No spaces, no signs, no fractions. The result
//! must be greater than zero and at most 10 years (a bound that keeps millisecond arithmetic
//! far from overflow).

use std::time::Duration;

use crate::ParseError;

const UNITS: [(&str, u64); 5] = [
    ("d", 86_400_000),
    ("h", 3_600_000),
    ("m", 60_000),
    ("s", 1_000),
    ("ms", 1),
];
const MAX_MS: u64 = 10 * 365 * 86_400_000;
const EXPECTED: &str = "expected a duration like 30s, 5m, 1h30m or 250ms (units: d, h, m, s, ms)";

/// Parses a duration; see the module documentation for the syntax.
pub fn parse_duration(text: &str) -> Result<Duration, ParseError> {
    let bad = |why: &str| ParseError::new(format!("invalid duration {text:?}: {why}; {EXPECTED}"));
    if text.is_empty() {
        return Err(bad("it is empty"));
    }
    let mut rest = text;
    let mut total: u64 = 0;
    // Index into UNITS of the last unit seen: each next unit must be smaller.
    let mut last_unit: Option<usize> = None;
    while !rest.is_empty() {
        let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
        if rest.starts_with('-') {
            return Err(bad("a duration cannot be negative"));
        }
        if digits == 0 {
            return Err(bad("a number must come before each unit"));
        }
        let (number, after) = rest.split_at(digits);
        let letters = after.bytes().take_while(u8::is_ascii_alphabetic).count();
        let (unit, after) = after.split_at(letters);
        if unit.is_empty() {
            return Err(match after.chars().next() {
                Some(c) => bad(&format!("unexpected character {c:?} (no spaces, signs or fractions)")),
                None => bad("a unit must follow each number"),
            });
        }
        let Some(index) = UNITS.iter().position(|(name, _)| *name == unit) else {
            return Err(bad(&format!("unknown unit {unit:?}")));
        };
        if last_unit.is_some_and(|last| index <= last) {
            return Err(bad("units must go from largest to smallest, each at most once"));
        }
        last_unit = Some(index);
        let value: u64 = number.parse().map_err(|_| bad("a number is too large"))?;
        total = value
            .checked_mul(UNITS[index].1)
            .and_then(|ms| total.checked_add(ms))
            .filter(|ms| *ms <= MAX_MS)
            .ok_or_else(|| bad("it is longer than 10 years"))?;
        rest = after;
    }
    if total == 0 {
        return Err(bad("it must be greater than zero"));
    }
    Ok(Duration::from_millis(total))
}

/// A duration given as whole milliseconds (an HTTP API's `ttl_ms`), by the rule of
/// [`parse_duration`]: greater than zero, at most 10 years.
pub fn from_millis(ms: u64) -> Result<Duration, ParseError> {
    if ms == 0 {
        return Err(ParseError::new("invalid duration 0 ms: it must be greater than zero"));
    }
    if ms > MAX_MS {
        return Err(ParseError::new(format!(
            "invalid duration {ms} ms: it is longer than 10 years ({MAX_MS} ms)"
        )));
    }
    Ok(Duration::from_millis(ms))
}

/// Like [`parse_duration`], for settings where zero means "none" or "off": also reads `0`
/// and a zero with a unit (`0s`, `0ms`).
pub fn parse_duration_or_zero(text: &str) -> Result<Duration, ParseError> {
    let digits = text.bytes().take_while(u8::is_ascii_digit).count();
    let (number, unit) = text.split_at(digits);
    if digits > 0 && number.bytes().all(|b| b == b'0') && (unit.is_empty() || UNITS.iter().any(|(u, _)| *u == unit)) {
        return Ok(Duration::ZERO);
    }
    parse_duration(text)
}

/// Formats a duration in the syntax [`parse_duration`] reads (milliseconds are kept).
pub fn format_duration(duration: Duration) -> String {
    let mut ms = duration.as_millis() as u64;
    if ms == 0 {
        return "0s".to_string();
    }
    let mut out = String::new();
    for (name, size) in UNITS {
        if ms >= size {
            out.push_str(&format!("{}{name}", ms / size));
            ms %= size;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Milliseconds (an HTTP API's `ttl_ms`) follow the rule of written durations.
    #[test]
    fn milliseconds_follow_the_duration_rule() {
        assert_eq!(from_millis(1).unwrap(), Duration::from_millis(1));
        assert_eq!(from_millis(MAX_MS).unwrap(), Duration::from_millis(MAX_MS));
        assert!(from_millis(0).unwrap_err().message.contains("greater than zero"));
        assert!(from_millis(MAX_MS + 1).unwrap_err().message.contains("10 years"));
    }

    #[test]
    fn zero_where_zero_means_off() {
        for zero in ["0", "0s", "00ms", "0m"] {
            assert_eq!(parse_duration_or_zero(zero).unwrap(), Duration::ZERO, "{zero}");
        }
        assert_eq!(parse_duration_or_zero("30s").unwrap(), Duration::from_secs(30));
        for bad in ["", "0x", "-1s", "0s5"] {
            assert!(parse_duration_or_zero(bad).is_err(), "{bad}");
        }
        assert!(parse_duration("0s").is_err(), "elsewhere zero is still refused");
    }

    fn check(text: &str, expected: Result<u64, &str>) {
        let actual = parse_duration(text).map(|d| d.as_millis() as u64);
        match (actual, expected) {
            (Ok(a), Ok(e)) => assert_eq!(a, e, "{text}"),
            (Err(a), Err(e)) => assert!(a.message.contains(e), "{text}: {}", a.message),
            (a, e) => panic!("{text}: got {a:?}, expected {e:?}"),
        }
    }

    #[test]
    fn parses() {
        check("30s", Ok(30_000));
        check("5m", Ok(300_000));
        check("1h30m", Ok(5_400_000));
        check("250ms", Ok(250));
        check("1d2h3m4s5ms", Ok(93_784_005));
        check("1s500ms", Ok(1_500));
    }

    #[test]
    fn rejects() {
        check("", Err("it is empty"));
        check("30", Err("a unit must follow"));
        check("s", Err("a number must come before"));
        check("5x", Err("unknown unit \"x\""));
        check("1m1h", Err("largest to smallest"));
        check("1s1s", Err("largest to smallest"));
        check("0s", Err("greater than zero"));
        check("-1s", Err("cannot be negative"));
        check("1.5s", Err("unexpected character '.'"));
        check("1 s", Err("unexpected character ' '"));
        check("99999999999999999999s", Err("too large"));
        check("4000d", Err("longer than 10 years"));
    }

    #[test]
    fn round_trips() {
        for text in ["30s", "1h30m", "250ms", "2d", "1m1ms"] {
            assert_eq!(format_duration(parse_duration(text).unwrap()), text);
        }
    }
}
