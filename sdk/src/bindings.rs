//! Generated bindings. Both plugin worlds live here; with
//! `pub_export_macro` wit-bindgen embeds a world's exports only where its
//! export macro is used, so a scanner is never asked to export `plan`.

#![allow(unsafe_code)] // the generated glue is unsafe by nature
#![allow(clippy::pedantic, missing_docs, rust_2018_idioms)]

pub mod common {
    wit_bindgen::generate!({
        path: "wit/v0.2",
        world: "common",
        additional_derives: [PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize],
        generate_unused_types: true,
    });
}

pub mod scanner {
    wit_bindgen::generate!({
        path: "wit/v0.2",
        world: "scanner-plugin",
        with: {
            "caulk:plugin/types@0.2.0": crate::bindings::common::caulk::plugin::types,
            "caulk:plugin/host@0.2.0": crate::bindings::common::caulk::plugin::host,
        },
        pub_export_macro: true,
        export_macro_name: "__export_scanner_world",
        default_bindings_module: "caulk_sdk::__private::scanner",
    });
}

pub mod updater {
    wit_bindgen::generate!({
        path: "wit/v0.2",
        world: "updater-plugin",
        with: {
            "caulk:plugin/types@0.2.0": crate::bindings::common::caulk::plugin::types,
            "caulk:plugin/host@0.2.0": crate::bindings::common::caulk::plugin::host,
        },
        additional_derives: [PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize],
        pub_export_macro: true,
        export_macro_name: "__export_updater_world",
        default_bindings_module: "caulk_sdk::__private::updater",
    });
}
