//! How sure we are that bytes are a Trivy JSON report, from the keys near
//! its start.

use caulk_sdk::json::{self as shape, Event};

/// Trivy writes `SchemaVersion` first and a result's `Target` before its
/// vulnerabilities, so the verdict is in the first few kilobytes; the budget
/// only bounds the work on inputs that are something else.
const BUDGET: usize = 256 * 1024;

/// Evidence gathered while walking.
#[derive(Default)]
struct Seen {
    object: bool,
    array: bool,
    schema_version: Option<bool>, // Some(true) when it is 2
    artifact_keys: bool,
    results: bool,
    /// A result (an element of `Results`, or of the legacy top-level array)
    /// with a `Target`.
    target: bool,
    /// A result with `Vulnerabilities`, `Class`, `Type` or `Packages`.
    result_keys: bool,
    /// A vulnerability with `VulnerabilityID` and `PkgName`.
    vulnerability_keys: bool,
}

impl Seen {
    fn confidence(&self) -> u8 {
        if self.object {
            match self.schema_version {
                Some(true) if self.artifact_keys || self.results => 100,
                // Another schema version still is Trivy's: `parse` then
                // explains what it does not support.
                Some(_) if self.artifact_keys || self.results => 90,
                _ if self.results && self.target && self.result_keys => 85,
                Some(_) => 30,
                None => 0,
            }
        } else if self.array && self.target {
            match (self.result_keys, self.vulnerability_keys) {
                (true, true) => 95,
                (true, false) => 90,
                _ => 40,
            }
        } else {
            0
        }
    }
}

pub(crate) fn sniff(report: &[u8]) -> u8 {
    let mut seen = Seen::default();
    // The key most recently seen at each depth (None for arrays), so a key's
    // ancestors are known.
    let mut parents: Vec<Option<&[u8]>> = Vec::new();
    shape::walk(report, BUDGET, |event| {
        match event {
            Event::Top { object } => {
                seen.object = object;
                seen.array = !object;
            }
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
    // Depth of a result's keys and of a vulnerability's keys: results sit in
    // `Results` (object form) or at the top (legacy array form).
    let (result_depth, in_results) =
        if seen.object { (3, parents.first() == Some(&Some(&b"Results"[..]))) } else { (2, true) };
    if seen.object && depth == 1 {
        match key {
            b"SchemaVersion" => seen.schema_version = Some(scalar == Some(b"2")),
            b"ArtifactName" | b"ArtifactType" => seen.artifact_keys = true,
            b"Results" => seen.results = true,
            _ => {}
        }
    } else if in_results && depth == result_depth {
        match key {
            b"Target" => seen.target = true,
            b"Vulnerabilities" | b"Class" | b"Type" | b"Packages" => seen.result_keys = true,
            _ => {}
        }
    } else if in_results
        && depth == result_depth + 2
        && parents.get(result_depth - 1) == Some(&Some(&b"Vulnerabilities"[..]))
        && matches!(key, b"VulnerabilityID" | b"PkgName")
    {
        seen.vulnerability_keys = true;
    }
}

#[cfg(test)]
mod tests {
    use super::sniff;

    #[test]
    fn schema_2_objects_are_certain() {
        assert_eq!(sniff(br#"{"SchemaVersion": 2, "ArtifactName": "x", "Results": []}"#), 100);
        assert_eq!(sniff(br#"{"SchemaVersion": 3, "ArtifactName": "x"}"#), 90);
    }

    #[test]
    fn legacy_arrays_are_recognised_by_result_keys() {
        let legacy = br#"[{"Target": "a (debian 10)", "Type": "debian",
            "Vulnerabilities": [{"VulnerabilityID": "CVE-1", "PkgName": "apt"}]}]"#;
        assert_eq!(sniff(legacy), 95);
        assert_eq!(sniff(br#"[{"Target": "a (debian 10)", "Vulnerabilities": null}]"#), 90);
    }

    #[test]
    fn other_json_is_not_claimed() {
        for other in [
            &br#"{"matches": [], "descriptor": {"name": "grype"}}"#[..],
            br#"{"apiVersion": "v1alpha1", "metadata": {}, "updates": []}"#,
            br#"{"OSType": "alpine", "Packages": [{"VulnerabilityID": "CVE-1"}]}"#,
            br#"{"bomFormat": "CycloneDX"}"#,
            b"[]",
            b"{}",
            b"not json",
            b"",
        ] {
            assert_eq!(sniff(other), 0, "{}", String::from_utf8_lossy(other));
        }
    }
}
