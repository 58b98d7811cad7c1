//! The pages are valid HTML5 (no parse errors under the HTML5 parsing algorithm, with exact error
//! reporting), declare their language, and every visible input has a label, the right type and
//! `autocomplete`, and error descriptions that exist.

use std::collections::{BTreeMap, BTreeSet};

use html5ever::{
    ParseOpts, parse_document, tendril::TendrilSink, tokenizer::TokenizerOpts, tree_builder::TreeBuilderOpts,
};
use markup5ever_rcdom::{Handle, NodeData, RcDom};
use serde_json::json;

use crate::{helpers::*, web::*};

struct Element {
    name: String,
    attrs: BTreeMap<String, String>,
}

fn elements(node: &Handle, out: &mut Vec<Element>) {
    if let NodeData::Element { name, attrs, .. } = &node.data {
        let attrs = attrs.borrow().iter().map(|a| (a.name.local.to_string(), a.value.to_string())).collect();
        out.push(Element { name: name.local.to_string(), attrs });
    }
    for child in node.children.borrow().iter() {
        elements(child, out);
    }
}

/// Parses a page and checks it; returns what was checked, for the report.
fn check_page(what: &str, html: &str) {
    let opts = ParseOpts {
        tokenizer: TokenizerOpts { exact_errors: true, ..Default::default() },
        tree_builder: TreeBuilderOpts { exact_errors: true, ..Default::default() },
    };
    let dom = parse_document(RcDom::default(), opts).one(html);
    let errors = dom.errors.borrow();
    assert!(errors.is_empty(), "{what}: HTML parse errors {errors:?}\n{html}");
    assert!(html.starts_with("<!DOCTYPE html>"), "{what}: no doctype");

    let mut all = Vec::new();
    elements(&dom.document, &mut all);
    let html_element = all.iter().find(|e| e.name == "html").unwrap();
    assert!(html_element.attrs.get("lang").is_some_and(|l| !l.is_empty()), "{what}: no lang");
    assert!(
        all.iter().any(|e| e.name == "meta" && e.attrs.get("name").map(String::as_str) == Some("viewport")),
        "{what}: no viewport"
    );
    assert!(all.iter().any(|e| e.name == "title"), "{what}: no title");
    assert_eq!(all.iter().filter(|e| e.name == "h1").count(), 1, "{what}: one h1");

    let ids: Vec<&String> = all.iter().filter_map(|e| e.attrs.get("id")).collect();
    let unique: BTreeSet<&String> = ids.iter().copied().collect();
    assert_eq!(ids.len(), unique.len(), "{what}: duplicate ids");
    let labelled: BTreeSet<&String> =
        all.iter().filter(|e| e.name == "label").filter_map(|e| e.attrs.get("for")).collect();
    for input in
        all.iter().filter(|e| e.name == "input" && e.attrs.get("type").map(String::as_str) != Some("hidden"))
    {
        let id = input.attrs.get("id").unwrap_or_else(|| panic!("{what}: an input without id"));
        assert!(labelled.contains(id), "{what}: #{id} has no label");
        let kind = input.attrs.get("type").map(String::as_str).unwrap_or("text");
        let autocomplete = input.attrs.get("autocomplete").map(String::as_str);
        match (id.as_str(), kind, autocomplete) {
            ("email" | "username", "email", Some("username"))
            | ("password", "password", Some("current-password" | "new-password"))
            | ("confirmation", "password", Some("new-password")) => {}
            other => panic!("{what}: unexpected input {other:?}"),
        }
        if let Some(described) = input.attrs.get("aria-describedby") {
            for target in described.split_whitespace() {
                assert!(
                    unique.contains(&target.to_owned()),
                    "{what}: #{id} describes itself with missing #{target}"
                );
            }
        }
    }
    for form in all.iter().filter(|e| e.name == "form") {
        assert_eq!(
            form.attrs.get("method").map(String::as_str),
            Some("post"),
            "{what}: a form that is not a POST"
        );
    }
}

#[tokio::test]
async fn every_page_is_valid_html5_with_labelled_fields() {
    let app = TestApp::spawn(Backend::Sqlite).await.unwrap();
    let link = invite(&app, "shop_1", "cus_1", EMAIL).await;
    let mut web = Web::new(&app);
    let mut pages = vec![("set-up", web.get(&link).await.body)];
    pages.push((
        "set-up refused",
        web.submit(&link, &[("password", "short"), ("confirmation", "x")]).await.body,
    ));
    pages.push((
        "set-up mismatch",
        web.submit(&link, &[("password", PASSWORD), ("confirmation", "x")]).await.body,
    ));
    web.submit(&link, &[("password", PASSWORD), ("confirmation", PASSWORD)]).await;
    pages.push(("home", web.get("/p/shop_1").await.body));
    pages.push(("link no longer works", web.get(&link).await.body));
    let mut other = Web::new(&app);
    pages.push(("login", other.get("/p/shop_1/login").await.body));
    pages.push((
        "login refused",
        other.submit("/p/shop_1/login", &[("email", EMAIL), ("password", "nope nope")]).await.body,
    ));
    pages.push(("forgot", other.get("/p/shop_1/forgot").await.body));
    pages.push((
        "forgot refused",
        other.submit("/p/shop_1/forgot", &[("email", "not an address")]).await.body,
    ));
    pages.push(("forgot sent", other.submit("/p/shop_1/forgot", &[("email", EMAIL)]).await.body));
    pages.push(("form refused", other.post("/p/shop_1/login", &[("csrf", "x")]).await.body));
    pages.push(("not found", other.get("/nothing/here").await.body));
    let mut inactive = shop("shop_1", 2);
    inactive["customer_portal_active"] = json!(false);
    app.deliver(&shop_updated("shop_1", inactive)).await;
    pages.push(("not available", other.get("/p/shop_1/login").await.body));
    for (what, html) in &pages {
        check_page(what, html);
    }
}

#[test]
fn the_checker_notices_broken_markup_and_unlabelled_fields() {
    let page = |body: &str| {
        format!(
            "<!DOCTYPE html><html lang=\"en\"><head><meta name=\"viewport\" content=\"x\"><title>t</title></head><body><h1>h</h1>{body}</body></html>"
        )
    };
    assert!(std::panic::catch_unwind(|| check_page("ok", &page("<p>fine</p>"))).is_ok());
    for broken in [
        "<p>unclosed <b>bold</p>",
        "<input id=\"email\" type=\"email\" autocomplete=\"username\">",
        "<label for=\"password\">P</label><input id=\"password\" type=\"text\" autocomplete=\"new-password\">",
        "<form method=\"get\"></form>",
    ] {
        assert!(std::panic::catch_unwind(|| check_page("broken", &page(broken))).is_err(), "{broken} passed");
    }
}
