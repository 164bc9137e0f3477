//! Limits on a GraphQL document checked before execution, beyond the depth and complexity
//! limits the schema enforces: size, aliases, root fields, and fields after fragment expansion
//! (so a fragment fan-out cannot multiply work unseen). A refusal costs one parse and no
//! resolver or database work.

use std::collections::HashMap;

use async_graphql::parser::types::{
    DocumentOperations, ExecutableDocument, FragmentDefinition, Selection, SelectionSet,
};
use async_graphql::{Name, Positioned};

/// Largest accepted document, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 32 * 1024;
/// Most aliased fields in one operation, after fragment expansion.
pub const MAX_ALIASES: usize = 30;
/// Most root fields in one operation.
pub const MAX_ROOT_FIELDS: usize = 20;
/// Most fields in one operation after fragment expansion.
pub const MAX_EXPANDED_FIELDS: usize = 2_000;
/// Deepest fragment spread chain followed.
const MAX_SPREAD_DEPTH: usize = 32;

/// Why a document was refused.
#[derive(Debug, PartialEq, Eq)]
pub struct LimitExceeded {
    pub code: &'static str,
    pub message: String,
}

impl LimitExceeded {
    fn new(code: &'static str, message: String) -> Self {
        Self { code, message }
    }
}

/// Checks the raw size; call before parsing.
pub fn check_size(query: &str) -> Result<(), LimitExceeded> {
    if query.len() > MAX_DOCUMENT_BYTES {
        return Err(LimitExceeded::new(
            "QUERY_TOO_LARGE",
            format!(
                "the document has {} bytes; at most {MAX_DOCUMENT_BYTES} are accepted",
                query.len()
            ),
        ));
    }
    Ok(())
}

/// Checks every operation of a parsed document.
pub fn check_document(document: &ExecutableDocument) -> Result<(), LimitExceeded> {
    let operations: Vec<&SelectionSet> = match &document.operations {
        DocumentOperations::Single(operation) => vec![&operation.node.selection_set.node],
        DocumentOperations::Multiple(operations) => operations
            .values()
            .map(|o| &o.node.selection_set.node)
            .collect(),
    };
    for selection_set in operations {
        let root_fields = selection_set.items.len();
        if root_fields > MAX_ROOT_FIELDS {
            return Err(LimitExceeded::new(
                "TOO_MANY_ROOT_FIELDS",
                format!(
                    "the operation selects {root_fields} root fields; at most {MAX_ROOT_FIELDS} are accepted"
                ),
            ));
        }
        let mut tally = Tally::default();
        tally.walk(selection_set, &document.fragments, 0)?;
    }
    Ok(())
}

#[derive(Default)]
struct Tally {
    fields: usize,
    aliases: usize,
}

impl Tally {
    fn walk(
        &mut self,
        selection_set: &SelectionSet,
        fragments: &HashMap<Name, Positioned<FragmentDefinition>>,
        spread_depth: usize,
    ) -> Result<(), LimitExceeded> {
        if spread_depth > MAX_SPREAD_DEPTH {
            return Err(LimitExceeded::new(
                "FRAGMENTS_TOO_DEEP",
                format!("fragment spreads nest deeper than {MAX_SPREAD_DEPTH}"),
            ));
        }
        for item in &selection_set.items {
            match &item.node {
                Selection::Field(field) => {
                    self.fields += 1;
                    if field.node.alias.is_some() {
                        self.aliases += 1;
                    }
                    if self.aliases > MAX_ALIASES {
                        return Err(LimitExceeded::new(
                            "TOO_MANY_ALIASES",
                            format!("the operation uses more than {MAX_ALIASES} aliases"),
                        ));
                    }
                    if self.fields > MAX_EXPANDED_FIELDS {
                        return Err(LimitExceeded::new(
                            "TOO_MANY_FIELDS",
                            format!(
                                "the operation selects more than {MAX_EXPANDED_FIELDS} fields once fragments are expanded"
                            ),
                        ));
                    }
                    self.walk(&field.node.selection_set.node, fragments, spread_depth)?;
                }
                Selection::InlineFragment(fragment) => {
                    self.walk(
                        &fragment.node.selection_set.node,
                        fragments,
                        spread_depth + 1,
                    )?;
                }
                Selection::FragmentSpread(spread) => {
                    // Unknown fragments are reported by validation.
                    if let Some(fragment) = fragments.get(&spread.node.fragment_name.node) {
                        self.walk(
                            &fragment.node.selection_set.node,
                            fragments,
                            spread_depth + 1,
                        )?;
                    }
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use async_graphql::parser::parse_query;

    use super::*;

    fn check(query: &str) -> Result<(), LimitExceeded> {
        check_document(&parse_query(query).expect("parses"))
    }

    #[test]
    fn fragment_fan_out_is_counted_after_expansion() {
        // Each level doubles the fields: 2^12 selections from a few hundred bytes.
        let mut query = String::from("query { viewer { ...F0 } }\n");
        for level in 0..12 {
            query.push_str(&format!(
                "fragment F{level} on User {{ ...F{} ...F{} }}\n",
                level + 1,
                level + 1
            ));
        }
        query.push_str("fragment F12 on User { id }\n");
        assert_eq!(check(&query).map_err(|e| e.code), Err("TOO_MANY_FIELDS"));
    }

    #[test]
    fn aliases_root_fields_and_size_are_capped() {
        let aliases: String = (0..31).map(|i| format!("a{i}: id ")).collect();
        assert_eq!(
            check(&format!("{{ viewer {{ {aliases} }} }}")).map_err(|e| e.code),
            Err("TOO_MANY_ALIASES")
        );
        let roots: String = (0..21).map(|_| "viewer { id } ").collect();
        assert_eq!(
            check(&format!("{{ {roots} }}")).map_err(|e| e.code),
            Err("TOO_MANY_ROOT_FIELDS")
        );
        assert!(check("{ viewer { id email } }").is_ok());
        assert_eq!(
            check_size(&"x".repeat(MAX_DOCUMENT_BYTES + 1)).map_err(|e| e.code),
            Err("QUERY_TOO_LARGE")
        );
    }

    #[test]
    fn self_referencing_fragments_stop_at_the_spread_depth() {
        let query = "query { viewer { ...A } } fragment A on User { id ...A }";
        assert!(check(query).is_err());
    }
}
