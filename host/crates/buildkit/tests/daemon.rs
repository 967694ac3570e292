//! caulk's BuildKit client against the BuildKit embedded in Debian's dockerd
//! (the v0.8 line), reached through the Engine's `/grpc` upgrade. The daemon
//! is started outside the tests by tests/scripts/dockerd.sh, which prints the
//! socket for CAULK_TEST_DOCKER_HOST; without it these tests fail, because
//! skipping would hide a client that was never exercised.

mod common;

use caulk_buildkit::pb::control::SolveRequest;
use caulk_buildkit::{
    Address, CaBundle, CacheMount, Client, ConnectOptions, Error, Event, Network, ProxyEnv, Sharing, Step,
    Stream,
};
use common::{BUNDLE, client, debian_image, export, sh};

#[test]
fn list_workers_answers_moby() {
    let workers = client().list_workers().unwrap();
    let ids: Vec<&str> = workers.iter().map(|w| w.id.as_str()).collect();
    assert_eq!(ids, ["moby"], "Docker's embedded BuildKit has one worker");
    assert!(!workers[0].platforms.is_empty(), "the worker names its platforms");
}

#[test]
fn info_is_negotiated_on_a_daemon_without_it() {
    // BuildKit v0.8 answers Unimplemented; that must read as "no version
    // known", not as a failure.
    let info = client().info().unwrap();
    assert_eq!(info, None, "Debian's dockerd 20.10 carries BuildKit v0.8, which has no Control.Info");
}

#[test]
fn a_probe_returns_its_output_and_exit_code() {
    let client = client();
    let image = debian_image();
    let mut events = Vec::new();
    let echo = Step {
        name: "echo".into(),
        args: vec!["echo".into(), "hello from bookworm".into()],
        ..Step::default()
    };
    let out = client.probe(image, &[], &echo, &mut |e| events.push(e)).unwrap();
    assert_eq!(
        (out.stdout.as_slice(), out.stderr.as_slice(), out.exit_code),
        (&b"hello from bookworm\n"[..], &b""[..], 0)
    );
    assert!(
        events.iter().any(|e| matches!(e, Event::Log { name, stream: Stream::Stdout, line, .. }
            if name == "echo" && line == "hello from bookworm")),
        "the log line arrives as an event: {events:?}"
    );
    assert!(
        events.iter().any(|e| matches!(e, Event::Completed { name, .. } if name == "echo")),
        "{events:?}"
    );

    // The same probe again runs again (BuildKit would answer it from cache
    // with no output at all), and a failing one is an answer.
    let again = client.probe(image, &[], &echo, &mut |_| {}).unwrap();
    assert_eq!(again.stdout, b"hello from bookworm\n");
    let failing = sh("fail", "cat /etc/debian_version; echo oops >&2; exit 3");
    let out = client.probe(image, &[], &failing, &mut |_| {}).unwrap();
    assert_eq!(out.exit_code, 3);
    assert!(out.stdout.starts_with(b"12."), "{:?}", String::from_utf8_lossy(&out.stdout));
    assert_eq!(out.stderr, b"oops\n");
}

#[test]
fn probes_run_together_and_answer_in_order() {
    let probes: Vec<Step> =
        (0..4).map(|i| sh(&format!("probe {i}"), &format!("echo {i}; exit {i}"))).collect();
    let mut names = Vec::new();
    let started = std::time::Instant::now();
    let outputs = client()
        .probe_all(debian_image(), &[], &probes, &mut |e| {
            if let Event::Completed { name, .. } | Event::Failed { name, .. } = e {
                names.push(name);
            }
        })
        .unwrap();
    eprintln!("4 probes at once: {:?}", started.elapsed());
    let answers: Vec<(String, i32)> =
        outputs.iter().map(|o| (String::from_utf8_lossy(&o.stdout).into_owned(), o.exit_code)).collect();
    assert_eq!(answers, [("0\n".into(), 0), ("1\n".into(), 1), ("2\n".into(), 2), ("3\n".into(), 3)]);
    names.sort();
    assert!(
        ["probe 0", "probe 1", "probe 2", "probe 3"].iter().all(|n| names.iter().any(|m| m == n)),
        "{names:?}"
    );
}

