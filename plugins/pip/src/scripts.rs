//! The Python programs the plugin runs, as constant text.
//!
//! Each runs as `python -c SCRIPT ARG...`: whatever comes from a report or
//! the image reaches them as `sys.argv` elements, never as program text. They
//! stay within Python 3.6 (f-strings, no walrus) so old images can run them.

/// `PYTHONDONTWRITEBYTECODE=1`, in every step. The image's own `.pyc`
/// files are often stale (a build that clamps mtimes makes every one of
/// them so), and an interpreter that recompiles a module writes it back: in
/// a step that puts recompiled bytecode of pip and the standard library
/// (hundreds of files) into the new layer. pip still byte-compiles the
/// files it installs: `compileall` does not heed the setting. Interpreters
/// run with `-I` ignore it and get `-B` instead.
pub const NO_BYTECODE: (&str, &str) = ("PYTHONDONTWRITEBYTECODE", "1");

/// `PYTHONPYCACHEPREFIX`, in every probe: the bytecode an interpreter
/// compiles goes to the probes' shared scratch directory
/// ([`caulk_sdk::PROBE_SCRATCH`]) instead of beside the image's sources, so
/// pip and the standard library are compiled once for all the probes of a
/// run (the dry run, then `pip check` and the import checks) and of later
/// runs on the same image, rather than in each, and nothing reaches the
/// image. Interpreters run with `-I` ignore it.
pub const PROBE_BYTECODE: &str = "PYTHONPYCACHEPREFIX";

/// A probe running `argv` in the image, its bytecode kept in the scratch.
pub fn python_command<S: Into<String>>(argv: impl IntoIterator<Item = S>) -> caulk_sdk::update::Command {
    let mut command = caulk_sdk::update::Command::new(argv);
    command.env.push(probe_bytecode());
    command
}

/// The [`PROBE_BYTECODE`] entry of a probe's environment.
pub fn probe_bytecode() -> (String, String) {
    (PROBE_BYTECODE.to_owned(), format!("{}/pyc", caulk_sdk::PROBE_SCRATCH))
}

/// Prints what the planner needs to know about an interpreter: its PEP 508
/// marker environment, where its pip installs (`sysconfig` paths), the
/// directories on `sys.path`, its C library (for wheel platform tags) and
/// pip's version, on one line after the `caulk-python-facts ` prefix (a
/// `sitecustomize` may print before it).
pub const PYTHON_FACTS: &str = r#"import json, os, platform, site, sys, sysconfig
i = sys.implementation
v = i.version
iv = "%d.%d.%d" % (v.major, v.minor, v.micro)
if v.releaselevel != "final":
    iv += v.releaselevel[0] + str(v.serial)
paths = sysconfig.get_paths()
facts = {
    "markers": {
        "implementation_name": i.name,
        "implementation_version": iv,
        "os_name": os.name,
        "platform_machine": platform.machine(),
        "platform_python_implementation": platform.python_implementation(),
        "platform_release": platform.release(),
        "platform_system": platform.system(),
        "platform_version": platform.version(),
        "python_full_version": platform.python_version(),
        "python_version": ".".join(platform.python_version_tuple()[:2]),
        "sys_platform": sys.platform,
    },
    "executable": sys.executable,
    "prefix": sys.prefix,
    "base_prefix": getattr(sys, "base_prefix", sys.prefix),
    "purelib": paths.get("purelib"),
    "platlib": paths.get("platlib"),
    "user_site": site.getusersitepackages() if site.ENABLE_USER_SITE else None,
    "sys_path": [p for p in sys.path if p],
    "libc": list(platform.libc_ver()),
}
try:
    import pip
    facts["pip"] = pip.__version__
except Exception:
    facts["pip"] = None
print("caulk-python-facts " + json.dumps(facts))
"#;

/// Prefix of the facts line.
pub const PYTHON_FACTS_PREFIX: &str = "caulk-python-facts ";

