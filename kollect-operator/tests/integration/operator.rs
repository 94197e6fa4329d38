//! The operator end to end: the real API server (local control plane), the real Git server and
//! real PostgreSQL, the operator running in this process through a client that counts status
//! writes.

// Test helpers may panic on broken fixtures: that is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::coordination::v1::Lease;
use kollect_core::api::v1alpha1::{
    KollectDatabaseSink, KollectInventory, KollectSnapshotSink, KollectTarget,
};
use kollect_core::netguard::NetPolicy;
use kollect_operator::operator::{self, OperatorOptions, leader::LeaseTimings};
use kollect_testkit::{ControlPlane, GitServer, backends::Postgres};
use kube::Client;
use kube::api::{Api, DeleteParams, Patch, PatchParams};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

/// The control planes of this binary's tests would compete for two cores; run them one by one.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// How long a condition may take to hold before the test reports what it saw. Generous: this
/// guards against hangs, it does not measure anything.
const PATIENCE: Duration = Duration::from_secs(180);

// ---------------------------------------------------------------------------------------------
// A client that records every request it sends.

/// One request: method and path with query.
#[derive(Debug, Clone)]
struct Sent {
    method: http::Method,
    path: String,
    query: String,
}

impl Sent {
    fn is_watch(&self) -> bool {
        self.query.split('&').any(|pair| pair == "watch=true")
    }

    fn is_status_write(&self) -> bool {
        matches!(self.method, http::Method::PATCH | http::Method::PUT) && self.path.ends_with("/status")
    }

    fn is_lease(&self) -> bool {
        self.path.starts_with("/apis/coordination.k8s.io/")
    }
}

impl std::fmt::Display for Sent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}?{}", self.method, self.path, self.query)
    }
}

/// What a recording client has sent so far.
#[derive(Clone, Default)]
struct Requests(Arc<std::sync::Mutex<Vec<Sent>>>);

impl Requests {
    fn len(&self) -> usize {
        self.0.lock().unwrap().len()
    }

    /// Requests sent after the first `from`.
    fn since(&self, from: usize) -> Vec<Sent> {
        self.0.lock().unwrap()[from..].to_vec()
    }

    fn status_writes(&self) -> usize {
        self.0
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.is_status_write())
            .count()
    }
}

impl<S> tower::Layer<S> for Requests {
    type Service = Recorded<S>;
    fn layer(&self, inner: S) -> Recorded<S> {
        Recorded {
            inner,
            requests: self.clone(),
        }
    }
}

#[derive(Clone)]
struct Recorded<S> {
    inner: S,
    requests: Requests,
}

impl<S, B> tower::Service<http::Request<B>> for Recorded<S>
where
    S: tower::Service<http::Request<B>>,
{
    type Response = S::Response;
    type Error = S::Error;
    type Future = S::Future;

    fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, request: http::Request<B>) -> Self::Future {
        self.requests.0.lock().unwrap().push(Sent {
            method: request.method().clone(),
            path: request.uri().path().to_owned(),
            query: request.uri().query().unwrap_or_default().to_owned(),
        });
        self.inner.call(request)
    }
}

async fn recording_client(plane: &ControlPlane) -> (Client, Requests) {
    let kubeconfig = kube::config::Kubeconfig::read_from(plane.kubeconfig_path()).unwrap();
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    let requests = Requests::default();
    let client = kube::client::ClientBuilder::try_from(config)
        .unwrap()
        .with_layer(&requests)
        .build();
    (client, requests)
}

// ---------------------------------------------------------------------------------------------
// The operator in this process.

struct Running {
    stop: watch::Sender<bool>,
    task: tokio::task::JoinHandle<Result<(), String>>,
    address: SocketAddr,
}

impl Running {
    async fn start(client: Client, mut options: OperatorOptions) -> Self {
        // RUST_LOG=kollect_operator=debug shows what the operator does.
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_test_writer()
            .try_init();
        let port = kollect_testkit::control_plane::free_port().unwrap();
        let address: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
        options.metrics_bind_address = Some(address);
        options.health_probe_bind_address = Some(address);
        let (stop, shutdown) = watch::channel(false);
        let task = tokio::spawn(operator::run(client, options, shutdown));
        let running = Self { stop, task, address };
        eventually("the operator serves /healthz and /readyz", || async {
            let healthy = get(running.address, "/healthz").await.filter(|body| body == "ok");
            let ready = get(running.address, "/readyz").await.filter(|body| body == "ok");
            healthy.and(ready)
        })
        .await;
        running
    }

    async fn metrics(&self) -> String {
        get(self.address, "/metrics").await.unwrap_or_default()
    }

    async fn stop(self) {
        self.stop.send_replace(true);
        let result = tokio::time::timeout(PATIENCE, self.task).await.unwrap().unwrap();
        assert_eq!(result, Ok(()));
    }
}

fn test_options() -> OperatorOptions {
    OperatorOptions {
        net_policy: NetPolicy::permissive_for_tests(),
        target_count_resync: Duration::from_secs(2),
        collect_metrics_sample_interval: Duration::from_secs(1),
        ..OperatorOptions::default()
    }
}

