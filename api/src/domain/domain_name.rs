//! `DomainName`: a DNS host name normalised to lower-case IDNA A-labels, and the public-suffix
//! questions asked about it (registrable domain, subdomain-of, same organisation).

use std::fmt;

use idna::uts46::{AsciiDenyList, DnsLength, Hyphens, Uts46};
use unicode_security::{RestrictionLevel, RestrictionLevelDetection};

use super::{FieldError, ValidationCode, quote, reject_control_chars};

/// Longest host name in octets, without the root dot (RFC 1035 §2.3.4, as presentation text).
const MAX_NAME_OCTETS: usize = 253;
/// Longest label in octets (RFC 1035 §2.3.4).
const MAX_LABEL_OCTETS: usize = 63;
/// Inputs longer than this are refused before IDNA processing, to bound the work done.
const MAX_INPUT_BYTES: usize = 1024;

/// A public DNS host name: lower-case A-labels (`xn--…` for internationalised labels), at least
/// two labels, no trailing dot, every label 1..=63 octets of letters, digits and inner hyphens,
/// at most 253 octets in all, not an IP address, not `localhost` or a name under it, not under
/// a special-use or private-use top-level domain ([`SPECIAL_USE_TLDS`]), and no label mixing
/// scripts the way look-alike names do ([`confusable_label`]).
///
/// The Unicode and the punycode spelling of a name parse to the same value
/// (`bücher.de` == `xn--bcher-kva.de`). The name may itself be a public suffix
/// (`co.uk`); callers that need an ownable name check [`DomainName::registrable`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DomainName(String);

/// Why a host name was refused; each context maps it to its own codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DomainProblem {
    /// Nothing to parse.
    Empty,
    /// A control or bidi character; carries the ready error.
    Control(FieldError),
    /// Not a valid host name; carries the reason, a sentence fragment.
    Invalid(String),
    /// A label longer than 63 octets once converted to A-labels.
    LabelTooLong { label: String, octets: usize },
    /// More than 253 octets once converted to A-labels.
    TooLong { octets: usize },
    /// Ends with a dot (after removing the one allowed dot, for the lenient parser).
    TrailingDot,
    /// An IP address, bracketed literal, or a name that browsers would read as IPv4.
    IpAddress,
    /// `localhost` or a name under it.
    Localhost,
    /// Only one label.
    SingleLabel,
    /// Under a special-use or private-use top-level domain; carries the suffix (`test`).
    SpecialUse(&'static str),
    /// A label that mixes scripts like a look-alike name; carries the label in Unicode.
    MixedScript(String),
}

/// Top-level domains that never name a public host, refused wherever a host name is entered:
/// the special-use names of RFC 6761 (`test`, `example`, `invalid`, `localhost`), multicast DNS
/// (`local`, RFC 6762), Tor onion services (`onion`, RFC 7686), the alternative-namespace TLD
/// (`alt`, RFC 9476), the private-use TLD ICANN reserved in 2024 (`internal`), `arpa`, the
/// infrastructure TLD whose only host names are reverse-DNS and home-network ones
/// (`in-addr.arpa`, `ip6.arpa`, `home.arpa` of RFC 8375), and the names ICANN will not delegate
/// because private networks use them (`home`, `corp`, `mail`; ICANN Board resolution
/// 2018.02.04.12). An e-mail or URL there cannot belong to a public service, and letting one
/// through would let a registration point at a reviewer's or mail client's own network.
pub const SPECIAL_USE_TLDS: &[&str] = &[
    "alt",
    "arpa",
    "corp",
    "example",
    "home",
    "internal",
    "invalid",
    "local",
    "localhost",
    "mail",
    "onion",
    "test",
];

/// The special-use top-level domain `name` (lower-case A-labels, one trailing dot allowed) ends
/// in, if any; see [`SPECIAL_USE_TLDS`].
pub fn special_use_tld(name: &str) -> Option<&'static str> {
    let name = name.strip_suffix('.').unwrap_or(name);
    let last = name.rsplit('.').next()?;
    SPECIAL_USE_TLDS
        .iter()
        .find(|tld| last.eq_ignore_ascii_case(tld))
        .copied()
}

