//! The HTTP exchange a scenario builds and sends, and what came back. Any status is a
//! response here (a 4xx is what most scenarios expect), only transport failures are errors.

use std::fmt;
use std::time::Duration;

use serde_json::Value;

/// A request being assembled by the steps.
#[derive(Debug, Clone, Default)]
pub struct Request {
    /// HTTP method.
    pub method: String,
    /// Path below the API root.
    pub path: String,
    /// Headers in order; names compared case-insensitively.
    pub headers: Vec<(String, String)>,
    /// The JSON body, or `None` for "the request body is not included".
    pub body: Option<Value>,
    /// A raw body that replaces `body` (e.g. `"{}"` as written, or deliberately broken JSON).
    pub raw_body: Option<String>,
}

impl Request {
    /// Sets a header, replacing any value it had.
    pub fn set_header(&mut self, name: &str, value: &str) {
        self.remove_header(name);
        self.headers.push((name.to_string(), value.to_string()));
    }

    /// Removes a header.
    pub fn remove_header(&mut self, name: &str) {
        self.headers.retain(|(n, _)| !n.eq_ignore_ascii_case(name));
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn body_text(&self) -> Option<String> {
        self.raw_body
            .clone()
            .or_else(|| self.body.as_ref().map(Value::to_string))
    }
}

/// What the server answered.
#[derive(Debug, Clone)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers (lower-cased names).
    pub headers: Vec<(String, String)>,
    /// Raw body.
    pub body: String,
}

impl Response {
    /// A header's value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body as JSON, when it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_str(&self.body).ok()
    }
}

/// Sends requests.
#[derive(Clone)]
pub struct Client {
    agent: ureq::Agent,
    root: String,
}

impl Client {
    /// A client for `root` with a per-request timeout.
    pub fn new(root: &str, timeout: Duration) -> Client {
        Client {
            agent: ureq::AgentBuilder::new()
                .timeout(timeout)
                .redirects(0)
                .build(),
            root: root.trim_end_matches('/').to_string(),
        }
    }

    /// The underlying agent (also used for OAuth2 token requests).
    pub fn agent(&self) -> &ureq::Agent {
        &self.agent
    }

    /// Sends `req`; any HTTP status is an `Ok`.
    pub fn send(&self, req: &Request) -> Result<Response, String> {
        let url = format!("{}{}", self.root, req.path);
        let mut r = self.agent.request(&req.method, &url);
        for (k, v) in &req.headers {
            r = r.set(k, v);
        }
        let result = match req.body_text() {
            Some(body) => r.send_string(&body),
            None => r.call(),
        };
        let res = match result {
            Ok(res) => res,
            Err(ureq::Error::Status(_, res)) => res,
            Err(e) => return Err(format!("{} {url}: {e}", req.method)),
        };
        let status = res.status();
        let headers = res
            .headers_names()
            .into_iter()
            .filter_map(|n| res.header(&n).map(|v| (n.to_lowercase(), v.to_string())))
            .collect();
        let body = res
            .into_string()
            .map_err(|e| format!("reading the body of {url}: {e}"))?;
        Ok(Response {
            status,
            headers,
            body,
        })
    }
}

/// Prints a request with credentials redacted (for failure reports).
pub struct Redacted<'a>(pub &'a Request);

impl fmt::Display for Redacted<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} {}", self.0.method, self.0.path)?;
        for (k, v) in &self.0.headers {
            let v = if k.eq_ignore_ascii_case("authorization") {
                redact_authorization(v)
            } else {
                v.clone()
            };
            writeln!(f, "{k}: {v}")?;
        }
        match self.0.body_text() {
            Some(b) => write!(f, "\n{b}"),
            None => write!(f, "(no body)"),
        }
    }
}

/// Keeps the scheme and the last 4 characters only.
pub fn redact_authorization(v: &str) -> String {
    match v.split_once(' ') {
        Some((scheme, token)) if token.len() > 8 => {
            format!("{scheme} …{}", &token[token.len() - 4..])
        }
        Some((scheme, _)) => format!("{scheme} …"),
        None => "…".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorization_is_redacted_in_reports() {
        let mut r = Request {
            method: "POST".into(),
            path: "/x".into(),
            ..Request::default()
        };
        r.set_header(
            "Authorization",
            "Bearer eyJhbGciOiJFUzI1NiJ9.secret.sig1234",
        );
        let shown = Redacted(&r).to_string();
        assert!(!shown.contains("secret"), "{shown}");
        assert!(shown.contains("Bearer …1234"));
    }

    #[test]
    fn headers_are_case_insensitive_and_replaced() {
        let mut r = Request::default();
        r.set_header("Content-Type", "a");
        r.set_header("content-type", "b");
        assert_eq!(r.headers.len(), 1);
        assert_eq!(r.header("CONTENT-TYPE"), Some("b"));
        r.remove_header("Content-type");
        assert!(r.header("content-type").is_none());
    }
}
