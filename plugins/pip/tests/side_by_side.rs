//! The script that runs several environments' pip installs at once
//! (`scripts::SIDE_BY_SIDE`), run by the host's Python on plain commands.

use std::path::Path;
use std::process::{Command, Output};

use caulk_plugin_pip::scripts::SIDE_BY_SIDE;
use serde_json::json;

/// `(lane, label, shell script)`, in argument order.
fn run(commands: &[(&str, &str, &str)]) -> Output {
    let mut args = vec!["-I".to_owned(), "-B".into(), "-c".into(), SIDE_BY_SIDE.into()];
    for (lane, label, script) in commands {
        args.push((*lane).to_owned());
        args.push(json!({"label": label, "argv": ["sh", "-c", script], "env": {"LABEL": label}}).to_string());
    }
    Command::new("python3").args(&args).output().expect("python3 on the host (scripts/test.sh installs it)")
}

/// Makes `mine`, then waits up to 20 s for `theirs`: only commands that
/// run at the same time both get through.
fn meet(dir: &Path, mine: &str, theirs: &str) -> String {
    let (mine, theirs) = (dir.join(mine), dir.join(theirs));
    format!(
        "touch {m}; i=0; while [ ! -e {t} ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done; [ -e {t} ] && echo \"$LABEL met\"",
        m = mine.display(),
        t = theirs.display()
    )
}

fn lines(bytes: &[u8]) -> Vec<String> {
    String::from_utf8_lossy(bytes).lines().map(str::to_owned).collect()
}

#[test]
fn lanes_run_at_once_and_a_lanes_commands_in_order() {
    // The script runs at most one lane per CPU.
    if std::thread::available_parallelism().map_or(1, usize::from) < 2 {
        eprintln!("one CPU: lanes take turns, so they cannot meet");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("system.log");
    let l = log.display();
    let out = run(&[
        ("0", "system", &format!("{} && echo first >>{l}", meet(dir.path(), "a", "b"))),
        ("1", "venv", &meet(dir.path(), "b", "a")),
        // Waits for "system", which is still waiting for "venv".
        ("0", "system again", &format!("echo second >>{l}")),
    ]);
    assert!(out.status.success(), "{out:?}");
    let stdout = lines(&out.stdout);
    // A line as each command starts, then each command's output whole,
    // in argument order.
    assert_eq!(stdout.iter().filter(|l| l.starts_with("caulk: started")).count(), 3, "{stdout:#?}");
    let outputs: Vec<&String> = stdout.iter().filter(|l| !l.starts_with("caulk: started")).collect();
    assert_eq!(outputs, ["system met", "venv met"], "{stdout:#?}");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "first\nsecond\n");
    assert!(out.stderr.is_empty(), "nothing failed: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn only_failures_reach_stderr_and_a_failure_ends_its_lane() {
    let dir = tempfile::tempdir().unwrap();
    let after = dir.path().join("after");
    let out = run(&[
        (
            "0",
            "pip install in the system Python",
            "echo 'ERROR: No matching distribution found for x==9' >&2; exit 3",
        ),
        ("1", "pip install in the virtualenv", "echo 'ERROR: pip says this but exits 0' >&2"),
        ("0", "after the failure", &format!("touch {}", after.display())),
    ]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(
        lines(&out.stderr),
        [
            "ERROR: No matching distribution found for x==9",
            "caulk: `pip install in the system Python` exited 3",
        ],
        "a successful pip's ERROR: line is not mistaken for the failure's"
    );
    assert!(lines(&out.stdout).contains(&"ERROR: pip says this but exits 0".to_owned()));
    assert!(!after.exists(), "a failure ends its lane");
}

#[test]
fn a_command_that_cannot_start_fails_its_lane_with_the_reason() {
    let bad = json!({"label": "pip install in /nonexistent", "argv": ["/nonexistent/python", "-m", "pip"], "env": {}});
    let nul = json!({"label": "a NUL in argv", "argv": ["sh", "-c", "true\u{0}"], "env": {}});
    let out = Command::new("python3")
        .args(["-I", "-B", "-c", SIDE_BY_SIDE, "0", &bad.to_string(), "1", &nul.to_string()])
        .output()
        .expect("python3 runs");
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot run /nonexistent/python"), "{stderr}");
    assert!(stderr.contains("caulk: `pip install in /nonexistent` exited 127"), "{stderr}");
    // Not an OSError, and still a failure rather than a lost lane.
    assert!(stderr.trim_end().ends_with("caulk: `a NUL in argv` exited 127"), "{stderr}");
}
