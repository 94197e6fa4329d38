//! `kollect validate --config <dir>`: the admission checks, without a cluster.
//! Success prints `<dir>: valid (N profile(s), M target(s), K sink(s))` on stdout; every invalid
//! object prints `invalid: …` on stderr and the command exits 2; warnings print `warning: …`.

use std::path::Path;

use kollect_collect::extract::ExtractOptions;
use kollect_collect::extract::validate::validate_profile;
use kollect_collect::select::{NamespaceDefaults, TargetFilter};
use kollect_core::api::v1alpha1::{MAX_SINK_REFS, SinkFamily};
use kollect_core::export::DEFAULT_MAX_EXPORT_BYTES;
use kollect_core::netguard::NetPolicy;
use kollect_sinks::FamilySink;

use crate::admission::{Settings, rules};

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
    for inventory in &config.inventories {
        let name = inventory.metadata.name.clone().unwrap_or_default();
        let namespace = inventory.metadata.namespace.as_deref().unwrap_or("default");
        if inventory.spec.sinks.len() > MAX_SINK_REFS {
            report(format!(
                "KollectInventory {name:?} is invalid: spec: at most {MAX_SINK_REFS} sink refs, found {}",
                inventory.spec.sinks.len()
            ));
        }
        for (family, reference) in inventory.spec.sinks.iter() {
            if !config.declares_sink(family, namespace, &reference.name) {
                report(format!(
                    "KollectInventory {name:?} is invalid: spec.{}SinkRefs: \"{}\" is not a {} in {} (same namespace)",
                    family.as_str(),
                    reference.name,
                    family_kind(family),
                    dir.display()
                ));
            }
        }
    }
    let sinks: Vec<FamilySink> = config
        .snapshot_sinks
        .iter()
        .cloned()
        .map(FamilySink::from)
        .chain(config.database_sinks.iter().cloned().map(FamilySink::from))
        .chain(config.event_sinks.iter().cloned().map(FamilySink::from))
        .collect();
    // The sink rules admission runs, without a scope (a directory has none) and with the
    // operator's default endpoint policy.
    let settings = Settings {
        extract: options.clone(),
        net_policy: NetPolicy::new(false),
        max_export_bytes: DEFAULT_MAX_EXPORT_BYTES,
        tenant_mode: false,
    };
    for sink in &sinks {
        let name = sink.metadata().name.clone().unwrap_or_default();
        let validation = rules::sink(sink, None, &settings);
        for warning in &validation.warnings {
            eprintln!("warning: {} {name:?}: {warning}", sink.kind());
        }
        if let Some(message) = validation.message(sink.kind(), &name) {
            report(message);
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

fn family_kind(family: SinkFamily) -> &'static str {
    match family {
        SinkFamily::Snapshot => "KollectSnapshotSink",
        SinkFamily::Database => "KollectDatabaseSink",
        SinkFamily::Event => "KollectEventSink",
    }
}
