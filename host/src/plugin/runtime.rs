//! The WebAssembly runtime: one engine and linker per process, an
//! `InstancePre` per plugin, a fresh store per call, every call under an
//! epoch deadline and a memory limit.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::{HasSelf, InstancePre, Linker, ResourceTable};
use wasmtime::{Config, Engine, ResourceLimiter, Store, Trap};
use wasmtime_wasi::p2::pipe::MemoryOutputPipe;
use wasmtime_wasi::{WasiCtx, WasiCtxBuilder, WasiCtxView, WasiView};

use super::bindings::{v0_1, v0_2};
use super::cache::{CodeCache, Provenance};
use super::capability::{self, Capability};
use super::error::{PluginError, PluginLabel, PluginSource};

/// The WIT package versions this host can load, newest first.
pub const SUPPORTED_WIT_VERSIONS: &[&str] = &["0.2.0", "0.1.0"];

/// How often the epoch ticks; deadlines are counted in ticks.
const TICK: Duration = Duration::from_millis(10);

/// Plugin instances alive at once (caulk makes them one after another).
const POOL_SLOTS: u32 = 16;

/// Bytes of each pooled memory kept resident between instances: what a
/// typical report's parse touches, not what a huge one does.
const KEEP_RESIDENT: usize = 32 << 20;

/// What plugin stdout/stderr may hold before writes fail; only the end is shown.
const OUTPUT_CAPACITY: usize = 1 << 20;

/// Which of wasmtime's compilers turns plugins into native code.
///
/// A run compiles each plugin the code cache does not hold yet: every
/// built-in on a machine's first run, or after an upgrade. Winch compiles
/// the built-ins more than ten times faster than Cranelift, and its code
/// parses the largest fixture reports in about 1.5 times Cranelift's time:
/// a few milliseconds against seconds (`cargo bench -p caulk --bench
/// plugins`). Both are tier-1 compilers in wasmtime; Winch only targets
/// x86_64.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Compiler {
    /// Winch, wasmtime's single-pass compiler: quick to compile.
    Baseline,
    /// Cranelift: slower to compile, faster code.
    Optimizing,
}

impl Default for Compiler {
    /// Baseline where Winch runs, optimizing elsewhere.
    fn default() -> Self {
        if Self::Baseline.runs_here() { Self::Baseline } else { Self::Optimizing }
    }
}

impl Compiler {
    /// Whether this machine's architecture has the compiler: Winch targets
    /// x86_64 only.
    fn runs_here(self) -> bool {
        self == Self::Optimizing || cfg!(target_arch = "x86_64")
    }

    fn strategy(self) -> wasmtime::Strategy {
        match self {
            Self::Baseline => wasmtime::Strategy::Winch,
            Self::Optimizing => wasmtime::Strategy::Cranelift,
        }
    }
}

/// Limits applied to every plugin call.
#[derive(Debug, Clone)]
pub struct Limits {
    /// Wall time per call.
    pub timeout: Duration,
    /// Linear memory per instance, in bytes.
    pub memory: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self { timeout: Duration::from_secs(10), memory: 512 << 20 }
    }
}

/// The kind of plugin, from the interface its component exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum PluginKind {
    Scanner,
    Updater,
}

impl std::fmt::Display for PluginKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Scanner => "scanner",
            Self::Updater => "updater",
        })
    }
}

/// One engine and linker for the whole process.
pub struct Runtime {
    engine: Engine,
    linker: Linker<State>,
    cache: CodeCache,
    limits: Limits,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("cache", &self.cache)
            .field("limits", &self.limits)
            .finish_non_exhaustive()
    }
}

/// A compiled, linked plugin ready to instantiate.
pub struct Loaded {
    pub source: PluginSource,
    pub kind: PluginKind,
    /// The WIT package version the plugin was built against.
    pub wit_version: String,
    pub sha256: String,
    pub provenance: Provenance,
    /// Names of the component's exports, for `plugins inspect`.
    pub exports: Vec<String>,
    /// Names of the component's imports, for `plugins inspect`.
    pub imports: Vec<String>,
    /// What the component declares it may ask the host for.
    pub declared: Vec<Capability>,
    pub(crate) pre: Pre,
}

