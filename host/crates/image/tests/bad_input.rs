//! Bad input: every case gets a typed error naming what is wrong, and no
//! output appears at the destination.

mod common;

use std::fs;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::sync::Arc;

use caulk_image::layer::RootFs;
use caulk_image::layer::unpack::{UnpackOptions, WhiteoutFormat, unpack};
use caulk_image::{CopyOptions, Digest, Error, Image, ImageRef, TransportOptions, copy};
use common::{synthetic_copy, tempdir};

fn open(r: &str) -> caulk_image::Result<Image> {
    Image::open(&ImageRef::parse(r).unwrap(), &TransportOptions::default())
}

fn copy_to_fresh(src: &str, tmp: &Path) -> Error {
    let out = tmp.join("out");
    let err = copy(
        &ImageRef::parse(src).unwrap(),
        &ImageRef::parse(&format!("oci:{}:x", out.display())).unwrap(),
        &CopyOptions::default(),
        &TransportOptions::default(),
    )
    .unwrap_err();
    assert!(!out.join("index.json").exists(), "a failed copy wrote index.json ({err})");
    if let Ok(dir) = fs::read_dir(out.join("blobs/sha256")) {
        for entry in dir {
            let name = entry.unwrap().file_name().to_string_lossy().into_owned();
            assert!(!name.starts_with('.'), "temp file {name} left behind ({err})");
        }
    }
    err
}

/// The layout's amd64 image and the path of its blob `n`-th layer.
fn layer_blob(dir: &Path, n: usize) -> (Digest, std::path::PathBuf) {
    let image = open(&format!("oci:{}:single", dir.display())).unwrap();
    let d = image.images[0].layers[n].desc.digest.clone();
    let path = dir.join("blobs/sha256").join(d.hex());
    (d, path)
}

#[test]
fn a_blob_whose_digest_does_not_match() {
    let tmp = tempdir();
    let dir = synthetic_copy(tmp.path());
    let (digest, path) = layer_blob(&dir, 0);
    let mut bytes = fs::read(&path).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    fs::write(&path, bytes).unwrap();
    let err = copy_to_fresh(&format!("oci:{}:single", dir.display()), tmp.path());
    assert!(matches!(&err, Error::DigestMismatch { expected, .. } if *expected == digest), "{err}");
    // The merged view refuses it as well.
    let image = open(&format!("oci:{}:single", dir.display())).unwrap();
    // gzip's own checksum may notice first; either way the layer is named.
    let err = RootFs::open(Arc::clone(image.source()), &image.images[0]).unwrap_err();
    assert!(matches!(err, Error::DigestMismatch { .. } | Error::CorruptLayer { .. }), "{err}");
    assert!(err.to_string().contains(digest.as_str()), "{err}");
}

#[test]
fn a_truncated_layer() {
    let tmp = tempdir();
    let dir = synthetic_copy(tmp.path());
    let (digest, path) = layer_blob(&dir, 2); // the uncompressed one
    let len = fs::metadata(&path).unwrap().len();
    fs::OpenOptions::new().write(true).open(&path).unwrap().set_len(len / 2).unwrap();
    let err = copy_to_fresh(&format!("oci:{}:single", dir.display()), tmp.path());
    assert!(
        matches!(&err, Error::SizeMismatch { digest: d, actual, .. } if *d == digest && *actual == len / 2),
        "{err}"
    );
    let image = open(&format!("oci:{}:single", dir.display())).unwrap();
    let err = RootFs::open(Arc::clone(image.source()), &image.images[0]).unwrap_err();
    assert!(matches!(err, Error::SizeMismatch { .. } | Error::CorruptLayer { .. }), "{err}");
}

#[test]
fn a_missing_blob() {
    let tmp = tempdir();
    let dir = synthetic_copy(tmp.path());
    let (digest, path) = layer_blob(&dir, 1);
    fs::remove_file(path).unwrap();
    let err = copy_to_fresh(&format!("oci:{}:single", dir.display()), tmp.path());
    assert!(matches!(&err, Error::BlobNotFound { digest: d, .. } if *d == digest), "{err}");
    assert!(err.to_string().contains(digest.as_str()), "{err}");
}

#[test]
fn an_index_pointing_at_nothing() {
    let tmp = tempdir();
    let dir = synthetic_copy(tmp.path());
    let image = open(&format!("oci:{}:multi", dir.display())).unwrap();
    let arm = &image.images[1].manifest.digest;
    fs::remove_file(dir.join("blobs/sha256").join(arm.hex())).unwrap();
    let err = open(&format!("oci:{}:multi", dir.display())).unwrap_err();
    assert!(matches!(&err, Error::BlobNotFound { digest, .. } if digest == arm), "{err}");
    let err = copy_to_fresh(&format!("oci:{}:multi", dir.display()), tmp.path());
    assert!(matches!(err, Error::BlobNotFound { .. }), "{err}");

    // index.json itself naming a blob that is not there.
    let index = fs::read_to_string(dir.join("index.json")).unwrap();
    let single = image.images[0].manifest.digest.hex().to_owned();
    fs::write(dir.join("index.json"), index.replace(&single, &"0".repeat(64))).unwrap();
    let err = open(&format!("oci:{}:single", dir.display())).unwrap_err();
    assert!(matches!(err, Error::BlobNotFound { .. }), "{err}");
}

