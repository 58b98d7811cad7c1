//! The RSA keys ID tokens are signed with (RS256, contract §8).
//!
//! The service makes its first key itself on first start and keeps it in the database, so every
//! instance signs with the same key and publishes the same JWKS. `portal-invites keys rotate` adds a
//! key that is published at once but signs only [`PUBLISH_LEAD`] later, once relying parties that
//! cached the JWKS had time to fetch it again; the key it replaces stays published until nothing it
//! signed can still be valid, then goes.
//!
//! Private-key work is aws-lc-rs's: it generates the key and signs with it, the key parsed once when
//! loaded; the JWKS entry is its public half. (jsonwebtoken's `aws_lc_rs` backend parses and checks
//! the key again at every signature: 2.1 ms a token against 1.0 ms here. It still checks tokens
//! against the public keys: an `id_token_hint`.)
//! The `rsa` crate is avoided on purpose: RUSTSEC-2023-0071.

use std::sync::{Arc, RwLock};

use aws_lc_rs::{
    encoding::AsDer,
    rand::SystemRandom,
    rsa::{KeyPair, KeySize},
    signature::RSA_PKCS1_SHA256,
};
use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use chrono::{DateTime, TimeDelta, Utc};
use jsonwebtoken::{
    Algorithm, DecodingKey,
    jwk::{AlgorithmParameters, CommonParameters, Jwk, JwkSet, PublicKeyUse, RSAKeyParameters, RSAKeyType},
};
use sea_orm::{EntityTrait, QueryOrder, Set, sea_query::OnConflict};

use super::{ID_TOKEN_LIFETIME, IdentityError};
use crate::{
    clock::{from_millis, to_millis},
    db::Database,
    entities::signing_key,
};

/// How long a rotated-in key is published before it signs, so that a relying party's cached copy of
/// the JWKS lists it before any token it signed arrives (see [`jwks_max_age`]).
pub const PUBLISH_LEAD: TimeDelta = TimeDelta::minutes(5);
/// How stale an instance's copy of the keys may get before it reads them again.
const REFRESH_EVERY: TimeDelta = TimeDelta::seconds(30);
/// Slack for relying parties' clocks, on top of a token's lifetime, before a retired key goes.
const CLOCK_SKEW: TimeDelta = TimeDelta::minutes(2);

/// How long a relying party may keep the JWKS (its `max-age`). An instance may still serve the JWKS
/// without a rotated-in key for `REFRESH_EVERY` after the rotation; a copy taken then must expire
/// before the key signs, [`PUBLISH_LEAD`] after the rotation.
pub fn jwks_max_age() -> TimeDelta {
    PUBLISH_LEAD - REFRESH_EVERY
}

/// One signing key, ready to use.
pub struct SigningKey {
    pub kid: String,
    generation: i32,
    signs_from: DateTime<Utc>,
    pair: KeyPair,
    jwk: Jwk,
}

/// A JWS header (RFC 7515 §4.1) for RS256 with our key id.
#[derive(serde::Serialize)]
struct JwsHeader<'a> {
    alg: &'static str,
    typ: &'static str,
    kid: &'a str,
}

impl SigningKey {
    fn from_row(row: &signing_key::Model) -> Result<Self, IdentityError> {
        let unreadable = |why: String| IdentityError::Keys(format!("signing key {}: {why}", row.kid));
        let der = pem::parse(row.private_key.as_bytes()).map_err(|e| unreadable(e.to_string()))?;
        let pair = KeyPair::from_pkcs8(der.contents()).map_err(|e| unreadable(e.to_string()))?;
        let public = aws_lc_rs::signature::KeyPair::public_key(&pair);
        let jwk = Jwk {
            common: CommonParameters {
                public_key_use: Some(PublicKeyUse::Signature),
                key_algorithm: Some(Algorithm::RS256.into()),
                key_id: Some(row.kid.clone()),
                ..Default::default()
            },
            algorithm: AlgorithmParameters::RSA(RSAKeyParameters {
                key_type: RSAKeyType::RSA,
                n: URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
                e: URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
            }),
        };
        Ok(Self {
            kid: row.kid.clone(),
            generation: row.generation,
            signs_from: from_millis(row.signs_from),
            pair,
            jwk,
        })
    }

