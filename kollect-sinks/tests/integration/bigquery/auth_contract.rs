//! What the sink sends as credentials, against a recorded contract of Google's BigQuery API
//! (the emulator accepts any request): a self-signed JWT (`Authorization: Bearer`, RS256, the
//! key's id, the BigQuery scope) on every call, and Google's answer to refused credentials
//! (HTTP 401 `UNAUTHENTICATED`) as a terminal error that quotes no token.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use kollect_core::netguard::NetPolicy;
use kollect_core::sink::{ErrorClass, Sink};
use kollect_sinks::bigquery::{BigqueryConfig, BigquerySink, Credentials, SCOPE, ServiceAccountKey};
use kollect_testkit::contract::{ContractServer, Exchange};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};
use url::Url;

const KEY_PEM: &str = include_str!("../../../src/bigquery/testdata/test-key.pem");
const EMAIL: &str = "kollect@kollect-test.iam.gserviceaccount.com";

fn key_file() -> String {
    json!({
        "type": "service_account",
        "project_id": "kollect-test",
        "private_key_id": "key-1",
        "private_key": KEY_PEM,
        "client_email": EMAIL,
        "token_uri": "https://oauth2.googleapis.com/token",
    })
    .to_string()
}

/// Accepts a bearer JWT signed by the test key for the BigQuery scope.
fn check_bearer(value: &str) -> Result<(), String> {
    let jwt = value.strip_prefix("Bearer ").ok_or("not a bearer token")?;
    let parts: Vec<&str> = jwt.split('.').collect();
    let [header, claims, signature] = parts.as_slice() else {
        return Err("not a JWT".to_owned());
    };
    let decode = |part: &str| -> Result<Value, String> {
        let bytes = URL_SAFE_NO_PAD.decode(part).map_err(|e| e.to_string())?;
        serde_json::from_slice(&bytes).map_err(|e| e.to_string())
    };
    let (header, claims) = (decode(header)?, decode(claims)?);
    if header != json!({"alg": "RS256", "typ": "JWT", "kid": "key-1"}) {
        return Err(format!("header {header}"));
    }
    if claims["iss"] != EMAIL || claims["sub"] != EMAIL || claims["scope"] != SCOPE {
        return Err(format!("claims {claims}"));
    }
    let lifetime = claims["exp"].as_i64().unwrap_or(0) - claims["iat"].as_i64().unwrap_or(0);
    if !(1..=3600).contains(&lifetime) {
        return Err(format!("lifetime {lifetime}s"));
    }
    let der = PrivatePkcs8KeyDer::from_pem_slice(KEY_PEM.as_bytes()).map_err(|e| e.to_string())?;
    let pair = ring::signature::RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).map_err(|e| e.to_string())?;
    let public = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        ring::signature::KeyPair::public_key(&pair).as_ref().to_vec(),
    );
    let signature = URL_SAFE_NO_PAD.decode(signature).map_err(|e| e.to_string())?;
    let signed = format!("{}.{}", parts[0], parts[1]);
    public
        .verify(signed.as_bytes(), &signature)
        .map_err(|_| "the signature does not verify".to_owned())
}

fn sink(server: &ContractServer) -> BigquerySink {
    let key = ServiceAccountKey::from_json(&key_file()).unwrap();
    let mut config = BigqueryConfig::new(
        "kollect-test",
        "inventory",
        "rows",
        Credentials::ServiceAccount(key),
        NetPolicy::permissive_for_tests(),
    )
    .with_endpoint(Url::parse(server.base_url()).unwrap())
    .with_location("EU");
    config.ca_pem = server.ca_pem().map(str::to_owned);
    BigquerySink::new(config).unwrap()
}

#[tokio::test]
async fn the_probe_sends_a_signed_token_with_the_bigquery_scope() {
    let server = ContractServer::start_tls(vec![
        // https://cloud.google.com/bigquery/docs/reference/rest/v2/datasets/get
        Exchange::new("GET", "/bigquery/v2/projects/kollect-test/datasets/inventory")
            .header_satisfies("authorization", check_bearer)
            .respond(200, json!({"kind": "bigquery#dataset", "location": "EU"})),
        // https://cloud.google.com/bigquery/docs/reference/rest/v2/jobs/query
        Exchange::new("POST", "/bigquery/v2/projects/kollect-test/queries")
            .header_satisfies("authorization", check_bearer)
            .header("content-type", "application/json")
            .json_body(json!({"query": "SELECT 1", "useLegacySql": false, "dryRun": true, "location": "EU"}))
            .respond(
                200,
                json!({"kind": "bigquery#queryResponse", "jobComplete": true}),
            ),
    ])
    .unwrap();
    let report = sink(&server).probe().await.unwrap();
    assert_eq!(
        report.message,
        "BigQuery dataset metadata and dry-run query succeeded"
    );
    server.verify().unwrap();
}

