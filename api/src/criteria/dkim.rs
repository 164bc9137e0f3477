//! DKIM verification of a sample with mail-auth, answered entirely from a caller-supplied
//! [`TxtLookup`]: the keys are fetched first and handed to mail-auth as a pre-seeded TXT cache,
//! so mail-auth never queries DNS itself.

use std::borrow::Borrow;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::OnceLock;
use std::time::Instant;

use mail_auth::{
    AuthenticatedMessage, DkimResult, DnsError, Error as AuthError, MessageAuthenticator,
    Parameters, ResolverCache, Txt,
    common::{
        parse::TxtRecordParser,
        resolver::ToFqdn,
        verify::{DomainKey, VerifySignature},
    },
    dkim::DkimError,
    hickory_resolver::{
        config::{ResolverConfig, ResolverOpts},
        proto::op::ResponseCode,
    },
};

use super::DkimSignatureFact;
use super::dns::TxtLookup;
use super::domains::to_a_label;

/// At most this many signatures are verified (each costs a DNS lookup in production); further
/// ones are listed as not evaluated.
pub const MAX_DKIM_SIGNATURES: usize = 8;

/// A TXT cache that answers every name mail-auth asks for: the seeded `selector._domainkey`
/// records, and "record not found" for anything else (a `_report._domainkey` lookup for `r=y`,
/// an ATPS lookup), so verification never falls through to a resolver.
struct SeededTxtCache {
    entries: HashMap<Box<str>, Txt>,
}

fn not_found() -> Txt {
    Txt::Error(AuthError::Dns(DnsError::RecordNotFound(
        ResponseCode::NXDomain,
    )))
}

impl ResolverCache<Box<str>, Txt> for SeededTxtCache {
    fn get<Q>(&self, name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        Some(self.entries.get(name).cloned().unwrap_or_else(not_found))
    }

    fn remove<Q>(&self, _name: &Q) -> Option<Txt>
    where
        Box<str>: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        None
    }

    // `get` always answers, so mail-auth never stores a lookup result here.
    fn insert(&self, _key: Box<str>, _value: Txt, _valid_until: Instant) {}
}

/// mail-auth needs a resolver to exist even when every answer comes from the cache. This one
/// has no name servers, so even an unforeseen lookup cannot leave the process.
fn offline_authenticator() -> Result<&'static MessageAuthenticator, &'static str> {
    static AUTHENTICATOR: OnceLock<Result<MessageAuthenticator, String>> = OnceLock::new();
    AUTHENTICATOR
        .get_or_init(|| {
            MessageAuthenticator::new(
                ResolverConfig::from_parts(None, Vec::new(), Vec::new()),
                ResolverOpts::default(),
            )
            .map_err(|err| err.to_string())
        })
        .as_ref()
        .map_err(String::as_str)
}

/// The name to ask the [`TxtLookup`] for: `selector._domainkey.domain` as lower-case A-labels.
fn lookup_name(selector: &str, domain: &str) -> Option<String> {
    let name = format!("{selector}._domainkey.{domain}");
    let name = name.trim_end_matches('.');
    if name.is_ascii() {
        Some(name.to_ascii_lowercase())
    } else {
        to_a_label(name)
    }
}

/// Fetches a key record and turns it into what mail-auth's own lookup would have cached: the
/// first record that parses as a DKIM key, else the last parse error.
async fn fetch_key(dns: &dyn TxtLookup, name: Option<&str>) -> Txt {
    let Some(name) = name else {
        return Txt::Error(AuthError::Dns(DnsError::InvalidRecordType));
    };
    match dns.txt(name).await {
        Ok(records) if records.is_empty() => not_found(),
        Ok(records) => {
            let mut parsed = Err(AuthError::Dns(DnsError::InvalidRecordType));
            for record in &records {
                parsed = DomainKey::parse(record.as_bytes());
                if parsed.is_ok() {
                    break;
                }
            }
            Txt::from(parsed)
        }
        Err(err) => Txt::Error(AuthError::Dns(DnsError::Resolver(err.to_string()))),
    }
}

