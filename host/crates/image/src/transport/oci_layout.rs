//! `oci:DIR[:REF]` and `oci-archive:FILE[:REF]`: the OCI image layout, as a
//! directory or as a tar file of one.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io::{self, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use oci_spec::image::{Descriptor, ImageIndex};

use super::tar_index::TarIndex;
use super::{BlobDesc, ImageDestination, ImageSource, LocalBlob, MAX_DOCUMENT_SIZE, RawManifest};
use crate::digest::Digest;
use crate::error::{Error, IoContext, Result};
use crate::media;

pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
const LAYOUT_FILE: &str = "oci-layout";
const LAYOUT_CONTENT: &[u8] = br#"{"imageLayoutVersion":"1.0.0"}"#;

enum Store {
    Dir(PathBuf),
    Archive(TarIndex),
}

impl Store {
    fn read_index(&self, origin: &str) -> Result<Vec<u8>> {
        match self {
            Store::Dir(dir) => {
                let path = dir.join("index.json");
                fs::read(&path).map_err(|e| {
                    if e.kind() == io::ErrorKind::NotFound {
                        Error::invalid(origin, "OCI layout", format!("{} does not exist", path.display()))
                    } else {
                        Error::io(format!("reading {}", path.display()), e)
                    }
                })
            }
            Store::Archive(tar) => tar
                .read("index.json", MAX_DOCUMENT_SIZE)?
                .ok_or_else(|| Error::invalid(origin, "OCI archive", "it has no index.json")),
        }
    }
}

/// Read side of both layout flavours.
pub struct OciSource {
    store: Store,
    origin: String,
    top: RawManifest,
}

impl OciSource {
    pub fn open_dir(dir: &Path, name: Option<&str>) -> Result<Self> {
        let origin = format!("oci:{}{}", dir.display(), name.map(|n| format!(":{n}")).unwrap_or_default());
        Self::open(Store::Dir(dir.to_owned()), name, origin)
    }

    pub fn open_archive(file: &Path, name: Option<&str>) -> Result<Self> {
        let origin =
            format!("oci-archive:{}{}", file.display(), name.map(|n| format!(":{n}")).unwrap_or_default());
        Self::open(Store::Archive(TarIndex::scan(file)?), name, origin)
    }

    fn open(store: Store, name: Option<&str>, origin: String) -> Result<Self> {
        let index_bytes = store.read_index(&origin)?;
        let index: ImageIndex = serde_json::from_slice(&index_bytes)
            .map_err(|e| Error::invalid(&origin, "index.json", e.to_string()))?;
        let descriptor = select(&index, name, &origin)?;
        let mut source = OciSource { store, origin, top: RawManifest::new(Vec::new(), "") };
        let desc = BlobDesc::from_oci(&descriptor);
        let bytes = super::read_blob(&source, &desc)?;
        let media_type = if desc.media_type.is_empty() {
            RawManifest::declared_media_type(&bytes).unwrap_or_default()
        } else {
            desc.media_type
        };
        source.top = RawManifest { bytes, media_type, digest: desc.digest };
        Ok(source)
    }

    fn blob_path(dir: &Path, digest: &Digest) -> PathBuf {
        dir.join("blobs/sha256").join(digest.hex())
    }
}

/// Picks the index.json entry a reference names.
fn select(index: &ImageIndex, name: Option<&str>, origin: &str) -> Result<Descriptor> {
    let ref_name = |d: &Descriptor| d.annotations().as_ref().and_then(|a| a.get(REF_NAME)).cloned();
    let names: Vec<String> = index.manifests().iter().filter_map(ref_name).collect();
    let hint = if names.is_empty() {
        String::new()
    } else {
        format!(" (names in index.json: {})", names.join(", "))
    };
    match name {
        Some(name) => {
            index.manifests().iter().rev().find(|d| ref_name(d).as_deref() == Some(name)).cloned().ok_or_else(
                || Error::ImageNotFound { origin: origin.to_owned(), reference: name.to_owned(), hint },
            )
        }
        None => match index.manifests().as_slice() {
            [only] => Ok(only.clone()),
            [] => Err(Error::invalid(origin, "index.json", "it lists no images")),
            _ => Err(Error::invalid(
                origin,
                "reference",
                format!("index.json lists {} images; name one{hint}", index.manifests().len()),
            )),
        },
    }
}

