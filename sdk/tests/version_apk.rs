//! Alpine versions. No apk-tools runs on this machine, so this table is
//! derived by hand from the rules of apk-tools' `src/version.c` (the
//! tokenizer and `apk_version_compare`), and the rows marked "upstream" are
//! taken from apk-tools' own test data (`test/version.data`).

mod version_common;

use caulk_sdk::version::{Scheme, apk};
use version_common::{Case, check_table, check_total_order, versions};

/// Each answer follows from apk-tools' rules, named in the comment.
const TABLE: &[Case] = &[
    // Dotted numbers compare by value...
    ("1.0", "=", "1.0"),
    ("1.0", "<", "1.1"),
    ("1.2", "<", "1.10"),
    ("0.2.20", ">", "0.2.3"),
    ("01.2", "=", "1.2"),
    ("20050718-r1", ">", "2.59"), // upstream
    // ... unless one of them, after a dot, starts with 0: then as strings.
    ("1.01", "<", "1.1"),
    ("1.001", "<", "1.01"),
    ("1.0", "<", "1.00"),
    ("8.2.0", "<", "8.2.001"),    // upstream
    ("8.2.0015", "<", "8.2.002"), // upstream
    // apk reads numbers into a wrapping 64-bit integer: 2^64 is 0 to it.
    ("18446744073709551616", "<", "1"),
    // Pre-release suffixes sort before the release, in this order...
    ("1.0_alpha1", "<", "1.0_beta1"),
    ("1.0_beta1", "<", "1.0_pre1"),
    ("1.0_pre1", "<", "1.0_rc1"),
    ("1.0_rc1", "<", "1.0"),
    ("1.0_rc1", "<", "1.0_rc2"),
    ("1.0_rc2", "<", "1.0_rc10"),
    ("1.0_rc1", "<", "1.0-r1"),
    ("1.0_rc1-r1", "<", "1.0"),
    ("6.0_pre1", "<", "6.0"),                                          // upstream
    ("0.1.0_alpha_pre2", "<", "0.1.0_alpha"),                          // upstream
    ("2.9.11_pre20051101-r3", ">", "2.9.11_pre20051101"),              // upstream
    ("1.0.0_pre20191002222144-r0", "<", "1.0.0_pre20210530193627-r0"), // upstream
    // ... post-release suffixes after it, in this order.
    ("1.0_cvs1", ">", "1.0"),
    ("1.0_cvs1", "<", "1.0_svn1"),
    ("1.0_svn1", "<", "1.0_git1"),
    ("1.0_git1", "<", "1.0_hg1"),
    ("1.0_hg1", "<", "1.0_p1"),
    ("1.0_git20240101", "<", "1.0_p1"),
    ("1.0_p9", "<", "1.0_p10"),
    ("3.1_p16", "<", "3.1_p17"), // upstream
    ("6.0_p1", ">", "6.0"),      // upstream
    // A suffix without a number sorts before the same suffix with one.
    ("1.0_alpha", "<", "1.0_alpha1"),
    ("1.2.3_alpha1_p2", ">", "1.2.3_alpha1"),
    // When one version has a token the other lacks, the token that comes
    // earlier in the grammar (number, letter, suffix, hash, revision) wins.
    ("1.0", "<", "1.0.1"),
    ("1.0a", ">", "1.0"),
    ("1.0a", "<", "1.0b"),
    ("1.0a", "<", "1.0.1"),
    ("1.1.1w-r1", ">", "1.1.1v-r3"),
    ("1.1.1w", ">", "1.1.1-r5"),
    ("1.0_p1", "<", "1.0.1"),
    ("1.0_p1", ">", "1.0-r5"),
    ("1.0~abc", ">", "1.0"),
    ("1.0~abc", ">", "1.0-r1"),
    ("1.0-r10", "<", "1.0.1"),
    // Commit hashes compare as strings, revisions as numbers.
    ("1.0~1234", "<", "1.0~2345"),       // upstream
    ("1.0~1234-r1", "<", "1.0~2345-r0"), // upstream
    ("1.0~1234-r1", ">", "1.0~1234-r0"), // upstream
    ("1.0-r0", ">", "1.0"),
    ("1.0-r1", "<", "1.0-r2"),
    ("1.0-r9", "<", "1.0-r10"),
];

#[test]
fn table_holds() {
    check_table(Scheme::Apk, TABLE);
}

#[test]
fn order_is_total_over_the_table() {
    let parsed: Vec<apk::Version> = versions(TABLE).iter().map(|v| v.parse().unwrap()).collect();
    check_total_order(&parsed, Ord::cmp);
}
