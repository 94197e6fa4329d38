//! Go-style duration strings (`"30s"`, `"1h30m"`, `"500ms"`).
//!
//! The Kubernetes API of the Go operator serialises intervals as `metav1.Duration`, i.e. the text
//! accepted by Go's `time.ParseDuration` and printed by `time.Duration.String`. [`GoDuration`]
//! reproduces both exactly.
//!
//! `kube::core::Duration` exists, but it prints durations in Rust's `Debug` form (`3600s` instead of
//! `1h0m0s`) and parses through `f64`, which loses precision and differs from Go on inputs such as
//! `1.0000000001s`; a wire-compatible operator needs Go's integer arithmetic and formatting.

use std::borrow::Cow;
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

const NANOSECOND: u64 = 1;
const MICROSECOND: u64 = 1_000 * NANOSECOND;
const MILLISECOND: u64 = 1_000 * MICROSECOND;
const SECOND: u64 = 1_000 * MILLISECOND;
const MINUTE: u64 = 60 * SECOND;
const HOUR: u64 = 60 * MINUTE;

/// A signed duration with nanosecond precision, written as a Go duration string.
///
/// Parsing accepts exactly what Go's `time.ParseDuration` accepts (an optional sign, then one or
/// more `<number><unit>` pairs with units `ns`, `us`, `µs`, `μs`, `ms`, `s`, `m`, `h`, or the bare
/// `0`); formatting produces what Go's `Duration.String` produces (`1h0m0s`, `1.5s`, `500ms`, `0s`).
///
/// ```
/// use kollect_core::GoDuration;
///
/// let d: GoDuration = "1h30m".parse().unwrap();
/// assert_eq!(d.as_std(), Some(std::time::Duration::from_secs(5400)));
/// assert_eq!(d.to_string(), "1h30m0s");
/// assert!("30".parse::<GoDuration>().is_err());
/// ```
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct GoDuration {
    nanos: i64,
}

/// Why a string is not a Go duration. The message quotes the offending input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid duration {input:?}: {reason} (expected a Go duration such as \"30s\", \"1h30m\" or \"500ms\")"
)]
pub struct ParseDurationError {
    input: String,
    reason: &'static str,
}

impl ParseDurationError {
    fn new(input: &str, reason: &'static str) -> Self {
        Self {
            input: input.to_owned(),
            reason,
        }
    }
}

impl GoDuration {
    /// The zero duration (`"0s"`).
    pub const ZERO: GoDuration = GoDuration { nanos: 0 };

    /// A duration of `nanos` nanoseconds (may be negative, as in Go).
    pub const fn from_nanos(nanos: i64) -> Self {
        Self { nanos }
    }

    /// A duration of whole seconds.
    pub const fn from_secs(secs: i64) -> Self {
        Self {
            nanos: secs.saturating_mul(SECOND as i64),
        }
    }

    /// The signed length in nanoseconds.
    pub const fn as_nanos(self) -> i64 {
        self.nanos
    }

    /// True for durations below zero, which Go permits but no interval field accepts.
    pub const fn is_negative(self) -> bool {
        self.nanos < 0
    }

    /// True for `0s`.
    pub const fn is_zero(self) -> bool {
        self.nanos == 0
    }

    /// The duration as a [`std::time::Duration`], or `None` when it is negative.
    pub fn as_std(self) -> Option<Duration> {
        u64::try_from(self.nanos).ok().map(Duration::from_nanos)
    }

    /// Converts a [`std::time::Duration`], saturating at Go's maximum (about 292 years).
    pub fn from_std(duration: Duration) -> Self {
        Self {
            nanos: i64::try_from(duration.as_nanos()).unwrap_or(i64::MAX),
        }
    }
}

impl From<Duration> for GoDuration {
    fn from(duration: Duration) -> Self {
        Self::from_std(duration)
    }
}

impl FromStr for GoDuration {
    type Err = ParseDurationError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        parse(input)
    }
}

