//! Reading a `docker save` archive in place: the manifest names the config
//! and one tar per layer; layers are read as byte ranges of the archive, so
//! nothing is unpacked twice. The archive is the Engine's output, so it is
//! checked like any hostile input.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::path::{Component, Path, PathBuf};

use crate::error::{Error, Result};

const MAX_JSON: u64 = 16 << 20;
const MAX_LINKS: usize = 8;

/// One layer of a saved image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavedLayer {
    /// The uncompressed layer's digest, from the image config.
    pub diff_id: String,
    offset: u64,
    size: u64,
}

#[derive(Debug)]
pub struct SavedImage {
    name: String,
    file: File,
    config: Vec<u8>,
    layers: Vec<SavedLayer>,
}

#[derive(Clone, Copy)]
enum Kind {
    File { offset: u64, size: u64 },
    Link,
}

impl SavedImage {
    /// Indexes the archive at `path`; `name` only labels errors.
    pub fn open(path: &Path, name: &str) -> Result<Self> {
        let bad = |reason: String| Error::SavedImage { image: name.to_owned(), reason };
        let file = File::open(path).map_err(|e| Error::io(format!("opening {}", path.display()), e))?;
        let mut entries: HashMap<PathBuf, Kind> = HashMap::new();
        let mut links: HashMap<PathBuf, PathBuf> = HashMap::new();
        let mut archive = tar::Archive::new(&file);
        let iter = archive.entries().map_err(|e| bad(format!("not a tar archive: {e}")))?;
        for entry in iter {
            let entry = entry.map_err(|e| bad(format!("unreadable tar entry: {e}")))?;
            let path = normal(&entry.path().map_err(|e| bad(format!("bad entry name: {e}")))?)
                .ok_or_else(|| bad("an entry name leaves the archive".into()))?;
            let kind = entry.header().entry_type();
            if kind.is_file() {
                entries.insert(path, Kind::File { offset: entry.raw_file_position(), size: entry.size() });
            } else if kind.is_symlink() {
                let target = entry
                    .link_name()
                    .map_err(|e| bad(format!("bad link target: {e}")))?
                    .ok_or_else(|| bad("a link without target".into()))?;
                let joined = path.parent().unwrap_or(Path::new("")).join(target);
                let target = normal(&joined).ok_or_else(|| bad("a link leaves the archive".into()))?;
                entries.insert(path.clone(), Kind::Link);
                links.insert(path, target);
            }
        }
        let index = Index { file: &file, entries, links, name };
        let manifest: serde_json::Value = serde_json::from_slice(&index.read("manifest.json")?)
            .map_err(|e| bad(format!("manifest.json: {e}")))?;
        let Some([entry]) = manifest.as_array().map(Vec::as_slice) else {
            return Err(bad("manifest.json must list exactly one image".into()));
        };
        let config_path = entry
            .get("Config")
            .and_then(|c| c.as_str())
            .ok_or_else(|| bad("manifest.json has no Config".into()))?;
        let layer_paths = strings(entry, "/Layers", "manifest.json's Layers").map_err(bad)?;
        let config = index.read(config_path)?;
        let parsed: serde_json::Value =
            serde_json::from_slice(&config).map_err(|e| bad(format!("the config {config_path}: {e}")))?;
        let diff_ids = strings(&parsed, "/rootfs/diff_ids", "the config's rootfs.diff_ids").map_err(bad)?;
        if diff_ids.len() != layer_paths.len() {
            return Err(bad(format!(
                "{} layers but {} diff_ids in the config",
                layer_paths.len(),
                diff_ids.len()
            )));
        }
        let layers = layer_paths
            .iter()
            .zip(&diff_ids)
            .map(|(path, diff_id)| {
                let (offset, size) = index.locate(path)?;
                Ok(SavedLayer { diff_id: (*diff_id).to_owned(), offset, size })
            })
            .collect::<Result<_>>()?;
        drop(index);
        Ok(SavedImage { name: name.to_owned(), file, config, layers })
    }

    /// The config exactly as the Engine wrote it.
    pub fn config(&self) -> &[u8] {
        &self.config
    }

