//! The local executor on a real Debian root fs (two layers: see
//! `common/mod.rs`), with real bubblewrap and overlayfs. Runs as root.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use caulk_exec::{
    CancelToken, EntryKind, Error, ExecutorConfig, LocalExecutor, MergedReader, Mode, Probe, RunIn, Session,
    Step, StepOutcome, Stream, ToolingRoot,
};
use common::{
    describe_diff, executor, fixture, host_mounts_under, is_opaque, is_whiteout, processes_with_cmdline,
    workdir,
};

fn quiet() -> impl FnMut(Stream, &str) {
    |_, _| {}
}

fn run(session: &mut Session<'_>, step: &Step) -> StepOutcome {
    session.run_step(step, &mut quiet()).unwrap_or_else(|e| panic!("step `{}`: {e}", step.summary))
}

fn probe_stdout(session: &Session<'_>, argv: &[&str]) -> String {
    let out = session.probe(&Probe::new(argv.iter().copied())).unwrap();
    assert!(out.success(), "probe {argv:?} failed: {:?} {}", out.exit_code, out.stderr_text());
    out.stdout_text()
}

fn sh(summary: &str, script: &str) -> Step {
    Step::new(summary, ["sh", "-c", script])
}

fn session_dirs(work: &Path) -> Vec<PathBuf> {
    fs::read_dir(work)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with("caulk-exec-"))
        .collect()
}

/// Changes of every kind: new, changed in place, chmod, chown, deleted
/// file, deleted dir, replaced dir (opaque), symlink, hard link, and
/// changes inside layer 1's opaque dir.
const CHANGES: &str = "
set -e
echo new > /etc/new.txt
echo extra >> /etc/shells
rm /etc/debian_version
chmod 600 /etc/issue
chown 1000:1000 /etc/issue.net
rm -rf /usr/share/doc/dpkg
mkdir /usr/share/doc/dpkg
echo only > /usr/share/doc/dpkg/only
rm -rf /usr/share/doc/tar
mkdir -p /opt/app/sub
echo app > /opt/app/sub/file
ln -s ../../../../../../etc/hostname /opt/app/escape-rel
ln -s /etc/hostname /opt/app/escape-abs
ln /etc/host.conf /etc/host.conf.link
rm /etc/caulk-layer1
rm /usr/share/doc/apt/NOTE
echo replaced > /usr/share/doc/apt/NEW
";

