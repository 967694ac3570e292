//! Layer reading, the merged view, unpacking and writing, checked against
//! GNU tar and the kernel's overlayfs.

mod common;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::fs;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use caulk_image::layer::{
    EntryKind, LayerCache, LayerSource, RootFs, UnpackOptions, WhiteoutFormat, WriteOptions, write_layer,
};
use caulk_image::media::Compression;
use caulk_image::{Image, ImageRef, Platform, TransportOptions};
use common::{run, synthetic, tempdir};

fn amd64() -> (Image, usize) {
    let image = Image::open(
        &ImageRef::parse(&format!("oci:{}:multi", synthetic().display())).unwrap(),
        &TransportOptions::default(),
    )
    .unwrap();
    let i = image
        .images
        .iter()
        .position(|i| i.platform.satisfies(&Platform::parse("linux/amd64").unwrap()))
        .unwrap();
    (image, i)
}

fn rootfs() -> RootFs {
    let (image, i) = amd64();
    RootFs::open(Arc::clone(image.source()), &image.images[i]).unwrap()
}

fn text(fs: &RootFs, path: &str) -> String {
    String::from_utf8(fs.read(path).unwrap_or_else(|e| panic!("{path}: {e}"))).unwrap()
}

#[test]
fn merged_view_applies_whiteouts_opaque_dirs_and_links() {
    let fs = rootfs();
    assert_eq!(text(&fs, "/etc/hostname"), "changed\n");
    // The hard link kept layer 1's inode, so its content is the old one.
    assert_eq!(text(&fs, "/etc/hostname-hardlink"), "base\n");
    assert_eq!(text(&fs, "/var/lib/dpkg/status"), "Package: libfoo\nVersion: 1.1\n\n");
    assert!(fs.stat("/opt/data/a.txt").is_none());
    assert_eq!(text(&fs, "/opt/data/b.txt"), "b\n");
    let gone: Vec<_> = fs.list("/opt/gone").unwrap().into_iter().map(|f| f.path).collect();
    assert_eq!(gone, ["/opt/gone/new"]);
    assert!(fs.stat("/opt/gone/sub/z").is_none());
    assert_eq!(text(&fs, "/usr/bin/py"), "py\n");
    assert_eq!(text(&fs, "/etc/os-release-link"), "ID=debian\nVERSION_ID=\"12\"\n");
    let link = fs.stat("/usr/bin/py").unwrap();
    assert_eq!((link.kind, link.link_target.as_deref()), (EntryKind::Symlink, Some("python3")));
    let long = format!("/opt/long/{}/{}/file-with-a-long-name.txt", "d".repeat(60), "e".repeat(60));
    assert_eq!(text(&fs, &long), "long\n");
    assert_eq!(fs.stat("/usr/bin/su").unwrap().mode, 0o4755);
    assert_eq!(fs.stat("/tmp").unwrap().mode, 0o1777);
    assert_eq!(fs.stat("/dev/null").unwrap().kind, EntryKind::CharDevice);
    assert_eq!(fs.stat("/opt/fifo").unwrap().kind, EntryKind::Fifo);
    assert!(fs.read("/opt/data").is_err());
    assert!(fs.read("/nope").unwrap_err().to_string().contains("no such file"));

    let metadata: Vec<_> = fs
        .glob("/usr/lib/python3*/site-packages/*.dist-info/METADATA")
        .unwrap()
        .into_iter()
        .map(|f| f.path)
        .collect();
    assert_eq!(
        metadata,
        [
            "/usr/lib/python3.11/site-packages/foo-1.0.dist-info/METADATA",
            "/usr/lib/python3.12/site-packages/bar-2.0.dist-info/METADATA"
        ]
    );
    let txt: Vec<_> = fs.glob("/opt/**/*.txt").unwrap().into_iter().map(|f| f.path).collect();
    assert_eq!(txt.len(), 3, "{txt:?}"); // b.txt, xattr.txt, the long one
    assert_eq!(fs.glob("/etc/host?ame").unwrap().len(), 1);
    assert_eq!(fs.glob("/etc/[h]ostname*").unwrap().len(), 2);

    let many = fs.read_many(&["/etc/hostname", "/usr/bin/python3", "/missing", "/etc/hostname-hardlink"]);
    let got: Vec<_> = many
        .iter()
        .map(|(p, r)| (p.as_str(), r.as_ref().ok().map(|b| String::from_utf8_lossy(b).into_owned())))
        .collect();
    assert_eq!(
        got,
        [
            ("/etc/hostname", Some("changed\n".to_owned())),
            ("/usr/bin/python3", Some("py\n".to_owned())),
            ("/missing", None),
            ("/etc/hostname-hardlink", Some("base\n".to_owned())),
        ]
    );
}

