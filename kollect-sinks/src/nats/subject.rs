//! `spec.nats.subject`: a subject template with `{cluster}`, `{namespace}` and `{name}`
//! tokens, the subjects it renders for inventories and rows, and the wildcard filters a stream
//! captures them with.
//!
//! Placeholders stand for whole tokens (between dots), so every rendered subject is matched by
//! the template's filter and two inventories can never render the same subject. Values are
//! escaped so they stay one token: letters, digits and `-` as they are, an empty value as `_`,
//! every other byte (`.`, `_`, `*`, `>`, spaces...) as `%XX`. The escaping is injective, so
//! distinct values never share a subject.

use std::fmt::Write as _;

use kollect_core::model::RowKey;
use kollect_core::sink::InventoryRef;

/// One token of a template.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Token {
    Literal(String),
    Cluster,
    Namespace,
    Name,
}

/// A parsed subject template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubjectTemplate {
    tokens: Vec<Token>,
}

impl SubjectTemplate {
    /// Parses `template`; errors name `spec.nats.subject` and the offending token.
    pub fn parse(template: &str) -> Result<Self, String> {
        let template = template.trim();
        let invalid = |why: String| format!("spec.nats.subject {template:?}: {why}");
        if template.is_empty() {
            return Err("spec.nats.subject is required".to_owned());
        }
        let mut tokens = Vec::new();
        for token in template.split('.') {
            let parsed = match token {
                "" => {
                    return Err(invalid(
                        "empty token (two dots in a row, or a leading or trailing dot)".to_owned(),
                    ));
                }
                "{cluster}" => Token::Cluster,
                "{namespace}" => Token::Namespace,
                "{name}" => Token::Name,
                "*" | ">" => {
                    return Err(invalid(format!(
                        "{token:?} is a wildcard; messages are published to concrete subjects"
                    )));
                }
                literal if literal.contains(['{', '}']) => {
                    return Err(invalid(format!(
                        "token {literal:?}: placeholders are {{cluster}}, {{namespace}} and {{name}}, each a whole token between dots"
                    )));
                }
                literal if literal.chars().any(|c| c.is_whitespace() || c.is_control()) => {
                    return Err(invalid(format!("token {literal:?} contains whitespace")));
                }
                literal if literal.contains(['*', '>']) => {
                    return Err(invalid(format!(
                        "token {literal:?} contains a wildcard character"
                    )));
                }
                literal => Token::Literal(literal.to_owned()),
            };
            tokens.push(parsed);
        }
        Ok(Self { tokens })
    }

    /// Whether the template names the inventory completely (`{cluster}`, `{namespace}` and
    /// `{name}`), so the rendered subject belongs to one inventory alone.
    pub fn is_per_inventory(&self) -> bool {
        [Token::Cluster, Token::Namespace, Token::Name]
            .iter()
            .all(|t| self.tokens.contains(t))
    }

    /// The subject of `inventory`'s messages.
    pub fn render(&self, inventory: &InventoryRef) -> String {
        let mut out = String::new();
        for (i, token) in self.tokens.iter().enumerate() {
            if i > 0 {
                out.push('.');
            }
            match token {
                Token::Literal(text) => out.push_str(text),
                Token::Cluster => escape_into(&mut out, &inventory.cluster),
                Token::Namespace => escape_into(&mut out, inventory.path_namespace()),
                Token::Name => escape_into(&mut out, &inventory.name),
            }
        }
        out
    }

    /// The filter matching every subject the template renders (placeholders as `*`).
    pub fn filter(&self) -> String {
        self.tokens
            .iter()
            .map(|t| match t {
                Token::Literal(text) => text.as_str(),
                _ => "*",
            })
            .collect::<Vec<_>>()
            .join(".")
    }
}