/// True when a name's last label would make a browser read the whole name as an IPv4 address
/// (see [`ends_in_a_number`]); used where names are compared, not parsed.
pub fn looks_like_ip_address(name: &str) -> bool {
    let name = name.strip_suffix('.').unwrap_or(name);
    name.starts_with('[')
        || name.parse::<std::net::IpAddr>().is_ok()
        || name.rsplit('.').next().is_some_and(ends_in_a_number)
}

/// The Unicode form of an A-label that mixes scripts the way look-alike (homograph) names do,
/// or `None` for an acceptable label. ASCII labels are always acceptable.
///
/// The rule is the "Highly Restrictive" level of Unicode Technical Standard #39 (section 5.2),
/// as browsers apply it before showing a name in Unicode: every character of the label (hyphens
/// and digits aside) must be allowed in identifiers, and the label must be in a single script,
/// or Latin combined only with Han and Japanese kana, Han and Bopomofo, or Han and Hangul. So
/// `pаypal` with a Cyrillic `а` (U+0430), Latin with Greek `ο`, or Latin with Arabic are refused,
/// while `bücher`, `παράδειγμα`, `пример` and `日本語ドメイン` are accepted. The script data
/// comes from the `unicode-security` crate (Unicode 18 tables in 0.1.3).
///
/// A label written wholly in another script that happens to look like a Latin word (`раураl`,
/// all Cyrillic) passes this rule; UTS #39 calls that a whole-script confusable, and telling it
/// apart needs the registry's language rules.
pub fn confusable_label(a_label: &str) -> Option<String> {
    let encoded = a_label
        .get(..4)
        .filter(|prefix| prefix.eq_ignore_ascii_case("xn--"))
        .map(|_| &a_label[4..])?;
    // A label that does not decode was already refused by the IDNA step; treat it as fine here.
    let unicode = idna::punycode::decode_to_string(encoded)?;
    let letters: String = unicode
        .chars()
        .filter(|c| *c != '-' && !c.is_ascii_digit())
        .collect();
    if letters.as_str().detect_restriction_level() <= RestrictionLevel::HighlyRestrictive {
        None
    } else {
        Some(unicode)
    }
}

/// The codes one context (bare domain, email domain, URL host) uses for each [`DomainProblem`].
pub(crate) struct DomainCodes {
    /// The noun used in messages ("The domain", "The host").
    pub noun: &'static str,
    /// For [`DomainProblem::Empty`].
    pub empty: ValidationCode,
    /// For [`DomainProblem::Invalid`] and [`DomainProblem::LabelTooLong`].
    pub invalid: ValidationCode,
    /// For [`DomainProblem::TooLong`].
    pub too_long: ValidationCode,
    /// For [`DomainProblem::TrailingDot`].
    pub trailing_dot: ValidationCode,
    /// For [`DomainProblem::IpAddress`].
    pub ip_address: ValidationCode,
    /// For [`DomainProblem::Localhost`].
    pub localhost: ValidationCode,
    /// For [`DomainProblem::SingleLabel`].
    pub single_label: ValidationCode,
    /// For [`DomainProblem::SpecialUse`].
    pub special_use: ValidationCode,
    /// For [`DomainProblem::MixedScript`].
    pub mixed_script: ValidationCode,
}

/// Codes for a bare domain name field.
const BARE_DOMAIN_CODES: DomainCodes = DomainCodes {
    noun: "The domain",
    empty: ValidationCode::Required,
    invalid: ValidationCode::DomainInvalid,
    too_long: ValidationCode::DomainTooLong,
    trailing_dot: ValidationCode::DomainTrailingDot,
    ip_address: ValidationCode::DomainIpAddress,
    localhost: ValidationCode::DomainLocalhost,
    single_label: ValidationCode::DomainSingleLabel,
    special_use: ValidationCode::DomainSpecialUse,
    mixed_script: ValidationCode::DomainMixedScript,
};

