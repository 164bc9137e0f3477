//! `TargetUrl`: an `https://` endpoint an actionable email may call, and the parser for a
//! service's list of them.

use std::fmt;
use std::hash::{Hash, Hasher};

use url::Url;

use super::https_url::{ParsedHttps, parse_https};
use super::{DomainName, FieldError, ListErrors, ListRules, parse_list};

/// Most target URLs one service may register.
pub const MAX_TARGET_URLS: usize = 20;

/// A registered target URL: `https://` only, no user info, the host a public [`DomainName`]
/// (no IP address in any notation, no `localhost`, not a public suffix, one trailing dot
/// dropped), no port but 443, no query or fragment, at most 2048 characters. A path is kept.
///
/// Stored as the WHATWG serialisation without the `/` of an empty path
/// (`https://api.myservice.com`, `https://api.myservice.com/v1/actions`). The Unicode and
/// punycode spellings of a host give the same value. Leading or trailing whitespace is an
/// error, not trimmed.
#[derive(Debug, Clone)]
pub struct TargetUrl {
    /// The parsed URL.
    url: Url,
    /// The stored form.
    serialized: String,
    /// The host.
    host: DomainName,
}

impl TargetUrl {
    /// Parses a target URL (see the type documentation).
    pub fn parse(input: &str) -> Result<Self, FieldError> {
        let ParsedHttps {
            url,
            serialized,
            host,
        } = parse_https(input, false)?;
        Ok(Self {
            url,
            serialized,
            host,
        })
    }

    /// The normalised URL, e.g. `https://api.myservice.com`.
    pub fn as_str(&self) -> &str {
        &self.serialized
    }

    /// The host, lower-case A-labels.
    pub fn host(&self) -> &DomainName {
        &self.host
    }

    /// The path, `/` when empty.
    pub fn path(&self) -> &str {
        self.url.path()
    }

    /// The parsed URL (its `as_str()` keeps the `/` of an empty path).
    pub fn url(&self) -> &Url {
        &self.url
    }

    /// True when `host` is this URL's host or a subdomain of it, at a label boundary:
    /// `https://fabrikam.com` covers `api.fabrikam.com` but not `evilfabrikam.com`.
    pub fn covers(&self, host: &DomainName) -> bool {
        host.is_same_or_subdomain_of(&self.host)
    }
}

/// Rules for a service's target URL list.
const TARGET_URL_LIST_RULES: ListRules = ListRules {
    min: 1,
    max: MAX_TARGET_URLS,
    singular: "target URL",
    plural: "target URLs",
    comparison: "URLs are compared after normalisation (lower-case host in punycode form, \
                 default port and trailing dot removed).",
};

/// Parses a service's target URLs: 1..=20 entries, each a [`TargetUrl`], no two equal after
/// normalisation (`https://bücher.de` repeats `https://xn--bcher-kva.de/`). Every
/// problem is reported: a count problem with index `None`, an invalid entry or a duplicate
/// (at the later index) with `Some(index)`.
pub fn parse_target_url_list(inputs: &[String]) -> Result<Vec<TargetUrl>, ListErrors> {
    parse_list(inputs, &TARGET_URL_LIST_RULES, TargetUrl::parse, |target| {
        target.serialized.clone()
    })
}

impl PartialEq for TargetUrl {
    fn eq(&self, other: &Self) -> bool {
        self.serialized == other.serialized
    }
}

impl Eq for TargetUrl {}

impl Hash for TargetUrl {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.serialized.hash(state);
    }
}

impl fmt::Display for TargetUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.serialized)
    }
}

string_serde!(TargetUrl);

#[cfg(test)]
mod tests {
    use super::super::ValidationCode;
    use super::*;

