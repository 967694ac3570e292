//! What one sandboxed command costs: a plain fork+exec of `true`, bwrap on
//! a plain directory, and a probe and a step through the executor (overlay
//! mount in a private namespace + bwrap + pid namespace), in both modes.
//!
//! `cargo bench -p caulk-exec --bench spawn` (as root).

#[path = "../tests/common/mod.rs"]
mod common;

use std::process::Command;
use std::time::Duration;

use caulk_exec::{CancelToken, Mode, Probe, Step};
use criterion::{Criterion, criterion_group, criterion_main};

fn spawn(c: &mut Criterion) {
    let fx = common::fixture();
    let work = common::workdir();
    let mut group = c.benchmark_group("spawn");
    group.sample_size(30).measurement_time(Duration::from_secs(8));

    group.bench_function("fork+exec true", |b| {
        b.iter(|| assert!(Command::new("/usr/bin/true").status().unwrap().success()));
    });
    let base = fx.base.display().to_string();
    group.bench_function("bwrap true (plain dir)", |b| {
        b.iter(|| {
            let status = Command::new("bwrap")
                .args(["--ro-bind", &base, "/", "--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp"])
                .args(["--unshare-pid", "--unshare-ipc", "--unshare-uts", "--unshare-net"])
                .args(["--die-with-parent", "--clearenv", "--", "true"])
                .status()
                .unwrap();
            assert!(status.success());
        });
    });
    for mode in [Mode::Overlay, Mode::Copy] {
        let exec = common::executor(work.path(), mode);
        let mut session = exec.prepare(&fx.layers(), CancelToken::new()).unwrap();
        group.bench_function(format!("probe true ({mode:?})"), |b| {
            b.iter(|| assert!(session.probe(&Probe::new(["true"])).unwrap().success()));
        });
        group.bench_function(format!("step true ({mode:?})"), |b| {
            b.iter(|| {
                assert!(session.run_step(&Step::new("true", ["true"]), &mut |_, _| {}).unwrap().success());
            });
        });
    }
    group.finish();
}

criterion_group!(benches, spawn);
criterion_main!(benches);
