//! Reading a request's parameters the way OAuth wants them: every pair kept (a repeated one is an
//! error), from the query string or a form body of bounded size.

use poem::{Body, Request};

use crate::identity::request::Parameters;

/// Largest form body read, in bytes (a token or logout request is a few hundred).
const MAX_FORM: usize = 16 * 1024;

/// The query string's pairs.
pub fn query(request: &Request) -> Parameters {
    Parameters::new(pairs(request.uri().query().unwrap_or_default()))
}

/// The form body's pairs; `None` when it is too large or not a form.
pub async fn form(body: Body) -> Option<Parameters> {
    let bytes = body.into_bytes_limit(MAX_FORM).await.ok()?;
    let text = std::str::from_utf8(&bytes).ok()?;
    Some(Parameters::new(pairs(text)))
}

/// The query's pairs for GET, the form's for POST (OIDC Core §3.1.2.1 allows both).
pub async fn of_request(request: &Request, body: Body) -> Option<Parameters> {
    if request.method() == poem::http::Method::POST { form(body).await } else { Some(query(request)) }
}

fn pairs(text: &str) -> Vec<(String, String)> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(text).unwrap_or_default()
}
