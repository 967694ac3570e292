//! Plugins built against `caulk:plugin@0.1.0`, called with caulk's model
//! (the 0.2 records). 0.2 only added fields to 0.1's records (a command's
//! `cwd`, a probe request's `selected`, a published version's `deprecated`
//! and `engines`, an outcome's `verdicts`), so the two versions' generated
//! types have the same serde shape apart from those fields: a request goes
//! down by dropping what 0.1 does not know, and a result comes up with the
//! new fields empty. Going through serde keeps this one generic function
//! instead of a hand-written copy per record that must track every field.

use serde::Serialize;
use serde::de::DeserializeOwned;

/// `value` as the other version's type; fields the target lacks are
/// dropped, optional fields it adds are none.
pub(crate) fn convert<T: Serialize, U: DeserializeOwned>(value: &T) -> wasmtime::Result<U> {
    convert_with(value, |_| {})
}

/// Like [`convert`], with `fill` adding what the target requires and the
/// source never had (a list 0.1 records lack) before decoding.
pub(crate) fn convert_with<T: Serialize, U: DeserializeOwned>(
    value: &T,
    fill: impl FnOnce(&mut serde_json::Value),
) -> wasmtime::Result<U> {
    let mut json =
        serde_json::to_value(value).map_err(|e| wasmtime::format_err!("adapting a WIT 0.1 record: {e}"))?;
    fill(&mut json);
    serde_json::from_value(json).map_err(|e| wasmtime::format_err!("adapting a WIT 0.1 record: {e}"))
}

/// Gives each outcome of a 0.1 `verify` result (`{"Ok": [...]}`) the empty
/// verdict list 0.2 outcomes carry: a 0.1 plugin leaves the judgement to
/// the host's version rules.
pub(crate) fn add_empty_verdicts(result: &mut serde_json::Value) {
    if let Some(outcomes) = result.get_mut("Ok").and_then(serde_json::Value::as_array_mut) {
        for outcome in outcomes {
            if let Some(fields) = outcome.as_object_mut() {
                fields.entry("verdicts").or_insert_with(|| serde_json::Value::Array(Vec::new()));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Command, ExecContext, Outcome, OutcomeStatus};
    use crate::plugin::bindings::v0_1::updater::exports::caulk::plugin::updater as v0_1;

    #[test]
    fn a_command_loses_its_cwd_going_down_and_gets_none_coming_up() {
        let new = Command {
            argv: vec!["npm".into(), "ls".into()],
            cwd: Some("/app".into()),
            env: vec![("A".into(), "b".into())],
            context: ExecContext::Target,
            network: true,
        };
        let old: v0_1::Command = convert(&new).unwrap();
        assert_eq!(old.argv, new.argv);
        assert!(old.network);
        let back: Command = convert(&old).unwrap();
        assert_eq!(back, Command { cwd: None, ..new });
    }

    #[test]
    fn outcomes_of_a_0_1_plugin_come_up_with_no_verdicts() {
        let old: Result<Vec<v0_1::Outcome>, crate::plugin::bindings::v0_1::caulk::plugin::types::Error> =
            Ok(vec![v0_1::Outcome {
                ecosystem: "deb".into(),
                name: "zlib1g".into(),
                location: None,
                from: "1".into(),
                to: Some("2".into()),
                status: v0_1::OutcomeStatus::Patched,
                detail: String::new(),
                checks: Vec::new(),
            }]);
        let new: Result<Vec<Outcome>, crate::model::Error> = convert_with(&old, add_empty_verdicts).unwrap();
        let new = new.unwrap();
        assert_eq!(new[0].status, OutcomeStatus::Patched);
        assert_eq!(new[0].to.as_deref(), Some("2"));
        assert!(new[0].verdicts.is_empty());
        assert!(
            convert::<_, Result<Vec<Outcome>, crate::model::Error>>(&old).is_err(),
            "verdicts are required"
        );
    }
}
