//! The Helm chart (`charts/kollect`) against the local control plane: `helm lint`, renders of
//! the default, tenant-mode and Go-chart values applied with server-side dry-run, the values
//! schema's refusals, and a real `helm install` whose ServiceAccount runs the operator binary
//! through a first inventory — with exactly the chart's permissions — before `helm uninstall`
//! removes everything it created.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use clap::Parser;
use k8s_openapi::api::admissionregistration::v1::{ValidatingWebhookConfiguration, WebhookClientConfig};
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kollect_core::api::v1alpha1::{KollectInventory, KollectTarget};
use kollect_operator::admission;
use kollect_operator::args::{Cli, Command as Subcommand};
use kollect_testkit::{ControlPlane, GitServer};
use kube::api::{
    Api, ApiResource, DynamicObject, GroupVersionKind, ListParams, Patch, PatchParams, PostParams,
};
use kube::discovery::{Discovery, Scope};
use serde_json::{Value, json};

const RELEASE: &str = "kollect";
const RELEASE_NAMESPACE: &str = "kollect-system";

fn chart_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../charts/kollect")
}

fn fixture(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/chart")
        .join(name)
        .display()
        .to_string()
}

/// The helm binary `hack/install-chart-tools.sh` builds, else `helm` on PATH; `None` (the test
/// skips) when neither exists and infrastructure is not required.
fn helm_binary() -> Option<PathBuf> {
    let cache = std::env::var_os("KOLLECT_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".cache/kollect")));
    let cached = cache
        .map(|dir| dir.join("bin/helm"))
        .filter(|path| path.is_file());
    let found = cached.or_else(|| {
        Command::new("helm")
            .arg("version")
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|_| PathBuf::from("helm"))
    });
    if found.is_none() {
        assert!(
            !kollect_testkit::control_plane::infra_required(),
            "helm not found; build it with hack/install-chart-tools.sh"
        );
        eprintln!("skipping: helm not found (hack/install-chart-tools.sh builds it)");
    }
    found
}

/// Runs helm; stdout on success, stderr on failure.
fn helm(binary: &Path, args: &[&str], kubeconfig: Option<&Path>) -> Result<String, String> {
    let mut command = Command::new(binary);
    command.args(args);
    if let Some(kubeconfig) = kubeconfig {
        command.arg("--kubeconfig").arg(kubeconfig);
    }
    // Helm's own caches and config stay out of $HOME.
    let home = std::env::temp_dir().join("kollect-helm-home");
    for (variable, dir) in [
        ("HELM_CACHE_HOME", "cache"),
        ("HELM_CONFIG_HOME", "config"),
        ("HELM_DATA_HOME", "data"),
    ] {
        command.env(variable, home.join(dir));
    }
    let output = command.output().map_err(|e| e.to_string())?;
    if output.status.success() {
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    } else {
        Err(String::from_utf8_lossy(&output.stderr).into_owned())
    }
}

/// `helm template` with `extra` arguments, as JSON documents.
fn render(binary: &Path, extra: &[&str]) -> Vec<Value> {
    let chart = chart_dir().display().to_string();
    let mut args = vec![
        "template",
        RELEASE,
        chart.as_str(),
        "--namespace",
        RELEASE_NAMESPACE,
    ];
    args.extend_from_slice(extra);
    let yaml = helm(binary, &args, None).unwrap_or_else(|e| panic!("helm template {extra:?}: {e}"));
    serde_norway::Deserializer::from_str(&yaml)
        .filter_map(|document| {
            let value: Value = serde::Deserialize::deserialize(document).unwrap();
            (!value.is_null()).then_some(value)
        })
        .collect()
}

fn of_kind<'a>(documents: &'a [Value], kind: &str) -> Vec<&'a Value> {
    documents.iter().filter(|d| d["kind"] == kind).collect()
}

fn named<'a>(documents: &'a [Value], kind: &str, name: &str) -> &'a Value {
    of_kind(documents, kind)
        .into_iter()
        .find(|d| d["metadata"]["name"] == name)
        .unwrap_or_else(|| panic!("no {kind} {name} rendered"))
}

/// The arguments of the operator container.
fn operator_args(documents: &[Value]) -> Vec<String> {
    let deployment = of_kind(documents, "Deployment")[0];
    serde_json::from_value(deployment["spec"]["template"]["spec"]["containers"][0]["args"].clone()).unwrap()
}

/// `kollect run` accepts `args` and turns them into options.
fn assert_run_accepts(args: &[String]) {
    let cli = Cli::try_parse_from(std::iter::once("kollect".to_owned()).chain(args.iter().cloned()))
        .unwrap_or_else(|e| panic!("kollect {args:?}: {e}"));
    let Subcommand::Run(run) = cli.command else {
        panic!("the chart does not run `kollect run`: {args:?}");
    };
    run.into_options()
        .unwrap_or_else(|e| panic!("kollect {args:?}: {e}"));
}

