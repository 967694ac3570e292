//! LLB graphs: ops marshalled once, named by the sha256 of their bytes, and
//! a Definition that lists them inputs first.

use std::collections::{BTreeMap, HashSet};

use prost::Message;
use sha2::{Digest, Sha256};

use crate::pb::llb::{
    CacheOpt, CacheSharingOpt, Definition, ExecOp, FileAction, FileActionMkFile, FileOp, Input, Meta, Mount,
    MountType, NetMode, Op, OpMetadata, Platform, ProxyEnv, SourceOp, file_action, op,
};

/// BuildKit's "no input" / "no output" index (`pb.Empty`, `pb.SkipOutput`).
const NONE: i64 = -1;

/// One output of an op: what a later op mounts or the definition returns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Output {
    pub digest: String,
    pub index: i64,
}

/// How an exec reaches the network.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Network {
    /// No network at all: the step sees only loopback.
    #[default]
    None,
    /// The daemon host's network; needs the `network.host` entitlement.
    Host,
}

/// How concurrent steps share one cache mount.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Sharing {
    Shared,
    Private,
    /// One writer at a time: what apt's and pip's caches need.
    #[default]
    Locked,
}

/// A read-only file bound into an exec from elsewhere in the graph.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileMount {
    pub source: Output,
    /// The file's path inside `source`.
    pub selector: String,
    pub dest: String,
}

/// A persistent cache directory, shared by every solve that uses its key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CacheMount {
    pub key: String,
    pub dest: String,
    pub sharing: Sharing,
    /// The step reads it and cannot change it.
    pub readonly: bool,
}

/// An exec on top of `root`; its output 0 is the changed root.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Exec {
    /// Shown as the vertex name in progress.
    pub name: String,
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: String,
    pub user: String,
    pub network: Network,
    pub files: Vec<FileMount>,
    pub caches: Vec<CacheMount>,
    /// Proxy variables the step sees without them entering the cache key.
    pub proxy_env: Option<ProxyEnv>,
    /// Run even when BuildKit has the result cached (probes must run to
    /// produce their output).
    pub ignore_cache: bool,
    /// The platform whose binaries it runs; `None`: the worker's own.
    pub platform: Option<Platform>,
}

/// A read-only root fs from another image that an exec runs in, with the
/// root being changed mounted read-write at `mount_point`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tooling {
    pub root: Output,
    pub mount_point: String,
}

#[derive(Debug, Default)]
pub struct Graph {
    ops: Vec<(String, Vec<u8>, OpMetadata)>,
    seen: HashSet<String>,
}

impl Graph {
    pub fn new() -> Self {
        Self::default()
    }

    /// An image the daemon resolves (its local store first, then the
    /// registry), for `platform` (`None`: the worker's own).
    pub fn image(&mut self, reference: &str, platform: Option<&Platform>) -> Output {
        let source = SourceOp { identifier: format!("docker-image://{reference}"), attrs: BTreeMap::new() };
        let op = Op { op: Some(op::Kind::Source(source)), platform: platform.cloned(), ..Op::default() };
        self.add(&op, metadata(&["source.image"], None, false))
    }

    /// A tree the client session `session` shares as `name`. The daemon
    /// keeps its copy under `hint` (with the session's shared key), so a
    /// later session sends only what differs from it.
    pub fn local(&mut self, name: &str, session: &str, hint: &str, platform: Option<&Platform>) -> Output {
        let attrs = BTreeMap::from([
            ("local.session".to_owned(), session.to_owned()),
            ("local.sharedkeyhint".to_owned(), hint.to_owned()),
        ]);
        let source = SourceOp { identifier: format!("local://{name}"), attrs };
        let op = Op { op: Some(op::Kind::Source(source)), platform: platform.cloned(), ..Op::default() };
        let caps = ["source.local", "source.local.sessionid", "source.local.sharedkeyhint"];
        self.add(&op, metadata(&caps, None, false))
    }

    /// A scratch filesystem holding one file: how bytes from the client get
    /// into a step without entering any result layer.
    pub fn file(&mut self, path: &str, data: &[u8], mode: u32) -> Output {
        let mkfile = FileActionMkFile {
            path: path.to_owned(),
            mode: i32::try_from(mode & 0o7777).unwrap_or(0o644),
            data: data.to_vec(),
            timestamp: NONE,
        };
        let action = FileAction {
            input: NONE,
            secondary_input: NONE,
            output: 0,
            action: Some(file_action::Action::Mkfile(mkfile)),
        };
        let op = Op { op: Some(op::Kind::File(FileOp { actions: vec![action] })), ..Op::default() };
        self.add(&op, metadata(&["file.base"], None, false))
    }

    /// An exec on `root`; its output is the changed root.
    pub fn exec(&mut self, root: &Output, exec: &Exec) -> Output {
        let mounts = vec![Mount { input: 0, dest: "/".into(), output: 0, ..Mount::default() }];
        self.exec_with(vec![input(root)], mounts, vec!["exec.meta.base", "exec.mount.bind"], exec)
    }

