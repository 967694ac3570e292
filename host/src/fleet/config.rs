//! Copa's PatchConfig (`apiVersion: copa.sh/v1alpha1`, `kind: PatchConfig`)
//! read as Copa reads it, plus caulk's own `caulk.sh/v1alpha1`, which also
//! takes local transports (`oci:DIR`) as sources and a report per image.

use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Copa's apiVersion: a Copa user's file works unchanged.
pub const COPA_API: &str = "copa.sh/v1alpha1";
/// caulk's: Copa's fields plus `report` per image and local sources.
pub const CAULK_API: &str = "caulk.sh/v1alpha1";

/// Copa's default target tag.
pub const DEFAULT_TAG_TEMPLATE: &str = "{{ .SourceTag }}-patched";

/// Config files are written by people; anything near this size is a mistake.
const MAX_CONFIG_BYTES: u64 = 4 << 20;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading {}: {source}", path.display())]
    Read { path: PathBuf, source: std::io::Error },

    #[error("{}: {size} bytes is too large for a PatchConfig (the limit is {MAX_CONFIG_BYTES})", path.display())]
    TooLarge { path: PathBuf, size: u64 },

    #[error("{}: not a valid PatchConfig: {source}", path.display())]
    Yaml { path: PathBuf, source: serde_yaml::Error },

    #[error("{}: {reason}", path.display())]
    Invalid { path: PathBuf, reason: String },
}

/// The file as written.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawConfig {
    api_version: String,
    kind: String,
    #[serde(default)]
    target: RawTarget,
    #[serde(default)]
    images: Vec<RawImage>,
    // Copa fields for features caulk does not have: refused by name below
    // rather than as "unknown field".
    chisel_release: Option<serde_yaml::Value>,
    charts: Option<serde_yaml::Value>,
    chart_target: Option<serde_yaml::Value>,
    overrides: Option<serde_yaml::Value>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTarget {
    registry: Option<String>,
    tag: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawImage {
    name: String,
    image: String,
    tags: RawTags,
    #[serde(default)]
    platforms: Vec<String>,
    #[serde(default)]
    target: RawTarget,
    /// caulk.sh/v1alpha1 only: a report for each tag, `{{ .SourceTag }}`
    /// expanded, relative to the config file.
    report: Option<String>,
    chisel_release: Option<serde_yaml::Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawTags {
    strategy: String,
    pattern: Option<String>,
    /// Copa reads it as a Go int: 0 or less means no cap.
    #[serde(default)]
    max_tags: i64,
    #[serde(default)]
    list: Vec<String>,
    #[serde(default)]
    exclude: Vec<String>,
}

/// How the tags of an image are chosen.
#[derive(Debug, Clone)]
pub enum Strategy {
    /// Exactly these tags.
    List(Vec<String>),
    /// Registry tags matching the regex, highest version first, at most
    /// `max_tags` (0: no cap), none of `exclude`.
    Pattern { pattern: regex::Regex, max_tags: usize, exclude: Vec<String> },
    /// The highest version among the registry's tags.
    Latest { exclude: Vec<String> },
}

/// One `images` entry, checked.
#[derive(Debug, Clone)]
pub struct ImageSpec {
    pub name: String,
    /// The repository without a tag: `registry/repo` or `oci:DIR`.
    pub image: String,
    pub strategy: Strategy,
    pub platforms: Vec<String>,
    /// Where patched images go (a registry and namespace); `None`: beside
    /// the source.
    pub target_registry: Option<String>,
    pub tag_template: TagTemplate,
    pub report: Option<TagTemplate>,
}

/// A PatchConfig, checked.
#[derive(Debug, Clone)]
pub struct PatchConfig {
    pub api_version: String,
    pub images: Vec<ImageSpec>,
    /// The directory relative paths in the file are resolved against.
    pub base_dir: PathBuf,
}

/// Copa's target tag template. Copa runs Go's text/template over it with
/// `.SourceTag`; caulk accepts exactly that action (any spacing) and text,
/// and refuses other actions rather than guessing what they meant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TagTemplate(Vec<Piece>);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    SourceTag,
}

impl TagTemplate {
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_owned()));
            }
            let after = &rest[open + 2..];
            let close = after.find("}}").ok_or_else(|| format!("`{text}` has a `{{{{` without `}}}}`"))?;
            let action = after[..close].trim().trim_start_matches('-').trim_end_matches('-').trim();
            if action != ".SourceTag" {
                return Err(format!(
                    "`{text}`: the template action `{{{{{}}}}}` is not supported; only `{{{{ .SourceTag }}}}` is",
                    &after[..close]
                ));
            }
            pieces.push(Piece::SourceTag);
            rest = &after[close + 2..];
        }
        if rest.contains("}}") {
            return Err(format!("`{text}` has a `}}}}` without `{{{{`"));
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        Ok(Self(pieces))
    }

    pub fn render(&self, source_tag: &str) -> String {
        self.0
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.as_str(),
                Piece::SourceTag => source_tag,
            })
            .collect()
    }
}

