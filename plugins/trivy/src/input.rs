//! Turning report bytes into JSON text, with errors that say where the bytes
//! went wrong.
//!
//! The same file lives in plugins/grype: each built-in plugin stands alone,
//! as a third-party plugin would; change both together.

use caulk_sdk::types::Error;

const UTF8_BOM: &[u8] = b"\xEF\xBB\xBF";

/// The report as UTF-8 text, without a byte-order mark.
///
/// The whole input is validated up front rather than left to serde_json,
/// because serde_json does not check the UTF-8 of strings it skips (most of
/// a report is skipped), and a damaged description should not pass silently.
pub(crate) fn json_text(report: &[u8]) -> Result<&str, Error> {
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
mod tests {
    use super::*;

    #[test]
    fn strips_the_byte_order_mark() {
        assert_eq!(json_text(b"\xEF\xBB\xBF{}").unwrap(), "{}");
    }

    #[test]
    fn points_at_the_first_invalid_byte() {
        let err = json_text(b"{\n  \"a\": \"x\xC3\x28\"\n}").unwrap_err();
        assert!(err.message.contains("byte 0xC3 at line 2, column 10"), "{}", err.message);
    }

    #[test]
    fn names_utf16_and_emptiness() {
        assert!(json_text(b"\xFF\xFE{\0}\0").unwrap_err().message.contains("UTF-16"));
        assert!(json_text(b"").unwrap_err().message.contains("0 bytes"));
        assert!(json_text(b" \r\n").unwrap_err().message.contains("only whitespace"));
    }
}
