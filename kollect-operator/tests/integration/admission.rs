//! The validating webhooks end to end: the operator serves them over TLS, a real
//! ValidatingWebhookConfiguration points the local control plane's API server at them, and
//! every request below goes through the API server as `kubectl apply` would send it.

// Test helpers may panic on broken fixtures: that is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use k8s_openapi::ByteString;
use k8s_openapi::api::admissionregistration::v1::{ValidatingWebhookConfiguration, WebhookClientConfig};
use kollect_core::api::v1alpha1::KollectInventory;
use kollect_core::netguard::NetPolicy;
use kollect_operator::admission;
use kollect_operator::admission::server::WebhookOptions;
use kollect_operator::operator::{self, OperatorOptions};
use kollect_testkit::ControlPlane;
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::json;
use tokio::sync::watch;

const PATIENCE: Duration = Duration::from_secs(120);

/// `Warning` headers the API server sent back, as a client would print them.
#[derive(Clone, Default)]
struct Warnings(Arc<Mutex<Vec<String>>>);

impl Warnings {
    fn take(&self) -> Vec<String> {
        std::mem::take(&mut *self.0.lock().unwrap())
    }

    /// Asserts that a warning containing `fragment` arrived since the last take.
    fn assert_seen(&self, fragment: &str) {
        let seen = self.take();
        assert!(
            seen.iter().any(|w| w.contains(fragment)),
            "{fragment:?} not in {seen:?}"
        );
    }
}

/// Records the `Warning` headers of every response (the body type is the client's own).
fn recording<B>(seen: Warnings) -> impl Fn(http::Response<B>) -> http::Response<B> + Clone {
    move |response| {
        for value in response.headers().get_all("warning") {
            seen.0
                .lock()
                .unwrap()
                .push(value.to_str().unwrap_or_default().to_owned());
        }
        response
    }
}

async fn client_seeing_warnings(plane: &ControlPlane) -> (Client, Warnings) {
    let kubeconfig = kube::config::Kubeconfig::read_from(plane.kubeconfig_path()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    let warnings = Warnings::default();
    let seen = warnings.clone();
    let client = kube::client::ClientBuilder::try_from(config)
        .unwrap()
        .with_layer(&tower::util::MapResponseLayer::new(recording(seen)))
        .build();
    (client, warnings)
}

/// The operator running in this process.
struct Running {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), String>>,
}

impl Running {
    fn start(client: Client, options: OperatorOptions) -> Self {
        let (stop, shutdown) = watch::channel(false);
        let task = tokio::spawn(operator::run(client, options, shutdown));
        Self { stop, task }
    }

    async fn stop(self) {
        self.stop.send_replace(true);
        let result = tokio::time::timeout(PATIENCE, self.task).await.unwrap().unwrap();
        assert_eq!(result, Ok(()));
    }
}

/// The operator with its webhook server, and the configuration that routes admission to it.
struct Webhooked {
    operator: Running,
    certs: tempfile::TempDir,
    address: SocketAddr,
}

impl Webhooked {
    async fn start(plane: &ControlPlane, client: Client) -> Self {
        Self::start_with(plane, client, OperatorOptions::default()).await
    }

    /// [`Webhooked::start`] with `base` options (tenant mode, say).
    async fn start_with(plane: &ControlPlane, client: Client, base: OperatorOptions) -> Self {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let pki = kollect_testkit::pki::serving_pki("kollect-webhook").unwrap();
        let certs = tempfile::tempdir().unwrap();
        std::fs::write(certs.path().join("tls.crt"), &pki.cert_pem).unwrap();
        std::fs::write(certs.path().join("tls.key"), &pki.key_pem).unwrap();
        let port = kollect_testkit::control_plane::free_port().unwrap();
        let address: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        let options = OperatorOptions {
            net_policy: NetPolicy::new(false),
            max_export_bytes: 1_000_000,
            webhook: Some(WebhookOptions {
                bind_address: address,
                cert_dir: certs.path().to_owned(),
                cert_name: "tls.crt".into(),
                key_name: "tls.key".into(),
                http2: false,
            }),
            ..base
        };
        let operator = Running::start(client, options);
        let admin = plane.client().await.unwrap();
        Api::<ValidatingWebhookConfiguration>::all(admin)
            .create(&PostParams::default(), &configuration(address, &pki.ca_pem))
            .await
            .unwrap();
        Self {
            operator,
            certs,
            address,
        }
    }

