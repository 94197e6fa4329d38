//! Object path templates (`spec.pathTemplate`): `{cluster}` (default `default`), `{namespace}`
//! (`cluster` for cluster inventories), `{name}`, `{generation}` and `{extension}`.

use kollect_core::sink::{ExportRequest, InventoryRef, SinkError};

/// The default template.
pub const DEFAULT_TEMPLATE: &str = "inventory/{namespace}/{name}{extension}";

/// Renders `template` for an inventory.
pub fn render(
    template: &str,
    inventory: &InventoryRef,
    generation: i64,
    extension: &str,
) -> Result<String, SinkError> {
    render_text(template, inventory, &generation.to_string(), extension)
}

/// What separates the two halves [`split_at_generation`] returns: a character no placeholder
/// value contains.
const GENERATION_MARK: &str = "\u{0}";

/// `template` rendered for an inventory on both sides of its `{generation}`: every key of the
/// inventory is `<before><generation><after>`. `None` when the template has no `{generation}`;
/// an error when it has several (a key would not name one generation).
pub fn split_at_generation(
    template: &str,
    inventory: &InventoryRef,
    extension: &str,
) -> Result<Option<(String, String)>, SinkError> {
    let rendered = render_text(template, inventory, GENERATION_MARK, extension)?;
    let mut halves = rendered.split(GENERATION_MARK);
    match (halves.next(), halves.next(), halves.next()) {
        (Some(_), None, _) => Ok(None),
        (Some(before), Some(after), None) => Ok(Some((before.to_owned(), after.to_owned()))),
        _ => Err(SinkError::terminal(format!(
            "pathTemplate \"{template}\": {{generation}} may appear only once"
        ))),
    }
}

fn render_text(
    template: &str,
    inventory: &InventoryRef,
    generation: &str,
    extension: &str,
) -> Result<String, SinkError> {
    let cluster = if inventory.cluster.is_empty() {
        "default"
    } else {
        &inventory.cluster
    };
    let mut out = String::with_capacity(template.len() + 32);
    let mut rest = template;
    while let Some(start) = rest.find('{') {
        out.push_str(&rest[..start]);
        let Some(len) = rest[start..].find('}') else {
            return Err(SinkError::terminal(format!(
                "pathTemplate \"{template}\": unclosed \"{{\""
            )));
        };
        let placeholder = &rest[start + 1..start + len];
        match placeholder {
            "cluster" => out.push_str(cluster),
            "namespace" => out.push_str(inventory.path_namespace()),
            "name" => out.push_str(&inventory.name),
            "generation" => out.push_str(generation),
            "extension" => out.push_str(extension),
            other => {
                return Err(SinkError::terminal(format!(
                    "pathTemplate \"{template}\": unknown placeholder {{{other}}} (supported: cluster, namespace, name, generation, extension)"
                )));
            }
        }
        rest = &rest[start + len + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Renders `template` for `request`, with the part suffix of a multipart export.
pub fn render_for(template: &str, request: &ExportRequest, extension: &str) -> Result<String, SinkError> {
    Ok(request.part_path(&render(
        template,
        &request.inventory,
        request.generation,
        extension,
    )?))
}

/// The template of `inventory`'s documents: the configured one, or the default, under a
/// `<cluster>/` directory when the inventory has a cluster identity (so several contexts
/// exporting to one place cannot overwrite each other).
pub fn template_for(configured: Option<&str>, inventory: &InventoryRef) -> String {
    match configured {
        Some(template) => template.to_owned(),
        None if inventory.cluster.is_empty() => DEFAULT_TEMPLATE.to_owned(),
        None => format!("{{cluster}}/{DEFAULT_TEMPLATE}"),
    }
}

/// Whether `text` is the `NNNN-of-NNNN` of a part name (`<stem>.part-NNNN-of-NNNN<ext>`).
pub fn is_part_name(text: &str) -> bool {
    let mut halves = text.split("-of-");
    matches!((halves.next(), halves.next(), halves.next()), (Some(a), Some(b), None)
        if !a.is_empty() && !b.is_empty() && a.bytes().all(|c| c.is_ascii_digit()) && b.bytes().all(|c| c.is_ascii_digit()))
}

/// Checks that `path` stays inside a root directory: relative, no `..`, no empty segments.
pub fn check_relative(path: &str) -> Result<(), SinkError> {
    let bad = path.starts_with('/')
        || path.contains('\\')
        || path
            .split('/')
            .any(|segment| segment.is_empty() || segment == "..")
        || std::path::Path::new(path).is_absolute();
    if bad {
        return Err(SinkError::terminal(format!(
            "path \"{path}\" must be relative and stay inside the output directory"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_render_and_unknown_ones_are_named() {
        let inventory = InventoryRef::namespaced("team-a", "apps").with_cluster("prod");
        assert_eq!(
            render(
                "{cluster}/{namespace}/{name}-{generation}{extension}",
                &inventory,
                3,
                ".json"
            )
            .unwrap(),
            "prod/team-a/apps-3.json"
        );
        assert_eq!(
            render(DEFAULT_TEMPLATE, &InventoryRef::cluster_scoped("all"), 1, ".yaml").unwrap(),
            "inventory/cluster/all.yaml"
        );
        assert_eq!(
            render("{namespace}", &InventoryRef::namespaced("a", "b"), 1, "").unwrap(),
            "a"
        );
        let error = render("{nope}", &inventory, 1, "").unwrap_err();
        assert!(error.message().contains("{nope}"), "{error}");
    }

    #[test]
    fn a_template_splits_at_its_generation() {
        let inventory = InventoryRef::namespaced("ns", "inv");
        assert_eq!(
            split_at_generation("{namespace}/{name}/g={generation}{extension}", &inventory, ".csv").unwrap(),
            Some(("ns/inv/g=".to_owned(), ".csv".to_owned()))
        );
        assert_eq!(
            split_at_generation(DEFAULT_TEMPLATE, &inventory, ".csv").unwrap(),
            None
        );
        let twice = split_at_generation("{generation}/{generation}", &inventory, "").unwrap_err();
        assert!(twice.message().contains("only once"), "{twice}");
    }

    #[test]
    fn escaping_paths_are_refused() {
        for bad in ["/etc/passwd", "../x", "a/../../x", "a//b", "a\\b"] {
            assert!(check_relative(bad).is_err(), "{bad}");
        }
        assert!(check_relative("inventory/a/b.json").is_ok());
    }
}
