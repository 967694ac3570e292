//! The Speed section of issue 4, measured beside the reference tools in the
//! same run:
//!
//! - copy the Debian test image (tests/images/debian.sh) between OCI layouts,
//!   push it to and pull it from a loopback docker-registry: caulk vs
//!   `skopeo copy`;
//! - write a layer from a ~100 MB tree (the image's /usr/lib... subset):
//!   caulk vs `tar -c | gzip -6`;
//! - peak RSS of caulk while copying.
//!
//! Every figure is the best of `CAULK_BENCH_REPS` (default 3) runs, each in
//! a child process measured by /usr/bin/time, so both tools pay process
//! start-up and their peak memory is comparable.
//!
//!     cargo bench -p caulk-image --bench image_io

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use caulk_image::layer::{LayerCache, UnpackOptions, WriteOptions, write_layer};
use caulk_image::{CopyOptions, Image, ImageRef, TransportOptions, copy};

/// Child mode: one operation, then exit.
fn child(args: &[String]) {
    match args {
        [op, src, dst] if op == "copy" => {
            copy(
                &ImageRef::parse(src).unwrap(),
                &ImageRef::parse(dst).unwrap(),
                &CopyOptions::default(),
                &TransportOptions::default(),
            )
            .unwrap();
        }
        [op, dir, out] if op == "write-layer" => {
            write_layer(Path::new(dir), Path::new(out), &WriteOptions::default()).unwrap();
        }
        _ => panic!("unknown child operation {args:?}"),
    }
}