impl DomainProblem {
    /// Turns the problem into the error of the context described by `codes`; `input` is the
    /// host as the user wrote it, quoted in the message.
    pub(crate) fn into_field_error(self, input: &str, codes: &DomainCodes) -> FieldError {
        let noun = codes.noun;
        let shown = quote(input);
        match self {
            Self::Empty => FieldError::new(codes.empty, format!("{noun} is missing.")),
            Self::Control(error) => error,
            Self::Invalid(reason) => FieldError::new(
                codes.invalid,
                format!("{noun} {shown} is not a valid host name: {reason}."),
            ),
            Self::LabelTooLong { label, octets } => FieldError::new(
                codes.invalid,
                format!(
                    "{noun} {shown} has a label {} of {octets} characters; a DNS label can have \
                     at most {MAX_LABEL_OCTETS}.",
                    quote(&label)
                ),
            ),
            Self::TooLong { octets } => FieldError::new(
                codes.too_long,
                format!(
                    "{noun} {shown} is {octets} characters long in DNS form; a host name can \
                     have at most {MAX_NAME_OCTETS}."
                ),
            ),
            Self::TrailingDot => FieldError::new(
                codes.trailing_dot,
                format!("{noun} {shown} ends with a dot; remove the trailing dot."),
            ),
            Self::IpAddress => FieldError::new(
                codes.ip_address,
                format!(
                    "{noun} {shown} is (or would be read as) an IP address; use a registered \
                     domain name instead."
                ),
            ),
            Self::Localhost => FieldError::new(
                codes.localhost,
                format!(
                    "{noun} {shown} is localhost, which only names the local machine; use a \
                     public domain name."
                ),
            ),
            Self::SingleLabel => FieldError::new(
                codes.single_label,
                format!(
                    "{noun} {shown} has a single label; use a fully qualified name such as \
                     \"mail.example.com\"."
                ),
            ),
            Self::SpecialUse(tld) => FieldError::new(
                codes.special_use,
                format!(
                    "{noun} {shown} is under \".{tld}\", a top-level domain reserved for testing, \
                     documentation or private networks that never names a public host; use the \
                     service's public domain name."
                ),
            ),
            Self::MixedScript(label) => FieldError::new(
                codes.mixed_script,
                format!(
                    "{noun} {shown} has the label {} that mixes writing systems (for example \
                     Latin with Cyrillic or Greek letters), as look-alike names do; write each \
                     label in one script.",
                    quote(&label)
                ),
            ),
        }
    }
}

impl DomainName {
    /// Parses a host name strictly: a trailing dot is rejected (`DOMAIN_TRAILING_DOT`).
    pub fn parse(input: &str) -> Result<Self, FieldError> {
        Self::parse_detailed(input, false)
            .map_err(|problem| problem.into_field_error(input, &BARE_DOMAIN_CODES))
    }

    /// Parses a host name, dropping one trailing (root) dot first, as browsers do for URL
    /// hosts: `api.contoso.com.` becomes `api.contoso.com`; `api.contoso.com..` is rejected.
    pub fn parse_allowing_trailing_dot(input: &str) -> Result<Self, FieldError> {
        Self::parse_detailed(input, true)
            .map_err(|problem| problem.into_field_error(input, &BARE_DOMAIN_CODES))
    }

