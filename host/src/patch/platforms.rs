//! Multi-platform images: which platforms of an index to patch, each with
//! its report; patching them, several at once; one index written with the
//! patched manifests in place of the originals and every other entry (the
//! platforms left alone, attestations, the index's annotations) as it was.

use std::path::{Path, PathBuf};
use std::time::Instant;

use caulk_exec::{CancelToken, StepOutcome, Stream};
use caulk_image::append::EditedImage;
use caulk_image::{Image, ImageRef, Platform, PlatformImage};

use super::summary::{self, PatchSummary};
use super::{Engine, Findings, Observer, PatchError, PatchRequest, Patched, dest, image_err};
use crate::model::UpdateMode;
use crate::plugin::PluginSet;
use crate::scan::Scanners;

/// What a run patches.
pub(crate) enum Chosen<'i> {
    /// One platform, the way a single-platform image is patched.
    One(&'i PlatformImage),
    /// Several platforms of an index (or platforms a report directory drives).
    Several(Vec<Target<'i>>),
}

/// A platform to patch and the report that drives it (none: update-all).
pub(crate) struct Target<'i> {
    pub image: &'i PlatformImage,
    pub report: Option<PathBuf>,
}

/// Picks the platforms: `--platform`'s, a report directory's, the one a
/// report file names, or every platform of an index without a report.
pub(crate) fn choose<'i>(
    image: &'i Image,
    request: &PatchRequest,
    findings: Option<&Findings>,
) -> Result<Chosen<'i>, PatchError> {
    let Some(findings) = findings else {
        let dir = request.report.as_deref().expect("no findings only for a report directory");
        return by_report_dir(image, request, dir).map(Chosen::Several);
    };
    let wanted = &request.platforms;
    if findings.mode == UpdateMode::Report || (image.images.len() <= 1 && wanted.len() <= 1) {
        if wanted.len() > 1 {
            return Err(PatchError::Usage(
                "a report file describes one platform: give one --platform, or -r DIR with a report per platform"
                    .into(),
            ));
        }
        let report_platform =
            findings.scanned.as_ref().and_then(|s| s.findings.platform.as_ref()).map(|p| Platform {
                os: if p.os.is_empty() { "linux".into() } else { p.os.clone() },
                architecture: p.architecture.clone(),
                variant: p.variant.clone(),
            });
        let platform = wanted.first().cloned().or(report_platform);
        if platform.is_none() && image.images.len() > 1 {
            // The host's platform would be a guess: the report may well be
            // of another (Copa's "no match for platform in manifest").
            return Err(PatchError::Usage(format!(
                "{} does not say which platform it scanned, and {} has {} platforms ({}): \
                 give --platform, or -r DIR with one report per platform",
                request.report.as_deref().unwrap_or_else(|| Path::new("the report")).display(),
                request.image,
                image.images.len(),
                listed(image.images.iter())
            )));
        }
        return Ok(Chosen::One(image.image_for(platform.as_ref()).map_err(image_err(&request.image))?));
    }
    let chosen = selected(image, request)?;
    if let [only] = chosen.as_slice() {
        return Ok(Chosen::One(only));
    }
    Ok(Chosen::Several(chosen.into_iter().map(|image| Target { image, report: None }).collect()))
}

/// The images `--platform` names (each must match one), or all of them.
fn selected<'i>(image: &'i Image, request: &PatchRequest) -> Result<Vec<&'i PlatformImage>, PatchError> {
    if request.platforms.is_empty() {
        return Ok(image.images.iter().collect());
    }
    let mut chosen: Vec<&PlatformImage> = Vec::new();
    for wanted in &request.platforms {
        let found = image.image_for(Some(wanted)).map_err(image_err(&request.image))?;
        if !chosen.iter().any(|c| std::ptr::eq(*c, found)) {
            chosen.push(found);
        }
    }
    // Index order, whatever order the flag gave.
    chosen.sort_by_key(|c| image.images.iter().position(|i| std::ptr::eq(i, *c)));
    Ok(chosen)
}

