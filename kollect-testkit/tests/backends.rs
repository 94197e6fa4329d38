//! Smoke tests of the backend launchers: each real server is started, written to and read back
//! through the Rust client crate the corresponding sink uses.

// Test helpers may panic on broken fixtures: that is the failure report.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use futures::StreamExt;
use kollect_testkit::backends::{self, Nats, Postgres};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_round_trip_and_password_authentication() {
    let Some(pg) = backends::start_for_test(Postgres::start) else {
        return;
    };
    let (client, connection) = tokio_postgres::connect(&pg.dsn("postgres"), tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    client
        .batch_execute("CREATE TABLE items (id TEXT PRIMARY KEY, payload JSONB NOT NULL)")
        .await
        .unwrap();
    client
        .execute(
            "INSERT INTO items VALUES ($1, $2::TEXT::JSONB)",
            &[&"uid-1", &r#"{"image":"web:1"}"#],
        )
        .await
        .unwrap();
    let row = client
        .query_one("SELECT payload->>'image' FROM items WHERE id = 'uid-1'", &[])
        .await
        .unwrap();
    assert_eq!(row.get::<_, String>(0), "web:1");

    let wrong = pg.dsn("postgres").replace(pg.password(), "wrong-password");
    let error = tokio_postgres::connect(&wrong, tokio_postgres::NoTls)
        .await
        .err()
        .expect("a wrong password is refused");
    assert_eq!(
        error.code(),
        Some(&tokio_postgres::error::SqlState::INVALID_PASSWORD),
        "{error:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_jetstream_publish_and_consume() {
    let Some(nats) = backends::start_for_test(Nats::start) else {
        return;
    };
    let client = async_nats::connect(nats.url()).await.unwrap();
    let jetstream = async_nats::jetstream::new(client);
    let stream = jetstream
        .create_stream(async_nats::jetstream::stream::Config {
            name: "kollect_events".into(),
            subjects: vec!["kollect.>".into()],
            ..Default::default()
        })
        .await
        .unwrap();
    jetstream
        .publish("kollect.team-a.apps", "snapshot".into())
        .await
        .unwrap()
        .await
        .unwrap();
    let consumer = stream
        .create_consumer(async_nats::jetstream::consumer::pull::Config {
            durable_name: Some("test".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    let mut messages = consumer.fetch().max_messages(1).messages().await.unwrap();
    let message = messages.next().await.unwrap().unwrap();
    assert_eq!(message.subject.as_str(), "kollect.team-a.apps");
    assert_eq!(&message.payload[..], b"snapshot");
    message.ack().await.unwrap();
}