    /// An exec in `tooling`'s root fs (read-only, a tmpfs on /tmp, its
    /// changes discarded) with `target` mounted read-write at the tooling's
    /// mount point; its output is the changed `target`, so a chain goes on
    /// from the target's layers, never the tooling image's.
    pub fn exec_in(&mut self, tooling: &Tooling, target: &Output, exec: &Exec) -> Output {
        let mounts = vec![
            Mount { input: 0, dest: "/".into(), output: NONE, readonly: true, ..Mount::default() },
            Mount {
                input: NONE,
                dest: "/tmp".into(),
                output: NONE,
                mount_type: MountType::Tmpfs.into(),
                ..Mount::default()
            },
            Mount { input: 1, dest: tooling.mount_point.clone(), output: 0, ..Mount::default() },
        ];
        let caps = vec!["exec.meta.base", "exec.mount.bind", "exec.mount.tmpfs"];
        self.exec_with(vec![input(&tooling.root), input(target)], mounts, caps, exec)
    }

    fn exec_with(
        &mut self,
        mut inputs: Vec<Input>,
        mut mounts: Vec<Mount>,
        mut caps: Vec<&'static str>,
        exec: &Exec,
    ) -> Output {
        for file in &exec.files {
            let wanted = input(&file.source);
            let index = inputs.iter().position(|i| *i == wanted).unwrap_or_else(|| {
                inputs.push(wanted);
                inputs.len() - 1
            });
            mounts.push(Mount {
                input: i64::try_from(index).unwrap_or(NONE),
                selector: file.selector.clone(),
                dest: file.dest.clone(),
                output: NONE,
                readonly: true,
                ..Mount::default()
            });
            caps.push("exec.mount.selector");
        }
        for cache in &exec.caches {
            let sharing = match cache.sharing {
                Sharing::Shared => CacheSharingOpt::Shared,
                Sharing::Private => CacheSharingOpt::Private,
                Sharing::Locked => CacheSharingOpt::Locked,
            };
            mounts.push(Mount {
                input: NONE,
                dest: cache.dest.clone(),
                output: NONE,
                readonly: cache.readonly,
                mount_type: MountType::Cache.into(),
                cache_opt: Some(CacheOpt { id: cache.key.clone(), sharing: sharing.into() }),
                ..Mount::default()
            });
            caps.extend(["exec.mount.cache", "exec.mount.cache.sharing"]);
        }
        let network = match exec.network {
            Network::None => NetMode::None,
            Network::Host => NetMode::Host,
        };
        caps.push("exec.meta.network");
        if exec.proxy_env.is_some() {
            caps.push("exec.meta.proxyenv");
        }
        let meta = Meta {
            args: exec.args.clone(),
            env: exec.env.clone(),
            cwd: if exec.cwd.is_empty() { "/".into() } else { exec.cwd.clone() },
            user: exec.user.clone(),
            proxy_env: exec.proxy_env.clone(),
        };
        let exec_op = ExecOp { meta: Some(meta), mounts, network: network.into() };
        let op = Op { inputs, op: Some(op::Kind::Exec(exec_op)), platform: exec.platform.clone() };
        let name = (!exec.name.is_empty()).then_some(exec.name.as_str());
        self.add(&op, metadata(&caps, name, exec.ignore_cache))
    }

    /// The definition whose result is `result`. BuildKit takes the last op,
    /// an op with only an input, as the graph's output.
    pub fn definition(mut self, result: &Output) -> Definition {
        let terminal = Op { inputs: vec![input(result)], ..Op::default() };
        self.add(&terminal, OpMetadata::default());
        let mut definition = Definition::default();
        for (digest, bytes, meta) in self.ops {
            definition.def.push(bytes);
            // Every op gets an entry: a definition used as a frontend input
            // is refused otherwise.
            definition.metadata.insert(digest, meta);
        }
        definition
    }

    fn add(&mut self, op: &Op, meta: OpMetadata) -> Output {
        let bytes = op.encode_to_vec();
        let digest = digest(&bytes);
        if self.seen.insert(digest.clone()) {
            self.ops.push((digest.clone(), bytes, meta));
        }
        Output { digest, index: 0 }
    }
}

/// An op's name: `sha256:` and the hex sha256 of its marshalled bytes.
pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

fn input(output: &Output) -> Input {
    Input { digest: output.digest.clone(), index: output.index }
}

