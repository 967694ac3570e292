use caulk_sdk::Scanner;
use caulk_sdk::types::{Error, Findings, PackageClass, PluginInfo};

pub struct Csv;

impl Scanner for Csv {
    fn info() -> PluginInfo {
        PluginInfo {
            name: "csv".into(),
            version: "0.1.0".into(),
            summary: "test".into(),
            handles: vec!["csv".into()],
            os_families: vec![],
            class: PackageClass::Os,
        }
    }
    fn parse(_report: &[u8]) -> Result<Findings, Error> {
        caulk_sdk::log::info("parsing");
        Ok(Findings {
            scanner: None,
            artifact: None,
            os: None,
            platform: None,
            findings: vec![],
        })
    }
}

caulk_sdk::export_scanner!(Csv);
