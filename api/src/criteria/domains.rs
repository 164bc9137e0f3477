//! Domain-name helpers for the criteria checks: IDNA A-labels, registrable (organizational)
//! domains under the Public Suffix List, label-boundary subdomain matching and addr-spec
//! normalisation.

use crate::domain::looks_like_ip_address;

/// Converts a domain to its lower-case IDNA A-label form (UTS #46, non-transitional) and drops
/// one trailing root dot. Returns `None` for an empty or invalid domain.
pub fn to_a_label(domain: &str) -> Option<String> {
    let trimmed = domain.trim();
    let trimmed = trimmed.strip_suffix('.').unwrap_or(trimmed);
    if trimmed.is_empty() {
        return None;
    }
    let ascii = idna::domain_to_ascii(trimmed).ok()?;
    if ascii.is_empty() || ascii.split('.').any(str::is_empty) {
        return None;
    }
    Some(ascii)
}

/// The registrable domain (eTLD+1) of a lower-case A-label domain under the Public Suffix List.
///
/// The list's ICANN and private sections both apply, as in DMARC implementations; an unlisted
/// TLD such as `.example` falls under the default `*` rule, so `a.esp-relay.example` gives
/// `esp-relay.example`. A bare public suffix (`co.uk`) has no registrable domain: `None`.
///
/// An IP address (`192.0.2.1`, `[192.0.2.1]`, or a name that browsers read as IPv4 such as
/// `0x7f.1`) has none either: the list would otherwise hand `2.1` to `192.0.2.1` and
/// `198.51.2.1` alike, and a DKIM `d=` or SPF domain written as an address would align with
/// every other address ending the same way. Special-use names (`.test`, `.local`) are refused
/// when a sender is registered, so a From address under one never matches a registered sender;
/// they keep a registrable domain here so the reports of test samples stay readable.
pub fn registrable_domain(a_label: &str) -> Option<String> {
    let name = a_label.strip_suffix('.').unwrap_or(a_label);
    if looks_like_ip_address(name) {
        return None;
    }
    psl::domain_str(name).map(str::to_owned)
}

/// True if `host` equals `base` or is a subdomain of it at a label boundary
/// (`api.fabrikam.com` is under `fabrikam.com`; `evilfabrikam.com` is not).
/// Both must already be lower-case A-labels; one trailing root dot on either is ignored.
pub fn is_same_or_subdomain(host: &str, base: &str) -> bool {
    let host = host.strip_suffix('.').unwrap_or(host);
    let base = base.strip_suffix('.').unwrap_or(base);
    if base.is_empty() {
        return false;
    }
    host == base
        || host
            .strip_suffix(base)
            .is_some_and(|prefix| prefix.ends_with('.') && prefix.len() > 1)
}

/// Normalises an addr-spec the way registered senders are stored: lower-case local part, `@`,
/// lower-case A-label domain. No other normalisation (`+tags` and dots are kept).
/// Returns `None` when there is no `@`, an empty side, or a domain IDNA rejects.
pub fn normalize_address(address: &str) -> Option<String> {
    let (local, domain) = address.trim().rsplit_once('@')?;
    if local.is_empty() {
        return None;
    }
    let domain = to_a_label(domain)?;
    Some(format!("{}@{}", local.to_lowercase(), domain))
}

/// The domain part of an already-normalised addr-spec.
pub fn address_domain(normalized: &str) -> Option<&str> {
    normalized.rsplit_once('@').map(|(_, domain)| domain)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_labels() {
        assert_eq!(
            to_a_label("bücher.example").as_deref(),
            Some("xn--bcher-kva.example")
        );
        assert_eq!(to_a_label("Contoso.COM.").as_deref(), Some("contoso.com"));
        assert_eq!(to_a_label(""), None);
        assert_eq!(to_a_label("a..b"), None);
    }

    #[test]
    fn registrable_domains() {
        assert_eq!(
            registrable_domain("a.example.co.uk").as_deref(),
            Some("example.co.uk")
        );
        assert_eq!(
            registrable_domain("other.co.uk").as_deref(),
            Some("other.co.uk")
        );
        assert_eq!(
            registrable_domain("mail.contoso.com").as_deref(),
            Some("contoso.com")
        );
        assert_eq!(
            registrable_domain("esp-relay.example").as_deref(),
            Some("esp-relay.example")
        );
        assert_eq!(
            registrable_domain("shop.xn--bcher-kva.example").as_deref(),
            Some("xn--bcher-kva.example")
        );
        assert_eq!(registrable_domain("co.uk"), None);
    }

    #[test]
    fn ip_addresses_have_no_registrable_domain() {
        for name in [
            "192.0.2.1",
            "198.51.2.1",
            "192.0.2.1.",
            "[192.0.2.1]",
            "0x7f.1",
            "2130706433",
            "[2001:db8::1]",
            "2001:db8::1",
            "mail.contoso.123",
        ] {
            assert_eq!(registrable_domain(name), None, "{name}");
        }
        assert_eq!(
            registrable_domain("1.contoso.com").as_deref(),
            Some("contoso.com")
        );
    }

    #[test]
    fn subdomains_match_at_label_boundaries() {
        assert!(is_same_or_subdomain("fabrikam.com", "fabrikam.com"));
        assert!(is_same_or_subdomain("api.fabrikam.com", "fabrikam.com"));
        assert!(is_same_or_subdomain("api.fabrikam.com.", "fabrikam.com"));
        assert!(!is_same_or_subdomain("evilfabrikam.com", "fabrikam.com"));
        assert!(!is_same_or_subdomain("cdn.x.com", "photos.x.com"));
        assert!(!is_same_or_subdomain(".fabrikam.com", "fabrikam.com"));
        assert!(!is_same_or_subdomain("fabrikam.com", ""));
    }

    #[test]
    fn addresses() {
        assert_eq!(
            normalize_address("Bestellung@Bücher.example").as_deref(),
            Some("bestellung@xn--bcher-kva.example")
        );
        assert_eq!(
            normalize_address("first.last+tag@Contoso.com").as_deref(),
            Some("first.last+tag@contoso.com")
        );
        assert_eq!(normalize_address("nobody"), None);
        assert_eq!(normalize_address("@contoso.com"), None);
        assert_eq!(address_domain("a@contoso.com"), Some("contoso.com"));
    }
}