#[test]
fn step_changes_become_an_upper_dir() {
    let fx = fixture();
    let work = workdir();
    let exec = executor(work.path(), Mode::Overlay);
    assert_eq!(exec.mode(), Mode::Overlay);
    let mut session = exec.prepare(&fx.layers(), CancelToken::new()).unwrap();
    run(&mut session, &sh("make changes", CHANGES));
    let diff = session.finish().unwrap();
    let upper = diff.path();

    assert_eq!(fs::read_to_string(upper.join("etc/new.txt")).unwrap(), "new\n");
    assert!(fs::read_to_string(upper.join("etc/shells")).unwrap().ends_with("extra\n"));
    assert!(is_whiteout(&upper.join("etc/debian_version")));
    assert!(is_whiteout(&upper.join("usr/share/doc/tar")));
    assert!(is_whiteout(&upper.join("etc/caulk-layer1")));
    assert!(is_opaque(&upper.join("usr/share/doc/dpkg")));
    let dpkg_docs: Vec<_> =
        fs::read_dir(upper.join("usr/share/doc/dpkg")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(dpkg_docs, ["only"]);
    assert!(is_whiteout(&upper.join("usr/share/doc/apt/NOTE")));
    assert_eq!(fs::read_to_string(upper.join("usr/share/doc/apt/NEW")).unwrap(), "replaced\n");
    assert_eq!(fs::metadata(upper.join("etc/issue")).unwrap().mode() & 0o7777, 0o600);
    assert_eq!(fs::metadata(upper.join("etc/issue.net")).unwrap().uid(), 1000);
    assert_eq!(fs::read_link(upper.join("opt/app/escape-abs")).unwrap(), Path::new("/etc/hostname"));

    // What bwrap mounted never lands in the diff: the image (layer 1)
    // deletes resolv.conf, so bwrap had to create it as a mount point.
    assert!(!upper.join("etc/resolv.conf").exists() && !is_whiteout(&upper.join("etc/resolv.conf")));
    assert!(!upper.join("etc/ssl").exists(), "the CA bundle mount touched the diff");
    for dir in ["proc", "dev", "tmp"] {
        assert!(!upper.join(dir).exists(), "/{dir} is in the diff");
    }
    assert!(host_mounts_under(work.path()).is_empty(), "{:?}", host_mounts_under(work.path()));
}

#[test]
fn copy_mode_gives_the_same_diff_as_overlay() {
    let fx = fixture();
    let work = workdir();
    let mut diffs = Vec::new();
    for mode in [Mode::Overlay, Mode::Copy] {
        let exec = executor(work.path(), mode);
        assert_eq!(exec.mode(), mode);
        let mut session = exec.prepare(&fx.layers(), CancelToken::new()).unwrap();
        assert_eq!(session.mode(), mode);
        run(&mut session, &sh("make changes", CHANGES));
        run(&mut session, &sh("change again", "echo second > /etc/new.txt; rm -rf /opt/app/sub"));
        let diff = session.finish().unwrap();
        assert_eq!(diff.mode(), mode);
        diffs.push(describe_diff(diff.path()));
    }
    let (overlay, copy) = (&diffs[0], &diffs[1]);
    let only = |a: &BTreeMap<String, String>, b: &BTreeMap<String, String>| -> Vec<String> {
        a.iter().filter(|(k, v)| b.get(*k) != Some(v)).map(|(k, v)| format!("{k}: {v}")).collect()
    };
    assert!(
        overlay == copy,
        "only in overlay: {:#?}\nonly in copy: {:#?}",
        only(overlay, copy),
        only(copy, overlay)
    );
    assert!(overlay.len() > 20, "{overlay:#?}");
    assert!(session_dirs(work.path()).is_empty(), "sessions left behind");
}

#[test]
fn environment_is_clean_and_proxies_pass() {
    let fx = fixture();
    let work = workdir();
    let mut config = ExecutorConfig::new(work.path());
    config.proxy_env = vec![
        ("HTTP_PROXY".to_owned(), "http://proxy.invalid:3128".to_owned()),
        ("no_proxy".to_owned(), "localhost,.internal".to_owned()),
    ];
    let exec = LocalExecutor::new(config).unwrap();
    let mut session = exec.prepare(&fx.layers(), CancelToken::new()).unwrap();
    let mut lines = Vec::new();
    let step =
        Step::new("print env", ["env"]).env("DEBIAN_FRONTEND", "noninteractive").env("HOME", "/custom");
    session
        .run_step(&step, &mut |stream, line| {
            assert_eq!(stream, Stream::Stdout);
            lines.push(line.to_owned());
        })
        .unwrap();
    lines.retain(|l| !l.starts_with("PWD="));
    lines.sort();
    assert_eq!(
        lines,
        [
            "DEBIAN_FRONTEND=noninteractive",
            "HOME=/custom",
            "HTTP_PROXY=http://proxy.invalid:3128",
            "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            "no_proxy=localhost,.internal",
        ]
    );
    // A probe gets the same environment (default HOME).
    let env = probe_stdout(&session, &["env"]);
    assert!(env.contains("HOME=/root\n") && env.contains("HTTP_PROXY=http://proxy.invalid:3128\n"), "{env}");
    assert!(!env.contains("CARGO"), "host environment leaked: {env}");
}

#[test]
fn tmp_is_world_writable_and_sticky_and_namespaces_are_private() {
    let fx = fixture();
    let work = workdir();
    let exec = executor(work.path(), Mode::Overlay);
    let session = exec.prepare(&fx.layers(), CancelToken::new()).unwrap();
    assert_eq!(probe_stdout(&session, &["stat", "-c", "%a", "/tmp"]), "1777\n");
    // A fresh pid namespace: the command is one of very few processes.
    let pids = probe_stdout(&session, &["sh", "-c", "ls -d /proc/[0-9]* | wc -l"]);
    assert!(pids.trim().parse::<u32>().unwrap() <= 4, "{pids}");
    // No network unless asked: only a loopback device.
    let devs = probe_stdout(&session, &["cat", "/proc/net/dev"]);
    assert_eq!(devs.lines().skip(2).map(|l| l.split(':').next().unwrap().trim()).collect::<Vec<_>>(), ["lo"]);
    let with_net = session.probe(&Probe::new(["cat", "/proc/net/dev"]).network(true)).unwrap().stdout_text();
    assert!(with_net.lines().count() > 3, "{with_net}");
}

#[test]
fn ca_bundle_and_resolv_conf_are_read_only_in_network_steps_and_stay_out_of_the_diff() {
    let fx = fixture();
    let work = workdir();
    let host = tempfile::tempdir().unwrap();
    let bundle = host.path().join("bundle.pem");
    fs::write(&bundle, "# a test CA bundle\n").unwrap();
    let resolv = host.path().join("resolv.conf");
    fs::write(&resolv, "nameserver 192.0.2.53\n").unwrap();
    let mut config = ExecutorConfig::new(work.path());
    config.ca_bundle = Some(bundle.clone());
    config.resolv_conf = resolv.clone();
    config.extra_ca_paths = vec!["/etc/ssl/openssl.cnf".to_owned(), "/opt/certifi/cacert.pem".to_owned()];
    let exec = LocalExecutor::new(config).unwrap();

    // Layer 1 deletes resolv.conf (a mount point bwrap must create); the
    // base alone has one (mounted over).
    for layers in [fx.layers(), vec![fx.base.clone()]] {
        let mut session = exec.prepare(&layers, CancelToken::new()).unwrap();
        let image_bundle = session.reader().read("/etc/ssl/certs/ca-certificates.crt").unwrap();
        let script = "cat /etc/ssl/certs/ca-certificates.crt /etc/ssl/openssl.cnf /etc/resolv.conf; \
                      test -e /opt/certifi && echo certifi-created; \
                      echo x >> /etc/ssl/certs/ca-certificates.crt || echo bundle-read-only; \
                      echo x >> /etc/resolv.conf || echo resolv-read-only; \
                      echo changed > /etc/new.txt";
        let out = stdout_of(&mut session, &sh("look at mounts", script).network(true));
        assert_eq!(
            out,
            "# a test CA bundle\n# a test CA bundle\nnameserver 192.0.2.53\nbundle-read-only\nresolv-read-only\n"
        );
        // Offline steps see the image's own files.
        let offline = session.probe(&Probe::new(["cat", "/etc/ssl/certs/ca-certificates.crt"])).unwrap();
        assert_eq!(offline.stdout, image_bundle);
        let offline = session.probe(&Probe::new(["cat", "/etc/resolv.conf"])).unwrap();
        assert_eq!(offline.success(), layers.len() == 1);
        // Afterwards the image's own files are what the root fs holds.
        let reader = session.reader();
        assert_eq!(reader.read("/etc/ssl/certs/ca-certificates.crt").unwrap(), image_bundle);
        assert_eq!(reader.exists("/etc/resolv.conf").unwrap(), layers.len() == 1);
        let diff = session.finish().unwrap();
        let listing = describe_diff(diff.path());
        assert_eq!(listing.keys().collect::<Vec<_>>(), ["etc", "etc/new.txt"], "{listing:#?}");
    }
}

#[test]
fn failing_tolerated_and_streamed_steps() {
    let fx = fixture();
    let work = workdir();
    let exec = executor(work.path(), Mode::Overlay);
    let mut session = exec.prepare(&fx.layers(), CancelToken::new()).unwrap();

    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    session
        .run_step(&sh("talk", "echo one; echo two >&2; echo three"), &mut |s, l| match s {
            Stream::Stdout => stdout.push(l.to_owned()),
            Stream::Stderr => stderr.push(l.to_owned()),
        })
        .unwrap();
    assert_eq!((stdout, stderr), (vec!["one".to_owned(), "three".to_owned()], vec!["two".to_owned()]));

    let noisy =
        "i=0; while [ $i -lt 5000 ]; do echo \"line $i of the error output\" >&2; i=$((i+1)); done; exit 3";
    let err = session.run_step(&sh("fail loudly", noisy), &mut quiet()).unwrap_err();
    let Error::StepFailed { ref step, ref outcome, .. } = err else { panic!("{err}") };
    assert_eq!(step, "fail loudly");
    assert_eq!(outcome.exit_code, Some(3));
    assert!(outcome.stderr_tail.len() <= caulk_exec::STDERR_TAIL && outcome.stderr_tail.len() > 60_000);
    assert!(outcome.stderr_tail.ends_with("line 4999 of the error output\n"));
    let message = err.to_string();
    assert!(
        message.contains("`fail loudly`") && message.contains("exit code 3") && message.contains("line 4999"),
        "{message}"
    );

    let tolerated = run(&mut session, &sh("fail quietly", "echo oops >&2; exit 7").tolerate_failure(true));
    assert_eq!((tolerated.exit_code, tolerated.stderr_tail.as_str()), (Some(7), "oops\n"));
    assert_eq!(tolerated.exit_code_or_minus_one(), 7);

    // The session goes on after both.
    assert_eq!(run(&mut session, &Step::new("true", ["true"])).exit_code, Some(0));
    let err = session.run_step(&Step::new("missing", ["no-such-command"]), &mut quiet()).unwrap_err();
    assert!(matches!(err, Error::StepFailed { .. }), "{err}");
    let err = session.run_step(&Step::new("empty", Vec::<String>::new()), &mut quiet()).unwrap_err();
    assert!(matches!(err, Error::InvalidStep { .. }), "{err}");
}

#[test]
fn a_step_timeout_kills_the_whole_sandbox() {
    let fx = fixture();
    let work = workdir();
    let exec = executor(work.path(), Mode::Overlay);
    let mut session = exec.prepare(&fx.layers(), CancelToken::new()).unwrap();
    let started = Instant::now();
    let step = sh("hang", "sleep 4244 & sleep 4244; wait").timeout(Duration::from_secs(1));
    let err = session.run_step(&step, &mut quiet()).unwrap_err();
    assert!(started.elapsed() < Duration::from_secs(10), "{:?}", started.elapsed());
    let Error::StepTimedOut { ref outcome, .. } = err else { panic!("{err}") };
    assert!(outcome.timed_out && outcome.exit_code.is_none());
    assert!(err.to_string().contains("`hang` did not finish within 1s"), "{err}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes_with_cmdline(&["sleep", "4244"]).is_empty() {
        assert!(Instant::now() < deadline, "sleep processes outlived the timeout");
        std::thread::sleep(Duration::from_millis(50));
    }
    let tolerated = run(&mut session, &step.clone().tolerate_failure(true));
    assert!(tolerated.timed_out);
    assert!(host_mounts_under(work.path()).is_empty());
}

#[test]
fn cancel_kills_the_step_and_removes_the_session() {
    let fx = fixture();
    let work = workdir();
    for mode in [Mode::Overlay, Mode::Copy] {
        let exec = executor(work.path(), mode);
        let cancel = CancelToken::new();
        let mut session = exec.prepare(&fx.layers(), cancel.clone()).unwrap();
        run(&mut session, &sh("write", "echo kept > /etc/new.txt"));
        assert_eq!(session_dirs(work.path()).len(), 1);
        let canceller = {
            let cancel = cancel.clone();
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(500));
                cancel.cancel();
            })
        };
        let started = Instant::now();
        let err = session.run_step(&Step::new("sleep", ["sleep", "4245"]), &mut quiet()).unwrap_err();
        canceller.join().unwrap();
        assert!(matches!(err, Error::Cancelled { .. }), "{err}");
        assert!(started.elapsed() < Duration::from_secs(10));
        assert!(processes_with_cmdline(&["sleep", "4245"]).is_empty());
        let err = session.run_step(&Step::new("true", ["true"]), &mut quiet()).unwrap_err();
        assert!(matches!(err, Error::Cancelled { .. }), "{err}");
        let err = session.finish().unwrap_err();
        assert!(matches!(err, Error::Cancelled { .. }), "{err}");
        assert!(session_dirs(work.path()).is_empty(), "{:?}", session_dirs(work.path()));
    }
}