/// Copa's names for a platform's report: `linux-amd64.json`,
/// `linux-arm64-v8.json`; arm64 is found with or without its `v8`.
fn report_names(platform: &Platform) -> Vec<String> {
    let bare = format!("{}-{}", platform.os, platform.architecture);
    match (&platform.variant, platform.architecture.as_str()) {
        (Some(v), "arm64") if v == "v8" => vec![format!("{bare}-v8.json"), format!("{bare}.json")],
        (Some(v), _) => vec![format!("{bare}-{v}.json")],
        (None, "arm64") => vec![format!("{bare}.json"), format!("{bare}-v8.json")],
        (None, _) => vec![format!("{bare}.json")],
    }
}

/// One target per platform (of those `--platform` names) with a report in
/// `dir`; the others are kept as they are.
fn by_report_dir<'i>(
    image: &'i Image,
    request: &PatchRequest,
    dir: &Path,
) -> Result<Vec<Target<'i>>, PatchError> {
    let read = std::fs::read_dir(dir).map_err(|e| PatchError::Usage(format!("-r {}: {e}", dir.display())))?;
    let mut files: Vec<String> = read
        .filter_map(Result::ok)
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    files.sort();
    let mut targets = Vec::new();
    let mut used = Vec::new();
    for platform_image in selected(image, request)? {
        let names = report_names(&platform_image.platform);
        if let Some(name) = names.iter().find(|n| files.contains(n)) {
            used.push(name.clone());
            targets.push(Target { image: platform_image, report: Some(dir.join(name)) });
        } else {
            tracing::info!(
                "{}: no {} in {}; kept unpatched",
                platform_image.platform,
                names[0],
                dir.display()
            );
        }
    }
    let is_json = |f: &str| Path::new(f).extension().is_some_and(|e| e.eq_ignore_ascii_case("json"));
    for unused in files.iter().filter(|f| is_json(f) && !used.contains(f)) {
        tracing::warn!(
            "{}: names no platform being patched in {}; ignored",
            dir.join(unused).display(),
            request.image
        );
    }
    if targets.is_empty() {
        return Err(PatchError::Usage(format!(
            "{} holds no report for a platform of {} (looked for {})",
            dir.display(),
            request.image,
            selected(image, request)?
                .iter()
                .map(|i| report_names(&i.platform)[0].clone())
                .collect::<Vec<_>>()
                .join(", ")
        )));
    }
    Ok(targets)
}

fn listed<'a>(images: impl Iterator<Item = &'a PlatformImage>) -> String {
    images.map(|i| i.platform.to_string()).collect::<Vec<_>>().join(", ")
}

/// `linux/arm64: why; linux/arm/v7: why`, for the error.
pub(crate) fn failed_line(failed: &[(String, String)]) -> String {
    let listed: Vec<String> = failed.iter().map(|(p, why)| format!("{p}: {why}")).collect();
    format!("{} failed ({})", summary::counted(failed.len(), "platform", "platforms"), listed.join("; "))
}

/// Platforms patched at once when `--jobs` is not given: no more than the
/// cores, nor than memory holds steps at their `--step-memory` limit.
fn default_jobs(request: &PatchRequest) -> usize {
    let per_job = request.step_limits.memory.unwrap_or(1 << 30);
    let by_memory = crate::parallel::memory_available()
        .map_or(usize::MAX, |m| usize::try_from(m / per_job.max(1)).unwrap_or(usize::MAX).max(1));
    crate::parallel::cores().min(by_memory).max(1)
}

/// Logs a platform's progress with its name in front: several platforms
/// run at once, each on its own thread.
struct Logged {
    platform: String,
}

