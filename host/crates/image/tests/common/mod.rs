//! Shared helpers for the integration tests: real test images built by the
//! scripts under tests/images, and the real tools (skopeo, docker-registry)
//! that check what caulk writes.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../..").canonicalize().unwrap()
}

/// Runs a command and returns its output, failing the test with its
/// stderr when it fails.
pub fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

pub fn skopeo(args: &[&str]) -> Output {
    run(Command::new("/usr/bin/skopeo").args(args))
}

pub fn skopeo_json(args: &[&str]) -> serde_json::Value {
    serde_json::from_slice(&skopeo(args).stdout).expect("skopeo prints JSON")
}

/// The synthetic OCI layout of tests/images/synthetic.sh, built once per
/// version of the script into the test cache (a rename publishes it, so
/// concurrent test processes never see half of one).
pub fn synthetic() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let script = repo_root().join("tests/images/synthetic.sh");
        let version = caulk_image::Digest::of(&std::fs::read(&script).unwrap());
        let dir = test_cache().join(format!("synthetic-{}", &version.hex()[..16]));
        if !dir.join("index.json").exists() {
            let tmp = test_cache().join(format!(".synthetic-{}", std::process::id()));
            run(Command::new("bash").arg(&script).arg(&tmp));
            if std::fs::rename(&tmp, &dir).is_err() {
                let _ = std::fs::remove_dir_all(&tmp); // another process won
            }
        }
        dir
    })
}

/// A copy of the synthetic layout that a test may damage.
pub fn synthetic_copy(tmp: &Path) -> PathBuf {
    let dir = tmp.join("syn");
    run(Command::new("cp").arg("-a").arg(synthetic()).arg(&dir));
    dir
}

pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new().prefix("caulk-image-").tempdir().unwrap()
}

/// Cache for expensive fixtures (the Debian root fs), kept between runs and
/// outside the repository.
pub fn test_cache() -> PathBuf {
    let dir = std::env::var_os("CAULK_TEST_CACHE")
        .map_or_else(|| PathBuf::from("/var/tmp/caulk-test-cache"), PathBuf::from);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// The Debian image of tests/images/debian.sh (built once, then cached).
pub fn debian() -> PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let out = run(Command::new("bash")
            .arg(repo_root().join("tests/images/debian.sh"))
            .env("CAULK_TEST_CACHE", test_cache()));
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
    .clone()
}

pub fn sha256_hex(path: &Path) -> String {
    let out = run(Command::new("sha256sum").arg(path));
    String::from_utf8(out.stdout).unwrap().split_whitespace().next().unwrap().to_owned()
}

/// Debian's docker-registry on a free loopback port, stopped on drop.
pub struct Registry {
    child: std::process::Child,
    pub addr: String,
    _dir: tempfile::TempDir,
}

impl Registry {
    pub fn start() -> Self {
        Self::start_with(None)
    }

    /// With `Some((user, password))` the registry demands basic auth
    /// (htpasswd, bcrypt as the registry requires).
    pub fn start_with(auth: Option<(&str, &str)>) -> Self {
        for _ in 0..5 {
            let dir = tempdir();
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let addr = format!("127.0.0.1:{port}");
            let mut config = format!(
                "version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: {}\n  delete:\n    enabled: true\nhttp:\n  addr: {addr}\n",
                dir.path().join("data").display()
            );
            if let Some((user, password)) = auth {
                let out = run(Command::new("htpasswd").args(["-Bbn", user, password]));
                std::fs::write(dir.path().join("htpasswd"), out.stdout).unwrap();
                write!(
                    config,
                    "auth:\n  htpasswd:\n    realm: caulk-test\n    path: {}\n",
                    dir.path().join("htpasswd").display()
                )
                .unwrap();
            }
            let config_path = dir.path().join("config.yml");
            std::fs::write(&config_path, config).unwrap();
            let mut child = Command::new("/usr/bin/docker-registry")
                .arg("serve")
                .arg(&config_path)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("docker-registry (Debian package docker-registry) runs");
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while std::time::Instant::now() < deadline {
                if std::net::TcpStream::connect(&addr).is_ok() {
                    return Registry { child, addr, _dir: dir };
                }
                if child.try_wait().unwrap().is_some() {
                    break; // lost the port race; try another
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("docker-registry did not start");
    }
}

impl Drop for Registry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
