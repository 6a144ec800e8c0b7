//! The CAMARA step vocabulary: every sentence of the official One Time Password SMS v1.1.0 and
//! v1.1.1 files (typos included), of the Commonalities C02 file, the generic Commonalities
//! forms, and the few sentences our own feature files add. Each sentence is a regular
//! expression and a function over [`World`]; values come from the environment file or are
//! generated from the OAS document, never written here.

use std::sync::OnceLock;
use std::time::Duration;

use regex::{Captures, Regex};
use serde_json::{json, Map, Value};

use crate::env::Environment;
use crate::generate::{self, Choices};
use crate::http::{Client, Redacted, Request, Response};
use crate::inbox::Inbox;
use crate::schema::Oas;
use crate::tokens::{Role, Tokens};

/// A send-code this scenario made (in set-up steps or as its main request).
#[derive(Debug, Clone)]
pub struct Sent {
    /// Number the code went to.
    pub phone: String,
    /// Template used.
    pub message: String,
    /// The authenticationId returned.
    pub id: String,
    /// Messages for that number matching the template before the send.
    pub seen: usize,
    /// The code, once read.
    pub code: Option<String>,
}

/// Everything a scenario's steps share.
pub struct World<'a> {
    /// The environment.
    pub env: &'a Environment,
    /// HTTP client.
    pub client: &'a Client,
    /// Token cache.
    pub tokens: &'a mut Tokens,
    /// Code reader.
    pub inbox: &'a Inbox,
    /// OAS document for schema checks.
    pub oas: Option<&'a Oas>,
    /// This scenario's phone number.
    pub phone: String,
    /// The request being built.
    pub request: Request,
    /// The last response of the main request.
    pub response: Option<Response>,
    /// Responses of a batch of concurrent requests.
    pub batch: Vec<Response>,
    /// send-code calls made so far.
    pub sends: Vec<Sent>,
    /// Every exchange, for the failure report.
    pub transcript: Vec<String>,
    /// The data table under the current step.
    pub table: Option<Vec<Vec<String>>>,
    /// The doc string under the current step.
    pub docstring: Option<String>,
    /// Choices for generated values.
    pub choices: Choices,
}

type Handler = fn(&mut World<'_>, &Captures<'_>) -> Result<(), String>;

