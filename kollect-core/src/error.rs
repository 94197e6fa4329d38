//! The error taxonomy shared by sinks, collectors, metrics and status conditions.

use std::fmt;

/// How a failure should be treated: the one classification used from sinks up to status
/// conditions and the `reason` label of `kollect_sink_errors_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum ErrorClass {
    /// May succeed when tried again (network, timeouts, throttling, a busy backend).
    Transient,
    /// Will fail again until configuration or content changes (bad credentials, invalid
    /// settings, a payload that cannot fit).
    Terminal,
    /// The operator lacks permission (Kubernetes RBAC or a backend's authorisation).
    Forbidden,
}

impl ErrorClass {
    /// `transient`, `terminal` or `forbidden`, as used in metric labels.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorClass::Transient => "transient",
            ErrorClass::Terminal => "terminal",
            ErrorClass::Forbidden => "forbidden",
        }
    }

    /// Whether retrying without a change can help.
    pub fn is_retryable(self) -> bool {
        self == ErrorClass::Transient
    }

    /// The class of an HTTP status: 408, 425, 429 and 5xx are transient, 403 forbidden, every
    /// other 4xx terminal. Anything else is transient.
    pub fn from_http_status(status: u16) -> ErrorClass {
        match status {
            403 => ErrorClass::Forbidden,
            408 | 425 | 429 => ErrorClass::Transient,
            400..=499 => ErrorClass::Terminal,
            _ => ErrorClass::Transient,
        }
    }

    /// Classifies an error text by well-known phrases (the Go operator's string classifier):
    /// authentication failures and rejected pushes are terminal, transport hiccups transient.
    /// Returns `None` when nothing is recognised.
    pub fn from_message(message: &str) -> Option<ErrorClass> {
        let text = message.to_ascii_lowercase();
        const TERMINAL: &[&str] = &[
            "authentication required",
            "authentication failed",
            "invalid credentials",
            "authorization failed",
            "access denied",
            "403 forbidden",
            "protected branch",
            "pre-receive hook declined",
        ];
        const TRANSIENT: &[&str] = &[
            "connection reset",
            "connection refused",
            "broken pipe",
            "timeout",
            "timed out",
            "temporary failure",
            "too many requests",
        ];
        let terminal = TERMINAL.iter().any(|p| text.contains(p))
            || contains_token(&text, "401")
            || (text.contains("remote rejected") && contains_token(&text, "403"));
        if terminal {
            Some(ErrorClass::Terminal)
        } else if TRANSIENT.iter().any(|p| text.contains(p))
            || ["eof", "503", "429"].iter().any(|t| contains_token(&text, t))
        {
            Some(ErrorClass::Transient)
        } else {
            None
        }
    }
}

/// Whether `token` occurs in `text` without a letter or digit directly before or after it.
fn contains_token(text: &str, token: &str) -> bool {
    text.match_indices(token).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + token.len()..].chars().next();
        !before.is_some_and(char::is_alphanumeric) && !after.is_some_and(char::is_alphanumeric)
    })
}

impl fmt::Display for ErrorClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Removes credentials from text before it goes into an error, a log line or a status.
///
/// Two things are scrubbed: the user-info part of every URL (`https://user:pw@host` becomes
/// `https://***@host`), and every occurrence of the known secret values given to
/// [`Redactor::new`] (replaced by `***`). Secret values shorter than 4 bytes are ignored, since
/// replacing them would mangle unrelated text without protecting anything.
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl fmt::Debug for Redactor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

impl Redactor {
    /// A redactor for these secret values (passwords, tokens, keys, whole DSNs, ...).
    pub fn new<I, S>(secrets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut secrets: Vec<String> = secrets
            .into_iter()
            .map(|s| s.as_ref().to_owned())
            .filter(|s| s.len() >= 4)
            .collect();
        // Longest first, so that a secret containing another is replaced whole.
        secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        secrets.dedup();
        Self { secrets }
    }

