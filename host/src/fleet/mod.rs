//! `caulk patch --config FILE`: a fleet of images from one PatchConfig.
//!
//! The config's image entries are expanded to jobs (one per chosen tag),
//! `--shard` keeps this runner's share, skip detection decides per job
//! whether a patch is due and under which tag, and the jobs run `--jobs` at
//! a time through the same pipeline as a single `caulk patch`. The jobs
//! share caulk's caches (unpacked layers, package indexes and downloads,
//! compiled plugins), which are safe for concurrent jobs and processes, so
//! images of one base unpack and download their common parts once.

pub mod config;
mod semver;
pub mod shard;
pub mod skip;
pub mod summary;
pub mod tags;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use caulk_exec::{CancelToken, StepOutcome, Stream};
use caulk_image::{ImageRef, Platform, RegistryRef, TransportOptions};

use crate::model::PackageClass;
use crate::patch::{self, Observer, PatchRequest, PkgTypes};
use crate::plugin::PluginSet;
use crate::scan::Scanners;
use config::{ImageSpec, PatchConfig};
pub use shard::Shard;
pub use summary::{FleetRow, FleetStatus, FleetSummary};

/// How a fleet runs, beyond what each job's request says.
#[derive(Debug, Clone)]
pub struct FleetOptions {
    /// Copa's `-r` in bulk mode: reports of the patched images, for skip detection.
    pub reports_dir: Option<PathBuf>,
    pub jobs: usize,
    pub fail_fast: bool,
    pub shard: Option<Shard>,
    /// Each job's own time limit (Copa's `--timeout` in bulk mode).
    pub timeout: Duration,
    pub pkg_types: PkgTypes,
    pub scanner: Option<String>,
    pub transport: TransportOptions,
    /// Run every job's steps on this BuildKit daemon (`--engine buildkit`);
    /// `None` runs them in the local sandbox.
    pub buildkit: Option<crate::patch::engine::buildkit::BuildkitSettings>,
}

/// One image to patch, as expanded from the config.
#[derive(Debug, Clone)]
pub struct Job {
    /// The config entry's `name`.
    pub name: String,
    pub source: ImageRef,
    /// `registry/repo:tag` (or `DIR:tag`): what reports and the summary call it.
    pub source_name: String,
    pub destination: String,
    /// The target repository and base tag (`repo:tag`, before any `-N`):
    /// two jobs of one series would push the same tags.
    pub series: String,
    pub target_name: String,
    /// The config's `platforms` (none: every platform of an index).
    pub platforms: Vec<Platform>,
    /// caulk.sh/v1alpha1's per-image report.
    pub report: Option<PathBuf>,
    /// Why the job patches (first patch, or a newer fix in a report).
    pub why: String,
}

/// What the CLI contributes: the request of one job, from the command
/// line's settings and the job's image and destination.
pub trait Requests: Sync {
    fn request(&self, job: &Job) -> Result<PatchRequest, crate::Error>;
}

