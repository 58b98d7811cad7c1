//! Asking for a reset link ("Forgot your password?"): the same answer, and the same work, whether or
//! not the address has an account, limited per client network. The request is one outbox row for the
//! address typed; the sender finds the account, mints the link and sends it, or cancels the row.

use chrono::{DateTime, TimeDelta, Utc};
use poem::{
    Body, Request, Response, handler,
    http::StatusCode,
    web::{Data, Path},
};
use sea_orm::{ConnectionTrait, DbErr};
use serde::{Deserialize, Serialize};

use super::{
    PortalError, available_shop, check_form, client, csrf_for,
    pages::{self, Base},
    read_form, respond,
    throttle::{self, Attempt},
    throttle_keys, with_cookies,
};
use crate::{
    app::AppState,
    delivery::outbox::{self, MessageKind, NewMessage},
    domain::EmailAddress,
    entities::shop,
    invitations::Channel,
    links,
};

#[derive(Serialize)]
struct ForgotPage {
    #[serde(flatten)]
    base: Base,
    action: String,
    csrf: String,
    email: String,
    email_error: Option<&'static str>,
}

#[derive(Serialize)]
struct ForgotSentPage {
    #[serde(flatten)]
    base: Base,
    email: String,
    valid_for: String,
}

#[derive(Deserialize)]
struct ForgotForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
}

fn forgot_page(
    state: &AppState,
    request: &Request,
    shop: &shop::Model,
    status: StatusCode,
    email: &str,
    error: Option<&'static str>,
) -> Response {
    let (csrf, cookie) = csrf_for(state, request);
    let context = ForgotPage {
        base: Base::shop(state, shop, "Forgot your password?"),
        action: links::portal_path(&state.settings.public_url, &shop.id, "forgot"),
        csrf,
        email: email.to_owned(),
        email_error: error,
    };
    with_cookies(pages::render(state, "pages/forgot.html", status, &context), cookie)
}

/// `GET /p/{shop}/forgot`.
#[handler]
pub async fn forgot_form(
    request: &Request,
    Path(shop_id): Path<String>,
    Data(state): Data<&AppState>,
) -> Response {
    let result = async {
        let shop = available_shop(state, &shop_id).await?;
        Ok(forgot_page(state, request, &shop, StatusCode::OK, "", None))
    }
    .await;
    respond(state, result)
}

/// `POST /p/{shop}/forgot`: the same answer, and the same work, whether or not the address has an
/// account; limited per client network.
#[handler]
pub async fn forgot_submit(
    request: &Request,
    Path(shop_id): Path<String>,
    body: Body,
    Data(state): Data<&AppState>,
) -> Response {
    let result = async {
        let form: ForgotForm = read_form(body).await?;
        let shop = available_shop(state, &shop_id).await?;
        check_form(state, request, &form.csrf, Some(&shop))?;
        let typed = form.email.trim().to_owned();
        let Ok(email) = EmailAddress::parse(&typed) else {
            return Ok(forgot_page(
                state,
                request,
                &shop,
                StatusCode::UNPROCESSABLE_ENTITY,
                &typed,
                Some("Enter your email address, like name@example.com."),
            ));
        };
        let now = state.clock.now();
        let ttl = TimeDelta::from_std(state.settings.portal.reset_ttl).unwrap_or(TimeDelta::hours(1));
        // Every request from a client network counts, whatever address it asks for: the limit is
        // on asking, so one client cannot have every customer of the shop sent reset emails.
        let counted = client::of_request(request, &state.settings.portal.trusted_proxies).map(|ip| Attempt {
            key: throttle_keys(state).forgot_address(client::network(ip)),
            policy: throttle::FORGOT_PER_ADDRESS,
        });
        let shop_id = shop.id.clone();
        let blocked = state
            .db
            .write(move |txn| {
                Box::pin(async move {
                    if let Some(attempt) = counted {
                        match throttle::reserve(txn, &[attempt], now).await? {
                            // Stays counted: a reset request has no success to give it back.
                            Ok(_counted) => {}
                            Err(blocked) => return Ok(Some(blocked)),
                        }
                    }
                    queue_reset(txn, &shop_id, &email, now).await?;
                    Ok::<_, PortalError>(None)
                })
            })
            .await?;
        if let Some(blocked) = blocked {
            let retry_after = (blocked.until - now).to_std().unwrap_or_default();
            tracing::warn!(
                target: "portal_invites::security",
                event = "forgot_throttled",
                shop_id = %shop.id,
                retry_after_secs = retry_after.as_secs(),
                "reset request refused: too many from this client"
            );
            return Err(PortalError::ResetsThrottled { shop: Box::new(shop), retry_after });
        }
        state.delivery.wake.notify_one();
        let minutes = ttl.num_minutes();
        let valid_for = if minutes % 60 == 0 {
            let hours = minutes / 60;
            if hours == 1 { "1 hour".to_owned() } else { format!("{hours} hours") }
        } else {
            format!("{minutes} minutes")
        };
        let context =
            ForgotSentPage { base: Base::shop(state, &shop, "Check your email"), email: typed, valid_for };
        Ok(pages::render(state, "pages/forgot_sent.html", StatusCode::OK, &context))
    }
    .await;
    respond(state, result)
}

/// Queues a reset request for whatever account has this email in the shop: one outbox row, the same
/// write whether or not there is an account, so neither the time taken nor the database's work tells
/// which addresses have one. The outbox worker looks the account up, applies the per-account cap,
/// gives the link's token its value and sends, or cancels the row when there is no account.
async fn queue_reset<C: ConnectionTrait>(
    conn: &C,
    shop_id: &str,
    email: &EmailAddress,
    now: DateTime<Utc>,
) -> Result<(), DbErr> {
    outbox::enqueue(
        conn,
        NewMessage {
            shop_id,
            customer_id: None,
            kind: MessageKind::PasswordReset,
            channel: Channel::Email,
            recipient: &email.normalized(),
            invitation_id: None,
            link: None,
        },
        None,
        now,
    )
    .await?;
    Ok(())
}
