//! Answering `files` questions from a directory laid out like an image's
//! root file system, the way the host's merged reader answers them, so an
//! updater's probe rounds can be driven natively in `cargo test`.

use std::collections::BTreeMap;
use std::path::Path;

use crate::update::{FileEntry, FileKind, OsRelease};

/// Files larger than this come without contents, as from the host.
const MAX_CONTENTS: u64 = 16 << 20;

/// Every entry of `root` matching the absolute `pattern`: `*`, `?` and
/// `[...]` within a component, `**` for any depth; symlinked directories
/// are not descended into. Sorted by path.
pub fn glob(root: &Path, pattern: &str) -> Vec<FileEntry> {
    let parts: Vec<&str> = pattern.trim_start_matches('/').split('/').filter(|p| !p.is_empty()).collect();
    let mut found = Vec::new();
    walk(root, "", &parts, &mut found);
    found.sort_by(|a, b| a.path.cmp(&b.path));
    found.dedup_by(|a, b| a.path == b.path);
    found
}

/// The entries a `files` question with these patterns gets: each pattern's
/// matches in turn, every path once.
pub fn files(root: &Path, patterns: &[String]) -> Vec<FileEntry> {
    let mut entries: Vec<FileEntry> = Vec::new();
    for pattern in patterns {
        for e in glob(root, pattern) {
            if !entries.iter().any(|x| x.path == e.path) {
                entries.push(e);
            }
        }
    }
    entries
}

/// One entry of the host's answer for `path`, named `image_path`.
///
/// # Panics
/// When `path` does not exist or cannot be read.
pub fn entry(path: &Path, image_path: String) -> FileEntry {
    let meta = std::fs::symlink_metadata(path).expect("exists");
    let kind = if meta.file_type().is_symlink() {
        FileKind::Symlink
    } else if meta.is_dir() {
        FileKind::Directory
    } else if meta.is_file() {
        FileKind::Regular
    } else {
        FileKind::Other
    };
    FileEntry {
        path: image_path,
        contents: (kind == FileKind::Regular && meta.len() <= MAX_CONTENTS)
            .then(|| std::fs::read(path).expect("readable")),
        link_target: (kind == FileKind::Symlink)
            .then(|| std::fs::read_link(path).expect("a link").to_string_lossy().into_owned()),
        kind,
    }
}

/// `/etc/os-release` (or `/usr/lib/os-release`) of `root`, parsed as the
/// host parses it.
pub fn os_release(root: &Path) -> Option<OsRelease> {
    let text = std::fs::read_to_string(root.join("etc/os-release"))
        .or_else(|_| std::fs::read_to_string(root.join("usr/lib/os-release")))
        .ok()?;
    let fields: BTreeMap<&str, String> = text
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim(), v.trim().trim_matches('"').to_owned()))
        .collect();
    Some(OsRelease {
        id: fields.get("ID")?.to_lowercase(),
        id_like: fields
            .get("ID_LIKE")
            .map(|v| v.split_whitespace().map(str::to_owned).collect())
            .unwrap_or_default(),
        version_id: fields.get("VERSION_ID").cloned(),
        version_codename: fields.get("VERSION_CODENAME").cloned(),
        pretty_name: fields.get("PRETTY_NAME").cloned(),
    })
}

fn walk(dir: &Path, prefix: &str, parts: &[&str], found: &mut Vec<FileEntry>) {
    let Some((first, rest)) = parts.split_first() else { return };
    if *first == "**" {
        // Zero components, then each subdirectory in turn.
        walk(dir, prefix, rest, found);
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let path = entry.path();
            if std::fs::symlink_metadata(&path).is_ok_and(|m| m.is_dir()) {
                walk(&path, &format!("{prefix}/{name}"), parts, found);
            }
        }
        return;
    }
    let names: Vec<String> = if first.contains(['*', '?', '[']) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        entries
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| glob_match(first.as_bytes(), name.as_bytes()))
            .collect()
    } else {
        vec![(*first).to_owned()]
    };
    for name in names {
        let path = dir.join(&name);
        let image_path = format!("{prefix}/{name}");
        let Ok(meta) = std::fs::symlink_metadata(&path) else { continue };
        if rest.is_empty() {
            found.push(entry(&path, image_path));
        } else if meta.is_dir() {
            walk(&path, &image_path, rest, found);
        }
    }
}

fn glob_match(pattern: &[u8], name: &[u8]) -> bool {
    match (pattern.split_first(), name.split_first()) {
        (None, None) => true,
        (Some((b'*', rest)), _) => {
            glob_match(rest, name) || (!name.is_empty() && glob_match(pattern, &name[1..]))
        }
        (Some((b'?', rest)), Some((_, name_rest))) => glob_match(rest, name_rest),
        (Some((b'[', rest)), Some((c, name_rest))) => {
            let Some(end) = rest.iter().position(|b| *b == b']') else { return false };
            let class = &rest[..end];
            let (negate, class) = match class.split_first() {
                Some((b'!' | b'^', rest)) => (true, rest),
                _ => (false, class),
            };
            let mut hit = false;
            let mut i = 0;
            while i < class.len() {
                if i + 2 < class.len() && class[i + 1] == b'-' {
                    hit |= class[i] <= *c && *c <= class[i + 2];
                    i += 3;
                } else {
                    hit |= class[i] == *c;
                    i += 1;
                }
            }
            hit != negate && glob_match(&rest[end + 1..], name_rest)
        }
        (Some((p, rest)), Some((n, name_rest))) => p == n && glob_match(rest, name_rest),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::glob_match;

    #[test]
    fn globs_match_as_the_host_does() {
        for (pattern, name, want) in [
            ("*.dist-info", "urllib3-1.26.5.dist-info", true),
            ("*.dist-info", "urllib3", false),
            ("python3.?", "python3.11", false),
            ("python3.??", "python3.11", true),
            ("lib[0-9]*", "lib3x", true),
            ("lib[!0-9]*", "lib3x", false),
            ("[abc", "a", false),
        ] {
            assert_eq!(glob_match(pattern.as_bytes(), name.as_bytes()), want, "{pattern} ~ {name}");
        }
    }
}
