//! The steps' result, as BuildKit's `local` exporter streams it, turned
//! into an overlay-style upper dir over the image: what differs from the
//! image is written (parents with the result's metadata), what the image
//! has and the result lacks becomes a whiteout (a 0/0 character device).
//!
//! An entry whose stat (kind, mode, owner, size, mtime, link target,
//! device numbers, the xattrs a layer keeps) equals the image's is
//! unchanged, with one exception: a regular file in a directory whose
//! mtime changed, or at the root (which the stream has no stat for), may
//! have been replaced by rename keeping size and mtime (dpkg does that), so
//! its data is asked for and compared. An in-place rewrite that restores
//! the mtime in an unchanged directory is not seen.
//!
//! The stream's paths, order and sizes were checked by
//! `caulk_buildkit::filesync`; this side never follows a symlink it writes.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use caulk_buildkit::Kind;
use caulk_buildkit::filesync::unix_mode;
use caulk_buildkit::pb::fsutil::Stat;
use caulk_exec::{EntryKind, FileInfo, MergedReader};
use caulk_image::layer::xattr_is_kept;

use super::image_tree::stat_of;

/// An open directory of the stream.
struct Frame {
    path: String,
    /// The image's entries of the same directory, when the image has it
    /// as a directory.
    lower: Option<HashMap<String, FileInfo>>,
    seen: HashSet<String>,
    mtime_changed: bool,
}

struct Incoming {
    stat: Stat,
    scratch: PathBuf,
    /// Opened at the first data: many files are asked for at once.
    file: Option<File>,
    /// The image's file to compare with: written only if it differs.
    compare: Option<PathBuf>,
}

struct Link {
    path: String,
    target: String,
}

pub struct UpperSink {
    reader: MergedReader,
    out: PathBuf,
    scratch: tempfile::TempDir,
    frames: Vec<Frame>,
    /// Every directory of the result, for parents made later.
    dirs: HashMap<String, Stat>,
    /// Directories made in `out`, in the order made.
    made: Vec<String>,
    made_set: HashSet<String>,
    /// Regular files written into `out`.
    written: HashSet<String>,
    /// Regular files of the result.
    files: HashMap<String, Stat>,
    /// The daemon's own copy of the image before the steps, by path:
    /// what the result is compared with (an old daemon's copy of a sent
    /// tree has new directory mtimes).
    baseline: HashMap<String, Stat>,
    incoming: HashMap<u32, Incoming>,
    links: Vec<Link>,
    /// The free space of `out`'s file system when the sink was made: the
    /// most file data a result may bring (a step can make sparse files
    /// far larger than any disk).
    budget: u64,
    /// The directory `out` is in, removed only once the sink is dropped
    /// by the thread that receives into it.
    holds: Option<std::sync::Arc<tempfile::TempDir>>,
    /// Hard links whose stat is the image's: linked only when their
    /// target is written, which means the steps replaced the inode.
    quiet_links: Vec<Link>,
}

fn err(what: impl std::fmt::Display, path: &Path, e: impl std::fmt::Display) -> String {
    format!("{what} {}: {e}", path.display())
}

impl UpperSink {
    /// Builds into `out` (an empty directory) the difference between the
    /// result and the tree `reader` shows; `scratch_in` holds data while
    /// it arrives (the same file system as `out`).
    pub fn new(
        reader: MergedReader,
        baseline: HashMap<String, Stat>,
        out: &Path,
        scratch_in: &Path,
    ) -> Result<Self, String> {
        let space = rustix::fs::statvfs(out).map_err(|e| err("reading the free space of", out, e))?;
        let budget = space.f_bavail.saturating_mul(space.f_frsize);
        let scratch = tempfile::Builder::new()
            .prefix("bk-incoming-")
            .tempdir_in(scratch_in)
            .map_err(|e| err("creating a scratch dir in", scratch_in, e))?;
        let mut sink = UpperSink {
            reader,
            out: out.to_owned(),
            scratch,
            frames: Vec::new(),
            dirs: HashMap::new(),
            made: Vec::new(),
            made_set: HashSet::new(),
            written: HashSet::new(),
            files: HashMap::new(),
            baseline,
            incoming: HashMap::new(),
            links: Vec::new(),
            quiet_links: Vec::new(),
            holds: None,
            budget,
        };
        let root = sink.lower_children("")?;
        // fsutil sends no entry for the root, so whether its mtime moved is
        // unknown: its few files are compared by content whenever their
        // stat is unchanged.
        sink.frames.push(Frame {
            path: String::new(),
            lower: root,
            seen: HashSet::new(),
            mtime_changed: true,
        });
        Ok(sink)
    }

    /// Keeps `dir` (the one `out` is in) while the sink lives: a transfer
    /// stopped early may still be writing after its caller gave up.
    pub fn holding(mut self, dir: std::sync::Arc<tempfile::TempDir>) -> Self {
        self.holds = Some(dir);
        self
    }

