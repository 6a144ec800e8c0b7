//! Reports: a readable console account per scenario, JUnit XML for CI systems, a JSON summary.

use std::fmt::Write as _;

use serde_json::json;

use crate::runner::{Outcome, ScenarioResult};

/// Totals.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Totals {
    /// Scenarios that passed.
    pub passed: usize,
    /// Scenarios that failed.
    pub failed: usize,
}

/// Counts outcomes.
pub fn totals(results: &[ScenarioResult]) -> Totals {
    let passed = results
        .iter()
        .filter(|r| r.outcome == Outcome::Passed)
        .count();
    Totals {
        passed,
        failed: results.len() - passed,
    }
}

/// The console text: one line per scenario, and for failures every step plus the exchanges.
pub fn console(results: &[ScenarioResult]) -> String {
    let mut out = String::new();
    for r in results {
        let tag = r.tags.first().map(|t| format!("@{t}")).unwrap_or_default();
        let mark = if r.outcome == Outcome::Passed {
            "PASS"
        } else {
            "FAIL"
        };
        let _ = writeln!(
            out,
            "{mark} {tag} {} ({:.2}s)",
            r.name,
            r.duration.as_secs_f64()
        );
        if r.outcome != Outcome::Passed {
            for s in &r.steps {
                let m = match s.outcome {
                    Outcome::Passed => "  ok ",
                    Outcome::Failed => "  ✗  ",
                    Outcome::Skipped => "  -  ",
                };
                let _ = writeln!(out, "{m}{}", s.text);
                if s.outcome == Outcome::Failed {
                    let _ = writeln!(out, "       at {}", s.location);
                }
                if let Some(e) = &s.error {
                    let _ = writeln!(out, "       {e}");
                }
            }
            for t in &r.transcript {
                for line in t.lines() {
                    let _ = writeln!(out, "     | {line}");
                }
            }
        }
    }
    let t = totals(results);
    let _ = writeln!(out, "\n{} passed, {} failed", t.passed, t.failed);
    out
}

fn xml_escape(s: &str) -> String {
    s.chars()
        .filter(|c| !c.is_control() || matches!(c, '\n' | '\t'))
        .map(|c| match c {
            '&' => "&amp;".to_string(),
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&apos;".to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// JUnit XML: one `testsuite` per feature, one `testcase` per scenario.
pub fn junit(results: &[ScenarioResult]) -> String {
    let mut features: Vec<&str> = Vec::new();
    for r in results {
        if !features.contains(&r.feature.as_str()) {
            features.push(&r.feature);
        }
    }
    let t = totals(results);
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"camara-conformance\" tests=\"{}\" failures=\"{}\">\n",
        results.len(),
        t.failed
    );
    for f in features {
        let mine: Vec<&ScenarioResult> = results.iter().filter(|r| r.feature == f).collect();
        let failures = mine.iter().filter(|r| r.outcome != Outcome::Passed).count();
        let time: f64 = mine.iter().map(|r| r.duration.as_secs_f64()).sum();
        let _ = writeln!(
            out,
            "  <testsuite name=\"{}\" tests=\"{}\" failures=\"{failures}\" time=\"{time:.3}\">",
            xml_escape(f),
            mine.len()
        );
        for r in mine {
            let name = match r.tags.first() {
                Some(t) => format!("@{t} {}", r.name),
                None => r.name.clone(),
            };
            let _ = write!(
                out,
                "    <testcase classname=\"{}\" name=\"{}\" time=\"{:.3}\"",
                xml_escape(f),
                xml_escape(&name),
                r.duration.as_secs_f64()
            );
            if r.outcome == Outcome::Passed {
                out.push_str("/>\n");
                continue;
            }
            let failed = r.steps.iter().find(|s| s.outcome == Outcome::Failed);
            let message = failed
                .map(|s| format!("{}: {}", s.text, s.error.clone().unwrap_or_default()))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                ">\n      <failure message=\"{}\">{}</failure>\n    </testcase>",
                xml_escape(&message),
                xml_escape(&r.transcript.join("\n"))
            );
        }
        out.push_str("  </testsuite>\n");
    }
    out.push_str("</testsuites>\n");
    out
}

/// A JSON summary with every scenario.
pub fn json_summary(results: &[ScenarioResult]) -> String {
    let t = totals(results);
    let v = json!({
        "total": results.len(),
        "passed": t.passed,
        "failed": t.failed,
        "scenarios": results,
    });
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::runner::StepResult;
    use std::time::Duration;

    fn result(outcome: Outcome) -> ScenarioResult {
        ScenarioResult {
            feature: "F <1>".into(),
            name: "S & T".into(),
            tags: vec!["tag_1".into()],
            outcome: outcome.clone(),
            steps: vec![StepResult {
                text: "Then x".into(),
                location: "f.feature:3".into(),
                outcome,
                error: Some("expected \"a\"".into()),
            }],
            transcript: vec!["POST /x\nAuthorization: Bearer …abcd".into()],
            duration: Duration::from_millis(5),
        }
    }

    #[test]
    fn junit_is_escaped_and_counts_failures() {
        let x = junit(&[result(Outcome::Passed), result(Outcome::Failed)]);
        assert!(x.contains("tests=\"2\" failures=\"1\""));
        assert!(x.contains("name=\"@tag_1 S &amp; T\""));
        assert!(x.contains("&quot;a&quot;"));
        assert!(!x.contains("<1>"));
    }

    #[test]
    fn console_and_json_report_totals() {
        let rs = [result(Outcome::Passed), result(Outcome::Failed)];
        assert!(console(&rs).ends_with("1 passed, 1 failed\n"));
        let v: serde_json::Value = serde_json::from_str(&json_summary(&rs)).unwrap();
        assert_eq!(v["failed"], 1);
        assert_eq!(v["scenarios"][1]["outcome"], "failed");
    }
}
