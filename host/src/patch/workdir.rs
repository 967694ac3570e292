//! Where a local session keeps the steps' changes (the overlayfs upper
//! dir): in memory when the upgrade is small enough, on disk otherwise.
//!
//! The rule, decided once per image platform before the steps run:
//! - `--working-folder` given: that folder, always.
//! - The estimate is the installed size of the packages the upgrade may
//!   touch, read from the image's package database (dpkg `Installed-Size`,
//!   apk `I:`): the report's OS packages, or every installed package when
//!   there is no report (each may be upgraded). A package manager writes
//!   each upgraded package's files anew into the upper dir, so their new
//!   installed size is what lands there; indexes and downloads go to
//!   caulk's host-side cache mounts, not the upper dir. An earlier caulk
//!   layer being replaced adds its unpacked size.
//! - Memory when `estimate × 3 + 256 MiB` (new dependencies, grown
//!   packages, dpkg's copied-up database and apt's binary caches) is at
//!   most a quarter of `MemAvailable` and still fits in the process's
//!   tmpfs budget (below); the tmpfs is mounted with exactly that size.
//! - Disk when the estimate is unknown (library updates, an rpm database)
//!   or too large, or when the budget's rest is too small: a job goes to
//!   disk rather than waiting for another job's memory.
//!
//! The budget: every session of one caulk process (the jobs of a
//! `--config` fleet, the platforms of an index) reserves its tmpfs size
//! from one [`MemoryBudget`] of half the `MemAvailable` seen at the first
//! reservation, and returns it when its tmpfs is gone. Sized per session
//! from `MemAvailable` alone, concurrent sessions each saw the memory the
//! others were about to fill; the other half is left to the steps
//! themselves and to caulk.
//!
//! A step that runs out of room on the tmpfs fails the run with a clear
//! error (see [`outgrown`]) rather than being retried on disk: its partial
//! changes are in the upper dir, and a rerun with `--working-folder` is the
//! user's call.

use std::path::Path;
use std::sync::{Arc, Mutex, OnceLock, PoisonError};

use caulk_exec::{MemoryFolder, MergedReader, StepOutcome};

use crate::model::PackageClass;
use crate::updates::PackageUpdate;

/// The test override: `memory`, `memory:MIB` (a tmpfs of that size),
/// `disk` or `auto` (the default).
pub const STORE_ENV: &str = "CAULK_WORKING_STORE";

const SAFETY_FACTOR: u64 = 3;
const HEADROOM: u64 = 256 << 20;
/// The share of `MemAvailable` one session may take.
const MEMORY_SHARE: u64 = 4;
/// The share of `MemAvailable` all sessions of a process may take together.
const BUDGET_SHARE: u64 = 2;

/// Bytes of tmpfs the sessions of one process may hold at once.
#[derive(Debug)]
pub struct MemoryBudget {
    total: u64,
    reserved: Mutex<u64>,
}

/// A share of a [`MemoryBudget`], given back when dropped.
#[derive(Debug)]
pub struct Reservation {
    budget: Arc<MemoryBudget>,
    bytes: u64,
}

impl MemoryBudget {
    pub fn new(total: u64) -> Arc<Self> {
        Arc::new(Self { total, reserved: Mutex::new(0) })
    }

    /// `bytes` of the budget, or (without waiting) how many bytes are left
    /// when fewer than that are.
    pub fn reserve(self: &Arc<Self>, bytes: u64) -> Result<Reservation, u64> {
        let mut reserved = self.reserved.lock().unwrap_or_else(PoisonError::into_inner);
        let left = self.total.saturating_sub(*reserved);
        if bytes > left {
            return Err(left);
        }
        *reserved += bytes;
        Ok(Reservation { budget: Arc::clone(self), bytes })
    }

    pub fn total(&self) -> u64 {
        self.total
    }

    /// Bytes no session holds.
    #[cfg(test)]
    fn left(&self) -> u64 {
        self.total.saturating_sub(*self.reserved.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        let mut reserved = self.budget.reserved.lock().unwrap_or_else(PoisonError::into_inner);
        *reserved = reserved.saturating_sub(self.bytes);
    }
}

/// The process's budget, sized at its first use from `available`.
fn process_budget(available: u64) -> &'static Arc<MemoryBudget> {
    static BUDGET: OnceLock<Arc<MemoryBudget>> = OnceLock::new();
    BUDGET.get_or_init(|| MemoryBudget::new(available / BUDGET_SHARE))
}