/// Parses with the grammar and overflow rules of Go's `time.ParseDuration`.
fn parse(input: &str) -> Result<GoDuration, ParseDurationError> {
    let err = |reason| ParseDurationError::new(input, reason);
    let mut s = input;
    let negative = match s.as_bytes().first() {
        Some(b'-') => {
            s = &s[1..];
            true
        }
        Some(b'+') => {
            s = &s[1..];
            false
        }
        _ => false,
    };
    if s == "0" {
        return Ok(GoDuration::ZERO);
    }
    if s.is_empty() {
        return Err(err("empty value"));
    }
    // Accumulate as u64 so that -9223372036854775808ns (i64::MIN) is representable, as in Go.
    let mut total: u64 = 0;
    while !s.is_empty() {
        let first = s.as_bytes()[0];
        if !(first == b'.' || first.is_ascii_digit()) {
            return Err(err("expected a number"));
        }
        let int_len = s.bytes().take_while(u8::is_ascii_digit).count();
        let (int_part, rest) = s.split_at(int_len);
        let mut whole: u64 = 0;
        for digit in int_part.bytes() {
            whole = whole
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(digit - b'0')))
                .ok_or_else(|| err("value out of range"))?;
        }
        s = rest;
        let (mut frac, mut scale) = (0u64, 1f64);
        let mut has_frac_digits = false;
        if let Some(after_dot) = s.strip_prefix('.') {
            let frac_len = after_dot.bytes().take_while(u8::is_ascii_digit).count();
            has_frac_digits = frac_len > 0;
            let mut overflowed = false;
            for digit in after_dot[..frac_len].bytes() {
                // Like Go's leadingFraction: digits that no longer fit are ignored, not an error.
                if overflowed || frac > (i64::MAX as u64) / 10 {
                    overflowed = true;
                    continue;
                }
                let next = frac * 10 + u64::from(digit - b'0');
                if next > 1u64 << 63 {
                    overflowed = true;
                    continue;
                }
                frac = next;
                scale *= 10.0;
            }
            s = &after_dot[frac_len..];
        }
        if int_len == 0 && !has_frac_digits {
            return Err(err("expected a number"));
        }
        let unit_len = s
            .char_indices()
            .find(|(_, c)| *c == '.' || c.is_ascii_digit())
            .map_or(s.len(), |(i, _)| i);
        let (unit, rest) = s.split_at(unit_len);
        s = rest;
        let unit_nanos = match unit {
            "" => return Err(err("missing unit")),
            "ns" => NANOSECOND,
            "us" | "\u{00b5}s" | "\u{03bc}s" => MICROSECOND,
            "ms" => MILLISECOND,
            "s" => SECOND,
            "m" => MINUTE,
            "h" => HOUR,
            _ => return Err(err("unknown unit (use ns, us, ms, s, m or h)")),
        };
        let mut value = whole
            .checked_mul(unit_nanos)
            .ok_or_else(|| err("value out of range"))?;
        if frac > 0 {
            // Go computes the fractional part in float64 and truncates; do the same.
            #[allow(
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss,
                clippy::cast_precision_loss
            )]
            let part = (frac as f64 * (unit_nanos as f64 / scale)) as u64;
            value = value.checked_add(part).ok_or_else(|| err("value out of range"))?;
        }
        total = total
            .checked_add(value)
            .ok_or_else(|| err("value out of range"))?;
        if total > 1u64 << 63 {
            return Err(err("value out of range"));
        }
    }
    let nanos = if negative {
        0i64.checked_sub_unsigned(total)
            .ok_or_else(|| err("value out of range"))?
    } else {
        i64::try_from(total).map_err(|_| err("value out of range"))?
    };
    Ok(GoDuration { nanos })
}

impl fmt::Display for GoDuration {
    /// Formats like Go's `time.Duration.String`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&format_go(self.nanos))
    }
}

impl fmt::Debug for GoDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "GoDuration({self})")
    }
}

