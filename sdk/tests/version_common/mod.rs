//! Shared by the `version_*` tests: the case tables' checks and the real
//! tools the tables are verified against.

#![allow(dead_code, reason = "each test crate uses a different part")]

use std::cmp::Ordering;
use std::io::Write;
use std::process::{Command, Stdio};

use caulk_sdk::version::{Scheme, compare};

/// One row of a table: `a`, the expected relation (`<`, `=`, `>`), `b`.
pub type Case = (&'static str, &'static str, &'static str);

pub fn expected(case: &Case) -> Ordering {
    match case.1 {
        "<" => Ordering::Less,
        "=" => Ordering::Equal,
        ">" => Ordering::Greater,
        other => panic!("bad relation {other:?} in {case:?}"),
    }
}

pub fn symbol(ordering: Ordering) -> &'static str {
    match ordering {
        Ordering::Less => "<",
        Ordering::Equal => "=",
        Ordering::Greater => ">",
    }
}

/// Every case holds for `compare`, in both directions.
pub fn check_table(scheme: Scheme, table: &[Case]) {
    assert!(table.len() >= 40, "{scheme}: only {} cases", table.len());
    let mut wrong = Vec::new();
    for case in table {
        let (a, _, b) = *case;
        let want = expected(case);
        let forward = compare(scheme, a, b).unwrap_or_else(|e| panic!("{e}"));
        let backward = compare(scheme, b, a).unwrap_or_else(|e| panic!("{e}"));
        if forward != want || backward != want.reverse() {
            wrong.push(format!("{a} {} {b} (expected {})", symbol(forward), symbol(want)));
        }
    }
    assert!(wrong.is_empty(), "{scheme}: wrong answers:\n{}", wrong.join("\n"));
}

/// The real tool's answers agree with the table.
pub fn check_tool_agrees(tool: &str, table: &[Case], answers: &[Ordering]) {
    assert_eq!(answers.len(), table.len(), "{tool} answered a different number of cases");
    let disagreements: Vec<String> = table
        .iter()
        .zip(answers)
        .filter(|(case, answer)| expected(case) != **answer)
        .map(|((a, rel, b), answer)| format!("table: {a} {rel} {b}; {tool}: {}", symbol(*answer)))
        .collect();
    assert!(disagreements.is_empty(), "{tool} disagrees with the table:\n{}", disagreements.join("\n"));
}

/// The versions of a table, each once.
pub fn versions(table: &[Case]) -> Vec<&'static str> {
    let mut all: Vec<&str> = table.iter().flat_map(|(a, _, b)| [*a, *b]).collect();
    all.sort_unstable();
    all.dedup();
    all
}

/// `cmp` is a total order over `items`: antisymmetric, reflexive and
/// transitive, equality included.
pub fn check_total_order<T: std::fmt::Display>(items: &[T], cmp: impl Fn(&T, &T) -> Ordering) {
    let n = items.len();
    let mut table = vec![Ordering::Equal; n * n];
    for i in 0..n {
        for j in 0..n {
            table[i * n + j] = cmp(&items[i], &items[j]);
        }
    }
    for i in 0..n {
        assert_eq!(table[i * n + i], Ordering::Equal, "{} is not equal to itself", items[i]);
        for j in 0..n {
            assert_eq!(
                table[i * n + j],
                table[j * n + i].reverse(),
                "not antisymmetric: {} vs {}",
                items[i],
                items[j]
            );
            if table[i * n + j] == Ordering::Greater {
                continue;
            }
            for k in 0..n {
                let (ij, jk, ik) = (table[i * n + j], table[j * n + k], table[i * n + k]);
                if jk != Ordering::Greater {
                    // a <= b <= c implies a <= c, and a == c only if all equal.
                    let want = if ij == Ordering::Equal && jk == Ordering::Equal {
                        Ordering::Equal
                    } else {
                        Ordering::Less
                    };
                    assert_eq!(
                        ik,
                        want,
                        "not transitive: {} {} {} {} {} but {} {} {}",
                        items[i],
                        symbol(ij),
                        items[j],
                        symbol(jk),
                        items[k],
                        items[i],
                        symbol(ik),
                        items[k]
                    );
                }
            }
        }
    }
}