impl ImageSource for OciSource {
    fn origin(&self) -> String {
        self.origin.clone()
    }

    fn top(&self) -> Result<RawManifest> {
        Ok(self.top.clone())
    }

    fn blob(&self, desc: &BlobDesc) -> Result<Box<dyn Read + Send>> {
        let missing = || Error::BlobNotFound { origin: self.origin.clone(), digest: desc.digest.clone() };
        match &self.store {
            Store::Dir(dir) => {
                let path = Self::blob_path(dir, &desc.digest);
                match File::open(&path) {
                    Ok(f) => Ok(Box::new(f)),
                    Err(e) if e.kind() == io::ErrorKind::NotFound => Err(missing()),
                    Err(e) => Err(Error::io(format!("opening {}", path.display()), e)),
                }
            }
            Store::Archive(tar) => {
                let span = tar.get(&format!("blobs/sha256/{}", desc.digest.hex())).ok_or_else(missing)?;
                Ok(Box::new(tar.open(span)?))
            }
        }
    }

    fn local_blob(&self, desc: &BlobDesc) -> Option<LocalBlob> {
        match &self.store {
            Store::Dir(dir) => Some(LocalBlob { path: Self::blob_path(dir, &desc.digest), offset: 0 }),
            Store::Archive(tar) => tar
                .get(&format!("blobs/sha256/{}", desc.digest.hex()))
                .map(|span| LocalBlob { path: tar.path.clone(), offset: span.offset }),
        }
    }
}

/// Large buffer for streaming copies: fewer syscalls than `io::copy`'s 8 KiB.
pub(crate) fn copy_stream(reader: &mut dyn Read, writer: &mut dyn Write) -> io::Result<u64> {
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        writer.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// The index entry a destination adds for its image.
fn index_entry(top: &RawManifest, name: Option<&str>) -> Result<Descriptor> {
    let mut desc = Descriptor::new(
        top.media_type.as_str().into(),
        top.bytes.len() as u64,
        oci_spec::image::Digest::try_from(&top.digest)?,
    );
    if let Some(name) = name {
        desc.set_annotations(Some([(REF_NAME.to_owned(), name.to_owned())].into()));
    }
    Ok(desc)
}

/// What a written blob, index or archive gets: readable by all, as `cp` or
/// skopeo would leave it (the umask still applies). A temp file's own 0600
/// would lock other users, a CI job's later non-root step for one, out.
pub(crate) fn output_permissions() -> fs::Permissions {
    use std::os::unix::fs::PermissionsExt as _;
    fs::Permissions::from_mode(0o666)
}

/// Writes `bytes` to `path` through a temp file and a rename, so a reader
/// sees the old content or the new, never a mix.
pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    let dir = path.parent().unwrap_or_else(|| Path::new("."));
    let mut tmp = tempfile::Builder::new()
        .prefix(".caulk-tmp-")
        .permissions(output_permissions())
        .tempfile_in(dir)
        .ctx(|| format!("creating a temp file in {}", dir.display()))?;
    tmp.write_all(bytes).ctx(|| format!("writing {}", path.display()))?;
    tmp.as_file().sync_all().ctx(|| format!("writing {}", path.display()))?;
    tmp.persist(path).map_err(|e| Error::io(format!("renaming into {}", path.display()), e.error))?;
    Ok(())
}

/// `oci:DIR[:REF]` write side.
pub struct OciDirDestination {
    dir: PathBuf,
    name: Option<String>,
}

impl OciDirDestination {
    pub fn create(dir: &Path, name: Option<String>) -> Result<Self> {
        let blobs = dir.join("blobs/sha256");
        fs::create_dir_all(&blobs).ctx(|| format!("creating {}", blobs.display()))?;
        let layout = dir.join(LAYOUT_FILE);
        if !layout.exists() {
            write_atomic(&layout, LAYOUT_CONTENT)?;
        }
        let dest = OciDirDestination { dir: dir.to_owned(), name };
        // Refuse a broken index.json now, before any blob is written.
        dest.current_index()?;
        Ok(dest)
    }

