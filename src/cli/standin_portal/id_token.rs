//! The relying party's checks of an ID token (OpenID Connect Core §3.1.3.7), as a host must make
//! them: the signature by a key of the provider's JWKS named by `kid`, RS256 only (what discovery
//! announces; anything else, `none` and HMAC included, is refused before a key is chosen), then
//! `iss`, `aud` (and `azp`), `exp` against our own clock, the `nonce` of this sign-in, and `at_hash`
//! against the access token that came with it.

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use jsonwebtoken::{
    Algorithm, DecodingKey, Validation,
    errors::ErrorKind,
    jwk::{AlgorithmParameters, JwkSet, KeyAlgorithm, PublicKeyUse},
};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// Clocks of the provider and the host may differ by this much.
const CLOCK_SKEW_SECONDS: i64 = 60;

/// What this sign-in's ID token must say.
pub struct Expected<'a> {
    pub issuer: &'a str,
    pub client_id: &'a str,
    pub nonce: &'a str,
    pub access_token: &'a str,
    pub now: DateTime<Utc>,
}

/// The token's claims once every check passed; the reason in words when one failed.
pub fn verify(id_token: &str, keys: &JwkSet, expected: &Expected<'_>) -> Result<Map<String, Value>, String> {
    let header = jsonwebtoken::decode_header(id_token).map_err(|_| "it is not a JWT".to_owned())?;
    if header.alg != Algorithm::RS256 {
        return Err(format!("it is signed with {:?}; only RS256 is accepted", header.alg));
    }
    let kid = header.kid.ok_or("its header names no key (kid)")?;
    let jwk = keys.find(&kid).ok_or_else(|| format!("its key {kid} is not in the provider's JWKS"))?;
    let rsa = matches!(jwk.algorithm, AlgorithmParameters::RSA(_));
    let for_rs256 = jwk.common.key_algorithm.is_none_or(|alg| alg == KeyAlgorithm::RS256);
    let for_signing = jwk.common.public_key_use.as_ref().is_none_or(|u| *u == PublicKeyUse::Signature);
    if !(rsa && for_rs256 && for_signing) {
        return Err(format!("the JWKS's key {kid} is not an RS256 signing key"));
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|e| format!("the JWKS's key {kid} is unreadable: {e}"))?;

    let mut validation = Validation::new(Algorithm::RS256);
    validation.set_issuer(&[expected.issuer]);
    validation.set_audience(&[expected.client_id]);
    validation.set_required_spec_claims(&["iss", "aud", "sub", "exp"]);
    // `exp` is checked below against the clock the caller gave, not the machine's.
    validation.validate_exp = false;
    let claims = jsonwebtoken::decode::<Map<String, Value>>(id_token, &key, &validation)
        .map_err(|e| rejected(e.kind()))?
        .claims;

    let number = |name: &str| claims.get(name).and_then(Value::as_i64);
    let exp = number("exp").ok_or("exp is not a number")?;
    if expected.now.timestamp() >= exp + CLOCK_SKEW_SECONDS {
        return Err("it has expired".to_owned());
    }
    number("iat").ok_or("iat is missing")?;
    let several_audiences = claims.get("aud").and_then(Value::as_array).is_some_and(|a| a.len() > 1);
    match claims.get("azp").and_then(Value::as_str) {
        Some(azp) if azp != expected.client_id => return Err(format!("it was issued to {azp} (azp)")),
        None if several_audiences => return Err("it has several audiences and no azp".to_owned()),
        _ => {}
    }
    if claims.get("nonce").and_then(Value::as_str) != Some(expected.nonce) {
        return Err("its nonce is not this sign-in's".to_owned());
    }
    // Optional in the code flow, but our provider always sends it (contract §8): a token without it
    // would mean the provider changed.
    if claims.get("at_hash").and_then(Value::as_str) != Some(at_hash(expected.access_token).as_str()) {
        return Err("its at_hash does not match the access token".to_owned());
    }
    Ok(claims)
}

/// The left half of the access token's SHA-256, base64url (OIDC Core §3.1.3.6). Computed here
/// rather than with the provider's own function: a relying party that shared the provider's code
/// would agree with its bugs.
fn at_hash(access_token: &str) -> String {
    URL_SAFE_NO_PAD.encode(&Sha256::digest(access_token.as_bytes())[..16])
}