#[test]
fn a_probe_sees_the_steps_before_it() {
    let steps = [sh("mark", "echo marked > /root/mark")];
    let out = client().probe(debian_image(), &steps, &sh("read", "cat /root/mark"), &mut |_| {}).unwrap();
    assert_eq!((out.stdout.as_slice(), out.exit_code), (&b"marked\n"[..], 0));
}

#[test]
fn a_two_step_chain_comes_back_through_the_local_exporter() {
    let stamp = format!("{}", std::process::id());
    let steps = [
        sh("one", &format!("echo one-{stamp} > /root/one")),
        sh("two", &format!("echo two-{stamp} > /root/two && rm /etc/hostname")),
    ];
    let result = export(&client(), debian_image(), &steps, &["root/"]);
    assert_eq!(result.files["root/one"], format!("one-{stamp}\n").into_bytes());
    assert_eq!(result.files["root/two"], format!("two-{stamp}\n").into_bytes());
    assert!(!result.paths.iter().any(|p| p == "etc/hostname"), "the deletion is in the result");
    assert!(result.paths.iter().any(|p| p == "etc/os-release"), "the whole root fs comes back");
}

#[test]
fn the_ca_bundle_is_seen_by_the_step_but_not_kept() {
    let image = debian_image();
    let marker = format!("caulk test CA {}\n", std::process::id());
    let ca = Some(CaBundle { pem: marker.clone().into_bytes(), dest: BUNDLE.into() });
    let copy = Step { ca_bundle: ca.clone(), ..sh("copy the bundle", &format!("cp {BUNDLE} /root/seen-ca")) };

    let probe = Step { ca_bundle: ca, ..sh("read", &format!("cat {BUNDLE}")) };
    let out = client().probe(image, &[], &probe, &mut |_| {}).unwrap();
    assert_eq!(out.stdout, marker.as_bytes(), "the mounted bundle replaces the image's for the step");

    let bundle = BUNDLE.trim_start_matches('/');
    let result = export(&client(), image, &[copy], &["root/", bundle]);
    assert_eq!(result.files["root/seen-ca"], marker.as_bytes());
    assert_ne!(result.files[bundle], marker.as_bytes(), "the bundle is a mount, not part of the result");
}

#[test]
fn a_cache_mount_is_shared_by_steps_and_stays_out_of_the_result() {
    let stamp = format!("stamp-{}-{:?}", std::process::id(), std::time::SystemTime::now());
    let cache = |key: &str| CacheMount {
        key: format!("caulk-buildkit-test-{key}-{}", std::process::id()),
        dest: "/var/cache/caulk-test".into(),
        sharing: Sharing::Locked,
        readonly: false,
    };
    let fill = Step {
        caches: vec![cache("a")],
        ..sh("fill", &format!("echo '{stamp}' > /var/cache/caulk-test/stamp"))
    };
    let read = |key: &str| Step {
        caches: vec![cache(key)],
        ..sh(
            "read",
            &format!("cat /var/cache/caulk-test/stamp > /root/seen-{key} 2>&1; echo $? >> /root/seen-{key}"),
        )
    };
    let result = export(&client(), debian_image(), &[fill, read("a"), read("b")], &["root/"]);
    assert!(result.paths.iter().all(|p| !p.starts_with("var/cache/caulk-test/")), "{:?}", result.paths);
    let seen = |key: &str| String::from_utf8_lossy(&result.files[&format!("root/seen-{key}")]).into_owned();
    assert_eq!(seen("a"), format!("{stamp}\n0\n"), "a later step with the same key sees the cache");
    assert!(seen("b").ends_with("\n1\n"), "another key is another cache: {:?}", seen("b"));
}

