//! A forgiving look at the first bytes of a JSON document, for `sniff`.
//!
//! It reports each object key with its depth and the scalar that follows it,
//! without building anything and without failing: a report is recognised by
//! the keys near its start, and damaged or cut-off input simply ends the walk.
//!
//! The same file lives in plugins/trivy: each built-in plugin stands alone,
//! as a third-party plugin would; change both together.

/// What `walk` reports.
pub(crate) enum Event<'a> {
    /// The document starts with `{` (true) or `[` (false).
    Top { object: bool },
    /// An object key at `depth` (1 for the top-level object's keys), whose
    /// value is a scalar (its raw text, strings without quotes) or a container.
    Key { depth: usize, key: &'a [u8], scalar: Option<&'a [u8]> },
}

/// Calls `visit` for the document's start and each key in the first `budget`
/// bytes, until `visit` returns false.
pub(crate) fn walk<'a>(bytes: &'a [u8], budget: usize, mut visit: impl FnMut(Event<'a>) -> bool) {
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
mod tests {
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