    /// Makes the API server trust only a new CA (while the old certificate is still served),
    /// and returns the new pair to write.
    async fn trust_new_ca(&self, plane: &ControlPlane) -> kollect_testkit::pki::ServingPki {
        let pki = kollect_testkit::pki::serving_pki("kollect-webhook-rotated").unwrap();
        let admin = plane.client().await.unwrap();
        let api = Api::<ValidatingWebhookConfiguration>::all(admin);
        let mut next = configuration(self.address, &pki.ca_pem);
        next.metadata.resource_version = api.get("kollect-test").await.unwrap().metadata.resource_version;
        api.replace("kollect-test", &PostParams::default(), &next)
            .await
            .unwrap();
        pki
    }

    /// Rotates the served files in place, as a mounted Secret update does.
    fn write(&self, pki: &kollect_testkit::pki::ServingPki) {
        std::fs::write(self.certs.path().join("tls.crt"), &pki.cert_pem).unwrap();
        std::fs::write(self.certs.path().join("tls.key"), &pki.key_pem).unwrap();
    }

    async fn stop(self) {
        self.operator.stop().await;
    }
}

fn configuration(address: SocketAddr, ca_pem: &str) -> ValidatingWebhookConfiguration {
    admission::configuration("kollect-test", "Fail", |path| WebhookClientConfig {
        url: Some(format!("https://{address}{path}")),
        ca_bundle: Some(ByteString(ca_pem.as_bytes().to_vec())),
        service: None,
    })
}

/// Applies `yaml` (one object) in `namespace` through the API server: `Ok` when admitted,
/// `Err(message)` with the API server's message when refused.
async fn apply(client: &Client, namespace: &str, yaml: &str) -> Result<(), String> {
    let value: serde_json::Value = serde_norway::from_str(yaml).unwrap();
    let object: kube::api::DynamicObject = serde_json::from_value(value).unwrap();
    let kind = object.types.as_ref().unwrap().kind.clone();
    let resource = kube::discovery::ApiResource {
        group: "kollect.dev".into(),
        version: "v1alpha1".into(),
        api_version: "kollect.dev/v1alpha1".into(),
        kind: kind.clone(),
        plural: format!("{}s", kind.to_ascii_lowercase()).replace("ys", "ies"),
    };
    let api: Api<kube::api::DynamicObject> = if kind.starts_with("KollectCluster") {
        Api::all_with(client.clone(), &resource)
    } else {
        Api::namespaced_with(client.clone(), namespace, &resource)
    };
    let name = object.metadata.name.clone().unwrap();
    api.patch(
        &name,
        &PatchParams::apply("admission-test").force(),
        &Patch::Apply(&object),
    )
    .await
    .map(|_| ())
    .map_err(|error| match error {
        kube::Error::Api(status) => status.message,
        other => other.to_string(),
    })
}

