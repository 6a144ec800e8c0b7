//! `[features."FILE"]` of the environment file: how to run a feature file that is written as a
//! collection to adapt rather than a test plan (the Commonalities `C0x-*.feature` files). Such a
//! file has no Background ("other properties … set by default to a valid value. This can be
//! specified in the feature Background"), tags its scenarios `@{{feature_identifier}}_…`, and only
//! some of its scenarios apply to a given API. The environment says which, so the choice is
//! written down next to the system it was made for, not in the runner.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use crate::gherkin::{self, Feature, Step};

/// How to adapt one feature file (matched by its file name).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FeaturePlan {
    /// Values of the `{{name}}` placeholders in the file's tags.
    #[serde(default)]
    pub placeholders: BTreeMap<String, String>,
    /// Background steps run before each scenario, one step a line with its keyword.
    #[serde(default)]
    pub background: Vec<String>,
    /// Tags (placeholders filled, `@` optional) of the scenarios that apply; the others are
    /// not run. Empty: all apply.
    #[serde(default)]
    pub scenarios: Vec<String>,
}

impl FeaturePlan {
    /// Applies the plan: fills tag placeholders, prepends the Background, keeps the scenarios
    /// that apply. `origin` names the environment file in step locations.
    pub fn apply(&self, feature: &mut Feature, origin: &str) -> Result<(), String> {
        feature.fill_tag_placeholders(&self.placeholders);
        if !self.background.is_empty() {
            let text = format!(
                "Feature: background of {origin}\n  Background:\n{}\n",
                self.background
                    .iter()
                    .map(|l| format!("    {}", l.trim()))
                    .collect::<Vec<_>>()
                    .join("\n")
            );
            let parsed = gherkin::parse_named(&text, origin).map_err(|e| e.to_string())?;
            let steps: Vec<Step> = parsed
                .background
                .into_iter()
                .enumerate()
                .map(|(i, mut s)| {
                    s.origin = Some(format!(
                        "{origin}: features.\"{}\".background[{i}]",
                        file_name(&feature.file)
                    ));
                    s
                })
                .collect();
            feature.prepend_background(&steps);
        }
        if !self.scenarios.is_empty() {
            let wanted: Vec<&str> = self
                .scenarios
                .iter()
                .map(|t| t.trim_start_matches('@'))
                .collect();
            feature
                .scenarios
                .retain(|s| s.tags.iter().any(|t| wanted.contains(&t.as_str())));
        }
        Ok(())
    }
}

/// The file-name part of a feature's path, the key of `[features]`.
pub fn file_name(file: &str) -> String {
    Path::new(file)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| file.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn a_plan_fills_placeholders_adds_the_background_and_keeps_the_scenarios_that_apply() {
        let mut f = gherkin::parse_named(
            "Feature: C\n  @{{id}}_C02.01_a\n  Scenario: A\n    Given a\n  @{{id}}_C02.02_b\n  Scenario: B\n    Given b\n",
            "dir/C02.feature",
        )
        .unwrap();
        let plan: FeaturePlan = toml::from_str(
            "placeholders = { id = \"otp\" }\nbackground = ['Given the resource \"/x\"', 'And the header \"h\" is set to \"v\"']\nscenarios = [\"@otp_C02.01_a\"]\n",
        )
        .unwrap();
        plan.apply(&mut f, "env.toml").unwrap();
        assert_eq!(f.scenarios.len(), 1);
        assert_eq!(f.scenarios[0].tags, vec!["otp_C02.01_a"]);
        let bg: Vec<String> = f.scenarios[0]
            .background
            .iter()
            .map(Step::as_written)
            .collect();
        assert_eq!(
            bg,
            vec![
                "Given the resource \"/x\"",
                "And the header \"h\" is set to \"v\""
            ]
        );
        assert_eq!(
            f.location(&f.scenarios[0].background[1]),
            "env.toml: features.\"C02.feature\".background[1]"
        );
        assert_eq!(f.location(&f.scenarios[0].steps[0]), "dir/C02.feature:4");
    }
}
