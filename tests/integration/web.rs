//! A minimal browser for the customer pages: keeps cookies (including `Secure` ones, which a real
//! browser would only send over https), follows nothing by itself, and reads forms' CSRF tokens.

use std::collections::BTreeMap;

use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::helpers::{TestApp, customer, installed};

/// One response.
#[derive(Debug)]
pub struct Page {
    /// Status.
    pub status: u16,
    /// Headers.
    pub headers: HeaderMap,
    /// Body.
    pub body: String,
}

impl Page {
    /// The CSRF token of the page's (first) form.
    pub fn csrf(&self) -> String {
        let marker = "name=\"csrf\" value=\"";
        let start = self.body.find(marker).unwrap_or_else(|| panic!("no form on the page:\n{}", self.body))
            + marker.len();
        self.body[start..].split('"').next().unwrap().to_owned()
    }

    /// The redirect target's path.
    pub fn location(&self) -> Option<String> {
        let location = self.headers.get("location")?.to_str().ok()?;
        Some(
            url::Url::parse(location)
                .map(|u| format!("{}{}", u.path(), u.query().map(|q| format!("?{q}")).unwrap_or_default()))
                .unwrap_or_else(|_| location.to_owned()),
        )
    }

    /// The `Set-Cookie` headers.
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers.get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect()
    }

    /// A header's value.
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).map(|v| v.to_str().unwrap().to_owned())
    }

    /// The body without the CSRF token's value (which differs between pages by design).
    pub fn body_without_csrf(&self) -> String {
        match self.body.find("name=\"csrf\" value=\"") {
            Some(_) => self.body.replace(&self.csrf(), "CSRF"),
            None => self.body.clone(),
        }
    }
}

/// A browser session against one service.
pub struct Web {
    base: String,
    client: reqwest::Client,
    /// The cookie jar.
    pub cookies: BTreeMap<String, String>,
}

impl Web {
    /// A fresh browser.
    pub fn new(app: &TestApp) -> Self {
        let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Self { base: app.url.clone(), client, cookies: BTreeMap::new() }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    fn keep(&mut self, headers: &HeaderMap) {
        for value in headers.get_all("set-cookie") {
            let text = value.to_str().unwrap();
            let (pair, attributes) = text.split_once(';').unwrap_or((text, ""));
            let (name, value) = pair.split_once('=').unwrap();
            if attributes.contains("Max-Age=0") {
                self.cookies.remove(name);
            } else {
                self.cookies.insert(name.to_owned(), value.to_owned());
            }
        }
    }

    async fn finish(&mut self, request: reqwest::RequestBuilder) -> Page {
        let request =
            if self.cookies.is_empty() { request } else { request.header("cookie", self.cookie_header()) };
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        self.keep(&headers);
        Page { status, headers, body: response.text().await.unwrap() }
    }

    /// GET a path (or one of our absolute links).
    pub async fn get(&mut self, path: &str) -> Page {
        let url = self.url(path);
        let request = self.client.get(url);
        self.finish(request).await
    }

    /// HEAD a path.
    pub async fn head(&mut self, path: &str) -> Page {
        let url = self.url(path);
        let request = self.client.head(url);
        self.finish(request).await
    }

    /// POSTs the same form `count` times at once with this browser's cookies (a burst, or a flood);
    /// the answers' cookies are not kept.
    pub async fn post_at_once(
        &self,
        path: &str,
        fields: &[(&str, &str)],
        count: usize,
    ) -> Vec<reqwest::Response> {
        let (url, cookie, body) = (self.url(path), self.cookie_header(), form(fields));
        let requests = (0..count).map(|_| {
            self.client
                .post(&url)
                .header("cookie", &cookie)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body.clone())
                .send()
        });
        futures_util::future::join_all(requests).await.into_iter().map(Result::unwrap).collect()
    }

    /// POST a form.
    pub async fn post(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        self.post_with(path, fields, &[]).await
    }

    /// POST a form with extra headers.
    pub async fn post_with(&mut self, path: &str, fields: &[(&str, &str)], headers: &[(&str, &str)]) -> Page {
        let url = self.url(path);
        let mut request = self
            .client
            .post(url)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form(fields));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        self.finish(request).await
    }

    fn url(&self, path: &str) -> String {
        if path.starts_with("http") {
            // Our links name the public URL; send them to this instance whatever host they name.
            let parsed = url::Url::parse(path).unwrap();
            format!(
                "{}{}{}",
                self.base,
                parsed.path(),
                parsed.query().map(|q| format!("?{q}")).unwrap_or_default()
            )
        } else {
            format!("{}{path}", self.base)
        }
    }

    /// Opens a form page and submits it with `fields` and the page's CSRF token.
    pub async fn submit(&mut self, path: &str, fields: &[(&str, &str)]) -> Page {
        let page = self.get(path).await;
        assert_eq!(page.status, 200, "{path}: {}", page.body);
        let csrf = page.csrf();
        let mut all = vec![("csrf", csrf.as_str())];
        all.extend_from_slice(fields);
        self.post(path, &all).await
    }
}

/// A URL-encoded form body.
pub fn form(fields: &[(&str, &str)]) -> String {
    url::form_urlencoded::Serializer::new(String::new()).extend_pairs(fields).finish()
}

/// A password that meets the rules.
pub const PASSWORD: &str = "blue tractor seven";

/// Installs `shop_id` and invites `email` by email (written to the outbox folder); returns the set-up
/// link's path.
pub async fn invite(app: &TestApp, shop_id: &str, customer_id: &str, email: &str) -> String {
    if app.count(&format!("SELECT COUNT(*) FROM shops WHERE id = '{shop_id}'")).await == 0 {
        app.deliver(&installed(shop_id, 1)).await;
    }
    let before = emails(app).len();
    let profile = customer(customer_id, Some(email), None, 1);
    let answer: Value = app.submit(shop_id, &profile, &format!("int_{customer_id}"), "email").await;
    assert_eq!(answer["message"]["code"], "invitation_sent", "{answer}");
    let all = emails(app);
    assert_eq!(all.len(), before + 1);
    link_in(&all.last().unwrap().1, &format!("/p/{shop_id}/setup/")).expect("a set-up link")
}

/// The emails written to the outbox folder, oldest first: (subject, text part).
pub fn emails(app: &TestApp) -> Vec<(String, String)> {
    let mut files: Vec<_> =
        app.outbox_files().into_iter().filter(|p| p.extension().is_some_and(|x| x == "eml")).collect();
    files.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).unwrap());
    files
        .iter()
        .map(|path| {
            let raw = std::fs::read(path).unwrap();
            let message = mail_parser::MessageParser::default().parse(&raw).unwrap();
            (
                message.subject().unwrap_or_default().to_owned(),
                message.body_text(0).unwrap_or_default().into_owned(),
            )
        })
        .collect()
}

/// The path of the first link in `text` whose path starts with `prefix`.
pub fn link_in(text: &str, prefix: &str) -> Option<String> {
    let start = text.find(prefix)?;
    let path: String =
        text[start..].chars().take_while(|c| !c.is_whitespace() && *c != '"' && *c != '<').collect();
    Some(path)
}

/// Sets up the password from `link` and returns the browser, logged in.
pub async fn set_up(app: &TestApp, link: &str) -> Web {
    let mut web = Web::new(app);
    let done = web.submit(link, &[("password", PASSWORD), ("confirmation", PASSWORD)]).await;
    assert_eq!(done.status, 303, "{}", done.body);
    web
}
