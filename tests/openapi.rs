//! The OpenAPI document: the checked-in copy must equal what the code generates, and the
//! document must match the official CAMARA v1.1.0 YAML structurally (paths, methods, schemas
//! with patterns and limits, statuses, error codes, headers, scopes).
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

use otp_gateway::api::openapi::document_json;
use serde_json::{json, Value};

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn checked_in_document_matches_the_generated_one() {
    let path = root().join("code-api-definitions/one-time-password-sms.json");
    let generated = document_json("http://127.0.0.1:8080");
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

fn official() -> Option<Value> {
    let path = root().join("../shared/camara/one-time-password-sms-v1.1.0.yaml");
    match std::fs::read_to_string(&path) {
        Ok(text) => Some(serde_yaml::from_str(&text).unwrap()),
        Err(_) => {
            println!(
                "SKIPPED: {} not found (the CAMARA artefacts live in ../shared)",
                path.display()
            );
            None
        }
    }
}

fn ours() -> Value {
    serde_json::from_str(&document_json("http://127.0.0.1:8080")).unwrap()
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

#[test]
fn document_matches_the_official_camara_contract() {
    let Some(theirs) = official() else { return };
    let ours = ours();
    assert_eq!(ours["info"]["version"], theirs["info"]["version"]);
    let (a, b) = (operations(&ours), operations(&theirs));
    assert_eq!(
        a.keys().collect::<Vec<_>>(),
        b.keys().collect::<Vec<_>>(),
        "paths and methods"
    );
    for (key, op) in &a {
        let official = b[key];
        assert_eq!(op["operationId"], official["operationId"], "{key}");
        assert_eq!(
            op["security"], official["security"],
            "{key}: security scopes"
        );
        assert_eq!(
            parameters(&ours, op),
            parameters(&theirs, official),
            "{key}: parameters"
        );
        let (rb_ours, rb_theirs) = (
            &op["requestBody"],
            resolve(&theirs, &official["requestBody"]),
        );
        assert_eq!(
            rb_ours["required"], rb_theirs["required"],
            "{key}: body required"
        );
        assert_eq!(
            shape(&ours, &rb_ours["content"]["application/json"]["schema"]),
            shape(&theirs, &rb_theirs["content"]["application/json"]["schema"]),
            "{key}: request schema"
        );
        let (ra, rb) = (
            response_shapes(&ours, op),
            response_shapes(&theirs, official),
        );
        assert_eq!(
            ra.keys().collect::<Vec<_>>(),
            rb.keys().collect::<Vec<_>>(),
            "{key}: statuses"
        );
        for (status, shape) in &ra {
            assert_eq!(shape, &rb[status], "{key} {status}");
        }
    }
    let scheme = &ours["components"]["securitySchemes"]["openId"];
    assert_eq!(
        scheme["type"],
        theirs["components"]["securitySchemes"]["openId"]["type"]
    );
}

#[test]
fn the_comparison_notices_a_difference() {
    // Guard against a comparator that compares nothing: a changed limit must show up.
    let Some(theirs) = official() else { return };
    let mut changed = theirs.clone();
    changed["components"]["schemas"]["Message"]["maxLength"] = json!(159);
    let op = &theirs["paths"]["/send-code"]["post"];
    let body = &op["requestBody"]["content"]["application/json"]["schema"];
    assert_ne!(shape(&theirs, body), shape(&changed, body));
}