/// Every rule of every Role and ClusterRole rendered.
fn rules(documents: &[Value]) -> Vec<&Value> {
    documents
        .iter()
        .filter(|d| d["kind"] == "Role" || d["kind"] == "ClusterRole")
        .flat_map(|d| d["rules"].as_array().into_iter().flatten())
        .collect()
}

fn strings(value: &Value) -> Vec<&str> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(Value::as_str)
        .collect()
}

/// Secrets are read one by one: no rendered rule lists or watches them.
fn assert_secrets_get_only(documents: &[Value]) {
    for rule in rules(documents) {
        if strings(&rule["resources"]).contains(&"secrets") {
            assert_eq!(strings(&rule["verbs"]), ["get"], "{rule}");
        }
    }
}

/// Applies `documents` with server-side dry-run: the API server validates each one (schema,
/// RBAC escalation rules, webhooks' shape) and stores nothing. Kinds the control plane does not
/// serve (cert-manager's, Prometheus Operator's) are returned instead.
async fn dry_run_apply(client: &kube::Client, documents: &[Value]) -> BTreeSet<String> {
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let mut unserved = BTreeSet::new();
    for document in documents {
        let (group, version) = match document["apiVersion"].as_str().unwrap().split_once('/') {
            Some((group, version)) => (group, version),
            None => ("", document["apiVersion"].as_str().unwrap()),
        };
        let kind = document["kind"].as_str().unwrap();
        let gvk = GroupVersionKind::gvk(group, version, kind);
        let Some((resource, capabilities)) = discovery.resolve_gvk(&gvk) else {
            unserved.insert(format!("{}/{kind}", document["apiVersion"].as_str().unwrap()));
            continue;
        };
        let name = document["metadata"]["name"].as_str().unwrap();
        let api: Api<DynamicObject> = match capabilities.scope {
            Scope::Namespaced => {
                let namespace = document["metadata"]["namespace"]
                    .as_str()
                    .unwrap_or(RELEASE_NAMESPACE);
                Api::namespaced_with(client.clone(), namespace, &resource)
            }
            Scope::Cluster => Api::all_with(client.clone(), &resource),
        };
        api.patch(
            name,
            &PatchParams::apply("chart-test").dry_run().force(),
            &Patch::Apply(document),
        )
        .await
        .unwrap_or_else(|e| panic!("dry-run apply of {kind} {name}: {e}"));
    }
    unserved
}

