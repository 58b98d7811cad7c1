//! One-time tokens for set-up and password-reset links, the whole mechanism: minted ([`issue`]),
//! looked up as presented ([`look_up`]) and redeemed ([`redeem`]) here, and nowhere else. A token
//! is 32 bytes from the OS CSPRNG, URL-safe base64 in the link, and only its SHA-256 in the
//! database. It is bound to a shop, an account and a purpose, expires, and is redeemed at most once
//! by a conditional `UPDATE` (`… WHERE used_at IS NULL`), so of many concurrent attempts exactly one
//! wins.
//!
//! A token that sets a password takes every other unused token of its account with it
//! ([`revoke_all_for_account`], in the same transaction): an older reset link, or the set-up link of
//! an invitation never used, must not set the password again for whoever still holds that email.
//!
//! Messages that carry a link are rendered when they are sent, not when they are queued. Until a
//! message is finished its token is kept sealed in its outbox row ([`crate::sealing`]), so every
//! attempt sends the same link; then it is wiped. Only rows queued before sealing existed get a fresh
//! value at each attempt ([`remint`]).

use chrono::{DateTime, Utc};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbErr, EntityTrait, QueryFilter, Set,
    sea_query::{Expr, ExprTrait},
};

use crate::{clock::to_millis, domain::ShopId, entities::token};

/// What a token lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    /// Set the first password (from an invitation).
    Setup,
    /// Choose a new password (from "forgot password").
    Reset,
}

impl Purpose {
    /// As stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Setup => "setup",
            Self::Reset => "reset",
        }
    }
}

pub use crate::domain::RawToken;

/// What a new token is for.
pub struct NewToken<'a> {
    /// The shop it is bound to.
    pub shop_id: &'a ShopId,
    /// The account it is bound to.
    pub account_id: &'a str,
    pub purpose: Purpose,
    /// The invitation that sends it, for set-up tokens.
    pub invitation_id: Option<&'a str>,
    pub expires_at: DateTime<Utc>,
}

/// Stores a new token and returns its id and value.
pub async fn issue<C: ConnectionTrait>(
    conn: &C,
    new: NewToken<'_>,
    now: DateTime<Utc>,
) -> Result<(String, RawToken), DbErr> {
    let raw = RawToken::generate();
    let id = crate::random::id("tok");
    let row = token::ActiveModel {
        id: Set(id.clone()),
        shop_id: Set(new.shop_id.as_str().to_owned()),
        account_id: Set(new.account_id.to_owned()),
        purpose: Set(new.purpose.as_str().to_owned()),
        token_hash: Set(raw.hash()),
        invitation_id: Set(new.invitation_id.map(str::to_owned)),
        expires_at: Set(to_millis(new.expires_at)),
        used_at: Set(None),
        revoked_at: Set(None),
        created_at: Set(to_millis(now)),
    };
    token::Entity::insert(row).exec_without_returning(conn).await?;
    Ok((id, raw))
}

/// Gives a still-usable token a fresh value for a new attempt to send it; `None` if it was used,
/// revoked or expired meanwhile (then there is nothing worth sending).
pub async fn remint<C: ConnectionTrait>(
    conn: &C,
    token_id: &str,
    now: DateTime<Utc>,
) -> Result<Option<RawToken>, DbErr> {
    let raw = RawToken::generate();
    let result = token::Entity::update_many()
        .col_expr(token::Column::TokenHash, Expr::value(raw.hash()))
        .filter(token::Column::Id.eq(token_id))
        .filter(usable(now))
        .exec(conn)
        .await?;
    Ok((result.rows_affected == 1).then_some(raw))
}

/// Kills the unused tokens that match `filter` (an address changed, a delivery failed for good).
pub async fn revoke_where<C: ConnectionTrait>(
    conn: &C,
    filter: sea_orm::Condition,
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    let result = token::Entity::update_many()
        .col_expr(token::Column::RevokedAt, Expr::value(to_millis(now)))
        .filter(filter)
        .filter(token::Column::UsedAt.is_null())
        .filter(token::Column::RevokedAt.is_null())
        .exec(conn)
        .await?;
    Ok(result.rows_affected)
}

/// Kills every unused token of the account, whatever its purpose (a password was just set by one of
/// its links). Returns how many.
pub async fn revoke_all_for_account<C: ConnectionTrait>(
    conn: &C,
    account_id: &str,
    now: DateTime<Utc>,
) -> Result<u64, DbErr> {
    revoke_where(conn, sea_orm::Condition::all().add(token::Column::AccountId.eq(account_id)), now).await
}

/// Why a stored token no longer works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Spent {
    /// It set a password.
    Used,
    /// It was killed before use.
    Revoked,
    /// Its time ran out.
    Expired,
}

