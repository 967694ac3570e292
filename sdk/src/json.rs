//! Helpers for scanners that read JSON reports.
//!
//! - [`text`]: the report's bytes as UTF-8 JSON text, with errors that say
//!   where the bytes went wrong (a byte-order mark dropped, UTF-16 and bad
//!   UTF-8 refused even inside values a parser would skip);
//! - [`Text`]: a string deserialised without a copy when it has no escapes,
//!   and [`Segment`]/[`path_string`] to say where in a document an error is;
//! - [`walk`]: a forgiving look at the keys near the start of a document,
//!   for `sniff`, that never fails and builds nothing.

// --- reading the report as JSON text

use std::borrow::Cow;
use std::fmt;

use std::marker::PhantomData;

use serde::de::{self, Deserialize, DeserializeSeed, Deserializer, SeqAccess, Visitor};

use crate::types::Error;

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// The report as UTF-8 text, without a byte-order mark.
///
/// The whole input is validated up front rather than left to serde_json,
/// because serde_json does not check the UTF-8 of strings it skips (most of
/// a report is skipped), and a damaged description should not pass silently.
pub fn text(report: &[u8]) -> Result<&str, Error> {
    let bom = if report.starts_with(UTF8_BOM) { UTF8_BOM.len() } else { 0 };
    let body = &report[bom..];
    if body.starts_with(b"\xFF\xFE") || body.starts_with(b"\xFE\xFF") {
        return Err(Error::malformed("the report is UTF-16 encoded; it must be UTF-8 JSON")
            .with_hint("convert it, e.g. `iconv -f UTF-16 -t UTF-8`; PowerShell's `>` writes UTF-16"));
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(Error::malformed(if report.is_empty() {
            "the report is empty (0 bytes)".to_owned()
        } else {
            format!("the report holds only whitespace ({} bytes)", report.len())
        }));
    }
    std::str::from_utf8(body).map_err(|e| {
        let offset = bom + e.valid_up_to();
        let (line, column) = line_column(report, offset);
        Error::malformed(format!(
            "the report is not valid UTF-8: byte 0x{:02X} at line {line}, column {column} (offset {offset})",
            report[offset]
        ))
    })
}

/// 1-based line and byte column of `offset`.
fn line_column(bytes: &[u8], offset: usize) -> (usize, usize) {
    let before = &bytes[..offset];
    let line = before.split(|&b| b == b'\n').count();
    let line_start = before.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
    (line, offset - line_start + 1)
}

#[cfg(test)]
mod text_tests {
    use super::*;

    #[test]
    fn strips_the_byte_order_mark() {
        assert_eq!(text(b"\xEF\xBB\xBF{}").unwrap(), "{}");
    }

    #[test]
    fn points_at_the_first_invalid_byte() {
        let err = text(b"{\n  \"a\": \"x\xC3\x28\"\n}").unwrap_err();
        assert!(err.message.contains("byte 0xC3 at line 2, column 10"), "{}", err.message);
    }

    #[test]
    fn names_utf16_and_emptiness() {
        assert!(text(b"\xFF\xFE{\0}\0").unwrap_err().message.contains("UTF-16"));
        assert!(text(b"").unwrap_err().message.contains("0 bytes"));
        assert!(text(b" \r\n").unwrap_err().message.contains("only whitespace"));
    }
}

// --- reading reports with serde: borrowed strings and JSON paths

/// A string from the report, borrowed when it has no escapes.
pub struct Text<'a>(pub Cow<'a, str>);

impl Text<'_> {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The string, or `None` when it is empty.
    pub fn non_empty(self) -> Option<String> {
        (!self.0.trim().is_empty()).then(|| self.0.into_owned())
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct TextVisitor;
        impl<'de> Visitor<'de> for TextVisitor {
            type Value = Text<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Text(Cow::Owned(v.to_owned())))
            }
        }
        deserializer.deserialize_str(TextVisitor)
    }
}

/// One step of the JSON path to what is being read, for error messages
/// (`$.Results[0].Vulnerabilities[3]`).
pub enum Segment {
    Key(&'static str),
    Index(usize),
}

pub fn path_string(path: &[Segment]) -> String {
    let mut out = String::from("$");
    for segment in path {
        match segment {
            Segment::Key(key) => {
                out.push('.');
                out.push_str(key);
            }
            Segment::Index(index) => {
                out.push('[');
                out.push_str(&index.to_string());
                out.push(']');
            }
        }
    }
    out
}

// --- walking the first keys, for sniffing

/// What `walk` reports.
pub enum Event<'a> {
    /// The document starts with `{` (true) or `[` (false).
    Top { object: bool },
    /// An object key at `depth` (1 for the top-level object's keys), whose
    /// value is a scalar (its raw text, strings without quotes) or a container.
    Key { depth: usize, key: &'a [u8], scalar: Option<&'a [u8]> },
}