    /// The parser behind every context; the caller maps the problem to its own codes.
    pub(crate) fn parse_detailed(
        input: &str,
        allow_trailing_dot: bool,
    ) -> Result<Self, DomainProblem> {
        if input.is_empty() {
            return Err(DomainProblem::Empty);
        }
        reject_control_chars(input, "The host name", false).map_err(DomainProblem::Control)?;
        if input.len() > MAX_INPUT_BYTES {
            return Err(DomainProblem::TooLong {
                octets: input.len(),
            });
        }
        if input.starts_with('[') || input.parse::<std::net::IpAddr>().is_ok() {
            return Err(DomainProblem::IpAddress);
        }
        if let Some(c) = input.chars().find(|c| c.is_whitespace()) {
            return Err(DomainProblem::Invalid(format!(
                "it contains whitespace (U+{:04X})",
                u32::from(c)
            )));
        }
        // UTS #46 ToASCII: maps case and compatibility forms (e.g. fullwidth letters and the
        // ideographic full stop), converts Unicode labels to punycode, and validates punycode
        // labels. STD3 rules keep labels to letters, digits and hyphens (no `_`, which a
        // public TLS certificate cannot carry either); hyphens may not start or end a label.
        // Lengths are checked below on the A-label form, with messages of their own.
        let ascii = Uts46::new()
            .to_ascii(
                input.as_bytes(),
                AsciiDenyList::STD3,
                Hyphens::CheckFirstLast,
                DnsLength::Ignore,
            )
            .map_err(|_| DomainProblem::Invalid(explain_idna_failure(input)))?;
        let mut name = ascii.to_ascii_lowercase();
        if allow_trailing_dot && name.ends_with('.') {
            name.pop();
        }
        if name.ends_with('.') {
            return Err(DomainProblem::TrailingDot);
        }
        let labels: Vec<&str> = name.split('.').collect();
        if labels.iter().any(|label| label.is_empty()) {
            return Err(DomainProblem::Invalid(
                "it has an empty label (a leading dot or two dots in a row)".to_owned(),
            ));
        }
        if labels.last().is_some_and(|last| ends_in_a_number(last)) {
            return Err(DomainProblem::IpAddress);
        }
        if let Some(label) = labels.iter().find(|label| label.len() > MAX_LABEL_OCTETS) {
            return Err(DomainProblem::LabelTooLong {
                label: (*label).to_owned(),
                octets: label.len(),
            });
        }
        if name.len() > MAX_NAME_OCTETS {
            return Err(DomainProblem::TooLong { octets: name.len() });
        }
        if labels.last() == Some(&"localhost") {
            return Err(DomainProblem::Localhost);
        }
        if labels.len() < 2 {
            return Err(DomainProblem::SingleLabel);
        }
        if let Some(tld) = special_use_tld(&name) {
            return Err(DomainProblem::SpecialUse(tld));
        }
        if let Some(label) = labels.iter().find_map(|label| confusable_label(label)) {
            return Err(DomainProblem::MixedScript(label));
        }
        Ok(Self(name))
    }

    /// The name in lower-case A-label form, e.g. `xn--bcher-kva.de`.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The name for display, with punycode labels decoded (`bücher.de`).
    pub fn to_unicode(&self) -> String {
        let (unicode, result) = idna::domain_to_unicode(&self.0);
        match result {
            Ok(()) => unicode,
            Err(_) => self.0.clone(),
        }
    }

    /// The registrable domain (eTLD+1): `mail.contoso.com` → `contoso.com`,
    /// `a.example.co.uk` → `example.co.uk`, `shop.xn--bcher-kva.de` → `xn--bcher-kva.de`; a TLD
    /// missing from the list falls under the list's default `*` rule.
    /// `None` when the name is itself a public suffix (`co.uk`, `github.io`).
    ///
    /// The lookup uses the whole Public Suffix List, private section included (the `psl`
    /// crate does not separate them, and we would not want it to): the question asked here
    /// is "who controls this name", and a private-section suffix such as `github.io` or
    /// `herokuapp.com` hands every subdomain to a different customer. With ICANN rules only,
    /// `alice.github.io` and `mallory.github.io` would share the registrable domain
    /// `github.io` and count as one organisation; browsers draw the same line for cookies.
    pub fn registrable(&self) -> Option<DomainName> {
        let domain = psl::domain(self.0.as_bytes())?;
        let text = std::str::from_utf8(domain.as_bytes()).ok()?;
        Some(Self(text.to_owned()))
    }

    /// True when the name is itself a public suffix (see [`DomainName::registrable`]).
    pub fn is_public_suffix(&self) -> bool {
        self.registrable().is_none()
    }

    /// True when `self` equals `other` or lies below it at a label boundary:
    /// `api.fabrikam.com` is under `fabrikam.com`, `evilfabrikam.com` is not.
    pub fn is_same_or_subdomain_of(&self, other: &DomainName) -> bool {
        match self.0.strip_suffix(other.0.as_str()) {
            Some("") => true,
            Some(prefix) => prefix.ends_with('.'),
            None => false,
        }
    }

