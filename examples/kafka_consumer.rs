//! Rebuilds inventories from a Kafka topic the Kafka sink writes, the way any consumer would:
//! read every partition from the beginning and apply each message to a `Replay`.
//!
//! `cargo run -p kollect-examples --example kafka_consumer -- <bootstrap> <topic>` prints the
//! rows of every inventory on an existing topic. Without arguments it starts the testkit's
//! Kafka broker, publishes an inventory through the sink in row mode (creates, an update, a
//! delete), rebuilds it from the topic and checks the result, as CI runs it.

use std::collections::BTreeMap;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use kollect_core::model::{Delta, Row, SharedRow, Snapshot};
use kollect_core::netguard::{GuardedResolver, NetPolicy};
use kollect_core::sink::{ExportRequest, InventoryRef, Sink};
use kollect_sinks::events::{MessageHeaders, MessageMode, Replay};
use kollect_sinks::kafka::{KafkaConfig, KafkaSink};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::{ClientConfig, Offset, TopicPartitionList};

type Error = Box<dyn std::error::Error + Send + Sync>;

/// Reads `topic` from the beginning to its current end into a `Replay`, and lists the
/// inventories it saw.
fn read(bootstrap: &str, topic: &str) -> Result<(Replay, Vec<InventoryRef>), Error> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "kollect-example")
        .set("enable.auto.commit", "false")
        .create()?;
    let metadata = consumer.fetch_metadata(Some(topic), Duration::from_secs(10))?;
    let partitions = metadata.topics().first().map_or(0, |t| t.partitions().len());
    let mut assignment = TopicPartitionList::new();
    let mut ends = BTreeMap::new();
    for partition in 0..i32::try_from(partitions)? {
        let (low, high) = consumer.fetch_watermarks(topic, partition, Duration::from_secs(10))?;
        if high > low {
            ends.insert(partition, high);
            assignment.add_partition_offset(topic, partition, Offset::Beginning)?;
        }
    }
    let mut replay = Replay::default();
    let mut inventories = BTreeMap::new();
    if !ends.is_empty() {
        consumer.assign(&assignment)?;
    }
    while !ends.is_empty() {
        let Some(message) = consumer.poll(Duration::from_secs(1)) else {
            continue;
        };
        let message = message?;
        if ends.get(&message.partition()).is_some_and(|end| message.offset() + 1 >= *end) {
            ends.remove(&message.partition());
        }
        let headers: Vec<(&str, &[u8])> = message
            .headers()
            .map(|h| h.iter().map(|h| (h.key, h.value.unwrap_or_default())).collect())
            .unwrap_or_default();
        let identity = MessageHeaders::from_pairs(headers.iter().copied());
        inventories
            .entry((identity.cluster.clone(), identity.namespace.clone(), identity.inventory.clone()))
            .or_insert(());
        let key = String::from_utf8_lossy(message.key().unwrap_or_default()).into_owned();
        replay.apply(&key, message.payload(), headers)?;
    }
    let inventories = inventories
        .into_keys()
        .map(|(cluster, namespace, name)| {
            let inventory = if namespace == "cluster" {
                InventoryRef::cluster_scoped(name)
            } else {
                InventoryRef::namespaced(namespace, name)
            };
            inventory.with_cluster(cluster)
        })
        .collect();
    Ok((replay, inventories))
}

fn row(name: &str, image: &str) -> Row {
    Row {
        target_namespace: "shop".into(),
        target_name: "deployments".into(),
        namespace: "shop".into(),
        name: name.into(),
        group: "apps".into(),
        version: "v1".into(),
        kind: "Deployment".into(),
        uid: format!("uid-{name}"),
        attributes: serde_json::json!({ "image": image }).as_object().cloned(),
    }
}

/// Publishes three versions of an inventory, then rebuilds it from the topic.
async fn demo() -> Result<(), Error> {
    let kafka = tokio::task::spawn_blocking(kollect_testkit::backends::Kafka::start).await??;
    let bootstrap = kafka.bootstrap_servers();
    let topic = "kollect-example";
    let sink = KafkaSink::new(
        KafkaConfig::new(
            &[bootstrap.as_str()],
            topic,
            GuardedResolver::new(NetPolicy::permissive_for_tests()),
        )?
        .with_mode(MessageMode::Row),
    );
    let inventory = InventoryRef::namespaced("shop", "images").with_cluster("prod");
    let versions = [
        vec![row("web", "web:1"), row("cart", "cart:1"), row("search", "search:1")],
        vec![row("web", "web:2"), row("cart", "cart:1"), row("search", "search:1")],
        vec![row("web", "web:2"), row("search", "search:1")],
    ];
    let mut previous: Option<Snapshot> = None;
    for rows in versions.iter().cloned() {
        let snapshot = Snapshot::new(rows);
        let mut request = ExportRequest::full(inventory.clone(), 1, Timestamp::now(), snapshot.clone());
        if let Some(previous) = &previous {
            request = request.with_delta(Delta::between(previous, &snapshot));
        }
        sink.export(&request).await?;
        previous = Some(snapshot);
    }
    let topic = topic.to_owned();
    let (replay, inventories) = tokio::task::spawn_blocking(move || read(&bootstrap, &topic)).await??;
    let rebuilt = replay.rows(&inventory);
    // The canonical order of the last version, as the replay returns rows.
    let expected: Vec<Row> =
        Snapshot::new(versions[2].clone()).rows().iter().map(SharedRow::to_row).collect();
    if inventories != [inventory.clone()] || rebuilt != expected {
        return Err(format!("rebuilt {inventories:?} with {rebuilt:?}, expected {expected:?}").into());
    }
    for row in &rebuilt {
        println!("{inventory}: {} {}", row.name, serde_json::to_string(&row.attributes)?);
    }
    Ok(())
}

#[tokio::main]
async fn main() -> Result<(), Error> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.as_slice() {
        [] => demo().await,
        [bootstrap, topic] => {
            let (bootstrap, topic) = (bootstrap.clone(), topic.clone());
            let (replay, inventories) =
                tokio::task::spawn_blocking(move || read(&bootstrap, &topic)).await??;
            for inventory in inventories {
                for row in replay.rows(&inventory) {
                    println!(
                        "{inventory}: {}/{} {}",
                        row.namespace,
                        row.name,
                        serde_json::to_string(&row.attributes)?
                    );
                }
            }
            Ok(())
        }
        _ => Err("usage: kafka_consumer [<bootstrap> <topic>]".into()),
    }
}