#[test]
fn probes_see_the_current_state_and_leave_no_trace() {
    let fx = fixture();
    let work = workdir();
    // Copy mode with overlayfs at hand probes like overlay mode (a scratch
    // upper over the copy); without it the copy is bound read-only.
    for (mode, use_overlay) in [(Mode::Overlay, true), (Mode::Copy, false)] {
        let mut config = ExecutorConfig::new(work.path());
        config.mode = mode;
        config.use_overlay = use_overlay;
        let exec = LocalExecutor::new(config).unwrap();
        let mut session = exec.prepare(&fx.layers(), CancelToken::new()).unwrap();
        let before = session.probe(&Probe::new(["cat", "/etc/new.txt"])).unwrap();
        assert_eq!(before.exit_code, Some(1), "{mode:?}");
        assert!(before.stderr_text().contains("No such file"), "{}", before.stderr_text());
        run(&mut session, &sh("write", "echo after-step > /etc/new.txt"));
        assert_eq!(probe_stdout(&session, &["cat", "/etc/new.txt"]), "after-step\n");
        let hostname = probe_stdout(&session, &["cat", "/etc/hostname"]);

        let meddle = session
            .probe(&Probe::new(["sh", "-c", "touch /etc/probe-was-here && rm /etc/hostname"]))
            .unwrap();
        if use_overlay {
            assert!(meddle.success(), "{mode:?}: {}", meddle.stderr_text());
        } else {
            // Without overlayfs a probe's root is read-only.
            assert!(meddle.stderr_text().contains("Read-only file system"), "{}", meddle.stderr_text());
        }
        assert_eq!(probe_stdout(&session, &["cat", "/etc/hostname"]), hostname);
        assert!(!session.reader().exists("/etc/probe-was-here").unwrap());

        // A cache below /tmp is what probes share, read-only root or not,
        // and it leaves no mount point in the root.
        let shared = tempfile::tempdir().unwrap();
        let with_cache =
            |argv: &[&str]| Probe::new(argv.iter().copied()).cache(shared.path().join("p"), "/tmp/shared");
        let wrote = session.probe(&with_cache(&["sh", "-c", "echo kept > /tmp/shared/note"])).unwrap();
        assert!(wrote.success(), "{mode:?}: {}", wrote.stderr_text());
        let read = session.probe(&with_cache(&["cat", "/tmp/shared/note"])).unwrap();
        assert_eq!(read.stdout_text(), "kept\n", "{mode:?}");
        assert_eq!(fs::read_to_string(shared.path().join("p/note")).unwrap(), "kept\n");

        // Output beyond the limit is cut and flagged; a probe may time out.
        let mut big = Probe::new(["head", "-c", "100000", "/dev/zero"]);
        big.stdout_limit = 1000;
        let out = session.probe(&big).unwrap();
        assert!(out.success() && out.stdout.len() == 1000 && out.stdout_truncated);
        let slow = session.probe(&Probe::new(["sleep", "30"]).timeout(Duration::from_millis(300))).unwrap();
        assert!(slow.timed_out && !slow.success());

        let diff = session.finish().unwrap();
        let listing = describe_diff(diff.path());
        assert_eq!(listing.keys().collect::<Vec<_>>(), ["etc", "etc/new.txt"], "{mode:?}: {listing:#?}");
    }
}

/// What a real overlay mount of `layers` (bottom first) shows, as
/// `path\ttype\tmode\tuid\tgid\tsize\tlink` lines, sizes only for files
/// and symlinks.
fn real_overlay_listing(layers: &[&Path]) -> BTreeMap<String, String> {
    let mount_point = tempfile::tempdir().unwrap();
    let lower: Vec<String> = layers.iter().rev().map(|p| p.display().to_string()).collect();
    let out = Command::new("unshare")
        .args(["--mount", "--propagation", "private", "sh", "-c"])
        .arg("mount -t overlay overlay -o \"ro,lowerdir=$1\" \"$2\" && cd \"$2\" && find . -printf '%P\\t%y\\t%m\\t%U\\t%G\\t%s\\t%l\\n'")
        .args(["sh", &lower.join(":")])
        .arg(mount_point.path())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter(|l| !l.starts_with('\t'))
        .map(|l| {
            let f: Vec<&str> = l.split('\t').collect();
            let size = if matches!(f[1], "f" | "l") { f[5] } else { "-" };
            (format!("/{}", f[0]), format!("{}\t{}\t{}\t{}\t{size}\t{}", f[1], f[2], f[3], f[4], f[6]))
        })
        .collect()
}

