//! Deciding the updates: which packages move and to what, from the report
//! (or every package, in update-all mode); the commands are [`crate::steps`].

use std::collections::BTreeSet;
use std::fmt::Write as _;

use caulk_sdk::update::{
    PatchPlan, PlanRequest, SelectedUpdate, SkippedUpdate, Update, UpdateMode, VersionTarget,
};
use caulk_sdk::version::rpm::Evr;

use crate::db::Installed;
use crate::error::RpmError;
use crate::image::image;
use crate::name::PackageName;
use crate::steps::{DROP_PATHS, cache, manifest_step, upgrade_step};

/// The ecosystem this plugin patches.
pub const RPM: &str = "rpm";

/// The whole plan for `request`.
pub fn plan(request: &PlanRequest) -> Result<PatchPlan, RpmError> {
    check_options(&request.options)?;
    let image = image(&request.target, &request.facts)?;
    let mut plan = PatchPlan::empty();
    let mut work = Vec::new();
    match request.options.mode {
        UpdateMode::Report => {
            let mut names: Vec<PackageName> = Vec::new();
            for update in &request.updates {
                match decide(update, &image.installed, request.options.ignore_errors)? {
                    Decision::Select(selected, name) => {
                        if !names.contains(&name) {
                            names.push(name);
                        }
                        plan.selected.push(selected);
                    }
                    Decision::Skip(skipped) => plan.skipped.push(skipped),
                }
            }
            if names.is_empty() {
                return Ok(plan);
            }
            if request.options.ignore_errors {
                for name in &names {
                    work.push(upgrade_step(&image, std::slice::from_ref(name), true));
                }
            } else {
                work.push(upgrade_step(&image, &names, false));
            }
        }
        UpdateMode::All => {
            everything(&image.installed, &mut plan);
            if image.db.is_some() {
                work.push(upgrade_step(&image, &[], false));
            } else {
                // No database for dnf to find what is installed: name it all.
                let names: Vec<PackageName> =
                    image.installed.names().filter_map(|n| n.parse().ok()).collect();
                work.push(upgrade_step(&image, &names, false));
            }
        }
    }
    if image.manifests && image.db.is_some() {
        work.push(manifest_step(&image));
    }
    plan.steps = work;
    plan.drop_paths = DROP_PATHS.iter().map(|p| (*p).to_owned()).collect();
    plan.caches = cache(&image, &request.target, &request.facts).into_iter().collect();
    Ok(plan)
}

/// Refuses options the rpm updater cannot honour, rather than ignoring them.
pub fn check_options(options: &caulk_sdk::update::Options) -> Result<(), RpmError> {
    if let Some((key, _)) = options.settings.first() {
        return Err(RpmError::UnknownSetting { key: key.clone() });
    }
    if !options.index_urls.is_empty() {
        return Err(RpmError::IndexUrls { urls: options.index_urls.join(", ") });
    }
    Ok(())
}

enum Decision {
    Select(SelectedUpdate, PackageName),
    Skip(SkippedUpdate),
}

fn skip(update: &Update, installed: Option<&str>, reason: String, already_fixed: bool) -> Decision {
    Decision::Skip(SkippedUpdate {
        ecosystem: update.ecosystem.clone(),
        name: update.name.clone(),
        location: update.location.clone(),
        installed_version: installed.map(str::to_owned),
        reason,
        already_fixed,
    })
}

/// Checks the report's strings; none of them reaches a command before this.
fn validate(update: &Update) -> Result<(PackageName, Vec<Evr>), RpmError> {
    let package: PackageName =
        update.name.parse().map_err(|problem| RpmError::BadName { name: update.name.clone(), problem })?;
    let bad = |field, value: &str, e: caulk_sdk::version::VersionError| RpmError::BadVersion {
        name: update.name.clone(),
        field,
        value: value.chars().take(80).collect(),
        problem: e.to_string(),
    };
    update
        .installed_version
        .parse::<Evr>()
        .map_err(|e| bad("installed version", &update.installed_version, e))?;
    let fixed = update
        .fixed_versions
        .iter()
        .map(|f| f.parse::<Evr>().map_err(|e| bad("fixed version", f, e)))
        .collect::<Result<_, _>>()?;
    Ok((package, fixed))
}

fn decide(update: &Update, installed: &Installed, ignore_errors: bool) -> Result<Decision, RpmError> {
    if !update.ecosystem.eq_ignore_ascii_case(RPM) {
        let reason = format!(
            "{} is a package of ecosystem {:?}; the rpm updater patches RPM packages only",
            update.name, update.ecosystem
        );
        return Ok(skip(update, None, reason, false));
    }
    let (package, fixed) = match validate(update) {
        Ok(valid) => valid,
        Err(e) if ignore_errors => {
            return Ok(skip(update, None, format!("{e} (skipped: --ignore-errors)"), false));
        }
        Err(e) => return Err(e),
    };
    let Some(current) = installed.lowest(package.as_str()) else {
        let reason =
            format!("{package} is not installed (the image's rpm database has no package of that name)");
        return Ok(skip(update, None, reason, false));
    };
    let Some(current_version) = current.version() else {
        let reason = format!(
            "the rpm database gives {package} the version {:?}, which is not an RPM version",
            current.evr
        );
        return Ok(skip(update, Some(&current.evr), reason, false));
    };
    // A fixed version without an epoch means the installed package's epoch,
    // as the scanners compare them.
    let Some(needed) = fixed.iter().map(|f| f.with_epoch_of(&current_version)).max() else {
        return Ok(skip(
            update,
            Some(&current.evr),
            format!("the report lists no fixed version for {package}"),
            false,
        ));
    };
    if current_version >= needed {
        let reason = format!("{package} {} is already at or above the fixed version {needed}", current.evr);
        return Ok(skip(update, Some(&current.evr), reason, true));
    }
    let mut rationale = format!("the newest version in the image's repositories, at least {needed}");
    let distinct: BTreeSet<String> = fixed.iter().map(ToString::to_string).collect();
    if distinct.len() > 1 {
        let _ = write!(rationale, " (the highest of {} fixed versions)", distinct.len());
    }
    if fixed.iter().any(|f| !f.has_epoch()) && current_version.epoch() != 0 {
        let _ = write!(
            rationale,
            "; the report's fixed version has no epoch, so the installed epoch {} applies",
            current_version.epoch()
        );
    }
    Ok(Decision::Select(
        SelectedUpdate {
            ecosystem: RPM.into(),
            name: update.name.clone(),
            location: update.location.clone(),
            from: current.evr.clone(),
            target: VersionTarget::AtLeast(needed.to_string()),
            vulnerabilities: update.vulnerabilities.clone(),
            rationale: Some(rationale),
            passed_over: Vec::new(),
        },
        package,
    ))
}

/// Update-all mode: every installed package, aiming at the newest version.
fn everything(installed: &Installed, plan: &mut PatchPlan) {
    for name in installed.names().filter(|n| *n != "gpg-pubkey") {
        let Some(current) = installed.lowest(name) else { continue };
        plan.selected.push(SelectedUpdate {
            ecosystem: RPM.into(),
            name: name.to_owned(),
            location: None,
            from: current.evr.clone(),
            target: VersionTarget::Newest,
            vulnerabilities: Vec::new(),
            rationale: None,
            passed_over: Vec::new(),
        });
    }
}
