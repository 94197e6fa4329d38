//! Statement text of the PostgreSQL sink.

/// Quotes an identifier (`"` doubled).
pub(super) fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// The table DDL.
pub fn ddl(schema: &str, table: &str) -> String {
    format!(
        "CREATE TABLE IF NOT EXISTS {}.{} (\n  inventory_namespace TEXT NOT NULL,\n  inventory_name TEXT NOT NULL,\n  target_name TEXT NOT NULL,\n  source_uid TEXT NOT NULL,\n  cluster TEXT NOT NULL DEFAULT '',\n  resource_namespace TEXT NOT NULL DEFAULT '',\n  payload JSONB NOT NULL,\n  exported_at TIMESTAMPTZ NOT NULL,\n  PRIMARY KEY (cluster, inventory_namespace, inventory_name, target_name, source_uid)\n)",
        quote(schema),
        quote(table)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddl_quotes_identifiers_and_keys_on_cluster() {
        let ddl = ddl("my\"schema", "items");
        assert!(
            ddl.starts_with("CREATE TABLE IF NOT EXISTS \"my\"\"schema\".\"items\""),
            "{ddl}"
        );
        assert!(
            ddl.contains(
                "PRIMARY KEY (cluster, inventory_namespace, inventory_name, target_name, source_uid)"
            )
        );
    }
}