/// A tmpfs working store and its share of the budget, returned once the
/// tmpfs is unmounted (fields drop in order).
#[derive(Debug)]
pub struct Scratch {
    folder: MemoryFolder,
    _reserved: Option<Reservation>,
}

impl Scratch {
    pub fn path(&self) -> &Path {
        self.folder.path()
    }

    pub fn size(&self) -> u64 {
        self.folder.size()
    }
}

/// How many bytes the steps are expected to write, and from what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Estimate {
    pub bytes: u64,
    pub basis: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Store {
    /// A tmpfs of this many MiB, or of the rule's size.
    Memory(Option<u64>),
    Disk,
}

/// Where the session goes, and why (for the log).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Choice {
    Memory { size: u64, why: String },
    Disk { why: String },
}

/// `CAULK_WORKING_STORE`, if set to something other than `auto`.
pub fn forced() -> Result<Option<Store>, String> {
    match std::env::var(STORE_ENV).as_deref() {
        Err(_) | Ok("" | "auto") => Ok(None),
        Ok("memory") => Ok(Some(Store::Memory(None))),
        Ok("disk") => Ok(Some(Store::Disk)),
        Ok(other) => match other.strip_prefix("memory:").map(str::parse::<u64>) {
            Some(Ok(mib)) if mib > 0 => Ok(Some(Store::Memory(Some(mib)))),
            _ => Err(format!("{STORE_ENV}={other}: expected memory, memory:MIB, disk or auto")),
        },
    }
}

/// `MemAvailable` from the text of `/proc/meminfo`, in bytes.
pub fn mem_available(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find_map(|l| l.strip_prefix("MemAvailable:"))?;
    let mut parts = line.split_whitespace();
    let kib: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") => kib.checked_mul(1024),
        _ => None,
    }
}

/// The decision for an estimate and the memory available.
pub fn decide(forced: Option<Store>, estimate: Option<&Estimate>, available: Option<u64>) -> Choice {
    let needed = estimate.map(|e| e.bytes.saturating_mul(SAFETY_FACTOR).saturating_add(HEADROOM));
    let share = available.map(|a| a / MEMORY_SHARE);
    match forced {
        Some(Store::Disk) => return Choice::Disk { why: format!("{STORE_ENV}=disk") },
        Some(Store::Memory(mib)) => {
            let size = mib.map(|m| m.saturating_mul(1 << 20)).or(needed).or(share).unwrap_or(1 << 30);
            return Choice::Memory { size, why: format!("{STORE_ENV}=memory") };
        }
        None => {}
    }
    let Some(estimate) = estimate else {
        return Choice::Disk { why: "the upgrade's size cannot be estimated".to_owned() };
    };
    let needed = needed.expect("an estimate gives a need");
    let Some(share) = share else {
        return Choice::Disk { why: "MemAvailable is unknown".to_owned() };
    };
    let what =
        format!("{} MiB needed ({} MiB estimated: {})", needed >> 20, estimate.bytes >> 20, estimate.basis);
    if needed <= share {
        Choice::Memory { size: needed, why: format!("{what} fits in a quarter of MemAvailable") }
    } else {
        Choice::Disk { why: format!("{what} exceeds a quarter of MemAvailable ({} MiB)", share >> 20) }
    }
}

/// The installed size of the packages `wanted` names (every installed
/// package when `None`), from the image's dpkg or apk database.
pub fn estimate(reader: &MergedReader, wanted: Option<&[&str]>) -> Option<Estimate> {
    let (db, packages) = if let Ok(text) = reader.read("/var/lib/dpkg/status") {
        ("dpkg", parse_dpkg(&String::from_utf8_lossy(&text)))
    } else if let Ok(text) = reader.read("/lib/apk/db/installed") {
        ("apk", parse_apk(&String::from_utf8_lossy(&text)))
    } else {
        return None;
    };
    let mut bytes = 0u64;
    let mut count = 0usize;
    for (name, size) in &packages {
        if wanted.is_none_or(|w| w.contains(&name.as_str())) {
            bytes = bytes.saturating_add(*size);
            count += 1;
        }
    }
    if count == 0 {
        return None;
    }
    let which = if wanted.is_some() { "the report's" } else { "every installed" };
    Some(Estimate { bytes, basis: format!("installed size of {which} {count} {db} package(s)") })
}