/// A plain HTTP/1.0 GET; `None` when nothing answers.
async fn get(address: SocketAddr, path: &str) -> Option<String> {
    let mut stream = tokio::net::TcpStream::connect(address).await.ok()?;
    let request = format!("GET {path} HTTP/1.0\r\nHost: {address}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut response = String::new();
    stream.read_to_string(&mut response).await.ok()?;
    let (head, body) = response.split_once("\r\n\r\n")?;
    let status = head.lines().next()?;
    status
        .split(' ')
        .nth(1)
        .is_some_and(|code| code == "200")
        .then(|| body.to_owned())
}

/// The sum of the samples whose line starts with `series` (a name with optional labels).
fn sample(text: &str, series: &str) -> f64 {
    text.lines()
        .filter(|line| line.starts_with(series))
        .filter_map(|line| line.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Polls `check` until it returns `Some`, for at most [`PATIENCE`].
async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + PATIENCE;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(tokio::time::Instant::now() < deadline, "gave up waiting: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

// ---------------------------------------------------------------------------------------------
// Fixtures.

fn deployment(name: &str, tier: &str, image: &str) -> String {
    format!(
        "apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  labels: {{tier: {tier}}}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      containers: [{{name: main, image: \"{image}\"}}]
"
    )
}

fn pipeline(git: &GitServer, repo_url: &str, pg_dsn: Option<&str>) -> String {
    let mut yaml = format!(
        "apiVersion: kollect.dev/v1alpha1
kind: KollectProfile
metadata: {{name: deployments}}
spec:
  targetGVK: {{group: apps, version: v1, kind: Deployment}}
  attributes:
    - {{name: image, path: '$.spec.template.spec.containers[0].image'}}
    - {{name: tier, path: '$.metadata.labels.tier'}}
---
apiVersion: kollect.dev/v1alpha1
kind: KollectTarget
metadata: {{name: web-deployments}}
spec:
  profileRef: deployments
  labelSelector: {{matchLabels: {{tier: web}}}}
---
{sink}",
        sink = git.snapshot_sink_yaml("inventory-git", repo_url),
    );
    let mut refs = "  snapshotSinkRefs: [{name: inventory-git}]\n".to_owned();
    if let Some(dsn) = pg_dsn {
        yaml.push_str(&format!(
            "---
apiVersion: v1
kind: Secret
metadata: {{name: pg}}
stringData: {{dsn: \"{dsn}\"}}
---
apiVersion: kollect.dev/v1alpha1
kind: KollectDatabaseSink
metadata: {{name: inventory-pg}}
spec:
  type: postgres
  postgres: {{databaseRef: {{name: pg}}, table: inventory}}
"
        ));
        refs.push_str("  databaseSinkRefs: [{name: inventory-pg}]\n");
    }
    yaml.push_str(&format!(
        "---
apiVersion: kollect.dev/v1alpha1
kind: KollectInventory
metadata: {{name: first-inventory}}
spec:
  exportMinInterval: 1h
{refs}"
    ));
    yaml
}

/// A control plane and a Git server, with the Deployment `web` and the first-inventory pipeline
/// (to the Git repository `inventory`) in a new namespace named after `prefix`; `None` when the
/// test is skipped.
async fn git_pipeline(prefix: &str) -> Option<(ControlPlane, GitServer, String, String)> {
    let plane = ControlPlane::start_for_test().await?;
    let git = kollect_testkit::backends::start_for_test(|| GitServer::start("bot", "hunter2-token"))?;
    let ns = plane.create_namespace(prefix).await.unwrap();
    let repo_url = git.create_repo("inventory").unwrap();
    plane
        .apply_yaml(&deployment("web", "web", "nginx:1.27"), &ns)
        .await
        .unwrap();
    plane
        .apply_yaml(&pipeline(&git, &repo_url, None), &ns)
        .await
        .unwrap();
    Some((plane, git, ns, repo_url))
}

/// A PostgreSQL server and a client connected to its `postgres` database; `None` when the test
/// is skipped.
async fn postgres() -> Option<(Postgres, tokio_postgres::Client)> {
    let pg = kollect_testkit::backends::start_for_test(Postgres::start)?;
    let (client, connection) = tokio_postgres::connect(&pg.dsn("postgres"), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    Some((pg, client))
}

/// The inventory document in the Git repository, or `None` when the file does not exist.
fn git_file(git: &GitServer, repo: &str, path: &str) -> Option<String> {
    let output = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(git.repo_path(repo))
        .args(["show", &format!("main:{path}")])
        .output()
        .unwrap();
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

fn git_commits(git: &GitServer, repo: &str) -> usize {
    let output = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(git.repo_path(repo))
        .args(["rev-list", "--count", "main"])
        .output()
        .unwrap();
    String::from_utf8_lossy(&output.stdout)
        .trim()
        .parse()
        .unwrap_or(0)
}

/// `(name, image)` of the inventory's rows in PostgreSQL.
async fn pg_rows(pg: &tokio_postgres::Client, namespace: &str) -> Vec<(String, String)> {
    let exists = pg
        .query_opt("SELECT 1 FROM pg_tables WHERE tablename = 'inventory'", &[])
        .await
        .unwrap()
        .is_some();
    if !exists {
        return Vec::new();
    }
    pg.query(
        "SELECT payload->>'name', payload->'attributes'->>'image' FROM inventory \
         WHERE inventory_namespace = $1 AND inventory_name = 'first-inventory' ORDER BY 1",
        &[&namespace],
    )
    .await
    .unwrap()
    .iter()
    .map(|row| (row.get(0), row.get(1)))
    .collect()
}

fn condition(
    conditions: &[k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: &str,
) -> Option<(String, String, String)> {
    conditions
        .iter()
        .find(|c| c.type_ == type_)
        .map(|c| (c.status.clone(), c.reason.clone(), c.message.clone()))
}

fn cond(status: &str, reason: &str, message: &str) -> Option<(String, String, String)> {
    Some((status.to_owned(), reason.to_owned(), message.to_owned()))
}

async fn set_image(deployments: &Api<Deployment>, name: &str, image: &str) {
    let patch = json!({"spec": {"template": {"spec": {"containers": [{"name": "main", "image": image}]}}}});
    deployments
        .patch(name, &PatchParams::default(), &Patch::Strategic(&patch))
        .await
        .unwrap();
}

async fn annotate<K>(api: &Api<K>, name: &str, key: &str, value: &str)
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let patch = json!({"metadata": {"annotations": {key: value}}});
    api.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
}

// ---------------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn first_inventory_pipeline_to_git_and_postgres() {
    let _serial = SERIAL.lock().await;
    let Some(plane) = ControlPlane::start_for_test().await else {
        return;
    };
    let Some(git) =
        kollect_testkit::backends::start_for_test(|| GitServer::start("inventory-bot", "s3cret-token"))
    else {
        return;
    };
    let Some((pg, pg_client)) = postgres().await else {
        return;
    };
    let ns = plane.create_namespace("pipeline").await.unwrap();
    let repo_url = git.create_repo("inventory").unwrap();
    let document = format!("inventory/{ns}/first-inventory.yaml");
    plane
        .apply_yaml(&deployment("web", "web", "nginx:1.27"), &ns)
        .await
        .unwrap();
    plane
        .apply_yaml(&deployment("api", "web", "api:1"), &ns)
        .await
        .unwrap();
    plane
        .apply_yaml(&pipeline(&git, &repo_url, Some(&pg.dsn("postgres"))), &ns)
        .await
        .unwrap();

    let (client, status_writes) = recording_client(&plane).await;
    let operator = Running::start(client.clone(), test_options()).await;
    let inventories: Api<KollectInventory> = Api::namespaced(client.clone(), &ns);
    let targets: Api<KollectTarget> = Api::namespaced(client.clone(), &ns);
    let snapshot_sinks: Api<KollectSnapshotSink> = Api::namespaced(client.clone(), &ns);
    let database_sinks: Api<KollectDatabaseSink> = Api::namespaced(client.clone(), &ns);
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);

    // 1. Both sinks receive both rows; statuses say so.
    let status = eventually("the inventory exports to both sinks", || async {
        let inventory = inventories.get("first-inventory").await.ok()?;
        let status = inventory.status?;
        let exported = condition(&status.conditions, "Synced").map(|c| (c.0, c.1))
            == Some(("True".into(), "Exported".into()));
        (exported && status.item_count == Some(2)).then_some(status)
    })
    .await;
    assert_eq!(
        condition(&status.conditions, "Ready"),
        cond("True", "Exported", "exported 2 item(s) across 2 sink(s)")
    );
    assert_eq!(
        condition(&status.conditions, "SinkReachable"),
        cond("True", "ExportSucceeded", "all bound sinks accepted the export")
    );
    assert_eq!(condition(&status.conditions, "Degraded"), None);
    assert_eq!(status.item_count, Some(2));
    assert_eq!(status.observed_generation, Some(1));
    let names: Vec<&str> = status.sink_exports.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["snapshot/inventory-git", "database/inventory-pg"]);
    for export in &status.sink_exports {
        // Right after the export, or after a later pass found nothing new.
        let synced = condition(&export.conditions, "Synced").unwrap();
        assert!(
            synced == ("True".into(), "Exported".into(), "export completed".into())
                || (synced.0 == "False"
                    && synced.1 == "Debounced"
                    && synced.2.starts_with("checksum unchanged; next export at ")),
            "{synced:?}"
        );
        assert!(
            export.last_checksum.as_deref().is_some_and(|c| c.len() == 64),
            "{export:?}"
        );
        assert!(export.last_export_time.is_some());
    }
    let file = git_file(&git, "inventory", &document).expect("the inventory document is committed");
    assert!(file.contains("nginx:1.27") && file.contains("api:1"), "{file}");
    assert_eq!(
        pg_rows(&pg_client, &ns).await,
        [
            ("api".to_owned(), "api:1".to_owned()),
            ("web".to_owned(), "nginx:1.27".to_owned())
        ]
    );
    let target = eventually("the target reports its rows and verified sinks", || async {
        let status = targets.get("web-deployments").await.ok()?.status?;
        (condition(&status.conditions, "SinkReachable").map(|c| c.1) == Some("ConnectionVerified".to_owned()))
            .then_some(status)
    })
    .await;
    assert_eq!(
        condition(&target.conditions, "Ready"),
        cond(
            "True",
            "Collecting",
            "profileRef \"deployments\" resolved; collecting 2 resource(s)"
        )
    );
    assert_eq!(
        condition(&target.conditions, "Synced").map(|c| c.1),
        Some("Collecting".to_owned())
    );
    assert_eq!(condition(&target.conditions, "Degraded"), None);
    assert_eq!(target.collected_count, Some(2));
    assert!(target.collected_count_updated_at.is_some());
    assert!(
        target.effective_namespaces.contains(&ns),
        "{:?}",
        target.effective_namespaces
    );
    assert_eq!(target.extraction_failures, Some(0));
    let sink_status = snapshot_sinks.get("inventory-git").await.unwrap().status.unwrap();
    assert_eq!(
        condition(&sink_status.conditions, "ConnectionVerified"),
        cond("True", "ConnectionOK", "TLS and git remote reachability verified")
    );

    // 2. A changed object reaches both sinks.
    set_image(&deployments, "web", "nginx:1.28").await;
    eventually("the new image reaches Git and PostgreSQL", || async {
        let in_git = git_file(&git, "inventory", &document).is_some_and(|f| f.contains("nginx:1.28"));
        let in_pg = pg_rows(&pg_client, &ns)
            .await
            .contains(&("web".to_owned(), "nginx:1.28".to_owned()));
        (in_git && in_pg).then_some(())
    })
    .await;

    // 3. An object relabelled out of the target's selection leaves both sinks.
    let relabel = json!({"metadata": {"labels": {"tier": "batch"}}});
    deployments
        .patch("api", &PatchParams::default(), &Patch::Merge(&relabel))
        .await
        .unwrap();
    eventually("the relabelled object leaves both sinks", || async {
        let gone_from_git = git_file(&git, "inventory", &document).is_some_and(|f| !f.contains("api:1"));
        let rows = pg_rows(&pg_client, &ns).await;
        (gone_from_git && rows == [("web".to_owned(), "nginx:1.28".to_owned())]).then_some(())
    })
    .await;
    // An object created and deleted again comes and goes in both sinks.
    plane
        .apply_yaml(&deployment("extra", "web", "extra:1"), &ns)
        .await
        .unwrap();
    eventually("the new object reaches both sinks", || async {
        let in_git = git_file(&git, "inventory", &document).is_some_and(|f| f.contains("extra:1"));
        let in_pg = pg_rows(&pg_client, &ns)
            .await
            .contains(&("extra".to_owned(), "extra:1".to_owned()));
        (in_git && in_pg).then_some(())
    })
    .await;
    deployments
        .delete("extra", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the deleted object leaves both sinks", || async {
        let gone_from_git = git_file(&git, "inventory", &document).is_some_and(|f| !f.contains("extra:1"));
        let rows = pg_rows(&pg_client, &ns).await;
        (gone_from_git && rows == [("web".to_owned(), "nginx:1.28".to_owned())]).then_some(())
    })
    .await;
    eventually("the inventory counts one item", || async {
        let status = inventories.get("first-inventory").await.ok()?.status?;
        (status.item_count == Some(1)).then_some(())
    })
    .await;

    // 4. The Git server goes down: PostgreSQL keeps receiving changes, the conditions say which
    //    sink failed, and everything converges when Git is back.
    git.set_available(false);
    set_image(&deployments, "web", "nginx:1.29").await;
    let status = eventually("the inventory reports the failed sink", || async {
        let status = inventories.get("first-inventory").await.ok()?.status?;
        (condition(&status.conditions, "Synced").map(|c| c.1) == Some("PartiallySynced".to_owned()))
            .then_some(status)
    })
    .await;
    assert_eq!(
        condition(&status.conditions, "Synced").map(|c| (c.0, c.2)),
        Some(("False".to_owned(), "1/2 sinks exported; 1 failed".to_owned()))
    );
    assert_eq!(
        condition(&status.conditions, "Ready"),
        cond("True", "PartiallySynced", "exported 1 item(s) to 1/2 sink(s)")
    );
    let reachable = condition(&status.conditions, "SinkReachable").unwrap();
    assert_eq!(
        (reachable.0.as_str(), reachable.1.as_str()),
        ("False", "ExportFailed")
    );
    assert!(
        reachable.2.starts_with("snapshot/inventory-git: "),
        "{reachable:?}"
    );
    assert!(
        !reachable.2.contains("s3cret-token"),
        "no credentials in status: {reachable:?}"
    );
    let git_export = &status.sink_exports[0];
    assert_eq!(
        condition(&git_export.conditions, "Synced").map(|c| c.1),
        Some("ExportFailed".to_owned())
    );
    assert_eq!(
        condition(&status.sink_exports[1].conditions, "Synced"),
        cond("True", "Exported", "export completed")
    );
    assert!(
        pg_rows(&pg_client, &ns)
            .await
            .contains(&("web".to_owned(), "nginx:1.29".to_owned()))
    );
    assert!(git_file(&git, "inventory", &document).is_some_and(|f| f.contains("nginx:1.28")));
    // A requested connection test shows the outage on the sink, and the target reports it.
    annotate(
        &snapshot_sinks,
        "inventory-git",
        "kollect.dev/test-connection",
        "true",
    )
    .await;
    let sink_status = eventually("the sink's connection test fails", || async {
        let status = snapshot_sinks.get("inventory-git").await.ok()?.status?;
        (condition(&status.conditions, "ConnectionVerified").map(|c| c.0) == Some("False".to_owned()))
            .then_some(status)
    })
    .await;
    let verified = condition(&sink_status.conditions, "ConnectionVerified").unwrap();
    assert_eq!(verified.1, "ConnectionTestFailed");
    assert_eq!(
        condition(&sink_status.conditions, "Degraded").map(|c| (c.0, c.1)),
        Some(("True".to_owned(), "ConnectionTestFailed".to_owned()))
    );
    let target = eventually("the target reports the unreachable sink", || async {
        let status = targets.get("web-deployments").await.ok()?.status?;
        (condition(&status.conditions, "Degraded").map(|c| c.1) == Some("SinkUnreachable".to_owned()))
            .then_some(status)
    })
    .await;
    assert_eq!(
        condition(&target.conditions, "Ready"),
        None,
        "a degraded target has no Ready"
    );
    assert_eq!(
        condition(&target.conditions, "SinkReachable").map(|c| (c.0, c.1)),
        Some(("False".to_owned(), "SinkUnreachable".to_owned()))
    );
    // The documented metric series moved with what happened so far.
    let text = operator.metrics().await;
    for (series, what) in [
        ("kollect_collect_items_total", "rows in the store"),
        (
            "kollect_collected_objects{profile=\"deployments\",gvk=\"apps/v1/Deployment\"}",
            "rows per profile",
        ),
        (
            "kollect_reconcile_total{controller=\"kollecttarget\",result=\"success\"}",
            "target reconciles",
        ),
        (
            "kollect_reconcile_total{controller=\"kollectinventory\",result=\"success\"}",
            "inventory reconciles",
        ),
        (
            "kollect_reconcile_total{controller=\"kollectsnapshotsink\",result=\"success\"}",
            "sink reconciles",
        ),
        (
            "kollect_reconcile_errors_total{kind=\"KollectInventory\",error_class=\"transient\"}",
            "failed exports",
        ),
        (
            "kollect_export_duration_seconds_count{sink_type=\"git\"}",
            "git exports",
        ),
        (
            "kollect_export_duration_seconds_count{sink_type=\"postgres\"}",
            "postgres exports",
        ),
        (
            "kollect_export_bytes_total{sink_type=\"postgres\"}",
            "bytes delivered",
        ),
        ("kollect_sink_errors_total{reason=\"transient\"}", "sink errors"),
        (
            "kollect_export_debounced_total{controller=\"KollectInventory\"}",
            "debounced passes",
        ),
        (
            "kollect_sink_connection_test_total{type=\"git\",result=\"failure\"}",
            "failed probes",
        ),
        (
            "kollect_sink_connection_test_total{type=\"postgres\",result=\"success\"}",
            "probes",
        ),
        ("kollect_leader_is_leader", "leadership"),
    ] {
        assert!(
            sample(&text, series) > 0.0,
            "{what}: {series} did not move\n{text}"
        );
    }
    assert!(
        text.contains("kollect_workqueue_depth{controller=\"kollectinventory\"}"),
        "{text}"
    );
    git.set_available(true);
    eventually("Git converges after the outage", || async {
        let file = git_file(&git, "inventory", &document)?;
        let status = inventories.get("first-inventory").await.ok()?.status?;
        let synced = condition(&status.conditions, "Synced").map(|c| c.1) == Some("Exported".to_owned());
        let sink = snapshot_sinks.get("inventory-git").await.ok()?.status?;
        let verified =
            condition(&sink.conditions, "ConnectionVerified").map(|c| c.0) == Some("True".to_owned());
        let target = targets.get("web-deployments").await.ok()?.status?;
        let ready = condition(&target.conditions, "Ready").is_some();
        (file.contains("nginx:1.29") && synced && verified && ready).then_some(())
    })
    .await;

    // 5. Steady state: passes that find nothing new write no status.
    let reconciles = |text: &str| {
        sample(
            text,
            "kollect_reconcile_total{controller=\"kollectinventory\",result=\"success\"}",
        )
    };
    let nudge = |n: usize| {
        let database_sinks = database_sinks.clone();
        async move {
            annotate(
                &database_sinks,
                "inventory-pg",
                "test.kollect.dev/nudge",
                &n.to_string(),
            )
            .await
        }
    };
    let before = reconciles(&operator.metrics().await);
    nudge(1).await;
    eventually("the nudge is reconciled", || async {
        (reconciles(&operator.metrics().await) > before).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let writes = status_writes.status_writes();
    let target_reconciles = |text: &str| {
        sample(
            text,
            "kollect_reconcile_total{controller=\"kollecttarget\",result=\"success\"}",
        )
    };
    let targets_before = target_reconciles(&operator.metrics().await);
    // One nudge at a time: triggers queued together are reconciled once.
    for n in [2, 3] {
        let before = reconciles(&operator.metrics().await);
        nudge(n).await;
        eventually("the nudge is reconciled", || async {
            (reconciles(&operator.metrics().await) > before).then_some(())
        })
        .await;
    }
    eventually("the target was reconciled again", || async {
        (target_reconciles(&operator.metrics().await) >= targets_before + 2.0).then_some(())
    })
    .await;
    assert_eq!(
        status_writes.status_writes(),
        writes,
        "status writes at steady state"
    );
    let status = inventories.get("first-inventory").await.unwrap().status.unwrap();
    assert_eq!(
        condition(&status.conditions, "Synced"),
        cond(
            "True",
            "Exported",
            "content unchanged; 2 sink(s) already up to date"
        )
    );
    let debounced = condition(&status.sink_exports[1].conditions, "Synced").unwrap();
    assert_eq!(
        (debounced.0.as_str(), debounced.1.as_str()),
        ("False", "Debounced")
    );
    assert!(
        debounced.2.starts_with("checksum unchanged; next export at "),
        "{debounced:?}"
    );

    // 6. A restarted operator with unchanged content exports nothing (state seeded from status).
    operator.stop().await;
    let commits = git_commits(&git, "inventory");
    let operator = Running::start(client.clone(), test_options()).await;
    let text = eventually("the restarted operator looked at both sinks", || async {
        let text = operator.metrics().await;
        (sample(
            &text,
            "kollect_export_debounced_total{controller=\"KollectInventory\"}",
        ) >= 2.0)
            .then_some(text)
    })
    .await;
    assert_eq!(
        sample(&text, "kollect_export_duration_seconds_count"),
        0.0,
        "{text}"
    );
    assert_eq!(git_commits(&git, "inventory"), commits);

    // 7. Deleting the inventory removes its file and its rows, then the inventory.
    inventories
        .delete("first-inventory", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the inventory's exports are removed", || async {
        let gone = inventories.get_opt("first-inventory").await.ok()?.is_none();
        let no_file = git_file(&git, "inventory", &document).is_none();
        let no_rows = pg_rows(&pg_client, &ns).await.is_empty();
        (gone && no_file && no_rows).then_some(())
    })
    .await;
    operator.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_api_server_outage_longer_than_the_lease_does_not_stop_the_operator() {
    let _serial = SERIAL.lock().await;
    let Some(mut plane) = ControlPlane::start_for_test().await else {
        return;
    };
    let Some(git) = kollect_testkit::backends::start_for_test(|| GitServer::start("bot", "token")) else {
        return;
    };
    let ns = plane.create_namespace("outage").await.unwrap();
    let repo_url = git.create_repo("inventory").unwrap();
    let document = format!("inventory/{ns}/first-inventory.yaml");
    plane
        .apply_yaml(&deployment("web", "web", "nginx:1.27"), &ns)
        .await
        .unwrap();
    plane
        .apply_yaml(&pipeline(&git, &repo_url, None), &ns)
        .await
        .unwrap();

    let (client, _) = recording_client(&plane).await;
    let lease = LeaseTimings {
        lease_duration: Duration::from_secs(4),
        renew_deadline: Duration::from_secs(3),
        retry_period: Duration::from_secs(1),
    };
    let options = OperatorOptions {
        leader_elect: true,
        lease,
        leader_election_namespace: ns.clone(),
        identity: "outage-test".into(),
        ..test_options()
    };
    let operator = Running::start(client.clone(), options).await;
    let leader = |text: &str| sample(text, "kollect_leader_is_leader");
    eventually("the operator leads and exports", || async {
        let leads = leader(&operator.metrics().await) == 1.0;
        let exported = git_file(&git, "inventory", &document).is_some_and(|f| f.contains("nginx:1.27"));
        (leads && exported).then_some(())
    })
    .await;

    plane.stop_apiserver();
    eventually("the leader steps down after the renew deadline", || async {
        (leader(&operator.metrics().await) == 0.0).then_some(())
    })
    .await;
    // Stay down for longer than the lease.
    tokio::time::sleep(lease.lease_duration * 2).await;
    assert!(
        !operator.task.is_finished(),
        "the operator kept running through the outage"
    );
    assert_eq!(get(operator.address, "/healthz").await.as_deref(), Some("ok"));
    plane.start_apiserver().await.unwrap();

    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    eventually("the API server is back", || async {
        deployments.list(&Default::default()).await.ok()
    })
    .await;
    plane
        .apply_yaml(&deployment("late", "web", "late:1"), &ns)
        .await
        .unwrap();
    eventually("the operator leads again and the sink converges", || async {
        let leads = leader(&operator.metrics().await) == 1.0;
        let file = git_file(&git, "inventory", &document)?;
        (leads && file.contains("late:1") && file.contains("nginx:1.27")).then_some(())
    })
    .await;
    let lease = Api::<Lease>::namespaced(client.clone(), &ns)
        .get("3274ac8a.kollect.dev")
        .await
        .unwrap();
    assert_eq!(
        lease.spec.and_then(|s| s.holder_identity).as_deref(),
        Some("outage-test")
    );
    operator.stop().await;
    // Shutdown releases the lease for the next replica.
    let lease = Api::<Lease>::namespaced(client, &ns)
        .get("3274ac8a.kollect.dev")
        .await
        .unwrap();
    assert_eq!(lease.spec.and_then(|s| s.holder_identity), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn conditions_of_targets_sinks_scopes_and_connection_tests() {
    use k8s_openapi::api::events::v1::Event;
    use kollect_core::api::v1alpha1::KollectConnectionTest;

    let _serial = SERIAL.lock().await;
    let Some((plane, _git, ns, repo_url)) = git_pipeline("conditions").await else {
        return;
    };
    let elsewhere = plane.create_namespace("elsewhere").await.unwrap();
    plane
        .apply_yaml(
            &format!(
                "apiVersion: kollect.dev/v1alpha1
kind: KollectTarget
metadata: {{name: orphan}}
spec: {{profileRef: later}}
---
apiVersion: kollect.dev/v1alpha1
kind: KollectTarget
metadata: {{name: paused}}
spec: {{profileRef: deployments, suspend: true}}
---
apiVersion: kollect.dev/v1alpha1
kind: KollectProfile
metadata: {{name: strict}}
spec:
  targetGVK: {{group: apps, version: v1, kind: Deployment}}
  attributes: [{{name: broken, path: 'cel: int(object.metadata.name)'}}]
---
apiVersion: kollect.dev/v1alpha1
kind: KollectTarget
metadata: {{name: strict}}
spec: {{profileRef: strict}}
---
apiVersion: kollect.dev/v1alpha1
kind: KollectSnapshotSink
metadata: {{name: borrowed-secret}}
spec:
  type: git
  endpoint: {repo_url}
  secretRef: {{name: git-credentials, namespace: {elsewhere}}}
---
apiVersion: kollect.dev/v1alpha1
kind: KollectSnapshotSink
metadata: {{name: insecure}}
spec:
  type: git
  endpoint: {repo_url}
  secretRef: {{name: git-credentials}}
  connectionTest: false
  tls: {{insecureSkipVerify: true}}
---
apiVersion: kollect.dev/v1alpha1
kind: KollectConnectionTest
metadata: {{name: check-git}}
spec:
  sinkRef: {{snapshotSinkRef: inventory-git}}
  ttlSecondsAfterFinished: 2
---
apiVersion: kollect.dev/v1alpha1
kind: KollectConnectionTest
metadata: {{name: kept-check}}
spec:
  sinkRef: {{snapshotSinkRef: inventory-git}}
---
apiVersion: kollect.dev/v1alpha1
kind: KollectConnectionTest
metadata: {{name: check-nothing}}
spec:
  sinkRef: {{databaseSinkRef: absent}}
---
apiVersion: kollect.dev/v1alpha1
kind: KollectScope
metadata: {{name: tenant}}
spec:
  snapshotSinkRefs: [other-git]
  minExportInterval: 2h
"
            ),
            &ns,
        )
        .await
        .unwrap();

    let (client, _) = recording_client(&plane).await;
    let operator = Running::start(client.clone(), test_options()).await;
    let targets: Api<KollectTarget> = Api::namespaced(client.clone(), &ns);
    let inventories: Api<KollectInventory> = Api::namespaced(client.clone(), &ns);
    let sinks: Api<KollectSnapshotSink> = Api::namespaced(client.clone(), &ns);
    let tests: Api<KollectConnectionTest> = Api::namespaced(client.clone(), &ns);
    let target_condition = |name: &'static str, type_: &'static str| {
        let targets = targets.clone();
        async move {
            let status = targets.get(name).await.ok()?.status?;
            condition(&status.conditions, type_)
        }
    };

    // Targets: a missing profile, a suspended target, failing extraction.
    let degraded = eventually("the orphan target is degraded", || async {
        target_condition("orphan", "Degraded").await
    })
    .await;
    assert_eq!(
        degraded,
        (
            "True".into(),
            "ProfileNotFound".into(),
            format!("KollectProfile \"later\" not found in namespace {ns}")
        )
    );
    assert_eq!(target_condition("orphan", "Ready").await, None);
    assert_eq!(target_condition("orphan", "Synced").await, None);
    assert_eq!(
        target_condition("orphan", "SinkReachable")
            .await
            .map(|c| (c.0, c.1)),
        Some(("False".to_owned(), "ProfileNotFound".to_owned()))
    );
    let paused = eventually("the paused target is degraded", || async {
        target_condition("paused", "Degraded").await
    })
    .await;
    assert_eq!(
        paused,
        (
            "True".into(),
            "Suspended".into(),
            "target is suspended; its rows were dropped".into()
        )
    );
    let strict = eventually("the strict target reports the failed extraction", || async {
        target_condition("strict", "Degraded").await
    })
    .await;
    assert_eq!(
        (strict.0.as_str(), strict.1.as_str()),
        ("True", "ExtractionFailed")
    );
    assert!(
        strict.2.starts_with(&format!(
            "1 resource(s) failed attribute extraction: {ns}/web: attribute \"broken\": eval CEL"
        )),
        "{strict:?}"
    );
    // Creating the profile re-registers the target that waited for it.
    plane
        .apply_yaml(
            "apiVersion: kollect.dev/v1alpha1
kind: KollectProfile
metadata: {name: later}
spec:
  targetGVK: {group: apps, version: v1, kind: Deployment}
  attributes: [{name: name, path: '$.metadata.name'}]
",
            &ns,
        )
        .await
        .unwrap();
    eventually("the orphan target collects once its profile exists", || async {
        let ready = target_condition("orphan", "Ready").await?;
        (ready.1 == "Collecting").then_some(())
    })
    .await;

    // Sinks: a Secret in another namespace is refused (A10); TLSInsecure; a requested one-shot
    // test; the preview while annotated.
    let sink_condition = |name: &'static str, type_: &'static str| {
        let sinks = sinks.clone();
        async move {
            let status = sinks.get(name).await.ok()?.status?;
            condition(&status.conditions, type_)
        }
    };
    let refused = eventually("the cross-namespace Secret is refused", || async {
        sink_condition("borrowed-secret", "ConnectionVerified").await
    })
    .await;
    assert_eq!(
        (refused.0.as_str(), refused.1.as_str()),
        ("False", "SecretResolveFailed")
    );
    assert!(
        refused.2.contains("--allow-cross-namespace-secret-refs"),
        "{refused:?}"
    );
    assert!(
        refused.2.contains(&format!("Secret {elsewhere}/git-credentials")),
        "{refused:?}"
    );
    assert_eq!(
        sink_condition("borrowed-secret", "Degraded").await.map(|c| c.1),
        Some("SecretResolveFailed".to_owned())
    );
    let insecure = eventually("the insecure sink says so", || async {
        sink_condition("insecure", "TLSInsecure").await
    })
    .await;
    assert_eq!(
        (insecure.0.as_str(), insecure.1.as_str()),
        ("True", "InsecureSkipVerify")
    );
    assert_eq!(
        sink_condition("insecure", "ConnectionVerified").await,
        None,
        "connectionTest: false and no annotation: no probe"
    );
    annotate(&sinks, "insecure", "kollect.dev/test-connection", "true").await;
    eventually(
        "the one-shot test passes and its annotation is removed",
        || async {
            let sink = sinks.get("insecure").await.ok()?;
            let annotated = sink
                .metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.contains_key("kollect.dev/test-connection"));
            let verified = condition(&sink.status?.conditions, "ConnectionVerified")?;
            (verified.1 == "ConnectionOK" && !annotated).then_some(())
        },
    )
    .await;
    annotate(&sinks, "inventory-git", "kollect.dev/preview", "true").await;
    let preview = eventually("the preview is rendered", || async {
        sinks.get("inventory-git").await.ok()?.status?.preview
    })
    .await;
    // The synthetic sample: inventory team-a/api with four Deployments.
    assert_eq!(preview.object_path.as_deref(), Some("inventory/team-a/api.yaml"));
    let subject = preview
        .git
        .as_ref()
        .and_then(|g| g.sample_commit_subject.clone())
        .unwrap_or_default();
    assert!(subject.contains("team-a/api"), "{subject}");
    let layout = preview.layout.clone().expect("layout preview");
    assert_eq!(layout.mode.as_deref(), Some("document"), "{layout:?}");
    assert!(preview.rendered_at.is_some());
    let remove = json!({"metadata": {"annotations": {"kollect.dev/preview": null}}});
    sinks
        .patch("inventory-git", &PatchParams::default(), &Patch::Merge(&remove))
        .await
        .unwrap();
    eventually("the preview is cleared", || async {
        let status = sinks.get("inventory-git").await.ok()?.status?;
        status.preview.is_none().then_some(())
    })
    .await;

    // Connection tests: one probe, owned by the sink, deleted after the TTL; a missing sink.
    let missing = eventually("the test of a missing sink completes", || async {
        let status = tests.get("check-nothing").await.ok()?.status?;
        status.completed?.then_some(status)
    })
    .await;
    assert_eq!(
        condition(&missing.conditions, "Ready"),
        cond(
            "False",
            "SinkNotFound",
            &format!("database sink \"absent\" not found in namespace {ns}")
        )
    );
    assert_eq!(
        condition(&missing.conditions, "ConnectionVerified").map(|c| c.1),
        Some("SinkNotFound".to_owned())
    );
    let kept = eventually("the kept connection test completes", || async {
        let test = tests.get("kept-check").await.ok()?;
        test.status.as_ref()?.completed?.then_some(test)
    })
    .await;
    let status = kept.status.as_ref().unwrap();
    assert_eq!(
        condition(&status.conditions, "ConnectionVerified"),
        cond("True", "ConnectionOK", "TLS and git remote reachability verified")
    );
    assert_eq!(
        condition(&status.conditions, "Ready").map(|c| (c.0, c.1)),
        Some(("True".to_owned(), "ProbeSucceeded".to_owned()))
    );
    assert!(status.latency_ms.is_some() && status.completed_at.is_some());
    assert_eq!(status.observed_generation, Some(1));
    let owners = kept.metadata.owner_references.clone().unwrap_or_default();
    assert_eq!(owners.len(), 1, "{owners:?}");
    assert_eq!(
        (
            owners[0].kind.as_str(),
            owners[0].name.as_str(),
            owners[0].controller
        ),
        ("KollectSnapshotSink", "inventory-git", Some(true))
    );
    eventually("the git connection test is deleted after its TTL", || async {
        tests.get_opt("check-git").await.ok()?.is_none().then_some(())
    })
    .await;
    let probes = sample(
        &operator.metrics().await,
        "kollect_sink_connection_test_total{type=\"git\",result=\"success\"}",
    );
    assert!(probes >= 2.0, "probes of the git sinks are counted: {probes}");

    // Scopes: a sink outside the allowlist stops the inventory; allowed, the interval floor
    // applies.
    let denied = eventually("the inventory is denied its sink", || async {
        let status = inventories.get("first-inventory").await.ok()?.status?;
        condition(&status.conditions, "Degraded")
    })
    .await;
    assert_eq!(
        denied,
        (
            "True".into(),
            "ScopeSinkDenied".into(),
            "snapshot sink \"inventory-git\" is not allowed by KollectScope \"tenant\"".into()
        )
    );
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    eventually("a Warning event names the denial", || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| e.reason.as_deref() == Some("ScopeSinkDenied") && e.type_.as_deref() == Some("Warning"))
            .then_some(())
    })
    .await;
    let allow = json!({"spec": {"snapshotSinkRefs": ["inventory-git"]}});
    Api::<kollect_core::api::v1alpha1::KollectScope>::namespaced(client.clone(), &ns)
        .patch("tenant", &PatchParams::default(), &Patch::Merge(&allow))
        .await
        .unwrap();
    eventually("the allowed inventory exports", || async {
        let status = inventories.get("first-inventory").await.ok()?.status?;
        let synced = condition(&status.conditions, "Synced")?;
        (synced.1 == "Exported" && condition(&status.conditions, "Degraded").is_none()).then_some(())
    })
    .await;
    annotate(&sinks, "inventory-git", "test.kollect.dev/nudge", "1").await;
    let floor = eventually("the next pass shows the scope's interval floor", || async {
        let status = inventories.get("first-inventory").await.ok()?.status?;
        let synced = condition(&status.sink_exports.first()?.conditions, "Synced")?;
        (synced.1 == "Debounced").then_some(synced.2)
    })
    .await;
    assert!(floor.ends_with("(interval 2h0m0s)"), "{floor}");
    eventually("a Normal event records the export", || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items
            .iter()
            .any(|e| e.reason.as_deref() == Some("ExportSucceeded") && e.type_.as_deref() == Some("Normal"))
            .then_some(())
    })
    .await;

    // A namespace with 1,800 rows warns that the inventory should be split.
    let big = plane.create_namespace("big").await.unwrap();
    plane
        .apply_yaml(
            "apiVersion: kollect.dev/v1alpha1
kind: KollectProfile
metadata: {name: configmaps}
spec:
  targetGVK: {version: v1, kind: ConfigMap}
  attributes: [{name: name, path: '$.metadata.name'}]
---
apiVersion: kollect.dev/v1alpha1
kind: KollectTarget
metadata: {name: configmaps}
spec: {profileRef: configmaps, labelSelector: {matchLabels: {bulk: \"yes\"}}}
---
apiVersion: kollect.dev/v1alpha1
kind: KollectInventory
metadata: {name: everything}
spec: {}
",
            &big,
        )
        .await
        .unwrap();
    let configmaps: Api<k8s_openapi::api::core::v1::ConfigMap> = Api::namespaced(client.clone(), &big);
    use futures::StreamExt;
    futures::stream::iter(0..1800)
        .map(|i| {
            let configmaps = configmaps.clone();
            async move {
                let mut object = k8s_openapi::api::core::v1::ConfigMap::default();
                object.metadata.name = Some(format!("cm-{i:04}"));
                object.metadata.labels = Some([("bulk".to_owned(), "yes".to_owned())].into());
                configmaps.create(&Default::default(), &object).await.unwrap();
            }
        })
        .buffer_unordered(32)
        .collect::<Vec<()>>()
        .await;
    let big_inventories: Api<KollectInventory> = Api::namespaced(client.clone(), &big);
    let warning = eventually("the big inventory warns", || async {
        let status = big_inventories.get("everything").await.ok()?.status?;
        condition(&status.conditions, "ExportShardWarning")
    })
    .await;
    assert_eq!(
        warning,
        (
            "True".into(),
            "ApproachingExportCap".into(),
            format!("1800 rows in namespace {big}; consider splitting it (warning at 1800)")
        )
    );
    assert!(sample(&operator.metrics().await, "kollect_export_shard_warn_total") >= 1.0);

    // Scope ceilings on targets: a kind outside allowedGVKs, a kind inside it spelt in another
    // case (GVKs compare case-insensitively), a target that matches a denied namespace (it does
    // not collect and says why), and the same target narrowed to the scope.
    plane
        .apply_yaml(
            "apiVersion: kollect.dev/v1alpha1
kind: KollectScope
metadata: {name: ceiling}
spec:
  allowedGVKs: [{group: core, version: V1, kind: configmap}]
  deniedNamespaces: [kube-system]
---
apiVersion: kollect.dev/v1alpha1
kind: KollectProfile
metadata: {name: deployments}
spec:
  targetGVK: {group: apps, version: v1, kind: Deployment}
  attributes: [{name: name, path: '$.metadata.name'}]
---
apiVersion: kollect.dev/v1alpha1
kind: KollectTarget
metadata: {name: deployments}
spec: {profileRef: deployments}
",
            &big,
        )
        .await
        .unwrap();
    let big_targets: Api<KollectTarget> = Api::namespaced(client.clone(), &big);
    let denied = eventually("the Deployment target is outside the scope", || async {
        let status = big_targets.get("deployments").await.ok()?.status?;
        condition(&status.conditions, "Degraded")
    })
    .await;
    assert_eq!(
        denied,
        (
            "True".into(),
            "ScopeGVKDenied".into(),
            "KollectScope \"ceiling\" does not allow apps/v1/Deployment".into()
        )
    );
    let refused = eventually("the ConfigMap target matches a denied namespace", || async {
        let status = big_targets.get("configmaps").await.ok()?.status?;
        condition(&status.conditions, "Degraded").filter(|c| c.1 == "ScopeNamespaceDenied")
    })
    .await;
    assert_eq!(
        refused,
        cond(
            "True",
            "ScopeNamespaceDenied",
            "KollectScope \"ceiling\" does not allow namespace(s) kube-system that the target matches; \
             narrow the target (includedNamespaces, excludedNamespaces, namespaceSelector) to the scope"
        )
        .unwrap()
    );
    let events: Api<k8s_openapi::api::events::v1::Event> = Api::namespaced(client.clone(), &big);
    eventually("a Warning event names the refused namespace", || async {
        let list = events.list(&Default::default()).await.ok()?;
        list.items.into_iter().find(|e| {
            e.reason.as_deref() == Some("ScopeNamespaceDenied") && e.type_.as_deref() == Some("Warning")
        })
    })
    .await;
    big_targets
        .patch(
            "configmaps",
            &PatchParams::default(),
            &Patch::Merge(&json!({"spec": {"excludedNamespaces": ["kube-system"]}})),
        )
        .await
        .unwrap();
    let namespaces = eventually("the narrowed ConfigMap target collects again", || async {
        let status = big_targets.get("configmaps").await.ok()?.status?;
        condition(&status.conditions, "Ready")
            .filter(|c| c.0 == "True")
            .map(|_| status)
    })
    .await;
    assert!(
        namespaces.effective_namespaces.contains(&big)
            && !namespaces.matched_namespaces.contains(&"kube-system".to_owned()),
        "{:?}",
        namespaces
    );
    operator.stop().await;
}

/// A sink type the CRDs admit but this build has no backend for fails with one terminal
/// reason everywhere (the sink, a connection test, the inventory binding), is never reported as
/// a missing Secret, and does not keep the inventory's deletion waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_unsupported_sink_type_fails_clearly_and_never_blocks_deletion() {
    use k8s_openapi::api::events::v1::Event;
    use kollect_core::api::v1alpha1::KollectConnectionTest;

    let _serial = SERIAL.lock().await;
    let Some(plane) = ControlPlane::start_for_test().await else {
        return;
    };
    let ns = plane.create_namespace("unsupported").await.unwrap();
    plane
        .apply_yaml(
            "apiVersion: v1
kind: ConfigMap
metadata: {name: settings}
data: {mode: blue}
---
apiVersion: kollect.dev/v1alpha1
kind: KollectProfile
metadata: {name: configmaps}
spec:
  targetGVK: {group: '', version: v1, kind: ConfigMap}
  attributes: [{name: mode, path: '$.data.mode'}]
---
apiVersion: kollect.dev/v1alpha1
kind: KollectTarget
metadata: {name: configmaps}
spec: {profileRef: configmaps}
---
apiVersion: kollect.dev/v1alpha1
kind: KollectSnapshotSink
metadata: {name: archive}
spec:
  type: gitlab
  endpoint: https://gitlab.example.com/platform/inventory.git
  secretRef: {name: does-not-exist}
---
apiVersion: kollect.dev/v1alpha1
kind: KollectConnectionTest
metadata: {name: check-archive}
spec:
  sinkRef: {snapshotSinkRef: archive}
---
apiVersion: kollect.dev/v1alpha1
kind: KollectInventory
metadata: {name: archived}
spec:
  snapshotSinkRefs: [{name: archive}]
",
            &ns,
        )
        .await
        .unwrap();
    let client = plane.client().await.unwrap();
    // A build without the gitlab backend (the default build has a backend for every type).
    let without_gitlab = Box::leak(Box::new(
        kollect_sinks::registry::Registry::builtin()
            .clone()
            .without("gitlab"),
    ));
    let operator = Running::start(
        client.clone(),
        OperatorOptions {
            sink_registry: without_gitlab,
            ..test_options()
        },
    )
    .await;
    let expected = "snapshot sink {ns}/archive: unknown sink type \"gitlab\" (supported: ";
    let expected = expected.replace("{ns}", &ns);

    let sinks: Api<KollectSnapshotSink> = Api::namespaced(client.clone(), &ns);
    let (verified, degraded) = eventually("the sink reports its type as unsupported", || async {
        let status = sinks.get("archive").await.ok()?.status?;
        Some((
            condition(&status.conditions, "ConnectionVerified")?,
            condition(&status.conditions, "Degraded")?,
        ))
    })
    .await;
    for ((status, reason, message), expected_status) in [(verified, "False"), (degraded, "True")] {
        assert_eq!(
            (status.as_str(), reason.as_str()),
            (expected_status, "SinkTypeUnsupported"),
            "{message}"
        );
        assert!(message.starts_with(&expected), "{message}");
    }

    let tests: Api<KollectConnectionTest> = Api::namespaced(client.clone(), &ns);
    let tested = eventually("the connection test names the same reason", || async {
        let status = tests.get("check-archive").await.ok()?.status?;
        condition(&status.conditions, "ConnectionVerified")
    })
    .await;
    assert_eq!(
        (tested.0.as_str(), tested.1.as_str()),
        ("False", "SinkTypeUnsupported")
    );

    let inventories: Api<KollectInventory> = Api::namespaced(client.clone(), &ns);
    let (degraded, binding) = eventually("the inventory names the unsupported binding", || async {
        let status = inventories.get("archived").await.ok()?.status?;
        let binding = condition(&status.sink_exports.first()?.conditions, "Synced")?;
        Some((condition(&status.conditions, "Degraded")?, binding))
    })
    .await;
    assert_eq!(degraded.1, "SinkTypeUnsupported", "{degraded:?}");
    assert!(degraded.2.starts_with(&expected), "{degraded:?}");
    assert_eq!(binding.0, "False", "{binding:?}");
    assert!(binding.2.contains("unknown sink type \"gitlab\""), "{binding:?}");

    inventories
        .delete("archived", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the inventory's deletion finishes", || async {
        inventories
            .get_opt("archived")
            .await
            .ok()?
            .is_none()
            .then_some(())
    })
    .await;
    let events: Api<Event> = Api::namespaced(client.clone(), &ns);
    eventually(
        "a Warning event says nothing was removed from the sink",
        || async {
            let list = events.list(&Default::default()).await.ok()?;
            list.items
                .iter()
                .any(|e| {
                    e.reason.as_deref() == Some("SinkTypeUnsupported")
                        && e.type_.as_deref() == Some("Warning")
                        && e.note
                            .as_deref()
                            .is_some_and(|n| n.contains("without removing anything"))
                })
                .then_some(())
        },
    )
    .await;
    operator.stop().await;
}

/// A target whose list the operator may not make holds no rows; the inventory of its namespace
/// does not wait for it for ever: it exports the other targets' rows and names the target and
/// why in `Degraded`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_forbidden_target_does_not_hold_the_inventory_back() {
    use k8s_openapi::api::rbac::v1::{ClusterRole, ClusterRoleBinding, PolicyRule, RoleRef, Subject};

    let _serial = SERIAL.lock().await;
    let Some((plane, git, ns, _)) = git_pipeline("forbidden").await else {
        return;
    };
    plane
        .apply_yaml(
            "apiVersion: kollect.dev/v1alpha1
kind: KollectProfile
metadata: {name: secrets}
spec:
  targetGVK: {version: v1, kind: Secret}
  attributes: [{name: type, path: '$.type'}]
---
apiVersion: kollect.dev/v1alpha1
kind: KollectTarget
metadata: {name: secrets}
spec: {profileRef: secrets}
",
            &ns,
        )
        .await
        .unwrap();

    // The operator runs as a user that may read Secrets one by one (sink credentials) but not
    // list or watch them.
    let admin = plane.client().await.unwrap();
    let rule = |groups: &[&str], resources: &[&str], verbs: &[&str]| PolicyRule {
        api_groups: Some(groups.iter().map(|s| (*s).to_owned()).collect()),
        resources: Some(resources.iter().map(|s| (*s).to_owned()).collect()),
        verbs: verbs.iter().map(|s| (*s).to_owned()).collect(),
        ..PolicyRule::default()
    };
    let role = ClusterRole {
        metadata: kube::api::ObjectMeta {
            name: Some("kollect-no-secret-list".into()),
            ..Default::default()
        },
        rules: Some(vec![
            rule(&["kollect.dev"], &["*"], &["*"]),
            rule(&["apps"], &["deployments"], &["get", "list", "watch"]),
            rule(&[""], &["namespaces"], &["get", "list", "watch"]),
            rule(&[""], &["secrets"], &["get"]),
            rule(&["", "events.k8s.io"], &["events"], &["*"]),
            rule(&["coordination.k8s.io"], &["leases"], &["*"]),
            rule(
                &["authorization.k8s.io"],
                &["selfsubjectaccessreviews"],
                &["create"],
            ),
        ]),
        ..ClusterRole::default()
    };
    let pp = kube::api::PostParams::default();
    Api::<ClusterRole>::all(admin.clone())
        .create(&pp, &role)
        .await
        .unwrap();
    let binding = ClusterRoleBinding {
        metadata: kube::api::ObjectMeta {
            name: Some("kollect-no-secret-list".into()),
            ..Default::default()
        },
        role_ref: RoleRef {
            api_group: Some("rbac.authorization.k8s.io".into()),
            kind: "ClusterRole".into(),
            name: "kollect-no-secret-list".into(),
        },
        subjects: Some(vec![Subject {
            kind: "User".into(),
            name: "kollect-limited".into(),
            api_group: Some("rbac.authorization.k8s.io".into()),
            ..Subject::default()
        }]),
    };
    Api::<ClusterRoleBinding>::all(admin.clone())
        .create(&pp, &binding)
        .await
        .unwrap();
    let kubeconfig = kube::config::Kubeconfig::read_from(plane.kubeconfig_path()).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    config.auth_info.impersonate = Some("kollect-limited".into());
    let limited = Client::try_from(config).unwrap();

    let mut options = test_options();
    options.watch_namespaces = vec![ns.clone()];
    let operator = Running::start(limited, options).await;
    let inventories: Api<KollectInventory> = Api::namespaced(admin.clone(), &ns);
    let degraded = eventually("the inventory names the forbidden target", || async {
        let status = inventories.get("first-inventory").await.ok()?.status?;
        condition(&status.conditions, "Degraded").filter(|d| d.1 == "TargetDegraded")
    })
    .await;
    assert_eq!(degraded.0, "True");
    assert!(
        degraded.2.starts_with(
            "KollectTarget \"secrets\" cannot list its objects, so the export holds no rows of it: "
        ),
        "{}",
        degraded.2
    );
    let document = format!("inventory/{ns}/first-inventory.yaml");
    let exported = eventually("the Deployment row reached Git anyway", || async {
        git_file(&git, "inventory", &document)
    })
    .await;
    assert!(exported.contains("nginx:1.27"), "{exported}");
    operator.stop().await;
}

/// A sink that never answers holds only its own inventory: with one inventory reconcile slot,
/// another inventory still exports while the first one's pass waits on the silent sink.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_hanging_sink_does_not_delay_other_inventories() {
    let _serial = SERIAL.lock().await;
    let Some(plane) = ControlPlane::start_for_test().await else {
        return;
    };
    let Some(git) = kollect_testkit::backends::start_for_test(|| GitServer::start("bot", "hunter2-token"))
    else {
        return;
    };
    // Accepts connections and answers nothing; each is closed after 20 s (libgit2 has no
    // transfer timeout of its own, and its blocking threads would otherwise outlive the test).
    let silent = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let silent_url = format!("http://{}/inventory.git", silent.local_addr().unwrap());
    let dialled = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&dialled);
    std::thread::spawn(move || {
        for stream in silent.incoming().flatten() {
            counter.fetch_add(1, Ordering::SeqCst);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_secs(20));
                drop(stream);
            });
        }
    });
    let slow = plane.create_namespace("slow").await.unwrap();
    let fast = plane.create_namespace("fast").await.unwrap();
    let repo_url = git.create_repo("inventory").unwrap();
    for ns in [&slow, &fast] {
        plane
            .apply_yaml(&deployment("web", "web", "nginx:1.27"), ns)
            .await
            .unwrap();
    }
    plane
        .apply_yaml(&pipeline(&git, &silent_url, None), &slow)
        .await
        .unwrap();
    let client = plane.client().await.unwrap();
    let mut options = test_options();
    options.max_concurrent_reconciles_inventory = 1;
    let operator = Running::start(client.clone(), options).await;
    // The slow inventory's pass is under way before the fast inventory exists.
    let slow_inventories: Api<KollectInventory> = Api::namespaced(client.clone(), &slow);
    eventually("the slow inventory has its finalizer", || async {
        let inventory = slow_inventories.get("first-inventory").await.ok()?;
        (!inventory.metadata.finalizers.unwrap_or_default().is_empty()).then_some(())
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    plane
        .apply_yaml(&pipeline(&git, &repo_url, None), &fast)
        .await
        .unwrap();
    let document = format!("inventory/{fast}/first-inventory.yaml");
    let exported = eventually("the fast inventory exports while the slow sink hangs", || async {
        git_file(&git, "inventory", &document)
    })
    .await;
    assert!(exported.contains("nginx:1.27"), "{exported}");
    // The slow inventory's pass is still waiting on the silent sink: the fast one did not wait
    // for it to end.
    let slow_status = slow_inventories.get("first-inventory").await.unwrap().status;
    assert!(
        slow_status
            .as_ref()
            .is_none_or(|s| condition(&s.conditions, "Synced").is_none()),
        "{slow_status:?}"
    );
    assert!(dialled.load(Ordering::SeqCst) > 0, "the slow sink was dialled");
    operator.stop().await;
}

/// Every request in `sent` that is neither a watch nor a lease request, as text.
fn beyond_watches_and_leases(sent: &[Sent]) -> Vec<String> {
    sent.iter()
        .filter(|r| !r.is_watch() && !r.is_lease())
        .map(ToString::to_string)
        .collect()
}

/// The export time of the Git binding, once it has exported.
async fn git_export_time(inventories: &Api<KollectInventory>) -> Option<String> {
    let inventory = inventories.get("first-inventory").await.ok()?;
    let status = inventory.status?;
    let export = status
        .sink_exports
        .iter()
        .find(|e| e.name == "snapshot/inventory-git")?;
    export.last_checksum.as_ref()?;
    export.last_export_time.as_ref().map(|t| t.0.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_idle_operator_reads_from_its_watches() {
    let _serial = SERIAL.lock().await;
    let Some((plane, _git, ns, _)) = git_pipeline("idle").await else {
        return;
    };
    let admin = plane.client().await.unwrap();
    let inventories: Api<KollectInventory> = Api::namespaced(admin.clone(), &ns);
    let targets: Api<KollectTarget> = Api::namespaced(admin.clone(), &ns);
    let sinks: Api<KollectSnapshotSink> = Api::namespaced(admin.clone(), &ns);
    let set_interval = |value: &'static str| {
        let inventories = inventories.clone();
        async move {
            let patch = json!({"spec": {"exportMinInterval": value}});
            inventories
                .patch("first-inventory", &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .unwrap();
        }
    };
    set_interval("0s").await;

    let (client, requests) = recording_client(&plane).await;
    let options = OperatorOptions {
        leader_elect: true,
        lease: LeaseTimings {
            lease_duration: Duration::from_secs(6),
            renew_deadline: Duration::from_secs(4),
            retry_period: Duration::from_secs(1),
        },
        leader_election_namespace: ns.clone(),
        identity: "idle-test".into(),
        ..test_options()
    };
    let operator = Running::start(client, options).await;

    // Settled: exported and recorded as up to date (the operator writes that progress within
    // its status refresh period), the sink verified, the target reporting it.
    eventually("the pipeline settles", || async {
        git_export_time(&inventories).await?;
        let status = inventories.get("first-inventory").await.ok()?.status?;
        let git = status
            .sink_exports
            .iter()
            .find(|e| e.name == "snapshot/inventory-git")?;
        (condition(&git.conditions, "Synced")?.1 == "Debounced").then_some(())?;
        let sink = sinks.get("inventory-git").await.ok()?;
        let verified = condition(&sink.status?.conditions, "ConnectionVerified")?;
        let target = targets.get("web-deployments").await.ok()?;
        let reachable = condition(&target.status?.conditions, "SinkReachable")?;
        (verified.0 == "True" && reachable.1 == "ConnectionVerified").then_some(())
    })
    .await;
    // Writes that report the settled state may still be on their way.
    tokio::time::sleep(Duration::from_secs(3)).await;

    // Idle with no interval: the window spans several target resyncs (2 s here) and the
    // inventory's watchdog requeue (30 s), and nothing but watches and the lease is asked.
    let from = requests.len();
    tokio::time::sleep(Duration::from_secs(35)).await;
    let window = requests.since(from);
    assert!(
        window.iter().any(Sent::is_lease),
        "the lease was renewed in the window: {window:?}"
    );
    assert_eq!(
        beyond_watches_and_leases(&window),
        Vec::<String>::new(),
        "an idle operator asks nothing beyond its watches and lease renewals"
    );

    // With an interval the unchanged inventory is sent again; the only reads are the Secret of
    // the sink it re-sends to, and the only writes report those sends.
    let before = git_export_time(&inventories).await.unwrap();
    set_interval("3s").await;
    eventually("the unchanged inventory is sent again", || async {
        git_export_time(&inventories).await.filter(|t| *t != before)
    })
    .await;
    let from = requests.len();
    tokio::time::sleep(Duration::from_secs(12)).await;
    let window = requests.since(from);
    let secret = format!("/api/v1/namespaces/{ns}/secrets/git-credentials");
    let status =
        format!("/apis/kollect.dev/v1alpha1/namespaces/{ns}/kollectinventories/first-inventory/status");
    let events = format!("/apis/events.k8s.io/v1/namespaces/{ns}/events");
    let mut secret_reads = 0;
    let mut status_writes = 0;
    let mut sends = 0;
    for request in window.iter().filter(|r| !r.is_watch() && !r.is_lease()) {
        if request.method == http::Method::GET && request.path == secret {
            secret_reads += 1;
        } else if request.path == status {
            status_writes += 1;
        } else if request.path.starts_with(&events) {
            // Every send is reported by an ExportSucceeded event.
            sends += 1;
        } else {
            panic!(
                "with an interval, only the re-sent sink's Secret is read and only the sends are reported: {request}"
            );
        }
    }
    assert!(
        secret_reads > 0,
        "the re-sends read the sink's Secret: {window:?}"
    );
    assert!(
        secret_reads <= sends + 1,
        "one Secret read per re-send ({secret_reads} reads, {sends} sends)"
    );
    // Re-sends every 3 s move only the export times, which the status records at most every
    // 10 s (the default refresh): 12 s hold one or two such writes, not one per send.
    assert!(
        (1..=2).contains(&status_writes),
        "{status_writes} status writes for {sends} sends in 12 s"
    );
    operator.stop().await;
}

/// Without the admission webhook, a profile that reads Secret data without the opt-in
/// annotation is still refused, at reconcile, naming the annotation; nothing of the Secret is
/// collected until the annotation is set.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn secret_data_is_never_extracted_without_the_opt_in() {
    let _serial = SERIAL.lock().await;
    let Some(plane) = ControlPlane::start_for_test().await else {
        return;
    };
    let ns = plane.create_namespace("secret-guard").await.unwrap();
    plane
        .apply_yaml(
            "apiVersion: v1
kind: Secret
metadata: {name: db}
stringData: {password: hunter2}
---
apiVersion: kollect.dev/v1alpha1
kind: KollectProfile
metadata: {name: secrets}
spec:
  targetGVK: {version: v1, kind: Secret}
  attributes: [{name: password, path: '$.data.password'}]
---
apiVersion: kollect.dev/v1alpha1
kind: KollectTarget
metadata: {name: secrets}
spec: {profileRef: secrets, includedNamespaces: [NAMESPACE]}
---
apiVersion: kollect.dev/v1alpha1
kind: KollectInventory
metadata: {name: secrets}
spec: {}
"
            .replace("NAMESPACE", &ns)
            .as_str(),
            &ns,
        )
        .await
        .unwrap();
    let (client, _) = recording_client(&plane).await;
    let operator = Running::start(client.clone(), test_options()).await;
    let targets: Api<KollectTarget> = Api::namespaced(client.clone(), &ns);
    let refused = eventually("the target refuses the profile", || async {
        let status = targets.get("secrets").await.ok()?.status?;
        condition(&status.conditions, "Degraded")
    })
    .await;
    assert_eq!(
        refused,
        cond(
            "True",
            "ProfileInvalid",
            "KollectProfile \"secrets\" is invalid: spec.attributes[0].path: Forbidden: reading Secret data \
             requires the annotation kollect.dev/allow-secret-extraction: \"true\""
        )
        .unwrap()
    );
    let inventories: Api<KollectInventory> = Api::namespaced(client.clone(), &ns);
    let inventory = inventories.get("secrets").await.unwrap();
    assert_eq!(
        inventory.status.and_then(|s| s.item_count).unwrap_or_default(),
        0,
        "nothing of the Secret is collected"
    );

    let profiles: Api<kollect_core::api::v1alpha1::KollectProfile> = Api::namespaced(client.clone(), &ns);
    annotate(
        &profiles,
        "secrets",
        "kollect.dev/allow-secret-extraction",
        "true",
    )
    .await;
    let collected = eventually("the opted-in profile collects", || async {
        let status = targets.get("secrets").await.ok()?.status?;
        let ready = condition(&status.conditions, "Ready")?;
        (ready.0 == "True").then_some(status.collected_count?)
    })
    .await;
    assert_eq!(collected, 1);
    operator.stop().await;
}

/// The platform rollup: two cluster targets over three labelled namespaces, one cluster
/// inventory deduplicating by resource uid into Git and PostgreSQL in the platform namespace.
fn rollup_pipeline(git: &GitServer, repo_url: &str, dsn: &str, platform: &str, label: &str) -> String {
    format!(
        "apiVersion: kollect.dev/v1alpha1
kind: KollectProfile
metadata: {{name: deployments, namespace: {platform}}}
spec:
  targetGVK: {{group: apps, version: v1, kind: Deployment}}
  attributes:
    - {{name: image, path: '$.spec.template.spec.containers[0].image'}}
    - {{name: replicas, path: '$.spec.replicas'}}
  metrics:
    - {{name: replicas, path: replicas, labels: [image]}}
---
apiVersion: kollect.dev/v1alpha1
kind: KollectClusterTarget
metadata: {{name: images}}
spec:
  profileRef: {{name: deployments, namespace: {platform}}}
  namespaceSelector: {{matchLabels: {{rollup: '{label}'}}}}
---
apiVersion: kollect.dev/v1alpha1
kind: KollectClusterTarget
metadata: {{name: tiers}}
spec:
  profileRef: {{name: deployments, namespace: {platform}}}
  namespaceSelector: {{matchLabels: {{rollup: '{label}'}}}}
---
apiVersion: v1
kind: Secret
metadata: {{name: git-credentials, namespace: {platform}}}
stringData: {{username: {user}, password: {password}}}
---
apiVersion: kollect.dev/v1alpha1
kind: KollectSnapshotSink
metadata: {{name: inventory-git, namespace: {platform}}}
spec:
  type: git
  endpoint: {repo_url}
  secretRef: {{name: git-credentials}}
  git: {{branch: main}}
---
apiVersion: v1
kind: Secret
metadata: {{name: pg, namespace: {platform}}}
stringData: {{dsn: \"{dsn}\"}}
---
apiVersion: kollect.dev/v1alpha1
kind: KollectDatabaseSink
metadata: {{name: inventory-pg, namespace: {platform}}}
spec:
  type: postgres
  postgres: {{databaseRef: {{name: pg}}, table: inventory}}
---
apiVersion: kollect.dev/v1alpha1
kind: KollectClusterInventory
metadata: {{name: rollup-{label}}}
spec:
  targetRefs: [images, tiers]
  namespaceSelector: {{matchLabels: {{rollup: '{label}'}}}}
  dedupe: byResourceUID
  sinkNamespace: {platform}
  exportMinInterval: 1h
  snapshotSinkRefs: [{{name: inventory-git}}]
  databaseSinkRefs: [{{name: inventory-pg}}]
",
        user = git.user(),
        password = git.password(),
    )
}

/// `(target, namespace, image)` of the rollup's rows in PostgreSQL.
async fn pg_cluster_rows(pg: &tokio_postgres::Client, inventory: &str) -> Vec<(String, String, String)> {
    let exists = pg
        .query_opt("SELECT 1 FROM pg_tables WHERE tablename = 'inventory'", &[])
        .await
        .unwrap()
        .is_some();
    if !exists {
        return Vec::new();
    }
    pg.query(
        "SELECT target_name, payload->>'namespace', payload->'attributes'->>'image' FROM inventory \
         WHERE inventory_namespace = 'cluster' AND inventory_name = $1 ORDER BY 2",
        &[&inventory],
    )
    .await
    .unwrap()
    .iter()
    .map(|row| (row.get(0), row.get(1), row.get(2)))
    .collect()
}

/// `(targetName, namespace, image)` of every item of a YAML inventory document (a list of items).
fn git_items(document: &str) -> Vec<(String, String, String)> {
    let items: serde_json::Value = serde_norway::from_str(document).unwrap();
    let mut items: Vec<(String, String, String)> = items
        .as_array()
        .unwrap_or_else(|| panic!("a list of items: {document}"))
        .iter()
        .map(|item| {
            (
                item["targetName"].as_str().unwrap_or_default().to_owned(),
                item["namespace"].as_str().unwrap_or_default().to_owned(),
                item["attributes"]["image"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            )
        })
        .collect();
    items.sort_by(|a, b| a.1.cmp(&b.1));
    items
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_cluster_inventory_rolls_up_cluster_targets_across_namespaces() {
    use kollect_core::api::v1alpha1::{KollectClusterInventory, KollectClusterTarget};
    let _serial = SERIAL.lock().await;
    let Some(plane) = ControlPlane::start_for_test().await else {
        return;
    };
    let Some(git) = kollect_testkit::backends::start_for_test(|| GitServer::start("bot", "hunter2-token"))
    else {
        return;
    };
    let Some((pg, pg_client)) = postgres().await else {
        return;
    };
    let platform = plane.create_namespace("platform").await.unwrap();
    let label = platform.rsplit('-').next().unwrap().to_owned();
    let mut workloads = Vec::new();
    for prefix in ["app-a", "app-b", "app-c", "outside"] {
        let ns = plane.create_namespace(prefix).await.unwrap();
        if prefix != "outside" {
            plane
                .apply_yaml(
                    &format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{rollup: '{label}'}}}}\n"),
                    &ns,
                )
                .await
                .unwrap();
        }
        plane
            .apply_yaml(&deployment("web", "web", &format!("nginx:{prefix}")), &ns)
            .await
            .unwrap();
        workloads.push(ns);
    }
    let (a, b, c) = (workloads[0].clone(), workloads[1].clone(), workloads[2].clone());
    // A namespaced inventory in a rolled-up namespace must not see the cluster targets' rows.
    plane
        .apply_yaml(
            "apiVersion: kollect.dev/v1alpha1\nkind: KollectInventory\nmetadata: {name: local}\nspec: {}\n",
            &a,
        )
        .await
        .unwrap();
    let repo_url = git.create_repo("rollup").unwrap();
    plane
        .apply_yaml(
            &rollup_pipeline(&git, &repo_url, &pg.dsn("postgres"), &platform, &label),
            &platform,
        )
        .await
        .unwrap();
    let (client, _) = recording_client(&plane).await;
    let operator = Running::start(client.clone(), test_options()).await;
    let inventory_name = format!("rollup-{label}");
    let document = format!("inventory/cluster/{inventory_name}.yaml");

    // Three namespaces, two targets each, one row per object after byResourceUID: the target
    // that sorts last by name wins.
    let expected = |image_b: &str| {
        vec![
            ("tiers".to_owned(), a.clone(), "nginx:app-a".to_owned()),
            ("tiers".to_owned(), b.clone(), image_b.to_owned()),
            ("tiers".to_owned(), c.clone(), "nginx:app-c".to_owned()),
        ]
    };
    let items = eventually("the rollup reaches Git", || async {
        git_file(&git, "rollup", &document)
            .map(|d| git_items(&d))
            .filter(|items| items.len() == 3)
    })
    .await;
    assert_eq!(items, expected("nginx:app-b"));
    let rows = eventually("the rollup reaches PostgreSQL", || async {
        let rows = pg_cluster_rows(&pg_client, &inventory_name).await;
        (rows.len() == 3).then_some(rows)
    })
    .await;
    assert_eq!(rows, expected("nginx:app-b"));

    let inventories: Api<KollectClusterInventory> = Api::all(client.clone());
    let status = eventually("the rollup's status", || async {
        let status = inventories.get(&inventory_name).await.ok()?.status?;
        (status.sink_exports.len() == 2 && status.item_count == Some(3)).then_some(status)
    })
    .await;
    assert_eq!(
        (status.target_count, status.namespace_shard_count),
        (Some(2), Some(3))
    );
    let shards: Vec<(String, Option<i64>, Option<i64>)> = status
        .namespace_shards
        .iter()
        .map(|s| (s.namespace.clone(), s.item_count, s.target_count))
        .collect();
    let mut want: Vec<(String, Option<i64>, Option<i64>)> = [&a, &b, &c]
        .iter()
        .map(|ns| ((*ns).clone(), Some(1), Some(2)))
        .collect();
    want.sort();
    assert_eq!(shards, want);
    assert!(status.namespace_shards.iter().all(|s| s.checksum.is_some()));
    assert!(
        status
            .sink_exports
            .iter()
            .all(|e| e.namespace.as_deref() == Some(platform.as_str())),
        "{:?}",
        status.sink_exports
    );
    assert_eq!(
        condition(&status.conditions, "Ready").map(|c| (c.0, c.1)),
        Some(("True".to_owned(), "Exported".to_owned()))
    );
    assert_eq!(
        condition(&status.conditions, "ExportSucceeded").map(|c| (c.0, c.1)),
        Some(("True".to_owned(), "Exported".to_owned()))
    );

    let targets: Api<KollectClusterTarget> = Api::all(client.clone());
    let images = targets.get("images").await.unwrap().status.unwrap();
    let mut selected = vec![a.clone(), b.clone(), c.clone()];
    selected.sort();
    assert_eq!(images.matched_namespaces, selected);
    assert_eq!(images.effective_namespaces, selected);
    assert_eq!(
        condition(&images.conditions, "Ready").map(|c| c.1),
        Some("Collecting".to_owned())
    );
    // The profile's domain series, per target: the row count and the labeled sum.
    let series = "kollect_custom_resource_series{profile=\"deployments\",gvk=\"apps/v1/Deployment\",\
                  series=\"object_count\",namespace=\"\",target=\"images\"}";
    let labeled = "kollect_custom_resource_labeled_series{profile=\"deployments\",gvk=\"apps/v1/Deployment\",\
                   series=\"replicas\",namespace=\"\",target=\"tiers\",image=\"nginx:app-a\"}";
    let metrics = eventually("the domain series are sampled", || async {
        let text = operator.metrics().await;
        (sample(&text, series) == 3.0).then_some(text)
    })
    .await;
    assert_eq!(sample(&metrics, labeled), 1.0, "{metrics}");
    let local: Api<KollectInventory> = Api::namespaced(client.clone(), &a);
    let local = eventually("the namespaced inventory reports", || async {
        local.get("local").await.ok()?.status?.item_count
    })
    .await;
    assert_eq!(local, 0, "cluster-target rows stay out of namespaced inventories");

    // A change of one object reaches both sinks without waiting for the interval.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &b);
    set_image(&deployments, "web", "nginx:changed").await;
    eventually("the change reaches Git", || async {
        git_file(&git, "rollup", &document)
            .map(|d| git_items(&d))
            .filter(|items| *items == expected("nginx:changed"))
    })
    .await;
    eventually("the change reaches PostgreSQL", || async {
        let rows = pg_cluster_rows(&pg_client, &inventory_name).await;
        (rows == expected("nginx:changed")).then_some(())
    })
    .await;
    // The labeled series follow within a sample: the old tuple is gone, the new one counted.
    eventually("the labeled series follow the change", || async {
        let text = operator.metrics().await;
        let of = |image: &str| sample(&text, &labeled.replace("nginx:app-a", image));
        (of("nginx:changed") == 1.0 && !text.contains("image=\"nginx:app-b\"")).then_some(())
    })
    .await;

    // The cluster scope: a denied namespace is filtered out of what the targets collect, its
    // interval floor wins over the inventory's, and a sink outside its static-ref namespaces
    // stops the export.
    plane
        .apply_yaml(
            &format!(
                "apiVersion: kollect.dev/v1alpha1
kind: KollectClusterScope
metadata: {{name: policy-{label}}}
spec:
  deniedNamespaces: [{c}]
  minExportInterval: 2h
  allowedStaticRefNamespaces: [{platform}]
"
            ),
            &platform,
        )
        .await
        .unwrap();
    let images = eventually("the denied namespace leaves the targets", || async {
        let status = targets.get("images").await.ok()?.status?;
        (status.effective_namespaces.len() == 2).then_some(status)
    })
    .await;
    assert_eq!(images.matched_namespaces, selected);
    assert!(!images.effective_namespaces.contains(&c));
    eventually("the rollup drops the denied namespace", || async {
        git_file(&git, "rollup", &document)
            .map(|d| git_items(&d))
            .filter(|items| items.len() == 2 && items.iter().all(|i| i.1 != c))
    })
    .await;
    annotate(&inventories, &inventory_name, "kollect.dev/touch", "1").await;
    let debounced = eventually("a pass without changes is debounced at the floor", || async {
        let status = inventories.get(&inventory_name).await.ok()?.status?;
        let export = status.sink_exports.first()?;
        condition(&export.conditions, "Synced").filter(|c| c.1 == "Debounced")
    })
    .await;
    assert!(debounced.2.contains("(interval 2h0m0s)"), "{debounced:?}");

    let patch = json!({"spec": {"eventSinkRefs": [{"name": "stream", "namespace": a}]}});
    inventories
        .patch(&inventory_name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();
    let denied = eventually("a sink outside the static-ref namespaces is refused", || async {
        let status = inventories.get(&inventory_name).await.ok()?.status?;
        condition(&status.conditions, "Degraded").filter(|c| c.0 == "True")
    })
    .await;
    assert_eq!(
        denied,
        cond(
            "True",
            "SinkNamespaceDenied",
            &format!(
                "event sink \"stream\": KollectClusterScope \"policy-{label}\" does not allow sink references to \
                 namespace {a} (allowedStaticRefNamespaces: {platform})"
            )
        )
        .unwrap()
    );
    let patch = json!({"spec": {"eventSinkRefs": null}});
    inventories
        .patch(&inventory_name, &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .unwrap();

    // Deleting the inventory removes what it exported from both sinks.
    inventories
        .delete(&inventory_name, &DeleteParams::default())
        .await
        .unwrap();
    eventually("the inventory is gone", || async {
        inventories
            .get_opt(&inventory_name)
            .await
            .unwrap()
            .is_none()
            .then_some(())
    })
    .await;
    assert!(
        git_file(&git, "rollup", &document).is_none(),
        "the document is removed from Git"
    );
    assert!(
        pg_cluster_rows(&pg_client, &inventory_name).await.is_empty(),
        "the rows are removed from PostgreSQL"
    );
    for name in ["images", "tiers"] {
        targets.delete(name, &DeleteParams::default()).await.unwrap();
    }
    eventually("the cluster targets are gone", || async {
        targets
            .list(&Default::default())
            .await
            .unwrap()
            .items
            .is_empty()
            .then_some(())
    })
    .await;
    operator.stop().await;
}

/// Whether `path` is API discovery (`/api`, `/apis`, a group or a group version, `/version`)
/// rather than a resource.
fn is_discovery(path: &str) -> bool {
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    match segments.as_slice() {
        ["version"] | ["api"] | ["api", _] | ["apis"] | ["apis", _] | ["apis", _, _] => true,
        _ => path.starts_with("/openapi"),
    }
}

/// Tenant mode: the operator runs as a user with Roles in its two namespaces only (no
/// ClusterRole at all) and still collects, reads namespace labels and exports; every request it
/// makes stays inside those namespaces.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn tenant_mode_needs_no_cluster_wide_rights() {
    use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};

    let _serial = SERIAL.lock().await;
    let Some(plane) = ControlPlane::start_for_test().await else {
        return;
    };
    let admin = plane.client().await.unwrap();
    let team = plane.create_namespace("team").await.unwrap();
    let label = team.rsplit('-').next().unwrap().to_owned();
    let mut namespaces = Vec::new();
    for prefix in ["tenant-a", "tenant-b", "outside"] {
        let ns = plane.create_namespace(prefix).await.unwrap();
        plane
            .apply_yaml(
                &format!(
                    "apiVersion: v1\nkind: Namespace\nmetadata: {{name: {ns}, labels: {{team: '{label}'}}}}\n"
                ),
                &ns,
            )
            .await
            .unwrap();
        plane
            .apply_yaml(&deployment("web", "web", &format!("nginx:{prefix}")), &ns)
            .await
            .unwrap();
        namespaces.push(ns);
    }
    let (a, b, outside) = (
        namespaces[0].clone(),
        namespaces[1].clone(),
        namespaces[2].clone(),
    );
    // A target selecting namespaces by label: the labels must be read, and the namespace outside
    // the operator's namespaces must stay out although it carries the label.
    for ns in [&a, &b] {
        plane
            .apply_yaml(
                &format!(
                    "apiVersion: kollect.dev/v1alpha1
kind: KollectProfile
metadata: {{name: deployments}}
spec:
  targetGVK: {{group: apps, version: v1, kind: Deployment}}
  attributes: [{{name: image, path: '$.spec.template.spec.containers[0].image'}}]
---
apiVersion: kollect.dev/v1alpha1
kind: KollectTarget
metadata: {{name: team-deployments}}
spec:
  profileRef: deployments
  namespaceSelector: {{matchLabels: {{team: '{label}'}}}}
---
apiVersion: kollect.dev/v1alpha1
kind: KollectInventory
metadata: {{name: team}}
spec: {{}}
"
                ),
                ns,
            )
            .await
            .unwrap();
    }

    let rule = |groups: &[&str], resources: &[&str], verbs: &[&str]| PolicyRule {
        api_groups: Some(groups.iter().map(|s| (*s).to_owned()).collect()),
        resources: Some(resources.iter().map(|s| (*s).to_owned()).collect()),
        verbs: verbs.iter().map(|s| (*s).to_owned()).collect(),
        ..PolicyRule::default()
    };
    let pp = kube::api::PostParams::default();
    for ns in [&a, &b] {
        let meta = kube::api::ObjectMeta {
            name: Some("kollect-tenant".into()),
            namespace: Some(ns.clone()),
            ..Default::default()
        };
        let role = Role {
            metadata: meta.clone(),
            rules: Some(vec![
                rule(&["kollect.dev"], &["*"], &["*"]),
                rule(&["apps"], &["deployments"], &["get", "list", "watch"]),
                rule(&[""], &["namespaces"], &["get"]),
                rule(&[""], &["secrets"], &["get"]),
                rule(&["", "events.k8s.io"], &["events"], &["*"]),
            ]),
        };
        Api::<Role>::namespaced(admin.clone(), ns)
            .create(&pp, &role)
            .await
            .unwrap();
        let binding = RoleBinding {
            metadata: meta,
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "Role".into(),
                name: "kollect-tenant".into(),
            },
            subjects: Some(vec![Subject {
                kind: "User".into(),
                name: "kollect-tenant".into(),
                api_group: Some("rbac.authorization.k8s.io".into()),
                ..Subject::default()
            }]),
        };
        Api::<RoleBinding>::namespaced(admin.clone(), ns)
            .create(&pp, &binding)
            .await
            .unwrap();
    }
    let kubeconfig = kube::config::Kubeconfig::read_from(plane.kubeconfig_path()).unwrap();
    let mut config = kube::Config::from_custom_kubeconfig(kubeconfig, &Default::default())
        .await
        .unwrap();
    config.auth_info.impersonate = Some("kollect-tenant".into());
    let requests = Requests::default();
    let tenant = kube::client::ClientBuilder::try_from(config)
        .unwrap()
        .with_layer(&requests)
        .build();

    let mut options = test_options();
    options.tenant_mode = true;
    options.watch_namespaces = vec![a.clone(), b.clone()];
    let operator = Running::start(tenant, options).await;
    let mut both = vec![a.clone(), b.clone()];
    both.sort();
    for ns in [&a, &b] {
        let targets: Api<KollectTarget> = Api::namespaced(admin.clone(), ns);
        let status = eventually("the tenant target collects", || async {
            let status = targets.get("team-deployments").await.ok()?.status?;
            (status.collected_count == Some(2)).then_some(status)
        })
        .await;
        assert_eq!(status.matched_namespaces, both, "labels read, the boundary kept");
        assert_eq!(
            condition(&status.conditions, "Synced").map(|c| c.1),
            Some("Collecting".to_owned())
        );
        let inventories: Api<KollectInventory> = Api::namespaced(admin.clone(), ns);
        // The inventory may export before the target has collected; it must come to 2 rows.
        eventually("the tenant inventory counts the 2 rows", || async {
            (inventories.get("team").await.ok()?.status?.item_count == Some(2)).then_some(())
        })
        .await;
    }
    // A cluster-scoped kind cannot be read with namespaced rights, and the target says so.
    plane
        .apply_yaml(
            "apiVersion: kollect.dev/v1alpha1
kind: KollectProfile
metadata: {name: nodes}
spec:
  targetGVK: {version: v1, kind: Node}
  attributes: [{name: name, path: '$.metadata.name'}]
---
apiVersion: kollect.dev/v1alpha1
kind: KollectTarget
metadata: {name: nodes}
spec: {profileRef: nodes}
",
            &a,
        )
        .await
        .unwrap();
    let targets: Api<KollectTarget> = Api::namespaced(admin.clone(), &a);
    let denied = eventually("the cluster-scoped kind is reported as denied", || async {
        let status = targets.get("nodes").await.ok()?.status?;
        condition(&status.conditions, "Synced").filter(|c| c.1 == "ScopeForbidden")
    })
    .await;
    assert!(
        denied.2.starts_with("access denied in namespace(s) (cluster)"),
        "{denied:?}"
    );
    let outside_requests: Vec<String> = requests
        .since(0)
        .iter()
        .filter(|r| !is_discovery(&r.path))
        .filter(|r| r.path != "/apis/authorization.k8s.io/v1/selfsubjectaccessreviews")
        // The cluster-scoped kind a target asked for is tried (and reported as denied).
        .filter(|r| r.path != "/api/v1/nodes")
        .filter(|r| {
            ![&a, &b].iter().any(|ns| {
                r.path.contains(&format!("/namespaces/{ns}/"))
                    || r.path.ends_with(&format!("/namespaces/{ns}"))
            })
        })
        .map(ToString::to_string)
        .collect();
    assert!(
        outside_requests.is_empty(),
        "requests beyond the tenant's namespaces: {outside_requests:?}"
    );
    assert!(
        !requests
            .since(0)
            .iter()
            .any(|r| r.path.contains(&format!("/namespaces/{outside}"))),
        "nothing of the namespace outside is read"
    );
    operator.stop().await;
}

/// The export names of inventory `name` once `sinks` of them have acknowledged an export.
async fn exported_sinks(
    inventories: &Api<KollectInventory>,
    name: &str,
    sinks: usize,
    what: &str,
) -> Vec<String> {
    let status = eventually(what, || async {
        let status = inventories.get(name).await.ok()?.status?;
        let exported = status
            .sink_exports
            .iter()
            .filter(|e| e.last_checksum.is_some())
            .count()
            == sinks;
        exported.then_some(status)
    })
    .await;
    status.sink_exports.into_iter().map(|s| s.name).collect()
}

/// One inventory bound to a Git sink and an S3 sink (MinIO) exports to both, and deleting it
/// removes what it wrote to the bucket.
#[tokio::test]
async fn an_inventory_exports_to_git_and_an_s3_bucket() {
    use kollect_sinks::object::{ClientSettings, Location, ObjectSink, ObjectTarget, StoreKind};
    use kollect_testkit::backends::Minio;
    use object_store::ObjectStoreExt;
    let _serial = SERIAL.lock().await;
    let Some((plane, git, ns, _)) = git_pipeline("s3").await else {
        return;
    };
    let Some(minio) = kollect_testkit::backends::start_for_test(Minio::start) else {
        return;
    };
    minio.create_bucket("inventory").await.unwrap();
    plane
        .apply_yaml(
            &format!(
                "apiVersion: v1
kind: Secret
metadata: {{name: bucket-keys}}
stringData: {{accessKeyID: {key}, secretAccessKey: {secret}}}
---
apiVersion: kollect.dev/v1alpha1
kind: KollectSnapshotSink
metadata: {{name: inventory-s3}}
spec:
  type: s3
  endpoint: {endpoint}/inventory/fleet
  secretRef: {{name: bucket-keys}}
  serialization: {{format: csv}}
---
apiVersion: kollect.dev/v1alpha1
kind: KollectInventory
metadata: {{name: first-inventory}}
spec:
  exportMinInterval: 1h
  snapshotSinkRefs: [{{name: inventory-git}}, {{name: inventory-s3}}]
",
                key = Minio::ACCESS_KEY,
                secret = Minio::SECRET_KEY,
                endpoint = minio.endpoint()
            ),
            &ns,
        )
        .await
        .unwrap();
    let client = plane.client().await.unwrap();
    let operator = Running::start(client.clone(), test_options()).await;
    let inventories: Api<KollectInventory> = Api::namespaced(client.clone(), &ns);
    let names = exported_sinks(
        &inventories,
        "first-inventory",
        2,
        "the inventory exports to Git and S3",
    )
    .await;
    assert_eq!(names, ["snapshot/inventory-git", "snapshot/inventory-s3"]);
    assert!(git_file(&git, "inventory", &format!("inventory/{ns}/first-inventory.yaml")).is_some());

    // The bucket holds the rows as CSV, and the pointer names that object.
    let settings = ClientSettings {
        location: Location::parse(StoreKind::S3, &format!("{}/inventory/fleet", minio.endpoint())).unwrap(),
        secret: kollect_sinks::SecretData::new([
            ("accessKeyID".to_owned(), Minio::ACCESS_KEY.as_bytes().to_vec()),
            (
                "secretAccessKey".to_owned(),
                Minio::SECRET_KEY.as_bytes().to_vec(),
            ),
        ]),
        ca_pem: None,
        insecure_skip_verify: false,
        region: None,
        policy: NetPolicy::permissive_for_tests(),
    };
    let target = ObjectTarget::connect(&settings).unwrap();
    let key = target.path(&format!("inventory/{ns}/first-inventory.csv"));
    let csv = target.store().get(&key).await.unwrap().bytes().await.unwrap();
    let csv = String::from_utf8(csv.to_vec()).unwrap();
    assert!(
        csv.starts_with("cluster,inventory_namespace,inventory_name,"),
        "{csv}"
    );
    assert!(csv.contains("nginx:1.27"), "{csv}");
    let inventory = kollect_core::sink::InventoryRef::namespaced(&ns, "first-inventory");
    let pointer = target.path(&ObjectSink::pointer_key(&inventory));
    let pointer: serde_json::Value =
        serde_json::from_slice(&target.store().get(&pointer).await.unwrap().bytes().await.unwrap()).unwrap();
    assert_eq!(pointer["objects"], json!([key.to_string()]));

    // Deleting the inventory removes its object and its pointer from the bucket.
    inventories
        .delete("first-inventory", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the bucket no longer holds the inventory", || async {
        let gone = matches!(
            target.store().head(&key).await,
            Err(object_store::Error::NotFound { .. })
        );
        gone.then_some(())
    })
    .await;
    operator.stop().await;
}

/// The rows a consumer rebuilds for `inventory` from every message of `topic`, and how many
/// messages there are.
async fn kafka_inventory(
    kafka: &Arc<kollect_testkit::backends::Kafka>,
    topic: &str,
    inventory: &kollect_core::sink::InventoryRef,
) -> (Vec<kollect_core::model::Row>, usize) {
    let (kafka, topic) = (Arc::clone(kafka), topic.to_owned());
    let records = tokio::task::spawn_blocking(move || kafka.records(&topic))
        .await
        .unwrap()
        .unwrap_or_default();
    let mut replay = kollect_sinks::events::Replay::default();
    for record in &records {
        replay
            .apply(
                &record.key,
                record.value.as_deref(),
                record.headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())),
            )
            .unwrap();
    }
    (replay.rows(inventory), records.len())
}