#[test]
fn unknown_media_types() {
    let tmp = tempdir();
    let dir = synthetic_copy(tmp.path());
    // A top-level document of a type nobody knows.
    let index = fs::read_to_string(dir.join("index.json")).unwrap();
    let odd =
        index.replacen("application/vnd.oci.image.manifest.v1+json", "application/vnd.example.thing+json", 1);
    fs::write(dir.join("index.json"), odd).unwrap();
    let err = open(&format!("oci:{}:single", dir.display())).unwrap_err();
    assert!(
        matches!(&err, Error::UnsupportedMediaType { media_type, .. } if media_type == "application/vnd.example.thing+json"),
        "{err}"
    );
    let err = copy_to_fresh(&format!("oci:{}:single", dir.display()), tmp.path());
    assert!(matches!(err, Error::UnsupportedMediaType { .. }), "{err}");

    // A manifest whose layer has an unknown type.
    fs::write(dir.join("index.json"), &index).unwrap();
    let image = open(&format!("oci:{}:single", dir.display())).unwrap();
    let mut manifest: serde_json::Value = serde_json::from_slice(&image.images[0].manifest.bytes).unwrap();
    manifest["layers"][1]["mediaType"] = "application/vnd.example.layer".into();
    let bytes = serde_json::to_vec(&manifest).unwrap();
    let new = Digest::of(&bytes);
    fs::write(dir.join("blobs/sha256").join(new.hex()), &bytes).unwrap();
    let old = &image.images[0].manifest;
    let patched = index
        .replace(old.digest.as_str(), new.as_str())
        .replace(&format!("\"size\":{}", old.bytes.len()), &format!("\"size\":{}", bytes.len()));
    fs::write(dir.join("index.json"), patched).unwrap();
    let err = open(&format!("oci:{}:single", dir.display())).unwrap_err();
    assert!(
        matches!(&err, Error::UnsupportedMediaType { media_type, what, .. } if media_type == "application/vnd.example.layer" && what.starts_with("layer sha256:")),
        "{err}"
    );
}

// ---- hostile tar entries ----------------------------------------------------

fn octal(field: &mut [u8], v: u64) {
    let s = format!("{v:0w$o}", w = field.len() - 1);
    field[..s.len()].copy_from_slice(s.as_bytes());
}

/// A raw ustar entry with any name, which well-behaved tar writers refuse.
fn entry(name: &str, flag: u8, link: &str, data: &[u8], device: (u64, u64)) -> Vec<u8> {
    let mut h = [0u8; 512];
    h[..name.len()].copy_from_slice(name.as_bytes());
    octal(&mut h[100..108], 0o644);
    octal(&mut h[108..116], 0);
    octal(&mut h[116..124], 0);
    octal(&mut h[124..136], data.len() as u64);
    octal(&mut h[136..148], 0);
    h[156] = flag;
    h[157..157 + link.len()].copy_from_slice(link.as_bytes());
    h[257..263].copy_from_slice(b"ustar\0");
    h[263..265].copy_from_slice(b"00");
    octal(&mut h[329..337], device.0);
    octal(&mut h[337..345], device.1);
    h[148..156].fill(b' ');
    let sum: u64 = h.iter().map(|&b| u64::from(b)).sum();
    octal(&mut h[148..155], sum);
    let mut out = h.to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512, 0);
    out
}

fn tar_of(entries: &[Vec<u8>]) -> Vec<u8> {
    let mut out: Vec<u8> = entries.concat();
    out.extend_from_slice(&[0u8; 1024]);
    out
}

fn unpack_into(dest: &Path, tar: &[u8], options: UnpackOptions) -> caulk_image::Result<()> {
    fs::create_dir_all(dest).unwrap();
    unpack(&mut &tar[..], dest, "hostile", &options).map(|_| ())
}

