//! The built component, called through the real `caulk` binary with the
//! requests serialised as the host serialises them.

mod support;

use std::path::Path;

use caulk_sdk::testing::{Host, build_component};
use caulk_sdk::update::{OutcomeStatus, Phase, ProbeRequest, UpdateMode};
use support::{Root, options, plan_request, read_data, step_result, upgradable_updates, verify_request};

fn host() -> Host {
    Host::find()
        .or_else(|_| {
            // The workspace's own debug build, when this crate builds elsewhere.
            let beside = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/caulk");
            if beside.is_file() { Ok(Host::at(beside)) } else { Err(()) }
        })
        .expect("a caulk binary (CAULK_BIN, the workspace's target dir, or PATH)")
}

#[test]
fn the_component_probes_plans_and_verifies_through_caulk() {
    let wasm = build_component(env!("CARGO_MANIFEST_DIR")).expect("the plugin builds for wasm32-wasip2");
    let host = host();
    let root = Root::mini("bookworm");

    let questions = host
        .probe(
            &wasm,
            &ProbeRequest {
                phase: Phase::Plan,
                target: root.target(),
                updates: Vec::new(),
                selected: Vec::new(),
                options: options(UpdateMode::Report),
                facts: Vec::new(),
            },
        )
        .unwrap();
    assert_eq!(questions.len(), 5);

    let updates = upgradable_updates(&read_data("bookworm-upgradable.txt"));
    let request = plan_request(&root, updates, options(UpdateMode::Report));
    let plan = host.plan(&wasm, &request).unwrap();
    assert_eq!(plan, caulk_plugin_apt_native_plan(&request), "the component plans as the native build does");

    let steps = vec![
        step_result("apt-get update: refresh the package indexes", 0, None),
        step_result(&plan.steps[1].summary, 0, None),
        step_result(&plan.steps[2].summary, 0, Some("install-ok.txt")),
    ];
    let outcomes = host
        .verify(&wasm, &verify_request(&root, &plan, "status/bookworm-after-install.status", steps))
        .unwrap();
    let openssl = outcomes.iter().find(|o| o.name == "openssl").unwrap();
    assert_eq!(openssl.status, OutcomeStatus::Patched);

    // A typed error crosses the component boundary with its hint.
    let mut bad = request;
    bad.updates[0].name = "-oAPT::Get::AllowUnauthenticated=1".into();
    let err = host.plan(&wasm, &bad).unwrap_err().to_string();
    assert!(err.contains("not a Debian package name"), "{err}");
}

fn caulk_plugin_apt_native_plan(request: &caulk_sdk::update::PlanRequest) -> caulk_sdk::update::PatchPlan {
    use caulk_sdk::Updater;
    caulk_plugin_apt::Apt::plan(request).unwrap()
}