async fn create_namespaces(plane: &ControlPlane, names: &[&str]) {
    for name in names {
        plane
            .apply_yaml(
                &format!("apiVersion: v1\nkind: Namespace\nmetadata: {{name: {name}}}\n"),
                "default",
            )
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_chart_renders_objects_the_api_server_accepts_for_default_tenant_and_go_values() {
    let Some(helm_bin) = helm_binary() else {
        return;
    };
    let chart = chart_dir().display().to_string();
    let (tenant, go) = (fixture("tenant-values.yaml"), fixture("go-values.yaml"));
    for values in [None, Some(&tenant), Some(&go)] {
        let mut args = vec!["lint", "--strict", chart.as_str()];
        if let Some(values) = values {
            args.extend(["--values", values.as_str()]);
        }
        helm(&helm_bin, &args, None).unwrap_or_else(|e| panic!("helm lint {values:?}: {e}"));
    }
    let Some(plane) = ControlPlane::start_for_test().await else {
        return;
    };
    let client = plane.client().await.unwrap();
    create_namespaces(&plane, &[RELEASE_NAMESPACE, "team-a", "team-b"]).await;

    // Defaults: cluster-wide RBAC, two replicas under leader election, the hardened pod.
    let defaults = render(&helm_bin, &[]);
    assert_eq!(dry_run_apply(&client, &defaults).await, BTreeSet::new());
    let args = operator_args(&defaults);
    assert_run_accepts(&args);
    assert!(args.contains(&"--leader-elect".to_owned()), "{args:?}");
    let deployment = of_kind(&defaults, "Deployment")[0];
    assert_eq!(deployment["spec"]["replicas"], 2);
    let pod = &deployment["spec"]["template"]["spec"];
    let container = &pod["containers"][0];
    assert_eq!(pod["securityContext"]["runAsNonRoot"], true);
    assert_eq!(pod["securityContext"]["seccompProfile"]["type"], "RuntimeDefault");
    assert_eq!(container["securityContext"]["readOnlyRootFilesystem"], true);
    assert_eq!(container["securityContext"]["allowPrivilegeEscalation"], false);
    assert_eq!(
        container["securityContext"]["capabilities"]["drop"],
        json!(["ALL"])
    );
    assert_eq!(container["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(container["readinessProbe"]["httpGet"]["path"], "/readyz");
    assert_eq!(
        pod["topologySpreadConstraints"][0]["labelSelector"]["matchLabels"]["app.kubernetes.io/instance"],
        RELEASE
    );
    assert_eq!(of_kind(&defaults, "PodDisruptionBudget").len(), 1);
    assert_eq!(
        of_kind(&defaults, "Role").len(),
        1,
        "only the leader-election Role"
    );
    assert_secrets_get_only(&defaults);
    // No collect rules by default: what users collect is theirs to grant.
    assert!(
        of_kind(&defaults, "ClusterRole")
            .iter()
            .all(|role| role["metadata"]["name"] != "kollect-collect")
    );

    // The webhooks registered are exactly the ones the operator serves.
    let registered = named(&defaults, "ValidatingWebhookConfiguration", "kollect-validating");
    let expected = admission::configuration("kollect-validating", "Fail", |path| WebhookClientConfig {
        service: Some(k8s_openapi::api::admissionregistration::v1::ServiceReference {
            name: "kollect-webhook".into(),
            namespace: RELEASE_NAMESPACE.into(),
            path: Some(path),
            port: None,
        }),
        ..WebhookClientConfig::default()
    });
    let registered: ValidatingWebhookConfiguration = serde_json::from_value(registered.clone()).unwrap();
    let shape = |c: &ValidatingWebhookConfiguration| -> Vec<Value> {
        c.webhooks
            .iter()
            .flatten()
            .map(|w| {
                json!({
                    "name": w.name,
                    "path": w.client_config.service.as_ref().and_then(|s| s.path.clone()),
                    "service": w.client_config.service.as_ref().map(|s| (s.name.clone(), s.namespace.clone())),
                    "rules": w.rules,
                    "failurePolicy": w.failure_policy,
                    "sideEffects": w.side_effects,
                })
            })
            .collect()
    };
    assert_eq!(shape(&registered), shape(&expected));
    assert!(
        registered
            .webhooks
            .iter()
            .flatten()
            .all(|w| w.client_config.ca_bundle.is_some())
    );

    // Tenant mode: Roles in the watched namespaces, nothing cluster-wide that reads anything.
    let tenant_render = render(&helm_bin, &["--values", &tenant]);
    assert_eq!(dry_run_apply(&client, &tenant_render).await, BTreeSet::new());
    let args = operator_args(&tenant_render);
    assert_run_accepts(&args);
    assert!(args.contains(&"--tenant-mode".to_owned()));
    assert!(args.contains(&"--watch-namespaces=team-a,team-b".to_owned()));
    let cluster_roles: Vec<&Value> = of_kind(&tenant_render, "ClusterRole");
    assert_eq!(cluster_roles.len(), 1, "only the metrics reader role");
    assert_eq!(
        strings(&cluster_roles[0]["rules"][0]["nonResourceURLs"]),
        ["/metrics"]
    );
    let role_namespaces: BTreeSet<&str> = of_kind(&tenant_render, "Role")
        .iter()
        .filter(|r| r["metadata"]["name"] == "kollect-manager")
        .map(|r| r["metadata"]["namespace"].as_str().unwrap())
        .collect();
    assert_eq!(role_namespaces, BTreeSet::from(["team-a", "team-b"]));
    let team_a = of_kind(&tenant_render, "Role")
        .into_iter()
        .find(|r| r["metadata"]["namespace"] == "team-a")
        .unwrap();
    assert!(
        team_a["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| strings(&r["resources"]) == ["deployments"] && strings(&r["verbs"]) == ["list", "watch"]),
        "collect.rules land in the tenant Roles: {team_a}"
    );
    assert!(
        team_a["rules"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| !strings(&r["resources"])
                .iter()
                .any(|res| res.starts_with("kollectcluster"))),
        "no cluster kinds in tenant mode"
    );
    assert_secrets_get_only(&tenant_render);
    let policy = of_kind(&tenant_render, "NetworkPolicy")[0];
    let egress_cidrs: Vec<&str> = policy["spec"]["egress"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|rule| rule["to"].as_array().into_iter().flatten())
        .filter_map(|peer| peer["ipBlock"]["cidr"].as_str())
        .collect();
    assert_eq!(egress_cidrs, ["10.0.0.1/32", "10.20.0.0/16"]);

    // A Go-chart values file: every key accepted with its meaning.
    let go_render = render(&helm_bin, &["--values", &go]);
    assert_eq!(
        dry_run_apply(&client, &go_render).await,
        BTreeSet::from([
            "cert-manager.io/v1/Certificate".to_owned(),
            "cert-manager.io/v1/Issuer".to_owned(),
            "monitoring.coreos.com/v1/PrometheusRule".to_owned(),
            "monitoring.coreos.com/v1/ServiceMonitor".to_owned(),
        ])
    );
    let args = operator_args(&go_render);
    assert_run_accepts(&args);
    for expected in [
        "--leader-elect-lease-duration=30s",
        "--leader-elect-renew-deadline=20s",
        "--leader-elect-retry-period=4s",
        "--allow-private-sinks",
        "--default-excluded-namespaces=kube-system,kube-public",
        // resourcesProfile: largeCluster takes its controller settings over the controller block.
        "--max-concurrent-reconciles-target=10",
        "--collect-dispatch-queue-size=2048",
        "--informer-resync-period=6h",
        "--reconcile-rate-limit=2s",
        "--target-count-resync=2m",
    ] {
        assert!(args.contains(&expected.to_owned()), "{expected} in {args:?}");
    }
    let deployment = named(&go_render, "Deployment", "inventory");
    let container = &deployment["spec"]["template"]["spec"]["containers"][0];
    assert_eq!(container["image"], "registry.example.com/platform/kollect:0.1.0");
    assert_eq!(container["resources"]["requests"]["memory"], "2Gi");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["serviceAccountName"],
        "inventory-operator"
    );
    assert!(
        of_kind(&go_render, "PodDisruptionBudget").is_empty(),
        "one replica: no PDB"
    );
    assert!(
        of_kind(&go_render, "Secret").is_empty(),
        "cert-manager issues the certificate"
    );
    let webhooks = named(
        &go_render,
        "ValidatingWebhookConfiguration",
        "inventory-validating",
    );
    assert_eq!(
        webhooks["metadata"]["annotations"]["cert-manager.io/inject-ca-from"],
        "kollect-system/inventory-webhook"
    );
    let reader = named(&go_render, "ClusterRoleBinding", "inventory-metrics-reader");
    assert_eq!(reader["subjects"][1]["name"], "prometheus");

    // The permissions reference is generated from what the chart renders.
    let documented = render(
        &helm_bin,
        &[
            "--set-json",
            r#"collect.rules=[{"apiGroups":["apps"],"resources":["deployments"],"verbs":["list","watch"]}]"#,
        ],
    );
    kollect_testkit::golden::assert_golden(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/src/reference/permissions.md"),
        &permissions_reference(&documented, &tenant_render),
    );

    // The schema refuses what the chart does not know, naming the key.
    for (set, expected) in [
        ("bogus=1", "additional properties 'bogus' not allowed"),
        (
            "featureGates.inventoryHttp.enabled=true",
            "/featureGates/inventoryHttp/enabled",
        ),
        ("pprof.enabled=true", "/pprof/enabled"),
        ("mode=multi", "/mode"),
        ("webhooks.failurePolicy=Sometimes", "/webhooks/failurePolicy"),
        (
            "leaderElection.leaseDuration=soon",
            "/leaderElection/leaseDuration",
        ),
        ("tenantMode=true", "tenantMode: true needs watchNamespaces"),
        ("networkPolicy.enabled=true", "needs networkPolicy.apiServerCIDRs"),
        (
            "leaderElection.enabled=false",
            "replicaCount > 1 needs leaderElection.enabled",
        ),
    ] {
        let error = helm(
            &helm_bin,
            &[
                "template",
                RELEASE,
                &chart,
                "--namespace",
                RELEASE_NAMESPACE,
                "--set",
                set,
            ],
            None,
        )
        .expect_err(set);
        assert!(error.contains(expected), "--set {set}: {error}");
    }
}

/// Why the operator holds a rule, by what it grants.
fn why(rule: &Value) -> &'static str {
    let group = strings(&rule["apiGroups"]).first().copied().unwrap_or_default();
    let resources = strings(&rule["resources"]);
    let verbs = strings(&rule["verbs"]);
    let first = resources.first().copied().unwrap_or_default();
    match (group, first, verbs.as_slice()) {
        _ if !rule["nonResourceURLs"].is_null() => {
            "Scrapes the secure `/metrics` (bound to the operator and `metrics.readerRole.extraSubjects`)."
        }
        ("kollect.dev", _, ["get", "list", "watch"]) => {
            "Watches the Kollect objects it reconciles and validates."
        }
        ("kollect.dev", _, ["patch"]) => {
            "Keeps its finalizers on targets and inventories, clears probe requests on sinks and connection tests, writes their status."
        }
        ("kollect.dev", _, ["delete"]) => {
            "Deletes connection tests once their result has been kept long enough."
        }
        ("", "secrets", _) => {
            "Reads the Secrets sinks name, one at a time when it needs them; never lists or watches them."
        }
        ("events.k8s.io", _, _) => "Records Events on the objects it reconciles.",
        ("", "namespaces", _) => "Reads namespace labels for targets' `namespaceSelector`.",
        ("coordination.k8s.io", _, _) => "Holds the leader Lease, which the chart creates.",
        _ => "Granted by `collect.rules`: reads the kinds profiles collect.",
    }
}

fn rule_row(rule: &Value) -> String {
    let list = |key: &str| {
        let items = strings(&rule[key]);
        if items.is_empty() {
            "–".to_owned()
        } else {
            items
                .iter()
                .map(|i| {
                    if i.is_empty() {
                        "`\"\"`".to_owned()
                    } else {
                        format!("`{i}`")
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let resources = if rule["nonResourceURLs"].is_null() {
        list("resources")
    } else {
        list("nonResourceURLs")
    };
    let names = if rule["resourceNames"].is_null() {
        String::new()
    } else {
        format!(" (only {})", list("resourceNames"))
    };
    format!(
        "| {} | {resources}{names} | {} | {} |\n",
        list("apiGroups"),
        list("verbs"),
        why(rule)
    )
}

fn role_section(out: &mut String, title: &str, role: &Value) {
    out.push_str(&format!(
        "\n### {title}\n\n| API groups | Resources | Verbs | Why |\n|---|---|---|---|\n"
    ));
    for rule in role["rules"].as_array().into_iter().flatten() {
        out.push_str(&rule_row(rule));
    }
}

/// `docs/src/reference/permissions.md`: every rule the chart grants, cluster-wide and in tenant
/// mode, with the reason the operator needs it.
fn permissions_reference(cluster: &[Value], tenant: &[Value]) -> String {
    let mut out = String::from(
        "# Permissions\n\n\
         Every permission the Helm chart grants the operator's ServiceAccount, and why. This page is\n\
         generated from the chart by its test (`kollect-operator/tests/integration/chart.rs`; rerun it with\n\
         `KOLLECT_UPDATE_GOLDEN=1` after changing a Role). The chart test also runs the operator with\n\
         exactly these permissions through a first inventory.\n\n\
         Collection needs `list` and `watch` on each collected kind. Those rules are yours to grant,\n\
         in `collect.rules`; the tables show them for a values file collecting Deployments.\n\n\
         ## Cluster-wide (the default)\n",
    );
    for (title, kind, name) in [
        ("ClusterRole `kollect-manager`", "ClusterRole", "kollect-manager"),
        (
            "ClusterRole `kollect-collect` (from `collect.rules`)",
            "ClusterRole",
            "kollect-collect",
        ),
        (
            "Role `kollect-leader-election` (release namespace)",
            "Role",
            "kollect-leader-election",
        ),
        (
            "ClusterRole `kollect-metrics-reader`",
            "ClusterRole",
            "kollect-metrics-reader",
        ),
    ] {
        role_section(&mut out, title, named(cluster, kind, name));
    }
    let delegator = named(cluster, "ClusterRoleBinding", "kollect-auth-delegator");
    out.push_str(&format!(
        "\n### ClusterRoleBinding `kollect-auth-delegator`\n\n\
         Binds the built-in ClusterRole `{}` (`create` on `tokenreviews` and\n\
         `subjectaccessreviews`): a secure `/metrics` asks the API server who a scraper is and whether\n\
         it may read `/metrics`. Rendered only with `metrics.enabled` and `metrics.secure`, in tenant\n\
         mode too; it grants no read access.\n",
        delegator["roleRef"]["name"].as_str().unwrap_or_default()
    ));
    out.push_str(
        "\n## Tenant mode\n\n\
         With `tenantMode: true` nothing cluster-wide reads anything: each namespace in\n\
         `watchNamespaces` gets this Role (with `collect.rules` appended), and the leader-election\n\
         Role, metrics reader and auth-delegator binding stay as above.\n",
    );
    let role = of_kind(tenant, "Role")
        .into_iter()
        .find(|r| r["metadata"]["name"] == "kollect-manager")
        .expect("a tenant Role");
    role_section(&mut out, "Role `kollect-manager` (each watched namespace)", role);
    out
}

/// The first non-loopback address of this machine: the API server must dial the webhook at an
/// EndpointSlice address, and those may not be loopback.
fn host_address() -> IpAddr {
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").unwrap();
    // No packet is sent: connecting a UDP socket only picks the outgoing interface.
    socket
        .connect("203.0.113.1:9")
        .expect("this test needs a network interface with a route beyond loopback");
    let address = socket.local_addr().unwrap().ip();
    assert!(
        !address.is_loopback(),
        "this test needs a non-loopback address, found {address}"
    );
    address
}

/// Routes the chart's webhook Service to `address:port`, as the endpoint controller would for a
/// pod there.
async fn route_webhook_service(client: &kube::Client, address: IpAddr, port: u16) {
    let slice: EndpointSlice = serde_json::from_value(json!({
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "kollect-webhook-local",
            "labels": {"kubernetes.io/service-name": "kollect-webhook"},
        },
        "addressType": if address.is_ipv4() { "IPv4" } else { "IPv6" },
        "endpoints": [{"addresses": [address.to_string()], "conditions": {"ready": true}}],
        "ports": [{"name": "webhook", "port": port, "protocol": "TCP"}],
    }))
    .unwrap();
    Api::<EndpointSlice>::namespaced(client.clone(), RELEASE_NAMESPACE)
        .create(&PostParams::default(), &slice)
        .await
        .unwrap();
}

/// The operator binary, started with the chart's arguments (listening addresses replaced by
/// free local ones) as the chart's ServiceAccount.
struct Operator {
    child: Child,
    metrics: String,
}

impl Operator {
    fn start(args: &[String], kubeconfig: &Path, cert_dir: &Path, webhook: (IpAddr, u16)) -> Self {
        let free = || kollect_testkit::control_plane::free_port().unwrap();
        let (health, metrics) = (free(), free());
        let replaced = [
            "--health-probe-bind-address=",
            "--metrics-bind-address=",
            "--webhook-cert-path=",
            "--log-format=",
        ];
        let mut args: Vec<String> = args
            .iter()
            .filter(|a| !replaced.iter().any(|prefix| a.starts_with(prefix)))
            .cloned()
            .collect();
        args.extend([
            format!("--health-probe-bind-address=127.0.0.1:{health}"),
            format!("--metrics-bind-address=127.0.0.1:{metrics}"),
            format!(
                "--webhook-bind-address={}",
                std::net::SocketAddr::new(webhook.0, webhook.1)
            ),
            format!("--webhook-cert-path={}", cert_dir.display()),
            "--log-format=text".into(),
        ]);
        let child = Command::new(env!("CARGO_BIN_EXE_kollect"))
            .args(&args)
            .env("KUBECONFIG", kubeconfig)
            .env("POD_NAMESPACE", RELEASE_NAMESPACE)
            .env("POD_NAME", "kollect-chart-test")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        Self {
            child,
            metrics: format!("https://127.0.0.1:{metrics}/metrics"),
        }
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn eventually<T, F, Fut>(what: &str, check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    eventually_or(what, check, String::new).await
}

/// Like [`eventually`], with `describe` saying what was seen last when it times out.
async fn eventually_or<T, F, Fut>(what: &str, mut check: F, describe: impl Fn() -> String) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting until {what}\n{}",
            describe()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

fn condition<'a>(
    conditions: &'a [k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition],
    type_: &str,
) -> Option<&'a k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition> {
    conditions.iter().find(|c| c.type_ == type_)
}

/// A profile of Deployments (their first image) and a target of it.
const DEPLOYMENTS_TARGET: &str = "apiVersion: kollect.dev/v1alpha1
kind: KollectProfile
metadata: {name: deployments}
spec:
  targetGVK: {group: apps, version: v1, kind: Deployment}
  attributes: [{name: image, path: '$.spec.template.spec.containers[0].image'}]
---
apiVersion: kollect.dev/v1alpha1
kind: KollectTarget
metadata: {name: deployments}
spec: {profileRef: deployments}
";

/// [`DEPLOYMENTS_TARGET`] exported to a Git repository of `git`.
fn pipeline(git: &GitServer, repo_url: &str) -> String {
    format!(
        "{DEPLOYMENTS_TARGET}---
{sink}---
apiVersion: kollect.dev/v1alpha1
kind: KollectInventory
metadata: {{name: first-inventory}}
spec:
  snapshotSinkRefs: [{{name: inventory-git}}]
",
        sink = git.snapshot_sink_yaml("inventory-git", repo_url),
    )
}

const DEPLOYMENT: &str = "apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec: {containers: [{name: main, image: 'nginx:1.27'}]}
";

/// Everything labelled as the release's, of the kinds the chart renders.
async fn release_objects(client: &kube::Client) -> Vec<String> {
    let selector = ListParams::default().labels(&format!("app.kubernetes.io/instance={RELEASE}"));
    let discovery = Discovery::new(client.clone()).run().await.unwrap();
    let mut found = Vec::new();
    for (group, version, kind) in [
        ("apps", "v1", "Deployment"),
        ("", "v1", "ServiceAccount"),
        ("", "v1", "Service"),
        ("", "v1", "Secret"),
        ("coordination.k8s.io", "v1", "Lease"),
        ("policy", "v1", "PodDisruptionBudget"),
        ("rbac.authorization.k8s.io", "v1", "Role"),
        ("rbac.authorization.k8s.io", "v1", "RoleBinding"),
        ("rbac.authorization.k8s.io", "v1", "ClusterRole"),
        ("rbac.authorization.k8s.io", "v1", "ClusterRoleBinding"),
        (
            "admissionregistration.k8s.io",
            "v1",
            "ValidatingWebhookConfiguration",
        ),
    ] {
        let (resource, _): (ApiResource, _) = discovery
            .resolve_gvk(&GroupVersionKind::gvk(group, version, kind))
            .unwrap();
        let api: Api<DynamicObject> = Api::all_with(client.clone(), &resource);
        for object in api.list(&selector).await.unwrap() {
            found.push(format!("{kind}/{}", object.metadata.name.unwrap_or_default()));
        }
    }
    found
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn helm_install_runs_the_operator_with_exactly_the_charts_permissions() {
    let Some(helm_bin) = helm_binary() else {
        return;
    };
    let Some(plane) = ControlPlane::start_for_test().await else {
        return;
    };
    let address = host_address();
    let Some(git) = kollect_testkit::backends::start_for_test(|| {
        GitServer::start_on(address, "inventory-bot", "s3cret-token")
    }) else {
        return;
    };
    let admin = plane.client().await.unwrap();
    let kubeconfig = plane.kubeconfig_path().to_owned();
    let chart = chart_dir().display().to_string();
    let values = std::env::temp_dir().join(format!("kollect-chart-values-{}.yaml", std::process::id()));
    // The Git server listens on this machine's address, which may be in a private range.
    std::fs::write(
        &values,
        "allowPrivateSinks: true\ncollect:\n  rules:\n    - apiGroups: [apps]\n      resources: [deployments]\n      verbs: [list, watch]\n",
    )
    .unwrap();
    let values = values.display().to_string();
    helm(
        &helm_bin,
        &[
            "install",
            RELEASE,
            &chart,
            "--namespace",
            RELEASE_NAMESPACE,
            "--create-namespace",
            "--values",
            &values,
        ],
        Some(&kubeconfig),
    )
    .unwrap_or_else(|e| panic!("helm install: {e}"));
    let installed = release_objects(&admin).await;
    for expected in [
        "Deployment/kollect",
        "ServiceAccount/kollect",
        "Service/kollect-webhook",
        "Service/kollect-metrics",
        "Secret/webhook-server-cert",
        "Lease/3274ac8a.kollect.dev",
        "ClusterRole/kollect-manager",
        "ClusterRole/kollect-collect",
        "ValidatingWebhookConfiguration/kollect-validating",
    ] {
        assert!(
            installed.contains(&expected.to_owned()),
            "{expected} in {installed:?}"
        );
    }

    // The operator runs as the chart's ServiceAccount, with the chart's arguments and the
    // chart's webhook certificate; the API server reaches its webhooks through the chart's
    // Service and CA bundle.
    let deployment: Value = serde_json::to_value(
        Api::<k8s_openapi::api::apps::v1::Deployment>::namespaced(admin.clone(), RELEASE_NAMESPACE)
            .get("kollect")
            .await
            .unwrap(),
    )
    .unwrap();
    let args: Vec<String> =
        serde_json::from_value(deployment["spec"]["template"]["spec"]["containers"][0]["args"].clone())
            .unwrap();
    let cert = Api::<Secret>::namespaced(admin.clone(), RELEASE_NAMESPACE)
        .get("webhook-server-cert")
        .await
        .unwrap();
    let cert_dir = tempfile::tempdir().unwrap();
    for file in ["tls.crt", "tls.key"] {
        let data = cert.data.as_ref().and_then(|d| d.get(file)).unwrap();
        std::fs::write(cert_dir.path().join(file), &data.0).unwrap();
    }
    let webhook_port = kollect_testkit::control_plane::free_port().unwrap();
    route_webhook_service(&admin, address, webhook_port).await;
    let operator_kubeconfig = plane
        .service_account_kubeconfig(RELEASE_NAMESPACE, "kollect")
        .await
        .unwrap();
    let operator = Operator::start(
        &args,
        &operator_kubeconfig,
        cert_dir.path(),
        (address, webhook_port),
    );

    let ns = plane.create_namespace("team").await.unwrap();
    // Admission answers through the chart's webhook configuration: an invalid profile is
    // refused by the operator's rules (not by the API server failing to call the webhook).
    let refused = eventually("the webhook answers", || async {
        let error = plane
            .apply_yaml(
                "apiVersion: kollect.dev/v1alpha1\nkind: KollectProfile\nmetadata: {name: broken}\nspec:\n  targetGVK: {version: v1, kind: ConfigMap}\n  attributes: [{name: x, path: 'cel:frobnicate('}]\n",
                &ns,
            )
            .await
            .expect_err("an invalid profile is refused")
            .to_string();
        (!error.contains("failed calling webhook")).then_some(error)
    })
    .await;
    assert!(refused.contains("denied the request"), "{refused}");

    plane.apply_yaml(DEPLOYMENT, &ns).await.unwrap();
    let repo_url = git.create_repo("inventory").unwrap();
    plane.apply_yaml(&pipeline(&git, &repo_url), &ns).await.unwrap();
    let inventories: Api<KollectInventory> = Api::namespaced(admin.clone(), &ns);
    let targets: Api<KollectTarget> = Api::namespaced(admin.clone(), &ns);
    let last = std::sync::Mutex::new(String::new());
    // The target names no namespaces, so it collects everywhere: `web` and the chart's own
    // Deployment.
    let ready = eventually_or(
        "the first inventory is exported with both Deployments",
        || async {
            let inventory = inventories.get("first-inventory").await.ok()?;
            let target = targets.get("deployments").await.ok();
            *last.lock().unwrap() = format!(
                "inventory status: {:?}\ntarget status: {:?}",
                inventory.status,
                target.and_then(|t| t.status)
            );
            let status = inventory.status?;
            condition(&status.conditions, "Ready")
                .filter(|c| c.status == "True" && status.item_count == Some(2))
                .cloned()
        },
        || last.lock().unwrap().clone(),
    )
    .await;
    assert_eq!(ready.reason, "Exported", "{ready:?}");
    let document = Command::new("git")
        .arg("--git-dir")
        .arg(git.repo_path("inventory"))
        .args(["show", &format!("main:inventory/{ns}/first-inventory.yaml")])
        .output()
        .unwrap();
    assert!(
        document.status.success(),
        "{}",
        String::from_utf8_lossy(&document.stderr)
    );
    let document = String::from_utf8_lossy(&document.stdout);
    assert!(
        document.contains("nginx:1.27") && document.contains("kollect:0.1.0"),
        "{document}"
    );

    // The metrics reader binding lets the operator's own account scrape the secure endpoint.
    let token = plane
        .service_account_token(RELEASE_NAMESPACE, "kollect")
        .await
        .unwrap();
    let _ = rustls::crypto::ring::default_provider().install_default();
    // The metrics certificate is self-signed: this checks who may scrape, not the certificate.
    let http = reqwest::Client::builder()
        .danger_accept_invalid_certs(true)
        .build()
        .unwrap();
    let response = http
        .get(&operator.metrics)
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response
            .text()
            .await
            .unwrap()
            .contains("kollect_leader_is_leader 1")
    );

    // Take the collect permission away: a new target of the kind says exactly what is missing.
    helm(
        &helm_bin,
        &[
            "upgrade",
            RELEASE,
            &chart,
            "--namespace",
            RELEASE_NAMESPACE,
            "--values",
            &values,
            "--set-json",
            "collect.rules=[]",
        ],
        Some(&kubeconfig),
    )
    .unwrap_or_else(|e| panic!("helm upgrade: {e}"));
    let denied_ns = plane.create_namespace("denied").await.unwrap();
    plane.apply_yaml(DEPLOYMENT, &denied_ns).await.unwrap();
    plane.apply_yaml(DEPLOYMENTS_TARGET, &denied_ns).await.unwrap();
    let denied_targets: Api<KollectTarget> = Api::namespaced(admin.clone(), &denied_ns);
    let synced = eventually("the target reports the missing permission", || async {
        let status = denied_targets.get("deployments").await.ok()?.status?;
        condition(&status.conditions, "Synced")
            .filter(|c| c.reason == "ScopeForbidden")
            .cloned()
    })
    .await;
    assert!(
        // The API server names the verb it refused: `watch` for a streaming list, `list` for
        // pages.
        synced.message.contains("deployments")
            && (synced.message.contains("watch") || synced.message.contains("list")),
        "{synced:?}"
    );
    drop(operator);

    // Uninstall removes every object the chart created; Kollect objects and CRDs stay.
    Api::<EndpointSlice>::namespaced(admin.clone(), RELEASE_NAMESPACE)
        .delete("kollect-webhook-local", &Default::default())
        .await
        .unwrap();
    helm(
        &helm_bin,
        &["uninstall", RELEASE, "--namespace", RELEASE_NAMESPACE],
        Some(&kubeconfig),
    )
    .unwrap_or_else(|e| panic!("helm uninstall: {e}"));
    let left = release_objects(&admin).await;
    assert_eq!(left, Vec::<String>::new());
    assert!(inventories.get("first-inventory").await.is_ok());
}