/// The linked component, with the export indices of its world resolved once.
pub(crate) enum Pre {
    ScannerV0_1(v0_1::ScannerPluginPre<State>),
    UpdaterV0_1(v0_1::updater::UpdaterPluginPre<State>),
    ScannerV0_2(v0_2::ScannerPluginPre<State>),
    UpdaterV0_2(v0_2::updater::UpdaterPluginPre<State>),
}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("source", &self.source)
            .field("kind", &self.kind)
            .field("wit_version", &self.wit_version)
            .finish_non_exhaustive()
    }
}

/// Per-call state of a store.
pub struct State {
    wasi: WasiCtx,
    table: ResourceTable,
    limiter: MemoryLimiter,
    plugin: Arc<str>,
    stderr: MemoryOutputPipe,
}

impl WasiView for State {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView { ctx: &mut self.wasi, table: &mut self.table }
    }
}

impl v0_1::caulk::plugin::host::Host for State {
    fn log(&mut self, level: v0_1::caulk::plugin::host::Level, message: String) {
        use v0_1::caulk::plugin::host::Level;
        let level = match level {
            Level::Trace => v0_2::caulk::plugin::host::Level::Trace,
            Level::Debug => v0_2::caulk::plugin::host::Level::Debug,
            Level::Info => v0_2::caulk::plugin::host::Level::Info,
            Level::Warn => v0_2::caulk::plugin::host::Level::Warn,
            Level::Error => v0_2::caulk::plugin::host::Level::Error,
        };
        v0_2::caulk::plugin::host::Host::log(self, level, message);
    }
}

impl v0_1::caulk::plugin::types::Host for State {}

impl v0_2::caulk::plugin::host::Host for State {
    fn log(&mut self, level: v0_2::caulk::plugin::host::Level, message: String) {
        use v0_2::caulk::plugin::host::Level;
        let plugin = &*self.plugin;
        match level {
            Level::Trace => tracing::trace!(plugin, "{message}"),
            Level::Debug => tracing::debug!(plugin, "{message}"),
            Level::Info => tracing::info!(plugin, "{message}"),
            Level::Warn => tracing::warn!(plugin, "{message}"),
            Level::Error => tracing::error!(plugin, "{message}"),
        }
    }
}

impl v0_2::caulk::plugin::types::Host for State {}

/// Refuses memory growth past the limit and remembers that it did, so the
/// resulting trap is reported as what it is.
struct MemoryLimiter {
    limit: usize,
    exceeded: Arc<AtomicBool>,
}

impl ResourceLimiter for MemoryLimiter {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > self.limit {
            self.exceeded.store(true, Ordering::Relaxed);
            return Err(wasmtime::format_err!("memory limit of {} bytes exceeded", self.limit));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 1_000_000)
    }
}

/// Starts the thread that advances the engine's epoch, once per process.
fn start_ticker(engine: &Engine) {
    static STARTED: OnceLock<()> = OnceLock::new();
    STARTED.get_or_init(|| {
        let engine = engine.weak();
        std::thread::Builder::new()
            .name("caulk-epoch".into())
            .spawn(move || {
                while let Some(engine) = engine.upgrade() {
                    engine.increment_epoch();
                    drop(engine);
                    std::thread::sleep(TICK);
                }
            })
            .expect("spawning the epoch thread");
    });
}

impl Runtime {
    /// An engine with epoch interruption, a linker with WASI (nothing granted)
    /// and the caulk host interface, and a code cache in `cache_dir`; this
    /// machine's default [`Compiler`].
    pub fn new(limits: Limits, cache_dir: Option<std::path::PathBuf>) -> Result<Self, PluginError> {
        Self::with_compiler(limits, cache_dir, Compiler::default())
    }

