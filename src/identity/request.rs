//! An authorization request (OpenID Connect Core §3.1.2.1, RFC 7636), read from its parameters and
//! checked in the order that decides where an error may go: the client and the redirect URI first
//! (wrong ones get a page, never a redirect: RFC 6749 §4.1.2.1), then everything else, whose errors
//! go back to the registered redirect URI with `state` and `iss`.

use url::Url;

use super::Client;
use crate::domain::HostPortal;

/// Longest `state` / `nonce` we keep, in bytes.
const MAX_STATE: usize = 1024;
/// Longest `max_age` honoured (ten years); anything longer means "any session".
const MAX_AGE_CAP: i64 = 10 * 366 * 86_400;

/// The parameters as sent (query string or form body), every occurrence kept so a repeated one is
/// caught (RFC 6749 §3.1: a parameter must not be included more than once).
pub struct Parameters(Vec<(String, String)>);

impl Parameters {
    pub fn new(pairs: Vec<(String, String)>) -> Self {
        Self(pairs)
    }

    /// The parameter's value; `Err` when it was sent more than once. Empty counts as absent.
    pub fn one(&self, name: &'static str) -> Result<Option<&str>, &'static str> {
        let mut values = self.0.iter().filter(|(k, _)| k == name).map(|(_, v)| v.as_str());
        let first = values.next();
        if values.next().is_some() {
            return Err(name);
        }
        Ok(first.filter(|v| !v.is_empty()))
    }
}

/// A request that cannot be answered by redirect: the client or the redirect URI is not to be
/// trusted. Shown as a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Untrusted {
    /// No `client_id`, or not ours.
    UnknownClient,
    /// The shop has no `portal`, so no client and no redirect URI.
    NoClientForShop,
    /// No `redirect_uri`, or one the shop did not register.
    UnregisteredRedirectUri,
    /// `client_id` or `redirect_uri` sent twice.
    Repeated,
}

/// Where an answer to a trusted request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTo {
    pub redirect_uri: String,
    pub state: Option<String>,
}

/// An error for the redirect URI (RFC 6749 §4.1.2.1, OIDC Core §3.1.2.6).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub reply_to: ReplyTo,
    pub error: &'static str,
    pub description: String,
}

/// Why a request was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Rejected {
    Untrusted(Untrusted),
    Refused(Refusal),
}

/// What `prompt` asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Prompt {
    /// Answer without showing anything (`login_required` if that is not possible).
    pub none: bool,
    /// Ask for the password again even with a session.
    pub login: bool,
}

/// A request that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub reply_to: ReplyTo,
    pub client_id: String,
    /// The granted scopes, space-separated, `openid` first.
    pub scope: String,
    pub nonce: Option<String>,
    /// The PKCE `S256` challenge.
    pub code_challenge: String,
    pub prompt: Prompt,
    /// Seconds; the session must be younger.
    pub max_age: Option<i64>,
}

impl Checked {
    /// A refusal of this request, for its redirect URI.
    pub fn refuse(&self, error: &'static str, description: &str) -> Refusal {
        Refusal { reply_to: self.reply_to.clone(), error, description: description.to_owned() }
    }
}

