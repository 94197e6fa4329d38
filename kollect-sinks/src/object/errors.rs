//! Object store errors in the sink's words: classified for the retry stack, naming the bucket
//! and the operation, and without credentials.
//!
//! | What happened | Class | Message |
//! |---|---|---|
//! | the SSRF guard refused an address | terminal | the guard's reason |
//! | the bucket is missing (on list) | terminal | `… bucket b does not exist …` |
//! | the store refused the credentials (401, S3 `InvalidAccessKeyId`/`SignatureDoesNotMatch`, Azure `AuthenticationFailed`) | terminal | `… the credentials were refused …` |
//! | access denied (403) | forbidden | `… access denied …` |
//! | the server's TLS certificate is not trusted | terminal | `… TLS certificate is not trusted …` |
//! | anything else (connection failures, 5xx, throttling) | transient | the library's text, redacted |

use kollect_core::error::{ErrorClass, Redactor};
use kollect_core::netguard::NetError;
use kollect_core::sink::SinkError;
use object_store::Error;

use super::location::Location;

/// Error codes (and, for Azurite, message text) in a store's response body that mean the
/// credentials themselves are wrong rather than lacking a permission.
const CREDENTIAL_MARKERS: &[&str] = &[
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "AuthenticationFailed",
    "InvalidSecurity",
    "ExpiredToken",
    "failed to authenticate the request",
];

/// What the message of a missing bucket or container says after its name.
pub(super) const MISSING_BUCKET: &str = "does not exist or these credentials cannot see it";

/// Whether `error` (from [`classify`]) says the bucket or container is missing.
pub(super) fn is_missing_bucket(error: &SinkError) -> bool {
    error.message().ends_with(MISSING_BUCKET)
}

/// rustls' words for a server certificate it refused: retrying cannot help.
const CERTIFICATE_MARKERS: &[&str] = &["invalid peer certificate", "UnknownIssuer", "NotValidForName"];

/// Error codes that mean the bucket or container is missing.
const MISSING_BUCKET_MARKERS: &[&str] = &["NoSuchBucket", "ContainerNotFound"];

pub(super) fn classify(
    location: &Location,
    operation: &str,
    error: &Error,
    redactor: &Redactor,
) -> SinkError {
    let kind = location.kind.type_name();
    let what = location.kind.bucket_word();
    let bucket = &location.bucket;
    if let Some(denied) = guard_refusal(error) {
        return SinkError::terminal(format!("{kind} {operation}: {denied}"));
    }
    let detail = redactor.scrub(&kollect_core::error::error_chain(error));
    let status = http_status(&detail);
    let refused = || {
        SinkError::terminal(format!(
            "{kind} {operation}: the credentials were refused by the store (check the keys in spec.secretRef)"
        ))
    };
    if CREDENTIAL_MARKERS.iter().any(|m| detail.contains(m)) || status == Some(401) {
        return refused();
    }
    if CERTIFICATE_MARKERS.iter().any(|m| detail.contains(m)) {
        return SinkError::terminal(format!(
            "{kind} {operation}: the store's TLS certificate is not trusted (add its CA with spec.tls.caBundle or spec.tls.caSecretRef): {detail}"
        ));
    }
    let missing_bucket = MISSING_BUCKET_MARKERS.iter().any(|m| detail.contains(m));
    match error {
        Error::Unauthenticated { .. } => refused(),
        // A list or a write that finds nothing can only be missing the bucket.
        _ if missing_bucket
            || (matches!(operation, "list" | "put")
                && (status == Some(404) || matches!(error, Error::NotFound { .. }))) =>
        {
            SinkError::terminal(format!("{kind} {operation}: {what} {bucket} {MISSING_BUCKET}"))
        }
        _ if matches!(error, Error::PermissionDenied { .. }) || status == Some(403) => SinkError::new(
            ErrorClass::Forbidden,
            format!("{kind} {operation}: access denied to {what} {bucket}"),
        ),
        Error::NotFound { .. } => SinkError::terminal(format!("{kind} {operation}: not found: {detail}")),
        Error::NotSupported { .. } | Error::NotImplemented { .. } | Error::InvalidPath { .. } => {
            SinkError::terminal(format!("{kind} {operation}: {detail}"))
        }
        _ => SinkError::new(
            status.map_or(ErrorClass::Transient, ErrorClass::from_http_status),
            format!("{kind} {operation}: {detail}"),
        ),
    }
}

/// The HTTP status of a failed request, read from the error's text: `object_store` reports
/// it as `Server returned non-2xx status code: 404 Not Found` and does not export the error
/// type that carries it.
fn http_status(detail: &str) -> Option<u16> {
    let (_, rest) = detail.split_once("status code: ")?;
    rest.get(..3)?.parse().ok()
}

/// The SSRF guard's refusal somewhere in `error`'s sources (reqwest reports the resolver's
/// error as a connection failure).
fn guard_refusal(error: &Error) -> Option<String> {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(current) = source {
        if let Some(net) = current.downcast_ref::<NetError>() {
            return Some(net.to_string());
        }
        source = current.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn error(text: &str) -> Error {
        Error::Generic {
            store: "S3",
            source: Box::new(std::io::Error::other(text.to_owned())),
        }
    }

    fn class(text: &str, operation: &str) -> SinkError {
        let location = Location::parse(super::super::StoreKind::S3, "s3://inv").unwrap();
        classify(
            &location,
            operation,
            &error(text),
            &Redactor::new(["hunter2-secret"]),
        )
    }

    #[test]
    fn statuses_and_codes_decide_the_class() {
        let missing = class(
            "Server returned non-2xx status code: 404 Not Found: <Code>NoSuchBucket</Code>",
            "put",
        );
        assert_eq!(missing.class(), ErrorClass::Terminal);
        assert_eq!(
            missing.message(),
            "s3 put: bucket inv does not exist or these credentials cannot see it"
        );
        let refused = class(
            "Server returned non-2xx status code: 403 Forbidden: <Code>SignatureDoesNotMatch</Code>",
            "put",
        );
        assert_eq!(refused.class(), ErrorClass::Terminal);
        let denied = class(
            "Server returned non-2xx status code: 403 Forbidden: <Code>AccessDenied</Code>",
            "put",
        );
        assert_eq!(
            (denied.class(), denied.message()),
            (ErrorClass::Forbidden, "s3 put: access denied to bucket inv")
        );
        assert_eq!(
            class("status code: 503 Slow Down", "put").class(),
            ErrorClass::Transient
        );
        assert_eq!(
            class("status code: 400 Bad Request", "put").class(),
            ErrorClass::Terminal
        );
        assert_eq!(
            class("error sending request: connection refused", "put").class(),
            ErrorClass::Transient
        );
        let scrubbed = class("status code: 500 hunter2-secret leaked", "put");
        assert!(!scrubbed.message().contains("hunter2-secret"), "{scrubbed}");
    }
}
