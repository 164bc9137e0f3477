//! `HttpsUrl`: a public `https://` link (publisher website, support page), and the URL parser
//! and host rules it shares with [`super::TargetUrl`].

use std::cell::RefCell;
use std::fmt;
use std::hash::{Hash, Hasher};

use url::{Host, SyntaxViolation, Url};

use super::domain_name::{DomainCodes, DomainName};
use super::{FieldError, ValidationCode, quote, reject_control_chars};

/// Longest URL accepted, in characters, both as written and once normalised.
pub(crate) const MAX_URL_CHARS: usize = 2048;

/// Codes for the host of a URL.
const URL_HOST_CODES: DomainCodes = DomainCodes {
    noun: "The URL's host",
    empty: ValidationCode::UrlInvalid,
    invalid: ValidationCode::UrlHostInvalid,
    too_long: ValidationCode::UrlHostInvalid,
    trailing_dot: ValidationCode::UrlHostInvalid,
    ip_address: ValidationCode::UrlIpLiteral,
    localhost: ValidationCode::UrlLocalhost,
    single_label: ValidationCode::UrlHostSingleLabel,
    special_use: ValidationCode::UrlHostSpecialUse,
    mixed_script: ValidationCode::UrlHostMixedScript,
};

/// The result of [`parse_https`]: the parsed URL (host normalised), its stored form and host.
#[derive(Debug, Clone)]
pub(crate) struct ParsedHttps {
    /// The WHATWG-parsed URL with the normalised host.
    pub url: Url,
    /// The stored form: the WHATWG serialisation without the `/` of an empty path.
    pub serialized: String,
    /// The host.
    pub host: DomainName,
}

/// Parses an absolute `https://` URL with the WHATWG rules of the `url` crate and applies the
/// host rules every stored URL follows: scheme `https`; no user name or password (not even an
/// empty `@`); the host a public [`DomainName`] (no IP address in any notation, no
/// `localhost`, at least two labels, not a public suffix; one trailing dot dropped); no port
/// but the default 443; at most 2048 characters. The input must already be in plain form:
/// surrounding whitespace, tabs or newlines, backslashes and a missing or extra `/` after
/// `https:` are errors rather than silently repaired. A query or fragment is refused unless
/// `allow_query_and_fragment`.
pub(crate) fn parse_https(
    input: &str,
    allow_query_and_fragment: bool,
) -> Result<ParsedHttps, FieldError> {
    if input.is_empty() {
        return Err(FieldError::new(ValidationCode::Required, "Enter a URL."));
    }
    let chars = input.chars().count();
    if chars > MAX_URL_CHARS {
        return Err(too_long(chars));
    }
    if input.trim() != input {
        return Err(invalid(
            input,
            "starts or ends with whitespace; remove it (URLs are not trimmed automatically)",
        ));
    }
    reject_control_chars(input, "The URL", false)?;
    if input.contains('\\') {
        return Err(invalid(
            input,
            "contains a backslash; browsers read \"\\\" as \"/\" but other clients do not, \
             so they could disagree on the host (write \"/\" in the path, or %5C)",
        ));
    }

    let violations = RefCell::new(Vec::new());
    let record = |violation| violations.borrow_mut().push(violation);
    let mut url = Url::options()
        .syntax_violation_callback(Some(&record))
        .parse(input)
        .map_err(|error| parse_error(input, error))?;
    let violations = violations.into_inner();

    if url.scheme() != "https" {
        return Err(FieldError::new(
            ValidationCode::UrlNotHttps,
            format!(
                "The URL {} uses the {} scheme; only https:// URLs are accepted.",
                quote(input),
                quote(url.scheme())
            ),
        ));
    }
    if violations.contains(&SyntaxViolation::EmbeddedCredentials)
        || !url.username().is_empty()
        || url.password().is_some()
    {
        return Err(FieldError::new(
            ValidationCode::UrlHasUserinfo,
            format!(
                "The URL {} contains a user name or password before the host (\"…@\"); \
                 remove it.",
                quote(input)
            ),
        ));
    }
    if violations.iter().any(|v| {
        matches!(
            v,
            SyntaxViolation::Backslash | SyntaxViolation::ExpectedDoubleSlash
        )
    }) {
        return Err(invalid(
            input,
            "is not written in the standard form https://host/path (check for backslashes \
             and for exactly two slashes after \"https:\")",
        ));
    }
    let host = match url.host() {
        None => return Err(invalid(input, "has no host")),
        Some(Host::Ipv4(_) | Host::Ipv6(_)) => return Err(ip_literal(input)),
        Some(Host::Domain(host)) => DomainName::parse_detailed(host, true)
            .map_err(|problem| problem.into_field_error(host, &URL_HOST_CODES))?,
    };
    if let Some(port) = url.port() {
        return Err(FieldError::new(
            ValidationCode::UrlPortNotAllowed,
            format!(
                "The URL {} names port {port}; only the default https port (443) is allowed, \
                 so remove \":{port}\".",
                quote(input)
            ),
        ));
    }
    if !allow_query_and_fragment && (url.query().is_some() || url.fragment().is_some()) {
        return Err(FieldError::new(
            ValidationCode::UrlHasQueryOrFragment,
            format!(
                "The URL {} has a query (\"?…\") or fragment (\"#…\"); register the URL \
                 without them.",
                quote(input)
            ),
        ));
    }
    if host.is_public_suffix() {
        return Err(FieldError::new(
            ValidationCode::UrlHostPublicSuffix,
            format!(
                "The URL's host {} is a public suffix that nobody can own as a whole (like \
                 co.uk); use your own domain.",
                quote(host.as_str())
            ),
        ));
    }
    if !host_reads_the_same(input, &url) {
        return Err(FieldError::new(
            ValidationCode::UrlHostAmbiguous,
            format!(
                "The URL {} names the host {} for browsers but {} for other clients; write the \
                 host plainly (no percent-encoding, \"@\" or \"\\\" before the path).",
                quote(input),
                quote(url.host_str().unwrap_or_default()),
                quote(naive_host(input).unwrap_or_default())
            ),
        ));
    }
    if url.host_str() != Some(host.as_str()) {
        url.set_host(Some(host.as_str()))
            .map_err(|error| parse_error(input, error))?;
    }
    let serialized = match url.as_str().strip_suffix('/') {
        Some(bare) if url.path() == "/" && url.query().is_none() && url.fragment().is_none() => {
            bare.to_owned()
        }
        _ => url.as_str().to_owned(),
    };
    let chars = serialized.chars().count();
    if chars > MAX_URL_CHARS {
        return Err(too_long(chars));
    }
    Ok(ParsedHttps {
        url,
        serialized,
        host,
    })
}

