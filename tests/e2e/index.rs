//! Package-index look-ups against the real PyPI (through this machine's
//! intercepting proxy, trusting the host's CA bundle).

use caulk::index::IndexClient;
use caulk::model::{Answer, IndexQuery};

fn query(name: &str, urls: &[&str]) -> IndexQuery {
    IndexQuery {
        ecosystem: "python".into(),
        name: name.into(),
        index_urls: urls.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn pypi_lists_versions_with_requires_python_and_yanked() {
    let client = IndexClient::new(None);
    let Answer::Versions(versions) = client.lookup(&query("urllib3", &[])) else { panic!("no versions") };
    let v = |s: &str| versions.iter().find(|v| v.version == s).unwrap_or_else(|| panic!("{s} missing"));
    assert!(v("1.26.18").requires_python.as_deref().is_some_and(|r| r.contains("2.7")));
    assert!(v("2.0.0").requires_python.as_deref().is_some_and(|r| r.contains("3.7")));
    assert!(versions.len() > 100);
    // Names normalise: `Typing_Extensions` is `typing-extensions`.
    assert!(matches!(client.lookup(&query("Typing_Extensions", &[])), Answer::Versions(v) if !v.is_empty()));
}

/// A static PEP 503 index (HTML only, as a directory served over HTTP is),
/// served by Python's http.server on a free loopback port.
struct StaticIndex {
    child: std::process::Child,
    url: String,
    _dir: tempfile::TempDir,
}

impl Drop for StaticIndex {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn static_index(pages: &[(&str, &str)]) -> StaticIndex {
    let dir = tempfile::tempdir().unwrap();
    for (name, html) in pages {
        let page = dir.path().join("simple").join(name);
        std::fs::create_dir_all(&page).unwrap();
        std::fs::write(page.join("index.html"), html).unwrap();
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = std::process::Command::new("python3")
        .args(["-m", "http.server", "--bind", "127.0.0.1", &port.to_string()])
        .current_dir(dir.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("python3 -m http.server");
    for _ in 0..100 {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    StaticIndex { child, url: format!("http://127.0.0.1:{port}/simple"), _dir: dir }
}

#[test]
fn html_only_indexes_and_extra_indexes_merge() {
    let index = static_index(&[(
        "internal-lib",
        r#"<!DOCTYPE html><html><body>
        <a href="../../files/internal_lib-1.0.0-py3-none-any.whl#sha256=00" data-requires-python="&gt;=3.8">internal_lib-1.0.0-py3-none-any.whl</a>
        <a href="../../files/internal-lib-1.1.0.tar.gz#sha256=00" data-yanked="bad build">internal-lib-1.1.0.tar.gz</a>
        </body></html>"#,
    )]);
    let client = IndexClient::new(None);
    let Answer::Versions(versions) = client.lookup(&query("Internal_Lib", &[&index.url])) else { panic!() };
    assert_eq!(versions.len(), 2);
    assert_eq!(versions[0].version, "1.0.0");
    assert_eq!(versions[0].requires_python.as_deref(), Some(">=3.8"));
    assert!(versions[1].yanked);
    // PyPI first, the local index as an extra: what either publishes.
    let Answer::Versions(both) = client.lookup(&query("six", &["https://pypi.org/simple", &index.url]))
    else {
        panic!()
    };
    assert!(both.iter().any(|v| v.version == "1.16.0"));
}

#[test]
fn unknown_packages_and_indexes_are_unavailable_not_errors() {
    let client = IndexClient::new(None);
    let answer = client.lookup(&query("caulk-no-such-package-7f3a", &[]));
    assert!(matches!(&answer, Answer::Unavailable(why) if why.contains("not on this index")), "{answer:?}");
    let answer = client.lookup(&query("requests", &["http://127.0.0.1:9/simple"]));
    assert!(matches!(&answer, Answer::Unavailable(why) if why.contains("127.0.0.1:9")), "{answer:?}");
    // npm has a registry client now; an ecosystem without one is unavailable.
    let answer = client.lookup(&IndexQuery {
        ecosystem: "maven".into(),
        name: "log4j-core".into(),
        index_urls: vec![],
    });
    assert!(
        matches!(&answer, Answer::Unavailable(why) if why.contains("cannot look up maven")),
        "{answer:?}"
    );
}
