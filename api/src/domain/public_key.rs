//! `RsaPublicKey`: a service's RSA public key, given as PEM (SPKI or PKCS#1), at least 2048
//! bits, kept as the PEM text it was given.

use std::fmt;
use std::hash::{Hash, Hasher};

use rsa::pkcs1::DecodeRsaPublicKey;
use rsa::pkcs8::der::Decode;
use rsa::pkcs8::{DecodePublicKey, ObjectIdentifier, SubjectPublicKeyInfoRef};

use super::{FieldError, ValidationCode, is_forbidden_char, quote};

/// Largest PEM input accepted, in bytes.
const MAX_PEM_BYTES: usize = 16 * 1024;
/// Shortest modulus accepted, in bits.
const MIN_BITS: usize = 2048;
/// Longest modulus accepted, in bits: the most `rsa::RsaPublicKey::new` (and so the
/// signature verification built on it) accepts.
const MAX_BITS: usize = rsa::RsaPublicKey::MAX_SIZE;

/// An RSA public key of 2048 to 4096 bits, given as PEM: `SubjectPublicKeyInfo`
/// (`-----BEGIN PUBLIC KEY-----`) or PKCS#1 (`-----BEGIN RSA PUBLIC KEY-----`), exactly one
/// block with nothing around it but whitespace, at most 16 KiB.
///
/// The stored value is the PEM text as given, with line endings normalised to `\n`,
/// surrounding whitespace removed and one final newline. Messages never quote the input (a
/// pasted private key must not end up in logs). Two values are equal when they hold the same
/// key, whatever the PEM flavour.
#[derive(Debug, Clone)]
pub struct RsaPublicKey {
    /// The normalised PEM text.
    pem: String,
    /// The decoded key.
    key: rsa::RsaPublicKey,
    /// Modulus length in bits.
    bits: usize,
}

impl RsaPublicKey {
    /// Parses a PEM public key (see the type documentation).
    pub fn parse(input: &str) -> Result<Self, FieldError> {
        if input.trim().is_empty() {
            return Err(FieldError::new(
                ValidationCode::Required,
                "Paste the service's RSA public key in PEM format.",
            ));
        }
        if input.len() > MAX_PEM_BYTES {
            return Err(FieldError::new(
                ValidationCode::TooLong,
                format!(
                    "The public key is {} bytes long; a PEM public key is at most {} KiB.",
                    input.len(),
                    MAX_PEM_BYTES / 1024
                ),
            ));
        }
        let pem = format!(
            "{}\n",
            input.replace("\r\n", "\n").replace('\r', "\n").trim()
        );
        if let Some(c) = pem.chars().find(|&c| is_forbidden_char(c) && c != '\n') {
            // Not quoting the input: it may be a private key.
            return Err(FieldError::new(
                ValidationCode::ControlCharacter,
                format!(
                    "The public key contains a control character (U+{:04X}); paste the PEM \
                     text unchanged.",
                    u32::from(c)
                ),
            ));
        }
        if pem.starts_with("ssh-rsa ") {
            return Err(invalid(
                "is in OpenSSH format; convert it with `ssh-keygen -e -m PKCS8 -f key.pub` \
                 and paste the result",
            ));
        }
        let not_one_block = || {
            invalid(
                "is not a single PEM block; paste everything from -----BEGIN PUBLIC KEY----- \
                 to -----END PUBLIC KEY----- and nothing else",
            )
        };
        // The decoder skips text before the block (RFC 7468 §5.2 allows it), but it would
        // end up in the stored value, so only the block itself is accepted.
        let trimmed = pem.trim_end();
        if !trimmed.starts_with("-----BEGIN ")
            || !trimmed.ends_with("-----")
            || trimmed.matches("-----BEGIN ").count() != 1
        {
            return Err(not_one_block());
        }
        let (label, der) =
            rsa::pkcs8::der::pem::decode_vec(pem.as_bytes()).map_err(|_| not_one_block())?;
        let pkcs1_der: &[u8] = match label {
            "PUBLIC KEY" => {
                let spki = SubjectPublicKeyInfoRef::from_der(&der)
                    .map_err(|_| invalid("has a PUBLIC KEY block whose contents are damaged"))?;
                if spki.algorithm.oid != rsa::pkcs1::ALGORITHM_OID {
                    return Err(FieldError::new(
                        ValidationCode::PublicKeyNotRsa,
                        format!(
                            "The public key is {}, not an RSA key; generate an RSA key of at \
                             least {MIN_BITS} bits.",
                            algorithm_name(spki.algorithm.oid)
                        ),
                    ));
                }
                spki.subject_public_key
                    .as_bytes()
                    .ok_or_else(|| invalid("has a PUBLIC KEY block whose contents are damaged"))?
            }
            "RSA PUBLIC KEY" => &der,
            other if other.contains("PRIVATE KEY") => {
                return Err(invalid(
                    "is a PRIVATE key; never share it. Paste the matching public key instead \
                     (openssl pkey -in key.pem -pubout)",
                ));
            }
            "CERTIFICATE" => {
                return Err(invalid(
                    "is a certificate; paste its public key instead \
                     (openssl x509 -in cert.pem -pubkey -noout)",
                ));
            }
            other => {
                return Err(invalid(&format!(
                    "is a PEM block of type {}; expected PUBLIC KEY or RSA PUBLIC KEY",
                    quote(other)
                )));
            }
        };
        let fields = rsa::pkcs1::RsaPublicKey::from_der(pkcs1_der)
            .map_err(|_| invalid("does not contain a well-formed RSA public key"))?;
        let bits = bit_length(fields.modulus.as_bytes());
        if bits < MIN_BITS {
            return Err(FieldError::new(
                ValidationCode::PublicKeyTooShort,
                format!(
                    "The RSA key has {bits} bits; at least {MIN_BITS} are required. Generate a \
                     new key (openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:{MIN_BITS})."
                ),
            ));
        }
        if bits > MAX_BITS {
            return Err(FieldError::new(
                ValidationCode::PublicKeyTooLong,
                format!(
                    "The RSA key has {bits} bits; keys longer than {MAX_BITS} bits are not \
                     supported."
                ),
            ));
        }
        // The library's own decoders re-check the structure (NULL algorithm parameters for
        // SPKI) and the modulus and exponent (odd, 2 < e < 2^33, e < n).
        let key = if label == "PUBLIC KEY" {
            rsa::RsaPublicKey::from_public_key_der(&der).map_err(|_| ())
        } else {
            rsa::RsaPublicKey::from_pkcs1_der(&der).map_err(|_| ())
        }
        .map_err(|()| invalid("has an invalid RSA modulus, exponent or algorithm parameters"))?;
        Ok(Self { pem, key, bits })
    }

