//! Compact JWS (RFC 7515) with ES256 only: signing and signature verification.
//!
//! Only one algorithm is ever accepted. The header's `alg` is compared with
//! `"ES256"` before anything else in the token is interpreted, which rules out
//! the classic `alg: none` and HS256-with-the-public-key confusions.
//!
//! ECDSA is malleable: if `(r, s)` is a valid signature, so is `(r, n − s)`. Only the low-`s`
//! form (`s ≤ n/2`, as in BIP 62 / RFC 6979 practice) is issued and accepted, so every token
//! has exactly one valid encoding (and one entry in the verified-token cache).
//!
//! This stays on ring rather than a JOSE library: the gateway's own tokens use one fixed
//! algorithm with keys from PKCS#8 files, and the low-`s` rule above is something a general
//! library neither enforces nor produces. Client assertions, which arrive with RSA, PS and
//! EdDSA keys as JWKs, are verified with `jsonwebtoken` in [`crate::auth::assertion`].

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use ring::digest;
use ring::rand::SystemRandom;
use ring::signature::{
    EcdsaKeyPair, KeyPair as _, UnparsedPublicKey, ECDSA_P256_SHA256_FIXED,
    ECDSA_P256_SHA256_FIXED_SIGNING,
};
use serde_json::{json, Map, Value};

use crate::auth::AuthError;

/// The only JWS algorithm issued and accepted.
pub const ALGORITHM: &str = "ES256";
/// `typ` header of issued access tokens (RFC 9068 §2.1).
pub const TOKEN_TYPE: &str = "at+jwt";
/// Longest token looked at; ours are well under 1 KiB, and refusing early
/// avoids decoding and hashing attacker-sized input.
pub const MAX_TOKEN_LEN: usize = 8 * 1024;
/// Length of an uncompressed P-256 point: `0x04 || x || y`.
const P256_POINT_LEN: usize = 65;
/// Length of a fixed-size (r || s) P-256 signature.
const P256_SIGNATURE_LEN: usize = 64;
/// Length of one scalar (r or s) of a fixed-size P-256 signature.
const P256_SCALAR_LEN: usize = 32;
/// Order n of the P-256 group (SEC 2 §2.4.2), big-endian.
const P256_ORDER: [u8; P256_SCALAR_LEN] = [
    0xFF, 0xFF, 0xFF, 0xFF, 0x00, 0x00, 0x00, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    0xBC, 0xE6, 0xFA, 0xAD, 0xA7, 0x17, 0x9E, 0x84, 0xF3, 0xB9, 0xCA, 0xC2, 0xFC, 0x63, 0x25, 0x51,
];
/// ⌊n / 2⌋: the largest accepted `s`.
const P256_HALF_ORDER: [u8; P256_SCALAR_LEN] = [
    0x7F, 0xFF, 0xFF, 0xFF, 0x80, 0x00, 0x00, 0x00, 0x7F, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
    0xDE, 0x73, 0x7D, 0x56, 0xD3, 0x8B, 0xCF, 0x42, 0x79, 0xDC, 0xE5, 0x61, 0x7E, 0x31, 0x92, 0xA8,
];

/// Whether the `s` half of a fixed-size signature is at most n/2. Both are big-endian and of
/// equal length, so byte-wise lexicographic order is numeric order. Not constant time, and
/// need not be: a signature is public.
fn has_low_s(signature: &[u8]) -> bool {
    signature
        .get(P256_SCALAR_LEN..)
        .is_some_and(|s| s <= P256_HALF_ORDER.as_slice())
}

/// Replaces a high `s` by n − s in a fixed-size signature, the other valid encoding of the
/// same signature; a low `s` is left alone.
fn normalise_s(signature: &mut [u8]) {
    if has_low_s(signature) {
        return;
    }
    let Some(s) = signature.get_mut(P256_SCALAR_LEN..) else {
        return;
    };
    // Schoolbook subtraction n − s, least significant byte first; s < n (ring only produces
    // valid scalars), so no borrow is left at the end.
    let mut borrow = 0u16;
    for (byte, n) in s.iter_mut().zip(P256_ORDER).rev() {
        let subtrahend = u16::from(*byte) + borrow;
        let minuend = u16::from(n);
        if minuend >= subtrahend {
            *byte = (minuend - subtrahend) as u8;
            borrow = 0;
        } else {
            *byte = (minuend + 0x100 - subtrahend) as u8;
            borrow = 1;
        }
    }
}

