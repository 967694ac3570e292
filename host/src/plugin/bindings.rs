//! Host bindings, one module per supported WIT version. The newest version's
//! types double as caulk's model of findings, plans and outcomes; a plugin
//! built against an older version gets adapted to them (see `adapt`).

#![allow(clippy::pedantic)] // generated code

/// `caulk:plugin@0.1.0`.
pub mod v0_1 {
    wasmtime::component::bindgen!({
        path: "wit/v0.1",
        world: "scanner-plugin",
        additional_derives: [serde::Serialize, serde::Deserialize, PartialEq, Eq, Hash],
    });

    /// The updater world; shares `types` and `host` with the scanner world.
    pub mod updater {
        wasmtime::component::bindgen!({
            path: "wit/v0.1",
            world: "updater-plugin",
            with: {
                "caulk:plugin/types@0.1.0": super::caulk::plugin::types,
                "caulk:plugin/host@0.1.0": super::caulk::plugin::host,
            },
            additional_derives: [serde::Serialize, serde::Deserialize, PartialEq, Eq, Hash],
        });
    }
}

/// `caulk:plugin@0.2.0`.
pub mod v0_2 {
    wasmtime::component::bindgen!({
        path: "wit/v0.2",
        world: "scanner-plugin",
        additional_derives: [serde::Serialize, serde::Deserialize, PartialEq, Eq, Hash],
    });

    /// The updater world; shares `types` and `host` with the scanner world.
    pub mod updater {
        wasmtime::component::bindgen!({
            path: "wit/v0.2",
            world: "updater-plugin",
            with: {
                "caulk:plugin/types@0.2.0": super::caulk::plugin::types,
                "caulk:plugin/host@0.2.0": super::caulk::plugin::host,
            },
            additional_derives: [serde::Serialize, serde::Deserialize, PartialEq, Eq, Hash],
        });
    }
}
