//! DNS TXT sources for DKIM key lookups: the [`TxtLookup`] trait, [`FixtureTxt`] over the
//! `dns.json` fixture format for tests, and [`SystemTxt`] over the system resolver for production.

use std::collections::HashMap;

use async_trait::async_trait;
use mail_auth::hickory_resolver::{
    TokioResolver,
    proto::rr::{Name, RData},
};

/// Why a TXT lookup (or setting up a TXT source) failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DnsLookupError {
    /// The lookup could not be answered (timeout, SERVFAIL, unreachable resolver, bad name).
    /// A name that simply has no TXT records is not an error: see [`TxtLookup::txt`].
    #[error("DNS TXT lookup for {name} failed: {reason}")]
    Failed {
        /// The queried name.
        name: String,
        /// What the resolver said.
        reason: String,
    },
    /// A DNS fixture is not a JSON object mapping names to lists of strings.
    #[error("DNS fixture is not a JSON object of name -> [TXT record strings]: {0}")]
    InvalidFixture(String),
    /// The system resolver configuration could not be read.
    #[error("could not read the system DNS resolver configuration: {0}")]
    ResolverConfig(String),
}

/// The DNS TXT source used for DKIM keys: production implements it over a real resolver,
/// tests over the fixture.
#[async_trait]
pub trait TxtLookup: Send + Sync {
    /// The TXT records at `name` (lower case, IDN labels as punycode A-labels, no trailing dot),
    /// one string per record with its character-strings already joined. `Ok(vec![])` means the
    /// name has no TXT records (NXDOMAIN or NODATA); `Err` means the answer is unknown.
    async fn txt(&self, name: &str) -> Result<Vec<String>, DnsLookupError>;
}

/// A [`TxtLookup`] answering from a fixed map, in the format of the samples' `dns.json`.
#[derive(Debug, Clone, Default)]
pub struct FixtureTxt {
    records: HashMap<String, Vec<String>>,
}

impl FixtureTxt {
    /// Reads a JSON object whose keys are DNS names and whose values are lists of TXT records.
    /// Keys are compared case-insensitively and without a trailing dot.
    pub fn from_json(json: &str) -> Result<Self, DnsLookupError> {
        let raw: HashMap<String, Vec<String>> = serde_json::from_str(json)
            .map_err(|err| DnsLookupError::InvalidFixture(err.to_string()))?;
        let records = raw
            .into_iter()
            .map(|(name, values)| (fixture_key(&name), values))
            .collect();
        Ok(Self { records })
    }
}

fn fixture_key(name: &str) -> String {
    let name = name.trim();
    name.strip_suffix('.').unwrap_or(name).to_ascii_lowercase()
}

#[async_trait]
impl TxtLookup for FixtureTxt {
    async fn txt(&self, name: &str) -> Result<Vec<String>, DnsLookupError> {
        Ok(self
            .records
            .get(&fixture_key(name))
            .cloned()
            .unwrap_or_default())
    }
}

/// A [`TxtLookup`] over the system resolver configuration (`/etc/resolv.conf` on Unix), using
/// the hickory resolver that mail-auth bundles and re-exports, so no further dependency is
/// needed. Lookups need a Tokio runtime.
#[derive(Clone)]
pub struct SystemTxt {
    resolver: TokioResolver,
}

impl SystemTxt {
    /// Builds the resolver from the system configuration.
    pub fn from_system_conf() -> Result<Self, DnsLookupError> {
        let authenticator = mail_auth::MessageAuthenticator::new_system_conf()
            .map_err(|err| DnsLookupError::ResolverConfig(err.to_string()))?;
        Ok(Self {
            resolver: authenticator.0,
        })
    }

    /// Wraps an already configured hickory resolver (for example one with a custom timeout).
    pub fn from_resolver(resolver: TokioResolver) -> Self {
        Self { resolver }
    }
}

impl std::fmt::Debug for SystemTxt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SystemTxt").finish_non_exhaustive()
    }
}

#[async_trait]
impl TxtLookup for SystemTxt {
    async fn txt(&self, name: &str) -> Result<Vec<String>, DnsLookupError> {
        let failed = |reason: String| DnsLookupError::Failed {
            name: name.to_owned(),
            reason,
        };
        // A fully qualified name, so that resolv.conf search domains are never appended.
        let fqdn = Name::from_str_relaxed(format!("{}.", name.trim_end_matches('.')))
            .map_err(|err| failed(err.to_string()))?;
        match self.resolver.txt_lookup(fqdn).await {
            Ok(lookup) => Ok(lookup
                .answers()
                .iter()
                .filter_map(|record| match &record.data {
                    RData::TXT(txt) => {
                        let joined: Vec<u8> = txt.txt_data.iter().flatten().copied().collect();
                        Some(String::from_utf8_lossy(&joined).into_owned())
                    }
                    _ => None,
                })
                .collect()),
            Err(err) if err.is_no_records_found() || err.is_nx_domain() => Ok(Vec::new()),
            Err(err) => Err(failed(err.to_string())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn fixture_lookup_is_case_and_dot_insensitive() {
        let fixture =
            FixtureTxt::from_json(r#"{"Sel._domainkey.Contoso.com.": ["v=DKIM1; p=AB"]}"#)
                .expect("valid fixture");
        assert_eq!(
            fixture.txt("sel._domainkey.contoso.com").await,
            Ok(vec!["v=DKIM1; p=AB".to_owned()])
        );
        assert_eq!(
            fixture.txt("SEL._domainkey.contoso.com.").await,
            Ok(vec!["v=DKIM1; p=AB".to_owned()])
        );
        assert_eq!(fixture.txt("missing.contoso.com").await, Ok(vec![]));
    }

    #[test]
    fn fixture_rejects_wrong_shape() {
        assert!(matches!(
            FixtureTxt::from_json(r#"{"a": "not a list"}"#),
            Err(DnsLookupError::InvalidFixture(_))
        ));
    }
}
