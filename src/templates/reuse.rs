//! Pages that differ only by a token: rendered once, then spliced.
//!
//! A login page is the same for every visitor of a shop except its CSRF token. Rendering it was a
//! quarter of the service's CPU per page (BENCHMARKS.md, issue 14), so such a page is rendered once
//! with a random slot where the token goes, split at the slot, and later answers join the pieces
//! with their own token. The slot is drawn at start-up and has a token's alphabet and length, so a
//! template that prints the token as it is prints the slot as it is; a template that changes it
//! (`upper`, a slice) does not contain the slot, and such a page is rendered every time, as before.
//! Only tokens of URL-safe base64 are spliced: HTML escaping leaves those characters alone, so the
//! joined page is byte for byte the page a full rendering would give.

use std::{
    collections::HashMap,
    io::Write,
    sync::{Arc, Mutex},
};

use base64::{Engine, engine::general_purpose::URL_SAFE_NO_PAD};
use serde::Serialize;

use super::{TemplateError, Templates};
use crate::{
    fingerprint::{Fingerprint, Fingerprints},
    random,
};

/// Distinct pages kept (a page per shop and template, in practice). Past it all are forgotten: a
/// caller cannot grow memory by varying what it asks for, at worst it brings back full rendering.
const MAX_PAGES: usize = 512;

/// The rendered pieces of each page; `None` for a page whose template does not print the token as
/// it is. A page is known by the fingerprint of its template's name and its context's JSON, streamed
/// into the fingerprint and never built: building it, and a key around it, was most of the cost of
/// finding a page.
pub(super) struct Reused {
    slot: String,
    keys: Fingerprints,
    pages: Mutex<HashMap<Fingerprint, Option<Arc<[String]>>>>,
}

impl Reused {
    pub(super) fn new() -> Self {
        // Shaped as a CSRF token is: 32 random bytes in URL-safe base64.
        let slot = URL_SAFE_NO_PAD.encode(random::bytes::<32>());
        Self { slot, keys: Fingerprints::new(), pages: Mutex::default() }
    }

    /// The fingerprint of `name` rendered with `context`; `None` if the context cannot be serialized.
    fn fingerprint(&self, name: &str, context: &impl Serialize) -> Option<Fingerprint> {
        let mut taking = self.keys.taking();
        // A template's name holds no newline, and compact JSON holds none either.
        taking.add(name.as_bytes());
        taking.add(b"\n");
        serde_json::to_writer(taking.by_ref(), context).ok()?;
        Some(taking.finish())
    }
}

fn splices_verbatim(token: &str) -> bool {
    token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

impl Templates {
    /// Renders `name` with the context `page` builds around `token`, reusing an earlier rendering
    /// of the same page with another token when the template allows (see the module documentation).
    /// Call it only for pages whose other values repeat (a login page), not ones that carry a
    /// per-visitor value (a set-up link), which would only churn the store.
    pub fn render_with_token<C: Serialize>(
        &self,
        name: &str,
        token: &str,
        page: impl Fn(&str) -> C,
    ) -> Result<String, TemplateError> {
        if !splices_verbatim(token) {
            return self.render(name, page(token));
        }
        let reused = &self.reused;
        let with_slot = page(&reused.slot);
        let Some(key) = reused.fingerprint(name, &with_slot) else {
            return self.render(name, page(token));
        };
        let known = reused.pages.lock().expect("reused pages lock").get(&key).cloned();
        let pieces = match known {
            Some(Some(pieces)) => pieces,
            Some(None) => return self.render(name, page(token)),
            None => {
                let html = self.render(name, with_slot)?;
                let pieces: Option<Arc<[String]>> = html
                    .contains(reused.slot.as_str())
                    .then(|| html.split(reused.slot.as_str()).map(str::to_owned).collect());
                let mut pages = reused.pages.lock().expect("reused pages lock");
                if pages.len() >= MAX_PAGES {
                    pages.clear();
                }
                pages.insert(key, pieces.clone());
                drop(pages);
                match pieces {
                    Some(pieces) => pieces,
                    None => return self.render(name, page(token)),
                }
            }
        };
        Ok(pieces.join(token))
    }
}

#[cfg(test)]
mod tests {
    use serde::Serialize;

    use crate::templates::Templates;

    const NAME: &str = "pages/login.html";

    #[derive(Serialize)]
    struct Page {
        shop: String,
        csrf: String,
    }

    fn templates(source: &str) -> (Templates, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("pages")).unwrap();
        std::fs::write(dir.path().join(NAME), source).unwrap();
        (Templates::load(Some(dir.path())).unwrap(), dir)
    }

    fn both(templates: &Templates, shop: &str, token: &str) -> (String, String) {
        let page = |csrf: &str| Page { shop: shop.to_owned(), csrf: csrf.to_owned() };
        (
            templates.render_with_token(NAME, token, page).unwrap(),
            templates.render(NAME, page(token)).unwrap(),
        )
    }

    #[test]
    fn a_spliced_page_is_byte_for_byte_the_page_a_full_rendering_gives() {
        let (templates, _dir) =
            templates("<h1>{{ shop }}</h1><input value=\"{{ csrf }}\"><a href=\"?t={{ csrf }}\">again</a>");
        for (shop, token) in
            [("Bob's <Garage>", "tok-EN_1"), ("Bob's <Garage>", "other_token-2"), ("Ann & Co", "tok-EN_1")]
        {
            let (spliced, rendered) = both(&templates, shop, token);
            assert_eq!(spliced, rendered, "{shop} {token}");
        }
        // Two shops, each rendered once and then reused.
        assert_eq!(templates.reused.pages.lock().unwrap().len(), 2);
    }

    #[test]
    fn a_template_that_changes_the_token_is_rendered_every_time() {
        let (templates, _dir) = templates("<input value=\"{{ csrf|upper }}\">{{ csrf[:3] }}");
        for token in ["tok-en_1", "abc-def"] {
            let (spliced, rendered) = both(&templates, "Bob", token);
            assert_eq!(spliced, rendered);
            assert!(spliced.contains(&token.to_uppercase()));
        }
    }

    #[test]
    fn a_token_that_html_would_escape_is_never_spliced() {
        let (templates, _dir) = templates("<input value=\"{{ csrf }}\">");
        let _ = both(&templates, "Bob", "warm-up");
        let (spliced, rendered) = both(&templates, "Bob", "a\"b<c&d");
        assert_eq!(spliced, rendered);
        assert!(spliced.contains("a&quot;b&lt;c&amp;d"), "{spliced}");
    }
}
