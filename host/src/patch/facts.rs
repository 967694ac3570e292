//! Answering updaters' questions: files from the root fs (merged across the
//! layers and, after the steps, the new changes), read-only commands in the
//! sandbox, and package-index look-ups from outside the image. Each new
//! question passes the plugin's grants first, and each round stays within
//! the plugin's budgets.

use std::collections::HashSet;
use std::time::Duration;

use caulk_exec::{EntryKind, MergedReader, Probe, RunIn, ToolingRoot};

use crate::model::{
    Answer, Command, CommandOutput, ExecContext, Fact, FileEntry, FileKind, IndexQuery, OsRelease, Question,
    QuestionKind,
};
use crate::plugin::budget::{Budget, Budgets};
use crate::plugin::capability::{self, Capability};
use crate::plugin::{Plugin, PluginError, PluginLabel, Policy};

/// Files larger than this are listed without contents.
pub const MAX_FILE: u64 = 16 << 20;

/// How long a probe command may run.
const PROBE_TIMEOUT: Duration = Duration::from_mins(2);

/// How many commands and index look-ups of one round run at once. They
/// wait mostly on the network or on an interpreter starting (pip's dry
/// runs, `pip check`, imports), each in its own read-only sandbox, so a
/// few at a time pay even on two cores.
const PARALLEL_ANSWERS: usize = 4;

/// The most of an argv a message shows: a plugin chooses its length.
const SHOWN_ARGV: usize = 200;

/// What answering needs for every plugin of a run.
pub struct Shared<'s> {
    pub lookup: &'s (dyn Fn(&IndexQuery) -> Answer + Sync),
    /// The image config's environment, under each command's own.
    pub base_env: &'s [(String, String)],
    /// `--tooling-image`, standing in for the host's root.
    pub tooling_image: Option<&'s str>,
    /// Wall time spent waiting for commands and look-ups.
    pub spent: &'s std::sync::Mutex<Duration>,
    pub policy: &'s Policy,
    pub budgets: &'s Budgets,
    /// The image's host directory behind [`caulk_sdk::PROBE_SCRATCH`], one
    /// subdirectory per plugin.
    pub probe_scratch: Option<&'s std::path::Path>,
}

/// Answers one plugin's questions against one engine workspace.
pub struct Answerer<'s, 'e> {
    pub session: &'s (dyn super::Workspace + 'e),
    pub shared: &'s Shared<'s>,
    pub plugin: &'s Plugin,
}

/// Maps a plan's execution context onto the engine's: a tooling context
/// without an image runs from `default_image` (`--tooling-image`) when the
/// user named one, else from the host's root. A reference that does not
/// parse is refused here, before anything runs.
pub fn run_in(context: &ExecContext, default_image: Option<&str>) -> Result<RunIn, String> {
    match context {
        ExecContext::Target => Ok(RunIn::Target),
        ExecContext::Tooling(t) => {
            let root = match t.image.as_deref().or(default_image) {
                None => ToolingRoot::Host,
                Some(image) => {
                    caulk_image::ImageRef::parse(image)
                        .map_err(|e| format!("tooling image {image:?} is not an image reference: {e}"))?;
                    ToolingRoot::Image(image.to_owned())
                }
            };
            Ok(RunIn::Tooling { root, mount_point: t.mount_point.clone() })
        }
    }
}

/// The directory a command starts in, checked: absolute, and without the
/// NUL byte no process argument can carry.
pub fn cwd_of(command: &Command) -> Result<Option<String>, String> {
    match &command.cwd {
        None => Ok(None),
        Some(dir) if !dir.starts_with('/') => Err(format!("the working directory {dir:?} is not absolute")),
        Some(dir) if dir.contains('\0') => Err(format!("the working directory {dir:?} contains a NUL byte")),
        Some(dir) => Ok(Some(dir.clone())),
    }
}

