//! Choosing a password: the first time (from the invitation's set-up link), and after "forgot
//! password" (from the reset link; asking for one is `forgot.rs`).
//!
//! Opening a link (GET or HEAD) only shows the form; it never uses up the token, because mail
//! scanners open every link. Only the customer's POST consumes it, with a conditional `UPDATE`, so of
//! any number of simultaneous submissions exactly one wins; the same transaction kills every other
//! link of the account. A POST with a link that once worked (used, revoked or expired) is logged as a
//! security event: someone holds an old email.

use chrono::{DateTime, Utc};
use poem::{
    Body, Request, Response, handler,
    http::StatusCode,
    web::{Data, Path},
};
use sea_orm::{
    ColumnTrait, ConnectionTrait, DbBackend, DbErr, EntityTrait, QueryFilter, QuerySelect, sea_query::Expr,
};
use serde::{Deserialize, Serialize};

use super::{
    PortalError, check_form, cookie_names, csrf_for,
    pages::{self, Base},
    passwords::{self, PasswordProblem},
    read_form, respond, session, throttle, throttle_keys, with_cookies,
};
use crate::{
    app::AppState,
    clock::to_millis,
    delivery::outbox::{self, MessageKind, NewMessage},
    domain::EmailAddress,
    entities::{customer, portal_account, shop, token},
    invitations::{self, Channel},
    links,
    tokens::{self, Purpose, Spent},
};

#[derive(Serialize)]
struct PasswordPage {
    #[serde(flatten)]
    base: Base,
    heading: String,
    intro: String,
    submit: &'static str,
    action: String,
    csrf: String,
    username: String,
    min_length: usize,
    password_error: Option<String>,
    confirmation_error: Option<String>,
}

#[derive(Deserialize)]
struct PasswordForm {
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    confirmation: String,
}

/// Which link the page serves.
#[derive(Clone, Copy)]
enum Flow {
    Setup,
    Reset,
}

impl Flow {
    fn purpose(self) -> Purpose {
        match self {
            Self::Setup => Purpose::Setup,
            Self::Reset => Purpose::Reset,
        }
    }

    fn action(self, state: &AppState, shop_id: &str, token: &str) -> String {
        let segment = match self {
            Self::Setup => "setup",
            Self::Reset => "reset",
        };
        links::portal_path(&state.settings.public_url, shop_id, &format!("{segment}/{token}"))
    }
}

/// An open set-up or reset link: its shop, its token and the account it is for.
struct Link {
    shop: shop::Model,
    token: token::Model,
    account: portal_account::Model,
    raw: String,
}

fn password_page(
    state: &AppState,
    request: &Request,
    flow: Flow,
    link: &Link,
    status: StatusCode,
    problem: Option<PasswordProblem>,
) -> Response {
    let Link { shop, account, raw, .. } = link;
    let (heading, intro, submit) = match flow {
        Flow::Setup => (
            "Set up your password".to_owned(),
            format!(
                "Choose the password for your {} Customer Portal login. You'll log in with your email address and this password.",
                shop.name
            ),
            "Save password and log in",
        ),
        Flow::Reset => (
            "Choose a new password".to_owned(),
            format!(
                "Choose a new password for your {} Customer Portal login. You'll be logged out everywhere else.",
                shop.name
            ),
            "Save new password and log in",
        ),
    };
    let (password_error, confirmation_error) = match problem {
        Some(PasswordProblem::Mismatch) => (None, Some(PasswordProblem::Mismatch.to_string())),
        Some(other) => (Some(other.to_string()), None),
        None => (None, None),
    };
    let (csrf, cookie) = csrf_for(state, request);
    let context = PasswordPage {
        base: Base::shop(state, shop, heading.clone()),
        heading,
        intro,
        submit,
        action: flow.action(state, &shop.id, raw),
        csrf,
        username: account.username.clone(),
        min_length: state.settings.portal.password_min_length,
        password_error,
        confirmation_error,
    };
    with_cookies(pages::render(state, "pages/password.html", status, &context), cookie)
}

/// How a link reached us.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Presented {
    /// Opened (GET or HEAD): a person or a mail scanner.
    Opened,
    /// Its form was posted: a person choosing a password.
    Submitted,
}

