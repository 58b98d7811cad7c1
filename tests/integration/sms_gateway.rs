//! A local HTTP server that speaks the Twilio Messages API (`POST
//! /2010-04-01/Accounts/{sid}/Messages.json`, form fields, basic auth), standing in for the SMS
//! gateway we cannot reach from tests. Tests script its answers.

use std::{
    collections::VecDeque,
    sync::{Arc, Mutex},
    time::Duration,
};

use base64::{Engine, engine::general_purpose::STANDARD};
use poem::{
    EndpointExt, Request, Response, Route, Server, handler,
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
}

#[derive(Default)]
struct State {
    script: VecDeque<Reply>,
    accepted: Vec<Sms>,
    calls: usize,
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
}

#[handler]
fn messages(
    req: &Request,
    Path(sid): Path<String>,
    Form(form): Form<MessageForm>,
    state: Data<&Arc<Mutex<State>>>,
) -> Response {
    let expected = format!("Basic {}", STANDARD.encode(format!("{SID}:{TOKEN}")));
    let authorised =
        req.headers().get("authorization").and_then(|v| v.to_str().ok()) == Some(expected.as_str());
    if sid != SID || !authorised {
        return json(
            StatusCode::UNAUTHORIZED,
            r#"{"code": 20003, "message": "Authenticate", "status": 401}"#,
        );
    }
    let mut state = state.lock().unwrap();
    state.calls += 1;
    match state.script.pop_front().unwrap_or(Reply::Accept) {
        Reply::Accept => {
            state.accepted.push(Sms { to: form.to, from: form.from, body: form.body });
            json(StatusCode::CREATED, r#"{"sid": "SM0123", "status": "queued"}"#)
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

fn json(status: StatusCode, body: &str) -> Response {
    Response::builder().status(status).content_type("application/json").body(body.to_owned())
}

impl FakeGateway {
    /// Starts on a free port.
    pub async fn start() -> Self {
        let state = Arc::new(Mutex::new(State::default()));
        let acceptor = TcpListener::bind("127.0.0.1:0").into_acceptor().await.unwrap();
        let port = acceptor.local_addr()[0].as_socket_addr().unwrap().port();
        let app =
            Route::new().at("/2010-04-01/Accounts/:sid/Messages.json", post(messages)).data(state.clone());
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

    /// Waits (up to 10 s) until `count` SMS were accepted.
    pub async fn wait_for(&self, count: usize) -> Vec<Sms> {
        let enough = poll(200, Duration::from_millis(50), || {
            let accepted = self.accepted();
            async move { (accepted.len() >= count).then_some(accepted) }
        });
        enough.await.unwrap_or_else(|| panic!("expected {count} SMS, got {}", self.accepted().len()))
    }
}