/// Retries `apply` until the API server reaches the webhook (the server starts with the
/// operator), then returns the first answer that is not a connection failure.
async fn first_answer(client: &Client, namespace: &str, yaml: &str) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let answer = apply(client, namespace, yaml).await;
        let unreachable = answer
            .as_ref()
            .is_err_and(|m| m.contains("failed calling webhook"));
        if !unreachable || tokio::time::Instant::now() > deadline {
            return answer;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// What the registry says of a sink type this build has no backend for.
fn denied(kind: &str, message: &str) -> String {
    format!(
        "admission webhook \"{}\" denied the request: {message}",
        admission::name_of(kind)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_webhooks_refuse_what_the_operator_cannot_do_and_admit_the_rest() {
    let Some(plane) = ControlPlane::start_for_test().await else {
        return;
    };
    let ns = plane.create_namespace("admission").await.unwrap();
    let (client, warnings) = client_seeing_warnings(&plane).await;
    let webhook = Webhooked::start(&plane, client.clone()).await;

    // Profiles: Secret data needs the opt-in; with it the profile is admitted.
    let leaky = "apiVersion: kollect.dev/v1alpha1
kind: KollectProfile
metadata: {name: leaky}
spec:
  targetGVK: {version: v1, kind: Secret}
  attributes: [{name: password, path: '$.data.password'}]
";
    assert_eq!(
        first_answer(&client, &ns, leaky).await,
        Err(denied(
            "KollectProfile",
            "KollectProfile \"leaky\" is invalid: spec.attributes[0].path: Forbidden: reading Secret data \
             requires the annotation kollect.dev/allow-secret-extraction: \"true\""
        ))
    );
    let opted_in = leaky.replace(
        "metadata: {name: leaky}",
        "metadata: {name: leaky, annotations: {kollect.dev/allow-secret-extraction: \"true\"}}",
    );
    assert_eq!(apply(&client, &ns, &opted_in).await, Ok(()));

    // A JSONPath that does not parse names the field; a filter expression is admitted with a
    // warning the client sees.
    let broken = "apiVersion: kollect.dev/v1alpha1
kind: KollectProfile
metadata: {name: broken}
spec:
  targetGVK: {group: apps, version: v1, kind: Deployment}
  attributes: [{name: image, path: '$.spec.template.spec.containers[0'}]
";
    let refused = apply(&client, &ns, broken).await.unwrap_err();
    assert!(
        refused.starts_with(&denied(
            "KollectProfile",
            "KollectProfile \"broken\" is invalid: spec.attributes[0].path: Invalid value: \"$.spec.template.spec.containers[0\""
        )),
        "{refused}"
    );
    warnings.take();
    let filtered = broken.replace("containers[0'", "containers[?(@.name==\"main\")].image'");
    assert_eq!(apply(&client, &ns, &filtered).await, Ok(()));
    warnings.assert_seen("spec.attributes[0].path: JSONPath filter expressions");

    // Sinks: a configuration the backend refuses, and an endpoint the SSRF policy denies.
    let refused = apply(
        &client,
        &ns,
        "apiVersion: kollect.dev/v1alpha1
kind: KollectSnapshotSink
metadata: {name: bucket}
spec:
  type: gitlab
  endpoint: 'https://gitlab.example.com/platform/inventory.git'
  git: {branch: exports}
  gitlab: {mergeRequest: {mode: merge_request, targetBranch: main}}
",
    )
    .await
    .unwrap_err();
    assert!(
        refused.starts_with(&denied(
            "KollectSnapshotSink",
            "KollectSnapshotSink \"bucket\" is invalid: spec: Invalid value: spec.git.branch is not used in merge_request mode"
        )),
        "{refused}"
    );
    let metadata = apply(
        &client,
        &ns,
        "apiVersion: kollect.dev/v1alpha1
kind: KollectSnapshotSink
metadata: {name: metadata}
spec: {type: git, endpoint: 'http://169.254.169.254/repo.git', git: {branch: main}}
",
    )
    .await
    .unwrap_err();
    warnings.take();
    assert!(
        metadata.starts_with(&denied(
            "KollectSnapshotSink",
            "KollectSnapshotSink \"metadata\" is invalid: spec: Forbidden: "
        )) && metadata.contains("169.254.169.254"),
        "{metadata}"
    );
    assert_eq!(
        apply(
            &client,
            &ns,
            "apiVersion: kollect.dev/v1alpha1
kind: KollectSnapshotSink
metadata: {name: git}
spec: {type: git, endpoint: 'https://git.example.com/inventory.git', git: {branch: main}}
"
        )
        .await,
        Ok(())
    );
    warnings.assert_seen("spec.serialization.format: not set: documents are written as YAML");

    // Inventories: no ceiling above --max-export-bytes; the scope's sink allowlist and floor.
    assert_eq!(
        apply(
            &client,
            &ns,
            "apiVersion: kollect.dev/v1alpha1
kind: KollectInventory
metadata: {name: huge}
spec: {maxExportBytes: 2000000, snapshotSinkRefs: [{name: git}]}
"
        )
        .await,
        Err(denied(
            "KollectInventory",
            "KollectInventory \"huge\" is invalid: spec.maxExportBytes: Invalid value: 2000000: must not exceed \
             the operator's --max-export-bytes (1000000)"
        ))
    );
    let bound = "apiVersion: kollect.dev/v1alpha1
kind: KollectInventory
metadata: {name: bound, finalizers: [kollect.dev/test-hold]}
spec: {exportMinInterval: 1m, snapshotSinkRefs: [{name: git}]}
";
    assert_eq!(apply(&client, &ns, bound).await, Ok(()));
    assert_eq!(
        apply(
            &client,
            &ns,
            "apiVersion: kollect.dev/v1alpha1
kind: KollectScope
metadata: {name: ceiling}
spec:
  allowedGVKs: [{group: apps, version: v1, kind: Deployment}]
  snapshotSinkRefs: [audit]
  minExportInterval: 5m
"
        )
        .await,
        Ok(())
    );
    assert_eq!(
        apply(&client, &ns, bound).await,
        Err(denied(
            "KollectInventory",
            "KollectInventory \"bound\" is invalid: spec.snapshotSinkRefs[0].name: Forbidden: snapshot sink ref \
             \"git\" is not in KollectScope \"ceiling\" snapshotSinkRefs; spec.exportMinInterval: Invalid value: \
             \"1m0s\": must be at least the minExportInterval 5m0s of KollectScope \"ceiling\""
        ))
    );

    // Targets: the scope decides which kinds a target may collect.
    assert_eq!(
        apply(
            &client,
            &ns,
            "apiVersion: kollect.dev/v1alpha1
kind: KollectTarget
metadata: {name: secrets}
spec: {profileRef: leaky}
"
        )
        .await,
        Err(denied(
            "KollectTarget",
            "KollectTarget \"secrets\" is invalid: spec.profileRef: Forbidden: KollectScope \"ceiling\" does not \
             allow /v1/Secret"
        ))
    );

    // A deletion is never blocked: the inventory the scope now refuses can still lose its
    // finalizer.
    let inventories: Api<KollectInventory> = Api::namespaced(client.clone(), &ns);
    inventories
        .delete("bound", &DeleteParams::default())
        .await
        .unwrap();
    inventories
        .patch(
            "bound",
            &PatchParams::default(),
            &Patch::Merge(&json!({"metadata": {"finalizers": null}})),
        )
        .await
        .unwrap();
    assert!(inventories.get_opt("bound").await.unwrap().is_none());

    // Cluster kinds: the cluster scope decides which kinds, namespaces and static-ref
    // namespaces cluster targets and inventories may use, and its floor applies (with the
    // floor of the KollectScope in the inventory's sinkNamespace).
    assert_eq!(
        apply(
            &client,
            &ns,
            &format!(
                "apiVersion: kollect.dev/v1alpha1
kind: KollectClusterScope
metadata: {{name: platform}}
spec:
  allowedGVKs: [{{group: apps, version: v1, kind: Deployment}}]
  deniedNamespaces: [kube-system]
  allowedStaticRefNamespaces: [{ns}]
  databaseSinkRefs: [warehouse]
  minExportInterval: 10m
"
            )
        )
        .await,
        Ok(())
    );
    assert_eq!(
        apply(
            &client,
            &ns,
            &format!(
                "apiVersion: kollect.dev/v1alpha1
kind: KollectClusterTarget
metadata: {{name: secrets}}
spec:
  profileRef: {{name: leaky, namespace: {ns}}}
  namespaceSelector: {{matchLabels: {{tier: platform}}}}
"
            )
        )
        .await,
        Err(denied(
            "KollectClusterTarget",
            "KollectClusterTarget \"secrets\" is invalid: spec.profileRef: Forbidden: KollectClusterScope \
             \"platform\" does not allow /v1/Secret"
        ))
    );
    assert_eq!(
        apply(
            &client,
            &ns,
            "apiVersion: kollect.dev/v1alpha1
kind: KollectClusterTarget
metadata: {name: elsewhere}
spec:
  profileRef: {name: Deployments, namespace: other}
  namespaceSelector: {matchLabels: {tier: platform}}
  includedNamespaces: [kube-system]
"
        )
        .await,
        Err(denied(
            "KollectClusterTarget",
            "KollectClusterTarget \"elsewhere\" is invalid: spec.profileRef.name: Invalid value: \"Deployments\": \
             must be a lowercase RFC 1123 subdomain (a-z, 0-9, '-' and '.', at most 253 characters); \
             spec.includedNamespaces[0]: Forbidden: KollectClusterScope \"platform\" does not allow namespace \
             \"kube-system\"; spec.profileRef.namespace: Forbidden: KollectClusterScope \"platform\" does not allow \
             references to namespace \"other\" (allowedStaticRefNamespaces)"
        ))
    );
    assert_eq!(
        apply(
            &client,
            &ns,
            &format!(
                "apiVersion: kollect.dev/v1alpha1
kind: KollectClusterTarget
metadata: {{name: deployments}}
spec:
  profileRef: {{name: broken, namespace: {ns}}}
  namespaceSelector: {{matchLabels: {{tier: platform}}}}
"
            )
        )
        .await,
        Ok(())
    );
    assert_eq!(
        apply(
            &client,
            &ns,
            "apiVersion: kollect.dev/v1alpha1
kind: KollectClusterInventory
metadata: {name: rollup}
spec:
  namespaceSelector: {matchLabels: {tier: platform}}
  exportMinInterval: 1m
  databaseSinkRefs: [{name: pg, maxExportBytes: 2000000}]
"
        )
        .await,
        Err(denied(
            "KollectClusterInventory",
            "KollectClusterInventory \"rollup\" is invalid: spec.databaseSinkRefs[0].maxExportBytes: Invalid \
             value: 2000000: must not exceed the operator's --max-export-bytes (1000000); \
             spec.databaseSinkRefs[0].name: Forbidden: database sink ref \"pg\" is not in KollectClusterScope \
             \"platform\" databaseSinkRefs; spec.exportMinInterval: Invalid value: \"1m0s\": must be at least the \
             minExportInterval 10m0s of KollectClusterScope \"platform\"; spec.sinkNamespace: Forbidden: \
             KollectClusterScope \"platform\" does not allow references to namespace \"kollect-system\" \
             (allowedStaticRefNamespaces)"
        ))
    );
    let bad_selector = apply(
        &client,
        &ns,
        "apiVersion: kollect.dev/v1alpha1
kind: KollectClusterInventory
metadata: {name: bad-selector}
spec:
  namespaceSelector: {matchExpressions: [{key: tier, operator: Sometimes, values: [a]}]}
  sinkNamespace: kollect-system
",
    )
    .await
    .unwrap_err();
    assert!(
        bad_selector.starts_with(&denied(
            "KollectClusterInventory",
            "KollectClusterInventory \"bad-selector\" is invalid: spec.namespaceSelector: Invalid value: invalid \
             label selector: "
        )),
        "{bad_selector}"
    );
    assert_eq!(
        apply(
            &client,
            &ns,
            &format!(
                "apiVersion: kollect.dev/v1alpha1
kind: KollectClusterInventory
metadata: {{name: rollup}}
spec:
  namespaceSelector: {{matchLabels: {{tier: platform}}}}
  targetRefs: [deployments]
  sinkNamespace: {ns}
  exportMinInterval: 1h
  databaseSinkRefs: [{{name: warehouse}}]
"
            )
        )
        .await,
        Ok(())
    );

    // A rotated certificate is served without a restart. First the API server trusts only a
    // new CA, so calls fail while the old certificate is served; then the files change, and
    // admission answers again once the server has reloaded them.
    let rotated = webhook.trust_new_ca(&plane).await;
    let probe = opted_in.replace("name: leaky", "name: after-rotation");
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        let answer = apply(&client, &ns, &probe).await;
        if answer
            .as_ref()
            .is_err_and(|m| m.contains("failed calling webhook"))
        {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the new CA never took effect: {answer:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    webhook.write(&rotated);
    assert_eq!(first_answer(&client, &ns, &probe).await, Ok(()));
    webhook.stop().await;
}

/// `--metrics-secure`: `/metrics` over HTTPS answers only bearer tokens RBAC lets `get
/// /metrics`, checked against the real API server; the probes stay plain HTTP.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn secure_metrics_answer_only_callers_rbac_allows() {
    use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
    use k8s_openapi::api::core::v1::ServiceAccount;
    use kollect_operator::operator::options::MetricsTls;

    let Some(plane) = ControlPlane::start_for_test().await else {
        return;
    };
    let ns = plane.create_namespace("metrics").await.unwrap();
    plane
        .apply_yaml(
            "apiVersion: v1
kind: ServiceAccount
metadata: {name: scraper}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: nobody}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRole
metadata: {name: kollect-metrics-reader}
rules: [{nonResourceURLs: [/metrics], verbs: [get]}]
---
apiVersion: rbac.authorization.k8s.io/v1
kind: ClusterRoleBinding
metadata: {name: kollect-metrics-reader}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: kollect-metrics-reader}
subjects: [{kind: ServiceAccount, name: scraper, namespace: NAMESPACE}]
"
            .replace("NAMESPACE", &ns)
            .as_str(),
            &ns,
        )
        .await
        .unwrap();
    let admin = plane.client().await.unwrap();
    let accounts: Api<ServiceAccount> = Api::namespaced(admin.clone(), &ns);
    let token_of = |name: &'static str| {
        let accounts = accounts.clone();
        async move {
            let request = TokenRequest {
                spec: Some(TokenRequestSpec::default()),
                ..Default::default()
            };
            accounts
                .create_token_request(name, &PostParams::default(), &request)
                .await
                .unwrap()
                .status
                .and_then(|s| s.token)
                .unwrap()
        }
    };
    let (scraper, nobody) = (token_of("scraper").await, token_of("nobody").await);

    let metrics_port = kollect_testkit::control_plane::free_port().unwrap();
    let health_port = kollect_testkit::control_plane::free_port().unwrap();
    let options = OperatorOptions {
        metrics_bind_address: Some(format!("127.0.0.1:{metrics_port}").parse().unwrap()),
        health_probe_bind_address: Some(format!("127.0.0.1:{health_port}").parse().unwrap()),
        metrics_tls: Some(MetricsTls {
            cert_dir: None,
            cert_name: "tls.crt".into(),
            key_name: "tls.key".into(),
            http2: false,
        }),
        ..OperatorOptions::default()
    };
    let operator = Running::start(admin, options);
    let _ = rustls::crypto::ring::default_provider().install_default();
    // The certificate is self-signed: this test checks who may scrape, not the certificate.
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let url = format!("https://127.0.0.1:{metrics_port}/metrics");
    let scrape = |token: Option<String>| {
        let request = http.get(&url);
        let request = match token {
            Some(token) => request.bearer_auth(token),
            None => request,
        };
        async move {
            let response = request.send().await.ok()?;
            Some((response.status().as_u16(), response.text().await.ok()?))
        }
    };
    let deadline = tokio::time::Instant::now() + PATIENCE;
    let anonymous = loop {
        if let Some(answer) = scrape(None).await {
            break answer;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the metrics endpoint never answered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(anonymous.0, 401, "{anonymous:?}");
    assert_eq!(scrape(Some("not-a-token".into())).await.unwrap().0, 403);
    assert_eq!(scrape(Some(nobody)).await.unwrap().0, 403);
    let (status, body) = scrape(Some(scraper)).await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("kollect_leader_is_leader"), "{body}");
    let health = reqwest::get(format!("http://127.0.0.1:{health_port}/healthz"))
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tenant_mode_refuses_the_cluster_kinds() {
    let Some(plane) = ControlPlane::start_for_test().await else {
        return;
    };
    let ns = plane.create_namespace("tenant").await.unwrap();
    let (client, _) = client_seeing_warnings(&plane).await;
    let options = OperatorOptions {
        tenant_mode: true,
        watch_namespaces: vec![ns.clone()],
        ..OperatorOptions::default()
    };
    let webhook = Webhooked::start_with(&plane, client.clone(), options).await;
    for (kind, spec) in [
        ("KollectClusterScope", "{}"),
        (
            "KollectClusterTarget",
            "{profileRef: {name: p, namespace: team}, namespaceSelector: {matchLabels: {a: b}}}",
        ),
        (
            "KollectClusterInventory",
            "{namespaceSelector: {matchLabels: {a: b}}}",
        ),
    ] {
        let yaml = format!(
            "apiVersion: kollect.dev/v1alpha1\nkind: {kind}\nmetadata: {{name: platform}}\nspec: {spec}\n"
        );
        assert_eq!(
            first_answer(&client, &ns, &yaml).await,
            Err(denied(
                kind,
                &format!(
                    "{kind} is not allowed: the operator runs in tenant mode (--tenant-mode), which manages \
                     namespaced kinds only; use KollectTarget and KollectInventory in the watched namespaces"
                )
            ))
        );
    }
    // Namespaced kinds are admitted as before.
    assert_eq!(
        first_answer(
            &client,
            &ns,
            "apiVersion: kollect.dev/v1alpha1\nkind: KollectScope\nmetadata: {name: ceiling}\nspec: {}\n"
        )
        .await,
        Ok(())
    );
    webhook.stop().await;
}
