//! `tcp://` addresses, plain and with TLS, against a real BuildKit: the
//! test puts a TCP (or TLS) front before the Engine's `/grpc` endpoint,
//! since this machine has no buildkitd of its own. Certificates come from
//! the openssl command line.

mod common;
#[path = "../../image/tests/common/registry.rs"]
#[allow(dead_code)]
mod registry;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use caulk_buildkit::{Address, Client, ConnectOptions, Credentials, Error, Step};
use common::{debian_image, docker_host, push_debian, run, sh};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, UnixStream};

/// Listens on 127.0.0.1 and hands each connection to the Engine's BuildKit
/// after doing the `/grpc` upgrade itself.
struct Front {
    port: u16,
    _runtime: tokio::runtime::Runtime,
}

impl Front {
    fn start(tls: Option<Arc<rustls::ServerConfig>>) -> Self {
        let runtime =
            tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
        let listener = runtime.block_on(TcpListener::bind("127.0.0.1:0")).unwrap();
        let port = listener.local_addr().unwrap().port();
        let socket = PathBuf::from(docker_host().trim_start_matches("unix://"));
        runtime.spawn(async move {
            while let Ok((mut tcp, _)) = listener.accept().await {
                let socket = socket.clone();
                let tls = tls.clone();
                tokio::spawn(async move {
                    let mut upstream = upgrade(&socket).await;
                    match tls {
                        None => {
                            let _ = tokio::io::copy_bidirectional(&mut tcp, &mut upstream).await;
                        }
                        Some(config) => {
                            // A refused handshake is the point of some tests.
                            if let Ok(mut tls) = tokio_rustls::TlsAcceptor::from(config).accept(tcp).await {
                                let _ = tokio::io::copy_bidirectional(&mut tls, &mut upstream).await;
                            }
                        }
                    }
                });
            }
        });
        Front { port, _runtime: runtime }
    }

    fn addr(&self) -> Address {
        Address::parse(&format!("tcp://127.0.0.1:{}", self.port)).unwrap()
    }
}

async fn upgrade(socket: &Path) -> UnixStream {
    let mut stream = UnixStream::connect(socket).await.unwrap();
    stream
        .write_all(b"POST /grpc HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: h2c\r\nContent-Length: 0\r\n\r\n")
        .await
        .unwrap();
    // Byte by byte: what follows the head is already HTTP/2.
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(stream.read_u8().await.unwrap());
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    stream
}

struct Pki {
    dir: tempfile::TempDir,
}

impl Pki {
    /// A CA with a server certificate for 127.0.0.1 and a client one, and a
    /// second CA that signed neither.
    fn new() -> Self {
        let dir = tempfile::tempdir().unwrap();
        let script = r#"
            set -e
            key="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
            for ca in ca other-ca; do
              openssl req -x509 $key -keyout $ca.key -out $ca.pem -days 1 -subj "/CN=caulk test $ca" 2>/dev/null
            done
            printf 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n' > server.ext
            printf 'extendedKeyUsage=clientAuth\n' > client.ext
            for name in server client; do
              openssl req $key -keyout $name.key -out $name.csr -subj "/CN=$name" 2>/dev/null
              openssl x509 -req -in $name.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out $name.pem \
                -days 1 -extfile $name.ext 2>/dev/null
            done
        "#;
        run(Command::new("bash").arg("-c").arg(script).current_dir(dir.path()));
        Pki { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// A server that asks for a client certificate from the same CA and
    /// speaks h2 only, as buildkitd with `--tlscacert` does.
    fn server(&self) -> Arc<rustls::ServerConfig> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = rustls::RootCertStore::empty();
        roots.add(CertificateDer::from_pem_file(self.path("ca.pem")).unwrap()).unwrap();
        let verifier =
            rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .build()
                .unwrap();
        let chain = vec![CertificateDer::from_pem_file(self.path("server.pem")).unwrap()];
        let key = PrivateKeyDer::from_pem_file(self.path("server.key")).unwrap();
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_client_cert_verifier(verifier)
            .with_single_cert(chain, key)
            .unwrap();
        config.alpn_protocols = vec![b"h2".to_vec()];
        Arc::new(config)
    }

    fn client(&self, ca: &str) -> ConnectOptions {
        ConnectOptions {
            ca_cert: Some(self.path(ca)),
            cert: Some(self.path("client.pem")),
            key: Some(self.path("client.key")),
            ..ConnectOptions::default()
        }
    }
}

fn workers(client: &Client) -> Vec<String> {
    client.list_workers().unwrap().into_iter().map(|w| w.id).collect()
}

#[test]
fn plain_tcp_reaches_buildkit() {
    let front = Front::start(None);
    let client = Client::connect(&front.addr(), &ConnectOptions::default()).unwrap();
    assert_eq!(workers(&client), ["moby"]);
}

#[test]
fn tls_with_a_client_certificate_reaches_buildkit() {
    let pki = Pki::new();
    let front = Front::start(Some(pki.server()));
    let client = Client::connect(&front.addr(), &pki.client("ca.pem")).unwrap();
    assert_eq!(workers(&client), ["moby"]);
    // A solve with its status stream, over the same TLS connection.
    let echo = Step { args: vec!["echo".into(), "over tls".into()], ..Step::default() };
    let out = client.probe(debian_image(), &[], &echo, &mut |_| {}).unwrap();
    assert_eq!(out.stdout, b"over tls\n");
}

#[test]
fn a_server_from_another_ca_is_refused() {
    let pki = Pki::new();
    let front = Front::start(Some(pki.server()));
    let err = Client::connect(&front.addr(), &pki.client("other-ca.pem")).unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains(&front.addr().to_string()) && text.contains("certificate"), "{text}");
}

