//! A real apt upgrade (network: deb.debian.org) in both modes, on a
//! Debian 12 root fs installed from `bookworm` only, with bookworm-security
//! added in a second layer.

mod common;

use std::collections::BTreeMap;

use caulk_exec::{CancelToken, Error, Mode, Probe, Session, Step, Stream};
use common::{
    apt_caches, apt_steps, apt_upgrade_steps, describe_diff, executor, fixture, host_mounts_under, workdir,
};

fn version(session: &Session<'_>, package: &str) -> String {
    let out = session.probe(&Probe::new(["dpkg-query", "-W", "-f", "${Version}", package])).unwrap();
    assert!(out.success(), "{}", out.stderr_text());
    out.stdout_text()
}

#[test]
fn apt_upgrade_from_bookworm_security_in_both_modes() {
    let fx = fixture();
    let work = workdir();
    let mut usr_trees = Vec::new();
    for mode in [Mode::Overlay, Mode::Copy] {
        let exec = executor(work.path(), mode);
        let mut session = exec.prepare(&fx.layers(), CancelToken::new()).unwrap();
        let before = version(&session, "openssl");
        assert_eq!(before, version(&session, "libssl3"));

        let mut lines = 0;
        let outcomes = session
            .run_steps(&apt_upgrade_steps(true), &mut |_, _, _| lines += 1)
            .unwrap_or_else(|e| panic!("{mode:?}: {e}"));
        assert!(outcomes.iter().all(caulk_exec::StepOutcome::success) && lines > 5);

        let after = version(&session, "openssl");
        assert_eq!(after, version(&session, "libssl3"));
        let newer =
            session.probe(&Probe::new(["dpkg", "--compare-versions", &after, "gt", &before])).unwrap();
        assert!(newer.success(), "{mode:?}: {after} is not newer than {before}");
        let runs = session.probe(&Probe::new(["openssl", "version"])).unwrap();
        assert!(runs.success() && runs.stdout_text().starts_with("OpenSSL 3.0."), "{}", runs.stderr_text());
        let status = String::from_utf8(session.reader().read("/var/lib/dpkg/status").unwrap()).unwrap();
        let stanza = status.split("\n\n").find(|s| s.starts_with("Package: openssl\n")).unwrap();
        assert!(stanza.contains(&format!("\nVersion: {after}\n")), "{stanza}");

        let diff = session.finish().unwrap();
        let listing = describe_diff(diff.path());
        assert!(listing["usr/bin/openssl"].starts_with("file "));
        assert!(listing["var/lib/dpkg/status"].starts_with("file "));
        // Indexes and packages went to the host-side caches.
        let leaked: Vec<_> = listing
            .keys()
            .filter(|k| {
                k.starts_with("var/lib/apt/lists/")
                    || std::path::Path::new(k).extension().is_some_and(|e| e == "deb")
            })
            .collect();
        assert!(leaked.is_empty(), "{mode:?}: {leaked:?}");
        assert!(
            !listing.contains_key("etc/resolv.conf")
                && !listing.contains_key("etc/ssl/certs/ca-certificates.crt")
        );
        let usr: BTreeMap<String, String> =
            listing.into_iter().filter(|(k, _)| k.starts_with("usr/")).collect();
        usr_trees.push(usr);
    }
    // The packages' files are the same whichever mode installed them.
    assert_eq!(usr_trees[0], usr_trees[1]);
    let (_, archives) = apt_caches();
    assert!(
        std::fs::read_dir(archives)
            .unwrap()
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("openssl_"))
    );
    assert!(host_mounts_under(work.path()).is_empty());
}

/// ca-certificates' postinst renames a new bundle over the old one, which
/// a read-only mount of the host's bundle would refuse: the host's bundle
/// is only mounted into network steps, so the offline install step can.
#[test]
fn a_full_upgrade_replaces_the_image_ca_bundle() {
    let fx = fixture();
    let work = workdir();
    let exec = executor(work.path(), Mode::Overlay);
    let mut session = exec.prepare(&fx.layers(), CancelToken::new()).unwrap();
    let image_bundle = session.reader().read("/etc/ssl/certs/ca-certificates.crt").unwrap();
    session.run_steps(&apt_steps(true, &["upgrade"]), &mut |_, _, _| {}).unwrap_or_else(|e| panic!("{e}"));
    assert!(
        version(&session, "ca-certificates").starts_with("2025"),
        "{}",
        version(&session, "ca-certificates")
    );
    let diff = session.finish().unwrap();
    let bundle = std::fs::read(diff.path().join("etc/ssl/certs/ca-certificates.crt")).unwrap();
    assert_ne!(bundle, image_bundle, "the package regenerated the bundle");
    assert_ne!(bundle, std::fs::read(caulk_exec::DEFAULT_CA_BUNDLE).unwrap(), "the host's bundle leaked");
    assert!(String::from_utf8_lossy(&bundle).contains("-----BEGIN CERTIFICATE-----"));
}

#[test]
fn apt_needs_the_network_it_asks_for() {
    let fx = fixture();
    let work = workdir();
    let exec = executor(work.path(), Mode::Overlay);
    let mut session = exec.prepare(&fx.layers(), CancelToken::new()).unwrap();
    let scratch_lists = tempfile::tempdir_in(work.path()).unwrap();
    std::fs::create_dir(scratch_lists.path().join("partial")).unwrap();
    // apt-get update exits 0 even when every fetch fails; `--error-on=any`
    // makes it say so.
    let offline = Step::new(
        "refresh package indexes",
        ["apt-get", "--error-on=any", "-o", "Acquire::Retries=0", "update"],
    )
    .cache(scratch_lists.path(), "/var/lib/apt/lists");
    let mut stderr = String::new();
    let err = session
        .run_step(&offline, &mut |s, l| {
            if s == Stream::Stderr {
                stderr.push_str(l);
            }
        })
        .unwrap_err();
    let Error::StepFailed { outcome, .. } = err else { panic!("{err}") };
    assert_eq!(outcome.exit_code, Some(100));
    assert!(
        stderr.contains("Temporary failure resolving") || stderr.contains("Could not resolve"),
        "{stderr}"
    );

    let online = Step { network: true, ..offline };
    session.run_step(&online, &mut |_, _| {}).unwrap();
    let lists: Vec<_> =
        std::fs::read_dir(scratch_lists.path()).unwrap().flatten().map(|e| e.file_name()).collect();
    assert!(
        lists
            .iter()
            .any(|n| n.to_string_lossy().ends_with("_Packages") || n.to_string_lossy().contains("Packages.")),
        "{lists:?}"
    );
    let diff = session.finish().unwrap();
    let listing = describe_diff(diff.path());
    assert!(listing.keys().all(|k| !k.starts_with("var/lib/apt/lists/")), "{listing:#?}");
}