    fn strings(items: &[&str]) -> Vec<String> {
        items.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn valid_urls_are_normalised() {
        let cases: &[(&str, &str)] = &[
            ("https://api.myservice.com", "https://api.myservice.com"),
            ("https://api.myservice.com/", "https://api.myservice.com"),
            ("HTTPS://API.MyService.COM", "https://api.myservice.com"),
            ("https://api.contoso.com.", "https://api.contoso.com"),
            ("https://api.contoso.com./v1", "https://api.contoso.com/v1"),
            ("https://api.contoso.com:443", "https://api.contoso.com"),
            ("https://api.contoso.com:0443", "https://api.contoso.com"),
            ("https://api.contoso.com:", "https://api.contoso.com"),
            (
                "https://api.contoso.com:443/hook",
                "https://api.contoso.com/hook",
            ),
            (
                "https://api.contoso.com/v1/actions",
                "https://api.contoso.com/v1/actions",
            ),
            ("https://api.contoso.com/v1/", "https://api.contoso.com/v1/"),
            (
                "https://api.contoso.com/a/../b",
                "https://api.contoso.com/b",
            ),
            (
                "https://api.contoso.com/a b",
                "https://api.contoso.com/a%20b",
            ),
            ("https://bücher.de", "https://xn--bcher-kva.de"),
            (
                "https://BÜCHER.de/Bestellung",
                "https://xn--bcher-kva.de/Bestellung",
            ),
            ("https://xn--bcher-kva.de/", "https://xn--bcher-kva.de"),
            ("https://example.co.uk", "https://example.co.uk"),
            ("https://alice.github.io/app", "https://alice.github.io/app"),
        ];
        for (input, expected) in cases {
            let target = TargetUrl::parse(input).expect(input);
            assert_eq!(target.as_str(), *expected, "input {input:?}");
            assert_eq!(target.to_string(), *expected);
        }
    }

    #[test]
    fn unicode_and_punycode_hosts_give_the_same_value() {
        assert_eq!(
            TargetUrl::parse("https://bücher.de").expect("unicode"),
            TargetUrl::parse("https://xn--bcher-kva.de").expect("punycode")
        );
    }

    #[test]
    fn invalid_urls_get_specific_codes() {
        let long = format!("https://contoso.com/{}", "a".repeat(2048));
        let long_label = format!("https://{}.com", "a".repeat(64));
        let cases: Vec<(&str, ValidationCode)> = vec![
            ("", ValidationCode::Required),
            (" ", ValidationCode::UrlInvalid),
            (" https://api.contoso.com", ValidationCode::UrlInvalid),
            ("https://api.contoso.com ", ValidationCode::UrlInvalid),
            ("https://api.contoso.com\n", ValidationCode::UrlInvalid),
            (
                "https://api.con\ttoso.com",
                ValidationCode::ControlCharacter,
            ),
            (
                "https://api.contoso.com/\0",
                ValidationCode::ControlCharacter,
            ),
            (
                "https://api.contoso.com/a\u{202E}b",
                ValidationCode::ControlCharacter,
            ),
            ("api.contoso.com", ValidationCode::UrlInvalid),
            ("//api.contoso.com", ValidationCode::UrlInvalid),
            ("https://", ValidationCode::UrlInvalid),
            ("https:api.contoso.com", ValidationCode::UrlInvalid),
            ("https:/api.contoso.com", ValidationCode::UrlInvalid),
            ("https:////api.contoso.com", ValidationCode::UrlInvalid),
            ("https:\\\\api.contoso.com", ValidationCode::UrlInvalid),
            ("https://api.contoso.com\\hook", ValidationCode::UrlInvalid),
            ("http://api.contoso.com", ValidationCode::UrlNotHttps),
            ("ftp://api.contoso.com", ValidationCode::UrlNotHttps),
            ("javascript:alert(1)", ValidationCode::UrlNotHttps),
            ("wss://api.contoso.com", ValidationCode::UrlNotHttps),
            ("https://a@b.example", ValidationCode::UrlHasUserinfo),
            (
                "https://user:pass@api.contoso.com",
                ValidationCode::UrlHasUserinfo,
            ),
            ("https://:@api.contoso.com", ValidationCode::UrlHasUserinfo),
            ("https://@api.contoso.com", ValidationCode::UrlHasUserinfo),
            ("https://192.0.2.1", ValidationCode::UrlIpLiteral),
            ("https://[2001:db8::1]/", ValidationCode::UrlIpLiteral),
            ("https://[::1]", ValidationCode::UrlIpLiteral),
            ("https://0x7f.1/", ValidationCode::UrlIpLiteral),
            ("https://2130706433/", ValidationCode::UrlIpLiteral),
            ("https://017700000001/", ValidationCode::UrlIpLiteral),
            ("https://127.1", ValidationCode::UrlIpLiteral),
            ("https://1.2.3.4.5", ValidationCode::UrlIpLiteral),
            ("https://api.contoso.123", ValidationCode::UrlIpLiteral),
            ("https://localhost", ValidationCode::UrlLocalhost),
            ("https://LOCALHOST:443/", ValidationCode::UrlLocalhost),
            ("https://api.localhost", ValidationCode::UrlLocalhost),
            ("https://%6cocalhost/", ValidationCode::UrlLocalhost),
            ("https://localhost./", ValidationCode::UrlLocalhost),
            ("https://intranet/", ValidationCode::UrlHostSingleLabel),
            ("https://co.uk", ValidationCode::UrlHostPublicSuffix),
            ("https://github.io", ValidationCode::UrlHostPublicSuffix),
            (
                "https://api.contoso.com:8443",
                ValidationCode::UrlPortNotAllowed,
            ),
            (
                "https://api.contoso.com:80/",
                ValidationCode::UrlPortNotAllowed,
            ),
            (
                "https://api.contoso.com:99999/",
                ValidationCode::UrlPortNotAllowed,
            ),
            (
                "https://api.contoso.com?x=1",
                ValidationCode::UrlHasQueryOrFragment,
            ),
            (
                "https://api.contoso.com/?",
                ValidationCode::UrlHasQueryOrFragment,
            ),
            (
                "https://api.contoso.com/#",
                ValidationCode::UrlHasQueryOrFragment,
            ),
            (
                "https://api.contoso.com/hook#x",
                ValidationCode::UrlHasQueryOrFragment,
            ),
            ("https://api.contoso.com..", ValidationCode::UrlHostInvalid),
            ("https://api..contoso.com", ValidationCode::UrlHostInvalid),
            (
                "https://under_score.contoso.com",
                ValidationCode::UrlHostInvalid,
            ),
            ("https://-api.contoso.com", ValidationCode::UrlHostInvalid),
            ("https://api.con toso.com", ValidationCode::UrlHostInvalid),
            ("https://xn--zz.com", ValidationCode::UrlHostInvalid),
            (long_label.as_str(), ValidationCode::UrlHostInvalid),
            (long.as_str(), ValidationCode::UrlTooLong),
            (
                "https://api.contoso.test",
                ValidationCode::UrlHostSpecialUse,
            ),
            (
                "https://api.contoso.test.",
                ValidationCode::UrlHostSpecialUse,
            ),
            ("https://printer.local/", ValidationCode::UrlHostSpecialUse),
            (
                "https://svc.internal/hook",
                ValidationCode::UrlHostSpecialUse,
            ),
            ("https://www.example", ValidationCode::UrlHostSpecialUse),
            ("https://x.invalid", ValidationCode::UrlHostSpecialUse),
            ("https://abc.onion", ValidationCode::UrlHostSpecialUse),
            ("https://x.alt", ValidationCode::UrlHostSpecialUse),
            (
                "https://router.home.arpa",
                ValidationCode::UrlHostSpecialUse,
            ),
            ("https://api.localhost", ValidationCode::UrlLocalhost),
            (
                "https://p\u{0430}ypal.com",
                ValidationCode::UrlHostMixedScript,
            ),
            (
                "https://xn--pypal-4ve.com",
                ValidationCode::UrlHostMixedScript,
            ),
            (
                "https://login.micr\u{043E}soft.com/x",
                ValidationCode::UrlHostMixedScript,
            ),
            ("https://[::ffff:10.0.0.1]", ValidationCode::UrlIpLiteral),
            ("https://0300.0250.0.1", ValidationCode::UrlIpLiteral),
            // Hosts that browsers and plain RFC 3986 readers would read differently.
            (
                "https://api.contoso.com\\@evil.com",
                ValidationCode::UrlInvalid,
            ),
            (
                "https://evil.com\\@api.contoso.com",
                ValidationCode::UrlInvalid,
            ),
            ("https:/\\api.contoso.com", ValidationCode::UrlInvalid),
            (
                "https://api.contoso.com%2eevil.com",
                ValidationCode::UrlHostAmbiguous,
            ),
            (
                "https://api%2Econtoso.com",
                ValidationCode::UrlHostAmbiguous,
            ),
            (
                "https://%61pi.contoso.com",
                ValidationCode::UrlHostAmbiguous,
            ),
            (
                "https://api.contoso.com:443@evil.com",
                ValidationCode::UrlHasUserinfo,
            ),
            (
                "https://api.contoso.com%40evil.com",
                ValidationCode::UrlHostInvalid,
            ),
            (
                "https://api.contoso.com:1",
                ValidationCode::UrlPortNotAllowed,
            ),
            (
                "https://api.contoso.com:0",
                ValidationCode::UrlPortNotAllowed,
            ),
            (
                "https://api.contoso.com:65535/",
                ValidationCode::UrlPortNotAllowed,
            ),
            (
                "https://api.contoso.com:-443/",
                ValidationCode::UrlPortNotAllowed,
            ),
            (
                "https://api.contoso.com:443:443/",
                ValidationCode::UrlPortNotAllowed,
            ),
        ];
        for (input, code) in cases {
            let error = TargetUrl::parse(input).expect_err(input);
            assert_eq!(error.code, code, "input {input:?}: {}", error.message);
        }
    }

    #[test]
    fn whitespace_errors_say_that_urls_are_not_trimmed() {
        let error = TargetUrl::parse(" https://api.contoso.com").expect_err("leading space");
        assert!(error.message.contains("whitespace"), "{}", error.message);
    }

    #[test]
    fn the_length_limit_counts_characters_after_normalisation_too() {
        let exact = format!("https://contoso.com/{}", "a".repeat(2048 - 20));
        assert_eq!(exact.chars().count(), 2048);
        assert!(TargetUrl::parse(&exact).is_ok());
        // 682 spaces become 2046 characters of %20.
        let expands = format!("https://contoso.com/{}", " ".repeat(682) + "x");
        let error = TargetUrl::parse(&expands).expect_err("expands past the limit");
        assert_eq!(error.code, ValidationCode::UrlTooLong);
    }

    #[test]
    fn a_target_covers_its_host_and_subdomains_at_label_boundaries() {
        let target = TargetUrl::parse("https://fabrikam.com/hooks").expect("valid");
        let cases: &[(&str, bool)] = &[
            ("fabrikam.com", true),
            ("api.fabrikam.com", true),
            ("evilfabrikam.com", false),
            ("fabrikam.com.evil.com", false),
        ];
        for (host, expected) in cases {
            let host = DomainName::parse(host).expect(host);
            assert_eq!(target.covers(&host), *expected, "{host}");
        }
        let photos = TargetUrl::parse("https://photos.x.com").expect("valid");
        assert!(!photos.covers(&DomainName::parse("cdn.x.com").expect("valid")));
    }

    #[test]
    fn accessors_expose_host_and_path() {
        let target = TargetUrl::parse("https://API.contoso.com./v1").expect("valid");
        assert_eq!(target.host().as_str(), "api.contoso.com");
        assert_eq!(target.path(), "/v1");
        assert_eq!(target.url().as_str(), "https://api.contoso.com/v1");
    }

    #[test]
    fn duplicate_target_urls_are_detected_after_normalisation() {
        let errors = parse_target_url_list(&strings(&[
            "https://xn--bcher-kva.de",
            "https://bücher.de/",
            "https://API.contoso.com",
            "https://api.contoso.com.:443",
            "https://api.contoso.com/v1",
        ]))
        .expect_err("duplicates");
        let found: Vec<(Option<usize>, ValidationCode)> = errors
            .iter()
            .map(|(index, error)| (*index, error.code))
            .collect();
        assert_eq!(
            found,
            vec![
                (Some(1), ValidationCode::Duplicate),
                (Some(3), ValidationCode::Duplicate)
            ]
        );
    }

    #[test]
    fn target_url_list_bounds_and_errors_are_all_reported() {
        assert_eq!(
            parse_target_url_list(&[]).expect_err("empty")[0].1.code,
            ValidationCode::TooFew
        );
        let twenty: Vec<String> = (0..20)
            .map(|i| format!("https://h{i}.contoso.com"))
            .collect();
        assert_eq!(parse_target_url_list(&twenty).expect("20").len(), 20);
        let mut inputs = twenty;
        inputs.push("http://h20.contoso.com".to_owned());
        inputs.push("https://h0.contoso.com/".to_owned());
        let errors = parse_target_url_list(&inputs).expect_err("invalid");
        let found: Vec<(Option<usize>, ValidationCode)> = errors
            .iter()
            .map(|(index, error)| (*index, error.code))
            .collect();
        assert_eq!(
            found,
            vec![
                (None, ValidationCode::TooMany),
                (Some(20), ValidationCode::UrlNotHttps),
                (Some(21), ValidationCode::Duplicate)
            ]
        );
    }

    #[test]
    fn serde_round_trips_and_rejects_invalid_stored_values() {
        let target = TargetUrl::parse("https://API.myservice.com/").expect("valid");
        let json = serde_json::to_string(&target).expect("serialises");
        assert_eq!(json, "\"https://api.myservice.com\"");
        let back: TargetUrl = serde_json::from_str(&json).expect("deserialises");
        assert_eq!(back, target);
        for stored in [
            "\"http://api.myservice.com\"",
            "\"https://127.0.0.1\"",
            "\"https://a.com?x\"",
        ] {
            assert!(
                serde_json::from_str::<TargetUrl>(stored).is_err(),
                "{stored} must not load"
            );
        }
    }
}