    /// [`Runtime::new`] with the given compiler. The code cache keys entries
    /// by the engine's configuration, so code from one compiler is never
    /// loaded by an engine set up for the other.
    pub fn with_compiler(
        limits: Limits,
        cache_dir: Option<std::path::PathBuf>,
        compiler: Compiler,
    ) -> Result<Self, PluginError> {
        if !compiler.runs_here() {
            return Err(PluginError::Engine(
                "the baseline compiler (Winch) does not target this machine's architecture; \
                 use `--plugin-compiler optimizing`"
                    .into(),
            ));
        }
        let mut config = Config::new();
        config.strategy(compiler.strategy());
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        // Every call gets a fresh instance. From a pool whose slots keep the
        // first pages of a plugin's memory resident, a new instance reuses
        // them (reset by memset) instead of faulting fresh pages in: parsing
        // a 3.5 MB report that touches ~40 MB is a third faster this way.
        let mut pool = wasmtime::PoolingAllocationConfig::default();
        pool.total_component_instances(POOL_SLOTS)
            .total_core_instances(POOL_SLOTS * 2)
            .total_memories(POOL_SLOTS * 2)
            .total_tables(POOL_SLOTS * 2)
            // Above the limit, so the limiter refuses growth first and the
            // error can say the plugin ran out of memory.
            .max_memory_size(limits.memory.max(16 << 20) + (1 << 20))
            .linear_memory_keep_resident(KEEP_RESIDENT)
            .table_keep_resident(1 << 16);
        config.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&config).map_err(|e| PluginError::Engine(format!("{e:#}")))?;
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker)
            .map_err(|e| PluginError::Engine(format!("{e:#}")))?;
        v0_1::ScannerPlugin::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)
            .map_err(|e| PluginError::Engine(format!("{e:#}")))?;
        v0_2::ScannerPlugin::add_to_linker::<State, HasSelf<State>>(&mut linker, |s| s)
            .map_err(|e| PluginError::Engine(format!("{e:#}")))?;
        start_ticker(&engine);
        let cache = CodeCache::new(&engine, cache_dir);
        Ok(Self { engine, linker, cache, limits })
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Compiles (or loads from the cache) and links a plugin.
    pub fn load(
        &self,
        source: PluginSource,
        wasm: &[u8],
        sha256: Option<&str>,
    ) -> Result<Loaded, PluginError> {
        let label = PluginLabel(source.to_string());
        if !is_component(wasm) {
            let detail = if wasm.starts_with(b"\0asm") {
                "it is a core WebAssembly module".to_owned()
            } else {
                "it does not start with the WebAssembly magic number".to_owned()
            };
            return Err(PluginError::NotAComponent { source_path: source, detail });
        }
        let sha256 = sha256.map_or_else(|| hex::encode(Sha256::digest(wasm)), str::to_owned);
        let (component, provenance) = self.cache.load(&self.engine, wasm, &sha256).map_err(|e| {
            PluginError::NotAComponent { source_path: source.clone(), detail: format!("{e:#}") }
        })?;

        let ty = component.component_type();
        let exports: Vec<String> = ty.exports(&self.engine).map(|(name, _)| name.to_owned()).collect();
        let imports: Vec<String> = ty.imports(&self.engine).map(|(name, _)| name.to_owned()).collect();
        let (kind, wit_version) = classify(&label, &exports)?;
        let declared = capability::declared(wasm)
            .map_err(|detail| PluginError::BadDeclaration { plugin: label.clone(), detail })?;
        for import in &imports {
            if !import_allowed(import) {
                return Err(PluginError::UnsupportedImport { plugin: label, import: import.clone() });
            }
        }
        let link_error =
            |e: wasmtime::Error| PluginError::Link { plugin: label.clone(), detail: format!("{e:#}") };
        let instance_pre: InstancePre<State> = self.linker.instantiate_pre(&component).map_err(link_error)?;
        // `classify` admitted only supported versions; each snapshot has its arm.
        let pre = match (kind, minor(&wit_version)) {
            (PluginKind::Scanner, 1) => {
                Pre::ScannerV0_1(v0_1::ScannerPluginPre::new(instance_pre).map_err(link_error)?)
            }
            (PluginKind::Updater, 1) => {
                Pre::UpdaterV0_1(v0_1::updater::UpdaterPluginPre::new(instance_pre).map_err(link_error)?)
            }
            (PluginKind::Scanner, _) => {
                Pre::ScannerV0_2(v0_2::ScannerPluginPre::new(instance_pre).map_err(link_error)?)
            }
            (PluginKind::Updater, _) => {
                Pre::UpdaterV0_2(v0_2::updater::UpdaterPluginPre::new(instance_pre).map_err(link_error)?)
            }
        };
        Ok(Loaded { source, kind, wit_version, sha256, provenance, exports, imports, declared, pre })
    }

    /// A store for one plugin, with its memory limit and a fresh deadline.
    pub(crate) fn store(&self, name: &str) -> Store<State> {
        let stderr = MemoryOutputPipe::new(OUTPUT_CAPACITY);
        // WASI's defaults already give no files, environment, arguments or
        // stdin; the network is shut explicitly so a change of those
        // defaults cannot open it. Host questions are what grants gate.
        let wasi = WasiCtxBuilder::new()
            .stderr(stderr.clone())
            .stdout(MemoryOutputPipe::new(OUTPUT_CAPACITY))
            .allow_tcp(false)
            .allow_udp(false)
            .allow_ip_name_lookup(false)
            .build();
        let state = State {
            wasi,
            table: ResourceTable::new(),
            limiter: MemoryLimiter { limit: self.limits.memory, exceeded: Arc::new(AtomicBool::new(false)) },
            plugin: Arc::from(name),
            stderr,
        };
        let mut store = Store::new(&self.engine, state);
        store.limiter(|s| &mut s.limiter);
        store.epoch_deadline_trap();
        self.reset_deadline(&mut store);
        store
    }

    /// Gives the next call in `store` the whole time limit.
    pub(crate) fn reset_deadline(&self, store: &mut Store<State>) {
        let ticks = (self.limits.timeout.as_millis() / TICK.as_millis()).max(1);
        store.set_epoch_deadline(u64::try_from(ticks).unwrap_or(u64::MAX));
    }

    /// Turns a wasmtime error from a call into what happened, for people.
    pub(crate) fn call_error(
        &self,
        store: &Store<State>,
        err: &wasmtime::Error,
        call: &'static str,
    ) -> PluginError {
        let state = store.data();
        let label = PluginLabel(state.plugin.to_string());
        if state.limiter.exceeded.load(Ordering::Relaxed) {
            return PluginError::OutOfMemory { plugin: label, call, limit: self.limits.memory };
        }
        if matches!(err.downcast_ref::<Trap>(), Some(Trap::Interrupt)) {
            return PluginError::Timeout { plugin: label, call, limit: self.limits.timeout };
        }
        let stderr = String::from_utf8_lossy(&state.stderr.contents()).into_owned();
        PluginError::Trap { plugin: label, call, detail: trap_detail(err, &stderr) }
    }

    /// Runs `f` on a fresh instance of `plugin`, under the call limits.
    pub(crate) fn call<R>(
        &self,
        plugin: &Loaded,
        name: &str,
        call: &'static str,
        f: impl FnOnce(&mut Store<State>, &Pre) -> wasmtime::Result<R>,
    ) -> Result<R, PluginError> {
        let mut store = self.store(name);
        let result = f(&mut store, &plugin.pre);
        result.map_err(|err| self.call_error(&store, &err, call))
    }
}