fn steps() -> &'static [(Regex, Handler)] {
    static STEPS: OnceLock<Vec<(Regex, Handler)>> = OnceLock::new();
    STEPS.get_or_init(|| {
        let table: Vec<(&str, Handler)> = vec![
            // Background and request set-up.
            (r#"^an environment at "([^"]*)"$"#, |_, _| Ok(())),
            (r#"^the resource "([^"]+)"[\s|]*$"#, |w, c| {
                w.request.path = c[1].to_string();
                Ok(())
            }),
            // A three-legged token (Commonalities C02.03): the environment names its client.
            (r#"^the header "([^"]+)" is set to a valid access token identifying a phone number$"#, |w, c| bearer(w, &c[1], Role::Named(THREE_LEGGED.into()))),
            (r#"^the header "([^"]+)" is set to a valid access token without the required scope$"#, |w, c| bearer(w, &c[1], Role::WithoutScope)),
            (r#"^the header "([^"]+)" is set to a valid access token of another client$"#, |w, c| bearer(w, &c[1], Role::OtherClient)),
            (r#"^the header "([^"]+)" is set to a valid access token of client "([^"]+)"$"#, |w, c| bearer(w, &c[1], Role::Named(c[2].to_string()))),
            (r#"^the header "([^"]+)" is set to a valid access token.*$"#, |w, c| bearer(w, &c[1], Role::Valid)),
            (r#"^the header "([^"]+)" is set to an expired( access token)?$"#, |w, c| bearer(w, &c[1], Role::Expired)),
            (r#"^the header "([^"]+)" is set to an invalid access token$"#, |w, c| {
                let junk = format!("eyJhbGciOiJFUzI1NiJ9.eyJzdWIiOiJub2JvZHkifQ.{}", uuid::Uuid::new_v4().simple());
                w.request.set_header(&c[1], &format!("Bearer {junk}"));
                Ok(())
            }),
            (r#"^the header "([^"]+)" is set to a UUID value$"#, |w, c| {
                w.request.set_header(&c[1], &uuid::Uuid::new_v4().to_string());
                Ok(())
            }),
            (r#"^the header "([^"]+)" is set to "([^"]*)"$"#, set_header),
            (r#"^the header "([^"]+)" is set as "([^"]*)"$"#, set_header),
            (r#"^the header "([^"]+)" is set$"#, |w, c| {
                if c[1].eq_ignore_ascii_case("authorization") {
                    bearer(w, &c[1], Role::Valid)
                } else if w.request.header(&c[1]).is_none() {
                    w.request.set_header(&c[1], &uuid::Uuid::new_v4().to_string());
                    Ok(())
                } else {
                    Ok(())
                }
            }),
            (r#"^the header "([^"]+)" complies with the schema at "([^"]+)"$"#, |w, c| {
                let value = generated(w, &c[2], true)?;
                let text = match &value {
                    Value::String(s) => s.clone(),
                    other => other.to_string(),
                };
                w.request.set_header(&c[1], &text);
                Ok(())
            }),
            (r#"^the header "([^"]+)" is removed$"#, |w, c| {
                w.request.remove_header(&c[1]);
                Ok(())
            }),
            (r#"^the request body is set by default to a request body compliant with the schema$"#, |w, _| {
                w.request.raw_body = None;
                w.request.body = Some(default_body(w));
                Ok(())
            }),
            (r#"^the request body is not included$"#, |w, _| {
                w.request.body = None;
                w.request.raw_body = None;
                Ok(())
            }),
            (r#"^the request body is set to "(.*)"$"#, |w, c| {
                let text = unescape(&c[1]);
                match serde_json::from_str::<Value>(&text) {
                    Ok(v) => {
                        w.request.body = Some(v);
                        w.request.raw_body = None;
                    }
                    Err(_) => w.request.raw_body = Some(text),
                }
                Ok(())
            }),
            (r#"^the request body property "([^"]+)" is set to config_var: ?"([^"]+)"$"#, |w, c| {
                let v = config_var(w, &c[2])?;
                set_property(w, &c[1], v)
            }),
            (r#"^the request body property "([^"]+)" is longer than config_var: ?"([^"]+)"$"#, |w, c| {
                let n = config_var(w, &c[2])?
                    .as_u64()
                    .ok_or_else(|| format!("config_var {} is not a number", &c[2]))? as usize;
                // Still valid in every other respect, so only the length can be at fault.
                let value = if c[1].ends_with("message") {
                    format!("{}{{{{code}}}}", "x".repeat(n + 1 - "{{code}}".len()))
                } else {
                    "x".repeat(n + 1)
                };
                set_property(w, &c[1], json!(value))
            }),
            (r#"^the request body property "([^"]+)" is not valued$"#, |w, c| remove_property(w, &c[1])),
            (r#"^the request body property "([^"]+)" is not included$"#, |w, c| remove_property(w, &c[1])),
            (r#"^the request body is set to:$"#, |w, _| {
                let text = w.docstring.clone().ok_or("this step needs a doc string with the body")?;
                match serde_json::from_str::<Value>(&text) {
                    Ok(v) => {
                        w.request.body = Some(v);
                        w.request.raw_body = None;
                    }
                    Err(_) => w.request.raw_body = Some(text),
                }
                Ok(())
            }),
            (r#"^the request body property "([^"]+)" does not comply with the OAS schema at "([^"]+)"$"#, |w, c| {
                let v = generated(w, &c[2], false)?;
                set_property(w, &c[1], v)
            }),
            (r#"^the request body property "([^"]+)" is set to a valid phone number$"#, |w, c| {
                let phone = w.phone.clone();
                set_property(w, &c[1], json!(phone))
            }),
            (r#"^the request body property "([^"]+)" is compliant with the schema but does not identify a valid phone number$"#, |w, c| {
                let n = w.env.numbers.not_found.clone().ok_or("the environment has no numbers.not_found")?;
                complies_with_request_schema(w, &c[1], &json!(n))?;
                set_property(w, &c[1], json!(n))
            }),
            (r#"^that the service is not available for all phone numbers commercialized by the operator$"#, |w, _| match &w.env.numbers.service_not_applicable {
                Some(_) => Ok(()),
                None => Err("the environment has no numbers.service_not_applicable (the service is offered to every number)".into()),
            }),
            (r#"^a valid phone number, identified by the token or provided in the request body, for which the service is not applicable$"#, |w, _| number(w, "$.phoneNumber", "service_not_applicable")),

            (r#"^the request body property "([^"]+)" is set to a phone number that cannot receive SMS$"#, |w, c| number(w, &c[1], "cannot_receive_sms")),
            (r#"^the request body property "([^"]+)" is set to a phone number that target a landline$"#, |w, c| number(w, &c[1], "landline")),
            (r#"^the request body property "([^"]+)" is set to a phone number that (that )?has an active SMS barring$"#, |w, c| number(w, &c[1], "barred")),
            (r#"^the request body property "([^"]+)" is set to a phone number that did not belong to the operator$"#, |w, c| number(w, &c[1], "other_operator")),
            (r#"^\(config_var:"max_send"-1\) of send-code requests for this phone number ha(s|ve) been submitted$"#, |w, _| {
                let n = w.env.config_vars.max_send.saturating_sub(1);
                let phone = body_str(w, "phoneNumber").unwrap_or_else(|| w.phone.clone());
                let message = body_str(w, "message").unwrap_or_else(|| w.env.config_vars.message.clone());
                for i in 0..n {
                    let res = send_code(w, &phone, &message)?;
                    if res.status != 200 {
                        return Err(format!("set-up send-code #{} answered {}: {}", i + 1, res.status, res.body));
                    }
                }
                Ok(())
            }),
            (r#"^an authenticationId has been retrieved from a send-code request$"#, |w, _| {
                // The official files then validate "this" id without naming the property, so
                // on validate-code the body carries it from here on.
                let (phone, message) = (w.phone.clone(), w.env.config_vars.message.clone());
                expect_sent(w, &phone, &message)?;
                if w.request.path.ends_with("validate-code") {
                    let last = last_send(w)?;
                    let id = w.sends[last].id.clone();
                    set_property(w, "$.authenticationId", json!(id))?;
                }
                Ok(())
            }),
            (r#"^(Two|Three) send-code requests? ha(s|ve) been sequentially triggered for the same phoneNumber$"#, |w, c| {
                let n = if &c[1] == "Two" { 2 } else { 3 };
                let (phone, message) = (w.phone.clone(), w.env.config_vars.message.clone());
                for _ in 0..n {
                    expect_sent(w, &phone, &message)?;
                }
                Ok(())
            }),
            (r#"^the request body property "([^"]+)" is set to the (value |code )?received in the SMS for (this|the) (first|second|third) request$"#, |w, c| {
                let i = match &c[4] { "first" => 0, "second" => 1, _ => 2 };
                let code = code_of(w, i)?;
                set_property(w, &c[1], json!(code))
            }),
            (r#"^the request body property "([^"]+)" is set to the (value |code )?received in the SMS$"#, |w, c| {
                let last = last_send(w)?;
                let code = code_of(w, last)?;
                set_property(w, &c[1], json!(code))
            }),
            (r#"^the request body property "([^"]+)" is set to a value distinct from the value received in the SMS$"#, |w, c| {
                let last = last_send(w)?;
                let code = code_of(w, last)?;
                set_property(w, &c[1], json!(distinct(&code)))
            }),
            (r#"^the request body property "([^"]+)" is set to a format valid value$"#, |w, c| set_property(w, &c[1], json!("123456"))),
            (r#"^(the )?request body property "([^"]+)" is set to the value from send-code request$"#, |w, c| {
                // Some scenarios start here, with no send-code made yet: make one.
                if w.sends.is_empty() {
                    let (phone, message) = (w.phone.clone(), w.env.config_vars.message.clone());
                    expect_sent(w, &phone, &message)?;
                }
                let last = last_send(w)?;
                let id = w.sends[last].id.clone();
                set_property(w, &c[2], json!(id))
            }),
            (r#"^(the )?request body property "([^"]+)" is set to the value got for the (first|second|third) send-code request$"#, |w, c| {
                let i = match &c[3] { "first" => 0, "second" => 1, _ => 2 };
                let id = w.sends.get(i).map(|s| s.id.clone()).ok_or("not enough send-code requests were made")?;
                set_property(w, &c[2], json!(id))
            }),
            (r#"^(the )?request body property "([^"]+)" is valued again with this authenticationId$"#, |w, c| {
                let last = last_send(w)?;
                let id = w.sends[last].id.clone();
                set_property(w, &c[2], json!(id))
            }),
            (r#"^the request body property "([^"]+)" is set to an unknown value$"#, |w, c| set_property(w, &c[1], json!(uuid::Uuid::new_v4().to_string()))),
            (r#"^the request body property "([^"]+)" is set to "(.*)"$"#, |w, c| set_property(w, &c[1], json!(unescape(&c[2])))),
            (r#"^the request body property "([^"]+)" is set as "(.*)"$"#, |w, c| set_property(w, &c[1], json!(unescape(&c[2])))),
            (r#"^an? validate-code has been succes+fully performed for an? authenticationId$"#, |w, _| {
                let (phone, message) = (w.phone.clone(), w.env.config_vars.message.clone());
                expect_sent(w, &phone, &message)?;
                let last = last_send(w)?;
                let code = code_of(w, last)?;
                let id = w.sends[last].id.clone();
                let res = validate_code(w, &id, &code)?;
                if res.status != 204 {
                    return Err(format!("set-up validate-code answered {}: {}", res.status, res.body));
                }
                Ok(())
            }),
            (r#"^the time elapsed since the send-code exceeds? the allowed time$"#, |w, _| {
                std::thread::sleep(w.env.config_vars.expiry_wait);
                Ok(())
            }),
            (r#"^\(config_var:"max_try"-1\) calls with the request body property "\$\.code" set to a value distinct from the value received in the SMS were performed$"#, |w, _| {
                let last = last_send(w)?;
                let code = code_of(w, last)?;
                let id = body_str(w, "authenticationId").unwrap_or_else(|| w.sends[last].id.clone());
                for i in 0..w.env.config_vars.max_try.saturating_sub(1) {
                    let res = validate_code(w, &id, &distinct(&code))?;
                    if res.status != 400 {
                        return Err(format!("wrong-code attempt #{} answered {}: {}", i + 1, res.status, res.body));
                    }
                }
                Ok(())
            }),
            // Sending.
            (r#"^the HTTP "([A-Z]+)" request is sent$"#, |w, c| send(w, &c[1])),
            (r#"^the request "([^"]+)" is sent$"#, |w, c| {
                let (method, path) = w
                    .oas
                    .and_then(|o| o.operation(&c[1]))
                    .ok_or_else(|| format!("operationId {} not in the OAS document", &c[1]))?;
                w.request.path = path;
                send(w, &method)
            }),
            (r#"^(\d+) concurrent requests are sent with the code received in the SMS$"#, |w, c| {
                let n: usize = c[1].parse().map_err(|_| "bad count")?;
                let last = last_send(w)?;
                let code = code_of(w, last)?;
                set_property(w, "$.code", json!(code))?;
                let mut req = w.request.clone();
                req.method = "POST".into();
                let client = w.client.clone();
                let handles: Vec<_> = (0..n)
                    .map(|_| {
                        let (client, req) = (client.clone(), req.clone());
                        std::thread::spawn(move || client.send(&req))
                    })
                    .collect();
                w.batch.clear();
                for h in handles {
                    let res = h.join().map_err(|_| "a request thread panicked")??;
                    w.batch.push(res);
                }
                Ok(())
            }),
            (r#"^(\d+) requests are sent in quick succession$"#, |w, c| {
                let n: usize = c[1].parse().map_err(|_| "bad count")?;
                w.batch.clear();
                for _ in 0..n {
                    let res = w.client.send(&w.request)?;
                    w.batch.push(res);
                }
                Ok(())
            }),
            // Checks.
            (r#"^the response status code is (\d+)$"#, |w, c| {
                let res = response(w)?;
                expect_eq(res.status.to_string(), c[1].to_string(), "status code")
            }),
            (r#"^the response property "\$\.status" is (\d+)$"#, |w, c| {
                // Also used on 200/204 answers, which have no `status` member: the HTTP status
                // must match, and a body `status`, when there is one, too.
                let res = response(w)?;
                expect_eq(res.status.to_string(), c[1].to_string(), "status code")?;
                match res.json().as_ref().and_then(|b| b.get("status")) {
                    Some(v) => expect_eq(v.to_string(), c[1].to_string(), "$.status"),
                    None => Ok(()),
                }
            }),
            (r#"^the response property "([^"]+)" is (-?\d+)$"#, |w, c| {
                let v = property(response(w)?, &c[1])?;
                expect_eq(v.to_string(), c[2].to_string(), &c[1])
            }),
            (r#"^the response property "([^"]+)" is "(.*)"$"#, |w, c| {
                let v = property(response(w)?, &c[1])?;
                expect_eq(v.as_str().unwrap_or_default().to_string(), c[2].to_string(), &c[1])
            }),
            (r#"^the response property "([^"]+)" contains a user friendly text$"#, |w, c| {
                let v = property(response(w)?, &c[1])?;
                match v.as_str() {
                    Some(s) if !s.trim().is_empty() => Ok(()),
                    _ => Err(format!("{} is not a non-empty text: {v}", &c[1])),
                }
            }),
            (r#"^the response property "([^"]+)" exists$"#, |w, c| property(response(w)?, &c[1]).map(|_| ())),
            (r#"^the response property "([^"]+)" does not exist$"#, |w, c| match property(response(w)?, &c[1]) {
                Ok(v) => Err(format!("{} exists: {v}", &c[1])),
                Err(_) => Ok(()),
            }),
            (r#"^the response header "([^"]+)" has same value as the request header "([^"]+)"$"#, |w, c| {
                let sent = w.request.header(&c[2]).map(str::to_string);
                let got = response(w)?.header(&c[1]).map(str::to_string);
                match sent {
                    Some(s) if !s.is_empty() => expect_eq(got.unwrap_or_default(), s, &c[1]),
                    _ => Ok(()),
                }
            }),
            (r#"^the response header "([^"]+)" is "(.*)"$"#, |w, c| {
                let got = response(w)?.header(&c[1]).unwrap_or_default().to_string();
                if c[1].eq_ignore_ascii_case("content-type") {
                    // Media types compare without parameters (`; charset=utf-8` is tolerated).
                    let essence = got.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
                    expect_eq(essence, c[2].to_ascii_lowercase(), &c[1])
                } else {
                    expect_eq(got, c[2].to_string(), &c[1])
                }
            }),
            (r#"^the response header "([^"]+)" exists$"#, |w, c| match response(w)?.header(&c[1]) {
                Some(v) if !v.is_empty() => Ok(()),
                _ => Err(format!("no {} header", &c[1])),
            }),
            (r#"^the response header "([^"]+)" does not exist$"#, |w, c| match response(w)?.header(&c[1]) {
                Some(v) => Err(format!("{} header present: {v}", &c[1])),
                None => Ok(()),
            }),
            (r#"^the response body complies with the OAS schema at "([^"]+)"$"#, |w, c| {
                let oas = w.oas.ok_or("no OAS document configured (set `oas` in the environment)")?;
                let schema = oas.schema_at(&c[1]).ok_or_else(|| format!("{} not in the OAS document", &c[1]))?;
                let body = response(w)?.json().ok_or("the response body is not JSON")?;
                let errors = oas.validate(schema, &body);
                if errors.is_empty() { Ok(()) } else { Err(errors.join("; ")) }
            }),
            (r#"^exactly (\d+) of the responses ha(s|ve) status (\d+)$"#, |w, c| {
                let n = w.batch.iter().filter(|r| r.status.to_string() == c[3]).count();
                expect_eq(n.to_string(), c[1].to_string(), "responses with that status")
            }),
            (r#"^at least one of the responses has status (\d+) and property "([^"]+)" "(.*)"$"#, |w, c| {
                let hit = w.batch.iter().any(|r| {
                    r.status.to_string() == c[1]
                        && property(r, &c[2]).is_ok_and(|v| v.as_str() == Some(&c[3]))
                });
                if hit { Ok(()) } else { Err(format!("no response with status {} and {} {}: {:?}", &c[1], &c[2], &c[3], w.batch.iter().map(|r| r.status).collect::<Vec<_>>())) }
            }),
            (r#"^the other responses have status (\d+) and property "([^"]+)" "(.*)"$"#, |w, c| {
                for r in w.batch.iter().filter(|r| r.status >= 300) {
                    expect_eq(r.status.to_string(), c[1].to_string(), "status")?;
                    let v = property(r, &c[2])?;
                    expect_eq(v.as_str().unwrap_or_default().to_string(), c[3].to_string(), &c[2])?;
                }
                Ok(())
            }),
        ];
        table
            .into_iter()
            .filter_map(|(re, f)| Regex::new(re).ok().map(|r| (r, f)))
            .collect()
    })
}