    /// True when both names have a registrable domain and it is the same one
    /// (`mail.contoso.com` and `api.contoso.com`). A public suffix shares with nothing.
    pub fn shares_registrable_domain_with(&self, other: &DomainName) -> bool {
        match (self.registrable(), other.registrable()) {
            (Some(mine), Some(theirs)) => mine == theirs,
            _ => false,
        }
    }
}

/// The WHATWG URL "ends in a number" test: a last label of decimal digits or `0x` hex makes
/// browsers parse the whole host as an IPv4 address (`0x7f.1`, `2130706433`).
fn ends_in_a_number(last_label: &str) -> bool {
    if !last_label.is_empty() && last_label.bytes().all(|b| b.is_ascii_digit()) {
        return true;
    }
    match last_label
        .strip_prefix("0x")
        .or_else(|| last_label.strip_prefix("0X"))
    {
        Some(hex) => hex.bytes().all(|b| b.is_ascii_hexdigit()),
        None => false,
    }
}

/// A best-effort reason for a UTS #46 failure (the library reports no detail).
fn explain_idna_failure(input: &str) -> String {
    if let Some(c) = input
        .chars()
        .find(|c| c.is_ascii() && !(c.is_ascii_alphanumeric() || *c == '-' || *c == '.'))
    {
        return format!(
            "the character {} is not allowed; use letters, digits, hyphens and dots",
            quote(&c.to_string())
        );
    }
    if input
        .split('.')
        .any(|label| label.starts_with('-') || label.ends_with('-'))
    {
        return "a label starts or ends with a hyphen".to_owned();
    }
    "it is not a valid internationalised domain name (IDNA)".to_owned()
}

impl fmt::Display for DomainName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

string_serde!(DomainName);

#[cfg(test)]
mod tests {
    use super::*;

    fn domain(input: &str) -> DomainName {
        DomainName::parse(input).expect(input)
    }

    #[test]
    fn valid_names_are_normalised_to_lower_case_a_labels() {
        let cases: &[(&str, &str)] = &[
            ("contoso.com", "contoso.com"),
            ("Mail.Contoso.COM", "mail.contoso.com"),
            ("bücher.de", "xn--bcher-kva.de"),
            ("BÜCHER.de", "xn--bcher-kva.de"),
            ("xn--bcher-kva.de", "xn--bcher-kva.de"),
            ("XN--BCHER-KVA.DE", "xn--bcher-kva.de"),
            ("bücher\u{3002}de", "xn--bcher-kva.de"),
            ("ｃｏｎｔｏｓｏ.com", "contoso.com"),
            ("公司.cn", "xn--55qx5d.cn"),
            ("ab--cd.example.com", "ab--cd.example.com"),
            ("123.example.com", "123.example.com"),
            ("localhost.example.com", "localhost.example.com"),
        ];
        for (input, expected) in cases {
            assert_eq!(domain(input).as_str(), *expected, "input {input:?}");
        }
    }

    #[test]
    fn unicode_and_punycode_spellings_are_equal() {
        assert_eq!(domain("bücher.de"), domain("xn--bcher-kva.de"));
        assert_eq!(domain("xn--bcher-kva.de").to_unicode(), "bücher.de");
    }

