//! Reading "the value received in the SMS": from an HTTP inbox (otp-gateway's sandbox), from a
//! log file an SMSC writes, or by asking the tester. The code is cut out of the SMS text by
//! matching the text against the template that was sent.

use std::io::{BufRead, Write};
use std::time::{Duration, Instant};

use regex::Regex;
use serde_json::Value;

use crate::env::InboxConfig;

/// A compiled template: the text around `{{code}}` must match exactly.
pub struct CodeExtractor(Regex);

impl CodeExtractor {
    /// Builds the matcher for `template` (which holds `{{code}}` at least once).
    pub fn new(template: &str) -> Result<CodeExtractor, String> {
        let escaped = regex::escape(template);
        let placeholder = regex::escape("{{code}}");
        if !escaped.contains(&placeholder) {
            return Err("the message template has no {{code}}".into());
        }
        // Only the first placeholder captures (`regex` has no back-references, so later ones
        // are matched as any code-shaped word).
        let pattern = escaped
            .replacen(&placeholder, "(?P<code>[[:alnum:]]{1,10})", 1)
            .replace(&placeholder, "[[:alnum:]]{1,10}");
        Regex::new(&format!("(?s){pattern}"))
            .map(CodeExtractor)
            .map_err(|e| e.to_string())
    }

    /// The code inside `text`, if the text was rendered from this template.
    pub fn extract(&self, text: &str) -> Option<String> {
        self.0
            .captures(text)
            .and_then(|c| c.name("code"))
            .map(|m| m.as_str().to_string())
    }
}

/// Where codes are read.
pub struct Inbox {
    config: InboxConfig,
    agent: ureq::Agent,
}

impl Inbox {
    /// An inbox reader.
    pub fn new(config: InboxConfig, agent: ureq::Agent) -> Inbox {
        Inbox { config, agent }
    }

    /// Waits up to 10 s for an SMS to `phone` rendered from `template`, and returns its code.
    /// `seen` is how many matching messages were there before the send, so an older SMS is
    /// never mistaken for the new one.
    pub fn code_for(&self, phone: &str, template: &str, seen: usize) -> Result<String, String> {
        CodeExtractor::new(template)?;
        if let InboxConfig::Prompt = self.config {
            return prompt(phone);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let codes = self.codes(phone, template)?;
            if codes.len() > seen {
                // Newest first.
                if let Some(c) = codes.first() {
                    return Ok(c.clone());
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no new SMS matching the template arrived for {phone} within 10 s"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// How many messages for `phone` match `template` now.
    pub fn count(&self, phone: &str, template: &str) -> Result<usize, String> {
        Ok(self.codes(phone, template)?.len())
    }

    /// Codes of the messages for `phone` rendered from `template`, newest first.
    pub fn codes(&self, phone: &str, template: &str) -> Result<Vec<String>, String> {
        if let InboxConfig::Prompt = self.config {
            return Ok(Vec::new());
        }
        let extractor = CodeExtractor::new(template)?;
        Ok(self
            .texts(phone)?
            .iter()
            .filter_map(|t| extractor.extract(t))
            .collect())
    }

    /// Texts sent to `phone`, newest first.
    fn texts(&self, phone: &str) -> Result<Vec<String>, String> {
        match &self.config {
            InboxConfig::Http { url } => {
                let url = url.replace("{phoneNumber}", &phone.replace('+', "%2B"));
                let res = self
                    .agent
                    .get(&url)
                    .call()
                    .map_err(|e| format!("inbox {url}: {e}"))?;
                let text = res.into_string().map_err(|e| format!("inbox {url}: {e}"))?;
                let v: Value = serde_json::from_str(&text)
                    .map_err(|e| format!("inbox {url}: not JSON ({e})"))?;
                Ok(v.as_array()
                    .map(|a| {
                        a.iter()
                            .filter(|m| m["phoneNumber"].as_str().is_none_or(|p| p == phone))
                            .filter_map(|m| m["text"].as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default())
            }
            InboxConfig::File { path } => {
                let text = std::fs::read_to_string(path)
                    .map_err(|e| format!("inbox file {}: {e}", path.display()))?;
                Ok(text
                    .lines()
                    .rev()
                    .filter(|l| l.contains(phone))
                    .map(str::to_string)
                    .collect())
            }
            InboxConfig::Prompt => Ok(Vec::new()),
        }
    }
}

fn prompt(phone: &str) -> Result<String, String> {
    let mut out = std::io::stderr();
    let _ = write!(out, "Code received on {phone}: ");
    let _ = out.flush();
    let mut line = String::new();
    std::io::stdin()
        .lock()
        .read_line(&mut line)
        .map_err(|e| format!("reading the code from stdin: {e}"))?;
    let code = line.trim().to_string();
    if code.is_empty() {
        return Err("no code entered".into());
    }
    Ok(code)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_cut_out_of_texts_rendered_from_the_template() {
        let x = CodeExtractor::new("{{code}} is your code (do not share {{code}}).").unwrap();
        assert_eq!(
            x.extract("123456 is your code (do not share 123456).")
                .as_deref(),
            Some("123456")
        );
        assert_eq!(x.extract("hello"), None);
        // A log line around the text still matches.
        let x = CodeExtractor::new("Code: {{code}}").unwrap();
        assert_eq!(
            x.extract("INFO SMS to +34600000001: Code: AJY3").as_deref(),
            Some("AJY3")
        );
        assert!(CodeExtractor::new("no placeholder").is_err());
    }
}