/// Checks an authorization request against the client and the shop's registered redirect URIs.
pub fn check(params: &Parameters, client: &Client, portal: Option<&HostPortal>) -> Result<Checked, Rejected> {
    let untrusted = |_| Rejected::Untrusted(Untrusted::Repeated);
    let client_id = params.one("client_id").map_err(untrusted)?;
    let client_id =
        client_id.filter(|id| client.is(id)).ok_or(Rejected::Untrusted(Untrusted::UnknownClient))?;
    let portal = portal.ok_or(Rejected::Untrusted(Untrusted::NoClientForShop))?;
    let redirect_uri = params.one("redirect_uri").map_err(untrusted)?;
    let redirect_uri = redirect_uri
        .filter(|uri| portal.allows_redirect(uri))
        .ok_or(Rejected::Untrusted(Untrusted::UnregisteredRedirectUri))?;

    // From here on, errors go back to the client. A repeated `state` cannot be echoed.
    let mut reply_to = ReplyTo { redirect_uri: redirect_uri.to_owned(), state: None };
    let refuse = |reply_to: &ReplyTo, error: &'static str, description: String| {
        Rejected::Refused(Refusal { reply_to: reply_to.clone(), error, description })
    };
    let repeated = |reply_to: &ReplyTo, name: &str| {
        refuse(reply_to, "invalid_request", format!("the {name} parameter was sent more than once"))
    };
    let state = params.one("state").map_err(|n| repeated(&reply_to, n))?;
    if state.is_some_and(|s| s.len() > MAX_STATE) {
        return Err(refuse(&reply_to, "invalid_request", format!("state is longer than {MAX_STATE} bytes")));
    }
    reply_to.state = state.map(str::to_owned);
    let get = |name| params.one(name).map_err(|n| repeated(&reply_to, n));

    for (name, error) in [
        ("request", "request_not_supported"),
        ("request_uri", "request_uri_not_supported"),
        ("registration", "registration_not_supported"),
    ] {
        if get(name)?.is_some() {
            return Err(refuse(&reply_to, error, format!("the {name} parameter is not supported")));
        }
    }
    match get("response_type")? {
        Some("code") => {}
        None => return Err(refuse(&reply_to, "invalid_request", "response_type is missing".into())),
        Some(_) => {
            return Err(refuse(
                &reply_to,
                "unsupported_response_type",
                "only response_type=code is supported".into(),
            ));
        }
    }
    if get("response_mode")?.is_some_and(|m| m != "query") {
        return Err(refuse(&reply_to, "invalid_request", "only response_mode=query is supported".into()));
    }
    let requested = get("scope")?.unwrap_or_default();
    let requested: Vec<&str> = requested.split(' ').filter(|s| !s.is_empty()).collect();
    if !requested.contains(&"openid") {
        return Err(refuse(&reply_to, "invalid_scope", "scope must contain openid".into()));
    }
    // Unknown scopes are ignored (OIDC Core §5.4); the grant names only what we serve.
    let scope = ["openid", "email", "profile"]
        .into_iter()
        .filter(|s| requested.contains(s))
        .collect::<Vec<_>>()
        .join(" ");
    let nonce = get("nonce")?;
    if nonce.is_some_and(|n| n.len() > MAX_STATE) {
        return Err(refuse(&reply_to, "invalid_request", format!("nonce is longer than {MAX_STATE} bytes")));
    }
    let code_challenge = match (get("code_challenge")?, get("code_challenge_method")?) {
        (None, _) => {
            return Err(refuse(&reply_to, "invalid_request", "code_challenge is required (PKCE)".into()));
        }
        (Some(_), None | Some("plain")) => {
            return Err(refuse(&reply_to, "invalid_request", "code_challenge_method must be S256".into()));
        }
        (Some(challenge), Some("S256")) if is_s256_challenge(challenge) => challenge,
        (Some(_), Some("S256")) => {
            return Err(refuse(
                &reply_to,
                "invalid_request",
                "code_challenge is not an S256 challenge".into(),
            ));
        }
        (Some(_), Some(_)) => {
            return Err(refuse(&reply_to, "invalid_request", "code_challenge_method must be S256".into()));
        }
    };
    let prompt = parse_prompt(get("prompt")?).map_err(|d| refuse(&reply_to, "invalid_request", d))?;
    let max_age = match get("max_age")? {
        None => None,
        Some(text) => match text.parse::<u64>() {
            Ok(seconds) => Some(i64::try_from(seconds).unwrap_or(MAX_AGE_CAP).min(MAX_AGE_CAP)),
            Err(_) => {
                return Err(refuse(
                    &reply_to,
                    "invalid_request",
                    "max_age must be a number of seconds".into(),
                ));
            }
        },
    };
    Ok(Checked {
        client_id: client_id.to_owned(),
        scope,
        nonce: nonce.map(str::to_owned),
        code_challenge: code_challenge.to_owned(),
        prompt,
        max_age,
        reply_to,
    })
}

fn parse_prompt(value: Option<&str>) -> Result<Prompt, String> {
    let mut prompt = Prompt::default();
    let values: Vec<&str> = value.unwrap_or_default().split(' ').filter(|v| !v.is_empty()).collect();
    for v in &values {
        match *v {
            "none" => prompt.none = true,
            "login" => prompt.login = true,
            // The host's portal is the shop's own: there is nothing to consent to or choose.
            "consent" | "select_account" => {}
            other => return Err(format!("prompt={other} is not a known value")),
        }
    }
    if prompt.none && values.len() > 1 {
        return Err("prompt=none cannot be combined with other values".into());
    }
    Ok(prompt)
}

/// BASE64URL(SHA-256(verifier)) without padding: 43 characters of the URL-safe alphabet.
fn is_s256_challenge(text: &str) -> bool {
    text.len() == 43 && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// The redirect URI with the answer's parameters added (keeping any query it has), and `iss`
/// (RFC 9207) since a host may use one callback for every shop.
pub fn reply_url(reply_to: &ReplyTo, issuer: &str, answer: &[(&str, &str)]) -> String {
    let Ok(mut url) = Url::parse(&reply_to.redirect_uri) else { return reply_to.redirect_uri.clone() };
    {
        let mut query = url.query_pairs_mut();
        for (name, value) in answer {
            query.append_pair(name, value);
        }
        if let Some(state) = &reply_to.state {
            query.append_pair("state", state);
        }
        query.append_pair("iss", issuer);
    }
    url.into()
}

#[cfg(test)]
mod tests;
