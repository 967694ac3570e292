//! The built component, called through the real `caulk` binary with the
//! requests serialised as the host serialises them.

mod support;

use std::path::Path;

use caulk_plugin_pip::Pip;
use caulk_sdk::Updater;
use caulk_sdk::testing::{Host as Caulk, build_component};
use caulk_sdk::update::{PatchLevel, Phase, ProbeRequest};
use support::{DataHost, Host, data, mini, options, plan_request, update, verify_request};

fn caulk() -> Caulk {
    Caulk::find()
        .or_else(|_| {
            // The workspace's own debug build, when this crate builds elsewhere.
            let beside = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target/debug/caulk");
            if beside.is_file() { Ok(Caulk::at(beside)) } else { Err(()) }
        })
        .expect("a caulk binary (CAULK_BIN, the workspace's target dir, or PATH)")
}

#[test]
fn the_component_probes_plans_and_verifies_through_caulk() {
    let wasm = build_component(env!("CARGO_MANIFEST_DIR")).expect("the plugin builds for wasm32-wasip2");
    let caulk = caulk();
    let host = DataHost::new(mini());
    let updates = vec![
        update("urllib3", "1.26.5", &["1.26.18", "2.0.7"], None),
        update("requests", "2.25.1", &["2.31.0"], Some("/usr/local/lib/python3.11/dist-packages")),
        update("idna", "3.6", &["3.7"], Some("/opt/legacy/lib/python3.9/site-packages")),
    ];
    let options = options(PatchLevel::Minor);

    let questions = caulk
        .probe(
            &wasm,
            &ProbeRequest {
                phase: Phase::Plan,
                target: host.target(),
                updates: updates.clone(),
                selected: Vec::new(),
                options: options.clone(),
                facts: Vec::new(),
            },
        )
        .unwrap();
    assert_eq!(questions.len(), 6);

    // Facts gathered natively; the component must plan exactly as the
    // native build does (dry runs as recorded).
    let request = plan_request(&host, updates.clone(), options.clone());
    let plan = caulk.plan(&wasm, &request).unwrap();
    assert_eq!(plan, Pip::plan(&request).unwrap(), "the component plans as the native build does");
    assert!(plan.selected.iter().any(|s| s.name == "charset-normalizer"), "{plan:#?}");

    let patched = DataHost::new(data("roots/bookworm-python-patched"));
    let verify = verify_request(&patched, &plan, &updates, &options, Vec::new());
    let outcomes = caulk.verify(&wasm, &verify).unwrap();
    assert_eq!(outcomes, Pip::verify(&verify).unwrap());
    assert!(!outcomes.is_empty());

    // A typed error crosses the component boundary with its hint.
    let mut bad = request;
    bad.updates[0].name = "--index-url=https://evil.example/simple".into();
    let err = caulk.plan(&wasm, &bad).unwrap_err().to_string();
    assert!(err.contains("not a Python distribution name"), "{err}");
}