/// Writes `value` with its last `precision` digits after a decimal point, trimming trailing
/// zeros (and the point when nothing is left), as Go's `fmtFrac` does.
fn push_fraction(out: &mut String, mut value: u64, precision: u32) -> u64 {
    let mut digits = Vec::with_capacity(precision as usize);
    let mut printed = false;
    for _ in 0..precision {
        let digit = value % 10;
        printed = printed || digit != 0;
        if printed {
            digits.push(char::from(b'0' + digit as u8));
        }
        value /= 10;
    }
    if printed {
        out.push('.');
        out.extend(digits.iter().rev());
    }
    value
}

fn format_go(nanos: i64) -> String {
    let negative = nanos < 0;
    let u = nanos.unsigned_abs();
    let mut out = String::new();
    if u < SECOND {
        if u == 0 {
            return "0s".to_owned();
        }
        let (precision, unit) = if u < MICROSECOND {
            (0, "ns")
        } else if u < MILLISECOND {
            (3, "\u{00b5}s")
        } else {
            (6, "ms")
        };
        let mut body = String::new();
        let whole = push_fraction(&mut body, u, precision);
        if negative {
            out.push('-');
        }
        out.push_str(&whole.to_string());
        out.push_str(&body);
        out.push_str(unit);
        return out;
    }
    let mut frac = String::new();
    let whole_secs = push_fraction(&mut frac, u, 9);
    let secs = whole_secs % 60;
    let whole_mins = whole_secs / 60;
    if negative {
        out.push('-');
    }
    if whole_mins > 0 {
        let mins = whole_mins % 60;
        let hours = whole_mins / 60;
        if hours > 0 {
            out.push_str(&hours.to_string());
            out.push('h');
        }
        out.push_str(&mins.to_string());
        out.push('m');
    }
    out.push_str(&secs.to_string());
    out.push_str(&frac);
    out.push('s');
    out
}