fn reader_listing(reader: &MergedReader) -> BTreeMap<String, String> {
    reader
        .walk("/")
        .unwrap()
        .into_iter()
        .filter(|i| i.path != "/")
        .map(|i| {
            let kind = match i.kind {
                EntryKind::File => "f",
                EntryKind::Dir => "d",
                EntryKind::Symlink => "l",
                EntryKind::CharDevice => "c",
                EntryKind::BlockDevice => "b",
                EntryKind::Fifo => "p",
                EntryKind::Socket => "s",
            };
            let size = if matches!(kind, "f" | "l") { i.size.to_string() } else { "-".to_owned() };
            let link = i.link_target.clone().unwrap_or_default();
            (i.path.clone(), format!("{kind}\t{:o}\t{}\t{}\t{size}\t{link}", i.mode, i.uid, i.gid))
        })
        .collect()
}

#[test]
fn userspace_reader_matches_a_real_overlay_mount() {
    let fx = fixture();
    let work = workdir();
    let exec = executor(work.path(), Mode::Overlay);
    let mut session = exec.prepare(&fx.layers(), CancelToken::new()).unwrap();
    run(&mut session, &sh("make changes", CHANGES));
    let reader = session.reader();
    let ours = reader_listing(&reader);
    let diff = session.finish().unwrap();
    let real = real_overlay_listing(&[&fx.base, &fx.top, diff.path()]);
    let differ: Vec<_> = real
        .keys()
        .chain(ours.keys())
        .filter(|k| real.get(*k) != ours.get(*k))
        .map(|k| format!("{k}: real {:?} ours {:?}", real.get(k), ours.get(k)))
        .collect();
    assert!(differ.is_empty(), "{differ:#?}");
    assert!(ours.len() > 5000);

    // Reads follow symlinks inside the root only.
    assert_eq!(reader.read("/opt/app/escape-rel").unwrap(), reader.read("/etc/hostname").unwrap());
    assert_eq!(reader.read("/opt/app/escape-abs").unwrap(), reader.read("/etc/hostname").unwrap());
    assert!(reader.read("/etc/os-release").unwrap().starts_with(b"PRETTY_NAME=\"Debian GNU/Linux 12"));
    assert_eq!(reader.read("/usr/share/doc/apt/NEW").unwrap(), b"replaced\n");
    assert!(reader.stat("/etc/caulk-layer1").unwrap().is_none());
    assert!(reader.stat("/etc/motd").unwrap().is_none());
    assert!(matches!(reader.read("/etc"), Err(Error::Path { .. })));
    assert!(matches!(reader.read("etc/hostname"), Err(Error::Path { .. })));
    let link = reader.stat("/bin").unwrap().unwrap();
    assert_eq!((link.kind, link.link_target.as_deref()), (EntryKind::Symlink, Some("usr/bin")));
    assert_eq!(reader.canonicalize("/bin/sh").unwrap().unwrap().path, "/usr/bin/dash");

    let names = |infos: Vec<caulk_exec::FileInfo>| infos.into_iter().map(|i| i.path).collect::<Vec<_>>();
    assert_eq!(names(reader.list("/usr/share/doc/apt").unwrap()), ["/usr/share/doc/apt/NEW"]);
    assert_eq!(names(reader.list("/usr/share/doc/dpkg").unwrap()), ["/usr/share/doc/dpkg/only"]);
    assert_eq!(
        names(reader.glob("/etc/apt/sources.list.d/*.list").unwrap()),
        ["/etc/apt/sources.list.d/security.list"]
    );
    assert_eq!(names(reader.glob("/etc/host?conf*").unwrap()), ["/etc/host.conf", "/etc/host.conf.link"]);
    assert_eq!(
        names(reader.glob("/usr/lib/x86_64-linux-gnu/libssl.so.[0-9]").unwrap()),
        ["/usr/lib/x86_64-linux-gnu/libssl.so.3"]
    );
    assert!(reader.glob("/etc/mot[d]").unwrap().is_empty());
    // `**` over the real listing: every copyright file under /usr/share/doc.
    let copyrights = names(reader.glob("/usr/share/doc/**/copyright").unwrap());
    let expected: Vec<String> = real
        .keys()
        .filter(|p| p.starts_with("/usr/share/doc/") && p.ends_with("/copyright"))
        .cloned()
        .collect();
    assert_eq!(copyrights, expected);
    assert!(copyrights.len() > 50);
    assert!(!copyrights.contains(&"/usr/share/doc/tar/copyright".to_owned()));
    // Globs match stored paths: no descent through the /lib symlink.
    assert!(reader.glob("/lib/x86_64-linux-gnu/libssl.so.*").unwrap().is_empty());
    assert!(matches!(reader.glob("relative/*"), Err(Error::BadGlob { .. })));
}

#[test]
fn a_flattened_tooling_image_runs_as_a_root_and_an_unresolved_one_is_refused() {
    let fx = fixture();
    let work = workdir();
    // The fixture's two layers merged: layer 1's whiteouts and opaque
    // directory applied, nothing of the overlay form left.
    let flat = work.path().join("flat");
    fs::create_dir(&flat).unwrap();
    caulk_exec::flatten(&fx.layers(), &flat, &CancelToken::new()).unwrap();
    assert_eq!(fs::read_to_string(flat.join("etc/caulk-layer1")).unwrap(), "from layer 1\n");
    assert!(!flat.join("etc/motd").exists() && fx.base.join("etc/motd").exists());
    let doc: Vec<_> =
        fs::read_dir(flat.join("usr/share/doc/apt")).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(doc, ["NOTE"]);
    assert!(!is_opaque(&flat.join("usr/share/doc/apt")));

    let exec = executor(work.path(), Mode::Overlay);
    let mut session = exec.prepare(&fx.layers(), CancelToken::new()).unwrap();
    let mut out = String::new();
    let step = sh("tooling", "cat /etc/caulk-layer1 > /target/etc/from-flat; test ! -e /etc/motd && echo ok")
        .run_in(RunIn::Tooling { root: ToolingRoot::Dir(flat.clone()), mount_point: "/target".to_owned() });
    session.run_step(&step, &mut |_, l| out.push_str(l)).unwrap();
    assert_eq!(out, "ok");
    let image = sh("image", "true").run_in(RunIn::Tooling {
        root: ToolingRoot::Image("oci:/nowhere:tools".to_owned()),
        mount_point: "/target".to_owned(),
    });
    match session.run_step(&image, &mut quiet()) {
        Err(Error::ToolingImage { image, .. }) => assert_eq!(image, "oci:/nowhere:tools"),
        other => panic!("an image reached the executor unresolved: {other:?}"),
    }
    let diff = session.finish().unwrap();
    assert_eq!(fs::read_to_string(diff.path().join("etc/from-flat")).unwrap(), "from layer 1\n");
}

