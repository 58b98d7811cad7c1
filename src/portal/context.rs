//! What the customer pages work with, built by `app` from the settings and handed to the portal's
//! routes as data: nothing of the host's or the sender's, only what a page needs.

use std::{ops::Deref, sync::Arc};

use tokio::sync::Notify;
use url::Url;

use super::{cookies::CookieNames, errors::PortalError};
use crate::{
    accounts::Accounts,
    clock::Clock,
    config::PortalSettings,
    db::{Database, keys::ServiceKey},
    domain::ShopId,
    entities::shop,
    shops::cache::ShopCache,
    templates::Templates,
};

/// The parts of a [`PortalContext`].
pub struct PortalParts {
    pub db: Database,
    pub clock: Clock,
    pub accounts: Arc<Accounts>,
    /// Signs the form tokens and device cookies.
    pub cookie_key: ServiceKey,
    /// The page templates (checked at start-up).
    pub templates: Arc<Templates>,
    pub shops: Arc<ShopCache>,
    /// `PORTAL_PUBLIC_URL`: links, and the only `Origin` a form may come from.
    pub public_url: Url,
    /// `__Host-` prefixed, `Secure` cookies; off only for local http, where browsers refuse them.
    pub secure_cookies: bool,
    pub settings: PortalSettings,
    /// Wakes the sender when a message was queued without a first attempt (a reset request, a
    /// "password changed" notice).
    pub wake_sender: Arc<Notify>,
}

/// The customer pages' context; cheap to clone (it is added to every request).
#[derive(Clone)]
pub struct PortalContext(Arc<PortalParts>);

impl PortalContext {
    pub fn new(parts: PortalParts) -> Self {
        Self(Arc::new(parts))
    }

    pub fn cookie_names(&self) -> CookieNames {
        CookieNames { secure: self.secure_cookies }
    }

    /// The shop of a `/p/{shop_id}` address; `NotFound` for an id that is malformed or never
    /// installed.
    pub async fn find_shop(&self, shop_id: &str) -> Result<shop::Model, PortalError> {
        Ok(shop::Model::clone(&*self.shared_shop(shop_id).await?))
    }

    /// [`Self::find_shop`], as the cache holds it: for a look that needs no copy of its own.
    pub async fn shared_shop(&self, shop_id: &str) -> Result<Arc<shop::Model>, PortalError> {
        let id = ShopId::parse(shop_id).map_err(|_| PortalError::NotFound)?;
        self.shops.get(&self.db, &id).await?.ok_or(PortalError::NotFound)
    }

    /// The shop, if its portal is available; the "not available" page otherwise.
    pub(super) async fn available_shop(&self, shop_id: &str) -> Result<shop::Model, PortalError> {
        require_available(self.find_shop(shop_id).await?)
    }
}

impl Deref for PortalContext {
    type Target = PortalParts;

    fn deref(&self) -> &PortalParts {
        &self.0
    }
}

/// The shop back if its portal is available; the "not available" page otherwise.
pub(super) fn require_available(shop: shop::Model) -> Result<shop::Model, PortalError> {
    if shop.serves_portal() { Ok(shop) } else { Err(PortalError::Unavailable(Box::new(shop))) }
}