/// The host of an absolute URL as a reader that knows only the generic syntax of RFC 3986 takes
/// it: the authority runs from `//` to the first `/`, `?` or `#`, the host follows its last `@`
/// and ends at a `:` (or at `]` for a bracketed literal). No percent-decoding, no IDNA, and a
/// backslash is an ordinary character. Mail clients, proxies and log tools read URLs this way;
/// browsers (WHATWG) treat `\` as `/` in `https:` URLs and percent-decode the host. `None`
/// when there is no `scheme://`.
pub(crate) fn naive_host(input: &str) -> Option<&str> {
    let (scheme, rest) = input.split_once("://")?;
    let mut chars = scheme.chars();
    let scheme_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !scheme_ok {
        return None;
    }
    let authority = rest.split(['/', '?', '#']).next().unwrap_or_default();
    let host_and_port = authority
        .rsplit_once('@')
        .map_or(authority, |(_, after)| after);
    if host_and_port.starts_with('[') {
        return Some(match host_and_port.find(']') {
            Some(end) => &host_and_port[..=end],
            None => host_and_port,
        });
    }
    Some(host_and_port.split(':').next().unwrap_or_default())
}

/// True when the naive reading of `input` ([`naive_host`]) names the same host as `url`, its
/// WHATWG parse: equal once both are lower-case A-labels without one trailing dot. A URL on
/// which the two disagree (`https://a.com\@b.com`, `https://a%2eb.com`) could send a browser
/// and another client to different servers, so it is refused wherever a URL is checked.
pub(crate) fn host_reads_the_same(input: &str, url: &Url) -> bool {
    let Some(whatwg) = url.host_str() else {
        return false;
    };
    let Some(naive) = naive_host(input) else {
        return false;
    };
    let trim = |host: &str| host.strip_suffix('.').unwrap_or(host).to_owned();
    if whatwg.starts_with('[') {
        return trim(&naive.to_ascii_lowercase()) == trim(whatwg);
    }
    if naive.contains('%') {
        return false;
    }
    match idna::domain_to_ascii(naive) {
        Ok(ascii) => trim(&ascii) == trim(whatwg),
        Err(_) => false,
    }
}

