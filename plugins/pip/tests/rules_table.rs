//! Copa's `--library-patch-level` rules as a table: every level, single and
//! comma-listed fixed versions, certifi, fixes below and above what is
//! installed. Expectations follow Copa's documented behaviour (issue 6), not
//! the implementation.

use caulk_plugin_pip::rules::{Finding, Level, Pick, pick};

fn v(s: &str) -> caulk_plugin_pip::name::Version {
    s.parse().unwrap()
}

/// `findings`: one `&[...]` per finding (several versions: a comma list).
fn decide(installed: &str, findings: &[&[&str]], level: Level, certifi: bool) -> Result<String, String> {
    let findings: Vec<Finding> = findings
        .iter()
        .enumerate()
        .map(|(i, f)| Finding { vulnerability: format!("V{i}"), fixed: f.iter().map(|x| v(x)).collect() })
        .collect();
    match pick(&v(installed), &findings, level, certifi) {
        Pick::Chosen { order, .. } => Ok(order[0].to_string()),
        Pick::AlreadyFixed { .. } => Err("already fixed".to_owned()),
        Pick::OutOfReach { .. } => Err("out of reach".to_owned()),
    }
}

use Level::{Major, Minor, Patch};

/// installed, findings, level, certifi, expected.
type Row =
    (&'static str, &'static [&'static [&'static str]], Level, bool, Result<&'static str, &'static str>);

#[rustfmt::skip]
const TABLE: &[Row] = &[
    // installed, findings, level, certifi, expected

    // patch: same major.minor only, the highest such fix.
    ("2.6.0", &[&["2.6.3"]],                     Patch, false, Ok("2.6.3")),
    ("2.6.0", &[&["2.6.3"], &["2.6.5"]],         Patch, false, Ok("2.6.5")),
    ("2.6.0", &[&["2.7.0"]],                     Patch, false, Err("out of reach")),
    ("2.6.0", &[&["3.0.0"]],                     Patch, false, Err("out of reach")),
    ("2.6.0", &[&["2.6.3", "3.0.1"]],            Patch, false, Ok("2.6.3")),
    ("1.26.5", &[&["1.26.18", "2.0.7"]],         Patch, false, Ok("1.26.18")),
    ("1.26.5", &[&["1.26.17", "2.0.6"], &["1.26.18", "2.0.7"]], Patch, false, Ok("1.26.18")),
    ("2.0.6", &[&["1.26.18", "2.0.7"]],          Patch, false, Ok("2.0.7")),
    // minor: a patch release preferred, else the highest fix of the major.
    ("2.6.0", &[&["2.6.1"], &["2.7.0"]],         Minor, false, Ok("2.6.1")),
    ("2.6.0", &[&["2.7.0"]],                     Minor, false, Ok("2.7.0")),
    ("2.6.0", &[&["2.7.0"], &["2.9.2"]],         Minor, false, Ok("2.9.2")),
    ("2.6.0", &[&["3.0.0"]],                     Minor, false, Err("out of reach")),
    ("2.6.0", &[&["2.8.0", "3.0.0"]],            Minor, false, Ok("2.8.0")),
    ("2.25.1", &[&["2.31.0"]],                   Minor, false, Ok("2.31.0")),
    // major with a comma list: patch over minor over major.
    ("1.26.5", &[&["1.26.18", "2.0.7"]],         Major, false, Ok("1.26.18")),
    ("2.6.0", &[&["2.9.0", "3.1.0"]],            Major, false, Ok("2.9.0")),
    ("2.6.0", &[&["3.1.0", "4.0.0"]],            Major, false, Ok("4.0.0")),
    ("2.6.0", &[&["2.6.4", "2.8.0", "3.0.0"]],   Major, false, Ok("2.6.4")),
    // major without one: the highest fix, so every vulnerability is fixed.
    ("2.6.0", &[&["2.6.3"], &["3.0.1"]],         Major, false, Ok("3.0.1")),
    ("2.6.0", &[&["3.0.1"]],                     Major, false, Ok("3.0.1")),
    ("1.26.5", &[&["2.2.2"]],                    Major, false, Ok("2.2.2")),
    // certifi: its highest fix at every level, comma list or not.
    ("2022.12.7", &[&["2023.7.22"]],             Patch, true, Ok("2023.7.22")),
    ("2023.5.7", &[&["2023.7.22"], &["2024.7.4"]], Patch, true, Ok("2024.7.4")),
    ("2023.5.7", &[&["2023.7.22", "2024.7.4"]],  Minor, true, Ok("2024.7.4")),
    ("2023.5.7", &[&["2023.7.22", "2024.7.4"]],  Major, true, Ok("2024.7.4")),
    // Fixed versions at or below what is installed are no candidates.
    ("2.6.5", &[&["2.6.3"]],                     Patch, false, Err("already fixed")),
    ("2.6.5", &[&["2.6.5"]],                     Major, false, Err("already fixed")),
    ("3.0.0", &[&["1.26.18", "2.0.7"]],          Major, false, Err("already fixed")),
    ("2024.7.4", &[&["2023.7.22"]],              Major, true, Err("already fixed")),
    // Some below, some above: only those above count.
    ("2.6.4", &[&["2.6.3"], &["2.6.6"]],         Patch, false, Ok("2.6.6")),
    ("1.26.18", &[&["1.26.17", "2.0.6"], &["1.26.19", "2.2.2"]], Patch, false, Ok("1.26.19")),
    ("1.26.19", &[&["1.26.17", "2.0.6"], &["2.6.0"]], Patch, false, Err("out of reach")),
    ("1.26.19", &[&["1.26.17", "2.0.6"], &["2.6.0"]], Major, true, Ok("2.6.0")),
    // PEP 440: pre-releases, post releases, padding.
    ("2.6.0", &[&["2.6.1rc1"]],                  Patch, false, Ok("2.6.1rc1")),
    ("2.6.0", &[&["2.6.0.post1"]],               Patch, false, Ok("2.6.0.post1")),
    ("2.6", &[&["2.6.0"]],                       Major, false, Err("already fixed")),
    ("2", &[&["2.1"]],                           Patch, false, Err("out of reach")),
    ("2", &[&["2.1"]],                           Minor, false, Ok("2.1")),
];

