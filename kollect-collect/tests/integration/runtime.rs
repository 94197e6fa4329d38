//! The collection runtime against a real kube-apiserver + etcd (kollect-testkit).

// Test helpers may panic on broken fixtures: that is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use k8s_openapi::api::rbac::v1::PolicyRule;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use kollect_collect::extract::{CompiledProfile, ExtractOptions};
use kollect_collect::runtime::{Partition, Runtime, RuntimeConfig, TargetRegistration};
use kollect_collect::select::{NamespaceDefaults, TargetFilter};
use kollect_core::api::keys;
use kollect_core::api::v1alpha1::{
    AttributeSpec, CollectionFilter, GroupVersionKind, KollectProfileSpec, KollectTargetSpec, ResourceRule,
    WatchMode,
};
use kollect_core::collect::RowOwner;
use kollect_testkit::ControlPlane;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use serde_json::{Value, json};

/// One control plane shared by the tests of this binary (each test works in its own namespaces);
/// started on its own thread because the tests' runtimes cannot block on another runtime.
fn plane() -> Option<&'static ControlPlane> {
    static PLANE: OnceLock<Option<ControlPlane>> = OnceLock::new();
    PLANE
        .get_or_init(|| {
            std::thread::spawn(|| {
                tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap()
                    .block_on(ControlPlane::start_for_test())
            })
            .join()
            .unwrap()
        })
        .as_ref()
}

fn config() -> RuntimeConfig {
    RuntimeConfig {
        settle: Duration::from_millis(50),
        rediscovery_interval: Duration::from_millis(300),
        ..RuntimeConfig::default()
    }
}

fn configmap_profile() -> KollectProfileSpec {
    KollectProfileSpec {
        target_gvk: GroupVersionKind::new("", "v1", "ConfigMap"),
        attributes: vec![
            AttributeSpec::new("color", "$.data.color"),
            AttributeSpec::new("size", "cel:size(object.data)"),
        ],
        ..Default::default()
    }
}

fn registration(
    owner: RowOwner,
    profile: &KollectProfileSpec,
    target: &KollectTargetSpec,
) -> TargetRegistration {
    TargetRegistration {
        owner,
        profile_name: "configmaps".into(),
        gvk: profile.target_gvk.clone(),
        profile: Arc::new(CompiledProfile::compile(profile, &ExtractOptions::default())),
        filter: TargetFilter::compile(
            target.into(),
            &NamespaceDefaults::default(),
            None,
            &Default::default(),
        )
        .unwrap(),
        fingerprint: "1".into(),
    }
}

fn included(namespaces: &[&str]) -> KollectTargetSpec {
    KollectTargetSpec {
        profile_ref: "configmaps".into(),
        filter: CollectionFilter {
            included_namespaces: namespaces.iter().map(|s| (*s).to_owned()).collect(),
            ..Default::default()
        },
        ..Default::default()
    }
}

fn cm(name: &str, labels: &[(&str, &str)], color: &str) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels.iter().cloned().collect::<BTreeMap<_, _>>()},
        "data": {"color": color},
    }))
    .unwrap()
}

/// `name -> color` of the rows in `namespace`'s partition.
fn rows(runtime: &Runtime, namespace: &str) -> BTreeMap<String, Value> {
    runtime
        .store()
        .snapshot(&Partition::Namespace(namespace.to_owned()))
        .snapshot
        .rows()
        .iter()
        .map(|row| {
            let color = row.attributes().unwrap()["color"].clone();
            (format!("{}/{}", row.namespace(), row.name()), color)
        })
        .collect()
}

