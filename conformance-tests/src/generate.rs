//! Values made from a schema of the OAS document, for steps such as `the header "x-correlator"
//! complies with the schema at "#/components/schemas/XCorrelator"` and `the request body
//! property "$.phoneNumber" does not comply with the OAS schema at "…"`. Nothing here knows a
//! field: a string is built from the schema's `pattern` (walking the regular expression), then
//! checked against the whole schema, so what the runner sends is what the document says.
//!
//! Generated strings are varied on purpose: each run picks a fresh offset, and a repetition of
//! a character class takes a character from each of the class's ranges before drawing the rest,
//! so a correlator built from `^[a-zA-Z0-9-_:;.\/<>{}]{0,256}$` carries the punctuation a
//! v1.1.1 server must accept.

use regex_syntax::hir::{Class, Hir, HirKind};
use serde_json::{json, Value};

use crate::schema::{ecma_to_rust, Oas};

/// Length chosen for an open or long repetition (that of a UUID, the usual correlator).
const PREFERRED_REPEAT: u32 = 36;

/// A source of choices; `offset` varies the value from run to run.
#[derive(Debug, Clone, Copy)]
pub struct Choices {
    offset: u64,
}

impl Choices {
    /// Choices from a fresh random offset.
    pub fn random() -> Choices {
        let b = uuid::Uuid::new_v4().into_bytes();
        let mut x = [0u8; 8];
        x.copy_from_slice(&b[..8]);
        Choices {
            offset: u64::from_le_bytes(x),
        }
    }

    /// Choices from a given offset (reproducible values in tests).
    pub fn seeded(offset: u64) -> Choices {
        Choices { offset }
    }

    fn pick(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        let i = (self.offset % n as u64) as usize;
        self.offset = self
            .offset
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407)
            .rotate_left(17);
        i
    }
}

/// A value complying with `schema` (a `$ref` is followed).
pub fn compliant(oas: &Oas, schema: &Value, choices: &mut Choices) -> Result<Value, String> {
    let s = oas.resolve(schema);
    let value = candidate(oas, s, choices)?;
    let errors = oas.validate(schema, &value);
    if errors.is_empty() {
        Ok(value)
    } else {
        Err(format!(
            "cannot build a value complying with {s}: {}",
            errors.join("; ")
        ))
    }
}

fn candidate(oas: &Oas, s: &Value, choices: &mut Choices) -> Result<Value, String> {
    if let Some(first) = s
        .get("enum")
        .and_then(Value::as_array)
        .and_then(|e| e.first())
    {
        return Ok(first.clone());
    }
    if let Some(all) = s.get("allOf").and_then(Value::as_array) {
        // The first part that has a type decides; the others are checked by validate.
        if let Some(part) = all.iter().find(|p| oas.resolve(p).get("type").is_some()) {
            return candidate(oas, oas.resolve(part), choices);
        }
    }
    match s.get("type").and_then(Value::as_str) {
        Some("string") | None => string(s, choices).map(Value::String),
        Some("integer") => Ok(json!(s.get("minimum").and_then(Value::as_i64).unwrap_or(1))),
        Some("number") => Ok(json!(s
            .get("minimum")
            .and_then(Value::as_f64)
            .unwrap_or(1.0))),
        Some("boolean") => Ok(json!(true)),
        Some(other) => s
            .get("example")
            .cloned()
            .ok_or_else(|| format!("no value can be made for a schema of type {other}")),
    }
}

fn string(s: &Value, choices: &mut Choices) -> Result<String, String> {
    let min = s.get("minLength").and_then(Value::as_u64).unwrap_or(0) as usize;
    let max = s
        .get("maxLength")
        .and_then(Value::as_u64)
        .map(|m| m as usize);
    let mut text = match s.get("pattern").and_then(Value::as_str) {
        Some(p) => {
            let hir = regex_syntax::Parser::new()
                .parse(&ecma_to_rust(p))
                .map_err(|e| format!("pattern {p}: {e}"))?;
            let mut out = String::new();
            sample(&hir, choices, &mut out);
            out
        }
        None => s
            .get("example")
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| "x".repeat(min.max(1))),
    };
    if let Some(max) = max {
        text = text.chars().take(max).collect();
    }
    while text.chars().count() < min {
        text.push('x');
    }
    Ok(text)
}