/// Jobs a machine can run at once: one more than the cores, as far as
/// memory allows each its step memory plus room for caulk itself. A job
/// spends part of its time off the cores (waiting on the mirror in the
/// index refresh and the downloads, on a cache another job is writing, on
/// the disk), and one extra job fills that: a warm fleet of 20 Debian
/// images on 2 cores took 166 s with 2 jobs, 132 s with 3 and 129 s with 4.
pub fn default_jobs(step_memory_mib: u64) -> usize {
    let cores = crate::parallel::cores() + 1;
    let per_job = step_memory_mib.max(512) + 256;
    let available = std::fs::read_to_string("/proc/meminfo").ok().and_then(|text| {
        text.lines()
            .find_map(|l| l.strip_prefix("MemAvailable:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
    });
    let by_memory = available.map_or(cores, |kib| usize::try_from(kib / 1024 / per_job).unwrap_or(cores));
    cores.min(by_memory).max(1)
}

/// Expands, shards, decides and runs the fleet of `config`.
pub fn run(
    config: &PatchConfig,
    options: &FleetOptions,
    requests: &dyn Requests,
    plugins: &PluginSet,
    scanners: &Scanners<'_>,
    cancel: &CancelToken,
) -> FleetSummary {
    let started = Instant::now();
    let mut summary = FleetSummary::new(options.shard);
    let reports = options.reports_dir.as_deref().map(|dir| match skip::ReportIndex::read(dir) {
        Ok(index) => {
            for (path, why) in &index.unreadable {
                tracing::warn!("{}: not used for skip detection: {why}", path.display());
            }
            index
        }
        Err(e) => {
            // Copa's fail-open: without reports every job is patched.
            tracing::warn!("{}: reports cannot be read ({e}); every image is patched", dir.display());
            skip::ReportIndex::default()
        }
    });
    let mut listed = TagLister::new(&options.transport);
    let mut jobs: Vec<Job> = Vec::new();
    let mut series = HashMap::new();
    for spec in &config.images {
        let mut expansion = Expansion {
            listed: &mut listed,
            reports: reports.as_ref(),
            jobs: &mut jobs,
            series: &mut series,
        };
        expansion.expand(spec, config, options, scanners, &mut summary);
    }
    let (jobs, clashing) = apart_from_clashes(jobs, &series);
    summary.rows.extend(clashing.iter().map(|job| {
        FleetRow::failed(
            job,
            &format!(
                "another job of this config (in this shard or another) also writes {} or its -N tags, or its tag \
                 is one of those; none of them ran",
                job.series
            ),
        )
    }));
    let failed = AtomicBool::new(false);
    let results = crate::parallel::map(&jobs, options.jobs, |job| {
        if options.fail_fast && failed.load(Ordering::SeqCst) {
            return FleetRow::not_run(job, "an earlier job failed and --fail-fast stops the rest");
        }
        if cancel.is_cancelled() {
            return FleetRow::not_run(job, "cancelled");
        }
        let row = run_job(job, options, requests, plugins, scanners, cancel);
        if row.status == FleetStatus::Failed {
            failed.store(true, Ordering::SeqCst);
        }
        row
    });
    summary.rows.extend(results);
    summary.elapsed = started.elapsed();
    summary
}

/// Config entries turned into jobs, sharing tag listings and reports.
struct Expansion<'a, 'b> {
    listed: &'a mut TagLister<'b>,
    reports: Option<&'a skip::ReportIndex>,
    jobs: &'a mut Vec<Job>,
    /// How many chosen source tags, in every shard, write each patched-tag
    /// series ([`Job::series`]).
    series: &'a mut HashMap<String, usize>,
}

impl Expansion<'_, '_> {
    /// One config entry's jobs (or the rows that say why it has none), with
    /// skip detection applied.
    #[allow(clippy::too_many_lines)]
    fn expand(
        &mut self,
        spec: &ImageSpec,
        config: &PatchConfig,
        options: &FleetOptions,
        scanners: &Scanners<'_>,
        summary: &mut FleetSummary,
    ) {
        let mine = |key: &str| options.shard.is_none_or(|s| s.owns(key));
        let available = self.listed.source_tags(&spec.image);
        let target_repo = target_repository(&spec.image, spec.target_registry.as_deref());
        let beside = target_repo == spec.image;
        let rules =
            if config.api_version == config::COPA_API { tags::Rules::Copa } else { tags::Rules::Caulk };
        let chosen = match tags::choose(
            &spec.strategy,
            available.as_ref().ok().map(Vec::as_slice),
            beside.then_some(&spec.tag_template),
            rules,
        ) {
            Ok(chosen) if chosen.is_empty() => {
                if mine(&spec.image) {
                    let why = "no tag of the repository is a version the strategy takes (Copa's rules: nothing to patch)";
                    tracing::warn!("{}: {why}", spec.name);
                    summary.rows.push(FleetRow::config_skipped(spec, why));
                }
                return;
            }
            Ok(chosen) => chosen,
            Err(reason) => {
                if mine(&spec.image) {
                    let why = match &available {
                        Err(e) if !matches!(spec.strategy, config::Strategy::List(_)) => {
                            format!("{reason}: {e}")
                        }
                        _ => reason,
                    };
                    summary.rows.push(FleetRow::config_failed(spec, &why));
                }
                return;
            }
        };
        // Checked when the config was read.
        let platforms: Vec<Platform> =
            spec.platforms.iter().filter_map(|p| Platform::parse(p).ok()).collect();
        // Listed for the first job of this shard that needs them, and only
        // then: a runner none of whose tags are its own asks nothing.
        let mut target_tags: Option<Result<Vec<String>, String>> = None;
        for choice in chosen {
            let tag = match choice {
                tags::Choice::Tag(tag) => tag,
                tags::Choice::Missing(tag) => {
                    let source_name = tagged(&spec.image, &tag);
                    if mine(&source_name) {
                        tracing::warn!("{}: tag {tag} is not in {}; skipped", spec.name, spec.image);
                        summary.rows.push(FleetRow::missing(spec, &source_name));
                    }
                    continue;
                }
            };
            let source_name = tagged(&spec.image, &tag);
            // Counted before the shard is applied: two sources writing one
            // series may fall in different shards, whose runners would each
            // push the same tag.
            let base_tag = spec.tag_template.render(&tag);
            let series = tagged(&target_repo, &base_tag);
            *self.series.entry(series.clone()).or_default() += 1;
            if !mine(&source_name) {
                continue;
            }
            let source = match ImageRef::parse(&source_name) {
                Ok(r) => r,
                Err(e) => {
                    summary.rows.push(FleetRow::job_failed(spec, &source_name, None, &e.to_string()));
                    continue;
                }
            };
            let target_tags = target_tags.get_or_insert_with(|| {
                if beside { available.clone() } else { self.listed.target_tags(&target_repo) }
            });
            let newest = match target_tags {
                Ok(tags) => skip::newest_patched(&base_tag, tags),
                // Without the target's tags caulk cannot tell a free tag from
                // a published one, and published tags are never overwritten.
                Err(e) => {
                    let why =
                        format!("the tags of {target_repo} cannot be listed, so no free tag is known: {e}");
                    summary.rows.push(FleetRow::job_failed(spec, &source_name, None, &why));
                    continue;
                }
            };
            let report = spec.report.as_ref().map(|t| config.base_dir.join(t.render(&tag)));
            let decision = decide(newest.as_ref(), &target_repo, self.reports, options, scanners);
            let (target_tag, why) = match decision {
                Decision::Patch { why } => {
                    let Some(next) = skip::next_tag(&base_tag, newest.as_ref().map(|(n, _)| *n)) else {
                        let (_, last) = newest.expect("only a numbered tag has no next");
                        let why = format!(
                            "{target_repo} already has {last}, the last number a patched tag can take"
                        );
                        summary.rows.push(FleetRow::job_failed(spec, &source_name, None, &why));
                        continue;
                    };
                    (next, why)
                }
                Decision::Skip { why } => {
                    let (_, existing) = newest.expect("skipping needs a patched tag");
                    let job_name = tagged(&target_repo, &existing);
                    summary.rows.push(FleetRow::skipped(spec, &source_name, &job_name, &why));
                    continue;
                }
            };
            let destination = tagged(&target_repo, &target_tag);
            self.jobs.push(Job {
                name: spec.name.clone(),
                source,
                source_name,
                target_name: destination.strip_prefix("oci:").unwrap_or(&destination).to_owned(),
                destination,
                series,
                platforms: platforms.clone(),
                report,
                why,
            });
        }
    }
}

/// `BASE` of a `BASE-N` series key.
fn numbered_base(key: &str) -> Option<&str> {
    let (base, n) = key.rsplit_once('-')?;
    (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())).then_some(base)
}

/// Splits off the jobs whose destination another job also writes (two
/// entries with one `oci:` target and tag, a tag template without
/// `{{ .SourceTag }}`, two sources with one last path component): run at
/// once, the last writer would silently win. `series` counts every shard's
/// jobs by the tags they write ([`Job::series`]), so a clash across shards
/// is seen too.
fn apart_from_clashes(jobs: Vec<Job>, series: &HashMap<String, usize>) -> (Vec<Job>, Vec<Job>) {
    let mut writers: HashMap<String, usize> = HashMap::new();
    for job in &jobs {
        *writers.entry(job.destination.clone()).or_default() += 1;
    }
    // `t:8.9` and `t:8.9-1107` (UBI's releases into one target with the
    // tag unchanged): the second's tags read as patches of the first, and
    // the first's next patch may be the second's name.
    let bases: std::collections::HashSet<&str> = series.keys().filter_map(|k| numbered_base(k)).collect();
    let overlaps =
        |key: &str| bases.contains(key) || numbered_base(key).is_some_and(|base| series.contains_key(base));
    jobs.into_iter().partition(|job| {
        writers[&job.destination] == 1
            && series.get(&job.series).is_none_or(|&n| n == 1)
            && !overlaps(&job.series)
    })
}

enum Decision {
    Patch { why: String },
    Skip { why: String },
}

/// Whether the newest patched tag (if any) still needs work.
fn decide(
    newest: Option<&(u64, String)>,
    target_repo: &str,
    reports: Option<&skip::ReportIndex>,
    options: &FleetOptions,
    scanners: &Scanners<'_>,
) -> Decision {
    let Some((_, existing)) = newest else {
        return Decision::Patch { why: "not patched before".to_owned() };
    };
    let existing_name = tagged(target_repo, existing);
    let Some(reports) = reports else {
        return Decision::Patch {
            why: format!("{existing} exists; without reports (-r DIR) every image is patched again"),
        };
    };
    let Some(path) = reports.find(existing_name.strip_prefix("oci:").unwrap_or(&existing_name)) else {
        return Decision::Patch { why: format!("no report names {existing_name}; patched again") };
    };
    let scanned = match scanners.scan(path, options.scanner.as_deref()) {
        Ok(scanned) => scanned,
        Err(e) => {
            tracing::warn!("{}: cannot be read for skip detection: {e}", path.display());
            return Decision::Patch {
                why: format!("the report of {existing} cannot be read; patched again"),
            };
        }
    };
    let grouped = crate::updates::group(&scanned.findings);
    let fixable: Vec<&str> = grouped
        .updates
        .iter()
        .filter(|u| match u.class {
            PackageClass::Os => options.pkg_types.os,
            PackageClass::Library => options.pkg_types.library,
        })
        .map(|u| u.name.as_str())
        .collect();
    if fixable.is_empty() {
        return Decision::Skip {
            why: format!("its report ({}) lists no fixable vulnerability", file_name(path)),
        };
    }
    let mut names = fixable.clone();
    names.sort_unstable();
    names.dedup();
    let shown = if names.len() > 3 {
        format!("{} and {} more", names[..3].join(", "), names.len() - 3)
    } else {
        names.join(", ")
    };
    Decision::Patch {
        why: format!(
            "a newer fix exists for {shown} (report {}); re-patched from the original",
            file_name(path)
        ),
    }
}

fn file_name(path: &Path) -> String {
    path.file_name().map_or_else(|| path.display().to_string(), |n| n.to_string_lossy().into_owned())
}

/// `repo:tag` for a registry repository or an `oci:DIR` layout.
fn tagged(repository: &str, tag: &str) -> String {
    format!("{repository}:{tag}")
}

/// Where a spec's patched images go: beside the source, or under
/// `target.registry` with the source's last path component (Copa's rule:
/// `quay.io/opstree/redis` to `ghcr.io/myorg` is `ghcr.io/myorg/redis`).
/// An `oci:DIR` target is a layout the patched images are named in.
fn target_repository(source: &str, registry: Option<&str>) -> String {
    match registry {
        None => source.to_owned(),
        Some(dir) if dir.starts_with("oci:") => dir.to_owned(),
        Some(registry) => {
            let name = source.strip_prefix("oci:").unwrap_or(source);
            let last = name.trim_end_matches('/').rsplit('/').next().unwrap_or(name);
            format!("{}/{last}", registry.trim_end_matches('/'))
        }
    }
}

/// A repository's tags; `None` when it does not exist.
type Listing = Result<Option<Vec<String>>, String>;

/// Tags of repositories, listed once per run.
struct TagLister<'a> {
    transport: &'a TransportOptions,
    cache: std::collections::BTreeMap<String, Listing>,
}

