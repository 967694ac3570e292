//! Byte streams to a BuildKit Control service, one per address form. Every
//! form ends as a plain duplex stream over which the client speaks HTTP/2
//! gRPC with prior knowledge.

use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use http_body_util::Empty;
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpStream, UnixStream};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use crate::addr::Address;
use crate::error::{Error, Result};
use crate::session::Credentials;

/// A connected duplex stream, whatever carries it.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}
pub type BoxIo = Box<dyn Io>;

/// How to reach the daemon beyond its address. The TLS files are for
/// `tcp://` (buildctl's `--tlscacert/--tlscert/--tlskey`, Copa's
/// `--cacert/--cert/--key`); no CA file means plain TCP.
#[derive(Clone, Debug, Default)]
pub struct ConnectOptions {
    pub ca_cert: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The name to verify on the server's certificate; the host by default.
    pub server_name: Option<String>,
    /// `DOCKER_HOST` for the `docker` command behind
    /// `docker-container://`; the command's own default when unset.
    pub docker_host: Option<String>,
    /// Registry credentials for BuildKit's own pulls, offered through a
    /// client session (Docker's embedded BuildKit only, for now).
    pub credentials: Option<Credentials>,
}

/// Everything needed to open a stream, prepared once per client.
#[derive(Clone)]
pub(crate) struct Dialer {
    addr: Address,
    tls: Option<(Arc<rustls::ClientConfig>, rustls::pki_types::ServerName<'static>)>,
    docker_host: Option<String>,
    stderr: Arc<Mutex<String>>,
}

/// The most a helper command's stderr is kept for an error message.
const MAX_STDERR: usize = 4096;

impl Dialer {
    pub(crate) fn new(addr: &Address, options: &ConnectOptions) -> Result<Self> {
        let tls = match addr {
            Address::Tcp { host, .. } if options.ca_cert.is_some() || options.cert.is_some() => {
                Some(tls_config(addr, host, options)?)
            }
            _ => None,
        };
        Ok(Dialer {
            addr: addr.clone(),
            tls,
            docker_host: options.docker_host.clone(),
            stderr: Arc::default(),
        })
    }

    pub(crate) async fn dial(&self) -> io::Result<BoxIo> {
        match &self.addr {
            Address::Unix(path) => Ok(Box::new(UnixStream::connect(path).await?)),
            Address::Tcp { host, port } => {
                let tcp = TcpStream::connect((host.as_str(), *port)).await?;
                tcp.set_nodelay(true)?;
                match &self.tls {
                    None => Ok(Box::new(tcp)),
                    Some((config, name)) => {
                        let connector = tokio_rustls::TlsConnector::from(config.clone());
                        Ok(Box::new(connector.connect(name.clone(), tcp).await?))
                    }
                }
            }
            Address::Docker(path) => docker_grpc(path).await,
            Address::DockerContainer(name) => dial_stdio(name, self.docker_host.as_deref(), &self.stderr),
        }
    }

