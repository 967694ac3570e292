//! Python versions: a table whose answers follow PEP 440, checked against
//! `caulk_sdk::version` (through `pep440_rs`) and against Python's own
//! `packaging.version`, which pip uses.

mod version_common;

use caulk_sdk::version::{Scheme, python};
use version_common::{
    Case, check_table, check_tool_agrees, check_total_order, pairs, python_compare_all, versions,
};

/// Each answer follows from PEP 440, named in the comment.
const TABLE: &[Case] = &[
    // Release segments compare as numbers, padded with zeros.
    ("1.0", "=", "1.0.0"),
    ("1.0.0.0.0", "=", "1"),
    ("1.01", "=", "1.1"),
    ("1.0", "<", "1.0.1"),
    ("1.10", ">", "1.9"),
    ("2.0.0", ">", "1.99.99"),
    ("2023.10.1", ">", "2023.9.30"),
    // dev < pre-releases (a < b < rc) < release < post-releases.
    ("1.0.dev0", "<", "1.0a1"),
    ("1.0.dev1", "<", "1.0.dev2"),
    ("1.0.dev1", "<", "1.0a1.dev1"),
    ("1.0a1.dev1", "<", "1.0a1"),
    ("1.0a1", "<", "1.0a2"),
    ("1.0a2", "<", "1.0b1"),
    ("1.0b1", "<", "1.0rc1"),
    ("1.0rc1", "<", "1.0"),
    ("2.0.0rc1", "<", "2.0.0"),
    ("0.9", "<", "1.0a1"),
    ("1.0a1", "<", "1.0a1.post1"),
    ("1.0b2.post345.dev456", "<", "1.0b2.post345"),
    ("1.0", "<", "1.0.post1"),
    ("1.0", ">", "1.0.dev456"),
    ("1.0.post1.dev1", "<", "1.0.post1"),
    ("1.0.post1.dev1", ">", "1.0"),
    ("1.0.post2", ">", "1.0.post1"),
    ("1.0.post1", "<", "1.1.dev0"),
    // Spellings that normalise to the same version.
    ("1.0c1", "=", "1.0rc1"),
    ("1.0pre1", "=", "1.0rc1"),
    ("1.0RC1", "=", "1.0rc1"),
    ("1.0_rc1", "=", "1.0rc1"),
    ("1.0alpha1", "=", "1.0a1"),
    ("1.0.0a1", "=", "1.0a1"),
    ("1.0a", "=", "1.0a0"),
    ("1.0.post", "=", "1.0.post0"),
    ("1.0.dev", "=", "1.0.dev0"),
    ("1.0-1", "=", "1.0.post1"),
    ("v1.0", "=", "1.0"),
    // Epochs first; a missing epoch is 0.
    ("0!1.0", "=", "1.0"),
    ("1!0.1", ">", "2.0"),
    ("1!1.0", "=", "1!1.0.0"),
    // A local version is newer than the same public version; numeric local
    // segments beat alphanumeric ones.
    ("1.0+local", ">", "1.0"),
    ("1.0+local", "<", "1.0.post1"),
    ("1.0rc1+local", ">", "1.0rc1"),
    ("1.0rc1+local", "<", "1.0"),
    ("1.0+abc", "<", "1.0+1"),
    ("1.0+1", "<", "1.0+2"),
    ("1.0+1.1", ">", "1.0+1"),
    ("1.0+abc.5", "<", "1.0+abc.6"),
    ("1.0+ubuntu-1", "=", "1.0+ubuntu.1"),
];

#[test]
fn table_holds() {
    check_table(Scheme::Python, TABLE);
}

#[test]
fn packaging_agrees_with_the_table() {
    check_tool_agrees("packaging.version", TABLE, &python_compare_all(&pairs(TABLE)));
}

#[test]
fn order_is_total_over_the_table() {
    let parsed: Vec<python::Version> = versions(TABLE).iter().map(|v| v.parse().unwrap()).collect();
    check_total_order(&parsed, Ord::cmp);
}

#[test]
fn legacy_versions_are_errors() {
    for bad in ["", "1.0-foo", "2.0.x", "1.0+", "latest"] {
        let err = bad.parse::<python::Version>().unwrap_err();
        assert!(err.to_string().contains(&format!("{bad:?}")), "{err}");
    }
}

/// Random strings over PEP 440's pieces: `packaging` accepts exactly the
/// versions this crate accepts, and orders them the same way.
#[test]
fn random_versions_follow_packaging() {
    let pieces = [
        "0", "1", "9", "10", ".", "a", "b", "rc", "c", "pre", ".post", "post", "-", ".dev", "dev", "!", "+",
        "+abc", "_", "v", "alpha", "x",
    ];
    let mut rng = version_common::Rng::new(0x0070_ee44);
    let mut strings = Vec::new();
    for _ in 0..600 {
        strings.push(rng.string(&pieces, 6));
    }
    // The tool says "invalid" for what it refuses.
    let script = r"
import sys
try:
    from packaging.version import Version, InvalidVersion
except ImportError:
    from pip._vendor.packaging.version import Version, InvalidVersion
for line in sys.stdin:
    try:
        Version(line.rstrip('\n'))
        print('valid')
    except InvalidVersion:
        print('invalid')
";
    let input = strings.join("\n") + "\n";
    let output = version_common::run_with_stdin("python3", &["-c", script], &input);
    let verdicts: Vec<&str> = output.lines().collect();
    assert_eq!(verdicts.len(), strings.len());
    let mut valid = Vec::new();
    for (s, verdict) in strings.iter().zip(&verdicts) {
        let ours = s.parse::<python::Version>();
        assert_eq!(ours.is_ok(), *verdict == "valid", "{s:?}: packaging says {verdict}, we say {ours:?}");
        if let Ok(v) = ours {
            valid.push((s.as_str(), v));
        }
    }
    assert!(valid.len() > 50, "only {} valid versions", valid.len());
    let pairs: Vec<(&str, &str)> =
        valid.iter().zip(valid.iter().rev()).map(|((a, _), (b, _))| (*a, *b)).collect();
    let answers = python_compare_all(&pairs);
    for (((a, va), (b, vb)), theirs) in valid.iter().zip(valid.iter().rev()).zip(answers) {
        assert_eq!(va.cmp(vb), theirs, "{a:?} vs {b:?}");
    }
}