    #[test]
    fn invalid_names_get_specific_codes() {
        let long_label = format!("{}.com", "a".repeat(64));
        let max_label = format!("{}.com", "a".repeat(63));
        let too_long = ["a".repeat(63).as_str(); 4].join(".") + ".com";
        let cases: Vec<(&str, ValidationCode)> = vec![
            ("", ValidationCode::Required),
            ("contoso.com.", ValidationCode::DomainTrailingDot),
            ("contoso.com..", ValidationCode::DomainTrailingDot),
            ("contoso", ValidationCode::DomainSingleLabel),
            ("com", ValidationCode::DomainSingleLabel),
            ("localhost", ValidationCode::DomainLocalhost),
            ("LOCALHOST", ValidationCode::DomainLocalhost),
            ("api.localhost", ValidationCode::DomainLocalhost),
            ("192.0.2.1", ValidationCode::DomainIpAddress),
            ("[192.0.2.1]", ValidationCode::DomainIpAddress),
            ("::1", ValidationCode::DomainIpAddress),
            ("[::1]", ValidationCode::DomainIpAddress),
            ("0x7f.1", ValidationCode::DomainIpAddress),
            ("2130706433", ValidationCode::DomainIpAddress),
            ("example.0x1f", ValidationCode::DomainIpAddress),
            ("example.123", ValidationCode::DomainIpAddress),
            ("a..contoso.com", ValidationCode::DomainInvalid),
            (".contoso.com", ValidationCode::DomainInvalid),
            ("-api.contoso.com", ValidationCode::DomainInvalid),
            ("api-.contoso.com", ValidationCode::DomainInvalid),
            ("under_score.contoso.com", ValidationCode::DomainInvalid),
            ("ex!ample.com", ValidationCode::DomainInvalid),
            ("exa mple.com", ValidationCode::DomainInvalid),
            (" contoso.com", ValidationCode::DomainInvalid),
            ("xn--zz.com", ValidationCode::DomainInvalid),
            ("contoso.com/path", ValidationCode::DomainInvalid),
            ("user@contoso.com", ValidationCode::DomainInvalid),
            (long_label.as_str(), ValidationCode::DomainInvalid),
            (too_long.as_str(), ValidationCode::DomainTooLong),
            ("contoso.com\0", ValidationCode::ControlCharacter),
            ("contoso.com\r\n", ValidationCode::ControlCharacter),
            ("con\u{202E}toso.com", ValidationCode::ControlCharacter),
        ];
        for (input, code) in cases {
            let error = DomainName::parse(input).expect_err(input);
            assert_eq!(error.code, code, "input {input:?}: {}", error.message);
        }
        assert!(DomainName::parse(&max_label).is_ok());
    }

    #[test]
    fn a_label_of_64_octets_is_named_in_the_message() {
        let input = format!("{}.com", "a".repeat(64));
        let error = DomainName::parse(&input).expect_err("label too long");
        assert!(error.message.contains("64 characters"), "{}", error.message);
    }

    #[test]
    fn the_253_octet_limit_is_measured_on_the_a_label_form() {
        let exact = format!(
            "{}.{}.{}.{}",
            "a".repeat(63),
            "b".repeat(63),
            "c".repeat(63),
            "d".repeat(61)
        );
        assert_eq!(exact.len(), 253);
        assert!(DomainName::parse(&exact).is_ok());
        let over = format!("{exact}d");
        let error = DomainName::parse(&over).expect_err("254 octets");
        assert_eq!(error.code, ValidationCode::DomainTooLong);
        // 32 × "ü" is 64 UTF-8 bytes but only a 36-octet A-label.
        let unicode = format!("{}.de", "ü".repeat(32));
        assert!(DomainName::parse(&unicode).is_ok());
    }

    #[test]
    fn the_lenient_parser_removes_exactly_one_trailing_dot() {
        let cases: &[(&str, Option<&str>)] = &[
            ("api.contoso.com.", Some("api.contoso.com")),
            ("api.contoso.com", Some("api.contoso.com")),
            ("API.Contoso.com.", Some("api.contoso.com")),
            ("api.contoso.com..", None),
            ("contoso.", None),
            (".", None),
        ];
        for (input, expected) in cases {
            let result = DomainName::parse_allowing_trailing_dot(input);
            assert_eq!(
                result.as_ref().ok().map(DomainName::as_str),
                *expected,
                "input {input:?}: {result:?}"
            );
        }
    }

