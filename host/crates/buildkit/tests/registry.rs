//! BuildKit pulling the image itself from a registry (Debian's
//! docker-registry on 127.0.0.1, which dockerd treats as insecure).

mod common;
#[path = "../../image/tests/common/registry.rs"]
mod registry;

use std::sync::{Arc, Mutex};

use caulk_buildkit::{Client, ConnectOptions, Credentials, Error};
use common::{addr, client, push_debian, sh};
use registry::Registry;

#[test]
fn buildkit_pulls_a_registry_image_itself() {
    let registry = Registry::start();
    let image = push_debian(&registry.addr, None);
    // The test image's second layer writes /etc/hostname: reading it shows
    // that every layer came through.
    let out = client().probe(&image, &[], &sh("hostname", "cat /etc/hostname"), &mut |_| {}).unwrap();
    assert_eq!((out.stdout.as_slice(), out.exit_code), (&b"caulk-test\n"[..], 0), "{out:?}");
}

#[test]
fn credentials_reach_buildkit_through_a_session() {
    let registry = Registry::start_with(Some(("caulk", "s3cret")));
    let image = push_debian(&registry.addr, Some("caulk:s3cret"));
    let hostname = sh("hostname", "cat /etc/hostname");

    let err = client().probe(&image, &[], &hostname, &mut |_| {}).unwrap_err();
    assert!(matches!(err, Error::Solve { .. }), "anonymous pulls are refused: {err:?}");

    let asked = Arc::new(Mutex::new(Vec::new()));
    let (seen, host) = (asked.clone(), registry.addr.clone());
    let credentials = Credentials::new(move |asked_for| {
        seen.lock().unwrap().push(asked_for.to_owned());
        (asked_for == host).then(|| ("caulk".to_owned(), "s3cret".to_owned()))
    });
    let options = ConnectOptions { credentials: Some(credentials), ..ConnectOptions::default() };
    let client = Client::connect(&addr(), &options).unwrap();
    let out = client.probe(&image, &[], &hostname, &mut |_| {}).unwrap();
    assert_eq!((out.stdout.as_slice(), out.exit_code), (&b"caulk-test\n"[..], 0), "{out:?}");
    assert!(asked.lock().unwrap().contains(&registry.addr), "{asked:?}");
}