/// Reads and checks `path`.
pub fn load(path: &Path) -> Result<PatchConfig, ConfigError> {
    let read = |source| ConfigError::Read { path: path.to_owned(), source };
    let size = std::fs::metadata(path).map_err(read)?.len();
    if size > MAX_CONFIG_BYTES {
        return Err(ConfigError::TooLarge { path: path.to_owned(), size });
    }
    let text = std::fs::read_to_string(path).map_err(read)?;
    let base_dir = path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_owned();
    parse(&text, base_dir).map_err(|e| match e {
        Parse::Yaml(source) => ConfigError::Yaml { path: path.to_owned(), source },
        Parse::Invalid(reason) => ConfigError::Invalid { path: path.to_owned(), reason },
    })
}

#[derive(Debug)]
pub enum Parse {
    Yaml(serde_yaml::Error),
    Invalid(String),
}

/// Checks a config's text; `base_dir` resolves relative paths.
pub fn parse(text: &str, base_dir: PathBuf) -> Result<PatchConfig, Parse> {
    let raw = read_yaml(text).map_err(Parse::Yaml)?;
    let invalid = |reason: String| Parse::Invalid(reason);
    if raw.api_version != COPA_API && raw.api_version != CAULK_API {
        return Err(invalid(format!(
            "apiVersion `{}` is not supported (use {COPA_API} or {CAULK_API})",
            raw.api_version
        )));
    }
    if raw.kind != "PatchConfig" {
        return Err(invalid(format!("kind `{}` is not PatchConfig", raw.kind)));
    }
    for (field, value) in [
        ("chiselRelease", &raw.chisel_release),
        ("charts", &raw.charts),
        ("chartTarget", &raw.chart_target),
        ("overrides", &raw.overrides),
    ] {
        if value.is_some() {
            return Err(invalid(format!(
                "`{field}` (Copa's Chisel and Helm chart patching) is not supported by caulk"
            )));
        }
    }
    if raw.images.is_empty() {
        return Err(invalid("`images` lists no images".to_owned()));
    }
    let caulk_api = raw.api_version == CAULK_API;
    let mut images = Vec::with_capacity(raw.images.len());
    // Copa takes an empty string for "not set", so an image's `registry: ""`
    // falls back to the config's, as in Copa.
    let set = |value: Option<String>| value.filter(|v| !v.is_empty());
    let (default_registry, default_tag) = (set(raw.target.registry), set(raw.target.tag));
    // Names label the summary's rows; Copa lets two entries share one, and
    // jobs that would write the same tags are held back by what they write.
    for image in raw.images {
        let at = |reason: String| invalid(format!("images[{}]: {reason}", image.name));
        if image.name.trim().is_empty() {
            return Err(invalid(format!("an image of `{}` has no name", image.image)));
        }
        if image.chisel_release.is_some() {
            return Err(at("`chiselRelease` (Copa's Chisel patching) is not supported by caulk".to_owned()));
        }
        let local = ["oci:", "oci-archive:", "docker-archive:", "docker-daemon:"]
            .iter()
            .any(|t| image.image.starts_with(t));
        if local && !caulk_api {
            return Err(at(format!(
                "`{}` is a local transport; {COPA_API} takes registry repositories only (use apiVersion {CAULK_API})",
                image.image
            )));
        }
        if local && !image.image.starts_with("oci:") {
            return Err(at(format!("`{}`: of the local transports only oci:DIR lists tags", image.image)));
        }
        if image.report.is_some() && !caulk_api {
            return Err(at(format!("`report` needs apiVersion {CAULK_API}")));
        }
        let repository = repository_of(&image.image, &base_dir).map_err(at)?;
        let strategy = strategy(image.tags).map_err(at)?;
        let tag_text = set(image.target.tag).or_else(|| default_tag.clone());
        let tag_template =
            TagTemplate::parse(tag_text.as_deref().unwrap_or(DEFAULT_TAG_TEMPLATE)).map_err(at)?;
        let report = image.report.as_deref().map(TagTemplate::parse).transpose().map_err(at)?;
        for platform in &image.platforms {
            caulk_image::Platform::parse(platform).map_err(|e| at(format!("platform `{platform}`: {e}")))?;
        }
        images.push(ImageSpec {
            name: image.name,
            image: repository,
            strategy,
            platforms: image.platforms,
            target_registry: set(image.target.registry).or_else(|| default_registry.clone()),
            tag_template,
            report,
        });
    }
    Ok(PatchConfig { api_version: raw.api_version, images, base_dir })
}

