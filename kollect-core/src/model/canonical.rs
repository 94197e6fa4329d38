//! The canonical JSON encoding used for every checksum and export payload.
//!
//! It reproduces Go's `encoding/json` (`json.Marshal`) byte for byte, so that checksums computed
//! here equal those of the Go operator for the same content (decision X1):
//!
//! - no insignificant whitespace;
//! - object keys sorted bytewise (serde_json's map order is not relied on, because another crate in
//!   a build may switch serde_json to insertion order);
//! - `<`, `>`, `&`, U+2028 and U+2029 escaped as `\u003c`, `\u003e`, `\u0026`, `\u2028`, `\u2029`;
//!   `\b`, `\f`, `\n`, `\r`, `\t` short escapes; other control characters as `\u00XX`;
//! - integers printed plainly; floats in Go's shortest round-trip form, switching to exponent
//!   notation below `1e-6` and from `1e21` (`1e-7`, `1e+21`).
//!
//! Numbers above `i64::MAX` are printed as floats, as Go sees them after Kubernetes' JSON decoding.
//! A negative zero float is printed `-0`, as Go prints one (a CEL result such as `0.0 * -1.0`).
//! The `-0` the API server sends decodes to the integer 0 in Kubernetes' Go decoder, but to a
//! negative zero float in serde_json, so extraction turns the negative zeros it reads from an
//! object into integer zeros before they reach this encoder.
//! The workspace enables serde_json's `float_roundtrip` feature so that parsed floats are correctly
//! rounded (as Go's parser does); without it, re-encoding could print a different last digit.

use serde_json::{Map, Number, Value};

/// Turns negative zero floats into the integer 0, in place, as Kubernetes' decoder reads the
/// text `-0` (serde_json reads it as a negative zero float, which this encoder prints `-0`, as
/// Go prints one). Apply it to values copied out of an object; computed values (CEL results)
/// keep their negative zeros, as they do in Go.
pub fn zeros_as_kubernetes_decodes(value: &mut Value) {
    match value {
        Value::Number(n) if n.as_f64().is_some_and(|f| f == 0.0 && f.is_sign_negative()) => {
            *value = Value::from(0);
        }
        Value::Array(items) => items.iter_mut().for_each(zeros_as_kubernetes_decodes),
        Value::Object(map) => map.values_mut().for_each(zeros_as_kubernetes_decodes),
        _ => {}
    }
}

/// Appends the canonical encoding of `value` to `out`.
pub(crate) fn write_value(out: &mut Vec<u8>, value: &Value) {
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(out, n),
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item);
            }
            out.push(b']');
        }
        Value::Object(map) => write_map(out, map),
    }
}

/// Appends the canonical encoding of a JSON object (keys sorted bytewise).
pub(crate) fn write_map(out: &mut Vec<u8>, map: &Map<String, Value>) {
    let mut entries: Vec<(&String, &Value)> = map.iter().collect();
    // serde_json's default map is already sorted; sorting again is cheap insurance against a
    // `preserve_order` feature enabled elsewhere in the dependency graph.
    if !entries.is_sorted_by(|a, b| a.0.as_bytes() <= b.0.as_bytes()) {
        entries.sort_unstable_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    }
    out.push(b'{');
    for (i, (key, value)) in entries.into_iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        write_str(out, key);
        out.push(b':');
        write_value(out, value);
    }
    out.push(b'}');
}

/// The canonical encoding of `value` as a new buffer.
pub fn to_vec(value: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    write_value(&mut out, value);
    out
}

/// The canonical encoding of `value` as a string.
pub fn to_string(value: &Value) -> String {
    // The encoder only ever writes valid UTF-8 (escapes are ASCII, strings are copied from `str`).
    String::from_utf8(to_vec(value)).unwrap_or_default()
}

const HEX: &[u8; 16] = b"0123456789abcdef";

/// Appends `s` as a JSON string literal with Go's escaping rules.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let escape: Option<&[u8]> = match b {
            b'"' => Some(b"\\\""),
            b'\\' => Some(b"\\\\"),
            b'\n' => Some(b"\\n"),
            b'\r' => Some(b"\\r"),
            b'\t' => Some(b"\\t"),
            0x08 => Some(b"\\b"),
            0x0c => Some(b"\\f"),
            _ => None,
        };
        if let Some(escape) = escape {
            out.extend_from_slice(&bytes[start..i]);
            out.extend_from_slice(escape);
            i += 1;
            start = i;
        } else if b < 0x20 || b == b'<' || b == b'>' || b == b'&' {
            out.extend_from_slice(&bytes[start..i]);
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
            i += 1;
            start = i;
        } else if b == 0xe2 && i + 2 < bytes.len() && bytes[i + 1] == 0x80 && (bytes[i + 2] & 0xfe) == 0xa8 {
            // U+2028 LINE SEPARATOR and U+2029 PARAGRAPH SEPARATOR (E2 80 A8 / E2 80 A9).
            out.extend_from_slice(&bytes[start..i]);
            out.extend_from_slice(if bytes[i + 2] == 0xa8 {
                b"\\u2028"
            } else {
                b"\\u2029"
            });
            i += 3;
            start = i;
        } else {
            i += 1;
        }
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

