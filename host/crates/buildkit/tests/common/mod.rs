//! Helpers shared by the tests against Debian's dockerd: the daemon's
//! address, the test image in its store, and reading results back.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use caulk_buildkit::{Address, Client, ConnectOptions, DockerApi, Step};
use caulk_image::{CopyOptions, Image, ImageRef, TransportOptions};

pub const IMAGE: &str = "caulk-buildkit-test/bookworm:v1";
pub const BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).ancestors().nth(3).unwrap().to_owned()
}

pub fn docker_host() -> String {
    let host = std::env::var("CAULK_TEST_DOCKER_HOST").unwrap_or_default();
    assert!(
        host.starts_with("unix://"),
        "CAULK_TEST_DOCKER_HOST is not a unix:// socket ({host:?}): start the test daemon with \
         `eval \"$(tests/scripts/dockerd.sh start >/dev/null; tests/scripts/dockerd.sh env)\"`"
    );
    host
}

pub fn addr() -> Address {
    let host = docker_host();
    Address::parse(&format!("docker-unix://{}", host.trim_start_matches("unix://"))).unwrap()
}

pub fn client() -> Client {
    Client::connect(&addr(), &ConnectOptions::default()).unwrap()
}

pub fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

pub fn test_cache() -> PathBuf {
    let dir = std::env::var_os("CAULK_TEST_CACHE")
        .map_or_else(|| "/var/tmp/caulk-test-cache".into(), PathBuf::from);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The OCI layout of tests/images/debian.sh (built once, then cached); its
/// one image is tagged `bookworm`.
pub fn debian_layout() -> PathBuf {
    let out = run(Command::new("bash")
        .arg(repo_root().join("tests/images/debian.sh"))
        .env("CAULK_TEST_CACHE", test_cache()));
    PathBuf::from(out.trim())
}

/// tests/images/debian.sh's bookworm image, in the Engine's store under
/// IMAGE (Docker Hub is out of reach, so BuildKit must find it locally).
/// Loaded with caulk-image's docker-daemon transport, once, under a lock
/// shared by the test processes.
pub fn debian_image() -> &'static str {
    let cache = test_cache();
    let lock = std::fs::File::create(cache.join(".buildkit-load.lock")).unwrap();
    lock.lock().unwrap();
    let present = Command::new("/usr/bin/docker")
        .args(["-H", &docker_host(), "image", "inspect", IMAGE])
        .output()
        .unwrap()
        .status
        .success();
    if !present {
        let layout = ImageRef::parse(&format!("oci:{}:bookworm", debian_layout().display())).unwrap();
        let daemon = ImageRef::parse(&format!("docker-daemon:{IMAGE}")).unwrap();
        caulk_image::copy(&layout, &daemon, &CopyOptions::default(), &transport()).unwrap();
    }
    IMAGE
}

fn transport() -> TransportOptions {
    TransportOptions { docker_host: addr().docker_host(), ..TransportOptions::default() }
}

pub fn diff_ids(image: &str) -> Vec<String> {
    let out = run(Command::new("/usr/bin/docker").args([
        "-H",
        &docker_host(),
        "image",
        "inspect",
        "--format",
        "{{json .RootFS.Layers}}",
        image,
    ]));
    serde_json::from_str(&out).unwrap()
}

pub fn sh(name: &str, script: &str) -> Step {
    Step { name: name.into(), args: vec!["sh".into(), "-c".into(), script.into()], ..Step::default() }
}

/// A layer's entry names and its regular files with their contents.
#[derive(Debug)]
pub struct LayerFiles {
    pub names: Vec<String>,
    pub files: Vec<(String, Vec<u8>)>,
}

/// The config of an image in the Engine, as caulk reads it.
pub fn config_of(name: &str) -> serde_json::Value {
    let image =
        Image::open(&ImageRef::parse(&format!("docker-daemon:{name}")).unwrap(), &transport()).unwrap();
    serde_json::from_slice(&image.image_for(None).unwrap().config.bytes).unwrap()
}

/// An image in the Engine read back the way caulk reads images (the
/// docker-daemon transport): its diff_ids, and the contents of the layers
/// after the first `skip`.
pub fn read_back(name: &str, skip: usize) -> (Vec<String>, Vec<LayerFiles>) {
    let image =
        Image::open(&ImageRef::parse(&format!("docker-daemon:{name}")).unwrap(), &transport()).unwrap();
    let platform = image.image_for(None).unwrap();
    let diff_ids = platform.layers.iter().map(|l| l.diff_id.to_string()).collect();
    let layers = platform.layers[skip..]
        .iter()
        .map(|layer| {
            let stream = caulk_image::layer::open_tar_stream(image.source().as_ref(), layer).unwrap();
            let mut archive = tar::Archive::new(stream);
            let mut contents = LayerFiles { names: Vec::new(), files: Vec::new() };
            for entry in archive.entries().unwrap() {
                let mut entry = entry.unwrap();
                let path = entry.path().unwrap().to_string_lossy().trim_start_matches("./").to_owned();
                if entry.header().entry_type().is_file() {
                    let mut data = Vec::new();
                    entry.read_to_end(&mut data).unwrap();
                    contents.files.push((path.clone(), data));
                }
                contents.names.push(path);
            }
            contents
        })
        .collect();
    (diff_ids, layers)
}

/// A unique result name per test process, removed again at the end.
pub struct Target {
    pub name: String,
    pub docker: DockerApi,
}

impl Target {
    pub fn new(tag: &str) -> Self {
        let name = format!("caulk-buildkit-test/result:{tag}-{}", std::process::id());
        Target { name, docker: DockerApi::for_address(&addr(), "reading the result").unwrap() }
    }
}

impl Drop for Target {
    fn drop(&mut self) {
        let _ = self.docker.remove(&self.name);
    }
}

/// Pushes the Debian test image to the registry at `registry` (HOST:PORT,
/// plain HTTP) as `caulk/bookworm:v1`, with `user:password` if given, and
/// returns its reference.
pub fn push_debian(registry: &str, creds: Option<&str>) -> String {
    let image = format!("{registry}/caulk/bookworm:v1");
    let mut args = vec!["copy".to_owned(), "--quiet".into(), "--dest-tls-verify=false".into()];
    if let Some(creds) = creds {
        args.push(format!("--dest-creds={creds}"));
    }
    args.push(format!("oci:{}:bookworm", debian_layout().display()));
    args.push(format!("docker://{image}"));
    run(Command::new("skopeo").args(&args));
    image
}