    pub fn layers(&self) -> &[SavedLayer] {
        &self.layers
    }

    /// The layers on top of `base`, whose diff_ids must be this image's
    /// first layers: what a chain of steps added to the image it started on.
    pub fn layers_after(&self, base: &[String]) -> Result<&[SavedLayer]> {
        let prefix = self.layers.iter().map(|l| &l.diff_id).zip(base).all(|(a, b)| a == b);
        if base.len() > self.layers.len() || !prefix {
            return Err(Error::SavedImage {
                image: self.name.clone(),
                reason: "its first layers are not the original image's layers".into(),
            });
        }
        Ok(&self.layers[base.len()..])
    }

    /// The layer as an uncompressed tar stream (the Engine may store layers
    /// gzip-compressed; 20.10 does not).
    pub fn open_layer(&self, layer: &SavedLayer) -> Result<Box<dyn Read + '_>> {
        let section = Section { file: &self.file, at: layer.offset, end: layer.offset + layer.size };
        let mut magic = [0u8; 2];
        let n =
            self.file.read_at(&mut magic, layer.offset).map_err(|e| Error::io("reading a saved layer", e))?;
        if n == 2 && magic == [0x1f, 0x8b] {
            return Ok(Box::new(flate2::read::GzDecoder::new(section)));
        }
        Ok(Box::new(section))
    }
}

struct Index<'a> {
    file: &'a File,
    entries: HashMap<PathBuf, Kind>,
    links: HashMap<PathBuf, PathBuf>,
    name: &'a str,
}

impl Index<'_> {
    fn locate(&self, path: &str) -> Result<(u64, u64)> {
        let bad = |reason: String| Error::SavedImage { image: self.name.to_owned(), reason };
        let mut current =
            normal(Path::new(path)).ok_or_else(|| bad(format!("{path:?} leaves the archive")))?;
        for _ in 0..MAX_LINKS {
            match self.entries.get(&current) {
                Some(Kind::File { offset, size }) => return Ok((*offset, *size)),
                Some(Kind::Link) => current = self.links[&current].clone(),
                None => return Err(bad(format!("{path:?} is not in the archive"))),
            }
        }
        Err(bad(format!("{path:?} is a chain of more than {MAX_LINKS} links")))
    }

    fn read(&self, path: &str) -> Result<Vec<u8>> {
        let (offset, size) = self.locate(path)?;
        if size > MAX_JSON {
            return Err(Error::SavedImage {
                image: self.name.to_owned(),
                reason: format!("{path:?} is {size} bytes, more than any manifest or config"),
            });
        }
        let mut buf = vec![0; usize::try_from(size).unwrap_or(0)];
        self.file.read_exact_at(&mut buf, offset).map_err(|e| Error::io(format!("reading {path}"), e))?;
        Ok(buf)
    }
}

/// The array of strings at `pointer`, or why there is none.
fn strings<'v>(value: &'v serde_json::Value, pointer: &str, what: &str) -> Result<Vec<&'v str>, String> {
    let array =
        value.pointer(pointer).and_then(|a| a.as_array()).ok_or_else(|| format!("{what} is missing"))?;
    array.iter().map(|v| v.as_str().ok_or_else(|| format!("{what} holds a non-string"))).collect()
}

/// A path inside the archive with `.` and `..` resolved, or `None` if it
/// would leave it.
fn normal(path: &Path) -> Option<PathBuf> {
    let mut out = PathBuf::new();
    for component in path.components() {
        match component {
            Component::Normal(part) => out.push(part),
            Component::CurDir => {}
            Component::ParentDir => {
                if !out.pop() {
                    return None;
                }
            }
            Component::RootDir | Component::Prefix(_) => return None,
        }
    }
    Some(out)
}

/// A byte range of the archive, read positionally so layers can be read
/// independently.
struct Section<'a> {
    file: &'a File,
    at: u64,
    end: u64,
}