/// The subject of one row: the inventory's subject, then the escaped target namespace,
/// target name and object UID.
pub fn row_subject(inventory_subject: &str, key: &RowKey) -> String {
    let mut out = String::with_capacity(inventory_subject.len() + 64);
    out.push_str(inventory_subject);
    for part in [&key.target_namespace, &key.target_name, &key.uid] {
        out.push('.');
        escape_into(&mut out, part);
    }
    out
}

/// The filter matching every row subject of an inventory (or of a template's filter).
pub(super) fn rows_filter(inventory_subject: &str) -> String {
    format!("{inventory_subject}.>")
}

fn escape_into(out: &mut String, value: &str) {
    if value.is_empty() {
        out.push('_');
        return;
    }
    for byte in value.bytes() {
        if byte.is_ascii_alphanumeric() || byte == b'-' {
            out.push(char::from(byte));
        } else {
            // Writing to a String cannot fail.
            let _ = write!(out, "%{byte:02X}");
        }
    }
}

/// Whether the stream subject `pattern` captures every subject `filter` matches
/// (`*` one token, `>` one or more trailing tokens).
pub(super) fn covers(pattern: &str, filter: &str) -> bool {
    let mut pattern = pattern.split('.');
    let mut filter = filter.split('.');
    loop {
        match (pattern.next(), filter.next()) {
            (Some(">"), Some(_)) => return true,
            (Some("*"), Some(token)) if token != ">" => {}
            (Some(p), Some(f)) if p == f && p != "*" && p != ">" => {}
            (None, None) => return true,
            _ => return false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> RowKey {
        RowKey {
            target_namespace: "shop".into(),
            target_name: "web.targets".into(),
            uid: "8d1c-42".into(),
        }
    }

    #[test]
    fn templates_render_escaped_whole_tokens() {
        let template = SubjectTemplate::parse("kollect.{cluster}.{namespace}.{name}").unwrap();
        assert!(template.is_per_inventory());
        let inventory = InventoryRef::namespaced("shop", "images.v2").with_cluster("eu_west 1");
        assert_eq!(
            template.render(&inventory),
            "kollect.eu%5Fwest%201.shop.images%2Ev2"
        );
        assert_eq!(
            template.render(&InventoryRef::cluster_scoped("fleet")),
            "kollect._.cluster.fleet"
        );
        assert_eq!(template.filter(), "kollect.*.*.*");
        let subject = template.render(&inventory);
        assert_eq!(
            row_subject(&subject, &key()),
            "kollect.eu%5Fwest%201.shop.images%2Ev2.shop.web%2Etargets.8d1c-42"
        );
        assert!(covers(
            &rows_filter(&template.filter()),
            &row_subject(&subject, &key())
        ));
        assert!(covers(&template.filter(), &subject));
        let fixed = SubjectTemplate::parse("inventory.events").unwrap();
        assert!(!fixed.is_per_inventory());
        assert_eq!(fixed.render(&inventory), "inventory.events");
    }

    #[test]
    fn bad_templates_are_refused_by_token() {
        for (template, expected) in [
            ("", "spec.nats.subject is required"),
            ("a..b", "empty token"),
            ("a.*", "is a wildcard"),
            ("inv-{name}", "each a whole token between dots"),
            ("a.{names}", "placeholders are {cluster}, {namespace} and {name}"),
            ("a b", "contains whitespace"),
            ("a.b>", "contains a wildcard character"),
        ] {
            let error = SubjectTemplate::parse(template).unwrap_err();
            assert!(error.contains(expected), "{template:?}: {error}");
        }
    }

    #[test]
    fn stream_subjects_cover_filters_token_by_token() {
        assert!(covers("kollect.>", "kollect.*.*.*"));
        assert!(covers("kollect.*.*.*.>", "kollect.prod.shop.images.>"));
        assert!(covers("a.b", "a.b"));
        assert!(!covers("a.b", "a.*"));
        assert!(!covers("a.*", "a.>"));
        assert!(!covers("a.*", "a.b.c"));
        assert!(!covers("a.b.c", "a.b"));
        assert!(!covers("kollect.*.*.*", "kollect.*.*.*.>"));
    }
}
