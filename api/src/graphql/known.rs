//! Operations seen before. Clients send the same few operations again and again (the SPA's
//! screens, a reviewer's script polling the queue), so each instance keeps:
//!
//! - by query text, the parsed documents of operations that passed every limit of
//!   [`super::limits`] and strict validation;
//! - by query text, operation name and variables, the complexity of the operations that passed
//!   strict validation.
//!
//! A repeated operation then skips the lexical scan, the parser, the document limits and strict
//! validation. Nothing else is skipped: it is still charged its complexity to the caller's
//! budget, and the executing schema still validates it in fast mode (depth and complexity)
//! before a resolver runs. A cached verdict is the one strict validation would give again, as
//! that depends only on the schema (fixed while the process runs), the document and the
//! variables.
//!
//! A document is kept only once an operation of it passed validation, so text that parses but
//! means nothing (which is never charged to a budget) cannot fill the cache. Documents are
//! weighed by an estimate of their parsed size, not their text: a parsed field takes a few
//! hundred bytes, so a 4 KiB text of two thousand one-letter fields would take half a
//! megabyte. Only documents of at most [`MAX_KEPT_QUERY_BYTES`] of text and
//! [`MAX_DOCUMENT_WEIGHT`] of estimated size are kept, with variables of at most
//! [`MAX_KEPT_VARIABLES_BYTES`]; the documents kept weigh at most [`KEPT_DOCUMENT_WEIGHT`] in
//! all, and the prices at most [`KEPT_PRICE_KEY_BYTES`] of keys. The least useful entries go
//! first (quick_cache's S3-FIFO). Operations that are never repeated (a script paging with a
//! new `after` each time) only cost the lookup.

use std::sync::Arc;

use async_graphql::{
    Variables,
    parser::types::{ExecutableDocument, Selection, SelectionSet},
};
use quick_cache::{Weighter, sync::Cache};

/// Longest query text whose document and price are kept.
pub const MAX_KEPT_QUERY_BYTES: usize = 4 * 1024;
/// Longest variables (as JSON) whose price is kept.
pub const MAX_KEPT_VARIABLES_BYTES: usize = 1024;
/// Heaviest document kept, by [`document_weight`] (about 800 fields).
pub const MAX_DOCUMENT_WEIGHT: u64 = 256 * 1024;
/// What the documents kept weigh at most in all, by [`document_weight`].
pub const KEPT_DOCUMENT_WEIGHT: u64 = 16 * 1024 * 1024;
/// The bytes of keys the price cache holds at most (its values are numbers).
pub const KEPT_PRICE_KEY_BYTES: u64 = 1024 * 1024;
/// The number of entries the caches are sized for (a hint; the weights above are the bound).
const EXPECTED_ENTRIES: usize = 1_000;
/// What one parsed node (a field, a fragment, an argument, a directive, a variable definition)
/// takes, at least: measured at about 280 bytes for fields of one-letter names.
const NODE_BYTES: u64 = 320;
/// What a byte of text takes once parsed, at most, beside its nodes (names, values).
const TEXT_FACTOR: u64 = 16;

/// An estimate of the memory a parsed document takes, from its text and its nodes.
pub fn document_weight(query: &str, document: &ExecutableDocument) -> u64 {
    fn nodes(set: &SelectionSet) -> u64 {
        set.items
            .iter()
            .map(|item| match &item.node {
                Selection::Field(field) => {
                    let field = &field.node;
                    1 + count(field.arguments.len())
                        + count(field.directives.len())
                        + nodes(&field.selection_set.node)
                }
                Selection::FragmentSpread(spread) => 1 + count(spread.node.directives.len()),
                Selection::InlineFragment(fragment) => {
                    1 + count(fragment.node.directives.len())
                        + nodes(&fragment.node.selection_set.node)
                }
            })
            .sum()
    }
    fn count(n: usize) -> u64 {
        u64::try_from(n).unwrap_or(u64::MAX)
    }
    // Nesting is bounded by the bracket limit checked before parsing, so the walk is shallow.
    let operations: u64 = document
        .operations
        .iter()
        .map(|(_, operation)| {
            let operation = &operation.node;
            1 + count(operation.variable_definitions.len())
                + count(operation.directives.len())
                + nodes(&operation.selection_set.node)
        })
        .sum();
    let fragments: u64 = document
        .fragments
        .values()
        .map(|fragment| {
            1 + count(fragment.node.directives.len()) + nodes(&fragment.node.selection_set.node)
        })
        .sum();
    (operations + fragments)
        .saturating_mul(NODE_BYTES)
        .saturating_add(count(query.len()).saturating_mul(TEXT_FACTOR))
}

