//! A real Debian root fs (tests/images/debian.sh, mmdebstrap, cached in
//! CAULK_TEST_CACHE): the merged view against the kernel, transports round
//! trip, and writes interrupted by SIGKILL at arbitrary points.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Instant;

use caulk_image::layer::{EntryKind, LayerCache, RootFs, UnpackOptions, WriteOptions, write_layer};
use caulk_image::media::Compression;
use caulk_image::{CopyOptions, Image, ImageRef, TransportOptions, copy};
use common::registry::Registry;
use common::{debian, run, skopeo, tempdir};

fn debian_ref() -> String {
    format!("oci:{}:bookworm", debian().display())
}

fn open(r: &str) -> Image {
    Image::open(&ImageRef::parse(r).unwrap(), &TransportOptions::default()).unwrap()
}

fn cp(src: &str, dst: &str) -> caulk_image::CopyReport {
    copy(
        &ImageRef::parse(src).unwrap(),
        &ImageRef::parse(dst).unwrap(),
        &CopyOptions::default(),
        &TransportOptions::default(),
    )
    .unwrap_or_else(|e| panic!("copy {src} -> {dst}: {e}"))
}

#[test]
fn debian_view_matches_the_kernel_overlay_and_answers_probes() {
    let image = open(&debian_ref());
    let platform = &image.images[0];
    let view = RootFs::open(Arc::clone(image.source()), platform).unwrap();
    let os_release = String::from_utf8(view.read("/etc/os-release").unwrap()).unwrap();
    assert!(os_release.contains("VERSION_CODENAME=bookworm"), "{os_release}");
    let status = String::from_utf8(view.read("/var/lib/dpkg/status").unwrap()).unwrap();
    assert!(status.contains("Package: dpkg\n"));
    assert_eq!(view.read("/etc/hostname").unwrap(), b"caulk-test\n");
    assert!(view.stat("/usr/share/doc/bash").is_none(), "whited out by layer 2");
    assert!(view.glob("/usr/share/doc/*/copyright").unwrap().len() > 50);
    assert_eq!(view.stat("/bin").unwrap().kind, EntryKind::Symlink, "merged /usr");
    assert!(view.exists("/bin/sh"), "followed through the /bin symlink");

    // Unpack both layers and let overlayfs merge them: every path, kind,
    // mode, owner and size must agree with the view.
    let tmp = tempdir();
    let cache = LayerCache::new(tmp.path().join("cache")).unwrap();
    let dirs = cache.unpack_image(image.source().as_ref(), platform, &UnpackOptions::default()).unwrap();
    let target = tmp.path().join("merged");
    fs::create_dir(&target).unwrap();
    let lower: Vec<String> = dirs.iter().rev().map(|d| d.display().to_string()).collect();
    run(Command::new("mount")
        .args(["-t", "overlay", "overlay", "-o", &format!("lowerdir={}", lower.join(":"))])
        .arg(&target));
    let kernel = walk(&target);
    run(Command::new("umount").arg(&target));
    let ours: BTreeMap<String, String> = view
        .entries()
        .filter(|e| e.path != "/")
        .map(|e| {
            let kind = match e.kind {
                EntryKind::Dir => "d",
                EntryKind::File => "f",
                EntryKind::Symlink => "l",
                _ => "s",
            };
            let size = if e.kind == EntryKind::File { e.size } else { 0 };
            (e.path.clone(), format!("{kind} {:o} {}:{} {size}", e.mode, e.uid, e.gid))
        })
        .collect();
    assert_eq!(ours.len(), kernel.len());
    let differing: Vec<_> = ours.iter().filter(|(k, v)| kernel.get(*k) != Some(v)).take(5).collect();
    assert!(differing.is_empty(), "{differing:?}");

    // Contents: every file of a package directory, read in one pass.
    let files: Vec<String> = view
        .glob("/usr/lib/x86_64-linux-gnu/*.so*")
        .unwrap()
        .into_iter()
        .filter(|f| f.kind == EntryKind::File)
        .map(|f| f.path)
        .collect();
    assert!(files.len() > 20);
    let paths: Vec<&str> = files.iter().map(String::as_str).collect();
    for (path, bytes) in view.read_many(&paths) {
        assert_eq!(bytes.unwrap(), fs::read(dirs[0].join(&path[1..])).unwrap(), "{path}");
    }
}

fn walk(root: &Path) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let m = fs::symlink_metadata(&path).unwrap();
            let kind = if m.is_dir() {
                stack.push(path.clone());
                "d"
            } else if m.file_type().is_symlink() {
                "l"
            } else if m.is_file() {
                "f"
            } else {
                "s"
            };
            let size = if kind == "f" { m.len() } else { 0 };
            out.insert(
                format!("/{}", path.strip_prefix(root).unwrap().display()),
                format!("{kind} {:o} {}:{} {size}", m.mode() & 0o7777, m.uid(), m.gid()),
            );
        }
    }
    out
}

