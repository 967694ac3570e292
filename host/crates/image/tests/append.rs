//! Appending a layer: original blobs stay byte-identical, config and
//! manifest carry the new layer, and a re-patch replaces the earlier layer.

mod common;

use std::collections::BTreeMap;
use std::fs;
use std::sync::Arc;

use caulk_image::append::{AppendSpec, EditedImage, HistoryEntry, append};
use caulk_image::layer::{RootFs, WriteOptions, write_layer};
use caulk_image::media::{self, Compression};
use caulk_image::{CopyOptions, Error, Image, ImageRef, Platform, TransportOptions};
use common::registry::Registry;
use common::{skopeo, skopeo_json, synthetic, tempdir};

const ORIGIN_LABEL: &str = "dev.caulk.image.original";

fn open(r: &str) -> Image {
    Image::open(&ImageRef::parse(r).unwrap(), &TransportOptions::default()).unwrap()
}

fn new_layer(
    dir: &std::path::Path,
    content: &str,
    compression: Compression,
) -> caulk_image::layer::WrittenLayer {
    let tree = dir.join(format!("tree-{content}"));
    fs::create_dir_all(tree.join("etc")).unwrap();
    fs::write(tree.join("etc/hostname"), format!("{content}\n")).unwrap();
    fs::write(tree.join("etc/caulk-patched"), content).unwrap();
    let opts = WriteOptions { compression, mtime_clamp: Some(0), ..WriteOptions::default() };
    write_layer(&tree, &dir.join(format!("layer-{content}")), &opts).unwrap()
}

fn spec(layer: caulk_image::layer::WrittenLayer, original: &str, drop_last: usize) -> AppendSpec {
    AppendSpec {
        drop_last,
        layer: Some(layer),
        history: HistoryEntry {
            created: Some("2026-01-01T00:00:00Z".to_owned()),
            created_by: Some("caulk patch".to_owned()),
            comment: Some("patched by caulk".to_owned()),
            author: None,
        },
        labels: BTreeMap::from([(ORIGIN_LABEL.to_owned(), original.to_owned())]),
        layer_annotations: BTreeMap::from([("dev.caulk.layer".to_owned(), "patch".to_owned())]),
    }
}

fn write(edited: &EditedImage, dst: &str) {
    edited
        .write(&ImageRef::parse(dst).unwrap(), &CopyOptions::default(), &TransportOptions::default())
        .unwrap();
}

#[test]
fn append_then_repatch_replaces_the_caulk_layer() {
    let tmp = tempdir();
    let src = format!("oci:{}:single", synthetic().display());
    let original = open(&src);
    let base = &original.images[0];
    let layer = new_layer(tmp.path(), "one", Compression::Gzip);
    let appended = append(base, &spec(layer.clone(), base.manifest.digest.as_str(), 0)).unwrap();
    let edited = EditedImage::new(&original, vec![appended]).unwrap();
    let out = format!("oci:{}/out:patched", tmp.path().display());
    write(&edited, &out);

    let patched = open(&out);
    let p = &patched.images[0];
    assert_eq!(p.layers.len(), base.layers.len() + 1);
    for (a, b) in base.layers.iter().zip(&p.layers) {
        assert_eq!(a.desc, b.desc, "original layer blobs are untouched");
    }
    let top = p.layers.last().unwrap();
    assert_eq!(
        (&top.desc.digest, &top.diff_id, top.desc.media_type.as_str()),
        (&layer.digest, &layer.diff_id, media::OCI_LAYER_GZIP)
    );
    assert_eq!(top.annotations["dev.caulk.layer"], "patch");
    assert_eq!(p.config.label(ORIGIN_LABEL), Some(base.manifest.digest.as_str()));
    assert_eq!(p.config.label("org.example.origin"), Some("synthetic"), "existing labels kept");
    assert_eq!(p.annotations()["org.example.note"], "amd64 manifest", "manifest annotations kept");
    let history = p.config.parsed.history().clone().unwrap();
    assert_eq!(history.len(), 4);
    assert_eq!(history[3].created_by().as_deref(), Some("caulk patch"));
    // Every key of the original config survives.
    let before: serde_json::Value = serde_json::from_slice(&base.config.bytes).unwrap();
    let after: serde_json::Value = serde_json::from_slice(&p.config.bytes).unwrap();
    for key in before.as_object().unwrap().keys() {
        assert!(after.get(key).is_some(), "config lost {key}");
    }

    // skopeo agrees.
    let theirs = skopeo_json(&["inspect", &out]);
    assert_eq!(theirs["Layers"].as_array().unwrap().len(), 4);
    assert_eq!(theirs["Labels"][ORIGIN_LABEL], base.manifest.digest.as_str());
    skopeo(&["copy", &out, &format!("oci:{}/sk", tmp.path().display())]);
    let view = RootFs::open(Arc::clone(patched.source()), p).unwrap();
    assert_eq!(view.read("/etc/caulk-patched").unwrap(), b"one");

    // Re-patch: the label says which layers are caulk's; drop them and add
    // the new one, so layers do not stack.
    let again = open(&out);
    let a = &again.images[0];
    let first = a.config.label(ORIGIN_LABEL).unwrap().to_owned();
    let layer2 = new_layer(tmp.path(), "two", Compression::Gzip);
    let appended = append(a, &spec(layer2.clone(), &first, 1)).unwrap();
    let edited = EditedImage::new(&again, vec![appended]).unwrap();
    let out2 = format!("oci:{}/out:repatched", tmp.path().display());
    write(&edited, &out2);
    let re = open(&out2);
    let r = &re.images[0];
    assert_eq!(r.layers.len(), base.layers.len() + 1);
    assert_eq!(r.layers.last().unwrap().diff_id, layer2.diff_id);
    assert_eq!(r.config.parsed.history().as_ref().unwrap().len(), 4);
    assert_eq!(r.config.label(ORIGIN_LABEL), Some(first.as_str()));
    assert_eq!(r.config.parsed.rootfs().diff_ids().len(), r.layers.len());
    let view = RootFs::open(Arc::clone(re.source()), r).unwrap();
    assert_eq!(view.read("/etc/caulk-patched").unwrap(), b"two");
    skopeo(&["inspect", &out2]);
}

