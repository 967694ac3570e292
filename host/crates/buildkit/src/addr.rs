//! Daemon addresses in the forms Copa and buildctl accept.

use std::fmt;
use std::path::PathBuf;

use crate::error::{Error, Result};

/// buildctl's default when neither `--addr` nor `$BUILDKIT_HOST` is given.
pub const DEFAULT_ADDRESS: &str = "unix:///run/buildkit/buildkitd.sock";
/// Where `docker://` points: the Docker Engine's default socket.
pub const DOCKER_DEFAULT_SOCKET: &str = "/var/run/docker.sock";

/// Where a BuildKit daemon listens and how to reach its Control service.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Address {
    /// `unix:///path`: a buildkitd socket speaking gRPC directly.
    Unix(PathBuf),
    /// `tcp://HOST:PORT`: a buildkitd on the network, TLS when configured.
    Tcp { host: String, port: u16 },
    /// `docker://` or `docker-unix:///path`: the BuildKit embedded in a
    /// Docker Engine, reached through the Engine API's `/grpc` upgrade.
    Docker(PathBuf),
    /// `docker-container://NAME`: a buildkitd in a container (buildx), reached
    /// through `docker exec -i NAME buildctl dial-stdio`.
    DockerContainer(String),
}

impl Address {
    pub fn parse(addr: &str) -> Result<Self> {
        let invalid =
            |reason: &str| Error::InvalidAddress { addr: addr.to_owned(), reason: reason.to_owned() };
        let (scheme, rest) = addr.split_once("://").ok_or_else(|| invalid("no scheme (like unix://)"))?;
        match scheme {
            "unix" | "docker-unix" => {
                if !rest.starts_with('/') {
                    return Err(invalid("the socket path must be absolute"));
                }
                let path = PathBuf::from(rest);
                Ok(if scheme == "unix" { Address::Unix(path) } else { Address::Docker(path) })
            }
            "docker" => {
                if !rest.is_empty() {
                    return Err(invalid(
                        "docker:// takes no path; use docker-unix:///path for another socket",
                    ));
                }
                Ok(Address::Docker(PathBuf::from(DOCKER_DEFAULT_SOCKET)))
            }
            "docker-container" => {
                let valid = !rest.is_empty()
                    && !rest.starts_with('-')
                    && rest.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'));
                if !valid {
                    return Err(invalid("a container name is letters, digits, '_', '.' and '-'"));
                }
                Ok(Address::DockerContainer(rest.to_owned()))
            }
            "tcp" => {
                let rest = rest.strip_suffix('/').unwrap_or(rest);
                let (host, port) = rest.rsplit_once(':').ok_or_else(|| invalid("tcp:// needs HOST:PORT"))?;
                let port =
                    port.parse::<u16>().map_err(|_| invalid("the port is not a number up to 65535"))?;
                let host = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(host);
                if host.is_empty() || host.contains(['/', '@', '?', '#']) {
                    return Err(invalid("tcp:// needs a plain host name or IP address"));
                }
                Ok(Address::Tcp { host: host.to_owned(), port })
            }
            _ => Err(invalid("unknown scheme")),
        }
    }

    /// The address buildctl would use: the explicit one, else the value of
    /// `$BUILDKIT_HOST` (read by the caller), else [`DEFAULT_ADDRESS`].
    pub fn resolve(explicit: Option<&str>, buildkit_host: Option<&str>) -> Result<Self> {
        let chosen = explicit.or(buildkit_host.filter(|v| !v.is_empty())).unwrap_or(DEFAULT_ADDRESS);
        Self::parse(chosen)
    }

    /// The Engine as a `DOCKER_HOST` value (`unix:///path`), for reading
    /// results with caulk-image's `docker-daemon:` transport.
    pub fn docker_host(&self) -> Option<String> {
        self.docker_socket().map(|path| format!("unix://{}", path.display()))
    }

    /// A Docker Engine socket whose image store the `moby` exporter writes
    /// into, if this address has one.
    pub fn docker_socket(&self) -> Option<&std::path::Path> {
        match self {
            Address::Docker(path) => Some(path),
            _ => None,
        }
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Unix(path) => write!(f, "unix://{}", path.display()),
            Address::Tcp { host, port } if host.contains(':') => write!(f, "tcp://[{host}]:{port}"),
            Address::Tcp { host, port } => write!(f, "tcp://{host}:{port}"),
            Address::Docker(path) => write!(f, "docker-unix://{}", path.display()),
            Address::DockerContainer(name) => write!(f, "docker-container://{name}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_form() {
        assert_eq!(Address::parse("unix:///run/b.sock").unwrap(), Address::Unix("/run/b.sock".into()));
        assert_eq!(
            Address::parse("tcp://10.0.0.1:1234").unwrap(),
            Address::Tcp { host: "10.0.0.1".into(), port: 1234 }
        );
        assert_eq!(Address::parse("tcp://[::1]:99").unwrap(), Address::Tcp { host: "::1".into(), port: 99 });
        assert_eq!(Address::parse("docker://").unwrap(), Address::Docker(DOCKER_DEFAULT_SOCKET.into()));
        assert_eq!(Address::parse("docker-unix:///d.sock").unwrap(), Address::Docker("/d.sock".into()));
        assert_eq!(
            Address::parse("docker-container://buildx_buildkit_b0").unwrap(),
            Address::DockerContainer("buildx_buildkit_b0".into())
        );
    }

    #[test]
    fn display_round_trips() {
        for addr in ["unix:///a/b", "tcp://h:1", "tcp://[::1]:2", "docker-unix:///s", "docker-container://n"]
        {
            assert_eq!(Address::parse(addr).unwrap().to_string(), addr);
        }
    }

    #[test]
    fn rejects_bad_addresses_naming_them() {
        for bad in [
            "/run/b.sock",
            "unix://relative",
            "tcp://host",
            "tcp://host:99999",
            "tcp://:1",
            "docker://x",
            "docker-container://",
            "docker-container://-it",
            "docker-container://a b",
            "ssh://h",
        ] {
            let err = Address::parse(bad).unwrap_err();
            assert!(matches!(err, Error::InvalidAddress { .. }), "{bad}: {err}");
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn explicit_beats_env_beats_default() {
        assert_eq!(Address::resolve(None, None).unwrap().to_string(), DEFAULT_ADDRESS);
        assert_eq!(Address::resolve(None, Some("")).unwrap().to_string(), DEFAULT_ADDRESS);
        assert_eq!(Address::resolve(None, Some("tcp://e:1")).unwrap().to_string(), "tcp://e:1");
        assert_eq!(Address::resolve(Some("unix:///x"), Some("tcp://e:1")).unwrap().to_string(), "unix:///x");
    }
}