/// The file's fields. YAML merge keys (`<<: *defaults`), which Copa's YAML
/// library applies, are applied first; serde_yaml does not when it reads
/// straight into the fields, and would call `<<` an unknown field. A file
/// without them is read straight, so errors keep their line and column.
fn read_yaml(text: &str) -> Result<RawConfig, serde_yaml::Error> {
    let mut value: serde_yaml::Value = serde_yaml::from_str(text)?;
    if !has_merge_key(&value, 0) {
        return serde_yaml::from_str(text);
    }
    value.apply_merge()?;
    serde_yaml::from_value(value)
}

/// Whether a `<<` key appears anywhere (within a depth no PatchConfig
/// needs; deeper is left to serde_yaml, which then names the key).
fn has_merge_key(value: &serde_yaml::Value, depth: usize) -> bool {
    use serde_yaml::Value;
    if depth > 16 {
        return false;
    }
    match value {
        Value::Mapping(map) => {
            map.iter().any(|(k, v)| k.as_str() == Some("<<") || has_merge_key(v, depth + 1))
        }
        Value::Sequence(items) => items.iter().any(|v| has_merge_key(v, depth + 1)),
        Value::Tagged(tagged) => has_merge_key(&tagged.value, depth + 1),
        _ => false,
    }
}

/// The repository an `image` entry names, without a tag. A relative
/// `oci:` directory is taken from the config file's directory.
fn repository_of(image: &str, base_dir: &Path) -> Result<String, String> {
    if let Some(dir) = image.strip_prefix("oci:") {
        if dir.is_empty() || dir.contains(':') {
            return Err(format!(
                "`{image}`: name the layout directory only (oci:DIR); tags come from `tags`"
            ));
        }
        return Ok(format!("oci:{}", base_dir.join(dir).display()));
    }
    let reference = caulk_image::RegistryRef::parse(image).map_err(|e| format!("`{image}`: {e}"))?;
    if reference.digest().is_some() || image.rsplit('/').next().is_some_and(|last| last.contains(':')) {
        return Err(format!(
            "`{image}` names a tag or digest; give the repository and choose tags under `tags`"
        ));
    }
    Ok(format!("{}/{}", reference.registry(), reference.repository()))
}

