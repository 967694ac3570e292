//! Local transports: OCI layouts, OCI archives and Docker archives, each
//! read and written by caulk and checked with skopeo.

mod common;

use std::path::Path;

use caulk_image::media;
use caulk_image::{CopyOptions, Image, ImageRef, Platform, TransportOptions, copy};
use common::{skopeo, skopeo_json, synthetic, tempdir};

fn open(r: &str) -> Image {
    Image::open(&ImageRef::parse(r).unwrap(), &TransportOptions::default()).unwrap()
}

fn cp(src: &str, dst: &str) -> caulk_image::CopyReport {
    copy(
        &ImageRef::parse(src).unwrap(),
        &ImageRef::parse(dst).unwrap(),
        &CopyOptions::default(),
        &TransportOptions::default(),
    )
    .unwrap_or_else(|e| panic!("copy {src} -> {dst}: {e}"))
}

#[test]
fn reads_a_multi_platform_index_from_an_oci_layout() {
    let dir = synthetic().display().to_string();
    let image = open(&format!("oci:{dir}:multi"));
    assert_eq!(image.top.media_type, media::OCI_INDEX);
    assert_eq!(
        image.platforms(),
        vec![Platform::parse("linux/amd64").unwrap(), Platform::parse("linux/arm64/v8").unwrap()]
    );
    let amd = image.image_for(Some(&Platform::parse("linux/amd64").unwrap())).unwrap();
    let kinds: Vec<_> = amd.layers.iter().map(|l| l.desc.media_type.as_str()).collect();
    assert_eq!(kinds, [media::OCI_LAYER_GZIP, media::OCI_LAYER_ZSTD, media::OCI_LAYER]);
    assert_eq!(amd.annotations().get("org.example.note").map(String::as_str), Some("amd64 manifest"));
    assert_eq!(amd.config.label("org.example.origin"), Some("synthetic"));
    let index_annotations = image.index.as_ref().unwrap().annotations().clone().unwrap();
    assert_eq!(index_annotations["org.example.index"], "yes");

    // skopeo agrees on what the manifest digest and layers are.
    let theirs = skopeo_json(&["inspect", &format!("oci:{dir}:single")]);
    let single = open(&format!("oci:{dir}:single"));
    assert_eq!(theirs["Digest"], single.top.digest.to_string());
    let layers: Vec<String> = single.images[0].layers.iter().map(|l| l.desc.digest.to_string()).collect();
    assert_eq!(theirs["Layers"], serde_json::json!(layers));
}

fn cp_with(src: &str, dst: &str, options: &CopyOptions) -> caulk_image::CopyReport {
    copy(
        &ImageRef::parse(src).unwrap(),
        &ImageRef::parse(dst).unwrap(),
        options,
        &TransportOptions::default(),
    )
    .unwrap_or_else(|e| panic!("copy {src} -> {dst}: {e}"))
}

/// The descriptor index.json gives `name`.
fn index_entry(layout: &Path, name: &str) -> serde_json::Value {
    let index: serde_json::Value =
        serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["annotations"]["org.opencontainers.image.ref.name"] == name)
        .unwrap_or_else(|| panic!("no {name} in {index}"))
        .clone()
}

#[test]
fn docker_media_types_become_oci_ones_in_an_oci_layout_unless_digests_are_preserved() {
    let dir = synthetic().display().to_string();
    let image = open(&format!("oci:{dir}:docker"));
    assert_eq!(image.top.media_type, media::DOCKER_MANIFEST);
    assert_eq!(image.images[0].config.desc.media_type, media::DOCKER_CONFIG);
    let tmp = tempdir();

    // As skopeo does: OCI types, a new manifest digest, the same blobs.
    let out = format!("oci:{}/out:d", tmp.path().display());
    let report = cp(&format!("oci:{dir}:docker"), &out);
    assert!(report.converted_to_oci);
    let converted = open(&out);
    assert_eq!(converted.top.media_type, media::OCI_MANIFEST);
    assert_ne!(converted.top.digest, image.top.digest);
    assert_eq!(report.digest.as_ref(), Some(&converted.top.digest));
    let (before, after) = (&image.images[0], &converted.images[0]);
    assert_eq!(after.config.desc.media_type, media::OCI_CONFIG);
    assert_eq!(after.config.bytes, before.config.bytes, "the config keeps its bytes");
    let layers = |i: &caulk_image::PlatformImage| {
        i.layers.iter().map(|l| (l.desc.digest.clone(), l.desc.size)).collect::<Vec<_>>()
    };
    assert_eq!(layers(after), layers(before), "the layers keep their bytes");
    let types: Vec<&str> = after.layers.iter().map(|l| l.desc.media_type.as_str()).collect();
    assert_eq!(types, [media::OCI_LAYER_GZIP, media::OCI_LAYER]);
    assert_eq!(index_entry(&tmp.path().join("out"), "d")["mediaType"], media::OCI_MANIFEST);
    skopeo_agrees(&out, converted.top.digest.as_str(), tmp.path());

    // --preserve-digests keeps the manifest as it was.
    let kept = format!("oci:{}/kept:d", tmp.path().display());
    let options = CopyOptions { preserve_digests: true, ..CopyOptions::default() };
    let report = cp_with(&format!("oci:{dir}:docker"), &kept, &options);
    assert!(!report.converted_to_oci);
    assert_eq!(report.digest.as_ref(), Some(&image.top.digest));
    assert_eq!(open(&kept).top.bytes, image.top.bytes);
}