/// The rows a replay of NATS stream `stream` rebuilds for `inventory`, and how many messages
/// the stream holds.
async fn nats_inventory(
    nats: &kollect_testkit::backends::Nats,
    stream: &str,
    inventory: &kollect_core::sink::InventoryRef,
) -> (Vec<kollect_core::model::Row>, usize) {
    let records = nats.records(stream).await.unwrap_or_default();
    let mut replay = kollect_sinks::events::Replay::default();
    for record in &records {
        let delete = record.header(kollect_sinks::nats::OPERATION_HEADER).is_some();
        replay
            .apply(
                &record.subject,
                (!delete).then_some(record.payload.as_slice()),
                record.headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes())),
            )
            .unwrap();
    }
    (replay.rows(inventory), records.len())
}

/// One inventory bound to a Git sink and a NATS JetStream sink in row mode, authenticated with
/// a token from a Secret: the stream rebuilds the inventory, one changed Deployment publishes
/// one message, and deleting the inventory leaves a delete marker for its row.
#[tokio::test]
async fn an_inventory_exports_to_git_and_a_nats_stream() {
    use kollect_testkit::backends::{NATS_TOKEN, Nats, NatsAuth, NatsOptions, NatsTls};
    let _serial = SERIAL.lock().await;
    let Some((plane, git, ns, _)) = git_pipeline("nats").await else {
        return;
    };
    let options = NatsOptions {
        auth: NatsAuth::Token,
        tls: NatsTls::Off,
    };
    let Some(nats) = kollect_testkit::backends::start_for_test(|| Nats::start_with(options)) else {
        return;
    };
    plane
        .apply_yaml(
            &format!(
                "apiVersion: v1
kind: Secret
metadata: {{name: nats-token}}
stringData: {{token: {NATS_TOKEN}}}
---
apiVersion: kollect.dev/v1alpha1
kind: KollectEventSink
metadata: {{name: inventory-events}}
spec:
  type: nats
  nats: {{url: '{url}', subject: 'kollect.{{cluster}}.{{namespace}}.{{name}}', stream: inventory}}
  secretRef: {{name: nats-token}}
  cluster: prod
  options: {{messageMode: row}}
---
apiVersion: kollect.dev/v1alpha1
kind: KollectInventory
metadata: {{name: first-inventory}}
spec:
  exportMinInterval: 1h
  snapshotSinkRefs: [{{name: inventory-git}}]
  eventSinkRefs: [{{name: inventory-events}}]
",
                url = nats.url()
            ),
            &ns,
        )
        .await
        .unwrap();
    let client = plane.client().await.unwrap();
    let operator = Running::start(client.clone(), test_options()).await;
    let inventories: Api<KollectInventory> = Api::namespaced(client.clone(), &ns);
    let names = exported_sinks(
        &inventories,
        "first-inventory",
        2,
        "the inventory exports to Git and NATS",
    )
    .await;
    assert_eq!(names, ["snapshot/inventory-git", "event/inventory-events"]);
    assert!(git_file(&git, "inventory", &format!("inventory/{ns}/first-inventory.yaml")).is_some());

    let inventory = kollect_core::sink::InventoryRef::namespaced(&ns, "first-inventory").with_cluster("prod");
    let (rows, messages) = nats_inventory(&nats, "inventory", &inventory).await;
    assert_eq!(messages, 1);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].name, "web");
    assert_eq!(rows[0].attributes.as_ref().unwrap()["image"], "nginx:1.27");
    let records = nats.records("inventory").await.unwrap();
    assert!(
        records[0]
            .subject
            .starts_with(&format!("kollect.prod.{ns}.first-inventory.")),
        "{}",
        records[0].subject
    );

    // One changed Deployment: one more message (replacing the row's earlier one in the stream),
    // and the stream rebuilds the new image.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    set_image(&deployments, "web", "nginx:1.28").await;
    let last = records[0].sequence;
    let rows = eventually("the stream carries the new image", || async {
        let (rows, _) = nats_inventory(&nats, "inventory", &inventory).await;
        let updated = rows.first()?.attributes.as_ref()?["image"] == "nginx:1.28";
        updated.then_some(rows)
    })
    .await;
    assert_eq!(rows.len(), 1);
    let records = nats.records("inventory").await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].sequence, last + 1, "exactly one message was published");

    // Deleting the inventory leaves a delete marker.
    inventories
        .delete("first-inventory", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the stream no longer holds the inventory", || async {
        let (rows, _) = nats_inventory(&nats, "inventory", &inventory).await;
        let records = nats.records("inventory").await.ok()?;
        (rows.is_empty() && records.first()?.sequence == last + 2).then_some(())
    })
    .await;
    operator.stop().await;
}