/// The shop, the link's token and its account, or the page that says why not.
async fn open_link(
    state: &AppState,
    flow: Flow,
    shop_id: &str,
    raw: &str,
    presented: Presented,
) -> Result<Link, PortalError> {
    let shop = super::find_shop(state, shop_id).await?;
    let conn = state.db.conn();
    // One look-up whether the link works or not: a link that once worked and one that never existed
    // cost the same, and only the first is worth a security event.
    let found = tokens::find_presented(conn, &shop.id, flow.purpose(), raw).await?;
    let token = match found.map(|token| (Spent::of(&token, state.clock.now()), token)) {
        Some((None, token)) => token,
        Some((Some(spent), token)) => {
            if presented == Presented::Submitted {
                report_reuse(&shop.id, flow, &token, spent);
            }
            return Err(PortalError::LinkInvalid(Box::new(shop)));
        }
        None => return Err(PortalError::LinkInvalid(Box::new(shop))),
    };
    if !super::portal_available(&shop) {
        return Err(PortalError::Unavailable(Box::new(shop)));
    }
    let account = portal_account::Entity::find_by_id(token.account_id.as_str())
        .one(conn)
        .await?
        .ok_or_else(|| PortalError::LinkInvalid(Box::new(shop.clone())))?;
    Ok(Link { shop, token, account, raw: raw.to_owned() })
}

/// A password form was posted with a link that once worked and no longer does: someone holds an
/// email whose link was used, revoked or expired. (A link that never existed is a typo or a guess,
/// and says nothing.) Both get the same page.
fn report_reuse(shop_id: &str, flow: Flow, token: &token::Model, spent: Spent) {
    tracing::warn!(
        target: "portal_invites::security",
        event = "link_reused",
        shop_id = %shop_id,
        account_id = %token.account_id,
        purpose = flow.purpose().as_str(),
        reason = spent.as_str(),
        "a password link that no longer works was submitted"
    );
}

async fn show(state: &AppState, request: &Request, flow: Flow, shop_id: &str, raw: &str) -> Response {
    let result = async {
        let link = open_link(state, flow, shop_id, raw, Presented::Opened).await?;
        Ok(password_page(state, request, flow, &link, StatusCode::OK, None))
    }
    .await;
    respond(state, result)
}

async fn save(
    state: &AppState,
    request: &Request,
    flow: Flow,
    shop_id: &str,
    raw: &str,
    body: Body,
) -> Response {
    let result = async {
        let form: PasswordForm = read_form(body).await?;
        let shop = super::find_shop(state, shop_id).await?;
        check_form(state, request, &form.csrf, Some(&shop))?;
        let link = open_link(state, flow, shop_id, raw, Presented::Submitted).await?;
        let (shop, token, account) = (&link.shop, &link.token, &link.account);
        let local_part =
            EmailAddress::parse(&account.username).map(|e| e.local_part().to_owned()).unwrap_or_default();
        let password = match passwords::check_new(
            &form.password,
            &form.confirmation,
            state.settings.portal.password_min_length,
            &local_part,
            &shop.name,
        ) {
            Ok(password) => password,
            Err(problem) => {
                return Ok(password_page(
                    state,
                    request,
                    flow,
                    &link,
                    StatusCode::UNPROCESSABLE_ENTITY,
                    Some(problem),
                ));
            }
        };
        let hash =
            state.hasher.hash(password).await.map_err(|_| PortalError::Busy(Some(Box::new(shop.clone()))))?;
        let now = state.clock.now();
        let lifetime = state.settings.portal.session_lifetime;
        let recipient = notification_address(state, account).await?;
        let (token_id, account_id, shop_id, customer_id, throttle_key, owner) = (
            token.id.clone(),
            account.id.clone(),
            shop.id.clone(),
            account.customer_id.clone(),
            throttle_keys(state).account(&shop.id, &account.username),
            account.clone(),
        );
        let started = state
            .db
            .write(move |txn| {
                Box::pin(async move {
                    // The account first, then its tokens: two links of one account used at the same
                    // moment take turns instead of locking each other's tokens (PostgreSQL).
                    if txn.get_database_backend() == DbBackend::Postgres {
                        portal_account::Entity::find_by_id(account_id.as_str())
                            .lock_exclusive()
                            .one(txn)
                            .await?;
                    }
                    if !consume(txn, &token_id, now).await? {
                        return Ok(None);
                    }
                    portal_account::Entity::update_many()
                        .col_expr(portal_account::Column::PasswordHash, Expr::value(hash))
                        .col_expr(portal_account::Column::PasswordChangedAt, Expr::value(to_millis(now)))
                        .col_expr(portal_account::Column::UpdatedAt, Expr::value(to_millis(now)))
                        .filter(portal_account::Column::Id.eq(account_id.as_str()))
                        .exec(txn)
                        .await?;
                    // A new password ends every session the account had, wherever it was, and every
                    // other link it was sent: none may set the password again.
                    session::end_all(txn, &account_id).await?;
                    invitations::retire_other_links(txn, &owner, &token_id, now).await?;
                    throttle::clear(txn, &throttle_key).await?;
                    if let (Flow::Reset, Some(recipient)) = (flow, recipient) {
                        outbox::enqueue(
                            txn,
                            NewMessage {
                                shop_id: &shop_id,
                                customer_id: Some(&customer_id),
                                kind: MessageKind::PasswordChanged,
                                channel: Channel::Email,
                                recipient: &recipient,
                                invitation_id: None,
                                link: None,
                            },
                            None,
                            now,
                        )
                        .await?;
                    }
                    Ok::<_, PortalError>(Some(
                        session::start(txn, &account_id, &shop_id, lifetime, now).await?,
                    ))
                })
            })
            .await?;
        let Some(new_session) = started else {
            // Another submission used the link a moment earlier.
            return Err(PortalError::LinkInvalid(Box::new(shop.clone())));
        };
        if matches!(flow, Flow::Reset) {
            state.delivery.wake.notify_one();
        }
        tracing::info!(shop_id = %shop.id, account_id = %account.id, "password set");
        let names = cookie_names(state);
        let cookies =
            [names.set(names.session(), new_session.as_str(), lifetime), names.clear(names.presession())];
        Ok(with_cookies(pages::see_other(&links::home(&state.settings.public_url, &shop.id)), cookies))
    }
    .await;
    respond(state, result)
}

