//! Commit messages: subject, body and trailer templates with placeholders.

use kollect_core::sink::ExportRequest;

/// The default subject.
pub(super) const DEFAULT_SUBJECT: &str =
    "chore({cluster}/{namespace}/{name}): export {itemCount} items @ {checksumShort}";

/// Values the templates can use.
#[derive(Debug, Clone)]
pub(super) struct CommitContext {
    /// Values by placeholder name.
    values: Vec<(&'static str, String)>,
}

impl CommitContext {
    /// The context of an export of `request` to sink `sink`, written at `path`.
    pub(super) fn new(request: &ExportRequest, sink: &str, path: &str) -> Self {
        let checksum = request.snapshot.fingerprint().to_string();
        let checksum = checksum.trim_start_matches("sha256:").to_owned();
        let cluster = if request.inventory.cluster.is_empty() {
            "default".to_owned()
        } else {
            request.inventory.cluster.clone()
        };
        Self {
            values: vec![
                ("namespace", request.inventory.path_namespace().to_owned()),
                ("name", request.inventory.name.clone()),
                ("cluster", cluster),
                ("generation", request.generation.to_string()),
                ("exportGeneration", request.generation.to_string()),
                ("itemCount", request.snapshot.len().to_string()),
                ("checksumShort", checksum.chars().take(12).collect()),
                ("checksum", checksum),
                (
                    "exportedAt",
                    kollect_core::model::format_exported_at(request.exported_at),
                ),
                ("sink", sink.to_owned()),
                ("path", path.to_owned()),
            ],
        }
    }

    /// Substitutes known placeholders; unknown ones stay as written.
    pub(super) fn render(&self, template: &str) -> String {
        let mut out = template.to_owned();
        for (name, value) in &self.values {
            out = out.replace(&format!("{{{name}}}"), value);
        }
        out
    }

    /// The full message: subject, then the body and each non-blank trailer as paragraphs.
    pub(super) fn message(&self, subject: Option<&str>, body: Option<&str>, trailers: &[String]) -> String {
        let mut message = self.render(subject.unwrap_or(DEFAULT_SUBJECT)).replace('\0', "");
        if let Some(body) = body.map(|b| self.render(b)).filter(|b| !b.trim().is_empty()) {
            message.push_str("\n\n");
            message.push_str(&body);
        }
        for trailer in trailers {
            let trailer = self.render(trailer);
            if !trailer.trim().is_empty() {
                message.push_str("\n\n");
                message.push_str(&trailer);
            }
        }
        message
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kollect_core::model::Snapshot;
    use kollect_core::sink::InventoryRef;

    #[test]
    fn default_subject_and_templates_render() {
        let request = ExportRequest::full(
            InventoryRef::namespaced("team-a", "apps"),
            3,
            k8s_openapi::jiff::Timestamp::from_second(1_800_000_000).unwrap(),
            Snapshot::empty(),
        );
        let context = CommitContext::new(&request, "team-a/git", "inventory/team-a/apps.yaml");
        let message = context.message(
            None,
            Some("generation {generation} of {sink} at {path} {unknown}"),
            &[
                "Signed-off-by: kollect".into(),
                "  ".into(),
                "Exported-At: {exportedAt}".into(),
            ],
        );
        let short: String = Snapshot::empty()
            .fingerprint()
            .to_string()
            .chars()
            .take(12)
            .collect();
        assert_eq!(
            message,
            format!(
                "chore(default/team-a/apps): export 0 items @ {short}\n\ngeneration 3 of team-a/git at inventory/team-a/apps.yaml {{unknown}}\n\nSigned-off-by: kollect\n\nExported-At: 2027-01-15T08:00:00Z"
            )
        );
    }
}
