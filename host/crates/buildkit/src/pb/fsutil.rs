//! fsutil's wire messages (`tonistiigi/fsutil` `types/wire.proto` and
//! `types/stat.proto`), which BuildKit's filesync streams carry as raw gRPC
//! messages even though its service definitions name `BytesMessage`.

use std::collections::BTreeMap;

/// `Packet.PacketType`.
pub mod packet_type {
    pub const STAT: i32 = 0;
    pub const REQ: i32 = 1;
    pub const DATA: i32 = 2;
    pub const FIN: i32 = 3;
    pub const ERR: i32 = 4;
}

#[derive(Clone, PartialEq, ::prost::Message)]
pub struct Packet {
    #[prost(int32, tag = "1")]
    pub r#type: i32,
    #[prost(message, optional, tag = "2")]
    pub stat: Option<Stat>,
    /// The index of a STAT among all STATs of the stream.
    #[prost(uint32, tag = "3")]
    pub id: u32,
    #[prost(bytes = "vec", tag = "4")]
    pub data: Vec<u8>,
}

/// One entry of a tree. `mode` is Go's `os.FileMode` (type bits high), not
/// a unix mode; a hard link is a non-symlink with `linkname` naming the
/// first path of its inode.
#[derive(Clone, PartialEq, Eq, ::prost::Message)]
pub struct Stat {
    #[prost(string, tag = "1")]
    pub path: String,
    #[prost(uint32, tag = "2")]
    pub mode: u32,
    #[prost(uint32, tag = "3")]
    pub uid: u32,
    #[prost(uint32, tag = "4")]
    pub gid: u32,
    #[prost(int64, tag = "5")]
    pub size: i64,
    /// Nanoseconds since the epoch.
    #[prost(int64, tag = "6")]
    pub mod_time: i64,
    #[prost(string, tag = "7")]
    pub linkname: String,
    #[prost(int64, tag = "8")]
    pub devmajor: i64,
    #[prost(int64, tag = "9")]
    pub devminor: i64,
    #[prost(btree_map = "string, bytes", tag = "10")]
    pub xattrs: BTreeMap<String, Vec<u8>>,
}
