//! Property-based fuzzing of everything that reads untrusted text: the GraphQL-over-HTTP
//! request parsers (POST body, GET query string), the document limits, and the domain
//! validators. Properties: nothing panics, and an accepted value is stable (parsing its
//! normalised form gives the same value and the same text).
//!
//! A few dozen cases per property run with `cargo test`; run long with
//! `PROPTEST_CASES=200000 cargo test --release --lib fuzz` (see README.md, "Robustness").
//! Failing inputs found so far are kept as plain regression tests at the end.

use proptest::prelude::*;
use serde_json::{Value, json};

use crate::{
    domain::{
        BoundedText, DomainName, EmailAddress, HttpsUrl, PhoneNumber, RsaPublicKey, SenderAddress,
        TargetUrl,
    },
    graphql::limits,
    http::{parse_get_params, parse_post_body},
};

/// Cases per property: `PROPTEST_CASES`, else a number small enough for every `cargo test`.
fn config() -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(48);
    ProptestConfig {
        cases,
        // Shrinking a failure of a slow parser can take long; a short bound is enough here.
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    }
}

/// Text assembled from fragments that matter to JSON and GraphQL parsers (brackets, quotes,
/// escapes, surrogates, huge numbers, comments, block strings) mixed with arbitrary text.
fn tricky_text() -> impl Strategy<Value = String> {
    let fragment = prop_oneof![
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just("[".to_owned()),
        Just("]".to_owned()),
        Just("(".to_owned()),
        Just(")".to_owned()),
        Just("\"".to_owned()),
        Just("\"\"\"".to_owned()),
        Just("\\\"\"\"".to_owned()),
        Just("\\".to_owned()),
        Just("\\u".to_owned()),
        Just("\\ud800".to_owned()),
        Just("\\udc00".to_owned()),
        Just("#".to_owned()),
        Just("\n".to_owned()),
        Just("\r".to_owned()),
        Just(":".to_owned()),
        Just(",".to_owned()),
        Just("\"query\"".to_owned()),
        Just("\"variables\"".to_owned()),
        Just("\"operationName\"".to_owned()),
        Just("1e400".to_owned()),
        Just("-0".to_owned()),
        Just("18446744073709551616".to_owned()),
        Just("NaN".to_owned()),
        Just("null".to_owned()),
        Just("query".to_owned()),
        Just("mutation".to_owned()),
        Just("fragment F on User".to_owned()),
        Just("...F".to_owned()),
        Just("$x".to_owned()),
        Just("@".to_owned()),
        Just("%".to_owned()),
        Just("&".to_owned()),
        Just("=".to_owned()),
        Just("+".to_owned()),
        Just("%FF".to_owned()),
        Just("%7B".to_owned()),
        ".{0,8}",
        "[a-z]{1,6}",
    ];
    prop::collection::vec(fragment, 0..64).prop_map(|parts| parts.concat())
}

/// Small JSON values, nested a few levels.
fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        // Binary fractions with short decimal forms, which JSON carries exactly.
        (-1000i32..1000, 0i32..8).prop_map(|(m, e)| Value::from(f64::from(m) / 2f64.powi(e))),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 32, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::btree_map("[a-zA-Z_]{1,6}", inner, 0..4)
                .prop_map(|map| Value::Object(map.into_iter().collect())),
        ]
    })
}

/// Strings near the shape of an e-mail address, a host name, a URL or a phone number.
fn addressish() -> impl Strategy<Value = String> {
    prop_oneof![
        ".{0,40}",
        "[a-zA-Z0-9._%+=-]{0,20}@[a-zA-Z0-9.-]{0,24}",
        "[a-z0-9-]{0,12}(\\.[a-z0-9-]{0,12}){0,4}\\.?",
        "(https?|ftp|HTTPS)://[a-zA-Z0-9.:@\\[\\]-]{0,24}(/[a-zA-Z0-9%._~-]{0,10}){0,3}(\\?[a-z=&]{0,8})?(#[a-z]{0,4})?",
        "\\+?[0-9 ()./-]{0,20}",
        "[a-zA-Zäöüß\u{0400}-\u{04FF}\u{4e00}-\u{4e10}0-9.@-]{0,30}",
        tricky_text(),
    ]
}