#[test]
fn tooling_roots_mount_the_target_read_write_and_themselves_read_only() {
    let fx = fixture();
    let work = workdir();
    {
        let exec = executor(work.path(), Mode::Overlay);
        let mut session = exec.prepare(&fx.layers(), CancelToken::new()).unwrap();
        for (root, file) in
            [(ToolingRoot::Host, "from-host"), (ToolingRoot::Dir(fx.base.clone()), "from-base")]
        {
            let script = format!(
                "cat /target/etc/caulk-layer1 > /target/etc/{file} && \
                 (touch /usr/caulk-tooling-test 2>/dev/null && echo writable || echo read-only)"
            );
            let mut out = String::new();
            let step =
                sh("tooling", &script).run_in(RunIn::Tooling { root, mount_point: "/target".to_owned() });
            session.run_step(&step, &mut |_, l| out.push_str(l)).unwrap();
            assert_eq!(out, "read-only");
        }
        assert!(!Path::new("/usr/caulk-tooling-test").exists());
        let bad = sh("bad", "true").run_in(RunIn::Tooling {
            root: ToolingRoot::Dir(fx.base.clone()),
            mount_point: "/etc/target".to_owned(),
        });
        assert!(matches!(session.run_step(&bad, &mut quiet()), Err(Error::MountPoint { .. })));
        let diff = session.finish().unwrap();
        let listing = describe_diff(diff.path());
        assert_eq!(
            listing.keys().collect::<Vec<_>>(),
            ["etc", "etc/from-base", "etc/from-host"],
            "{listing:#?}"
        );
    }
}

#[test]
fn many_layers_with_long_paths_fit_the_mount_options() {
    let fx = fixture();
    let work = workdir();
    let store = tempfile::tempdir_in(work.path()).unwrap();
    let deep = store.path().join("x".repeat(200)).join("y".repeat(200));
    let mut layers = vec![fx.base.clone()];
    for i in 0..150 {
        let layer = deep.join(format!("layer-{i:03}-{}", "z".repeat(40)));
        fs::create_dir_all(layer.join("layers")).unwrap();
        fs::write(layer.join("layers").join(i.to_string()), i.to_string()).unwrap();
        layers.push(layer);
    }
    let exec = executor(work.path(), Mode::Overlay);
    let session = exec.prepare(&layers, CancelToken::new()).unwrap();
    assert_eq!(probe_stdout(&session, &["sh", "-c", "ls /layers | wc -l"]), "150\n");
    assert_eq!(session.reader().list("/layers").unwrap().len(), 150);

    let too_many: Vec<PathBuf> = (0..=caulk_exec::MAX_LAYERS).map(|_| fx.base.clone()).collect();
    let err = exec.prepare(&too_many, CancelToken::new()).unwrap_err();
    assert!(matches!(err, Error::TooManyLayers { .. }), "{err}");
}

#[test]
fn missing_bubblewrap_is_refused_with_what_to_install() {
    let work = workdir();
    let mut config = ExecutorConfig::new(work.path());
    config.search_path = Some("/nonexistent:/usr/local/games".into());
    let err = LocalExecutor::new(config).unwrap_err();
    assert!(matches!(err, Error::BwrapMissing { .. }), "{err}");
    assert!(err.to_string().contains("apt-get install bubblewrap"), "{err}");

    let mut config = ExecutorConfig::new(work.path());
    config.bwrap = Some("/nonexistent/bwrap".into());
    let err = LocalExecutor::new(config).unwrap_err();
    assert!(
        matches!(err, Error::BwrapMissing { .. }) && err.to_string().contains("/nonexistent/bwrap"),
        "{err}"
    );

    let mut config = ExecutorConfig::new(work.path());
    config.bwrap = Some("/etc/hostname".into());
    let err = LocalExecutor::new(config).unwrap_err();
    assert!(matches!(err, Error::BwrapUnusable { .. }), "{err}");

    let mut config = ExecutorConfig::new(work.path());
    config.bwrap = Some("/usr/bin/false".into());
    let err = LocalExecutor::new(config).unwrap_err();
    assert!(matches!(err, Error::BwrapUnusable { .. }), "{err}");

    let mut config = ExecutorConfig::new(work.path());
    config.ca_bundle = Some("/nonexistent/ca.pem".into());
    assert!(matches!(LocalExecutor::new(config), Err(Error::CaBundle { .. })));
}

#[test]
fn without_overlayfs_auto_falls_back_to_copy_and_overlay_is_refused() {
    let fx = fixture();
    let work = workdir();
    let mut config = ExecutorConfig::new(work.path());
    config.use_overlay = false;
    let exec = LocalExecutor::new(config.clone()).unwrap();
    assert_eq!(exec.mode(), Mode::Copy);
    let mut session = exec.prepare(&fx.layers(), CancelToken::new()).unwrap();
    run(&mut session, &sh("write", "echo copy > /etc/new.txt"));
    let diff = session.finish().unwrap();
    assert_eq!(fs::read_to_string(diff.path().join("etc/new.txt")).unwrap(), "copy\n");

    config.mode = Mode::Overlay;
    let err = LocalExecutor::new(config).unwrap_err();
    assert!(
        matches!(err, Error::OverlayUnavailable { .. }) && err.to_string().contains("modprobe overlay"),
        "{err}"
    );
}

#[test]
fn layer_dirs_overlayfs_refuses_fall_back_to_copy_in_auto_mode() {
    let fx = fixture();
    let work = workdir();
    // procfs cannot be an overlayfs lower dir; /proc/driver is empty.
    let proc_layer = PathBuf::from("/proc/driver");
    let overlay_only = executor(work.path(), Mode::Overlay);
    let err = overlay_only.prepare(&[fx.base.clone(), proc_layer.clone()], CancelToken::new()).unwrap_err();
    assert!(matches!(err, Error::OverlayUnavailable { .. }), "{err}");
    assert!(session_dirs(work.path()).is_empty());

    let exec = executor(work.path(), Mode::Auto);
    assert_eq!(exec.mode(), Mode::Overlay);
    let session = exec.prepare(&[proc_layer], CancelToken::new()).unwrap();
    assert_eq!(session.mode(), Mode::Copy);
    assert!(session.reader().list("/").unwrap().is_empty());
}

#[test]
fn a_cache_dir_is_held_exclusively_for_the_step() {
    let fx = fixture();
    let work = workdir();
    let cache = tempfile::tempdir_in(work.path()).unwrap();
    let exec = executor(work.path(), Mode::Overlay);
    let cancel = CancelToken::new();
    let mut session = exec.prepare(&fx.layers(), cancel.clone()).unwrap();
    let step = sh("use the cache", "date +%s%N > /var/cache/apt/archives/stamp")
        .cache(cache.path(), "/var/cache/apt/archives");

    // Another caulk holds the cache: the step waits until it lets go.
    let holder = fs::File::open(cache.path()).unwrap();
    rustix::fs::flock(&holder, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let released = std::thread::scope(|scope| {
        let waiter = scope.spawn(|| {
            session.run_step(&step, &mut quiet()).unwrap();
            Instant::now()
        });
        std::thread::sleep(Duration::from_millis(700));
        assert!(!cache.path().join("stamp").exists(), "the step did not wait for the lock");
        let released = Instant::now();
        drop(holder);
        assert!(waiter.join().unwrap() >= released);
        released
    });
    assert!(cache.path().join("stamp").exists() && released.elapsed() < PATIENT);

    // Waiting for a lock can be cancelled.
    let holder = fs::File::open(cache.path()).unwrap();
    rustix::fs::flock(&holder, rustix::fs::FlockOperation::LockExclusive).unwrap();
    let canceller = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        cancel.cancel();
    });
    let err = session.run_step(&step, &mut quiet()).unwrap_err();
    canceller.join().unwrap();
    assert!(matches!(err, Error::Cancelled { .. }), "{err}");
}