/// Encodes bytes as unpadded base64url, the JOSE encoding.
pub fn b64url_encode(bytes: impl AsRef<[u8]>) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Decodes unpadded base64url; padding, other alphabets and non-canonical
/// trailing bits are refused so one token has exactly one spelling.
pub fn b64url_decode(s: &str) -> Result<Vec<u8>, AuthError> {
    URL_SAFE_NO_PAD
        .decode(s)
        .map_err(|_| AuthError::Malformed("invalid base64url"))
}

/// Key id for a public key: base64url of the first 8 bytes of its SHA-256.
pub fn key_id(public_point: &[u8]) -> String {
    let d = digest::digest(&digest::SHA256, public_point);
    b64url_encode(&d.as_ref()[..8])
}

/// A fresh P-256 key as PKCS#8 DER.
pub fn generate_pkcs8() -> Result<Vec<u8>, AuthError> {
    EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &SystemRandom::new())
        .map(|d| d.as_ref().to_vec())
        .map_err(|_| AuthError::Crypto("key generation failed"))
}

/// PKCS#8 DER wrapped as a PEM `PRIVATE KEY` block.
pub fn pkcs8_pem(der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let lines: Vec<&str> = b64
        .as_bytes()
        .chunks(64)
        .filter_map(|c| std::str::from_utf8(c).ok())
        .collect();
    format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        lines.join("\n")
    )
}

/// The DER inside a PEM block, or `None` when `bytes` is not PEM.
fn pem_body(bytes: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(bytes).ok()?;
    if !text.contains("-----BEGIN") {
        return None;
    }
    let b64: String = text
        .lines()
        .filter(|l| !l.starts_with("-----"))
        .map(str::trim)
        .collect();
    base64::engine::general_purpose::STANDARD.decode(b64).ok()
}

/// The private half of the gateway's ES256 key: loaded from `auth.signing_key_file`, or
/// generated in memory at start.
pub struct SigningKey {
    key_pair: EcdsaKeyPair,
    rng: SystemRandom,
    kid: String,
}

impl SigningKey {
    /// Generates a fresh P-256 key pair from the system random generator.
    pub fn generate() -> Result<SigningKey, AuthError> {
        SigningKey::from_pkcs8(&generate_pkcs8()?)
    }

    /// Loads a P-256 key from PKCS#8, DER or PEM (`-----BEGIN PRIVATE KEY-----`), so every
    /// replica (and every restart) signs with the same key.
    pub fn from_pkcs8(bytes: &[u8]) -> Result<SigningKey, AuthError> {
        let der = pem_body(bytes).unwrap_or_else(|| bytes.to_vec());
        let rng = SystemRandom::new();
        let key_pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &der, &rng)
            .map_err(|_| AuthError::Crypto("not a PKCS#8 P-256 private key"))?;
        let kid = key_id(key_pair.public_key().as_ref());
        Ok(SigningKey { key_pair, rng, kid })
    }

    /// Key id published in the JWKS and put in every token header.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// Uncompressed public point `0x04 || x || y` (65 bytes).
    pub fn public_point(&self) -> &[u8] {
        self.key_pair.public_key().as_ref()
    }

    /// The matching public key, for validators.
    pub fn verifying_key(&self) -> Result<VerifyingKey, AuthError> {
        VerifyingKey::from_public_point(self.public_point())
    }

    /// Serialises `claims` and signs them into a compact JWS with the header
    /// `{"alg":"ES256","typ":"at+jwt","kid":…}`.
    pub fn sign(&self, claims: &Value) -> Result<String, AuthError> {
        let header = json!({ "alg": ALGORITHM, "typ": TOKEN_TYPE, "kid": self.kid });
        let header = serde_json::to_vec(&header)
            .map_err(|_| AuthError::Crypto("header serialisation failed"))?;
        let payload = serde_json::to_vec(claims)
            .map_err(|_| AuthError::Crypto("claims serialisation failed"))?;
        let mut token = b64url_encode(header);
        token.push('.');
        token.push_str(&b64url_encode(payload));
        let signature = self
            .key_pair
            .sign(&self.rng, token.as_bytes())
            .map_err(|_| AuthError::Crypto("signing failed"))?;
        // ring picks either s; validators (ours included) accept only the low one.
        let mut signature = signature.as_ref().to_vec();
        normalise_s(&mut signature);
        token.push('.');
        token.push_str(&b64url_encode(&signature));
        Ok(token)
    }
}

