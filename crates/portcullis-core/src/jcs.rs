//! RFC 8785 JSON Canonicalization Scheme: the bytes every hash and signature in Portcullis is
//! taken over, so that anyone with an independent RFC 8785 implementation gets the same bytes.
//!
//! Written here rather than taken from a crate because the gateway needs one thing no JCS crate
//! does: it refuses a number that an IEEE 754 double cannot hold exactly. RFC 8785 reads every
//! number as a double, so `2^60 + 1` and `2^60` canonicalise alike; an approval of one would
//! then cover the other, while the upstream (which parses integers exactly) sees a different
//! value. Such a number is refused with a clear error (send it as a string). Everything else
//! follows the RFC: ECMAScript number serialisation (via `ryu-js`, the ECMAScript
//! `Number.prototype.toString` algorithm), object members sorted by their UTF-16 code units,
//! and the RFC's minimal string escaping. Lone surrogates cannot occur: a Rust string cannot
//! hold one, and the JSON parser refuses `"\ud800"`. The parser (serde_json with
//! `float_roundtrip`) reads a decimal as its nearest double, as RFC 8785 does; an integer
//! beyond 64 bits it reads as a double too, and the gateway forwards that same double, so the
//! hash covers exactly what the upstream receives.
//!
//! [`legacy`] keeps the format-1 canonicaliser (`serde_jcs` 0.1) for verifying receipts and
//! entries signed before format 2 (see `receipt` and `audit`).

use serde::Serialize;
use serde_json::Value;

/// Deeper documents are refused instead of risking the stack (the JSON parser stops at 128).
pub const MAX_DEPTH: usize = 256;

/// Objects with at most this many members are sorted on the stack.
const SMALL: usize = 16;

/// The largest integer every smaller one of which a double holds exactly (2^53).
const EXACT_LIMIT: u64 = 1 << 53;

/// Why a value has no canonical form.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JcsError {
    #[error(
        "the number {0} cannot be represented exactly as an IEEE 754 double (RFC 8785 reads every number as one); send it as a string"
    )]
    InexactNumber(String),
    #[error("the document nests deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("the value is not JSON: {0}")]
    NotJson(String),
}

/// The canonical bytes of any serialisable value.
pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, JcsError> {
    let value = serde_json::to_value(value).map_err(|e| JcsError::NotJson(e.to_string()))?;
    let mut out = Vec::with_capacity(128);
    write_value(&mut out, &value, 0)?;
    Ok(out)
}

/// The canonical bytes of a JSON value.
pub fn value_to_vec(value: &Value) -> Result<Vec<u8>, JcsError> {
    let mut out = Vec::with_capacity(128);
    write_value(&mut out, value, 0)?;
    Ok(out)
}

/// Append the canonical form of `value` to `out`.
pub fn write_value(out: &mut Vec<u8>, value: &Value, depth: usize) -> Result<(), JcsError> {
    if depth > MAX_DEPTH {
        return Err(JcsError::TooDeep);
    }
    match value {
        Value::Null => out.extend_from_slice(b"null"),
        Value::Bool(true) => out.extend_from_slice(b"true"),
        Value::Bool(false) => out.extend_from_slice(b"false"),
        Value::Number(n) => write_number(out, n)?,
        Value::String(s) => write_str(out, s),
        Value::Array(items) => {
            out.push(b'[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                write_value(out, item, depth + 1)?;
            }
            out.push(b']');
        }
        Value::Object(map) => {
            let mut write = |members: &mut dyn Iterator<Item = (&str, &Value)>| {
                out.push(b'{');
                for (i, (key, item)) in members.enumerate() {
                    if i > 0 {
                        out.push(b',');
                    }
                    write_str(out, key);
                    out.push(b':');
                    write_value(out, item, depth + 1)?;
                }
                out.push(b'}');
                Ok(())
            };
            // A map read from canonical text is in order already; sort only when it is not,
            // on the stack when it is small (most are).
            let sorted = map
                .keys()
                .zip(map.keys().skip(1))
                .all(|(a, b)| utf16_cmp(a, b).is_lt());
            if sorted {
                write(&mut map.iter().map(|(k, v)| (k.as_str(), v)))?;
            } else if map.len() <= SMALL {
                static NULL: Value = Value::Null;
                let mut members: [(&str, &Value); SMALL] = [("", &NULL); SMALL];
                for (slot, (k, v)) in members.iter_mut().zip(map) {
                    *slot = (k.as_str(), v);
                }
                let members = &mut members[..map.len()];
                members.sort_unstable_by(|a, b| utf16_cmp(a.0, b.0));
                write(&mut members.iter().copied())?;
            } else {
                let mut members: Vec<(&str, &Value)> =
                    map.iter().map(|(k, v)| (k.as_str(), v)).collect();
                members.sort_unstable_by(|a, b| utf16_cmp(a.0, b.0));
                write(&mut members.into_iter())?;
            }
        }
    }
    Ok(())
}

