//! Statement text of the PostgreSQL sink.

use kollect_core::api::v1alpha1::DeletedRows;

/// Quotes an identifier (`"` doubled).
pub(super) fn quote(identifier: &str) -> String {
    format!("\"{}\"", identifier.replace('"', "\"\""))
}

/// The table DDL; with [`DeletedRows::SoftDelete`] the table has a nullable `deleted_at` column.
pub fn ddl(schema: &str, table: &str, deleted_rows: DeletedRows) -> String {
    let deleted_at = match deleted_rows {
        DeletedRows::SoftDelete => "  deleted_at TIMESTAMPTZ,\n",
        DeletedRows::Delete => "",
    };
    format!(
        "CREATE TABLE IF NOT EXISTS {}.{} (\n  inventory_namespace TEXT NOT NULL,\n  inventory_name TEXT NOT NULL,\n  target_name TEXT NOT NULL,\n  source_uid TEXT NOT NULL,\n  cluster TEXT NOT NULL DEFAULT '',\n  resource_namespace TEXT NOT NULL DEFAULT '',\n  payload JSONB NOT NULL,\n  exported_at TIMESTAMPTZ NOT NULL,\n{deleted_at}  PRIMARY KEY (cluster, inventory_namespace, inventory_name, target_name, source_uid)\n)",
        quote(schema),
        quote(table)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddl_quotes_identifiers_and_keys_on_cluster() {
        let plain = ddl("my\"schema", "items", DeletedRows::Delete);
        assert!(
            plain.starts_with("CREATE TABLE IF NOT EXISTS \"my\"\"schema\".\"items\""),
            "{plain}"
        );
        assert!(
            plain.contains(
                "PRIMARY KEY (cluster, inventory_namespace, inventory_name, target_name, source_uid)"
            )
        );
        assert!(!plain.contains("deleted_at"));
        assert!(ddl("s", "t", DeletedRows::SoftDelete).contains("\n  deleted_at TIMESTAMPTZ,\n"));
    }
}
