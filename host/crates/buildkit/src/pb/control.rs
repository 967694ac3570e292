//! Control service messages (BuildKit's `api/services/control/control.proto`,
//! package `moby.buildkit.v1`, and `api/types/worker.proto`), written by hand
//! with the upstream field numbers. Only the fields caulk sends or reads.

use std::collections::{BTreeMap, HashMap};

use super::llb::{Definition, Platform};

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct SolveRequest {
    #[prost(string, tag = "1")]
    pub r#ref: String,
    #[prost(message, optional, tag = "2")]
    pub definition: Option<Definition>,
    #[prost(string, tag = "3")]
    pub exporter: String,
    #[prost(btree_map = "string, string", tag = "4")]
    pub exporter_attrs: BTreeMap<String, String>,
    #[prost(string, tag = "5")]
    pub session: String,
    #[prost(string, repeated, tag = "9")]
    pub entitlements: Vec<String>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct SolveResponse {
    #[prost(map = "string, string", tag = "1")]
    pub exporter_response: HashMap<String, String>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct StatusRequest {
    #[prost(string, tag = "1")]
    pub r#ref: String,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct StatusResponse {
    #[prost(message, repeated, tag = "1")]
    pub vertexes: Vec<Vertex>,
    #[prost(message, repeated, tag = "3")]
    pub logs: Vec<VertexLog>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Vertex {
    #[prost(string, tag = "1")]
    pub digest: String,
    #[prost(string, tag = "3")]
    pub name: String,
    #[prost(bool, tag = "4")]
    pub cached: bool,
    #[prost(message, optional, tag = "5")]
    pub started: Option<Timestamp>,
    #[prost(message, optional, tag = "6")]
    pub completed: Option<Timestamp>,
    #[prost(string, tag = "7")]
    pub error: String,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct VertexLog {
    #[prost(string, tag = "1")]
    pub vertex: String,
    #[prost(int64, tag = "3")]
    pub stream: i64,
    #[prost(bytes = "vec", tag = "4")]
    pub msg: Vec<u8>,
}

/// google.protobuf.Timestamp: only its presence matters to caulk.
#[derive(Clone, PartialEq, Eq, ::prost::Message)]
pub struct Timestamp {
    #[prost(int64, tag = "1")]
    pub seconds: i64,
    #[prost(int32, tag = "2")]
    pub nanos: i32,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ListWorkersRequest {
    #[prost(string, repeated, tag = "1")]
    pub filter: Vec<String>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct ListWorkersResponse {
    #[prost(message, repeated, tag = "1")]
    pub record: Vec<WorkerRecord>,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct WorkerRecord {
    #[prost(string, tag = "1")]
    pub id: String,
    #[prost(map = "string, string", tag = "2")]
    pub labels: HashMap<String, String>,
    #[prost(message, repeated, tag = "3")]
    pub platforms: Vec<Platform>,
    /// Added after v0.8; absent from older daemons.
    #[prost(message, optional, tag = "5")]
    pub buildkit_version: Option<BuildkitVersion>,
}

#[derive(Clone, PartialEq, Eq, ::prost::Message)]
pub struct BuildkitVersion {
    #[prost(string, tag = "1")]
    pub package: String,
    #[prost(string, tag = "2")]
    pub version: String,
    #[prost(string, tag = "3")]
    pub revision: String,
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct InfoRequest {}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct InfoResponse {
    #[prost(message, optional, tag = "1")]
    pub buildkit_version: Option<BuildkitVersion>,
}

/// One chunk of a byte stream tunnelled through `Control.Session`.
#[derive(Clone, PartialEq, Eq, ::prost::Message)]
pub struct BytesMessage {
    #[prost(bytes = "vec", tag = "1")]
    pub data: Vec<u8>,
}
