//! Fuzzing the edges over the network: arbitrary bodies and signature headers to the host endpoints,
//! arbitrary forms to the customer pages, and the public parsers other modules own (`client_ip`,
//! `RawToken::parse`). The service must answer every request with a 4xx (or a success), never a 5xx
//! or a dropped connection, and still answer afterwards.
//!
//! One service per property, not per case: each property drives a bounded number of cases through a
//! proptest `TestRunner` on a runtime of its own, so the whole module stays within seconds.

use std::{
    cell::Cell,
    net::{IpAddr, Ipv4Addr, Ipv6Addr},
};

use ipnet::IpNet;
use portal_invites::{portal::client::client_ip, tokens::RawToken};
use proptest::{
    prelude::*,
    test_runner::{Config, TestCaseError, TestRunner},
};
use serde_json::{Value, json};

use crate::{helpers::*, web::*};

// The same hostile strategies as the unit tests; the file depends only on proptest and serde_json.
#[path = "../../src/domain/hostile.rs"]
#[allow(dead_code)] // not every strategy is used here
mod hostile;

const ENDPOINTS: [&str; 2] = ["/webhooks", "/actions/send-portal-invitation"];

/// Starts one fresh service on `backend`, prepares it with `setup`, and runs `cases` cases of the
/// strategy (made from what `setup` returned) against it, on a runtime of its own; `after` checks the
/// service once they are done.
fn fuzz<T, S: Strategy>(
    backend: Backend,
    cases: u32,
    setup: impl AsyncFnOnce(&TestApp) -> T,
    strategy: impl FnOnce(&T) -> S,
    case: impl AsyncFn(&TestApp, &T, S::Value) -> Result<(), TestCaseError>,
    after: impl AsyncFnOnce(&TestApp),
) {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let Some(app) = runtime.block_on(TestApp::spawn(backend)) else {
        eprintln!("skipped: set PORTAL_TEST_POSTGRES_URL to run this on PostgreSQL");
        return;
    };
    let prepared = runtime.block_on(setup(&app));
    let strategy = strategy(&prepared);
    let mut runner = TestRunner::new(Config { cases, failure_persistence: None, ..Config::default() });
    let outcome = runner.run(&strategy, |value| runtime.block_on(case(&app, &prepared, value)));
    if let Err(failure) = outcome {
        panic!("{failure}\nservice log:\n{}", app.logs.text());
    }
    runtime.block_on(async {
        let health = app.get("/healthz").await;
        assert_eq!(health.status().as_u16(), 200, "the service stopped answering");
        after(&app).await;
    });
}