fn describe(result: &DkimResult) -> (bool, String) {
    match result {
        DkimResult::Pass => (true, "pass".to_owned()),
        DkimResult::Neutral(AuthError::Dkim(DkimError::FailedBodyHashMatch)) => (
            false,
            "neutral: the body hash does not match: the body was changed after signing (for example a footer added by a relay)".to_owned(),
        ),
        DkimResult::Neutral(err) => (false, format!("neutral: {err}")),
        DkimResult::Fail(err) => (false, format!("fail: {err}")),
        DkimResult::PermError(err) => (false, format!("permerror: {err}")),
        DkimResult::TempError(err) => (false, format!("temperror: {err}")),
        DkimResult::None => (false, "none".to_owned()),
    }
}

fn same_slice(a: &[u8], b: &[u8]) -> bool {
    std::ptr::eq(a.as_ptr(), b.as_ptr()) && a.len() == b.len()
}

enum Slot {
    Parsed { index: usize, d: String, s: String },
    Malformed(String),
}

/// Verifies every `DKIM-Signature` of the raw message against `dns`, topmost first. Any result
/// other than Pass is a failed signature (mail-auth reports a body-hash mismatch as Neutral).
pub async fn verify_signatures(raw: &[u8], dns: &dyn TxtLookup) -> Vec<DkimSignatureFact> {
    let Some(mut message) = AuthenticatedMessage::parse(raw) else {
        return Vec::new();
    };

    // mail-auth keeps parsed and malformed signatures in two lists, each in header order, and
    // their entries share the slices of `raw` with the header list: one pass with a cursor into
    // each list restores the order (linear, whatever the number of signatures).
    let mut slots = Vec::new();
    let (mut next_parsed, mut next_error) = (0, 0);
    for (name, value) in &message.headers {
        if !name.trim_ascii().eq_ignore_ascii_case(b"DKIM-Signature") {
            continue;
        }
        if let Some(header) = message.dkim_headers.get(next_parsed)
            && same_slice(header.value, value)
        {
            slots.push(Slot::Parsed {
                index: next_parsed,
                d: header.header.d.clone(),
                s: header.header.s.clone(),
            });
            next_parsed += 1;
            continue;
        }
        // Other errors (ARC, DKIM2) share the list: skip to this header's entry, if any.
        let found = message
            .errors
            .get(next_error..)
            .and_then(|rest| rest.iter().position(|h| same_slice(h.value, value)))
            .map(|offset| next_error + offset);
        let reason = match found.and_then(|at| message.errors.get(at).map(|h| (at, h))) {
            Some((at, error)) => {
                next_error = at + 1;
                error.header.to_string()
            }
            None => "unreadable signature".to_owned(),
        };
        slots.push(Slot::Malformed(reason));
    }
    if slots.is_empty() {
        return Vec::new();
    }
    message.dkim_headers.truncate(MAX_DKIM_SIGNATURES);

    let mut entries: HashMap<Box<str>, Txt> = HashMap::new();
    for header in &message.dkim_headers {
        let signature = &header.header;
        // The exact key mail-auth will look up: `s._domainkey.d.` through its own FQDN rule.
        let cache_key: Box<str> = signature.domain_key().to_fqdn().into();
        if entries.contains_key(&cache_key) {
            continue;
        }
        let name = lookup_name(&signature.s, &signature.d);
        let txt = fetch_key(dns, name.as_deref()).await;
        entries.insert(cache_key, txt);
    }
    let cache = SeededTxtCache { entries };

    let outputs = match offline_authenticator() {
        Ok(authenticator) => {
            authenticator
                .verify_dkim(Parameters::new(&message).with_txt_cache(&cache))
                .await
        }
        Err(_) => Vec::new(),
    };
    let verifier_error = offline_authenticator().err();

    slots
        .into_iter()
        .map(|slot| match slot {
            Slot::Malformed(reason) => DkimSignatureFact {
                d: None,
                s: None,
                verified: false,
                result: format!("permerror: malformed signature: {reason}"),
            },
            Slot::Parsed { index, d, s } => {
                let Some(header) = message.dkim_headers.get(index) else {
                    return DkimSignatureFact {
                        d: Some(d),
                        s: Some(s),
                        verified: false,
                        result: format!(
                            "not evaluated: only the first {MAX_DKIM_SIGNATURES} signatures are verified"
                        ),
                    };
                };
                let signature = &header.header;
                let (verified, result) = outputs
                    .iter()
                    .find(|output| {
                        output
                            .signature()
                            .is_some_and(|s| std::ptr::eq(s, signature))
                    })
                    .map_or_else(
                        || {
                            let why = verifier_error.unwrap_or("no result from the verifier");
                            (false, format!("temperror: {why}"))
                        },
                        |output| describe(output.result()),
                    );
                DkimSignatureFact {
                    d: Some(d),
                    s: Some(s),
                    verified,
                    result,
                }
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::criteria::dns::FixtureTxt;

    #[test]
    fn lookup_names_are_a_labels() {
        assert_eq!(
            lookup_name("Shop", "Bücher.example").as_deref(),
            Some("shop._domainkey.xn--bcher-kva.example")
        );
        assert_eq!(
            lookup_name("sel", "Contoso.com.").as_deref(),
            Some("sel._domainkey.contoso.com")
        );
    }

    #[tokio::test]
    async fn unsigned_and_malformed_signatures() {
        let dns = FixtureTxt::default();
        let unsigned = b"From: a@contoso.com\r\nSubject: x\r\n\r\nbody\r\n";
        assert!(verify_signatures(unsigned, &dns).await.is_empty());

        let malformed =
            b"DKIM-Signature: v=1; a=rsa-sha256; d=contoso.com\r\nFrom: a@contoso.com\r\n\r\nbody\r\n";
        let facts = verify_signatures(malformed, &dns).await;
        assert_eq!(facts.len(), 1);
        assert!(!facts[0].verified);
    }

    #[tokio::test]
    async fn many_signatures_keep_their_order_and_are_capped() {
        let dns = FixtureTxt::default();
        let mut message = String::new();
        for i in 0..(MAX_DKIM_SIGNATURES + 3) {
            if i == 1 {
                // A malformed one between parsed ones keeps its place.
                message.push_str("DKIM-Signature: v=1; a=rsa-sha256; d=broken.example\r\n");
            }
            message.push_str(&format!(
                "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=d{i}.example; s=s{i}; h=from; bh=AAAA; b=AAAA\r\n"
            ));
        }
        message.push_str("From: a@contoso.com\r\n\r\nbody\r\n");
        let facts = verify_signatures(message.as_bytes(), &dns).await;
        assert_eq!(facts.len(), MAX_DKIM_SIGNATURES + 4);
        assert_eq!(facts[0].d.as_deref(), Some("d0.example"));
        assert_eq!(facts[1].d, None);
        assert_eq!(facts[2].d.as_deref(), Some("d1.example"));
        let last = facts.last().expect("signatures");
        assert_eq!(last.s.as_deref(), Some("s10"));
        assert!(last.result.starts_with("not evaluated"), "{}", last.result);
        assert!(facts.iter().all(|f| !f.verified));
    }

    #[tokio::test]
    async fn unverifiable_signature_fails_offline() {
        let dns = FixtureTxt::default();
        let message = concat!(
            "DKIM-Signature: v=1; a=rsa-sha256; c=relaxed/relaxed; d=contoso.com; s=nokey;\r\n",
            " h=from:subject; bh=frcCV1k9oG9oKj3dpUqdJg1PxRT2RSN/XKdLCPjaYaY=;\r\n",
            " b=AAAA\r\n",
            "From: a@contoso.com\r\nSubject: x\r\n\r\nbody\r\n"
        );
        let facts = verify_signatures(message.as_bytes(), &dns).await;
        assert_eq!(facts.len(), 1);
        assert!(!facts[0].verified);
        assert_eq!(facts[0].d.as_deref(), Some("contoso.com"));
    }
}
