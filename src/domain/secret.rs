//! A secret from the configuration (client secrets, the hash key, SMSC passwords): one type,
//! so redaction does not depend on someone remembering a hand-written `Debug`.
//!
//! A newtype rather than `secrecy::SecretString`: it has to be `Clone` (settings are cloned into
//! every route and replica test), print exactly `[redacted]` from both `Debug` and `Display`,
//! and deserialise from a plain string; secrecy gives none of the three without wrappers.

use std::fmt;

/// A value that is never printed (a string by default; key bytes as `Secret<Vec<u8>>`); read
/// it with [`Secret::expose`].
#[derive(Clone, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(transparent)]
pub struct Secret<T = String>(T);

impl<T> Secret<T> {
    /// Wraps a secret value of any type.
    pub fn wrap(value: T) -> Secret<T> {
        Secret(value)
    }

    /// The value itself; call it only where the secret is used, never to log it.
    pub fn expose_value(&self) -> &T {
        &self.0
    }
}

impl Secret {
    /// Wraps a secret string.
    pub fn new(value: impl Into<String>) -> Secret {
        Secret(value.into())
    }

    /// The string itself; call it only where the secret is used, never to log it.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Length in bytes (for "at least N bytes" rules, without exposing the value).
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True for the empty secret.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl From<&str> for Secret {
    fn from(s: &str) -> Secret {
        Secret(s.to_owned())
    }
}

impl From<String> for Secret {
    fn from(s: String) -> Secret {
        Secret(s)
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T> fmt::Display for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn neither_debug_nor_display_shows_the_value() {
        let s = Secret::new("hunter22");
        assert_eq!(
            format!("{s:?} {s} {:?}", Some(&s)),
            "[redacted] [redacted] Some([redacted])"
        );
        assert_eq!(s.expose(), "hunter22");
    }
}