/// Number of sentences in the vocabulary (each regular expression compiled).
pub fn vocabulary_size() -> usize {
    steps().len()
}

/// Strips the keyword (`Given`, `When`, `Then`, `And`, `But`, `*`) and surrounding blanks.
pub fn sentence(step: &str) -> &str {
    let s = step.trim();
    for kw in ["Given ", "When ", "Then ", "And ", "But ", "* "] {
        if let Some(rest) = s.strip_prefix(kw) {
            return rest.trim();
        }
    }
    s
}

/// True when some definition matches the step.
pub fn is_defined(step: &str) -> bool {
    let s = sentence(step);
    steps().iter().any(|(re, _)| re.is_match(s))
}

/// Runs one step.
pub fn run(world: &mut World<'_>, step: &str) -> Result<(), String> {
    let s = sentence(step);
    for (re, f) in steps() {
        if let Some(c) = re.captures(s) {
            return f(world, &c);
        }
    }
    Err(format!("undefined step: {s}"))
}

/// Gherkin strings escape `"` and `\` with a backslash.
fn unescape(s: &str) -> String {
    s.replace("\\\"", "\"").replace("\\\\", "\\")
}

/// `[auth.named.NAME]` client whose tokens identify a phone number (three-legged).
pub const THREE_LEGGED: &str = "three-legged";

