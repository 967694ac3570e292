//! Docker v2 schema 2 documents rewritten with OCI media types, for
//! destinations that find nothing else: skopeo 1.9, podman and buildah look
//! up only OCI manifests in an OCI layout's index.json. As in skopeo, the
//! manifest (and an index over it) changes, and so its digest; config and
//! layer blobs keep their bytes and digests, only their descriptors' media
//! types change.

use std::collections::HashMap;

use serde_json::Value;

use crate::digest::Digest;
use crate::error::{Error, Result};
use crate::media::{self, Family};
use crate::transport::{BlobDesc, RawManifest};

/// Whether `media_type` is a Docker type an OCI-only destination cannot use.
pub(crate) fn needed(media_type: &str) -> bool {
    media::family(media_type) == Family::Docker
}

fn parse(origin: &str, raw: &RawManifest, what: &str) -> Result<serde_json::Map<String, Value>> {
    match serde_json::from_slice(&raw.bytes) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(Error::invalid(origin, format!("{what} {}", raw.digest), "it is not a JSON object")),
        Err(e) => Err(Error::invalid(origin, format!("{what} {}", raw.digest), e.to_string())),
    }
}

/// Sets a descriptor's `mediaType` to its OCI equivalent.
fn convert_descriptor(origin: &str, desc: &mut Value, what: &str) -> Result<()> {
    let current = desc.get("mediaType").and_then(Value::as_str).unwrap_or_default().to_owned();
    let oci = media::oci_equivalent(&current).ok_or_else(|| Error::UnsupportedMediaType {
        origin: origin.to_owned(),
        what: format!("{what} (converting to OCI media types)"),
        media_type: current.clone(),
    })?;
    if let Some(map) = desc.as_object_mut() {
        map.insert("mediaType".to_owned(), Value::String(oci.to_owned()));
    }
    Ok(())
}

/// An image manifest with OCI media types for itself, its config and its
/// layers; every other field as it was.
pub(crate) fn manifest_to_oci(origin: &str, raw: &RawManifest) -> Result<RawManifest> {
    let mut map = parse(origin, raw, "manifest")?;
    map.insert("mediaType".to_owned(), Value::String(media::OCI_MANIFEST.to_owned()));
    let config = map
        .get_mut("config")
        .ok_or_else(|| Error::invalid(origin, format!("manifest {}", raw.digest), "it has no config"))?;
    convert_descriptor(origin, config, "the config")?;
    if let Some(layers) = map.get_mut("layers").and_then(Value::as_array_mut) {
        for (i, layer) in layers.iter_mut().enumerate() {
            convert_descriptor(origin, layer, &format!("layer {}", i + 1))?;
        }
    }
    let bytes = serde_json::to_vec(&Value::Object(map)).expect("a JSON value serialises");
    Ok(RawManifest::new(bytes, media::OCI_MANIFEST))
}