fn write_number(out: &mut Vec<u8>, n: &Number) {
    if let Some(i) = n.as_i64() {
        out.extend_from_slice(i.to_string().as_bytes());
    } else if let Some(f) = n.as_f64() {
        // u64 above i64::MAX lands here too: Go decodes such numbers as float64.
        out.extend_from_slice(format_float(f).as_bytes());
    }
}

/// Formats a finite float as Go's `encoding/json` does (`strconv.FormatFloat(f, 'f' or 'e', -1, 64)`
/// plus the `e-07` -> `e-7` clean-up).
pub(crate) fn format_float(f: f64) -> String {
    let mut out = String::new();
    if f.is_sign_negative() {
        out.push('-');
    }
    let abs = f.abs();
    if abs == 0.0 {
        out.push('0');
        return out;
    }
    // Rust's `{:e}` prints the shortest digits that round-trip, like Go's precision -1.
    let sci = format!("{abs:e}");
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    if !(1e-6..1e21).contains(&abs) {
        out.push_str(&digits[..1]);
        if digits.len() > 1 {
            out.push('.');
            out.push_str(&digits[1..]);
        }
        out.push('e');
        out.push(if exponent < 0 { '-' } else { '+' });
        let magnitude = exponent.unsigned_abs();
        // Go prints at least two exponent digits, then strips the leading zero of a negative
        // single-digit exponent; positive exponents here are always >= 21.
        if magnitude < 10 && exponent > 0 {
            out.push('0');
        }
        out.push_str(&magnitude.to_string());
        return out;
    }
    // Fixed notation: value = 0.d1d2...dn * 10^(exponent+1).
    let point = exponent + 1;
    let n = i32::try_from(digits.len()).unwrap_or(i32::MAX);
    if point <= 0 {
        out.push_str("0.");
        for _ in 0..(-point) {
            out.push('0');
        }
        out.push_str(&digits);
    } else if point >= n {
        out.push_str(&digits);
        for _ in 0..(point - n) {
            out.push('0');
        }
    } else {
        let split = usize::try_from(point).unwrap_or(0);
        out.push_str(&digits[..split]);
        out.push('.');
        out.push_str(&digits[split..]);
    }
    out
}

