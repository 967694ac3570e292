//! What a step may do: run with real bubblewrap in a real Debian root, it
//! reports its own capabilities, seccomp and no-new-privileges state, and
//! tries what a hostile maintainer script would.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

use caulk_exec::{
    CancelToken, Error, ExecutorConfig, LimitHit, LocalExecutor, Mode, Probe, RunIn, Session, Step,
    StepLimits, ToolingRoot,
};
use common::{fixture, workdir};

#[cfg(target_arch = "x86_64")]
const SYS_NAME_TO_HANDLE_AT: u32 = 303;
#[cfg(target_arch = "x86_64")]
const SYS_OPEN_BY_HANDLE_AT: u32 = 304;
#[cfg(target_arch = "aarch64")]
const SYS_NAME_TO_HANDLE_AT: u32 = 264;
#[cfg(target_arch = "aarch64")]
const SYS_OPEN_BY_HANDLE_AT: u32 = 265;

fn executor(work: &Path, limits: StepLimits) -> LocalExecutor {
    let mut config = ExecutorConfig::new(work);
    config.mode = Mode::Overlay;
    config.proxy_env.clear();
    config.limits = limits;
    LocalExecutor::new(config).unwrap()
}

/// Runs `script` with `sh -c` as a step; its stdout lines.
fn lines_of(session: &mut Session<'_>, script: &str) -> Vec<String> {
    let mut out = Vec::new();
    let step = Step::new("probe the sandbox", ["sh", "-c", script]);
    session
        .run_step(&step, &mut |stream, line| {
            if stream == caulk_exec::Stream::Stdout {
                out.push(line.to_owned());
            }
        })
        .unwrap();
    out
}

/// `Key: value` lines as a map.
fn fields(lines: &[String]) -> BTreeMap<String, String> {
    lines
        .iter()
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned()))
        .collect()
}

fn mask(hex: &str) -> u64 {
    u64::from_str_radix(hex, 16).unwrap()
}

/// Step cgroups of this process still on the host: beside and below this
/// process's own cgroup in every hierarchy where caulk may make them.
fn leftover_cgroups() -> Vec<String> {
    let prefix = format!("caulk-{}-", std::process::id());
    let own = fs::read_to_string("/proc/self/cgroup").unwrap();
    let mut found = Vec::new();
    for mount in ["/sys/fs/cgroup", "/sys/fs/cgroup/memory", "/sys/fs/cgroup/pids", "/sys/fs/cgroup/unified"]
    {
        for line in own.lines() {
            let path = line.splitn(3, ':').nth(2).unwrap_or("/");
            let dir = Path::new(mount).join(path.trim_start_matches('/'));
            for dir in [Some(dir.as_path()), dir.parent()].into_iter().flatten() {
                let Ok(entries) = fs::read_dir(dir) else { continue };
                for entry in entries.flatten() {
                    if entry.file_name().to_string_lossy().starts_with(&prefix) {
                        found.push(entry.path().display().to_string());
                    }
                }
            }
        }
    }
    found
}

