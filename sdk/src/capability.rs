//! What an updater may ask the host to do for it beyond reading the image's
//! files. A plugin from a plugin directory gets a capability only when it
//! declares it in its component and the user grants it
//! (`caulk plugins grant NAME CAPABILITY`); built-in plugins are trusted.
//!
//! Declare them where the plugin is exported:
//!
//! ```ignore
//! caulk_sdk::export_updater!(MyUpdater, capabilities = ["image-commands", "network"]);
//! ```
//!
//! The export macro records the list in the component's custom section
//! [`SECTION`], one capability per line; a name it does not know fails the
//! build. No WIT change is involved, so a plugin that declares nothing stays
//! loadable by every host.
//!
//! | capability | lets the plugin |
//! |---|---|
//! | `image-commands` | run commands in the image's own root fs (probes and plan steps), in the sandbox |
//! | `host-tooling` | run commands from a tooling root (the host's root fs or a tooling image, read-only) with the image mounted, in the sandbox |
//! | `network` | give such a command the host's network |
//! | `index:HOST` | have the host look packages up on the index at `HOST` (`index:*`: any host) |

/// The custom section that carries a component's declared capabilities.
pub const SECTION: &str = "caulk:capabilities";

/// Run commands in the image's root file system.
pub const IMAGE_COMMANDS: &str = "image-commands";
/// Run commands from the host's root file system with the image mounted.
pub const HOST_TOOLING: &str = "host-tooling";
/// Give a command the host's network.
pub const NETWORK: &str = "network";
/// Prefix of index look-up capabilities: `index:pypi.org`, `index:*`.
pub const INDEX_PREFIX: &str = "index:";

const fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// A host name as `index:HOST` spells it: lowercase letters, digits, `.`
/// and `-`, or a bracketed IPv6 address; `*` for any host.
const fn valid_host(host: &[u8]) -> bool {
    if same(host, b"*") {
        return true;
    }
    if host.is_empty() || host.len() > 253 {
        return false;
    }
    let bracketed = host[0] == b'[';
    if bracketed && host[host.len() - 1] != b']' {
        return false;
    }
    let mut i = 0;
    while i < host.len() {
        let c = host[i];
        let ok = if bracketed {
            c.is_ascii_hexdigit() || c == b':' || c == b'.' || c == b'[' || c == b']'
        } else {
            c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'.' || c == b'-'
        };
        if !ok {
            return false;
        }
        i += 1;
    }
    true
}

/// Whether `name` is a capability this SDK knows how to declare.
pub const fn is_capability(name: &str) -> bool {
    let name = name.as_bytes();
    if same(name, IMAGE_COMMANDS.as_bytes())
        || same(name, HOST_TOOLING.as_bytes())
        || same(name, NETWORK.as_bytes())
    {
        return true;
    }
    let prefix = INDEX_PREFIX.as_bytes();
    if name.len() <= prefix.len() {
        return false;
    }
    let (head, host) = name.split_at(prefix.len());
    same(head, prefix) && valid_host(host)
}

/// Checks a declaration (capabilities, each followed by `\n`) at compile
/// time, so a misspelt capability fails the plugin's build.
#[doc(hidden)]
pub const fn __validate(list: &str) {
    let bytes = list.as_bytes();
    let mut start = 0;
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\n' {
            let (_, rest) = bytes.split_at(start);
            let (line, _) = rest.split_at(i - start);
            // `from_utf8` of a slice of a `str` cut at ASCII newlines.
            let Ok(line) = core::str::from_utf8(line) else { panic!("capabilities must be UTF-8") };
            assert!(
                is_capability(line),
                "unknown capability: use image-commands, host-tooling, network or index:HOST"
            );
            start = i + 1;
        }
        i += 1;
    }
}

/// The bytes of `text` as an array, for the custom section's static.
#[doc(hidden)]
pub const fn __bytes<const N: usize>(text: &str) -> [u8; N] {
    let bytes = text.as_bytes();
    let mut out = [0u8; N];
    let mut i = 0;
    while i < N {
        out[i] = bytes[i];
        i += 1;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_capabilities() {
        for name in ["image-commands", "host-tooling", "network", "index:pypi.org", "index:*", "index:[::1]"]
        {
            assert!(is_capability(name), "{name}");
        }
        for name in ["", "files", "index:", "index:PyPI.org", "index:a/b", "network ", "index:[::1"] {
            assert!(!is_capability(name), "{name}");
        }
    }

    #[test]
    fn declarations_are_checked_line_by_line() {
        __validate("image-commands\nindex:pypi.org\n");
        assert!(std::panic::catch_unwind(|| __validate("image-commands\nfiles\n")).is_err());
    }
}
