//! Random access into an uncompressed tar file (OCI and Docker archives):
//! one pass records where each regular file's data lives, after which blobs
//! are served as byte ranges of the archive without extracting it.

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
        let entries = archive.entries().ctx(|| format!("reading archive {}", path.display()))?;
        for entry in entries {
            let entry = entry.ctx(|| format!("reading archive {}", path.display()))?;
            let kind = entry.header().entry_type();
            if !kind.is_file() {
                continue;
            }
            let name = entry
                .path()
                .ctx(|| format!("reading archive {}", path.display()))?
                .to_string_lossy()
                .into_owned();
            let name = normalize(&name);
            files.insert(name, Span { offset: entry.raw_file_position(), size: entry.size() });
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
