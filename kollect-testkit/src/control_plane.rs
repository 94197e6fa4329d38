//! A real local Kubernetes control plane: etcd and kube-apiserver as child processes on loopback.
//!
//! [`ControlPlane::start`] picks free ports and a temporary directory, generates a CA, a serving
//! certificate and a service-account signing key, starts etcd and kube-apiserver (static admin
//! token, RBAC authorisation), waits until the API server is ready, installs every CRD from
//! `charts/kollect/crds/` and waits for them to be Established. Processes are killed and the
//! directory removed on drop; a small watchdog process does the same if the test process dies
//! without running destructors (a panic in a static, an abort, a signal).
//!
//! Binaries are looked up in `$KUBEBUILDER_ASSETS`, then `$KOLLECT_ENVTEST_ASSETS`, then the
//! cache `hack/build-control-plane.sh` fills (`~/.cache/kollect/envtest/<version>/`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::{Namespace, ServiceAccount};
use k8s_openapi::api::rbac::v1::{PolicyRule, Role, RoleBinding, RoleRef, Subject};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, ApiResource, DynamicObject, Patch, PatchParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::discovery::Discovery;
use kube::{Client, Config};
use serde::Deserialize;

/// The Kubernetes release the workspace's `k8s-openapi` feature corresponds to.
pub const KUBERNETES_VERSION: &str = "1.37.2";

/// The command that builds the control plane binaries.
pub const SETUP_COMMAND: &str = "hack/build-control-plane.sh";

const ADMIN_TOKEN_USER: &str = "kollect-admin";

/// Everything that can go wrong starting or driving the control plane.
#[derive(Debug, thiserror::Error)]
pub enum ControlPlaneError {
    /// A binary is missing.
    #[error("{binary} not found in {searched}; build it with {SETUP_COMMAND} (./hack/test.sh does this)")]
    MissingBinary {
        /// `etcd` or `kube-apiserver`.
        binary: &'static str,
        /// Where it was looked for.
        searched: String,
    },
    /// A file or process operation failed.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The failure.
        source: std::io::Error,
    },
    /// Certificate or key generation failed.
    #[error("generate TLS material: {0}")]
    Tls(#[from] rcgen::Error),
    /// A Kubernetes API call failed.
    #[error("{context}: {source}")]
    Kube {
        /// What was being done.
        context: String,
        /// The failure.
        source: kube::Error,
    },
    /// The API server did not become ready, or a CRD was not established, in time.
    #[error("timed out: {0}")]
    Timeout(String),
    /// A manifest could not be read.
    #[error("manifest: {0}")]
    Manifest(String),
}

fn io(context: impl Into<String>) -> impl FnOnce(std::io::Error) -> ControlPlaneError {
    let context = context.into();
    move |source| ControlPlaneError::Io { context, source }
}

fn kube_err(context: impl Into<String>) -> impl FnOnce(kube::Error) -> ControlPlaneError {
    let context = context.into();
    move |source| ControlPlaneError::Kube { context, source }
}

/// Where the control plane binaries are.
pub fn assets_dir() -> PathBuf {
    for var in ["KUBEBUILDER_ASSETS", "KOLLECT_ENVTEST_ASSETS"] {
        if let Some(dir) = std::env::var_os(var).filter(|v| !v.is_empty()) {
            return PathBuf::from(dir);
        }
    }
    cache_dir().join("envtest").join(KUBERNETES_VERSION)
}

/// The cache the setup scripts fill: `$KOLLECT_CACHE`, else `~/.cache/kollect` (as `hack/env.sh`).
pub(crate) fn cache_dir() -> PathBuf {
    std::env::var_os("KOLLECT_CACHE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/kollect"))
}

fn binary(name: &'static str) -> Result<PathBuf, ControlPlaneError> {
    let dir = assets_dir();
    let path = dir.join(name);
    if path.is_file() {
        Ok(path)
    } else {
        Err(ControlPlaneError::MissingBinary {
            binary: name,
            searched: dir.display().to_string(),
        })
    }
}