/// The live and the soft-deleted documents of `collection`: `(name, image)` pairs, sorted.
async fn mongodb_documents(
    collection: &mongodb::Collection<mongodb::bson::Document>,
    deleted: bool,
) -> Vec<(String, String)> {
    use futures::TryStreamExt;
    use mongodb::bson::{Bson, doc};
    let filter = if deleted {
        doc! {"deleted_at": {"$ne": Bson::Null}}
    } else {
        doc! {"deleted_at": Bson::Null}
    };
    let found: Vec<mongodb::bson::Document> = collection
        .find(filter)
        .await
        .unwrap()
        .try_collect()
        .await
        .unwrap();
    let mut pairs: Vec<(String, String)> = found
        .iter()
        .map(|d| {
            let payload = d.get_document("payload").unwrap();
            let image = payload
                .get_document("attributes")
                .unwrap()
                .get_str("image")
                .unwrap();
            (payload.get_str("name").unwrap().to_owned(), image.to_owned())
        })
        .collect();
    pairs.sort();
    pairs
}

/// One inventory bound to a Git sink and a MongoDB sink (FerretDB) that keeps deletion history:
/// the collection holds one document per Deployment, a changed Deployment rewrites only its own
/// document, a deleted one stays as a soft-deleted document, and deleting the inventory removes
/// its documents.
#[tokio::test]
async fn an_inventory_exports_to_git_and_a_mongodb_collection() {
    use kollect_testkit::backends::FerretDb;
    use mongodb::bson::{Document, doc};
    let _serial = SERIAL.lock().await;
    let Some((plane, git, ns, _)) = git_pipeline("mongodb").await else {
        return;
    };
    let Some(ferret) = kollect_testkit::backends::start_for_test(FerretDb::start) else {
        return;
    };
    plane
        .apply_yaml(&deployment("api", "web", "api:1.0"), &ns)
        .await
        .unwrap();
    plane
        .apply_yaml(
            &format!(
                "apiVersion: v1
kind: Secret
metadata: {{name: mongo}}
stringData: {{uri: '{uri}'}}
---
apiVersion: kollect.dev/v1alpha1
kind: KollectDatabaseSink
metadata: {{name: inventory-mongo}}
spec:
  type: mongodb
  mongodb: {{databaseRef: {{name: mongo}}, database: kollect, collection: inventory}}
  cluster: prod
  deletedRows: SoftDelete
---
apiVersion: kollect.dev/v1alpha1
kind: KollectInventory
metadata: {{name: first-inventory}}
spec:
  exportMinInterval: 1h
  snapshotSinkRefs: [{{name: inventory-git}}]
  databaseSinkRefs: [{{name: inventory-mongo}}]
",
                uri = ferret.uri()
            ),
            &ns,
        )
        .await
        .unwrap();
    let client = plane.client().await.unwrap();
    let operator = Running::start(client.clone(), test_options()).await;
    let inventories: Api<KollectInventory> = Api::namespaced(client.clone(), &ns);
    let names = exported_sinks(
        &inventories,
        "first-inventory",
        2,
        "the inventory exports to Git and MongoDB",
    )
    .await;
    assert_eq!(names, ["snapshot/inventory-git", "database/inventory-mongo"]);
    assert!(git_file(&git, "inventory", &format!("inventory/{ns}/first-inventory.yaml")).is_some());

    let collection = mongodb::Client::with_uri_str(ferret.uri())
        .await
        .unwrap()
        .database("kollect")
        .collection::<Document>("inventory");
    let pair = |name: &str, image: &str| (name.to_owned(), image.to_owned());
    assert_eq!(
        mongodb_documents(&collection, false).await,
        [pair("api", "api:1.0"), pair("web", "nginx:1.27")]
    );
    let api = collection
        .find_one(doc! {"payload.name": "api"})
        .await
        .unwrap()
        .unwrap();
    assert_eq!(api.get_str("cluster").unwrap(), "prod");
    assert_eq!(api.get_str("inventory_namespace").unwrap(), ns);
    let api_exported_at = api.get_datetime("exported_at").unwrap().timestamp_millis();

    // One changed Deployment rewrites its own document only.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    set_image(&deployments, "web", "nginx:1.28").await;
    eventually("the collection holds the new image", || async {
        let live = mongodb_documents(&collection, false).await;
        (live == [pair("api", "api:1.0"), pair("web", "nginx:1.28")]).then_some(())
    })
    .await;
    let api = collection
        .find_one(doc! {"payload.name": "api"})
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        api.get_datetime("exported_at").unwrap().timestamp_millis(),
        api_exported_at,
        "the unchanged document was not rewritten"
    );

    // A deleted Deployment stays as a soft-deleted document.
    deployments.delete("api", &DeleteParams::default()).await.unwrap();
    eventually("the api document is marked deleted", || async {
        let deleted = mongodb_documents(&collection, true).await;
        (deleted == [pair("api", "api:1.0")]).then_some(())
    })
    .await;
    assert_eq!(
        mongodb_documents(&collection, false).await,
        [pair("web", "nginx:1.28")]
    );

    // Deleting the inventory removes its documents, soft-deleted ones included.
    inventories
        .delete("first-inventory", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the collection no longer holds the inventory", || async {
        let left = collection.count_documents(doc! {}).await.ok()?;
        (left == 0).then_some(())
    })
    .await;
    operator.stop().await;
}