/// Checks that an accepted value is stable: parsing its text gives an equal value with the
/// same text, and its JSON form reads back equal.
fn assert_stable<T>(
    value: &T,
    text: &str,
    parse: impl Fn(&str) -> Result<T, crate::domain::FieldError>,
) where
    T: PartialEq + std::fmt::Debug + std::fmt::Display,
{
    let again = parse(text).unwrap_or_else(|e| panic!("{text:?} was accepted, then refused: {e}"));
    assert_eq!(&again, value, "{text:?}");
    assert_eq!(again.to_string(), text, "{text:?}");
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_post_body_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..256)) {
        let _ = parse_post_body(&bytes);
    }

    #[test]
    fn fuzz_post_body_of_tricky_text_never_panics(text in tricky_text()) {
        let _ = parse_post_body(text.as_bytes());
        let wrapped = format!("{{\"query\":\"{text}\",\"variables\":{text}}}");
        let _ = parse_post_body(wrapped.as_bytes());
    }

    #[test]
    fn fuzz_post_body_reads_back_what_was_sent(
        query in ".{0,64}",
        operation_name in proptest::option::of("[A-Za-z_][A-Za-z0-9_]{0,10}"),
        variables in proptest::option::of(json_value()),
    ) {
        let body = json!({ "query": query, "operationName": operation_name, "variables": variables });
        let params = parse_post_body(body.to_string().as_bytes()).expect("a well-formed body");
        prop_assert_eq!(params.query, query);
        prop_assert_eq!(params.operation_name, operation_name);
        prop_assert_eq!(params.variables.unwrap_or(Value::Null), variables.unwrap_or(Value::Null));
    }

    #[test]
    fn fuzz_get_params_never_panic(text in tricky_text()) {
        let _ = parse_get_params(&text);
    }

    #[test]
    fn fuzz_get_params_read_back_what_was_sent(
        query in ".{0,64}",
        operation_name in "[A-Za-z_][A-Za-z0-9_]{0,10}",
        variables in prop::collection::btree_map("[a-z]{1,4}", json_value(), 0..3),
    ) {
        let variables = Value::Object(variables.into_iter().collect());
        let encoded = serde_urlencoded::to_string([
            ("query", query.as_str()),
            ("operationName", operation_name.as_str()),
            ("variables", variables.to_string().as_str()),
        ])
        .expect("encodes");
        let params = parse_get_params(&encoded).expect("a well-formed query string");
        prop_assert_eq!(params.query, query);
        prop_assert_eq!(params.operation_name, Some(operation_name));
        prop_assert_eq!(params.variables, Some(variables));
    }

    #[test]
    fn fuzz_document_limits_never_panic(text in tricky_text()) {
        let _ = limits::check_size(&text);
        let _ = limits::check_lexical(&text);
        let _ = limits::check_query(&text);
    }

    #[test]
    fn fuzz_documents_within_the_nesting_limit_parse_without_overflowing(
        depth in 0usize..(limits::MAX_NESTING + 8),
        open in prop::sample::select(vec!["[", "{a:"]),
    ) {
        let close = if open == "[" { "]" } else { "}" };
        let document = format!("{{ node(id: {}1{}) {{ id }} }}", open.repeat(depth), close.repeat(depth));
        // Two levels for the selection and the arguments.
        prop_assert_eq!(limits::check_lexical(&document).is_ok(), depth + 2 <= limits::MAX_NESTING);
        if limits::check_query(&document).is_ok() {
            let _ = async_graphql::parser::parse_query(&document);
        }
    }

    #[test]
    fn fuzz_email_addresses(input in addressish()) {
        if let Ok(value) = EmailAddress::parse(&input) {
            assert_stable(&value, value.as_str(), EmailAddress::parse);
            let json = serde_json::to_string(&value).expect("serialises");
            prop_assert_eq!(serde_json::from_str::<EmailAddress>(&json).expect("reads back"), value);
        }
    }

    #[test]
    fn fuzz_sender_addresses(input in addressish()) {
        if let Ok(value) = SenderAddress::parse(&input) {
            assert_stable(&value, value.as_str(), SenderAddress::parse);
        }
    }

    #[test]
    fn fuzz_target_urls(input in addressish()) {
        if let Ok(value) = TargetUrl::parse(&input) {
            assert_stable(&value, value.as_str(), TargetUrl::parse);
            let json = serde_json::to_string(&value).expect("serialises");
            prop_assert_eq!(serde_json::from_str::<TargetUrl>(&json).expect("reads back"), value);
        }
    }

    #[test]
    fn fuzz_https_urls(input in addressish()) {
        if let Ok(value) = HttpsUrl::parse(&input) {
            assert_stable(&value, value.as_str(), HttpsUrl::parse);
        }
    }

    #[test]
    fn fuzz_domain_names(input in addressish()) {
        if let Ok(value) = DomainName::parse(&input) {
            assert_stable(&value, value.as_str(), DomainName::parse);
        }
        if let Ok(value) = DomainName::parse_allowing_trailing_dot(&input) {
            assert_stable(&value, value.as_str(), DomainName::parse_allowing_trailing_dot);
        }
    }

    #[test]
    fn fuzz_phone_numbers(input in addressish()) {
        if let Ok(value) = PhoneNumber::parse(&input) {
            assert_stable(&value, value.as_str(), PhoneNumber::parse);
        }
    }

    #[test]
    fn fuzz_text(input in tricky_text(), max in 1usize..80, multiline in any::<bool>()) {
        let parse = |text: &str| BoundedText::parse(text, max, multiline);
        if let Ok(value) = parse(&input) {
            assert_stable(&value, value.as_str(), parse);
        }
    }

    #[test]
    fn fuzz_public_keys(
        input in prop_oneof![tricky_text(), mangled_pem()],
    ) {
        if let Ok(value) = RsaPublicKey::parse(&input) {
            assert_stable(&value, value.as_str(), RsaPublicKey::parse);
        }
    }
}