#[test]
fn only_host_network_steps_reach_the_network() {
    let client = client();
    let image = debian_image();
    // Debian's mirror is reachable from this machine; a step without
    // network must not reach it, the same step with host network must. By
    // address, so the check is about the network and not only about DNS.
    let ip = std::net::ToSocketAddrs::to_socket_addrs("deb.debian.org:80")
        .unwrap()
        .find(std::net::SocketAddr::is_ipv4)
        .expect("deb.debian.org has an IPv4 address")
        .ip();
    let connect = format!("timeout 20 bash -c 'exec 3<>/dev/tcp/{ip}/80' && echo connected");
    let connect = connect.as_str();
    let offline = client.probe(image, &[], &sh("offline", connect), &mut |_| {}).unwrap();
    assert_eq!(offline.exit_code, 1, "bash's own failure, not timeout's: {offline:?}");
    assert!(offline.stdout.is_empty());
    let stderr = String::from_utf8_lossy(&offline.stderr);
    assert!(stderr.contains("Network is unreachable"), "{stderr}");
    let online = Step { network: Network::Host, ..sh("online", connect) };
    let online = client.probe(image, &[], &online, &mut |_| {}).unwrap();
    assert_eq!((online.stdout.as_slice(), online.exit_code), (&b"connected\n"[..], 0), "{online:?}");
}

#[test]
fn an_unreachable_address_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    let missing = tmp.path().join("no.sock");
    for text in [
        format!("unix://{}", missing.display()),
        format!("docker-unix://{}", missing.display()),
        "tcp://127.0.0.1:1".to_owned(),
    ] {
        let err = Client::connect(&Address::parse(&text).unwrap(), &ConnectOptions::default()).unwrap_err();
        assert!(matches!(err, Error::Unreachable { .. }), "{text}: {err:?}");
        assert!(err.to_string().contains(&text), "{err}");
        assert!(err.hint().is_some());
    }
}

#[test]
fn a_refused_entitlement_is_named() {
    let mut graph = caulk_buildkit::llb::Graph::new();
    let image = graph.image(debian_image(), None);
    let request = SolveRequest {
        definition: Some(graph.definition(&image)),
        entitlements: vec!["security.insecure".into()],
        ..SolveRequest::default()
    };
    let err = client().solve(request, &mut |_| {}, &mut || None).unwrap_err();
    assert!(
        matches!(&err, Error::EntitlementRefused { entitlement, .. } if entitlement == "security.insecure"),
        "{err:?}"
    );
    assert!(err.to_string().contains("security.insecure") && err.hint().is_some(), "{err}");
}

#[test]
fn a_capability_the_daemon_lacks_is_named() {
    // Declaring a capability BuildKit added after v0.8 (exit codes other
    // than 0 counting as success) is how a newer feature would be asked for.
    let mut graph = caulk_buildkit::llb::Graph::new();
    let image = graph.image(debian_image(), None);
    let mut definition = graph.definition(&image);
    for meta in definition.metadata.values_mut() {
        meta.caps.insert("exec.validexitcode".into(), true);
    }
    let request = SolveRequest { definition: Some(definition), ..SolveRequest::default() };
    let err = client().solve(request, &mut |_| {}, &mut || None).unwrap_err();
    assert!(
        matches!(&err, Error::DaemonTooOld { feature, .. } if feature.contains("exec.validexitcode")),
        "{err:?}"
    );
    assert!(err.hint().is_some());
}

#[test]
fn proxy_variables_reach_the_step() {
    let proxy = ProxyEnv { http_proxy: "http://proxy.invalid:3128".into(), ..ProxyEnv::default() };
    let step = Step { proxy_env: Some(proxy), ..sh("env", "env | grep -i _proxy= | sort") };
    let out = client().probe(debian_image(), &[], &step, &mut |_| {}).unwrap();
    let env = String::from_utf8_lossy(&out.stdout);
    assert!(env.lines().any(|l| l.eq_ignore_ascii_case("http_proxy=http://proxy.invalid:3128")), "{env}");
}
