//! Every scenario of the official v1.1.0 feature files must be covered by a gateway
//! integration test that names its tag (in `tests/api/*.rs` of the `otp-gateway` package).

use std::path::PathBuf;

use conformance_tests::load;

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
    assert!(
        send.background[1].starts_with("And the resource \"/one-time-password-sms/v1/send-code\"")
    );
    assert!(validate.scenarios.iter().all(|s| s
        .steps
        .iter()
        .any(|st| st.starts_with("When the HTTP \"POST\" request is sent"))));
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