#[test]
fn a_step_has_dockers_default_privileges_without_mknod() {
    let fx = fixture();
    let work = workdir();
    let exec = executor(work.path(), StepLimits::default());
    let mut session = exec.prepare(&fx.layers(), CancelToken::new()).unwrap();
    let script = format!(
        r#"grep -E '^(Cap(Inh|Prm|Eff|Bnd|Amb)|NoNewPrivs|Seccomp|Seccomp_filters):' /proc/self/status
try() {{ name=$1; shift; if "$@" 2>/dev/null; then echo "$name: allowed"; else echo "$name: refused"; fi; }}
try mknod-block mknod /dev/x b 8 0
try mknod-char mknod /tmp/c c 1 3
try mknod-fifo mknod /tmp/fifo p
try mount mount -t tmpfs x /mnt
try unshare-user unshare -U true
try unshare-mount unshare -m true
# Writes back the value it read: if the write goes through, the host is unharmed.
try core_pattern sh -c 'v=$(cat /proc/sys/kernel/core_pattern) && echo "$v" > /proc/sys/kernel/core_pattern'
try modprobe sh -c 'v=$(cat /proc/sys/kernel/modprobe) && echo "$v" > /proc/sys/kernel/modprobe'
echo "timer_list: $(wc -c < /proc/timer_list)"
try sysrq sh -c 'echo h > /proc/sysrq-trigger'
echo "name_to_handle_at: $(perl -e 'syscall({SYS_NAME_TO_HANDLE_AT}, -100, 0, 0, 0, 0); print $!+0')"
echo "open_by_handle_at: $(perl -e 'syscall({SYS_OPEN_BY_HANDLE_AT}, -1, 0, 0); print $!+0')"
echo "session: $(cut -d' ' -f6 /proc/$$/stat)"
echo "cgroup-namespace: $(grep -c -v ':/$' /proc/self/cgroup)"
"#
    );
    let out = lines_of(&mut session, &script);
    let got = fields(&out);
    let kept = caulk_exec::kept_capabilities_mask();
    for set in ["CapEff", "CapPrm", "CapBnd"] {
        assert_eq!(mask(&got[set]), kept, "{set} in {out:#?}");
    }
    // bwrap raises the kept set as inheritable and ambient too; neither can
    // go beyond the bounding set.
    for set in ["CapInh", "CapAmb"] {
        assert_eq!(mask(&got[set]) & !kept, 0, "{set} in {out:#?}");
    }
    assert_eq!(got["NoNewPrivs"], "1", "{out:#?}");
    assert_eq!(got["Seccomp"], "2", "{out:#?}");
    let eperm = "1";
    let expect = [
        ("mknod-block", "refused"),
        ("mknod-char", "refused"),
        // Only device nodes are refused: dpkg and others make fifos.
        ("mknod-fifo", "allowed"),
        ("mount", "refused"),
        // Creating a user namespace needs no capability: only the filter
        // stops it.
        ("unshare-user", "refused"),
        ("unshare-mount", "refused"),
        // The host would run the image's program as root on the next crash:
        // bwrap makes /proc/sys and friends read-only, as Docker does.
        ("core_pattern", "refused"),
        ("modprobe", "refused"),
        ("sysrq", "refused"),
        // Masked as Docker masks it (the host shows kilobytes).
        ("timer_list", "0"),
        // Without the filter this is EFAULT (a NULL path): EPERM is the
        // filter's answer.
        ("name_to_handle_at", eperm),
        ("open_by_handle_at", eperm),
        // Every line of /proc/self/cgroup shows the sandbox's own cgroup as /.
        ("cgroup-namespace", "0"),
    ];
    for (what, want) in expect {
        assert_eq!(got.get(what).map(String::as_str), Some(want), "{what} in {out:#?}");
    }
    // A session made outside the pid namespace (caulk's) would show as 0.
    assert_ne!(got["session"], "0", "{out:#?}");
    // Probes run the same way.
    let probe = session.probe(&Probe::new(["grep", "^Seccomp:", "/proc/self/status"])).unwrap();
    assert_eq!(probe.stdout_text().split_whitespace().nth(1), Some("2"));
    drop(session);
    assert!(leftover_cgroups().is_empty(), "{:?}", leftover_cgroups());
}

