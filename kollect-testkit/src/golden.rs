//! Golden-file assertions: compare produced text with a committed file, or rewrite the file when
//! `KOLLECT_UPDATE_GOLDEN=1` is set.
//!
//! A golden test of a profile is [`profile_rows`] (what a profile extracts from a set of
//! objects, as text) compared with a committed file:
//!
//! ```no_run
//! use kollect_testkit::golden::{assert_golden, profile_rows};
//!
//! let rows = profile_rows("profiles/deployments.yaml", "fixtures/").unwrap();
//! assert_golden("tests/golden/deployments.json", &rows);
//! ```

use std::path::{Path, PathBuf};

use kollect_collect::extract::{CompiledProfile, ExtractOptions};
use kollect_collect::offline::{self, SourceError};
use kollect_core::api::v1alpha1::KollectProfile;
use serde_json::{Value, json};

/// Environment variable that switches golden assertions to update mode.
pub const UPDATE_ENV: &str = "KOLLECT_UPDATE_GOLDEN";

/// Whether golden files are being rewritten in this run.
pub fn updating() -> bool {
    std::env::var(UPDATE_ENV).is_ok_and(|v| v == "1" || v.eq_ignore_ascii_case("true"))
}

/// Asserts that the file at `path` holds exactly `actual` (or writes it in update mode).
///
/// # Panics
///
/// When the file is missing or differs; the message shows the first differing lines and how to
/// update the file.
pub fn assert_golden(path: impl AsRef<Path>, actual: &str) {
    let path = path.as_ref();
    if updating() {
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).unwrap_or_else(|e| panic!("create {}: {e}", parent.display()));
        }
        std::fs::write(path, actual).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_else(|e| {
        panic!(
            "golden file {} cannot be read ({e}); create it with {UPDATE_ENV}=1",
            path.display()
        )
    });
    if expected != actual {
        panic!(
            "{} differs from the produced output ({UPDATE_ENV}=1 rewrites it):\n{}",
            path.display(),
            first_difference(&expected, actual)
        );
    }
}

/// Why [`profile_rows`] could not produce its text.
#[derive(Debug, thiserror::Error)]
pub enum GoldenError {
    /// A file could not be read or parsed.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The profile file holds no `KollectProfile`.
    #[error("{0}: no KollectProfile in the file")]
    NoProfile(PathBuf),
    /// The profile does not decode as a `KollectProfile`.
    #[error("{path}: {source}")]
    Profile {
        /// The profile file.
        path: PathBuf,
        /// The decoding error, naming the field.
        source: serde_json::Error,
    },
}

/// The rows the first `KollectProfile` of `profile_file` extracts from the objects under
/// `objects` (a file or directory of manifests or `kubectl get -o json` dumps), as the pretty
/// JSON a golden file holds: one entry per object of the profile's kind, in file order, with
/// its namespace, name and either its `attributes` or the extraction `error`. The default
/// extraction options apply; targets' filters do not (a golden test is about the profile).
pub fn profile_rows(
    profile_file: impl AsRef<Path>,
    objects: impl AsRef<Path>,
) -> Result<String, GoldenError> {
    let profile_file = profile_file.as_ref();
    let manifest = offline::load_objects(profile_file)?
        .into_iter()
        .find(|m| m["kind"] == "KollectProfile")
        .ok_or_else(|| GoldenError::NoProfile(profile_file.to_owned()))?;
    let profile: KollectProfile =
        serde_json::from_value(manifest).map_err(|source| GoldenError::Profile {
            path: profile_file.to_owned(),
            source,
        })?;
    let compiled = CompiledProfile::compile(&profile.spec, &ExtractOptions::default());
    let gvk = &profile.spec.target_gvk;
    let rows: Vec<Value> = offline::load_objects(objects.as_ref())?
        .iter()
        .filter(|o| o["apiVersion"] == gvk.api_version().as_str() && o["kind"] == gvk.kind.as_str())
        .map(|object| {
            let (namespace, name) = (&object["metadata"]["namespace"], &object["metadata"]["name"]);
            match compiled.extract(object) {
                Ok(attributes) => json!({ "namespace": namespace, "name": name, "attributes": attributes }),
                Err(error) => json!({ "namespace": namespace, "name": name, "error": error.to_string() }),
            }
        })
        .collect();
    let mut text = serde_json::to_string_pretty(&rows).unwrap_or_default();
    text.push('\n');
    Ok(text)
}

fn first_difference(expected: &str, actual: &str) -> String {
    let (e, a): (Vec<&str>, Vec<&str>) = (expected.lines().collect(), actual.lines().collect());
    let line = e
        .iter()
        .zip(&a)
        .position(|(x, y)| x != y)
        .unwrap_or(e.len().min(a.len()));
    let from = line.saturating_sub(2);
    let mut out = String::new();
    for i in from..(line + 3) {
        if let Some(x) = e.get(i) {
            out.push_str(&format!("  expected {:>4}: {x}\n", i + 1));
        }
        if let Some(y) = a.get(i) {
            out.push_str(&format!("  actual   {:>4}: {y}\n", i + 1));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn difference_points_at_the_first_changed_line() {
        let d = first_difference("a\nb\nc\n", "a\nB\nc\n");
        assert!(d.contains("expected    2: b"), "{d}");
        assert!(d.contains("actual      2: B"), "{d}");
    }

    #[test]
    fn matching_file_passes_and_missing_file_names_the_update_switch() {
        let dir = std::env::temp_dir().join(format!("kollect-golden-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("x.txt");
        std::fs::write(&file, "same\n").unwrap();
        assert_golden(&file, "same\n");
        let missing = std::panic::catch_unwind(|| assert_golden(dir.join("missing.txt"), "x"));
        let message = missing
            .unwrap_err()
            .downcast::<String>()
            .map(|s| *s)
            .unwrap_or_default();
        assert!(message.contains(UPDATE_ENV), "{message}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