/// A valid PEM public key with a few bytes replaced, cut short or wrapped differently.
fn mangled_pem() -> impl Strategy<Value = String> {
    const PEMS: [&str; 3] = [
        include_str!("domain/testdata/rsa2048.spki.pem"),
        include_str!("domain/testdata/rsa2048.pkcs1.pem"),
        include_str!("domain/testdata/ec.spki.pem"),
    ];
    (
        prop::sample::select(PEMS.to_vec()),
        prop::collection::vec((any::<prop::sample::Index>(), any::<char>()), 0..4),
        any::<prop::sample::Index>(),
        any::<bool>(),
    )
        .prop_map(|(pem, edits, cut, truncate)| {
            let mut chars: Vec<char> = pem.chars().collect();
            for (at, replacement) in edits {
                let at = at.index(chars.len());
                chars[at] = replacement;
            }
            if truncate {
                chars.truncate(cut.index(chars.len() + 1));
            }
            chars.into_iter().collect()
        })
}

// Regression inputs: none of the cases below may panic or be accepted unstably.

#[test]
fn fuzz_regression_deeply_nested_values_in_a_document_are_refused_before_parsing() {
    // Found by probing before this module existed: 300 nested objects in an argument
    // overflowed a worker's stack and aborted the process.
    let objects = format!(
        "{{ node(id: {}1{}) {{ id }} }}",
        "{a:".repeat(300),
        "}".repeat(300)
    );
    let lists = format!(
        "{{ nodes(ids: {}\"a\"{}) {{ id }} }}",
        "[".repeat(400),
        "]".repeat(400)
    );
    for document in [objects, lists] {
        assert_eq!(
            limits::check_query(&document).err().map(|e| e.code),
            Some("NESTING_TOO_DEEP")
        );
    }
}