    /// The normalised PEM text.
    pub fn as_str(&self) -> &str {
        &self.pem
    }

    /// The modulus length in bits (2048..=4096).
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// The decoded key, for verifying signatures.
    pub fn as_rsa(&self) -> &rsa::RsaPublicKey {
        &self.key
    }
}

/// Length in bits of a big-endian unsigned integer.
fn bit_length(be_bytes: &[u8]) -> usize {
    let significant = be_bytes
        .iter()
        .position(|&b| b != 0)
        .map_or(&[][..], |start| &be_bytes[start..]);
    match significant.first() {
        None => 0,
        Some(&first) => significant.len() * 8 - first.leading_zeros() as usize,
    }
}

/// A readable name for a public key algorithm identifier.
fn algorithm_name(oid: ObjectIdentifier) -> String {
    const NAMES: &[(&str, &str)] = &[
        ("1.2.840.10045.2.1", "an elliptic-curve (EC) key"),
        ("1.3.101.112", "an Ed25519 key"),
        ("1.3.101.113", "an Ed448 key"),
        ("1.3.101.110", "an X25519 key"),
        ("1.3.101.111", "an X448 key"),
        ("1.2.840.10040.4.1", "a DSA key"),
        (
            "1.2.840.113549.1.1.10",
            "an RSASSA-PSS-only key (export it as a plain rsaEncryption key)",
        ),
    ];
    let dotted = oid.to_string();
    NAMES
        .iter()
        .find(|(known, _)| *known == dotted)
        .map_or_else(
            || format!("a key of algorithm {dotted}"),
            |(_, name)| (*name).to_owned(),
        )
}

/// A `PUBLIC_KEY_INVALID` error: "The public key {reason}."
fn invalid(reason: &str) -> FieldError {
    FieldError::new(
        ValidationCode::PublicKeyInvalid,
        format!("The public key {reason}."),
    )
}

impl PartialEq for RsaPublicKey {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl Eq for RsaPublicKey {}

impl Hash for RsaPublicKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.key.hash(state);
    }
}