impl Serialize for GoDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for GoDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = Cow::<'de, str>::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl schemars::JsonSchema for GoDuration {
    fn schema_name() -> Cow<'static, str> {
        "GoDuration".into()
    }

    fn inline_schema() -> bool {
        true
    }

    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "description": "A Go duration string such as \"30s\", \"1h30m\" or \"500ms\".",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> i64 {
        s.parse::<GoDuration>()
            .unwrap_or_else(|e| panic!("{s}: {e}"))
            .as_nanos()
    }

    #[test]
    fn parses_go_examples() {
        assert_eq!(p("0"), 0);
        assert_eq!(p("5s"), 5 * SECOND as i64);
        assert_eq!(p("30s"), 30 * SECOND as i64);
        assert_eq!(p("1478s"), 1478 * SECOND as i64);
        assert_eq!(p("-5s"), -5 * SECOND as i64);
        assert_eq!(p("+5s"), 5 * SECOND as i64);
        assert_eq!(p("-0"), 0);
        assert_eq!(p("5.6s"), 5 * SECOND as i64 + 600 * MILLISECOND as i64);
        assert_eq!(p("5.s"), 5 * SECOND as i64);
        assert_eq!(p(".5s"), 500 * MILLISECOND as i64);
        assert_eq!(p("1.0s"), SECOND as i64);
        assert_eq!(p("1.004s"), SECOND as i64 + 4 * MILLISECOND as i64);
        assert_eq!(p("100.00100s"), 100 * SECOND as i64 + MILLISECOND as i64);
        assert_eq!(p("10ns"), 10);
        assert_eq!(p("11us"), 11 * MICROSECOND as i64);
        assert_eq!(p("12µs"), 12 * MICROSECOND as i64);
        assert_eq!(p("12μs"), 12 * MICROSECOND as i64);
        assert_eq!(p("13ms"), 13 * MILLISECOND as i64);
        assert_eq!(p("15m"), 15 * MINUTE as i64);
        assert_eq!(p("16h"), 16 * HOUR as i64);
        assert_eq!(p("3h30m"), (3 * HOUR + 30 * MINUTE) as i64);
        assert_eq!(
            p("10.5s4m"),
            (4 * MINUTE + 10 * SECOND + 500 * MILLISECOND) as i64
        );
        assert_eq!(
            p("-2m3.4s"),
            -((2 * MINUTE + 3 * SECOND + 400 * MILLISECOND) as i64)
        );
        assert_eq!(
            p("1h2m3s4ms5us6ns"),
            (HOUR + 2 * MINUTE + 3 * SECOND + 4 * MILLISECOND + 5 * MICROSECOND + 6) as i64
        );
        assert_eq!(
            p("39h9m14.425s"),
            (39 * HOUR + 9 * MINUTE + 14 * SECOND + 425 * MILLISECOND) as i64
        );
        assert_eq!(p("52763797000ns"), 52_763_797_000);
        assert_eq!(p("0.3333333333333333333h"), 20 * MINUTE as i64);
        assert_eq!(p("9007199254740993ns"), 9_007_199_254_740_993);
        assert_eq!(p("9223372036854775807ns"), i64::MAX);
        assert_eq!(p("-9223372036854775808ns"), i64::MIN);
        assert_eq!(p("0.100000000000000000000h"), 6 * MINUTE as i64);
    }

    #[test]
    fn rejects_what_go_rejects() {
        for bad in [
            "",
            "3",
            "-",
            "s",
            ".",
            "-.",
            ".s",
            "+.s",
            "1d",
            "\u{85}\u{85}",
            "9223372036854775808ns",
            "3000000h",
            "1s ",
            " 1s",
            "1.5.5s",
        ] {
            let err = bad.parse::<GoDuration>().expect_err(bad);
            assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
        }
    }

    #[test]
    fn error_names_value_and_hint() {
        let err = "30".parse::<GoDuration>().unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid duration \"30\": missing unit (expected a Go duration such as \"30s\", \"1h30m\" or \"500ms\")"
        );
        let err = "2d".parse::<GoDuration>().unwrap_err();
        assert!(err.to_string().contains("unknown unit"), "{err}");
    }

    #[test]
    fn formats_like_go() {
        let cases: &[(i64, &str)] = &[
            (0, "0s"),
            (1, "1ns"),
            (1_100, "1.1µs"),
            (2_200_000, "2.2ms"),
            (3_300_000_000, "3.3s"),
            (4 * MINUTE as i64 + 5 * SECOND as i64, "4m5s"),
            (4 * MINUTE as i64 + 5_001 * MILLISECOND as i64, "4m5.001s"),
            (
                5 * HOUR as i64 + 6 * MINUTE as i64 + 7_001 * MILLISECOND as i64,
                "5h6m7.001s",
            ),
            (8 * MINUTE as i64 + 1, "8m0.000000001s"),
            (HOUR as i64, "1h0m0s"),
            (30 * SECOND as i64, "30s"),
            (500 * MILLISECOND as i64, "500ms"),
            (i64::MAX, "2562047h47m16.854775807s"),
            (i64::MIN, "-2562047h47m16.854775808s"),
            (-(SECOND as i64), "-1s"),
        ];
        for (nanos, text) in cases {
            assert_eq!(GoDuration::from_nanos(*nanos).to_string(), *text);
        }
    }

    #[test]
    fn serde_round_trip_uses_go_text() {
        let d: GoDuration = serde_json::from_str("\"1h\"").unwrap();
        assert_eq!(serde_json::to_string(&d).unwrap(), "\"1h0m0s\"");
        let err = serde_json::from_str::<GoDuration>("\"abc\"").unwrap_err();
        assert!(err.to_string().contains("invalid duration \"abc\""), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn display_parses_back(nanos in proptest::prelude::any::<i64>()) {
            let d = GoDuration::from_nanos(nanos);
            proptest::prop_assert_eq!(d.to_string().parse::<GoDuration>().unwrap(), d);
        }

        #[test]
        fn never_panics(text in ".{0,24}") {
            let _ = text.parse::<GoDuration>();
        }
    }
}