/// The cause of a trap for people: a guest panic's message when it printed
/// one (Rust guests print it before aborting), else the trap itself.
fn trap_detail(err: &wasmtime::Error, stderr: &str) -> String {
    let trap = err.downcast_ref::<Trap>().map_or_else(|| format!("{err:#}"), ToString::to_string);
    let panic = stderr.lines().filter(|l| !l.trim().is_empty()).rev().take(6).collect::<Vec<_>>();
    if panic.is_empty() {
        trap
    } else {
        let tail: Vec<&str> = panic.into_iter().rev().collect();
        format!("{trap}; the plugin printed: {}", tail.join(" / "))
    }
}

/// Components start with the magic number and a layer field of 1; core
/// modules have layer 0.
fn is_component(wasm: &[u8]) -> bool {
    wasm.len() >= 8 && wasm.starts_with(b"\0asm") && wasm[6..8] == [1, 0]
}

/// Plugins may import the caulk host interface, shared types, and WASI.
fn import_allowed(name: &str) -> bool {
    name.starts_with("wasi:")
        || name.starts_with("caulk:plugin/host@")
        || name.starts_with("caulk:plugin/types@")
}

/// The plugin kind and WIT version from the component's exports.
fn classify(label: &PluginLabel, exports: &[String]) -> Result<(PluginKind, String), PluginError> {
    let mut found: Option<(PluginKind, String)> = None;
    for export in exports {
        let (kind, version) = if let Some(v) = export.strip_prefix("caulk:plugin/scanner@") {
            (PluginKind::Scanner, v)
        } else if let Some(v) = export.strip_prefix("caulk:plugin/updater@") {
            (PluginKind::Updater, v)
        } else {
            continue;
        };
        if found.as_ref().is_some_and(|(k, _)| *k != kind) {
            return Err(PluginError::TwoKinds { plugin: label.clone() });
        }
        found = Some((kind, version.to_owned()));
    }
    let Some((kind, version)) = found else {
        return Err(PluginError::NoPluginInterface { plugin: label.clone() });
    };
    if !SUPPORTED_WIT_VERSIONS.iter().any(|s| compatible(s, &version)) {
        return Err(PluginError::UnknownWitVersion {
            plugin: label.clone(),
            found: format!("caulk:plugin@{version}"),
            supported: SUPPORTED_WIT_VERSIONS.iter().map(|v| format!("caulk:plugin@{v}")).collect(),
        });
    }
    Ok((kind, version))
}

