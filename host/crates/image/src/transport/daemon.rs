//! Docker Engine transport (placeholder).
use super::TransportOptions;
use super::docker_archive::{DockerArchiveDestination, DockerArchiveSource};
use crate::error::{Error, Result};

pub fn open_source(name: &str, _: &TransportOptions) -> Result<DockerArchiveSource> {
    Err(Error::Unsupported { transport: "docker-daemon".into(), what: name.to_owned() })
}
pub fn open_destination(name: &str, _: &TransportOptions) -> Result<DockerArchiveDestination> {
    Err(Error::Unsupported { transport: "docker-daemon".into(), what: name.to_owned() })
}