#[test]
fn hostile_tar_entries_are_refused_or_contained() {
    let tmp = tempdir();
    let outside = tmp.path().join("outside");
    fs::create_dir(&outside).unwrap();
    let options = UnpackOptions::default();
    let refused = |name: &str, tar: Vec<u8>, why: &str| {
        let dest = tmp.path().join(name);
        let err = unpack_into(&dest, &tar, options).unwrap_err();
        assert!(matches!(err, Error::HostileEntry { .. }), "{name}: {err}");
        assert!(err.to_string().contains(why), "{name}: {err}");
        assert_eq!(fs::read_dir(&outside).unwrap().count(), 0, "{name} wrote outside the root");
    };
    refused("dotdot", tar_of(&[entry("../outside/evil", b'0', "", b"x", (0, 0))]), "`..`");
    refused("dotdot-deep", tar_of(&[entry("a/../../outside/evil", b'0', "", b"x", (0, 0))]), "`..`");
    let abs_link = outside.display().to_string();
    refused(
        "symlink-abs",
        tar_of(&[entry("link", b'2', &abs_link, b"", (0, 0)), entry("link/evil", b'0', "", b"x", (0, 0))]),
        "symlink",
    );
    refused(
        "symlink-rel",
        tar_of(&[
            entry("link", b'2', "../../outside", b"", (0, 0)),
            entry("link/evil", b'0', "", b"x", (0, 0)),
        ]),
        "symlink",
    );
    refused("hardlink-out", tar_of(&[entry("h", b'1', "../outside/x", b"", (0, 0))]), "`..`");
    refused("hardlink-host", tar_of(&[entry("h", b'1', "/etc/passwd", b"", (0, 0))]), "does not contain");

    // An absolute name lands inside the root.
    let dest = tmp.path().join("absolute");
    unpack_into(&dest, &tar_of(&[entry("/etc/evil", b'0', "", b"contained", (0, 0))]), options).unwrap();
    assert_eq!(fs::read(dest.join("etc/evil")).unwrap(), b"contained");
    assert!(!Path::new("/etc/evil").exists());

    // Device files are created inside the root only, or skipped on request.
    let devices = tar_of(&[entry("dev/sda", b'4', "", b"", (8, 0)), entry("dev/mem", b'3', "", b"", (1, 1))]);
    let dest = tmp.path().join("devices");
    unpack_into(&dest, &devices, options).unwrap();
    assert!(fs::symlink_metadata(dest.join("dev/sda")).unwrap().file_type().is_block_device());
    let dest = tmp.path().join("no-devices");
    let no_dev = UnpackOptions { device_nodes: false, whiteouts: WhiteoutFormat::Keep, ..options };
    unpack_into(&dest, &devices, no_dev).unwrap();
    assert!(!dest.join("dev/sda").exists() && !dest.join("dev/mem").exists());

    // A symlink pointing outside is stored as a link, never followed.
    let dest = tmp.path().join("dangling");
    unpack_into(&dest, &tar_of(&[entry("etc/shadow", b'2', "/etc/shadow", b"", (0, 0))]), options).unwrap();
    assert_eq!(fs::read_link(dest.join("etc/shadow")).unwrap(), Path::new("/etc/shadow"));

    // Garbage is a corrupt layer, not a panic.
    let dest = tmp.path().join("garbage");
    let err = unpack_into(&dest, &[7u8; 2048], options).unwrap_err();
    assert!(matches!(err, Error::CorruptLayer { .. }), "{err}");
}

/// A PAX extended header (type `x`) holding `records`, for the entry after it.
fn pax(records: &[(&str, &[u8])]) -> Vec<u8> {
    let mut data = Vec::new();
    for (key, value) in records {
        // The length counts itself: try the width until it is stable.
        let body = key.len() + value.len() + 3;
        let mut len = body + 1;
        while len != body + len.to_string().len() {
            len = body + len.to_string().len();
        }
        data.extend_from_slice(format!("{len} {key}=").as_bytes());
        data.extend_from_slice(value);
        data.push(b'\n');
    }
    entry("pax", b'x', "", &data, (0, 0))
}

fn has_xattr(path: &Path, name: &str) -> bool {
    let mut buf = [0u8; 64];
    rustix::fs::lgetxattr(path, name, &mut buf[..]).is_ok()
}

