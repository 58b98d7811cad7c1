//! A panic while answering a request is a bug of ours, but it must not cost the client its answer:
//! the connection would be dropped with nothing said. This middleware turns it into the answer the
//! route would give for any internal fault: the customer pages' error page under `/p/`, an RFC 9457
//! problem everywhere else. The panic itself is logged (without the request's path: set-up and reset
//! paths carry tokens).

use std::{panic::AssertUnwindSafe, sync::Arc};

use futures_util::FutureExt;
use poem::{Endpoint, IntoResponse, Middleware, Request, Response, Result};

use crate::host::problem::{HostError, HostProblem};

/// Renders the customer pages' "something went wrong" page.
pub type ErrorPage = Arc<dyn Fn() -> Response + Send + Sync>;

pub struct RecoverPanics {
    /// The page for a panic under `/p/`.
    pub customer_page: ErrorPage,
}

impl<E: Endpoint> Middleware<E> for RecoverPanics {
    type Output = RecoverPanicsEndpoint<E>;

    fn transform(&self, ep: E) -> Self::Output {
        RecoverPanicsEndpoint { inner: ep, customer_page: self.customer_page.clone() }
    }
}

/// See [`RecoverPanics`].
pub struct RecoverPanicsEndpoint<E> {
    inner: E,
    customer_page: ErrorPage,
}

impl<E: Endpoint> Endpoint for RecoverPanicsEndpoint<E> {
    type Output = Response;

    async fn call(&self, req: Request) -> Result<Self::Output> {
        let customer_page = req.uri().path().starts_with("/p/");
        match AssertUnwindSafe(self.inner.call(req)).catch_unwind().await {
            Ok(result) => result.map(IntoResponse::into_response),
            Err(panic) => {
                let what = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                tracing::error!(panic = %what, customer_page, "a request handler panicked; answered 500");
                Ok(if customer_page {
                    (self.customer_page)()
                } else {
                    HostProblem::from(HostError::Internal("a handler panicked".into())).into_response()
                })
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use poem::{EndpointExt, Route, handler, http::StatusCode};

    use super::*;

    #[handler]
    fn boom() -> String {
        let digits: Vec<u64> = Vec::new();
        // An index out of bounds, as a bug would make it.
        digits[usize::from(digits.is_empty())].to_string()
    }

    #[tokio::test]
    async fn a_panicking_handler_gets_a_500_answer_and_the_service_goes_on() {
        let app = Route::new()
            .at("/actions/x", boom)
            .at("/p/shop/login", boom)
            .at("/ok", poem::endpoint::make_sync(|_| "ok"))
            .with(RecoverPanics {
                customer_page: Arc::new(|| {
                    Response::builder().status(StatusCode::INTERNAL_SERVER_ERROR).body("the page")
                }),
            });
        let get = |path: &str| Request::builder().uri(path.parse().unwrap()).finish();
        let host = app.get_response(get("/actions/x")).await;
        assert_eq!(host.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(host.content_type(), Some("application/problem+json"));
        let page = app.get_response(get("/p/shop/login")).await;
        assert_eq!(page.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(page.into_body().into_string().await.unwrap(), "the page");
        let ok = app.get_response(get("/ok")).await;
        assert_eq!(ok.into_body().into_string().await.unwrap(), "ok");
    }
}