/// An index whose entries point at the rewritten children in `replaced`
/// (keyed by the digest the entry had), with an OCI media type when
/// `to_oci`.
pub(crate) fn index_with(
    origin: &str,
    raw: &RawManifest,
    replaced: &HashMap<Digest, BlobDesc>,
    to_oci: bool,
) -> Result<RawManifest> {
    let mut map = parse(origin, raw, "index")?;
    let media_type = if to_oci { media::OCI_INDEX.to_owned() } else { raw.media_type.clone() };
    if to_oci || map.contains_key("mediaType") {
        map.insert("mediaType".to_owned(), Value::String(media_type.clone()));
    }
    let entries = map.get_mut("manifests").and_then(Value::as_array_mut).ok_or_else(|| {
        Error::invalid(origin, format!("index {}", raw.digest), "it has no manifests array")
    })?;
    for entry in entries.iter_mut().filter_map(Value::as_object_mut) {
        let Some(digest) = entry.get("digest").and_then(Value::as_str).and_then(|d| Digest::parse(d).ok())
        else {
            continue;
        };
        if let Some(new) = replaced.get(&digest) {
            entry.insert("mediaType".to_owned(), Value::String(new.media_type.clone()));
            entry.insert("digest".to_owned(), Value::String(new.digest.to_string()));
            entry.insert("size".to_owned(), Value::from(new.size));
        }
    }
    let bytes = serde_json::to_vec(&Value::Object(map)).expect("a JSON value serialises");
    Ok(RawManifest::new(bytes, media_type))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest(c: char) -> String {
        format!("sha256:{}", c.to_string().repeat(64))
    }

    #[test]
    fn a_docker_manifest_gets_oci_types_and_keeps_its_blobs() {
        let docker = serde_json::json!({
            "schemaVersion": 2,
            "mediaType": media::DOCKER_MANIFEST,
            "config": {"mediaType": media::DOCKER_CONFIG, "digest": digest('a'), "size": 10},
            "layers": [
                {"mediaType": media::DOCKER_LAYER_GZIP, "digest": digest('b'), "size": 20},
                {"mediaType": media::DOCKER_LAYER, "digest": digest('c'), "size": 30},
                {"mediaType": media::DOCKER_FOREIGN_LAYER, "digest": digest('d'), "size": 40,
                 "urls": ["https://example.com/layer"]},
            ]
        });
        let raw = RawManifest::new(serde_json::to_vec(&docker).unwrap(), media::DOCKER_MANIFEST);
        let oci = manifest_to_oci("test", &raw).unwrap();
        assert_eq!(oci.media_type, media::OCI_MANIFEST);
        assert_ne!(oci.digest, raw.digest);
        let value: Value = serde_json::from_slice(&oci.bytes).unwrap();
        assert_eq!(value["mediaType"], media::OCI_MANIFEST);
        assert_eq!(value["config"]["mediaType"], media::OCI_CONFIG);
        assert_eq!(value["config"]["digest"], digest('a'));
        let types: Vec<&str> =
            value["layers"].as_array().unwrap().iter().map(|l| l["mediaType"].as_str().unwrap()).collect();
        assert_eq!(types, [media::OCI_LAYER_GZIP, media::OCI_LAYER, media::OCI_LAYER_ND_GZIP]);
        assert_eq!(value["layers"][2]["urls"][0], "https://example.com/layer");
        assert_eq!(value["layers"][1]["size"], 30);
    }

    #[test]
    fn an_unknown_layer_type_is_named_not_guessed() {
        let docker = serde_json::json!({
            "schemaVersion": 2, "mediaType": media::DOCKER_MANIFEST,
            "config": {"mediaType": media::DOCKER_CONFIG, "digest": digest('a'), "size": 1},
            "layers": [{"mediaType": "application/x-mystery", "digest": digest('b'), "size": 1}]
        });
        let raw = RawManifest::new(serde_json::to_vec(&docker).unwrap(), media::DOCKER_MANIFEST);
        let err = manifest_to_oci("docker-archive:x.tar", &raw).unwrap_err().to_string();
        assert!(err.contains("application/x-mystery") && err.contains("layer 1"), "{err}");
    }

    #[test]
    fn an_index_points_at_the_converted_children() {
        let list = serde_json::json!({
            "schemaVersion": 2, "mediaType": media::DOCKER_LIST,
            "manifests": [
                {"mediaType": media::DOCKER_MANIFEST, "digest": digest('a'), "size": 5,
                 "platform": {"os": "linux", "architecture": "amd64"}},
                {"mediaType": media::DOCKER_MANIFEST, "digest": digest('b'), "size": 6,
                 "platform": {"os": "linux", "architecture": "arm64"}},
            ]
        });
        let raw = RawManifest::new(serde_json::to_vec(&list).unwrap(), media::DOCKER_LIST);
        let new = BlobDesc {
            media_type: media::OCI_MANIFEST.to_owned(),
            digest: Digest::parse(&digest('c')).unwrap(),
            size: 7,
        };
        let replaced = HashMap::from([(Digest::parse(&digest('a')).unwrap(), new)]);
        let index = index_with("test", &raw, &replaced, true).unwrap();
        assert_eq!(index.media_type, media::OCI_INDEX);
        let value: Value = serde_json::from_slice(&index.bytes).unwrap();
        assert_eq!(value["mediaType"], media::OCI_INDEX);
        assert_eq!(value["manifests"][0]["digest"], digest('c'));
        assert_eq!(value["manifests"][0]["size"], 7);
        assert_eq!(value["manifests"][0]["mediaType"], media::OCI_MANIFEST);
        assert_eq!(value["manifests"][0]["platform"]["architecture"], "amd64");
        assert_eq!(value["manifests"][1]["digest"], digest('b'), "an entry not replaced is kept");
    }
}
