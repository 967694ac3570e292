//! Skip detection as Copa does it: patched tags are `<tag>` then `<tag>-1`,
//! `<tag>-2`… (registry tags are treated as immutable), and a directory of
//! scanner reports of the patched images, matched by the artifact name each
//! report names inside it (file names do not matter). An image is patched
//! again, from its original, only when the report of its newest patched tag
//! still lists an update that has a fix; without a report it is patched
//! again (fail-open, as Copa does), so a scheduled run never silently stops.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Reports larger than this are not read for skip detection (a crafted
/// file must not exhaust memory); the job is then patched, as without one.
const MAX_REPORT_BYTES: u64 = 512 << 20;

/// Suffixes Copa gives a multi-platform patch's per-platform tags that
/// read as numbers (`<tag>-386` is linux/386's image, not patch 386), so,
/// as in Copa, they are not patch versions. Copa's other platform
/// suffixes (`amd64`, `arm-v7`…) are not numbers anyway.
const PLATFORM_SUFFIXES: &[&str] = &["386"];

/// The newest patched tag of `base` among `tags`: `base` itself is
/// version 0, `base-N` version N.
pub fn newest_patched(base: &str, tags: &[String]) -> Option<(u64, String)> {
    tags.iter()
        .filter_map(|t| {
            if t == base {
                return Some((0, t.clone()));
            }
            let n = t.strip_prefix(base)?.strip_prefix('-')?;
            if n.is_empty()
                || !n.bytes().all(|b| b.is_ascii_digit())
                || n.starts_with('0')
                || PLATFORM_SUFFIXES.contains(&n)
            {
                return None;
            }
            Some((n.parse().ok()?, t.clone()))
        })
        .max_by_key(|(n, _)| *n)
}

/// The tag a new patch of `base` gets when `newest` is taken; `None` when
/// `newest` is the last number there is (a crafted repository's), since
/// wrapping round would name a tag that may be published.
pub fn next_tag(base: &str, newest: Option<u64>) -> Option<String> {
    let Some(mut n) = newest else { return Some(base.to_owned()) };
    // Never a number that is a platform's suffix: it is not seen as a
    // patch, so it would be written again on every run.
    loop {
        n = n.checked_add(1)?;
        if !PLATFORM_SUFFIXES.contains(&n.to_string().as_str()) {
            return Some(format!("{base}-{n}"));
        }
    }
}

/// Reports in a directory, by the image name each one names inside.
#[derive(Debug, Default)]
pub struct ReportIndex {
    by_artifact: BTreeMap<String, PathBuf>,
    /// Files that could not be read as a report, and why (shown as warnings).
    pub unreadable: Vec<(PathBuf, String)>,
}

/// `docker.io/library/nginx:1` and `nginx:1` are one image.
fn normalize(name: &str) -> String {
    let name = name.strip_prefix("docker://").unwrap_or(name);
    let name =
        name.strip_prefix("docker.io/").or_else(|| name.strip_prefix("index.docker.io/")).unwrap_or(name);
    name.strip_prefix("library/").unwrap_or(name).to_owned()
}

/// The image a report is about: Trivy's `ArtifactName`, Grype's
/// `source.target.userInput`.
fn artifact_name(report: &serde_json::Value) -> Option<&str> {
    report
        .get("ArtifactName")
        .and_then(serde_json::Value::as_str)
        .or_else(|| report.pointer("/source/target/userInput").and_then(serde_json::Value::as_str))
}