/// What running `command` means, for messages: "run `argv` in the image
/// with the network".
pub fn describe_command(command: &Command, default_image: Option<&str>) -> String {
    let mut argv = command.argv.join(" ");
    if argv.len() > SHOWN_ARGV {
        let cut = (0..=SHOWN_ARGV).rev().find(|&i| argv.is_char_boundary(i)).unwrap_or(0);
        argv.truncate(cut);
        argv.push('…');
    }
    let place = match &command.context {
        ExecContext::Target => "in the image".to_owned(),
        ExecContext::Tooling(t) => match t.image.as_deref().or(default_image) {
            None => "from the host's root fs".to_owned(),
            Some(image) => format!("from the tooling image {image}"),
        },
    };
    let network = if command.network { " with the network" } else { "" };
    format!("run `{argv}` {place}{network}")
}

fn has_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

/// A question checked against the grants, ready to answer.
enum Ready<'q> {
    Files(&'q [String]),
    Run(&'q Command),
    Lookup(IndexQuery),
    /// Answered without running anything (an unusable index URL).
    Answered(Answer),
}

impl Answerer<'_, '_> {
    fn over_budget(&self, budget: Budget, detail: String) -> PluginError {
        PluginError::OverBudget {
            plugin: PluginLabel(self.plugin.name().to_owned()),
            budget,
            budgets: *self.shared.budgets,
            detail,
        }
    }

    /// Checks `question` against the plugin's grants.
    fn admit<'q>(&self, question: &'q Question) -> Result<Ready<'q>, PluginError> {
        match &question.kind {
            QuestionKind::Files(patterns) => Ok(Ready::Files(patterns)),
            QuestionKind::Run(command) => {
                let needs = capability::command_needs(command);
                self.shared.policy.check(
                    self.plugin,
                    &|| format!("asked to {}", describe_command(command, self.shared.tooling_image)),
                    &needs,
                )?;
                Ok(Ready::Run(command))
            }
            QuestionKind::Lookup(query) => {
                let Some(default) = crate::index::default_index(&query.ecosystem) else {
                    return Ok(Ready::Answered(Answer::Unavailable(crate::index::unsupported(
                        &query.ecosystem,
                    ))));
                };
                let checked = match capability::lookup_needs(query, default) {
                    Ok(checked) => checked,
                    Err(why) => return Ok(Ready::Answered(Answer::Unavailable(why))),
                };
                for need in &checked.needs {
                    let Capability::Index(host) = need else { continue };
                    let request = || format!("asked to look up `{}` on the index at {host}", query.name);
                    self.shared.policy.check(self.plugin, &request, std::slice::from_ref(need))?;
                }
                Ok(Ready::Lookup(checked.query))
            }
        }
    }

    /// The files matching `patterns`, counting what they hold against
    /// `left` (bytes of this round's file budget still unspent).
    fn files(
        &self,
        reader: &MergedReader,
        id: &str,
        patterns: &[String],
        left: &mut u64,
    ) -> Result<Answer, PluginError> {
        let mut seen = HashSet::new();
        let mut entries = Vec::new();
        for pattern in patterns {
            let found = if has_glob(pattern) {
                reader.glob(pattern).map_err(|e| e.to_string())
            } else {
                reader.stat(pattern).map(|o| o.into_iter().collect::<Vec<_>>()).map_err(|e| e.to_string())
            };
            let infos = match found {
                Ok(infos) => infos,
                Err(e) => return Ok(Answer::Unavailable(format!("reading {pattern}: {e}"))),
            };
            for info in infos {
                if !seen.insert(info.path.clone()) {
                    continue;
                }
                let kind = match info.kind {
                    EntryKind::File => FileKind::Regular,
                    EntryKind::Dir => FileKind::Directory,
                    EntryKind::Symlink => FileKind::Symlink,
                    _ => FileKind::Other,
                };
                let with_contents = kind == FileKind::Regular && info.size <= MAX_FILE;
                // Counted before reading, so the budget bounds what is read.
                let cost = info.path.len() as u64
                    + info.link_target.as_ref().map_or(0, |t| t.len() as u64)
                    + if with_contents { info.size } else { 0 };
                *left = left.checked_sub(cost).ok_or_else(|| {
                    self.over_budget(
                        Budget::FileBytes,
                        format!("its question `{id}` ({pattern}) went over at {}", info.path),
                    )
                })?;
                let contents = with_contents.then(|| reader.read(&info.path).ok()).flatten();
                entries.push(FileEntry { path: info.path, kind, contents, link_target: info.link_target });
            }
        }
        Ok(Answer::Files(entries))
    }

    fn run(&self, command: &Command) -> Result<Answer, PluginError> {
        let run_in = match run_in(&command.context, self.shared.tooling_image) {
            Ok(r) => r,
            Err(e) => return Ok(Answer::Unavailable(e)),
        };
        let cwd = match cwd_of(command) {
            Ok(cwd) => cwd,
            Err(e) => return Ok(Answer::Unavailable(e)),
        };
        let in_target = matches!(run_in, RunIn::Target);
        let mut probe = Probe::new(command.argv.clone()).network(command.network).run_in(run_in).cwd(cwd);
        probe = probe.timeout(PROBE_TIMEOUT);
        if let Some(scratch) = self.shared.probe_scratch.filter(|_| in_target) {
            probe = probe.cache(scratch.join(self.plugin.name()), caulk_sdk::PROBE_SCRATCH);
        }
        probe.stdout_limit = self.shared.budgets.output_bytes;
        for (k, v) in self.shared.base_env.iter().chain(&command.env) {
            probe = probe.env(k.clone(), v.clone());
        }
        match self.session.probe(&probe) {
            Ok(out) if out.stdout_truncated => Err(self.over_budget(
                Budget::OutputBytes,
                format!(
                    "the command it asked to {} printed more",
                    describe_command(command, self.shared.tooling_image)
                ),
            )),
            Ok(out) => Ok(Answer::Output(CommandOutput {
                exit_code: out.exit_code.unwrap_or(-1),
                stdout: out.stdout,
                stderr: out.stderr,
            })),
            Err(e) => Ok(Answer::Unavailable(e.to_string())),
        }
    }

    /// Answers every question not answered yet, in the order asked, after
    /// checking each against the grants and the round against the budgets.
    /// Files are read here; commands and look-ups run [`PARALLEL_ANSWERS`]
    /// at a time, and the wall time they take is added to `spent`.
    pub fn answer_new(
        &self,
        reader: &MergedReader,
        questions: &[Question],
        facts: &mut Vec<Fact>,
    ) -> Result<usize, PluginError> {
        let mut seen: HashSet<&str> = facts.iter().map(|f| f.question_id.as_str()).collect();
        let new: Vec<&Question> = questions.iter().filter(|q| seen.insert(q.id.as_str())).collect();
        if new.len() > self.shared.budgets.questions {
            return Err(self.over_budget(Budget::Questions, format!("it asked {} new questions", new.len())));
        }
        // Every question is checked before any is answered: a refusal
        // leaves nothing half done.
        let ready: Vec<Ready<'_>> = new.iter().map(|q| self.admit(q)).collect::<Result<_, _>>()?;
        let mut left = self.shared.budgets.file_bytes;
        let mut answers: Vec<Option<Answer>> = Vec::with_capacity(new.len());
        for (q, ready) in new.iter().zip(&ready) {
            answers.push(match ready {
                Ready::Files(patterns) => {
                    tracing::debug!(question = %q.id, "answering");
                    Some(self.files(reader, &q.id, patterns, &mut left)?)
                }
                Ready::Answered(answer) => Some(answer.clone()),
                Ready::Run(_) | Ready::Lookup(_) => None,
            });
        }
        let waiting: Vec<usize> = (0..new.len()).filter(|&i| answers[i].is_none()).collect();
        if !waiting.is_empty() {
            let started = std::time::Instant::now();
            let answered = crate::parallel::map(&waiting, PARALLEL_ANSWERS, |&i| {
                tracing::debug!(question = %new[i].id, "answering");
                match &ready[i] {
                    Ready::Run(command) => self.run(command),
                    Ready::Lookup(query) => Ok((self.shared.lookup)(query)),
                    Ready::Files(_) | Ready::Answered(_) => unreachable!("answered above"),
                }
            });
            *self.shared.spent.lock().unwrap_or_else(std::sync::PoisonError::into_inner) += started.elapsed();
            for (&i, answer) in waiting.iter().zip(answered) {
                answers[i] = Some(answer?);
            }
        }
        for (q, answer) in new.iter().zip(answers) {
            facts.push(Fact { question_id: q.id.clone(), answer: answer.expect("every question answered") });
        }
        Ok(new.len())
    }
}