/// The OS package names a report's updates name; `None` when some update
/// is a library's, whose size no package database states.
pub fn wanted_names(wanted: &[PackageUpdate]) -> Option<Vec<&str>> {
    wanted.iter().map(|u| (u.class == PackageClass::Os).then_some(u.name.as_str())).collect()
}

/// Adds the unpacked size of the earlier caulk layer the session starts from.
pub fn with_seed(estimate: Option<Estimate>, seed: Option<&Path>) -> Option<Estimate> {
    let mut estimate = estimate?;
    if let Some(seed) = seed {
        estimate.bytes = estimate.bytes.saturating_add(tree_size(seed));
        estimate.basis.push_str(" plus the earlier caulk layer");
    }
    Some(estimate)
}

/// The bytes of the regular files under `dir` (symlinks not followed).
pub fn tree_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_size(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .fold(0, u64::saturating_add)
}

/// (package, installed bytes) of the installed packages in a dpkg status
/// file; unparsable sizes count as 0.
fn parse_dpkg(text: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for paragraph in text.split("\n\n") {
        let (mut name, mut size, mut installed) = (None, 0u64, false);
        for line in paragraph.lines() {
            let Some((key, value)) = line.split_once(':') else { continue };
            let value = value.trim();
            match key.to_ascii_lowercase().as_str() {
                "package" => name = Some(value.to_owned()),
                "status" => installed = value.ends_with(" installed"),
                "installed-size" => size = value.parse::<u64>().unwrap_or(0).saturating_mul(1024),
                _ => {}
            }
        }
        if let (Some(name), true) = (name, installed) {
            out.push((name, size));
        }
    }
    out
}

/// (package, installed bytes) from apk's installed database.
fn parse_apk(text: &str) -> Vec<(String, u64)> {
    let mut out = Vec::new();
    for paragraph in text.split("\n\n") {
        let (mut name, mut size) = (None, 0u64);
        for line in paragraph.lines() {
            if let Some(v) = line.strip_prefix("P:") {
                name = Some(v.to_owned());
            } else if let Some(v) = line.strip_prefix("I:") {
                size = v.trim().parse().unwrap_or(0);
            }
        }
        if let Some(name) = name {
            out.push((name, size));
        }
    }
    out
}

/// The tmpfs for this platform's session when the rule (or
/// `CAULK_WORKING_STORE`) picks memory and the budget has room; `None` for
/// the working folder. The second part says which store was chosen and
/// why, for the summary.
pub fn memory_folder(
    runs_here: bool,
    request: &super::PatchRequest,
    lower: &[std::path::PathBuf],
    seed: Option<&Path>,
    wanted: &[PackageUpdate],
    mode: crate::model::UpdateMode,
) -> Result<(Option<Scratch>, Option<String>), super::PatchError> {
    // A chosen folder, a remote engine, and copy mode (the whole root is
    // copied into the session, which the estimate does not cover) stay.
    if request.working_folder.is_some() || !runs_here || request.mode == caulk_exec::Mode::Copy {
        return Ok((None, None));
    }
    let forced = forced().map_err(super::PatchError::Usage)?;
    let sized = if forced == Some(Store::Disk) {
        None
    } else {
        let reader = MergedReader::new(lower.to_vec());
        let estimated = match mode {
            crate::model::UpdateMode::All => estimate(&reader, None),
            crate::model::UpdateMode::Report => {
                wanted_names(wanted).and_then(|n| estimate(&reader, Some(&n)))
            }
        };
        with_seed(estimated, seed)
    };
    let available = std::fs::read_to_string("/proc/meminfo").ok().and_then(|m| mem_available(&m));
    let choice = decide(forced, sized.as_ref(), available);
    let budget = available.map(process_budget);
    let choice = within_budget(choice, budget, forced.is_some());
    match choice {
        (Choice::Disk { why }, _) => {
            tracing::info!(%why, "the steps' changes go to the working folder on disk");
            Ok((None, Some(format!("disk: {why}"))))
        }
        (Choice::Memory { size, why }, reserved) => match MemoryFolder::mount(&std::env::temp_dir(), size) {
            Ok(folder) => {
                tracing::info!(%why, size_mib = size >> 20, path = %folder.path().display(), "the steps' changes go to a tmpfs");
                let store = format!("memory: a tmpfs of {} MiB; {why}", size >> 20);
                Ok((Some(Scratch { folder, _reserved: reserved }), Some(store)))
            }
            Err(e) if forced.is_none() => {
                tracing::warn!(error = %e, "no tmpfs for the steps' changes; using the working folder");
                Ok((None, Some(format!("disk: no tmpfs could be mounted ({e})"))))
            }
            Err(e) => Err(super::exec_err(e)),
        },
    }
}