    fn lower_children(&self, dir: &str) -> Result<Option<HashMap<String, FileInfo>>, String> {
        let list = self.reader.list(&format!("/{dir}")).map_err(|e| e.to_string())?;
        Ok(Some(
            list.into_iter()
                .map(|info| {
                    let name = info.path.rsplit('/').next().unwrap_or_default().to_owned();
                    (name, info)
                })
                .collect(),
        ))
    }

    fn real_lower(&self, info: &FileInfo) -> PathBuf {
        self.reader.layers()[info.layer].join(info.path.trim_start_matches('/'))
    }

    /// Closes directories until `parent` is the innermost, writing the
    /// whiteouts of what each closed one lost.
    fn close_to(&mut self, parent: &str) -> Result<(), String> {
        while self.frames.last().is_some_and(|f| f.path != parent) {
            let frame = self.frames.pop().expect("checked");
            self.whiteouts(&frame)?;
        }
        Ok(())
    }

    fn whiteouts(&mut self, frame: &Frame) -> Result<(), String> {
        let Some(lower) = &frame.lower else { return Ok(()) };
        let mut gone: Vec<&String> = lower.keys().filter(|name| !frame.seen.contains(*name)).collect();
        gone.sort();
        for name in gone {
            let path = join(&frame.path, name);
            self.ensure_parents(&path)?;
            let target = self.out.join(&path);
            rustix::fs::mknodat(
                rustix::fs::CWD,
                &target,
                rustix::fs::FileType::CharacterDevice,
                rustix::fs::Mode::empty(),
                rustix::fs::makedev(0, 0),
            )
            .map_err(|e| err("writing the whiteout", &target, e))?;
        }
        Ok(())
    }

    /// Makes every directory above `path` in `out`.
    fn ensure_parents(&mut self, path: &str) -> Result<(), String> {
        let mut prefix = String::new();
        let parts: Vec<&str> = path.split('/').collect();
        for part in &parts[..parts.len() - 1] {
            prefix = join(&prefix, part);
            self.ensure_dir(&prefix)?;
        }
        Ok(())
    }

    fn ensure_dir(&mut self, path: &str) -> Result<(), String> {
        if self.made_set.contains(path) {
            return Ok(());
        }
        let target = self.out.join(path);
        match fs::symlink_metadata(&target) {
            Ok(meta) if meta.is_dir() => {}
            Ok(_) => return Err(format!("{} is in the way of a directory", target.display())),
            Err(_) => fs::create_dir(&target).map_err(|e| err("creating", &target, e))?,
        }
        self.made_set.insert(path.to_owned());
        self.made.push(path.to_owned());
        Ok(())
    }

    fn lower_of(&self, name: &str) -> Option<&FileInfo> {
        self.frames.last().and_then(|f| f.lower.as_ref()).and_then(|l| l.get(name))
    }

    /// Writes a non-directory, non-regular entry. A second name of a fifo
    /// or device (fsutil sends it as a hard link, with its own type and
    /// numbers) becomes a node of its own: the same node either way.
    fn write_special(&mut self, stat: &Stat, kind: Kind) -> Result<(), String> {
        self.ensure_parents(&stat.path)?;
        let target = self.out.join(&stat.path);
        let (file_type, rdev) = match kind {
            Kind::Symlink => {
                std::os::unix::fs::symlink(&stat.linkname, &target)
                    .map_err(|e| err("writing", &target, e))?;
                return apply(&target, stat, false);
            }
            Kind::CharDevice if stat.devmajor == 0 && stat.devminor == 0 => {
                return Err(format!("{}: a 0/0 character device would read as a deletion", stat.path));
            }
            Kind::CharDevice => (rustix::fs::FileType::CharacterDevice, dev(stat)),
            Kind::BlockDevice => (rustix::fs::FileType::BlockDevice, dev(stat)),
            Kind::Fifo => (rustix::fs::FileType::Fifo, 0),
            // A layer cannot hold a socket (caulk's layer writer leaves them
            // out); fsutil sends one as an empty regular file anyway.
            Kind::Socket | Kind::File | Kind::Dir => return Ok(()),
        };
        rustix::fs::mknodat(rustix::fs::CWD, &target, file_type, rustix::fs::Mode::empty(), rdev)
            .map_err(|e| err("writing", &target, e))?;
        apply(&target, stat, true)
    }

    /// Puts a received file in place.
    fn install(&mut self, incoming: &Incoming) -> Result<(), String> {
        let path = incoming.stat.path.clone();
        self.ensure_parents(&path)?;
        let target = self.out.join(&path);
        fs::rename(&incoming.scratch, &target).map_err(|e| err("moving into", &target, e))?;
        apply(&target, &incoming.stat, true)?;
        self.written.insert(path);
        Ok(())
    }

    fn link(&mut self, link: &Link) -> Result<(), String> {
        self.ensure_parents(&link.path)?;
        let (from, to) = (self.out.join(&link.target), self.out.join(&link.path));
        fs::hard_link(&from, &to).map_err(|e| err("linking", &to, e))
    }

