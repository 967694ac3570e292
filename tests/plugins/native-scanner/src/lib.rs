//! A native scanner plugin for caulk's tests, speaking the C ABI documented in
//! caulk's `scan::dylib` module. It reads lines `VULN PACKAGE INSTALLED FIXED`
//! after a `# native-lines` header, and also claims `# caulk-csv v1` reports at
//! full confidence so tests can see two scanners tie.
// A C ABI needs `extern "C"` exports and raw pointers: this crate exists to
// exercise exactly that.
#![allow(unsafe_code)]

use std::ffi::c_char;

const INFO: &[u8] = b"{\"name\":\"native-lines\",\"version\":\"0.1.0\",\"summary\":\"test native scanner\",\"handles\":[\"native-lines\"]}\0";

#[unsafe(no_mangle)]
pub extern "C" fn caulk_native_abi_version() -> u32 {
    1
}

#[unsafe(no_mangle)]
pub extern "C" fn caulk_native_info() -> *const c_char {
    INFO.as_ptr().cast()
}

/// # Safety
/// `report` points to `len` readable bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn caulk_native_sniff(report: *const u8, len: usize) -> u8 {
    // SAFETY: guaranteed by the caller per the ABI.
    let bytes = unsafe { std::slice::from_raw_parts(report, len) };
    if bytes.starts_with(b"# native-lines") || bytes.starts_with(b"# caulk-csv v1") { 100 } else { 0 }
}

fn parse(text: &str) -> Result<String, String> {
    let mut lines = text.lines();
    if lines.next() != Some("# native-lines") {
        return Err("missing the `# native-lines` header".into());
    }
    let mut findings = Vec::new();
    for (n, line) in lines.enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [vuln, package, installed, fixed] = fields[..] else {
            return Err(format!("line {}: expected 4 fields", n + 2));
        };
        findings.push(serde_json::json!({
            "vulnerability": vuln, "package": package, "installed_version": installed,
            "fixed_versions": [fixed], "status": "Fixed", "ecosystem": "deb", "class": "Os",
            "location": null, "severity": "High", "purl": null, "source_package": null, "title": null,
        }));
    }
    Ok(serde_json::json!({
        "scanner": "native-lines", "artifact": null, "os": null, "platform": null, "findings": findings,
    })
    .to_string())
}

/// # Safety
/// `report` points to `len` readable bytes; `out` and `out_len` are writable.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn caulk_native_parse(
    report: *const u8,
    len: usize,
    out: *mut *mut u8,
    out_len: *mut usize,
) -> i32 {
    // SAFETY: guaranteed by the caller per the ABI.
    let bytes = unsafe { std::slice::from_raw_parts(report, len) };
    let (status, text) = match std::str::from_utf8(bytes).map_err(|e| e.to_string()).and_then(parse) {
        Ok(json) => (0, json),
        Err(message) => (1, message),
    };
    let mut buf = text.into_bytes().into_boxed_slice();
    // SAFETY: the caller gave writable pointers; ownership of `buf` passes to
    // the caller until `caulk_native_free`.
    unsafe {
        *out_len = buf.len();
        *out = buf.as_mut_ptr();
    }
    std::mem::forget(buf);
    status
}

/// # Safety
/// `ptr`/`len` come from `caulk_native_parse` and are freed once.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn caulk_native_free(ptr: *mut u8, len: usize) {
    // SAFETY: reconstructs the boxed slice leaked by `caulk_native_parse`.
    drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len)) });
}
