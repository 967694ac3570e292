//! The questions the plugin asks the host about the image.
//!
//! Plan phase, first round: which rpm database files exist (to learn its
//! directory and backend), the Azure Linux container manifests, which
//! package managers and whether `rpm` and `sh` are in the image, and the
//! repository files. Second round, once the database is known: `rpm -qa`
//! and the `system-release(releasever)` provide, run with the image's rpm
//! or, for an image without one, the host's with `--root`; and for an image
//! without a package manager, whether the host's root fs has a dnf.
//! Verify phase: the same database, tools and manifests, then `rpm -qa` and
//! `rpmdb --verifydb` on the patched image.

use caulk_sdk::facts::FactsExt;
use caulk_sdk::update::{Command, ExecContext, Fact, Phase, Question, Tooling};

use crate::db::{self, DbLocation, MANIFEST_1, MANIFEST_2, QUERY_FORMAT};

pub const DB: &str = "rpm-db";
pub const MANIFESTS: &str = "rpm-manifests";
pub const TOOLS: &str = "rpm-tools";
pub const REPOS: &str = "rpm-repos";
pub const QUERY: &str = "rpm-query";
pub const RELEASEVER: &str = "rpm-releasever";
pub const HOST_DNF: &str = "host-dnf";
pub const VERIFYDB: &str = "rpm-verifydb";

/// Whether the host has a dnf, and the host's machine (`uname -m`): that
/// dnf installs packages of its own architecture. Not `dnf --version`:
/// outside an installroot dnf logs to the host's `/var/log/hawkey.log`,
/// which the sandbox does not have, and exits with 1 after printing its
/// version.
pub const HOST_DNF_ARGV: [&str; 3] = ["sh", "-c", "command -v dnf && uname -m"];

/// Where the image is mounted when the host's tools work on it.
pub const TOOLING_MOUNT: &str = "/target";

/// Directories package managers and rpm install themselves into.
pub const BIN_DIRS: [&str; 4] = ["/usr/bin", "/bin", "/usr/sbin", "/sbin"];

/// The programs looked for in the image.
pub const PROGRAMS: [&str; 8] = ["tdnf", "dnf", "dnf5", "yum", "microdnf", "zypper", "rpm", "sh"];

/// Repository directories: dnf/yum/tdnf/microdnf, Photon's extra one, zypper.
pub const REPO_DIRS: [&str; 3] = ["/etc/yum.repos.d", "/etc/distro.repos.d", "/etc/zypp/repos.d"];

/// The execution context of commands that run the host's tools.
pub fn host_tooling() -> ExecContext {
    ExecContext::Tooling(Tooling { image: None, mount_point: TOOLING_MOUNT.into() })
}

/// Whether the image has `program` in one of [`BIN_DIRS`].
pub fn image_has(facts: &[Fact], program: &str) -> bool {
    facts.files(TOOLS).iter().any(|f| BIN_DIRS.iter().any(|dir| f.path == format!("{dir}/{program}")))
}

/// The database the files probe found.
pub fn located(facts: &[Fact]) -> Option<DbLocation> {
    db::locate(facts.files(DB).iter().map(|f| f.path.as_str()))
}

/// `rpm ARGS` against the image's database: its own rpm when it has one,
/// else the host's with `--root`.
pub fn rpm_command(facts: &[Fact], db: &DbLocation, program: &str, args: &[&str]) -> Command {
    let mut argv = vec![program.to_owned()];
    let in_image = image_has(facts, "rpm");
    if !in_image {
        argv.extend(["--root".to_owned(), TOOLING_MOUNT.to_owned()]);
    }
    argv.extend(["--dbpath".to_owned(), db.dir.clone()]);
    argv.extend(args.iter().map(|a| (*a).to_owned()));
    let mut command = Command::new(argv);
    if !in_image {
        command.context = host_tooling();
    }
    command
}

fn first_round() -> Vec<Question> {
    let tools: Vec<String> =
        PROGRAMS.iter().flat_map(|p| BIN_DIRS.iter().map(move |d| format!("{d}/{p}"))).collect();
    vec![
        Question::files(DB, db::db_paths()),
        Question::files(MANIFESTS, [MANIFEST_1, MANIFEST_2]),
        Question::files(TOOLS, tools),
    ]
}

/// The questions still to ask in `phase`, given the facts so far.
pub fn questions(phase: Phase, facts: &[Fact]) -> Vec<Question> {
    let mut wanted = first_round();
    if phase == Phase::Plan {
        wanted.push(Question::files(REPOS, REPO_DIRS.iter().map(|d| format!("{d}/*.repo"))));
    }
    if facts.answered(DB)
        && let Some(db) = located(facts)
    {
        let query = rpm_command(facts, &db, "rpm", &["-qa", "--qf", QUERY_FORMAT]);
        wanted.push(Question::command(QUERY, query));
        match phase {
            Phase::Plan => {
                let releasever = rpm_command(
                    facts,
                    &db,
                    "rpm",
                    &["-q", "--whatprovides", "system-release(releasever)", "--provides"],
                );
                wanted.push(Question::command(RELEASEVER, releasever));
            }
            Phase::Verify => {
                wanted.push(Question::command(VERIFYDB, rpm_command(facts, &db, "rpmdb", &["--verifydb"])));
            }
        }
    }
    // Also for an image with container manifests and no database.
    if phase == Phase::Plan && facts.answered(TOOLS) && crate::image::manager(facts).is_none() {
        let mut command = Command::new(HOST_DNF_ARGV);
        command.context = host_tooling();
        wanted.push(Question::command(HOST_DNF, command));
    }
    wanted.into_iter().filter(|q| !facts.answered(&q.id)).collect()
}