impl Observer for Logged {
    fn phase(&mut self, name: &str) {
        tracing::info!("{}: {name}", self.platform);
    }
    fn step_started(&mut self, index: usize, total: usize, summary: &str) {
        tracing::info!("{}: step {}/{total}: {summary}", self.platform, index + 1);
    }
    fn step_output(&mut self, stream: Stream, line: &str) {
        let tag = if matches!(stream, Stream::Stderr) { "!" } else { "|" };
        tracing::debug!("{} {tag} {line}", self.platform);
    }
    fn step_finished(&mut self, outcome: &StepOutcome) {
        let seconds = outcome.duration.as_secs_f64();
        match outcome.exit_code {
            Some(0) => tracing::info!("{}:   done in {seconds:.1}s", self.platform),
            Some(code) => tracing::info!("{}:   exit status {code} after {seconds:.1}s", self.platform),
            None => tracing::info!("{}:   stopped by a signal after {seconds:.1}s", self.platform),
        }
    }
}

/// One multi-platform run's fixed parts.
pub(crate) struct Run<'a> {
    pub engine: &'a dyn Engine,
    pub request: &'a PatchRequest,
    pub plugins: &'a PluginSet,
    pub image: &'a Image,
    pub destination: &'a dest::Destination,
}

impl Run<'_> {
    /// Patches `targets` (up to `--jobs` at once) and writes one index.
    #[allow(clippy::too_many_lines)]
    pub(crate) fn patch(
        &self,
        targets: Vec<Target<'_>>,
        scanners: &Scanners<'_>,
        observer: &mut dyn Observer,
        cancel: &CancelToken,
        started: Instant,
    ) -> Result<PatchSummary, PatchError> {
        let request = self.request;
        let (targets, note) = self.only_what_is_written(targets)?;
        let mut work = Vec::with_capacity(targets.len());
        for target in targets {
            // Each platform's own request: its report, its platform, and no
            // VEX file of its own (the run writes one for all).
            let mut own = request.clone();
            own.report.clone_from(&target.report);
            own.platforms = vec![target.image.platform.clone()];
            own.vex_output = None;
            // A report that cannot be read fails its platform: the whole run
            // before anything is patched, or (--ignore-errors) that platform.
            let findings = match super::findings(&own, target.report.as_deref(), scanners, observer) {
                Ok(findings) => Ok(findings),
                Err(e) if request.ignore_errors => Err(e.to_string()),
                Err(e) => return Err(e),
            };
            work.push((target.image, own, findings));
        }
        let jobs = request.jobs.unwrap_or_else(|| default_jobs(request)).clamp(1, work.len().max(1));
        observer.phase(&format!(
            "patching {}, {jobs} at a time",
            summary::counted(work.len(), "platform", "platforms")
        ));
        let results = crate::parallel::map(&work, jobs, |(platform_image, own, findings)| {
            let Ok(findings) = findings else { return None };
            let mut logged = Logged { platform: platform_image.platform.to_string() };
            Some(super::patch_platform(
                self.engine,
                own,
                self.plugins,
                findings,
                self.image,
                platform_image,
                self.destination,
                &mut logged,
                cancel,
            ))
        });
        if cancel.is_cancelled() {
            return Err(PatchError::Cancelled { during: "while patching platforms".into() });
        }

        let first = work.first().map(|(i, _, _)| *i).expect("several targets");
        let mut summary = PatchSummary::new(request, self.destination, first, mode_of(&work), None);
        summary.platform = listed(work.iter().map(|(i, _, _)| *i));
        let mut edits = Vec::new();
        let mut layer_files = Vec::new();
        let mut failed = Vec::new();
        let mut vex_parts = Vec::new();
        for ((platform_image, own, findings), result) in work.iter().zip(results) {
            let name = platform_image.platform.to_string();
            let (findings, result) = match (findings, result) {
                (Ok(findings), Some(result)) => (findings, result),
                (findings, _) => {
                    let why = findings.as_ref().err().cloned().unwrap_or_default();
                    tracing::error!("{name}: {why}");
                    let mut one =
                        PatchSummary::new(own, self.destination, platform_image, UpdateMode::Report, None);
                    one.result = summary::Result::Failed;
                    one.error = Some(why.clone());
                    failed.push((name, why));
                    summary.platforms.push(one);
                    continue;
                }
            };
            match result {
                Ok(Patched { summary: mut one, layer: Some((appended, file)), os }) => {
                    one.digest = Some(appended.manifest.digest.to_string());
                    one.result = summary::Result::Patched;
                    vex_parts.push((platform_image.platform.clone(), os, one.clone()));
                    edits.push(appended);
                    layer_files.push(file);
                    summary.platforms.push(one);
                }
                Ok(Patched { summary: one, layer: None, .. }) => summary.platforms.push(one),
                Err(e @ PatchError::Cancelled { .. }) => return Err(e),
                Err(e) => {
                    tracing::error!("{name}: {e}");
                    let mut one = match e.summary() {
                        Some(s) => s.clone(),
                        None => PatchSummary::new(
                            own,
                            self.destination,
                            platform_image,
                            findings.mode,
                            findings.scanned.as_ref(),
                        ),
                    };
                    one.result = summary::Result::Failed;
                    one.error = Some(e.to_string());
                    failed.push((name, e.to_string()));
                    summary.platforms.push(one);
                }
            }
        }
        summary.timings.steps = summary.platforms.iter().map(|p| p.timings.steps).sum();
        summary.timings.probes = summary.platforms.iter().map(|p| p.timings.probes).sum();
        if !failed.is_empty() && (!request.ignore_errors || edits.is_empty()) {
            summary.result = summary::Result::Failed;
            summary.timings.total = started.elapsed();
            summary.no_vex(request.vex_output.as_deref(), "no image was written");
            return Err(PatchError::PlatformsFailed { failed, summary: Box::new(summary) });
        }
        if edits.is_empty() {
            summary.result = summary::Result::NothingToPatch;
            summary.timings.total = started.elapsed();
            summary.no_vex(request.vex_output.as_deref(), "nothing was patched");
            return Ok(summary);
        }

        let write_started = Instant::now();
        let edited = EditedImage::new(self.image, edits).map_err(image_err(&request.image))?;
        let reference = &self.destination.reference;
        let copy = copy_options(reference, &first.platform);
        if let Some(note) = note {
            tracing::warn!("{note}");
            summary.note = Some(note);
        }
        let replaced = caulk_image::transport::existing(reference, &request.transport);
        observer.phase("writing the image");
        let report = edited.write(reference, &copy, &request.transport).map_err(image_err(reference))?;
        drop(layer_files);
        summary.digest = report.digest.as_ref().map(ToString::to_string);
        summary.replaced =
            replaced.map(|existing| summary::Replaced::new(existing, summary.digest.as_deref()));
        summary.result = summary::Result::Patched;
        summary.timings.write = write_started.elapsed();
        self.write_vex(&mut summary, &vex_parts)?;
        summary.timings.total = started.elapsed();
        observer.finished();
        Ok(summary)
    }

    /// A destination that holds one image (docker-daemon:, docker-archive:)
    /// gets this machine's platform, so only that one is patched: patching
    /// the others would be work thrown away. Returns the note saying so.
    fn only_what_is_written<'i>(
        &self,
        targets: Vec<Target<'i>>,
    ) -> Result<(Vec<Target<'i>>, Option<String>), PatchError> {
        let reference = &self.destination.reference;
        let platforms: Vec<&Platform> = targets.iter().map(|t| &t.image.platform).collect();
        let Some(written) =
            written_one(reference, &platforms, &Platform::host()).map_err(PatchError::Usage)?
        else {
            return Ok((targets, None));
        };
        let mut targets = targets;
        let kept = targets.remove(written);
        let note = format!(
            "{reference} holds one platform: only {} (this machine's) was patched and written, {} left out; \
             the index with every platform needs an oci:, oci-archive: or registry destination",
            kept.image.platform,
            listed(targets.iter().map(|t| t.image)),
        );
        Ok((vec![kept], Some(note)))
    }

    /// `-o`: one document whose products are each patched platform's
    /// manifest and the index.
    fn write_vex(
        &self,
        summary: &mut PatchSummary,
        parts: &[(Platform, Option<crate::model::OsRelease>, PatchSummary)],
    ) -> Result<(), PatchError> {
        let request = self.request;
        let Some(path) = &request.vex_output else { return Ok(()) };
        let documents: Vec<crate::vex::Document> = parts
            .iter()
            .map(|(platform, os, one)| {
                super::vex_document(request, one, self.destination, os.as_ref(), platform)
            })
            .collect();
        let index = summary.digest.clone().unwrap_or_default();
        let written: Vec<Option<&str>> = parts.iter().map(|(_, _, one)| one.digest.as_deref()).collect();
        let document = one_document(
            &documents,
            &written,
            &index,
            &crate::vex::oci_purl(&self.destination.display_name, &index, ""),
            &request.vex_author,
            &super::rfc3339(request.source_date_epoch),
        );
        if document.statements.is_empty() {
            summary.no_vex(Some(path), "no vulnerability a report named was fixed");
        } else {
            super::write_atomically(path, &serde_json::to_vec_pretty(&document).expect("serialisable"))?;
            summary.vex = Some(path.display().to_string());
        }
        Ok(())
    }
}