    fn copy_up(&mut self, path: &str) -> Result<(), String> {
        let Some(stat) = self.files.get(path).cloned() else {
            return Err(format!("hard link target {path} is not a file of the result"));
        };
        // The daemon's stats say it is a file; the image must agree, or a
        // symlink there would be followed out of the image.
        let info = self
            .reader
            .stat(&format!("/{path}"))
            .map_err(|e| e.to_string())?
            .filter(|info| info.kind == EntryKind::File)
            .ok_or_else(|| {
                format!("hard link target {path} is neither written nor a regular file of the image")
            })?;
        let from = self.real_lower(&info);
        self.ensure_parents(path)?;
        let target = self.out.join(path);
        let mut source = File::options()
            .read(true)
            .custom_flags(rustix::fs::OFlags::NOFOLLOW.bits().cast_signed())
            .open(&from)
            .map_err(|e| err("opening", &from, e))?;
        let copied =
            std::io::copy(&mut source, &mut create(&target)?).map_err(|e| err("copying up", &target, e))?;
        if i64::try_from(copied).ok() != Some(stat.size) {
            return Err(format!(
                "hard link target {path}: the image's file has {copied} bytes, the daemon's copy {}",
                stat.size
            ));
        }
        apply(&target, &stat, true)?;
        self.written.insert(path.to_owned());
        Ok(())
    }
}

fn dev(stat: &Stat) -> u64 {
    rustix::fs::makedev(u32::try_from(stat.devmajor).unwrap_or(0), u32::try_from(stat.devminor).unwrap_or(0))
}

fn join(dir: &str, name: &str) -> String {
    if dir.is_empty() { name.to_owned() } else { format!("{dir}/{name}") }
}

/// Owner, mode, xattrs and mtime of `stat` on `target` (not following a
/// symlink; a symlink's mode is left alone).
fn apply(target: &Path, stat: &Stat, chmod: bool) -> Result<(), String> {
    std::os::unix::fs::lchown(target, Some(stat.uid), Some(stat.gid)).map_err(|e| err("chown", target, e))?;
    if chmod {
        let (_, perm) = unix_mode(stat.mode).unwrap_or((Kind::File, 0o644));
        let meta = fs::symlink_metadata(target).map_err(|e| err("reading", target, e))?;
        if !meta.file_type().is_symlink() {
            fs::set_permissions(target, fs::Permissions::from_mode(perm))
                .map_err(|e| err("chmod", target, e))?;
        }
    }
    for (name, value) in stat.xattrs.iter().filter(|(name, _)| xattr_is_kept(name)) {
        rustix::fs::lsetxattr(target, name.as_str(), value, rustix::fs::XattrFlags::empty())
            .map_err(|e| err(format_args!("setting {name} on"), target, e))?;
    }
    // Before 1970 too: the nanoseconds stay positive, as in a timespec.
    let ts = rustix::fs::Timespec {
        tv_sec: stat.mod_time.div_euclid(1_000_000_000),
        tv_nsec: stat.mod_time.rem_euclid(1_000_000_000),
    };
    let times = rustix::fs::Timestamps { last_access: ts, last_modification: ts };
    rustix::fs::utimensat(rustix::fs::CWD, target, &times, rustix::fs::AtFlags::SYMLINK_NOFOLLOW)
        .map_err(|e| err("setting times of", target, e))
}

/// `stat` with only the xattrs a layer keeps (as caulk's image layers
/// do): an overlay xattr a step set would steer the overlay the layer is
/// mounted in, and a label or ACL describes the daemon's host. Results and
/// the baseline are compared on this set.
fn kept(stat: &Stat) -> Stat {
    let mut stat = stat.clone();
    stat.xattrs.retain(|name, _| xattr_is_kept(name));
    stat
}