    /// Returns `text` with URL user-info and every known secret replaced.
    pub fn scrub(&self, text: &str) -> String {
        let mut out = scrub_userinfo(text);
        for secret in &self.secrets {
            if out.contains(secret.as_str()) {
                out = out.replace(secret.as_str(), "***");
            }
        }
        out
    }
}

/// An error and its sources on one line (`a: b: c`), each source added unless the text
/// already holds it (many errors repeat their source in their own message).
pub fn error_chain(error: &(dyn std::error::Error + 'static)) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        source = inner.source();
    }
    text
}

/// Replaces the user-info of every `scheme://user[:password]@host` in `text` with `***`.
pub(crate) fn scrub_userinfo(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(pos) = rest.find("://") {
        let authority_start = pos + 3;
        out.push_str(&rest[..authority_start]);
        let after = &rest[authority_start..];
        let authority_end = after
            .find(|c: char| matches!(c, '/' | '?' | '#') || c.is_whitespace())
            .unwrap_or(after.len());
        let authority = &after[..authority_end];
        match authority.rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&authority[at..]);
            }
            None => out.push_str(authority),
        }
        rest = &after[authority_end..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn http_status_classes() {
        assert_eq!(ErrorClass::from_http_status(503), ErrorClass::Transient);
        assert_eq!(ErrorClass::from_http_status(429), ErrorClass::Transient);
        assert_eq!(ErrorClass::from_http_status(403), ErrorClass::Forbidden);
        assert_eq!(ErrorClass::from_http_status(401), ErrorClass::Terminal);
        assert_eq!(ErrorClass::from_http_status(404), ErrorClass::Terminal);
        assert_eq!(ErrorClass::from_http_status(500), ErrorClass::Transient);
    }

    #[test]
    fn message_classifier() {
        assert_eq!(
            ErrorClass::from_message("remote: HTTP Basic: Access denied"),
            Some(ErrorClass::Terminal)
        );
        assert_eq!(
            ErrorClass::from_message("failed: 401 Unauthorized"),
            Some(ErrorClass::Terminal)
        );
        assert_eq!(
            ErrorClass::from_message("! [remote rejected] main (403)"),
            Some(ErrorClass::Terminal)
        );
        assert_eq!(
            ErrorClass::from_message("pre-receive hook declined"),
            Some(ErrorClass::Terminal)
        );
        assert_eq!(
            ErrorClass::from_message("read tcp: connection reset by peer"),
            Some(ErrorClass::Transient)
        );
        assert_eq!(
            ErrorClass::from_message("unexpected EOF"),
            Some(ErrorClass::Transient)
        );
        assert_eq!(ErrorClass::from_message("no such table"), None);
        assert_eq!(ErrorClass::from_message("row 14012 is thereof invalid"), None);
    }

    #[test]
    fn userinfo_is_scrubbed_everywhere() {
        assert_eq!(
            scrub_userinfo(
                "clone https://bob:s3cret@git.example.com/r.git failed; retry ssh://git@host:22/x"
            ),
            "clone https://***@git.example.com/r.git failed; retry ssh://***@host:22/x"
        );
        assert_eq!(
            scrub_userinfo("postgres://u:p@db/app?sslmode=require"),
            "postgres://***@db/app?sslmode=require"
        );
        assert_eq!(scrub_userinfo("no url here"), "no url here");
        assert_eq!(scrub_userinfo("https://host/path@x"), "https://host/path@x");
    }

    #[test]
    fn redactor_replaces_secret_values() {
        let r = Redactor::new(["hunter22", "abc", "hunter22-long"]);
        assert_eq!(
            r.scrub("token hunter22-long and hunter22, abc"),
            "token *** and ***, abc"
        );
        assert!(format!("{r:?}").contains("2 secrets"));
        assert!(!format!("{r:?}").contains("hunter"));
    }
}
