//! The registry transport against Debian's docker-registry on loopback,
//! checked with skopeo; and a hostile HTTP server for failure handling.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use caulk_image::transport::RegistryOptions;
use caulk_image::transport::registry::{MAX_TAGS, list_tags};
use caulk_image::{CopyOptions, Error, Image, ImageRef, Platform, RegistryRef, TransportOptions, copy};
use common::registry::Registry;
use common::{skopeo, synthetic, tempdir};

fn cp_with(
    src: &str,
    dst: &str,
    transport: &TransportOptions,
) -> caulk_image::Result<caulk_image::CopyReport> {
    let options = CopyOptions { retry_delay: Duration::from_millis(20), ..CopyOptions::default() };
    copy(&ImageRef::parse(src).unwrap(), &ImageRef::parse(dst).unwrap(), &options, transport)
}

fn cp(src: &str, dst: &str) -> caulk_image::CopyReport {
    cp_with(src, dst, &TransportOptions::default()).unwrap_or_else(|e| panic!("copy {src} -> {dst}: {e}"))
}

fn open(r: &str) -> Image {
    Image::open(&ImageRef::parse(r).unwrap(), &TransportOptions::default()).unwrap()
}

#[test]
fn push_pull_index_skip_existing_and_mount_across_repositories() {
    let registry = Registry::start();
    let tmp = tempdir();
    let src = format!("oci:{}:multi", synthetic().display());
    let original = open(&src);
    let remote = format!("docker://{}/caulk/syn:multi", registry.addr);

    let pushed = cp(&src, &remote);
    assert_eq!(pushed.digest.as_ref(), Some(&original.top.digest));
    assert_eq!(pushed.blobs_copied, original.blobs().len());
    let raw = skopeo(&["inspect", "--tls-verify=false", "--raw", &remote]).stdout;
    assert_eq!(raw, original.top.bytes, "skopeo sees the index byte for byte");
    skopeo(&[
        "copy",
        "--all",
        "--src-tls-verify=false",
        &remote,
        &format!("oci:{}/sk", tmp.path().display()),
    ]);

    // Pull back through caulk: same digests everywhere.
    let pulled = open(&remote);
    assert_eq!(pulled.top.digest, original.top.digest);
    assert_eq!(pulled.platforms(), original.platforms());
    let back = format!("oci:{}/back:x", tmp.path().display());
    assert_eq!(cp(&remote, &back).digest, pushed.digest);
    let arm = Platform::parse("linux/arm64").unwrap();
    let dir_image = open(&back);
    assert_eq!(
        dir_image.image_for(Some(&arm)).unwrap().layers[0].desc,
        original.image_for(Some(&arm)).unwrap().layers[0].desc
    );

    // Pushing again transfers nothing.
    let again = cp(&src, &remote);
    assert_eq!((again.blobs_copied, again.blobs_present), (0, original.blobs().len()));

    // Another repository of the same registry: blobs are mounted.
    let other = format!("docker://{}/caulk/other:v1", registry.addr);
    let mounted = cp(&remote, &other);
    assert_eq!((mounted.blobs_copied, mounted.blobs_mounted), (0, original.blobs().len()));
    assert_eq!(open(&other).top.digest, original.top.digest);
}

#[test]
fn docker_media_types_survive_a_push() {
    let registry = Registry::start();
    let src = format!("oci:{}:docker", synthetic().display());
    let remote = format!("{}/caulk/docker:v2", registry.addr);
    let report = cp(&src, &remote);
    let inspected: serde_json::Value = serde_json::from_slice(
        &skopeo(&["inspect", "--tls-verify=false", "--raw", &format!("docker://{remote}")]).stdout,
    )
    .unwrap();
    assert_eq!(inspected["mediaType"], caulk_image::media::DOCKER_MANIFEST);
    assert_eq!(report.digest.unwrap(), open(&src).top.digest);
}