/// Maps a `url` crate parse failure to our codes.
fn parse_error(input: &str, error: url::ParseError) -> FieldError {
    use url::ParseError;
    match error {
        ParseError::InvalidIpv4Address | ParseError::InvalidIpv6Address => ip_literal(input),
        ParseError::IdnaError | ParseError::InvalidDomainCharacter => FieldError::new(
            ValidationCode::UrlHostInvalid,
            format!(
                "The URL {} has an invalid host name; use letters, digits, hyphens and dots.",
                quote(input)
            ),
        ),
        ParseError::EmptyHost => invalid(input, "has no host"),
        ParseError::InvalidPort => FieldError::new(
            ValidationCode::UrlPortNotAllowed,
            format!(
                "The URL {} has an invalid port; remove it (only 443 is allowed).",
                quote(input)
            ),
        ),
        ParseError::RelativeUrlWithoutBase => invalid(
            input,
            "is not an absolute URL; write it in full, starting with https://",
        ),
        _ => invalid(input, "cannot be parsed as a URL"),
    }
}

/// A `URL_IP_LITERAL` error.
fn ip_literal(input: &str) -> FieldError {
    FieldError::new(
        ValidationCode::UrlIpLiteral,
        format!(
            "The URL {} points at an IP address (or a host that browsers read as one); use a \
             domain name.",
            quote(input)
        ),
    )
}

/// A `URL_INVALID` error: "The URL "…" {reason}."
fn invalid(input: &str, reason: &str) -> FieldError {
    FieldError::new(
        ValidationCode::UrlInvalid,
        format!("The URL {} {reason}.", quote(input)),
    )
}

/// A `URL_TOO_LONG` error.
fn too_long(chars: usize) -> FieldError {
    FieldError::new(
        ValidationCode::UrlTooLong,
        format!("The URL is {chars} characters long; at most {MAX_URL_CHARS} are allowed."),
    )
}

/// A public `https://` link such as a publisher's website or support page. Same rules as
/// [`super::TargetUrl`] for scheme, user info, host and port, but a path, query and fragment
/// are all allowed. Stored as the WHATWG serialisation, without the `/` of an empty path.
#[derive(Debug, Clone)]
pub struct HttpsUrl {
    /// The parsed URL.
    url: Url,
    /// The stored form.
    serialized: String,
    /// The host.
    host: DomainName,
}

impl HttpsUrl {
    /// Parses an `https://` link (see the type documentation).
    pub fn parse(input: &str) -> Result<Self, FieldError> {
        let ParsedHttps {
            url,
            serialized,
            host,
        } = parse_https(input, true)?;
        Ok(Self {
            url,
            serialized,
            host,
        })
    }

    /// The normalised URL, e.g. `https://contoso.com/support?lang=en`.
    pub fn as_str(&self) -> &str {
        &self.serialized
    }

    /// The host, lower-case A-labels.
    pub fn host(&self) -> &DomainName {
        &self.host
    }

    /// The parsed URL (its `as_str()` keeps the `/` of an empty path).
    pub fn url(&self) -> &Url {
        &self.url
    }
}

impl PartialEq for HttpsUrl {
    fn eq(&self, other: &Self) -> bool {
        self.serialized == other.serialized
    }
}

impl Eq for HttpsUrl {}

impl Hash for HttpsUrl {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.serialized.hash(state);
    }
}

impl fmt::Display for HttpsUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.serialized)
    }
}