/// Whether tests must fail (instead of skip) when a real component is missing:
/// `KOLLECT_REQUIRE_INFRA=1`, which `hack/test.sh` and CI set.
pub fn infra_required() -> bool {
    std::env::var("KOLLECT_REQUIRE_INFRA").is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// A free TCP port on loopback, below the kernel's ephemeral range so that no outgoing connection
/// takes it while a server using it is stopped. The probe listener is closed again, so another
/// process could bind the port in between; retries of the caller cover that rare case.
pub fn free_port() -> Result<u16, ControlPlaneError> {
    crate::ports::free_port().map_err(io("find a free port"))
}

/// Receives every object of `api` as a streaming list (one watch whose first events are the
/// current objects, ended by a bookmark; each object decoded, then dropped) and returns how many
/// there were. Needs an API server with the `WatchList` feature (Kubernetes 1.32, 1.34 and later).
pub async fn count_streamed<K>(api: &Api<K>) -> Result<usize, kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    use futures::TryStreamExt;
    use kube::api::WatchEvent;
    let mut events = std::pin::pin!(api.watch(&kube::api::WatchParams::streaming_lists(), "0").await?);
    let mut listed = 0;
    while let Some(event) = events.try_next().await? {
        match event {
            WatchEvent::Added(_) | WatchEvent::Modified(_) => listed += 1,
            WatchEvent::Bookmark(bookmark)
                if bookmark
                    .metadata
                    .annotations
                    .contains_key("k8s.io/initial-events-end") =>
            {
                return Ok(listed);
            }
            WatchEvent::Error(status) => return Err(kube::Error::Api(status)),
            WatchEvent::Deleted(_) | WatchEvent::Bookmark(_) => {}
        }
    }
    Err(kube::Error::Service(
        "the streaming list ended before its last object".into(),
    ))
}

/// Lists every object of `api` in pages of `page` objects (each page decoded, then dropped) and
/// returns how many there were: the baseline a collector's initial list is compared with.
pub async fn count_paginated<K>(api: &Api<K>, page: u32) -> Result<usize, kube::Error>
where
    K: kube::Resource + Clone + serde::de::DeserializeOwned + std::fmt::Debug,
{
    let mut params = kube::api::ListParams::default().limit(page);
    let mut listed = 0;
    loop {
        let list = api.list(&params).await?;
        listed += list.items.len();
        match list.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => return Ok(listed),
        }
    }
}

/// A running etcd + kube-apiserver.
pub struct ControlPlane {
    dir: tempfile::TempDir,
    etcd: Child,
    apiserver: Option<Child>,
    apiserver_args: Vec<String>,
    apiserver_port: u16,
    kubeconfig: PathBuf,
    watchdog: Option<Child>,
}

impl std::fmt::Debug for ControlPlane {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlPlane")
            .field("dir", &self.dir.path())
            .field("port", &self.apiserver_port)
            .finish()
    }
}

struct Pki {
    ca_pem: String,
    cert_pem: String,
    key_pem: String,
    sa_key_pem: String,
    sa_pub_pem: String,
}

fn generate_pki() -> Result<Pki, ControlPlaneError> {
    let serving = crate::pki::serving_pki("kube-apiserver")?;
    let sa_key = rcgen::KeyPair::generate()?;
    Ok(Pki {
        ca_pem: serving.ca_pem,
        cert_pem: serving.cert_pem,
        key_pem: serving.key_pem,
        sa_key_pem: sa_key.serialize_pem(),
        sa_pub_pem: sa_key.public_key_pem(),
    })
}

fn write(path: &Path, content: &str) -> Result<(), ControlPlaneError> {
    std::fs::write(path, content).map_err(io(format!("write {}", path.display())))
}

fn spawn(binary: &Path, args: &[String], log: &Path) -> Result<Child, ControlPlaneError> {
    let out = std::fs::File::create(log).map_err(io(format!("create {}", log.display())))?;
    let err = out.try_clone().map_err(io("duplicate a log handle"))?;
    Command::new(binary)
        .args(args)
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(io(format!("start {}", binary.display())))
}

impl ControlPlane {
    /// Starts etcd and kube-apiserver, installs the Kollect CRDs, and returns once everything is
    /// ready.
    pub async fn start() -> Result<Self, ControlPlaneError> {
        Self::start_with_apiserver_flags(&[]).await
    }