/// `/etc/os-release` (or `/usr/lib/os-release`) of the root fs, parsed.
pub fn os_release(reader: &MergedReader) -> Option<OsRelease> {
    let text = ["/etc/os-release", "/usr/lib/os-release"].iter().find_map(|p| reader.read(p).ok())?;
    parse_os_release(&String::from_utf8_lossy(&text))
}

/// Parses os-release's shell-like `KEY=value` lines.
pub fn parse_os_release(text: &str) -> Option<OsRelease> {
    let mut get = std::collections::HashMap::new();
    for line in text.lines() {
        let Some((key, value)) = line.trim().split_once('=') else { continue };
        let value = value.trim();
        let value = value
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .or_else(|| value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')))
            .unwrap_or(value);
        get.insert(key.trim().to_owned(), value.replace("\\\"", "\""));
    }
    let id = get.get("ID")?.to_ascii_lowercase();
    Some(OsRelease {
        id,
        id_like: get
            .get("ID_LIKE")
            .map(|v| v.split_whitespace().map(str::to_ascii_lowercase).collect())
            .unwrap_or_default(),
        version_id: get.get("VERSION_ID").cloned(),
        version_codename: get.get("VERSION_CODENAME").cloned(),
        pretty_name: get.get("PRETTY_NAME").cloned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tooling_root_is_the_plugins_image_else_the_users_else_the_hosts() {
        let tooling = |image: Option<&str>| {
            ExecContext::Tooling(crate::model::Tooling {
                image: image.map(str::to_owned),
                mount_point: "/target".into(),
            })
        };
        let root = |context: &ExecContext, default: Option<&str>| match run_in(context, default).unwrap() {
            RunIn::Tooling { root, mount_point } => {
                assert_eq!(mount_point, "/target");
                root
            }
            RunIn::Target => panic!("a tooling context ran in the target"),
        };
        let users = Some("oci:/srv/tools:debian");
        assert_eq!(root(&tooling(None), None), ToolingRoot::Host);
        assert_eq!(root(&tooling(None), users), ToolingRoot::Image("oci:/srv/tools:debian".into()));
        assert_eq!(
            root(&tooling(Some("docker://cgr.dev/chainguard/wolfi-base")), users),
            ToolingRoot::Image("docker://cgr.dev/chainguard/wolfi-base".into()),
            "the plugin's own image wins"
        );
        assert_eq!(run_in(&ExecContext::Target, users).unwrap(), RunIn::Target);
        let err = run_in(&tooling(Some("not a reference")), None).unwrap_err();
        assert!(err.contains("\"not a reference\" is not an image reference"), "{err}");

        let command = |context| Command {
            argv: vec!["apt-get".into()],
            env: vec![],
            context,
            network: true,
            cwd: None,
        };
        assert_eq!(
            describe_command(&command(tooling(None)), users),
            "run `apt-get` from the tooling image oci:/srv/tools:debian with the network"
        );
        assert_eq!(
            describe_command(&command(tooling(None)), None),
            "run `apt-get` from the host's root fs with the network"
        );
    }

    #[test]
    fn os_release_of_debian_and_ubuntu() {
        let debian = parse_os_release(
            "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION_CODENAME=bookworm\nID=debian\n",
        )
        .unwrap();
        assert_eq!(debian.id, "debian");
        assert_eq!(debian.version_id.as_deref(), Some("12"));
        assert_eq!(debian.version_codename.as_deref(), Some("bookworm"));
        let ubuntu = parse_os_release("ID=ubuntu\nID_LIKE=debian\nVERSION_ID=\"22.04\"\n").unwrap();
        assert_eq!(ubuntu.id_like, ["debian"]);
        assert!(parse_os_release("NAME=nothing\n").is_none());
    }
}
