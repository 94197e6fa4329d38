//! `kollect validate --config <dir>`: the admission checks, without a cluster (pipeline.md §4.6).
//! Success prints `<dir>: valid (N profile(s), M target(s), K sink(s))` on stdout; every invalid
//! object prints `invalid: …` on stderr and the command exits 2; warnings print `warning: …`.

use std::path::Path;

use kollect_collect::extract::ExtractOptions;
use kollect_collect::extract::validate::validate_profile;
use kollect_collect::select::{NamespaceDefaults, TargetFilter};
use kollect_core::netguard::NetPolicy;
use kollect_sinks::{BuildContext, SinkConfig};

use super::collect::Exit;
use super::config::Config;

/// Runs `kollect validate`.
pub fn run(dir: &Path) -> Exit {
    let config = match Config::load(dir) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("invalid: {error}");
            eprintln!("1 config object(s) failed validation");
            return Exit::Fatal;
        }
    };
    let options = ExtractOptions::default();
    let mut invalid = 0;
    let mut report = |message: String| {
        eprintln!("invalid: {message}");
        invalid += 1;
    };
    for warning in &config.warnings {
        eprintln!("warning: {warning}");
    }
    for profile in &config.profiles {
        let validation = validate_profile(profile, &options);
        let name = profile.metadata.name.clone().unwrap_or_default();
        for warning in &validation.warnings {
            eprintln!("warning: KollectProfile {name:?}: {warning}");
        }
        if let Some(message) = validation.message("KollectProfile", &name) {
            report(message);
        }
    }
    for target in &config.targets {
        let name = target.metadata.name.clone().unwrap_or_default();
        if config.profile_of(target).is_none() {
            report(format!(
                "KollectTarget {name:?} is invalid: spec.profileRef: \"{}\" is not a KollectProfile in {} (same namespace)",
                target.spec.profile_ref,
                dir.display()
            ));
        }
        if let Err(error) = TargetFilter::compile(
            (&target.spec).into(),
            &NamespaceDefaults::default(),
            None,
            &options.cel,
        ) {
            report(format!("KollectTarget {name:?} is invalid: {error}"));
        }
    }
    let sinks: Vec<(
        String,
        String,
        SinkConfig,
        kollect_core::api::v1alpha1::SinkCommonSpec,
    )> = config
        .snapshot_sinks
        .iter()
        .map(|s| {
            (
                "KollectSnapshotSink",
                &s.metadata,
                SinkConfig::Snapshot(Box::new(s.spec.clone())),
                s.spec.common.clone(),
            )
        })
        .chain(config.database_sinks.iter().map(|s| {
            (
                "KollectDatabaseSink",
                &s.metadata,
                SinkConfig::Database(Box::new(s.spec.clone())),
                s.spec.common.clone(),
            )
        }))
        .chain(config.event_sinks.iter().map(|s| {
            (
                "KollectEventSink",
                &s.metadata,
                SinkConfig::Event(Box::new(s.spec.clone())),
                s.spec.common.clone(),
            )
        }))
        .map(|(kind, metadata, sink, common)| {
            (
                kind.to_owned(),
                metadata.name.clone().unwrap_or_default(),
                sink,
                common,
            )
        })
        .collect();
    for (kind, name, sink, common) in &sinks {
        if let Some(endpoint) = &common.endpoint
            && let Err(error) = NetPolicy::new(false).check_endpoint(endpoint, endpoint_kind(sink))
        {
            report(format!("{kind} {name:?} is invalid: spec.endpoint: {error}"));
            continue;
        }
        // Building checks the backend's own configuration; secrets are not needed for that, and
        // a type this build has no backend for is only a warning.
        if let Err(error) = kollect_sinks::build(sink, BuildContext::new(name.clone(), NetPolicy::new(false)))
        {
            let message = error.message();
            if message.starts_with("unknown sink type") {
                eprintln!("warning: {kind} {name:?}: {message}");
            } else if !message.contains("Secret") && !message.contains("secret") {
                report(format!("{kind} {name:?} is invalid: {message}"));
            }
        }
    }
    if invalid > 0 {
        eprintln!("{invalid} config object(s) failed validation");
        return Exit::Fatal;
    }
    println!(
        "{}: valid ({} profile(s), {} target(s), {} sink(s))",
        dir.display(),
        config.profiles.len(),
        config.targets.len(),
        sinks.len()
    );
    Exit::Ok
}

fn endpoint_kind(sink: &SinkConfig) -> kollect_core::netguard::EndpointKind {
    use kollect_core::netguard::EndpointKind;
    match sink {
        SinkConfig::Snapshot(spec)
            if matches!(
                spec.type_,
                kollect_core::api::v1alpha1::SnapshotSinkType::Git
                    | kollect_core::api::v1alpha1::SnapshotSinkType::Gitlab
            ) =>
        {
            EndpointKind::GitRemote
        }
        SinkConfig::Event(spec) if spec.type_ == kollect_core::api::v1alpha1::EventSinkType::Nats => {
            EndpointKind::NatsUrl
        }
        SinkConfig::Event(_) => EndpointKind::KafkaBroker,
        _ => EndpointKind::ObjectStore,
    }
}