    /// [`ControlPlane::start`] with more kube-apiserver flags after the testkit's own, for
    /// example `--feature-gates=WatchList=false` to stand in for an older API server.
    pub async fn start_with_apiserver_flags(flags: &[&str]) -> Result<Self, ControlPlaneError> {
        let etcd_bin = binary("etcd")?;
        // Both binaries are checked before anything starts, for one clear error.
        binary("kube-apiserver")?;
        let dir = tempfile::Builder::new()
            .prefix("kollect-cp-")
            .tempdir()
            .map_err(io("create a temp dir"))?;
        let root = dir.path().to_owned();
        let pki = generate_pki()?;
        for (name, content) in [
            ("ca.crt", &pki.ca_pem),
            ("apiserver.crt", &pki.cert_pem),
            ("apiserver.key", &pki.key_pem),
            ("sa.key", &pki.sa_key_pem),
            ("sa.pub", &pki.sa_pub_pem),
        ] {
            write(&root.join(name), content)?;
        }
        let token = format!("kollect-{:016x}", rand_u64());
        write(
            &root.join("tokens.csv"),
            &format!("{token},{ADMIN_TOKEN_USER},{ADMIN_TOKEN_USER},system:masters\n"),
        )?;

        let (etcd_port, peer_port, apiserver_port) = (free_port()?, free_port()?, free_port()?);
        let etcd_url = format!("http://127.0.0.1:{etcd_port}");
        let peer_url = format!("http://127.0.0.1:{peer_port}");
        let etcd_args: Vec<String> = [
            "--data-dir".into(),
            root.join("etcd").display().to_string(),
            "--listen-client-urls".into(),
            etcd_url.clone(),
            "--advertise-client-urls".into(),
            etcd_url.clone(),
            "--listen-peer-urls".into(),
            peer_url.clone(),
            "--initial-advertise-peer-urls".into(),
            peer_url.clone(),
            "--initial-cluster".into(),
            format!("default={peer_url}"),
            "--unsafe-no-fsync".into(),
            "--log-level".into(),
            "warn".into(),
        ]
        .into();
        let etcd = spawn(&etcd_bin, &etcd_args, &root.join("etcd.log"))?;

        let file = |name: &str| root.join(name).display().to_string();
        let mut apiserver_args: Vec<String> = vec![
            format!("--etcd-servers={etcd_url}"),
            format!("--secure-port={apiserver_port}"),
            "--bind-address=127.0.0.1".into(),
            "--advertise-address=127.0.0.1".into(),
            format!("--cert-dir={}", file("certs")),
            format!("--tls-cert-file={}", file("apiserver.crt")),
            format!("--tls-private-key-file={}", file("apiserver.key")),
            format!("--client-ca-file={}", file("ca.crt")),
            format!("--token-auth-file={}", file("tokens.csv")),
            "--authorization-mode=RBAC".into(),
            "--service-account-issuer=https://kubernetes.default.svc".into(),
            format!("--service-account-key-file={}", file("sa.pub")),
            format!("--service-account-signing-key-file={}", file("sa.key")),
            "--service-cluster-ip-range=10.0.0.0/24".into(),
            "--allow-privileged=true".into(),
            "--disable-admission-plugins=ServiceAccount".into(),
            // No kubernetes Service endpoints for a loopback-only API server.
            "--endpoint-reconciler-type=none".into(),
            // Webhooks behind a Service are dialled at the Service's EndpointSlice addresses:
            // there is no kube-proxy to route a ClusterIP.
            "--enable-aggregator-routing=true".into(),
        ];
        apiserver_args.extend(flags.iter().map(|flag| (*flag).to_owned()));
        let kubeconfig = root.join("kubeconfig.yaml");
        write(&kubeconfig, &kubeconfig_yaml(apiserver_port, &pki.ca_pem, &token))?;
        let mut plane = Self {
            dir,
            etcd,
            apiserver: None,
            apiserver_args,
            apiserver_port,
            kubeconfig,
            watchdog: None,
        };
        plane.watchdog = spawn_watchdog(&plane).ok();
        plane.start_apiserver().await?;
        plane.install_crds().await?;
        Ok(plane)
    }

    /// Starts a control plane for a test. When the binaries are missing and infrastructure is not
    /// required, prints why and returns `None` so the test can return early; in every other
    /// failure case it panics with the reason.
    ///
    /// # Panics
    ///
    /// When the control plane cannot start (or its binaries are missing while
    /// `KOLLECT_REQUIRE_INFRA=1`).
    pub async fn start_for_test() -> Option<Self> {
        Self::start_for_test_with_apiserver_flags(&[]).await
    }