/// The document of a multi-platform run from each patched platform's
/// (`written`: their manifests' digests): an index product with every
/// platform's packages, and the platforms. A destination that holds one
/// image got one platform's manifest, not the index: that manifest is then
/// the whole product, and an "index" product of the same digest would name
/// something that is not one.
fn one_document(
    documents: &[crate::vex::Document],
    written: &[Option<&str>],
    index: &str,
    index_purl: &str,
    author: &str,
    timestamp: &str,
) -> crate::vex::Document {
    if let ([document], [Some(digest)]) = (documents, written)
        && *digest == index
    {
        return document.clone();
    }
    crate::vex::merge(documents, index_purl, author, timestamp)
}

/// How to write an edited image to `reference`: every manifest byte for
/// byte, and where the destination holds one image, `platform`'s (not the
/// host's, which may be another platform of the index, unpatched).
pub(crate) fn copy_options(reference: &ImageRef, platform: &Platform) -> caulk_image::CopyOptions {
    let mut copy = super::keep_media_types();
    if holds_one_platform(reference) {
        copy.platforms = Some(vec![platform.clone()]);
    }
    copy
}

/// Which of `platforms` (several to patch) a destination holding one image
/// gets: `host`'s. None when the destination takes them all, or there is
/// only one.
fn written_one(
    reference: &ImageRef,
    platforms: &[&Platform],
    host: &Platform,
) -> Result<Option<usize>, String> {
    if !holds_one_platform(reference) || platforms.len() < 2 {
        return Ok(None);
    }
    match platforms.iter().position(|p| p.satisfies(host)) {
        Some(i) => Ok(Some(i)),
        None => Err(format!(
            "{reference} holds one platform, and none of those to patch ({}) is this machine's {host}: \
             name the one to write with --platform, or write the index to an oci:, oci-archive: or registry destination",
            platforms.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ")
        )),
    }
}

