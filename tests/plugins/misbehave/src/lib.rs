//! Misbehaves on purpose: `parse` traps, loops forever or allocates without
//! bound depending on the report, so the host's limits can be tested on a
//! real component.

use caulk_sdk::Scanner;
use caulk_sdk::types::{Error, Findings, PackageClass, PluginInfo};

pub struct Misbehave;

impl Scanner for Misbehave {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "misbehave".into(),
            version: "0.1.0".into(),
            summary: "Traps, loops or exhausts memory on request".into(),
            handles: vec!["misbehave".into()],
            os_families: Vec::new(),
            class: PackageClass::Os,
        }
    }

    fn sniff(report: &[u8]) -> u8 {
        if report.starts_with(b"misbehave:") { 100 } else { 0 }
    }

    fn parse(report: &[u8]) -> Result<Findings, Error> {
        match report.strip_prefix(b"misbehave:").unwrap_or(report) {
            b"trap" => panic!("deliberate trap for the host's tests"),
            b"loop" => {
                let mut n: u64 = 0;
                loop {
                    n = std::hint::black_box(n.wrapping_add(1));
                }
            }
            b"alloc" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    hoard.push(vec![1u8; 16 << 20]);
                    std::hint::black_box(&hoard);
                }
            }
            b"log" => {
                caulk_sdk::log::warn("a line from the plugin");
                Ok(empty())
            }
            _ => Ok(empty()),
        }
    }
}

fn empty() -> Findings {
    Findings { scanner: None, artifact: None, os: None, platform: None, findings: Vec::new() }
}

// The component exports exist only in the wasm build: their symbol names
// (`caulk:plugin/scanner@0.1.0#parse`) cannot be linked into a host cdylib,
// and `cargo build` at the workspace root builds this crate for the host too.
#[cfg(target_family = "wasm")]
caulk_sdk::export_scanner!(Misbehave);