fn strategy(raw: RawTags) -> Result<Strategy, String> {
    match raw.strategy.as_str() {
        "list" => {
            if raw.list.is_empty() {
                return Err("strategy `list` needs a non-empty `list` of tags".to_owned());
            }
            Ok(Strategy::List(raw.list))
        }
        "pattern" => {
            let text = raw.pattern.filter(|p| !p.is_empty()).ok_or("strategy `pattern` needs a `pattern`")?;
            let pattern = regex::Regex::new(&text)
                .map_err(|e| format!("`pattern` {text:?} is not a valid regex: {e}"))?;
            let max_tags = usize::try_from(raw.max_tags).unwrap_or(0);
            Ok(Strategy::Pattern { pattern, max_tags, exclude: raw.exclude })
        }
        "latest" => Ok(Strategy::Latest { exclude: raw.exclude }),
        other => Err(format!("unknown tag strategy `{other}` (use list, pattern or latest)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(text: &str) -> Result<PatchConfig, String> {
        parse(text, PathBuf::from("/configs")).map_err(|e| match e {
            Parse::Yaml(e) => e.to_string(),
            Parse::Invalid(reason) => reason,
        })
    }

    #[test]
    fn templates_take_source_tag_and_nothing_else() {
        let t = TagTemplate::parse("{{ .SourceTag }}-patched").unwrap();
        assert_eq!(t.render("1.25.3"), "1.25.3-patched");
        assert_eq!(TagTemplate::parse("x-{{.SourceTag}}-{{- .SourceTag -}}").unwrap().render("a"), "x-a-a");
        assert_eq!(TagTemplate::parse("fixed").unwrap().render("a"), "fixed");
        for bad in ["{{ .Tag }}", "{{ .SourceTag", "a}}b", "{{ printf \"%s\" .SourceTag }}"] {
            assert!(TagTemplate::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn copa_fields_for_missing_features_are_refused_by_name() {
        let text = "apiVersion: copa.sh/v1alpha1\nkind: PatchConfig\nchiselRelease: ubuntu-24.04\nimages:\n  - name: a\n    image: r.example/a\n    tags: {strategy: latest}\n";
        let err = parsed(text).unwrap_err();
        assert!(err.contains("chiselRelease") && err.contains("not supported"), "{err}");
    }

    #[test]
    fn local_sources_and_reports_need_caulks_api_version() {
        let copa = "apiVersion: copa.sh/v1alpha1\nkind: PatchConfig\nimages:\n  - name: a\n    image: oci:layouts/a\n    tags: {strategy: list, list: [v1]}\n";
        assert!(parsed(copa).unwrap_err().contains("caulk.sh/v1alpha1"));
        let caulk = copa.replace("copa.sh", "caulk.sh");
        let config = parsed(&caulk).unwrap();
        assert_eq!(config.images[0].image, "oci:/configs/layouts/a");
        let report = format!("{caulk}    report: reports/{{{{ .SourceTag }}}}.json\n");
        assert_eq!(
            parsed(&report).unwrap().images[0].report.as_ref().unwrap().render("v1"),
            "reports/v1.json"
        );
    }

    #[test]
    fn copa_files_read_as_copas_yaml_reads_them() {
        // Merge keys, an empty string for "not set", a negative maxTags
        // (no cap) and one name for two entries: all as Copa takes them.
        let text = "apiVersion: copa.sh/v1alpha1\nkind: PatchConfig\ntarget:\n  registry: ghcr.io/me\n  tag: '{{ .SourceTag }}-p'\nimages:\n  - &base\n    name: web\n    image: r.example/nginx\n    tags: {strategy: pattern, pattern: '^1\\.', maxTags: -1}\n    target: {registry: '', tag: ''}\n  - <<: *base\n    image: r.example/httpd\n";
        let config = parsed(text).unwrap();
        let [nginx, httpd] = &config.images[..] else { panic!("{:?}", config.images) };
        assert_eq!((nginx.name.as_str(), httpd.name.as_str()), ("web", "web"));
        assert_eq!(httpd.image, "r.example/httpd", "the entry's own key wins over the merged one");
        for spec in [nginx, httpd] {
            assert_eq!(spec.target_registry.as_deref(), Some("ghcr.io/me"));
            assert_eq!(spec.tag_template.render("1.2"), "1.2-p");
            assert!(matches!(spec.strategy, Strategy::Pattern { max_tags: 0, .. }), "{:?}", spec.strategy);
        }
        // Without merge keys, errors still say where.
        let unmerged = &text[..text.find("  - <<:").unwrap()];
        let bad = unmerged.replace("maxTags: -1", "maxTags: many");
        assert!(parsed(&bad).unwrap_err().contains("line"), "{}", parsed(&bad).unwrap_err());
    }

    #[test]
    fn mistakes_are_named() {
        let base =
            "apiVersion: copa.sh/v1alpha1\nkind: PatchConfig\nimages:\n  - name: a\n    image: r.example/a\n";
        for (tags, why) in [
            ("    tags: {strategy: list}\n", "non-empty `list`"),
            ("    tags: {strategy: pattern}\n", "needs a `pattern`"),
            ("    tags: {strategy: pattern, pattern: '('}\n", "not a valid regex"),
            ("    tags: {strategy: newest}\n", "unknown tag strategy `newest`"),
            ("    tags: {strategy: latest}\n    platforms: [linux]\n", "platform `linux`"),
            ("    tags: {strategy: latest, typo: 1}\n", "unknown field `typo`"),
        ] {
            let err = parsed(&format!("{base}{tags}")).unwrap_err();
            assert!(err.contains(why), "{tags}: {err}");
        }
        let tagged = base.replace("r.example/a", "r.example/a:1");
        assert!(
            parsed(&format!("{tagged}    tags: {{strategy: latest}}\n")).unwrap_err().contains("names a tag")
        );
        let wrong = "apiVersion: v1\nkind: PatchConfig\nimages: []\n";
        assert!(parsed(wrong).unwrap_err().contains("apiVersion `v1`"));
    }
}
