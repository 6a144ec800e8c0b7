//! CAMARA Gherkin test definitions as data. Files are parsed by the `gherkin` crate (the parser
//! of cucumber-rs), so every Gherkin construct works: `Rule`, `Scenario Outline` with
//! `Examples`, data tables, doc strings. Before parsing, a pre-pass repairs the upstream quirks of
//! the official CAMARA files that a strict parser refuses; it keeps every line where it was, so
//! reported line numbers are those of the file as published.
//!
//! Outlines are expanded here: the runner only ever sees concrete scenarios, each carrying the
//! Background steps (of the feature, then of its rule) it runs first.

use std::path::Path;

/// One step, with where it was written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    /// `Given`, `When`, `Then`, `And`, `But` or `*`.
    pub keyword: String,
    /// The sentence after the keyword (outline parameters substituted).
    pub text: String,
    /// 1-based line in the file.
    pub line: usize,
    /// A data table under the step, rows of cells.
    pub table: Option<Vec<Vec<String>>>,
    /// A doc string under the step.
    pub docstring: Option<String>,
    /// Where the step comes from when not from the feature file itself (a Background the
    /// environment file supplies).
    pub origin: Option<String>,
}

impl Step {
    /// The step as written: keyword and sentence.
    pub fn as_written(&self) -> String {
        format!("{} {}", self.keyword, self.text)
    }
}

/// One concrete scenario of a feature file (an outline gives one per Examples row).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scenario {
    /// Tags of the feature, rule, scenario and Examples block, without the `@`.
    pub tags: Vec<String>,
    /// The scenario's name (outline parameters substituted).
    pub name: String,
    /// 1-based line of the `Scenario:` keyword, or of the Examples row.
    pub line: usize,
    /// The `Rule:` it belongs to, if any.
    pub rule: Option<String>,
    /// Background steps run before `steps`: the feature's, then the rule's.
    pub background: Vec<Step>,
    /// The scenario's own steps.
    pub steps: Vec<Step>,
}

impl Scenario {
    /// Background then own steps, in run order.
    pub fn all_steps(&self) -> impl Iterator<Item = &Step> {
        self.background.iter().chain(&self.steps)
    }
}

/// A parsed feature file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Feature {
    /// The file as given (for `file:line` in reports), or `<text>` when parsed from a string.
    pub file: String,
    /// The `Feature:` title.
    pub name: String,
    /// The feature-level Background steps.
    pub background: Vec<Step>,
    /// Scenarios in file order, outlines expanded.
    pub scenarios: Vec<Scenario>,
}

impl Feature {
    /// `file:line` of a step of this feature.
    pub fn location(&self, step: &Step) -> String {
        match &step.origin {
            Some(o) => o.clone(),
            None => format!("{}:{}", self.file, step.line),
        }
    }

    /// Replaces `{{name}}` in tags by the given values (the Commonalities files tag their
    /// scenarios `@{{feature_identifier}}_C02.01_…`, a placeholder the test plan fills in).
    pub fn fill_tag_placeholders<'a>(
        &mut self,
        values: impl IntoIterator<Item = (&'a String, &'a String)> + Clone,
    ) {
        for s in &mut self.scenarios {
            for t in &mut s.tags {
                for (k, v) in values.clone() {
                    *t = t.replace(&format!("{{{{{k}}}}}"), v);
                }
            }
        }
    }

    /// Puts steps (e.g. a Background the environment file supplies) before every scenario's
    /// own Background.
    pub fn prepend_background(&mut self, steps: &[Step]) {
        for s in &mut self.scenarios {
            let mut bg = steps.to_vec();
            bg.append(&mut s.background);
            s.background = bg;
        }
        let mut bg = steps.to_vec();
        bg.append(&mut self.background);
        self.background = bg;
    }
}

const KEYWORDS: [&str; 5] = ["Given", "When", "Then", "And", "But"];