impl ReportIndex {
    /// Indexes the `.json` files directly in `dir`.
    pub fn read(dir: &Path) -> Result<Self, std::io::Error> {
        let mut index = Self::default();
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "json") && p.is_file())
            .collect();
        files.sort();
        for path in files {
            match Self::name_in(&path) {
                Ok(name) => {
                    // Two reports of one image: the later file name wins, stably.
                    index.by_artifact.insert(normalize(&name), path);
                }
                Err(why) => index.unreadable.push((path, why)),
            }
        }
        Ok(index)
    }

    fn name_in(path: &Path) -> Result<String, String> {
        let size = std::fs::metadata(path).map_err(|e| e.to_string())?.len();
        if size > MAX_REPORT_BYTES {
            return Err(format!("{size} bytes is more than the {MAX_REPORT_BYTES} read for skip detection"));
        }
        let bytes = std::fs::read(path).map_err(|e| e.to_string())?;
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| format!("not JSON: {e}"))?;
        artifact_name(&value)
            .map(str::to_owned)
            .ok_or_else(|| "names no image (no ArtifactName or source.target.userInput)".to_owned())
    }

    /// The report about `image` (`registry/repo:tag`), if any.
    pub fn find(&self, image: &str) -> Option<&Path> {
        self.by_artifact.get(&normalize(image)).map(PathBuf::as_path)
    }

    /// How many images the directory has reports about.
    pub fn images(&self) -> usize {
        self.by_artifact.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn newest_patched_counts_suffixes_numerically() {
        let all = tags(&[
            "1.0",
            "1.0-patched",
            "1.0-patched-2",
            "1.0-patched-10",
            "1.0-patched-x",
            "1.0-patched-01",
        ]);
        assert_eq!(newest_patched("1.0-patched", &all), Some((10, "1.0-patched-10".into())));
        assert_eq!(newest_patched("1.0-patched", &tags(&["1.0-patched"])), Some((0, "1.0-patched".into())));
        assert_eq!(newest_patched("1.0-patched", &tags(&["1.0", "1.0-patchedx"])), None);
        // Copa's linux/386 image of a multi-platform patch is not patch 386.
        let platforms = tags(&["1.0-patched", "1.0-patched-386", "1.0-patched-amd64", "1.0-patched-2"]);
        assert_eq!(newest_patched("1.0-patched", &platforms), Some((2, "1.0-patched-2".into())));
        assert_eq!(next_tag("t", None).as_deref(), Some("t"));
        assert_eq!(next_tag("t", Some(0)).as_deref(), Some("t-1"));
        assert_eq!(next_tag("t", Some(10)).as_deref(), Some("t-11"));
        let last = format!("t-{}", u64::MAX);
        assert_eq!(newest_patched("t", &tags(&["t", &last])), Some((u64::MAX, last)));
        assert_eq!(next_tag("t", Some(u64::MAX)), None, "no wrapping round to t-0");
        assert_eq!(next_tag("t", Some(385)).as_deref(), Some("t-387"), "t-386 is linux/386's");
    }

    #[test]
    fn reports_are_found_by_the_image_they_name_not_their_file_name() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, body: &str| std::fs::write(dir.path().join(name), body).unwrap();
        write("a.json", r#"{"ArtifactName": "docker.io/library/nginx:1.25.3-patched", "Results": []}"#);
        write("b.json", r#"{"source": {"target": {"userInput": "127.0.0.1:5000/app:v1-patched-2"}}}"#);
        write("c.json", "not json");
        write("d.json", r#"{"Results": []}"#);
        write("e.txt", r#"{"ArtifactName": "ignored:1"}"#);
        let index = ReportIndex::read(dir.path()).unwrap();
        assert_eq!(index.images(), 2);
        assert_eq!(index.find("nginx:1.25.3-patched"), Some(dir.path().join("a.json").as_path()));
        assert_eq!(index.find("127.0.0.1:5000/app:v1-patched-2"), Some(dir.path().join("b.json").as_path()));
        assert_eq!(index.find("127.0.0.1:5000/app:v1-patched"), None);
        let unreadable: Vec<_> =
            index.unreadable.iter().map(|(p, _)| p.file_name().unwrap().to_owned()).collect();
        assert_eq!(unreadable, ["c.json", "d.json"]);
    }
}
