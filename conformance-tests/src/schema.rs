//! "The response body complies with the OAS schema at …": a small validator for the JSON
//! Schema subset OpenAPI 3.0 documents use ($ref, allOf, type, required, properties, items,
//! enum, minLength/maxLength with code-point counts, and unanchored ECMA-style patterns).

use std::path::Path;

use regex::Regex;
use serde_json::Value;

/// An OAS document.
pub struct Oas(Value);

impl Oas {
    /// Loads YAML or JSON.
    pub fn load(path: &Path) -> Result<Oas, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let v: Value =
            serde_yaml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))?;
        Ok(Oas(v))
    }

    /// Wraps an already parsed document.
    pub fn from_value(v: Value) -> Oas {
        Oas(v)
    }

    /// The schema at a pointer such as `/components/schemas/SendCodeResponse` (a leading `#`
    /// is accepted).
    pub fn schema_at(&self, pointer: &str) -> Option<&Value> {
        self.0.pointer(pointer.trim_start_matches('#'))
    }

    /// The path prefix of the first server URL (`{apiRoot}/one-time-password-sms/v1` gives
    /// `/one-time-password-sms/v1`).
    fn prefix(&self) -> String {
        self.0["servers"][0]["url"]
            .as_str()
            .map(|u| u.split('}').next_back().unwrap_or(u).to_string())
            .unwrap_or_default()
    }

    /// The schema of a request body property (`keys` below the body) of the operation at
    /// `method` and `path` (the path as sent, server prefix included).
    pub fn request_property(&self, method: &str, path: &str, keys: &[&str]) -> Option<&Value> {
        let prefix = self.prefix();
        let (_, item) = self.0["paths"]
            .as_object()?
            .iter()
            .find(|(p, _)| format!("{prefix}{p}") == path)?;
        let body = self.resolve(item.get(method.to_ascii_lowercase())?.get("requestBody")?);
        let mut cur = self.resolve(body.pointer("/content/application~1json/schema")?);
        for k in keys {
            cur = self.property_of(cur, k)?;
        }
        Some(cur)
    }

    fn property_of<'a>(&'a self, schema: &'a Value, key: &str) -> Option<&'a Value> {
        let s = self.resolve(schema);
        if let Some(p) = s.get("properties").and_then(|p| p.get(key)) {
            return Some(p);
        }
        s.get("allOf")?
            .as_array()?
            .iter()
            .find_map(|part| self.property_of(part, key))
    }

    /// Path and method of an operationId.
    pub fn operation(&self, operation_id: &str) -> Option<(String, String)> {
        let prefix = self.prefix();
        for (path, item) in self.0["paths"].as_object()? {
            for (method, op) in item.as_object()? {
                if op["operationId"] == operation_id {
                    return Some((method.to_uppercase(), format!("{prefix}{path}")));
                }
            }
        }
        None
    }

    /// Problems of `value` against `schema`; empty when it complies.
    pub fn validate(&self, schema: &Value, value: &Value) -> Vec<String> {
        let mut errors = Vec::new();
        self.check(schema, value, "$", &mut errors);
        errors
    }

    /// The schema itself, or the one its `$ref` points at (followed to the end).
    pub fn resolve<'a>(&'a self, schema: &'a Value) -> &'a Value {
        match schema.get("$ref").and_then(Value::as_str) {
            Some(r) => match self.schema_at(r) {
                Some(s) => self.resolve(s),
                None => schema,
            },
            None => schema,
        }
    }

    fn check(&self, schema: &Value, value: &Value, at: &str, errors: &mut Vec<String>) {
        let s = self.resolve(schema);
        if let Some(all) = s.get("allOf").and_then(Value::as_array) {
            for part in all {
                self.check(part, value, at, errors);
            }
        }
        if let Some(t) = s.get("type").and_then(Value::as_str) {
            let ok = match t {
                "object" => value.is_object(),
                "array" => value.is_array(),
                "string" => value.is_string(),
                "integer" => value.is_i64() || value.is_u64(),
                "number" => value.is_number(),
                "boolean" => value.is_boolean(),
                _ => true,
            };
            if !ok {
                errors.push(format!("{at}: expected {t}, got {value}"));
                return;
            }
        }
        if let Some(e) = s.get("enum").and_then(Value::as_array) {
            if !e.contains(value) {
                errors.push(format!(
                    "{at}: {value} is not one of {}",
                    Value::Array(e.clone())
                ));
            }
        }
        if let Some(text) = value.as_str() {
            let n = text.chars().count() as u64;
            if let Some(max) = s.get("maxLength").and_then(Value::as_u64) {
                if n > max {
                    errors.push(format!("{at}: {n} characters, maxLength {max}"));
                }
            }
            if let Some(min) = s.get("minLength").and_then(Value::as_u64) {
                if n < min {
                    errors.push(format!("{at}: {n} characters, minLength {min}"));
                }
            }
            if let Some(p) = s.get("pattern").and_then(Value::as_str) {
                match Regex::new(&ecma_to_rust(p)) {
                    Ok(re) if !re.is_match(text) => {
                        errors.push(format!("{at}: {text:?} does not match {p}"))
                    }
                    Ok(_) => {}
                    Err(e) => errors.push(format!("{at}: pattern {p} unusable ({e})")),
                }
            }
        }
        if let Some(obj) = value.as_object() {
            for r in s
                .get("required")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                if let Some(name) = r.as_str() {
                    if !obj.contains_key(name) {
                        errors.push(format!("{at}: required property {name} missing"));
                    }
                }
            }
            if let Some(props) = s.get("properties").and_then(Value::as_object) {
                for (name, sub) in props {
                    if let Some(v) = obj.get(name) {
                        self.check(sub, v, &format!("{at}.{name}"), errors);
                    }
                }
            }
        }
        if let (Some(items), Some(arr)) = (s.get("items"), value.as_array()) {
            for (i, v) in arr.iter().enumerate() {
                self.check(items, v, &format!("{at}[{i}]"), errors);
            }
        }
    }
}