/// Order two strings by their UTF-16 code units, as RFC 8785 §3.2.3 requires.
pub fn utf16_cmp(a: &str, b: &str) -> std::cmp::Ordering {
    // UTF-8 byte order is code point order, which differs from UTF-16 order only between a
    // supplementary character (a surrogate pair, 0xD800..) and U+E000..U+FFFF.
    let plain = |s: &str| s.bytes().all(|b| b < 0xEE);
    if plain(a) && plain(b) {
        a.as_bytes().cmp(b.as_bytes())
    } else {
        a.encode_utf16().cmp(b.encode_utf16())
    }
}

/// Append a number the way ECMAScript's `Number.prototype.toString` prints the double it
/// denotes; integers no double holds exactly are refused.
pub fn write_number(out: &mut Vec<u8>, n: &serde_json::Number) -> Result<(), JcsError> {
    if let Some(u) = n.as_u64() {
        return write_u64(out, u, false);
    }
    if let Some(i) = n.as_i64() {
        return write_u64(out, i.unsigned_abs(), true);
    }
    let f = n
        .as_f64()
        .ok_or_else(|| JcsError::InexactNumber(n.to_string()))?;
    write_f64(out, f)
}

fn write_u64(out: &mut Vec<u8>, magnitude: u64, negative: bool) -> Result<(), JcsError> {
    if magnitude <= EXACT_LIMIT {
        // Below 2^53 ECMAScript prints an integral double as its plain digits.
        if negative && magnitude != 0 {
            out.push(b'-');
        }
        out.extend_from_slice(itoa::Buffer::new().format(magnitude).as_bytes());
        return Ok(());
    }
    // `as` rounds to nearest; the round trip tells whether the double holds it exactly.
    #[expect(
        clippy::cast_precision_loss,
        reason = "exactness is checked on the next line"
    )]
    let f = magnitude as f64;
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "f is a positive integral double of at most 2^64"
    )]
    let exact = f < 18_446_744_073_709_551_616.0 && f as u64 == magnitude;
    if !exact {
        let sign = if negative { "-" } else { "" };
        return Err(JcsError::InexactNumber(format!("{sign}{magnitude}")));
    }
    write_f64(out, if negative { -f } else { f })
}

fn write_f64(out: &mut Vec<u8>, f: f64) -> Result<(), JcsError> {
    if !f.is_finite() {
        return Err(JcsError::NotJson("NaN or infinity".into()));
    }
    if f == 0.0 {
        // Both zeros print as `0`.
        out.push(b'0');
        return Ok(());
    }
    out.extend_from_slice(ryu_js::Buffer::new().format_finite(f).as_bytes());
    Ok(())
}