#[test]
fn unusable_tls_files_are_named() {
    let pki = Pki::new();
    let addr = Address::parse("tcp://127.0.0.1:1").unwrap();
    let missing = ConnectOptions { ca_cert: Some(pki.path("nope.pem")), ..ConnectOptions::default() };
    let err = Client::connect(&addr, &missing).unwrap_err();
    assert!(matches!(err, Error::Tls { .. }) && err.to_string().contains("nope.pem"), "{err}");
    let not_pem = ConnectOptions { ca_cert: Some(pki.path("server.ext")), ..ConnectOptions::default() };
    let err = Client::connect(&addr, &not_pem).unwrap_err();
    assert!(matches!(err, Error::Tls { .. }) && err.to_string().contains("server.ext"), "{err}");
    let half = ConnectOptions { key: None, ..pki.client("ca.pem") };
    let err = Client::connect(&addr, &half).unwrap_err();
    assert!(matches!(err, Error::Tls { .. }) && err.to_string().contains("client.pem"), "{err}");
}

#[test]
fn a_server_that_wants_a_client_certificate_refuses_one_without() {
    let pki = Pki::new();
    let front = Front::start(Some(pki.server()));
    let anonymous = ConnectOptions { ca_cert: Some(pki.path("ca.pem")), ..ConnectOptions::default() };
    // TLS 1.3 finishes the client's side of the handshake before the server
    // says no, so the refusal may come with the first call.
    let err = Client::connect(&front.addr(), &anonymous).and_then(|c| c.list_workers()).unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
    assert!(err.to_string().contains(&front.addr().to_string()), "{err}");
}

#[test]
fn credentials_travel_in_a_session_over_tcp() {
    // Control.Session, the way a buildkitd gets credentials too.
    let registry = registry::Registry::start_with(Some(("caulk", "s3cret")));
    let image = push_debian(&registry.addr, Some("caulk:s3cret"));
    let host = registry.addr.clone();
    let credentials =
        Credentials::new(move |asked| (asked == host).then(|| ("caulk".to_owned(), "s3cret".to_owned())));
    let front = Front::start(None);
    let options = ConnectOptions { credentials: Some(credentials), ..ConnectOptions::default() };
    let client = Client::connect(&front.addr(), &options).unwrap();
    let out = client.probe(&image, &[], &sh("hostname", "cat /etc/hostname"), &mut |_| {}).unwrap();
    assert_eq!((out.stdout.as_slice(), out.exit_code), (&b"caulk-test\n"[..], 0), "{out:?}");
}

#[test]
fn a_chain_comes_back_through_any_address() {
    // Behind this tcp:// is Docker's BuildKit, but nothing says so: the
    // result comes back through the session, not an image store.
    let front = Front::start(None);
    let client = Client::connect(&front.addr(), &ConnectOptions::default()).unwrap();
    let result = common::export(&client, debian_image(), &[sh("x", "echo tcp > /root/x")], &["root/"]);
    assert_eq!(result.files["root/x"], b"tcp\n");
}