/// `requirements()`, the dependency check [`IMPORT_CHECK`] runs first when
/// asked: what `pip check` checks (`pip/_internal/operations/check.py`),
/// without the cost of importing pip itself, which is most of a
/// `pip check`'s time. Every distribution the interpreter sees, the first
/// of each name along `sys.path` as pip takes it, must have each
/// requirement whose marker holds (with `extra` empty) installed at a
/// version its specifier contains, pre-releases included; requirements are
/// parsed and compared by pip's own vendored `packaging`. Like pip 24.1 and
/// later, a distribution whose wheel tags the interpreter supports none of
/// is named too. Where pip would see more than `importlib.metadata` does
/// (eggs, `.egg-link` files, zip archives on `sys.path`), or the
/// interpreter lacks `importlib.metadata` or pip's `packaging`, it runs
/// `python -m pip check` instead, as it does on an error the rules did not
/// expect. A distribution whose version, requirements or `WHEEL` tags do
/// not parse gets one line saying so, and the others are still checked.
/// Its lines use `pip check`'s words, with canonical names, one message
/// per line.
pub const DEPENDENCY_CHECK: &str = include_str!("deps.py");

/// Verifies one interpreter's environment in one run: first, when
/// `sys.argv[4]` is `deps`, its requirements as `pip check` checks them
/// ([`DEPENDENCY_CHECK`]), then the imports of several distributions.
/// `sys.argv[1]` is a JSON list of `{"id", "path", "modules"}` (`path`: a
/// directory put first on `sys.path` for that distribution's imports, or
/// null), `sys.argv[2]` the seconds one import may take, `sys.argv[3]` the
/// seconds this run may spend. Each module is imported alone: `sys.path` is
/// restored and the Python modules the import loaded are dropped again
/// before the next one, so one broken import neither hides nor causes
/// another's failure. Extension modules stay loaded: they cannot be
/// unloaded, and many (NumPy 2, PyO3 modules) refuse to initialise twice in
/// one process, so dropping them would fail every later import that needs
/// them. The dependency check is undone the same way before the first
/// import: it loads pip and what pip vendors (Debian's debundled pip puts
/// wheels first on `sys.path` and imports `urllib3`, `requests`, `idna`…
/// from them), and an import check must not be answered by that copy.
///
/// It prints `caulk-import-start` first, then the dependency check's line
/// (after the `caulk-deps ` prefix, a JSON object `{"lines"}` with lines in
/// `pip check`'s words, or `{"error"}`), then one line per module after the
/// `caulk-import ` prefix, a JSON object `{"id", "module", "ok", "error"}`;
/// each written straight to file descriptor 1 (a module may replace or
/// close `sys.stdout`) and preceded by a newline (one may leave a line
/// open). A module that kills the interpreter leaves the rest without a
/// line. One still importing when its time is up gets a line with
/// `"timeout": true` from a watchdog thread, which then ends the process:
/// an import cannot be interrupted safely. A module is not started when the
/// run's time could end during it (never the run's first, unless the
/// dependency check came before it): `caulk-import-paused` says the rest
/// are for another run. The fallback `python -m pip check` gets what is
/// left of the run's time. The process
/// ends with `os._exit`, so a module's exit handlers or threads cannot hold
/// it up after the last line.
pub const IMPORT_CHECK: &str = concat!(
    r#"import importlib, importlib.machinery, json, os, sys, threading, time
started = time.monotonic()
limit = float(sys.argv[2])
budget = float(sys.argv[3])
"#,
    include_str!("deps.py"),
    r#"def native(module):
    loader = getattr(getattr(module, "__spec__", None), "loader", None)
    return isinstance(loader, importlib.machinery.ExtensionFileLoader)
def say(line):
    os.write(1, ("\n" + line + "\n").encode("utf-8"))
def result(check, module, ok, error, timeout=False):
    say("caulk-import " + json.dumps({"id": check["id"], "module": module, "ok": ok, "error": error, "timeout": timeout}))
def overran(check, module):
    result(check, module, False, "the import did not finish within %g s" % limit, True)
    os._exit(124)
def forget(saved_path, loaded):
    sys.path[:] = saved_path
    for name in set(sys.modules) - loaded:
        if not native(sys.modules.get(name)):
            sys.modules.pop(name, None)
    importlib.invalidate_caches()
say("caulk-import-start")
first = True
if sys.argv[4:5] == ["deps"]:
    saved_path = list(sys.path)
    loaded = set(sys.modules)
    try:
        found = requirements()
    except Exception as e:
        found = {"error": "%s: %s" % (type(e).__name__, e)}
    forget(saved_path, loaded)
    say("caulk-deps " + json.dumps(found))
    first = False
for check in json.loads(sys.argv[1]):
    for module in check["modules"]:
        if not first and time.monotonic() - started + limit > budget:
            say("caulk-import-paused")
            os._exit(0)
        first = False
        saved_path = list(sys.path)
        loaded = set(sys.modules)
        if check.get("path"):
            sys.path.insert(0, check["path"])
        watchdog = threading.Timer(limit, overran, (check, module))
        watchdog.daemon = True
        watchdog.start()
        try:
            importlib.import_module(module)
            ok, error = True, ""
        except BaseException as e:
            ok, error = False, "%s: %s" % (type(e).__name__, e)
        watchdog.cancel()
        forget(saved_path, loaded)
        result(check, module, ok, error)
os._exit(0)
"#
);

