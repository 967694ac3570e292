//! Where a patched image goes: `--dest` as given, else beside the input in
//! the same transport under the patched tag (Copa's `-t`/`--tag-suffix`).

use std::path::{Path, PathBuf};

use caulk_image::{ArchiveSelector, ImageRef, RegistryRef};

/// How the user named the output.
#[derive(Debug, Clone, Default)]
pub struct Naming {
    /// `--dest TRANSPORT:REF`.
    pub dest: Option<String>,
    /// `-t/--tag`: a tag, or a full reference.
    pub tag: Option<String>,
    /// `--tag-suffix` (default `patched`).
    pub tag_suffix: String,
    /// `--push`: send the result to the registry the name points at.
    pub push: bool,
}

/// The destination and the reference the VEX document names.
#[derive(Debug, Clone)]
pub struct Destination {
    pub reference: ImageRef,
    /// `registry/namespace/name:tag` where there is one, else `name:tag`.
    pub display_name: String,
}

/// The transports caulk writes: a `--tag` starting with one was meant for
/// `--dest`.
const TRANSPORTS: [&str; 5] = ["oci:", "oci-archive:", "docker-archive:", "docker-daemon:", "docker://"];

fn is_full_reference(tag: &str) -> bool {
    tag.contains('/') || tag.contains(':') || tag.contains('@')
}

/// `TAG-SUFFIX`, or `SUFFIX` when there is no tag (Copa: `latest-patched`).
fn suffixed(tag: Option<&str>, suffix: &str) -> String {
    format!("{}-{suffix}", tag.unwrap_or("latest"))
}

/// `name:tag` pieces of a reference string; the tag after the last `:` that
/// follows the last `/`.
fn split_tag(name: &str) -> (&str, Option<&str>) {
    let slash = name.rfind('/').map_or(0, |i| i + 1);
    match name[slash..].rfind(':') {
        Some(i) => (&name[..slash + i], Some(&name[slash + i + 1..])),
        None => (name, None),
    }
}

fn with_file_suffix(file: &Path, suffix: &str) -> PathBuf {
    let stem = file.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let name = match file.extension() {
        Some(ext) => format!("{stem}-{suffix}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{suffix}"),
    };
    file.with_file_name(name)
}

fn registry_display(r: &RegistryRef) -> String {
    let tag = r.tag().map(|t| format!(":{t}")).unwrap_or_default();
    format!("{}/{}{tag}", r.registry(), r.repository())
}

/// Resolves the destination for `input`.
pub fn destination(input: &ImageRef, naming: &Naming) -> Result<Destination, String> {
    if let Some(dest) = &naming.dest {
        let reference = ImageRef::parse(dest).map_err(|e| e.to_string())?;
        let display_name = display(&reference);
        return Ok(Destination { reference, display_name });
    }
    let tag_override = naming.tag.as_deref();
    if let Some(t) = tag_override
        && TRANSPORTS.iter().any(|p| t.starts_with(p))
    {
        // Taken as a name, `oci:/out:p` would become a tag of that
        // name in the input's own layout or repository.
        return Err(format!(
            "--tag {t:?} starts with a transport; --tag names the patched image within the input's \
             transport. To write it elsewhere, use --dest {t}"
        ));
    }
    let reference = match input {
        ImageRef::Registry(r) => registry_dest(r, tag_override, &naming.tag_suffix)?,
        ImageRef::DockerDaemon { name } if naming.push => {
            let r = RegistryRef::parse(name).map_err(|e| e.to_string())?;
            registry_dest(&r, tag_override, &naming.tag_suffix)?
        }
        ImageRef::DockerDaemon { name } => {
            let (repo, tag) = split_tag(name);
            let name = match tag_override {
                Some(t) if is_full_reference(t) => t.to_owned(),
                Some(t) => format!("{repo}:{t}"),
                None => format!("{repo}:{}", suffixed(tag, &naming.tag_suffix)),
            };
            ImageRef::DockerDaemon { name }
        }
        ImageRef::OciLayout { dir, name } => {
            let new_name = match tag_override {
                Some(t) if is_full_reference(t) => t.to_owned(),
                Some(t) => match name.as_deref().map(split_tag) {
                    Some((repo, Some(_))) => format!("{repo}:{t}"),
                    _ => t.to_owned(),
                },
                None => match name.as_deref().map(split_tag) {
                    Some((repo, Some(tag))) => format!("{repo}:{}", suffixed(Some(tag), &naming.tag_suffix)),
                    Some((plain, None)) => format!("{plain}-{}", naming.tag_suffix),
                    None => naming.tag_suffix.clone(),
                },
            };
            ImageRef::OciLayout { dir: dir.clone(), name: Some(new_name) }
        }
        ImageRef::OciArchive { file, name } => ImageRef::OciArchive {
            file: with_file_suffix(file, &naming.tag_suffix),
            name: tag_override.map(str::to_owned).or_else(|| name.clone()),
        },
        ImageRef::DockerArchive { file, name } => ImageRef::DockerArchive {
            file: with_file_suffix(file, &naming.tag_suffix),
            name: match (tag_override, name) {
                (Some(t), _) => Some(ArchiveSelector::Tag(t.to_owned())),
                (None, Some(ArchiveSelector::Tag(t))) => {
                    let (repo, tag) = split_tag(t);
                    Some(ArchiveSelector::Tag(format!("{repo}:{}", suffixed(tag, &naming.tag_suffix))))
                }
                (None, _) => None,
            },
        },
    };
    let display_name = display(&reference);
    Ok(Destination { reference, display_name })
}

