//! Runs scenarios: Background then the scenario's steps, stopping a scenario at its first
//! failing step. Each scenario gets the next phone number of the environment's pool.

use std::time::{Duration, Instant};

use crate::env::Environment;
use crate::gherkin::{Feature, Scenario};
use crate::http::{Client, Request};
use crate::inbox::Inbox;
use crate::plan;
use crate::schema::Oas;
use crate::steps::{self, World};
use crate::tokens::Tokens;

/// What happened to one step.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// It ran and held.
    Passed,
    /// It ran and did not hold (or could not run).
    Failed,
    /// Not run, because an earlier step failed.
    Skipped,
}

/// A step and its outcome.
#[derive(Debug, Clone, serde::Serialize)]
pub struct StepResult {
    /// The step as written.
    pub text: String,
    /// `file:line` where it is written.
    pub location: String,
    /// Outcome.
    pub outcome: Outcome,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A scenario's result.
#[derive(Debug, Clone, serde::Serialize)]
pub struct ScenarioResult {
    /// Feature title.
    pub feature: String,
    /// Scenario name.
    pub name: String,
    /// Tags.
    pub tags: Vec<String>,
    /// Overall outcome.
    pub outcome: Outcome,
    /// Steps, Background first.
    pub steps: Vec<StepResult>,
    /// Requests and responses (credentials redacted), filled when the scenario failed.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub transcript: Vec<String>,
    /// Wall time.
    #[serde(serialize_with = "secs")]
    pub duration: Duration,
}

fn secs<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_f64(d.as_secs_f64())
}

/// Steps of the selected scenarios that no definition matches, as `file:line: undefined step:
/// …`. A run with any of them is refused before it starts.
pub fn undefined_steps(feature: &Feature, filter: &TagFilter) -> Vec<String> {
    let mut out = Vec::new();
    for s in feature.scenarios.iter().filter(|s| filter.selects(s)) {
        for step in s.all_steps() {
            let line = format!(
                "{}: undefined step: {}",
                feature.location(step),
                step.as_written()
            );
            if !steps::is_defined(&step.text) && !out.contains(&line) {
                out.push(line);
            }
        }
    }
    out
}

/// Which scenarios to run: a scenario runs when it has one of `include` (or `include` is
/// empty) and none of `exclude`. Tags are written with or without `@`.
#[derive(Debug, Clone, Default)]
pub struct TagFilter {
    /// Tags to run.
    pub include: Vec<String>,
    /// Tags to leave out.
    pub exclude: Vec<String>,
}

impl TagFilter {
    /// True when the scenario is selected.
    pub fn selects(&self, s: &Scenario) -> bool {
        let norm = |t: &String| t.trim_start_matches('@').to_string();
        let inc: Vec<String> = self.include.iter().map(norm).collect();
        let exc: Vec<String> = self.exclude.iter().map(norm).collect();
        (inc.is_empty() || s.tags.iter().any(|t| inc.contains(t)))
            && !s.tags.iter().any(|t| exc.contains(t))
    }
}

/// Shared state of a run.
pub struct Runner {
    env: Environment,
    client: Client,
    tokens: Tokens,
    inbox: Inbox,
    oas: Option<Oas>,
    next_number: usize,
    env_name: String,
}

impl Runner {
    /// Names the environment file in locations of the steps it supplies.
    pub fn with_env_name(mut self, name: &str) -> Runner {
        self.env_name = name.to_string();
        self
    }

    /// Prepares a run (fetches the token that has to expire first).
    pub fn new(env: Environment) -> Result<Runner, String> {
        let client = Client::new(&env.api_root, env.request_timeout);
        let tokens = Tokens::new(env.auth.clone(), client.agent().clone())?;
        let inbox = Inbox::new(env.inbox.clone(), client.agent().clone());
        let oas = match &env.oas {
            Some(p) => Some(Oas::load(p)?),
            None => None,
        };
        Ok(Runner {
            env,
            client,
            tokens,
            inbox,
            oas,
            next_number: 0,
            env_name: "the environment file".into(),
        })
    }

    /// Adapts a feature file as the environment's `[features."NAME"]` says (Commonalities
    /// files: their Background, tag placeholders, the scenarios that apply). Files the
    /// environment does not name are left as they are.
    pub fn adapt(&self, feature: &mut Feature) -> Result<(), String> {
        match self.env.features.get(&plan::file_name(&feature.file)) {
            Some(p) => p.apply(feature, &self.env_name),
            None => Ok(()),
        }
    }

    /// Runs the selected scenarios of a feature.
    pub fn run_feature(&mut self, feature: &Feature, filter: &TagFilter) -> Vec<ScenarioResult> {
        feature
            .scenarios
            .iter()
            .filter(|s| filter.selects(s))
            .map(|s| self.run_scenario(feature, s))
            .collect()
    }

    fn run_scenario(&mut self, feature: &Feature, scenario: &Scenario) -> ScenarioResult {
        let started = Instant::now();
        let pool = &self.env.numbers.can_receive_sms;
        let phone = pool[self.next_number % pool.len()].clone();
        self.next_number += 1;
        let mut world = World {
            env: &self.env,
            client: &self.client,
            tokens: &mut self.tokens,
            inbox: &self.inbox,
            oas: self.oas.as_ref(),
            phone,
            request: Request {
                method: "POST".into(),
                ..Request::default()
            },
            response: None,
            batch: Vec::new(),
            sends: Vec::new(),
            transcript: Vec::new(),
            table: None,
            docstring: None,
            choices: crate::generate::Choices::random(),
        };
        let mut results = Vec::new();
        let mut failed = false;
        for step in scenario.all_steps() {
            let text = step.as_written();
            let location = feature.location(step);
            if failed {
                results.push(StepResult {
                    text,
                    location,
                    outcome: Outcome::Skipped,
                    error: None,
                });
                continue;
            }
            world.table = step.table.clone();
            world.docstring = step.docstring.clone();
            let outcome = if steps::is_defined(&step.text) {
                steps::run(&mut world, &step.text)
            } else {
                Err(format!("{location}: undefined step: {text}"))
            };
            match outcome {
                Ok(()) => results.push(StepResult {
                    text,
                    location,
                    outcome: Outcome::Passed,
                    error: None,
                }),
                Err(e) => {
                    failed = true;
                    results.push(StepResult {
                        text,
                        location,
                        outcome: Outcome::Failed,
                        error: Some(e),
                    });
                }
            }
        }
        ScenarioResult {
            feature: feature.name.clone(),
            name: scenario.name.clone(),
            tags: scenario.tags.clone(),
            outcome: if failed {
                Outcome::Failed
            } else {
                Outcome::Passed
            },
            steps: results,
            transcript: if failed { world.transcript } else { Vec::new() },
            duration: started.elapsed(),
        }
    }
}