/// Calls `visit` for the document's start and each key in the first `budget`
/// bytes, until `visit` returns false.
pub fn walk<'a>(bytes: &'a [u8], budget: usize, mut visit: impl FnMut(Event<'a>) -> bool) {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let bytes = &bytes[..bytes.len().min(budget)];
    let mut pos = skip_ws(bytes, 0);
    match bytes.get(pos) {
        Some(b'{') => {
            if !visit(Event::Top { object: true }) {
                return;
            }
        }
        Some(b'[') => {
            if !visit(Event::Top { object: false }) {
                return;
            }
        }
        _ => return,
    }
    // One entry per open container: true for objects.
    let mut open: Vec<bool> = Vec::new();
    let mut expect_key = false;
    while pos < bytes.len() {
        match bytes[pos] {
            b'{' => {
                open.push(true);
                expect_key = true;
                pos += 1;
            }
            b'[' => {
                open.push(false);
                expect_key = false;
                pos += 1;
            }
            b'}' | b']' => {
                open.pop();
                if open.is_empty() {
                    return;
                }
                expect_key = false;
                pos += 1;
            }
            b',' => {
                expect_key = open.last() == Some(&true);
                pos += 1;
            }
            b'"' if expect_key => {
                let Some((key, after)) = string(bytes, pos) else {
                    return;
                };
                expect_key = false;
                pos = skip_ws(bytes, after);
                if bytes.get(pos) != Some(&b':') {
                    return;
                }
                pos = skip_ws(bytes, pos + 1);
                let scalar = match bytes.get(pos) {
                    Some(b'"') => {
                        let Some((text, after)) = string(bytes, pos) else {
                            return;
                        };
                        pos = after;
                        Some(text)
                    }
                    Some(b'{' | b'[') | None => None,
                    Some(_) => {
                        let end = bytes[pos..]
                            .iter()
                            .position(|b| matches!(b, b',' | b'}' | b']') || b.is_ascii_whitespace())
                            .map_or(bytes.len(), |n| pos + n);
                        let text = &bytes[pos..end];
                        pos = end;
                        Some(text)
                    }
                };
                if !visit(Event::Key { depth: open.len(), key, scalar }) {
                    return;
                }
            }
            b'"' => {
                let Some((_, after)) = string(bytes, pos) else {
                    return;
                };
                pos = after;
            }
            _ => pos += 1,
        }
    }
}

/// The raw contents of the string starting at `start` (a quote) and the
/// position after its closing quote.
fn string(bytes: &[u8], start: usize) -> Option<(&[u8], usize)> {
    let mut i = start + 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' => i += 2,
            b'"' => return Some((&bytes[start + 1..i], i + 1)),
            _ => i += 1,
        }
    }
    None
}

fn skip_ws(bytes: &[u8], mut pos: usize) -> usize {
    while bytes.get(pos).is_some_and(u8::is_ascii_whitespace) {
        pos += 1;
    }
    pos
}

#[cfg(test)]
mod walk_tests {
    use super::*;

    fn keys(json: &str) -> Vec<(usize, String, Option<String>)> {
        let mut out = Vec::new();
        walk(json.as_bytes(), usize::MAX, |event| {
            if let Event::Key { depth, key, scalar } = event {
                out.push((
                    depth,
                    String::from_utf8_lossy(key).into_owned(),
                    scalar.map(|s| String::from_utf8_lossy(s).into_owned()),
                ));
            }
            true
        });
        out
    }

    #[test]
    fn reports_keys_with_depth_and_scalars() {
        let found = keys(r#"{"a": 2, "b": [{"c": "x\"y", "d": {"e": null}}, "s", 1], "f": true}"#);
        let expected = [
            (1, "a", Some("2")),
            (1, "b", None),
            (3, "c", Some(r#"x\"y"#)),
            (3, "d", None),
            (4, "e", Some("null")),
            (1, "f", Some("true")),
        ];
        assert_eq!(found.len(), expected.len(), "{found:?}");
        for (got, want) in found.iter().zip(expected) {
            assert_eq!((got.0, got.1.as_str(), got.2.as_deref()), want);
        }
    }

    #[test]
    fn stops_quietly_on_damage() {
        assert_eq!(keys(r#"{"a": "unterminated"#).len(), 0);
        assert_eq!(keys("not json").len(), 0);
        assert_eq!(keys(r#"[{"a" 1}]"#).len(), 0);
    }
}

/// The elements of an array (or `null`), handed one by one to `on_element`
/// so none of them is kept longer than needed; the path names the element
/// being read when it is malformed. Scanners read huge reports with it
/// without holding every finding at once.
pub struct Elements<'p, T, F> {
    path: &'p mut Vec<Segment>,
    on_element: F,
    element: PhantomData<fn() -> T>,
}

impl<'p, T, F: FnMut(T)> Elements<'p, T, F> {
    pub fn new(path: &'p mut Vec<Segment>, on_element: F) -> Self {
        Self { path, on_element, element: PhantomData }
    }
}

impl<'de, T: Deserialize<'de>, F: FnMut(T)> DeserializeSeed<'de> for Elements<'_, T, F> {
    type Value = ();
    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de, T: Deserialize<'de>, F: FnMut(T)> Visitor<'de> for Elements<'_, T, F> {
    type Value = ();
    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a list")
    }
    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        Ok(())
    }
    fn visit_seq<A: SeqAccess<'de>>(mut self, mut seq: A) -> Result<(), A::Error> {
        for index in 0.. {
            self.path.push(Segment::Index(index));
            let Some(element) = seq.next_element::<T>()? else {
                self.path.pop();
                break;
            };
            self.path.pop();
            (self.on_element)(element);
        }
        Ok(())
    }
}
