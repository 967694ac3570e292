//! BuildKit pulling the image itself from a registry (Debian's
//! docker-registry on 127.0.0.1, which dockerd treats as insecure).

mod common;
#[path = "../../image/tests/common/registry.rs"]
mod registry;

use std::process::Command;

use common::{client, debian_layout, run, sh};
use registry::Registry;

#[test]
fn buildkit_pulls_a_registry_image_itself() {
    let registry = Registry::start();
    let image = format!("{}/caulk/bookworm:v1", registry.addr);
    run(Command::new("skopeo").args([
        "copy",
        "--quiet",
        "--dest-tls-verify=false",
        &format!("oci:{}:bookworm", debian_layout().display()),
        &format!("docker://{image}"),
    ]));
    // The test image's second layer writes /etc/hostname: reading it shows
    // that every layer came through.
    let out = client().probe(&image, &[], &sh("hostname", "cat /etc/hostname"), &mut |_| {}).unwrap();
    assert_eq!((out.stdout.as_slice(), out.exit_code), (&b"caulk-test\n"[..], 0), "{out:?}");
}
