//! Our own feature files, run by camara-conformance against otp-gateway started in-process
//! (embedded SMSC simulator, sandbox inbox), with the CI configuration in `ci/`.

use std::path::PathBuf;
use std::sync::mpsc;

use conformance_tests::env::Environment;
use conformance_tests::runner::{Outcome, Runner, TagFilter};
use conformance_tests::{load, report};
use otp_gateway::config::Settings;
use otp_gateway::startup::Application;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// Starts the gateway on free ports in a thread of its own; returns (api, admin) addresses.
fn start_gateway() -> (String, String) {
    // The CI configuration with the repository's example number policy layered on it, as
    // scripts/test starts the binary; its barring file is named relative to the repository.
    let root = dir().join("..");
    let files = [
        dir().join("ci/gateway.toml"),
        root.join("examples/policy.toml"),
    ];
    let mut settings =
        Settings::load_all(files.iter().map(PathBuf::as_path)).expect("gateway.toml + policy");
    settings.policy.blocked_numbers_file =
        settings.policy.blocked_numbers_file.map(|f| root.join(f));
    settings.http.listen = ([127, 0, 0, 1], 0).into();
    settings.admin.listen = ([127, 0, 0, 1], 0).into();
    let validated = settings.validate().expect("valid settings");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let rt = tokio::runtime::Runtime::new().expect("runtime");
        rt.block_on(async move {
            let app = Application::build(validated).await.expect("gateway starts");
            let _ = tx.send((app.api_addr().to_string(), app.admin_addr().to_string()));
            let _ = app.run_until_stopped().await;
        });
    });
    rx.recv().expect("gateway addresses")
}

/// The CI environment pointed at a gateway started by [`start_gateway`]. The expired token is
/// only needed by the official files (run by .ci/run); leaving it out here saves its wait.
fn environment() -> Environment {
    let (api, admin) = start_gateway();
    let text = std::fs::read_to_string(dir().join("ci/env.toml"))
        .expect("env.toml")
        .replace("127.0.0.1:18080", &api)
        .replace("127.0.0.1:19091", &admin);
    let mut env = Environment::from_toml(&text, &dir().join("ci")).expect("environment");
    env.auth.expired = None;
    env
}

#[test]
fn our_feature_files_pass_against_the_gateway() {
    let mut env = environment();
    let mut filter = TagFilter::default();
    if env.oas.as_ref().is_some_and(|p| !p.exists()) {
        println!("SKIPPED schema check scenario: the CAMARA OAS document (../shared) is absent");
        env.oas = None;
        filter
            .exclude
            .push("otp_ext_send_code_200_unknown_properties".into());
    }
    let mut runner = Runner::new(env).expect("runner");
    let mut results = Vec::new();
    for f in [
        "otp-send-code-extended.feature",
        "otp-validate-code-extended.feature",
    ] {
        let feature = load(&dir().join("features").join(f)).expect("feature file");
        results.extend(runner.run_feature(&feature, &filter));
    }
    let text = report::console(&results);
    println!("{text}");
    assert!(results.len() >= 14, "{} scenarios ran", results.len());
    assert!(
        results.iter().all(|r| r.outcome == Outcome::Passed),
        "failures:\n{text}"
    );
}

#[test]
fn a_wrong_expectation_fails_the_scenario_with_the_exchange_in_the_report() {
    // The runner itself must be able to fail: flip an expectation and check it is reported.
    let mut env = environment();
    env.oas = None;
    let feature = conformance_tests::parse(
        "Feature: F\n  Background:\n    Given the resource \"/one-time-password-sms/v1/send-code\"\n    And the header \"Content-Type\" is set to \"application/json\"\n    And the header \"Authorization\" is set to a valid access token\n    And the request body is set by default to a request body compliant with the schema\n  @wrong\n  Scenario: expects the wrong status\n    When the HTTP \"POST\" request is sent\n    Then the response status code is 201\n    And the response property \"$.code\" is \"X\"\n",
    )
    .expect("feature");
    let mut runner = Runner::new(env).expect("runner");
    let results = runner.run_feature(&feature, &TagFilter::default());
    assert_eq!(results.len(), 1);
    assert_eq!(results[0].outcome, Outcome::Failed);
    let console = report::console(&results);
    assert!(console.contains("expected 201, got 200"), "{console}");
    assert!(console.contains("authenticationId"), "{console}");
    assert!(!console.contains("conformance-secret"));
    assert_eq!(
        results[0].steps.last().map(|s| s.outcome.clone()),
        Some(Outcome::Skipped)
    );
}

#[test]
fn the_commonalities_c02_scenarios_that_apply_pass_against_the_gateway() {
    let path = dir().join("../../shared/camara/commonalities/C02-phoneNumber-errors.feature");
    if !path.exists() {
        println!(
            "SKIPPED: {} not found (the CAMARA artefacts live in ../shared)",
            path.display()
        );
        return;
    }
    let mut feature = load(&path).expect("C02 file");
    let runner = Runner::new(environment()).expect("runner");
    let mut runner = runner.with_env_name("ci/env.toml");
    runner.adapt(&mut feature).expect("plan");
    let results = runner.run_feature(&feature, &TagFilter::default());
    let text = report::console(&results);
    println!("{text}");
    assert_eq!(results.len(), 1, "{text}");
    assert_eq!(results[0].outcome, Outcome::Passed, "{text}");
    // The scenario sent a phoneNumber that breaks the OAS pattern and got INVALID_ARGUMENT.
    assert!(results[0]
        .steps
        .iter()
        .any(|s| s.text.contains("does not comply")));
}