/// Declaring the capabilities an op uses lets an old daemon refuse it by
/// name ("unknown API capability …") instead of misreading it.
fn metadata(caps: &[&str], name: Option<&str>, ignore_cache: bool) -> OpMetadata {
    let mut description = BTreeMap::new();
    if let Some(name) = name {
        description.insert("llb.customname".to_owned(), name.to_owned());
    }
    OpMetadata { ignore_cache, description, caps: caps.iter().map(|c| ((*c).to_owned(), true)).collect() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(definition: &Definition, i: usize) -> Op {
        Op::decode(definition.def[i].as_slice()).unwrap()
    }

    #[test]
    fn ops_come_inputs_first_named_by_their_bytes() {
        let mut graph = Graph::new();
        let image = graph.image("example.com/app:1", None);
        let ca = graph.file("/ca.crt", b"PEM", 0o644);
        let exec = Exec {
            args: vec!["true".into()],
            files: vec![FileMount {
                source: ca.clone(),
                selector: "/ca.crt".into(),
                dest: "/etc/ca.crt".into(),
            }],
            caches: vec![CacheMount {
                key: "apt".into(),
                dest: "/var/cache/apt".into(),
                sharing: Sharing::Locked,
                readonly: false,
            }],
            network: Network::Host,
            ..Exec::default()
        };
        let step = graph.exec(&image, &exec);
        let definition = graph.definition(&step);

        assert_eq!(definition.def.len(), 4);
        assert_eq!(definition.metadata.len(), 4, "one metadata entry per op");
        for bytes in &definition.def {
            assert!(definition.metadata.contains_key(&digest(bytes)));
        }
        assert_eq!(digest(&definition.def[0]), image.digest);
        assert_eq!(digest(&definition.def[1]), ca.digest);
        assert_eq!(digest(&definition.def[2]), step.digest);
        let terminal = decode(&definition, 3);
        assert_eq!(terminal.inputs, vec![Input { digest: step.digest.clone(), index: 0 }]);
        assert!(terminal.op.is_none());

        let Some(op::Kind::Exec(exec_op)) = decode(&definition, 2).op else { panic!("not an exec") };
        assert_eq!(exec_op.network, NetMode::Host as i32);
        assert_eq!(exec_op.mounts.len(), 3);
        let root = &exec_op.mounts[0];
        assert_eq!((root.input, root.dest.as_str(), root.output, root.readonly), (0, "/", 0, false));
        let file = &exec_op.mounts[1];
        assert_eq!(
            (file.input, file.selector.as_str(), file.output, file.readonly),
            (1, "/ca.crt", NONE, true)
        );
        let cache = &exec_op.mounts[2];
        assert_eq!((cache.input, cache.output, cache.mount_type), (NONE, NONE, MountType::Cache as i32));
        assert_eq!(cache.cache_opt.as_ref().unwrap().sharing, CacheSharingOpt::Locked as i32);
    }

    #[test]
    fn a_tooling_exec_changes_the_mounted_target_not_its_root() {
        let mut graph = Graph::new();
        let arm = Platform { architecture: "arm64".into(), os: "linux".into(), variant: "v8".into() };
        let target = graph.image("example.com/app:1", Some(&arm));
        let tools = graph.image("debian:12", None);
        let tooling = Tooling { root: tools.clone(), mount_point: "/target".into() };
        let step = graph.exec_in(&tooling, &target, &Exec { args: vec!["true".into()], ..Exec::default() });
        let definition = graph.definition(&step);

        assert_eq!(decode(&definition, 0).platform, Some(arm), "the target image for its own platform");
        assert_eq!(decode(&definition, 1).platform, None, "the tooling image for the worker's");
        let exec = decode(&definition, 2);
        assert_eq!(exec.inputs, vec![input(&tools), input(&target)]);
        let Some(op::Kind::Exec(exec_op)) = exec.op else { panic!("not an exec") };
        let summary: Vec<_> = exec_op
            .mounts
            .iter()
            .map(|m| (m.input, m.dest.as_str(), m.output, m.readonly, m.mount_type))
            .collect();
        assert_eq!(
            summary,
            [
                (0, "/", NONE, true, MountType::Bind as i32),
                (NONE, "/tmp", NONE, false, MountType::Tmpfs as i32),
                (1, "/target", 0, false, MountType::Bind as i32),
            ],
            "only the target mount has an output"
        );
        assert!(definition.metadata[&step.digest].caps.contains_key("exec.mount.tmpfs"));
    }

    #[test]
    fn the_same_graph_marshals_to_the_same_bytes() {
        let build = || {
            let mut graph = Graph::new();
            let image = graph.image("debian:12", None);
            let exec = Exec { args: vec!["a".into()], env: vec!["X=1".into()], ..Exec::default() };
            let step = graph.exec(&image, &exec);
            graph.definition(&step).encode_to_vec()
        };
        assert_eq!(build(), build());
    }

    #[test]
    fn a_shared_op_is_listed_once() {
        let mut graph = Graph::new();
        let image = graph.image("debian:12", None);
        let ca = graph.file("/ca.crt", b"PEM", 0o644);
        let again = graph.file("/ca.crt", b"PEM", 0o644);
        assert_eq!(ca, again);
        let mount = FileMount { source: ca, selector: "/ca.crt".into(), dest: "/x".into() };
        let first = graph
            .exec(&image, &Exec { args: vec!["1".into()], files: vec![mount.clone()], ..Exec::default() });
        let second =
            graph.exec(&first, &Exec { args: vec!["2".into()], files: vec![mount], ..Exec::default() });
        assert_eq!(graph.definition(&second).def.len(), 5);
    }
}