impl fmt::Display for RsaPublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.pem)
    }
}

string_serde!(RsaPublicKey);

#[cfg(test)]
mod tests {
    //! Fixtures in `testdata/` were generated once with OpenSSL 3.0, e.g.
    //! `openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out k.pem`, then
    //! `openssl pkey -in k.pem -pubout` (SPKI) or `openssl rsa -in k.pem -RSAPublicKey_out`
    //! (PKCS#1); EC P-256, Ed25519 and RSA-PSS keys with `genpkey -algorithm EC|ed25519|RSA-PSS`;
    //! `ec.cert.pem` with `openssl req -x509`. Only public material is kept; the "pasted a
    //! private key" case relabels a public key, since the label alone decides it.

    use super::*;

    const RSA_2048_SPKI: &str = include_str!("testdata/rsa2048.spki.pem");
    const RSA_2048_PKCS1: &str = include_str!("testdata/rsa2048.pkcs1.pem");
    const RSA_2047_SPKI: &str = include_str!("testdata/rsa2047.spki.pem");
    const RSA_1024_SPKI: &str = include_str!("testdata/rsa1024.spki.pem");
    const RSA_4096_PKCS1: &str = include_str!("testdata/rsa4096.pkcs1.pem");
    const RSA_8192_SPKI: &str = include_str!("testdata/rsa8192.spki.pem");
    const EC_P256_SPKI: &str = include_str!("testdata/ec.spki.pem");
    const ED25519_SPKI: &str = include_str!("testdata/ed.spki.pem");
    const RSA_PSS_SPKI: &str = include_str!("testdata/pss.spki.pem");
    const EC_CERTIFICATE: &str = include_str!("testdata/ec.cert.pem");

    /// A PEM block labelled as a PKCS#8 private key (the body is a public key: only the label
    /// matters, and no real private key is kept in the repository).
    fn private_key_pem() -> String {
        RSA_2048_SPKI.replace("PUBLIC KEY", "PRIVATE KEY")
    }

    #[test]
    fn rsa_keys_of_2048_to_4096_bits_are_accepted_in_both_pem_flavours() {
        let cases: &[(&str, usize)] = &[
            (RSA_2048_SPKI, 2048),
            (RSA_2048_PKCS1, 2048),
            (RSA_4096_PKCS1, 4096),
        ];
        for (pem, bits) in cases {
            let key = RsaPublicKey::parse(pem).expect("valid key");
            assert_eq!(key.bits(), *bits);
            assert_eq!(key.as_str(), *pem);
        }
    }

    #[test]
    fn spki_and_pkcs1_spellings_of_one_key_are_equal() {
        let spki = RsaPublicKey::parse(RSA_2048_SPKI).expect("spki");
        let pkcs1 = RsaPublicKey::parse(RSA_2048_PKCS1).expect("pkcs1");
        assert_eq!(spki, pkcs1);
        assert_ne!(spki.as_str(), pkcs1.as_str());
        assert_eq!(spki.as_rsa(), pkcs1.as_rsa());
    }

    #[test]
    fn line_endings_and_surrounding_whitespace_are_normalised() {
        let crlf = format!("\r\n  {}  \r\n", RSA_2048_SPKI.replace('\n', "\r\n"));
        let key = RsaPublicKey::parse(&crlf).expect("CRLF key");
        assert_eq!(key.as_str(), RSA_2048_SPKI);
        let no_final_newline = RSA_2048_SPKI.trim_end();
        assert_eq!(
            RsaPublicKey::parse(no_final_newline)
                .expect("valid")
                .as_str(),
            RSA_2048_SPKI
        );
    }