    #[test]
    fn registrable_domain_follows_the_public_suffix_list() {
        let cases: &[(&str, Option<&str>)] = &[
            ("mail.contoso.com", Some("contoso.com")),
            ("contoso.com", Some("contoso.com")),
            ("a.example.co.uk", Some("example.co.uk")),
            ("shop.xn--bcher-kva.de", Some("xn--bcher-kva.de")),
            ("shop.bücher.de", Some("xn--bcher-kva.de")),
            ("shop.contoso.zz", Some("contoso.zz")),
            ("a.b.公司.cn", Some("b.xn--55qx5d.cn")),
            ("alice.github.io", Some("alice.github.io")),
            ("co.uk", None),
            ("github.io", None),
            ("公司.cn", None),
            ("anything.ck", None),
            ("www.ck", Some("www.ck")),
        ];
        for (input, expected) in cases {
            let registrable = domain(input).registrable();
            assert_eq!(
                registrable.as_ref().map(DomainName::as_str),
                *expected,
                "input {input:?}"
            );
            assert_eq!(domain(input).is_public_suffix(), expected.is_none());
        }
    }

    #[test]
    fn subdomains_are_matched_only_at_label_boundaries() {
        let cases: &[(&str, &str, bool)] = &[
            ("api.fabrikam.com", "fabrikam.com", true),
            ("fabrikam.com", "fabrikam.com", true),
            ("a.b.fabrikam.com", "fabrikam.com", true),
            ("evilfabrikam.com", "fabrikam.com", false),
            ("fabrikam.com", "api.fabrikam.com", false),
            ("cdn.x.com", "photos.x.com", false),
            ("fabrikam.com.evil.com", "fabrikam.com", false),
        ];
        for (child, parent, expected) in cases {
            assert_eq!(
                domain(child).is_same_or_subdomain_of(&domain(parent)),
                *expected,
                "{child} under {parent}"
            );
        }
    }

    #[test]
    fn registrable_domains_are_shared_only_within_one_owner() {
        let cases: &[(&str, &str, bool)] = &[
            ("mail.contoso.com", "api.contoso.com", true),
            ("contoso.com", "contoso.com", true),
            ("contoso.com", "contoso.net", false),
            ("a.example.co.uk", "b.example.co.uk", true),
            ("example.co.uk", "other.co.uk", false),
            ("alice.github.io", "mallory.github.io", false),
            ("co.uk", "co.uk", false),
        ];
        for (a, b, expected) in cases {
            assert_eq!(
                domain(a).shares_registrable_domain_with(&domain(b)),
                *expected,
                "{a} vs {b}"
            );
        }
    }

    #[test]
    fn special_use_and_private_use_tlds_are_refused() {
        let cases = [
            "contoso.test",
            "api.contoso.TEST",
            "printer.local",
            "nas.local.",
            "x.localhost",
            "www.invalid",
            "www.example",
            "duckduckgogg42xjoc72x3sjasowoarfbgcmvfimaftt6twagswzczad.onion",
            "service.internal",
            "router.home.arpa",
            "1.2.0.192.in-addr.arpa",
            "name.alt",
            "intranet.corp",
            "nas.home",
            "smtp.mail",
            "xn--bcher-kva.test",
            "bücher.test",
        ];
        for input in cases {
            let Err(error) = DomainName::parse_allowing_trailing_dot(input) else {
                panic!("{input} must be refused");
            };
            let expected = if input.to_lowercase().ends_with("localhost") {
                ValidationCode::DomainLocalhost
            } else {
                ValidationCode::DomainSpecialUse
            };
            assert_eq!(error.code, expected, "input {input:?}: {}", error.message);
        }
        let error = DomainName::parse("contoso.test").expect_err("special use");
        assert!(error.message.contains("\".test\""), "{}", error.message);
        // Only the last label counts: these are ordinary names.
        for input in [
            "test.contoso.com",
            "local.contoso.com",
            "example.contoso.com",
            "onion.de",
            "testing.com",
            "contoso.tests",
            "mail.contoso.com",
        ] {
            assert!(DomainName::parse(input).is_ok(), "{input} must be accepted");
        }
        assert_eq!(special_use_tld("a.b.TEST."), Some("test"));
        assert_eq!(special_use_tld("a.b.com"), None);
        assert_eq!(special_use_tld(""), None);
    }