/// A value (not) complying with the schema at `pointer` of the OAS document.
fn generated(w: &mut World<'_>, pointer: &str, complying: bool) -> Result<Value, String> {
    let oas = w
        .oas
        .ok_or("no OAS document configured (set `oas` in the environment)")?;
    let schema = oas
        .schema_at(pointer)
        .ok_or_else(|| format!("{pointer} not in the OAS document"))?;
    if complying {
        generate::compliant(oas, schema, &mut w.choices)
    } else {
        generate::non_compliant(oas, schema, &mut w.choices)
    }
}

/// Checks a value against the schema the OAS document gives the request body property of the
/// operation being built (when a document is configured).
fn complies_with_request_schema(w: &World<'_>, path: &str, value: &Value) -> Result<(), String> {
    let Some(oas) = w.oas else { return Ok(()) };
    let keys = segments(path)?;
    let Some(schema) = oas.request_property(&w.request.method, &w.request.path, &keys) else {
        return Err(format!(
            "{path} is not a request body property of {} {} in the OAS document",
            w.request.method, w.request.path
        ));
    };
    let errors = oas.validate(schema, value);
    if errors.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "{value} does not comply with the schema: {}",
            errors.join("; ")
        ))
    }
}

fn set_header(w: &mut World<'_>, c: &Captures<'_>) -> Result<(), String> {
    w.request.set_header(&c[1], &c[2]);
    Ok(())
}