    fn current_index(&self) -> Result<Option<ImageIndex>> {
        let path = self.dir.join("index.json");
        match fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|e| Error::invalid(self.origin(), "existing index.json", e.to_string())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Error::io(format!("reading {}", path.display()), e)),
        }
    }

    fn write_blob(&self, digest: &Digest, data: &mut dyn Read) -> Result<()> {
        let final_path = OciSource::blob_path(&self.dir, digest);
        let blobs = final_path.parent().expect("blob paths have a parent");
        let mut tmp = tempfile::Builder::new()
            .prefix(".caulk-tmp-")
            .permissions(output_permissions())
            .tempfile_in(blobs)
            .ctx(|| format!("creating a temp file in {}", blobs.display()))?;
        {
            let mut writer = BufWriter::with_capacity(1 << 16, tmp.as_file_mut());
            copy_stream(data, &mut writer).map_err(|e| Error::io(format!("writing blob {digest}"), e))?;
            writer.flush().ctx(|| format!("writing blob {digest}"))?;
        }
        tmp.persist(&final_path)
            .map_err(|e| Error::io(format!("renaming into {}", final_path.display()), e.error))?;
        Ok(())
    }
}

impl ImageDestination for OciDirDestination {
    fn oci_only(&self) -> bool {
        true
    }

    fn origin(&self) -> String {
        format!(
            "oci:{}{}",
            self.dir.display(),
            self.name.as_ref().map(|n| format!(":{n}")).unwrap_or_default()
        )
    }

    fn has_blob(&mut self, desc: &BlobDesc) -> Result<bool> {
        // Content addressing makes presence sufficient, provided the size
        // agrees (a leftover of a different size cannot be this blob).
        Ok(fs::metadata(OciSource::blob_path(&self.dir, &desc.digest)).is_ok_and(|m| m.len() == desc.size))
    }

    fn put_blob(&mut self, desc: &BlobDesc, data: &mut dyn Read) -> Result<()> {
        self.write_blob(&desc.digest, data)
    }

    fn put_manifest(&mut self, manifest: &RawManifest) -> Result<()> {
        self.write_blob(&manifest.digest, &mut manifest.bytes.as_slice())
    }

    fn commit(self: Box<Self>, top: &RawManifest) -> Result<()> {
        self.put_manifest_bytes(top)?;
        // index.json is read, changed and replaced: two writers to one
        // layout (jobs of a fleet, two caulk processes) take turns, or one
        // would drop the other's entry. The lock is on the directory
        // itself, so the layout gains no file.
        let dir = File::open(&self.dir).ctx(|| format!("opening {}", self.dir.display()))?;
        rustix::fs::flock(&dir, rustix::fs::FlockOperation::LockExclusive)
            .map_err(|e| Error::io(format!("locking {}", self.dir.display()), e.into()))?;
        let mut manifests = match self.current_index()? {
            Some(index) => index.manifests().clone(),
            None => Vec::new(),
        };
        let name = self.name.as_deref();
        // One entry per name: the new image replaces the old one of that
        // name (or the old unnamed ones when writing without a name).
        manifests
            .retain(|d| d.annotations().as_ref().and_then(|a| a.get(REF_NAME)).map(String::as_str) != name);
        manifests.push(index_entry(top, name)?);
        let mut index = ImageIndex::default();
        index.set_media_type(Some(media::OCI_INDEX.into()));
        index.set_manifests(manifests);
        let bytes = serde_json::to_vec(&index)
            .map_err(|e| Error::invalid(self.origin(), "index.json", e.to_string()))?;
        write_atomic(&self.dir.join("index.json"), &bytes)
    }
}

impl OciDirDestination {
    fn put_manifest_bytes(&self, top: &RawManifest) -> Result<()> {
        self.write_blob(&top.digest, &mut top.bytes.as_slice())
    }
}

/// Appends entries to a tar file being built, with fixed metadata so that
/// the same image gives the same archive.
pub(crate) struct ArchiveWriter {
    tmp: tempfile::NamedTempFile,
    builder: tar::Builder<BufWriter<File>>,
    target: PathBuf,
    written: HashSet<String>,
}

impl ArchiveWriter {
    pub fn create(target: &Path) -> Result<Self> {
        let dir = match target.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        if !dir.is_dir() {
            return Err(Error::Path {
                path: target.to_owned(),
                reason: "its directory does not exist".to_owned(),
            });
        }
        let tmp = tempfile::Builder::new()
            .prefix(".caulk-tmp-")
            .permissions(output_permissions())
            .tempfile_in(&dir)
            .ctx(|| format!("creating a temp file in {}", dir.display()))?;
        let file = tmp.reopen().ctx(|| format!("opening {}", tmp.path().display()))?;
        let mut builder = tar::Builder::new(BufWriter::with_capacity(1 << 16, file));
        builder.mode(tar::HeaderMode::Deterministic);
        Ok(ArchiveWriter { tmp, builder, target: target.to_owned(), written: HashSet::new() })
    }

