//! `caulk report`: a scanner report, normalised.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use super::GlobalArgs;
use crate::Error;
use crate::report::Report;
use crate::scan::Scanners;

/// Read a scanner report and show, per package, the fixed versions and the
/// vulnerabilities behind them.
#[derive(Debug, clap::Args)]
pub struct ReportArgs {
    /// The report file (Trivy or Grype JSON, a Copa UpdateManifest, or any
    /// format a plugin reads).
    pub file: PathBuf,

    /// The scanner plugin that reads it; by default the one that claims the
    /// file with the highest confidence. `native` reads a Copa UpdateManifest;
    /// a name without a plugin runs `copa-NAME` from PATH.
    #[arg(long, value_name = "NAME")]
    pub scanner: Option<String>,

    /// Print the `caulk.report/v1` JSON document (docs/report-json.md).
    #[arg(long)]
    pub json: bool,
}

pub fn run(args: &ReportArgs, global: &GlobalArgs) -> Result<ExitCode, Error> {
    let runtime = global.runtime()?;
    let plugins = global.plugins(&runtime)?;
    let scanners = Scanners::new(&plugins, &global.plugin_search_path(), global.allow_native_plugins);
    let scanned = scanners.scan(&args.file, args.scanner.as_deref())?;
    let grouped = crate::updates::group(&scanned.findings);
    let report = Report::new(&args.file.display().to_string(), scanned, grouped, &plugins);
    let mut out = std::io::stdout().lock();
    if args.json {
        serde_json::to_writer_pretty(&mut out, &report).map_err(|e| Error::Output(e.into()))?;
        writeln!(out).map_err(Error::Output)?;
    } else {
        out.write_all(report.render_text().as_bytes()).map_err(Error::Output)?;
    }
    Ok(ExitCode::SUCCESS)
}
