//! Image references in skopeo's transport syntax.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use oci_spec::distribution::Reference;

use crate::error::{Error, Result};

/// Where an image lives and how to reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageRef {
    /// `oci:DIR[:REF]`: an OCI image layout directory; REF is the
    /// `org.opencontainers.image.ref.name` annotation in its index.json.
    OciLayout { dir: PathBuf, name: Option<String> },
    /// `oci-archive:FILE[:REF]`: a tar file of an OCI image layout.
    OciArchive { file: PathBuf, name: Option<String> },
    /// `docker-archive:FILE[:REF]`: `docker save` output. REF is `NAME:TAG`
    /// (one of the archive's RepoTags) or `@N` (the N-th image, from 0).
    DockerArchive { file: PathBuf, name: Option<ArchiveSelector> },
    /// `docker-daemon:NAME:TAG` or `docker-daemon:sha256:ID`: an image in a
    /// Docker Engine, reached through its API socket.
    DockerDaemon { name: String },
    /// `docker://REF` or a bare `REGISTRY/REPO[:TAG][@DIGEST]`.
    Registry(RegistryRef),
}

/// Which image of a multi-image docker archive.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchiveSelector {
    Tag(String),
    Index(usize),
}

/// A registry reference, normalised the way Docker does (`debian` means
/// `docker.io/library/debian:latest`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RegistryRef(pub(crate) Reference);

impl RegistryRef {
    pub fn parse(input: &str) -> Result<Self> {
        Reference::from_str(input)
            .map(RegistryRef)
            .map_err(|e| Error::InvalidReference { input: input.to_owned(), reason: e.to_string() })
    }
    /// Host (and port) of the registry as written, e.g. `127.0.0.1:5000`.
    pub fn registry(&self) -> &str {
        self.0.registry()
    }
    pub fn repository(&self) -> &str {
        self.0.repository()
    }
    pub fn tag(&self) -> Option<&str> {
        self.0.tag()
    }
    pub fn digest(&self) -> Option<&str> {
        self.0.digest()
    }
    /// The same repository pointed at `digest`.
    #[must_use]
    pub fn with_digest(&self, digest: &str) -> Self {
        RegistryRef(self.0.clone_with_digest(digest.to_owned()))
    }
}

impl fmt::Display for RegistryRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.whole())
    }
}

impl ImageRef {
    /// Parses `TRANSPORT:DETAILS` or a bare registry reference.
    pub fn parse(input: &str) -> Result<Self> {
        let bad =
            |reason: &str| Error::InvalidReference { input: input.to_owned(), reason: reason.to_owned() };
        let nonempty_path = |s: &str, what: &str| {
            if s.is_empty() { Err(bad(&format!("missing {what}"))) } else { Ok(PathBuf::from(s)) }
        };
        let optional = |s: Option<&str>| s.filter(|s| !s.is_empty()).map(str::to_owned);
        if let Some(rest) = input.strip_prefix("oci:") {
            let (dir, name) = split_once_opt(rest);
            return Ok(ImageRef::OciLayout { dir: nonempty_path(dir, "directory")?, name: optional(name) });
        }
        if let Some(rest) = input.strip_prefix("oci-archive:") {
            let (file, name) = split_once_opt(rest);
            return Ok(ImageRef::OciArchive { file: nonempty_path(file, "file")?, name: optional(name) });
        }
        if let Some(rest) = input.strip_prefix("docker-archive:") {
            let (file, name) = split_once_opt(rest);
            let name = match optional(name) {
                None => None,
                Some(n) => Some(match n.strip_prefix('@') {
                    Some(i) => ArchiveSelector::Index(i.parse().map_err(|_| bad("@N must be a number"))?),
                    None => ArchiveSelector::Tag(normalize_tag(&n).map_err(|e| bad(&e))?),
                }),
            };
            return Ok(ImageRef::DockerArchive { file: nonempty_path(file, "file")?, name });
        }
        if let Some(rest) = input.strip_prefix("docker-daemon:") {
            if rest.is_empty() {
                return Err(bad("missing image name"));
            }
            let name = if rest.starts_with("sha256:") {
                rest.to_owned()
            } else {
                normalize_tag(rest).map_err(|e| bad(&e))?
            };
            return Ok(ImageRef::DockerDaemon { name });
        }
        let registry = input.strip_prefix("docker://").unwrap_or(input);
        if let Some((transport, _)) = registry.split_once(':')
            && ["dir", "containers-storage", "docker", "ostree", "sif", "tarball"].contains(&transport)
        {
            return Err(bad(&format!("the {transport}: transport is not supported")));
        }
        RegistryRef::parse(registry).map(ImageRef::Registry)
    }