#[test]
fn layer_xattrs_are_applied_only_when_an_image_may_set_them() {
    let tmp = tempdir();
    let dest = tmp.path().join("root");
    let crafted = [
        ("trusted.overlay.opaque", &b"y"[..]),
        ("trusted.overlay.redirect", b"/etc"),
        ("trusted.other", b"x"),
        ("user.overlay.opaque", b"y"),
        ("security.selinux", b"system_u:object_r:shadow_t:s0"),
        ("user.caulk", b"kept"),
    ];
    let pax_xattrs: Vec<(String, &[u8])> =
        crafted.iter().map(|(name, value)| (format!("SCHILY.xattr.{name}"), *value)).collect();
    let records: Vec<(&str, &[u8])> = pax_xattrs.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let capability = [(
        "SCHILY.xattr.security.capability",
        &b"\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"[..],
    )];
    let tar = tar_of(&[
        entry("opt/", b'5', "", b"", (0, 0)),
        pax(&records),
        entry("opt/dir/", b'5', "", b"", (0, 0)),
        pax(&records),
        entry("opt/file", b'0', "", b"data", (0, 0)),
        pax(&capability),
        entry("usr/bin/ping", b'0', "", b"\x7fELF", (0, 0)),
        entry("opt/marked/", b'5', "", b"", (0, 0)),
        entry("opt/marked/.wh..wh..opq", b'0', "", b"", (0, 0)),
    ]);
    let options = UnpackOptions { whiteouts: WhiteoutFormat::OverlayTrusted, ..UnpackOptions::default() };
    unpack_into(&dest, &tar, options).unwrap();
    for path in ["opt/dir", "opt/file"] {
        let path = dest.join(path);
        assert!(has_xattr(&path, "user.caulk"), "{}: user.* is the image's own", path.display());
        for (name, _) in &crafted[..5] {
            assert!(!has_xattr(&path, name), "{}: {name} was applied", path.display());
        }
    }
    assert!(has_xattr(&dest.join("usr/bin/ping"), "security.capability"), "file capabilities are kept");
    // The file system takes trusted.* (caulk's own opaque marker is there):
    // its absence above is the filter's doing.
    assert!(has_xattr(&dest.join("opt/marked"), "trusted.overlay.opaque"));
}

/// Walks `rel` below `root` one component at a time, as no single path
/// longer than PATH_MAX can be opened.
fn read_deep(root: &Path, rel: &str) -> Vec<u8> {
    use rustix::fs::{Mode, OFlags};
    let mut dir = rustix::fs::open(root, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty()).unwrap();
    let (parents, name) = rel.rsplit_once('/').unwrap();
    for part in parents.split('/') {
        dir = rustix::fs::openat(&dir, part, OFlags::DIRECTORY | OFlags::RDONLY, Mode::empty()).unwrap();
    }
    let file = rustix::fs::openat(&dir, name, OFlags::RDONLY, Mode::empty()).unwrap();
    std::io::read_to_string(fs::File::from(file)).unwrap().into_bytes()
}

#[test]
fn entries_deeper_than_path_max_unpack_and_errors_stay_short() {
    let tmp = tempdir();
    let options = UnpackOptions::default();
    // About 6000 bytes of path: 60 directories of 99 bytes each.
    let mut long: String = (0..60).map(|i| format!("{i:0>98}")).collect::<Vec<_>>().join("/");
    long.push_str("/leaf");
    assert!(long.len() > 5000);
    let dest = tmp.path().join("deep");
    let tar = tar_of(&[pax(&[("path", long.as_bytes())]), entry("placeholder", b'0', "", b"deep", (0, 0))]);
    unpack_into(&dest, &tar, options).unwrap();
    assert_eq!(read_deep(&dest, &long), b"deep");

    // A name the file system cannot hold fails with a message a person can
    // read, naming the layer and what it was doing.
    let too_long = format!("{}/{}", "d".repeat(200), "n".repeat(300));
    let dest = tmp.path().join("name-too-long");
    let tar = tar_of(&[pax(&[("path", too_long.as_bytes())]), entry("placeholder", b'0', "", b"x", (0, 0))]);
    let err = unpack_into(&dest, &tar, options).unwrap_err().to_string();
    assert!(err.len() < 400, "{} bytes: {err}", err.len());
    assert!(err.contains("layer hostile") && err.contains('…'), "{err}");

    // A refused entry deep down is named short too.
    let hostile = format!("{}../../outside", "a/".repeat(3000));
    let dest = tmp.path().join("deep-dotdot");
    let tar = tar_of(&[pax(&[("path", hostile.as_bytes())]), entry("placeholder", b'0', "", b"x", (0, 0))]);
    let err = unpack_into(&dest, &tar, options).unwrap_err();
    assert!(matches!(err, Error::HostileEntry { .. }), "{err}");
    assert!(err.to_string().len() < 400, "{err}");
}

#[test]
fn whiteouts_of_dot_and_dotdot_are_refused() {
    let tmp = tempdir();
    let options = UnpackOptions { whiteouts: WhiteoutFormat::OverlayTrusted, ..UnpackOptions::default() };
    let keep = tmp.path().join("keep");
    fs::create_dir(&keep).unwrap();
    for name in [".wh..", ".wh...", "sub/.wh...", ".wh."] {
        let dest = tmp.path().join("root");
        let _ = fs::remove_dir_all(&dest);
        let tar = tar_of(&[entry("sub/", b'5', "", b"", (0, 0)), entry(name, b'0', "", b"", (0, 0))]);
        let err = unpack_into(&dest, &tar, options).unwrap_err();
        assert!(matches!(err, Error::HostileEntry { .. }), "{name}: {err}");
        assert!(keep.is_dir() && dest.is_dir(), "{name} removed a directory above the entry");
    }
}