fn registry_dest(r: &RegistryRef, tag: Option<&str>, suffix: &str) -> Result<ImageRef, String> {
    let text = match tag {
        Some(t) if is_full_reference(t) => t.to_owned(),
        Some(t) => format!("{}/{}:{t}", r.registry(), r.repository()),
        None => format!("{}/{}:{}", r.registry(), r.repository(), suffixed(r.tag(), suffix)),
    };
    RegistryRef::parse(&text).map(ImageRef::Registry).map_err(|e| e.to_string())
}

/// The name the VEX product and the summary use.
pub fn display(reference: &ImageRef) -> String {
    match reference {
        ImageRef::Registry(r) => registry_display(r),
        ImageRef::DockerDaemon { name } => name.clone(),
        ImageRef::OciLayout { dir, name } | ImageRef::OciArchive { file: dir, name } => {
            name.clone().unwrap_or_else(|| {
                dir.file_name().map_or_else(|| "image".to_owned(), |n| n.to_string_lossy().into_owned())
            })
        }
        ImageRef::DockerArchive { file, name } => match name {
            Some(ArchiveSelector::Tag(t)) => t.clone(),
            _ => file.file_stem().map_or_else(|| "image".to_owned(), |n| n.to_string_lossy().into_owned()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dest(input: &str, tag: Option<&str>) -> String {
        let naming =
            Naming { tag: tag.map(str::to_owned), tag_suffix: "patched".into(), ..Naming::default() };
        destination(&ImageRef::parse(input).unwrap(), &naming).unwrap().reference.to_string()
    }

    #[test]
    fn beside_the_input_under_the_patched_tag() {
        assert_eq!(
            dest("docker.io/library/nginx:1.21.6", None),
            "docker://docker.io/library/nginx:1.21.6-patched"
        );
        assert_eq!(dest("127.0.0.1:5000/app", None), "docker://127.0.0.1:5000/app:latest-patched");
        assert_eq!(dest("127.0.0.1:5000/app:1", Some("2")), "docker://127.0.0.1:5000/app:2");
        assert_eq!(
            dest("127.0.0.1:5000/app:1", Some("127.0.0.1:5000/other:x")),
            "docker://127.0.0.1:5000/other:x"
        );
        assert_eq!(dest("oci:/tmp/layout:debian:12", None), "oci:/tmp/layout:debian:12-patched");
        assert_eq!(dest("oci:/tmp/layout:v1", None), "oci:/tmp/layout:v1-patched");
        assert_eq!(dest("oci:/tmp/layout", None), "oci:/tmp/layout:patched");
        assert_eq!(dest("oci-archive:/tmp/app.tar", None), "oci-archive:/tmp/app-patched.tar");
        assert_eq!(dest("docker-daemon:app:1.0", None), "docker-daemon:docker.io/library/app:1.0-patched");
        assert_eq!(
            dest("docker-archive:/x/a.tar:app:1", None),
            "docker-archive:/x/a-patched.tar:docker.io/library/app:1-patched"
        );
    }

    #[test]
    fn a_tag_with_a_transport_is_refused_with_the_dest_flag_to_use() {
        let naming = |tag: &str| Naming {
            tag: Some(tag.to_owned()),
            tag_suffix: "patched".into(),
            ..Naming::default()
        };
        for (input, tag) in [
            ("oci:/tmp/in:v1", "oci:/tmp/out:p"),
            ("127.0.0.1:5000/app:1", "docker://127.0.0.1:5000/app:2"),
            ("docker-daemon:app:1", "docker-daemon:app:2"),
            ("oci-archive:/tmp/app.tar", "oci-archive:/tmp/other.tar"),
        ] {
            let err = destination(&ImageRef::parse(input).unwrap(), &naming(tag)).unwrap_err();
            assert!(err.contains(&format!("use --dest {tag}")), "{input} with --tag {tag}: {err}");
        }
        // A registry host with a port is a name, not a transport.
        assert_eq!(
            dest("oci:/tmp/layout:v1", Some("127.0.0.1:5000/app:x")),
            "oci:/tmp/layout:127.0.0.1:5000/app:x"
        );
    }

    #[test]
    fn display_names_keep_registry_and_namespace() {
        let d = |s: &str| display(&ImageRef::parse(s).unwrap());
        assert_eq!(d("127.0.0.1:5000/team/app:1-patched"), "127.0.0.1:5000/team/app:1-patched");
        assert_eq!(d("oci:/tmp/layout:debian:12-patched"), "debian:12-patched");
    }
}