    pub fn contains(&self, name: &str) -> bool {
        self.written.contains(name)
    }

    pub fn add_dir(&mut self, name: &str) -> Result<()> {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Directory);
        header.set_mode(0o755);
        header.set_size(0);
        header.set_mtime(0);
        self.builder
            .append_data(&mut header, name, io::empty())
            .ctx(|| format!("writing {}", self.target.display()))?;
        self.written.insert(name.to_owned());
        Ok(())
    }

    pub fn add_file(&mut self, name: &str, size: u64, data: &mut dyn Read) -> Result<()> {
        let mut header = tar::Header::new_ustar();
        header.set_entry_type(tar::EntryType::Regular);
        header.set_mode(0o644);
        header.set_size(size);
        header.set_mtime(0);
        // `append_data` copies until EOF; a verifying `data` errors instead of
        // ending early, so the entry is never shorter than its header says.
        self.builder
            .append_data(&mut header, name, data)
            .map_err(|e| Error::io(format!("writing {} into {}", name, self.target.display()), e))?;
        self.written.insert(name.to_owned());
        Ok(())
    }

    pub fn finish(self) -> Result<()> {
        let target = self.target;
        let mut writer = self.builder.into_inner().ctx(|| format!("writing {}", target.display()))?;
        writer.flush().ctx(|| format!("writing {}", target.display()))?;
        writer.get_ref().sync_all().ctx(|| format!("writing {}", target.display()))?;
        drop(writer);
        self.tmp
            .persist(&target)
            .map_err(|e| Error::io(format!("renaming into {}", target.display()), e.error))?;
        Ok(())
    }
}

/// `oci-archive:FILE[:REF]` write side: the archive is built in a temp file
/// beside FILE and renamed over it at commit.
pub struct OciArchiveDestination {
    archive: ArchiveWriter,
    name: Option<String>,
    file: PathBuf,
}

impl OciArchiveDestination {
    pub fn create(file: &Path, name: Option<String>) -> Result<Self> {
        let mut archive = ArchiveWriter::create(file)?;
        archive.add_file(LAYOUT_FILE, LAYOUT_CONTENT.len() as u64, &mut &LAYOUT_CONTENT[..])?;
        archive.add_dir("blobs/")?;
        archive.add_dir("blobs/sha256/")?;
        Ok(OciArchiveDestination { archive, name, file: file.to_owned() })
    }
}

impl ImageDestination for OciArchiveDestination {
    fn oci_only(&self) -> bool {
        true
    }

    fn origin(&self) -> String {
        format!(
            "oci-archive:{}{}",
            self.file.display(),
            self.name.as_ref().map(|n| format!(":{n}")).unwrap_or_default()
        )
    }

    fn has_blob(&mut self, desc: &BlobDesc) -> Result<bool> {
        Ok(self.archive.contains(&format!("blobs/sha256/{}", desc.digest.hex())))
    }

    fn put_blob(&mut self, desc: &BlobDesc, data: &mut dyn Read) -> Result<()> {
        self.archive.add_file(&format!("blobs/sha256/{}", desc.digest.hex()), desc.size, data)
    }

    fn put_manifest(&mut self, manifest: &RawManifest) -> Result<()> {
        let name = format!("blobs/sha256/{}", manifest.digest.hex());
        if self.archive.contains(&name) {
            return Ok(());
        }
        self.archive.add_file(&name, manifest.bytes.len() as u64, &mut manifest.bytes.as_slice())
    }

    fn commit(mut self: Box<Self>, top: &RawManifest) -> Result<()> {
        self.put_manifest(top)?;
        let mut index = ImageIndex::default();
        index.set_media_type(Some(media::OCI_INDEX.into()));
        index.set_manifests(vec![index_entry(top, self.name.as_deref())?]);
        let bytes = serde_json::to_vec(&index)
            .map_err(|e| Error::invalid(self.origin(), "index.json", e.to_string()))?;
        self.archive.add_file("index.json", bytes.len() as u64, &mut bytes.as_slice())?;
        self.archive.finish()
    }
}
