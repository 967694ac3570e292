//! On-disk cache of compiled plugins.
//!
//! An entry is keyed by the sha256 of the `.wasm` and the engine's
//! compatibility hash, so a new caulk, a new wasmtime or other CPU features
//! never load code compiled for something else. Entries carry a checksum of
//! their payload: deserialising native code trusts it completely, so a
//! truncated or corrupted file is recompiled, never loaded.

use std::fs;
use std::hash::{Hash, Hasher};
use std::io::Write;
use std::path::{Path, PathBuf};

use wasmtime::Engine;
use wasmtime::component::Component;
use xxhash_rust::xxh3::xxh3_128;

const MAGIC: &[u8; 8] = b"CAULKCW1";
const HEADER_LEN: usize = MAGIC.len() + 16;

/// A directory of compiled plugins for one engine configuration.
#[derive(Debug)]
pub struct CodeCache {
    dir: Option<PathBuf>,
    engine_key: String,
}

/// How a component was obtained, for benchmarks and logs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Provenance {
    Cached,
    Compiled,
}

impl CodeCache {
    /// A cache in `dir`; `None` compiles every time.
    pub fn new(engine: &Engine, dir: Option<PathBuf>) -> Self {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        engine.precompile_compatibility_hash().hash(&mut hasher);
        Self { dir, engine_key: format!("{:016x}", hasher.finish()) }
    }

    /// The default location: `$CAULK_CACHE_DIR`, else `$XDG_CACHE_HOME/caulk/plugins`,
    /// else `~/.cache/caulk/plugins`.
    pub fn default_dir() -> Option<PathBuf> {
        if let Some(dir) = std::env::var_os("CAULK_CACHE_DIR") {
            return Some(PathBuf::from(dir).join("plugins"));
        }
        let base = std::env::var_os("XDG_CACHE_HOME")
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache")))?;
        Some(base.join("caulk").join("plugins"))
    }

    fn entry_path(&self, sha256: &str) -> Option<PathBuf> {
        self.dir.as_ref().map(|dir| dir.join(format!("{sha256}-{}.cwasm", self.engine_key)))
    }

    /// The compiled component for `wasm` (whose sha256 is `sha256`), from the
    /// cache when a sound entry exists, else compiled and stored.
    pub fn load(
        &self,
        engine: &Engine,
        wasm: &[u8],
        sha256: &str,
    ) -> wasmtime::Result<(Component, Provenance)> {
        let entry = self.entry_path(sha256);
        if let Some(path) = &entry
            && let Some(component) = read_entry(engine, path)
        {
            return Ok((component, Provenance::Cached));
        }
        let component = Component::from_binary(engine, wasm)?;
        if let Some(path) = &entry {
            match component.serialize() {
                Ok(code) => {
                    if let Err(e) = write_entry(path, &code) {
                        tracing::warn!(path = %path.display(), "could not cache compiled plugin: {e}");
                    }
                }
                Err(e) => tracing::warn!("could not serialise compiled plugin: {e:#}"),
            }
        }
        Ok((component, Provenance::Compiled))
    }
}

fn read_entry(engine: &Engine, path: &Path) -> Option<Component> {
    let bytes = match fs::read(path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(path = %path.display(), "unreadable plugin cache entry, recompiling: {e}");
            return None;
        }
    };
    let Some(payload) = verified_payload(&bytes) else {
        tracing::warn!(path = %path.display(), "corrupt plugin cache entry, recompiling");
        return None;
    };
    // SAFETY: `payload` was produced by `Component::serialize` of an engine with
    // the same compatibility hash (it is in the file name), stored in the
    // user's own cache directory, and its checksum matches, so it is the
    // bytes this process family wrote. wasmtime checks the header again.
    #[allow(unsafe_code)]
    let loaded = unsafe { Component::deserialize(engine, payload) };
    match loaded {
        Ok(component) => Some(component),
        Err(e) => {
            tracing::warn!(path = %path.display(), "stale plugin cache entry, recompiling: {e:#}");
            None
        }
    }
}

fn verified_payload(bytes: &[u8]) -> Option<&[u8]> {
    if bytes.len() < HEADER_LEN || &bytes[..MAGIC.len()] != MAGIC {
        return None;
    }
    let expected = u128::from_le_bytes(bytes[MAGIC.len()..HEADER_LEN].try_into().ok()?);
    let payload = &bytes[HEADER_LEN..];
    (xxh3_128(payload) == expected).then_some(payload)
}

/// Writes to a temporary file beside the entry and renames it into place, so
/// a reader sees either no entry or a whole one, even with two caulk
/// processes writing the same entry at once.
fn write_entry(path: &Path, code: &[u8]) -> std::io::Result<()> {
    let dir = path.parent().expect("entries live in a directory");
    fs::create_dir_all(dir)?;
    let mut file = tempfile::NamedTempFile::new_in(dir)?;
    file.write_all(MAGIC)?;
    file.write_all(&xxh3_128(code).to_le_bytes())?;
    file.write_all(code)?;
    file.as_file().sync_data()?;
    file.persist(path).map_err(|e| e.error)?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_checksum_rejects_any_flipped_byte() {
        let code = b"some compiled code".to_vec();
        let mut entry = MAGIC.to_vec();
        entry.extend_from_slice(&xxh3_128(&code).to_le_bytes());
        entry.extend_from_slice(&code);
        assert_eq!(verified_payload(&entry), Some(&code[..]));
        for i in 0..entry.len() {
            let mut damaged = entry.clone();
            damaged[i] ^= 0x40;
            assert_eq!(verified_payload(&damaged), None, "flip at byte {i} went unnoticed");
        }
        assert_eq!(verified_payload(&entry[..HEADER_LEN - 1]), None);
    }
}
