//! The docker-daemon transport against Debian's dockerd. The daemon is
//! started outside the tests by tests/scripts/dockerd.sh, which prints the
//! socket for CAULK_TEST_DOCKER_HOST; without it these tests fail, because
//! skipping would hide a transport that was never exercised.

mod common;

use std::process::Command;

use caulk_image::{CopyOptions, Error, Image, ImageRef, Platform, TransportOptions, copy};
use common::{run, skopeo_json, synthetic, tempdir};

fn docker_host() -> String {
    let host = std::env::var("CAULK_TEST_DOCKER_HOST").unwrap_or_default();
    assert!(
        !host.is_empty(),
        "CAULK_TEST_DOCKER_HOST is not set: start the test daemon with \
         `eval \"$(tests/scripts/dockerd.sh start >/dev/null; tests/scripts/dockerd.sh env)\"`"
    );
    let ping = Command::new("/usr/bin/docker")
        .args(["-H", &host, "version", "--format", "{{.Server.Version}}"])
        .output();
    assert!(
        ping.as_ref().is_ok_and(|o| o.status.success()),
        "the Docker Engine at CAULK_TEST_DOCKER_HOST={host} is not reachable ({ping:?}); run tests/scripts/dockerd.sh start"
    );
    host
}

fn transport(host: &str) -> TransportOptions {
    TransportOptions { docker_host: Some(host.to_owned()), ..TransportOptions::default() }
}

fn docker(host: &str, args: &[&str]) -> String {
    String::from_utf8(run(Command::new("/usr/bin/docker").arg("-H").arg(host).args(args)).stdout).unwrap()
}

#[test]
fn load_into_and_save_from_the_docker_engine() {
    let host = docker_host();
    let options = transport(&host);
    let tmp = tempdir();
    let src = format!("oci:{}:multi", synthetic().display());
    let arm = Platform::parse("linux/arm64").unwrap();
    let source = Image::open(&ImageRef::parse(&src).unwrap(), &options).unwrap();
    let expected: Vec<String> =
        source.image_for(Some(&arm)).unwrap().layers.iter().map(|l| l.diff_id.to_string()).collect();

    // Docker 20.10 cannot load zstd layers, so the arm64 image (gzip) goes in.
    let name = format!("caulk-test/daemon-{}:arm", std::process::id());
    let dst = format!("docker-daemon:{name}");
    let copy_options = CopyOptions { platforms: Some(vec![arm.clone()]), ..CopyOptions::default() };
    copy(&ImageRef::parse(&src).unwrap(), &ImageRef::parse(&dst).unwrap(), &copy_options, &options).unwrap();
    let layers = docker(&host, &["image", "inspect", "--format", "{{json .RootFS.Layers}}", &name]);
    let layers: Vec<String> = serde_json::from_str(&layers).unwrap();
    assert_eq!(layers, expected, "the Engine computed the same diff_ids");

    // And back out: caulk and skopeo see the same image.
    let back = Image::open(&ImageRef::parse(&dst).unwrap(), &options).unwrap();
    let diff_ids: Vec<String> = back.images[0].layers.iter().map(|l| l.diff_id.to_string()).collect();
    assert_eq!(diff_ids, expected);
    let theirs = skopeo_json(&["inspect", "--daemon-host", &host, &dst]);
    let ours: Vec<String> = back.images[0].layers.iter().map(|l| l.desc.digest.to_string()).collect();
    assert_eq!(theirs["Layers"], serde_json::json!(ours));
    let out = format!("oci:{}/from-daemon:x", tmp.path().display());
    copy(&ImageRef::parse(&dst).unwrap(), &ImageRef::parse(&out).unwrap(), &CopyOptions::default(), &options)
        .unwrap();
    let copied = Image::open(&ImageRef::parse(&out).unwrap(), &options).unwrap();
    assert_eq!(copied.images[0].config.bytes, back.images[0].config.bytes);

    // An archive with two images, as `docker save A B` writes it.
    let second = format!("caulk-test/daemon-{}:docker", std::process::id());
    let docker_src = format!("oci:{}:docker", synthetic().display());
    copy(
        &ImageRef::parse(&docker_src).unwrap(),
        &ImageRef::parse(&format!("docker-daemon:{second}")).unwrap(),
        &CopyOptions::default(),
        &options,
    )
    .unwrap();
    let multi = tmp.path().join("multi.tar");
    docker(&host, &["save", "-o", &multi.display().to_string(), &name, &second]);
    let err =
        Image::open(&ImageRef::parse(&format!("docker-archive:{}", multi.display())).unwrap(), &options)
            .unwrap_err();
    assert!(err.to_string().contains("holds 2 images"), "{err}");
    let by_tag = Image::open(
        &ImageRef::parse(&format!("docker-archive:{}:{second}", multi.display())).unwrap(),
        &options,
    )
    .unwrap();
    let docker_image = Image::open(&ImageRef::parse(&docker_src).unwrap(), &options).unwrap();
    assert_eq!(by_tag.images[0].config.bytes, docker_image.images[0].config.bytes);
    let by_index: Vec<Vec<u8>> = (0..2)
        .map(|i| {
            Image::open(
                &ImageRef::parse(&format!("docker-archive:{}:@{i}", multi.display())).unwrap(),
                &options,
            )
            .unwrap()
            .images[0]
                .config
                .bytes
                .clone()
        })
        .collect();
    assert!(
        by_index.contains(&back.images[0].config.bytes) && by_index.contains(&by_tag.images[0].config.bytes)
    );
    docker(&host, &["image", "rm", &second]);

    docker(&host, &["image", "rm", &name]);
    let err = Image::open(&ImageRef::parse(&dst).unwrap(), &options).unwrap_err();
    assert!(matches!(err, Error::ImageNotFound { .. }), "{err}");
}

#[test]
fn an_unreachable_engine_is_a_clear_error() {
    let tmp = tempdir();
    let options = transport(&format!("unix://{}/nope.sock", tmp.path().display()));
    let err = Image::open(&ImageRef::parse("docker-daemon:debian:12").unwrap(), &options).unwrap_err();
    assert!(err.to_string().contains("is dockerd running?"), "{err}");
}
