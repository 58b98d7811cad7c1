//! Security headers on every response, error pages included: a strict Content-Security-Policy (no
//! inline script, nothing from other sites, no framing), no MIME sniffing, no referrer (links carry
//! tokens), a browsing context of our own (no other site's window keeps a handle on our pages), no
//! powerful browser features, `no-store` for anything not marked cacheable, and HSTS when the
//! service is on https.

use poem::{
    Endpoint, IntoResponse, Middleware, Request, Response, Result,
    http::{
        HeaderName, HeaderValue,
        header::{
            CACHE_CONTROL, CONTENT_SECURITY_POLICY as CSP, REFERRER_POLICY, STRICT_TRANSPORT_SECURITY,
            X_CONTENT_TYPE_OPTIONS, X_FRAME_OPTIONS,
        },
    },
};

use super::PortalContext;
use crate::domain::HostPortal;

// Names and values built once, at compile time: parsed from strings, they were 3 % of a replayed
// webhook's CPU (BENCHMARKS.md, issue 14).
const COOP: HeaderName = HeaderName::from_static("cross-origin-opener-policy");
const PERMISSIONS: HeaderName = HeaderName::from_static("permissions-policy");
const NOSNIFF: HeaderValue = HeaderValue::from_static("nosniff");
const NO_REFERRER: HeaderValue = HeaderValue::from_static("no-referrer");
const DENY: HeaderValue = HeaderValue::from_static("DENY");
const SAME_ORIGIN: HeaderValue = HeaderValue::from_static("same-origin");
const NO_STORE: HeaderValue = HeaderValue::from_static("no-store");
const HSTS: HeaderValue = HeaderValue::from_static("max-age=31536000; includeSubDomains");
const PAGE_POLICY_VALUE: HeaderValue = HeaderValue::from_static(PAGE_POLICY);
const DOCS_POLICY_VALUE: HeaderValue = HeaderValue::from_static(DOCS_POLICY);
const PERMISSIONS_POLICY_VALUE: HeaderValue = HeaderValue::from_static(PERMISSIONS_POLICY);

/// The policy for our own pages: our stylesheet, our forms, nothing else.
pub const PAGE_POLICY: &str = "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; \
     frame-ancestors 'none'; base-uri 'none'";
/// The browsable API under `/docs` runs the bundled Swagger UI, which needs inline script and style.
const DOCS_POLICY: &str = "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; \
     img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'";

/// Browser features no page of ours uses, denied to every page (and anything it could embed).
pub const PERMISSIONS_POLICY: &str = "accelerometer=(), camera=(), display-capture=(), geolocation=(), \
     gyroscope=(), magnetometer=(), microphone=(), midi=(), payment=(), usb=(), serial=(), hid=(), \
     bluetooth=(), xr-spatial-tracking=(), interest-cohort=(), browsing-topics=()";

/// Adds the headers.
pub struct SecurityHeaders {
    /// Send `Strict-Transport-Security` (the public URL is https).
    pub hsts: bool,
}

impl<E: Endpoint> Middleware<E> for SecurityHeaders {
    type Output = SecurityHeadersEndpoint<E>;

    fn transform(&self, ep: E) -> Self::Output {
        SecurityHeadersEndpoint { inner: ep, hsts: self.hsts }
    }
}

/// See [`SecurityHeaders`].
pub struct SecurityHeadersEndpoint<E> {
    inner: E,
    hsts: bool,
}

impl<E: Endpoint> Endpoint for SecurityHeadersEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Self::Output> {
        let docs = req.uri().path().starts_with("/docs");
        let mut response = match self.inner.call(req).await {
            Ok(response) => response.into_response(),
            Err(error) => error.into_response(),
        };
        let headers = response.headers_mut();
        let policy = if docs { DOCS_POLICY_VALUE } else { PAGE_POLICY_VALUE };
        // A shop's page may have widened `form-action` already ([`HostPortalForms`]).
        if !headers.contains_key(CSP) {
            headers.insert(CSP, policy);
        }
        headers.insert(X_CONTENT_TYPE_OPTIONS, NOSNIFF);
        headers.insert(REFERRER_POLICY, NO_REFERRER);
        headers.insert(X_FRAME_OPTIONS, DENY);
        headers.insert(COOP, SAME_ORIGIN);
        headers.insert(PERMISSIONS, PERMISSIONS_POLICY_VALUE);
        if !headers.contains_key(CACHE_CONTROL) {
            headers.insert(CACHE_CONTROL, NO_STORE);
        }
        if self.hsts {
            headers.insert(STRICT_TRANSPORT_SECURITY, HSTS);
        }
        Ok(response)
    }
}

/// Lets the forms on a shop's pages lead to the shop's own host portal (contract §8). Browsers apply
/// `form-action` to every redirect that follows a form's submission, and ours lead there: a customer
/// who sets a password or logs in is sent on to the host's `portal.url` (and from there through our
/// authorization endpoint to its redirect URI), and one who confirms a sign-out to its post-logout
/// URI. With `form-action 'self'` alone, Chromium stops the customer on our page. Only the origins
/// the shop registered are added; every other page keeps [`PAGE_POLICY`].
///
/// Goes inside the `/p` nest, where the path starts with the shop's id and the [`PortalContext`] is
/// the request's data.
pub struct HostPortalForms;

impl<E: Endpoint> Middleware<E> for HostPortalForms {
    type Output = HostPortalFormsEndpoint<E>;

    fn transform(&self, ep: E) -> Self::Output {
        HostPortalFormsEndpoint { inner: ep }
    }
}

/// See [`HostPortalForms`].
pub struct HostPortalFormsEndpoint<E> {
    inner: E,
}

impl<E: Endpoint> Endpoint for HostPortalFormsEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Self::Output> {
        let shop_id = req.uri().path().trim_start_matches('/').split('/').next().unwrap_or("").to_owned();
        let portal = req.data::<PortalContext>().cloned();
        let mut response = self.inner.call(req).await?.into_response();
        let is_page = response.content_type().is_some_and(|t| t.starts_with("text/html"));
        if let (true, Some(portal)) = (is_page, portal)
            && let Ok(shop) = portal.shared_shop(&shop_id).await
            && let Some(host) = shop.host_portal()
            && let Ok(policy) = HeaderValue::from_str(&page_policy_with_forms_to(&host))
        {
            response.headers_mut().insert(CSP, policy);
        }
        Ok(response)
    }
}

/// [`PAGE_POLICY`] with the origins of every address the host registered added to `form-action`.
pub fn page_policy_with_forms_to(host: &HostPortal) -> String {
    let mut origins: Vec<String> = std::iter::once(&host.url)
        .chain(&host.redirect_uris)
        .chain(&host.post_logout_redirect_uris)
        .filter_map(|address| url::Url::parse(address).ok())
        .map(|address| address.origin().ascii_serialization())
        .collect();
    origins.sort();
    origins.dedup();
    PAGE_POLICY.replacen("form-action 'self'", &format!("form-action 'self' {}", origins.join(" ")), 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_host_portals_origins_are_added_to_form_action_and_nothing_else_changes() {
        let host = HostPortal::parse(
            "https://my.workshop.example/portal/shop_1",
            &["https://my.workshop.example/portal/oidc/callback".into(), "http://127.0.0.1:9000/cb".into()],
            &["https://signed-out.example/bye?x=1".into()],
        )
        .unwrap();
        let policy = page_policy_with_forms_to(&host);
        assert_eq!(
            policy,
            "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self' http://127.0.0.1:9000 \
             https://my.workshop.example https://signed-out.example; frame-ancestors 'none'; base-uri 'none'"
        );
    }
}