/// Waits (generously: machines are shared) until `check` holds; panics with `what` otherwise.
async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while !check() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for: {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Sets the `color` of ConfigMap `name`.
async fn set_color(cms: &Api<ConfigMap>, name: &str, color: &str) {
    cms.patch(
        name,
        &PatchParams::default(),
        &Patch::Merge(json!({"data": {"color": color}})),
    )
    .await
    .unwrap();
}

fn expect(pairs: &[(&str, &str)]) -> BTreeMap<String, Value> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_update_delete_moves_rows() {
    let Some(plane) = plane() else { return };
    let client = plane.client().await.unwrap();
    let ns = plane.create_namespace("rows").await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    cms.create(&PostParams::default(), &cm("a", &[], "red"))
        .await
        .unwrap();

    let runtime = Runtime::start(client.clone(), config());
    let owner = RowOwner::target(&ns, "configmaps");
    runtime.register(registration(
        owner.clone(),
        &configmap_profile(),
        &included(&[&ns]),
    ));
    eventually("initial list", || {
        rows(&runtime, &ns) == expect(&[(&format!("{ns}/a"), "red")])
    })
    .await;
    let row = runtime
        .store()
        .snapshot(&Partition::Namespace(ns.clone()))
        .snapshot
        .rows()[0]
        .clone();
    assert_eq!(row.target_namespace(), ns);
    assert_eq!(row.target_name(), "configmaps");
    assert_eq!((row.group(), row.version(), row.kind()), ("", "v1", "ConfigMap"));
    assert_eq!(row.attributes().unwrap()["size"], 1);

    cms.create(&PostParams::default(), &cm("b", &[], "blue"))
        .await
        .unwrap();
    set_color(&cms, "a", "green").await;
    eventually("create and update", || {
        rows(&runtime, &ns) == expect(&[(&format!("{ns}/a"), "green"), (&format!("{ns}/b"), "blue")])
    })
    .await;
    cms.delete("a", &DeleteParams::default()).await.unwrap();
    eventually("delete", || {
        rows(&runtime, &ns) == expect(&[(&format!("{ns}/b"), "blue")])
    })
    .await;
    let report = runtime.report(&owner).unwrap();
    assert_eq!(report.rows, 1);
    assert!(report.synced);
    assert!(report.extraction_failures.is_empty());

    // The API server (Kubernetes 1.37) streams lists, and the runtime used that.
    assert!(runtime.streams_lists());

    // Unregistering removes the target's rows.
    runtime.unregister(&owner);
    assert!(rows(&runtime, &ns).is_empty());
    assert_eq!(runtime.watch_count(), 0);
}

/// An API server without streaming lists refuses the watch that asks for them; the runtime
/// lists it in pages from then on and collects the same rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_api_server_without_streaming_lists_is_listed_in_pages() {
    let Some(plane) =
        ControlPlane::start_for_test_with_apiserver_flags(&["--feature-gates=WatchList=false"]).await
    else {
        return;
    };
    let client = plane.client().await.unwrap();
    let ns = plane.create_namespace("pages").await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    for (name, color) in [("a", "red"), ("b", "blue")] {
        cms.create(&PostParams::default(), &cm(name, &[], color))
            .await
            .unwrap();
    }
    let refused = cms
        .watch(&kube::api::WatchParams::streaming_lists(), "0")
        .await
        .err()
        .expect("this API server refuses streaming lists");
    assert!(
        matches!(&refused, kube::Error::Api(status) if status.code == 422),
        "{refused}"
    );

    let runtime = Runtime::start(
        client.clone(),
        RuntimeConfig {
            page_size: 1,
            ..config()
        },
    );
    assert!(runtime.streams_lists());
    let owner = RowOwner::target(&ns, "configmaps");
    runtime.register(registration(
        owner.clone(),
        &configmap_profile(),
        &included(&[&ns]),
    ));
    let want = expect(&[(&format!("{ns}/a"), "red"), (&format!("{ns}/b"), "blue")]);
    eventually("the list in pages", || rows(&runtime, &ns) == want).await;
    assert!(!runtime.streams_lists());
    assert!(runtime.wait_synced(&owner, Duration::from_secs(30)).await);
    // The watch after the list goes on: a change arrives, and no error is reported.
    set_color(&cms, "a", "green").await;
    eventually("the change after the list", || {
        rows(&runtime, &ns) == expect(&[(&format!("{ns}/a"), "green"), (&format!("{ns}/b"), "blue")])
    })
    .await;
    assert_eq!(runtime.report(&owner).unwrap().watch_error, None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn object_and_namespace_labels_move_rows_in_and_out() {
    let Some(plane) = plane() else { return };
    let client = plane.client().await.unwrap();
    let ns = plane.create_namespace("labels").await.unwrap();
    let namespaces: Api<Namespace> = Api::all(client.clone());
    let label_ns = |team: &str| {
        let namespaces = namespaces.clone();
        let ns = ns.clone();
        let team = team.to_owned();
        async move {
            namespaces
                .patch(
                    &ns,
                    &PatchParams::default(),
                    &Patch::Merge(json!({"metadata": {"labels": {"team": team}}})),
                )
                .await
                .unwrap();
        }
    };
    label_ns("a").await;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    cms.create(&PostParams::default(), &cm("web", &[("app", "shop")], "red"))
        .await
        .unwrap();
    cms.create(&PostParams::default(), &cm("other", &[("app", "blog")], "blue"))
        .await
        .unwrap();

    let runtime = Runtime::start(client.clone(), config());
    let target = KollectTargetSpec {
        profile_ref: "configmaps".into(),
        namespace_selector: Some(LabelSelector {
            match_labels: Some([("team".to_owned(), "a".to_owned())].into()),
            match_expressions: None,
        }),
        label_selector: Some(LabelSelector {
            match_labels: Some([("app".to_owned(), "shop".to_owned())].into()),
            match_expressions: None,
        }),
        ..Default::default()
    };
    runtime.register(registration(
        RowOwner::target(&ns, "shop"),
        &configmap_profile(),
        &target,
    ));
    let web = format!("{ns}/web");
    eventually("selected by labels", || {
        rows(&runtime, &ns) == expect(&[(&web, "red")])
    })
    .await;

    // The object's labels move it out and back in.
    let relabel = |name: &'static str, app: &'static str| {
        let cms = cms.clone();
        async move {
            cms.patch(
                name,
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"labels": {"app": app}}})),
            )
            .await
            .unwrap();
        }
    };
    relabel("web", "blog").await;
    eventually("object relabelled out", || rows(&runtime, &ns).is_empty()).await;
    relabel("other", "shop").await;
    relabel("web", "shop").await;
    eventually("objects relabelled in", || {
        rows(&runtime, &ns) == expect(&[(&format!("{ns}/other"), "blue"), (&web, "red")])
    })
    .await;

    // The namespace's labels move every row out and back in.
    label_ns("b").await;
    eventually("namespace relabelled out", || rows(&runtime, &ns).is_empty()).await;
    label_ns("a").await;
    eventually("namespace relabelled in", || rows(&runtime, &ns).len() == 2).await;

    // A namespace that opts out of collection.
    namespaces
        .patch(
            &ns,
            &PatchParams::default(),
            &Patch::Merge(
                json!({"metadata": {"annotations": {keys::NAMESPACE_WATCH_ANNOTATION: "disabled"}}}),
            ),
        )
        .await
        .unwrap();
    eventually("namespace opted out", || rows(&runtime, &ns).is_empty()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resource_rules_match_policy_and_opt_in() {
    let Some(plane) = plane() else { return };
    let client = plane.client().await.unwrap();
    let ns = plane.create_namespace("rules").await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    for (name, labels, color) in [
        ("web", vec![("tier", "web")], "red"),
        ("pg-main", vec![("tier", "db")], "blue"),
        ("mysql", vec![("tier", "db")], "green"),
        ("cache", vec![("tier", "cache")], "gray"),
        (
            "pinned",
            vec![("tier", "cache"), (keys::WATCH_LABEL, "enabled")],
            "gold",
        ),
        (
            "hidden",
            vec![("tier", "web"), (keys::WATCH_LABEL, "disabled")],
            "black",
        ),
    ] {
        cms.create(&PostParams::default(), &cm(name, &labels, color))
            .await
            .unwrap();
    }
    let rules = vec![
        ResourceRule {
            gvk: GroupVersionKind::new("", "v1", "ConfigMap"),
            match_labels: [("tier".to_owned(), "web".to_owned())].into(),
            ..Default::default()
        },
        ResourceRule {
            gvk: GroupVersionKind::new("", "v1", "ConfigMap"),
            match_labels: [("tier".to_owned(), "db".to_owned())].into(),
            match_policy: Some("object.metadata.name.startsWith('pg-')".into()),
            ..Default::default()
        },
        ResourceRule {
            gvk: GroupVersionKind::new("", "v1", "ConfigMap"),
            match_labels: [("tier".to_owned(), "cache".to_owned())].into(),
            ..Default::default()
        },
    ];
    let all = KollectTargetSpec {
        profile_ref: "configmaps".into(),
        filter: CollectionFilter {
            included_namespaces: vec![ns.clone()],
            resource_rules: rules.clone(),
            ..Default::default()
        },
        ..Default::default()
    };
    let opt_in = KollectTargetSpec {
        watch_mode: WatchMode::OptIn,
        ..all.clone()
    };
    let runtime = Runtime::start(client.clone(), config());
    let all_owner = RowOwner::target(&ns, "all");
    let opt_in_owner = RowOwner::target(&ns, "opt-in");
    runtime.register(registration(all_owner.clone(), &configmap_profile(), &all));
    runtime.register(registration(opt_in_owner.clone(), &configmap_profile(), &opt_in));
    let names = |owner: &RowOwner| -> Vec<String> {
        let mut names: Vec<String> = runtime
            .store()
            .snapshot(&Partition::Namespace(ns.clone()))
            .snapshot
            .rows()
            .iter()
            .filter(|r| r.target_name() == owner_name(owner))
            .map(|r| r.name().to_owned())
            .collect();
        names.sort();
        names
    };
    eventually("rules applied", || {
        names(&all_owner) == ["cache", "pg-main", "pinned", "web"]
    })
    .await;
    // OptIn: only the object that opted in itself, until the namespace opts in.
    eventually("opt-in applied", || names(&opt_in_owner) == ["pinned"]).await;
    Api::<Namespace>::all(client.clone())
        .patch(
            &ns,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {keys::WATCH_LABEL: "enabled"}}})),
        )
        .await
        .unwrap();
    eventually("namespace opted in", || {
        names(&opt_in_owner) == ["cache", "pg-main", "pinned", "web"]
    })
    .await;
    // Both targets share the one ConfigMap watch.
    assert_eq!(runtime.watch_count(), 1);
}

