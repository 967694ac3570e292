//! fsutil's DiffCopy protocol, both ends: the sender walks a tree and sends
//! one STAT per entry (depth first, names sorted within a directory), an
//! empty STAT to end the list, then DATA for each file the receiver asks
//! for by REQ (the STAT's index), each file ending with an empty DATA; the
//! receiver says FIN when it has all it wants and the sender answers FIN.
//!
//! caulk sends an image's root fs to BuildKit (a `local://` source) and
//! receives the steps' result from BuildKit's `local` exporter. The
//! received stream comes from a daemon that ran the image's own scripts:
//! every path, order, mode, size and id is checked here before a [`Sink`]
//! sees it, and every violation is a [`FsError`] naming what was wrong.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::Read;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use crate::pb::fsutil::{Packet, Stat, packet_type};

/// Bytes per DATA packet, as fsutil sends them.
const CHUNK: usize = 32 * 1024;
/// Files whose data has begun and not ended: fsutil sends four at a time.
const MAX_OPEN: usize = 64;
/// The most entries one tree may have.
const MAX_ENTRIES: u32 = 10_000_000;
/// The largest file a tree may hold.
pub const MAX_FILE: i64 = 64 << 30;
/// The most bytes of names, link targets and xattrs one received tree
/// may list (what a receiver keeps per entry grows with them).
pub const MAX_LISTING: u64 = 512 << 20;
/// What an entry costs the listing besides its names.
const ENTRY_COST: u64 = 128;
/// Owners above this are not ids any image uses.
const MAX_ID: u32 = i32::MAX as u32;
const MAX_PATH: usize = 4096;
const MAX_XATTR: usize = 64 * 1024;

// Go's os.FileMode bits.
const MODE_DIR: u32 = 1 << 31;
const MODE_APPEND: u32 = 1 << 30;
const MODE_EXCLUSIVE: u32 = 1 << 29;
const MODE_TEMPORARY: u32 = 1 << 28;
const MODE_SYMLINK: u32 = 1 << 27;
const MODE_DEVICE: u32 = 1 << 26;
const MODE_PIPE: u32 = 1 << 25;
const MODE_SOCKET: u32 = 1 << 24;
const MODE_SETUID: u32 = 1 << 23;
const MODE_SETGID: u32 = 1 << 22;
const MODE_CHAR: u32 = 1 << 21;
const MODE_STICKY: u32 = 1 << 20;
const MODE_IRREGULAR: u32 = 1 << 19;
/// `os.ModeType`: a file's data may be asked for only without these.
const MODE_TYPE: u32 =
    MODE_DIR | MODE_SYMLINK | MODE_PIPE | MODE_SOCKET | MODE_DEVICE | MODE_CHAR | MODE_IRREGULAR;

/// What an entry is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    CharDevice,
    BlockDevice,
    Fifo,
    Socket,
}

/// A Go `os.FileMode` from a unix `st_mode`.
pub fn go_mode(unix: u32) -> u32 {
    let kind = match unix & 0o170_000 {
        0o040_000 => MODE_DIR,
        0o120_000 => MODE_SYMLINK,
        0o060_000 => MODE_DEVICE,
        0o020_000 => MODE_DEVICE | MODE_CHAR,
        0o010_000 => MODE_PIPE,
        0o140_000 => MODE_SOCKET,
        _ => 0,
    };
    let mut mode = kind | (unix & 0o777);
    if unix & 0o4000 != 0 {
        mode |= MODE_SETUID;
    }
    if unix & 0o2000 != 0 {
        mode |= MODE_SETGID;
    }
    if unix & 0o1000 != 0 {
        mode |= MODE_STICKY;
    }
    mode
}