#[test]
fn htpasswd_registry_needs_the_docker_config_credentials() {
    let registry = Registry::start_with(Some(("caulk", "s3cret")));
    let src = format!("oci:{}:single", synthetic().display());
    let remote = format!("docker://{}/private/img:1", registry.addr);

    let tmp = tempdir();
    let anonymous = TransportOptions {
        registry: RegistryOptions {
            docker_config: Some(tmp.path().join("none")),
            ..RegistryOptions::default()
        },
        ..TransportOptions::default()
    };
    let err = cp_with(&src, &remote, &anonymous).unwrap_err();
    assert!(matches!(err, Error::Unauthorized { .. }), "{err}");

    let config_dir = tmp.path().join("docker");
    std::fs::create_dir(&config_dir).unwrap();
    std::fs::write(
        config_dir.join("config.json"),
        format!(r#"{{"auths": {{"{}": {{"auth": "Y2F1bGs6czNjcmV0"}}}}}}"#, registry.addr),
    )
    .unwrap();
    let authed = TransportOptions {
        registry: RegistryOptions { docker_config: Some(config_dir), ..RegistryOptions::default() },
        ..TransportOptions::default()
    };
    let report = cp_with(&src, &remote, &authed).unwrap();
    let raw = skopeo(&["inspect", "--tls-verify=false", "--creds", "caulk:s3cret", "--raw", &remote]).stdout;
    assert_eq!(caulk_image::Digest::of(&raw), report.digest.unwrap());
    let back = format!("oci:{}/back", tmp.path().display());
    cp_with(&remote, &back, &authed).unwrap();
}

#[test]
fn the_tags_of_a_repository_nobody_pushed_to_are_not_found() {
    let registry = Registry::start();
    cp(&format!("oci:{}:single", synthetic().display()), &format!("{}/caulk/tagged:v1", registry.addr));
    let list = |repo: &str| {
        let reference = RegistryRef::parse(&format!("{}/{repo}", registry.addr)).unwrap();
        list_tags(&reference, &RegistryOptions::default())
    };
    assert_eq!(list("caulk/tagged").unwrap(), ["v1"]);
    // A fleet's first run into a new target repository: no tags yet, not a failure.
    match list("caulk/never-pushed") {
        Err(Error::ImageNotFound { reference, .. }) => {
            assert!(reference.contains("never-pushed"), "{reference}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn harbors_answer_for_a_missing_repository_is_not_found_too() {
    let (addr, _) = hostile_registry(Misbehaviour::HarborNoRepository);
    let reference = RegistryRef::parse(&format!("{addr}/library/x")).unwrap();
    let result = list_tags(&reference, &RegistryOptions::default());
    assert!(matches!(result, Err(Error::ImageNotFound { .. })), "{result:?}");
}

#[test]
fn a_registry_listing_tags_without_end_is_cut_off() {
    let (addr, hits) = hostile_registry(Misbehaviour::EndlessTags);
    let reference = RegistryRef::parse(&format!("{addr}/endless")).unwrap();
    let Err(err) = list_tags(&reference, &RegistryOptions::default()) else {
        panic!("an endless listing ended")
    };
    assert!(
        matches!(err, Error::RegistryRefused { .. }) && err.to_string().contains("more than 100000 tags"),
        "{err}"
    );
    assert_eq!(hits.load(Ordering::SeqCst), MAX_TAGS / 100 + 1, "pages asked for");
}

/// What the hostile server does when asked for the layer blob (or, for
/// `EndlessTags`, for the tags).
#[derive(Clone, Copy)]
enum Misbehaviour {
    ServerError,
    DropMidBlob,
    /// A full page of new tags for every `tags/list`, however far `last`.
    EndlessTags,
    /// `tags/list` of a repository Harbor does not have: 404, `NOT_FOUND`.
    HarborNoRepository,
}

/// A tiny registry that serves one image but misbehaves on its layer,
/// counting how often the layer is requested.
fn hostile_registry(mode: Misbehaviour) -> (String, Arc<AtomicUsize>) {
    let image = open(&format!("oci:{}:single", synthetic().display()));
    let img = image.images[0].clone();
    let layer_path = synthetic().join("blobs/sha256").join(img.layers[0].desc.digest.hex());
    let layer = std::fs::read(layer_path).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    let hits = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&hits);
    std::thread::spawn(move || {
        // Bounded, yet past the pages an endless tag listing is read to.
        for stream in listener.incoming().take(MAX_TAGS / 100 + 200) {
            let Ok(stream) = stream else { continue };
            let (img, layer, counter) = (img.clone(), layer.clone(), Arc::clone(&counter));
            std::thread::spawn(move || serve(stream, &img, &layer, mode, &counter));
        }
    });
    (addr, hits)
}

fn serve(
    stream: TcpStream,
    img: &caulk_image::PlatformImage,
    layer: &[u8],
    mode: Misbehaviour,
    hits: &AtomicUsize,
) {
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
        let mut content_length = 0usize;
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 || h == "\r\n" {
                break;
            }
            if let Some(v) = h.to_ascii_lowercase().strip_prefix("content-length:") {
                content_length = v.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; content_length];
        let _ = reader.read_exact(&mut body);
        let respond = |out: &mut TcpStream, status: &str, ctype: &str, body: &[u8]| {
            let head = format!(
                "HTTP/1.1 {status}\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\nDocker-Distribution-Api-Version: registry/2.0\r\n\r\n",
                body.len()
            );
            let _ = out.write_all(head.as_bytes());
            let _ = out.write_all(body);
        };
        if path == "/v2/" {
            respond(&mut out, "200 OK", "application/json", b"{}");
        } else if path.contains("/tags/list") && matches!(mode, Misbehaviour::HarborNoRepository) {
            let body = br#"{"errors":[{"code":"NOT_FOUND","message":"repository library/x not found"}]}"#;
            respond(&mut out, "404 Not Found", "application/json", body);
        } else if path.contains("/tags/list") {
            hits.fetch_add(1, Ordering::SeqCst);
            let page = hits.load(Ordering::SeqCst);
            let tags: Vec<String> = (0..100).map(|i| format!("t{page}-{i}")).collect();
            respond(
                &mut out,
                "200 OK",
                "application/json",
                &serde_json::to_vec(&serde_json::json!({"name": "endless", "tags": tags})).unwrap(),
            );
        } else if path.contains("/manifests/") {
            respond(&mut out, "200 OK", &img.manifest.media_type, &img.manifest.bytes);
        } else if path.ends_with(img.config.desc.digest.as_str()) {
            respond(&mut out, "200 OK", "application/octet-stream", &img.config.bytes);
        } else if path.contains("/blobs/") {
            hits.fetch_add(1, Ordering::SeqCst);
            match mode {
                Misbehaviour::ServerError | Misbehaviour::EndlessTags | Misbehaviour::HarborNoRepository => {
                    respond(&mut out, "500 Internal Server Error", "text/plain", b"boom");
                }
                Misbehaviour::DropMidBlob => {
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n\r\n",
                        layer.len()
                    );
                    let _ = out.write_all(head.as_bytes());
                    let _ = out.write_all(&layer[..layer.len() / 2]);
                    let _ = out.shutdown(std::net::Shutdown::Both);
                    return;
                }
            }
        } else {
            respond(
                &mut out,
                "404 Not Found",
                "application/json",
                br#"{"errors":[{"code":"NAME_UNKNOWN","message":"nope"}]}"#,
            );
        }
    }
}

fn assert_no_output(dir: &std::path::Path) {
    assert!(!dir.join("index.json").exists(), "index.json written despite the failure");
    let leftovers: Vec<_> = std::fs::read_dir(dir.join("blobs/sha256"))
        .map(|d| d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect())
        .unwrap_or_default();
    assert!(
        leftovers.iter().all(|n: &String| n.len() == 64 && !n.starts_with('.')),
        "temp files left: {leftovers:?}"
    );
}

#[test]
fn registry_answering_500_is_retried_a_bounded_number_of_times() {
    let (addr, hits) = hostile_registry(Misbehaviour::ServerError);
    let tmp = tempdir();
    let dir = tmp.path().join("out");
    let err = cp_with(
        &format!("docker://{addr}/x/y:z"),
        &format!("oci:{}:n", dir.display()),
        &TransportOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::RetriesExhausted { attempts: 3, .. }), "{err}");
    assert!(err.to_string().contains("500"), "{err}");
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    assert_no_output(&dir);
}

#[test]
fn registry_dropping_the_connection_mid_blob_leaves_no_partial_output() {
    let (addr, hits) = hostile_registry(Misbehaviour::DropMidBlob);
    let tmp = tempdir();
    let dir = tmp.path().join("out");
    let err = cp_with(
        &format!("docker://{addr}/x/y:z"),
        &format!("oci:{}:n", dir.display()),
        &TransportOptions::default(),
    )
    .unwrap_err();
    assert!(matches!(err, Error::RetriesExhausted { attempts: 3, .. }), "{err}");
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    assert_no_output(&dir);
    // Nothing named after the layer either.
    let image = open(&format!("oci:{}:single", synthetic().display()));
    assert!(!dir.join("blobs/sha256").join(image.images[0].layers[0].desc.digest.hex()).exists());
}