/// The upstream quirks, repaired line by line (the line count never changes):
/// - CR line ends (all official files are CRLF);
/// - a step keyword in lowercase (`and the resource …` in the v1.1.0 send-code file), repaired
///   only where a step can stand (after a scenario or Background header, a step, a table row or
///   a doc string), so free text in a description is left alone;
/// - a stray `|` and blanks after a step (`And the resource "/…"      |`), which would otherwise
///   become part of the sentence. Table rows and doc string contents are left alone.
pub fn normalise_quirks(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut in_docstring: Option<&str> = None;
    let mut step_may_follow = false;
    for raw in text.split('\n') {
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let indent_len = line.len() - line.trim_start().len();
        let (indent, body) = line.split_at(indent_len);
        let mut body = body.to_string();
        if let Some(fence) = in_docstring {
            if body.starts_with(fence) {
                in_docstring = None;
            }
        } else if body.starts_with("\"\"\"") || body.starts_with("```") {
            in_docstring = Some(if body.starts_with("```") {
                "```"
            } else {
                "\"\"\""
            });
        } else if !(body.is_empty() || body.starts_with('#') || body.starts_with('|')) {
            if step_may_follow {
                for kw in KEYWORDS {
                    let lower = format!("{} ", kw.to_lowercase());
                    if body.starts_with(&lower) {
                        body.replace_range(..kw.len(), kw);
                    }
                }
            }
            let is_step = KEYWORDS
                .iter()
                .any(|kw| body.starts_with(&format!("{kw} ")))
                || body.starts_with("* ");
            if is_step {
                body = body
                    .trim_end_matches(|c: char| c == '|' || c.is_whitespace())
                    .to_string();
            }
            step_may_follow = is_step
                || [
                    "Background:",
                    "Scenario:",
                    "Scenario Outline:",
                    "Example:",
                    "Scenario Template:",
                ]
                .iter()
                .any(|h| body.starts_with(h));
        }
        out.push_str(indent);
        out.push_str(&body);
        out.push('\n');
    }
    // split('\n') yields one piece after a final newline: do not add a line for it.
    if text.ends_with('\n') {
        out.pop();
    }
    out
}

/// Why a file could not be read.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// Unreadable file.
    #[error("{file}: {source}")]
    Read {
        /// The file.
        file: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// Not Gherkin, even after the quirk pre-pass.
    #[error("{file}: not valid Gherkin: {message}")]
    Parse {
        /// The file.
        file: String,
        /// The parser's message (line and column, what it expected).
        message: String,
    },
}

/// Parses Gherkin text (after the quirk pre-pass); `file` names it in locations.
pub fn parse_named(text: &str, file: &str) -> Result<Feature, LoadError> {
    let fixed = normalise_quirks(text);
    let parsed = gherkin::Feature::parse(&fixed, gherkin::GherkinEnv::default()).map_err(|e| {
        LoadError::Parse {
            file: file.to_string(),
            message: e.to_string(),
        }
    })?;
    Ok(convert(parsed, file))
}

/// Parses Gherkin text given inline (tests, generated features).
pub fn parse(text: &str) -> Result<Feature, LoadError> {
    parse_named(text, "<text>")
}

/// Reads and parses a feature file.
pub fn load(path: &Path) -> Result<Feature, LoadError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| LoadError::Read {
        file: file.clone(),
        source,
    })?;
    parse_named(&text, &file)
}

fn step(s: &gherkin::Step, params: &[(String, String)]) -> Step {
    let fill = |t: &str| {
        params.iter().fold(t.to_string(), |acc, (k, v)| {
            acc.replace(&format!("<{k}>"), v)
        })
    };
    Step {
        keyword: s.keyword.trim().to_string(),
        text: fill(&s.value),
        line: s.position.line,
        table: s.table.as_ref().map(|t| {
            t.rows
                .iter()
                .map(|r| r.iter().map(|c| fill(c)).collect())
                .collect()
        }),
        docstring: s.docstring.as_deref().map(fill),
        origin: None,
    }
}

fn steps(list: &[gherkin::Step]) -> Vec<Step> {
    list.iter().map(|s| step(s, &[])).collect()
}

