//! Operations seen before. Clients send the same few operations again and again (the SPA's
//! screens, a reviewer's script polling the queue), so each instance keeps:
//!
//! - by query text, the documents that parsed and passed every limit of [`super::limits`];
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
//! Only documents of at most [`MAX_KEPT_QUERY_BYTES`] are kept, with variables of at most
//! [`MAX_KEPT_VARIABLES_BYTES`], and each cache holds at most [`KEPT_BYTES`] of keys; the
//! least useful entries go first (quick_cache's S3-FIFO). Operations that are never repeated
//! (a script paging with a new `after` each time) only cost the lookup.

use std::sync::Arc;

use async_graphql::{Variables, parser::types::ExecutableDocument};
use quick_cache::{Weighter, sync::Cache};

/// Longest query text whose document and price are kept.
pub const MAX_KEPT_QUERY_BYTES: usize = 4 * 1024;
/// Longest variables (as JSON) whose price is kept.
pub const MAX_KEPT_VARIABLES_BYTES: usize = 1024;
/// The bytes of keys each cache holds at most. A parsed document takes roughly ten to twenty
/// times its text, so the document cache stays within some 20 MiB even when full of the largest
/// kept documents.
pub const KEPT_BYTES: u64 = 1024 * 1024;
/// The number of entries the caches are sized for (a hint; the bytes above are the bound).
const EXPECTED_ENTRIES: usize = 1_000;

/// Weighs an entry by the bytes of its key (at least 1, so every entry can be evicted).
#[derive(Clone, Copy)]
struct KeyBytes;

impl<V> Weighter<String, V> for KeyBytes {
    fn weight(&self, key: &String, _: &V) -> u64 {
        u64::try_from(key.len()).unwrap_or(u64::MAX).max(1)
    }
}

/// The documents and prices of operations seen before, shared by the transports of an instance.
pub struct KnownOperations {
    documents: Cache<String, Arc<ExecutableDocument>, KeyBytes>,
    prices: Cache<String, u32, KeyBytes>,
}

impl Default for KnownOperations {
    fn default() -> Self {
        Self {
            documents: Cache::with_weighter(EXPECTED_ENTRIES, KEPT_BYTES, KeyBytes),
            prices: Cache::with_weighter(EXPECTED_ENTRIES, KEPT_BYTES, KeyBytes),
        }
    }
}

impl KnownOperations {
    /// The document of `query`, if it was seen, parsed and passed every limit.
    pub fn document(&self, query: &str) -> Option<Arc<ExecutableDocument>> {
        self.documents.get(query)
    }

    /// Keeps the document of `query`; call only once it passed every limit.
    pub fn remember_document(&self, query: &str, document: Arc<ExecutableDocument>) {
        if query.len() <= MAX_KEPT_QUERY_BYTES {
            self.documents.insert(query.to_owned(), document);
        }
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
        known.remember_document(&long, document);
        assert!(known.document(&long).is_none());

        let big = variables(serde_json::json!({ "s": "x".repeat(MAX_KEPT_VARIABLES_BYTES) }));
        assert!(known.price_key("{ a }", None, &big).is_none());
    }

    #[test]
    fn the_caches_stay_within_their_bytes() {
        let known = KnownOperations::default();
        let document = Arc::new(async_graphql::parser::parse_query("{ a }").expect("parses"));
        for n in 0..20_000 {
            let query = format!("{{ a{n:0>200} }}");
            known.remember_document(&query, document.clone());
            let key = known
                .price_key(&query, None, &Variables::default())
                .expect("small enough");
            known.remember_price(key, 1);
        }
        assert!(known.documents.weight() <= KEPT_BYTES);
        assert!(known.prices.weight() <= KEPT_BYTES);
        assert!(known.documents.len() > 100, "the cache keeps entries");
        let newest = format!("{{ a{:0>200} }}", 19_999);
        assert!(
            known.document(&newest).is_some(),
            "the newest entry is kept"
        );
    }
}