fn unpack_all(cache_dir: &Path) -> Vec<std::path::PathBuf> {
    let (image, i) = amd64();
    let cache = LayerCache::new(cache_dir).unwrap();
    cache.unpack_image(image.source().as_ref(), &image.images[i], &UnpackOptions::default()).unwrap()
}

#[test]
fn unpacked_layers_keep_links_owners_modes_xattrs_and_devices() {
    let tmp = tempdir();
    let dirs = unpack_all(tmp.path());
    let base = &dirs[0];
    let a = fs::metadata(base.join("etc/hostname")).unwrap();
    let b = fs::metadata(base.join("etc/hostname-hardlink")).unwrap();
    assert_eq!(a.ino(), b.ino(), "hard link shares the inode");
    assert_eq!(fs::read_link(base.join("usr/bin/py")).unwrap(), Path::new("python3"));
    assert_eq!(fs::read_link(base.join("etc/os-release-link")).unwrap(), Path::new("/etc/os-release"));
    assert_eq!(fs::metadata(base.join("usr/bin/su")).unwrap().mode() & 0o7777, 0o4755);
    assert_eq!(fs::metadata(base.join("tmp")).unwrap().mode() & 0o7777, 0o1777);
    let null = fs::symlink_metadata(base.join("dev/null")).unwrap();
    assert!(null.file_type().is_char_device());
    assert_eq!((rustix::fs::major(null.rdev()), rustix::fs::minor(null.rdev())), (1, 3));
    assert!(fs::symlink_metadata(base.join("opt/fifo")).unwrap().file_type().is_fifo());
    assert_eq!(fs::metadata(base.join("etc/hostname")).unwrap().mtime(), 1_700_000_000);
    assert_eq!(xattr(base.join("opt/xattr.txt"), "user.caulk"), b"test");

    // Layer 2 in overlay form.
    let upper = &dirs[1];
    let wh = fs::symlink_metadata(upper.join("opt/data/a.txt")).unwrap();
    assert!(wh.file_type().is_char_device() && wh.rdev() == 0, "whiteout as a 0/0 char device");
    assert_eq!(xattr(upper.join("opt/gone"), "trusted.overlay.opaque"), b"y");

    // Unpacking again reuses the cache.
    let again = unpack_all(tmp.path());
    assert_eq!(again, dirs);
}

fn xattr(path: impl AsRef<Path>, name: &str) -> Vec<u8> {
    let mut buf = vec![0u8; 256];
    let n = rustix::fs::lgetxattr(path.as_ref(), name, &mut buf[..])
        .unwrap_or_else(|e| panic!("{name} on {}: {e}", path.as_ref().display()));
    buf.truncate(n);
    buf
}

/// Every path below `root` with kind, mode and content (files), as a map.
fn snapshot(root: &Path) -> BTreeMap<String, String> {
    fn walk(root: &Path, dir: &Path, out: &mut BTreeMap<String, String>) {
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = format!("/{}", path.strip_prefix(root).unwrap().display());
            let meta = fs::symlink_metadata(&path).unwrap();
            let mode = meta.mode() & 0o7777;
            let desc = if meta.is_dir() {
                walk(root, &path, out);
                format!("dir {mode:o}")
            } else if meta.file_type().is_symlink() {
                format!("symlink {}", fs::read_link(&path).unwrap().display())
            } else if meta.is_file() {
                format!("file {mode:o} {}", String::from_utf8_lossy(&fs::read(&path).unwrap()))
            } else {
                format!("special {mode:o}")
            };
            out.insert(rel, desc);
        }
    }
    let mut out = BTreeMap::new();
    walk(root, root, &mut out);
    out
}

fn view_snapshot(fs: &RootFs) -> BTreeMap<String, String> {
    fs.entries()
        .filter(|e| e.path != "/")
        .map(|e| {
            let desc = match e.kind {
                EntryKind::Dir => format!("dir {:o}", e.mode),
                EntryKind::Symlink => format!("symlink {}", e.link_target.clone().unwrap()),
                EntryKind::File => {
                    format!("file {:o} {}", e.mode, String::from_utf8_lossy(&fs.read(&e.path).unwrap()))
                }
                _ => format!("special {:o}", e.mode),
            };
            (e.path.clone(), desc)
        })
        .collect()
}

