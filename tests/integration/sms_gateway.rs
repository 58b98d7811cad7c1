//! A local HTTP server that speaks the Twilio Messages API (`POST
//! /2010-04-01/Accounts/{sid}/Messages.json`, form fields, basic auth; `GET …/Messages/{sid}.json`),
//! standing in for the SMS gateway we cannot reach from tests. Tests script its answers, and make it
//! send status reports to the `StatusCallback` of a message, signed as Twilio signs them (computed
//! here on its own, not with the service's code), or forged, or unsigned.

use std::{
    collections::{HashMap, VecDeque},
    sync::{Arc, Mutex},
    time::Duration,
};

use base64::{Engine, engine::general_purpose::STANDARD};
use poem::{
    EndpointExt, Request, Response, Route, Server, get, handler,
    http::StatusCode,
    listener::{Acceptor, Listener, TcpListener},
    post,
    web::{Data, Form, Path},
};
use serde::Deserialize;

use crate::helpers::poll;

pub const SID: &str = "AC_test_account";
pub const TOKEN: &str = "test-auth-token";
pub const FROM: &str = "+15005550006";

/// A scripted answer.
#[derive(Debug, Clone)]
pub enum Reply {
    /// 201 Created, queued.
    Accept,
    /// 400 with Twilio's "not a valid phone number" error.
    InvalidNumber,
    /// 429 with `Retry-After` (seconds).
    TooManyRequests(u64),
    /// 500.
    ServerError,
    /// 429 with this exact `Retry-After` value, however absurd.
    RetryAfter(&'static str),
    /// 200 with a body that is not the API's (a proxy's page, say): accepted all the same.
    Nonsense(u16),
    /// Sends a signed report with this status to the message's `StatusCallback` first, and answers
    /// 201 only after it was answered: a report that outruns the gateway's answer.
    ReportFirst(&'static str),
}

/// An SMS the gateway accepted.
#[derive(Debug, Clone)]
pub struct Sms {
    /// `To`.
    pub to: String,
    /// `From`.
    pub from: String,
    /// `Body`.
    pub body: String,
    /// The `sid` the gateway gave it.
    pub sid: String,
    /// `StatusCallback`, where its reports go.
    pub status_callback: Option<String>,
}

/// How a status report is signed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Signing {
    /// As the gateway signs: with the account's auth token.
    Genuine,
    /// With another token.
    Forged,
    /// No `X-Twilio-Signature` at all.
    Missing,
}

/// What `GET …/Messages/{sid}.json` answers for a message.
#[derive(Debug, Clone)]
pub enum Lookup {
    /// 200 with this status and error code.
    Status(&'static str, Option<u32>),
    /// 500.
    ServerError,
}

#[derive(Default)]
struct State {
    script: VecDeque<Reply>,
    accepted: Vec<Sms>,
    calls: usize,
    sids: u64,
    lookups: HashMap<String, VecDeque<Lookup>>,
    looked_up: Vec<String>,
}

/// The running fake gateway.
pub struct FakeGateway {
    /// Base URL for `PORTAL_TWILIO_API_URL`.
    pub url: String,
    state: Arc<Mutex<State>>,
}

#[derive(Deserialize)]
struct MessageForm {
    #[serde(rename = "To")]
    to: String,
    #[serde(rename = "From")]
    from: String,
    #[serde(rename = "Body")]
    body: String,
    #[serde(rename = "StatusCallback")]
    status_callback: Option<String>,
}

fn authorised(req: &Request, account: &str) -> bool {
    let expected = format!("Basic {}", STANDARD.encode(format!("{SID}:{TOKEN}")));
    account == SID
        && req.headers().get("authorization").and_then(|v| v.to_str().ok()) == Some(expected.as_str())
}

fn unauthorised() -> Response {
    json(StatusCode::UNAUTHORIZED, r#"{"code": 20003, "message": "Authenticate", "status": 401}"#)
}

#[handler]
async fn messages(
    req: &Request,
    Path(sid): Path<String>,
    Form(form): Form<MessageForm>,
    state: Data<&Arc<Mutex<State>>>,
) -> Response {
    if !authorised(req, &sid) {
        return unauthorised();
    }
    let (reply, accepted) = {
        let mut state = state.lock().unwrap();
        state.calls += 1;
        let reply = state.script.pop_front().unwrap_or(Reply::Accept);
        let accepted = matches!(reply, Reply::Accept | Reply::ReportFirst(_)).then(|| {
            state.sids += 1;
            let sms = Sms {
                to: form.to.clone(),
                from: form.from.clone(),
                body: form.body.clone(),
                sid: format!("SM{:032x}", state.sids),
                status_callback: form.status_callback.clone(),
            };
            state.accepted.push(sms.clone());
            sms
        });
        (reply, accepted)
    };
    match reply {
        Reply::Accept | Reply::ReportFirst(_) => {
            let sms = accepted.unwrap();
            if let Reply::ReportFirst(status) = reply {
                let answered = report(&sms, status, None, Signing::Genuine).await.status();
                assert_eq!(answered.as_u16(), 204, "the early report was accepted");
            }
            json(StatusCode::CREATED, &format!(r#"{{"sid": "{}", "status": "queued"}}"#, sms.sid))
        }
        Reply::InvalidNumber => json(
            StatusCode::BAD_REQUEST,
            &format!(
                r#"{{"code": 21211, "message": "The 'To' number {} is not a valid phone number.", "status": 400}}"#,
                form.to
            ),
        ),
        Reply::TooManyRequests(seconds) => {
            let mut response = json(
                StatusCode::TOO_MANY_REQUESTS,
                r#"{"code": 20429, "message": "Too Many Requests", "status": 429}"#,
            );
            response.headers_mut().insert("retry-after", seconds.to_string().parse().unwrap());
            response
        }
        Reply::ServerError => {
            json(StatusCode::INTERNAL_SERVER_ERROR, r#"{"message": "internal error", "status": 500}"#)
        }
        Reply::RetryAfter(value) => {
            let mut response = json(StatusCode::TOO_MANY_REQUESTS, r#"{"code": 20429, "status": 429}"#);
            response.headers_mut().insert("retry-after", value.parse().unwrap());
            response
        }
        Reply::Nonsense(status) => Response::builder()
            .status(StatusCode::from_u16(status).unwrap())
            .content_type("text/html")
            .body("<html><body>\u{0}\u{fffd} 0123456789 not json {{{".to_owned()),
    }
}

/// `GET …/Messages/{sid}.json`: the scripted answer for the message, else 404 as Twilio answers.
#[handler]
fn message(
    req: &Request,
    Path((account, file)): Path<(String, String)>,
    state: Data<&Arc<Mutex<State>>>,
) -> Response {
    if !authorised(req, &account) {
        return unauthorised();
    }
    let sid = file.strip_suffix(".json").unwrap_or(&file).to_owned();
    let mut state = state.lock().unwrap();
    state.looked_up.push(sid.clone());
    let scripted = state
        .lookups
        .get_mut(&sid)
        .and_then(|answers| if answers.len() > 1 { answers.pop_front() } else { answers.front().cloned() });
    match scripted {
        Some(Lookup::Status(status, code)) => {
            let code = code.map_or("null".to_owned(), |c| c.to_string());
            json(
                StatusCode::OK,
                &format!(
                    r#"{{"sid": "{sid}", "status": "{status}", "error_code": {code}, "to": "+61412345678"}}"#
                ),
            )
        }
        Some(Lookup::ServerError) => json(StatusCode::INTERNAL_SERVER_ERROR, r#"{"status": 500}"#),
        None => json(
            StatusCode::NOT_FOUND,
            r#"{"code": 20404, "message": "The requested resource was not found", "status": 404}"#,
        ),
    }
}

/// The `X-Twilio-Signature` of a report: base64 HMAC-SHA1 of the URL and the parameters sorted by
/// name, each name then value.
pub fn twilio_signature(token: &str, url: &str, params: &[(String, String)]) -> String {
    let mut sorted = params.to_vec();
    sorted.sort();
    let mut data = url.to_owned();
    for (name, value) in &sorted {
        data.push_str(name);
        data.push_str(value);
    }
    let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, token.as_bytes());
    STANDARD.encode(ring::hmac::sign(&key, data.as_bytes()).as_ref())
}

/// The form a status report carries, as Twilio sends it.
pub fn report_form(sms: &Sms, status: &str, error_code: Option<&str>) -> Vec<(String, String)> {
    let mut form = vec![
        ("MessageSid", sms.sid.clone()),
        ("SmsSid", sms.sid.clone()),
        ("MessageStatus", status.to_owned()),
        ("SmsStatus", status.to_owned()),
        ("AccountSid", SID.to_owned()),
        ("From", sms.from.clone()),
        ("To", sms.to.clone()),
        ("ApiVersion", "2010-04-01".to_owned()),
    ];
    if let Some(code) = error_code {
        form.push(("ErrorCode", code.to_owned()));
    }
    form.into_iter().map(|(n, v)| (n.to_owned(), v)).collect()
}

/// POSTs a status report about `sms` to its `StatusCallback`.
pub async fn report(
    sms: &Sms,
    status: &str,
    error_code: Option<&str>,
    signing: Signing,
) -> reqwest::Response {
    let url = sms.status_callback.clone().expect("the SMS was sent with a StatusCallback");
    post_report(&url, &report_form(sms, status, error_code), signing).await
}

/// POSTs `form` to `url` as a status report, signed as `signing` says (over `url` itself).
pub async fn post_report(url: &str, form: &[(String, String)], signing: Signing) -> reqwest::Response {
    let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
    let mut request = reqwest::Client::new()
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded; charset=utf-8")
        .body(body);
    match signing {
        Signing::Genuine => {
            request = request.header("x-twilio-signature", twilio_signature(TOKEN, url, form))
        }
        Signing::Forged => {
            request = request.header("x-twilio-signature", twilio_signature("not-the-token", url, form))
        }
        Signing::Missing => {}
    }
    request.send().await.unwrap()
}

fn json(status: StatusCode, body: &str) -> Response {
    Response::builder().status(status).content_type("application/json").body(body.to_owned())
}

impl FakeGateway {
    /// Starts on a free port.
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.unwrap();
        let port = acceptor.local_addr()[0].as_socket_addr().unwrap().port();
        let app = Route::new()
            .at("/2010-04-01/Accounts/:sid/Messages.json", post(messages))
            .at("/2010-04-01/Accounts/:sid/Messages/:file", get(message))
            .data(state.clone());
        tokio::spawn(Server::new_with_acceptor(acceptor).run(app));
        Self { url: format!("http://127.0.0.1:{port}"), state }
    }

    /// The settings that point the service at this gateway.
    pub fn settings(&self) -> Vec<(String, String)> {
        vec![
            ("PORTAL_TWILIO_API_URL".into(), self.url.clone()),
            ("PORTAL_TWILIO_ACCOUNT_SID".into(), SID.into()),
            ("PORTAL_TWILIO_AUTH_TOKEN".into(), TOKEN.into()),
            ("PORTAL_TWILIO_FROM".into(), FROM.into()),
        ]
    }

    /// The next answers, in order (then: accept).
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.state.lock().unwrap().script.extend(replies);
    }

    /// The SMS accepted so far.
    pub fn accepted(&self) -> Vec<Sms> {
        self.state.lock().unwrap().accepted.clone()
    }

    /// How many calls reached the gateway.
    pub fn calls(&self) -> usize {
        self.state.lock().unwrap().calls
    }

    /// What `GET …/Messages/{sid}.json` answers for `sid`, in turn (the last one from then on).
    pub fn script_lookup(&self, sid: &str, answers: impl IntoIterator<Item = Lookup>) {
        self.state.lock().unwrap().lookups.entry(sid.to_owned()).or_default().extend(answers);
    }

    /// The sids looked up so far, in order.
    pub fn looked_up(&self) -> Vec<String> {
        self.state.lock().unwrap().looked_up.clone()
    }

    /// Waits (up to 10 s) until `count` SMS were accepted.
    pub async fn wait_for(&self, count: usize) -> Vec<Sms> {
        let enough = poll(200, Duration::from_millis(50), || {
            let accepted = self.accepted();
            async move { (accepted.len() >= count).then_some(accepted) }
        });
        enough.await.unwrap_or_else(|| panic!("expected {count} SMS, got {}", self.accepted().len()))
    }
}