/// Takes `how` on `dir` as another caulk would, until dropped.
fn hold(dir: &Path, how: rustix::fs::FlockOperation) -> fs::File {
    let holder = fs::File::open(dir).unwrap();
    rustix::fs::flock(&holder, how).unwrap();
    holder
}

/// Whether `step` ran while `holder` held a lock on its cache: runs it, and
/// lets go when it ended or after `patience`. A step that must not wait gets
/// a long patience (a loaded machine is slow to start it); one that must
/// wait a short one (it cannot end while blocked, so no load makes it look
/// as if it had not waited).
fn ran_while_held(session: &mut Session<'_>, step: &Step, holder: fs::File, patience: Duration) -> bool {
    std::thread::scope(|scope| {
        let runner = scope.spawn(|| {
            session.run_step(step, &mut quiet()).unwrap();
            Instant::now()
        });
        let deadline = Instant::now() + patience;
        while !runner.is_finished() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let released = Instant::now();
        drop(holder);
        runner.join().unwrap() < released
    })
}

/// Long enough for any step here to start and end on a loaded machine.
const PATIENT: Duration = Duration::from_mins(1);
/// Long enough to see a step blocked on a lock.
const BRIEF: Duration = Duration::from_millis(1500);

#[test]
fn read_only_mounts_share_a_cache_dir_and_a_writable_one_takes_it_alone() {
    use rustix::fs::FlockOperation::{LockExclusive, LockShared};
    let fx = fixture();
    let work = workdir();
    let cache = tempfile::tempdir_in(work.path()).unwrap();
    let exec = executor(work.path(), Mode::Overlay);
    let mut session = exec.prepare(&fx.layers(), CancelToken::new()).unwrap();
    let read = sh("read", "ls /var/cache/apt/archives >/dev/null")
        .read_only_cache(cache.path(), "/var/cache/apt/archives");
    let write = sh("write", "touch /var/cache/apt/archives/x").cache(cache.path(), "/var/cache/apt/archives");
    // The dir mounted twice, once writable: the writable mount decides.
    let both = sh("both", "touch /mnt/y")
        .read_only_cache(cache.path(), "/var/cache/apt/archives")
        .cache(cache.path(), "/mnt");

    assert!(
        ran_while_held(&mut session, &read, hold(cache.path(), LockShared), PATIENT),
        "a reader waited for a reader"
    );
    assert!(
        !ran_while_held(&mut session, &read, hold(cache.path(), LockExclusive), BRIEF),
        "a reader ran beside a writer"
    );
    assert!(
        !ran_while_held(&mut session, &write, hold(cache.path(), LockShared), BRIEF),
        "a writer ran beside a reader"
    );
    assert!(
        !ran_while_held(&mut session, &both, hold(cache.path(), LockShared), BRIEF),
        "a writable mount ran beside a reader"
    );
    assert!(cache.path().join("y").exists());
}

/// When a step printed `started` and when it ended.
type Span = (Instant, Instant);

/// Runs each step in a session of its own, all at once, and gives each
/// one's span and stdout.
fn side_by_side(exec: &LocalExecutor, steps: &[Step]) -> Vec<(Span, String)> {
    let fx = fixture();
    std::thread::scope(|scope| {
        let runners: Vec<_> = steps
            .iter()
            .map(|step| {
                scope.spawn(move || {
                    let mut session = exec.prepare(&fx.layers(), CancelToken::new()).unwrap();
                    let (mut started, mut out) = (None, String::new());
                    run_with(&mut session, step, &mut |stream, line| {
                        if stream == Stream::Stdout && line == "started" {
                            started = Some(Instant::now());
                        } else if stream == Stream::Stdout {
                            out.push_str(line);
                        }
                    });
                    ((started.expect("the step printed `started`"), Instant::now()), out)
                })
            })
            .collect();
        runners.into_iter().map(|r| r.join().unwrap()).collect()
    })
}

fn run_with(session: &mut Session<'_>, step: &Step, on_output: &mut dyn FnMut(Stream, &str)) {
    session.run_step(step, on_output).unwrap_or_else(|e| panic!("step `{}`: {e}", step.summary));
}

fn overlap(a: Span, b: Span) -> bool {
    a.0 < b.1 && b.0 < a.1
}

#[test]
fn steps_reading_one_cache_overlap_and_read_it_as_it_was_when_they_started() {
    let fx = fixture();
    let work = workdir();
    let cache = tempfile::tempdir_in(work.path()).unwrap();
    fs::write(cache.path().join("index"), "old\n").unwrap();
    // The readers wait until the test opens this gate. It is large, so the
    // readers' snapshots link it rather than copy it, and the test's write
    // in place reaches them: the order of the steps is set by the test,
    // not by sleeps a loaded machine may outlast.
    let gate = tempfile::tempdir_in(work.path()).unwrap();
    fs::write(gate.path().join("gate"), vec![b'.'; 128 * 1024]).unwrap();
    let exec = executor(work.path(), Mode::Overlay);
    let at = "/var/cache/apt/archives";
    let reader = sh(
        "read",
        &format!(
            "echo started; i=0; until [ \"$(head -c4 /mnt/gate)\" = open ]; do \
             i=$((i+1)); [ $i -lt 600 ] || exit 9; sleep 0.1; done; cat {at}/index"
        ),
    )
    .read_only_cache(cache.path(), at)
    .read_only_cache(gate.path(), "/mnt");
    // Written the way apt writes its indexes and downloads: a new file
    // renamed over the old one.
    let writer = sh("write", &format!("echo new > {at}/index.new && mv {at}/index.new {at}/index"))
        .cache(cache.path(), at);

    let (started, starts) = std::sync::mpsc::channel();
    let outs: Vec<String> = std::thread::scope(|scope| {
        let readers: Vec<_> = (0..2)
            .map(|_| {
                let (reader, started, fx, exec) = (&reader, started.clone(), &fx, &exec);
                scope.spawn(move || {
                    let mut session = exec.prepare(&fx.layers(), CancelToken::new()).unwrap();
                    let mut out = String::new();
                    run_with(&mut session, reader, &mut |stream, line| match (stream, line) {
                        (Stream::Stdout, "started") => started.send(()).unwrap(),
                        (Stream::Stdout, _) => out.push_str(line),
                        _ => {}
                    });
                    out
                })
            })
            .collect();
        // Both readers run at once (neither can end before the gate opens)…
        for _ in 0..2 {
            starts.recv_timeout(PATIENT).expect("the readers took turns");
        }
        // …and a writer needs no more than their snapshots: it ends while
        // they still run.
        let mut session = exec.prepare(&fx.layers(), CancelToken::new()).unwrap();
        run_with(&mut session, &writer, &mut quiet());
        assert!(readers.iter().all(|r| !r.is_finished()), "a reader ended before the gate opened");
        let mut gate_file = fs::OpenOptions::new().write(true).open(gate.path().join("gate")).unwrap();
        std::io::Write::write_all(&mut gate_file, b"open").unwrap();
        readers.into_iter().map(|r| r.join().unwrap()).collect()
    });
    assert_eq!(outs, ["old", "old"], "a reader saw the write");
    assert_eq!(fs::read_to_string(cache.path().join("index")).unwrap(), "new\n");
    let snapshots = work.path().join(".caulk-snapshots");
    assert_eq!(fs::read_dir(&snapshots).unwrap().count(), 0, "snapshots are removed after their step");

    // Two writers take turns: the test can fail.
    let writer = sh("write", &format!("echo started; sleep 1; echo w >> {at}/log")).cache(cache.path(), at);
    let ran = side_by_side(&exec, &[writer.clone(), writer]);
    assert!(!overlap(ran[0].0, ran[1].0), "two writers ran together: {ran:?}");
    assert_eq!(fs::read_to_string(cache.path().join("log")).unwrap(), "w\nw\n");
}

