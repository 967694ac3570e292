//! `docker-container://NAME` through a real `docker exec -i` into a real
//! container. This machine has no BuildKit image, so the container is the
//! Debian test image with a Perl stand-in for `buildctl dial-stdio`
//! (tests/fixtures/dial-stdio.pl) that forwards to the test Engine's
//! BuildKit through its mounted socket.

mod common;

use std::path::Path;
use std::process::Command;

use caulk_buildkit::{Address, Client, ConnectOptions, Error, Step};
use common::{debian_image, docker_host, run};

struct Container {
    name: String,
}

impl Container {
    fn start() -> Self {
        let name = format!("caulk-buildkit-test-dialer-{}", std::process::id());
        let socket = docker_host().trim_start_matches("unix://").to_owned();
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/dial-stdio.pl");
        run(Command::new("/usr/bin/docker").args([
            "-H",
            &docker_host(),
            "run",
            "--detach",
            "--rm",
            "--network=none",
            "--name",
            &name,
            "--volume",
            &format!("{socket}:/run/docker.sock"),
            "--volume",
            &format!("{}:/usr/local/bin/buildctl:ro", script.display()),
            debian_image(),
            "sleep",
            "600",
        ]));
        Container { name }
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        let _ = Command::new("/usr/bin/docker")
            .args(["-H", &docker_host(), "rm", "--force", &self.name])
            .output();
    }
}

fn options() -> ConnectOptions {
    ConnectOptions { docker_host: Some(docker_host()), ..ConnectOptions::default() }
}

#[test]
fn a_container_is_reached_through_docker_exec() {
    let container = Container::start();
    let addr = Address::parse(&format!("docker-container://{}", container.name)).unwrap();
    let client = Client::connect(&addr, &options()).unwrap();
    let workers: Vec<String> = client.list_workers().unwrap().into_iter().map(|w| w.id).collect();
    assert_eq!(workers, ["moby"]);
    let echo = Step { args: vec!["echo".into(), "through docker exec".into()], ..Step::default() };
    let out = client.probe(debian_image(), &[], &echo, &mut |_| {}).unwrap();
    assert_eq!(out.stdout, b"through docker exec\n");
}

#[test]
fn a_missing_container_is_unreachable_by_name() {
    let addr = Address::parse("docker-container://caulk-buildkit-test-no-such-container").unwrap();
    let err = Client::connect(&addr, &options()).and_then(|c| c.list_workers()).unwrap_err();
    assert!(matches!(err, Error::Unreachable { .. }), "{err:?}");
    let text = err.to_string();
    assert!(text.contains("docker-container://caulk-buildkit-test-no-such-container"), "{text}");
    assert!(text.contains("No such container"), "docker's own words are kept: {text}");
}