#[test]
fn a_docker_archive_copied_into_an_oci_layout_is_found_by_skopeo() {
    // The arm64 image: skopeo refuses zstd layers under Docker types.
    let tmp = tempdir();
    let archive = format!("docker-archive:{}/img.tar:example/app:1", tmp.path().display());
    skopeo(&["copy", "--override-arch", "arm64", &format!("oci:{}:multi", synthetic().display()), &archive]);
    let source = open(&archive);
    assert_eq!(source.top.media_type, media::DOCKER_MANIFEST);

    let out = format!("oci:{}/layout:app", tmp.path().display());
    let report = cp(&archive, &out);
    assert!(report.converted_to_oci);
    let inspected = skopeo_json(&["inspect", &out]);
    assert_eq!(inspected["Digest"], report.digest.as_ref().unwrap().to_string());
    let layers: Vec<String> = source.images[0].layers.iter().map(|l| l.desc.digest.to_string()).collect();
    assert_eq!(inspected["Layers"], serde_json::json!(layers), "layer bytes unchanged");
    skopeo_agrees(&out, report.digest.as_ref().unwrap().as_str(), tmp.path());
    let onward = format!("docker-archive:{}/onward.tar:example/app:2", tmp.path().display());
    skopeo(&["copy", &out, &onward]);
    assert_eq!(open(&onward).images[0].config.bytes, source.images[0].config.bytes);

    // --preserve-digests keeps the Docker type, as skopeo's flag does (the
    // manifest a docker-archive lacks is synthesised, by each tool its own way).
    let options = CopyOptions { preserve_digests: true, ..CopyOptions::default() };
    cp_with(&archive, &format!("oci:{}/kept:app", tmp.path().display()), &options);
    skopeo(&["copy", "--preserve-digests", &archive, &format!("oci:{}/theirs:app", tmp.path().display())]);
    let (ours, skopeos) =
        (index_entry(&tmp.path().join("kept"), "app"), index_entry(&tmp.path().join("theirs"), "app"));
    assert_eq!(ours["mediaType"], media::DOCKER_MANIFEST);
    assert_eq!(ours["mediaType"], skopeos["mediaType"]);

    // An OCI archive is an OCI layout too.
    let oci_archive = format!("oci-archive:{}/img-oci.tar:app", tmp.path().display());
    let report = cp(&archive, &oci_archive);
    assert!(report.converted_to_oci);
    skopeo(&["inspect", &oci_archive]);
}

#[test]
fn missing_names_and_ambiguity_are_reported() {
    let dir = synthetic().display().to_string();
    let err =
        Image::open(&ImageRef::parse(&format!("oci:{dir}:nope")).unwrap(), &TransportOptions::default())
            .unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("no image named \"nope\"") && msg.contains("multi, single, docker"), "{msg}");
    let err = Image::open(&ImageRef::parse(&format!("oci:{dir}")).unwrap(), &TransportOptions::default())
        .unwrap_err();
    assert!(err.to_string().contains("lists 3 images; name one"), "{err}");
}

/// Checks an output with skopeo: it can inspect it and copy it onwards,
/// and the manifest digest is what caulk reported.
fn skopeo_agrees(reference: &str, digest: &str, tmp: &Path) {
    let raw = skopeo(&["inspect", "--raw", reference]).stdout;
    assert_eq!(caulk_image::Digest::of(&raw).to_string(), digest, "{reference}");
    let onward = format!("oci:{}/onward", tmp.display());
    skopeo(&["copy", "--all", "--preserve-digests", reference, &onward]);
}

/// Every file under `path` has the mode a plain file created now gets
/// (0666 less the umask), not a temp file's 0600.
fn readable_by_all(path: &Path) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let umask = status.lines().find_map(|l| l.strip_prefix("Umask:")).expect("Umask in /proc/self/status");
    let expected = 0o666 & !u32::from_str_radix(umask.trim(), 8).unwrap();
    let files: Vec<std::path::PathBuf> = if path.is_dir() { walk(path) } else { vec![path.to_owned()] };
    assert!(!files.is_empty());
    for file in files {
        let mode = std::os::unix::fs::PermissionsExt::mode(&file.metadata().unwrap().permissions()) & 0o777;
        assert_eq!(mode, expected, "{} has mode {mode:o}", file.display());
    }
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() { files.extend(walk(&path)) } else { files.push(path) }
    }
    files
}

