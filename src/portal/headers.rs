//! Security headers on every response, error pages included: a strict Content-Security-Policy (no
//! inline script, nothing from other sites, no framing), no MIME sniffing, no referrer (links carry
//! tokens), a browsing context of our own (no other site's window keeps a handle on our pages), no
//! powerful browser features, `no-store` for anything not marked cacheable, and HSTS when the
//! service is on https.

use poem::{Endpoint, IntoResponse, Middleware, Request, Response, Result, http::HeaderValue};

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
        let policy = if docs { DOCS_POLICY } else { PAGE_POLICY };
        headers.insert("content-security-policy", HeaderValue::from_static(policy));
        headers.insert("x-content-type-options", HeaderValue::from_static("nosniff"));
        headers.insert("referrer-policy", HeaderValue::from_static("no-referrer"));
        headers.insert("x-frame-options", HeaderValue::from_static("DENY"));
        headers.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
        headers.insert("permissions-policy", HeaderValue::from_static(PERMISSIONS_POLICY));
        if !headers.contains_key("cache-control") {
            headers.insert("cache-control", HeaderValue::from_static("no-store"));
        }
        if self.hsts {
            headers.insert(
                "strict-transport-security",
                HeaderValue::from_static("max-age=31536000; includeSubDomains"),
            );
        }
        Ok(response)
    }
}
