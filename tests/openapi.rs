//! The OpenAPI document of each supported CAMARA release: the checked-in copy must equal what
//! the code generates, and the document must match that release's official YAML structurally
//! (version, paths, methods, schemas with patterns and limits, statuses, error codes, headers,
//! scopes, the security scheme). The x-correlator check must agree with the YAML's pattern.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use otp_gateway::api::openapi::{document_json, served_document_json, PageNotes};
use otp_gateway::api::version::CamaraVersion;
use serde_json::{json, Value};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

const ISSUER: &str = "http://127.0.0.1:8080";

#[test]
fn checked_in_documents_match_the_generated_ones() {
    for version in CamaraVersion::ALL {
        let path = root().join(format!(
            "code-api-definitions/one-time-password-sms-v{version}.json"
        ));
        let generated = document_json(ISSUER, version);
        if std::env::var_os("UPDATE_OPENAPI").is_some() {
            std::fs::write(&path, &generated).unwrap();
        }
        let checked_in = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            checked_in == generated,
            "{} is stale: run `UPDATE_OPENAPI=1 cargo test --test openapi` and commit it",
            path.display()
        );
    }
}

/// The official YAML of `version`. CI always has it (../shared beside the clone); a checkout
/// without ../shared fails here rather than passing a comparison that compared nothing.
fn official(version: CamaraVersion) -> Value {
    let path = root().join(format!(
        "../shared/camara/one-time-password-sms-v{version}.yaml"
    ));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| {
        panic!(
            "{}: {e} (the CAMARA files live in ../shared)",
            path.display()
        )
    });
    serde_yaml::from_str(&text).unwrap()
}

fn ours(version: CamaraVersion) -> Value {
    serde_json::from_str(&document_json(ISSUER, version)).unwrap()
}

fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => {
            let mut cur = doc;
            for part in r.trim_start_matches("#/").split('/') {
                cur = &cur[part];
            }
            resolve(doc, cur)
        }
        None => v,
    }
}

/// The parts of a schema the contract constrains; descriptions, examples and formats aside.
fn shape(doc: &Value, schema: &Value) -> Value {
    let s = resolve(doc, schema);
    if let Some(all) = s.get("allOf").and_then(Value::as_array) {
        let mut merged = json!({"type": "object", "properties": {}, "required": []});
        for part in all {
            let p = shape(doc, part);
            for (k, v) in p["properties"].as_object().cloned().unwrap_or_default() {
                let slot = &mut merged["properties"][&k];
                if slot.is_null() {
                    *slot = v;
                } else {
                    for (kk, vv) in v.as_object().cloned().unwrap_or_default() {
                        slot[kk] = vv;
                    }
                }
            }
            let mut req: BTreeSet<String> =
                serde_json::from_value(merged["required"].clone()).unwrap_or_default();
            req.extend(
                serde_json::from_value::<Vec<String>>(p["required"].clone()).unwrap_or_default(),
            );
            merged["required"] = json!(req);
        }
        return merged;
    }
    let mut out = json!({});
    for key in ["type", "pattern", "maxLength", "minLength"] {
        if let Some(v) = s.get(key) {
            out[key] = v.clone();
        }
    }
    if let Some(e) = s.get("enum").and_then(Value::as_array) {
        let set: BTreeSet<String> = e.iter().map(|x| x.to_string()).collect();
        out["enum"] = json!(set);
    }
    if let Some(props) = s.get("properties").and_then(Value::as_object) {
        out["type"] = json!("object");
        let mut m = serde_json::Map::new();
        for (k, v) in props {
            m.insert(k.clone(), shape(doc, v));
        }
        out["properties"] = Value::Object(m);
        let req: BTreeSet<String> = s
            .get("required")
            .map(|r| serde_json::from_value(r.clone()).unwrap())
            .unwrap_or_default();
        out["required"] = json!(req);
    }
    out
}

fn operations(doc: &Value) -> BTreeMap<String, &Value> {
    let mut ops = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                ops.insert(format!("{} {}", method.to_uppercase(), path), op);
            }
        }
    }
    ops
}

