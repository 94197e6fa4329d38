//! `helm:release.<field>` paths: fields of the Helm release stored in a Helm release Secret.
//!
//! Helm stores a release as `data.release` = base64 (Kubernetes) of base64 (Helm) of gzip of the
//! release JSON. Decoding follows that chain: the second base64 layer is optional (older
//! releases), gzip is applied only when the gzip magic bytes are present, and the decompressed
//! size is capped (decision E8) so a hostile Secret cannot exhaust memory.

use std::io::Read;

use base64::Engine;
use serde_json::Value;

/// Default cap on the decompressed size of one release (Helm's own limit for a release in a
/// Secret is about 1 MiB compressed; manifests compress about 10:1).
pub const DEFAULT_MAX_DECOMPRESSED: usize = 32 * 1024 * 1024;

/// Field aliases and the dotted paths they stand for.
pub const ALIASES: &[(&str, &str)] = &[
    ("releaseName", "name"),
    ("chartName", "chart.metadata.name"),
    ("chartVersion", "chart.metadata.version"),
    ("appVersion", "chart.metadata.appVersion"),
    ("revision", "version"),
    ("status", "info.status"),
    ("lastDeployed", "info.last_deployed"),
    ("namespace", "namespace"),
    ("config", "config"),
];

/// Release fields that may never be exported (with everything below them): they carry
/// rendered manifests, hooks and chart sources.
pub const DENIED: &[&str] = &[
    "manifest",
    "hooks",
    "chart.templates",
    "chart.files",
    "chart.values",
    "chart.raw",
];

/// A validated `helm:release.<field>` reference.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelmField {
    field: String,
    path: Vec<String>,
}

/// Helm path and decoding failures, with the Go operator's texts.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HelmError {
    /// `helm:release.` with nothing after it.
    #[error("empty helm release field")]
    EmptyField,
    /// A denied field.
    #[error("helm release field {0:?} is not exportable")]
    Denied(String),
    /// The object has no `data`.
    #[error("secret has no data")]
    NoData,
    /// `data` is not a map.
    #[error("read secret data: unexpected type")]
    DataNotMap,
    /// `data.release` is missing.
    #[error("secret data.release not found")]
    NoRelease,
    /// `data.release` is not a string.
    #[error("secret data.release has unsupported type {0}")]
    ReleaseType(&'static str),
    /// The Kubernetes base64 layer is invalid.
    #[error("base64 decode data.release: {0}")]
    Base64(String),
    /// The gzip header is invalid.
    #[error("gzip decode release: {0}")]
    GzipHeader(String),
    /// The gzip stream is invalid or too large.
    #[error("read gzip release: {0}")]
    GzipRead(String),
    /// The release is not JSON.
    #[error("json decode release: {0}")]
    Json(String),
    /// The path goes through something that is not an object.
    #[error("accessor error: {value} is of the type {kind}, expected map[string]interface{{}}")]
    Accessor {
        /// The value in the way (shortened).
        value: String,
        /// Its Go type name.
        kind: &'static str,
    },
}

impl HelmField {
    /// Parses the part after `helm:release.`; aliases expand, denied fields are refused.
    pub fn parse(field: &str) -> Result<Self, HelmError> {
        let field = field.trim();
        if field.is_empty() {
            return Err(HelmError::EmptyField);
        }
        let denied = |f: &str| DENIED.iter().any(|d| f == *d || f.starts_with(&format!("{d}.")));
        if denied(field) {
            return Err(HelmError::Denied(field.to_owned()));
        }
        let resolved = ALIASES
            .iter()
            .find(|(alias, _)| *alias == field)
            .map_or(field, |(_, path)| *path);
        if denied(resolved) {
            return Err(HelmError::Denied(field.to_owned()));
        }
        Ok(Self {
            field: field.to_owned(),
            path: resolved.split('.').map(str::to_owned).collect(),
        })
    }

    /// Whether the field reads the release `config` (user-supplied values, which can hold
    /// secrets; admission treats it as Secret data).
    pub fn reads_config(&self) -> bool {
        self.path.first().is_some_and(|p| p == "config")
    }

    /// Looks the field up in a decoded release: missing is null.
    pub fn lookup(&self, release: &Value) -> Result<Value, HelmError> {
        let mut node = release;
        for segment in &self.path {
            match node {
                Value::Object(map) => match map.get(segment) {
                    Some(next) => node = next,
                    None => return Ok(Value::Null),
                },
                Value::Null => return Ok(Value::Null),
                other => {
                    let mut text = other.to_string();
                    text.truncate(64);
                    return Err(HelmError::Accessor {
                        value: text,
                        kind: go_type(other),
                    });
                }
            }
        }
        Ok(node.clone())
    }
}