    #[test]
    fn unusable_keys_get_specific_codes() {
        let private = private_key_pem();
        let rsa_private = RSA_2048_PKCS1.replace("PUBLIC KEY", "PRIVATE KEY");
        let pkcs1_label_on_spki_body = RSA_2048_SPKI.replace("PUBLIC KEY", "RSA PUBLIC KEY");
        let truncated = RSA_2048_SPKI.replacen("MII", "MIJ", 1);
        let with_preamble = format!("Here is my key:\n{RSA_2048_SPKI}");
        let two_blocks = format!("{RSA_2048_SPKI}{RSA_2048_SPKI}");
        let with_nul = RSA_2048_SPKI.replacen('\n', "\n\0", 1);
        let with_tab = RSA_2048_SPKI.replacen('\n', "\n\t", 1);
        let oversized = format!("{RSA_2048_SPKI}{}", " ".repeat(16 * 1024));
        let cases: Vec<(&str, &str, ValidationCode)> = vec![
            ("empty", "", ValidationCode::Required),
            ("whitespace", " \n\t ", ValidationCode::Required),
            ("1024-bit", RSA_1024_SPKI, ValidationCode::PublicKeyTooShort),
            ("2047-bit", RSA_2047_SPKI, ValidationCode::PublicKeyTooShort),
            ("8192-bit", RSA_8192_SPKI, ValidationCode::PublicKeyTooLong),
            ("EC", EC_P256_SPKI, ValidationCode::PublicKeyNotRsa),
            ("Ed25519", ED25519_SPKI, ValidationCode::PublicKeyNotRsa),
            ("RSA-PSS", RSA_PSS_SPKI, ValidationCode::PublicKeyNotRsa),
            ("private", &private, ValidationCode::PublicKeyInvalid),
            (
                "RSA private",
                &rsa_private,
                ValidationCode::PublicKeyInvalid,
            ),
            (
                "certificate",
                EC_CERTIFICATE,
                ValidationCode::PublicKeyInvalid,
            ),
            (
                "wrong label",
                &pkcs1_label_on_spki_body,
                ValidationCode::PublicKeyInvalid,
            ),
            ("damaged", &truncated, ValidationCode::PublicKeyInvalid),
            ("preamble", &with_preamble, ValidationCode::PublicKeyInvalid),
            ("two blocks", &two_blocks, ValidationCode::PublicKeyInvalid),
            (
                "not PEM",
                "MIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA",
                ValidationCode::PublicKeyInvalid,
            ),
            (
                "ssh",
                "ssh-rsa AAAAB3NzaC1yc2EAAAADAQABAAABAQC7 user@host",
                ValidationCode::PublicKeyInvalid,
            ),
            ("NUL", &with_nul, ValidationCode::ControlCharacter),
            ("tab", &with_tab, ValidationCode::ControlCharacter),
            ("over 16 KiB", &oversized, ValidationCode::TooLong),
        ];
        for (name, input, code) in cases {
            let error = RsaPublicKey::parse(input).expect_err(name);
            assert_eq!(error.code, code, "{name}: {}", error.message);
        }
    }

    #[test]
    fn text_before_the_block_is_refused_although_the_pem_decoder_skips_it() {
        let with_preamble = format!("Here is my key:\n{RSA_2048_SPKI}");
        let (label, _) = rsa::pkcs8::der::pem::decode_vec(with_preamble.as_bytes())
            .expect("RFC 7468 lets a decoder skip explanatory text");
        assert_eq!(label, "PUBLIC KEY");
        assert_eq!(
            RsaPublicKey::parse(&with_preamble)
                .expect_err("preamble")
                .code,
            ValidationCode::PublicKeyInvalid
        );
    }

    #[test]
    fn messages_never_quote_a_pasted_private_key() {
        let private = private_key_pem();
        let error = RsaPublicKey::parse(&private).expect_err("private key");
        assert!(error.message.contains("PRIVATE"), "{}", error.message);
        let body = private.lines().nth(1).expect("base64 line");
        assert!(!error.message.contains(body));
    }

    #[test]
    fn bit_length_ignores_leading_zero_bytes() {
        let cases: &[(&[u8], usize)] = &[
            (&[], 0),
            (&[0], 0),
            (&[1], 1),
            (&[0x80], 8),
            (&[0, 0x80, 0], 16),
            (&[0x01, 0, 0], 17),
        ];
        for (bytes, bits) in cases {
            assert_eq!(bit_length(bytes), *bits, "{bytes:?}");
        }
    }

    #[test]
    fn serde_round_trips_and_rejects_invalid_stored_values() {
        let key = RsaPublicKey::parse(RSA_2048_PKCS1).expect("valid");
        let json = serde_json::to_string(&key).expect("serialises");
        let back: RsaPublicKey = serde_json::from_str(&json).expect("deserialises");
        assert_eq!(back, key);
        assert_eq!(back.as_str(), RSA_2048_PKCS1);
        let short = serde_json::to_string(RSA_1024_SPKI).expect("serialises");
        assert!(serde_json::from_str::<RsaPublicKey>(&short).is_err());
    }
}
