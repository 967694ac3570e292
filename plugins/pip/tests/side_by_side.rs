//! The script that runs several environments' pip installs at once
//! (`scripts::SIDE_BY_SIDE`), run by the host's Python on plain commands.

use std::path::Path;
use std::process::{Command, Output};

use caulk_plugin_pip::scripts::SIDE_BY_SIDE;
use serde_json::json;

/// The script run by the host's Python with `args` (LANE COMMAND pairs).
fn script(args: &[String]) -> Output {
    Command::new("python3")
        .args(["-I", "-B", "-c", SIDE_BY_SIDE])
        .args(args)
        .output()
        .expect("python3 on the host (scripts/test.sh installs it)")
}

/// `(lane, label, shell script)`, in argument order.
fn run(commands: &[(&str, &str, &str)]) -> Output {
    let mut args = Vec::new();
    for (lane, label, body) in commands {
        args.push((*lane).to_owned());
        args.push(json!({"label": label, "argv": ["sh", "-c", body], "env": {"LABEL": label}}).to_string());
    }
    script(&args)
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
    // A line as each command starts, naming its lane, and each command's
    // output as it comes, led by its lane: the first command's line comes
    // before its lane's next command starts.
    let mut starts: Vec<&str> = stdout.iter().filter_map(|l| l.strip_prefix("caulk: ")).collect();
    starts.sort_unstable();
    assert_eq!(
        starts,
        ["[0] started `system again`", "[0] started `system`", "[1] started `venv`"],
        "{stdout:#?}"
    );
    let mut outputs: Vec<&String> = stdout.iter().filter(|l| !l.starts_with("caulk: ")).collect();
    outputs.sort();
    assert_eq!(outputs, ["[0] system met", "[1] venv met"], "{stdout:#?}");
    let at = |line: &str| stdout.iter().position(|l| l == line);
    assert!(at("[0] system met") < at("caulk: [0] started `system again`"), "streamed: {stdout:#?}");
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "first\nsecond\n");
    assert!(out.stderr.is_empty(), "nothing failed: {}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn only_failures_reach_stderr_and_a_failure_ends_its_lane() {
    if std::thread::available_parallelism().map_or(1, usize::from) < 2 {
        eprintln!("one CPU: the lanes cannot overlap");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let (after, started) = (dir.path().join("after"), dir.path().join("started"));
    // The failure waits until the other lane's pip has started.
    let fail = format!(
        "i=0; while [ ! -e {s} ] && [ $i -lt 200 ]; do sleep 0.1; i=$((i+1)); done; \
         echo 'ERROR: No matching distribution found for x==9' >&2; exit 3",
        s = started.display()
    );
    let out = run(&[
        ("0", "pip install in the system Python", &fail),
        (
            "1",
            "pip install in the virtualenv",
            &format!("touch {}; echo 'ERROR: pip says this but exits 0' >&2", started.display()),
        ),
        ("0", "after the failure", &format!("touch {}", after.display())),
    ]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    assert_eq!(
        lines(&out.stderr),
        [
            "ERROR: No matching distribution found for x==9",
            "caulk: `pip install in the system Python` exited 3",
            "caulk: failed: `pip install in the system Python` (3)",
        ],
        "a successful pip's ERROR: line is not mistaken for the failure's"
    );
    // A successful pip's stderr (its warnings) comes on stdout, led by
    // its lane like the rest of its output.
    assert!(lines(&out.stdout).contains(&"[1] ERROR: pip says this but exits 0".to_owned()), "{out:?}");
    assert!(!after.exists(), "a failure ends its lane");
}

#[test]
fn a_last_line_without_a_newline_still_ends_before_the_next() {
    let out = run(&[("0", "first", "printf 'no newline'"), ("0", "second", "echo next")]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        lines(&out.stdout),
        ["caulk: [0] started `first`", "[0] no newline", "caulk: [0] started `second`", "[0] next"]
    );
}

#[test]
fn a_long_line_comes_in_pieces_each_led_by_its_lane() {
    let out = run(&[("0", "long", "head -c 40000 /dev/zero | tr '\\0' x; echo; echo short >&2")]);
    assert!(out.status.success(), "{out:?}");
    let stdout = lines(&out.stdout);
    let pieces: Vec<&String> = stdout.iter().filter(|l| !l.starts_with("caulk: ")).collect();
    assert!(pieces.len() >= 3, "{} pieces", pieces.len());
    for piece in &pieces[..pieces.len() - 1] {
        let rest = piece.strip_prefix("[0] ").expect("every piece led by its lane");
        assert!(rest.len() <= 16384 && rest.bytes().all(|b| b == b'x'), "{}", rest.len());
    }
    let joined: usize = pieces[..pieces.len() - 1].iter().map(|p| p.len() - "[0] ".len()).sum();
    assert_eq!(joined, 40000);
    assert_eq!(pieces.last().unwrap().as_str(), "[0] short");
}

#[test]
fn after_a_failure_no_lane_starts() {
    let dir = tempfile::tempdir().unwrap();
    let late = dir.path().join("late");
    let out = run(&[
        ("0", "fails", "exit 1"),
        ("1", "runs on", "sleep 1"),
        ("2", "never starts", &format!("touch {}", late.display())),
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(!late.exists(), "a lane waiting for a CPU does not start once the step has failed");
    let stderr = lines(&out.stderr);
    assert_eq!(stderr.last().map(String::as_str), Some("caulk: failed: `fails` (1)"), "{stderr:#?}");
}

#[test]
fn arguments_must_come_in_pairs() {
    let out = script(&["0".into(), "{}".into(), "1".into()]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("LANE COMMAND pairs expected, got 3 arguments"));
}

#[test]
fn a_command_that_cannot_start_fails_its_lane_with_the_reason() {
    let bad = json!({"label": "pip install in /nonexistent", "argv": ["/nonexistent/python", "-m", "pip"], "env": {}});
    // Not an OSError (a NUL in an argument), and still a failure rather
    // than a lost lane.
    let nul = json!({"label": "a NUL in argv", "argv": ["sh", "-c", "true\u{0}"], "env": {}});
    for (command, said) in [(bad, "cannot run /nonexistent/python"), (nul, "cannot run sh")] {
        let out = script(&["0".into(), command.to_string()]);
        assert_eq!(out.status.code(), Some(127), "{out:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(said), "{stderr}");
        let label = command["label"].as_str().unwrap();
        assert!(stderr.contains(&format!("caulk: `{label}` exited 127")), "{stderr}");
        assert!(stderr.trim_end().ends_with(&format!("caulk: failed: `{label}` (127)")), "{stderr}");
    }
}
