//! Redaction of sensitive values in extracted attributes and exported resources.
//!
//! A map entry is redacted when its key, lower-cased and trimmed, equals a denied key or ends
//! with a denied key longer than two characters (`API_TOKEN`, `oauth`,
//! `automountServiceAccountToken`; but not `secretName` or `author`). Credential carriers are
//! redacted whole: `valueFrom` holding a `secretKeyRef`, any `secretKeyRef` or `secretRef` map,
//! and a `tls` map with a `key` entry (a `tls` *list*, as in `Ingress.spec.tls`, is left alone).
//! The redacted value is replaced by `{"redacted": true, "reason": "sensitive-key"}`.
//!
//! Only values inside attributes are scrubbed; attribute names themselves are never matched.

use serde_json::{Map, Value, json};

/// The built-in denylist.
pub const DEFAULT_KEYS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "token",
    "apikey",
    "api_key",
    "privatekey",
    "private_key",
    "credential",
    "auth",
    "clientsecret",
    "connectionstring",
];

/// The marker that replaces a redacted value.
pub fn marker(reason: &str) -> Value {
    json!({"redacted": true, "reason": reason})
}

/// A redactor for one denylist (built-in keys plus extras).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scrubber {
    keys: Vec<String>,
}

impl Default for Scrubber {
    fn default() -> Self {
        Self::new(std::iter::empty::<&str>())
    }
}

impl Scrubber {
    /// The built-in keys plus `extra` (trimmed, lower-cased, de-duplicated; blanks ignored).
    pub fn new<I, S>(extra: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let base = Self {
            keys: DEFAULT_KEYS.iter().map(|k| (*k).to_owned()).collect(),
        };
        base.with_extra(extra)
    }

    /// This scrubber with more keys (e.g. a profile's `export.prune.scrubKeys`).
    pub fn with_extra<I, S>(&self, extra: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut merged = self.clone();
        for key in extra {
            let key = key.as_ref().trim().to_lowercase();
            if !key.is_empty() && !merged.keys.contains(&key) {
                merged.keys.push(key);
            }
        }
        merged
    }

    /// Whether values under `key` are redacted.
    pub fn is_sensitive_key(&self, key: &str) -> bool {
        let key = key.trim().to_lowercase();
        self.keys
            .iter()
            .any(|deny| key == *deny || (deny.len() > 2 && key.ends_with(deny.as_str())))
    }

    /// Redacts sensitive entries inside `value`, in place.
    pub fn scrub(&self, value: &mut Value) {
        match value {
            Value::Object(map) => self.scrub_map(map),
            Value::Array(items) => items.iter_mut().for_each(|item| self.scrub(item)),
            _ => {}
        }
    }

    fn scrub_map(&self, map: &mut Map<String, Value>) {
        for (key, value) in map.iter_mut() {
            if self.is_sensitive_key(key) || is_credential_carrier(key, value) {
                *value = marker("sensitive-key");
            } else {
                self.scrub(value);
            }
        }
    }
}

fn is_credential_carrier(key: &str, value: &Value) -> bool {
    let Value::Object(inner) = value else {
        return false;
    };
    match key {
        "valueFrom" => inner.contains_key("secretKeyRef"),
        "secretKeyRef" | "secretRef" => true,
        "tls" => inner.contains_key("key"),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_equal_or_ending_with_a_denied_key() {
        let s = Scrubber::default();
        for key in [
            "password",
            "PASSWORD",
            " token ",
            "API_TOKEN",
            "oauth",
            "automountServiceAccountToken",
            "clientSecret",
            "db_password",
        ] {
            assert!(s.is_sensitive_key(key), "{key}");
        }
        for key in ["secretName", "author", "authority", "tokens", "name", "image"] {
            assert!(!s.is_sensitive_key(key), "{key}");
        }
    }

    #[test]
    fn extra_keys_are_normalised_and_merged() {
        let s = Scrubber::new([" Session ", "", "session"]).with_extra(["ssn"]);
        assert!(s.is_sensitive_key("userSession"));
        assert!(s.is_sensitive_key("SSN"));
        assert_eq!(s.keys.iter().filter(|k| k.as_str() == "session").count(), 1);
        // Short extra keys only match exactly.
        let short = Scrubber::new(["pw"]);
        assert!(short.is_sensitive_key("PW"));
        assert!(!short.is_sensitive_key("npw"));
    }

    #[test]
    fn nested_values_and_credential_carriers() {
        let mut v = json!({
            "env": [
                {"name": "DB_HOST", "value": "db"},
                {"name": "DB_PASS", "valueFrom": {"secretKeyRef": {"name": "db", "key": "pw"}}},
                {"name": "PLAIN", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}
            ],
            "envFrom": [{"secretRef": {"name": "all"}}],
            "tls": {"key": "-----BEGIN", "cert": "x"},
            "ingress": {"tls": [{"hosts": ["a"], "secretName": "cert"}]},
            "config": {"apiKey": "abc", "nested": [{"refresh_token": "t"}]},
            "count": 3
        });
        Scrubber::default().scrub(&mut v);
        let m = marker("sensitive-key");
        assert_eq!(v["env"][0]["value"], "db");
        assert_eq!(v["env"][1]["valueFrom"], m);
        assert_eq!(v["env"][2]["valueFrom"]["fieldRef"]["fieldPath"], "metadata.name");
        assert_eq!(v["envFrom"][0]["secretRef"], m);
        assert_eq!(v["tls"], m);
        assert_eq!(
            v["ingress"]["tls"][0]["secretName"], "cert",
            "a tls list is left alone"
        );
        assert_eq!(v["config"]["apiKey"], m);
        assert_eq!(v["config"]["nested"][0]["refresh_token"], m);
        assert_eq!(v["count"], 3);
    }

    #[test]
    fn scalars_are_untouched() {
        let mut v = json!("password");
        Scrubber::default().scrub(&mut v);
        assert_eq!(v, json!("password"));
    }
}