/// A public ES256 key a token may be signed with.
#[derive(Debug, Clone)]
pub struct VerifyingKey {
    kid: String,
    point: Vec<u8>,
}

impl VerifyingKey {
    /// Builds a key from an uncompressed P-256 point (`0x04 || x || y`); the
    /// kid is derived with [`key_id`].
    pub fn from_public_point(point: &[u8]) -> Result<VerifyingKey, AuthError> {
        if point.len() != P256_POINT_LEN || point.first() != Some(&0x04) {
            return Err(AuthError::Crypto("not an uncompressed P-256 point"));
        }
        Ok(VerifyingKey {
            kid: key_id(point),
            point: point.to_vec(),
        })
    }

    /// The key id.
    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The key as a JWK (RFC 7517/7518) for the JWKS document.
    pub fn jwk(&self) -> Value {
        // `from_public_point` guarantees 65 bytes, so both ranges exist; the
        // fallback only keeps this free of panicking slice indexing.
        let x = self.point.get(1..33).unwrap_or_default();
        let y = self.point.get(33..65).unwrap_or_default();
        json!({
            "kty": "EC",
            "crv": "P-256",
            "x": b64url_encode(x),
            "y": b64url_encode(y),
            "kid": self.kid,
            "alg": ALGORITHM,
            "use": "sig",
        })
    }
}

