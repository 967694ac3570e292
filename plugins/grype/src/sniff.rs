//! How sure we are that bytes are a Grype JSON report, from the keys near
//! its start.

use caulk_sdk::json::{self as shape, Event};

/// Grype writes `matches` first, and each match's `vulnerability` and
/// `artifact` near its start, so the verdict is in the first kilobytes; the
/// budget only bounds the work on inputs that are something else.
const BUDGET: usize = 256 * 1024;

#[derive(Default)]
struct Seen {
    object: bool,
    matches: bool,
    /// A match with `vulnerability` (and `artifact`, `matchDetails`).
    match_vulnerability: bool,
    match_artifact: bool,
    /// `source`, `distro` or `descriptor` at the top level.
    report_keys: bool,
    /// `descriptor.name` is `grype`.
    named_grype: bool,
}

impl Seen {
    fn confidence(&self) -> u8 {
        if !self.object {
            0
        } else if self.matches && self.named_grype {
            100
        } else if self.matches && self.match_vulnerability && self.match_artifact {
            95
        } else if self.matches && self.report_keys {
            85
        } else if self.named_grype {
            60
        } else if self.matches {
            30
        } else {
            0
        }
    }
}

pub(crate) fn sniff(report: &[u8]) -> u8 {
    let mut seen = Seen::default();
    // The key most recently seen at each depth (None for arrays).
    let mut parents: Vec<Option<&[u8]>> = Vec::new();
    shape::walk(report, BUDGET, |event| {
        match event {
            Event::Top { object } => seen.object = object,
            Event::Key { depth, key, scalar } => {
                parents.resize(depth - 1, None);
                observe(&mut seen, &parents, depth, key, scalar);
                parents.push(Some(key));
            }
        }
        seen.confidence() < 100
    });
    seen.confidence()
}

fn observe(seen: &mut Seen, parents: &[Option<&[u8]>], depth: usize, key: &[u8], scalar: Option<&[u8]>) {
    let top = parents.first().copied().flatten();
    match (depth, top) {
        (1, _) => match key {
            b"matches" => seen.matches = true,
            b"source" | b"distro" | b"descriptor" => seen.report_keys = true,
            _ => {}
        },
        // `matches` (1) → its array (2) → a match's keys (3).
        (3, Some(b"matches")) => match key {
            b"vulnerability" => seen.match_vulnerability = true,
            b"artifact" => seen.match_artifact = true,
            _ => {}
        },
        (2, Some(b"descriptor")) if key == b"name" => seen.named_grype = scalar == Some(b"grype"),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::sniff;

    #[test]
    fn grype_reports_are_recognised() {
        assert_eq!(sniff(br#"{"matches": [], "descriptor": {"name": "grype", "version": "0.7.0"}}"#), 100);
        let cut = br#"{"matches": [{"vulnerability": {"id": "CVE-1"}, "relatedVulnerabilities": [], "matchDetails": [],
            "artifact": {"name": "#;
        assert_eq!(sniff(cut), 95);
        assert_eq!(sniff(br#"{"matches": [], "source": {}, "distro": {}}"#), 85);
    }

    #[test]
    fn other_json_is_not_claimed() {
        for other in [
            &br#"{"SchemaVersion": 2, "Results": []}"#[..],
            br#"[{"Target": "x", "Vulnerabilities": []}]"#,
            br#"{"apiVersion": "v1alpha2", "metadata": {}, "updates": []}"#,
            br#"{"artifacts": [], "descriptor": {"name": "syft"}}"#,
            br#"{"spdxVersion": "SPDX-2.3"}"#,
            b"[]",
            b"{}",
            b"\xff\xfe",
            b"",
        ] {
            assert_eq!(sniff(other), 0, "{}", String::from_utf8_lossy(other));
        }
    }
}
