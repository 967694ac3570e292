//! Native scanner plugins: shared libraries for vendors that cannot ship
//! WebAssembly. Loaded only when the user opts in (`--allow-native-plugins`),
//! because a shared library runs with all of caulk's privileges and none of
//! the WebAssembly sandbox's limits.
//!
//! # The C ABI (version 1)
//!
//! A native scanner is a shared library (`.so`) in a plugin directory that
//! exports these symbols:
//!
//! ```c
//! /* Must return 1, the ABI version this description documents. */
//! uint32_t caulk_native_abi_version(void);
//!
//! /* Static NUL-terminated UTF-8 JSON: {"name": "...", "version": "...",
//!    "summary": "...", "handles": ["format", ...]}. Owned by the library. */
//! const char *caulk_native_info(void);
//!
//! /* Confidence 0-100 that the report is in the library's format. */
//! uint8_t caulk_native_sniff(const uint8_t *report, size_t len);
//!
//! /* Parse a report. On success return 0 and set *out/*out_len to UTF-8 JSON
//!    findings in the form `caulk plugins call NAME parse` prints. On failure
//!    return nonzero and set *out/*out_len to a UTF-8 message. The buffer is
//!    allocated by the library and handed back to caulk_native_free. */
//! int32_t caulk_native_parse(const uint8_t *report, size_t len,
//!                            uint8_t **out, size_t *out_len);
//!
//! void caulk_native_free(uint8_t *ptr, size_t len);
//! ```
//!
//! Calls happen on one thread, one at a time.
// Loading and calling a shared library is unsafe by nature; this module is
// the one place caulk does it, behind an explicit opt-in.
#![allow(unsafe_code)]

use std::ffi::{CStr, c_char};
use std::path::{Path, PathBuf};

use libloading::{Library, Symbol};
use serde::Deserialize;

use crate::model::Findings;

/// The ABI version this host speaks.
pub const ABI_VERSION: u32 = 1;

type AbiVersionFn = unsafe extern "C" fn() -> u32;
type InfoFn = unsafe extern "C" fn() -> *const c_char;
type SniffFn = unsafe extern "C" fn(*const u8, usize) -> u8;
type ParseFn = unsafe extern "C" fn(*const u8, usize, *mut *mut u8, *mut usize) -> i32;
type FreeFn = unsafe extern "C" fn(*mut u8, usize);

/// What a native plugin says about itself.
#[derive(Debug, Clone, Deserialize, serde::Serialize)]
pub struct NativeInfo {
    pub name: String,
    pub version: String,
    #[serde(default)]
    pub summary: String,
    #[serde(default)]
    pub handles: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum NativeError {
    #[error("loading native plugin {}: {detail}", path.display())]
    Load { path: PathBuf, detail: String },
    #[error("native plugin {} speaks ABI version {found}; this caulk speaks {ABI_VERSION}", path.display())]
    Abi { path: PathBuf, found: u32 },
    #[error("native plugin {} describes itself with invalid JSON: {detail}", path.display())]
    Info { path: PathBuf, detail: String },
    #[error("native plugin {name} failed parse: {message}")]
    Parse { name: String, message: String },
}

/// A loaded native scanner.
pub struct NativeScanner {
    pub info: NativeInfo,
    pub path: PathBuf,
    sniff: SniffFn,
    parse: ParseFn,
    free: FreeFn,
    // Kept last and alive as long as the function pointers above.
    _library: Library,
}

impl std::fmt::Debug for NativeScanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeScanner")
            .field("info", &self.info)
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

fn symbol<T: Copy>(library: &Library, path: &Path, name: &str) -> Result<T, NativeError> {
    // SAFETY: the symbol's type is the documented ABI; a library exporting
    // the name with another signature breaks the contract it opted into.
    let sym: Symbol<'_, T> = unsafe { library.get(name.as_bytes()) }
        .map_err(|e| NativeError::Load { path: path.to_owned(), detail: format!("missing `{name}`: {e}") })?;
    Ok(*sym)
}

impl NativeScanner {
    /// Loads the library at `path` and checks its ABI version and info.
    pub fn load(path: &Path) -> Result<Self, NativeError> {
        // SAFETY: running the library's initialisers is what the user opted
        // into with --allow-native-plugins.
        let library = unsafe { Library::new(path) }
            .map_err(|e| NativeError::Load { path: path.to_owned(), detail: e.to_string() })?;
        let abi: AbiVersionFn = symbol(&library, path, "caulk_native_abi_version")?;
        // SAFETY: documented ABI function without arguments.
        let found = unsafe { abi() };
        if found != ABI_VERSION {
            return Err(NativeError::Abi { path: path.to_owned(), found });
        }
        let info_fn: InfoFn = symbol(&library, path, "caulk_native_info")?;
        // SAFETY: the ABI promises a static NUL-terminated string or null.
        let info_ptr = unsafe { info_fn() };
        if info_ptr.is_null() {
            return Err(NativeError::Info {
                path: path.to_owned(),
                detail: "caulk_native_info returned null".into(),
            });
        }
        // SAFETY: non-null, NUL-terminated and static per the ABI.
        let info_bytes = unsafe { CStr::from_ptr(info_ptr) }.to_bytes();
        let info: NativeInfo = serde_json::from_slice(info_bytes)
            .map_err(|e| NativeError::Info { path: path.to_owned(), detail: e.to_string() })?;
        Ok(Self {
            sniff: symbol(&library, path, "caulk_native_sniff")?,
            parse: symbol(&library, path, "caulk_native_parse")?,
            free: symbol(&library, path, "caulk_native_free")?,
            info,
            path: path.to_owned(),
            _library: library,
        })
    }

    pub fn sniff(&self, report: &[u8]) -> u8 {
        // SAFETY: pointer and length describe `report`, alive for the call.
        unsafe { (self.sniff)(report.as_ptr(), report.len()) }.min(100)
    }

    pub fn parse(&self, report: &[u8]) -> Result<Findings, NativeError> {
        let mut out: *mut u8 = std::ptr::null_mut();
        let mut out_len: usize = 0;
        // SAFETY: input pointer/length describe `report`; the out pointers
        // are valid for writes for the duration of the call.
        let status = unsafe { (self.parse)(report.as_ptr(), report.len(), &raw mut out, &raw mut out_len) };
        let bytes = if out.is_null() {
            Vec::new()
        } else {
            // SAFETY: the library set `out`/`out_len` to a buffer it owns
            // until we hand it back with `free` right after copying.
            let copy = unsafe { std::slice::from_raw_parts(out, out_len) }.to_vec();
            // SAFETY: the buffer the library allocated, returned once.
            unsafe { (self.free)(out, out_len) };
            copy
        };
        let name = self.info.name.clone();
        if status != 0 {
            let message = String::from_utf8_lossy(&bytes).into_owned();
            return Err(NativeError::Parse { name, message: format!("{message} (status {status})") });
        }
        serde_json::from_slice(&bytes)
            .map_err(|e| NativeError::Parse { name, message: format!("its findings JSON is invalid: {e}") })
    }
}

/// Whether `path` names a shared library.
pub fn is_native_library(path: &Path) -> bool {
    path.extension().is_some_and(|e| e == "so")
}
