//! RPM versions: a table whose answers follow rpm's rules (rpmvercmp and
//! rpmverCmp of rpm >= 4.15), checked against `caulk_sdk::version` and
//! against rpm's own `rpm.vercmp`.

mod version_common;

use caulk_sdk::version::{Scheme, rpm};
use version_common::{
    Case, Rng, check_table, check_tool_agrees, check_total_order, pairs, rpm_compare_all, versions,
};

/// Each answer follows from rpm's rules, named in the comment.
const TABLE: &[Case] = &[
    // Digit runs compare as numbers; letter runs as bytes.
    ("1.0", "=", "1.0"),
    ("1.0", "<", "2.0"),
    ("1.9", "<", "1.10"),
    ("1.0010", "=", "1.10"),
    ("1.18446744073709551615", "<", "1.18446744073709551616"),
    ("5.5p1", "<", "5.5p2"),
    ("5.5p1", "<", "5.5p10"),
    ("abc", "<", "abd"),
    ("FC5", "<", "fc4"),
    // Anything but letters, digits, `~` and `^` only separates segments.
    ("2.0", "=", "2_0"),
    ("2.0", "=", "2..0"),
    ("1.0a", "=", "1.0.a"),
    ("1.0+", "=", "1.0"),
    // A digit segment beats a letter segment.
    ("xyz.4", "<", "8"),
    ("2a", "<", "2.0"),
    ("1.0.1", ">", "1.0a"),
    // The version with segments left over wins.
    ("2.0.1", ">", "2.0"),
    ("2.0.1a", ">", "2.0.1"),
    ("10xyz", "<", "10.1xyz"),
    ("xyz10", "<", "xyz10.1"),
    ("1.0", "<", "1.0.0"),
    ("6.0.rc1", ">", "6.0"),
    // `~` sorts before everything, even the end of the string.
    ("1.0~rc1", "<", "1.0"),
    ("1.0~rc1", "<", "1.0~rc2"),
    ("1.0~~", "<", "1.0~"),
    ("1.0~rc1~git123", "<", "1.0~rc1"),
    ("1.0~1", "<", "1.0^1"),
    // `^` sorts after the end of the string, before anything else.
    ("1.0^", ">", "1.0"),
    ("1.0^git1", ">", "1.0"),
    ("1.0^git1", "<", "1.0.1"),
    ("1.0^git1", "<", "1.0^git2"),
    ("1.0~rc1^git1", ">", "1.0~rc1"),
    ("1.0~rc1^git1", "<", "1.0"),
    // Epoch first (missing is 0), then version, then release; a missing
    // release sorts before any release.
    ("0:1.0", "=", "1.0"),
    (":1.0", "=", "0:1.0"),
    ("1:1.0", ">", "2.0"),
    ("1:1.0", "<", "2:0.5"),
    ("1.0", "<", "1.0-1"),
    ("1.0-1", "<", "1.0-2"),
    ("1.0-1", "<", "1.0_1"),
    ("1.0-1", "<", "1.0-1.1"),
    ("1.0-1.el9", "<", "1.0-2.el9"),
    ("1.0-10.el9", ">", "1.0-9.el9"),
    ("1.2.3-1.fc38", "<", "1.2.3-1.fc39"),
    ("1.0-1.el7_6.1", ">", "1.0-1.el7_6"),
    ("3.10.0-1160.el7", "<", "3.10.0-1160.118.1.el7"),
    // Cases from the Red Hat fixture reports.
    ("1:1.0.2k-16.el7_6.1", "<", "1:1.0.2k-19.el7"),
    ("1:1.10.24-13.el7_6", "<", "1:1.10.24-14.el7_8"),
    ("2:7.4.160-5.el7", "<", "2:7.4.160-6.el7_6"),
    ("1.0.2k-19.el7", "<", "1:1.0.2k-16.el7_6.1"),
];

#[test]
fn table_holds() {
    check_table(Scheme::Rpm, TABLE);
}

#[test]
fn rpm_agrees_with_the_table() {
    check_tool_agrees("rpm", TABLE, &rpm_compare_all(&pairs(TABLE)));
}

#[test]
fn order_is_total_over_the_table() {
    let parsed: Vec<rpm::Evr> = versions(TABLE).iter().map(|v| v.parse().unwrap()).collect();
    check_total_order(&parsed, Ord::cmp);
}

/// Random strings over rpm's interesting characters: every pair this crate
/// accepts is ordered as rpm orders it.
#[test]
fn random_versions_follow_rpm() {
    let pieces = ["0", "1", "9", "00", "10", ".", "_", "~", "^", "-", "a", "z", "A", "rc", "1:", "+"];
    let mut rng = Rng::new(0x0000_5eed_0f00);
    let mut random = Vec::new();
    while random.len() < 400 {
        let a = rng.string(&pieces, 7);
        let b = rng.string(&pieces, 7);
        if let (Ok(va), Ok(vb)) = (a.parse::<rpm::Evr>(), b.parse::<rpm::Evr>()) {
            random.push((a, b, va.cmp(&vb)));
        }
    }
    let pairs: Vec<(&str, &str)> = random.iter().map(|(a, b, _)| (a.as_str(), b.as_str())).collect();
    let answers = rpm_compare_all(&pairs);
    assert_eq!(answers.len(), random.len());
    for ((a, b, ours), theirs) in random.iter().zip(answers) {
        assert_eq!(*ours, theirs, "{a:?} vs {b:?}");
    }
}