/// Declares a property on SQLite and on PostgreSQL.
macro_rules! on_both {
    ($($property:ident),* $(,)?) => {
        mod sqlite { $( #[test] fn $property() { super::$property(crate::helpers::Backend::Sqlite) } )* }
        mod postgres { $( #[test] fn $property() { super::$property(crate::helpers::Backend::Postgres) } )* }
    };
}

on_both!(
    any_unsigned_request_to_the_host_endpoints_is_a_401_problem_and_a_security_event,
    any_signed_body_is_answered_with_a_4xx_problem_or_a_success,
    any_form_posted_to_the_customer_pages_is_answered_without_a_5xx,
);

/// A header value a client can send (no control bytes), weighted towards the near-valid.
fn header_value(near_valid: BoxedStrategy<String>) -> impl Strategy<Value = Option<Vec<u8>>> {
    let sendable =
        prop::collection::vec(prop_oneof![8 => 0x20u8..0x7f, 1 => 0x80u8..=0xff, 1 => Just(b'\t')], 0..300);
    proptest::option::weighted(0.9, prop_oneof![2 => near_valid.prop_map(String::into_bytes), 1 => sendable])
}

/// The three signature headers, each missing, near-valid or arbitrary.
fn signature_headers(now: i64) -> impl Strategy<Value = [Option<Vec<u8>>; 3]> {
    let id = prop_oneof!["[A-Za-z0-9_-]{1,64}", "[A-Za-z0-9_. -]{0,80}"].boxed();
    let timestamp = prop_oneof![
        (-400i64..400).prop_map(move |offset| (now + offset).to_string()),
        "[0-9]{0,20}",
        "[+-]?[0-9]{1,12}\\.?[0-9]{0,3}",
    ]
    .boxed();
    let entry = prop_oneof![
        prop::collection::vec(any::<u8>(), 0..48).prop_map(|b| {
            use base64::Engine;
            format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(b))
        }),
        "v[0-9a-z]{0,2},[A-Za-z0-9+/=]{0,50}",
        "[!-~]{0,20}",
    ];
    let signature = prop::collection::vec(entry, 0..20).prop_map(|entries| entries.join(" ")).boxed();
    [header_value(id), header_value(timestamp), header_value(signature)]
}

/// Mostly JSON, as the host sends it, so that most bodies are read.
fn content_type() -> impl Strategy<Value = Option<&'static str>> {
    prop_oneof![
        8 => Just(Some("application/json")),
        2 => Just(Some("application/json; charset=utf-8")),
        1 => prop::sample::select(vec![
            None,
            Some("text/plain"),
            Some("application/x-www-form-urlencoded"),
            Some("application/json\t;;;"),
        ]),
    ]
}

/// POSTs raw bytes with optional raw header values; a dropped connection fails the case.
async fn post(
    app: &TestApp,
    path: &str,
    headers: &[(&'static str, Option<Vec<u8>>)],
    body: Vec<u8>,
) -> Result<(u16, Option<String>, Vec<u8>), TestCaseError> {
    let mut request = app.client.post(format!("{}{path}", app.url)).body(body);
    for (name, value) in headers {
        if let Some(value) = value {
            let value = reqwest::header::HeaderValue::from_bytes(value).expect("only sendable bytes");
            request = request.header(*name, value);
        }
    }
    let response = request.send().await.map_err(|e| TestCaseError::fail(format!("no answer: {e}")))?;
    let status = response.status().as_u16();
    let content_type =
        response.headers().get("content-type").and_then(|v| v.to_str().ok()).map(str::to_owned);
    let body = response.bytes().await.map_err(|e| TestCaseError::fail(format!("cut off: {e}")))?;
    Ok((status, content_type, body.to_vec()))
}

/// A 4xx must be a problem document whose `status` is the response's.
fn check_problem(status: u16, content_type: Option<&str>, body: &[u8]) -> Result<(), TestCaseError> {
    prop_assert_eq!(
        content_type,
        Some("application/problem+json"),
        "{}: {}",
        status,
        String::from_utf8_lossy(body)
    );
    let problem: Value = serde_json::from_slice(body).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&problem["status"], &json!(status));
    Ok(())
}

fn any_unsigned_request_to_the_host_endpoints_is_a_401_problem_and_a_security_event(backend: Backend) {
    let now = start_time().timestamp();
    let refused = Cell::new(0usize);
    let strategy =
        (prop::sample::select(ENDPOINTS.to_vec()), signature_headers(now), content_type(), hostile::bytes())
            .prop_filter("the body limit is tested elsewhere", |(_, _, _, body)| body.len() <= 60_000);
    fuzz(
        backend,
        96,
        async |_| {},
        |_| strategy,
        async |app, _, (endpoint, [id, timestamp, signature], content_type, body)| {
            let headers = [
                ("webhook-id", id),
                ("webhook-timestamp", timestamp),
                ("webhook-signature", signature),
                ("content-type", content_type.map(|c| c.as_bytes().to_vec())),
            ];
            let (status, content_type, answer) = post(app, endpoint, &headers, body).await?;
            // Nothing was signed with the configured secret: the signature check refuses it first.
            prop_assert_eq!(status, 401, "{}", String::from_utf8_lossy(&answer));
            check_problem(status, content_type.as_deref(), &answer)?;
            refused.set(refused.get() + 1);
            Ok(())
        },
        async |app| {
            let logged = app.logs.count("event=\"bad_signature\"");
            assert_eq!(logged, refused.get(), "one security event per refused request");
        },
    );
}

/// A valid message of each kind the endpoints take, for shop `shop_1`.
fn valid_messages() -> Vec<(&'static str, Value)> {
    let profile = customer("cus_1", Some("jana@example.com"), Some("+61412345678"), 1);
    vec![
        ("/webhooks", installed("shop_1", 2)),
        ("/webhooks", customer_updated("shop_1", "cus_2", 1, "ola@example.com")),
        ("/webhooks", customer_deleted("shop_1", "cus_3", 2)),
        ("/webhooks", shop_updated("shop_1", shop("shop_1", 3))),
        ("/actions/send-portal-invitation", action_invoked("shop_1", &profile, "int_1")),
        ("/actions/send-portal-invitation", dialog_submitted("shop_1", &profile, "int_2", Some("sms"))),
    ]
}

/// A valid message with one value replaced: by a hostile one of the same JSON type (so the shape
/// still parses and the rules are reached), by any hostile JSON, by deep nesting, or by a very long
/// string.
fn near_valid_message() -> impl Strategy<Value = (&'static str, Vec<u8>)> {
    let replacement = prop_oneof![
        3 => (hostile::text(), hostile::extreme_number()).prop_map(|(t, n)| Replacement::SameType(t, n)),
        2 => hostile::json().prop_map(|v| Replacement::Text(serde_json::to_string(&v).unwrap())),
        1 => (1usize..5_000).prop_map(|depth| Replacement::Text(hostile::nested_arrays(depth))),
        1 => (1usize..60_000).prop_map(|n| Replacement::Text(format!("\"{}\"", "x".repeat(n)))),
    ];
    (prop::sample::select(valid_messages()), any::<prop::sample::Index>(), replacement).prop_map(
        |((endpoint, message), which, replacement)| {
            let all = hostile::pointers(&message);
            let target = which.get(&all).clone();
            let replacement = match replacement {
                Replacement::Text(text) => text,
                Replacement::SameType(text, number) => match message.pointer(&target) {
                    Some(Value::Number(_)) => number.to_string(),
                    // A string for a string; for an object, array or bool, a wrong type on purpose.
                    _ => Value::String(text).to_string(),
                },
            };
            // Spliced as text, so nesting deeper than serde_json builds is sent as it is.
            let marker = "\"__replace_me__\"";
            let mut marked = message;
            match marked.pointer_mut(&target) {
                Some(slot) => *slot = json!("__replace_me__"),
                None => return (endpoint, replacement.into_bytes()),
            }
            let text = serde_json::to_string(&marked).unwrap().replacen(marker, &replacement, 1);
            (endpoint, text.into_bytes())
        },
    )
}

/// What replaces a value of a valid message, as JSON text.
#[derive(Debug, Clone)]
enum Replacement {
    /// A string or a number, whichever the value was.
    SameType(String, Value),
    /// Any JSON text.
    Text(String),
}

/// A body for a correctly signed message: arbitrary bytes, an envelope of arbitrary fields, or a
/// near-valid message.
fn signed_body() -> impl Strategy<Value = (&'static str, Vec<u8>)> {
    let endpoint = prop::sample::select(ENDPOINTS.to_vec());
    let kinds = vec![
        "plugin.installed",
        "plugin.uninstalled",
        "shop.updated",
        "customer.updated",
        "customer.deleted",
        "action.invoked",
        "dialog.submitted",
    ];
    let envelope = (
        prop_oneof![prop::sample::select(kinds).prop_map(str::to_owned), hostile::text()],
        prop_oneof![Just(json!("2026-11-23T10:00:00Z")), hostile::json()],
        prop_oneof![Just(json!("shop_1")), hostile::json()],
        hostile::json(),
    )
        .prop_map(|(kind, timestamp, shop_id, data)| {
            serde_json::to_vec(
                &json!({"type": kind, "timestamp": timestamp, "shop_id": shop_id, "data": data}),
            )
            .unwrap()
        });
    prop_oneof![
        1 => (endpoint.clone(), hostile::bytes()),
        1 => (endpoint, envelope),
        3 => near_valid_message(),
    ]
}

fn any_signed_body_is_answered_with_a_4xx_problem_or_a_success(backend: Backend) {
    let next_id = Cell::new(0u32);
    let strategy = (signed_body(), content_type())
        .prop_filter("the body limit is tested elsewhere", |((_, body), _)| body.len() <= 64 * 1024);
    fuzz(
        backend,
        96,
        async |app| app.deliver(&installed("shop_1", 1)).await,
        |_| strategy,
        async |app, _, ((endpoint, body), content_type)| {
            next_id.set(next_id.get() + 1);
            let id = format!("msg_fuzz_{}", next_id.get());
            let mut headers: Vec<(&'static str, Option<Vec<u8>>)> =
                app.sign(&id, &body).into_iter().map(|(k, v)| (k, Some(v.into_bytes()))).collect();
            headers.push(("content-type", content_type.map(|c| c.as_bytes().to_vec())));
            let (status, content_type, answer) = post(app, endpoint, &headers, body).await?;
            prop_assert!(
                matches!(status, 200 | 204 | 400..=499),
                "{endpoint} answered {status}: {}",
                String::from_utf8_lossy(&answer)
            );
            if status >= 400 {
                prop_assert_ne!(status, 401, "a correct signature was refused");
                check_problem(status, content_type.as_deref(), &answer)?;
            }
            Ok(())
        },
        async |app| assert_eq!(app.logs.count("event=\"bad_signature\""), 0),
    );
}

/// What the customer pages' forms receive: fields with any values (sometimes with the page's real
/// CSRF token, so the handlers get past the check), or bytes that are not a form at all.
fn form_body(csrf: String) -> impl Strategy<Value = Vec<u8>> {
    let value = prop_oneof![
        hostile::text(),
        Just("jana@example.com".to_owned()),
        Just("blue tractor seven".to_owned()),
    ];
    let field_name = prop_oneof![
        prop::sample::select(vec!["email", "password", "confirmation", "csrf"]).prop_map(str::to_owned),
        hostile::text(),
    ];
    let fields = (
        prop_oneof![4 => Just(Some(csrf)), 1 => Just(None), 1 => hostile::text().prop_map(Some)],
        prop::collection::vec((field_name, value), 0..5),
    )
        .prop_map(|(csrf, fields)| {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            if let Some(csrf) = csrf {
                form.append_pair("csrf", &csrf);
            }
            form.extend_pairs(fields);
            form.finish().into_bytes()
        });
    prop_oneof![
        5 => fields,
        1 => hostile::bytes(),
        1 => "([a-z%=&+;]|%[0-9A-Fa-f]{0,2}|%[^0-9A-Fa-f]){0,60}".prop_map(String::into_bytes),
    ]
}

fn any_form_posted_to_the_customer_pages_is_answered_without_a_5xx(backend: Backend) {
    fuzz(
        backend,
        64,
        // A real set-up link, and a browser's cookie and form token for it (valid for every form).
        async |app| {
            let link = invite(app, "shop_1", "cus_1", EMAIL).await;
            let mut web = Web::new(app);
            let csrf = web.get(&link).await.csrf();
            let cookies = web.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ");
            let path = url::Url::parse(&link).map(|u| u.path().to_owned()).unwrap_or(link);
            (path, csrf, cookies)
        },
        |(_, csrf, _)| {
            (
                prop::sample::select(vec!["login", "forgot", "setup", "reset"]),
                prop_oneof![
                    Just(None),
                    "[A-Za-z0-9_-]{43}".prop_map(Some),
                    "[A-Za-z0-9%._~-]{0,60}".prop_map(Some)
                ],
                form_body(csrf.clone()),
                proptest::option::weighted(
                    0.5,
                    prop::sample::select(vec!["same-origin", "same-origin", "none", "cross-site"]),
                ),
                proptest::bool::weighted(0.9),
            )
        },
        async |app, (link, _, cookies), (form, token, body, site, with_cookie)| {
            let path = match (form, token) {
                ("setup", None) => link.clone(),
                ("setup" | "reset", Some(token)) => format!("/p/shop_1/{form}/{token}"),
                ("reset", None) => "/p/shop_1/reset/x".to_owned(),
                (form, _) => format!("/p/shop_1/{form}"),
            };
            let headers = [
                ("content-type", Some(b"application/x-www-form-urlencoded".to_vec())),
                ("cookie", with_cookie.then(|| cookies.clone().into_bytes())),
                ("sec-fetch-site", site.map(|s| s.as_bytes().to_vec())),
            ];
            let (status, _, answer) = post(app, &path, &headers, body).await?;
            prop_assert!(status < 500, "POST {path} answered {status}: {}", String::from_utf8_lossy(&answer));
            Ok(())
        },
        async |app| {
            assert_eq!(app.get("/p/shop_1/login").await.status().as_u16(), 200);
        },
    );
}

/// An address as it appears in `X-Forwarded-For`: v4, v6, with a port, or not an address.
fn forwarded_entry() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<u32>().prop_map(|n| Ipv4Addr::from(n).to_string()),
        prop::sample::select(vec!["10.0.0.1", "10.255.255.255", "192.168.1.7", "203.0.113.9"])
            .prop_map(str::to_owned),
        any::<u128>().prop_map(|n| Ipv6Addr::from(n).to_string()),
        (any::<u32>(), any::<u16>()).prop_map(|(n, port)| format!("{}:{port}", Ipv4Addr::from(n))),
        hostile::text(),
    ]
}

proptest! {
    #![proptest_config(Config { cases: 256, failure_persistence: None, ..Config::default() })]

    #[test]
    fn the_client_address_is_the_peer_or_an_untrusted_forwarded_one(
        peer in proptest::option::of(prop_oneof![
            Just(IpAddr::from([10, 0, 0, 2])),
            any::<u32>().prop_map(|n| IpAddr::from(Ipv4Addr::from(n))),
        ]),
        entries in prop::collection::vec(forwarded_entry(), 0..8),
        separator in prop::sample::select(vec![",", ", ", " ,", ",,"]),
        header_present in any::<bool>(),
        trusted in prop::collection::vec(prop_oneof![
            Just("10.0.0.0/8".parse::<IpNet>().unwrap()),
            (any::<u32>(), 0u8..=32).prop_map(|(n, len)| IpNet::new(IpAddr::from(Ipv4Addr::from(n)), len).unwrap()),
        ], 0..3),
    ) {
        let header = entries.join(separator);
        let forwarded = header_present.then_some(header.as_str());
        let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
        let found = client_ip(peer, forwarded, &trusted);
        match peer {
            None => prop_assert_eq!(found, None),
            Some(peer) if !is_trusted(&peer) => prop_assert_eq!(found, Some(peer)),
            Some(peer) => {
                let found = found.unwrap();
                // Either the peer itself, or an address the header names (bare, or with a port) that
                // is not a proxy of ours.
                let named = header.split(',').map(str::trim).any(|part| {
                    part.parse::<IpAddr>() == Ok(found)
                        || part.parse::<std::net::SocketAddr>().is_ok_and(|s| s.ip() == found)
                });
                prop_assert!(found == peer || (named && !is_trusted(&found)), "{found} from {header:?}");
            }
        }
    }

    #[test]
    fn only_what_a_token_looks_like_parses_as_one(text in prop_oneof![hostile::text(), "[A-Za-z0-9_-]{43}"]) {
        if let Some(token) = RawToken::parse(&text) {
            prop_assert_eq!(token.as_str(), text.as_str());
            prop_assert!(text.len() == 43 && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'));
            prop_assert_eq!(token.hash().len(), 64);
        }
        let fresh = RawToken::generate();
        prop_assert_eq!(RawToken::parse(fresh.as_str()), Some(fresh));
    }
}
