//! The in-memory sink passes the sink conformance suite, both as a document store and as a
//! delta-applying database.

mod as_document_store {
    use kollect_core::sink::Capabilities;
    use kollect_testkit::MemorySink;

    kollect_testkit::sink_conformance_tests!(async {
        let sink = MemorySink::new("memory", Capabilities::DOCUMENTS);
        (sink.clone(), sink)
    });
}

mod as_delta_database {
    use kollect_core::sink::Capabilities;
    use kollect_testkit::MemorySink;

    kollect_testkit::sink_conformance_tests!(async {
        let sink = MemorySink::new("memory-db", Capabilities::ROWS);
        (sink.clone(), sink)
    });
}

/// The suite catches a sink that ignores deletes (it must be able to fail).
#[tokio::test]
async fn a_sink_that_never_removes_fails_the_suite() {
    use async_trait::async_trait;
    use kollect_core::sink::{
        Capabilities, ExportReceipt, ExportRequest, ProbeReport, RemoveRequest, Sink, SinkError,
    };
    use kollect_testkit::MemorySink;

    struct ForgetfulRemove(MemorySink);

    #[async_trait]
    impl Sink for ForgetfulRemove {
        fn sink_type(&self) -> &str {
            "forgetful"
        }
        fn capabilities(&self) -> Capabilities {
            Capabilities::DOCUMENTS
        }
        async fn export(&self, request: &ExportRequest) -> Result<ExportReceipt, SinkError> {
            self.0.export(request).await
        }
        async fn remove(&self, _: &RemoveRequest) -> Result<(), SinkError> {
            Ok(())
        }
        async fn probe(&self) -> Result<ProbeReport, SinkError> {
            self.0.probe().await
        }
    }

    let store = MemorySink::default();
    let sink = ForgetfulRemove(store.clone());
    let failure = kollect_testkit::conformance::inventory_removal(&sink, &store)
        .await
        .unwrap_err();
    assert!(failure.contains("after removing the inventory"), "{failure}");
}