fn convert(f: gherkin::Feature, file: &str) -> Feature {
    let background = f
        .background
        .as_ref()
        .map(|b| steps(&b.steps))
        .unwrap_or_default();
    let mut scenarios = Vec::new();
    for s in &f.scenarios {
        expand(s, &f.tags, None, &background, &mut scenarios);
    }
    for r in &f.rules {
        let mut bg = background.clone();
        if let Some(b) = &r.background {
            bg.extend(steps(&b.steps));
        }
        let tags: Vec<String> = f.tags.iter().chain(&r.tags).cloned().collect();
        for s in &r.scenarios {
            expand(s, &tags, Some(&r.name), &bg, &mut scenarios);
        }
    }
    // Rules follow the feature's own scenarios in the crate's model; report in file order.
    scenarios.sort_by_key(|s| s.line);
    Feature {
        file: file.to_string(),
        name: f.name,
        background,
        scenarios,
    }
}

fn expand(
    s: &gherkin::Scenario,
    outer_tags: &[String],
    rule: Option<&str>,
    background: &[Step],
    out: &mut Vec<Scenario>,
) {
    let tags: Vec<String> = outer_tags.iter().chain(&s.tags).cloned().collect();
    if s.examples.is_empty() {
        out.push(Scenario {
            tags,
            name: s.name.clone(),
            line: s.position.line,
            rule: rule.map(str::to_string),
            background: background.to_vec(),
            steps: steps(&s.steps),
        });
        return;
    }
    let mut n = 0;
    for ex in &s.examples {
        let Some(table) = &ex.table else { continue };
        let Some((header, rows)) = table.rows.split_first() else {
            continue;
        };
        for (i, row) in rows.iter().enumerate() {
            n += 1;
            let params: Vec<(String, String)> =
                header.iter().cloned().zip(row.iter().cloned()).collect();
            let name = params.iter().fold(s.name.clone(), |acc, (k, v)| {
                acc.replace(&format!("<{k}>"), v)
            });
            // Rows the name does not tell apart are numbered.
            let name = if name == s.name {
                format!("{name} (example {n})")
            } else {
                name
            };
            out.push(Scenario {
                tags: tags.iter().chain(&ex.tags).cloned().collect(),
                name,
                line: table.position.line + 1 + i,
                rule: rule.map(str::to_string),
                background: background.to_vec(),
                steps: s.steps.iter().map(|st| step(st, &params)).collect(),
            });
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn texts(steps: &[Step]) -> Vec<String> {
        steps.iter().map(Step::as_written).collect()
    }

    #[test]
    fn the_pre_pass_repairs_the_upstream_quirks_and_keeps_line_numbers() {
        let text = "Feature: F\r\n  Background:\r\n    Given an environment at \"apiRoot\"\r\n    and the resource \"/x\"      |\r\n\r\n  @tag_1 @tag_2\r\n  Scenario: One\r\n    Given a\r\n    When b\r\n    Then  c\r\n      | keep | this |\r\n  # comment\r\n  @tag_3\r\n  Scenario: Two\r\n    And d\r\n";
        let fixed = normalise_quirks(text);
        assert_eq!(fixed.lines().count(), text.lines().count());
        assert!(fixed.contains("    And the resource \"/x\"\n"));
        assert!(fixed.contains("      | keep | this |\n"));
        assert!(!fixed.contains('\r'));
        // Free text and doc string contents keep their words and bars.
        let prose = "Feature: F\n  and this description starts in lowercase |\n  Scenario: S\n    Given x\n      \"\"\"\n      and a doc string line |\n      \"\"\"\n    and y |\n";
        let fixed = normalise_quirks(prose);
        assert!(fixed.contains("  and this description starts in lowercase |\n"));
        assert!(fixed.contains("      and a doc string line |\n"));
        assert!(fixed.ends_with("    And y\n"), "{fixed}");
        let f = parse(text).unwrap();
        assert_eq!(f.name, "F");
        assert_eq!(
            texts(&f.background),
            vec![
                "Given an environment at \"apiRoot\"",
                "And the resource \"/x\""
            ]
        );
        assert_eq!(f.background[1].line, 4);
        assert_eq!(f.scenarios.len(), 2);
        assert_eq!(f.scenarios[0].tags, vec!["tag_1", "tag_2"]);
        assert_eq!(
            texts(&f.scenarios[0].steps),
            vec!["Given a", "When b", "Then c"]
        );
        assert_eq!(
            f.scenarios[0].steps[2].table,
            Some(vec![vec!["keep".to_string(), "this".to_string()]])
        );
        assert_eq!(f.scenarios[1].tags, vec!["tag_3"]);
        assert_eq!(f.scenarios[1].steps[0].line, 15);
        assert_eq!(f.scenarios[1].background, f.background);
    }

    #[test]
    fn a_file_the_pre_pass_cannot_repair_is_refused_with_its_name() {
        let e = parse_named("Scenario without a feature\n  Given x\n", "bad.feature").unwrap_err();
        assert!(
            e.to_string().starts_with("bad.feature: not valid Gherkin"),
            "{e}"
        );
    }

    #[test]
    fn a_scenario_outline_gives_one_scenario_per_examples_row() {
        let f = parse(
            "Feature: F\n\n  @outline\n  Scenario Outline: status <status>\n    Given the header \"x\" is set to \"<value>\"\n    Then the response status code is <status>\n      \"\"\"\n      sent <value>\n      \"\"\"\n\n    Examples:\n      | value | status |\n      | a     | 200    |\n      | b     | 400    |\n\n    @more\n    Examples: more\n      | value | status |\n      | c     | 401    |\n",
        )
        .unwrap();
        assert_eq!(f.scenarios.len(), 3);
        assert_eq!(f.scenarios[0].name, "status 200");
        assert_eq!(
            f.scenarios[0].steps[1].docstring.as_deref().map(str::trim),
            Some("sent a")
        );
        assert_eq!(
            texts(&f.scenarios[1].steps),
            vec![
                "Given the header \"x\" is set to \"b\"",
                "Then the response status code is 400"
            ]
        );
        assert_eq!(f.scenarios[1].line, 14);
        assert_eq!(f.scenarios[2].tags, vec!["outline", "more"]);
        assert_eq!(f.scenarios[2].name, "status 401");
        assert_eq!(f.scenarios[2].line, 19);
    }

    #[test]
    fn a_rule_adds_its_background_and_tags_to_its_scenarios() {
        let f = parse(
            "@feat\nFeature: F\n  Background:\n    Given a\n\n  Scenario: outside\n    Then b\n\n  @r\n  Rule: the rule\n    Background:\n      Given c\n\n    Scenario: inside\n      Then d\n",
        )
        .unwrap();
        assert_eq!(f.scenarios.len(), 2);
        assert_eq!(f.scenarios[0].name, "outside");
        assert_eq!(texts(&f.scenarios[0].background), vec!["Given a"]);
        let inside = &f.scenarios[1];
        assert_eq!(inside.rule.as_deref(), Some("the rule"));
        assert_eq!(inside.tags, vec!["feat", "r"]);
        assert_eq!(texts(&inside.background), vec!["Given a", "Given c"]);
        assert_eq!(
            inside.all_steps().map(|s| s.line).collect::<Vec<_>>(),
            vec![4, 12, 15]
        );
    }

    #[test]
    fn data_tables_and_doc_strings_reach_the_step() {
        let f = parse(
            "Feature: F\n  Scenario: S\n    Given the request body is\n      \"\"\"\n      {\"a\": 1}\n      \"\"\"\n    And the headers\n      | name | value |\n      | x    | 1     |\n",
        )
        .unwrap();
        let s = &f.scenarios[0].steps;
        assert_eq!(s[0].docstring.as_deref().map(str::trim), Some("{\"a\": 1}"));
        assert_eq!(s[0].table, None);
        assert_eq!(
            s[1].table,
            Some(vec![
                vec!["name".to_string(), "value".to_string()],
                vec!["x".to_string(), "1".to_string()]
            ])
        );
        assert_eq!(f.location(&s[1]), "<text>:7");
    }

    #[test]
    fn tag_placeholders_are_filled_from_the_environment() {
        let mut f =
            parse("Feature: F\n  @{{feature_identifier}}_C02.01_x\n  Scenario: S\n    Given a\n")
                .unwrap();
        let k = "feature_identifier".to_string();
        let v = "otp_send_code".to_string();
        f.fill_tag_placeholders([(&k, &v)]);
        assert_eq!(f.scenarios[0].tags, vec!["otp_send_code_C02.01_x"]);
    }
}