/// The rule's memory choice once its size is reserved from `budget`, or
/// disk when the budget's rest is too small; a forced choice takes what it
/// can and stays memory.
pub fn within_budget(
    choice: Choice,
    budget: Option<&Arc<MemoryBudget>>,
    forced: bool,
) -> (Choice, Option<Reservation>) {
    let (Choice::Memory { size, why }, Some(budget)) = (&choice, budget) else { return (choice, None) };
    match budget.reserve(*size) {
        Ok(reserved) => (choice, Some(reserved)),
        Err(_) if forced => (choice, None),
        Err(left) => {
            let why = format!(
                "{why}, but concurrent sessions hold all but {} MiB of this run's {} MiB tmpfs budget \
                 (half of MemAvailable)",
                left >> 20,
                budget.total() >> 20
            );
            (Choice::Disk { why }, None)
        }
    }
}

/// Whether the steps ran out of room in the tmpfs: a step failed, and it
/// said so or the tmpfs is (nearly) full.
pub fn outgrown(folder: &Scratch, outcomes: &[StepOutcome]) -> bool {
    // Only a failed step can have run out: a full tmpfs after steps that
    // all succeeded still holds complete changes.
    let mut failed = outcomes.iter().filter(|o| !o.success()).peekable();
    failed.peek().is_some()
        && (folder.folder.nearly_full() || failed.any(|o| o.stderr_tail.contains("No space left on device")))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    fn est(bytes: u64) -> Estimate {
        Estimate { bytes, basis: "test".to_owned() }
    }

    #[test]
    fn reads_mem_available() {
        let text = "MemTotal:       24000000 kB\nMemFree:         1000 kB\nMemAvailable:   16384000 kB\n";
        assert_eq!(mem_available(text), Some(16_384_000 * 1024));
        assert_eq!(mem_available("MemTotal: 5 kB\n"), None);
        assert_eq!(mem_available("MemAvailable: lots kB\n"), None);
        assert_eq!(mem_available("MemAvailable: 5 pages\n"), None);
        assert_eq!(mem_available("MemAvailable: 99999999999999999999 kB\n"), None);
    }

    #[test]
    fn memory_when_three_times_the_estimate_fits_in_a_quarter() {
        // 100 MiB → 556 MiB needed; a quarter of 4 GiB is 1 GiB.
        let choice = decide(None, Some(&est(100 * MIB)), Some(4096 * MIB));
        assert_eq!(choice, Choice::Memory { size: 556 * MIB, why: choice_why(&choice) });
        // A quarter of 2 GiB is 512 MiB: too small.
        assert!(matches!(decide(None, Some(&est(100 * MIB)), Some(2048 * MIB)), Choice::Disk { .. }));
        // Exactly at the limit still fits.
        assert!(matches!(decide(None, Some(&est(256 * MIB)), Some(4 * 1024 * MIB)), Choice::Memory { .. }));
        assert!(matches!(decide(None, Some(&est(256 * MIB + 1)), Some(4 * 1024 * MIB)), Choice::Disk { .. }));
    }

    fn choice_why(choice: &Choice) -> String {
        match choice {
            Choice::Memory { why, .. } | Choice::Disk { why } => why.clone(),
        }
    }

    #[test]
    fn disk_without_an_estimate_or_meminfo_and_when_forced() {
        assert!(matches!(decide(None, None, Some(64 * 1024 * MIB)), Choice::Disk { .. }));
        assert!(matches!(decide(None, Some(&est(MIB)), None), Choice::Disk { .. }));
        assert!(matches!(
            decide(Some(Store::Disk), Some(&est(MIB)), Some(64 * 1024 * MIB)),
            Choice::Disk { .. }
        ));
        // Forced memory: the rule's size when there is an estimate, else a
        // quarter of what is available.
        assert_eq!(
            decide(Some(Store::Memory(None)), Some(&est(MIB)), Some(1024 * MIB)),
            Choice::Memory { size: 259 * MIB, why: format!("{STORE_ENV}=memory") }
        );
        assert_eq!(
            decide(Some(Store::Memory(None)), None, Some(1024 * MIB)),
            Choice::Memory { size: 256 * MIB, why: format!("{STORE_ENV}=memory") }
        );
        assert_eq!(
            decide(Some(Store::Memory(Some(3))), Some(&est(64 * MIB)), None),
            Choice::Memory { size: 3 * MIB, why: format!("{STORE_ENV}=memory") }
        );
        // A huge estimate does not overflow.
        assert!(matches!(decide(None, Some(&est(u64::MAX)), Some(u64::MAX)), Choice::Disk { .. }));
    }

    #[test]
    fn a_budget_lends_what_it_has_and_gets_it_back() {
        let budget = MemoryBudget::new(1000 * MIB);
        let a = budget.reserve(600 * MIB).unwrap();
        // Does not fit: refused at once, saying what is left.
        assert_eq!(budget.reserve(500 * MIB).unwrap_err(), 400 * MIB);
        let b = budget.reserve(400 * MIB).unwrap();
        assert_eq!(budget.left(), 0);
        assert_eq!(budget.reserve(1).unwrap_err(), 0);
        drop(a);
        assert_eq!(budget.left(), 600 * MIB);
        let c = budget.reserve(600 * MIB).unwrap();
        drop((b, c));
        assert_eq!(budget.left(), 1000 * MIB);
        assert!(budget.reserve(1001 * MIB).is_err());
    }

    #[test]
    fn concurrent_jobs_never_hold_more_than_the_budget() {
        let budget = MemoryBudget::new(1000);
        let held = std::sync::atomic::AtomicU64::new(0);
        let most = std::sync::atomic::AtomicU64::new(0);
        let granted = std::sync::atomic::AtomicU64::new(0);
        std::thread::scope(|scope| {
            for t in 0..8u64 {
                let (budget, held, most, granted) = (&budget, &held, &most, &granted);
                scope.spawn(move || {
                    for i in 0..2000u64 {
                        let bytes = 50 + (t * 37 + i * 13) % 300;
                        match budget.reserve(bytes) {
                            Ok(reservation) => {
                                let now = held.fetch_add(bytes, std::sync::atomic::Ordering::SeqCst) + bytes;
                                most.fetch_max(now, std::sync::atomic::Ordering::SeqCst);
                                granted.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                                std::thread::yield_now();
                                held.fetch_sub(bytes, std::sync::atomic::Ordering::SeqCst);
                                drop(reservation);
                            }
                            Err(left) => assert!(left < bytes),
                        }
                    }
                });
            }
        });
        assert!(most.into_inner() <= 1000);
        assert!(granted.into_inner() > 0);
        assert_eq!(budget.left(), 1000, "every reservation came back");
    }

    #[test]
    fn a_job_that_does_not_fit_the_budget_goes_to_disk() {
        let budget = MemoryBudget::new(1000 * MIB);
        let first =
            within_budget(decide(None, Some(&est(100 * MIB)), Some(4096 * MIB)), Some(&budget), false);
        assert!(matches!(first, (Choice::Memory { size, .. }, Some(_)) if size == 556 * MIB));
        assert_eq!(budget.left(), 444 * MIB);
        // The second job's 556 MiB would fit a quarter of MemAvailable, not
        // the budget's rest.
        let (second, reserved) =
            within_budget(decide(None, Some(&est(100 * MIB)), Some(4096 * MIB)), Some(&budget), false);
        assert!(reserved.is_none());
        let Choice::Disk { why } = second else { panic!("{second:?}") };
        assert!(why.contains("all but 444 MiB of this run's 1000 MiB"), "{why}");
        // A smaller one still fits beside the first.
        let third = within_budget(decide(None, Some(&est(10 * MIB)), Some(4096 * MIB)), Some(&budget), false);
        assert!(matches!(third, (Choice::Memory { .. }, Some(_))));
        drop(first);
        drop(third);
        assert_eq!(budget.left(), 1000 * MIB);
        // Forced memory stays memory; disk and unknown budgets pass through.
        let _held = budget.reserve(1000 * MIB).unwrap();
        let forced = decide(Some(Store::Memory(None)), Some(&est(MIB)), Some(1024 * MIB));
        assert!(matches!(within_budget(forced, Some(&budget), true), (Choice::Memory { .. }, None)));
        let disk = decide(None, None, Some(1024 * MIB));
        assert!(matches!(within_budget(disk, Some(&budget), false), (Choice::Disk { .. }, None)));
        let unbudgeted = decide(None, Some(&est(MIB)), Some(4096 * MIB));
        assert!(matches!(within_budget(unbudgeted, None, false), (Choice::Memory { .. }, None)));
    }

    #[test]
    fn sums_installed_sizes_of_installed_packages() {
        let status = "Package: libc6\nStatus: install ok installed\nArchitecture: amd64\nInstalled-Size: 12000\n\n\
                      Package: libc6\nStatus: install ok installed\nArchitecture: i386\nInstalled-Size: 10000\n\n\
                      Package: gone\nStatus: deinstall ok config-files\nInstalled-Size: 500\n\n\
                      Package: bash\nStatus: install ok installed\nInstalled-Size: banana\n\n\
                      Package: zlib1g\nstatus: install ok installed\nINSTALLED-SIZE: 100\n";
        let parsed = parse_dpkg(status);
        assert_eq!(
            parsed,
            vec![
                ("libc6".to_owned(), 12000 * 1024),
                ("libc6".to_owned(), 10000 * 1024),
                ("bash".to_owned(), 0),
                ("zlib1g".to_owned(), 100 * 1024)
            ]
        );
        let apk = "C:Q1abc\nP:musl\nV:1.2\nI:622592\n\nP:busybox\nI:nope\n";
        assert_eq!(parse_apk(apk), vec![("musl".to_owned(), 622_592), ("busybox".to_owned(), 0)]);
    }

    #[test]
    fn estimates_from_an_image_root() {
        let root = tempfile::tempdir().unwrap();
        let dpkg = root.path().join("var/lib/dpkg");
        std::fs::create_dir_all(&dpkg).unwrap();
        std::fs::write(
            dpkg.join("status"),
            "Package: a\nStatus: install ok installed\nInstalled-Size: 2048\n\n\
             Package: b\nStatus: install ok installed\nInstalled-Size: 1024\n",
        )
        .unwrap();
        let reader = MergedReader::new(vec![root.path().to_owned()]);
        let all = estimate(&reader, None).unwrap();
        assert_eq!(all.bytes, 3 * MIB);
        assert!(all.basis.contains("every installed 2 dpkg"), "{}", all.basis);
        assert_eq!(estimate(&reader, Some(&["b", "not-there"])).unwrap().bytes, MIB);
        assert_eq!(estimate(&reader, Some(&["not-there"])), None);
        let empty = tempfile::tempdir().unwrap();
        assert_eq!(estimate(&MergedReader::new(vec![empty.path().to_owned()]), None), None);

        let seed = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(seed.path().join("usr/lib")).unwrap();
        std::fs::write(seed.path().join("usr/lib/x"), vec![0u8; 4096]).unwrap();
        let seeded = with_seed(Some(all), Some(seed.path())).unwrap();
        assert_eq!(seeded.bytes, 3 * MIB + 4096);
    }
}