impl<'a> TagLister<'a> {
    fn new(transport: &'a TransportOptions) -> Self {
        Self { transport, cache: std::collections::BTreeMap::new() }
    }

    fn listing(&mut self, repository: &str) -> Listing {
        if let Some(known) = self.cache.get(repository) {
            return known.clone();
        }
        let listed = list_tags(repository, self.transport);
        self.cache.insert(repository.to_owned(), listed.clone());
        listed
    }

    /// A source's tags: one that does not exist is an error (a misspelt
    /// `image:` must fail the run, not leave nothing to patch).
    fn source_tags(&mut self, repository: &str) -> Result<Vec<String>, String> {
        self.listing(repository)?.ok_or_else(|| format!("{repository} does not exist"))
    }

    /// A target's tags: one nobody has pushed to yet has none.
    fn target_tags(&mut self, repository: &str) -> Result<Vec<String>, String> {
        Ok(self.listing(repository)?.unwrap_or_default())
    }
}

fn list_tags(repository: &str, transport: &TransportOptions) -> Listing {
    if let Some(dir) = repository.strip_prefix("oci:") {
        return layout_names(Path::new(dir));
    }
    let reference = RegistryRef::parse(repository).map_err(|e| e.to_string())?;
    match caulk_image::transport::registry::list_tags(&reference, &transport.registry) {
        Ok(tags) => Ok(Some(tags)),
        Err(caulk_image::Error::ImageNotFound { .. }) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

/// The image names (`org.opencontainers.image.ref.name`) of an OCI layout;
/// `None` when there is no layout.
fn layout_names(dir: &Path) -> Listing {
    let path = dir.join("index.json");
    let bytes = match std::fs::read(&path) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("reading {}: {e}", path.display())),
    };
    let index: serde_json::Value =
        serde_json::from_slice(&bytes).map_err(|e| format!("{}: not JSON: {e}", path.display()))?;
    let names = index
        .get("manifests")
        .and_then(serde_json::Value::as_array)
        .map(|manifests| {
            manifests
                .iter()
                .filter_map(|m| m.pointer("/annotations/org.opencontainers.image.ref.name"))
                .filter_map(serde_json::Value::as_str)
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    Ok(Some(names))
}

/// Runs one job with its own time limit; any outcome becomes a row.
fn run_job(
    job: &Job,
    options: &FleetOptions,
    requests: &dyn Requests,
    plugins: &PluginSet,
    scanners: &Scanners<'_>,
    cancel: &CancelToken,
) -> FleetRow {
    let request = match requests.request(job) {
        Ok(request) => request,
        Err(e) => return FleetRow::failed(job, &e.to_string()),
    };
    tracing::info!("{}: patching {} to {} ({})", job.name, job.source_name, job.target_name, job.why);
    let own = CancelToken::new();
    let (done, finished) = std::sync::mpsc::channel::<()>();
    let watch = {
        let own = own.clone();
        let outer = cancel.clone();
        let deadline = Instant::now() + options.timeout;
        std::thread::spawn(move || {
            loop {
                match finished.recv_timeout(Duration::from_millis(100)) {
                    Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {
                        if outer.is_cancelled() || Instant::now() >= deadline {
                            own.cancel();
                            return;
                        }
                    }
                    _ => return,
                }
            }
        })
    };
    let mut observer = JobLog { name: &job.name };
    let result = match &options.buildkit {
        None => patch::run(&request, plugins, scanners, &mut observer, &own),
        Some(settings) => {
            patch::engine::buildkit::run(settings, &request, plugins, scanners, &mut observer, &own)
        }
    };
    drop(done);
    let _ = watch.join();
    match result {
        Ok(summary) => {
            if let Some(store) = &summary.working_store {
                tracing::info!("{}: working store: {store}", job.name);
            }
            FleetRow::finished(job, summary)
        }
        Err(e) => {
            let timed_out = own.is_cancelled() && !cancel.is_cancelled();
            let mut message = crate::Error::from(e).to_string();
            if timed_out {
                message = format!("--timeout of {}s reached: {message}", options.timeout.as_secs());
            }
            FleetRow::failed(job, &message)
        }
    }
}

/// Logs a job's phases under its name (jobs run side by side).
struct JobLog<'a> {
    name: &'a str,
}

impl Observer for JobLog<'_> {
    fn phase(&mut self, name: &str) {
        tracing::info!("{}: {name}", self.name);
    }

    fn step_started(&mut self, index: usize, total: usize, summary: &str) {
        tracing::info!("{}: step {}/{total}: {summary}", self.name, index + 1);
    }

    fn step_output(&mut self, stream: Stream, line: &str) {
        let tag = if matches!(stream, Stream::Stderr) { "!" } else { "|" };
        tracing::debug!("{}: {tag} {line}", self.name);
    }

    fn step_finished(&mut self, outcome: &StepOutcome) {
        tracing::info!("{}: step done in {:.1}s", self.name, outcome.duration.as_secs_f64());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_follow_copas_registry_rule() {
        assert_eq!(target_repository("quay.io/opstree/redis", Some("ghcr.io/myorg")), "ghcr.io/myorg/redis");
        assert_eq!(
            target_repository("docker.io/library/nginx", Some("ghcr.io/myorg/")),
            "ghcr.io/myorg/nginx"
        );
        assert_eq!(target_repository("127.0.0.1:5000/a/b", None), "127.0.0.1:5000/a/b");
        assert_eq!(target_repository("oci:/x/layout", Some("oci:/y/out")), "oci:/y/out");
    }

    #[test]
    fn jobs_writing_one_destination_are_all_held_back() {
        let job = |source: &str, destination: &str| Job {
            name: "n".into(),
            source: ImageRef::parse(source).unwrap(),
            source_name: source.into(),
            destination: destination.into(),
            series: destination.into(),
            target_name: destination.into(),
            platforms: Vec::new(),
            report: None,
            why: String::new(),
        };
        let all = HashMap::from([
            ("ghcr.io/me/redis:7-patched".to_owned(), 2),
            ("ghcr.io/me/redis:6-patched".to_owned(), 1),
        ]);
        let (run, held) = apart_from_clashes(
            vec![
                job("quay.io/a/redis:7", "ghcr.io/me/redis:7-patched"),
                job("docker.io/b/redis:7", "ghcr.io/me/redis:7-patched"),
                job("docker.io/b/redis:6", "ghcr.io/me/redis:6-patched"),
            ],
            &all,
        );
        let names = |jobs: &[Job]| jobs.iter().map(|j| j.source_name.clone()).collect::<Vec<_>>();
        assert_eq!(names(&run), ["docker.io/b/redis:6"]);
        assert_eq!(names(&held), ["quay.io/a/redis:7", "docker.io/b/redis:7"]);
        // With --shard the other writer may be in another runner's share:
        // the count over every shard still holds this one back.
        let (run, held) =
            apart_from_clashes(vec![job("quay.io/a/redis:7", "ghcr.io/me/redis:7-patched")], &all);
        assert!(run.is_empty());
        assert_eq!(names(&held), ["quay.io/a/redis:7"]);
        // One source's tag is another's next patch: both are held back.
        let ubi = HashMap::from([
            ("t/ubi:8.9".to_owned(), 1),
            ("t/ubi:8.9-1107".to_owned(), 1),
            ("t/ubi:9.4".to_owned(), 1),
        ]);
        let (run, held) = apart_from_clashes(
            vec![
                job("r/ubi:8.9", "t/ubi:8.9"),
                job("r/ubi:8.9-1107", "t/ubi:8.9-1107"),
                job("r/ubi:9.4", "t/ubi:9.4"),
            ],
            &ubi,
        );
        assert_eq!(names(&run), ["r/ubi:9.4"]);
        assert_eq!(names(&held), ["r/ubi:8.9", "r/ubi:8.9-1107"]);
    }

    #[test]
    fn a_missing_source_fails_and_a_missing_target_has_no_tags() {
        let transport = TransportOptions::default();
        let mut listed = TagLister::new(&transport);
        let nowhere = "oci:/nonexistent/caulk-fleet-layout";
        let err = listed.source_tags(nowhere).unwrap_err();
        assert!(err.contains("does not exist"), "{err}");
        assert_eq!(listed.target_tags(nowhere), Ok(Vec::new()));
    }

    #[test]
    fn default_jobs_is_at_least_one_and_at_most_one_more_than_the_cores() {
        let jobs = default_jobs(1 << 30);
        assert_eq!(jobs, 1, "no machine has a TiB per job");
        assert!((1..=crate::parallel::cores() + 1).contains(&default_jobs(0)));
    }
}
