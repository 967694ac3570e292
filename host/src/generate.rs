//! `caulk generate`: Copa's build context instead of an image. The patch
//! layer caulk would append becomes a Docker build context:
//!
//! ```text
//! Dockerfile   FROM <the original image, pinned by digest>
//!              RUN ["rm", "-rf", "--", <what the layer deletes>]   (if anything)
//!              ADD patch.tar /
//! patch.tar    the layer's files, without its whiteouts
//! ```
//!
//! `ADD` of a local tar unpacks it keeping owners and modes (`COPY` would
//! make every file root's). Deletions need `rm` in the image, run without a
//! shell (exec form), before the files land: an opaque directory is removed
//! whole and comes back from the tar with only the layer's entries.

use std::io::{Read, Write};
use std::path::Path;

use caulk_image::layer::open_tar_stream;
use caulk_image::{Image, ImageRef, TransportOptions};

/// The layer entry marking its directory opaque, and the prefix of a
/// whiteout.
const OPAQUE: &str = ".wh..wh..opq";
const WHITEOUT: &str = ".wh.";

#[derive(Debug, thiserror::Error)]
pub enum GenerateError {
    #[error(
        "{image}: `docker build` cannot start FROM a {transport} image; give caulk generate a \
         registry image or docker-daemon:NAME (load it first with `caulk image copy {image} docker-daemon:NAME`)"
    )]
    NotBuildable { image: String, transport: &'static str },

    #[error("reading the patch layer: {0}")]
    Layer(#[from] caulk_image::Error),

    #[error("the patch layer entry {entry:?} is not a clean relative path")]
    BadEntry { entry: String },

    #[error("writing the build context: {0}")]
    Write(#[from] std::io::Error),
}

/// What `FROM` names for `image`: pinned by the digest caulk patched, so
/// the build starts from the same bytes.
pub fn from_line(image: &ImageRef, digest: &str) -> Result<String, GenerateError> {
    match image {
        ImageRef::Registry(reference) => {
            let pinned = reference.with_digest(digest);
            Ok(pinned.to_string())
        }
        ImageRef::DockerDaemon { name } => Ok(name.clone()),
        other => Err(GenerateError::NotBuildable { image: other.to_string(), transport: other.transport() }),
    }
}

/// The layer's deletions and its tar without them.
struct Split {
    deletions: Vec<String>,
    files: tempfile::NamedTempFile,
    size: u64,
}

fn split_layer(layer: &mut dyn Read, scratch: &Path) -> Result<Split, GenerateError> {
    let files = tempfile::NamedTempFile::new_in(scratch)?;
    let mut builder = tar::Builder::new(files.reopen()?);
    let mut deletions = Vec::new();
    let mut archive = tar::Archive::new(layer);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let raw = String::from_utf8_lossy(&entry.path_bytes()).into_owned();
        let path = raw.trim_start_matches("./").trim_end_matches('/').to_owned();
        if path.split('/').any(|c| c == ".." || c.is_empty()) && !path.is_empty() {
            return Err(GenerateError::BadEntry { entry: raw });
        }
        let (dir, base) = path.rsplit_once('/').unwrap_or(("", path.as_str()));
        let under = |name: &str| if dir.is_empty() { format!("/{name}") } else { format!("/{dir}/{name}") };
        if base == OPAQUE {
            deletions.push(if dir.is_empty() { "/".to_owned() } else { format!("/{dir}") });
            continue;
        }
        if let Some(hidden) = base.strip_prefix(WHITEOUT) {
            deletions.push(under(hidden));
            continue;
        }
        // The layer's PAX records carry long paths and link targets, large
        // ids and xattrs (file capabilities); the ustar header alone would
        // truncate or drop them.
        if let Some(records) = pax_records(&mut entry)? {
            let mut pax = tar::Header::new_ustar();
            pax.set_entry_type(tar::EntryType::XHeader);
            pax.set_path("PaxHeader")?;
            pax.set_size(records.len() as u64);
            pax.set_mode(0o644);
            pax.set_cksum();
            builder.append(&pax, records.as_slice())?;
        }
        let header = entry.header().clone();
        builder.append(&header, &mut entry)?;
    }
    builder.into_inner()?.flush()?;
    let size = files.as_file().metadata()?.len();
    Ok(Split { deletions, files, size })
}

/// The entry's PAX extended header, re-encoded (`LEN key=value\n` records).
fn pax_records(entry: &mut tar::Entry<'_, impl Read>) -> std::io::Result<Option<Vec<u8>>> {
    let Some(extensions) = entry.pax_extensions()? else { return Ok(None) };
    let mut out = Vec::new();
    for extension in extensions {
        let extension = extension?;
        let (key, value) = (extension.key_bytes(), extension.value_bytes());
        // The length counts its own digits: grow until it is stable.
        let body = key.len() + value.len() + 3;
        let mut len = body + 1;
        while len != body + len.to_string().len() {
            len = body + len.to_string().len();
        }
        out.extend_from_slice(len.to_string().as_bytes());
        out.push(b' ');
        out.extend_from_slice(key);
        out.push(b'=');
        out.extend_from_slice(value);
        out.push(b'\n');
    }
    Ok(Some(out))
}

/// The Dockerfile for `from` with `deletions` removed before the files land.
pub fn dockerfile(from: &str, deletions: &[String]) -> String {
    let mut text = format!("FROM {from}\n");
    if !deletions.is_empty() {
        let argv: Vec<&str> =
            ["rm", "-rf", "--"].into_iter().chain(deletions.iter().map(String::as_str)).collect();
        text.push_str("RUN ");
        text.push_str(&serde_json::to_string(&argv).expect("strings serialise"));
        text.push('\n');
    }
    text.push_str("ADD patch.tar /\n");
    text
}

/// Writes the build context for the top layer of `patched` (caulk's) over
/// `original` to `out`.
pub fn write_context(
    original: &ImageRef,
    base_digest: &str,
    patched: &ImageRef,
    platform: Option<&caulk_image::Platform>,
    transport: &TransportOptions,
    scratch: &Path,
    out: &mut dyn Write,
) -> Result<(), GenerateError> {
    let from = from_line(original, base_digest)?;
    let image = Image::open(patched, transport)?;
    let platform = image.image_for(platform)?;
    let Some(layer) = platform.layers.last() else {
        return Err(GenerateError::BadEntry { entry: "(no layer)".to_owned() });
    };
    let mut stream = open_tar_stream(image.source().as_ref(), layer)?;
    let split = split_layer(&mut stream, scratch)?;
    let dockerfile = dockerfile(&from, &split.deletions);
    let mut context = tar::Builder::new(out);
    let mut header = tar::Header::new_ustar();
    header.set_mode(0o644);
    header.set_size(dockerfile.len() as u64);
    context.append_data(&mut header, "Dockerfile", dockerfile.as_bytes())?;
    let mut header = tar::Header::new_ustar();
    header.set_mode(0o644);
    header.set_size(split.size);
    context.append_data(&mut header, "patch.tar", split.files.reopen()?)?;
    context.finish()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layer(entries: &[(&str, &[u8])]) -> Vec<u8> {
        let mut builder = tar::Builder::new(Vec::new());
        for (path, data) in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(data.len() as u64);
            header.set_mode(0o644);
            builder.append_data(&mut header, path, *data).unwrap();
        }
        builder.into_inner().unwrap()
    }

    #[test]
    fn whiteouts_become_deletions_and_files_stay() {
        let scratch = tempfile::tempdir().unwrap();
        let bytes = layer(&[
            ("usr/lib/x/libold.so", b"1"),
            ("usr/lib/x/.wh.libgone.so", b""),
            ("etc/conf.d/.wh..wh..opq", b""),
            ("etc/conf.d/only", b"2"),
            (".wh.tmpfile", b""),
        ]);
        let split = split_layer(&mut bytes.as_slice(), scratch.path()).unwrap();
        assert_eq!(split.deletions, ["/usr/lib/x/libgone.so", "/etc/conf.d", "/tmpfile"]);
        let mut archive = tar::Archive::new(std::fs::File::open(split.files.path()).unwrap());
        let names: Vec<String> = archive
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["usr/lib/x/libold.so", "etc/conf.d/only"]);
    }

    #[test]
    fn long_paths_and_xattrs_in_pax_records_reach_the_context() {
        let long = format!("app/node_modules/{}index.js", "deep/".repeat(30));
        let mut records = Vec::new();
        for (key, value) in [("path", long.as_bytes()), ("SCHILY.xattr.security.capability", b"\x01\x02")] {
            let body = key.len() + value.len() + 3;
            let len = body + (body + 3).to_string().len();
            records.extend_from_slice(format!("{len} {key}=").as_bytes());
            records.extend_from_slice(value);
            records.push(b'\n');
        }
        let mut builder = tar::Builder::new(Vec::new());
        let mut pax = tar::Header::new_ustar();
        pax.set_entry_type(tar::EntryType::XHeader);
        pax.set_size(records.len() as u64);
        pax.set_cksum();
        builder.append(&pax, records.as_slice()).unwrap();
        let mut file = tar::Header::new_ustar();
        file.set_path("app/truncated").unwrap();
        file.set_size(2);
        file.set_mode(0o755);
        file.set_cksum();
        builder.append(&file, &b"js"[..]).unwrap();
        let bytes = builder.into_inner().unwrap();

        let scratch = tempfile::tempdir().unwrap();
        let split = split_layer(&mut bytes.as_slice(), scratch.path()).unwrap();
        let mut archive = tar::Archive::new(std::fs::File::open(split.files.path()).unwrap());
        let mut entries = archive.entries().unwrap();
        let mut entry = entries.next().unwrap().unwrap();
        assert_eq!(entry.path().unwrap().to_string_lossy(), long);
        let xattrs: Vec<(String, Vec<u8>)> = entry
            .pax_extensions()
            .unwrap()
            .unwrap()
            .map(|e| e.unwrap())
            .filter(|e| e.key().unwrap().starts_with("SCHILY.xattr."))
            .map(|e| (e.key().unwrap().to_owned(), e.value_bytes().to_vec()))
            .collect();
        assert_eq!(xattrs, [("SCHILY.xattr.security.capability".to_owned(), vec![1, 2])]);
        assert!(entries.next().is_none());
    }

    #[test]
    fn the_dockerfile_deletes_before_adding_and_quotes_paths() {
        let text = dockerfile("reg:5000/a@sha256:ab", &["/a b".to_owned(), "/q\"x".to_owned()]);
        assert_eq!(
            text,
            "FROM reg:5000/a@sha256:ab\nRUN [\"rm\",\"-rf\",\"--\",\"/a b\",\"/q\\\"x\"]\nADD patch.tar /\n"
        );
        assert_eq!(dockerfile("x", &[]), "FROM x\nADD patch.tar /\n");
    }

    #[test]
    fn only_images_docker_build_reaches_can_be_a_base() {
        let layout = ImageRef::parse("oci:/tmp/l:x").unwrap();
        let err = from_line(&layout, "sha256:00").unwrap_err();
        assert!(err.to_string().contains("docker-daemon:NAME"), "{err}");
        let daemon = ImageRef::parse("docker-daemon:app:1").unwrap();
        let from = from_line(&daemon, "sha256:00").unwrap();
        assert!(from == "app:1" || from.ends_with("/app:1"), "{from}");
    }
}
