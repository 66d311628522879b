//! Values exactly as a history wrote them.
//!
//! A history's values are compared by their text: `18446744073709551616` and
//! `18446744073709551617` are different values even though both round to the same double, `1M`
//! (an EDN decimal) is not `1`, and `1e400` is a number, not `null`. `serde_json::Value` keeps
//! neither (without `arbitrary_precision`, which the rest of the workspace must not get), so the
//! parsers build an [`ExactValue`] from the literal text instead.

use serde::de::Error as _;
use serde_json::value::RawValue;
use std::fmt;

/// A JSON (or EDN) value with every number kept as its literal text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum ExactValue {
    /// `null` (EDN `nil`).
    #[default]
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number, as written: `1`, `1.0`, `1e400`, `12345678901234567890123N` and `1M` are all
    /// different values.
    Number(Box<str>),
    /// A string (EDN keywords and symbols become strings too).
    String(String),
    /// An array (an EDN vector, list or set).
    Array(Vec<ExactValue>),
    /// An object, its entries sorted by key (so key order does not matter); a repeated key
    /// keeps its last value.
    Object(Vec<(String, ExactValue)>),
}

impl ExactValue {
    /// Reads one JSON value from its text, keeping numbers as written.
    pub fn from_json_text(text: &str) -> Result<ExactValue, serde_json::Error> {
        let text = text.trim();
        Ok(match text.as_bytes().first() {
            Some(b'[') => {
                let items: Vec<&RawValue> = serde_json::from_str(text)?;
                ExactValue::Array(
                    items
                        .into_iter()
                        .map(|item| ExactValue::from_json_text(item.get()))
                        .collect::<Result<_, _>>()?,
                )
            }
            Some(b'{') => {
                let entries: std::collections::BTreeMap<String, &RawValue> =
                    serde_json::from_str(text)?;
                ExactValue::Object(
                    entries
                        .into_iter()
                        .map(|(k, v)| Ok((k, ExactValue::from_json_text(v.get())?)))
                        .collect::<Result<_, serde_json::Error>>()?,
                )
            }
            Some(b'"') => ExactValue::String(serde_json::from_str(text)?),
            Some(b'-' | b'0'..=b'9') => {
                // Validates the syntax without converting (serde_json skips numbers unchecked
                // for range when reading them as raw text).
                let raw: &RawValue = serde_json::from_str(text)?;
                ExactValue::Number(raw.get().into())
            }
            _ => match text {
                "null" => ExactValue::Null,
                "true" => ExactValue::Bool(true),
                "false" => ExactValue::Bool(false),
                _ => {
                    return Err(serde_json::Error::custom(format!(
                        "not a JSON value: {text}"
                    )))
                }
            },
        })
    }

    /// True for `null`.
    pub fn is_null(&self) -> bool {
        matches!(self, ExactValue::Null)
    }

    /// The items of an array.
    pub fn as_array(&self) -> Option<&[ExactValue]> {
        match self {
            ExactValue::Array(items) => Some(items),
            _ => None,
        }
    }

    /// The text of a string.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            ExactValue::String(s) => Some(s),
            _ => None,
        }
    }

    /// The compact JSON text, numbers as written: equal texts exactly when equal values.
    pub fn text(&self) -> String {
        let mut out = String::new();
        self.write_text(&mut out);
        out
    }

    /// Appends [`ExactValue::text`] to `out`.
    pub(crate) fn write_text(&self, out: &mut String) {
        match self {
            ExactValue::Null => out.push_str("null"),
            ExactValue::Bool(b) => out.push_str(if *b { "true" } else { "false" }),
            ExactValue::Number(n) => out.push_str(n),
            ExactValue::String(s) => write_string(s, out),
            ExactValue::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    item.write_text(out);
                }
                out.push(']');
            }
            ExactValue::Object(entries) => {
                out.push('{');
                for (i, (k, v)) in entries.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write_string(k, out);
                    out.push(':');
                    v.write_text(out);
                }
                out.push('}');
            }
        }
    }
}

/// Writes `s` as a JSON string literal, escaping exactly as serde_json does (`"`, `\\`, the
/// short escapes `\b \f \n \r \t`, other control characters as `\u00xx`; nothing else).
fn write_string(s: &str, out: &mut String) {
    out.reserve(s.len() + 2);
    out.push('"');
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let escape = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        out.push_str(&s[start..i]);
        if escape.is_empty() {
            const HEX: &[u8; 16] = b"0123456789abcdef";
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xf)]));
        } else {
            out.push_str(escape);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

impl fmt::Display for ExactValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

impl From<&serde_json::Value> for ExactValue {
    fn from(value: &serde_json::Value) -> ExactValue {
        match value {
            serde_json::Value::Null => ExactValue::Null,
            serde_json::Value::Bool(b) => ExactValue::Bool(*b),
            serde_json::Value::Number(n) => ExactValue::Number(n.to_string().into()),
            serde_json::Value::String(s) => ExactValue::String(s.clone()),
            serde_json::Value::Array(items) => {
                ExactValue::Array(items.iter().map(ExactValue::from).collect())
            }
            serde_json::Value::Object(map) => {
                let mut entries: Vec<(String, ExactValue)> = map
                    .iter()
                    .map(|(k, v)| (k.clone(), ExactValue::from(v)))
                    .collect();
                entries.sort_by(|a, b| a.0.cmp(&b.0));
                ExactValue::Object(entries)
            }
        }
    }
}

impl From<serde_json::Value> for ExactValue {
    fn from(value: serde_json::Value) -> ExactValue {
        ExactValue::from(&value)
    }
}

impl serde::Serialize for ExactValue {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match RawValue::from_string(self.text()) {
            Ok(raw) => raw.serialize(serializer),
            // An EDN literal that is not JSON (`1N`, `1M`): keep its text as a string.
            Err(_) => serializer.serialize_str(&self.text()),
        }
    }
}

impl<'de> serde::Deserialize<'de> for ExactValue {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<ExactValue, D::Error> {
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        ExactValue::from_json_text(raw.get()).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(text: &str) -> ExactValue {
        ExactValue::from_json_text(text).unwrap()
    }

    #[test]
    fn numbers_beyond_64_bits_and_doubles_stay_distinct() {
        assert_ne!(v("18446744073709551616"), v("18446744073709551617"));
        assert_ne!(v("9223372036854775808"), v("9223372036854775809"));
        assert_eq!(v("1e400").text(), "1e400");
        assert!(!v("1e400").is_null());
        assert_ne!(v("1"), v("1.0"));
    }

    #[test]
    fn strings_are_escaped_as_serde_json_escapes_them() {
        let mut every: String = (0u8..0x80).map(char::from).collect();
        every.push_str("é€😀\u{7f}\u{2028}");
        for s in [every.as_str(), "", "plain", "a\"b\\c"] {
            let mut ours = String::new();
            write_string(s, &mut ours);
            assert_eq!(ours, serde_json::Value::from(s).to_string(), "{s:?}");
        }
    }

    #[test]
    fn nested_values_keep_their_text_and_objects_ignore_key_order() {
        assert_eq!(
            v(r#"[ 18446744073709551616 , "a\"b", null]"#).text(),
            r#"[18446744073709551616,"a\"b",null]"#
        );
        assert_eq!(v(r#"{"b":1,"a":2}"#), v(r#"{"a":2,"b":1}"#));
        assert!(ExactValue::from_json_text("[1,").is_err());
    }
}
