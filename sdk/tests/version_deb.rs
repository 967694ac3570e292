//! Debian versions: a table whose answers follow dpkg's rules, checked
//! against `caulk_sdk::version` and against `dpkg --compare-versions` itself.

mod version_common;

use std::cmp::Ordering;

use caulk_sdk::version::{Scheme, deb};
use version_common::{Case, Rng, check_table, check_tool_agrees, check_total_order, dpkg_compare, versions};

/// Each answer follows from dpkg's rules, named in the comment.
const TABLE: &[Case] = &[
    // Digit runs compare as numbers.
    ("1.0", "=", "1.0"),
    ("1.0", "<", "1.1"),
    ("1.9", "<", "1.10"),
    ("1.010", "=", "1.10"),
    ("1.0", "=", "1.00"),
    ("7.88.1-10+deb12u5", "<", "7.88.1-10+deb12u12"),
    ("1.18446744073709551615", "<", "1.18446744073709551616"),
    // A longer version wins once the shorter one ends...
    ("1.0", "<", "1.0.1"),
    ("1.0", "<", "1.0.0"),
    ("0", "<", "0.0"),
    // ... except when the longer one continues with `~`, which sorts before
    // everything, even the end of the string.
    ("1.0~rc1", "<", "1.0"),
    ("1.0~rc1", "<", "1.0~rc2"),
    ("1.0~", "<", "1.0"),
    ("1.0~~", "<", "1.0~"),
    ("1.0~~a", "<", "1.0~"),
    ("1.0~rc1~1", "<", "1.0~rc1"),
    ("1.2.3~rc1-1", "<", "1.2.3-1"),
    // The end of a string sorts before letters, letters (uppercase first,
    // by ASCII) before every other non-digit.
    ("1.0", "<", "1.0a"),
    ("1.0a", "<", "1.0b"),
    ("1.0A", "<", "1.0a"),
    ("1.0Z", "<", "1.0a"),
    ("1.0z", "<", "1.0+"),
    ("1.2.3", "<", "1.2.3a"),
    ("1.0+", "<", "1.0."),
    ("1.0+git20230101", ">", "1.0"),
    ("1.0+git20230101", "<", "1.0.1"),
    // Epochs first, as numbers; a missing epoch is 0.
    ("1.0", "=", "0:1.0"),
    ("1:1.0-1", "=", "01:1.0-1"),
    ("1:0.1", ">", "2.0"),
    ("1:1.0", "<", "2:0.1"),
    ("2:1", "<", "10:0"),
    ("1:2.37.2-4ubuntu3", ">", "2.37.2-4ubuntu3.4"),
    // Then the upstream version, then the revision after the last hyphen.
    ("1.0-1", "<", "1.0-2"),
    ("1.0-1", "=", "1.0-01"),
    ("1.0-9", "<", "1.0-10"),
    ("1.0-1.1", ">", "1.0-1"),
    ("2.0-1-1", ">", "2.0-1"),
    ("1.0", "=", "1.0-0"),
    ("1.0-0ubuntu1", ">", "1.0"),
    ("1.0-1~bpo12+1", "<", "1.0-1"),
    ("1.0-1+b1", ">", "1.0-1"),
    ("1.0-1+deb12u1", ">", "1.0-1+b1"),
    ("1.0-1ubuntu0.1", "<", "1.0-1ubuntu1"),
    ("3.0.11-1~deb12u2", "<", "3.0.11-1~deb12u10"),
    ("2.37.2-4ubuntu3.4", ">", "2.37.2-4ubuntu3"),
    ("2.36.1-8+deb11u1", "<", "2.36.1-8+deb11u2"),
    ("1:4.13+dfsg1-1+b1", "<", "1:4.13+dfsg1-1+deb12u1"),
    ("1:2.66-4", "<", "1:2.66-4+deb12u1"),
    ("1:4.16.0-2+really2.41-5", ">", "1:2.41.3-1"),
    // dpkg only warns about these (not starting with a digit, `_`), and
    // orders them by the same rules; scanners do report such versions.
    ("1.0_1", ">", "1.0.1"),
    ("1.0-a", ">", "1.0-1"),
    ("abc", ">", "1"),
    ("v1.0_beta", ">", "v1.0~"),
];

#[test]
fn table_holds() {
    check_table(Scheme::Deb, TABLE);
}

#[test]
fn dpkg_agrees_with_the_table() {
    let answers: Vec<Ordering> = TABLE
        .iter()
        .map(|(a, _, b)| dpkg_compare(a, b).unwrap_or_else(|| panic!("dpkg refuses {a} or {b}")))
        .collect();
    check_tool_agrees("dpkg", TABLE, &answers);
}

#[test]
fn order_is_total_over_the_table() {
    let parsed: Vec<deb::Version> = versions(TABLE).iter().map(|v| v.parse().unwrap()).collect();
    check_total_order(&parsed, Ord::cmp);
}

/// Random strings over dpkg's interesting characters: where dpkg accepts
/// both (perhaps with a warning), the order is dpkg's; where dpkg refuses
/// one, so does the parser.
#[test]
fn random_versions_follow_dpkg() {
    let pieces = ["0", "1", "9", "00", "10", ".", "~", "+", "-", ":", "a", "z", "A", "_", "1:", "-1", "~rc"];
    let mut rng = Rng::new(0x00de_b1a7);
    let mut compared = 0;
    for _ in 0..600 {
        let a = rng.string(&pieces, 6);
        let b = rng.string(&pieces, 6);
        let ours = match (a.parse::<deb::Version>(), b.parse::<deb::Version>()) {
            (Ok(va), Ok(vb)) => Some(va.cmp(&vb)),
            _ => None,
        };
        // An empty argument means "no version" to dpkg, not a bad one.
        if a.is_empty() || b.is_empty() {
            assert_eq!(ours, None);
            continue;
        }
        assert_eq!(ours, dpkg_compare(&a, &b), "{a:?} vs {b:?}");
        compared += usize::from(ours.is_some());
    }
    assert!(compared > 150, "only {compared} valid pairs");
}
