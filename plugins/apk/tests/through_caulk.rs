//! The built component, called through the real `caulk` binary with the
//! requests serialised as the host serialises them.

mod support;

use std::path::Path;

use caulk_plugin_apk::Apk;
use caulk_sdk::Updater;
use caulk_sdk::testing::{Host, build_component};
use caulk_sdk::update::{OutcomeStatus, Phase, ProbeRequest, QuestionKind, StepResult, UpdateMode};
use support::{
    HostApk, Root, options, plan_request, read_data, step_result, update, upgraded, verify_request,
};

fn host() -> Host {
    Host::find()
        .or_else(|_| {
            let beside = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/caulk");
            if beside.is_file() { Ok(Host::at(beside)) } else { Err(()) }
        })
        .expect("a caulk binary (CAULK_BIN, the workspace's target dir, or PATH)")
}

#[test]
fn the_component_probes_plans_and_verifies_through_caulk() {
    let wasm = build_component(env!("CARGO_MANIFEST_DIR")).expect("the plugin builds for wasm32-wasip2");
    let host = host();
    let root = Root::mini("alpine-3.19");
    let probe = |facts| ProbeRequest {
        phase: Phase::Plan,
        target: root.target(),
        updates: Vec::new(),
        selected: Vec::new(),
        options: options(UpdateMode::Report),
        facts,
    };
    assert_eq!(host.probe(&wasm, &probe(Vec::new())).unwrap().len(), 6);

    let updates = vec![
        update("libssl3", "3.1.4-r1", &["3.1.4-r5"]),
        update("busybox", "1.36.1-r15", &["1.36.1-r19"]),
        update("zlib", "1.3-r2", &["1.3.1-r0"]),
    ];
    let request = plan_request(&root, updates, options(UpdateMode::Report));
    let plan = host.plan(&wasm, &request).unwrap();
    assert_eq!(plan, Apk::plan(&request).unwrap(), "the component plans as the native build does");
    assert_eq!(plan.steps.len(), 5);

    let steps: Vec<StepResult> = plan.steps.iter().map(|s| step_result(&s.summary, 0, None)).collect();
    let before = read_data("roots/alpine-3.19/lib/apk/db/installed");
    let after = upgraded(&before, &read_data("APKINDEX-v3.19-main"), &["libssl3", "busybox"]);
    let world = read_data("roots/alpine-3.19/etc/apk/world");
    let outcomes = host.verify(&wasm, &verify_request(&root, &plan, &after, &world, steps)).unwrap();
    let statuses: Vec<(&str, &OutcomeStatus)> =
        outcomes.iter().map(|o| (o.name.as_str(), &o.status)).collect();
    assert_eq!(statuses, [("libssl3", &OutcomeStatus::Patched), ("busybox", &OutcomeStatus::Patched)]);

    // Without apk in the image: the second round runs the host's apk.
    let wolfi = Root::mini("wolfi-static").with_host_apk(HostApk::Present);
    let first = host.probe(&wasm, &ProbeRequest { target: wolfi.target(), ..probe(Vec::new()) }).unwrap();
    let facts = first.iter().map(|q| wolfi.answer(q)).collect();
    let second = host.probe(&wasm, &ProbeRequest { target: wolfi.target(), ..probe(facts) }).unwrap();
    assert!(matches!(&second[0].kind, QuestionKind::Run(c) if c.argv == ["apk", "--version"]), "{second:?}");

    // A typed error crosses the component boundary with its hint.
    let mut bad = request;
    bad.updates[0].name = "--allow-untrusted".into();
    let err = host.plan(&wasm, &bad).unwrap_err().to_string();
    assert!(err.contains("not an apk package name"), "{err}");
}