impl caulk_buildkit::Sink for UpperSink {
    fn entry(&mut self, index: u32, stat: &Stat) -> Result<bool, String> {
        let stat = &kept(stat);
        let (kind, _) = unix_mode(stat.mode).ok_or("unchecked mode")?;
        let (parent, name) = stat.path.rsplit_once('/').unwrap_or(("", &stat.path));
        self.close_to(parent)?;
        let lower = self.lower_of(name).cloned();
        let frame = self.frames.last_mut().expect("the root stays");
        frame.seen.insert(name.to_owned());
        let parent_changed = frame.mtime_changed;
        let unchanged = self.baseline.get(&stat.path) == Some(stat);
        match kind {
            Kind::Dir => {
                let lower_dir = lower.as_ref().filter(|i| i.kind == EntryKind::Dir);
                let children = match lower_dir {
                    Some(_) => self.lower_children(&stat.path)?,
                    None => None,
                };
                match lower_dir {
                    // Untouched: if a change below brings it into the
                    // layer, it keeps the image's metadata.
                    Some(info) if unchanged => {
                        let real = self.real_lower(info);
                        let (original, _) =
                            stat_of(&stat.path, &real, None).map_err(|e| err("reading", &real, e))?;
                        self.dirs.insert(stat.path.clone(), original);
                    }
                    _ => {
                        self.dirs.insert(stat.path.clone(), stat.clone());
                        self.ensure_parents(&stat.path)?;
                        self.ensure_dir(&stat.path)?;
                    }
                }
                let frame = Frame {
                    path: stat.path.clone(),
                    lower: children,
                    seen: HashSet::new(),
                    mtime_changed: !unchanged,
                };
                self.frames.push(frame);
                Ok(false)
            }
            Kind::File if !stat.linkname.is_empty() => {
                let link = Link { path: stat.path.clone(), target: stat.linkname.clone() };
                if unchanged {
                    self.quiet_links.push(link);
                } else {
                    self.links.push(link);
                }
                Ok(false)
            }
            Kind::File => {
                self.files.insert(stat.path.clone(), stat.clone());
                let lower_file = lower.filter(|i| i.kind == EntryKind::File);
                let compare = match (&lower_file, unchanged) {
                    (_, false) => None,
                    (Some(info), true) if parent_changed => Some(self.real_lower(info)),
                    (_, true) => return Ok(false),
                };
                let scratch = self.scratch.path().join(index.to_string());
                self.incoming.insert(index, Incoming { stat: stat.clone(), scratch, file: None, compare });
                Ok(true)
            }
            _ if unchanged => Ok(false),
            other => {
                self.write_special(stat, other)?;
                Ok(false)
            }
        }
    }

    fn data(&mut self, index: u32, chunk: &[u8]) -> Result<(), String> {
        let incoming = self.incoming.get_mut(&index).ok_or("data for no file")?;
        let file = match &mut incoming.file {
            Some(file) => file,
            None => incoming.file.insert(create(&incoming.scratch)?),
        };
        file.write_all(chunk).map_err(|e| err("writing", &incoming.scratch, e))
    }

    fn file_done(&mut self, index: u32) -> Result<(), String> {
        let mut incoming = self.incoming.remove(&index).ok_or("end of no file")?;
        // An empty file gets no data at all.
        if incoming.file.take().is_none() {
            create(&incoming.scratch)?;
        }
        if let Some(lower) = &incoming.compare
            && same_content(lower, &incoming.scratch)?
        {
            return fs::remove_file(&incoming.scratch).map_err(|e| err("removing", &incoming.scratch, e));
        }
        self.install(&incoming)
    }

    fn budget(&self) -> u64 {
        self.budget
    }

    fn finish(&mut self) -> Result<(), String> {
        self.close_to("")?;
        let root = self.frames.pop().ok_or("no root")?;
        self.whiteouts(&root)?;
        // A changed link to a file the steps left alone brings that file
        // into the layer too, so both names stay one inode.
        for link in std::mem::take(&mut self.links) {
            if !self.written.contains(&link.target) {
                self.copy_up(&link.target)?;
            }
            self.link(&link)?;
        }
        // A name whose stat is the image's still names the image's inode:
        // once the first name is written (the steps renamed a new inode
        // over every name, keeping size and mtime, or a changed name
        // brought it up) it must follow, or the names split.
        for link in std::mem::take(&mut self.quiet_links) {
            if self.written.contains(&link.target) {
                self.link(&link)?;
            }
        }
        // Deepest first: making entries in a directory changes its mtime.
        let mut made = std::mem::take(&mut self.made);
        made.sort_by_key(|p| std::cmp::Reverse(p.matches('/').count()));
        for dir in made {
            if let Some(stat) = self.dirs.get(&dir).cloned() {
                apply(&self.out.join(&dir), &stat, true)?;
            }
        }
        Ok(())
    }
}

fn create(path: &Path) -> Result<File, String> {
    File::options().write(true).create_new(true).open(path).map_err(|e| err("creating", path, e))
}

fn same_content(a: &Path, b: &Path) -> Result<bool, String> {
    let open = |p: &Path| File::open(p).map_err(|e| err("opening", p, e));
    let (mut a_file, mut b_file) = (open(a)?, open(b)?);
    if a_file.metadata().map(|m| m.size()).ok() != b_file.metadata().map(|m| m.size()).ok() {
        return Ok(false);
    }
    let (mut a_buf, mut b_buf) = (vec![0u8; 64 * 1024], vec![0u8; 64 * 1024]);
    loop {
        let n = a_file.read(&mut a_buf).map_err(|e| err("reading", a, e))?;
        if n == 0 {
            return Ok(true);
        }
        b_file.read_exact(&mut b_buf[..n]).map_err(|e| err("reading", b, e))?;
        if a_buf[..n] != b_buf[..n] {
            return Ok(false);
        }
    }
}

/// Collects the stats of a tree and asks for no data: the daemon's copy of
/// the image, to compare results with.
pub struct StatSink(pub std::sync::Arc<std::sync::Mutex<HashMap<String, Stat>>>);

impl caulk_buildkit::Sink for StatSink {
    fn entry(&mut self, _: u32, stat: &Stat) -> Result<bool, String> {
        let mut stats = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        stats.insert(stat.path.clone(), kept(stat));
        Ok(false)
    }

