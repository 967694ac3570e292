//! Any bytes as an image's `pip.conf` (and its first line as
//! `PIP_EXTRA_INDEX_URL`) through the pip plugin's index configuration, and
//! as one index URL through the parser the host and the plugin share.
//! Nothing may panic; every URL the configuration keeps must parse; a
//! refusal must say something; a parsed URL without its credentials must
//! parse again to itself, with none.
#![no_main]

use caulk_plugin_pip::config;
use caulk_sdk::index_url::{IndexUrl, redact};
use libfuzzer_sys::fuzz_target;

fn check(url: &IndexUrl) {
    assert!(!url.redacted().is_empty());
    let _ = url.credentials();
    let page = url.project_page("some_project.name");
    let before_query = page.split('?').next().unwrap_or_default();
    assert!(before_query.ends_with("/some_project.name/") && !page.contains('#'), "{page}");
    let again = IndexUrl::parse(url.as_str()).unwrap_or_else(|e| panic!("{}: {e}", url.as_str()));
    assert_eq!(again.as_str(), url.as_str());
    assert_eq!(again.credentials(), None);
}

fuzz_target!(|data: &[u8]| {
    let first_line = data.split(|b| *b == b'\n').next().unwrap_or_default();
    let env = vec![("PIP_EXTRA_INDEX_URL".to_owned(), String::from_utf8_lossy(first_line).into_owned())];
    let found = config::indexes(&[("/etc/pip.conf", data)], &env, &[]);
    for url in found.lookup_urls() {
        let parsed = IndexUrl::parse(&url).unwrap_or_else(|e| panic!("kept {url:?}, which is refused: {e}"));
        check(&parsed);
    }
    for (_, why) in &found.problems {
        assert!(!why.is_empty());
    }
    let _ = found.describe();
    let _ = found.pip_args();
    if let Ok(text) = std::str::from_utf8(data) {
        match IndexUrl::parse(text) {
            Ok(url) => check(&url),
            Err(e) => assert!(!e.to_string().is_empty()),
        }
        let _ = redact(text);
    }
});