/// Uses up a token if it is still usable; `false` if another request got there first.
async fn consume<C: ConnectionTrait>(conn: &C, token_id: &str, now: DateTime<Utc>) -> Result<bool, DbErr> {
    let result = token::Entity::update_many()
        .col_expr(token::Column::UsedAt, Expr::value(to_millis(now)))
        .filter(token::Column::Id.eq(token_id))
        .filter(tokens::usable(now))
        .exec(conn)
        .await?;
    Ok(result.rows_affected == 1)
}

/// Where account email goes: the address on the customer's profile, else the username.
async fn notification_address(
    state: &AppState,
    account: &portal_account::Model,
) -> Result<Option<String>, PortalError> {
    let customer = customer::Entity::find_by_id((account.shop_id.clone(), account.customer_id.clone()))
        .one(state.db.conn())
        .await?;
    Ok(customer.and_then(|c| c.email).or_else(|| Some(account.username.clone())))
}

/// `GET|HEAD /p/{shop}/setup/{token}`.
#[handler]
pub async fn setup_form(
    request: &Request,
    Path((shop_id, raw)): Path<(String, String)>,
    Data(state): Data<&AppState>,
) -> Response {
    show(state, request, Flow::Setup, &shop_id, &raw).await
}

/// `POST /p/{shop}/setup/{token}`.
#[handler]
pub async fn setup_submit(
    request: &Request,
    Path((shop_id, raw)): Path<(String, String)>,
    body: Body,
    Data(state): Data<&AppState>,
) -> Response {
    save(state, request, Flow::Setup, &shop_id, &raw, body).await
}

/// `GET|HEAD /p/{shop}/reset/{token}`.
#[handler]
pub async fn reset_form(
    request: &Request,
    Path((shop_id, raw)): Path<(String, String)>,
    Data(state): Data<&AppState>,
) -> Response {
    show(state, request, Flow::Reset, &shop_id, &raw).await
}

/// `POST /p/{shop}/reset/{token}`.
#[handler]
pub async fn reset_submit(
    request: &Request,
    Path((shop_id, raw)): Path<(String, String)>,
    body: Body,
    Data(state): Data<&AppState>,
) -> Response {
    save(state, request, Flow::Reset, &shop_id, &raw, body).await
}
