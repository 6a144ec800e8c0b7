//! A set of E.164 prefixes as a digit trie: a lookup walks at most the number's 15 digits,
//! whatever the number of prefixes (an operator's numbering plan or a portability export can
//! hold 100,000 ranges; a list scan would cost a comparison per range per request).

/// Prefixes (`+` and digits) stored as a trie of decimal digits.
#[derive(Debug, Clone, Default)]
pub struct PrefixSet {
    /// Node 0 is the root; `children[d]` is the index of the child for digit `d`, 0 for none
    /// (the root is never a child).
    nodes: Vec<Node>,
    len: usize,
}

#[derive(Debug, Clone, Copy, Default)]
struct Node {
    children: [u32; 10],
    /// A prefix ends here.
    terminal: bool,
}

fn digits(s: &str) -> impl Iterator<Item = usize> + '_ {
    s.strip_prefix('+')
        .unwrap_or(s)
        .bytes()
        .filter(u8::is_ascii_digit)
        .map(|b| usize::from(b - b'0'))
}

impl PrefixSet {
    /// The set of `prefixes` (validated `+digits` strings).
    pub fn new<'a>(prefixes: impl IntoIterator<Item = &'a str>) -> PrefixSet {
        let mut set = PrefixSet {
            nodes: vec![Node::default()],
            len: 0,
        };
        for p in prefixes {
            set.insert(p);
        }
        set
    }

    fn insert(&mut self, prefix: &str) {
        let mut at = 0usize;
        for d in digits(prefix) {
            let next = self.nodes[at].children[d];
            at = if next == 0 {
                let index = self.nodes.len();
                self.nodes.push(Node::default());
                // More than 4 billion nodes is beyond any numbering plan (and any memory).
                self.nodes[at].children[d] = u32::try_from(index).unwrap_or(u32::MAX);
                index
            } else {
                next as usize
            };
        }
        if !self.nodes[at].terminal {
            self.nodes[at].terminal = true;
            self.len += 1;
        }
    }

    /// Number of distinct prefixes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when the set holds no prefix.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// True when some prefix of the set starts `number` (`+digits`).
    pub fn matches(&self, number: &str) -> bool {
        let Some(root) = self.nodes.first() else {
            return false;
        };
        if root.terminal {
            return true;
        }
        let mut at = 0usize;
        for d in digits(number) {
            match self.nodes[at].children[d] {
                0 => return false,
                next => at = next as usize,
            }
            if self.nodes[at].terminal {
                return true;
            }
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_number_matches_when_any_prefix_starts_it() {
        let set = PrefixSet::new(["+346", "+34900", "+4915", "+346"]);
        assert_eq!(set.len(), 3);
        assert!(set.matches("+34600000001"));
        assert!(set.matches("+34900123456"));
        assert!(set.matches("+491511111111"));
        assert!(!set.matches("+34800000001"));
        assert!(!set.matches("+3490"), "shorter than the prefix");
        assert!(!set.matches("+49160000000"));
        assert!(!PrefixSet::default().matches("+34600000001"));
        assert!(
            PrefixSet::new(["+"]).matches("+1"),
            "a bare + is every number"
        );
    }

    #[test]
    fn a_hundred_thousand_prefixes_answer_like_a_list_scan() {
        // Six-digit ranges under +34 6xx, every seventh one: 100,000 prefixes.
        let prefixes: Vec<String> = (0..100_000u32)
            .map(|i| format!("+346{:06}", i * 7))
            .collect();
        let set = PrefixSet::new(prefixes.iter().map(String::as_str));
        assert_eq!(set.len(), 100_000);
        for n in (0..5_000u32).map(|i| format!("+346{:06}{:02}", i * 3, i % 100)) {
            let scan = prefixes.iter().any(|p| n.starts_with(p.as_str()));
            assert_eq!(set.matches(&n), scan, "{n}");
        }
    }
}
