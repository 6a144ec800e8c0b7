//! CAMARA Gherkin test definitions as data. For now this crate reads the official feature files
//! (tolerating their upstream quirks: CRLF line ends, a lowercase `and`, trailing `|`) and
//! lists their scenarios, so the gateway's own test suite can prove it covers each of them.
//! The runner that executes the files against any endpoint builds on this.

use std::path::Path;

/// One scenario of a feature file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scenario {
    /// Tags on the lines just above the scenario, without the `@`.
    pub tags: Vec<String>,
    /// The scenario's name.
    pub name: String,
    /// Step lines as written (keyword included), trailing `|` and spaces removed.
    pub steps: Vec<String>,
}

/// A parsed feature file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feature {
    /// The `Feature:` title.
    pub name: String,
    /// Background steps shared by every scenario.
    pub background: Vec<String>,
    /// Scenarios in file order.
    pub scenarios: Vec<Scenario>,
}

const STEP_KEYWORDS: [&str; 5] = ["Given ", "When ", "Then ", "And ", "But "];

/// Normalises one line: CR and trailing blanks and `|` removed, a lowercase leading keyword
/// capitalised (the official send-code file has `and the resource …`).
fn normalise(line: &str) -> String {
    let t = line.trim_end_matches(['\r', '\n']).trim();
    let t = t.trim_end_matches(|c: char| c == '|' || c.is_whitespace());
    let mut s = t.to_string();
    for kw in STEP_KEYWORDS {
        let lower = kw.to_lowercase();
        if s.starts_with(&lower) {
            s.replace_range(..kw.len(), kw);
        }
    }
    s
}

fn is_step(line: &str) -> bool {
    STEP_KEYWORDS.iter().any(|k| line.starts_with(k)) || line.starts_with("* ")
}

/// Parses the subset of Gherkin the CAMARA files use (no outlines, tables or doc strings).
pub fn parse(text: &str) -> Feature {
    let mut feature = Feature {
        name: String::new(),
        background: Vec::new(),
        scenarios: Vec::new(),
    };
    let mut pending_tags: Vec<String> = Vec::new();
    let mut in_background = false;
    for raw in text.lines() {
        let line = normalise(raw);
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some(rest) = line.strip_prefix("Feature:") {
            feature.name = rest.trim().to_string();
        } else if line.starts_with("Background:") {
            in_background = true;
        } else if line.starts_with('@') {
            pending_tags.extend(
                line.split_whitespace()
                    .filter_map(|t| t.strip_prefix('@'))
                    .map(str::to_string),
            );
        } else if let Some(rest) = line
            .strip_prefix("Scenario:")
            .or_else(|| line.strip_prefix("Scenario Outline:"))
        {
            in_background = false;
            feature.scenarios.push(Scenario {
                tags: std::mem::take(&mut pending_tags),
                name: rest.trim().to_string(),
                steps: Vec::new(),
            });
        } else if is_step(&line) {
            match (in_background, feature.scenarios.last_mut()) {
                (true, _) | (false, None) => feature.background.push(line),
                (false, Some(s)) => s.steps.push(line),
            }
        }
    }
    feature
}

/// Reads and parses a feature file.
pub fn load(path: &Path) -> std::io::Result<Feature> {
    Ok(parse(&std::fs::read_to_string(path)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_upstream_quirks() {
        let text = "Feature: F\r\n  Background:\r\n    Given an environment at \"apiRoot\"\r\n    and the resource \"/x\"      |\r\n\r\n  @tag_1 @tag_2\r\n  Scenario: One\r\n    Given a\r\n    When b\r\n    Then  c\r\n  # comment\r\n  @tag_3\r\n  Scenario: Two\r\n    And d\r\n";
        let f = parse(text);
        assert_eq!(f.name, "F");
        assert_eq!(
            f.background,
            vec![
                "Given an environment at \"apiRoot\"",
                "And the resource \"/x\""
            ]
        );
        assert_eq!(f.scenarios.len(), 2);
        assert_eq!(f.scenarios[0].tags, vec!["tag_1", "tag_2"]);
        assert_eq!(f.scenarios[0].steps, vec!["Given a", "When b", "Then  c"]);
        assert_eq!(f.scenarios[1].tags, vec!["tag_3"]);
        assert_eq!(f.scenarios[1].steps, vec!["And d"]);
    }
}