    /// The transport name, for messages.
    pub fn transport(&self) -> &'static str {
        match self {
            ImageRef::OciLayout { .. } => "oci",
            ImageRef::OciArchive { .. } => "oci-archive",
            ImageRef::DockerArchive { .. } => "docker-archive",
            ImageRef::DockerDaemon { .. } => "docker-daemon",
            ImageRef::Registry(_) => "docker",
        }
    }
}

fn split_once_opt(s: &str) -> (&str, Option<&str>) {
    match s.split_once(':') {
        Some((a, b)) => (a, Some(b)),
        None => (s, None),
    }
}

/// `NAME[:TAG]` → the fully qualified `REGISTRY/REPO:TAG` Docker stores.
fn normalize_tag(name: &str) -> std::result::Result<String, String> {
    let r = Reference::from_str(name).map_err(|e| e.to_string())?;
    if r.digest().is_some() {
        return Err("a tag is expected here, not a digest".to_owned());
    }
    Ok(format!("{}/{}:{}", r.registry(), r.repository(), r.tag().unwrap_or("latest")))
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let suffix = |n: &Option<String>| n.as_ref().map(|n| format!(":{n}")).unwrap_or_default();
        match self {
            ImageRef::OciLayout { dir, name } => write!(f, "oci:{}{}", dir.display(), suffix(name)),
            ImageRef::OciArchive { file, name } => {
                write!(f, "oci-archive:{}{}", file.display(), suffix(name))
            }
            ImageRef::DockerArchive { file, name } => {
                write!(f, "docker-archive:{}", file.display())?;
                match name {
                    Some(ArchiveSelector::Tag(t)) => write!(f, ":{t}"),
                    Some(ArchiveSelector::Index(i)) => write!(f, ":@{i}"),
                    None => Ok(()),
                }
            }
            ImageRef::DockerDaemon { name } => write!(f, "docker-daemon:{name}"),
            ImageRef::Registry(r) => write!(f, "docker://{r}"),
        }
    }
}

impl FromStr for ImageRef {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        ImageRef::parse(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_every_transport() {
        assert_eq!(
            ImageRef::parse("oci:/tmp/x:latest").unwrap(),
            ImageRef::OciLayout { dir: "/tmp/x".into(), name: Some("latest".into()) }
        );
        assert_eq!(
            ImageRef::parse("oci:rel").unwrap(),
            ImageRef::OciLayout { dir: "rel".into(), name: None }
        );
        assert_eq!(
            ImageRef::parse("oci-archive:a.tar").unwrap(),
            ImageRef::OciArchive { file: "a.tar".into(), name: None }
        );
        assert_eq!(
            ImageRef::parse("docker-archive:a.tar:foo:1").unwrap(),
            ImageRef::DockerArchive {
                file: "a.tar".into(),
                name: Some(ArchiveSelector::Tag("docker.io/library/foo:1".into()))
            }
        );
        assert_eq!(
            ImageRef::parse("docker-archive:a.tar:@2").unwrap(),
            ImageRef::DockerArchive { file: "a.tar".into(), name: Some(ArchiveSelector::Index(2)) }
        );
        assert_eq!(
            ImageRef::parse("docker-daemon:debian").unwrap(),
            ImageRef::DockerDaemon { name: "docker.io/library/debian:latest".into() }
        );
        let ImageRef::Registry(r) = ImageRef::parse("docker://127.0.0.1:5000/a/b:t").unwrap() else {
            panic!("not a registry ref")
        };
        assert_eq!((r.registry(), r.repository(), r.tag()), ("127.0.0.1:5000", "a/b", Some("t")));
        let ImageRef::Registry(r) = ImageRef::parse("debian:12").unwrap() else { panic!() };
        assert_eq!((r.registry(), r.repository()), ("docker.io", "library/debian"));
    }

    #[test]
    fn refuses_garbage() {
        for bad in
            ["oci:", "oci-archive:", "docker-daemon:", "docker-archive:x:@z", "UPPER/Case", "dir:/x", ""]
        {
            let err = ImageRef::parse(bad).unwrap_err();
            assert!(err.to_string().contains("invalid image reference"), "{bad}: {err}");
        }
    }
}
