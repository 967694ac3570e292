//! The script that runs several environments' pip installs at once
//! (`scripts::SIDE_BY_SIDE`), run by the host's Python on plain commands.

use std::path::Path;
use std::process::{Command, Output};

use caulk_plugin_pip::scripts::SIDE_BY_SIDE;
use serde_json::{Value, json};

fn command(label: &str, script: &str) -> Value {
    json!({"label": label, "argv": ["sh", "-c", script], "env": {"LANE": label}})
}

fn run(keep_going: bool, lanes: &[Vec<Value>]) -> Output {
    let spec = json!({"keep_going": keep_going, "lanes": lanes});
    Command::new("python3")
        .args(["-I", "-B", "-c", SIDE_BY_SIDE, &spec.to_string()])
        .output()
        .expect("python3 runs")
}

/// Waits up to 20 s for `theirs` after making `mine`: only lanes that run
/// at the same time both get through.
fn meet(dir: &Path, mine: &str, theirs: &str) -> String {
    let (mine, theirs) = (dir.join(mine), dir.join(theirs));
    format!(
        "touch {m}; i=0; while [ ! -e {t} ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done; [ -e {t} ] && echo \"$LANE met\"",
        m = mine.display(),
        t = theirs.display()
    )
}

#[test]
fn lanes_run_at_once_and_each_lanes_commands_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let order = dir.path().join("order");
    let o = order.display();
    let out = run(
        false,
        &[
            vec![
                command("system", &meet(dir.path(), "a", "b")),
                command("system again", &format!("echo second >>{o}")),
            ],
            vec![command("venv", &format!("{} && echo first >>{o}", meet(dir.path(), "b", "a")))],
        ],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(stdout.contains("system met") && stdout.contains("venv met"), "{stdout}");
    // Each command got its own variables.
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines, ["system met", "venv met"], "output in lane order, each command's whole");
    // "system again" waited for "system"; both lanes' last commands ran.
    let written = std::fs::read_to_string(&order).unwrap();
    let mut written: Vec<&str> = written.lines().collect();
    written.sort_unstable();
    assert_eq!(written, ["first", "second"]);
}

#[test]
fn a_failed_command_ends_its_lane_and_its_output_comes_last() {
    let dir = tempfile::tempdir().unwrap();
    let after = dir.path().join("after");
    let lanes = [
        vec![
            command(
                "pip install in the system Python",
                "echo 'ERROR: No matching distribution found for x==9' >&2; exit 3",
            ),
            command("after the failure", &format!("touch {}", after.display())),
        ],
        vec![command("pip install in the virtualenv", "echo 'Successfully installed y-2' >&2")],
    ];
    let out = run(false, &lanes);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail: Vec<&str> = stderr.lines().collect();
    assert_eq!(
        tail,
        [
            "Successfully installed y-2",
            "ERROR: No matching distribution found for x==9",
            "caulk: `pip install in the system Python` exited 3",
        ],
        "the failure is at the end, where the step's stderr tail keeps it"
    );
    assert!(!after.exists(), "a failure ends its lane");

    // With the plan's steps tolerating failure, the lane goes on.
    let out = run(true, &lanes);
    assert_eq!(out.status.code(), Some(3));
    assert!(after.exists(), "keep_going runs the rest of the lane");
}

#[test]
fn a_command_that_cannot_start_fails_its_lane_with_the_reason() {
    let spec = json!({"keep_going": false, "lanes": [
        [{"label": "pip install in /nonexistent", "argv": ["/nonexistent/python", "-m", "pip"], "env": {}}],
        [command("other", "true")],
    ]});
    let out = Command::new("python3")
        .args(["-I", "-B", "-c", SIDE_BY_SIDE, &spec.to_string()])
        .output()
        .expect("python3 runs");
    assert_eq!(out.status.code(), Some(127), "{out:?}");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("cannot run /nonexistent/python"), "{stderr}");
    assert!(stderr.trim_end().ends_with("caulk: `pip install in /nonexistent` exited 127"), "{stderr}");
}