fn go_type(value: &Value) -> &'static str {
    match value {
        Value::Null => "<nil>",
        Value::Bool(_) => "bool",
        Value::Number(n) if n.is_f64() => "float64",
        Value::Number(_) => "int64",
        Value::String(_) => "string",
        Value::Array(_) => "[]interface {}",
        Value::Object(_) => "map[string]interface {}",
    }
}

/// Decodes the release stored in a Helm release Secret.
pub fn decode_release(secret: &Value, max_decompressed: usize) -> Result<Value, HelmError> {
    let data = secret.get("data").ok_or(HelmError::NoData)?;
    let data = data.as_object().ok_or(HelmError::DataNotMap)?;
    let release = data.get("release").ok_or(HelmError::NoRelease)?;
    let Value::String(encoded) = release else {
        return Err(HelmError::ReleaseType(go_type(release)));
    };
    let standard = base64::engine::general_purpose::STANDARD;
    let outer = standard
        .decode(encoded.trim())
        .map_err(|e| HelmError::Base64(e.to_string()))?;
    // Helm's own base64 layer; releases written without it are used as they are.
    let inner = standard.decode(outer.trim_ascii()).unwrap_or(outer);
    let json = if inner.len() > 3 && inner.starts_with(&[0x1f, 0x8b, 0x08]) {
        gunzip(&inner, max_decompressed)?
    } else {
        inner
    };
    serde_json::from_slice(&json).map_err(|e| HelmError::Json(e.to_string()))
}