/// Which bytes RFC 8785 escapes: 0 none, 1 `\u00xx`, otherwise the letter of the short form.
const ESCAPE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 0x20 {
        table[b] = 1;
        b += 1;
    }
    table[0x08] = b'b';
    table[0x09] = b't';
    table[0x0a] = b'n';
    table[0x0c] = b'f';
    table[0x0d] = b'r';
    table[b'"' as usize] = b'"';
    table[b'\\' as usize] = b'\\';
    table
};

/// Whether any of eight bytes is a control, `"` or `\\` (the classic "has a byte less than n"
/// and "has a zero byte" word tests).
const fn needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let control = word.wrapping_sub(ONES * 0x20) & !word & HIGH;
    let quote = word ^ (ONES * b'"' as u64);
    let quote = quote.wrapping_sub(ONES) & !quote & HIGH;
    let backslash = word ^ (ONES * b'\\' as u64);
    let backslash = backslash.wrapping_sub(ONES) & !backslash & HIGH;
    control | quote | backslash != 0
}

/// Append a string with RFC 8785's escaping: `"` and `\`, the short forms `\b \t \n \f \r`,
/// other controls as `\u00xx` (lowercase hex), everything else as itself.
pub fn write_str(out: &mut Vec<u8>, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(s.len() + 2);
    out.push(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Eight bytes at a time while none of them needs escaping (most never do).
        if let Some(chunk) = bytes.get(i..i + 8) {
            let word = u64::from_le_bytes(chunk.try_into().expect("eight bytes"));
            if !needs_escape(word) {
                i += 8;
                continue;
            }
        }
        let b = bytes[i];
        let escape = ESCAPE[usize::from(b)];
        i += 1;
        if escape == 0 {
            continue;
        }
        let i = i - 1;
        out.extend_from_slice(&bytes[start..i]);
        if escape == 1 {
            out.extend_from_slice(b"\\u00");
            out.push(HEX[usize::from(b >> 4)]);
            out.push(HEX[usize::from(b & 0xf)]);
        } else {
            out.push(b'\\');
            out.push(escape);
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// The canonicaliser of format 1 (`serde_jcs` 0.1), kept only to verify what was signed with
/// it. It differs from RFC 8785 on integers above 2^53 (written verbatim) and on key order
/// (it compared quoted, escaped UTF-8, so keys with a space, `!`, `"`, `\`, a control or a
/// supplementary character could sort differently); everywhere else both give the same bytes.
pub mod legacy {
    use serde::Serialize;

    /// Format-1 canonical bytes of a value.
    pub fn to_vec<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, super::JcsError> {
        serde_jcs::to_vec(value).map_err(|e| super::JcsError::NotJson(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn canon(text: &str) -> String {
        let value: Value = serde_json::from_str(text).unwrap();
        String::from_utf8(value_to_vec(&value).unwrap()).unwrap()
    }

    /// RFC 8785 §3.2.2 (the example in §3.2.2 and Appendix B's number table).
    #[test]
    fn the_rfc_examples() {
        assert_eq!(
            canon(
                r#"{"numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
                  "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
                  "literals": [null, true, false]}"#
            ),
            r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"string":"€$\u000f\nA'B\"\\\\\"/"}"#
        );
        // Appendix B: IEEE 754 bit patterns and their ECMAScript form.
        for (bits, expected) in [
            (0x0000_0000_0000_0000_u64, "0"),
            (0x8000_0000_0000_0000, "0"),
            (0x0000_0000_0000_0001, "5e-324"),
            (0x8000_0000_0000_0001, "-5e-324"),
            (0x7fef_ffff_ffff_ffff, "1.7976931348623157e+308"),
            (0xffef_ffff_ffff_ffff, "-1.7976931348623157e+308"),
            (0x4340_0000_0000_0000, "9007199254740992"),
            (0xc340_0000_0000_0000, "-9007199254740992"),
            (0x4430_0000_0000_0000, "295147905179352830000"),
            (0x44b5_2d02_c7e1_4af5, "9.999999999999997e+22"),
            (0x44b5_2d02_c7e1_4af6, "1e+23"),
            (0x44b5_2d02_c7e1_4af7, "1.0000000000000001e+23"),
            (0x444b_1ae4_d6e2_ef4e, "999999999999999700000"),
            (0x444b_1ae4_d6e2_ef4f, "999999999999999900000"),
            (0x444b_1ae4_d6e2_ef50, "1e+21"),
            (0x3eb0_c6f7_a0b5_ed8c, "9.999999999999997e-7"),
            (0x3eb0_c6f7_a0b5_ed8d, "0.000001"),
            (0x41b3_de43_5555_5553, "333333333.3333332"),
            (0x41b3_de43_5555_5554, "333333333.33333325"),
            (0x41b3_de43_5555_5555, "333333333.3333333"),
            (0x41b3_de43_5555_5556, "333333333.3333334"),
            (0x41b3_de43_5555_5557, "333333333.33333343"),
            (0xbecb_f647_612f_3696, "-0.0000033333333333333333"),
            (0x4314_3ff3_c1cb_0959, "1424953923781206.2"),
        ] {
            let mut out = Vec::new();
            write_f64(&mut out, f64::from_bits(bits)).unwrap();
            assert_eq!(String::from_utf8(out).unwrap(), expected, "{bits:#x}");
        }
    }

    #[test]
    fn keys_sort_by_utf16_code_units() {
        // RFC 8785 §3.2.3's example: "\r", "1", "\u0080", "ö", "€", "😀", "\ufb33".
        let text = r#"{"\u20ac":"Euro Sign","\r":"Carriage Return","\ufb33":"Hebrew Letter Dalet With Dagesh","1":"One","\ud83d\ude00":"Emoji: Grinning Face","\u0080":"Control","\u00f6":"Latin Small Letter O With Diaeresis"}"#;
        assert_eq!(
            canon(text),
            "{\"\\r\":\"Carriage Return\",\"1\":\"One\",\"\u{80}\":\"Control\",\"ö\":\"Latin Small Letter O With Diaeresis\",\"€\":\"Euro Sign\",\"😀\":\"Emoji: Grinning Face\",\"\u{fb33}\":\"Hebrew Letter Dalet With Dagesh\"}"
        );
        // A supplementary character sorts before U+E000..U+FFFF in UTF-16 (not in UTF-8).
        assert_eq!(utf16_cmp("\u{1F600}", "\u{FFFD}"), std::cmp::Ordering::Less);
        assert_eq!(
            utf16_cmp("\u{E000}", "\u{D7FF}"),
            std::cmp::Ordering::Greater
        );
    }

    #[test]
    fn integers_are_printed_as_the_double_they_denote_or_refused() {
        assert_eq!(
            canon("[9007199254740992, -9007199254740992, 0, -0, -0.0, 1]"),
            "[9007199254740992,-9007199254740992,0,0,0,1]"
        );
        // 2^60 is a double; ECMAScript prints its shortest digits padded with zeros.
        assert_eq!(canon("1152921504606846976"), "1152921504606847000");
        assert_eq!(canon("-1152921504606846976"), "-1152921504606847000");
        assert_eq!(canon("18446744073709549568"), "18446744073709550000");
        for inexact in [
            "9007199254740993",
            "1152921504606846977",
            "-9223372036854775807",
            "18446744073709551615",
        ] {
            let value: Value = serde_json::from_str(inexact).unwrap();
            assert!(
                matches!(value_to_vec(&value), Err(JcsError::InexactNumber(n)) if n == inexact),
                "{inexact}"
            );
        }
        // Numbers past u64 are parsed as doubles and printed as ECMAScript does.
        assert_eq!(canon("100000000000000000000000"), "1e+23");
        assert_eq!(
            canon("[1.0, 1e21, 1e20, 1e-7, 0.1, -1.5e-9]"),
            "[1,1e+21,100000000000000000000,1e-7,0.1,-1.5e-9]"
        );
    }

    #[test]
    fn strings_escape_only_what_the_rfc_escapes() {
        assert_eq!(
            canon(r#""\u0000\u0001\u001f\u007f\u2028\ud83d\ude00\b\f\n\r\t/\"\\""#),
            "\"\\u0000\\u0001\\u001f\u{7f}\u{2028}😀\\b\\f\\n\\r\\t/\\\"\\\\\""
        );
    }

    #[test]
    fn lone_surrogates_never_reach_the_canonicaliser() {
        for text in [r#""\ud800""#, r#""\udc00x""#, r#"{"\ud83d": 1}"#] {
            assert!(serde_json::from_str::<Value>(text).is_err(), "{text}");
        }
    }

    #[test]
    fn deep_nesting_is_refused_not_overflowed() {
        let mut value = json!(1);
        for _ in 0..MAX_DEPTH {
            value = json!([value]);
        }
        assert!(value_to_vec(&value).is_ok());
        let deeper = json!({ "a": value });
        assert_eq!(value_to_vec(&deeper), Err(JcsError::TooDeep));
    }

    mod agree {
        use super::*;
        use proptest::prelude::*;

        /// Keys of plain characters: format 1 sorted keys by their quoted, escaped form (so
        /// `"a!"` before `"a"`, `\"` after `A`) and by UTF-8, which RFC 8785 does differently.
        const KEY: &str = "[#-\\[\\]-~\u{80}-\u{d7ff}]{0,6}";

        fn json() -> impl Strategy<Value = Value> {
            let leaf = prop_oneof![
                Just(Value::Null),
                any::<bool>().prop_map(Value::Bool),
                (-(1i64 << 53)..=(1i64 << 53)).prop_map(Value::from),
                // Finite doubles below 2^53: a larger integral double prints as digits that
                // are not the double's exact value, which the canonicaliser would not take
                // back as input (see `integers_are_printed_as_the_double_they_denote_or_refused`).
                any::<f64>()
                    .prop_filter("finite, below 2^53", |f| f.is_finite() && f.abs() < 9.0e15)
                    .prop_map(Value::from),
                "[ -~\u{0}-\u{1f}\u{80}-\u{d7ff}]{0,12}".prop_map(Value::String),
            ];
            leaf.prop_recursive(4, 48, 6, |inner| {
                prop_oneof![
                    prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
                    prop::collection::btree_map(KEY, inner, 0..6)
                        .prop_map(|m| Value::Object(m.into_iter().collect())),
                ]
            })
        }

        proptest! {
            /// Where format 1 was right — integers within 2^53, keys below U+D800 (where UTF-8
            /// and UTF-16 order agree) without escaped characters — both canonicalisers give
            /// the same bytes, so hashes of such values did not change with format 2.
            #[test]
            fn format_2_agrees_with_format_1_where_format_1_was_right(value in json()) {
                prop_assert_eq!(value_to_vec(&value).unwrap(), legacy::to_vec(&value).unwrap());
            }

            /// Strings are escaped exactly as serde_json escapes them (the same minimal set and
            /// short forms), whichever path — eight bytes at a time or one — each byte takes.
            #[test]
            fn strings_escape_like_serde_json(text in "[ -~\u{0}-\u{1f}\u{7f}-\u{10ffff}]{0,40}") {
                let mut ours = Vec::new();
                write_str(&mut ours, &text);
                prop_assert_eq!(String::from_utf8(ours).unwrap(), serde_json::to_string(&text).unwrap());
            }

            /// Canonicalising is idempotent: the canonical text parses back to itself.
            #[test]
            fn canonical_text_is_a_fixed_point(value in json()) {
                let once = value_to_vec(&value).unwrap();
                let parsed: Value = serde_json::from_slice(&once).unwrap();
                prop_assert_eq!(value_to_vec(&parsed).unwrap(), once);
            }
        }
    }
}