/// The minor number of a `0.x.y` WIT version `classify` accepted.
fn minor(version: &str) -> u32 {
    version.split('.').nth(1).and_then(|m| m.parse().ok()).unwrap_or(0)
}

/// Semver compatibility the way cargo reads it: `0.1.x` with `0.1.y`, `1.x` with `1.y`.
fn compatible(supported: &str, found: &str) -> bool {
    let parts = |v: &str| -> Option<(u64, u64, u64)> {
        let mut it = v.split('.').map(|p| p.parse::<u64>().ok());
        Some((it.next()??, it.next()??, it.next()??))
    };
    match (parts(supported), parts(found)) {
        (Some((0, sm, _)), Some((0, fm, _))) => sm == fm,
        (Some((smaj, _, _)), Some((fmaj, _, _))) => smaj == fmaj && smaj != 0,
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wit_versions_compatible_by_cargo_rules() {
        assert!(compatible("0.1.0", "0.1.0"));
        assert!(compatible("0.1.0", "0.1.7"));
        assert!(!compatible("0.1.0", "0.2.0"));
        assert!(!compatible("0.1.0", "1.0.0"));
        assert!(compatible("1.0.0", "1.4.2"));
        assert!(!compatible("0.1.0", "0.1"));
        assert!(!compatible("0.1.0", "garbage"));
        assert!(SUPPORTED_WIT_VERSIONS.iter().any(|s| compatible(s, "0.1.3")));
        assert!(SUPPORTED_WIT_VERSIONS.iter().any(|s| compatible(s, "0.2.0")));
        assert!(!SUPPORTED_WIT_VERSIONS.iter().any(|s| compatible(s, "0.3.0")));
        assert_eq!((minor("0.1.0"), minor("0.2.4")), (1, 2));
    }

    #[test]
    fn core_modules_are_not_components() {
        assert!(!is_component(b"\0asm\x01\0\0\0"));
        assert!(is_component(b"\0asm\x0d\0\x01\0"));
        assert!(!is_component(b"PK\x03\x04"));
    }
}