/// The content of `path` on `branch` of a bare repository, if it is there.
fn bare_file(repo: &std::path::Path, branch: &str, path: &str) -> Option<String> {
    let output = std::process::Command::new("git")
        .arg("--git-dir")
        .arg(repo)
        .args(["show", &format!("{branch}:{path}")])
        .output()
        .unwrap();
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).into_owned())
}

/// One inventory bound to a Git sink and a gitlab sink in merge-request mode on a Gitea
/// server (the Gitea API fallback and real pushes): the inventory is proposed on its feature
/// branch with one pull request, a change updates the same branch and pull request, and
/// deleting the inventory withdraws the proposal.
#[tokio::test]
async fn an_inventory_exports_to_git_and_a_gitlab_merge_request() {
    use kollect_testkit::backends::{GITEA_USER, Gitea};
    let _serial = SERIAL.lock().await;
    let Some((plane, git, ns, _)) = git_pipeline("gitlab").await else {
        return;
    };
    let Some(gitea) = kollect_testkit::backends::start_for_test(Gitea::start) else {
        return;
    };
    gitea.create_repo("inventory").await.unwrap();
    plane
        .apply_yaml(&deployment("api", "web", "api:1.0"), &ns)
        .await
        .unwrap();
    plane
        .apply_yaml(
            &format!(
                "apiVersion: v1
kind: Secret
metadata: {{name: gitea-token}}
stringData: {{username: {GITEA_USER}, token: '{token}'}}
---
apiVersion: kollect.dev/v1alpha1
kind: KollectSnapshotSink
metadata: {{name: inventory-review}}
spec:
  type: gitlab
  endpoint: {endpoint}
  secretRef: {{name: gitea-token}}
  gitlab: {{mergeRequest: {{mode: merge_request, targetBranch: main}}}}
---
apiVersion: kollect.dev/v1alpha1
kind: KollectInventory
metadata: {{name: first-inventory}}
spec:
  exportMinInterval: 1h
  snapshotSinkRefs: [{{name: inventory-git}}, {{name: inventory-review}}]
",
                token = gitea.token(),
                endpoint = gitea.repo_url("inventory"),
            ),
            &ns,
        )
        .await
        .unwrap();
    let client = plane.client().await.unwrap();
    let operator = Running::start(client.clone(), test_options()).await;
    let inventories: Api<KollectInventory> = Api::namespaced(client.clone(), &ns);
    let names = exported_sinks(
        &inventories,
        "first-inventory",
        2,
        "the inventory exports to Git and proposes a merge request",
    )
    .await;
    assert_eq!(names, ["snapshot/inventory-git", "snapshot/inventory-review"]);
    assert!(git_file(&git, "inventory", &format!("inventory/{ns}/first-inventory.yaml")).is_some());
    let branch = format!("kollect/{ns}/first-inventory");
    let document = format!("inventory/{ns}/first-inventory.yaml");
    let repo = gitea.repo_path("inventory");
    let proposed = |needle: &'static str| {
        let (repo, branch, document) = (repo.clone(), branch.clone(), document.clone());
        move || {
            let (repo, branch, document) = (repo.clone(), branch.clone(), document.clone());
            async move {
                bare_file(&repo, &branch, &document)
                    .is_some_and(|content| content.contains(needle))
                    .then_some(())
            }
        }
    };
    eventually("the feature branch holds the inventory", proposed("nginx:1.27")).await;
    let pulls = gitea.open_pulls("inventory").await.unwrap();
    assert_eq!(pulls.len(), 1, "{pulls:?}");
    assert_eq!(
        (pulls[0].1.as_str(), pulls[0].2.as_str()),
        (branch.as_str(), "main")
    );
    assert_eq!(
        pulls[0].3,
        format!("kollect inventory export: {ns}/first-inventory")
    );
    assert!(
        bare_file(&repo, "main", &document).is_none(),
        "main is only proposed to"
    );

    // A change updates the same branch and pull request.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    set_image(&deployments, "web", "nginx:1.28").await;
    eventually("the feature branch holds the new image", proposed("nginx:1.28")).await;
    assert_eq!(gitea.open_pulls("inventory").await.unwrap().len(), 1);

    // Deleting the inventory withdraws its proposal: its files never reached main.
    inventories
        .delete("first-inventory", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the pull request is closed", || async {
        gitea.open_pulls("inventory").await.ok()?.is_empty().then_some(())
    })
    .await;
    operator.stop().await;
}