/// A kept document and its weight.
#[derive(Clone)]
struct KnownDocument {
    document: Arc<ExecutableDocument>,
    weight: u64,
}

/// Weighs a document by its estimated parsed size.
#[derive(Clone, Copy)]
struct DocumentWeight;

impl Weighter<String, KnownDocument> for DocumentWeight {
    fn weight(&self, _: &String, known: &KnownDocument) -> u64 {
        known.weight.max(1)
    }
}

/// Weighs a price by the bytes of its key (at least 1, so every entry can be evicted).
#[derive(Clone, Copy)]
struct KeyBytes;

impl Weighter<String, u32> for KeyBytes {
    fn weight(&self, key: &String, _: &u32) -> u64 {
        u64::try_from(key.len()).unwrap_or(u64::MAX).max(1)
    }
}

/// The documents and prices of operations seen before, shared by the transports of an instance.
pub struct KnownOperations {
    documents: Cache<String, KnownDocument, DocumentWeight>,
    prices: Cache<String, u32, KeyBytes>,
}

impl Default for KnownOperations {
    fn default() -> Self {
        Self {
            documents: Cache::with_weighter(EXPECTED_ENTRIES, KEPT_DOCUMENT_WEIGHT, DocumentWeight),
            prices: Cache::with_weighter(EXPECTED_ENTRIES, KEPT_PRICE_KEY_BYTES, KeyBytes),
        }
    }
}

impl KnownOperations {
    /// The document of `query`, if it was kept.
    pub fn document(&self, query: &str) -> Option<Arc<ExecutableDocument>> {
        self.documents.get(query).map(|known| known.document)
    }

    /// Keeps the document of `query`; call only once it passed every limit and an operation of
    /// it passed strict validation. Too long a text or too heavy a document is not kept.
    pub fn remember_document(&self, query: &str, document: &Arc<ExecutableDocument>) {
        if query.len() > MAX_KEPT_QUERY_BYTES {
            return;
        }
        let weight = document_weight(query, document);
        if weight <= MAX_DOCUMENT_WEIGHT {
            self.documents.insert(
                query.to_owned(),
                KnownDocument {
                    document: document.clone(),
                    weight,
                },
            );
        }
    }

    /// How many documents are kept, and what they weigh in all.
    pub fn documents_kept(&self) -> (usize, u64) {
        (self.documents.len(), self.documents.weight())
    }

    /// The key of an operation's price, or `None` when it is too large to be kept.
    pub fn price_key(
        &self,
        query: &str,
        operation_name: Option<&str>,
        variables: &Variables,
    ) -> Option<String> {
        if query.len() > MAX_KEPT_QUERY_BYTES {
            return None;
        }
        let variables = serde_json::to_string(variables).ok()?;
        if variables.len() > MAX_KEPT_VARIABLES_BYTES {
            return None;
        }
        // Each part but the last is preceded by its length, so no two operations share a key
        // whatever their texts hold.
        let name = operation_name.unwrap_or("");
        Some(format!(
            "{}:{query}{}:{name}{variables}",
            query.len(),
            name.len()
        ))
    }

    /// The complexity of the operation with this key, if it passed strict validation before.
    pub fn price(&self, key: &str) -> Option<u32> {
        self.prices.get(key)
    }