string_serde!(HttpsUrl);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_keep_path_query_and_fragment() {
        let cases: &[(&str, &str)] = &[
            ("https://contoso.com", "https://contoso.com"),
            ("https://contoso.com/", "https://contoso.com"),
            ("https://Contoso.com/Support", "https://contoso.com/Support"),
            (
                "https://contoso.com/support?lang=en",
                "https://contoso.com/support?lang=en",
            ),
            (
                "https://contoso.com/?lang=en",
                "https://contoso.com/?lang=en",
            ),
            (
                "https://contoso.com/help#contact",
                "https://contoso.com/help#contact",
            ),
            ("https://contoso.com.:443/help", "https://contoso.com/help"),
            (
                "https://bücher.de/kontakt",
                "https://xn--bcher-kva.de/kontakt",
            ),
        ];
        for (input, expected) in cases {
            let link = HttpsUrl::parse(input).expect(input);
            assert_eq!(link.as_str(), *expected, "input {input:?}");
        }
    }

    #[test]
    fn links_follow_the_shared_host_rules() {
        let cases: &[(&str, ValidationCode)] = &[
            ("", ValidationCode::Required),
            ("http://contoso.com/support", ValidationCode::UrlNotHttps),
            ("https://user@contoso.com", ValidationCode::UrlHasUserinfo),
            ("https://192.0.2.1/support", ValidationCode::UrlIpLiteral),
            ("https://localhost/support", ValidationCode::UrlLocalhost),
            (
                "https://intranet/support",
                ValidationCode::UrlHostSingleLabel,
            ),
            ("https://co.uk/support", ValidationCode::UrlHostPublicSuffix),
            (
                "https://contoso.com:8443/support",
                ValidationCode::UrlPortNotAllowed,
            ),
            (
                "https://contoso.com../support",
                ValidationCode::UrlHostInvalid,
            ),
        ];
        for (input, code) in cases {
            let error = HttpsUrl::parse(input).expect_err(input);
            assert_eq!(error.code, *code, "input {input:?}: {}", error.message);
        }
    }

    #[test]
    fn the_naive_host_follows_rfc_3986_generic_syntax() {
        let cases: &[(&str, Option<&str>)] = &[
            ("https://contoso.com", Some("contoso.com")),
            ("https://contoso.com:8443/x", Some("contoso.com")),
            ("https://a@contoso.com/x", Some("contoso.com")),
            ("https://a@b@contoso.com/x", Some("contoso.com")),
            ("https://contoso.com\\@evil.com/x", Some("evil.com")),
            ("https://evil.com#@contoso.com", Some("evil.com")),
            ("https://evil.com?@contoso.com", Some("evil.com")),
            ("https://[::1]:443/x", Some("[::1]")),
            ("https://c%6fntoso.com", Some("c%6fntoso.com")),
            ("https:contoso.com", None),
            ("1https://contoso.com", None),
        ];
        for (input, expected) in cases {
            assert_eq!(naive_host(input), *expected, "input {input:?}");
        }
    }

    #[test]
    fn links_whose_host_reads_differently_are_refused() {
        let cases: &[(&str, ValidationCode)] = &[
            ("https://contoso.com\\@evil.com", ValidationCode::UrlInvalid),
            ("https://contoso.com\\support", ValidationCode::UrlInvalid),
            ("https://contoso.com/a\\b", ValidationCode::UrlInvalid),
            (
                "https://c%6fntoso.com/help",
                ValidationCode::UrlHostAmbiguous,
            ),
            (
                "https://contoso.com%2eevil.com/help",
                ValidationCode::UrlHostAmbiguous,
            ),
            (
                "https://contoso.com@evil.com",
                ValidationCode::UrlHasUserinfo,
            ),
        ];
        for (input, code) in cases {
            let error = HttpsUrl::parse(input).expect_err(input);
            assert_eq!(error.code, *code, "input {input:?}: {}", error.message);
        }
        // A fragment or query that holds "@host" leaves the host alone for every reader.
        let link = HttpsUrl::parse("https://contoso.com/help#@evil.com").expect("valid");
        assert_eq!(link.host().as_str(), "contoso.com");
        assert_eq!(
            HttpsUrl::parse("https://Ｃontoso.com/help").map(|l| l.to_string()),
            Ok("https://contoso.com/help".to_owned())
        );
    }

    #[test]
    fn serde_round_trips_and_rejects_invalid_stored_values() {
        let link = HttpsUrl::parse("https://Contoso.com/help?q=1#top").expect("valid");
        let json = serde_json::to_string(&link).expect("serialises");
        assert_eq!(json, "\"https://contoso.com/help?q=1#top\"");
        let back: HttpsUrl = serde_json::from_str(&json).expect("deserialises");
        assert_eq!(back, link);
        assert!(serde_json::from_str::<HttpsUrl>("\"http://contoso.com\"").is_err());
    }
}