fn response_shapes(doc: &Value, op: &Value) -> BTreeMap<String, Value> {
    let mut out = BTreeMap::new();
    for (status, resp) in op["responses"].as_object().unwrap() {
        let resp = resolve(doc, resp);
        let schema = resp["content"]["application/json"]["schema"].clone();
        let headers: BTreeSet<String> = resp["headers"]
            .as_object()
            .map(|h| h.keys().cloned().collect())
            .unwrap_or_default();
        let shape = if schema.is_null() {
            Value::Null
        } else {
            shape(doc, &schema)
        };
        out.insert(status.clone(), json!({"schema": shape, "headers": headers}));
    }
    out
}

fn parameters(doc: &Value, op: &Value) -> Value {
    let mut out = serde_json::Map::new();
    for p in op["parameters"].as_array().cloned().unwrap_or_default() {
        let p = resolve(doc, &p);
        out.insert(
            format!("{}:{}", p["in"].as_str().unwrap(), p["name"].as_str().unwrap().to_lowercase()),
            json!({"required": p.get("required").cloned().unwrap_or(json!(false)), "schema": shape(doc, &p["schema"])}),
        );
    }
    Value::Object(out)
}

/// Every difference between `ours` and `theirs` in what the contract constrains.
fn contract_differences(ours: &Value, theirs: &Value) -> Vec<String> {
    let mut diffs = Vec::new();
    let mut check = |what: String, a: Value, b: Value| {
        if a != b {
            diffs.push(format!("{what}: ours {a} official {b}"));
        }
    };
    check(
        "info.version".into(),
        ours["info"]["version"].clone(),
        theirs["info"]["version"].clone(),
    );
    check(
        "info.x-camara-commonalities".into(),
        ours["info"]["x-camara-commonalities"].clone(),
        theirs["info"]["x-camara-commonalities"].clone(),
    );
    let (a, b) = (operations(ours), operations(theirs));
    check(
        "paths and methods".into(),
        json!(a.keys().collect::<Vec<_>>()),
        json!(b.keys().collect::<Vec<_>>()),
    );
    for (key, op) in &a {
        let Some(official) = b.get(key) else { continue };
        check(
            format!("{key} operationId"),
            op["operationId"].clone(),
            official["operationId"].clone(),
        );
        check(
            format!("{key} security scopes"),
            op["security"].clone(),
            official["security"].clone(),
        );
        check(
            format!("{key} parameters"),
            parameters(ours, op),
            parameters(theirs, official),
        );
        let (rb_ours, rb_theirs) = (
            &op["requestBody"],
            resolve(theirs, &official["requestBody"]),
        );
        check(
            format!("{key} body required"),
            rb_ours["required"].clone(),
            rb_theirs["required"].clone(),
        );
        check(
            format!("{key} request schema"),
            shape(ours, &rb_ours["content"]["application/json"]["schema"]),
            shape(theirs, &rb_theirs["content"]["application/json"]["schema"]),
        );
        let (ra, rb) = (response_shapes(ours, op), response_shapes(theirs, official));
        check(
            format!("{key} statuses"),
            json!(ra.keys().collect::<Vec<_>>()),
            json!(rb.keys().collect::<Vec<_>>()),
        );
        for (status, shape) in &ra {
            check(
                format!("{key} {status}"),
                shape.clone(),
                rb.get(status).cloned().unwrap_or_default(),
            );
        }
    }
    // Named schemas both documents declare have the same shape. Ours inlines the property
    // schemas (PhoneNumber, Message, AuthenticationId, Code), compared through the bodies
    // above; XCorrelator, the schema v1.1.1 added, must exist by name.
    for (name, schema) in theirs["components"]["schemas"].as_object().unwrap() {
        let mine = &ours["components"]["schemas"][name];
        if mine.is_null() && name != "XCorrelator" {
            continue;
        }
        check(
            format!("components.schemas.{name}"),
            if mine.is_null() {
                Value::Null
            } else {
                shape(ours, mine)
            },
            shape(theirs, schema),
        );
    }
    check(
        "securitySchemes".into(),
        json!(ours["components"]["securitySchemes"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>()),
        json!(theirs["components"]["securitySchemes"]
            .as_object()
            .unwrap()
            .keys()
            .collect::<Vec<_>>()),
    );
    check(
        "securitySchemes.openId.type".into(),
        ours["components"]["securitySchemes"]["openId"]["type"].clone(),
        theirs["components"]["securitySchemes"]["openId"]["type"].clone(),
    );
    diffs
}

#[test]
fn each_document_matches_the_official_camara_contract_of_its_version() {
    for version in CamaraVersion::ALL {
        let diffs = contract_differences(&ours(version), &official(version));
        assert!(diffs.is_empty(), "v{version}:\n{}", diffs.join("\n"));
    }
}

#[test]
fn the_comparison_tells_the_two_versions_apart() {
    // Guard against a comparator that compares nothing: v1.1.0's document is not v1.1.1's.
    let diffs = contract_differences(
        &ours(CamaraVersion::V1_1_0),
        &official(CamaraVersion::V1_1_1),
    );
    let text = diffs.join("\n");
    for expected in [
        "info.version",
        "parameters",
        "components.schemas.XCorrelator",
    ] {
        assert!(
            text.contains(expected),
            "{expected} not reported in:\n{text}"
        );
    }
    let theirs = official(CamaraVersion::V1_1_0);
    let mut changed = theirs.clone();
    changed["components"]["schemas"]["Message"]["maxLength"] = json!(159);
    assert!(!contract_differences(&theirs, &changed).is_empty());
}

#[test]
fn the_served_document_differs_from_the_contract_only_in_its_description() {
    let notes = PageNotes {
        demo_client: true,
        sandbox_inbox: Some(
            "http://127.0.0.1:9091/sandbox/v1/messages?phoneNumber=%2B34600000001".into(),
        ),
        inbox_needs_credential: false,
    };
    for version in CamaraVersion::ALL {
        let mut served: Value =
            serde_json::from_str(&served_document_json(ISSUER, version, &notes)).unwrap();
        let description = served["info"]["description"].as_str().unwrap().to_owned();
        assert!(
            description.contains("/sandbox/v1/messages"),
            "{description}"
        );
        assert!(description.contains("`demo`"), "{description}");
        let mut contract = ours(version);
        served["info"]["description"] = Value::Null;
        contract["info"]["description"] = Value::Null;
        assert_eq!(served, contract, "v{version}");
    }
}

/// Each release's x-correlator pattern, compiled from the official YAML, against the byte
/// check the middleware runs: every single ASCII character, the length bounds, non-ASCII.
#[test]
fn the_correlator_check_agrees_with_each_official_pattern() {
    for version in CamaraVersion::ALL {
        let theirs = official(version);
        let param = resolve(
            &theirs,
            &theirs["components"]["headers"]["x-correlator"]["schema"],
        );
        let pattern = param["pattern"].as_str().unwrap();
        assert_eq!(pattern, version.correlator_pattern(), "v{version}");
        let re = regex::Regex::new(pattern).unwrap();
        let max: usize = pattern
            .rsplit(',')
            .next()
            .unwrap()
            .trim_end_matches("}$")
            .parse()
            .unwrap();
        let mut samples: Vec<String> = (0u8..=127).map(|b| (b as char).to_string()).collect();
        samples.extend(
            [
                "",
                "app:login/42",
                "b4333c46-49c0-4f62-80d7-f0ef930f1c46",
                "ü",
                "a\u{00e9}",
            ]
            .map(String::from),
        );
        samples.extend([max - 1, max, max + 1].map(|n| "a".repeat(n)));
        samples.extend([max, max + 1].map(|n| "{".repeat(n)));
        for s in &samples {
            assert_eq!(
                version.correlator_ok(s),
                re.is_match(s),
                "v{version}: {s:?}"
            );
        }
    }
}