    /// `claims` as a JWT signed with this key: the JWS compact serialization (RFC 7515 §7.1) of an
    /// RS256 signature (RSASSA-PKCS1-v1_5 with SHA-256, RFC 7518 §3.3).
    pub fn sign_jwt(&self, claims: &impl serde::Serialize) -> Result<String, IdentityError> {
        let failed = |what: &str| IdentityError::Keys(format!("signing a token: {what}"));
        let header = JwsHeader { alg: "RS256", typ: "JWT", kid: &self.kid };
        let header = serde_json::to_vec(&header).map_err(|e| failed(&e.to_string()))?;
        let claims = serde_json::to_vec(claims).map_err(|e| failed(&e.to_string()))?;
        let mut jwt = format!("{}.{}", URL_SAFE_NO_PAD.encode(header), URL_SAFE_NO_PAD.encode(claims));
        let mut signature = vec![0; self.pair.public_modulus_len()];
        self.pair
            .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), jwt.as_bytes(), &mut signature)
            .map_err(|_| failed("the RSA signature failed"))?;
        jwt.push('.');
        jwt.push_str(&URL_SAFE_NO_PAD.encode(signature));
        Ok(jwt)
    }

    pub fn decoding(&self) -> Result<DecodingKey, IdentityError> {
        DecodingKey::from_jwk(&self.jwk).map_err(|e| IdentityError::Keys(e.to_string()))
    }
}

struct Loaded {
    keys: Vec<SigningKey>,
    at: DateTime<Utc>,
}

/// The keys, as this instance last read them.
pub struct KeyRing {
    db: Database,
    loaded: RwLock<Arc<Loaded>>,
}

impl KeyRing {
    /// Reads the keys, making the first one if there is none yet.
    pub async fn open(db: Database, now: DateTime<Utc>) -> Result<Self, IdentityError> {
        let mut rows = read_rows(&db).await?;
        if rows.is_empty() {
            // Instances starting at once each make a key; the unique generation keeps one.
            insert_key(&db, 1, now, now).await?;
            rows = read_rows(&db).await?;
        }
        let loaded =
            Loaded { keys: rows.iter().map(SigningKey::from_row).collect::<Result<_, _>>()?, at: now };
        Ok(Self { db, loaded: RwLock::new(Arc::new(loaded)) })
    }

    /// The keys, read again when this copy is older than [`REFRESH_EVERY`].
    async fn current(&self, now: DateTime<Utc>) -> Result<Arc<Loaded>, IdentityError> {
        let loaded = self.loaded.read().map(|l| l.clone()).unwrap_or_else(|p| p.into_inner().clone());
        if now >= loaded.at && now - loaded.at < REFRESH_EVERY {
            return Ok(loaded);
        }
        self.reload(now).await
    }

    async fn reload(&self, now: DateTime<Utc>) -> Result<Arc<Loaded>, IdentityError> {
        let rows = read_rows(&self.db).await?;
        let keys: Vec<SigningKey> = rows.iter().map(SigningKey::from_row).collect::<Result<_, _>>()?;
        let fresh = Arc::new(Loaded { keys, at: now });
        if let Ok(mut slot) = self.loaded.write() {
            *slot = fresh.clone();
        }
        Ok(fresh)
    }

    /// Signs with the newest key whose time to sign has come, through `f`.
    pub async fn with_signer<T>(
        &self,
        now: DateTime<Utc>,
        f: impl FnOnce(&SigningKey) -> T,
    ) -> Result<T, IdentityError> {
        let loaded = self.current(now).await?;
        let signer = loaded
            .keys
            .iter()
            .filter(|k| k.signs_from <= now)
            .max_by_key(|k| k.generation)
            .or_else(|| loaded.keys.iter().min_by_key(|k| k.generation))
            .ok_or_else(|| IdentityError::Keys("no signing key".into()))?;
        Ok(f(signer))
    }

    /// The JWKS: every key that signs, will sign, or signed a token that may still be valid.
    pub async fn published(&self, now: DateTime<Utc>) -> Result<JwkSet, IdentityError> {
        let loaded = self.current(now).await?;
        let keys =
            loaded.keys.iter().filter(|k| still_published(k, &loaded.keys, now)).map(|k| k.jwk.clone());
        Ok(JwkSet { keys: keys.collect() })
    }