fn rejected(kind: &ErrorKind) -> String {
    match kind {
        ErrorKind::InvalidSignature => "its signature does not verify".to_owned(),
        ErrorKind::InvalidIssuer => "it was issued by another issuer".to_owned(),
        ErrorKind::InvalidAudience => "it was issued to another client (aud)".to_owned(),
        ErrorKind::MissingRequiredClaim(claim) => format!("{claim} is missing"),
        ErrorKind::InvalidAlgorithm => "its algorithm does not fit its key".to_owned(),
        other => format!("it cannot be read ({other:?})"),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::OnceLock;

    use aws_lc_rs::{
        encoding::AsDer,
        rsa::{KeyPair, KeySize},
    };
    use chrono::TimeDelta;
    use jsonwebtoken::{EncodingKey, Header, jwk::Jwk};
    use serde_json::json;

    use super::*;

    const ISSUER: &str = "http://127.0.0.1:8080/p/shop_1";
    const CLIENT: &str = "customer-portal-invitations";
    const ACCESS_TOKEN: &str = "jHkWEdUXMU1BwAsC4vtUsZwnNvTIxEl0z9K3vx5KF0Y";

    fn key() -> &'static EncodingKey {
        static KEY: OnceLock<EncodingKey> = OnceLock::new();
        KEY.get_or_init(|| {
            let pair = KeyPair::generate(KeySize::Rsa2048).unwrap();
            let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).unwrap();
            let pem = pem::encode(&pem::Pem::new("PRIVATE KEY", der.as_ref().to_vec()));
            EncodingKey::from_rsa_pem(pem.as_bytes()).unwrap()
        })
    }

    fn jwks() -> JwkSet {
        let mut jwk = Jwk::from_encoding_key(key(), Algorithm::RS256).unwrap();
        jwk.common.key_id = Some("k1".into());
        jwk.common.public_key_use = Some(PublicKeyUse::Signature);
        JwkSet { keys: vec![jwk] }
    }

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2026-11-23T10:00:00Z").unwrap().to_utc()
    }

    fn claims() -> Value {
        json!({"iss": ISSUER, "aud": CLIENT, "azp": CLIENT, "sub": "acc_1", "exp": now().timestamp() + 600,
               "iat": now().timestamp(), "nonce": "n-1", "at_hash": "77QmUPtjPfzWtF2AnpK9RQ",
               "customer_id": "cus_456"})
    }

    fn signed(claims: &Value) -> String {
        let mut header = Header::new(Algorithm::RS256);
        header.kid = Some("k1".into());
        jsonwebtoken::encode(&header, claims, key()).unwrap()
    }

    fn expected(now: DateTime<Utc>) -> Expected<'static> {
        Expected { issuer: ISSUER, client_id: CLIENT, nonce: "n-1", access_token: ACCESS_TOKEN, now }
    }

    fn verdict(token: &str) -> Result<Map<String, Value>, String> {
        verify(token, &jwks(), &expected(now()))
    }

    fn with(change: &str, value: Value) -> String {
        let mut claims = claims();
        claims[change] = value;
        signed(&claims)
    }

    #[test]
    fn a_token_the_provider_issued_for_this_sign_in_is_accepted() {
        let claims = verdict(&signed(&claims())).unwrap();
        assert_eq!(claims["customer_id"], "cus_456");
        // Within the allowed skew after exp, still good; at its end, not.
        let exp = now() + TimeDelta::seconds(600);
        assert!(verify(&signed(&self::claims()), &jwks(), &expected(exp + TimeDelta::seconds(59))).is_ok());
        let late = verify(&signed(&self::claims()), &jwks(), &expected(exp + TimeDelta::seconds(60)));
        assert_eq!(late.unwrap_err(), "it has expired");
    }

    #[test]
    fn a_token_for_another_issuer_client_sign_in_or_access_token_is_refused() {
        let cases = [
            (with("iss", json!("http://127.0.0.1:8080/p/shop_2")), "another issuer"),
            (with("aud", json!("someone-else")), "another client"),
            (with("azp", json!("someone-else")), "azp"),
            (with("nonce", json!("n-2")), "nonce"),
            (with("at_hash", json!("AAAAAAAAAAAAAAAAAAAAAA")), "at_hash"),
            (with("exp", json!("soon")), "exp"),
        ];
        for (token, why) in cases {
            let refusal = verdict(&token).unwrap_err();
            assert!(refusal.contains(why), "{why}: {refusal}");
        }
        let mut no_azp = claims();
        no_azp["aud"] = json!([CLIENT, "someone-else"]);
        no_azp.as_object_mut().unwrap().remove("azp");
        assert!(verdict(&signed(&no_azp)).unwrap_err().contains("no azp"));
        // Several audiences are fine when the token says it was issued to us.
        no_azp["azp"] = json!(CLIENT);
        assert!(verdict(&signed(&no_azp)).is_ok());
        let mut no_nonce = claims();
        no_nonce.as_object_mut().unwrap().remove("nonce");
        assert!(verdict(&signed(&no_nonce)).unwrap_err().contains("nonce"));
    }

    #[test]
    fn a_forged_or_unverifiable_token_is_refused() {
        let token = signed(&claims());
        // The payload swapped for another: the signature no longer covers it.
        let parts: Vec<&str> = token.split('.').collect();
        let forged_payload = with("sub", json!("acc_2"));
        let forged = format!("{}.{}.{}", parts[0], forged_payload.split('.').nth(1).unwrap(), parts[2]);
        assert_eq!(verdict(&forged).unwrap_err(), "its signature does not verify");
        // HMAC "signed" with something public, and a key the JWKS does not list.
        let mut hmac = Header::new(Algorithm::HS256);
        hmac.kid = Some("k1".into());
        let hs = jsonwebtoken::encode(&hmac, &claims(), &EncodingKey::from_secret(b"k1").unwrap()).unwrap();
        assert!(verdict(&hs).unwrap_err().contains("only RS256"));
        let mut unknown = Header::new(Algorithm::RS256);
        unknown.kid = Some("k9".into());
        let other_kid = jsonwebtoken::encode(&unknown, &claims(), key()).unwrap();
        assert!(verdict(&other_kid).unwrap_err().contains("not in the provider's JWKS"));
        let no_kid = jsonwebtoken::encode(&Header::new(Algorithm::RS256), &claims(), key()).unwrap();
        assert!(verdict(&no_kid).unwrap_err().contains("names no key"));
        assert_eq!(verdict("not a token").unwrap_err(), "it is not a JWT");
    }
}