#[test]
fn docker_images_get_docker_layer_types_and_refuse_zstd() {
    let tmp = tempdir();
    let src = format!("oci:{}:docker", synthetic().display());
    let original = open(&src);
    let base = &original.images[0];
    let gz = new_layer(tmp.path(), "gz", Compression::Gzip);
    let appended = append(base, &spec(gz, "x", 0)).unwrap();
    assert_eq!(appended.manifest.media_type, media::DOCKER_MANIFEST);
    let manifest: serde_json::Value = serde_json::from_slice(&appended.manifest.bytes).unwrap();
    assert_eq!(manifest["layers"][2]["mediaType"], media::DOCKER_LAYER_GZIP);
    assert_eq!(manifest["config"]["mediaType"], media::DOCKER_CONFIG);
    let edited = EditedImage::new(&original, vec![appended]).unwrap();
    let archive = format!("docker-archive:{}/patched.tar:caulk/patched:1", tmp.path().display());
    write(&edited, &archive);
    assert_eq!(skopeo_json(&["inspect", &archive])["Layers"].as_array().unwrap().len(), 3);

    let zst = new_layer(tmp.path(), "zst", Compression::Zstd);
    let err = append(base, &spec(zst, "x", 0)).unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
}

#[test]
fn patching_one_platform_of_an_index_keeps_the_others() {
    let tmp = tempdir();
    let registry = Registry::start();
    let src = format!("oci:{}:multi", synthetic().display());
    let original = open(&src);
    let amd = original.image_for(Some(&Platform::parse("linux/amd64").unwrap())).unwrap();
    let arm = original.image_for(Some(&Platform::parse("linux/arm64").unwrap())).unwrap();
    let layer = new_layer(tmp.path(), "multi", Compression::Zstd);
    let appended = append(amd, &spec(layer, original.top.digest.as_str(), 0)).unwrap();
    let new_amd = appended.manifest.digest.clone();
    let edited = EditedImage::new(&original, vec![appended]).unwrap();

    for dst in [
        format!("oci-archive:{}/multi.tar:patched", tmp.path().display()),
        format!("docker://{}/caulk/multi:patched", registry.addr),
    ] {
        write(&edited, &dst);
        let raw = skopeo(&["inspect", "--tls-verify=false", "--raw", &dst]).stdout;
        let index: serde_json::Value = serde_json::from_slice(&raw).unwrap();
        let entries = index["manifests"].as_array().unwrap();
        assert_eq!(entries[0]["digest"], new_amd.as_str());
        assert_eq!(entries[0]["platform"]["architecture"], "amd64");
        assert_eq!(entries[1]["digest"], arm.manifest.digest.as_str(), "arm64 untouched");
        assert_eq!(entries[1]["platform"]["variant"], "v8");
        assert_eq!(index["annotations"]["org.example.index"], "yes");
        skopeo(&[
            "copy",
            "--all",
            "--src-tls-verify=false",
            &dst,
            &format!("oci:{}/onward-{}", tmp.path().display(), dst.len()),
        ]);
        let back = open(&dst);
        assert_eq!(back.images[0].layers.len(), amd.layers.len() + 1);
    }
}
