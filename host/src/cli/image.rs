//! `caulk image inspect | copy`.

use std::io::Write;
use std::process::ExitCode;

use caulk_image::{CopyOptions, ImageRef, Platform};
use clap::Subcommand;

use super::GlobalArgs;
use crate::Error;
use crate::patch::summary::counted;

#[derive(Debug, Subcommand)]
pub enum ImageCommand {
    /// Show an image's platforms, layers and configuration.
    Inspect {
        /// TRANSPORT:REF (oci:, oci-archive:, docker-archive:, docker-daemon:,
        /// docker://) or a registry reference.
        image: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Copy an image between transports, keeping its blobs byte-identical.
    ///
    /// Into an OCI layout (oci:, oci-archive:) a Docker v2 schema 2 manifest
    /// is converted to OCI media types, as skopeo does: the manifest's digest
    /// changes, config and layer bytes do not.
    Copy {
        source: String,
        destination: String,
        /// Copy only this platform (os/arch[/variant]) of a multi-platform image.
        #[arg(long, value_name = "PLATFORM")]
        platform: Vec<String>,
        /// Keep manifests byte for byte, Docker media types included (as
        /// skopeo's flag; skopeo 1.9 and podman then cannot read the image
        /// from an OCI layout).
        #[arg(long)]
        preserve_digests: bool,
    },
}

fn parse(what: &str, text: &str) -> Result<ImageRef, Error> {
    ImageRef::parse(text).map_err(|e| Error::Usage(format!("{what}: {e}")))
}

pub fn run(cmd: &ImageCommand, global: &GlobalArgs) -> Result<ExitCode, Error> {
    let transport = global.transport();
    let mut out = std::io::stdout().lock();
    match cmd {
        ImageCommand::Inspect { image, json } => {
            let reference = parse("image", image)?;
            let summary = caulk_image::inspect(&reference, &transport)
                .map_err(|e| Error::Image { image: reference.to_string(), source: Box::new(e) })?;
            if *json {
                serde_json::to_writer_pretty(&mut out, &summary).map_err(|e| Error::Output(e.into()))?;
                writeln!(out).map_err(Error::Output)?;
            } else {
                write!(out, "{summary}").map_err(Error::Output)?;
            }
        }
        ImageCommand::Copy { source, destination, platform, preserve_digests } => {
            let src = parse("source", source)?;
            let dst = parse("destination", destination)?;
            let mut options = CopyOptions { preserve_digests: *preserve_digests, ..CopyOptions::default() };
            if !platform.is_empty() {
                let platforms = platform
                    .iter()
                    .map(|p| Platform::parse(p).map_err(|e| Error::Usage(format!("--platform: {e}"))))
                    .collect::<Result<Vec<_>, _>>()?;
                options.platforms = Some(platforms);
            }
            let report = caulk_image::copy(&src, &dst, &options, &transport)
                .map_err(|e| Error::Image { image: src.to_string(), source: Box::new(e) })?;
            writeln!(
                out,
                "copied {src} to {dst}: {} copied ({}), {} already there, {} mounted; digest {}",
                counted(report.blobs_copied, "blob", "blobs"),
                counted(usize::try_from(report.bytes_copied).unwrap_or(usize::MAX), "byte", "bytes"),
                report.blobs_present,
                report.blobs_mounted,
                report.digest.map(|d| d.to_string()).unwrap_or_default()
            )
            .map_err(Error::Output)?;
            if report.converted_to_oci {
                writeln!(
                    out,
                    "converted Docker v2 schema 2 media types to OCI (--preserve-digests keeps them)"
                )
                .map_err(Error::Output)?;
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
