//! Logging in. An unknown email, a wrong password and an account without a password yet all get the
//! same page, the same status, and (thanks to a dummy hash) the same time. Failures are throttled per
//! typed username and per client address; a success starts a brand-new session.

use poem::{
    Body, Request, Response, handler,
    http::StatusCode,
    web::{Data, Path, Query},
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
use serde::{Deserialize, Serialize};

use super::{
    PortalError, available_shop, check_form, client, cookie_names, csrf_for,
    pages::{self, Base},
    read_form, respond, session, throttle, with_cookies,
};
use crate::{app::AppState, clock::to_millis, domain::EmailAddress, entities::portal_account, links};

/// The one message for every failed login.
pub const FAILED: &str =
    "That email address and password don't match. Check them and try again, or reset your password.";

#[derive(Serialize)]
struct LoginPage {
    #[serde(flatten)]
    base: Base,
    action: String,
    csrf: String,
    email: String,
    notice: Option<&'static str>,
    error: Option<&'static str>,
}

#[derive(Deserialize)]
pub(super) struct Notice {
    #[serde(default)]
    notice: Option<String>,
}

#[derive(Deserialize)]
struct LoginForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    email: String,
    #[serde(default)]
    password: String,
}

fn page(
    state: &AppState,
    request: &Request,
    shop: &crate::entities::shop::Model,
    status: StatusCode,
    email: &str,
    notice: Option<&'static str>,
    error: Option<&'static str>,
) -> Response {
    let (csrf, cookie) = csrf_for(state, request);
    let context = LoginPage {
        base: Base::shop(state, shop, format!("Log in to {}", shop.name)),
        action: links::portal_path(&state.settings.public_url, &shop.id, "login"),
        csrf,
        email: email.to_owned(),
        notice,
        error,
    };
    with_cookies(pages::render(state, "pages/login.html", status, &context), cookie)
}

/// `GET /p/{shop}/login`.
#[handler]
pub async fn show_login(
    request: &Request,
    Path(shop_id): Path<String>,
    Query(query): Query<Notice>,
    Data(state): Data<&AppState>,
) -> Response {
    let result = async {
        let shop = available_shop(state, &shop_id).await?;
        let names = cookie_names(state);
        if let Some(cookie) = session::read_cookie(request, names.session())
            && session::find(
                state.db.conn(),
                cookie,
                &shop.id,
                state.settings.portal.session_idle,
                state.clock.now(),
            )
            .await?
            .is_some()
        {
            return Ok(pages::see_other(&links::home(&state.settings.public_url, &shop.id)));
        }
        let notice = match query.notice.as_deref() {
            Some("logged-out") => Some("You're logged out."),
            _ => None,
        };
        Ok(page(state, request, &shop, StatusCode::OK, "", notice, None))
    }
    .await;
    respond(state, result)
}

/// `POST /p/{shop}/login`.
#[handler]
pub async fn submit_login(
    request: &Request,
    Path(shop_id): Path<String>,
    body: Body,
    Data(state): Data<&AppState>,
) -> Response {
    let result = async {
        let form: LoginForm = read_form(body).await?;
        let shop = available_shop(state, &shop_id).await?;
        check_form(state, request, &form.csrf, Some(&shop))?;
        let typed = form.email.trim().to_owned();
        if typed.is_empty() || form.password.is_empty() {
            return Ok(page(
                state,
                request,
                &shop,
                StatusCode::UNPROCESSABLE_ENTITY,
                &typed,
                None,
                Some("Enter your email address and password."),
            ));
        }
        // Admitted to the password hasher first: under a flood, the requests turned away cost no
        // database work at all. The turn itself is taken after the reads below, so they happen
        // while other logins hash.
        let busy = |shop: &crate::entities::shop::Model| PortalError::Busy(Some(Box::new(shop.clone())));
        let admission = state.hasher.admit().map_err(|_| busy(&shop))?;
        let username =
            EmailAddress::parse(&typed).map(|e| e.normalized()).unwrap_or_else(|_| typed.to_lowercase());
        let now = state.clock.now();

        // Throttled before any work: a waiting attempt costs no hash and is not counted.
        let account_key = throttle::account_key(&shop.id, &username);
        let ip = client::client_ip(
            client::peer(request),
            request.headers().get("x-forwarded-for").and_then(|v| v.to_str().ok()),
            &state.settings.portal.trusted_proxies,
        );
        let address_key = ip.map(throttle::address_key);
        let conn = state.db.conn();
        let mut blocked = throttle::blocked_until(conn, &account_key, now).await?;
        if let Some(key) = &address_key {
            blocked = blocked.max(throttle::blocked_until(conn, key, now).await?);
        }
        if let Some(until) = blocked {
            let retry_after = (until - now).to_std().unwrap_or_default();
            return Err(PortalError::Throttled { shop: Box::new(shop), retry_after });
        }

        let account = portal_account::Entity::find()
            .filter(portal_account::Column::ShopId.eq(shop.id.as_str()))
            .filter(portal_account::Column::Username.eq(username.as_str()))
            .one(conn)
            .await?;
        let stored = account.as_ref().and_then(|a| a.password_hash.clone());
        let turn = admission.turn().await.map_err(|_| busy(&shop))?;
        let verified =
            state.hasher.verify_in(turn, form.password.clone(), stored).await.map_err(|_| busy(&shop))?;

        let (Some(account), true) = (account, verified.matches) else {
            let keys =
                [Some((account_key, throttle::PER_ACCOUNT)), address_key.map(|k| (k, throttle::PER_ADDRESS))];
            state
                .db
                .write(move |txn| {
                    Box::pin(async move {
                        for (key, policy) in keys.into_iter().flatten() {
                            throttle::record_failure(txn, &key, policy, now).await?;
                        }
                        Ok::<_, PortalError>(())
                    })
                })
                .await?;
            tracing::info!(shop_id = %shop.id, "login failed");
            return Ok(page(
                state,
                request,
                &shop,
                StatusCode::UNPROCESSABLE_ENTITY,
                &typed,
                None,
                Some(FAILED),
            ));
        };

        let rehash = if verified.needs_rehash {
            state.hasher.hash(super::passwords::normalise(&form.password)).await.ok()
        } else {
            None
        };
        let names = cookie_names(state);
        let old_session = session::read_cookie(request, names.session()).map(str::to_owned);
        let lifetime = state.settings.portal.session_lifetime;
        let (account_id, shop_id) = (account.id.clone(), shop.id.clone());
        let new_session = state
            .db
            .write(move |txn| {
                Box::pin(async move {
                    throttle::clear(txn, &account_key).await?;
                    if let Some(hash) = rehash {
                        portal_account::Entity::update_many()
                            .col_expr(portal_account::Column::PasswordHash, Expr::value(hash))
                            .col_expr(portal_account::Column::UpdatedAt, Expr::value(to_millis(now)))
                            .filter(portal_account::Column::Id.eq(account_id.as_str()))
                            .exec(txn)
                            .await?;
                    }
                    // A session id planted before login is worthless after it: it is ended, and a new one starts.
                    if let Some(old) = old_session {
                        session::end(txn, &old).await?;
                    }
                    Ok::<_, PortalError>(session::start(txn, &account_id, &shop_id, lifetime, now).await?)
                })
            })
            .await?;
        tracing::info!(shop_id = %shop.id, account_id = %account.id, "logged in");
        let cookies =
            [names.set(names.session(), new_session.as_str(), lifetime), names.clear(names.presession())];
        Ok(with_cookies(pages::see_other(&links::home(&state.settings.public_url, &shop.id)), cookies))
    }
    .await;
    respond(state, result)
}