    /// Keeps the complexity of an operation that passed strict validation.
    pub fn remember_price(&self, key: String, cost: u32) {
        self.prices.insert(key, cost);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn variables(json: serde_json::Value) -> Variables {
        Variables::from_json(json)
    }

    #[test]
    fn price_keys_tell_apart_what_validation_depends_on() {
        let known = KnownOperations::default();
        let none = variables(serde_json::json!({}));
        let key = |query: &str, name: Option<&str>, vars: &Variables| {
            known.price_key(query, name, vars).expect("small enough")
        };
        let base = key("query A { viewer { id } }", Some("A"), &none);
        assert_ne!(base, key("query A { viewer { id } }", None, &none));
        assert_ne!(
            base,
            key(
                "query A { viewer { id } }",
                Some("A"),
                &variables(serde_json::json!({ "first": 1 }))
            )
        );
        assert_ne!(
            key("{ a }", None, &variables(serde_json::json!({ "first": 1 }))),
            key("{ a }", None, &variables(serde_json::json!({ "first": 2 })))
        );
        // A text that ends like another's name must not borrow its key.
        assert_ne!(key("{ a }1:B", None, &none), key("{ a }", Some("B"), &none));
        assert_eq!(base, key("query A { viewer { id } }", Some("A"), &none));
    }

    #[test]
    fn large_operations_are_not_kept() {
        let known = KnownOperations::default();
        let long = format!("{{ viewer {{ id }} }}{}", " ".repeat(MAX_KEPT_QUERY_BYTES));
        assert!(
            known
                .price_key(&long, None, &Variables::default())
                .is_none()
        );
        let document = Arc::new(async_graphql::parser::parse_query(&long).expect("parses"));
        known.remember_document(&long, &document);
        assert!(known.document(&long).is_none());

        let big = variables(serde_json::json!({ "s": "x".repeat(MAX_KEPT_VARIABLES_BYTES) }));
        assert!(known.price_key("{ a }", None, &big).is_none());
    }

    fn parsed(query: &str) -> Arc<ExecutableDocument> {
        Arc::new(async_graphql::parser::parse_query(query).expect("parses"))
    }

    #[test]
    fn the_caches_stay_within_their_weights() {
        let known = KnownOperations::default();
        for n in 0..20_000 {
            let query = format!("{{ a{n:0>200} b c d e f g h i j k l m n o p }}");
            known.remember_document(&query, &parsed(&query));
            let key = known
                .price_key(&query, None, &Variables::default())
                .expect("small enough");
            known.remember_price(key, 1);
        }
        let (kept, weight) = known.documents_kept();
        assert!(weight <= KEPT_DOCUMENT_WEIGHT, "{weight}");
        assert!(known.prices.weight() <= KEPT_PRICE_KEY_BYTES);
        assert!(kept > 100, "the cache keeps entries: {kept}");
        let newest = format!("{{ a{:0>200} b c d e f g h i j k l m n o p }}", 19_999);
        assert!(
            known.document(&newest).is_some(),
            "the newest entry is kept"
        );
    }

    #[test]
    fn documents_are_weighed_by_their_nodes_not_their_text() {
        // Two thousand one-letter fields in under 4 KiB of text: half a megabyte once parsed.
        let wide = format!("{{ v {{ {} }} }}", vec!["a"; 1_990].join(" "));
        assert!(wide.len() < MAX_KEPT_QUERY_BYTES);
        let weight = document_weight(&wide, &parsed(&wide));
        assert!(weight > 500 * 1024, "{weight}");
        assert!(weight > MAX_DOCUMENT_WEIGHT);
        let known = KnownOperations::default();
        known.remember_document(&wide, &parsed(&wide));
        assert!(known.document(&wide).is_none(), "too heavy to keep");
        assert_eq!(known.documents_kept(), (0, 0));

        // Fragments, arguments, directives and variables count too.
        let rich = "query Q($first: Int, $flag: Boolean!) { \
            reviewQueue(first: $first) @include(if: $flag) { ...Page } } \
            fragment Page on SubmissionConnection { totalCount ... on SubmissionConnection { \
            edges { node { id } } } }";
        let nodes = 1 + 2 // the operation and its variables
            + 1 + 1 + 1 // reviewQueue, its argument and directive
            + 1 // the spread
            + 1 + 1 + 1 + 1 + 1 + 1; // the fragment, totalCount, the inline fragment, edges, node, id
        assert_eq!(
            document_weight(rich, &parsed(rich)),
            nodes * NODE_BYTES + u64::try_from(rich.len()).expect("a short text") * TEXT_FACTOR
        );

        // A page of the review queue is kept.
        let page = "query($first: Int) { reviewQueue(first: $first) { totalCount \
            pageInfo { hasNextPage endCursor } edges { node { id number status scope \
            provider { id name } sections { scope providerDetails { senderEmails } } } } } }";
        known.remember_document(page, &parsed(page));
        assert!(known.document(page).is_some());
        let (kept, weight) = known.documents_kept();
        assert_eq!(kept, 1);
        assert!(weight < 32 * 1024, "{weight}");
    }
}
