//! What the host does around the plugin, done the simple way for tests:
//! roots built by tests/images/rpm.sh unpacked into a temporary directory,
//! `files` probes answered from them, and `run` probes run for real with
//! the host's rpm and dnf (`/target` being the unpacked root).

#![allow(dead_code)] // each test binary uses its own subset

use std::path::{Path, PathBuf};
use std::process::Command;

use caulk_plugin_rpm::Rpm;
use caulk_plugin_rpm::probe::TOOLING_MOUNT;
use caulk_sdk::Updater;
use caulk_sdk::types::Platform;
use caulk_sdk::update::{
    Answer, CommandOutput, ExecContext, Fact, Options, PatchLevel, PatchPlan, Phase, PlanRequest,
    ProbeRequest, Question, QuestionKind, Target, Update, UpdateMode,
};

pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The cached test material of tests/images/rpm.sh.
pub fn material() -> PathBuf {
    let out =
        Command::new(workspace().join("tests/images/rpm.sh")).output().expect("running tests/images/rpm.sh");
    assert!(out.status.success(), "rpm.sh failed:\n{}", String::from_utf8_lossy(&out.stderr));
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// An image root on disk.
pub struct Root {
    pub dir: PathBuf,
    _work: tempfile::TempDir,
}

impl Root {
    /// Root KIND of rpm.sh (`toolless`, `azure`), unpacked.
    pub fn unpack(kind: &str) -> Self {
        let work = tempfile::tempdir().unwrap();
        let dir = work.path().join("root");
        std::fs::create_dir(&dir).unwrap();
        let tar = material().join(format!("{kind}.tar"));
        let status = Command::new("tar").arg("-xf").arg(&tar).arg("-C").arg(&dir).status().unwrap();
        assert!(status.success());
        Self { dir, _work: work }
    }

    /// Puts an (empty, executable) file at `path` in the root: a package
    /// manager the plan must pick.
    pub fn add_program(&self, path: &str) {
        use std::os::unix::fs::PermissionsExt;
        let file = self.dir.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, b"").unwrap();
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o755)).unwrap();
    }

    pub fn write(&self, path: &str, contents: &str) {
        let file = self.dir.join(path.trim_start_matches('/'));
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, contents).unwrap();
    }

    pub fn remove(&self, path: &str) {
        let path = self.dir.join(path.trim_start_matches('/'));
        if path.is_dir() {
            std::fs::remove_dir_all(path).unwrap();
        } else {
            std::fs::remove_file(path).unwrap();
        }
    }

    pub fn answer(&self, question: &Question) -> Fact {
        let answer = match &question.kind {
            QuestionKind::Files(patterns) => Answer::Files(caulk_sdk::testing::files(&self.dir, patterns)),
            QuestionKind::Run(command) => {
                // The test roots have no rpm of their own: every command is
                // the host's, with the root where the host mounts it.
                assert!(matches!(command.context, ExecContext::Tooling(_)), "{command:?}");
                let root = self.dir.to_str().unwrap();
                let argv: Vec<String> = command
                    .argv
                    .iter()
                    .map(|a| if a == TOOLING_MOUNT { root.to_owned() } else { a.clone() })
                    .collect();
                match Command::new(&argv[0]).args(&argv[1..]).output() {
                    Ok(out) => Answer::Output(CommandOutput {
                        exit_code: out.status.code().unwrap_or(-1),
                        stdout: out.stdout,
                        stderr: out.stderr,
                    }),
                    Err(e) => Answer::Unavailable(format!("{}: {e}", argv[0])),
                }
            }
            other @ QuestionKind::Lookup(_) => {
                panic!("the rpm plugin asked an unexpected question: {other:?}")
            }
        };
        Fact { question_id: question.id.clone(), answer }
    }

    pub fn target(&self) -> Target {
        Target {
            os: caulk_sdk::testing::os_release(&self.dir),
            platform: Platform { os: "linux".into(), architecture: "amd64".into(), variant: None },
            env: vec![("PATH".into(), "/usr/sbin:/usr/bin:/sbin:/bin".into())],
        }
    }
}

pub fn options(mode: UpdateMode) -> Options {
    Options {
        mode,
        patch_level: PatchLevel::Patch,
        ignore_errors: false,
        index_urls: Vec::new(),
        settings: Vec::new(),
    }
}

/// Drives `probe` as the host does; returns the facts and the rounds that
/// asked something.
pub fn probe(root: &Root, phase: Phase, options: &Options) -> (Vec<Fact>, usize) {
    let request = ProbeRequest::new(phase, root.target(), options.clone());
    let (asked, rounds) = caulk_sdk::testing::probe_rounds::<Rpm>(request, |q| root.answer(q));
    (asked.into_iter().map(|(_, fact)| fact).collect(), rounds)
}

pub fn plan_request(root: &Root, updates: Vec<Update>, options: Options) -> PlanRequest {
    let (facts, _) = probe(root, Phase::Plan, &options);
    PlanRequest { target: root.target(), updates, options, facts }
}

pub fn plan(root: &Root, updates: Vec<Update>, options: Options) -> PatchPlan {
    Rpm::plan(&plan_request(root, updates, options)).unwrap_or_else(|e| panic!("plan failed: {e:?}"))
}

pub fn update(name: &str, installed: &str, fixed: &[&str]) -> Update {
    Update {
        ecosystem: "rpm".into(),
        name: name.into(),
        location: None,
        installed_version: installed.into(),
        fixed_versions: fixed.iter().map(|v| (*v).to_owned()).collect(),
        vulnerabilities: vec![format!("CVE-TEST-{name}")],
    }
}

/// rpm.sh's repository served over HTTP on 127.0.0.1 by Python's
/// http.server, stopped when dropped.
pub struct Server {
    child: std::process::Child,
    pub port: u16,
}

impl Server {
    pub fn start() -> Self {
        let repo = material().join("repo");
        for _ in 0..5 {
            // A free port, then the server on it; another process may take
            // it in between, so this retries.
            let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
            let mut child = Command::new("python3")
                .args(["-m", "http.server", "--bind", "127.0.0.1"])
                .arg(port.to_string())
                .arg("--directory")
                .arg(&repo)
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("python3 -m http.server starts");
            for _ in 0..100 {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    return Self { child, port };
                }
                if child.try_wait().unwrap().is_some() {
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
            let _ = child.kill();
            let _ = child.wait();
        }
        panic!("could not start an HTTP server for the test repository");
    }

    /// The repository file the images carry.
    pub fn repo_file(&self) -> String {
        format!(
            "[caulk-test]\nname=caulk test repository\nbaseurl=http://127.0.0.1:{}/\ngpgcheck=0\n",
            self.port
        )
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `name` as `rpm -q` reads it from the database of `root`.
pub fn rpm_q(root: &Path, name: &str) -> String {
    let out = Command::new("rpm")
        .arg("--root")
        .arg(root)
        .args(["--dbpath", "/var/lib/rpm", "-q", "--qf", "%{EPOCH}:%{VERSION}-%{RELEASE}\\n", name])
        .output()
        .unwrap();
    String::from_utf8_lossy(&out.stdout).trim().replace("(none):", "")
}