/// Checks a compact JWS against `keys` and returns its claims object.
///
/// Order matters: structure, then the algorithm (before any signature bytes
/// are read), then the key, then the signature, and only then the payload is
/// parsed, so unauthenticated JSON is never interpreted beyond the header.
/// Claim semantics (expiry, issuer, …) are left to the caller.
pub fn verify(token: &str, keys: &[VerifyingKey]) -> Result<Map<String, Value>, AuthError> {
    if token.len() > MAX_TOKEN_LEN {
        return Err(AuthError::Malformed("token too long"));
    }
    let mut parts = token.split('.');
    let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(AuthError::Malformed("expected three dot-separated parts"));
    };

    let header: Map<String, Value> = serde_json::from_slice(&b64url_decode(header_b64)?)
        .map_err(|_| AuthError::Malformed("header is not a JSON object"))?;
    if header.get("alg").and_then(Value::as_str) != Some(ALGORITHM) {
        return Err(AuthError::UnsupportedAlgorithm);
    }
    // RFC 7515 §4.1.11: extensions we do not understand must not be ignored.
    if header.contains_key("crit") {
        return Err(AuthError::Malformed("unsupported critical header"));
    }
    // RFC 9068 §4: only access tokens, not other JWTs signed with this key.
    let typ_ok = header.get("typ").and_then(Value::as_str).is_some_and(|t| {
        t.eq_ignore_ascii_case(TOKEN_TYPE) || t.eq_ignore_ascii_case("application/at+jwt")
    });
    if !typ_ok {
        return Err(AuthError::Malformed("not an access token (typ)"));
    }
    let key = match header.get("kid") {
        Some(Value::String(kid)) => keys
            .iter()
            .find(|k| k.kid == *kid)
            .ok_or(AuthError::UnknownKey)?,
        Some(_) => return Err(AuthError::Malformed("kid is not a string")),
        None => match keys {
            [only] => only,
            _ => return Err(AuthError::UnknownKey),
        },
    };

    let signature = b64url_decode(signature_b64)?;
    if signature.len() != P256_SIGNATURE_LEN {
        return Err(AuthError::BadSignature);
    }
    // The high-s twin of a valid signature also verifies; refusing it keeps one spelling per
    // token.
    if !has_low_s(&signature) {
        return Err(AuthError::BadSignature);
    }
    // The signing input is the header and payload exactly as received.
    let signing_input_len = header_b64.len() + 1 + payload_b64.len();
    let signing_input = token
        .get(..signing_input_len)
        .ok_or(AuthError::Malformed("truncated token"))?;
    UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, &key.point)
        .verify(signing_input.as_bytes(), &signature)
        .map_err(|_| AuthError::BadSignature)?;

    serde_json::from_slice(&b64url_decode(payload_b64)?)
        .map_err(|_| AuthError::Malformed("claims are not a JSON object"))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sign_then_verify() {
        let key = SigningKey::generate().unwrap();
        let vk = key.verifying_key().unwrap();
        assert_eq!(vk.kid(), key.kid());
        let token = key.sign(&json!({"a": 1})).unwrap();
        let claims = verify(&token, std::slice::from_ref(&vk)).unwrap();
        assert_eq!(claims.get("a"), Some(&json!(1)));
    }

    #[test]
    fn kid_lookup() {
        let key = SigningKey::generate().unwrap();
        let other = SigningKey::generate().unwrap().verifying_key().unwrap();
        let token = key.sign(&json!({})).unwrap();
        assert!(matches!(
            verify(&token, std::slice::from_ref(&other)),
            Err(AuthError::UnknownKey)
        ));
        assert!(matches!(verify(&token, &[]), Err(AuthError::UnknownKey)));
    }

    #[test]
    fn wrong_typ_and_crit_rejected() {
        let key = SigningKey::generate().unwrap();
        let vk = key.verifying_key().unwrap();
        for header in [
            json!({"alg": "ES256", "typ": "JWT", "kid": key.kid()}),
            json!({"alg": "ES256", "kid": key.kid()}),
            json!({"alg": "ES256", "typ": "at+jwt", "kid": key.kid(), "crit": ["exp"]}),
            json!({"alg": "ES256", "typ": "at+jwt", "kid": 7}),
        ] {
            let input = format!(
                "{}.{}",
                b64url_encode(serde_json::to_vec(&header).unwrap()),
                b64url_encode(b"{}")
            );
            let sig = key.key_pair.sign(&key.rng, input.as_bytes()).unwrap();
            let token = format!("{input}.{}", b64url_encode(sig.as_ref()));
            assert!(
                matches!(
                    verify(&token, std::slice::from_ref(&vk)),
                    Err(AuthError::Malformed(_))
                ),
                "accepted header {header}"
            );
        }
    }

    #[test]
    fn half_order_is_half_the_order() {
        // 2·⌊n/2⌋ + 1 = n, since n is odd.
        let mut carry = 1u16;
        let mut doubled = [0u8; P256_SCALAR_LEN];
        for i in (0..P256_SCALAR_LEN).rev() {
            let v = u16::from(P256_HALF_ORDER[i]) * 2 + carry;
            doubled[i] = (v & 0xFF) as u8;
            carry = v >> 8;
        }
        assert_eq!(carry, 0);
        assert_eq!(doubled, P256_ORDER);
    }

    #[test]
    fn normalising_negates_only_high_s() {
        let mut high = [0u8; P256_SIGNATURE_LEN];
        high[P256_SCALAR_LEN..].copy_from_slice(&P256_ORDER);
        high[P256_SIGNATURE_LEN - 1] -= 1; // s = n − 1
        normalise_s(&mut high);
        let mut one = [0u8; P256_SCALAR_LEN];
        one[P256_SCALAR_LEN - 1] = 1;
        assert_eq!(&high[P256_SCALAR_LEN..], &one);
        let mut half = [0u8; P256_SIGNATURE_LEN];
        half[P256_SCALAR_LEN..].copy_from_slice(&P256_HALF_ORDER);
        normalise_s(&mut half);
        assert_eq!(&half[P256_SCALAR_LEN..], &P256_HALF_ORDER);
        assert!(has_low_s(&half));
    }

    #[test]
    fn rejects_bad_points() {
        assert!(VerifyingKey::from_public_point(&[4u8; 64]).is_err());
        assert!(VerifyingKey::from_public_point(&[2u8; 65]).is_err());
    }
}