#[test]
fn debian_round_trips_through_every_local_transport_and_a_registry() {
    let tmp = tempdir();
    let registry = Registry::start();
    let original = open(&debian_ref());
    let chain = [
        debian_ref(),
        format!("oci-archive:{}/d.tar:bookworm", tmp.path().display()),
        format!("docker://{}/caulk/debian:bookworm", registry.addr),
        format!("oci:{}/back:bookworm", tmp.path().display()),
    ];
    for pair in chain.windows(2) {
        let report = cp(&pair[0], &pair[1]);
        assert_eq!(report.digest.as_ref(), Some(&original.top.digest), "{} -> {}", pair[0], pair[1]);
    }
    let theirs = String::from_utf8(
        skopeo(&["inspect", "--tls-verify=false", "--format", "{{.Digest}}", &chain[2]]).stdout,
    )
    .unwrap();
    assert_eq!(theirs.trim(), original.top.digest.as_str());
    // A docker archive keeps the layer blobs and config.
    let archive = format!("docker-archive:{}/d-docker.tar:caulk/debian:12", tmp.path().display());
    cp(&chain[3], &archive);
    let back = open(&archive);
    assert_eq!(back.images[0].config.bytes, original.images[0].config.bytes);
    let digests = |i: &Image| i.images[0].layers.iter().map(|l| l.desc.digest.clone()).collect::<Vec<_>>();
    assert_eq!(digests(&back), digests(&original));
}

#[test]
fn writing_a_layer_of_the_debian_tree_matches_gnu_tar() {
    let image = open(&debian_ref());
    let tmp = tempdir();
    let cache = LayerCache::new(tmp.path().join("cache")).unwrap();
    let dirs =
        cache.unpack_image(image.source().as_ref(), &image.images[0], &UnpackOptions::default()).unwrap();
    let layer = write_layer(&dirs[0], &tmp.path().join("layer.tar.gz"), &WriteOptions::default()).unwrap();
    // Parallel compressors give the same bytes whatever the thread count,
    // on input large enough to be split into many blocks or jobs.
    let with = |threads, compression| WriteOptions { threads, compression, ..WriteOptions::default() };
    let gz1 = write_layer(&dirs[0], &tmp.path().join("gz1"), &with(1, Compression::Gzip)).unwrap();
    assert_eq!(gz1.digest, layer.digest);
    let zst1 = write_layer(&dirs[0], &tmp.path().join("zst1"), &with(1, Compression::Zstd)).unwrap();
    let zst2 = write_layer(&dirs[0], &tmp.path().join("zst2"), &with(2, Compression::Zstd)).unwrap();
    assert_eq!(zst1.digest, zst2.digest);
    assert_eq!(zst1.diff_id, layer.diff_id);
    let listed = run(Command::new("tar").arg("-tzf").arg(&layer.path)).stdout;
    let found = run(Command::new("find").arg(".").arg("-mindepth").arg("1").current_dir(&dirs[0])).stdout;
    let lines = |b: &[u8]| String::from_utf8_lossy(b).lines().count();
    assert_eq!(lines(&listed), lines(&found));
    // Unpacking our layer gives back the tree GNU tar would.
    let compare = tmp.path().join("gnu");
    fs::create_dir(&compare).unwrap();
    run(Command::new("tar").args(["--xattrs", "-xzpf"]).arg(&layer.path).arg("-C").arg(&compare));
    assert_eq!(walk(&compare), walk(&dirs[0]));
}

/// Runs one copy as a separate process so a test can kill it.
#[test]
#[ignore = "helper: the process that interrupted_writes_leave_old_or_new_image kills"]
fn copy_helper_process() {
    if let (Ok(src), Ok(dst)) = (std::env::var("CAULK_HELPER_SRC"), std::env::var("CAULK_HELPER_DST")) {
        cp(&src, &dst);
    }
}

fn spawn_copy(src: &str, dst: &str) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["--exact", "copy_helper_process", "--ignored", "--nocapture", "--test-threads=1"])
        .env("CAULK_HELPER_SRC", src)
        .env("CAULK_HELPER_DST", dst)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap()
}

/// The digest the destination names now, checked to be complete: every
/// blob present and matching its digest.
fn consistent_digest(dst: &str) -> String {
    let image = open(dst);
    for blob in image.blobs() {
        let mut reader = caulk_image::transport::open_blob(image.source().as_ref(), &blob).unwrap();
        std::io::copy(&mut reader, &mut std::io::sink())
            .unwrap_or_else(|e| panic!("{dst}: blob {}: {e}", blob.digest));
    }
    image.top.digest.to_string()
}

#[test]
fn interrupted_writes_leave_the_old_or_the_new_image() {
    let tmp = tempdir();
    let old_src = format!("oci:{}:single", common::synthetic().display());
    let old = open(&old_src).top.digest.to_string();
    let new = open(&debian_ref()).top.digest.to_string();
    for (i, kind) in ["oci", "oci-archive"].iter().enumerate() {
        let dst = match *kind {
            "oci" => format!("oci:{}/layout-{i}:app", tmp.path().display()),
            _ => format!("oci-archive:{}/archive-{i}.tar:app", tmp.path().display()),
        };
        cp(&old_src, &dst);
        // How long an uninterrupted copy takes here.
        let started = Instant::now();
        let probe = format!("oci:{}/probe-{i}:app", tmp.path().display());
        assert!(spawn_copy(&debian_ref(), &probe).wait().unwrap().success());
        let full = started.elapsed();
        let mut seen_old = 0;
        for step in 1..=4u32 {
            let mut child = spawn_copy(&debian_ref(), &dst);
            std::thread::sleep(full * step / 5);
            let _ = child.kill();
            let _ = child.wait();
            let now = consistent_digest(&dst);
            assert!(now == old || now == new, "{dst} after a kill at {step}/5 names {now}");
            if now == old {
                seen_old += 1;
            }
        }
        assert!(seen_old > 0, "no kill landed before the commit of {dst}; the test proves nothing");
        assert!(spawn_copy(&debian_ref(), &dst).wait().unwrap().success());
        assert_eq!(consistent_digest(&dst), new);
    }
}
