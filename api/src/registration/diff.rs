//! Field-level differences between two drafts (or frozen submissions).

use serde_json::Value;

/// One field whose value differs; `None` where the field is absent.
#[derive(Clone, Debug, PartialEq)]
pub struct FieldChange {
    /// Dotted path, e.g. `providerDetails.senderEmails`.
    pub path: String,
    pub before: Option<Value>,
    pub after: Option<Value>,
}

/// The fields that differ between `before` and `after`. Objects are compared key by key;
/// anything else (lists included) is compared as a whole value at its path.
pub fn changes(before: &Value, after: &Value) -> Vec<FieldChange> {
    let mut out = Vec::new();
    walk("", Some(before), Some(after), &mut out);
    out
}

fn walk(path: &str, before: Option<&Value>, after: Option<&Value>, out: &mut Vec<FieldChange>) {
    let before = before.filter(|v| !v.is_null());
    let after = after.filter(|v| !v.is_null());
    match (before, after) {
        (Some(Value::Object(a)), Some(Value::Object(b))) => {
            let mut keys: Vec<&String> = a.keys().chain(b.keys()).collect();
            keys.sort();
            keys.dedup();
            for key in keys {
                let child = if path.is_empty() {
                    key.clone()
                } else {
                    format!("{path}.{key}")
                };
                walk(&child, a.get(key), b.get(key), out);
            }
        }
        (Some(Value::Object(a)), None) => {
            for (key, value) in a {
                walk(&join(path, key), Some(value), None, out);
            }
        }
        (None, Some(Value::Object(b))) => {
            for (key, value) in b {
                walk(&join(path, key), None, Some(value), out);
            }
        }
        (a, b) if a != b => out.push(FieldChange {
            path: path.to_owned(),
            before: a.cloned(),
            after: b.cloned(),
        }),
        _ => {}
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn changes_are_reported_per_leaf_field() {
        let before = json!({ "scope": "GLOBAL", "contactInfo": { "name": "A", "phone": null } });
        let after = json!({ "scope": "GLOBAL", "contactInfo": { "name": "B", "phone": "+14255550100" },
                            "providerDetails": { "senderEmails": ["a@contoso.com"] } });
        let paths: Vec<String> = changes(&before, &after)
            .into_iter()
            .map(|c| c.path)
            .collect();
        assert_eq!(
            paths,
            vec![
                "contactInfo.name".to_owned(),
                "contactInfo.phone".to_owned(),
                "providerDetails.senderEmails".to_owned(),
            ]
        );
        assert!(changes(&after, &after).is_empty());
    }
}