#[test]
fn a_step_in_the_image_writes_a_read_only_cache_into_a_throwaway_view_or_without_overlayfs_the_live_dir() {
    // npm writes its cache even to read it: in the image, with overlayfs,
    // the step may, and the host-side dir keeps what it had. Without
    // overlayfs the step gets the live dir writable (under the exclusive
    // lock), as npm needs, and what it writes stays.
    let fx = fixture();
    let work = workdir();
    let cache = tempfile::tempdir_in(work.path()).unwrap();
    fs::write(cache.path().join("index"), "entry\n").unwrap();
    let at = "/var/cache/caulk-npm";
    let step = sh("write", &format!("echo more >> {at}/index && echo new > {at}/new && cat {at}/index"))
        .read_only_cache(cache.path(), at);
    for (mode, use_overlay) in [(Mode::Overlay, true), (Mode::Copy, false)] {
        let mut config = ExecutorConfig::new(work.path());
        config.mode = mode;
        config.use_overlay = use_overlay;
        config.proxy_env.clear();
        let exec = LocalExecutor::new(config).unwrap();
        let mut session = exec.prepare(&fx.layers(), CancelToken::new()).unwrap();
        let out = stdout_of(&mut session, &step);
        assert_eq!(out, "entry\nmore\n", "the step saw its own writes ({mode:?})");
        if use_overlay {
            assert_eq!(fs::read_to_string(cache.path().join("index")).unwrap(), "entry\n");
            assert!(!cache.path().join("new").exists());
        } else {
            assert_eq!(fs::read_to_string(cache.path().join("index")).unwrap(), "entry\nmore\n");
            assert!(cache.path().join("new").exists());
        }
    }
}

/// Runs `step` and returns what it printed on stdout.
fn stdout_of(session: &mut Session<'_>, step: &Step) -> String {
    let mut out = String::new();
    session
        .run_step(step, &mut |stream, line| {
            if stream == Stream::Stdout {
                out.push_str(line);
                out.push('\n');
            }
        })
        .unwrap_or_else(|e| panic!("{e}"));
    out
}

#[test]
fn a_session_reads_a_cache_as_its_own_last_write_left_it() {
    // A job's install reads the indexes its own refresh left, not those of
    // another job's refresh that came in between (the mirror may have moved
    // on, and the install would want versions it never downloaded).
    let fx = fixture();
    let work = workdir();
    let cache = tempfile::tempdir_in(work.path()).unwrap();
    let exec = executor(work.path(), Mode::Overlay);
    let at = "/var/lib/apt/lists";
    // Packages.xz is over the size snapshots copy: linked, and replaced
    // by rename as apt does.
    let write = |what: &str| {
        sh(
            "refresh",
            &format!(
                "echo {what} > {at}/Packages && {{ head -c 100000 /dev/zero | tr '\\0' x; echo; echo {what}; }} > {at}/.new && mv {at}/.new {at}/Packages.xz"
            ),
        )
        .cache(cache.path(), at)
        .pin_caches(true)
    };
    let read = sh("install", &format!("cat {at}/Packages && tail -n 1 {at}/Packages.xz"))
        .read_only_cache(cache.path(), at);
    let mut job = exec.prepare(&fx.layers(), CancelToken::new()).unwrap();
    let mut other = exec.prepare(&fx.layers(), CancelToken::new()).unwrap();

    job.run_step(&write("mine"), &mut quiet()).unwrap();
    other.run_step(&write("theirs"), &mut quiet()).unwrap();
    assert_eq!(fs::read_to_string(cache.path().join("Packages")).unwrap(), "theirs\n");
    assert_eq!(stdout_of(&mut job, &read), "mine\nmine\n", "the job's own refresh");
    // A pinned reader takes no lock: another caulk's writer holding the
    // cache does not hold it up.
    let holder = hold(cache.path(), rustix::fs::FlockOperation::LockExclusive);
    assert!(ran_while_held(&mut job, &read, holder, PATIENT), "the pinned reader waited for the lock");
    // A session that never wrote the cache reads it as it is.
    let mut fresh = exec.prepare(&fx.layers(), CancelToken::new()).unwrap();
    assert_eq!(stdout_of(&mut fresh, &read), "theirs\ntheirs\n");
    // The job's next write is what it reads from then on.
    job.run_step(&write("again"), &mut quiet()).unwrap();
    other.run_step(&write("theirs-again"), &mut quiet()).unwrap();
    assert_eq!(stdout_of(&mut job, &read), "again\nagain\n");
    // A writer without the mark leaves no pin: the reader reads afresh.
    job.run_step(&write("unpinned").pin_caches(false), &mut quiet()).unwrap();
    other.run_step(&write("latest"), &mut quiet()).unwrap();
    assert_eq!(stdout_of(&mut job, &read), "latest\nlatest\n");
    // Once the steps are done the session lets its pins go.
    job.drop_pins();
    other.drop_pins();
    // The pins go with the sessions: nothing is left beside the cache.
    drop((job, other, fresh));
    let snapshots = cache.path().parent().unwrap().join(".caulk-snapshots");
    let left: Vec<_> =
        fs::read_dir(&snapshots).map(|d| d.flatten().map(|e| e.path()).collect()).unwrap_or_default();
    assert!(left.is_empty(), "{left:?}");
}

#[test]
fn without_overlayfs_a_tooling_reader_still_reads_its_sessions_pin() {
    // Without overlayfs a reader in the image takes the live dir, but one
    // in a tooling root (apt's distroless install) reads snapshots: the
    // pin must still be taken for it.
    let fx = fixture();
    let work = workdir();
    let cache = tempfile::tempdir_in(work.path()).unwrap();
    let mut config = ExecutorConfig::new(work.path());
    config.use_overlay = false;
    let exec = LocalExecutor::new(config).unwrap();
    let write = |what: &str| sh("fetch", &format!("echo {what} > /mnt/Packages")).cache(cache.path(), "/mnt");
    let read = sh("install", "cat /mnt/Packages")
        .read_only_cache(cache.path(), "/mnt")
        .run_in(RunIn::Tooling { root: ToolingRoot::Host, mount_point: "/target".to_owned() });
    let mut job = exec.prepare(&fx.layers(), CancelToken::new()).unwrap();
    let mut other = exec.prepare(&fx.layers(), CancelToken::new()).unwrap();
    job.run_step(&write("mine").pin_caches(true), &mut quiet()).unwrap();
    other.run_step(&write("theirs"), &mut quiet()).unwrap();
    assert_eq!(stdout_of(&mut job, &read), "mine\n", "the job's own fetch");
}