struct Mount(std::path::PathBuf);
impl Drop for Mount {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

fn overlay(lower: &[std::path::PathBuf], upper: Option<(&Path, &Path)>, target: &Path) -> Mount {
    fs::create_dir_all(target).unwrap();
    let lowers: Vec<String> = lower.iter().rev().map(|p| p.display().to_string()).collect();
    let mut opts = format!("lowerdir={}", lowers.join(":"));
    if let Some((upper, work)) = upper {
        write!(
            opts,
            ",upperdir={},workdir={},redirect_dir=off,metacopy=off",
            upper.display(),
            work.display()
        )
        .unwrap();
    }
    run(Command::new("mount").args(["-t", "overlay", "overlay", "-o", &opts]).arg(target));
    Mount(target.to_owned())
}

#[test]
fn merged_view_equals_the_kernels_overlay_of_the_unpacked_layers() {
    let tmp = tempdir();
    let dirs = unpack_all(&tmp.path().join("cache"));
    let target = tmp.path().join("merged");
    let _mount = overlay(&dirs, None, &target);
    let kernel = snapshot(&target);
    let ours = view_snapshot(&rootfs());
    assert_eq!(ours, kernel);
}

#[test]
fn writer_output_is_deterministic_and_readable_by_gnu_tar() {
    let tmp = tempdir();
    let tree = tmp.path().join("tree");
    let dirs = unpack_all(&tmp.path().join("cache"));
    run(Command::new("cp").arg("-a").arg(&dirs[0]).arg(&tree));
    let opts = |threads, compression| WriteOptions {
        threads,
        compression,
        mtime_clamp: Some(1_600_000_000),
        ..WriteOptions::default()
    };
    let one = write_layer(&tree, &tmp.path().join("one.tar.gz"), &opts(1, Compression::Gzip)).unwrap();
    let two = write_layer(&tree, &tmp.path().join("two.tar.gz"), &opts(2, Compression::Gzip)).unwrap();
    assert_eq!((&one.digest, &one.diff_id), (&two.digest, &two.diff_id));
    assert_eq!(format!("sha256:{}", common::sha256_hex(&one.path)), one.digest.to_string());
    let plain = run(Command::new("sh").arg("-c").arg(format!("gzip -dc {} | sha256sum", one.path.display())));
    assert_eq!(
        format!("sha256:{}", String::from_utf8_lossy(&plain.stdout).split_whitespace().next().unwrap()),
        one.diff_id.to_string()
    );
    let zst = write_layer(&tree, &tmp.path().join("l.tar.zst"), &opts(2, Compression::Zstd)).unwrap();
    assert_eq!(zst.diff_id, one.diff_id, "same tar whatever the compression");
    let zst1 = write_layer(&tree, &tmp.path().join("l1.tar.zst"), &opts(1, Compression::Zstd)).unwrap();
    let zst4 = write_layer(&tree, &tmp.path().join("l4.tar.zst"), &opts(4, Compression::Zstd)).unwrap();
    assert_eq!(
        (&zst1.digest, &zst4.digest),
        (&zst.digest, &zst.digest),
        "zstd output independent of threads"
    );
    let unzst = run(Command::new("sh").arg("-c").arg(format!("zstd -dc {} | sha256sum", zst.path.display())));
    assert!(String::from_utf8_lossy(&unzst.stdout).starts_with(zst.diff_id.hex()));

    let listing = String::from_utf8(run(Command::new("tar").arg("-tvzf").arg(&one.path)).stdout).unwrap();
    let names: Vec<&str> = listing.lines().map(|l| l.rsplit_once(' ').unwrap().1).collect();
    assert!(listing.lines().all(|l| l.contains(" 0/0 ")), "numeric owners:\n{listing}");
    assert!(listing.contains("2020-09-13"), "mtimes clamped:\n{listing}");
    let paths: Vec<String> = listing
        .lines()
        .map(|l| {
            l.split(" -> ")
                .next()
                .unwrap()
                .split(" link to ")
                .next()
                .unwrap()
                .rsplit(' ')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    let mut sorted = paths.clone();
    sorted.sort();
    assert_eq!(paths, sorted, "entries sorted");
    assert!(names.iter().any(|n| n.ends_with("file-with-a-long-name.txt")), "PAX long name");
    assert!(listing.contains("hrw-r--r--"), "hard link kept:\n{listing}");

    // GNU tar extracts it with xattrs, devices and the set-uid bit.
    let out = tmp.path().join("x");
    fs::create_dir(&out).unwrap();
    run(Command::new("tar")
        .args(["--xattrs", "--xattrs-include=*", "-xzpf"])
        .arg(&one.path)
        .arg("-C")
        .arg(&out));
    assert_eq!(xattr(out.join("opt/xattr.txt"), "user.caulk"), b"test");
    assert_eq!(fs::metadata(out.join("usr/bin/su")).unwrap().mode() & 0o7777, 0o4755);
    assert!(fs::symlink_metadata(out.join("dev/null")).unwrap().file_type().is_char_device());
}

#[test]
fn overlay_upper_dir_becomes_an_oci_layer_with_whiteouts() {
    let tmp = tempdir();
    let dirs = unpack_all(&tmp.path().join("cache"));
    let (upper, work, merged) =
        (tmp.path().join("upper"), tmp.path().join("work"), tmp.path().join("merged"));
    fs::create_dir_all(&upper).unwrap();
    fs::create_dir_all(&work).unwrap();
    {
        let _mount = overlay(&dirs, Some((&upper, &work)), &merged);
        fs::remove_file(merged.join("opt/data/b.txt")).unwrap();
        fs::remove_dir_all(merged.join("opt/keep")).unwrap();
        fs::create_dir(merged.join("opt/keep")).unwrap();
        fs::write(merged.join("opt/keep/fresh"), "fresh\n").unwrap();
        fs::write(merged.join("etc/hostname"), "patched\n").unwrap();
        fs::create_dir_all(merged.join("var/lib/apt/lists")).unwrap();
        fs::write(merged.join("var/lib/apt/lists/junk"), "index").unwrap();
        fs::write(merged.join("var/cache.bin"), "cache").unwrap();
    }
    let opts = WriteOptions {
        source: LayerSource::OverlayUpper,
        exclude: vec!["/var/lib/apt/lists".to_owned(), "/var/*.bin".to_owned()],
        ..WriteOptions::default()
    };
    let layer = write_layer(&upper, &tmp.path().join("layer.tar.gz"), &opts).unwrap();
    let listing = String::from_utf8(run(Command::new("tar").arg("-tzf").arg(&layer.path)).stdout).unwrap();
    let names: Vec<&str> = listing.lines().collect();
    for expected in
        ["opt/data/.wh.b.txt", "opt/keep/", "opt/keep/.wh..wh..opq", "opt/keep/fresh", "etc/hostname"]
    {
        assert!(names.contains(&expected), "{expected} missing from:\n{listing}");
    }
    assert!(
        !listing.contains("apt/lists") && !listing.contains("cache.bin"),
        "excluded paths present:\n{listing}"
    );
    assert!(!listing.contains("work"), "{listing}");

    // Appended to the image, the view shows the change.
    let (image, i) = amd64();
    let spec = caulk_image::append::AppendSpec { layer: Some(layer), ..Default::default() };
    let appended = caulk_image::append::append(&image.images[i], &spec).unwrap();
    let edited = caulk_image::append::EditedImage::new(&image, vec![appended]).unwrap();
    let out = format!("oci:{}/out:patched", tmp.path().display());
    edited
        .write(
            &ImageRef::parse(&out).unwrap(),
            &caulk_image::CopyOptions::default(),
            &TransportOptions::default(),
        )
        .unwrap();
    let patched = Image::open(&ImageRef::parse(&out).unwrap(), &TransportOptions::default()).unwrap();
    let amd = patched.image_for(Some(&Platform::parse("linux/amd64").unwrap())).unwrap();
    let view = RootFs::open(Arc::clone(patched.source()), amd).unwrap();
    assert!(view.stat("/opt/data/b.txt").is_none());
    assert_eq!(
        view.list("/opt/keep").unwrap().iter().map(|f| f.path.as_str()).collect::<Vec<_>>(),
        ["/opt/keep/fresh"]
    );
    assert_eq!(text(&view, "/etc/hostname"), "patched\n");
    let _ = WhiteoutFormat::Keep;
}

#[test]
fn fast_level_for_small_layers_stays_deterministic_and_plain_gzip() {
    let tmp = tempdir();
    let tree = tmp.path().join("tree");
    let dirs = unpack_all(&tmp.path().join("cache"));
    run(Command::new("cp").arg("-a").arg(&dirs[0]).arg(&tree));
    let (level, threads) = caulk_image::layer::gzip_for_size(5 << 20, 8);
    assert_eq!((level, threads), (1, 5), "a small layer: level 1, a thread per block");
    let opts = |level, threads| WriteOptions {
        level: Some(level),
        threads,
        mtime_clamp: Some(1_600_000_000),
        ..WriteOptions::default()
    };
    let fast1 = write_layer(&tree, &tmp.path().join("f1.tar.gz"), &opts(level, 1)).unwrap();
    let fast4 = write_layer(&tree, &tmp.path().join("f4.tar.gz"), &opts(level, 4)).unwrap();
    let again = write_layer(&tree, &tmp.path().join("f1b.tar.gz"), &opts(level, 1)).unwrap();
    let six = write_layer(&tree, &tmp.path().join("s.tar.gz"), &opts(6, 2)).unwrap();
    assert_eq!(fast1.digest, fast4.digest, "independent of threads");
    assert_eq!(fast1.digest, again.digest, "the same on every run");
    assert_ne!(fast1.digest, six.digest, "the level does change the bytes");
    assert_eq!(fast1.diff_id, six.diff_id, "but not the tar");
    run(Command::new("gzip").arg("-t").arg(&fast1.path));
    let plain =
        run(Command::new("sh").arg("-c").arg(format!("gzip -dc {} | sha256sum", fast4.path.display())));
    assert!(String::from_utf8_lossy(&plain.stdout).starts_with(fast1.diff_id.hex()));
}