/// An OAS `pattern` (ECMA-262 syntax) in the syntax of the `regex` crate. The constructs
/// CAMARA documents use read the same in both (classes such as `[a-zA-Z0-9-_:;.\/<>{}]`,
/// identity escapes like `\/`, bounded repetitions), except the shorthand classes, which are
/// ASCII in ECMA-262 and Unicode in the `regex` crate: they are spelled out.
pub fn ecma_to_rust(pattern: &str) -> String {
    let mut out = String::with_capacity(pattern.len());
    let mut in_class = false;
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('d') if in_class => out.push_str("0-9"),
                Some('d') => out.push_str("[0-9]"),
                Some('w') if in_class => out.push_str("A-Za-z0-9_"),
                Some('w') => out.push_str("[A-Za-z0-9_]"),
                Some('D') if !in_class => out.push_str("[^0-9]"),
                Some('W') if !in_class => out.push_str("[^A-Za-z0-9_]"),
                Some(n) => {
                    out.push('\\');
                    out.push(n);
                }
                None => out.push('\\'),
            },
            '[' => {
                in_class = true;
                out.push(c);
            }
            ']' => {
                in_class = false;
                out.push(c);
            }
            _ => out.push(c),
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    fn oas() -> Oas {
        Oas::from_value(json!({
            "servers": [{"url": "{apiRoot}/one-time-password-sms/v1"}],
            "paths": {"/send-code": {"post": {"operationId": "sendCode", "requestBody": {
                "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Body"}}}}}}},
            "components": {"schemas": {
                "Id": {"type": "string", "maxLength": 36},
                "Body": {"type": "object", "properties": {"phoneNumber": {"type": "string"}}},
                "Resp": {"type": "object", "required": ["authenticationId"],
                         "properties": {"authenticationId": {"$ref": "#/components/schemas/Id"}}},
                "Err": {"allOf": [{"$ref": "#/components/schemas/Resp"},
                                  {"type": "object", "properties": {"code": {"enum": ["A", "B"]},
                                   "n": {"type": "string", "pattern": "^\\+[1-9][0-9]{4,14}$"}}}]}
            }}
        }))
    }

    #[test]
    fn ecma_patterns_keep_their_meaning() {
        let v111 = Regex::new(&ecma_to_rust(r"^[a-zA-Z0-9-_:;.\/<>{}]{0,256}$")).unwrap();
        assert!(v111.is_match("app:login/42;a.b<c>{d}-_Z"));
        for bad in ["a b", "a!", "a@b", "ä", &"a".repeat(257)] {
            assert!(!v111.is_match(bad), "{bad}");
        }
        assert_eq!(ecma_to_rust(r"^\d{4}[\d-]\\d$"), r"^[0-9]{4}[0-9-]\\d$");
        let digits = Regex::new(&ecma_to_rust(r"^\d+$")).unwrap();
        assert!(digits.is_match("0123") && !digits.is_match("٣"));
    }

    #[test]
    fn validates_the_oas_subset() {
        let o = oas();
        let resp = o.schema_at("/components/schemas/Resp").unwrap().clone();
        assert!(o
            .validate(&resp, &json!({"authenticationId": "abc"}))
            .is_empty());
        assert_eq!(o.validate(&resp, &json!({})).len(), 1);
        assert_eq!(
            o.validate(&resp, &json!({"authenticationId": "x".repeat(37)}))
                .len(),
            1
        );
        assert_eq!(o.validate(&resp, &json!([])).len(), 1);
        let err = o.schema_at("#/components/schemas/Err").unwrap().clone();
        assert!(o
            .validate(
                &err,
                &json!({"authenticationId": "a", "code": "A", "n": "+34600000001"})
            )
            .is_empty());
        assert_eq!(
            o.validate(
                &err,
                &json!({"authenticationId": "a", "code": "C", "n": "3301"})
            )
            .len(),
            2
        );
        assert_eq!(
            o.request_property(
                "POST",
                "/one-time-password-sms/v1/send-code",
                &["phoneNumber"]
            ),
            Some(&json!({"type": "string"}))
        );
        assert_eq!(
            o.request_property("POST", "/one-time-password-sms/v1/other", &["phoneNumber"]),
            None
        );
        assert_eq!(
            o.operation("sendCode"),
            Some(("POST".into(), "/one-time-password-sms/v1/send-code".into()))
        );
    }
}
