//! The local control plane: a real kube-apiserver and etcd with every Kollect CRD installed.

// Test helpers may panic on broken fixtures: that is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::time::Duration;

use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Secret};
use k8s_openapi::api::rbac::v1::PolicyRule;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kollect_testkit::ControlPlane;
use kube::api::{Api, DynamicObject, ListParams, PostParams};
use kube::runtime::watcher;
use serde_json::{Value, json};

fn samples_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../kollect-operator/tests/fixtures/samples")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn crds_are_established_samples_apply_and_schema_rules_reject() {
    let Some(plane) = ControlPlane::start_for_test().await else {
        return;
    };
    let client = plane.client().await.unwrap();

    // Every generated CRD was accepted and is Established.
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let names: Vec<String> = crds
        .list(&ListParams::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter_map(|c| c.metadata.name)
        .collect();
    assert_eq!(
        names.iter().filter(|n| n.ends_with(".kollect.dev")).count(),
        11,
        "{names:?}"
    );

    // The reference sample pipelines apply cleanly.
    for ns in ["team-a", "kollect-system"] {
        let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
        let namespace = serde_json::from_value(json!({"metadata": {"name": ns}})).unwrap();
        api.create(&PostParams::default(), &namespace).await.unwrap();
    }
    for entry in std::fs::read_dir(samples_dir()).unwrap() {
        let path = entry.unwrap().path();
        let yaml = std::fs::read_to_string(&path).unwrap();
        plane
            .apply_yaml(&yaml, "default")
            .await
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    }

    // `kubectl get ktgt` shows the printer columns.
    let table: Value = serde_json::from_str(
        &client
            .request_text(
                http::Request::get("/apis/kollect.dev/v1alpha1/namespaces/default/kollecttargets")
                    .header("Accept", "application/json;as=Table;v=v1;g=meta.k8s.io")
                    .body(Vec::new())
                    .unwrap(),
            )
            .await
            .unwrap(),
    )
    .unwrap();
    let columns: Vec<&str> = table["columnDefinitions"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(columns, ["Name", "Collected", "Updated", "Age"]);
    assert_eq!(table["rows"][0]["cells"][0], "shop-deployments");

    // Rules carried by the schema reject invalid objects on a plain API server.
    let inventories: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "default",
        &ControlPlane::kollect_resource("KollectInventory", "kollectinventories"),
    );
    let invalid: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "kollect.dev/v1alpha1", "kind": "KollectInventory",
        "metadata": {"name": "too-slow"},
        "spec": {"exportMinInterval": "25h", "snapshotSinkRefs": [{"name": "a/b"}]}
    }))
    .unwrap();
    let error = inventories
        .create(&PostParams::default(), &invalid)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("must be a Go duration between 0s and 24h"),
        "{error}"
    );
    assert!(error.contains("not namespace/name"), "{error}");
    let sinks: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "default",
        &ControlPlane::kollect_resource("KollectDatabaseSink", "kollectdatabasesinks"),
    );
    let no_block: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "kollect.dev/v1alpha1", "kind": "KollectDatabaseSink",
        "metadata": {"name": "pg"}, "spec": {"type": "postgres"}
    }))
    .unwrap();
    let error = sinks
        .create(&PostParams::default(), &no_block)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        error.contains("spec.postgres is required for type postgres"),
        "{error}"
    );

    let cluster_targets: Api<DynamicObject> = Api::all_with(
        client.clone(),
        &ControlPlane::kollect_resource("KollectClusterTarget", "kollectclustertargets"),
    );
    let bad_namespace: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "kollect.dev/v1alpha1", "kind": "KollectClusterTarget", "metadata": {"name": "bad"},
        "spec": {"profileRef": {"name": "p", "namespace": "Not_A_Label"}, "namespaceSelector": {}}
    }))
    .unwrap();
    let error = cluster_targets
        .create(&PostParams::default(), &bad_namespace)
        .await
        .unwrap_err()
        .to_string();
    assert!(error.contains("spec.profileRef.namespace"), "{error}");
    assert!(
        error.contains("at least one matchLabels entry or matchExpression"),
        "{error}"
    );

    // Defaults are applied by the API server.
    let stored = inventories.get("demo-inventory").await.unwrap();
    assert_eq!(stored.data["spec"]["exportMinInterval"], "15s");
    let targets: Api<DynamicObject> = Api::namespaced_with(
        client,
        "default",
        &ControlPlane::kollect_resource("KollectTarget", "kollecttargets"),
    );
    assert_eq!(
        targets.get("shop-deployments").await.unwrap().data["spec"]["watchMode"],
        "All"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limited_clients_are_forbidden_outside_their_rules() {
    let Some(plane) = ControlPlane::start_for_test().await else {
        return;
    };
    let ns = plane.create_namespace("rbac").await.unwrap();
    let rules = vec![PolicyRule {
        api_groups: Some(vec![String::new()]),
        resources: Some(vec!["configmaps".into()]),
        verbs: vec!["get".into(), "list".into()],
        ..Default::default()
    }];
    let limited = plane.limited_client(&ns, "reader", rules).await.unwrap();
    Api::<ConfigMap>::namespaced(limited.clone(), &ns)
        .list(&ListParams::default())
        .await
        .unwrap();
    let error = Api::<Secret>::namespaced(limited, &ns)
        .list(&ListParams::default())
        .await
        .unwrap_err();
    match error {
        kube::Error::Api(status) => assert_eq!(status.code, 403, "{status:?}"),
        other => panic!("expected 403, got {other}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paginated_count_follows_every_continue_token() {
    let Some(plane) = ControlPlane::start_for_test().await else {
        return;
    };
    let ns = plane.create_namespace("pages").await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(plane.client().await.unwrap(), &ns);
    for i in 0..7 {
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": format!("cm-{i}")}})).unwrap();
        api.create(&PostParams::default(), &cm).await.unwrap();
    }
    // Pages of 3: two full pages and a last one of 1 (the namespace's root CA ConfigMap is not
    // published without a controller manager).
    let count = kollect_testkit::control_plane::count_paginated(&api, 3)
        .await
        .unwrap();
    assert_eq!(count, api.list(&ListParams::default()).await.unwrap().items.len());
    assert_eq!(count, 7);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_streamed_count_ends_at_the_bookmark_after_the_current_objects() {
    let Some(plane) = ControlPlane::start_for_test().await else {
        return;
    };
    let ns = plane.create_namespace("stream").await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(plane.client().await.unwrap(), &ns);
    assert_eq!(
        kollect_testkit::control_plane::count_streamed(&api)
            .await
            .unwrap(),
        0
    );
    for i in 0..5 {
        let cm: ConfigMap = serde_json::from_value(json!({"metadata": {"name": format!("cm-{i}")}})).unwrap();
        api.create(&PostParams::default(), &cm).await.unwrap();
    }
    assert_eq!(
        kollect_testkit::control_plane::count_streamed(&api)
            .await
            .unwrap(),
        5
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watch_resumes_after_the_api_server_restarts() {
    let Some(mut plane) = ControlPlane::start_for_test().await else {
        return;
    };
    let ns = plane.create_namespace("outage").await.unwrap();
    let client = plane.client().await.unwrap();
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let cm =
        |name: &str| -> ConfigMap { serde_json::from_value(json!({"metadata": {"name": name}})).unwrap() };
    api.create(&PostParams::default(), &cm("before")).await.unwrap();

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let stream = watcher(api.clone(), watcher::Config::default());
    let task = tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            if let Ok(watcher::Event::Apply(object) | watcher::Event::InitApply(object)) = event {
                let _ = tx.send(object.metadata.name.unwrap_or_default());
            }
        }
    });
    let first = tokio::time::timeout(Duration::from_secs(30), rx.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(first, "before");

    plane.stop_apiserver();
    tokio::time::sleep(Duration::from_secs(2)).await;
    plane.start_apiserver().await.unwrap();
    Api::<ConfigMap>::namespaced(plane.client().await.unwrap(), &ns)
        .create(&PostParams::default(), &cm("after"))
        .await
        .unwrap();

    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let name = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("watch did not resume")
            .unwrap();
        if name == "after" {
            break;
        }
    }
    task.abort();
}

/// A `kubectl get -o json` dump of another cluster applies as it is: its `List` is unpacked, the
/// namespace goes first, and the fields that cluster set (uid, resourceVersion, a Service's cluster
/// IP and node port) are left for this one to set.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dumps_of_another_cluster_apply_with_the_fields_it_set_dropped() {
    let Some(plane) = ControlPlane::start_for_test().await else {
        return;
    };
    let dump = json!({
        "apiVersion": "v1", "kind": "List", "metadata": { "resourceVersion": "" },
        "items": [
            {
                "apiVersion": "v1", "kind": "ConfigMap",
                "metadata": { "name": "settings", "namespace": "dumped", "uid": "0b7c9c1e-0000-4000-8000-000000000001",
                              "resourceVersion": "9876543", "creationTimestamp": "2026-11-02T09:14:07Z" },
                "data": { "mode": "fast" }
            },
            {
                "apiVersion": "v1", "kind": "Service",
                "metadata": { "name": "web", "namespace": "dumped", "uid": "0b7c9c1e-0000-4000-8000-000000000002" },
                "spec": { "type": "NodePort", "clusterIP": "172.31.250.9", "clusterIPs": ["172.31.250.9"],
                          "ports": [{ "port": 80, "targetPort": 8080, "nodePort": 39999 }] },
                "status": { "loadBalancer": {} }
            },
            {
                "apiVersion": "v1", "kind": "Namespace",
                "metadata": { "name": "dumped", "uid": "0b7c9c1e-0000-4000-8000-000000000003" }
            }
        ]
    });
    plane.apply_yaml(&dump.to_string(), "default").await.unwrap();

    let client = plane.client().await.unwrap();
    let settings = Api::<ConfigMap>::namespaced(client.clone(), "dumped")
        .get("settings")
        .await
        .unwrap();
    assert_eq!(settings.data.unwrap()["mode"], "fast");
    assert_ne!(
        settings.metadata.uid.as_deref(),
        Some("0b7c9c1e-0000-4000-8000-000000000001")
    );
    let service = Api::<k8s_openapi::api::core::v1::Service>::namespaced(client, "dumped")
        .get("web")
        .await
        .unwrap();
    let spec = service.spec.unwrap();
    let cluster_ip = spec.cluster_ip.unwrap();
    assert!(
        !cluster_ip.is_empty() && cluster_ip != "172.31.250.9",
        "{cluster_ip}"
    );
    let node_port = spec.ports.unwrap()[0].node_port.unwrap();
    assert_ne!(
        node_port, 39999,
        "a node port of this cluster's range is allocated"
    );
}