fn bearer(w: &mut World<'_>, header: &str, role: Role) -> Result<(), String> {
    let token = w.tokens.get(role)?;
    w.request.set_header(header, &format!("Bearer {token}"));
    Ok(())
}

fn default_body(w: &World<'_>) -> Value {
    if w.request.path.ends_with("validate-code") {
        // Well-formed but never issued, and a code no implementation would have sent.
        json!({"authenticationId": uuid::Uuid::new_v4().to_string(), "code": "Z9Z9"})
    } else {
        json!({"phoneNumber": w.phone, "message": w.env.config_vars.message})
    }
}

fn config_var(w: &World<'_>, name: &str) -> Result<Value, String> {
    let v = &w.env.config_vars;
    Ok(match name {
        "phone_number" => json!(w.phone),
        "message" => json!(v.message),
        "max_lenght" | "max_length" => json!(v.max_lenght),
        "max_try" => json!(v.max_try),
        "max_send" => json!(v.max_send),
        other => match v.other.get(other) {
            Some(toml::Value::String(s)) => json!(s),
            Some(toml::Value::Integer(i)) => json!(i),
            Some(x) => json!(x.to_string()),
            None => return Err(format!("config_var {other:?} is not in the environment")),
        },
    })
}

fn number(w: &mut World<'_>, path: &str, role: &str) -> Result<(), String> {
    let n = &w.env.numbers;
    let v = match role {
        "cannot_receive_sms" => n.cannot_receive_sms.clone(),
        "landline" => n.landline.clone(),
        "barred" => n.barred.clone(),
        "service_not_applicable" => n.service_not_applicable.clone(),
        _ => n.other_operator.clone(),
    }
    .ok_or_else(|| format!("the environment has no numbers.{role}"))?;
    set_property(w, path, json!(v))
}