    /// [`ControlPlane::start_for_test`] with more kube-apiserver flags (see
    /// [`ControlPlane::start_with_apiserver_flags`]).
    ///
    /// # Panics
    ///
    /// As [`ControlPlane::start_for_test`].
    pub async fn start_for_test_with_apiserver_flags(flags: &[&str]) -> Option<Self> {
        match Self::start_with_apiserver_flags(flags).await {
            Ok(plane) => Some(plane),
            Err(error @ ControlPlaneError::MissingBinary { .. }) if !infra_required() => {
                eprintln!("skipping: {error} (set KOLLECT_REQUIRE_INFRA=1 to make this a failure)");
                None
            }
            Err(error) => panic!("local control plane: {error}"),
        }
    }

    /// Path of a kubeconfig with admin (system:masters) credentials, for the CLI and for humans.
    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig
    }

    /// The API server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.apiserver_port
    }

    /// The working directory (etcd data, certificates, logs).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A new admin client, bound to the calling tokio runtime.
    pub async fn client(&self) -> Result<Client, ControlPlaneError> {
        let kubeconfig = Kubeconfig::read_from(&self.kubeconfig)
            .map_err(|e| ControlPlaneError::Manifest(e.to_string()))?;
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|e| ControlPlaneError::Manifest(e.to_string()))?;
        Client::try_from(config).map_err(kube_err("build a client"))
    }

    /// Starts kube-apiserver (again, after [`ControlPlane::stop_apiserver`]) on the same port and
    /// etcd, and waits until it is ready.
    pub async fn start_apiserver(&mut self) -> Result<(), ControlPlaneError> {
        if self.apiserver.is_some() {
            return Ok(());
        }
        let bin = binary("kube-apiserver")?;
        let log = self.dir.path().join("kube-apiserver.log");
        self.apiserver = Some(spawn(&bin, &self.apiserver_args, &log)?);
        self.wait_ready(Duration::from_secs(90)).await
    }

    /// Stops kube-apiserver (etcd keeps running), to simulate an API outage.
    pub fn stop_apiserver(&mut self) {
        if let Some(mut child) = self.apiserver.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    async fn wait_ready(&mut self, limit: Duration) -> Result<(), ControlPlaneError> {
        let deadline = tokio::time::Instant::now() + limit;
        let mut last = String::from("not contacted yet");
        while tokio::time::Instant::now() < deadline {
            if let Some(status) = self.apiserver_exit_status() {
                last = format!("kube-apiserver exited ({status})");
                break;
            }
            match self.client().await {
                Ok(client) => {
                    let request = http::Request::get("/readyz")
                        .body(Vec::new())
                        .map_err(|e| ControlPlaneError::Manifest(e.to_string()))?;
                    match client.request_text(request).await {
                        Ok(body) if body.trim() == "ok" => return Ok(()),
                        Ok(body) => last = body,
                        Err(e) => last = e.to_string(),
                    }
                }
                Err(e) => last = e.to_string(),
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let log = std::fs::read_to_string(self.dir.path().join("kube-apiserver.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(15).collect();
        Err(ControlPlaneError::Timeout(format!(
            "kube-apiserver not ready within {limit:?} ({last}); log tail:\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )))
    }

    fn apiserver_exit_status(&mut self) -> Option<std::process::ExitStatus> {
        self.apiserver.as_mut()?.try_wait().ok().flatten()
    }

    /// Installs every Kollect CRD and waits until each is Established.
    ///
    /// The CRDs come from `kollect_core::api::v1alpha1::all_crds`, the same values the chart's
    /// generated manifests are rendered from, so a published testkit needs no repository files.
    pub async fn install_crds(&self) -> Result<(), ControlPlaneError> {
        let client = self.client().await?;
        let api: Api<CustomResourceDefinition> = Api::all(client);
        let mut names = Vec::new();
        let mut refused = Vec::new();
        for crd in kollect_core::api::v1alpha1::all_crds() {
            let name = crd.metadata.name.clone().unwrap_or_default();
            match api
                .patch(
                    &name,
                    &PatchParams::apply("kollect-testkit").force(),
                    &Patch::Apply(&crd),
                )
                .await
            {
                Ok(_) => names.push(name),
                Err(kube::Error::Api(status)) => refused.push(format!("{name}: {}", status.message)),
                Err(error) => return Err(kube_err(format!("install CRD {name}"))(error)),
            }
        }
        if !refused.is_empty() {
            return Err(ControlPlaneError::Manifest(format!(
                "the API server refused CRDs:\n{}",
                refused.join("\n")
            )));
        }
        for name in names {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            loop {
                let crd = api
                    .get(&name)
                    .await
                    .map_err(kube_err(format!("read CRD {name}")))?;
                let established = crd
                    .status
                    .and_then(|s| s.conditions)
                    .unwrap_or_default()
                    .iter()
                    .any(|c| c.type_ == "Established" && c.status == "True");
                if established {
                    break;
                }
                if tokio::time::Instant::now() > deadline {
                    return Err(ControlPlaneError::Timeout(format!("CRD {name} not Established")));
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
        Ok(())
    }

    /// Creates a namespace with a unique name starting with `prefix`.
    pub async fn create_namespace(&self, prefix: &str) -> Result<String, ControlPlaneError> {
        let name = format!("{prefix}-{:08x}", rand_u64() as u32);
        let api: Api<Namespace> = Api::all(self.client().await?);
        let ns = Namespace {
            metadata: kube::api::ObjectMeta {
                name: Some(name.clone()),
                ..Default::default()
            },
            ..Default::default()
        };
        api.create(&PostParams::default(), &ns)
            .await
            .map_err(kube_err(format!("create namespace {name}")))?;
        Ok(name)
    }

    /// Server-side applies every document of `yaml` (namespaced objects without a namespace go
    /// to `default_namespace`). `List` documents (`kubectl get -o yaml|json`) apply their items;
    /// the fields the server sets (uid, resourceVersion, creationTimestamp, managedFields,
    /// status, a Service's cluster IPs and node ports) are dropped, so dumps of another cluster
    /// apply as they are.
    pub async fn apply_yaml(&self, yaml: &str, default_namespace: &str) -> Result<(), ControlPlaneError> {
        let mut objects = Vec::new();
        for document in serde_norway::Deserializer::from_str(yaml) {
            let value = serde_json::Value::deserialize(document)
                .map_err(|e| ControlPlaneError::Manifest(e.to_string()))?;
            match value {
                serde_json::Value::Object(mut list) if list.get("kind").is_some_and(|k| k == "List") => {
                    if let Some(serde_json::Value::Array(items)) = list.remove("items") {
                        objects.extend(items);
                    }
                }
                serde_json::Value::Null => {}
                value => objects.push(value),
            }
        }
        self.apply_objects(objects, default_namespace).await
    }

    /// Server-side applies `objects` (already parsed, `List`s unpacked), as [`Self::apply_yaml`]
    /// does: namespaces and CRDs first, the fields the source cluster set dropped.
    pub async fn apply_objects(
        &self,
        mut objects: Vec<serde_json::Value>,
        default_namespace: &str,
    ) -> Result<(), ControlPlaneError> {
        let client = self.client().await?;
        let mut discovery = Discovery::new(client.clone())
            .run()
            .await
            .map_err(kube_err("discovery"))?;
        // Namespaces and CRDs first, so the objects in them apply in the same call.
        objects
            .sort_by_key(|o| !matches!(o["kind"].as_str(), Some("Namespace" | "CustomResourceDefinition")));
        for mut value in objects {
            if let Some(metadata) = value.get_mut("metadata").and_then(|m| m.as_object_mut()) {
                for field in [
                    "uid",
                    "resourceVersion",
                    "creationTimestamp",
                    "managedFields",
                    "generation",
                ] {
                    metadata.remove(field);
                }
            }
            if let Some(object) = value.as_object_mut() {
                object.remove("status");
            }
            // A Service's addresses and node ports were allocated by the cluster it was dumped
            // from; here they could be out of range or taken.
            if value["kind"] == "Service"
                && let Some(spec) = value.get_mut("spec").and_then(|s| s.as_object_mut())
            {
                for field in ["clusterIP", "clusterIPs", "healthCheckNodePort"] {
                    spec.remove(field);
                }
                for port in spec
                    .get_mut("ports")
                    .and_then(|p| p.as_array_mut())
                    .into_iter()
                    .flatten()
                {
                    if let Some(port) = port.as_object_mut() {
                        port.remove("nodePort");
                    }
                }
            }
            if value["kind"] == "CustomResourceDefinition" {
                // A new kind: later objects of it need discovery to know it.
                self.apply_value(&client, &discovery, value, default_namespace)
                    .await?;
                tokio::time::sleep(Duration::from_secs(1)).await;
                discovery = Discovery::new(client.clone())
                    .run()
                    .await
                    .map_err(kube_err("discovery"))?;
                continue;
            }
            self.apply_value(&client, &discovery, value, default_namespace)
                .await?;
        }
        Ok(())
    }

    async fn apply_value(
        &self,
        client: &Client,
        discovery: &Discovery,
        value: serde_json::Value,
        default_namespace: &str,
    ) -> Result<(), ControlPlaneError> {
        let object =
            DynamicObject::deserialize(value).map_err(|e| ControlPlaneError::Manifest(e.to_string()))?;
        let Some(types) = object.types.clone() else {
            return Ok(());
        };
        let gvk = kube::api::GroupVersionKind::try_from(&types)
            .map_err(|e| ControlPlaneError::Manifest(e.to_string()))?;
        let (resource, capabilities) = discovery
            .resolve_gvk(&gvk)
            .ok_or_else(|| ControlPlaneError::Manifest(format!("unknown kind {gvk:?}")))?;
        let name = object.metadata.name.clone().unwrap_or_default();
        let api: Api<DynamicObject> = if capabilities.scope == kube::discovery::Scope::Namespaced {
            let ns = object
                .metadata
                .namespace
                .clone()
                .unwrap_or_else(|| default_namespace.to_owned());
            Api::namespaced_with(client.clone(), &ns, &resource)
        } else {
            Api::all_with(client.clone(), &resource)
        };
        api.patch(
            &name,
            &PatchParams::apply("kollect-testkit").force(),
            &Patch::Apply(&object),
        )
        .await
        .map_err(kube_err(format!("apply {} {name}", gvk.kind)))?;
        Ok(())
    }

    /// A client authenticated as a new ServiceAccount of `namespace` that may only do what
    /// `rules` allow in that namespace, for testing forbidden paths.
    pub async fn limited_client(
        &self,
        namespace: &str,
        name: &str,
        rules: Vec<PolicyRule>,
    ) -> Result<Client, ControlPlaneError> {
        let admin = self.client().await?;
        let pp = PostParams::default();
        let meta = |n: &str| kube::api::ObjectMeta {
            name: Some(n.to_owned()),
            namespace: Some(namespace.to_owned()),
            ..Default::default()
        };
        Api::<ServiceAccount>::namespaced(admin.clone(), namespace)
            .create(
                &pp,
                &ServiceAccount {
                    metadata: meta(name),
                    ..Default::default()
                },
            )
            .await
            .map_err(kube_err("create service account"))?;
        Api::<Role>::namespaced(admin.clone(), namespace)
            .create(
                &pp,
                &Role {
                    metadata: meta(name),
                    rules: Some(rules),
                },
            )
            .await
            .map_err(kube_err("create role"))?;
        let binding = RoleBinding {
            metadata: meta(name),
            role_ref: RoleRef {
                api_group: Some("rbac.authorization.k8s.io".into()),
                kind: "Role".into(),
                name: name.into(),
            },
            subjects: Some(vec![Subject {
                kind: "ServiceAccount".into(),
                name: name.into(),
                namespace: Some(namespace.into()),
                ..Default::default()
            }]),
        };
        Api::<RoleBinding>::namespaced(admin.clone(), namespace)
            .create(&pp, &binding)
            .await
            .map_err(kube_err("create role binding"))?;
        let token = self.service_account_token(namespace, name).await?;
        let mut kubeconfig = Kubeconfig::read_from(&self.kubeconfig)
            .map_err(|e| ControlPlaneError::Manifest(e.to_string()))?;
        for auth in &mut kubeconfig.auth_infos {
            if let Some(info) = auth.auth_info.as_mut() {
                info.token = Some(token.clone().into());
            }
        }
        let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
            .await
            .map_err(|e| ControlPlaneError::Manifest(e.to_string()))?;
        Client::try_from(config).map_err(kube_err("build a limited client"))
    }

    /// A token of the existing ServiceAccount `namespace/name` from the TokenRequest API, valid
    /// for an hour, as a kubelet would mount it.
    pub async fn service_account_token(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<String, ControlPlaneError> {
        let request = TokenRequest {
            spec: Some(TokenRequestSpec {
                audiences: Some(vec!["https://kubernetes.default.svc".into()]),
                expiration_seconds: Some(3600),
                ..Default::default()
            }),
            ..Default::default()
        };
        let token: TokenRequest = Api::<ServiceAccount>::namespaced(self.client().await?, namespace)
            .create_subresource("token", name, &PostParams::default(), &request)
            .await
            .map_err(kube_err("request a service account token"))?;
        Ok(token.status.and_then(|s| s.token).unwrap_or_default())
    }

    /// Writes a kubeconfig that authenticates as the existing ServiceAccount `namespace/name`
    /// (see [`ControlPlane::service_account_token`]) and returns its path: a process started
    /// with it has exactly that account's permissions.
    pub async fn service_account_kubeconfig(
        &self,
        namespace: &str,
        name: &str,
    ) -> Result<PathBuf, ControlPlaneError> {
        let token = self.service_account_token(namespace, name).await?;
        let ca_pem = std::fs::read_to_string(self.dir().join("ca.crt")).map_err(io("read ca.crt"))?;
        let path = self.dir().join(format!("kubeconfig-{namespace}-{name}.yaml"));
        write(&path, &kubeconfig_yaml(self.apiserver_port, &ca_pem, &token))?;
        Ok(path)
    }

    /// An [`ApiResource`] for a Kollect kind, for dynamic access in tests.
    pub fn kollect_resource(kind: &str, plural: &str) -> ApiResource {
        ApiResource {
            group: "kollect.dev".into(),
            version: "v1alpha1".into(),
            api_version: "kollect.dev/v1alpha1".into(),
            kind: kind.into(),
            plural: plural.into(),
        }
    }
}

impl Drop for ControlPlane {
    fn drop(&mut self) {
        self.stop_apiserver();
        let _ = self.etcd.kill();
        let _ = self.etcd.wait();
        if let Some(mut watchdog) = self.watchdog.take() {
            let _ = watchdog.kill();
            let _ = watchdog.wait();
        }
    }
}

/// A shell process that waits for this test process to end and then kills etcd and
/// kube-apiserver and removes the directory, so nothing outlives a test binary that exits
/// without running destructors (shared control planes in statics, aborts).
fn spawn_watchdog(plane: &ControlPlane) -> Result<Child, ControlPlaneError> {
    let script = format!(
        // `[-]` keeps the pattern from matching this script's own command line.
        // The API server goes first, and is killed outright if it is still there a second
        // later: once etcd is gone its graceful shutdown can wait forever.
        "while kill -0 {parent} 2>/dev/null; do sleep 1; done; pkill -f -- '[-]-etcd-servers=http://127.0.0.1:{etcd}'; sleep 1; pkill -9 -f -- '[-]-etcd-servers=http://127.0.0.1:{etcd}'; kill {etcd_pid} 2>/dev/null; sleep 1; rm -rf '{dir}'",
        parent = std::process::id(),
        etcd = plane
            .apiserver_args
            .first()
            .and_then(|a| a.rsplit(':').next())
            .unwrap_or("0"),
        etcd_pid = plane.etcd.id(),
        dir = plane.dir.path().display(),
    );
    Command::new("sh")
        .args(["-c", &script])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(io("start the watchdog"))
}

fn kubeconfig_yaml(port: u16, ca_pem: &str, token: &str) -> String {
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    format!(
        "apiVersion: v1\nkind: Config\nclusters:\n- name: kollect-test\n  cluster:\n    server: https://127.0.0.1:{port}\n    certificate-authority-data: {ca}\nusers:\n- name: admin\n  user:\n    token: {token}\ncontexts:\n- name: kollect-test\n  context:\n    cluster: kollect-test\n    user: admin\ncurrent-context: kollect-test\n"
    )
}

/// A random number from the OS's randomness (via the standard library's hasher keys), enough for
/// unique names and throwaway tokens.
fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    hasher.finish()
}