fn gunzip(bytes: &[u8], max: usize) -> Result<Vec<u8>, HelmError> {
    let mut decoder = flate2::read::GzDecoder::new(bytes);
    if decoder.header().is_none() {
        // The header is parsed lazily; a first read surfaces a broken one.
        let mut probe = [0u8; 0];
        decoder
            .read(&mut probe)
            .map_err(|e| HelmError::GzipHeader(e.to_string()))?;
    }
    let mut out = Vec::new();
    let limit = u64::try_from(max).unwrap_or(u64::MAX).saturating_add(1);
    decoder
        .take(limit)
        .read_to_end(&mut out)
        .map_err(|e| HelmError::GzipRead(e.to_string()))?;
    if out.len() > max {
        return Err(HelmError::GzipRead(format!(
            "decompressed release exceeds the limit of {max} bytes"
        )));
    }
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::Write;

    use super::*;
    use serde_json::json;

    pub(crate) fn release_json() -> Value {
        json!({
            "name": "shop",
            "namespace": "apps",
            "version": 3,
            "info": {"status": "deployed", "last_deployed": "2026-11-20T10:00:00Z"},
            "chart": {"metadata": {"name": "shop-chart", "version": "1.2.3", "appVersion": "2.0.0"}, "templates": [{"name": "x"}]},
            "config": {"replicas": 2, "db": {"password": "hunter2"}},
            "manifest": "---\nkind: Deployment"
        })
    }

    pub(crate) fn secret_with(release: &[u8], helm_base64: bool, gzip: bool) -> Value {
        let standard = base64::engine::general_purpose::STANDARD;
        let mut bytes = release.to_vec();
        if gzip {
            let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            enc.write_all(&bytes).unwrap();
            bytes = enc.finish().unwrap();
        }
        if helm_base64 {
            bytes = standard.encode(&bytes).into_bytes();
        }
        json!({"apiVersion": "v1", "kind": "Secret", "type": "helm.sh/release.v1", "data": {"release": standard.encode(&bytes)}})
    }

    fn field(f: &str) -> Result<Value, HelmError> {
        let secret = secret_with(release_json().to_string().as_bytes(), true, true);
        HelmField::parse(f)?.lookup(&decode_release(&secret, DEFAULT_MAX_DECOMPRESSED)?)
    }

    #[test]
    fn aliases_and_raw_paths() {
        assert_eq!(field("releaseName"), Ok(json!("shop")));
        assert_eq!(field("chartName"), Ok(json!("shop-chart")));
        assert_eq!(field("chartVersion"), Ok(json!("1.2.3")));
        assert_eq!(field("appVersion"), Ok(json!("2.0.0")));
        assert_eq!(field("revision"), Ok(json!(3)));
        assert_eq!(field("status"), Ok(json!("deployed")));
        assert_eq!(field("lastDeployed"), Ok(json!("2026-11-20T10:00:00Z")));
        assert_eq!(field("namespace"), Ok(json!("apps")));
        assert_eq!(field("config.replicas"), Ok(json!(2)));
        assert_eq!(field("info.missing"), Ok(Value::Null));
        assert!(HelmField::parse("config").unwrap().reads_config());
    }

    #[test]
    fn integers_above_2_pow_53_keep_every_digit() {
        // Go decodes release JSON into float64, so 9007199254740993 became 9007199254740992.
        let release = json!({"name": "r", "config": {"big": 9_007_199_254_740_993i64}});
        let secret = secret_with(release.to_string().as_bytes(), true, false);
        let decoded = decode_release(&secret, DEFAULT_MAX_DECOMPRESSED).unwrap();
        assert_eq!(
            HelmField::parse("config.big").unwrap().lookup(&decoded),
            Ok(json!(9_007_199_254_740_993i64))
        );
    }

    #[test]
    fn denied_and_empty_fields() {
        for denied in [
            "manifest",
            "hooks",
            "chart.templates",
            "chart.files.x",
            "chart.values",
            "chart.raw",
        ] {
            assert_eq!(
                HelmField::parse(denied),
                Err(HelmError::Denied(denied.to_owned()))
            );
        }
        assert_eq!(
            HelmError::Denied("manifest".into()).to_string(),
            "helm release field \"manifest\" is not exportable"
        );
        assert_eq!(HelmField::parse(" "), Err(HelmError::EmptyField));
        assert!(HelmField::parse("chart.metadata").is_ok());
    }

    #[test]
    fn decode_chain_variants() {
        let raw = release_json().to_string();
        for (helm_b64, gzip) in [(true, true), (false, true), (true, false), (false, false)] {
            let secret = secret_with(raw.as_bytes(), helm_b64, gzip);
            assert_eq!(
                decode_release(&secret, DEFAULT_MAX_DECOMPRESSED).unwrap()["name"],
                "shop",
                "{helm_b64} {gzip}"
            );
        }
    }

    #[test]
    fn decode_errors_have_the_reference_texts() {
        let err = |v: Value| {
            decode_release(&v, DEFAULT_MAX_DECOMPRESSED)
                .unwrap_err()
                .to_string()
        };
        assert_eq!(err(json!({})), "secret has no data");
        assert_eq!(err(json!({"data": "x"})), "read secret data: unexpected type");
        assert_eq!(err(json!({"data": {}})), "secret data.release not found");
        assert_eq!(
            err(json!({"data": {"release": 5}})),
            "secret data.release has unsupported type int64"
        );
        assert!(err(json!({"data": {"release": "%%%"}})).starts_with("base64 decode data.release: "));
        let standard = base64::engine::general_purpose::STANDARD;
        let not_json = json!({"data": {"release": standard.encode(b"plain text")}});
        assert!(err(not_json).starts_with("json decode release: "));
        let broken_gzip = json!({"data": {"release": standard.encode([0x1f, 0x8b, 0x08, 0x00, 0x01])}});
        let text = err(broken_gzip);
        assert!(
            text.starts_with("gzip decode release: ") || text.starts_with("read gzip release: "),
            "{text}"
        );
    }

    #[test]
    fn accessor_errors() {
        let release = json!({"name": "x"});
        let err = HelmField::parse("name.first")
            .unwrap()
            .lookup(&release)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "accessor error: \"x\" is of the type string, expected map[string]interface{}"
        );
    }

    #[test]
    fn decompression_is_capped() {
        let huge = format!("{{\"name\":\"{}\"}}", "a".repeat(100_000));
        let secret = secret_with(huge.as_bytes(), true, true);
        let err = decode_release(&secret, 10_000).unwrap_err();
        assert_eq!(
            err.to_string(),
            "read gzip release: decompressed release exceeds the limit of 10000 bytes"
        );
        assert!(decode_release(&secret, 200_000).is_ok());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_payloads_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..256), gzip_magic in proptest::bool::ANY) {
            let mut payload = bytes;
            if gzip_magic {
                let mut with_magic = vec![0x1f, 0x8b, 0x08];
                with_magic.extend(payload);
                payload = with_magic;
            }
            let standard = base64::engine::general_purpose::STANDARD;
            let secret = json!({"data": {"release": standard.encode(&payload)}});
            let _ = decode_release(&secret, 4096);
        }
    }
}