/// The `(name, image, exported_at)` rows of `table` in the emulator, sorted.
async fn bigquery_rows(
    emulator: &kollect_testkit::backends::BigqueryEmulator,
    table: &str,
) -> Vec<(String, String, String)> {
    use kollect_testkit::backends::{BIGQUERY_DATASET, BIGQUERY_PROJECT};
    let sql = format!(
        "SELECT JSON_VALUE(payload, '$.name'), JSON_VALUE(payload, '$.attributes.image'), \
         CAST(UNIX_MICROS(exported_at) AS STRING) FROM `{BIGQUERY_PROJECT}.{BIGQUERY_DATASET}.{table}` ORDER BY 1"
    );
    let Ok(rows) = emulator.query(&sql).await else {
        return Vec::new();
    };
    rows.iter()
        .map(|row| {
            let text = |i: usize| row[i].as_str().unwrap_or_default().to_owned();
            (text(0), text(1), text(2))
        })
        .collect()
}

/// One inventory bound to a Git sink and a BigQuery sink (the emulator, through `spec.endpoint`):
/// the table holds one row per Deployment, a changed Deployment rewrites only its own row, a
/// deleted one leaves, and deleting the inventory removes its rows.
#[tokio::test]
async fn an_inventory_exports_to_git_and_a_bigquery_table() {
    use kollect_testkit::backends::BigqueryEmulator;
    let _serial = SERIAL.lock().await;
    let Some((plane, git, ns, _)) = git_pipeline("bigquery").await else {
        return;
    };
    let Some(emulator) = kollect_testkit::backends::start_for_test(BigqueryEmulator::start) else {
        return;
    };
    plane
        .apply_yaml(&deployment("api", "web", "api:1.0"), &ns)
        .await
        .unwrap();
    plane
        .apply_yaml(
            &format!(
                "apiVersion: kollect.dev/v1alpha1
kind: KollectDatabaseSink
metadata: {{name: inventory-bigquery}}
spec:
  type: bigquery
  endpoint: {endpoint}
  bigquery: {{project: {project}, dataset: {dataset}, table: rows}}
  cluster: prod
---
apiVersion: kollect.dev/v1alpha1
kind: KollectInventory
metadata: {{name: first-inventory}}
spec:
  exportMinInterval: 1h
  snapshotSinkRefs: [{{name: inventory-git}}]
  databaseSinkRefs: [{{name: inventory-bigquery}}]
",
                endpoint = emulator.endpoint(),
                project = kollect_testkit::backends::BIGQUERY_PROJECT,
                dataset = kollect_testkit::backends::BIGQUERY_DATASET,
            ),
            &ns,
        )
        .await
        .unwrap();
    let client = plane.client().await.unwrap();
    let operator = Running::start(client.clone(), test_options()).await;
    let inventories: Api<KollectInventory> = Api::namespaced(client.clone(), &ns);
    let names = exported_sinks(
        &inventories,
        "first-inventory",
        2,
        "the inventory exports to Git and BigQuery",
    )
    .await;
    assert_eq!(names, ["snapshot/inventory-git", "database/inventory-bigquery"]);
    assert!(git_file(&git, "inventory", &format!("inventory/{ns}/first-inventory.yaml")).is_some());
    let images = |rows: &[(String, String, String)]| -> Vec<(String, String)> {
        rows.iter().map(|(n, i, _)| (n.clone(), i.clone())).collect()
    };
    let pair = |name: &str, image: &str| (name.to_owned(), image.to_owned());
    let first = bigquery_rows(&emulator, "rows").await;
    assert_eq!(
        images(&first),
        [pair("api", "api:1.0"), pair("web", "nginx:1.27")]
    );
    let cluster = emulator
        .query("SELECT DISTINCT cluster, inventory_namespace FROM `kollect-test.inventory.rows`")
        .await
        .unwrap();
    assert_eq!(cluster, [vec![serde_json::json!("prod"), serde_json::json!(ns)]]);

    // One changed Deployment rewrites its own row only.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    set_image(&deployments, "web", "nginx:1.28").await;
    eventually("the table holds the new image", || async {
        let rows = bigquery_rows(&emulator, "rows").await;
        (images(&rows) == [pair("api", "api:1.0"), pair("web", "nginx:1.28")]).then_some(())
    })
    .await;
    let changed = bigquery_rows(&emulator, "rows").await;
    assert_eq!(changed[0].2, first[0].2, "the unchanged row was not rewritten");

    // A deleted Deployment's row leaves.
    deployments.delete("api", &DeleteParams::default()).await.unwrap();
    eventually("the api row is deleted", || async {
        let rows = bigquery_rows(&emulator, "rows").await;
        (images(&rows) == [pair("web", "nginx:1.28")]).then_some(())
    })
    .await;

    // Deleting the inventory removes its rows.
    inventories
        .delete("first-inventory", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the table no longer holds the inventory", || async {
        bigquery_rows(&emulator, "rows").await.is_empty().then_some(())
    })
    .await;
    operator.stop().await;
}