#[test]
fn oci_layout_round_trip_preserves_every_digest() {
    let tmp = tempdir();
    let src = format!("oci:{}:multi", synthetic().display());
    let dst = format!("oci:{}/copy:v1", tmp.path().display());
    let report = cp(&src, &dst);
    let original = open(&src);
    assert_eq!(report.digest.as_ref(), Some(&original.top.digest));
    assert_eq!(report.blobs_copied, original.blobs().len());
    let copied = open(&dst);
    assert_eq!(copied.top.bytes, original.top.bytes);
    for (a, b) in original.images.iter().zip(&copied.images) {
        assert_eq!(a.manifest, b.manifest);
        assert_eq!(a.config.bytes, b.config.bytes);
    }
    skopeo_agrees(&dst, original.top.digest.as_str(), tmp.path());
    readable_by_all(&tmp.path().join("copy"));

    // A second copy into the same layout transfers nothing and keeps the
    // other names in index.json.
    let again = cp(
        &format!("oci:{}:single", synthetic().display()),
        &format!("oci:{}/copy:v2", tmp.path().display()),
    );
    assert_eq!(again.blobs_copied, 0);
    assert_eq!(open(&dst).top.digest, original.top.digest);
}

#[test]
fn oci_archive_round_trip() {
    let tmp = tempdir();
    let src = format!("oci:{}:multi", synthetic().display());
    let archive = format!("oci-archive:{}/img.tar:multi", tmp.path().display());
    let report = cp(&src, &archive);
    skopeo_agrees(&archive, report.digest.as_ref().unwrap().as_str(), tmp.path());
    readable_by_all(&tmp.path().join("img.tar"));
    // caulk reads back what it wrote and what skopeo writes.
    let back = format!("oci:{}/back:x", tmp.path().display());
    assert_eq!(cp(&archive, &back).digest, report.digest);
    let theirs = format!("oci-archive:{}/skopeo.tar", tmp.path().display());
    skopeo(&["copy", "--all", "--preserve-digests", &src, &theirs]);
    assert_eq!(open(&theirs).top.digest, open(&src).top.digest);
}

#[test]
fn docker_archive_round_trip_takes_one_platform() {
    let tmp = tempdir();
    let src = format!("oci:{}:multi", synthetic().display());
    let archive = format!("docker-archive:{}/img.tar:example/app:1", tmp.path().display());
    let amd = open(&src).image_for(Some(&Platform::parse("linux/amd64").unwrap())).unwrap().clone();
    let report = cp(&src, &archive);
    assert_eq!(report.digest.as_ref(), Some(&amd.manifest.digest));
    // Read back: a synthesised manifest over the same layer blobs.
    let back = open(&archive);
    let back_layers: Vec<_> = back.images[0].layers.iter().map(|l| (&l.desc.digest, &l.diff_id)).collect();
    let orig_layers: Vec<_> = amd.layers.iter().map(|l| (&l.desc.digest, &l.diff_id)).collect();
    assert_eq!(back_layers, orig_layers);
    assert_eq!(back.images[0].config.bytes, amd.config.bytes);
    let listing = common::run(
        std::process::Command::new("tar").arg("-xOf").arg(tmp.path().join("img.tar")).arg("manifest.json"),
    );
    let listing: serde_json::Value = serde_json::from_slice(&listing.stdout).unwrap();
    assert_eq!(listing[0]["RepoTags"], serde_json::json!(["example/app:1"]));
    skopeo(&["inspect", &archive]);
    skopeo(&["copy", &archive, &format!("oci:{}/onward", tmp.path().display())]);

    // An archive skopeo wrote (it decompresses layers) reads back too.
    // skopeo refuses zstd layers under Docker types, hence the arm64 image.
    let theirs = format!("docker-archive:{}/skopeo.tar:other/app:2", tmp.path().display());
    skopeo(&["copy", "--override-arch", "arm64", &src, &theirs]);
    let arm = open(&src).image_for(Some(&Platform::parse("linux/arm64").unwrap())).unwrap().clone();
    let image = open(&theirs);
    let diff_ids: Vec<_> = image.images[0].layers.iter().map(|l| &l.diff_id).collect();
    assert_eq!(diff_ids, arm.layers.iter().map(|l| &l.diff_id).collect::<Vec<_>>());
    assert!(image.images[0].layers.iter().all(|l| l.compression == media::Compression::None));
    cp(&theirs, &format!("oci:{}/from-skopeo", tmp.path().display()));
}

#[test]
fn oci_archive_with_several_images_is_read_by_name() {
    let tmp = tempdir();
    let archive = tmp.path().join("all.tar");
    common::run(
        std::process::Command::new("tar").arg("-cf").arg(&archive).arg("-C").arg(synthetic()).arg("."),
    );
    for name in ["multi", "single", "docker"] {
        let from_archive = open(&format!("oci-archive:{}:{name}", archive.display()));
        let from_dir = open(&format!("oci:{}:{name}", synthetic().display()));
        assert_eq!(from_archive.top, from_dir.top, "{name}");
    }
    let err = Image::open(
        &ImageRef::parse(&format!("oci-archive:{}", archive.display())).unwrap(),
        &TransportOptions::default(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("name one"), "{err}");
}
