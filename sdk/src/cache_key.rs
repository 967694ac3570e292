//! Keys for a plan's cache mounts: a digest of what decides a cache's
//! content (an image's sources and release, its keys), so images that would
//! fill a cache the same way share it and no other image reads it.

use std::fmt::Write as _;

use sha2::{Digest, Sha256};

use crate::update::{FileEntry, FileKind};

/// Builds a cache key from length-prefixed fields, so no two field lists
/// run together into the same bytes.
#[derive(Debug, Clone)]
pub struct CacheKey {
    hasher: Sha256,
}

impl CacheKey {
    /// A key for caches of one kind and layout (`caulk apt cache v1`):
    /// changing it retires every older cache.
    pub fn new(kind: &str) -> Self {
        let mut key = Self { hasher: Sha256::new() };
        key.field(kind);
        key
    }

    /// Adds one field.
    pub fn field(&mut self, bytes: impl AsRef<[u8]>) -> &mut Self {
        let bytes = bytes.as_ref();
        self.hasher.update((bytes.len() as u64).to_le_bytes());
        self.hasher.update(bytes);
        self
    }

    /// Adds files a `files` question matched, in path order: each one's
    /// path, kind, contents and link target.
    pub fn files<'a>(&mut self, files: impl IntoIterator<Item = &'a FileEntry>) -> &mut Self {
        let mut files: Vec<&FileEntry> = files.into_iter().collect();
        files.sort_by(|a, b| a.path.cmp(&b.path));
        for file in files {
            self.field(&file.path);
            self.field(match file.kind {
                FileKind::Regular => "f",
                FileKind::Directory => "d",
                FileKind::Symlink => "l",
                FileKind::Other => "o",
            });
            self.field(file.contents.as_deref().unwrap_or_default());
            self.field(file.link_target.as_deref().unwrap_or_default());
        }
        self
    }

    /// The key: 32 hex digits (128 bits of SHA-256).
    pub fn finish(&self) -> String {
        self.hasher.clone().finalize().iter().take(16).fold(String::with_capacity(32), |mut hex, byte| {
            let _ = write!(hex, "{byte:02x}");
            hex
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(path: &str, contents: &str) -> FileEntry {
        FileEntry {
            path: path.into(),
            kind: FileKind::Regular,
            contents: Some(contents.into()),
            link_target: None,
        }
    }

    #[test]
    fn keys_depend_on_every_field_and_not_on_file_order() {
        let key = |fields: &[&str], files: &[FileEntry]| {
            let mut key = CacheKey::new("test v1");
            for f in fields {
                key.field(f);
            }
            key.files(files).finish()
        };
        let a = file("/a", "1");
        let b = file("/b", "2");
        assert_eq!(key(&["x"], &[a.clone(), b.clone()]), key(&["x"], &[b.clone(), a.clone()]));
        assert_ne!(key(&["ab", "c"], &[]), key(&["a", "bc"], &[]), "fields are length-prefixed");
        assert_ne!(key(&["x"], std::slice::from_ref(&a)), key(&["x"], &[file("/a", "2")]));
        assert_eq!(key(&[], &[]).len(), 32);
    }
}
