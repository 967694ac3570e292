//! The plugin runtime's costs for the built-in plugins: cold compile with
//! each compiler, load from the code cache, instantiation, and a small call;
//! and a scanner parse of the largest fixture reports through the
//! WebAssembly plugin, compiled by each compiler, beside the same parser
//! built natively.
//!
//! `cargo bench -p caulk --bench plugins`

use std::hint::black_box;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use caulk::plugin::{BUILTINS, Compiler, Limits, Plugin, PluginSet, PluginSource, Runtime};
use criterion::{Criterion, criterion_group, criterion_main};

fn runtime(cache: Option<PathBuf>) -> Arc<Runtime> {
    Arc::new(Runtime::new(Limits::default(), cache).expect("engine"))
}

/// The compilers this machine has, named for the benchmark ids.
fn compilers() -> Vec<(&'static str, Arc<Runtime>)> {
    let mut all = vec![(
        "optimizing",
        Arc::new(Runtime::with_compiler(Limits::default(), None, Compiler::Optimizing).expect("engine")),
    )];
    if let Ok(baseline) = Runtime::with_compiler(Limits::default(), None, Compiler::Baseline) {
        all.push(("baseline", Arc::new(baseline)));
    }
    all
}

fn fixture(name: &str) -> Vec<u8> {
    let path = PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../tests/fixtures/reports")).join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn lifecycle(c: &mut Criterion) {
    let cache = tempfile::tempdir().unwrap();
    let warm = runtime(Some(cache.path().to_path_buf()));
    // Fill the cache.
    let set = PluginSet::discover(&warm, &[]).unwrap();

    for (compiler, cold) in compilers() {
        let mut compile = c.benchmark_group(format!("compile (no cache), {compiler}"));
        compile.sample_size(10);
        for b in BUILTINS {
            compile.bench_function(b.dir_name, |bench| {
                bench.iter(|| cold.load(PluginSource::Builtin, b.wasm, Some(b.sha256)).unwrap());
            });
        }
        compile.bench_function("all built-ins", |bench| {
            bench.iter(|| PluginSet::discover(&cold, &[]).unwrap());
        });
        compile.finish();
    }

    let mut cached = c.benchmark_group("load from cache");
    for b in BUILTINS {
        cached.bench_function(b.dir_name, |bench| {
            bench.iter(|| warm.load(PluginSource::Builtin, b.wasm, Some(b.sha256)).unwrap());
        });
    }
    cached.finish();

    c.bench_function("all built-ins: load from cache + instantiate once + info", |bench| {
        bench.iter(|| PluginSet::discover(&warm, &[]).unwrap());
    });

    let mut inst = c.benchmark_group("instantiate");
    for plugin in set.all() {
        inst.bench_function(plugin.name(), |bench| bench.iter(|| black_box(plugin.session().unwrap())));
    }
    inst.finish();

    let mut call = c.benchmark_group("small call on a live instance");
    for plugin in set.all() {
        let mut session = plugin.session().unwrap();
        call.bench_function(format!("{} sniff(2 bytes)", plugin.name()), |bench| {
            bench.iter(|| session.sniff(black_box(b"{}")).unwrap());
        });
        let mut session = plugin.session().unwrap();
        call.bench_function(format!("{} info", plugin.name()), |bench| {
            bench.iter(|| session.info().unwrap());
        });
    }
    call.finish();

    let mut fresh = c.benchmark_group("small call with a fresh instance (what caulk does)");
    for plugin in set.scanners() {
        fresh.bench_function(plugin.name(), |bench| bench.iter(|| plugin.sniff(black_box(b"{}")).unwrap()));
    }
    fresh.finish();
}

/// A native parser, returning how many findings it read.
type NativeParse = fn(&[u8]) -> usize;

fn parse(c: &mut Criterion) {
    let compilers = compilers();
    let load = |runtime: &Arc<Runtime>, name: &str| {
        let b = BUILTINS.iter().find(|b| b.dir_name == name).expect("built-in");
        Plugin::load(runtime, PluginSource::Builtin, b.wasm, Some(b.sha256)).unwrap()
    };
    let cases: [(&str, &str, NativeParse); 2] = [
        ("grype", "grype-redhat-anteather-1.json", |r| caulk_plugin_grype::parse(r).unwrap().findings.len()),
        ("trivy", "trivy-redhat-anteather-1.json", |r| caulk_plugin_trivy::parse(r).unwrap().findings.len()),
    ];
    for (plugin_name, file, native) in cases {
        let report = fixture(file);
        let mut group = c.benchmark_group(format!("parse {file} ({} KB)", report.len() / 1024));
        group.sample_size(20).measurement_time(Duration::from_secs(8));
        for (compiler, runtime) in &compilers {
            let plugin = load(runtime, plugin_name);
            assert_eq!(plugin.parse(&report).unwrap().findings.len(), native(&report));
            group.bench_function(format!("wasm plugin, {compiler}"), |bench| {
                bench.iter(|| plugin.parse(black_box(&report)).unwrap());
            });
        }
        group.bench_function("native", |bench| bench.iter(|| native(black_box(&report))));
        group.finish();
    }
}

criterion_group!(benches, lifecycle, parse);
criterion_main!(benches);