fn segments(path: &str) -> Result<Vec<&str>, String> {
    let rest = path
        .strip_prefix("$.")
        .ok_or_else(|| format!("unsupported JSON path {path}"))?;
    Ok(rest.split('.').collect())
}

fn set_property(w: &mut World<'_>, path: &str, value: Value) -> Result<(), String> {
    let keys = segments(path)?;
    w.request.raw_body = None;
    let mut cur = w
        .request
        .body
        .get_or_insert_with(|| Value::Object(Map::new()));
    for (i, k) in keys.iter().enumerate() {
        if !cur.is_object() {
            *cur = Value::Object(Map::new());
        }
        let obj = cur.as_object_mut().ok_or("not an object")?;
        if i + 1 == keys.len() {
            obj.insert((*k).to_string(), value);
            return Ok(());
        }
        cur = obj
            .entry((*k).to_string())
            .or_insert_with(|| Value::Object(Map::new()));
    }
    Ok(())
}

fn remove_property(w: &mut World<'_>, path: &str) -> Result<(), String> {
    let keys = segments(path)?;
    let mut cur = match w.request.body.as_mut() {
        Some(b) => b,
        None => return Ok(()),
    };
    for (i, k) in keys.iter().enumerate() {
        let Some(obj) = cur.as_object_mut() else {
            return Ok(());
        };
        if i + 1 == keys.len() {
            obj.remove(*k);
            return Ok(());
        }
        match obj.get_mut(*k) {
            Some(next) => cur = next,
            None => return Ok(()),
        }
    }
    Ok(())
}