/// Destinations that hold one image, not an index.
fn holds_one_platform(reference: &ImageRef) -> bool {
    matches!(reference, ImageRef::DockerDaemon { .. } | ImageRef::DockerArchive { .. })
}

fn mode_of(work: &[(&PlatformImage, PatchRequest, Result<Findings, String>)]) -> UpdateMode {
    let by_report = work.iter().any(|(_, _, f)| f.as_ref().is_ok_and(|f| f.mode == UpdateMode::Report));
    if by_report { UpdateMode::Report } else { UpdateMode::All }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_platform_written_alone_is_the_whole_vex_product() {
        let fixed = || crate::vex::FixedPackage {
            ecosystem: "deb".into(),
            name: "libssl3".into(),
            version: "3.0.15-1~deb12u1".into(),
            vulnerabilities: vec!["CVE-1".into()],
            report_purl: None,
        };
        let subject = |digest: &str, arch: &str| crate::vex::Subject {
            reference: "app:patched".into(),
            digest: digest.into(),
            os_id: Some("debian".into()),
            os_version: Some("12".into()),
            architecture: arch.into(),
            variant: None,
        };
        let amd = crate::vex::document(&subject("sha256:aa", "amd64"), &[fixed()], "caulk", "t");
        let arm = crate::vex::document(&subject("sha256:bb", "arm64"), &[fixed()], "caulk", "t");
        let purl = |digest: &str| crate::vex::oci_purl("app:patched", digest, "");
        // docker-daemon: got amd64's manifest: one product, that manifest.
        let alone = one_document(
            std::slice::from_ref(&amd),
            &[Some("sha256:aa")],
            "sha256:aa",
            &purl("sha256:aa"),
            "caulk",
            "t",
        );
        assert_eq!(alone, amd);
        assert_eq!(alone.statements[0].products.len(), 1);
        // An index, even with one platform patched: the index and the platform.
        let index = one_document(
            std::slice::from_ref(&amd),
            &[Some("sha256:aa")],
            "sha256:ii",
            &purl("sha256:ii"),
            "caulk",
            "t",
        );
        assert_eq!(index.statements[0].products.len(), 2);
        let both = one_document(
            &[amd, arm],
            &[Some("sha256:aa"), Some("sha256:bb")],
            "sha256:ii",
            &purl("sha256:ii"),
            "caulk",
            "t",
        );
        assert_eq!(both.statements[0].products.len(), 3);
    }

    #[test]
    fn report_names_follow_copa_and_find_arm64_with_or_without_v8() {
        let p = |s: &str| Platform::parse(s).unwrap();
        assert_eq!(report_names(&p("linux/amd64")), ["linux-amd64.json"]);
        assert_eq!(report_names(&p("linux/arm64/v8")), ["linux-arm64-v8.json", "linux-arm64.json"]);
        assert_eq!(report_names(&p("linux/arm64")), ["linux-arm64.json", "linux-arm64-v8.json"]);
        assert_eq!(report_names(&p("linux/arm/v7")), ["linux-arm-v7.json"]);
    }

    #[test]
    fn a_one_image_destination_gets_this_machines_platform_only() {
        let p = |s: &str| Platform::parse(s).unwrap();
        let r = |s: &str| ImageRef::parse(s).unwrap();
        let (amd, arm, s390) = (p("linux/amd64"), p("linux/arm64/v8"), p("linux/s390x"));
        let daemon = r("docker-daemon:app:1");
        assert_eq!(written_one(&daemon, &[&arm, &amd], &amd), Ok(Some(1)));
        assert_eq!(written_one(&r("docker-archive:/tmp/a.tar"), &[&amd, &arm], &amd), Ok(Some(0)));
        assert_eq!(written_one(&daemon, &[&arm], &amd), Ok(None), "one platform is written as asked");
        assert_eq!(written_one(&r("oci:/tmp/l:x"), &[&amd, &arm], &amd), Ok(None), "an index takes all");
        assert_eq!(written_one(&r("oci-archive:/tmp/a.tar:x"), &[&amd, &arm], &amd), Ok(None));
        let err = written_one(&daemon, &[&arm, &s390], &amd).unwrap_err();
        assert!(
            err.contains(
                "none of those to patch (linux/arm64/v8, linux/s390x) is this machine's linux/amd64"
            ) && err.contains("--platform"),
            "{err}"
        );
    }

    #[test]
    fn failures_are_listed_per_platform() {
        let failed =
            [("linux/arm64".to_owned(), "boom".to_owned()), ("linux/386".to_owned(), "bang".to_owned())];
        assert_eq!(failed_line(&failed), "2 platforms failed (linux/arm64: boom; linux/386: bang)");
    }
}
