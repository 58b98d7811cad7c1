//! The scenarios: what a burst from the host or a rush of customers looks like, as operations for the
//! load generator.

use std::{
    collections::HashMap,
    net::SocketAddr,
    sync::{Arc, Mutex},
    time::Instant,
};

use bytes::Bytes;
use chrono::Utc;
use futures_util::FutureExt;
use http_body_util::Full;
use hyper::Request;
use portal_invites::{
    cli::host_messages::{self, Customer, Shop, Staff, StarMenu},
    signature::WebhookSecret,
};

use super::load::{self, Operation, Outcome, Reply, Setup, Worker};

/// The shop every scenario works in.
pub const SHOP: &str = "shop_bench";
/// Distinct customers the webhook scenario cycles through (new ones first, then updates).
const CUSTOMERS: u64 = 10_000;

/// What every scenario needs to talk to the service.
#[derive(Clone)]
pub struct Target {
    /// The service.
    pub addr: SocketAddr,
    /// Its signing secret.
    pub secret: Arc<WebhookSecret>,
    /// A label unique to this run (for message ids).
    pub run: String,
}

fn signed(target: &Target, path: &str, id: &str, body: String) -> Request<Full<Bytes>> {
    let timestamp = Utc::now().timestamp();
    let signature = target.secret.sign(id, timestamp, body.as_bytes());
    Request::post(path)
        .header("host", "127.0.0.1")
        .header("content-type", "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature)
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

fn outcome(reply: Result<Reply, String>, expected: u16, must_contain: Option<&str>) -> Outcome {
    match reply {
        Err(_) => Outcome::Broken,
        Ok(reply) if reply.status == expected => {
            // The generator shares the machine with the service: a SIMD search, not a byte-by-byte one.
            let body_ok = must_contain
                .is_none_or(|needle| memchr::memmem::find(&reply.body, needle.as_bytes()).is_some());
            if body_ok { Outcome::Ok } else { Outcome::Failed }
        }
        Ok(reply) if reply.status == 503 => Outcome::Shed,
        Ok(_) => Outcome::Failed,
    }
}

/// Who the benchmark's host messages come from.
const BENCH: Staff<'static> = Staff { id: "usr_1", name: "Bench" };

/// Installs the benchmark's shop.
pub async fn install(target: &Target) {
    let mut conn = load::connect(target.addr).await.unwrap();
    let installer = Staff { id: "u", name: "Bench" };
    let body = host_messages::plugin_installed(&Shop::example(SHOP), 1, installer, Utc::now()).to_string();
    let reply = load::send(&mut conn, signed(target, "/webhooks", &format!("{}_install", target.run), body))
        .await
        .unwrap();
    assert_eq!(reply.status, 204, "installing the shop");
}

/// A message `webhook-intake` sent and the service answered `204`.
#[derive(Clone)]
pub struct SentMessage {
    pub id: String,
    pub body: String,
    /// The customer it updated, and to which version.
    pub customer: u64,
    pub version: i64,
    /// Sent to both instances at once.
    pub twinned: bool,
}

/// Every message `webhook-intake` sent, for `webhook-replay` to send again and for the count of rows
/// afterwards.
pub type Sent = Arc<Mutex<Vec<SentMessage>>>;

/// How the intake scenarios name their messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ids {
    /// As a host does: `msg_` and 24 random letters and digits (the contract's example shape), so each
    /// insert lands at a random place in the de-duplication index.
    Random,
    /// `{run}_{n}`: every insert at the end of the index. Kinder to a B-tree than a host is, so its row
    /// is labelled as such.
    Sequential,
}

fn message_id(ids: Ids, run: &str, n: u64) -> String {
    match ids {
        Ids::Random => {
            use rand::{Rng, distr::Alphanumeric};
            let tail: String = rand::rng().sample_iter(Alphanumeric).take(24).map(char::from).collect();
            format!("msg_{tail}")
        }
        Ids::Sequential => format!("{run}_{n}"),
    }
}

/// Every how many messages the host, in the two-instance scenario, also sends a message to the
/// other instance at the same moment (a retry that crossed the first attempt). One in 200 is still
/// far more than a host's retries cross their first attempts, and gives a run several hundred such
/// pairs; each makes one instance's batch wait for the other's commit.
pub const TWIN_EVERY: u64 = 200;

/// `customer.updated`, each with a new `webhook-id` and a newer customer version (`version_base` +
/// the operation's number, so a later scenario's versions are newer than an earlier one's). A worker
/// with a connection to a second instance sends every [`TWIN_EVERY`]th message to both at once; both
/// must answer `204`.
pub fn webhook_intake(target: &Target, sent: Sent, ids: Ids, version_base: i64) -> Operation {
    let target = target.clone();
    Arc::new(move |mut worker: Worker, n: u64| {
        let target = target.clone();
        let sent = sent.clone();
        async move {
            let id = message_id(ids, &target.run, n);
            let customer = n % CUSTOMERS;
            let version = version_base + n as i64 + 1;
            let (id_of, email) = (format!("cus_{customer}"), format!("c{customer}@bench.example"));
            let snapshot = Customer::example(&id_of, Some(&email), Some("+61412345678")).snapshot(version);
            let body = host_messages::customer_updated(SHOP, snapshot, Utc::now()).to_string();
            let request = || signed(&target, "/webhooks", &id, body.clone());
            let twinned = worker.other.is_some() && n.is_multiple_of(TWIN_EVERY);
            let result = match worker.other.as_mut().filter(|_| twinned) {
                Some(other) => {
                    let (mine, theirs) =
                        tokio::join!(load::send(&mut worker.conn, request()), load::send(other, request()));
                    match (outcome(mine, 204, None), outcome(theirs, 204, None)) {
                        (Outcome::Ok, Outcome::Ok) => Outcome::Ok,
                        (Outcome::Broken, _) | (_, Outcome::Broken) => Outcome::Broken,
                        _ => Outcome::Failed,
                    }
                }
                None => outcome(load::send(&mut worker.conn, request()).await, 204, None),
            };
            if result == Outcome::Ok {
                sent.lock().unwrap().push(SentMessage { id, body, customer, version, twinned });
            }
            (worker, result)
        }
        .boxed()
    })
}

/// Gives each worker a second connection, to the instance its own does not go to.
pub fn twin_setup(addrs: [SocketAddr; 2]) -> Setup {
    Arc::new(move |mut worker: Worker| {
        async move {
            let other = if worker.addr == addrs[0] { addrs[1] } else { addrs[0] };
            worker.other = Some(load::connect(other).await.expect("the second instance accepts connections"));
            worker
        }
        .boxed()
    })
}

/// The same messages again, re-signed (a retry carries a fresh timestamp): the de-duplication path.
pub fn webhook_replay(target: &Target, sent: Sent) -> Operation {
    let target = target.clone();
    let messages: Arc<Vec<SentMessage>> = Arc::new(sent.lock().unwrap().clone());
    Arc::new(move |mut worker: Worker, n: u64| {
        let target = target.clone();
        let messages = messages.clone();
        async move {
            let message = &messages[(n as usize) % messages.len()];
            let request = signed(&target, "/webhooks", &message.id, message.body.clone());
            let reply = load::send(&mut worker.conn, request).await;
            (worker, outcome(reply, 204, None))
        }
        .boxed()
    })
}

/// One of the star-menu messages (chosen by `message`) about a customer with an email only.
fn action(
    customer: &str,
    email: &str,
    interaction: &str,
    message: impl FnOnce(&StarMenu<'_>) -> serde_json::Value,
) -> String {
    let shop = Shop::example(SHOP);
    let customer = Customer::example(customer, Some(email), None).snapshot(1);
    message(&StarMenu { shop: &shop, shop_version: 1, customer: &customer, user: BENCH, interaction })
        .to_string()
}

/// When each invitation's submission started, by recipient.
pub type Submitted = Arc<Mutex<HashMap<String, Instant>>>;

/// The star-menu click and the dialog's submission for a new customer: one invitation per operation,
/// successful when the answer is `invitation_sent` (the SMTP server accepted it).
pub fn invite(target: &Target, submitted: Submitted) -> Operation {
    let target = target.clone();
    Arc::new(move |mut worker: Worker, n: u64| {
        let target = target.clone();
        let submitted = submitted.clone();
        async move {
            let (customer, email, interaction) =
                (format!("inv_{n}"), format!("c{n}@invite.example"), format!("int_{n}"));
            let click = action(&customer, &email, &interaction, |menu| menu.invoked(Utc::now()));
            let reply = load::send(
                &mut worker.conn,
                signed(&target, "/actions/send-portal-invitation", &format!("{}_c{n}", target.run), click),
            )
            .await;
            let result = outcome(reply, 200, Some("open_dialog"));
            if result != Outcome::Ok {
                return (worker, result);
            }
            let submit =
                action(&customer, &email, &interaction, |menu| menu.submitted(Some("email"), Utc::now()));
            submitted.lock().unwrap().insert(email.clone(), Instant::now());
            let reply = load::send(
                &mut worker.conn,
                signed(&target, "/actions/send-portal-invitation", &format!("{}_s{n}", target.run), submit),
            )
            .await;
            (worker, outcome(reply, 200, Some("invitation_sent")))
        }
        .boxed()
    })
}

fn form_request(path: &str, cookie: &str, body: String) -> Request<Full<Bytes>> {
    Request::post(path)
        .header("host", "127.0.0.1")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("cookie", cookie)
        .body(Full::new(Bytes::from(body)))
        .unwrap()
}

fn get(path: &str) -> Request<Full<Bytes>> {
    Request::get(path).header("host", "127.0.0.1").body(Full::default()).unwrap()
}

/// The form cookie and CSRF token of a form page.
pub async fn open_form(conn: &mut load::Conn, path: &str) -> (String, String) {
    let reply = load::send(conn, get(path)).await.unwrap();
    assert_eq!(reply.status, 200, "{path}");
    let cookie = reply
        .headers
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(|c| c.split(';').next().filter(|pair| pair.starts_with("portal_form=")).map(str::to_owned))
        .expect("a form cookie");
    let body = String::from_utf8_lossy(&reply.body);
    let marker = "name=\"csrf\" value=\"";
    let start = body.find(marker).expect("a CSRF token") + marker.len();
    let token = body[start..].split('"').next().unwrap().to_owned();
    (cookie, token)
}

/// Sets the password of the customer invited at `setup_path`.
pub async fn set_password(addr: SocketAddr, setup_path: &str, password: &str) {
    let mut conn = load::connect(addr).await.unwrap();
    let (cookie, token) = open_form(&mut conn, setup_path).await;
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([("csrf", token.as_str()), ("password", password), ("confirmation", password)])
        .finish();
    let reply = load::send(&mut conn, form_request(setup_path, &cookie, body)).await.unwrap();
    assert_eq!(reply.status, 303, "setting the password");
}

/// Sends one invitation for the login scenario's customer.
pub async fn invite_one(target: &Target, email: &str) {
    let mut conn = load::connect(target.addr).await.unwrap();
    let submit = action("cus_login", email, "int_login", |menu| menu.submitted(Some("email"), Utc::now()));
    let reply = load::send(
        &mut conn,
        signed(target, "/actions/send-portal-invitation", &format!("{}_login", target.run), submit),
    )
    .await
    .unwrap();
    assert_eq!(reply.status, 200);
}

/// Each worker opens the login page once for its form cookie and token.
pub fn login_setup() -> Setup {
    Arc::new(|mut worker: Worker| {
        async move {
            let (cookie, token) = open_form(&mut worker.conn, &format!("/p/{SHOP}/login")).await;
            worker.cookie = cookie;
            worker.token = token;
            worker
        }
        .boxed()
    })
}

/// A valid login: email and password, answered with a redirect home.
pub fn login(email: &str, password: &str) -> Operation {
    let (email, password) = (email.to_owned(), password.to_owned());
    Arc::new(move |mut worker: Worker, _| {
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("csrf", worker.token.as_str()),
                ("email", email.as_str()),
                ("password", password.as_str()),
            ])
            .finish();
        async move {
            let request = form_request(&format!("/p/{SHOP}/login"), &worker.cookie, body);
            let reply = load::send(&mut worker.conn, request).await;
            (worker, outcome(reply, 303, None))
        }
        .boxed()
    })
}