#[tokio::test]
async fn refused_credentials_are_terminal_and_quote_no_token() {
    // Google's answer to a token it does not accept (a deleted or disabled key).
    let unauthenticated = json!({"error": {
        "code": 401,
        "message": "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.",
        "errors": [{"message": "Invalid Credentials", "domain": "global", "reason": "authError", "location": "Authorization", "locationType": "header"}],
        "status": "UNAUTHENTICATED"
    }});
    let server = ContractServer::start_tls(vec![
        Exchange::new("GET", "/bigquery/v2/projects/kollect-test/datasets/inventory")
            .header_satisfies("authorization", check_bearer)
            .respond(401, unauthenticated),
    ])
    .unwrap();
    let error = sink(&server).probe().await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Terminal, "{error}");
    assert!(
        error.to_string().starts_with(
            "bigquery dataset metadata: HTTP 401 authError: Request had invalid authentication credentials"
        ),
        "{error}"
    );
    let sent = server.requests()[0]
        .headers
        .iter()
        .find(|(n, _)| n == "authorization")
        .map(|(_, v)| v.clone())
        .unwrap();
    let token = sent.trim_start_matches("Bearer ");
    assert!(!error.to_string().contains(token), "the token is not quoted");
    assert!(!error.to_string().contains("PRIVATE KEY"));
    server.verify().unwrap();
}

#[tokio::test]
async fn access_denied_is_forbidden_and_quota_is_transient() {
    let denied = json!({"error": {"code": 403, "message": "Access Denied: Dataset kollect-test:inventory: Permission bigquery.datasets.get denied", "errors": [{"reason": "accessDenied"}], "status": "PERMISSION_DENIED"}});
    let quota = json!({"error": {"code": 403, "message": "Quota exceeded: Your project exceeded quota for free query bytes scanned.", "errors": [{"reason": "quotaExceeded"}], "status": "PERMISSION_DENIED"}});
    let server = ContractServer::start_tls(vec![
        Exchange::new("GET", "/bigquery/v2/projects/kollect-test/datasets/inventory").respond(403, denied),
        Exchange::new("GET", "/bigquery/v2/projects/kollect-test/datasets/inventory").respond(403, quota),
    ])
    .unwrap();
    let sink = sink(&server);
    assert_eq!(sink.probe().await.unwrap_err().class(), ErrorClass::Forbidden);
    assert_eq!(sink.probe().await.unwrap_err().class(), ErrorClass::Transient);
    server.verify().unwrap();
}

/// The metadata server's token endpoint, as GKE's Workload Identity and Compute Engine serve it
/// (https://cloud.google.com/compute/docs/access/authenticate-workloads#applications).
fn metadata_exchange() -> Exchange {
    Exchange::new(
        "GET",
        "/computeMetadata/v1/instance/service-accounts/default/token?scopes=https%3A%2F%2Fwww.googleapis.com%2Fauth%2Fbigquery",
    )
    .header("metadata-flavor", "Google")
    .respond(200, json!({"access_token": "ya29.metadata-token", "expires_in": 3599, "token_type": "Bearer"}))
}

fn metadata_sink(api: &ContractServer, metadata: &str) -> BigquerySink {
    let mut config = BigqueryConfig::new(
        "kollect-test",
        "inventory",
        "rows",
        Credentials::MetadataServer,
        NetPolicy::permissive_for_tests(),
    )
    .with_endpoint(Url::parse(api.base_url()).unwrap())
    .with_metadata_host(metadata);
    config.ca_pem = api.ca_pem().map(str::to_owned);
    BigquerySink::new(config).unwrap()
}

#[tokio::test]
async fn without_a_key_the_metadata_servers_token_is_used_and_reused() {
    let metadata = ContractServer::start(vec![metadata_exchange()]).unwrap();
    let dataset = || {
        Exchange::new("GET", "/bigquery/v2/projects/kollect-test/datasets/inventory")
            .header("authorization", "Bearer ya29.metadata-token")
            .respond(200, json!({"kind": "bigquery#dataset"}))
    };
    let dry_run = || {
        Exchange::new("POST", "/bigquery/v2/projects/kollect-test/queries")
            .header("authorization", "Bearer ya29.metadata-token")
            .respond(200, json!({"jobComplete": true}))
    };
    let api = ContractServer::start_tls(vec![dataset(), dry_run(), dataset(), dry_run()]).unwrap();
    let sink = metadata_sink(&api, metadata.base_url().trim_start_matches("http://"));
    sink.probe().await.unwrap();
    sink.probe().await.unwrap();
    // One token for both probes: a second token request would break the metadata contract.
    metadata.verify().unwrap();
    api.verify().unwrap();
}

#[tokio::test]
async fn an_absent_metadata_server_is_a_transient_error_that_says_so() {
    let api = ContractServer::start_tls(Vec::new()).unwrap();
    // Nothing listens on port 9 of loopback.
    let error = metadata_sink(&api, "127.0.0.1:9").probe().await.unwrap_err();
    assert_eq!(error.class(), ErrorClass::Transient, "{error}");
    assert!(
        error.to_string().contains(
            "spec.bigquery.secretRef is not set and the metadata server (Workload Identity) did not answer"
        ),
        "{error}"
    );
    assert!(api.requests().is_empty(), "no API call goes out without a token");
}
