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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_servers_with_tls_and_each_kind_of_authentication_accept_their_clients() {
    use kollect_testkit::backends::{NatsAuth, NatsOptions, NatsTls};
    for options in [
        NatsOptions {
            auth: NatsAuth::Users,
            tls: NatsTls::Server,
        },
        NatsOptions {
            auth: NatsAuth::Token,
            tls: NatsTls::Off,
        },
        NatsOptions {
            auth: NatsAuth::Operator,
            tls: NatsTls::Off,
        },
        NatsOptions {
            auth: NatsAuth::None,
            tls: NatsTls::Mutual,
        },
    ] {
        let Some(nats) = backends::start_for_test(|| Nats::start_with(options)) else {
            return;
        };
        let client = nats.client().await.unwrap_or_else(|e| panic!("{options:?}: {e}"));
        let jetstream = async_nats::jetstream::new(client);
        let account: Result<serde_json::Value, _> = jetstream.request("INFO", &()).await;
        let account = account.unwrap();
        assert!(account.get("streams").is_some(), "{options:?}: {account}");
        if options.auth != NatsAuth::None {
            let anonymous = async_nats::connect(nats.url()).await;
            assert!(anonymous.is_err(), "{options:?}: an anonymous client is refused");
        }
    }
}

fn commit_file(repo: &git2::Repository, path: &str, content: &str, message: &str) -> git2::Oid {
    std::fs::write(repo.workdir().unwrap().join(path), content).unwrap();
    let mut index = repo.index().unwrap();
    index.add_path(std::path::Path::new(path)).unwrap();
    index.write().unwrap();
    let tree = repo.find_tree(index.write_tree().unwrap()).unwrap();
    let signature = git2::Signature::now("kollect", "kollect@kollect.dev").unwrap();
    let parent = repo.head().ok().and_then(|h| h.peel_to_commit().ok());
    let parents: Vec<&git2::Commit<'_>> = parent.iter().collect();
    repo.commit(Some("HEAD"), &signature, &signature, message, &tree, &parents)
        .unwrap()
}

fn push(repo: &git2::Repository, url: &str, user: &str, password: &str) -> Result<(), git2::Error> {
    let mut remote = repo.remote_anonymous(url)?;
    let mut callbacks = git2::RemoteCallbacks::new();
    let (user, password) = (user.to_owned(), password.to_owned());
    callbacks.credentials(move |_, _, _| git2::Cred::userpass_plaintext(&user, &password));
    let mut options = git2::PushOptions::new();
    options.remote_callbacks(callbacks);
    remote.push(&["refs/heads/main:refs/heads/main"], Some(&mut options))
}