/// The login page.
pub fn page() -> Operation {
    Arc::new(|mut worker: Worker, _| {
        async move {
            let reply = load::send(&mut worker.conn, get(&format!("/p/{SHOP}/login"))).await;
            (worker, outcome(reply, 200, Some("Log in")))
        }
        .boxed()
    })
}

/// The ceiling's bare route.
pub fn bare() -> Operation {
    Arc::new(|mut worker: Worker, _| {
        async move {
            let reply = load::send(&mut worker.conn, get("/")).await;
            (worker, outcome(reply, 204, None))
        }
        .boxed()
    })
}

/// The stand-in host portal the sign-in scenario registers (never contacted: the bench plays it).
const PORTAL_BASE: &str = "http://127.0.0.1:9/portal";
/// The bench's PKCE verifier (the same for every sign-in: the service cannot tell).
const VERIFIER: &str = "bench-pkce-verifier-0123456789-abcdefghijklmnopqrstuvwxyz";

fn portal() -> host_messages::Portal {
    host_messages::Portal::at(PORTAL_BASE, SHOP)
}

/// Registers the host's portal for the bench's shop (a newer snapshot than the install's).
pub async fn register_portal(target: &Target) {
    let mut conn = load::connect(target.addr).await.unwrap();
    let shop = Shop { portal: Some(portal()), ..Shop::example(SHOP) };
    let body = host_messages::shop_updated(SHOP, shop.snapshot(2), Utc::now()).to_string();
    let reply = load::send(&mut conn, signed(target, "/webhooks", &format!("{}_portal", target.run), body))
        .await
        .unwrap();
    assert_eq!(reply.status, 204, "registering the portal");
}