#[test]
fn a_fork_bomb_and_a_memory_hog_fail_their_step_with_the_limit_named() {
    let fx = fixture();
    let work = workdir();
    let limits = StepLimits { memory: Some(128 << 20), pids: Some(64) };
    let exec = executor(work.path(), limits);
    let mut session = exec.prepare(&fx.layers(), CancelToken::new()).unwrap();

    // Bounded: 500 children that sleep, far more than the limit.
    let bomb = Step::new(
        "fork bomb",
        [
            "perl",
            "-e",
            r#"for my $i (1..500) { my $p = fork; die "fork $i: $!\n" unless defined $p; if (!$p) { sleep 60; exit 0 } } print "all forked\n""#,
        ],
    );
    let err = session.run_step(&bomb, &mut |_, _| {}).unwrap_err();
    let Error::StepLimit { hit, outcome, .. } = &err else { panic!("{err}") };
    assert_eq!(*hit, LimitHit::Pids(64), "{err}");
    assert!(outcome.stderr_tail.contains("fork"), "{}", outcome.stderr_tail);
    assert!(err.to_string().contains("--step-pids"), "{err}");

    let hog =
        Step::new("memory hog", ["perl", "-e", r#"my $x = "x" x (512 * 1024 * 1024); print length $x"#]);
    let err = session.run_step(&hog, &mut |_, _| {}).unwrap_err();
    let Error::StepLimit { hit, .. } = &err else { panic!("{err}") };
    assert_eq!(*hit, LimitHit::Memory(128 << 20), "{err}");
    assert!(err.to_string().contains("--step-memory"), "{err}");

    // Under the limits the same session still works.
    let ok = lines_of(&mut session, "echo fine");
    assert_eq!(ok, ["fine"]);
    drop(session);
    assert!(leftover_cgroups().is_empty(), "{:?}", leftover_cgroups());
}

#[test]
fn the_hosts_tools_come_without_its_sockets_homes_and_secrets() {
    let fx = fixture();
    let work = workdir();
    let exec = executor(work.path(), StepLimits::default());
    let mut session = exec.prepare(&fx.layers(), CancelToken::new()).unwrap();
    let script = r#"
for p in /run /var /root /home /work; do test -e $p && echo "$p: present" || echo "$p: absent"; done
for f in /etc/shadow /etc/gshadow; do test -s $f && echo "$f: readable" || echo "$f: empty"; done
test -x /usr/bin/perl && echo "tools: yes"
"#;
    let step = Step::new("host tooling", ["sh", "-c", script])
        .run_in(RunIn::Tooling { root: ToolingRoot::Host, mount_point: "/target".to_owned() });
    let mut out = Vec::new();
    session.run_step(&step, &mut |_, l| out.push(l.to_owned())).unwrap();
    let got = fields(&out);
    for p in ["/run", "/var", "/root", "/home", "/work"] {
        assert_eq!(got[p], "absent", "{out:#?}");
    }
    assert!(fs::metadata("/etc/shadow").unwrap().len() > 0, "the host has a shadow file");
    assert_eq!(got["/etc/shadow"], "empty", "{out:#?}");
    assert_eq!(got["tools"], "yes", "{out:#?}");

    // What the pip updater runs with the host's tools (CI installs
    // python3-pip): pip itself, and a download through the host's CA bundle.
    let pip = "python3 -I -m pip download -q --no-deps --no-cache-dir -d /tmp/d six==1.16.0 && ls /tmp/d";
    let step = Step::new("host pip", ["sh", "-c", pip])
        .env("PIP_CONFIG_FILE", "/dev/null")
        .network(true)
        .run_in(RunIn::Tooling { root: ToolingRoot::Host, mount_point: "/target".to_owned() });
    let mut out = Vec::new();
    let result = session.run_step(&step, &mut |_, l| out.push(l.to_owned()));
    assert!(result.is_ok(), "{result:?}: {out:#?}");
    assert_eq!(out, ["six-1.16.0-py2.py3-none-any.whl"]);
}

#[test]
fn the_tools_maintainer_scripts_use_still_work() {
    let fx = fixture();
    let work = workdir();
    let exec = executor(work.path(), StepLimits::default());
    let mut session = exec.prepare(&fx.layers(), CancelToken::new()).unwrap();
    let script = r#"
adduser --quiet --system --group --no-create-home caulk-test && id -u caulk-test >/dev/null && echo "adduser: ok"
update-ca-certificates --fresh >/dev/null 2>&1 && echo "update-ca-certificates: ok"
chown caulk-test /tmp && chmod 4755 /usr/bin/env && echo "chown-setuid: ok"
dpkg --configure -a && echo "dpkg: ok"
"#;
    let out = lines_of(&mut session, script);
    assert_eq!(
        out,
        ["adduser: ok", "update-ca-certificates: ok", "chown-setuid: ok", "dpkg: ok"],
        "{out:#?}"
    );
}

#[test]
fn cgroups_left_by_a_killed_caulk_are_swept() {
    let own = fs::read_to_string("/proc/self/cgroup").unwrap();
    let parent = if let Some((_, path)) = own.lines().find_map(|l| l.split_once(":pids:")) {
        // cgroup v1: step cgroups go below caulk's own.
        Path::new("/sys/fs/cgroup/pids").join(path.trim_start_matches('/'))
    } else {
        // cgroup v2: beside caulk's own, unless that is the root.
        let path = own.lines().find_map(|l| l.strip_prefix("0::")).unwrap();
        let dir = Path::new("/sys/fs/cgroup").join(path.trim_start_matches('/'));
        if path == "/" { dir } else { dir.parent().unwrap().to_owned() }
    };
    // Above pid_max: no live process has this pid.
    let pid_max: u64 = fs::read_to_string("/proc/sys/kernel/pid_max").unwrap().trim().parse().unwrap();
    let stale = parent.join(format!("caulk-{}-0", pid_max + 1));
    fs::create_dir(&stale).unwrap();
    let work = workdir();
    let _exec = executor(work.path(), StepLimits::default());
    assert!(!stale.exists(), "{} is still there", stale.display());
}