    /// What a helper command (`docker exec`) wrote to stderr, for the error
    /// when the connection through it fails: docker's own complaint ("No
    /// such container") is the most useful message there is.
    pub(crate) fn stderr(&self) -> String {
        if matches!(self.addr, Address::DockerContainer(_)) {
            // The stream breaks when docker exits; its stderr may still be
            // on the way.
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
        self.stderr.lock().map(|s| s.trim().to_owned()).unwrap_or_default()
    }
}

/// Docker's Engine API hands a connection to its BuildKit after an HTTP/1.1
/// upgrade to h2c on `POST /grpc`; from the `101` on, the same stream is
/// HTTP/2.
async fn docker_grpc(socket: &Path) -> io::Result<BoxIo> {
    let stream = UnixStream::connect(socket).await?;
    let (mut sender, conn) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.map_err(other)?;
    tokio::spawn(async move {
        // Ends when the upgraded stream is handed over or the socket closes;
        // either way the error, if any, reaches the request below.
        let _ = conn.with_upgrades().await;
    });
    let request = hyper::Request::post("/grpc")
        .header(hyper::header::HOST, "docker")
        .header(hyper::header::CONNECTION, "Upgrade")
        .header(hyper::header::UPGRADE, "h2c")
        .body(Empty::<Bytes>::new())
        .map_err(other)?;
    let response = sender.send_request(request).await.map_err(other)?;
    if response.status() != hyper::StatusCode::SWITCHING_PROTOCOLS {
        return Err(io::Error::other(format!(
            "POST /grpc answered {} instead of 101 Switching Protocols (is this a Docker Engine with BuildKit?)",
            response.status()
        )));
    }
    let upgraded = hyper::upgrade::on(response).await.map_err(other)?;
    Ok(Box::new(TokioIo::new(upgraded)))
}

/// buildx's docker-container driver: buildctl inside the container copies
/// its stdio to buildkitd's socket.
fn dial_stdio(container: &str, docker_host: Option<&str>, log: &Arc<Mutex<String>>) -> io::Result<BoxIo> {
    let mut command = Command::new("docker");
    if let Some(host) = docker_host {
        command.env("DOCKER_HOST", host);
    }
    let mut child = command
        .args(["exec", "-i", container, "buildctl", "dial-stdio"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let stdin = child.stdin.take().ok_or_else(|| io::Error::other("docker exec: no stdin pipe"))?;
    let stdout = child.stdout.take().ok_or_else(|| io::Error::other("docker exec: no stdout pipe"))?;
    if let Some(mut stderr) = child.stderr.take() {
        let log = log.clone();
        tokio::spawn(async move {
            let mut buf = vec![0; MAX_STDERR];
            while let Ok(n) = tokio::io::AsyncReadExt::read(&mut stderr, &mut buf).await {
                if n == 0 {
                    break;
                }
                if let Ok(mut log) = log.lock()
                    && log.len() < MAX_STDERR
                {
                    log.push_str(&String::from_utf8_lossy(&buf[..n]));
                }
            }
        });
    }
    Ok(Box::new(ChildIo { _child: child, stdin, stdout }))
}

struct ChildIo {
    // Held so the process lives (and dies, kill_on_drop) with the stream.
    _child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
}

impl AsyncRead for ChildIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stdout).poll_read(cx, buf)
    }
}

impl AsyncWrite for ChildIo {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stdin).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stdin).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stdin).poll_shutdown(cx)
    }
}

fn other(e: impl std::error::Error + Send + Sync + 'static) -> io::Error {
    io::Error::other(e)
}

fn tls_config(
    addr: &Address,
    host: &str,
    files: &ConnectOptions,
) -> Result<(Arc<rustls::ClientConfig>, rustls::pki_types::ServerName<'static>)> {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};

    let tls_err = |what: &'static str, path: &Path, source: Box<dyn std::error::Error + Send + Sync>| {
        Error::Tls { addr: addr.to_string(), what, path: path.to_owned(), source }
    };
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    let ca = files.ca_cert.as_deref().ok_or_else(|| {
        tls_err(
            "a client certificate needs the CA certificate too",
            files.cert.as_deref().unwrap_or(Path::new("")),
            "no --cacert".into(),
        )
    })?;
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(ca)
        .and_then(Iterator::collect)
        .map_err(|e| tls_err("CA certificate", ca, e.into()))?;
    if certs.is_empty() {
        return Err(tls_err("CA certificate", ca, "no PEM certificate in the file".into()));
    }
    for cert in certs {
        roots.add(cert).map_err(|e| tls_err("CA certificate", ca, e.into()))?;
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err("TLS protocol versions", ca, e.into()))?
        .with_root_certificates(roots);
    let mut config = match (&files.cert, &files.key) {
        (Some(cert), Some(key)) => {
            let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
                .and_then(Iterator::collect)
                .map_err(|e| tls_err("client certificate", cert, e.into()))?;
            let key_der =
                PrivateKeyDer::from_pem_file(key).map_err(|e| tls_err("client key", key, e.into()))?;
            builder.with_client_auth_cert(chain, key_der).map_err(|e| tls_err("client key", key, e.into()))?
        }
        (None, None) => builder.with_no_client_auth(),
        (Some(path), None) | (None, Some(path)) => {
            return Err(tls_err("client certificate and key go together", path, "only one was given".into()));
        }
    };
    // grpc-go servers refuse TLS connections that do not negotiate h2.
    config.alpn_protocols = vec![b"h2".to_vec()];
    let name = files.server_name.as_deref().unwrap_or(host).to_owned();
    let server_name =
        ServerName::try_from(name).map_err(|e| tls_err("server name", Path::new(host), e.into()))?;
    Ok((Arc::new(config), server_name))
}
