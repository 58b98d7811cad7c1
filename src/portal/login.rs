//! Logging in. An unknown email, a wrong password and an account without a password yet all get the
//! same page, the same status, and (thanks to a dummy hash) the same time. Failures are throttled per
//! typed username and per client network, or, from a browser that logged in to the account before,
//! per that browser (see `device`); a success starts a brand-new session and remembers the browser.

use poem::{
    Body, Request, Response, handler,
    http::StatusCode,
    web::{Data, Path, Query},
};
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter, sea_query::Expr};
use serde::{Deserialize, Serialize};

use super::{
    PortalError, available_shop, check_form, client, cookie_names, csrf_for, device,
    pages::{self, Base},
    read_form, respond, session,
    throttle::{self, Attempt, Blocked},
    throttle_keys, with_cookies,
};
use crate::{app::AppState, clock::to_millis, domain::EmailAddress, entities::portal_account, links};

/// Why a reservation was refused: the attempt must wait, or the database failed.
enum Refused {
    Blocked(Blocked),
    Db(sea_orm::DbErr),
}

impl From<sea_orm::DbErr> for Refused {
    fn from(error: sea_orm::DbErr) -> Self {
        Self::Db(error)
    }
}

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

        // The attempt is reserved before any work: counted as a failure up front, in the same write
        // that refuses it when it must wait, so a waiting attempt costs no hash and of a burst that
        // arrives together only the first is judged. A browser that logged in to this account
        // before is judged by its own counter, so a stranger's failures cannot keep it out.
        let names = cookie_names(state);
        let keys = throttle_keys(state);
        let attempts =
            match device::recognise(request, names, state.keys.cookies.bytes(), &shop.id, &username) {
                Some(device) => vec![Attempt {
                    key: keys.device(&shop.id, &username, &device),
                    policy: throttle::PER_DEVICE,
                }],
                None => {
                    let address = client::of_request(request, &state.settings.portal.trusted_proxies);
                    std::iter::once(Attempt {
                        key: keys.account(&shop.id, &username),
                        policy: throttle::PER_ACCOUNT,
                    })
                    .chain(address.map(|ip| Attempt {
                        key: keys.login_address(client::network(ip)),
                        policy: throttle::PER_ADDRESS,
                    }))
                    .collect()
                }
            };
        let reserved = state
            .db
            .write(move |txn| {
                Box::pin(async move {
                    // Refused attempts roll back, leaving no trace.
                    throttle::reserve(txn, &attempts, now).await?.map_err(Refused::Blocked)
                })
            })
            .await;
        let reservation = match reserved {
            Ok(reservation) => reservation,
            Err(Refused::Blocked(blocked)) => {
                let retry_after = (blocked.until - now).to_std().unwrap_or_default();
                tracing::warn!(
                    target: "portal_invites::security",
                    event = "login_throttled",
                    shop_id = %shop.id,
                    limit = blocked.policy.name,
                    retry_after_secs = retry_after.as_secs(),
                    "login attempt refused: too many failures"
                );
                return Err(PortalError::Throttled { shop: Box::new(shop), retry_after });
            }
            Err(Refused::Db(error)) => return Err(error.into()),
        };

        let conn = state.db.conn();
        let judged = async {
            let account = portal_account::Entity::find()
                .filter(portal_account::Column::ShopId.eq(shop.id.as_str()))
                .filter(portal_account::Column::Username.eq(username.as_str()))
                .one(conn)
                .await?;
            let stored = account.as_ref().and_then(|a| a.password_hash.clone());
            let turn = admission.turn().await.map_err(|_| busy(&shop))?;
            let verified =
                state.hasher.verify_in(turn, form.password.clone(), stored).await.map_err(|_| busy(&shop))?;
            Ok::<_, PortalError>((account, verified))
        }
        .await;
        let (account, verified) = match judged {
            Ok(judged) => judged,
            Err(error) => {
                // Never judged: the attempt is given back, so a busy service counts nobody's failure.
                state.db.write(move |txn| Box::pin(throttle::abandoned(txn, reservation))).await?;
                return Err(error);
            }
        };

        let (Some(account), true) = (account, verified.matches) else {
            // Already counted when reserved.
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
        let old_session = session::read_cookie(request, names.session()).map(str::to_owned);
        let lifetime = state.settings.portal.session_lifetime;
        let (account_id, shop_id) = (account.id.clone(), shop.id.clone());
        let new_session = state
            .db
            .write(move |txn| {
                Box::pin(async move {
                    throttle::succeeded(txn, reservation).await?;
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
        let cookies = [
            names.set(names.session(), new_session.as_str(), lifetime),
            names.clear(names.presession()),
            device::remember(request, names, state.keys.cookies.bytes(), &shop.id, &username),
        ];
        Ok(with_cookies(pages::see_other(&links::home(&state.settings.public_url, &shop.id)), cookies))
    }
    .await;
    respond(state, result)
}