/// Appends a string the expression matches.
pub fn sample(hir: &Hir, choices: &mut Choices, out: &mut String) {
    match hir.kind() {
        HirKind::Empty | HirKind::Look(_) => {}
        HirKind::Literal(l) => out.push_str(&String::from_utf8_lossy(&l.0)),
        HirKind::Class(c) => {
            if let Some(ch) = class_char(c, choices) {
                out.push(ch);
            }
        }
        HirKind::Repetition(r) => {
            let upper = r.max.unwrap_or(u32::MAX);
            let n = PREFERRED_REPEAT.clamp(r.min, upper.max(r.min)) as usize;
            if let HirKind::Class(c) = r.sub.kind() {
                out.extend(class_run(c, n, choices));
            } else {
                for _ in 0..n {
                    sample(&r.sub, choices, out);
                }
            }
        }
        HirKind::Capture(c) => sample(&c.sub, choices, out),
        HirKind::Concat(parts) => parts.iter().for_each(|p| sample(p, choices, out)),
        HirKind::Alternation(alts) => {
            let i = choices.pick(alts.len());
            sample(&alts[i], choices, out);
        }
    }
}

/// The class's ranges, printable ASCII first: header values and JSON strings both take it as
/// is.
fn ranges(c: &Class) -> Vec<(u32, u32)> {
    let all: Vec<(u32, u32)> = match c {
        Class::Unicode(u) => u
            .ranges()
            .iter()
            .map(|r| (r.start() as u32, r.end() as u32))
            .collect(),
        Class::Bytes(b) => b
            .ranges()
            .iter()
            .map(|r| (u32::from(r.start()), u32::from(r.end())))
            .collect(),
    };
    let printable: Vec<(u32, u32)> = all
        .iter()
        .filter_map(|&(a, b)| {
            let (a, b) = (a.max(0x21), b.min(0x7e));
            (a <= b).then_some((a, b))
        })
        .collect();
    if printable.is_empty() {
        all
    } else {
        printable
    }
}

fn in_range((a, b): (u32, u32), choices: &mut Choices) -> Option<char> {
    char::from_u32(a + choices.pick((b - a + 1) as usize) as u32)
}

fn class_char(c: &Class, choices: &mut Choices) -> Option<char> {
    let pool = ranges(c);
    let i = choices.pick(pool.len());
    pool.get(i).and_then(|&r| in_range(r, choices))
}

/// `n` characters of a class: one from each range first (so every kind of character the class
/// allows shows up when `n` leaves room), the rest drawn evenly over all its characters, then
/// shuffled.
fn class_run(c: &Class, n: usize, choices: &mut Choices) -> Vec<char> {
    let pool = ranges(c);
    let total: usize = pool.iter().map(|(a, b)| (b - a + 1) as usize).sum();
    let rotation = choices.pick(pool.len());
    let mut run: Vec<char> = Vec::with_capacity(n);
    for i in 0..n {
        let range = if i < pool.len() {
            pool[(rotation + i) % pool.len()]
        } else {
            // The k-th character over all ranges.
            let mut k = choices.pick(total) as u32;
            let mut found = pool[0];
            for &(a, b) in &pool {
                if k <= b - a {
                    found = (a + k, a + k);
                    break;
                }
                k -= b - a + 1;
            }
            found
        };
        if let Some(ch) = in_range(range, choices) {
            run.push(ch);
        }
    }
    for i in (1..run.len()).rev() {
        let j = choices.pick(i + 1);
        run.swap(i, j);
    }
    run
}