fn body_str(w: &World<'_>, key: &str) -> Option<String> {
    w.request
        .body
        .as_ref()?
        .get(key)?
        .as_str()
        .map(str::to_string)
}

fn property(res: &Response, path: &str) -> Result<Value, String> {
    let body = res
        .json()
        .ok_or_else(|| format!("the response body is not JSON: {:?}", res.body))?;
    let mut cur = &body;
    for k in segments(path)? {
        cur = cur
            .get(k)
            .ok_or_else(|| format!("{path} not in the response {body}"))?;
    }
    Ok(cur.clone())
}

fn response<'w>(w: &'w World<'_>) -> Result<&'w Response, String> {
    w.response
        .as_ref()
        .ok_or_else(|| "no request was sent yet".to_string())
}

fn expect_eq(got: String, want: String, what: &str) -> Result<(), String> {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}: expected {want}, got {got}"))
    }
}

/// A code of the same shape that differs in every position.
pub fn distinct(code: &str) -> String {
    code.chars()
        .map(|c| match c {
            '0'..='8' => char::from(c as u8 + 1),
            '9' => '0',
            'a'..='y' | 'A'..='Y' => char::from(c as u8 + 1),
            'z' => 'a',
            'Z' => 'A',
            _ => '0',
        })
        .collect()
}

fn send(w: &mut World<'_>, method: &str) -> Result<(), String> {
    w.request.method = method.to_string();
    let is_send_code = w.request.path.ends_with("send-code") && method == "POST";
    let phone = body_str(w, "phoneNumber");
    let message = body_str(w, "message");
    let seen = match (&phone, &message, is_send_code) {
        (Some(p), Some(m), true) => w.inbox.count(p, m).unwrap_or(0),
        _ => 0,
    };
    let res = w.client.send(&w.request)?;
    w.transcript.push(format!(
        "{}\n-> {} {}\n",
        Redacted(&w.request),
        res.status,
        res.body
    ));
    if let (true, 200, Some(p), Some(m)) = (is_send_code, res.status, phone, message) {
        if let Some(id) = res
            .json()
            .and_then(|b| b["authenticationId"].as_str().map(str::to_string))
        {
            w.sends.push(Sent {
                phone: p,
                message: m,
                id,
                seen,
                code: None,
            });
        }
    }
    w.response = Some(res);
    Ok(())
}

/// A set-up POST outside the scenario's own request: valid token, fresh correlator, and the
/// exchange kept for the report.
fn side_post(w: &mut World<'_>, operation: &str, body: Value) -> Result<Response, String> {
    let mut req = Request {
        method: "POST".into(),
        path: resource(w, operation),
        headers: Vec::new(),
        body: Some(body),
        raw_body: None,
    };
    req.set_header("Content-Type", "application/json");
    req.set_header("x-correlator", &uuid::Uuid::new_v4().to_string());
    let token = w.tokens.get(Role::Valid)?;
    req.set_header("Authorization", &format!("Bearer {token}"));
    let res = w.client.send(&req)?;
    w.transcript.push(format!(
        "(set-up)\n{}\n-> {} {}\n",
        Redacted(&req),
        res.status,
        res.body
    ));
    Ok(res)
}

fn resource(w: &World<'_>, operation: &str) -> String {
    let p = &w.request.path;
    match p.rfind('/') {
        Some(i) => format!("{}/{operation}", &p[..i]),
        None => format!("/{operation}"),
    }
}