    /// The published key with this `kid`, to check a token we signed.
    pub async fn verifying_key(
        &self,
        kid: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<DecodingKey>, IdentityError> {
        let loaded = self.current(now).await?;
        loaded
            .keys
            .iter()
            .find(|k| k.kid == kid && still_published(k, &loaded.keys, now))
            .map(SigningKey::decoding)
            .transpose()
    }

    /// Adds a key that signs from `now + PUBLISH_LEAD`, and deletes keys nothing valid was signed
    /// with any more. Returns the new key's `kid` and when it starts signing.
    pub async fn rotate(&self, now: DateTime<Utc>) -> Result<(String, DateTime<Utc>), IdentityError> {
        let rows = read_rows(&self.db).await?;
        let next = rows.iter().map(|r| r.generation).max().unwrap_or(0) + 1;
        let signs_from = now + PUBLISH_LEAD;
        let kid = insert_key(&self.db, next, now, signs_from).await?;
        let loaded = self.reload(now).await?;
        let gone: Vec<String> = loaded
            .keys
            .iter()
            .filter(|k| !still_published(k, &loaded.keys, now))
            .map(|k| k.kid.clone())
            .collect();
        if !gone.is_empty() {
            self.db
                .write(move |txn| {
                    Box::pin(async move {
                        use sea_orm::{ColumnTrait, QueryFilter};
                        signing_key::Entity::delete_many()
                            .filter(signing_key::Column::Kid.is_in(gone))
                            .exec(txn)
                            .await
                    })
                })
                .await?;
            self.reload(now).await?;
        }
        Ok((kid, signs_from))
    }
}

/// A key is published until the key after it has signed for longer than an ID token lives (plus
/// the time an instance may take to notice, plus clock skew).
fn still_published(key: &SigningKey, all: &[SigningKey], now: DateTime<Utc>) -> bool {
    let replaced_at = all.iter().filter(|k| k.generation > key.generation).map(|k| k.signs_from).min();
    match replaced_at {
        None => true,
        Some(at) => now < at + ID_TOKEN_LIFETIME + REFRESH_EVERY + CLOCK_SKEW,
    }
}

async fn read_rows(db: &Database) -> Result<Vec<signing_key::Model>, IdentityError> {
    Ok(signing_key::Entity::find().order_by_asc(signing_key::Column::Generation).all(db.conn()).await?)
}

/// Generates a 2048-bit RSA key and stores it as `generation`, unless that generation exists.
async fn insert_key(
    db: &Database,
    generation: i32,
    now: DateTime<Utc>,
    signs_from: DateTime<Utc>,
) -> Result<String, IdentityError> {
    let pem = tokio::task::spawn_blocking(generate_pem)
        .await
        .map_err(|e| IdentityError::Keys(format!("key generation stopped: {e}")))??;
    let kid = crate::random::id("key");
    let row = signing_key::ActiveModel {
        kid: Set(kid.clone()),
        generation: Set(generation),
        private_key: Set(pem),
        created_at: Set(to_millis(now)),
        signs_from: Set(to_millis(signs_from)),
    };
    db.write(move |txn| {
        Box::pin(async move {
            signing_key::Entity::insert(row)
                .on_conflict(OnConflict::column(signing_key::Column::Generation).do_nothing().to_owned())
                .exec_without_returning(txn)
                .await
        })
    })
    .await?;
    Ok(kid)
}

fn generate_pem() -> Result<String, IdentityError> {
    let failed = |what: &str| IdentityError::Keys(format!("could not {what} an RSA key"));
    let pair = KeyPair::generate(KeySize::Rsa2048).map_err(|_| failed("generate"))?;
    let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).map_err(|_| failed("encode"))?;
    Ok(pem::encode(&pem::Pem::new("PRIVATE KEY", der.as_ref().to_vec())))
}

#[cfg(test)]
mod tests {
    use jsonwebtoken::Validation;

    use super::*;

    #[test]
    fn a_signed_token_verifies_with_the_published_key_and_no_other() {
        let row = |kid: &str| signing_key::Model {
            kid: kid.into(),
            generation: 1,
            private_key: generate_pem().unwrap(),
            created_at: 0,
            signs_from: 0,
        };
        let (key, other) =
            (SigningKey::from_row(&row("key_a")).unwrap(), SigningKey::from_row(&row("key_b")).unwrap());
        let jwt = key
            .sign_jwt(&serde_json::json!({"sub": "acc_1", "aud": "client", "exp": 4_000_000_000_i64}))
            .unwrap();

        let header = jsonwebtoken::decode_header(&jwt).unwrap();
        assert_eq!((header.alg, header.kid.as_deref()), (Algorithm::RS256, Some("key_a")));
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&["client"]);
        let claims =
            jsonwebtoken::decode::<serde_json::Value>(&jwt, &key.decoding().unwrap(), &validation).unwrap();
        assert_eq!(claims.claims["sub"], "acc_1");
        assert!(
            jsonwebtoken::decode::<serde_json::Value>(&jwt, &other.decoding().unwrap(), &validation).is_err()
        );
        let tampered = jwt.replacen('.', ".e", 1);
        assert!(
            jsonwebtoken::decode::<serde_json::Value>(&tampered, &key.decoding().unwrap(), &validation)
                .is_err()
        );
    }
}
