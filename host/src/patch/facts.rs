//! Answering updaters' questions: files from the root fs (merged across the
//! layers and, after the steps, the new changes), read-only commands in the
//! sandbox, and package-index look-ups from outside the image.

use std::collections::HashSet;
use std::time::Duration;

use caulk_exec::{EntryKind, MergedReader, Probe, RunIn, Session, ToolingRoot};

use crate::model::{
    Answer, Command, CommandOutput, ExecContext, Fact, FileEntry, FileKind, OsRelease, Question, QuestionKind,
};

/// Files larger than this are listed without contents.
pub const MAX_FILE: u64 = 16 << 20;

/// How long a probe command may run.
const PROBE_TIMEOUT: Duration = Duration::from_mins(2);

/// How many commands and index look-ups of one round run at once. They
/// wait mostly on the network or on an interpreter starting (pip's dry
/// runs, `pip check`, imports), each in its own read-only sandbox, so a
/// few at a time pay even on two cores.
const PARALLEL_ANSWERS: usize = 4;

/// Answers questions against one sandbox session.
pub struct Answerer<'s, 'e> {
    pub session: &'s Session<'e>,
    pub lookup: &'s (dyn Fn(&crate::model::IndexQuery) -> Answer + Sync),
    /// The image config's environment, under each command's own.
    pub base_env: &'s [(String, String)],
    /// Wall time spent waiting for commands and look-ups.
    pub spent: &'s std::sync::Mutex<Duration>,
}

/// Maps a plan's execution context onto the executor's.
pub fn run_in(context: &ExecContext) -> Result<RunIn, String> {
    match context {
        ExecContext::Target => Ok(RunIn::Target),
        ExecContext::Tooling(t) => match &t.image {
            None => Ok(RunIn::Tooling { root: ToolingRoot::Host, mount_point: t.mount_point.clone() }),
            Some(image) => {
                Err(format!("tooling images ({image}) are not supported yet; only the host's root fs"))
            }
        },
    }
}

fn has_glob(pattern: &str) -> bool {
    pattern.contains(['*', '?', '['])
}

fn file_entry(reader: &MergedReader, info: &caulk_exec::FileInfo) -> FileEntry {
    let kind = match info.kind {
        EntryKind::File => FileKind::Regular,
        EntryKind::Dir => FileKind::Directory,
        EntryKind::Symlink => FileKind::Symlink,
        _ => FileKind::Other,
    };
    let contents =
        (kind == FileKind::Regular && info.size <= MAX_FILE).then(|| reader.read(&info.path).ok()).flatten();
    FileEntry { path: info.path.clone(), kind, contents, link_target: info.link_target.clone() }
}

impl Answerer<'_, '_> {
    /// The answer to one question.
    pub fn answer(&self, reader: &MergedReader, question: &Question) -> Answer {
        match &question.kind {
            QuestionKind::Files(patterns) => {
                let mut seen = HashSet::new();
                let mut entries = Vec::new();
                for pattern in patterns {
                    let found = if has_glob(pattern) {
                        reader.glob(pattern).map_err(|e| e.to_string())
                    } else {
                        reader
                            .stat(pattern)
                            .map(|o| o.into_iter().collect::<Vec<_>>())
                            .map_err(|e| e.to_string())
                    };
                    match found {
                        Ok(infos) => {
                            for info in infos {
                                if seen.insert(info.path.clone()) {
                                    entries.push(file_entry(reader, &info));
                                }
                            }
                        }
                        Err(e) => return Answer::Unavailable(format!("reading {pattern}: {e}")),
                    }
                }
                Answer::Files(entries)
            }
            QuestionKind::Run(command) => self.run(command),
            QuestionKind::Lookup(query) => (self.lookup)(query),
        }
    }

    fn run(&self, command: &Command) -> Answer {
        let run_in = match run_in(&command.context) {
            Ok(r) => r,
            Err(e) => return Answer::Unavailable(e),
        };
        let mut probe = Probe::new(command.argv.clone()).network(command.network).run_in(run_in);
        probe = probe.timeout(PROBE_TIMEOUT);
        for (k, v) in self.base_env.iter().chain(&command.env) {
            probe = probe.env(k.clone(), v.clone());
        }
        match self.session.probe(&probe) {
            Ok(out) => Answer::Output(CommandOutput {
                exit_code: out.exit_code.unwrap_or(-1),
                stdout: out.stdout,
                stderr: out.stderr,
            }),
            Err(e) => Answer::Unavailable(e.to_string()),
        }
    }

    /// Answers every question not answered yet, in the order asked. Files
    /// are read here; commands and look-ups run [`PARALLEL_ANSWERS`] at a
    /// time, and the wall time they take is added to `spent`.
    pub fn answer_new(&self, reader: &MergedReader, questions: &[Question], facts: &mut Vec<Fact>) -> usize {
        let mut seen: HashSet<&str> = facts.iter().map(|f| f.question_id.as_str()).collect();
        let new: Vec<&Question> = questions.iter().filter(|q| seen.insert(q.id.as_str())).collect();
        let mut answers: Vec<Option<Answer>> = new
            .iter()
            .map(|q| match q.kind {
                QuestionKind::Files(_) => {
                    tracing::debug!(question = %q.id, "answering");
                    Some(self.answer(reader, q))
                }
                QuestionKind::Run(_) | QuestionKind::Lookup(_) => None,
            })
            .collect();
        let waiting: Vec<usize> = (0..new.len()).filter(|&i| answers[i].is_none()).collect();
        if !waiting.is_empty() {
            let started = std::time::Instant::now();
            let answered = crate::parallel::map(&waiting, PARALLEL_ANSWERS, |&i| {
                let q = new[i];
                tracing::debug!(question = %q.id, "answering");
                match &q.kind {
                    QuestionKind::Run(command) => self.run(command),
                    QuestionKind::Lookup(query) => (self.lookup)(query),
                    QuestionKind::Files(_) => unreachable!("answered above"),
                }
            });
            for (&i, answer) in waiting.iter().zip(answered) {
                answers[i] = Some(answer);
            }
            *self.spent.lock().unwrap_or_else(std::sync::PoisonError::into_inner) += started.elapsed();
        }
        for (q, answer) in new.iter().zip(answers) {
            facts.push(Fact { question_id: q.id.clone(), answer: answer.expect("every question answered") });
        }
        new.len()
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