/// Seconds and peak RSS (KiB) of a command, via /usr/bin/time.
fn measure(cmd: &mut Command) -> (f64, u64) {
    let report = tempfile::NamedTempFile::new().unwrap();
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(ToOwned::to_owned).collect();
    let out = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("%e %M")
        .arg("-o")
        .arg(report.path())
        .arg(&program)
        .args(&args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{} {args:?} failed:\n{}",
        program.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let text = std::fs::read_to_string(report.path()).unwrap();
    let mut parts = text.split_whitespace();
    (parts.next().unwrap().parse().unwrap(), parts.next().unwrap().parse().unwrap())
}

fn best(reps: usize, mut run: impl FnMut(usize) -> (f64, u64)) -> (f64, u64) {
    let mut results: Vec<(f64, u64)> = (0..reps).map(&mut run).collect();
    results.sort_by(|a, b| a.0.total_cmp(&b.0));
    let peak = results.iter().map(|r| r.1).max().unwrap();
    (results[0].0, peak)
}

fn dir_size(path: &Path) -> u64 {
    let out = common::run(Command::new("du").args(["-sb"]).arg(path)).stdout;
    String::from_utf8(out).unwrap().split_whitespace().next().unwrap().parse().unwrap()
}

struct Row {
    what: &'static str,
    caulk: (f64, u64),
    reference: (f64, u64),
    reference_name: &'static str,
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(i) = args.iter().position(|a| a == "--child") {
        child(&args[i + 1..]);
        return;
    }
    let reps: usize = std::env::var("CAULK_BENCH_REPS").ok().and_then(|r| r.parse().ok()).unwrap_or(3);
    let me = std::env::current_exe().unwrap();
    let caulk = |op: &str, a: &str, b: &str| {
        let mut c = Command::new(&me);
        c.args(["--child", op, a, b]);
        c
    };
    let debian = common::debian();
    let src = format!("oci:{}:bookworm", debian.display());
    let image = Image::open(&ImageRef::parse(&src).unwrap(), &TransportOptions::default()).unwrap();
    let compressed: u64 = image.images[0].layers.iter().map(|l| l.desc.size).sum();
    let tmp = tempfile::Builder::new().prefix("caulk-bench-").tempdir_in(common::test_cache()).unwrap();
    let t = |name: &str| -> PathBuf { tmp.path().join(name) };
    let registry = common::registry::Registry::start();
    let mut rows = Vec::new();

    rows.push(Row {
        what: "copy OCI layout -> OCI layout",
        caulk: best(reps, |i| {
            measure(&mut caulk("copy", &src, &format!("oci:{}:x", t(&format!("c{i}")).display())))
        }),
        reference: best(reps, |i| {
            measure(Command::new("skopeo").args([
                "copy",
                "-q",
                &src,
                &format!("oci:{}:x", t(&format!("s{i}")).display()),
            ]))
        }),
        reference_name: "skopeo copy",
    });
    // A fresh registry per push, so neither tool finds blobs already there
    // (skopeo would mount them from an earlier repository).
    let push = |tool: &str| {
        best(reps, |_| {
            let fresh = common::registry::Registry::start();
            let dst = format!("docker://{}/bench/{tool}:x", fresh.addr);
            if tool == "caulk" {
                measure(&mut caulk("copy", &src, &dst))
            } else {
                measure(Command::new("skopeo").args(["copy", "-q", "--dest-tls-verify=false", &src, &dst]))
            }
        })
    };
    rows.push(Row {
        what: "push OCI layout -> registry",
        caulk: push("caulk"),
        reference: push("skopeo"),
        reference_name: "skopeo copy",
    });
    common::run(Command::new(&me).args([
        "--child",
        "copy",
        &src,
        &format!("docker://{}/bench/pull:x", registry.addr),
    ]));
    let remote = format!("docker://{}/bench/pull:x", registry.addr);
    rows.push(Row {
        what: "pull registry -> OCI layout",
        caulk: best(reps, |i| {
            measure(&mut caulk("copy", &remote, &format!("oci:{}:x", t(&format!("pc{i}")).display())))
        }),
        reference: best(reps, |i| {
            measure(Command::new("skopeo").args([
                "copy",
                "-q",
                "--src-tls-verify=false",
                &remote,
                &format!("oci:{}:x", t(&format!("ps{i}")).display()),
            ]))
        }),
        reference_name: "skopeo copy",
    });

    // A ~100 MB tree: /usr/lib and /usr/share of the unpacked image.
    let cache = LayerCache::new(t("cache")).unwrap();
    let dirs = cache
        .unpack_image(Arc::clone(image.source()).as_ref(), &image.images[0], &UnpackOptions::default())
        .unwrap();
    let tree = t("tree");
    std::fs::create_dir_all(tree.join("usr")).unwrap();
    for sub in ["usr/lib", "usr/share"] {
        common::run(Command::new("cp").arg("-a").arg(dirs[0].join(sub)).arg(tree.join("usr")));
    }
    let tree_size = dir_size(&tree);
    let tree_arg = tree.display().to_string();
    rows.push(Row {
        what: "write gzip layer from tree",
        caulk: best(reps, |i| {
            measure(&mut caulk("write-layer", &tree_arg, &t(&format!("l{i}.tar.gz")).display().to_string()))
        }),
        reference: best(reps, |i| {
            measure(Command::new("sh").arg("-c").arg(format!(
                "tar -C '{tree_arg}' --sort=name -cf - . | gzip -6 > '{}'",
                t(&format!("g{i}.tar.gz")).display()
            )))
        }),
        reference_name: "tar -c | gzip -6",
    });
    let ours = std::fs::metadata(t("l0.tar.gz")).unwrap().len();
    let theirs = std::fs::metadata(t("g0.tar.gz")).unwrap().len();

    println!();
    println!("Debian image: {} MiB compressed in {} layers", compressed >> 20, image.images[0].layers.len());
    println!(
        "Layer tree: {} MiB; gzip output caulk {} MiB vs gzip -6 {} MiB",
        tree_size >> 20,
        ours >> 20,
        theirs >> 20
    );
    println!("Best of {reps} runs; peak RSS is the maximum over runs.\n");
    println!(
        "{:<32} {:>9} {:>11} {:>9} {:>11} {:>10}  reference",
        "operation", "caulk s", "caulk MiB", "ref s", "ref MiB", "time ratio"
    );
    for r in &rows {
        #[allow(clippy::cast_precision_loss, reason = "display")]
        let (cm, rm) = (r.caulk.1 as f64 / 1024.0, r.reference.1 as f64 / 1024.0);
        println!(
            "{:<32} {:>9.2} {:>11.1} {:>9.2} {:>11.1} {:>10.2}  {}",
            r.what,
            r.caulk.0,
            cm,
            r.reference.0,
            rm,
            r.caulk.0 / r.reference.0.max(0.001),
            r.reference_name
        );
    }
    println!("\n(time ratio = caulk / reference; below 1 means caulk is faster)");
}
