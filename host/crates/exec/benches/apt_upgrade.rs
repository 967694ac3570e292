//! The same apt upgrades on a Debian 12 root fs installed from bookworm
//! (openssl and libssl3 from bookworm-security; and `apt-get upgrade`, 11
//! packages with perl's) in overlay mode and in copy mode, with and without
//! dpkg's `--force-unsafe-io`. Indexes and packages
//! come from the host-side caches, so after the first round the network only
//! answers "not modified".
//!
//! `cargo bench -p caulk-exec --bench apt_upgrade` (as root);
//! `CAULK_BENCH_ROUNDS` (default 3) sets the rounds. Prints per-phase
//! medians (prepare: copy mode's merge; fetch: `apt-get update` and the
//! download step; dpkg: the offline install step; finish: copy mode's
//! compare) and the copy/overlay ratios.

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use caulk_exec::{CancelToken, Mode};

#[derive(Default, Clone, Copy)]
struct Round {
    prepare: Duration,
    update: Duration,
    upgrade: Duration,
    finish: Duration,
    total: Duration,
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn secs(d: Duration) -> String {
    format!("{:.2}s", d.as_secs_f64())
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument skips everything.
    if std::env::args().skip(1).any(|a| !a.starts_with('-')) {
        return;
    }
    let rounds: usize = std::env::var("CAULK_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let fx = common::fixture();
    let work = common::workdir();
    for (name, action) in [
        ("openssl+libssl3", &["install", "--only-upgrade", "openssl", "libssl3"][..]),
        ("apt-get upgrade", &["upgrade"][..]),
    ] {
        scenario(fx, work.path(), rounds, name, action);
    }
}

fn scenario(fx: &common::Fixture, work: &std::path::Path, rounds: usize, name: &str, action: &[&str]) {
    let configs = [(Mode::Overlay, true), (Mode::Copy, true), (Mode::Overlay, false), (Mode::Copy, false)];
    // One warm-up so the caches hold the indexes and packages.
    let mut results: Vec<Vec<Round>> = vec![Vec::new(); configs.len()];
    for round in 0..=rounds {
        for (i, &(mode, unsafe_io)) in configs.iter().enumerate() {
            let exec = common::executor(work, mode);
            let started = Instant::now();
            let mut session = exec.prepare(&fx.layers(), CancelToken::new()).unwrap();
            let prepare = started.elapsed();
            let steps = common::apt_steps(unsafe_io, action);
            let t = Instant::now();
            session.run_step(&steps[0], &mut |_, _| {}).unwrap();
            session.run_step(&steps[1], &mut |_, _| {}).unwrap();
            let update = t.elapsed();
            let t = Instant::now();
            session.run_step(&steps[2], &mut |_, _| {}).unwrap();
            let upgrade = t.elapsed();
            let t = Instant::now();
            let diff = session.finish().unwrap();
            let finish = t.elapsed();
            let total = started.elapsed();
            drop(diff);
            if round > 0 {
                results[i].push(Round { prepare, update, upgrade, finish, total });
            }
            eprintln!(
                "{name} round {round} {mode:?} unsafe-io={unsafe_io}: prepare {} update {} upgrade {} finish {} total {}",
                secs(prepare),
                secs(update),
                secs(upgrade),
                secs(finish),
                secs(total)
            );
        }
    }
    let med = |i: usize, f: fn(&Round) -> Duration| median(results[i].iter().map(f).collect());
    println!("\n{name}: median of {rounds} rounds");
    println!("{:<28} {:>8} {:>8} {:>8} {:>8} {:>8}", "mode", "prepare", "fetch", "dpkg", "finish", "total");
    for (i, (mode, unsafe_io)) in configs.iter().enumerate() {
        println!(
            "{:<28} {:>8} {:>8} {:>8} {:>8} {:>8}",
            format!("{mode:?} unsafe-io={unsafe_io}"),
            secs(med(i, |r| r.prepare)),
            secs(med(i, |r| r.update)),
            secs(med(i, |r| r.upgrade)),
            secs(med(i, |r| r.finish)),
            secs(med(i, |r| r.total)),
        );
    }
    for (overlay, copy, label) in [(0, 1, "unsafe-io"), (2, 3, "safe io")] {
        let ratio = |f: fn(&Round) -> Duration| med(copy, f).as_secs_f64() / med(overlay, f).as_secs_f64();
        println!(
            "copy/overlay ({label}): dpkg step {:.2}x, total {:.2}x",
            ratio(|r| r.upgrade),
            ratio(|r| r.total)
        );
    }
}