impl Spent {
    /// As logged.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Used => "used",
            Self::Revoked => "revoked",
            Self::Expired => "expired",
        }
    }

    /// Why `token` no longer works at `now`, or `None` if it still does (the rule of `usable`).
    pub fn of(token: &token::Model, now: DateTime<Utc>) -> Option<Self> {
        if token.used_at.is_some() {
            Some(Self::Used)
        } else if token.revoked_at.is_some() {
            Some(Self::Revoked)
        } else if token.expires_at <= to_millis(now) {
            Some(Self::Expired)
        } else {
            None
        }
    }
}

/// What a presented link's token turned out to be.
#[derive(Debug)]
pub enum Found {
    /// It works now.
    Usable(token::Model),
    /// It once worked and no longer does: someone holds an old link.
    Spent(token::Model, Spent),
    /// No such token: a typo or a guess.
    Unknown,
}

/// Looks up the token a link presents, usable or not, in one query either way: a link that once
/// worked and one that never existed cost the same, and the caller can still tell them apart.
/// Anything [`RawToken::parse`] refuses is [`Found::Unknown`].
pub async fn look_up<C: ConnectionTrait>(
    conn: &C,
    shop_id: &ShopId,
    purpose: Purpose,
    raw: &str,
    now: DateTime<Utc>,
) -> Result<Found, DbErr> {
    let Some(raw) = RawToken::parse(raw) else { return Ok(Found::Unknown) };
    let stored = token::Entity::find()
        .filter(token::Column::TokenHash.eq(raw.hash()))
        .filter(token::Column::ShopId.eq(shop_id.as_str()))
        .filter(token::Column::Purpose.eq(purpose.as_str()))
        .one(conn)
        .await?;
    Ok(match stored {
        None => Found::Unknown,
        Some(token) => match Spent::of(&token, now) {
            None => Found::Usable(token),
            Some(spent) => Found::Spent(token, spent),
        },
    })
}

/// Uses up a token if it is still usable, with one conditional `UPDATE`: of any number of
/// simultaneous attempts exactly one gets `true`.
pub async fn redeem<C: ConnectionTrait>(conn: &C, token_id: &str, now: DateTime<Utc>) -> Result<bool, DbErr> {
    let result = token::Entity::update_many()
        .col_expr(token::Column::UsedAt, Expr::value(to_millis(now)))
        .filter(token::Column::Id.eq(token_id))
        .filter(usable(now))
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}

/// The condition for a token that can still be used at `now`.
fn usable(now: DateTime<Utc>) -> sea_orm::Condition {
    sea_orm::Condition::all()
        .add(token::Column::UsedAt.is_null())
        .add(token::Column::RevokedAt.is_null())
        .add(Expr::col(token::Column::ExpiresAt).gt(to_millis(now)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_url_safe_and_never_shown() {
        let a = RawToken::generate();
        let b = RawToken::generate();
        assert_ne!(a, b);
        assert_eq!(a.as_str().len(), 43);
        assert_eq!(RawToken::parse(a.as_str()), Some(a.clone()));
        assert_eq!(format!("{a:?}"), "RawToken(redacted)");
        assert_eq!(a.hash().len(), 64);
        assert_ne!(a.hash(), b.hash());
        assert!(!a.hash().contains(a.as_str()));
    }

    #[test]
    fn a_spent_token_says_why_and_expiry_is_exclusive() {
        let now = crate::clock::from_millis(1_000_000);
        let fresh = token::Model {
            id: "tok_1".into(),
            shop_id: "shop_1".into(),
            account_id: "acc_1".into(),
            purpose: Purpose::Reset.as_str().into(),
            token_hash: RawToken::generate().hash(),
            invitation_id: None,
            expires_at: 1_000_001,
            used_at: None,
            revoked_at: None,
            created_at: 0,
        };
        assert_eq!(Spent::of(&fresh, now), None);
        assert_eq!(
            Spent::of(&token::Model { expires_at: 1_000_000, ..fresh.clone() }, now),
            Some(Spent::Expired)
        );
        assert_eq!(
            Spent::of(&token::Model { revoked_at: Some(1), ..fresh.clone() }, now),
            Some(Spent::Revoked)
        );
        assert_eq!(
            Spent::of(&token::Model { used_at: Some(1), revoked_at: Some(2), ..fresh }, now),
            Some(Spent::Used)
        );
    }

    #[test]
    fn only_well_formed_tokens_parse() {
        for bad in
            ["", "short", &"a".repeat(42), &"a".repeat(44), &format!("{}=", "a".repeat(42)), &"+".repeat(43)]
        {
            assert_eq!(RawToken::parse(bad), None, "{bad}");
        }
    }
}