fn owner_name(owner: &RowOwner) -> &str {
    match owner {
        RowOwner::Target { name, .. } | RowOwner::ClusterTarget { name } => name,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_targets_share_one_watch_and_leave_independently() {
    let Some(plane) = plane() else { return };
    let client = plane.client().await.unwrap();
    let ns_a = plane.create_namespace("share-a").await.unwrap();
    let ns_b = plane.create_namespace("share-b").await.unwrap();
    for ns in [&ns_a, &ns_b] {
        Api::<ConfigMap>::namespaced(client.clone(), ns)
            .create(&PostParams::default(), &cm("x", &[], ns))
            .await
            .unwrap();
    }
    let runtime = Runtime::start(client.clone(), config());
    let a = RowOwner::target(&ns_a, "configmaps");
    let b = RowOwner::target(&ns_b, "configmaps");
    runtime.register(registration(a.clone(), &configmap_profile(), &included(&[&ns_a])));
    runtime.register(registration(
        b.clone(),
        &configmap_profile(),
        &included(&[&ns_a, &ns_b]),
    ));
    eventually("both targets collected", || {
        runtime.store().count(&a) == 1 && runtime.store().count(&b) == 2
    })
    .await;
    assert_eq!(runtime.watch_count(), 1);
    // Re-registering with the same fingerprint is free; rows stay.
    runtime.register(registration(a.clone(), &configmap_profile(), &included(&[&ns_a])));
    assert_eq!(runtime.store().count(&a), 1);

    runtime.unregister(&b);
    assert_eq!(runtime.store().count(&b), 0);
    assert_eq!(runtime.store().count(&a), 1);
    assert_eq!(runtime.watch_count(), 1);
    // The remaining target keeps collecting through the narrowed watch.
    Api::<ConfigMap>::namespaced(client.clone(), &ns_a)
        .create(&PostParams::default(), &cm("y", &[], "new"))
        .await
        .unwrap();
    eventually("still collecting", || runtime.store().count(&a) == 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_kind_whose_crd_appears_later_is_collected_once_it_exists() {
    let Some(plane) = plane() else { return };
    let client = plane.client().await.unwrap();
    let ns = plane.create_namespace("late-crd").await.unwrap();
    let runtime = Runtime::start(client.clone(), config());
    let profile = KollectProfileSpec {
        target_gvk: GroupVersionKind::new("late.kollect.dev", "v1", "Widget"),
        attributes: vec![AttributeSpec::new("color", "$.spec.color")],
        ..Default::default()
    };
    let owner = RowOwner::target(&ns, "widgets");
    runtime.register(registration(owner.clone(), &profile, &included(&[&ns])));
    eventually("unknown kind reported", || {
        runtime
            .report(&owner)
            .and_then(|r| r.unresolved)
            .is_some_and(|m| m.contains("late.kollect.dev/v1 Widget is not served"))
    })
    .await;

    plane
        .apply_yaml(
            r#"
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: widgets.late.kollect.dev
spec:
  group: late.kollect.dev
  scope: Namespaced
  names: {plural: widgets, singular: widget, kind: Widget}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          x-kubernetes-preserve-unknown-fields: true
"#,
            "default",
        )
        .await
        .unwrap();
    // Creating the object retries until the new CRD is Established.
    let widget = kube::core::ApiResource {
        group: "late.kollect.dev".into(),
        version: "v1".into(),
        api_version: "late.kollect.dev/v1".into(),
        kind: "Widget".into(),
        plural: "widgets".into(),
    };
    let api: Api<kube::api::DynamicObject> = Api::namespaced_with(client.clone(), &ns, &widget);
    let object: kube::api::DynamicObject = serde_json::from_value(json!({
        "apiVersion": "late.kollect.dev/v1", "kind": "Widget",
        "metadata": {"name": "w1"}, "spec": {"color": "teal"},
    }))
    .unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while api.create(&PostParams::default(), &object).await.is_err() {
        assert!(tokio::time::Instant::now() < deadline, "CRD never became usable");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eventually("widget collected", || {
        rows(&runtime, &ns) == expect(&[(&format!("{ns}/w1"), "teal")])
    })
    .await;
    let report = runtime.report(&owner).unwrap();
    assert_eq!(report.unresolved, None);
    let row = &runtime
        .store()
        .snapshot(&Partition::Namespace(ns.clone()))
        .snapshot
        .rows()[0]
        .clone();
    assert_eq!(row.group(), "late.kollect.dev");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forbidden_namespace_is_reported_and_has_no_rows() {
    let Some(plane) = plane() else { return };
    let admin = plane.client().await.unwrap();
    let allowed = plane.create_namespace("allowed").await.unwrap();
    let denied = plane.create_namespace("denied").await.unwrap();
    for ns in [&allowed, &denied] {
        Api::<ConfigMap>::namespaced(admin.clone(), ns)
            .create(&PostParams::default(), &cm("x", &[], "red"))
            .await
            .unwrap();
    }
    let limited = plane
        .limited_client(
            &allowed,
            "collector",
            vec![PolicyRule {
                api_groups: Some(vec![String::new()]),
                resources: Some(vec!["configmaps".into()]),
                verbs: vec!["get".into(), "list".into(), "watch".into()],
                ..Default::default()
            }],
        )
        .await
        .unwrap();
    // Watched, and listed once: the denied namespace is a final answer of a one-shot list.
    for listing in [Listing::Streaming, Listing::Once] {
        let runtime = Runtime::start(limited.clone(), listing_config(listing));
        let owner = RowOwner::target(&allowed, "configmaps");
        runtime.register(registration(
            owner.clone(),
            &configmap_profile(),
            &included(&[&allowed, &denied]),
        ));
        eventually("allowed namespace collected, denied one reported", || {
            runtime
                .report(&owner)
                .is_some_and(|r| r.rows == 1 && r.forbidden_namespaces.contains_key(&denied))
        })
        .await;
        if matches!(listing, Listing::Once) {
            assert!(runtime.wait_synced(&owner, Duration::from_secs(60)).await);
        }
        let names: Vec<String> = runtime
            .store()
            .snapshot(&Partition::Namespace(allowed.clone()))
            .snapshot
            .rows()
            .iter()
            .map(|r| r.namespace().to_owned())
            .collect();
        assert_eq!(names, vec![allowed.clone()], "{listing:?}");
    }
}

/// Listing once: every object of a list far larger than one read of its response becomes a
/// row, whether the list covers the target's namespaces or the whole cluster, and the rows stay
/// as listed (no watch follows).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listing_once_collects_a_large_list_and_does_not_watch() {
    use futures::StreamExt;
    let Some(plane) = plane() else { return };
    let client = plane.client().await.unwrap();
    let big = plane.create_namespace("once-big").await.unwrap();
    let small = plane.create_namespace("once-small").await.unwrap();
    let blob = "x".repeat(8 * 1024);
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &big);
    futures::stream::iter(0..200)
        .map(|i| {
            let cms = cms.clone();
            let object: ConfigMap = serde_json::from_value(json!({
                "metadata": {"name": format!("cm-{i}")},
                "data": {"color": format!("c{i}"), "blob": blob},
            }))
            .unwrap();
            async move { cms.create(&PostParams::default(), &object).await.unwrap() }
        })
        .buffer_unordered(16)
        .collect::<Vec<_>>()
        .await;
    Api::<ConfigMap>::namespaced(client.clone(), &small)
        .create(&PostParams::default(), &cm("only", &[], "blue"))
        .await
        .unwrap();
    let mut want: BTreeMap<String, Value> = (0..200)
        .map(|i| (format!("{big}/cm-{i}"), json!(format!("c{i}"))))
        .collect();
    want.insert(format!("{small}/only"), json!("blue"));

    let everywhere = KollectTargetSpec {
        profile_ref: "configmaps".into(),
        ..Default::default()
    };
    for target in [included(&[&big, &small]), everywhere] {
        let runtime = Runtime::start(client.clone(), listing_config(Listing::Once));
        let owner = RowOwner::target(&big, "configmaps");
        runtime.register(registration(owner.clone(), &configmap_profile(), &target));
        assert!(runtime.wait_synced(&owner, Duration::from_secs(60)).await);
        let listed = || -> BTreeMap<String, Value> {
            rows(&runtime, &big)
                .into_iter()
                .filter(|(key, _)| {
                    key.starts_with(&format!("{big}/")) || key.starts_with(&format!("{small}/"))
                })
                .collect()
        };
        assert_eq!(listed(), want, "{:?}", target.filter.included_namespaces);
        let report = runtime.report(&owner).unwrap();
        assert_eq!((report.watch_error, report.forbidden_namespaces.len()), (None, 0));

        set_color(&cms, "cm-0", "changed").await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        assert_eq!(
            listed()[&format!("{big}/cm-0")],
            json!("c0"),
            "a change after the list is not collected"
        );
        set_color(&cms, "cm-0", "c0").await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rows_converge_after_an_api_server_restart() {
    // Its own control plane: this test stops the API server.
    let Some(mut plane) = ControlPlane::start_for_test().await else {
        return;
    };
    let client = plane.client().await.unwrap();
    let ns = plane.create_namespace("restart").await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    for i in 0..5 {
        cms.create(&PostParams::default(), &cm(&format!("cm-{i}"), &[], "red"))
            .await
            .unwrap();
    }
    let runtime = Runtime::start(client.clone(), config());
    let owner = RowOwner::target(&ns, "configmaps");
    runtime.register(registration(
        owner.clone(),
        &configmap_profile(),
        &included(&[&ns]),
    ));
    eventually("initial rows", || runtime.store().count(&owner) == 5).await;

    plane.stop_apiserver();
    tokio::time::sleep(Duration::from_secs(2)).await;
    plane.start_apiserver().await.unwrap();

    // Changes right after the restart, while the runtime is reconnecting.
    let cms: Api<ConfigMap> = Api::namespaced(plane.client().await.unwrap(), &ns);
    cms.delete("cm-0", &DeleteParams::default()).await.unwrap();
    cms.delete("cm-1", &DeleteParams::default()).await.unwrap();
    cms.create(&PostParams::default(), &cm("cm-5", &[], "blue"))
        .await
        .unwrap();
    set_color(&cms, "cm-2", "green").await;

    let existing = || async {
        let list = cms.list(&Default::default()).await.unwrap();
        list.items
            .into_iter()
            .map(|c| {
                (
                    format!("{ns}/{}", c.metadata.name.unwrap()),
                    Value::from(c.data.unwrap()["color"].clone()),
                )
            })
            .collect::<BTreeMap<_, _>>()
    };
    let want = existing().await;
    assert_eq!(want.len(), 4);
    eventually("rows equal the objects that exist", || {
        rows(&runtime, &ns) == want
    })
    .await;
    // Exactly one row per object: no duplicates from the relist.
    assert_eq!(runtime.store().count(&owner), 4);
    assert_eq!(runtime.store().uids(&owner).len(), 4);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_through_a_tiny_queue_is_collected_with_backpressure_and_metrics() {
    let Some(plane) = plane() else { return };
    let client = plane.client().await.unwrap();
    let ns = plane.create_namespace("burst").await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    for i in 0..200 {
        cms.create(&PostParams::default(), &cm(&format!("cm-{i}"), &[], "red"))
            .await
            .unwrap();
    }
    let mut registry = prometheus_client::registry::Registry::default();
    let metrics = kollect_collect::runtime::CollectMetrics::register(&mut registry);
    let runtime = Runtime::start_with_metrics(
        client.clone(),
        RuntimeConfig {
            queue_capacity: 1,
            workers: 1,
            // Four pages of a paginated list, not one stream.
            streaming_lists: false,
            page_size: 50,
            // Every wait for the full queue counts, however short.
            enqueue_wait: Duration::ZERO,
            ..config()
        },
        metrics,
    );
    let owner = RowOwner::target(&ns, "configmaps");
    runtime.register(registration(
        owner.clone(),
        &configmap_profile(),
        &included(&[&ns]),
    ));
    eventually("all collected", || runtime.store().count(&owner) == 200).await;
    eventually("listed", || runtime.report(&owner).is_some_and(|r| r.synced)).await;

    // The last job leaves the queue gauge when its worker finishes it, just after its row
    // landed: read the metrics once the queue has drained.
    let encode = || {
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        text
    };
    eventually("the queue drained", || {
        encode()
            .lines()
            .any(|l| l == "kollect_collect_dispatch_queue_depth 0")
    })
    .await;
    let text = encode();
    let value = |series: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with(series))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("{series} missing in:\n{text}"))
    };
    assert!(value("kollect_collect_dispatch_backpressure_total") > 0.0);
    assert_eq!(value("kollect_collect_items_total"), 200.0);
    assert_eq!(
        value(r#"kollect_collected_objects{profile="configmaps",gvk="/v1/ConfigMap"}"#),
        200.0
    );
    assert_eq!(
        value(r#"kollect_informer_objects{group="",version="v1",resource="configmaps"}"#),
        200.0
    );
    assert_eq!(
        value(r#"kollect_informer_cluster_wide_scope{group="",version="v1",resource="configmaps"}"#),
        0.0
    );
    assert!(value("kollect_collect_dispatch_duration_seconds_count") >= 200.0);
    assert!(value(r#"kollect_access_cache_total{result="miss"}"#) >= 1.0);
    assert_eq!(value("kollect_collect_dispatch_queue_depth"), 0.0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_periodic_resync_restores_what_was_lost_in_between() {
    let Some(plane) = plane() else { return };
    let client = plane.client().await.unwrap();
    let ns = plane.create_namespace("resync").await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    cms.create(&PostParams::default(), &cm("a", &[], "red"))
        .await
        .unwrap();
    let runtime = Runtime::start(
        client.clone(),
        RuntimeConfig {
            resync_period: Some(Duration::from_millis(500)),
            ..config()
        },
    );
    let owner = RowOwner::target(&ns, "configmaps");
    runtime.register(registration(
        owner.clone(),
        &configmap_profile(),
        &included(&[&ns]),
    ));
    let want = expect(&[(&format!("{ns}/a"), "red")]);
    eventually("initial list", || rows(&runtime, &ns) == want).await;
    // Rows lost without a watch event (what a resync exists for) come back with the next relist.
    assert_eq!(runtime.store().remove_where(&owner, |_| true), 1);
    assert!(rows(&runtime, &ns).is_empty());
    eventually("the resync lists the object again", || {
        rows(&runtime, &ns) == want
    })
    .await;
}

/// How a runtime lists.
#[derive(Debug, Clone, Copy)]
enum Listing {
    /// Pages, then a watch.
    Pages,
    /// A streaming list, then a watch.
    Streaming,
    /// One unpaginated list, no watch.
    Once,
}

const LISTINGS: [Listing; 3] = [Listing::Pages, Listing::Streaming, Listing::Once];

fn listing_config(listing: Listing) -> RuntimeConfig {
    RuntimeConfig {
        streaming_lists: matches!(listing, Listing::Streaming),
        list_only: matches!(listing, Listing::Once),
        ..config()
    }
}

/// The rows of a fresh runtime's first list of `namespace` with `profile`.
async fn listed_rows(
    client: &kube::Client,
    namespace: &str,
    profile: &KollectProfileSpec,
    listing: Listing,
) -> kollect_core::model::Snapshot {
    let runtime = Runtime::start(client.clone(), listing_config(listing));
    let owner = RowOwner::target(namespace, "configmaps");
    runtime.register(registration(owner.clone(), profile, &included(&[namespace])));
    assert!(runtime.wait_synced(&owner, Duration::from_secs(60)).await);
    runtime
        .store()
        .snapshot(&Partition::Namespace(namespace.to_owned()))
        .snapshot
}

/// Extraction reads `apiVersion` and `kind` whether a list (whose items of built-in kinds come
/// without them) or a stream delivered the object.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn listed_objects_carry_their_api_version_and_kind() {
    let Some(plane) = plane() else { return };
    let client = plane.client().await.unwrap();
    let ns = plane.create_namespace("types").await.unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    cms.create(&PostParams::default(), &cm("a", &[], "red"))
        .await
        .unwrap();
    let profile = KollectProfileSpec {
        attributes: vec![
            AttributeSpec::new("color", "$.data.color"),
            AttributeSpec::new("type", "cel:object.apiVersion + '/' + object.kind"),
        ],
        ..configmap_profile()
    };
    for listing in LISTINGS {
        let snapshot = listed_rows(&client, &ns, &profile, listing).await;
        let types: Vec<Value> = snapshot
            .rows()
            .iter()
            .map(|row| row.attributes().unwrap()["type"].clone())
            .collect();
        assert_eq!(types, [json!("v1/ConfigMap")], "{listing:?}");
    }
}

/// A whole-resource export of a Secret redacts its data however the Secret was listed: the
/// redaction recognises a Secret by its `apiVersion` and `kind`, which the items of a list of
/// built-in kinds come without.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_secret_is_exported_with_its_data_redacted() {
    let Some(plane) = plane() else { return };
    let client = plane.client().await.unwrap();
    let ns = plane.create_namespace("secrets").await.unwrap();
    let secrets: Api<k8s_openapi::api::core::v1::Secret> = Api::namespaced(client.clone(), &ns);
    let secret = serde_json::from_value(json!({
        "metadata": {"name": "db"},
        "stringData": {"dsn": "postgres://user:hunter2@db/app"},
    }))
    .unwrap();
    secrets.create(&PostParams::default(), &secret).await.unwrap();
    let profile = KollectProfileSpec {
        target_gvk: GroupVersionKind::new("", "v1", "Secret"),
        attributes: vec![AttributeSpec::new("name", "$.metadata.name")],
        export: Some(kollect_core::api::v1alpha1::ExportSpec {
            mode: kollect_core::api::v1alpha1::ExportMode::Resource,
            as_: "manifest".into(),
            include: kollect_core::api::v1alpha1::ExportInclude::All,
            ..Default::default()
        }),
        ..Default::default()
    };
    for listing in LISTINGS {
        let snapshot = listed_rows(&client, &ns, &profile, listing).await;
        assert_eq!(snapshot.rows().len(), 1, "{listing:?}");
        let row = &snapshot.rows()[0];
        let manifest = &row.attributes().unwrap()["manifest"];
        assert_eq!(
            manifest["data"]["dsn"],
            json!({"redacted": true, "reason": "secret-data"}),
            "{listing:?}"
        );
        // Neither the value nor its base64 form (as `data` holds it) is anywhere in the row.
        let canonical = String::from_utf8_lossy(row.canonical()).into_owned();
        assert!(
            !canonical.contains("hunter2") && !canonical.contains("cG9zdGdyZXM6Ly91c2VyOmh1bnRlcjJAZGIvYXBw"),
            "{listing:?}"
        );
    }
}
