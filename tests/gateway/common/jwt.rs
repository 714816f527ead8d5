//! Minting JWT access tokens for the local-validation tests: the fixture keys of `tests/keys/`
//! (test-only), their public JWKs for a JWKS, well-formed signed tokens, and the malformed or hostile
//! ones (any JOSE header signed with a real key, `alg: none`, HS256 keyed with a public key).

use std::sync::atomic::{AtomicU64, Ordering};

use jsonwebtoken::{Algorithm, EncodingKey};
use serde_json::{Value, json};

use super::fake_idp::now;

/// A fixture private key with the `kid` and `alg` tokens signed with it carry.
pub struct SigningKey {
    pub kid: String,
    /// What `sign` and `sign_with_header` sign with (and `sign` puts in the header). Any algorithm of
    /// the key's family works (e.g. `PS256` or `RS384` for an RSA key).
    pub alg: Algorithm,
    encoding: EncodingKey,
    public_jwk: &'static str,
    public_pem: &'static str,
}

impl SigningKey {
    /// `tests/keys/rsa-a.pem`, RS256.
    pub fn rsa_a(kid: &str) -> Self {
        Self::rsa(
            kid,
            include_str!("../../keys/rsa-a.pem"),
            include_str!("../../keys/rsa-a.jwk.json"),
            include_str!("../../keys/rsa-a.pub.pem"),
        )
    }

    /// `tests/keys/rsa-b.pem`, RS256: another RSA key (e.g. the attacker's, or the next one).
    pub fn rsa_b(kid: &str) -> Self {
        Self::rsa(
            kid,
            include_str!("../../keys/rsa-b.pem"),
            include_str!("../../keys/rsa-b.jwk.json"),
            include_str!("../../keys/rsa-b.pub.pem"),
        )
    }

    /// `tests/keys/ec-p256.pem`, ES256.
    pub fn ec_p256(kid: &str) -> Self {
        let encoding = EncodingKey::from_ec_pem(include_bytes!("../../keys/ec-p256.pem"))
            .expect("tests/keys/ec-p256.pem is a PKCS#8 P-256 key");
        SigningKey {
            kid: kid.to_owned(),
            alg: Algorithm::ES256,
            encoding,
            public_jwk: include_str!("../../keys/ec-p256.jwk.json"),
            public_pem: include_str!("../../keys/ec-p256.pub.pem"),
        }
    }

    fn rsa(
        kid: &str,
        private_pem: &str,
        public_jwk: &'static str,
        public_pem: &'static str,
    ) -> Self {
        let encoding = EncodingKey::from_rsa_pem(private_pem.as_bytes())
            .expect("the tests/keys RSA keys are PKCS#8 PEM");
        SigningKey {
            kid: kid.to_owned(),
            alg: Algorithm::RS256,
            encoding,
            public_jwk,
            public_pem,
        }
    }

    /// The public JWK for a JWKS `keys` array: `{kty, n, e}` (RSA) or `{kty, crv, x, y}` (EC), plus
    /// this key's `kid`, `use: "sig"` and `alg`.
    pub fn public_jwk(&self) -> Value {
        let mut jwk: Value =
            serde_json::from_str(self.public_jwk).expect("the tests/keys JWKs are JSON");
        jwk["kid"] = self.kid.clone().into();
        jwk["use"] = "sig".into();
        jwk["alg"] = alg_name(self.alg).into();
        jwk
    }

    /// The public key as SPKI PEM (`-----BEGIN PUBLIC KEY-----`), as a server holding only the JWKS
    /// could derive it: the secret of the "HS256 keyed with the RSA public key" confusion attack.
    pub fn public_pem(&self) -> &'static str {
        self.public_pem
    }
}

/// A token signed with `key`, header `{"alg": <key.alg>, "typ": "at+jwt", "kid": <key.kid>}`.
pub fn sign(key: &SigningKey, claims: &Value) -> String {
    let header = json!({"alg": alg_name(key.alg), "typ": "at+jwt", "kid": key.kid});
    sign_with_header(key, header, claims)
}

/// `base64url(header).base64url(claims).signature`, the signature made with `key` (its `alg`) over the
/// first two parts, whatever `header` says: so a test can put `jwk`, `jku`, `crit`, a wrong `kid` or
/// a lying `alg` in the header and still sign with a real key.
pub fn sign_with_header(key: &SigningKey, header: Value, claims: &Value) -> String {
    let input = signing_input(&header, claims);
    let signature = jsonwebtoken::crypto::sign(input.as_bytes(), &key.encoding, key.alg)
        .expect("signing with a fixture key");
    format!("{input}.{signature}")
}

/// An unsecured JWT (RFC 7519 §6): `base64url(header).base64url(claims).` with an empty signature.
/// `header` is taken as is (e.g. `{"alg": "none"}`, or `{"alg": "NONE", "kid": ...}`).
pub fn unsigned(header: Value, claims: &Value) -> String {
    format!("{}.", signing_input(&header, claims))
}

/// HMAC-SHA256 over `base64url(header).base64url(claims)` keyed with `secret`, whatever `header` says
/// (for the algorithm-confusion attack: `header` `{"alg": "HS256", "kid": ...}` and `secret` the RSA
/// public key's PEM bytes, `key.public_pem().as_bytes()`).
pub fn hs256(secret: &[u8], header: Value, claims: &Value) -> String {
    let input = signing_input(&header, claims);
    let signature = jsonwebtoken::crypto::sign(
        input.as_bytes(),
        &EncodingKey::from_secret(secret),
        Algorithm::HS256,
    )
    .expect("HMAC-SHA256 signing");
    format!("{input}.{signature}")
}

/// The claims of an Okta client_credentials access token: `iss`, `aud`, `sub` and `cid` (both the
/// client id), `scp` (an array), `iat` now, `exp` now + `exp_in_secs` (negative: already expired) and a
/// unique `jti`. Adjust with `claims["nbf"] = ...` and the like.
pub fn okta_claims(
    issuer: &str,
    client_id: &str,
    scopes: &[&str],
    audience: &str,
    exp_in_secs: i64,
) -> Value {
    let now = now();
    json!({
        "jti": unique_jti(),
        "iss": issuer,
        "aud": audience,
        "iat": now,
        "exp": now + exp_in_secs,
        "cid": client_id,
        "sub": client_id,
        "scp": scopes,
    })
}

/// The JOSE name of `alg` (`"RS256"`, `"ES256"`, ...).
pub fn alg_name(alg: Algorithm) -> String {
    match serde_json::to_value(alg).expect("an Algorithm serialises") {
        Value::String(name) => name,
        other => panic!("Algorithm serialised as {other}"),
    }
}

/// `base64url(header) "." base64url(claims)`, both JSON as serde_json writes them.
pub fn signing_input(header: &Value, claims: &Value) -> String {
    format!(
        "{}.{}",
        b64url(header.to_string().as_bytes()),
        b64url(claims.to_string().as_bytes())
    )
}

/// Base64url without padding (RFC 7515 §2), for building tokens by hand.
pub fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        // One output character per 6 bits of input: 2, 3 or 4 of them for 1, 2 or 3 bytes.
        for i in 0..=chunk.len() {
            out.push(char::from(ALPHABET[((n >> (18 - 6 * i)) & 63) as usize]));
        }
    }
    out
}

fn unique_jti() -> String {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("AT.{nanos:x}.{}.{n}", std::process::id())
}