#[test]
fn git_smart_http_push_clone_and_auth() {
    let Some(server) =
        backends::start_for_test(|| kollect_testkit::GitServer::start("kollect", "s3cret-token"))
    else {
        return;
    };
    let url = server.create_repo("inventory").unwrap();
    let work = tempfile::tempdir().unwrap();
    let repo = git2::Repository::init_opts(
        work.path(),
        git2::RepositoryInitOptions::new().initial_head("main"),
    )
    .unwrap();
    let commit = commit_file(&repo, "inventory.yaml", "items: []\n", "first export");
    push(&repo, &url, server.user(), server.password()).unwrap();

    // The bare repository received the commit.
    let bare = git2::Repository::open_bare(server.repo_path("inventory")).unwrap();
    assert_eq!(bare.refname_to_id("refs/heads/main").unwrap(), commit);

    // A clone through the server sees it too.
    let clone_dir = tempfile::tempdir().unwrap();
    let mut callbacks = git2::RemoteCallbacks::new();
    callbacks.credentials(|_, _, _| git2::Cred::userpass_plaintext("kollect", "s3cret-token"));
    let mut fetch = git2::FetchOptions::new();
    fetch.remote_callbacks(callbacks);
    let cloned = git2::build::RepoBuilder::new()
        .fetch_options(fetch)
        .clone(&url, clone_dir.path())
        .unwrap();
    assert_eq!(cloned.head().unwrap().target(), Some(commit));

    // A wrong password is refused, and the error does not echo it.
    commit_file(&repo, "inventory.yaml", "items: [a]\n", "second export");
    let error = push(&repo, &url, "kollect", "wrong-password").unwrap_err();
    assert!(
        matches!(error.class(), git2::ErrorClass::Http | git2::ErrorClass::Net),
        "{error:?}"
    );
    assert!(!error.message().contains("wrong-password"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongodb_wire_round_trip_through_ferretdb() {
    let Some(ferret) = backends::start_for_test(kollect_testkit::backends::FerretDb::start) else {
        return;
    };
    let client = mongodb::Client::with_uri_str(ferret.uri()).await.unwrap();
    let collection = client
        .database("kollect")
        .collection::<mongodb::bson::Document>("inventory");
    collection
        .insert_one(mongodb::bson::doc! {"source_uid": "uid-1", "payload": {"image": "web:1"}})
        .await
        .unwrap();
    let found = collection
        .find_one(mongodb::bson::doc! {"source_uid": "uid-1"})
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        found.get_document("payload").unwrap().get_str("image").unwrap(),
        "web:1"
    );
}

/// Writes, lists, reads back and deletes one object through object_store.
async fn object_store_round_trip(store: &dyn object_store::ObjectStore) {
    use object_store::ObjectStoreExt;
    let path = object_store::path::Path::from("kollect/team-a/apps.json");
    let payload = br#"{"items":[{"name":"web"}]}"#.to_vec();
    store.put(&path, payload.clone().into()).await.unwrap();
    let listed: Vec<_> = store
        .list(Some(&object_store::path::Path::from("kollect")))
        .map(|meta| meta.unwrap().location)
        .collect()
        .await;
    assert_eq!(listed, vec![path.clone()]);
    let read = store.get(&path).await.unwrap().bytes().await.unwrap();
    assert_eq!(read.as_ref(), payload.as_slice());
    store.delete(&path).await.unwrap();
    assert!(matches!(
        store.get(&path).await,
        Err(object_store::Error::NotFound { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_round_trip_through_minio() {
    use kollect_testkit::backends::Minio;
    let Some(minio) = backends::start_for_test(Minio::start) else {
        return;
    };
    minio.create_bucket("inventory").await.unwrap();
    backends::install_crypto_provider();
    let store = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(minio.endpoint())
        .with_allow_http(true)
        .with_region(Minio::REGION)
        .with_bucket_name("inventory")
        .with_access_key_id(Minio::ACCESS_KEY)
        .with_secret_access_key(Minio::SECRET_KEY)
        .build()
        .unwrap();
    object_store_round_trip(&store).await;

    // A wrong secret is refused by the server.
    let wrong = object_store::aws::AmazonS3Builder::new()
        .with_endpoint(minio.endpoint())
        .with_allow_http(true)
        .with_region(Minio::REGION)
        .with_bucket_name("inventory")
        .with_access_key_id(Minio::ACCESS_KEY)
        .with_secret_access_key("not-the-secret")
        .build()
        .unwrap();
    let error =
        object_store::ObjectStoreExt::put(&wrong, &object_store::path::Path::from("x"), b"x".to_vec().into())
            .await
            .unwrap_err();
    assert!(error.to_string().contains("SignatureDoesNotMatch"), "{error}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gcs_round_trip_through_fake_gcs_server() {
    use kollect_testkit::backends::FakeGcs;
    let Some(gcs) = backends::start_for_test(FakeGcs::start) else {
        return;
    };
    gcs.create_bucket("inventory").await.unwrap();
    backends::install_crypto_provider();
    let store = object_store::gcp::GoogleCloudStorageBuilder::new()
        .with_service_account_key(gcs.service_account_key())
        .with_bucket_name("inventory")
        .with_client_options(object_store::ClientOptions::new().with_allow_http(true))
        .build()
        .unwrap();
    object_store_round_trip(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn azure_blob_round_trip_through_azurite() {
    use kollect_testkit::backends::Azurite;
    let Some(azurite) = backends::start_for_test(Azurite::start) else {
        return;
    };
    azurite.create_container("inventory").await.unwrap();
    backends::install_crypto_provider();
    let store = object_store::azure::MicrosoftAzureBuilder::new()
        .with_endpoint(azurite.blob_endpoint())
        .with_allow_http(true)
        .with_account(Azurite::ACCOUNT)
        .with_access_key(Azurite::KEY)
        .with_container_name("inventory")
        .build()
        .unwrap();
    object_store_round_trip(&store).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_produce_and_consume_through_rdkafka() {
    use rdkafka::consumer::{Consumer, StreamConsumer};
    use rdkafka::producer::{FutureProducer, FutureRecord};
    use rdkafka::{ClientConfig, Message};
    let Some(kafka) = backends::start_for_test(kollect_testkit::backends::Kafka::start) else {
        return;
    };
    let admin: rdkafka::admin::AdminClient<_> = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers())
        .create()
        .unwrap();
    let created = admin
        .create_topics(
            &[rdkafka::admin::NewTopic::new(
                "kollect.inventory",
                1,
                rdkafka::admin::TopicReplication::Fixed(1),
            )],
            &rdkafka::admin::AdminOptions::new(),
        )
        .await
        .unwrap();
    assert!(created.iter().all(Result::is_ok), "{created:?}");

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers())
        .set("enable.idempotence", "true")
        .create()
        .unwrap();
    producer
        .send(
            FutureRecord::to("kollect.inventory")
                .key("team-a/apps")
                .payload(r#"{"op":"upsert"}"#),
            std::time::Duration::from_secs(30),
        )
        .await
        .unwrap();

    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", kafka.bootstrap_servers())
        .set("group.id", "kollect-smoke")
        .set("auto.offset.reset", "earliest")
        .create()
        .unwrap();
    consumer.subscribe(&["kollect.inventory"]).unwrap();
    let message = consumer.recv().await.unwrap();
    assert_eq!(message.key(), Some(&b"team-a/apps"[..]));
    assert_eq!(message.payload(), Some(&br#"{"op":"upsert"}"#[..]));
}