/// The kind and unix permission bits (with set-id and sticky) of a Go
/// `os.FileMode`; `None` for bits a unix file cannot have.
pub fn unix_mode(go: u32) -> Option<(Kind, u32)> {
    if go & (MODE_APPEND | MODE_EXCLUSIVE | MODE_TEMPORARY | MODE_IRREGULAR) != 0 {
        return None;
    }
    let kind = match go & (MODE_DIR | MODE_SYMLINK | MODE_DEVICE | MODE_CHAR | MODE_PIPE | MODE_SOCKET) {
        0 => Kind::File,
        MODE_DIR => Kind::Dir,
        MODE_SYMLINK => Kind::Symlink,
        MODE_DEVICE => Kind::BlockDevice,
        m if m == MODE_DEVICE | MODE_CHAR => Kind::CharDevice,
        MODE_PIPE => Kind::Fifo,
        MODE_SOCKET => Kind::Socket,
        _ => return None,
    };
    let mut perm = go & 0o777;
    if go & MODE_SETUID != 0 {
        perm |= 0o4000;
    }
    if go & MODE_SETGID != 0 {
        perm |= 0o2000;
    }
    if go & MODE_STICKY != 0 {
        perm |= 0o1000;
    }
    Some((kind, perm))
}

/// A protocol violation, or a local failure while sending or receiving.
#[derive(Debug, thiserror::Error)]
pub enum FsError {
    #[error("entry {path:?}: {reason}")]
    BadPath { path: String, reason: &'static str },
    #[error("entry {path:?} comes out of order (after {after:?})")]
    OutOfOrder { path: String, after: String },
    #[error("entry {path:?} is below {parent:?}, which is not a directory sent before it")]
    NoParent { path: String, parent: String },
    #[error("entry {path:?}: {what}")]
    BadStat { path: String, what: String },
    #[error("more data for {path:?} than its {size} bytes")]
    Oversized { path: String, size: i64 },
    #[error("{path:?} ended after {got} of its {size} bytes")]
    Short { path: String, got: u64, size: i64 },
    #[error("DATA for id {id}, which was not asked for")]
    Unrequested { id: u32 },
    #[error("REQ for id {id}, which is no file of the tree")]
    BadRequest { id: u32 },
    #[error("data for more than {MAX_OPEN} files at once")]
    TooManyOpen,
    #[error("more than {MAX_ENTRIES} entries")]
    TooManyEntries,
    #[error("the entries' names, link targets and xattrs pass {MAX_LISTING} bytes")]
    ListingTooLarge,
    #[error("asking for {path:?} would bring the data asked for past the receiver's limit of {limit} bytes")]
    OverBudget { path: String, limit: u64 },
    #[error("packet type {0} where none is expected")]
    Unexpected(i32),
    #[error("the other side failed: {0}")]
    Peer(String),
    #[error("the stream ended before {0}")]
    Closed(&'static str),
    #[error("{0}")]
    Local(String),
}

/// One end of a DiffCopy stream, blocking.
pub trait Conn {
    /// The next packet; `None` once the stream has ended.
    fn recv(&mut self) -> Result<Option<Packet>, FsError>;
    fn send(&mut self, packet: Packet) -> Result<(), FsError>;
}

/// An entry of a tree to send; `data` is the file to read a regular
/// file's bytes from.
#[derive(Clone, Debug)]
pub struct Entry {
    pub stat: Stat,
    pub data: Option<PathBuf>,
}

/// A tree caulk offers the daemon.
pub trait Tree: Send + Sync {
    /// Every entry but the root, in fsutil's walk order.
    fn entries(&self) -> Result<Vec<Entry>, String>;
}

/// What a send moved: the daemon asks only for files its copy lacks.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Sent {
    pub entries: usize,
    pub files: usize,
    pub bytes: u64,
}

/// Sends `tree` over `conn`, answering REQs until the receiver's FIN.
pub fn send(tree: &dyn Tree, conn: &mut dyn Conn) -> Result<Sent, FsError> {
    let entries = match tree.entries() {
        Ok(entries) => entries,
        Err(e) => {
            let _ = conn.send(Packet {
                r#type: packet_type::ERR,
                data: e.clone().into_bytes(),
                ..Packet::default()
            });
            return Err(FsError::Local(e));
        }
    };
    for entry in &entries {
        conn.send(Packet { r#type: packet_type::STAT, stat: Some(entry.stat.clone()), ..Packet::default() })?;
    }
    conn.send(Packet { r#type: packet_type::STAT, ..Packet::default() })?;
    let mut sent = Sent { entries: entries.len(), ..Sent::default() };
    loop {
        let Some(packet) = conn.recv()? else { return Err(FsError::Closed("the receiver's FIN")) };
        match packet.r#type {
            packet_type::REQ => {
                let entry = usize::try_from(packet.id).ok().and_then(|i| entries.get(i));
                let Some(path) = entry.filter(|e| e.stat.mode & MODE_TYPE == 0).and_then(|e| e.data.as_ref())
                else {
                    return Err(FsError::BadRequest { id: packet.id });
                };
                sent.bytes += send_file(path, packet.id, conn)?;
                sent.files += 1;
            }
            packet_type::FIN => {
                conn.send(Packet { r#type: packet_type::FIN, ..Packet::default() })?;
                return Ok(sent);
            }
            packet_type::ERR => {
                return Err(FsError::Peer(String::from_utf8_lossy(&packet.data).into_owned()));
            }
            other => return Err(FsError::Unexpected(other)),
        }
    }
}

fn send_file(path: &std::path::Path, id: u32, conn: &mut dyn Conn) -> Result<u64, FsError> {
    let local = |e: std::io::Error| FsError::Local(format!("reading {}: {e}", path.display()));
    let mut file = File::options()
        .read(true)
        .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits().cast_signed())
        .open(path)
        .map_err(local)?;
    let mut buf = vec![0; CHUNK];
    let mut total = 0;
    loop {
        let n = file.read(&mut buf).map_err(local)?;
        if n == 0 {
            break;
        }
        total += n as u64;
        conn.send(Packet { r#type: packet_type::DATA, id, data: buf[..n].to_vec(), ..Packet::default() })?;
    }
    conn.send(Packet { r#type: packet_type::DATA, id, ..Packet::default() })?;
    Ok(total)
}

/// What a receiver does with a checked stream.
pub trait Sink: Send {
    /// A checked entry, in walk order; `index` is its REQ id. Returns
    /// whether to ask for a regular file's data.
    fn entry(&mut self, index: u32, stat: &Stat) -> Result<bool, String>;
    fn data(&mut self, index: u32, chunk: &[u8]) -> Result<(), String>;
    /// All of a file's data has come (exactly its stat's size).
    fn file_done(&mut self, index: u32) -> Result<(), String>;
    /// Every entry and every file asked for has come.
    fn finish(&mut self) -> Result<(), String>;
    /// The most bytes of file data this sink may be asked to take in all:
    /// a file that would pass it is refused before it is asked for.
    fn budget(&self) -> u64;
}

/// The walk-order check: names strictly increasing within a directory,
/// a directory's entries right after it, parents sent before as
/// directories.
#[derive(Default)]
struct Order {
    /// Open directories, outermost first: (path, last name seen in it).
    stack: Vec<(String, String)>,
}

impl Order {
    fn check(&mut self, stat: &Stat, kind: Kind) -> Result<(), FsError> {
        let path = &stat.path;
        check_path(path)?;
        if self.stack.is_empty() {
            self.stack.push((String::new(), String::new()));
        }
        let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
        while self.stack.last().is_some_and(|(dir, _)| dir != parent) {
            if self.stack.len() == 1 {
                return Err(FsError::NoParent { path: path.clone(), parent: parent.to_owned() });
            }
            self.stack.pop();
        }
        let (dir, last) = self.stack.last_mut().expect("the root stays");
        if !last.is_empty() && name.as_bytes() <= last.as_bytes() {
            let after = if dir.is_empty() { last.clone() } else { format!("{dir}/{last}") };
            return Err(FsError::OutOfOrder { path: path.clone(), after });
        }
        name.clone_into(last);
        if kind == Kind::Dir {
            self.stack.push((path.clone(), String::new()));
        }
        Ok(())
    }
}

fn check_path(path: &str) -> Result<(), FsError> {
    let bad = |reason| Err(FsError::BadPath { path: path.to_owned(), reason });
    if path.is_empty() {
        return bad("empty path");
    }
    if path.len() > MAX_PATH {
        return bad("path too long");
    }
    if path.starts_with('/') {
        return bad("absolute path");
    }
    if path.contains('\0') {
        return bad("NUL in path");
    }
    for component in path.split('/') {
        match component {
            "" => return bad("empty component"),
            "." | ".." => return bad("`.` or `..` component"),
            c if c.len() > 255 => return bad("component longer than 255 bytes"),
            _ => {}
        }
    }
    Ok(())
}

/// Checks what one STAT claims, returning its kind.
pub fn check_stat(stat: &Stat) -> Result<Kind, FsError> {
    let bad = |what: String| FsError::BadStat { path: stat.path.clone(), what };
    let (kind, _) =
        unix_mode(stat.mode).ok_or_else(|| bad(format!("mode {:#x} is no unix file mode", stat.mode)))?;
    if stat.uid > MAX_ID || stat.gid > MAX_ID {
        return Err(bad(format!("owner {}:{} is out of range", stat.uid, stat.gid)));
    }
    if !(0..=MAX_FILE).contains(&stat.size) {
        return Err(bad(format!("size {} is out of range", stat.size)));
    }
    if !(0..=0xfff).contains(&stat.devmajor) || !(0..=0xf_ffff).contains(&stat.devminor) {
        return Err(bad("device numbers out of range".to_owned()));
    }
    if stat.linkname.len() > MAX_PATH || stat.linkname.contains('\0') {
        return Err(bad("link target too long or with NUL".to_owned()));
    }
    if kind == Kind::Symlink && stat.linkname.is_empty() {
        return Err(bad("symlink without a target".to_owned()));
    }
    // fsutil names the first path of any non-directory with more than one
    // link, fifos and devices included (sockets never: it sends them as
    // empty regular files).
    if !stat.linkname.is_empty()
        && !matches!(kind, Kind::Symlink | Kind::File | Kind::Fifo | Kind::CharDevice | Kind::BlockDevice)
    {
        return Err(bad("hard link from something not a file, fifo or device".to_owned()));
    }
    if stat.xattrs.values().map(Vec::len).sum::<usize>() + stat.xattrs.keys().map(String::len).sum::<usize>()
        > MAX_XATTR
    {
        return Err(bad("extended attributes too large".to_owned()));
    }
    Ok(kind)
}

struct Pending {
    path: String,
    size: i64,
    got: u64,
}

/// Receives a tree over `conn` into `sink`, checking every packet.
pub fn receive(sink: &mut dyn Sink, conn: &mut dyn Conn) -> Result<(), FsError> {
    let result = receive_checked(sink, conn);
    if let Err(e) = &result {
        let _ = conn.send(Packet {
            r#type: packet_type::ERR,
            data: e.to_string().into_bytes(),
            ..Packet::default()
        });
    }
    result
}

fn receive_checked(sink: &mut dyn Sink, conn: &mut dyn Conn) -> Result<(), FsError> {
    let mut order = Order::default();
    // Regular files and their index, for hard links to name.
    let mut files: HashSet<String> = HashSet::new();
    // Fifos and devices, which fsutil also sends as hard links.
    let mut nodes: HashSet<String> = HashSet::new();
    let mut pending: HashMap<u32, Pending> = HashMap::new();
    let mut streaming: HashSet<u32> = HashSet::new();
    let mut index: u32 = 0;
    let mut listed = false;
    let (budget, mut asked) = (sink.budget(), 0u64);
    let mut listing = 0u64;
    loop {
        if listed && pending.is_empty() {
            sink.finish().map_err(FsError::Local)?;
            conn.send(Packet { r#type: packet_type::FIN, ..Packet::default() })?;
            // The sender answers FIN; anything after it is ignored.
            return match conn.recv()? {
                Some(p) if p.r#type == packet_type::FIN => Ok(()),
                Some(p) if p.r#type == packet_type::ERR => {
                    Err(FsError::Peer(String::from_utf8_lossy(&p.data).into_owned()))
                }
                Some(p) => Err(FsError::Unexpected(p.r#type)),
                None => Ok(()),
            };
        }
        let Some(packet) = conn.recv()? else {
            return Err(FsError::Closed(if listed {
                "all asked-for data"
            } else {
                "the end of the entries"
            }));
        };
        match packet.r#type {
            packet_type::STAT => {
                if listed {
                    return Err(FsError::Unexpected(packet_type::STAT));
                }
                let Some(stat) = packet.stat else {
                    listed = true;
                    continue;
                };
                if index >= MAX_ENTRIES {
                    return Err(FsError::TooManyEntries);
                }
                let kind = check_stat(&stat)?;
                order.check(&stat, kind)?;
                let names = stat.path.len()
                    + stat.linkname.len()
                    + stat.xattrs.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
                listing += names as u64 + ENTRY_COST;
                if listing > MAX_LISTING {
                    return Err(FsError::ListingTooLarge);
                }
                let linked = match kind {
                    Kind::File => Some(&files),
                    Kind::Fifo | Kind::CharDevice | Kind::BlockDevice => Some(&nodes),
                    _ => None,
                };
                if let Some(sent) = linked.filter(|_| !stat.linkname.is_empty()) {
                    check_path(&stat.linkname)?;
                    if !sent.contains(&stat.linkname) {
                        return Err(FsError::BadStat {
                            path: stat.path.clone(),
                            what: format!(
                                "hard link to {:?}, no entry of its kind sent before it",
                                stat.linkname
                            ),
                        });
                    }
                }
                if linked.is_some() && kind != Kind::File && stat.linkname.is_empty() {
                    nodes.insert(stat.path.clone());
                }
                let wants = sink.entry(index, &stat).map_err(FsError::Local)?;
                if kind == Kind::File && stat.linkname.is_empty() {
                    files.insert(stat.path.clone());
                    if wants {
                        // check_stat bounds the size; the sum is what the
                        // receiver will hold.
                        asked += stat.size.unsigned_abs();
                        if asked > budget {
                            return Err(FsError::OverBudget { path: stat.path.clone(), limit: budget });
                        }
                        pending.insert(index, Pending { path: stat.path.clone(), size: stat.size, got: 0 });
                        conn.send(Packet { r#type: packet_type::REQ, id: index, ..Packet::default() })?;
                    }
                }
                index += 1;
            }
            packet_type::DATA => {
                let id = packet.id;
                let Some(file) = pending.get_mut(&id) else { return Err(FsError::Unrequested { id }) };
                if packet.data.is_empty() {
                    if i64::try_from(file.got).ok() != Some(file.size) {
                        return Err(FsError::Short {
                            path: file.path.clone(),
                            got: file.got,
                            size: file.size,
                        });
                    }
                    pending.remove(&id);
                    streaming.remove(&id);
                    sink.file_done(id).map_err(FsError::Local)?;
                    continue;
                }
                if streaming.insert(id) && streaming.len() > MAX_OPEN {
                    return Err(FsError::TooManyOpen);
                }
                file.got += packet.data.len() as u64;
                if i64::try_from(file.got).map_or(true, |got| got > file.size) {
                    return Err(FsError::Oversized { path: file.path.clone(), size: file.size });
                }
                sink.data(id, &packet.data).map_err(FsError::Local)?;
            }
            packet_type::ERR => {
                return Err(FsError::Peer(String::from_utf8_lossy(&packet.data).into_owned()));
            }
            other => return Err(FsError::Unexpected(other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Plays `packets` to a receiver and records what it sends back.
    struct Script {
        packets: Box<dyn Iterator<Item = Packet>>,
        sent: Vec<Packet>,
    }

    impl Conn for Script {
        fn recv(&mut self) -> Result<Option<Packet>, FsError> {
            Ok(self.packets.next())
        }

        fn send(&mut self, packet: Packet) -> Result<(), FsError> {
            self.sent.push(packet);
            Ok(())
        }
    }

    /// Wants every regular file and keeps what it is told.
    struct Keep {
        entries: Vec<String>,
        data: HashMap<u32, Vec<u8>>,
        finished: bool,
        budget: u64,
    }

    impl Default for Keep {
        fn default() -> Self {
            Keep { entries: Vec::new(), data: HashMap::new(), finished: false, budget: u64::MAX }
        }
    }

    impl Sink for Keep {
        fn entry(&mut self, _: u32, stat: &Stat) -> Result<bool, String> {
            self.entries.push(stat.path.clone());
            Ok(true)
        }

        fn data(&mut self, index: u32, chunk: &[u8]) -> Result<(), String> {
            self.data.entry(index).or_default().extend_from_slice(chunk);
            Ok(())
        }

        fn file_done(&mut self, _: u32) -> Result<(), String> {
            Ok(())
        }

        fn finish(&mut self) -> Result<(), String> {
            self.finished = true;
            Ok(())
        }

        fn budget(&self) -> u64 {
            self.budget
        }
    }

    fn stat(path: &str, mode: u32, size: i64) -> Packet {
        let stat = Stat { path: path.into(), mode, size, ..Stat::default() };
        Packet { r#type: packet_type::STAT, stat: Some(stat), ..Packet::default() }
    }

    fn dir(path: &str) -> Packet {
        stat(path, MODE_DIR | 0o755, 0)
    }

    fn file(path: &str, size: i64) -> Packet {
        stat(path, 0o644, size)
    }

    fn end() -> Packet {
        Packet { r#type: packet_type::STAT, ..Packet::default() }
    }

    fn data(id: u32, bytes: &[u8]) -> Packet {
        Packet { r#type: packet_type::DATA, id, data: bytes.to_vec(), ..Packet::default() }
    }

    fn fin() -> Packet {
        Packet { r#type: packet_type::FIN, ..Packet::default() }
    }

    fn play(packets: Vec<Packet>) -> (Result<(), FsError>, Keep, Vec<Packet>) {
        play_to(Keep::default(), packets)
    }

    fn play_to(
        mut keep: Keep,
        packets: impl IntoIterator<Item = Packet, IntoIter: 'static>,
    ) -> (Result<(), FsError>, Keep, Vec<Packet>) {
        let mut script = Script { packets: Box::new(packets.into_iter()), sent: Vec::new() };
        let result = receive(&mut keep, &mut script);
        (result, keep, script.sent)
    }

    #[test]
    fn a_well_formed_stream_is_taken_in_walk_order_and_ends_with_fins() {
        let link = Packet {
            r#type: packet_type::STAT,
            stat: Some(Stat {
                path: "a/link".into(),
                mode: 0o644,
                linkname: "a/b".into(),
                ..Stat::default()
            }),
            ..Packet::default()
        };
        let (result, keep, sent) = play(vec![
            dir("a"),
            file("a/b", 3),
            link,
            file("a-b", 0),
            end(),
            data(1, b"abc"),
            data(1, b""),
            data(3, b""),
            fin(),
        ]);
        result.unwrap();
        assert_eq!(keep.entries, ["a", "a/b", "a/link", "a-b"]);
        assert_eq!(keep.data[&1], b"abc");
        assert!(keep.finished);
        let kinds: Vec<(i32, u32)> = sent.iter().map(|p| (p.r#type, p.id)).collect();
        assert_eq!(kinds, [(packet_type::REQ, 1), (packet_type::REQ, 3), (packet_type::FIN, 0)]);
    }

    fn refused(packets: Vec<Packet>) -> FsError {
        let (result, keep, sent) = play(packets);
        assert!(!keep.finished);
        assert_eq!(sent.last().map(|p| p.r#type), Some(packet_type::ERR), "the sender hears why");
        result.unwrap_err()
    }

    #[test]
    fn hostile_paths_are_refused_by_name() {
        for (path, reason) in [
            ("../etc/passwd", "`.` or `..` component"),
            ("a/../../x", "`.` or `..` component"),
            ("/etc/passwd", "absolute path"),
            ("a//b", "empty component"),
            ("", "empty path"),
            ("a\0b", "NUL in path"),
        ] {
            let err = refused(vec![dir("a"), file(path, 0), end()]);
            assert!(
                matches!(&err, FsError::BadPath { path: p, reason: r } if p == path && *r == reason),
                "{path:?}: {err}"
            );
        }
    }

    #[test]
    fn entries_out_of_walk_order_are_refused() {
        let err = refused(vec![file("b", 0), file("a", 0), end()]);
        assert!(matches!(&err, FsError::OutOfOrder { path, after } if path == "a" && after == "b"), "{err}");
        let err = refused(vec![file("a", 0), file("a", 0), end()]);
        assert!(matches!(err, FsError::OutOfOrder { .. }), "a name twice");
        // `a-b` sorts after `a`, so `a/c` after it is out of order.
        let err = refused(vec![dir("a"), file("a-b", 0), file("a/c", 0), end()]);
        assert!(matches!(&err, FsError::NoParent { path, .. } if path == "a/c"), "{err}");
    }

    #[test]
    fn entries_below_a_symlink_or_a_file_are_refused() {
        let symlink = Packet {
            r#type: packet_type::STAT,
            stat: Some(Stat {
                path: "l".into(),
                mode: MODE_SYMLINK | 0o777,
                linkname: "/etc".into(),
                ..Stat::default()
            }),
            ..Packet::default()
        };
        let err = refused(vec![symlink, file("l/passwd", 0), end()]);
        assert!(
            matches!(&err, FsError::NoParent { path, parent } if path == "l/passwd" && parent == "l"),
            "{err}"
        );
        let err = refused(vec![file("f", 0), file("f/x", 0), end()]);
        assert!(matches!(&err, FsError::NoParent { parent, .. } if parent == "f"), "{err}");
    }

    #[test]
    fn more_data_than_the_stat_says_is_refused() {
        let err = refused(vec![file("f", 2), end(), data(0, b"abc")]);
        assert!(matches!(&err, FsError::Oversized { path, size: 2 } if path == "f"), "{err}");
        let err = refused(vec![file("f", 4), end(), data(0, b"abc"), data(0, b"")]);
        assert!(matches!(&err, FsError::Short { got: 3, size: 4, .. }), "{err}");
        let err = refused(vec![file("f", 1), end(), data(7, b"x")]);
        assert!(matches!(err, FsError::Unrequested { id: 7 }), "{err}");
    }

    #[test]
    fn absurd_stats_are_refused() {
        let mut owner = file("f", 0);
        owner.stat.as_mut().unwrap().uid = u32::MAX;
        assert!(matches!(refused(vec![owner, end()]), FsError::BadStat { .. }));
        assert!(matches!(refused(vec![file("f", -1), end()]), FsError::BadStat { .. }));
        assert!(matches!(refused(vec![file("f", MAX_FILE + 1), end()]), FsError::BadStat { .. }));
        assert!(matches!(refused(vec![stat("f", MODE_IRREGULAR, 0), end()]), FsError::BadStat { .. }));
        let dangling = Packet {
            r#type: packet_type::STAT,
            stat: Some(Stat { path: "h".into(), mode: 0o644, linkname: "nothing".into(), ..Stat::default() }),
            ..Packet::default()
        };
        assert!(matches!(refused(vec![dangling, end()]), FsError::BadStat { .. }), "a hard link to nothing");
        let err = refused(vec![file("f", 0)]);
        assert!(matches!(err, FsError::Closed(_)), "{err}");
    }

    #[test]
    fn data_past_the_receivers_budget_is_refused_before_it_is_asked_for() {
        let keep = Keep { budget: 5, ..Keep::default() };
        let (result, keep, sent) = play_to(keep, vec![file("a", 3), file("b", 2), file("c", 1), end()]);
        let err = result.unwrap_err();
        assert!(matches!(&err, FsError::OverBudget { path, limit: 5 } if path == "c"), "{err}");
        assert!(err.to_string().contains("limit of 5 bytes"), "{err}");
        assert!(!keep.finished);
        let asked: Vec<u32> = sent.iter().filter(|p| p.r#type == packet_type::REQ).map(|p| p.id).collect();
        assert_eq!(asked, [0, 1], "c never asked for");
    }

    #[test]
    fn a_listing_past_its_limit_is_refused() {
        let xattrs: std::collections::BTreeMap<String, Vec<u8>> =
            (0..15).map(|i| (format!("user.{i}"), vec![0; 4000])).collect();
        let entries = usize::try_from(MAX_LISTING / (15 * 4000)).unwrap() + 1;
        // Made as they are read: the whole listing would be half a GiB.
        let packets = (0..entries)
            .map(move |i| {
                let mut packet = file(&format!("{i:08}"), 0);
                packet.stat.as_mut().unwrap().xattrs.clone_from(&xattrs);
                packet
            })
            .chain([end()]);
        let (result, keep, _) = play_to(Keep { budget: 0, ..Keep::default() }, packets);
        assert!(matches!(result, Err(FsError::ListingTooLarge)), "{result:?}");
        assert!(keep.entries.len() < entries);
    }

    #[test]
    fn hard_linked_fifos_and_devices_are_taken() {
        let linked = |path: &str, mode: u32, to: &str| {
            let mut packet = stat(path, mode, 0);
            to.clone_into(&mut packet.stat.as_mut().unwrap().linkname);
            packet
        };
        let (result, keep, _) = play(vec![
            stat("f1", MODE_PIPE | 0o644, 0),
            linked("f2", MODE_PIPE | 0o644, "f1"),
            stat("n1", MODE_DEVICE | MODE_CHAR | 0o666, 0),
            linked("n2", MODE_DEVICE | MODE_CHAR | 0o666, "n1"),
            end(),
            fin(),
        ]);
        result.unwrap();
        assert_eq!(keep.entries, ["f1", "f2", "n1", "n2"]);
        let err = refused(vec![file("f", 0), linked("p", MODE_PIPE | 0o644, "f"), end()]);
        assert!(
            matches!(&err, FsError::BadStat { path, .. } if path == "p"),
            "a fifo linked to a file: {err}"
        );
        let err = refused(vec![dir("d"), linked("s", MODE_SOCKET | 0o755, "d"), end()]);
        assert!(matches!(&err, FsError::BadStat { path, .. } if path == "s"), "{err}");
    }

    #[test]
    fn go_modes_round_trip_unix_modes() {
        for (unix, kind) in [
            (0o100_644, Kind::File),
            (0o104_755, Kind::File),
            (0o041_777, Kind::Dir),
            (0o120_777, Kind::Symlink),
            (0o020_666, Kind::CharDevice),
            (0o060_660, Kind::BlockDevice),
            (0o010_644, Kind::Fifo),
            (0o140_755, Kind::Socket),
        ] {
            let go = go_mode(unix);
            assert_eq!(unix_mode(go), Some((kind, unix & 0o7777)), "{unix:o}");
        }
        assert_eq!(go_mode(0o040_755), MODE_DIR | 0o755);
        assert_eq!(go_mode(0o102_755), MODE_SETGID | 0o755);
    }
}