#[test]
fn the_patch_level_table() {
    let mut failures = Vec::new();
    for (installed, findings, level, certifi, expected) in TABLE {
        let got = decide(installed, findings, *level, *certifi);
        let expected = expected.map(str::to_owned).map_err(str::to_owned);
        if got != expected {
            failures.push(format!(
                "{installed} {findings:?} {level:?} certifi={certifi}: expected {expected:?}, got {got:?}"
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} rows wrong:\n{}",
        failures.len(),
        TABLE.len(),
        failures.join("\n")
    );
}

#[test]
fn fall_backs_follow_the_preference_order() {
    let findings = vec![
        Finding { vulnerability: "A".into(), fixed: vec![v("1.26.18"), v("2.0.7")] },
        Finding { vulnerability: "B".into(), fixed: vec![v("1.26.17")] },
    ];
    let Pick::Chosen { order, rule, passed_over } = pick(&v("1.26.5"), &findings, Major, false) else {
        panic!("a choice")
    };
    let order: Vec<String> = order.iter().map(ToString::to_string).collect();
    assert_eq!(order, ["1.26.18", "1.26.17", "2.0.7"]);
    assert!(rule.contains("patch over minor over major"), "{rule}");
    let reasons: Vec<(String, String)> =
        passed_over.iter().map(|(v, r)| (v.to_string(), r.clone())).collect();
    assert!(
        reasons.iter().any(|(v, r)| v == "2.0.7" && r.contains("the patch fix 1.26.18 is preferred")),
        "{reasons:?}"
    );

    let Pick::OutOfReach { reason, passed_over } =
        pick(&v("2.6.0"), &[Finding { vulnerability: "C".into(), fixed: vec![v("3.0.1")] }], Patch, false)
    else {
        panic!("out of reach")
    };
    assert!(
        reason.contains("--library-patch-level patch")
            && reason.contains("2.6.x only")
            && reason.contains("3.0.1 (major)"),
        "{reason}"
    );
    assert_eq!(passed_over.len(), 1);
}
