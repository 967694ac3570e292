//! Random access into an uncompressed tar file (OCI and Docker archives):
//! one pass records where each regular file's data lives, after which blobs
//! are served as byte ranges of the archive without extracting it.
//!
//! `docker save` writes a layer whose diff_id an earlier layer of the
//! archive has (empty layers, most often) as a symlink to that layer's
//! `layer.tar`: symlinks to regular files of the archive are followed.

use std::collections::HashMap;
use std::fs::File;
use std::io::{BufReader, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use crate::error::{Error, IoContext, Result};

#[derive(Debug, Clone, Copy)]
pub(crate) struct Span {
    pub offset: u64,
    pub size: u64,
}

#[derive(Debug)]
pub(crate) struct TarIndex {
    pub path: PathBuf,
    files: HashMap<String, Span>,
}

impl TarIndex {
    pub fn scan(path: &Path) -> Result<Self> {
        let file = File::open(path).ctx(|| format!("opening archive {}", path.display()))?;
        let mut archive = tar::Archive::new(BufReader::new(file));
        let mut files = HashMap::new();
        let mut links = Vec::new();
        let entries = archive.entries().ctx(|| format!("reading archive {}", path.display()))?;
        for entry in entries {
            let entry = entry.ctx(|| format!("reading archive {}", path.display()))?;
            let kind = entry.header().entry_type();
            if !kind.is_file() && !kind.is_symlink() {
                continue;
            }
            let name = entry
                .path()
                .ctx(|| format!("reading archive {}", path.display()))?
                .to_string_lossy()
                .into_owned();
            let name = normalize(&name);
            if kind.is_symlink() {
                let target = entry.link_name().ctx(|| format!("reading archive {}", path.display()))?;
                if let Some(target) = target.and_then(|t| resolve(&name, &t.to_string_lossy())) {
                    links.push((name, target));
                }
                continue;
            }
            files.insert(name, Span { offset: entry.raw_file_position(), size: entry.size() });
        }
        // Links to links resolve over a few rounds; a cycle or a link out
        // of the archive resolves to nothing.
        for _ in 0..8 {
            let before = files.len();
            for (name, target) in &links {
                if !files.contains_key(name)
                    && let Some(span) = files.get(target).copied()
                {
                    files.insert(name.clone(), span);
                }
            }
            if files.len() == before {
                break;
            }
        }
        let index = TarIndex { path: path.to_owned(), files };
        // A truncated archive still yields its leading entries: catch it
        // here instead of when a blob read comes up short.
        let len = std::fs::metadata(path).ctx(|| format!("reading archive {}", path.display()))?.len();
        if let Some((name, span)) = index.files.iter().find(|(_, s)| s.offset + s.size > len) {
            return Err(Error::Path {
                path: path.to_owned(),
                reason: format!(
                    "archive is truncated inside {name} ({} of {} bytes present)",
                    len.saturating_sub(span.offset),
                    span.size
                ),
            });
        }
        Ok(index)
    }

    pub fn get(&self, name: &str) -> Option<Span> {
        self.files.get(&normalize(name)).copied()
    }

    pub fn open(&self, span: Span) -> Result<impl Read + Send + use<>> {
        let mut file = File::open(&self.path).ctx(|| format!("opening archive {}", self.path.display()))?;
        file.seek(SeekFrom::Start(span.offset))
            .ctx(|| format!("seeking in archive {}", self.path.display()))?;
        Ok(file.take(span.size))
    }

    pub fn read(&self, name: &str, limit: u64) -> Result<Option<Vec<u8>>> {
        let Some(span) = self.get(name) else {
            return Ok(None);
        };
        if span.size > limit {
            return Err(Error::Path {
                path: self.path.clone(),
                reason: format!("{name} is {} bytes, more than the {limit} expected", span.size),
            });
        }
        let mut out = Vec::new();
        self.open(span)?
            .read_to_end(&mut out)
            .ctx(|| format!("reading {name} from {}", self.path.display()))?;
        Ok(Some(out))
    }
}

fn normalize(name: &str) -> String {
    let trimmed = name.trim_start_matches("./").trim_start_matches('/');
    trimmed.to_owned()
}

/// The archive path a symlink at `name` names: relative targets from the
/// link's directory; `None` for one that climbs out of the archive.
fn resolve(name: &str, target: &str) -> Option<String> {
    let mut parts: Vec<&str> = if target.starts_with('/') {
        Vec::new()
    } else {
        name.split('/').filter(|p| !p.is_empty()).collect()
    };
    if !target.starts_with('/') {
        parts.pop();
    }
    for part in target.split('/') {
        match part {
            "" | "." => {}
            ".." => {
                parts.pop()?;
            }
            other => parts.push(other),
        }
    }
    Some(parts.join("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_layer_docker_save_wrote_as_a_symlink_is_read_through_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("saved.tar");
        let mut builder = tar::Builder::new(File::create(&path).unwrap());
        let mut file = tar::Header::new_gnu();
        file.set_size(5);
        file.set_mode(0o644);
        builder.append_data(&mut file, "aaa/layer.tar", &b"layer"[..]).unwrap();
        for (name, target) in [
            ("bbb/layer.tar", "../aaa/layer.tar"),
            ("ccc/layer.tar", "../bbb/layer.tar"),
            ("out/layer.tar", "../../etc/passwd"),
            ("loop/layer.tar", "../loop/layer.tar"),
        ] {
            let mut link = tar::Header::new_gnu();
            link.set_entry_type(tar::EntryType::Symlink);
            link.set_size(0);
            builder.append_link(&mut link, name, target).unwrap();
        }
        builder.finish().unwrap();
        drop(builder);

        let index = TarIndex::scan(&path).unwrap();
        for name in ["aaa/layer.tar", "bbb/layer.tar", "ccc/layer.tar"] {
            assert_eq!(index.read(name, 64).unwrap().as_deref(), Some(&b"layer"[..]), "{name}");
        }
        assert!(index.get("out/layer.tar").is_none(), "a link out of the archive names nothing");
        assert!(index.get("loop/layer.tar").is_none());
    }
}