/// The line the import check prints before its first import.
pub const IMPORT_START: &str = "caulk-import-start";
/// Prefix of the dependency check's line.
pub const DEPS_PREFIX: &str = "caulk-deps ";
pub const IMPORT_PREFIX: &str = "caulk-import ";
/// The line saying the run's time is used up and the rest need another run.
pub const IMPORT_PAUSED: &str = "caulk-import-paused";

/// Moves distributions that `pip install --target SCRATCH` put in a fresh
/// directory into SITE, one distribution at a time:
/// `SITE SCRATCH ASIDE ROOT (OLD_DIST_INFO NAME NEW_VERSION)...`, one
/// triple per distribution that one pip run installed; ROOT is the
/// environment's root (a venv's directory, a system prefix; SITE itself for
/// a loose tree).
///
/// pip's own `--target DIR --upgrade` replaces whole top-level entries of
/// DIR, so a namespace package directory (`google/` holding several
/// distributions) would lose every sibling of the one upgraded. Here only
/// files move: each new `*.dist-info` is found in SCRATCH by its METADATA
/// name and version, and nothing is touched when one is missing, so a failed
/// install never costs an old distribution. Then, per distribution, every
/// file of the old RECORD is taken out unless a new RECORD of the run or
/// another distribution of SITE lists it (a shared `__init__.py` of a
/// namespace package stays), with the old `.dist-info` itself; every file
/// of the new RECORD moves from SCRATCH to its place in SITE; directories
/// that became empty go. Nothing is removed or written through a symlinked
/// directory that leads out of SITE (or ROOT): a package file of the old or
/// the new RECORD behind one fails the merge (the old code would stay while
/// the new `.dist-info` says it is patched), while a script or data file
/// behind one, or outside ROOT, stays as it is with a `caulk: left …` line
/// on stdout. An old `.dist-info` that is a symlink is taken out as the
/// link, never walked into.
///
/// Files the old RECORD places outside SITE (console scripts in `ROOT/bin`,
/// data files) are taken out too when they lie inside ROOT, never when ROOT
/// is `/`. `--target` installs under a temporary home and moves its `bin/`
/// and data directories into the target (RECORD lists them as
/// `../../bin/x`): such a new file goes where the old distribution kept the
/// same file, in SITE (it was installed with `--target`) or under ROOT, and
/// is dropped from the new RECORD otherwise. A console script whose first
/// line is the launcher pip writes for the interpreter running the merge
/// (the one that ran pip) gets the old script's `#!` line instead, which
/// names the environment's interpreter, and its RECORD line is rewritten
/// with the new hash.
///
/// All or nothing, as far as a file system allows: what is taken out is
/// moved into ASIDE (beside SITE, so on the same file system) and deleted
/// only once every distribution is in place; on any error every move is
/// undone in reverse order, so the new files leave and the old ones return,
/// and the step fails naming the path and the error. SCRATCH or ASIDE
/// already present as a symlink is refused; a leftover ASIDE directory is
/// removed and ASIDE made afresh. SCRATCH is removed at the end, whatever
/// happened, and ASIDE unless something could not be put back (the plan
/// leaves both out of the layer, so what could not be put back is lost and
/// the message says the environment holds parts of both versions).
pub const MERGE_TARGET: &str = include_str!("merge.py");

/// Runs the pip installs of several environments side by side in one step:
/// `python -I -B -c SIDE_BY_SIDE LANE COMMAND_JSON ...`. A lane holds the
/// environments that could meet, its commands in order; lanes run at once,
/// at most one per usable CPU. Each command's stdout is printed as it
/// comes, every line led by its lane; its stderr once all are done, and
/// only failures' on stderr, so the step's stderr tail is about them (see
/// the script's head).
pub const SIDE_BY_SIDE: &str = include_str!("lanes.py");
