//! The dev provider's signing key: RSA-2048, generated afresh on every start with aws-lc-rs, published
//! as one JWK (RFC 7517; RFC 7518 §6.3.1) and used for RS256 (RFC 7518 §3.3) — the algorithm the
//! gateway accepts by default and Okta signs with. Also the random values the provider mints (key
//! ids, `jti`s, opaque tokens, client credentials), all from the system's secure generator.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

/// The JOSE `typ` of access tokens (RFC 9068 §2.1).
const ACCESS_TOKEN_TYP: &str = "at+jwt";

/// The one key the provider signs with, in the forms each use needs.
pub(super) struct SigningKey {
    kid: String,
    encoding: EncodingKey,
    decoding: DecodingKey,
    jwk: Value,
}

/// A failure of the provider's own cryptography: never the client's fault.
#[derive(Debug, thiserror::Error)]
pub(super) enum KeyError {
    #[error("the system random number generator failed")]
    Random,
    #[error("generating the RSA-2048 signing key failed")]
    Generate,
    #[error("encoding the signing key failed: {0}")]
    Encode(String),
    #[error("signing a token failed: {0}")]
    Sign(jsonwebtoken::errors::Error),
}

/// The one claim introspection needs from a JWT once its signature holds.
#[derive(Deserialize)]
struct JtiClaim {
    jti: String,
}

// === impl SigningKey ===

impl SigningKey {
    /// A fresh key pair and a random `kid`. CPU-bound (tens of milliseconds): call it off the async
    /// workers.
    pub fn generate() -> Result<SigningKey, KeyError> {
        let pair = KeyPair::generate(KeySize::Rsa2048).map_err(|_| KeyError::Generate)?;
        let pkcs8 = pair
            .as_der()
            .map_err(|_| KeyError::Encode("PKCS#8 export refused".to_owned()))?;
        // jsonwebtoken's DER constructor wants PKCS#1, aws-lc-rs exports PKCS#8; jsonwebtoken's PEM
        // reader unwraps PKCS#8, so the key goes through PEM rather than a hand-written DER parser.
        let encoding = EncodingKey::from_rsa_pem(pem("PRIVATE KEY", pkcs8.as_ref()).as_bytes())
            .map_err(|e| KeyError::Encode(e.to_string()))?;
        let public = pair.public_key();
        // `as_ref` is the RSAPublicKey DER (RFC 8017 §A.1.1), the form `from_rsa_der` takes.
        let decoding = DecodingKey::from_rsa_der(public.as_ref());
        let kid = random_b64url(12)?;
        let jwk = json!({
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "kid": kid,
            "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
            "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
        });
        Ok(SigningKey {
            kid,
            encoding,
            decoding,
            jwk,
        })
    }

    /// The JWK Set document (RFC 7517 §5) with the public key alone.
    pub fn jwks(&self) -> Value {
        json!({ "keys": [self.jwk] })
    }

    /// Signs `claims` as an RFC 9068 access token: RS256, `typ: at+jwt`, this key's `kid`.
    pub fn sign(&self, claims: &impl Serialize) -> Result<String, KeyError> {
        let mut header = Header::new(Algorithm::RS256);
        header.typ = Some(ACCESS_TOKEN_TYP.to_owned());
        header.kid = Some(self.kid.clone());
        jsonwebtoken::encode(&header, claims, &self.encoding).map_err(KeyError::Sign)
    }

    /// The `jti` of a token this key signed; `None` for anything else (another key, a changed
    /// byte, garbage). Expiry is not judged here: the provider's record of the token decides.
    pub fn verified_jti(&self, token: &str) -> Option<String> {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        validation.validate_aud = false;
        validation.required_spec_claims.clear();
        jsonwebtoken::decode::<JtiClaim>(token, &self.decoding, &validation)
            .ok()
            .map(|data| data.claims.jti)
    }
}

/// `bytes` random bytes, base64url without padding.
pub(super) fn random_b64url(bytes: usize) -> Result<String, KeyError> {
    let mut buf = vec![0u8; bytes];
    aws_lc_rs::rand::fill(&mut buf).map_err(|_| KeyError::Random)?;
    Ok(URL_SAFE_NO_PAD.encode(buf))
}

/// `der` as PEM (RFC 7468): base64 in 64-character lines between the labels.
fn pem(label: &str, der: &[u8]) -> String {
    let base64 = STANDARD.encode(der);
    let mut text = format!("-----BEGIN {label}-----\n");
    // Base64 is ASCII, so slicing every 64 bytes never splits a character.
    for line in base64.as_bytes().chunks(64) {
        text.push_str(&String::from_utf8_lossy(line));
        text.push('\n');
    }
    text.push_str(&format!("-----END {label}-----\n"));
    text
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use serde_json::Map;

    use super::*;

    /// One generated key for the module's tests: generation is the slow part.
    fn key() -> &'static SigningKey {
        static KEY: OnceLock<SigningKey> = OnceLock::new();
        KEY.get_or_init(|| SigningKey::generate().unwrap())
    }

    #[test]
    fn the_published_jwk_verifies_what_the_key_signs() {
        let token = key()
            .sign(&json!({"jti": "j-1", "exp": 4_000_000_000u64}))
            .unwrap();
        let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key().jwks()["keys"][0].clone())
            .expect("the JWK parses as a JWK");
        let decoding = DecodingKey::from_jwk(&jwk).unwrap();
        let data = jsonwebtoken::decode::<Map<String, Value>>(
            &token,
            &decoding,
            &Validation::new(Algorithm::RS256),
        )
        .unwrap();
        assert_eq!(data.header.typ.as_deref(), Some("at+jwt"));
        assert_eq!(data.header.kid.as_deref(), Some(key().kid.as_str()));
        assert_eq!(data.claims["jti"], "j-1");
        assert_eq!(key().jwks()["keys"][0]["e"], "AQAB");
    }

    #[test]
    fn only_its_own_unaltered_tokens_yield_a_jti() {
        let token = key().sign(&json!({"jti": "j-2", "exp": 1})).unwrap();
        assert_eq!(key().verified_jti(&token).as_deref(), Some("j-2"));

        let mut tampered = token.clone();
        tampered.push('A');
        assert_eq!(key().verified_jti(&tampered), None);
        assert_eq!(key().verified_jti("not.a.jwt"), None);
        assert_eq!(key().verified_jti(""), None);

        let other = SigningKey::generate().unwrap();
        let foreign = other.sign(&json!({"jti": "j-2", "exp": 1})).unwrap();
        assert_eq!(key().verified_jti(&foreign), None);
        assert_ne!(other.kid, key().kid, "every key gets its own kid");
    }

    #[test]
    fn random_values_differ_and_have_the_asked_length() {
        let a = random_b64url(32).unwrap();
        assert_eq!(a.len(), 43);
        assert_ne!(a, random_b64url(32).unwrap());
    }
}