/// One inventory bound to a Git sink and a Kafka event sink in row mode: the topic rebuilds the
/// inventory, one changed Deployment publishes one message, and deleting the inventory
/// tombstones its rows.
#[tokio::test]
async fn an_inventory_exports_to_git_and_a_kafka_topic() {
    let _serial = SERIAL.lock().await;
    let Some((plane, git, ns, _)) = git_pipeline("kafka").await else {
        return;
    };
    let Some(kafka) = kollect_testkit::backends::start_for_test(kollect_testkit::backends::Kafka::start)
    else {
        return;
    };
    let kafka = Arc::new(kafka);
    plane
        .apply_yaml(
            &format!(
                "apiVersion: kollect.dev/v1alpha1
kind: KollectEventSink
metadata: {{name: inventory-events}}
spec:
  type: kafka
  kafka: {{brokers: ['{bootstrap}'], topic: inventory}}
  cluster: prod
  options: {{messageMode: row}}
---
apiVersion: kollect.dev/v1alpha1
kind: KollectInventory
metadata: {{name: first-inventory}}
spec:
  exportMinInterval: 1h
  snapshotSinkRefs: [{{name: inventory-git}}]
  eventSinkRefs: [{{name: inventory-events}}]
",
                bootstrap = kafka.bootstrap_servers()
            ),
            &ns,
        )
        .await
        .unwrap();
    let client = plane.client().await.unwrap();
    let operator = Running::start(client.clone(), test_options()).await;
    let inventories: Api<KollectInventory> = Api::namespaced(client.clone(), &ns);
    let names = exported_sinks(
        &inventories,
        "first-inventory",
        2,
        "the inventory exports to Git and Kafka",
    )
    .await;
    assert_eq!(names, ["snapshot/inventory-git", "event/inventory-events"]);
    assert!(git_file(&git, "inventory", &format!("inventory/{ns}/first-inventory.yaml")).is_some());

    let inventory = kollect_core::sink::InventoryRef::namespaced(&ns, "first-inventory").with_cluster("prod");
    let (rows, messages) = kafka_inventory(&kafka, "inventory", &inventory).await;
    assert_eq!(messages, 1);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].name, "web");
    assert_eq!(rows[0].attributes.as_ref().unwrap()["image"], "nginx:1.27");

    // One changed Deployment: one more message, and the topic rebuilds the new image.
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    set_image(&deployments, "web", "nginx:1.28").await;
    let rows = eventually("the topic carries the new image", || async {
        let (rows, messages) = kafka_inventory(&kafka, "inventory", &inventory).await;
        let updated = rows.first()?.attributes.as_ref()?["image"] == "nginx:1.28";
        (updated && messages == 2).then_some(rows)
    })
    .await;
    assert_eq!(rows.len(), 1);

    // Deleting the inventory tombstones its row.
    inventories
        .delete("first-inventory", &DeleteParams::default())
        .await
        .unwrap();
    eventually("the topic no longer holds the inventory", || async {
        let (rows, messages) = kafka_inventory(&kafka, "inventory", &inventory).await;
        (rows.is_empty() && messages == 3).then_some(())
    })
    .await;
    operator.stop().await;
}
