//! The epoch helper on real scanner findings, cross-checked with dpkg and
//! rpm: a fixed version without an epoch is read with the installed one's.

mod version_common;

use std::cmp::Ordering;

use caulk_sdk::version::{Scheme, compare, is_fixed_by, with_epoch_of};
use version_common::{dpkg_compare, rpm_compare_all};

/// (installed, fixed as the scanner reports it, fixed as it must be read,
/// already fixed?)
type Finding = (&'static str, &'static str, &'static str, bool);

const DEB: &[Finding] = &[
    // Ubuntu's tracker, quoted in the issue: bsdutils.
    ("1:2.37.2-4ubuntu3", "2.37.2-4ubuntu3.4", "1:2.37.2-4ubuntu3.4", false),
    ("1:2.37.2-4ubuntu3.4", "2.37.2-4ubuntu3.4", "1:2.37.2-4ubuntu3.4", true),
    ("1:2.37.2-4ubuntu3.5", "2.37.2-4ubuntu3.4", "1:2.37.2-4ubuntu3.4", true),
    // trivy-debian-flask-python-app-1.json (Trivy 0.74, Debian 13): bsdutils.
    ("1:2.41-5", "2.41.3-1", "1:2.41.3-1", false),
    ("1:2.41-5", "2.41.5-0+deb13u1", "1:2.41.5-0+deb13u1", false),
    // Same report, `login`: Trivy lists the util-linux source version as the
    // fix while the binary's version says "4.16.0 really 2.41". With the
    // epoch restored dpkg's order calls it fixed (4.16.0 > 2.41.5); only
    // the package index's candidate, not this comparison, can tell.
    ("1:4.16.0-2+really2.41-5", "2.41.5-0+deb13u1", "1:2.41.5-0+deb13u1", true),
    // grype-debian-multiscanner-1.json (Grype 0.97, Debian 12): the fixed
    // version carries the epoch, which is kept.
    ("1:4.13+dfsg1-1+b1", "1:4.13+dfsg1-1+deb12u1", "1:4.13+dfsg1-1+deb12u1", false),
    ("1:2.66-4", "1:2.66-4+deb12u1", "1:2.66-4+deb12u1", false),
    // No epoch installed: nothing to carry over.
    ("2.36.1-8+deb11u1", "2.36.1-8+deb11u2", "2.36.1-8+deb11u2", false),
    // An explicit epoch in the fixed version is respected, even `0:`.
    ("1:1.0-1", "0:1.1-1", "0:1.1-1", true),
    ("1:1.0-1", "2:0.1-1", "2:0.1-1", false),
];

const RPM: &[Finding] = &[
    // trivy-redhat-anteather-1.json / grype-redhat-anteather-1.json (RHEL 7):
    // these fixed versions carry their epoch.
    ("1:1.10.24-13.el7_6", "1:1.10.24-14.el7_8", "1:1.10.24-14.el7_8", false),
    ("1:1.0.2k-16.el7_6.1", "1:1.0.2k-19.el7", "1:1.0.2k-19.el7", false),
    ("2:7.4.160-5.el7", "2:7.4.160-6.el7_6", "2:7.4.160-6.el7_6", false),
    // The same fixes as trackers that drop the epoch list them.
    ("1:1.10.24-13.el7_6", "1.10.24-14.el7_8", "1:1.10.24-14.el7_8", false),
    ("1:1.0.2k-25.el7_9", "1.0.2k-19.el7", "1:1.0.2k-19.el7", true),
    ("7:1.02.149-10.el7_6.3", "1.02.149-10.el7_6.3", "7:1.02.149-10.el7_6.3", true),
    // Explicit epochs are respected.
    ("1:1.0-1", "0:1.1-1", "0:1.1-1", true),
    ("1.0-1", "1.0-2", "1.0-2", false),
];

fn check(scheme: Scheme, findings: &[Finding]) {
    for &(installed, fixed, read_as, already) in findings {
        assert_eq!(with_epoch_of(scheme, installed, fixed).unwrap(), read_as, "{installed} / {fixed}");
        assert_eq!(is_fixed_by(scheme, installed, fixed).unwrap(), already, "{installed} / {fixed}");
        assert_eq!(
            compare(scheme, installed, read_as).unwrap() != Ordering::Less,
            already,
            "{installed} / {read_as}"
        );
    }
}

#[test]
fn deb_fixed_versions_take_the_installed_epoch() {
    check(Scheme::Deb, DEB);
}

#[test]
fn rpm_fixed_versions_take_the_installed_epoch() {
    check(Scheme::Rpm, RPM);
}

#[test]
fn dpkg_agrees_on_the_findings() {
    for &(installed, _, read_as, already) in DEB {
        let dpkg = dpkg_compare(installed, read_as).expect("dpkg accepts both");
        assert_eq!(dpkg != Ordering::Less, already, "dpkg: {installed} vs {read_as}");
    }
}

#[test]
fn rpm_agrees_on_the_findings() {
    let pairs: Vec<(&str, &str)> = RPM.iter().map(|(i, _, r, _)| (*i, *r)).collect();
    for ((installed, _, read_as, already), answer) in RPM.iter().zip(rpm_compare_all(&pairs)) {
        assert_eq!(answer != Ordering::Less, *already, "rpm: {installed} vs {read_as}");
    }
}

#[test]
fn literal_reading_would_be_wrong() {
    // Without the helper, every epoch-1 version looks newer than the fix.
    assert_eq!(compare(Scheme::Deb, "1:2.37.2-4ubuntu3", "2.37.2-4ubuntu3.4").unwrap(), Ordering::Greater);
}

#[test]
fn apk_and_python_versions_are_unchanged() {
    assert_eq!(with_epoch_of(Scheme::Apk, "1.2-r0", " 1.3-r1 ").unwrap(), "1.3-r1");
    assert_eq!(with_epoch_of(Scheme::Python, "1!1.0", "2.0").unwrap(), "2.0");
    assert!(!is_fixed_by(Scheme::Python, "1.0", "1.0.post1").unwrap());
    assert!(is_fixed_by(Scheme::Apk, "1.1.1w-r1", "1.1.1v-r0").unwrap());
}

#[test]
fn errors_name_the_bad_version() {
    let err = is_fixed_by(Scheme::Deb, "1:2.0", "1.0-").unwrap_err().to_string();
    assert_eq!(err, "invalid deb version \"1.0-\": the revision is empty");
    let err = with_epoch_of(Scheme::Rpm, "", "1.0").unwrap_err().to_string();
    assert_eq!(err, "invalid rpm version \"\": it is empty");
    let err = is_fixed_by(Scheme::Apk, "1.0_foo", "1.0").unwrap_err().to_string();
    assert!(err.starts_with("invalid apk version \"1.0_foo\": unknown suffix `_foo`"), "{err}");
}