/// Runs `program` with `input` on stdin and returns its stdout; a missing
/// tool fails the test (CI installs it) rather than skipping it.
pub fn run_with_stdin(program: &str, args: &[&str], input: &str) -> String {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program} ({e}); install it to run this test"));
    child
        .stdin
        .take()
        .expect("stdin is piped")
        .write_all(input.as_bytes())
        .expect("write to the tool's stdin");
    let output = child.wait_with_output().expect("wait for the tool");
    assert!(
        output.status.success(),
        "{program} failed ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("the tool prints UTF-8")
}

/// Parses one `-1`/`0`/`1` answer per line (rpm adds an empty line).
pub fn parse_answers(tool: &str, output: &str) -> Vec<Ordering> {
    output
        .lines()
        .filter(|line| !line.trim().is_empty())
        .map(|line| match line.trim() {
            "-1" => Ordering::Less,
            "0" => Ordering::Equal,
            "1" => Ordering::Greater,
            other => panic!("{tool} answered {other:?}"),
        })
        .collect()
}

/// How `dpkg --compare-versions` relates `a` to `b`; `None` when dpkg
/// refuses one of them as a bad version.
pub fn dpkg_compare(a: &str, b: &str) -> Option<Ordering> {
    let holds = |op: &str| {
        let status = Command::new("dpkg")
            // `--` keeps a version starting with `-` from reading as an option.
            .args(["--compare-versions", "--", a, op, b])
            .stderr(Stdio::null())
            .status()
            .unwrap_or_else(|e| panic!("cannot run dpkg ({e}); install dpkg to run this test"));
        match status.code() {
            Some(0) => Some(true),
            Some(1) => Some(false),
            // dpkg exits 2 after "version '...' has bad syntax".
            Some(2) => None,
            _ => panic!("dpkg --compare-versions {a} {op} {b}: {status}"),
        }
    };
    if holds("lt")? {
        Some(Ordering::Less)
    } else if holds("eq")? {
        Some(Ordering::Equal)
    } else {
        assert_eq!(holds("gt"), Some(true), "dpkg: {a} neither lt, eq nor gt {b}");
        Some(Ordering::Greater)
    }
}

/// rpm's own EVR comparison (`rpm.vercmp`, rpm >= 4.16) of every pair, in
/// one rpm process. The versions travel on stdin, never inside the script.
/// (`print` inside a macro writes into the expansion without newlines, so
/// the script writes to stdout itself.)
pub fn rpm_compare_all(pairs: &[(&str, &str)]) -> Vec<Ordering> {
    let script = "%{lua: for line in io.lines() do \
                  local space = string.find(line, ' ', 1, true) \
                  io.write(rpm.vercmp(string.sub(line, 1, space - 1), string.sub(line, space + 1)), '\\n') \
                  end}";
    let output = run_with_stdin("rpm", &["--eval", script], &pair_lines(pairs, ' '));
    parse_answers("rpm", &output)
}

/// Python's `packaging.version` (pip's vendored copy when the standalone
/// package is missing) on every pair, in one python3 process.
pub fn python_compare_all(pairs: &[(&str, &str)]) -> Vec<Ordering> {
    let script = r"
import sys
try:
    from packaging.version import Version
except ImportError:
    from pip._vendor.packaging.version import Version
for line in sys.stdin:
    a, b = line.rstrip('\n').split('\t')
    a, b = Version(a), Version(b)
    print((a > b) - (a < b))
";
    let output = run_with_stdin("python3", &["-c", script], &pair_lines(pairs, '\t'));
    parse_answers("python3", &output)
}

/// One `a<separator>b` line per pair.
fn pair_lines(pairs: &[(&str, &str)], separator: char) -> String {
    let mut lines = String::new();
    for (a, b) in pairs {
        lines.push_str(a);
        lines.push(separator);
        lines.push_str(b);
        lines.push('\n');
    }
    lines
}

pub fn pairs(table: &[Case]) -> Vec<(&'static str, &'static str)> {
    table.iter().map(|(a, _, b)| (*a, *b)).collect()
}

/// A small deterministic generator (xorshift), so random checks repeat.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed | 1)
    }

    pub fn below(&mut self, n: usize) -> usize {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        usize::try_from(self.0 % n as u64).expect("below n")
    }

    /// A string of up to `max_len` pieces drawn from `pieces`.
    pub fn string(&mut self, pieces: &[&str], max_len: usize) -> String {
        let len = self.below(max_len + 1);
        (0..len).map(|_| pieces[self.below(pieces.len())]).collect()
    }
}