/// Each worker logs in once (retrying while the hashing bound turns it away) and keeps the session
/// cookie: sign-ins then complete at once, as when the host's portal sends a logged-in customer.
pub fn sign_in_setup(email: &str, password: &str) -> Setup {
    let (email, password) = (email.to_owned(), password.to_owned());
    Arc::new(move |mut worker: Worker| {
        let (email, password) = (email.clone(), password.clone());
        async move {
            let login = format!("/p/{SHOP}/login");
            loop {
                let (cookie, token) = open_form(&mut worker.conn, &login).await;
                let body = url::form_urlencoded::Serializer::new(String::new())
                    .extend_pairs([("csrf", token.as_str()), ("email", &email), ("password", &password)])
                    .finish();
                let reply = load::send(&mut worker.conn, form_request(&login, &cookie, body)).await.unwrap();
                let session = reply
                    .headers
                    .get_all("set-cookie")
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .find_map(|c| {
                        c.split(';').next().filter(|p| p.starts_with("portal_session=")).map(str::to_owned)
                    });
                match (reply.status, session) {
                    (303, Some(session)) => {
                        worker.cookie = session;
                        return worker;
                    }
                    (503, _) => tokio::time::sleep(std::time::Duration::from_millis(50)).await,
                    (status, _) => panic!("logging in for the sign-in scenario answered {status}"),
                }
            }
        }
        .boxed()
    })
}