    #[test]
    fn ip_addresses_in_every_notation_are_refused() {
        for input in [
            "192.0.2.1",
            "192.0.2.1.",
            "0300.0250.0.1",
            "0xc0.0xa8.0.1",
            "3232235521",
            "[::ffff:192.0.2.1]",
            "::ffff:192.0.2.1",
            "[fe80::1%25eth0]",
            "1.1",
            "contoso.com.1",
        ] {
            let error = DomainName::parse_allowing_trailing_dot(input).expect_err(input);
            assert!(
                matches!(
                    error.code,
                    ValidationCode::DomainIpAddress | ValidationCode::DomainInvalid
                ),
                "input {input:?}: {error:?}"
            );
            assert!(
                looks_like_ip_address(input) || input.contains('%'),
                "{input}"
            );
        }
        assert!(!looks_like_ip_address("contoso.com"));
        assert!(!looks_like_ip_address("1.contoso.com"));
    }

    #[test]
    fn labels_mixing_latin_with_cyrillic_or_greek_are_refused() {
        let cases = [
            // Cyrillic а (U+0430) in "paypal".
            "p\u{0430}ypal.com",
            // Cyrillic о (U+043E) and е (U+0435) in "microsoft" and "apple".
            "micr\u{043E}soft.com",
            "appl\u{0435}.com",
            // Greek ο (U+03BF) in "google".
            "g\u{03BF}\u{03BF}gle.com",
            // Latin and Cyrillic in a subdomain label only.
            "\u{0441}dn-login.contoso.com",
            "login.p\u{0430}ypal.co.uk",
            // Latin with Armenian օ (U+0585), which looks like "o".
            "g\u{0585}\u{0585}gle.com",
            // Latin and Cyrillic in one label with a digit and a hyphen between them.
            "abc-1-\u{0430}\u{0431}\u{0432}.com",
        ];
        for input in cases {
            let error = DomainName::parse(input).expect_err(input);
            assert_eq!(
                error.code,
                ValidationCode::DomainMixedScript,
                "input {input:?}: {}",
                error.message
            );
        }
        // Latin with a right-to-left script already breaks the IDNA bidi rule.
        for input in ["shop\u{0645}.com", "pay\u{05D0}.com"] {
            assert!(DomainName::parse(input).is_err(), "{input}");
        }
        // The punycode spelling of the same look-alike is refused too.
        let punycode = idna::domain_to_ascii("p\u{0430}ypal.com").expect("idna");
        assert!(punycode.starts_with("xn--"), "{punycode}");
        assert_eq!(
            DomainName::parse(&punycode).map_err(|e| e.code),
            Err(ValidationCode::DomainMixedScript)
        );
        let error = DomainName::parse("p\u{0430}ypal.com").expect_err("mixed");
        assert!(error.message.contains("p\u{0430}ypal"), "{}", error.message);
    }

    #[test]
    fn single_script_and_cjk_with_latin_labels_are_accepted() {
        for input in [
            "bücher.de",
            "straße.de",
            "παράδειγμα.gr",
            "пример.рф",
            "пример-1.рф",
            "日本語ドメイン.jp",
            "ドメインabc.jp",
            "中文abc.cn",
            "한국어abc.kr",
            "مثال.com",
            "xn--bcher-kva.de",
            "123-abc.com",
        ] {
            assert!(
                DomainName::parse(input).is_ok(),
                "{input}: {:?}",
                DomainName::parse(input)
            );
        }
        assert_eq!(confusable_label("contoso"), None);
        assert_eq!(confusable_label("xn--bcher-kva"), None);
    }

    #[test]
    fn serde_round_trips_and_rejects_invalid_stored_values() {
        let name = domain("Bücher.de");
        let json = serde_json::to_string(&name).expect("serialises");
        assert_eq!(json, "\"xn--bcher-kva.de\"");
        let back: DomainName = serde_json::from_str(&json).expect("deserialises");
        assert_eq!(back, name);
        for stored in [
            "\"contoso.test\"",
            "\"xn--pypal-4ve.com\"",
            "\"localhost\"",
            "\"a..b.com\"",
            "\"192.0.2.1\"",
            "\"\"",
            "42",
        ] {
            assert!(
                serde_json::from_str::<DomainName>(stored).is_err(),
                "{stored} must not load"
            );
        }
    }
}
