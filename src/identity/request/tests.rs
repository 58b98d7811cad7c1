use super::*;
use crate::signature::WebhookSecret;

const CALLBACK: &str = "https://host.example/oidc/callback";
const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

fn client() -> Client {
    Client::new("plugin".into(), vec![WebhookSecret::parse(&WebhookSecret::generate()).unwrap()])
}

fn portal() -> HostPortal {
    HostPortal::parse("https://host.example/portal", &[CALLBACK.to_owned()], &[]).unwrap()
}

fn good() -> Vec<(&'static str, &'static str)> {
    vec![
        ("client_id", "plugin"),
        ("redirect_uri", CALLBACK),
        ("response_type", "code"),
        ("scope", "openid email"),
        ("state", "st"),
        ("nonce", "n-1"),
        ("code_challenge", CHALLENGE),
        ("code_challenge_method", "S256"),
    ]
}

fn run(pairs: &[(&str, &str)]) -> Result<Checked, Rejected> {
    let params = Parameters::new(pairs.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect());
    check(&params, &client(), Some(&portal()))
}

/// The good request with `name` replaced (or removed, or added).
fn with(name: &'static str, value: Option<&'static str>) -> Vec<(&'static str, &'static str)> {
    let mut pairs: Vec<_> = good().into_iter().filter(|(k, _)| *k != name).collect();
    pairs.extend(value.map(|v| (name, v)));
    pairs
}

fn refused(pairs: &[(&str, &str)]) -> (&'static str, Option<String>) {
    match run(pairs) {
        Err(Rejected::Refused(r)) => {
            assert_eq!(r.reply_to.redirect_uri, CALLBACK);
            (r.error, r.reply_to.state)
        }
        other => panic!("expected a refusal for the redirect URI, got {other:?}"),
    }
}

#[test]
fn a_good_request_passes_with_unknown_parameters_and_scopes_ignored() {
    let mut pairs = good();
    pairs.push(("ui_locales", "de"));
    pairs.push(("scope_extra", "x"));
    let checked = run(&pairs).unwrap();
    assert_eq!(checked.scope, "openid email");
    assert_eq!(checked.nonce.as_deref(), Some("n-1"));
    assert_eq!(checked.reply_to.state.as_deref(), Some("st"));
    let checked = run(&with("scope", Some("profile phone openid"))).unwrap();
    assert_eq!(checked.scope, "openid profile");
}

#[test]
fn an_unknown_client_or_redirect_uri_is_never_redirected_to() {
    for (pairs, why) in [
        (with("client_id", Some("someone-else")), Untrusted::UnknownClient),
        (with("client_id", None), Untrusted::UnknownClient),
        (with("redirect_uri", Some("https://evil.example/cb")), Untrusted::UnregisteredRedirectUri),
        (
            with("redirect_uri", Some("https://host.example/oidc/callback/")),
            Untrusted::UnregisteredRedirectUri,
        ),
        (with("redirect_uri", None), Untrusted::UnregisteredRedirectUri),
        ([good(), vec![("redirect_uri", CALLBACK)]].concat(), Untrusted::Repeated),
    ] {
        assert_eq!(run(&pairs), Err(Rejected::Untrusted(why)));
    }
    let params = Parameters::new(good().iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned())).collect());
    assert_eq!(check(&params, &client(), None), Err(Rejected::Untrusted(Untrusted::NoClientForShop)));
}

#[test]
fn the_rest_goes_back_to_the_client_with_its_state() {
    assert_eq!(
        refused(&with("code_challenge_method", Some("plain"))),
        ("invalid_request", Some("st".into()))
    );
    assert_eq!(refused(&with("code_challenge_method", None)).0, "invalid_request");
    assert_eq!(refused(&with("code_challenge", None)).0, "invalid_request");
    assert_eq!(refused(&with("code_challenge", Some("short"))).0, "invalid_request");
    assert_eq!(refused(&with("response_type", Some("token"))).0, "unsupported_response_type");
    assert_eq!(refused(&with("response_type", None)).0, "invalid_request");
    assert_eq!(refused(&with("scope", Some("email profile"))).0, "invalid_scope");
    assert_eq!(refused(&with("prompt", Some("none login"))).0, "invalid_request");
    assert_eq!(refused(&with("max_age", Some("-1"))).0, "invalid_request");
    assert_eq!(refused(&with("request", Some("eyJ..."))).0, "request_not_supported");
    assert_eq!(refused(&[good(), vec![("state", "again")]].concat()), ("invalid_request", None));
}

#[test]
fn prompt_and_max_age_are_read_and_clamped() {
    let checked = run(&with("prompt", Some("login consent"))).unwrap();
    assert_eq!(checked.prompt, Prompt { none: false, login: true });
    assert!(run(&with("prompt", Some("none"))).unwrap().prompt.none);
    assert_eq!(run(&with("max_age", Some("0"))).unwrap().max_age, Some(0));
    assert_eq!(run(&with("max_age", Some("18446744073709551615"))).unwrap().max_age, Some(MAX_AGE_CAP));
    assert_eq!(refused(&with("max_age", Some("99999999999999999999"))).0, "invalid_request");
}

#[test]
fn replies_keep_the_callbacks_query_and_carry_state_and_iss() {
    let reply_to =
        ReplyTo { redirect_uri: "https://h.example/cb?shop=a".into(), state: Some("a b&c".into()) };
    let url = reply_url(&reply_to, "https://p.example/p/s1", &[("code", "xyz")]);
    assert_eq!(
        url,
        "https://h.example/cb?shop=a&code=xyz&state=a+b%26c&iss=https%3A%2F%2Fp.example%2Fp%2Fs1"
    );
}
