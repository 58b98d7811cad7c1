//! The stand-in portal's pages. Every value is escaped by minijinja's HTML auto-escaping (the
//! templates' names end in `.html`); nothing here decides anything.

use std::sync::OnceLock;

use minijinja::{Environment, context};
use serde_json::{Map, Value};

use super::relying_party::{SignInError, SignedIn};

const LAYOUT: &str = r#"<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{% block title %}{% endblock %} · stand-in host portal</title>
<style>
body { font: 16px/1.5 system-ui, sans-serif; margin: 0 auto; max-width: 40rem; padding: 1rem; color: #1b1b1b; }
.banner { background: #fff4d6; border: 1px solid #e0c46c; padding: .5rem .75rem; font-size: .875rem; }
table { border-collapse: collapse; width: 100%; table-layout: fixed; font-size: .875rem; }
th, td { text-align: left; vertical-align: top; padding: .25rem .5rem; border-bottom: 1px solid #ddd; overflow-wrap: anywhere; }
th { width: 35%; }
a.button { display: inline-block; padding: .5rem 1rem; background: #1d4ed8; color: #fff; text-decoration: none; border-radius: .25rem; }
</style>
</head>
<body>
<p class="banner">Stand-in host portal: the host's side of OpenID Connect sign-in, run by <code>portal-invites demo</code>.</p>
{% block body %}{% endblock %}
</body>
</html>
"#;

const SIGNED_IN: &str = r#"{% extends "layout.html" %}
{% block title %}Signed in{% endblock %}
{% block body %}
{% macro claims_table(claims) %}
<table>
{% for name, value in claims %}<tr><th scope="row">{{ name }}</th><td>{{ value }}</td></tr>
{% endfor %}</table>
{% endmacro %}
<h1>Signed in</h1>
<p id="signed-in">Signed in to {{ shop_name }}'s portal as {{ name }} (customer {{ customer_id }})</p>
<p><a class="button" id="sign-out" href="{{ sign_out }}">Sign out</a></p>
<h2>The ID token's claims</h2>
{{ claims_table(id_token) }}
<h2>Userinfo</h2>
{{ claims_table(userinfo) }}
{% endblock %}
"#;

const SIGNED_OUT: &str = r#"{% extends "layout.html" %}
{% block title %}Signed out{% endblock %}
{% block body %}
<h1>Signed out</h1>
<p id="signed-out">You have signed out of {{ shop_name }}'s portal.</p>
<p><a href="{{ start }}">Sign in again</a></p>
{% endblock %}
"#;

const FAILED: &str = r#"{% extends "layout.html" %}
{% block title %}Not signed in{% endblock %}
{% block body %}
<h1>Not signed in</h1>
<p id="problem">{{ problem }}</p>
{% if detail %}<p>{{ detail }}</p>{% endif %}
{% endblock %}
"#;

fn templates() -> &'static Environment<'static> {
    static TEMPLATES: OnceLock<Environment<'static>> = OnceLock::new();
    TEMPLATES.get_or_init(|| {
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        for (name, source) in [
            ("layout.html", LAYOUT),
            ("signed_in.html", SIGNED_IN),
            ("signed_out.html", SIGNED_OUT),
            ("failed.html", FAILED),
        ] {
            env.add_template(name, source).expect("the stand-in's templates compile");
        }
        env
    })
}

fn render(name: &str, context: minijinja::Value) -> String {
    templates()
        .get_template(name)
        .and_then(|t| t.render(context))
        .unwrap_or_else(|e| format!("the stand-in's page {name} failed: {e}"))
}

/// Claims as rows of text: strings as they are, anything else as JSON.
fn rows(claims: &Map<String, Value>) -> Vec<(String, String)> {
    let mut rows: Vec<(String, String)> = claims
        .iter()
        .map(|(name, value)| (name.clone(), value.as_str().map_or_else(|| value.to_string(), str::to_owned)))
        .collect();
    rows.sort();
    rows
}

pub fn signed_in(signed_in: &SignedIn) -> String {
    render(
        "signed_in.html",
        context! {
            shop_name => &signed_in.shop_name,
            name => &signed_in.name,
            customer_id => &signed_in.customer_id,
            sign_out => &signed_in.sign_out,
            id_token => rows(&signed_in.id_token_claims),
            userinfo => rows(&signed_in.userinfo),
        },
    )
}

pub fn signed_out(shop_name: &str, start: &str) -> String {
    render("signed_out.html", context! { shop_name, start })
}

/// The page for a sign-in that did not complete, and its status.
pub fn failed(error: &SignInError) -> (u16, String) {
    let (status, detail) = match error {
        SignInError::UnknownShop(_) => (404, None),
        SignInError::UnknownState => (400, Some("Open the portal again to start a new sign-in.")),
        SignInError::WrongIssuer { .. } => (400, None),
        SignInError::Refused { error, .. } => (403, refusal_hint(error)),
        SignInError::Discovery(_)
        | SignInError::Token(_)
        | SignInError::IdToken(_)
        | SignInError::Userinfo(_) => (502, None),
    };
    let problem = match error {
        SignInError::Refused { error, description: Some(description) } => {
            format!("The sign-in was refused: {error} ({description}).")
        }
        other => format!("The sign-in could not be completed: {other}."),
    };
    (status, render("failed.html", context! { problem, detail }))
}

fn refusal_hint(error: &str) -> Option<&'static str> {
    match error {
        "login_required" => Some("The customer is not logged in at the provider."),
        "access_denied" => Some("The customer or the provider declined the sign-in."),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn every_value_on_a_page_is_escaped() {
        let hostile = "<script>alert(1)</script>";
        let page = signed_in(&SignedIn {
            shop_name: "A & B <Motors>".into(),
            name: hostile.into(),
            customer_id: "cus_\"1\"".into(),
            id_token_claims: json!({"name": hostile, "<b>": 1}).as_object().unwrap().clone(),
            userinfo: Map::new(),
            sign_out: "http://127.0.0.1:1/p/shop_1/oidc/logout?id_token_hint=a&x=\"><script>".into(),
        });
        assert!(!page.contains("<script>"), "{page}");
        assert!(!page.contains("<b>"), "{page}");
        assert!(page.contains("A &amp; B &lt;Motors&gt;"), "{page}");
        assert!(page.contains("Signed in to"), "{page}");
        let (status, page) = failed(&SignInError::Refused {
            error: "access_denied".into(),
            description: Some(hostile.into()),
        });
        assert_eq!(status, 403);
        assert!(!page.contains("<script>") && page.contains("declined"), "{page}");
        assert!(!signed_out(hostile, "/portal/shop_1").contains("<script>"));
    }
}