#[test]
fn a_cache_a_step_mounts_both_writable_and_read_only_is_read_only_where_asked() {
    // The read-only mount is of the live dir the step writes through the
    // other one: a bind, not an overlay whose lower dir changes under it.
    let fx = fixture();
    let work = workdir();
    let cache = tempfile::tempdir_in(work.path()).unwrap();
    let exec = executor(work.path(), Mode::Overlay);
    let mut session = exec.prepare(&fx.layers(), CancelToken::new()).unwrap();
    let step = sh(
        "both",
        "echo w > /mnt/w && cat /var/cache/apt/archives/w && ! touch /var/cache/apt/archives/r 2>/dev/null",
    )
    .read_only_cache(cache.path(), "/var/cache/apt/archives")
    .cache(cache.path(), "/mnt");
    let mut out = String::new();
    run_with(&mut session, &step, &mut |stream, line| {
        if stream == Stream::Stdout {
            out.push_str(line);
        }
    });
    assert_eq!(out, "w", "the read-only mount shows the live dir");
    assert!(cache.path().join("w").exists() && !cache.path().join("r").exists());
}

#[test]
fn a_relative_cache_dir_is_refused_before_anything_runs() {
    let fx = fixture();
    let work = workdir();
    let exec = executor(work.path(), Mode::Overlay);
    let mut session = exec.prepare(&fx.layers(), CancelToken::new()).unwrap();
    let step = sh("use the cache", "touch /var/cache/apt/archives/stamp")
        .cache("relative/cache", "/var/cache/apt/archives");
    let err = session.run_step(&step, &mut quiet()).unwrap_err();
    assert!(matches!(err, Error::InvalidStep { .. }) && err.to_string().contains("relative/cache"), "{err}");
    assert!(!Path::new("relative/cache").exists());
}

const CHILD: &str = "CAULK_EXEC_TEST_CHILD";

/// Runs this test binary again for one test, with `env` set.
fn rerun_self(test: &str, env: &[(&str, &str)], as_nobody: bool) -> Command {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = if as_nobody {
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"]).arg(exe);
        c
    } else {
        Command::new(exe)
    };
    cmd.args(["--exact", test, "--nocapture", "--test-threads=1"]);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

#[test]
fn not_root_is_refused_with_why() {
    if std::env::var(CHILD).as_deref() == Ok("not-root") {
        let err = LocalExecutor::new(ExecutorConfig::new("/nonexistent/work")).unwrap_err();
        assert!(matches!(err, Error::NotRoot { euid: 65534 }), "{err}");
        println!("CHILD-ERROR: {err}");
        return;
    }
    let out = rerun_self("not_root_is_refused_with_why", &[(CHILD, "not-root")], true).output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("CHILD-ERROR: the local executor needs root (running as uid 65534)"), "{stdout}");
}

#[test]
fn a_killed_caulk_leaves_no_mount_and_no_process() {
    if std::env::var(CHILD).as_deref() == Ok("long-step") {
        let work = std::env::var("CAULK_EXEC_TEST_WORK").unwrap();
        let exec = executor(Path::new(&work), Mode::Overlay);
        let mut session = exec.prepare(&fixture().layers(), CancelToken::new()).unwrap();
        let _ = session.run_step(&Step::new("sleep", ["sleep", "4246"]), &mut quiet());
        unreachable!("the parent kills this process first");
    }
    fixture();
    let work = workdir();
    let mut child = rerun_self(
        "a_killed_caulk_leaves_no_mount_and_no_process",
        &[(CHILD, "long-step"), ("CAULK_EXEC_TEST_WORK", &work.path().display().to_string())],
        false,
    )
    .spawn()
    .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while processes_with_cmdline(&["sleep", "4246"]).is_empty() {
        assert!(Instant::now() < deadline, "the step never started");
        assert!(child.try_wait().unwrap().is_none(), "the child ended early");
        std::thread::sleep(Duration::from_millis(50));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !processes_with_cmdline(&["sleep", "4246"]).is_empty() {
        assert!(Instant::now() < deadline, "the step outlived caulk");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(host_mounts_under(work.path()).is_empty(), "{:?}", host_mounts_under(work.path()));
    // The dir stays until the next executor sweeps it.
    assert_eq!(session_dirs(work.path()).len(), 1);
    let _exec = executor(work.path(), Mode::Overlay);
    assert!(session_dirs(work.path()).is_empty());
}

#[test]
fn a_read_only_cache_is_read_and_not_written_even_through_a_link_in_the_target() {
    // The target holds an absolute link to the cache's mount point, as a
    // hostile image can: a tooling step that writes through it must fail on
    // the read-only cache, and the host-side dir must keep what it had.
    let fx = fixture();
    let work = workdir();
    let flat = work.path().join("flat");
    fs::create_dir(&flat).unwrap();
    caulk_exec::flatten(&fx.layers(), &flat, &CancelToken::new()).unwrap();
    let cache = tempfile::tempdir_in(work.path()).unwrap();
    fs::write(cache.path().join("fetched"), "from an earlier step\n").unwrap();
    let tooling =
        || RunIn::Tooling { root: ToolingRoot::Dir(flat.clone()), mount_point: "/target".to_owned() };
    let plant = sh("plant", "ln -s /caulk/work /target/link").run_in(tooling());
    let exec = executor(work.path(), Mode::Overlay);
    let mut session = exec.prepare(&fx.layers(), CancelToken::new()).unwrap();
    run(&mut session, &plant);

    let mut out = String::new();
    let write = sh("write through", "cat /target/link/fetched; echo pwned > /target/link/written")
        .run_in(tooling())
        .read_only_cache(cache.path(), "/caulk/work");
    let err = session
        .run_step(&write, &mut |stream, l| {
            if stream == Stream::Stdout {
                out.push_str(l);
            }
        })
        .unwrap_err();
    let Error::StepFailed { ref outcome, .. } = err else { panic!("{err}") };
    assert_eq!(out, "from an earlier step", "the cache is readable");
    assert!(outcome.stderr_tail.contains("Read-only file system"), "{}", outcome.stderr_tail);
    assert!(!cache.path().join("written").exists());

    // The same cache mounted writable takes the writes: the test can fail.
    let exec = executor(work.path(), Mode::Overlay);
    let mut session = exec.prepare(&fx.layers(), CancelToken::new()).unwrap();
    run(&mut session, &plant);
    let writable =
        sh("write", "echo ok > /target/link/written").run_in(tooling()).cache(cache.path(), "/caulk/work");
    run(&mut session, &writable);
    assert_eq!(fs::read_to_string(cache.path().join("written")).unwrap(), "ok\n");
}