/// Go's `fmt.Sprintf("%g", f)`: the shortest digits that read back as `f`, in exponent form
/// (`1.5e+06`, `1e-05`, at least two exponent digits) when the decimal exponent is below -4 or
/// at least 6, otherwise in plain decimal form; `+Inf`, `-Inf` and `NaN` for the rest.
pub fn format_float_g(f: f64) -> String {
    if f.is_nan() {
        return "NaN".to_owned();
    }
    if f.is_infinite() {
        return if f > 0.0 { "+Inf" } else { "-Inf" }.to_owned();
    }
    // Rust's `{:e}` and `Display` both print the shortest round-trip digits, as Go's precision
    // -1 does; only the choice of form and the exponent's spelling differ.
    let sci = format!("{f:e}");
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let exponent: i32 = exponent.parse().unwrap_or(0);
    if f == 0.0 || (-4..6).contains(&exponent) {
        return f.to_string();
    }
    let sign = if exponent < 0 { '-' } else { '+' };
    format!("{mantissa}e{sign}{:02}", exponent.unsigned_abs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sorts_keys_and_escapes_like_go() {
        let v = json!({"b": 1, "a": "<x> & y", "A": [true, null], "é": "\u{2028}\u{2029}\u{7f}"});
        assert_eq!(
            to_string(&v),
            r#"{"A":[true,null],"a":"\u003cx\u003e \u0026 y","b":1,"é":"\u2028\u2029"#.to_owned()
                + "\u{7f}\"}"
        );
    }

    #[test]
    fn control_characters() {
        let v = json!("\u{0}\u{1}\u{8}\u{c}\n\r\t\u{1f}\"\\/");
        assert_eq!(to_string(&v), r#""\u0000\u0001\b\f\n\r\t\u001f\"\\/""#);
    }

    #[test]
    fn floats_follow_go_thresholds() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "-0"),
            (1.0, "1"),
            (1.5, "1.5"),
            (-2.25, "-2.25"),
            (0.1, "0.1"),
            (100.0, "100"),
            (1e20, "100000000000000000000"),
            (1e21, "1e+21"),
            (1.5e21, "1.5e+21"),
            (123456789e20, "1.23456789e+28"),
            (1e-6, "0.000001"),
            (1.5e-6, "0.0000015"),
            (1e-7, "1e-7"),
            (1.25e-7, "1.25e-7"),
            (1e-10, "1e-10"),
            (5e-324, "5e-324"),
            (1.7976931348623157e308, "1.7976931348623157e+308"),
            (0.30000000000000004, "0.30000000000000004"),
            (123456.789, "123456.789"),
            (9007199254740993.0, "9007199254740992"),
        ];
        for (f, want) in cases {
            assert_eq!(format_float(*f), *want, "{f:e}");
        }
    }

    #[test]
    fn negative_zero_floats_print_as_go_prints_them() {
        let mut v: Value = serde_json::from_str(r#"[-0.0, 0.0, 0, {"a": [-0]}]"#).unwrap();
        assert_eq!(to_string(&v), r#"[-0,0,0,{"a":[-0]}]"#);
        zeros_as_kubernetes_decodes(&mut v);
        assert_eq!(to_string(&v), r#"[0,0,0,{"a":[0]}]"#);
        assert!(v[0].is_i64());
    }

    #[test]
    fn integers_plain_and_big_unsigned_as_float() {
        assert_eq!(to_string(&json!(-42)), "-42");
        assert_eq!(to_string(&json!(i64::MAX)), "9223372036854775807");
        assert_eq!(to_string(&json!(u64::MAX)), "18446744073709552000");
    }

    proptest::proptest! {
        #[test]
        fn floats_round_trip(f in proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL | proptest::num::f64::ZERO) {
            let text = format_float(f);
            let back: f64 = text.parse().unwrap();
            proptest::prop_assert_eq!(back.to_bits(), f.to_bits(), "{}", text);
        }

        #[test]
        fn output_is_valid_json_and_a_fixed_point(v in arb_json()) {
            // Whole floats print as integers (as in Go), so compare encodings, not values.
            let text = to_string(&v);
            let back: Value = serde_json::from_str(&text).unwrap();
            proptest::prop_assert_eq!(to_string(&back), text);
        }

        #[test]
        fn keys_are_sorted(map in proptest::collection::btree_map(".{0,6}", 0i64..5, 0..8)) {
            let v = serde_json::to_value(&map).unwrap();
            let text = to_string(&v);
            let back: serde_json::Map<String, Value> = serde_json::from_str(&text).unwrap();
            let keys: Vec<_> = back.keys().cloned().collect();
            let mut sorted = keys.clone();
            sorted.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
            proptest::prop_assert_eq!(keys, sorted);
        }

        #[test]
        fn no_raw_html_or_separators(s in ".{0,32}") {
            let text = to_string(&Value::String(s));
            let forbidden = ['<', '>', '&', '\u{2028}', '\u{2029}'];
            proptest::prop_assert!(!text.contains(forbidden));
            proptest::prop_assert!(!text.bytes().any(|b| b < 0x20));
        }
    }

    fn arb_json() -> impl proptest::strategy::Strategy<Value = Value> {
        use proptest::prelude::*;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(|i| json!(i)),
            (proptest::num::f64::NORMAL | proptest::num::f64::ZERO).prop_map(|f| json!(f)),
            ".{0,12}".prop_map(Value::String),
        ];
        leaf.prop_recursive(3, 32, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                proptest::collection::btree_map(".{0,6}", inner, 0..6)
                    .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        })
    }

    #[test]
    fn doubles_format_as_go_percent_g() {
        let cases: &[(f64, &str)] = &[
            (0.0, "0"),
            (-0.0, "-0"),
            (1.5, "1.5"),
            (100.0, "100"),
            (123456.0, "123456"),
            (999999.9999, "999999.9999"),
            (1e6, "1e+06"),
            (1234567.0, "1.234567e+06"),
            (-1234567.5, "-1.2345675e+06"),
            (123456789.0, "1.23456789e+08"),
            (1e20, "1e+20"),
            (1e21, "1e+21"),
            (1e100, "1e+100"),
            (0.0001, "0.0001"),
            (0.00012, "0.00012"),
            (-4.5e-3, "-0.0045"),
            (1e-5, "1e-05"),
            (1.5e-300, "1.5e-300"),
            (5e-324, "5e-324"),
            (f64::INFINITY, "+Inf"),
            (f64::NEG_INFINITY, "-Inf"),
            (f64::NAN, "NaN"),
        ];
        for (f, want) in cases {
            assert_eq!(format_float_g(*f), *want, "{f:e}");
        }
    }
}
