//! Every scenario of the official v1.1.0 feature files must be covered by a gateway
//! integration test that names its tag (in `tests/api/*.rs` of the `otp-gateway` package).

use std::path::PathBuf;

use conformance_tests::env::Environment;
use conformance_tests::load;
use conformance_tests::runner::{undefined_steps, TagFilter};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The official CAMARA files beside the checkout, or `None` (with the reason printed).
fn official_dir() -> Option<PathBuf> {
    let dir = repo().join("../shared/camara");
    if dir.exists() {
        Some(dir)
    } else {
        println!(
            "SKIPPED: {} not found (the CAMARA artefacts live in ../shared)",
            dir.display()
        );
        None
    }
}

#[test]
fn official_files_have_the_32_scenarios_we_expect() {
    let Some(dir) = official_dir() else { return };
    let send = load(&dir.join("OTPValidation-send-code-v1.1.0.feature")).expect("send-code file");
    let validate =
        load(&dir.join("OTPValidation-validate-code-v1.1.0.feature")).expect("validate-code file");
    assert_eq!(send.scenarios.len(), 16);
    assert_eq!(validate.scenarios.len(), 16);
    assert_eq!(send.background.len(), 6);
    // The pre-pass repaired line 12 (`and the resource …   |`) without moving it.
    assert_eq!(
        send.background[1].as_written(),
        "And the resource \"/one-time-password-sms/v1/send-code\""
    );
    assert_eq!(send.background[1].line, 12);
    assert!(validate.scenarios.iter().all(|s| s
        .steps
        .iter()
        .any(|st| st.as_written() == "When the HTTP \"POST\" request is sent")));
}

#[test]
fn every_official_scenario_tag_is_named_by_an_integration_test() {
    let Some(dir) = official_dir() else { return };
    let mut ours = String::new();
    for entry in std::fs::read_dir(repo().join("tests/api")).expect("tests/api") {
        let path = entry.expect("dir entry").path();
        if path.extension().is_some_and(|e| e == "rs") {
            ours.push_str(&std::fs::read_to_string(&path).expect("test file"));
        }
    }
    let mut missing = Vec::new();
    let mut count = 0;
    for file in [
        "OTPValidation-send-code-v1.1.0.feature",
        "OTPValidation-validate-code-v1.1.0.feature",
    ] {
        let feature = load(&dir.join(file)).expect("feature file");
        for scenario in feature.scenarios {
            count += 1;
            let tag = scenario.tags.first().cloned().unwrap_or_default();
            // Doc comments name the tag exactly: `/// @TAG` followed by a line end.
            let needle = format!("/// @{tag}\n");
            if tag.is_empty() || !ours.contains(&needle) {
                missing.push(format!("{file}: {} ({tag})", scenario.name));
            }
        }
    }
    assert_eq!(count, 32);
    assert!(
        missing.is_empty(),
        "scenarios without a test:\n{}",
        missing.join("\n")
    );
}

#[test]
fn every_step_of_both_official_versions_is_defined() {
    let Some(dir) = official_dir() else { return };
    for version in ["v1.1.0", "v1.1.1"] {
        let mut scenarios = 0;
        for op in ["send-code", "validate-code"] {
            let f = load(&dir.join(format!("OTPValidation-{op}-{version}.feature"))).expect("file");
            scenarios += f.scenarios.len();
            assert_eq!(
                undefined_steps(&f, &TagFilter::default()),
                Vec::<String>::new()
            );
        }
        assert_eq!(scenarios, 32, "{version}");
    }
    let send = load(&dir.join("OTPValidation-send-code-v1.1.1.feature")).expect("file");
    assert_eq!(
        send.background[4].as_written(),
        "And the header \"x-correlator\" complies with the schema at \"#/components/schemas/XCorrelator\""
    );
}

#[test]
fn every_commonalities_c02_step_is_defined_and_the_ci_environment_selects_what_applies() {
    let Some(dir) = official_dir() else { return };
    let path = dir.join("commonalities/C02-phoneNumber-errors.feature");
    let all = load(&path).expect("C02 file");
    assert_eq!(all.scenarios.len(), 5);
    assert_eq!(
        undefined_steps(&all, &TagFilter::default()),
        Vec::<String>::new()
    );
    for env_file in ["ci/env.toml", "ci/env-v1.1.1.toml"] {
        let env = Environment::load(&repo().join("conformance-tests").join(env_file)).expect("env");
        let mut f = all.clone();
        env.features["C02-phoneNumber-errors.feature"]
            .apply(&mut f, env_file)
            .expect("plan");
        let tags: Vec<&str> = f.scenarios.iter().map(|s| s.tags[0].as_str()).collect();
        assert_eq!(
            tags,
            vec!["OTPvalidationAPI_send_code_C02.01_phone_number_not_schema_compliant"],
            "{env_file}"
        );
        // The Background the file leaves to the test plan comes from the environment.
        assert!(f.scenarios[0]
            .background
            .iter()
            .any(|s| s.text == "the resource \"/one-time-password-sms/v1/send-code\""));
        assert_eq!(
            undefined_steps(&f, &TagFilter::default()),
            Vec::<String>::new()
        );
    }
}

#[test]
fn an_unknown_step_stops_the_run_naming_its_file_and_line() {
    let dir = std::env::temp_dir().join(format!("camara-unknown-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let file = dir.join("unknown.feature");
    std::fs::write(
        &file,
        "Feature: F\n  Scenario: S\n    Given the resource \"/x\"\n    When something nobody defined happens\n",
    )
    .expect("feature file");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_camara-conformance"))
        .arg("--env")
        .arg(repo().join("conformance-tests/ci/env.toml"))
        .arg(&file)
        .output()
        .expect("runs");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!(
            "{}:4: undefined step: When something nobody defined happens",
            file.display()
        )),
        "{stderr}"
    );
    assert!(stderr.contains("nothing was run"), "{stderr}");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The v1.1.1 environment is the v1.1.0 one but for the OAS document and the correlator step
/// of the Commonalities background, so a change to one (a client's scope, a number) cannot be
/// forgotten in the other.
#[test]
fn the_v1_1_1_environment_differs_from_the_v1_1_0_one_only_where_the_version_does() {
    let read = |name: &str| {
        std::fs::read_to_string(repo().join("conformance-tests/ci").join(name))
            .expect("a CI environment file")
    };
    let (v110, v111) = (read("env.toml"), read("env-v1.1.1.toml"));
    let body = |s: &str| -> Vec<String> {
        s.lines()
            .filter(|l| !l.starts_with('#'))
            .filter(|l| !l.starts_with("oas = ") && !l.contains("x-correlator"))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(body(&v110), body(&v111));
    assert!(v111.contains("one-time-password-sms-v1.1.1.yaml"));
    assert!(v111.contains("#/components/schemas/XCorrelator"));
}