/// One sign-in to the host's portal with a live session: the authorization request (answered with a
/// code at once) and the token exchange (an ID token signed with RS256).
pub fn sign_in(client_id: &str, client_secret: &str) -> Operation {
    use base64::Engine;
    let portal = portal();
    let redirect_uri = portal.redirect_uris[0].clone();
    let authorize = format!(
        "/p/{SHOP}/oidc/authorize?{}",
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("client_id", client_id),
                ("redirect_uri", redirect_uri.as_str()),
                ("response_type", "code"),
                ("scope", "openid email profile"),
                ("state", "bench-state"),
                ("nonce", "bench-nonce"),
                ("code_challenge", &portal_invites::identity::tokens::s256(VERIFIER)),
                ("code_challenge_method", "S256"),
            ])
            .finish()
    );
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{client_id}:{client_secret}"))
    );
    Arc::new(move |mut worker: Worker, _| {
        let (authorize, basic, redirect_uri) = (authorize.clone(), basic.clone(), redirect_uri.clone());
        async move {
            let request = Request::get(authorize.as_str())
                .header("host", "127.0.0.1")
                .header("cookie", worker.cookie.as_str())
                .body(Full::default())
                .unwrap();
            let reply = match load::send(&mut worker.conn, request).await {
                Ok(reply) if reply.status == 303 => reply,
                other => return (worker, outcome(other, 303, None)),
            };
            let code = reply
                .headers
                .get("location")
                .and_then(|l| l.to_str().ok())
                .and_then(|l| url::Url::parse(l).ok())
                .and_then(|u| u.query_pairs().find(|(k, _)| k == "code").map(|(_, v)| v.into_owned()));
            let Some(code) = code else { return (worker, Outcome::Failed) };
            let body = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs([
                    ("grant_type", "authorization_code"),
                    ("code", code.as_str()),
                    ("redirect_uri", redirect_uri.as_str()),
                    ("code_verifier", VERIFIER),
                ])
                .finish();
            let request = Request::post(format!("/p/{SHOP}/oidc/token"))
                .header("host", "127.0.0.1")
                .header("content-type", "application/x-www-form-urlencoded")
                .header("authorization", basic.as_str())
                .body(Full::new(Bytes::from(body)))
                .unwrap();
            let reply = load::send(&mut worker.conn, request).await;
            (worker, outcome(reply, 200, Some("\"id_token\"")))
        }
        .boxed()
    })
}
