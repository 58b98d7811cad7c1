//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0): whether an `id_token_hint` is one
//! of ours for this shop and client. An expired one still counts (§2: the OP should accept it); a
//! forged, foreign or malformed one does not, and the customer is then asked before anything ends.

use jsonwebtoken::{Algorithm, Validation};
use serde::Deserialize;

use super::{Identity, IdentityError};
use crate::entities::shop;

#[derive(Deserialize)]
struct Hinted {
    sub: String,
}

impl Identity {
    /// The `sub` of a valid ID token this shop's issuer gave our client; `None` for anything else.
    pub async fn hinted_subject(
        &self,
        shop: &shop::Model,
        hint: &str,
    ) -> Result<Option<String>, IdentityError> {
        let Ok(header) = jsonwebtoken::decode_header(hint) else { return Ok(None) };
        let Some(kid) = header.kid.filter(|_| header.alg == Algorithm::RS256) else { return Ok(None) };
        let Some(key) = self.keys.verifying_key(&kid, self.clock.now()).await? else { return Ok(None) };
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_exp = false;
        validation.set_required_spec_claims(&["iss", "aud", "sub"]);
        validation.set_issuer(&[self.issuer(&shop.id)]);
        validation.set_audience(&[self.client.id()]);
        Ok(jsonwebtoken::decode::<Hinted>(hint, &key, &validation).ok().map(|t| t.claims.sub))
    }
}
