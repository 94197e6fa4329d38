//! Secret material handed to backends. Backends never read Kubernetes Secrets themselves: the
//! operator (or the CLI's config loader) resolves them and passes the values here.

use std::collections::BTreeMap;
use std::fmt;

/// The `data` of a resolved Secret. `Debug` prints the keys only, never the values.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct SecretData {
    values: BTreeMap<String, Vec<u8>>,
}

impl fmt::Debug for SecretData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecretData")
            .field("keys", &self.values.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl SecretData {
    /// Secret data from key/value pairs.
    pub fn new(values: impl IntoIterator<Item = (String, Vec<u8>)>) -> Self {
        Self {
            values: values.into_iter().collect(),
        }
    }

    /// Whether there are no keys.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// The value of `key` as UTF-8 text, trimmed; `None` when absent, blank or not UTF-8.
    pub fn text(&self, key: &str) -> Option<String> {
        let value = std::str::from_utf8(self.values.get(key)?).ok()?.trim();
        (!value.is_empty()).then(|| value.to_owned())
    }

    /// The first non-blank value among `keys`, in order.
    pub fn first_text(&self, keys: &[&str]) -> Option<String> {
        keys.iter().find_map(|key| self.text(key))
    }

    /// Every non-blank value, for redacting them from error messages.
    pub fn values(&self) -> Vec<String> {
        self.values
            .values()
            .filter_map(|v| std::str::from_utf8(v).ok())
            .map(str::trim)
            .filter(|v| v.len() >= 3)
            .map(str::to_owned)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_shows_keys_not_values() {
        let data = SecretData::new([("password".to_owned(), b"hunter22".to_vec())]);
        let printed = format!("{data:?}");
        assert!(printed.contains("password"));
        assert!(!printed.contains("hunter22"));
    }

    #[test]
    fn first_text_skips_blank_values() {
        let data = SecretData::new([
            ("dsn".to_owned(), b"  ".to_vec()),
            ("url".to_owned(), b" postgres://x \n".to_vec()),
        ]);
        assert_eq!(data.first_text(&["dsn", "url"]).as_deref(), Some("postgres://x"));
        assert_eq!(data.text("missing"), None);
    }
}