    fn data(&mut self, _: u32, _: &[u8]) -> Result<(), String> {
        Err("data never asked for".to_owned())
    }

    fn file_done(&mut self, _: u32) -> Result<(), String> {
        Err("data never asked for".to_owned())
    }

    fn finish(&mut self) -> Result<(), String> {
        Ok(())
    }

    fn budget(&self) -> u64 {
        0
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::{FileTypeExt, MetadataExt};
    use std::sync::mpsc;

    use caulk_buildkit::filesync::{Conn, FsError, go_mode, receive, send};
    use caulk_buildkit::pb::fsutil::Packet;
    use caulk_buildkit::{Entry, Sink, Tree};

    use super::*;
    use crate::patch::engine::image_tree::ImageTree;

    /// One end of an in-process stream.
    struct Pipe {
        rx: mpsc::Receiver<Packet>,
        tx: mpsc::Sender<Packet>,
    }

    impl Conn for Pipe {
        fn recv(&mut self) -> Result<Option<Packet>, FsError> {
            Ok(self.rx.recv().ok())
        }

        fn send(&mut self, packet: Packet) -> Result<(), FsError> {
            self.tx.send(packet).map_err(|_| FsError::Closed("test"))
        }
    }

    fn pipes() -> (Pipe, Pipe) {
        let (a_tx, b_rx) = mpsc::channel();
        let (b_tx, a_rx) = mpsc::channel();
        (Pipe { rx: a_rx, tx: a_tx }, Pipe { rx: b_rx, tx: b_tx })
    }

    /// caulk's sender of `layers` to caulk's receiver into `sink`.
    /// The upper dir (`out` in `dir`) of `result`'s changes over the
    /// image `layers`, received as from a daemon.
    fn diff_into(dir: &Path, layers: Vec<PathBuf>, result: Vec<PathBuf>) -> PathBuf {
        let out = dir.join("out");
        fs::create_dir_all(&out).unwrap();
        let baseline = stats_of(layers.clone());
        let mut sink = UpperSink::new(MergedReader::new(layers), baseline, &out, dir).unwrap();
        transfer(result, &mut sink);
        out
    }

    fn transfer(layers: Vec<PathBuf>, sink: &mut dyn Sink) {
        transfer_tree(ImageTree::new(layers), sink).unwrap();
    }

    fn transfer_tree(tree: impl Tree + 'static, sink: &mut dyn Sink) -> Result<(), FsError> {
        let (mut near, mut far) = pipes();
        let sender = std::thread::spawn(move || send(&tree, &mut far));
        let received = receive(sink, &mut near);
        drop(near);
        let sent = sender.join().unwrap();
        received.and(sent.map(drop))
    }

    /// Entries as given: what a daemon could send.
    struct Given(Vec<Entry>);

    impl Tree for Given {
        fn entries(&self) -> Result<Vec<Entry>, String> {
            Ok(self.0.clone())
        }
    }

    /// The entries caulk would send for `layers`, changed by `edit`.
    fn edited(layers: &[PathBuf], mut edit: impl FnMut(&mut Stat)) -> Given {
        let mut entries = ImageTree::new(layers.to_vec()).entries().unwrap();
        for entry in &mut entries {
            edit(&mut entry.stat);
        }
        Given(entries)
    }

    fn xattr(path: &Path, name: &str) -> Option<Vec<u8>> {
        let mut value = vec![0u8; 256];
        let n = rustix::fs::lgetxattr(path, name, &mut value).ok()?;
        value.truncate(n);
        Some(value)
    }

    #[test]
    fn only_the_xattrs_a_layer_keeps_cross_either_way() {
        if !root() {
            eprintln!("skipped: trusted xattrs need root");
            return;
        }
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let layers = image(dir.path());
        // Sending: the host's own attributes stay home.
        rustix::fs::lsetxattr(
            layers[0].join("etc/a"),
            "trusted.caulk",
            b"host",
            rustix::fs::XattrFlags::empty(),
        )
        .unwrap();
        let baseline = stats_of(layers.clone());
        assert_eq!(baseline["etc/a"].xattrs.keys().collect::<Vec<_>>(), ["user.caulk"]);
        // Receiving: a step made d opaque to overlayfs; etc got a label.
        let result = edited(&layers, |stat| match stat.path.as_str() {
            "d" => {
                stat.xattrs.insert("user.overlay.opaque".into(), b"y".to_vec());
                stat.xattrs.insert("trusted.overlay.opaque".into(), b"y".to_vec());
                stat.mod_time += 1;
            }
            "etc" => {
                stat.xattrs.insert("security.selinux".into(), b"system_u:object_r:etc_t:s0".to_vec());
            }
            _ => {}
        });
        let out = dir.path().join("out");
        fs::create_dir_all(&out).unwrap();
        let mut sink = UpperSink::new(MergedReader::new(layers), baseline, &out, dir.path()).unwrap();
        transfer_tree(result, &mut sink).unwrap();

        assert_eq!(walk(&out), ["d"], "a label alone is no change");
        assert_eq!(xattr(&out.join("d"), "user.overlay.opaque"), None);
        assert_eq!(xattr(&out.join("d"), "trusted.overlay.opaque"), None);
    }

    fn mknod(path: &Path, kind: rustix::fs::FileType, major: u32, minor: u32) {
        rustix::fs::mknodat(
            rustix::fs::CWD,
            path,
            kind,
            rustix::fs::Mode::from_raw_mode(0o644),
            rustix::fs::makedev(major, minor),
        )
        .unwrap();
    }

    fn set_mtime(path: &Path, seconds: i64) {
        let ts = rustix::fs::Timespec { tv_sec: seconds, tv_nsec: 123 };
        let times = rustix::fs::Timestamps { last_access: ts, last_modification: ts };
        rustix::fs::utimensat(rustix::fs::CWD, path, &times, rustix::fs::AtFlags::SYMLINK_NOFOLLOW).unwrap();
    }

    /// Two layers with every kind of entry, hard links, an xattr and a
    /// whiteout in the upper one.
    fn image(root: &Path) -> Vec<PathBuf> {
        let (one, two) = (root.join("one"), root.join("two"));
        for dir in ["etc", "dev", "d"] {
            fs::create_dir_all(one.join(dir)).unwrap();
        }
        fs::create_dir_all(&two).unwrap();
        fs::write(one.join("etc/a"), "hello").unwrap();
        // chown clears set-uid: owner first.
        std::os::unix::fs::lchown(one.join("etc/a"), Some(1000), Some(1001)).unwrap();
        fs::set_permissions(one.join("etc/a"), fs::Permissions::from_mode(0o4750)).unwrap();
        rustix::fs::lsetxattr(one.join("etc/a"), "user.caulk", b"v", rustix::fs::XattrFlags::empty())
            .unwrap();
        fs::write(one.join("etc/hard1"), "linked").unwrap();
        fs::hard_link(one.join("etc/hard1"), one.join("etc/hard2")).unwrap();
        std::os::unix::fs::symlink("a", one.join("etc/link")).unwrap();
        mknod(&one.join("etc/fifo"), rustix::fs::FileType::Fifo, 0, 0);
        mknod(&one.join("dev/null"), rustix::fs::FileType::CharacterDevice, 1, 3);
        fs::write(one.join("d/x"), "12345").unwrap();
        fs::write(one.join("gone"), "old").unwrap();
        mknod(&two.join("gone"), rustix::fs::FileType::CharacterDevice, 0, 0);
        fs::write(two.join("new"), "").unwrap();
        fs::write(one.join("d/old"), "1969").unwrap();
        set_mtime(&one.join("d/old"), -1_000);
        for path in ["etc/a", "etc/hard1", "d/x", "gone", "etc", "d", "dev"] {
            set_mtime(&one.join(path), 1_600_000_000);
        }
        vec![one, two]
    }

    fn root() -> bool {
        rustix::process::geteuid().is_root()
    }

    fn stats_of(layers: Vec<PathBuf>) -> HashMap<String, Stat> {
        ImageTree::new(layers).entries().unwrap().into_iter().map(|e| (e.stat.path.clone(), e.stat)).collect()
    }

    #[test]
    fn every_kind_of_entry_crosses_with_its_metadata() {
        if !root() {
            eprintln!("skipped: owners, devices and whiteouts need root");
            return;
        }
        // xattrs need a file system that keeps user.* ones: not every tmpfs does.
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let layers = image(dir.path());
        let (empty, out) = (dir.path().join("empty"), dir.path().join("out"));
        fs::create_dir_all(&empty).unwrap();
        fs::create_dir_all(&out).unwrap();
        let mut sink =
            UpperSink::new(MergedReader::new(vec![empty]), HashMap::new(), &out, dir.path()).unwrap();
        transfer(layers.clone(), &mut sink);

        let a = fs::symlink_metadata(out.join("etc/a")).unwrap();
        assert_eq!(fs::read(out.join("etc/a")).unwrap(), b"hello");
        assert_eq!((a.mode() & 0o7777, a.uid(), a.gid()), (0o4750, 1000, 1001));
        assert_eq!((a.mtime(), a.mtime_nsec()), (1_600_000_000, 123));
        let mut value = [0u8; 8];
        let n = rustix::fs::lgetxattr(out.join("etc/a"), "user.caulk", &mut value).unwrap();
        assert_eq!(&value[..n], b"v");
        let (h1, h2) =
            (fs::metadata(out.join("etc/hard1")).unwrap(), fs::metadata(out.join("etc/hard2")).unwrap());
        assert_eq!(h1.ino(), h2.ino(), "hard links stay one inode");
        assert_eq!(fs::read_link(out.join("etc/link")).unwrap(), Path::new("a"));
        assert!(fs::symlink_metadata(out.join("etc/fifo")).unwrap().file_type().is_fifo());
        let null = fs::symlink_metadata(out.join("dev/null")).unwrap();
        assert!(null.file_type().is_char_device());
        assert_eq!(null.rdev(), rustix::fs::makedev(1, 3));
        assert!(fs::symlink_metadata(out.join("gone")).is_err(), "the whiteout hid it");
        assert_eq!(fs::read(out.join("new")).unwrap(), b"", "an empty file");
        let old = fs::symlink_metadata(out.join("d/old")).unwrap();
        assert_eq!((old.mtime(), old.mtime_nsec()), (-1_000, 123), "before the epoch");
        assert_eq!(
            fs::symlink_metadata(out.join("etc")).unwrap().mtime(),
            1_600_000_000,
            "dir mtimes set last"
        );
        // The receiver's view of what it built is what was sent.
        assert_eq!(stats_of(vec![out]), stats_of(layers));
    }

    #[test]
    fn only_what_the_steps_changed_comes_back_and_renames_are_compared_by_content() {
        if !root() {
            eprintln!("skipped: owners, devices and whiteouts need root");
            return;
        }
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let layers = image(dir.path());
        // The steps: etc/a rewritten, etc/fifo deleted, d/x replaced by
        // rename with the same size and mtime (so d's mtime moved).
        let steps = dir.path().join("steps");
        fs::create_dir_all(steps.join("etc")).unwrap();
        fs::create_dir_all(steps.join("d")).unwrap();
        fs::write(steps.join("etc/a"), "hello, again").unwrap();
        mknod(&steps.join("etc/fifo"), rustix::fs::FileType::CharacterDevice, 0, 0);
        fs::write(steps.join("d/x"), "54321").unwrap();
        set_mtime(&steps.join("d/x"), 1_600_000_000);
        set_mtime(&steps.join("d"), 1_700_000_000);
        let result: Vec<PathBuf> = layers.iter().cloned().chain([steps]).collect();
        // The result's etc keeps the image's metadata for the comparison.
        set_mtime(&result[2].join("etc"), 1_600_000_000);

        let out = diff_into(dir.path(), layers, result);

        let mut found: Vec<String> = walk(&out);
        found.sort();
        assert_eq!(found, ["d", "d/x", "etc", "etc/a", "etc/fifo"]);
        assert_eq!(fs::read(out.join("etc/a")).unwrap(), b"hello, again");
        assert_eq!(fs::read(out.join("d/x")).unwrap(), b"54321", "found by content");
        assert!(squash::is_whiteout(&fs::symlink_metadata(out.join("etc/fifo")).unwrap()));
    }

    fn inode(path: &Path) -> u64 {
        fs::symlink_metadata(path).unwrap().ino()
    }

    #[test]
    fn every_name_of_a_replaced_inode_comes_along() {
        if !root() {
            eprintln!("skipped: owners and whiteouts need root");
            return;
        }
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let layers = image(dir.path());
        let one = &layers[0];
        // l/a, l/b, l/c are one inode; m/b is a file of its own, like m/a.
        for sub in ["l", "m"] {
            fs::create_dir_all(one.join(sub)).unwrap();
            fs::write(one.join(sub).join("a"), "linked").unwrap();
        }
        fs::hard_link(one.join("l/a"), one.join("l/b")).unwrap();
        fs::hard_link(one.join("l/a"), one.join("l/c")).unwrap();
        fs::hard_link(one.join("m/a"), one.join("m/c")).unwrap();
        fs::write(one.join("m/b"), "linked").unwrap();
        for path in ["l/a", "m/a", "m/b", "l", "m"] {
            set_mtime(&one.join(path), 1_600_000_000);
        }
        // The steps: in l, dpkg renamed a new inode (same size and mtime)
        // over every name, so l's mtime moved; in m, b became a third name
        // of a's inode and m's mtime was put back.
        let steps = dir.path().join("steps");
        for sub in ["l", "m"] {
            fs::create_dir_all(steps.join(sub)).unwrap();
        }
        fs::write(steps.join("l/a"), "LINKED").unwrap();
        fs::hard_link(steps.join("l/a"), steps.join("l/b")).unwrap();
        fs::hard_link(steps.join("l/a"), steps.join("l/c")).unwrap();
        fs::copy(one.join("m/a"), steps.join("m/a")).unwrap();
        fs::hard_link(steps.join("m/a"), steps.join("m/b")).unwrap();
        fs::hard_link(steps.join("m/a"), steps.join("m/c")).unwrap();
        set_mtime(&steps.join("l/a"), 1_600_000_000);
        set_mtime(&steps.join("m/a"), 1_600_000_000);
        set_mtime(&steps.join("l"), 1_700_000_000);
        set_mtime(&steps.join("m"), 1_600_000_000);
        let result: Vec<PathBuf> = layers.iter().cloned().chain([steps]).collect();

        let out = diff_into(dir.path(), layers, result);

        for sub in ["l", "m"] {
            let names = ["a", "b", "c"].map(|name| out.join(sub).join(name));
            assert!(names.iter().all(|name| inode(name) == inode(&names[0])), "{sub}: one inode");
        }
        assert_eq!(fs::read(out.join("l/c")).unwrap(), b"LINKED");
        assert_eq!(fs::read(out.join("m/c")).unwrap(), b"linked");
    }

    #[test]
    fn a_file_at_the_root_replaced_by_rename_is_compared_by_content() {
        if !root() {
            eprintln!("skipped: owners and whiteouts need root");
            return;
        }
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let layers = image(dir.path());
        fs::write(layers[0].join("r"), "old").unwrap();
        set_mtime(&layers[0].join("r"), 1_600_000_000);
        let steps = dir.path().join("steps");
        fs::create_dir_all(&steps).unwrap();
        fs::write(steps.join("r"), "new").unwrap();
        set_mtime(&steps.join("r"), 1_600_000_000);
        let result: Vec<PathBuf> = layers.iter().cloned().chain([steps]).collect();

        let out = diff_into(dir.path(), layers, result);

        assert_eq!(walk(&out), ["r"]);
        assert_eq!(fs::read(out.join("r")).unwrap(), b"new");
    }

    #[test]
    fn hard_linked_fifos_and_devices_become_nodes_of_their_own() {
        if !root() {
            eprintln!("skipped: devices need root");
            return;
        }
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let (empty, out) = (dir.path().join("empty"), dir.path().join("out"));
        fs::create_dir_all(&empty).unwrap();
        fs::create_dir_all(&out).unwrap();
        let fifo = Stat { path: "f1".into(), mode: go_mode(0o010_644), ..Stat::default() };
        let null =
            Stat { path: "n1".into(), mode: go_mode(0o020_666), devmajor: 1, devminor: 3, ..Stat::default() };
        let second =
            |stat: &Stat, path: &str| Stat { path: path.into(), linkname: stat.path.clone(), ..stat.clone() };
        let result = Given(
            [second(&fifo, "f2"), second(&null, "n2")]
                .into_iter()
                .zip([fifo.clone(), null.clone()])
                .flat_map(|(link, first)| [first, link])
                .map(|stat| Entry { stat, data: None })
                .collect(),
        );
        let mut sink =
            UpperSink::new(MergedReader::new(vec![empty]), HashMap::new(), &out, dir.path()).unwrap();
        transfer_tree(result, &mut sink).unwrap();

        assert!(fs::symlink_metadata(out.join("f2")).unwrap().file_type().is_fifo());
        let n2 = fs::symlink_metadata(out.join("n2")).unwrap();
        assert!(n2.file_type().is_char_device());
        assert_eq!(n2.rdev(), rustix::fs::makedev(1, 3));
    }

    #[test]
    fn the_result_dir_outlives_its_caller_while_the_sink_receives() {
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let result = std::sync::Arc::new(tempfile::tempdir_in(dir.path()).unwrap());
        let path = result.path().to_owned();
        let sink =
            UpperSink::new(MergedReader::new(vec![dir.path().to_owned()]), HashMap::new(), &path, dir.path())
                .unwrap()
                .holding(std::sync::Arc::clone(&result));
        drop(result);
        assert!(path.is_dir(), "still the sink's");
        drop(sink);
        assert!(!path.exists());
    }

    #[test]
    fn a_link_to_what_the_image_has_as_a_symlink_copies_nothing_through_it() {
        let dir = tempfile::tempdir_in("/var/tmp").unwrap();
        let (layer, out) = (dir.path().join("layer"), dir.path().join("out"));
        fs::create_dir_all(&layer).unwrap();
        fs::create_dir_all(&out).unwrap();
        fs::write(dir.path().join("secret"), "secret").unwrap();
        std::os::unix::fs::symlink(dir.path().join("secret"), layer.join("a")).unwrap();
        // The daemon claims `a` is an unchanged 6-byte file and adds a
        // second name for it.
        let a = Stat { path: "a".into(), mode: 0o644, size: 6, ..Stat::default() };
        let b = Stat { path: "b".into(), linkname: "a".into(), ..a.clone() };
        let baseline = HashMap::from([("a".to_owned(), a.clone())]);
        let result = Given(vec![Entry { stat: a, data: None }, Entry { stat: b, data: None }]);
        let mut sink = UpperSink::new(MergedReader::new(vec![layer]), baseline, &out, dir.path()).unwrap();

        let refused = transfer_tree(result, &mut sink).unwrap_err().to_string();
        assert!(refused.contains("hard link target a is neither written nor a regular file"), "{refused}");
        assert!(fs::read(out.join("a")).is_err(), "nothing copied through the symlink");
    }

    fn walk(dir: &Path) -> Vec<String> {
        let mut out = Vec::new();
        let mut todo = vec![dir.to_owned()];
        while let Some(d) = todo.pop() {
            for entry in fs::read_dir(&d).unwrap() {
                let path = entry.unwrap().path();
                out.push(path.strip_prefix(dir).unwrap().to_string_lossy().into_owned());
                if fs::symlink_metadata(&path).unwrap().is_dir() {
                    todo.push(path);
                }
            }
        }
        out
    }

    use super::super::squash;
}
