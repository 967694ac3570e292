//! LLB messages (BuildKit's `solver/pb/ops.proto`, package `pb`), written by
//! hand with the upstream field numbers. Only the fields caulk sends or reads.
//!
//! Maps are `BTreeMap`s so an op marshals to the same bytes every time: an
//! op's digest is the sha256 of those bytes, and BuildKit's cache keys on it.

use std::collections::BTreeMap;

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Op {
    #[prost(message, repeated, tag = "1")]
    pub inputs: Vec<Input>,
    #[prost(oneof = "op::Kind", tags = "2, 3, 4")]
    pub op: Option<op::Kind>,
    #[prost(message, optional, tag = "10")]
    pub platform: Option<Platform>,
}

pub mod op {
    #[derive(Clone, PartialEq, ::prost::Oneof)]
    pub enum Kind {
        #[prost(message, tag = "2")]
        Exec(super::ExecOp),
        #[prost(message, tag = "3")]
        Source(super::SourceOp),
        #[prost(message, tag = "4")]
        File(super::FileOp),
    }
}

#[derive(Clone, PartialEq, Eq, ::prost::Message)]
pub struct Platform {
    #[prost(string, tag = "1")]
    pub architecture: String,
    #[prost(string, tag = "2")]
    pub os: String,
    #[prost(string, tag = "3")]
    pub variant: String,
}

#[derive(Clone, PartialEq, Eq, ::prost::Message)]
pub struct Input {
    #[prost(string, tag = "1")]
    pub digest: String,
    #[prost(int64, tag = "2")]
    pub index: i64,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ExecOp {
    #[prost(message, optional, tag = "1")]
    pub meta: Option<Meta>,
    #[prost(message, repeated, tag = "2")]
    pub mounts: Vec<Mount>,
    #[prost(enumeration = "NetMode", tag = "3")]
    pub network: i32,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Meta {
    #[prost(string, repeated, tag = "1")]
    pub args: Vec<String>,
    #[prost(string, repeated, tag = "2")]
    pub env: Vec<String>,
    #[prost(string, tag = "3")]
    pub cwd: String,
    #[prost(string, tag = "4")]
    pub user: String,
    #[prost(message, optional, tag = "5")]
    pub proxy_env: Option<ProxyEnv>,
}

#[derive(Clone, PartialEq, Eq, ::prost::Message)]
pub struct ProxyEnv {
    #[prost(string, tag = "1")]
    pub http_proxy: String,
    #[prost(string, tag = "2")]
    pub https_proxy: String,
    #[prost(string, tag = "3")]
    pub ftp_proxy: String,
    #[prost(string, tag = "4")]
    pub no_proxy: String,
    #[prost(string, tag = "5")]
    pub all_proxy: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Enumeration)]
#[repr(i32)]
pub enum NetMode {
    /// The daemon's sandbox network (a bridge, if it has one).
    Unset = 0,
    Host = 1,
    None = 2,
}

#[derive(Clone, PartialEq, Eq, ::prost::Message)]
pub struct Mount {
    #[prost(int64, tag = "1")]
    pub input: i64,
    #[prost(string, tag = "2")]
    pub selector: String,
    #[prost(string, tag = "3")]
    pub dest: String,
    #[prost(int64, tag = "4")]
    pub output: i64,
    #[prost(bool, tag = "5")]
    pub readonly: bool,
    #[prost(enumeration = "MountType", tag = "6")]
    pub mount_type: i32,
    #[prost(message, optional, tag = "20")]
    pub cache_opt: Option<CacheOpt>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Enumeration)]
#[repr(i32)]
pub enum MountType {
    Bind = 0,
    Secret = 1,
    Ssh = 2,
    Cache = 3,
    Tmpfs = 4,
}

#[derive(Clone, PartialEq, Eq, ::prost::Message)]
pub struct CacheOpt {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(enumeration = "CacheSharingOpt", tag = "2")]
    pub sharing: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, ::prost::Enumeration)]
#[repr(i32)]
pub enum CacheSharingOpt {
    Shared = 0,
    Private = 1,
    Locked = 2,
}

#[derive(Clone, PartialEq, Eq, ::prost::Message)]
pub struct SourceOp {
    #[prost(string, tag = "1")]
    pub identifier: String,
    #[prost(btree_map = "string, string", tag = "2")]
    pub attrs: BTreeMap<String, String>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct OpMetadata {
    #[prost(bool, tag = "1")]
    pub ignore_cache: bool,
    #[prost(btree_map = "string, string", tag = "2")]
    pub description: BTreeMap<String, String>,
    #[prost(btree_map = "string, bool", tag = "5")]
    pub caps: BTreeMap<String, bool>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Definition {
    #[prost(bytes = "vec", repeated, tag = "1")]
    pub def: Vec<Vec<u8>>,
    #[prost(btree_map = "string, message", tag = "2")]
    pub metadata: BTreeMap<String, OpMetadata>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct FileOp {
    #[prost(message, repeated, tag = "2")]
    pub actions: Vec<FileAction>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct FileAction {
    #[prost(int64, tag = "1")]
    pub input: i64,
    #[prost(int64, tag = "2")]
    pub secondary_input: i64,
    #[prost(int64, tag = "3")]
    pub output: i64,
    #[prost(oneof = "file_action::Action", tags = "5")]
    pub action: Option<file_action::Action>,
}

pub mod file_action {
    #[derive(Clone, PartialEq, ::prost::Oneof)]
    pub enum Action {
        #[prost(message, tag = "5")]
        Mkfile(super::FileActionMkFile),
    }
}

#[derive(Clone, PartialEq, Eq, ::prost::Message)]
pub struct FileActionMkFile {
    #[prost(string, tag = "1")]
    pub path: String,
    #[prost(int32, tag = "2")]
    pub mode: i32,
    #[prost(bytes = "vec", tag = "3")]
    pub data: Vec<u8>,
    #[prost(int64, tag = "5")]
    pub timestamp: i64,
}