fn send_code(w: &mut World<'_>, phone: &str, message: &str) -> Result<Response, String> {
    let seen = w.inbox.count(phone, message)?;
    let res = side_post(
        w,
        "send-code",
        json!({"phoneNumber": phone, "message": message}),
    )?;
    if res.status == 200 {
        let id = res
            .json()
            .and_then(|b| b["authenticationId"].as_str().map(str::to_string))
            .ok_or("send-code answered 200 without an authenticationId")?;
        w.sends.push(Sent {
            phone: phone.into(),
            message: message.into(),
            id,
            seen,
            code: None,
        });
    }
    Ok(res)
}

fn expect_sent(w: &mut World<'_>, phone: &str, message: &str) -> Result<(), String> {
    let res = send_code(w, phone, message)?;
    if res.status == 200 {
        Ok(())
    } else {
        Err(format!(
            "set-up send-code answered {}: {}",
            res.status, res.body
        ))
    }
}

fn validate_code(w: &mut World<'_>, id: &str, code: &str) -> Result<Response, String> {
    let res = side_post(
        w,
        "validate-code",
        json!({"authenticationId": id, "code": code}),
    )?;
    Ok(res)
}

fn last_send(w: &World<'_>) -> Result<usize, String> {
    w.sends
        .len()
        .checked_sub(1)
        .ok_or_else(|| "no send-code request was made in this scenario".to_string())
}

fn code_of(w: &mut World<'_>, i: usize) -> Result<String, String> {
    let sent = w
        .sends
        .get(i)
        .ok_or("that send-code request was not made")?
        .clone();
    if let Some(c) = sent.code {
        return Ok(c);
    }
    // Later sends to the same number are also in the inbox: count only up to this one.
    let later = w.sends[i + 1..]
        .iter()
        .filter(|s| s.phone == sent.phone)
        .count();
    let code = if later == 0 {
        w.inbox.code_for(&sent.phone, &sent.message, sent.seen)?
    } else {
        nth_code(w, &sent, later)?
    };
    w.sends[i].code = Some(code.clone());
    Ok(code)
}

fn nth_code(w: &World<'_>, sent: &Sent, newer: usize) -> Result<String, String> {
    // Wait for all the newer messages, then take the one `newer` positions back.
    let total = sent.seen + 1 + newer;
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        if w.inbox.count(&sent.phone, &sent.message)? >= total {
            let codes = w.inbox.codes(&sent.phone, &sent.message)?;
            return codes
                .get(newer)
                .cloned()
                .ok_or_else(|| "code not found".to_string());
        }
        if std::time::Instant::now() > deadline {
            return Err(format!("the SMS for {} did not arrive", sent.phone));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_sentence_compiles_and_distinct_codes_differ_everywhere() {
        assert!(vocabulary_size() >= 45, "{}", vocabulary_size());
        assert_eq!(distinct("123459"), "234560");
        assert_eq!(distinct("AJY3z"), "BKZ4a");
        assert_eq!(
            sentence("Then  the response property \"$.status\" is 401"),
            "the response property \"$.status\" is 401"
        );
    }

    #[test]
    fn the_official_sentences_are_all_defined() {
        for s in [
            "Given an environment at \"apiRoot\"",
            "And the resource \"/one-time-password-sms/v1/send-code\"                                                              |",
            "And the header \"Authorization\" is set to a valid access token",
            "Given the header \"Authorization\" is set to an expired",
            "And request body property \"$.authenticationId\" is set to the value got for the first send-code request",
            "And a validate-code has been succesfully performed for a authenticationId",
            "And (config_var:\"max_send\"-1) of send-code requests for this phone number has been submitted",
            "And the request body property \"$.message\" is longer than config_var:\"max_lenght\"",
            "And the request body property \"$.phoneNumber\" is set to a phone number that that has an active SMS barring",
            "And the request body property \"$.code\" is set to the received in the SMS",
            "Then the response body complies with the OAS schema at \"/components/schemas/SendCodeResponse\"",
            "And the header \"x-correlator\" complies with the schema at \"#/components/schemas/XCorrelator\"",
            "And the request body property \"$.phoneNumber\" does not comply with the OAS schema at \"/components/schemas/PhoneNumber\"",
            "And  the request body property \"$.phoneNumber\" is set to a valid phone number",
            "Given the header \"Authorization\" is set to a valid access token identifying a phone number",
            "And the request body property \"$.phoneNumber\" is not included",
            "Given the request body is set to:",
        ] {
            assert!(is_defined(s), "{s}");
        }
        assert!(!is_defined("Given something nobody wrote"));
    }
}