impl Read for Section<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let left = usize::try_from(self.end - self.at).unwrap_or(usize::MAX);
        let want = buf.len().min(left);
        if want == 0 {
            return Ok(0);
        }
        let n = self.file.read_at(&mut buf[..want], self.at)?;
        if n == 0 {
            return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "the archive ends inside a layer"));
        }
        self.at += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Archive(tar::Builder<Vec<u8>>);

    impl Archive {
        fn new() -> Self {
            Archive(tar::Builder::new(Vec::new()))
        }
        fn file(mut self, path: &str, data: &[u8]) -> Self {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            header.set_cksum();
            self.0.append_data(&mut header, path, data).unwrap();
            self
        }
        fn link(mut self, path: &str, target: &str) -> Self {
            let mut header = tar::Header::new_gnu();
            header.set_entry_type(tar::EntryType::Symlink);
            header.set_size(0);
            self.0.append_link(&mut header, path, target).unwrap();
            self
        }
        fn write(self, dir: &Path) -> PathBuf {
            let path = dir.join("saved.tar");
            std::fs::write(&path, self.0.into_inner().unwrap()).unwrap();
            path
        }
    }

    fn config(diff_ids: &[&str]) -> Vec<u8> {
        serde_json::to_vec(&serde_json::json!({"rootfs": {"type": "layers", "diff_ids": diff_ids}})).unwrap()
    }

    fn read_all(image: &SavedImage, layer: &SavedLayer) -> Vec<u8> {
        let mut out = Vec::new();
        image.open_layer(layer).unwrap().read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn layers_are_read_in_place_through_links() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = r#"[{"Config":"c.json","RepoTags":["x:1"],"Layers":["a/layer.tar","b/layer.tar","c/layer.tar"]}]"#;
        let path = Archive::new()
            .file("a/layer.tar", b"first")
            .file("b/layer.tar", b"second")
            .link("c/layer.tar", "../a/layer.tar")
            .file("c.json", &config(&["sha256:1", "sha256:2", "sha256:1"]))
            .file("manifest.json", manifest.as_bytes())
            .write(dir.path());
        let image = SavedImage::open(&path, "x:1").unwrap();
        let layers = image.layers();
        assert_eq!(layers.len(), 3);
        assert_eq!(read_all(&image, &layers[0]), b"first");
        assert_eq!(read_all(&image, &layers[1]), b"second");
        assert_eq!(read_all(&image, &layers[2]), b"first");
        let new = image.layers_after(&["sha256:1".into()]).unwrap();
        assert_eq!(new.iter().map(|l| l.diff_id.as_str()).collect::<Vec<_>>(), ["sha256:2", "sha256:1"]);
        assert!(image.layers_after(&["sha256:2".into()]).is_err());
        assert!(image.layers_after(&vec!["sha256:1".into(); 4]).is_err());
    }

    #[test]
    fn hostile_archives_are_refused_with_a_reason() {
        let dir = tempfile::tempdir().unwrap();
        let cases: Vec<(Archive, &str)> = vec![
            (Archive::new().file("x", b"y"), "manifest.json"),
            (Archive::new().file("manifest.json", b"{"), "manifest.json"),
            (Archive::new().file("manifest.json", b"[]"), "exactly one"),
            (
                Archive::new().file("manifest.json", br#"[{"Config":"../c.json","Layers":[]}]"#),
                "leaves the archive",
            ),
            (
                Archive::new()
                    .file("c.json", &config(&["sha256:1"]))
                    .file("manifest.json", br#"[{"Config":"c.json","Layers":[]}]"#),
                "0 layers but 1 diff_ids",
            ),
            (
                Archive::new()
                    .file("c.json", &config(&["sha256:1"]))
                    .link("l", "m")
                    .link("m", "l")
                    .file("manifest.json", br#"[{"Config":"c.json","Layers":["l"]}]"#),
                "chain of more than",
            ),
            (
                Archive::new()
                    .file("c.json", &config(&["sha256:1"]))
                    .file("manifest.json", br#"[{"Config":"c.json","Layers":["gone"]}]"#),
                "not in the archive",
            ),
        ];
        for (archive, expected) in cases {
            let path = archive.write(dir.path());
            let err = SavedImage::open(&path, "img:1").unwrap_err();
            assert!(matches!(err, Error::SavedImage { .. }), "{err}");
            assert!(err.to_string().contains(expected) && err.to_string().contains("img:1"), "{err}");
        }
    }
}
