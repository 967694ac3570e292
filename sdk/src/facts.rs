//! Helpers for updaters: build probes and find the facts that answer them.

use crate::update::{
    Answer, Command, CommandOutput, ExecContext, Fact, FileEntry, PublishedVersion, Question, QuestionKind,
};

impl Question {
    /// Read the files at `paths` (absolute paths or globs).
    pub fn files<S: Into<String>>(id: impl Into<String>, paths: impl IntoIterator<Item = S>) -> Self {
        Self { id: id.into(), kind: QuestionKind::Files(paths.into_iter().map(Into::into).collect()) }
    }

    /// Run `argv` in the image without network; its changes are discarded.
    pub fn run<S: Into<String>>(id: impl Into<String>, argv: impl IntoIterator<Item = S>) -> Self {
        Self { id: id.into(), kind: QuestionKind::Run(Command::new(argv)) }
    }

    /// Run a prepared command.
    pub fn command(id: impl Into<String>, command: Command) -> Self {
        Self { id: id.into(), kind: QuestionKind::Run(command) }
    }
}

impl Command {
    /// `argv` in the target's root, no extra environment, no network.
    pub fn new<S: Into<String>>(argv: impl IntoIterator<Item = S>) -> Self {
        Self {
            argv: argv.into_iter().map(Into::into).collect(),
            cwd: None,
            env: Vec::new(),
            context: ExecContext::Target,
            network: false,
        }
    }

    /// Lets the command use the host's network.
    #[must_use]
    pub fn with_network(mut self) -> Self {
        self.network = true;
        self
    }

    /// Starts the command in `dir` (absolute, inside the root it runs in)
    /// instead of `/`: npm, for one, works on the project in its current
    /// directory.
    #[must_use]
    pub fn in_dir(mut self, dir: impl Into<String>) -> Self {
        self.cwd = Some(dir.into());
        self
    }

    /// Adds an environment variable.
    #[must_use]
    pub fn env(mut self, key: impl Into<String>, value: impl Into<String>) -> Self {
        self.env.push((key.into(), value.into()));
        self
    }
}

/// Looking facts up by the id of the probe they answer.
pub trait FactsExt {
    /// The answer to probe `id`, if the host gave one.
    fn answer(&self, id: &str) -> Option<&Answer>;

    /// Whether probe `id` was answered at all.
    fn answered(&self, id: &str) -> bool {
        self.answer(id).is_some()
    }

    /// Files matched by probe `id` (empty when it matched nothing or was not a
    /// files probe).
    fn files(&self, id: &str) -> &[FileEntry] {
        match self.answer(id) {
            Some(Answer::Files(files)) => files,
            _ => &[],
        }
    }

    /// Contents of the first regular file matched by probe `id`.
    fn file(&self, id: &str) -> Option<&[u8]> {
        self.files(id).iter().find_map(|f| f.contents.as_deref())
    }

    /// Output of the command run by probe `id`.
    fn output(&self, id: &str) -> Option<&CommandOutput> {
        match self.answer(id) {
            Some(Answer::Output(out)) => Some(out),
            _ => None,
        }
    }

    /// Versions published for the index query of probe `id`.
    fn versions(&self, id: &str) -> Option<&[PublishedVersion]> {
        match self.answer(id) {
            Some(Answer::Versions(v)) => Some(v),
            _ => None,
        }
    }

    /// Why the host could not answer probe `id`, if it could not.
    fn unavailable(&self, id: &str) -> Option<&str> {
        match self.answer(id) {
            Some(Answer::Unavailable(why)) => Some(why),
            _ => None,
        }
    }
}

impl FactsExt for [Fact] {
    fn answer(&self, id: &str) -> Option<&Answer> {
        self.iter().find(|f| f.question_id == id).map(|f| &f.answer)
    }
}

impl FactsExt for Vec<Fact> {
    fn answer(&self, id: &str) -> Option<&Answer> {
        self.as_slice().answer(id)
    }
}
