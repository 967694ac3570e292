//! Helpers shared by the tests against Debian's dockerd: the daemon's
//! address, the test image in its store, and reading results back.
#![allow(dead_code)]

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Arc, Mutex};

use caulk_buildkit::pb::fsutil::Stat;
use caulk_buildkit::{Address, Client, ConnectOptions, Sink, Step};
use caulk_image::{CopyOptions, ImageRef, TransportOptions};

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

/// A result as the `local` exporter streams it: every entry's path, and
/// the contents of the regular files below `wanted` prefixes.
#[derive(Debug, Default)]
pub struct Received {
    pub paths: Vec<String>,
    pub files: BTreeMap<String, Vec<u8>>,
}

/// A [`Sink`] that fills a shared [`Received`].
pub struct Collect {
    wanted: Vec<String>,
    names: HashMap<u32, String>,
    into: Arc<Mutex<Received>>,
}

impl Sink for Collect {
    fn entry(&mut self, index: u32, stat: &Stat) -> Result<bool, String> {
        let mut into = self.into.lock().unwrap();
        into.paths.push(stat.path.clone());
        let wanted = self.wanted.iter().any(|w| stat.path.starts_with(w.as_str()));
        if wanted {
            self.names.insert(index, stat.path.clone());
            into.files.insert(stat.path.clone(), Vec::new());
        }
        Ok(wanted)
    }

    fn data(&mut self, index: u32, chunk: &[u8]) -> Result<(), String> {
        let mut into = self.into.lock().unwrap();
        into.files.get_mut(&self.names[&index]).unwrap().extend_from_slice(chunk);
        Ok(())
    }

    fn file_done(&mut self, _: u32) -> Result<(), String> {
        Ok(())
    }

    /// It holds what it takes in memory.
    fn budget(&self) -> u64 {
        64 << 20
    }

    fn finish(&mut self) -> Result<(), String> {
        Ok(())
    }
}

/// Runs `steps` on `base` through `client` and receives the result,
/// with the data of the files below `wanted`.
pub fn export(client: &Client, base: &str, steps: &[Step], wanted: &[&str]) -> Received {
    let into = Arc::new(Mutex::new(Received::default()));
    let sink = Collect {
        wanted: wanted.iter().map(|w| (*w).to_owned()).collect(),
        names: HashMap::new(),
        into: Arc::clone(&into),
    };
    client.export_chain(base, steps, Box::new(sink), &mut |_| {}).unwrap();
    std::mem::take(&mut *into.lock().unwrap())
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
