//! The CAMARA release the public API follows (`api.camara_version`). The two supported
//! releases of One Time Password SMS v1.1 differ for a client in one rule, the `x-correlator`
//! pattern, and in the published document around it (its `info`, the `XCorrelator` schema).

use serde::Deserialize;

/// A supported release of the CAMARA One Time Password SMS API.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
pub enum CamaraVersion {
    /// Release r2.3 (Spring25), Commonalities 0.5: `x-correlator` is `^[a-zA-Z0-9-]{0,55}$`.
    #[serde(rename = "1.1.0")]
    V1_1_0,
    /// Release r3.2, Commonalities 0.6, the latest public release: `x-correlator` is
    /// `^[a-zA-Z0-9-_:;.\/<>{}]{0,256}$`.
    #[default]
    #[serde(rename = "1.1.1")]
    V1_1_1,
}

impl CamaraVersion {
    /// Every supported release, oldest first.
    pub const ALL: [CamaraVersion; 2] = [CamaraVersion::V1_1_0, CamaraVersion::V1_1_1];

    /// The `info.version` of the release's OpenAPI document, e.g. `1.1.1`.
    pub fn as_str(self) -> &'static str {
        match self {
            CamaraVersion::V1_1_0 => "1.1.0",
            CamaraVersion::V1_1_1 => "1.1.1",
        }
    }

    /// The release with this `info.version`.
    pub fn parse(s: &str) -> Option<CamaraVersion> {
        Self::ALL.into_iter().find(|v| v.as_str() == s)
    }

    /// The Commonalities release the API version belongs to (`x-camara-commonalities`, a
    /// number in the YAML).
    pub fn commonalities(self) -> f64 {
        match self {
            CamaraVersion::V1_1_0 => 0.5,
            CamaraVersion::V1_1_1 => 0.6,
        }
    }

    /// The `x-correlator` pattern exactly as the release's YAML spells it.
    pub fn correlator_pattern(self) -> &'static str {
        match self {
            CamaraVersion::V1_1_0 => r"^[a-zA-Z0-9-]{0,55}$",
            CamaraVersion::V1_1_1 => r"^[a-zA-Z0-9-_:;.\/<>{}]{0,256}$",
        }
    }

    /// Whether `v` matches [`correlator_pattern`](Self::correlator_pattern). A byte-class
    /// check, not a regex: it runs on every request, and both patterns are a set of ASCII
    /// bytes with a length bound (every allowed character is one byte, so bytes = characters).
    pub fn correlator_ok(self, v: &str) -> bool {
        match self {
            CamaraVersion::V1_1_0 => {
                v.len() <= 55 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            }
            // In `[a-zA-Z0-9-_...]` the `-` after a range is a literal, not a range `9-_`.
            CamaraVersion::V1_1_1 => {
                v.len() <= 256
                    && v.bytes().all(|b| {
                        b.is_ascii_alphanumeric()
                            || matches!(
                                b,
                                b'-' | b'_' | b':' | b';' | b'.' | b'/' | b'<' | b'>' | b'{' | b'}'
                            )
                    })
            }
        }
    }
}

impl std::fmt::Display for CamaraVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::CamaraVersion::{self, V1_1_0, V1_1_1};

    #[test]
    fn v1_1_0_allows_letters_digits_and_dashes_up_to_55() {
        assert!(V1_1_0.correlator_ok(""));
        assert!(V1_1_0.correlator_ok("b4333c46-49c0-4f62-80d7-f0ef930f1c46"));
        assert!(V1_1_0.correlator_ok(&"a".repeat(55)));
        assert!(!V1_1_0.correlator_ok(&"a".repeat(56)));
        for bad in ["a_b", "a:b", "a b", "ü", "a.b", "{x}", "app:login/42"] {
            assert!(!V1_1_0.correlator_ok(bad), "{bad}");
        }
    }

    #[test]
    fn v1_1_1_adds_the_punctuation_of_its_pattern_up_to_256() {
        assert!(V1_1_1.correlator_ok(""));
        assert!(V1_1_1.correlator_ok("app:login/42"));
        assert!(V1_1_1.correlator_ok("a-b_c:d;e.f/g<h>i{j}"));
        assert!(V1_1_1.correlator_ok(&"a".repeat(256)));
        assert!(!V1_1_1.correlator_ok(&"a".repeat(257)));
        for bad in [
            "a b", "ü", "a\\b", "a,b", "a=b", "a\"b", "[x]", "a!", "a\tb", "#", "%20",
        ] {
            assert!(!V1_1_1.correlator_ok(bad), "{bad}");
        }
    }

    #[test]
    fn versions_parse_from_their_info_version() {
        for v in CamaraVersion::ALL {
            assert_eq!(CamaraVersion::parse(v.as_str()), Some(v));
        }
        assert_eq!(CamaraVersion::parse("1.1"), None);
        assert_eq!(CamaraVersion::default(), V1_1_1);
    }
}