/// A value of the schema's type that does not comply with it (the pattern or a length
/// bound is broken, or, failing that, the type).
pub fn non_compliant(oas: &Oas, schema: &Value, choices: &mut Choices) -> Result<Value, String> {
    let s = oas.resolve(schema);
    let good = candidate(oas, s, choices)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let mut tries: Vec<Value> = Vec::new();
    if good.chars().count() > 1 {
        tries.push(json!(good.chars().skip(1).collect::<String>()));
    }
    tries.push(json!(format!("!{good}")));
    tries.push(json!(format!("{good} ")));
    tries.push(json!(""));
    if let Some(max) = s.get("maxLength").and_then(Value::as_u64) {
        tries.push(json!("x".repeat(max as usize + 1)));
    }
    tries.push(json!(12345));
    tries
        .into_iter()
        .find(|v| !oas.validate(schema, v).is_empty())
        .ok_or_else(|| format!("every value tried complies with {s}"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    fn official(version: &str) -> Option<Oas> {
        let p = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(format!(
            "../../shared/camara/one-time-password-sms-{version}.yaml"
        ));
        if !p.exists() {
            println!("SKIPPED: {} not found", p.display());
            return None;
        }
        Some(Oas::load(&p).unwrap())
    }

    /// Generates many correlators from the document's schema and checks each with a regex built
    /// from the pattern as written there.
    fn correlators_comply(oas: &Oas, pointer: &str, pattern: &str) -> Vec<String> {
        let schema = oas.schema_at(pointer).unwrap().clone();
        assert_eq!(oas.resolve(&schema)["pattern"], pattern);
        let re = regex::Regex::new(&ecma_to_rust(pattern)).unwrap();
        (0..200u64)
            .map(|seed| {
                let v = compliant(oas, &schema, &mut Choices::seeded(seed)).unwrap();
                let text = v.as_str().unwrap().to_string();
                assert!(re.is_match(&text), "{text:?} does not match {pattern}");
                text
            })
            .collect()
    }

    #[test]
    fn a_v1_1_1_correlator_complies_with_its_pattern_and_uses_the_new_characters() {
        let Some(oas) = official("v1.1.1") else {
            return;
        };
        let all = correlators_comply(
            &oas,
            "#/components/schemas/XCorrelator",
            r"^[a-zA-Z0-9-_:;.\/<>{}]{0,256}$",
        );
        // The v1.1.1 pattern grew beyond the v1.1.0 one: generated values must show it.
        let old = regex::Regex::new("^[a-zA-Z0-9-]{0,55}$").unwrap();
        assert!(all.iter().all(|v| !old.is_match(v)), "{all:?}");
        // Each character v1.1.1 added shows up.
        for c in "_:;./<>{}".chars() {
            assert!(all.iter().any(|v| v.contains(c)), "no value has {c}");
        }
        assert!(all.windows(2).any(|w| w[0] != w[1]));
    }

    #[test]
    fn a_v1_1_0_correlator_complies_with_its_pattern() {
        let Some(oas) = official("v1.1.0") else {
            return;
        };
        // v1.1.0 has no XCorrelator schema; the header's schema sits under components/headers.
        assert!(oas.schema_at("#/components/schemas/XCorrelator").is_none());
        let all = correlators_comply(
            &oas,
            "#/components/headers/x-correlator/schema",
            "^[a-zA-Z0-9-]{0,55}$",
        );
        assert!(all.iter().any(|v| v.contains('-')));
    }

    #[test]
    fn a_non_compliant_phone_number_is_still_a_string_and_breaks_the_pattern() {
        let oas = Oas::from_value(json!({"components": {"schemas": {
            "PhoneNumber": {"type": "string", "pattern": "^\\+[1-9][0-9]{4,14}$"},
            "Short": {"type": "string", "maxLength": 3}
        }}}));
        for seed in 0..50 {
            let schema = json!({"$ref": "#/components/schemas/PhoneNumber"});
            let good = compliant(&oas, &schema, &mut Choices::seeded(seed)).unwrap();
            assert!(oas.validate(&schema, &good).is_empty());
            let bad = non_compliant(&oas, &schema, &mut Choices::seeded(seed)).unwrap();
            assert!(bad.is_string(), "{bad}");
            assert!(!oas.validate(&schema, &bad).is_empty(), "{bad}");
        }
        let short = json!({"$ref": "#/components/schemas/Short"});
        let bad = non_compliant(&oas, &short, &mut Choices::seeded(1)).unwrap();
        assert!(bad.as_str().unwrap().len() > 3, "{bad}");
    }
}
