//! `manifest/plugin.toml`, what the host reads at registration (contract §1). Parsed into a struct
//! that, like the host, refuses unknown keys; [`Manifest::check`] applies the contract's other rules.
//! Its `[identity]` table (contract §8) also tells the service its per-shop OpenID Connect issuer.

use serde::{Deserialize, Serialize};
use url::Url;

use crate::{
    domain::{ShopId, SubscriptionTier},
    host::events::LifecycleEventType,
};

/// The manifest shipped with this build.
pub const EMBEDDED: &str = include_str!("../manifest/plugin.toml");

/// The whole manifest.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    /// Always 1.
    pub manifest_version: u32,
    pub plugin: Plugin,
    pub requirements: Requirements,
    /// Where and how events are delivered.
    pub webhooks: Webhooks,
    /// Buttons in the host's UI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ui: Option<Ui>,
    /// Optional for the host (a plugin that signs no one in leaves it out); ours ships it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub identity: Option<Identity>,
}

/// `[plugin]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Plugin {
    /// `^[a-z0-9-]+$`, never changes.
    pub key: String,
    /// Shown to shops.
    pub name: String,
    pub version: String,
    /// Shown to shops.
    pub description: String,
    /// Every path is relative to it.
    pub base_url: String,
}

/// `[requirements]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Requirements {
    /// The lowest tier that may install the plugin.
    pub min_subscription_tier: String,
}

/// `[webhooks]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Webhooks {
    /// `standard-webhooks-v1`.
    pub signature: String,
    /// Path of the events endpoint.
    pub url: String,
    /// The events we subscribe to.
    pub events: Vec<String>,
}

/// `[ui]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Ui {
    /// `[[ui.actions]]`.
    #[serde(default)]
    pub actions: Vec<Action>,
}

/// One `[[ui.actions]]` entry.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Action {
    /// Stable key, also the last path segment of `url`.
    pub key: String,
    /// Where the host shows it.
    pub location: String,
    /// The menu item's text.
    pub label: String,
    /// Path of the action endpoint.
    pub url: String,
    /// The lowest tier that sees the action.
    pub min_subscription_tier: String,
}

/// `[identity]`: the host signs the shop's customers in to its portal with us as the provider.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct Identity {
    /// `openid-connect`.
    pub protocol: String,
    /// A path relative to `base_url` holding [`SHOP_ID`] once, e.g. `/p/{shop_id}`.
    pub issuer: String,
}

/// Where the host puts the shop's id in `identity.issuer`.
pub const SHOP_ID: &str = "{shop_id}";

impl Identity {
    /// The shop's issuer, spelled the way the host builds it from the deployment's manifest
    /// (`base_url` is `public_url`, see [`Manifest::for_deployment`]). OpenID Connect compares issuers
    /// byte for byte, so the ID tokens' `iss` and the discovery document must use exactly this.
    pub fn issuer_for(&self, public_url: &Url, shop_id: &ShopId) -> String {
        format!("{}{}", base_url_of(public_url), self.issuer.replacen(SHOP_ID, shop_id.as_str(), 1))
    }
}

/// A manifest the host would reject, with the reason.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ManifestError(pub String);

impl Manifest {
    /// Parses and checks a manifest.
    pub fn parse(text: &str) -> Result<Self, ManifestError> {
        let manifest: Self =
            toml::from_str(text).map_err(|e| ManifestError(e.to_string().trim().to_owned()))?;
        manifest.check()?;
        Ok(manifest)
    }

    /// The contract's rules beyond the shape.
    pub fn check(&self) -> Result<(), ManifestError> {
        let fail = |m: String| Err(ManifestError(m));
        if self.manifest_version != 1 {
            return fail(format!("manifest_version is {}, the host knows only 1", self.manifest_version));
        }
        if !is_key(&self.plugin.key) {
            return fail(format!("plugin.key {:?} must match ^[a-z0-9-]+$", self.plugin.key));
        }
        for (name, value) in [
            ("plugin.name", &self.plugin.name),
            ("plugin.version", &self.plugin.version),
            ("plugin.description", &self.plugin.description),
        ] {
            if value.trim().is_empty() {
                return fail(format!("{name} must not be empty"));
            }
        }
        match Url::parse(&self.plugin.base_url) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => {}
            _ => {
                return fail(format!(
                    "plugin.base_url {:?} must be an absolute http(s) URL",
                    self.plugin.base_url
                ));
            }
        }
        check_tier("requirements.min_subscription_tier", &self.requirements.min_subscription_tier)?;
        if self.webhooks.signature != "standard-webhooks-v1" {
            return fail(format!(
                "webhooks.signature must be standard-webhooks-v1, not {:?}",
                self.webhooks.signature
            ));
        }
        check_path("webhooks.url", &self.webhooks.url)?;
        if self.webhooks.events.is_empty() {
            return fail("webhooks.events must list at least one event".to_owned());
        }
        for event in &self.webhooks.events {
            if LifecycleEventType::from_name(event).is_none() {
                return fail(format!("webhooks.events names {event:?}, which the service does not handle"));
            }
        }
        for (i, action) in self.actions().iter().enumerate() {
            let at = format!("ui.actions[{i}]");
            if !is_key(&action.key) {
                return fail(format!("{at}.key {:?} must match ^[a-z0-9-]+$", action.key));
            }
            if action.label.trim().is_empty() || action.location.trim().is_empty() {
                return fail(format!("{at} needs a label and a location"));
            }
            check_path(&format!("{at}.url"), &action.url)?;
            check_tier(&format!("{at}.min_subscription_tier"), &action.min_subscription_tier)?;
        }
        if let Some(identity) = &self.identity {
            check_identity(identity)?;
        }
        Ok(())
    }

    /// `[identity]`, when the manifest declares that the plugin signs customers in.
    pub fn identity(&self) -> Option<&Identity> {
        self.identity.as_ref()
    }

    /// The UI actions (none when there is no `[ui]`).
    pub fn actions(&self) -> &[Action] {
        self.ui.as_ref().map_or(&[], |ui| &ui.actions)
    }

    /// Every path the host will call with a signed message. (The issuer is not one: the customer's
    /// browser and the host's OpenID Connect client call it, unsigned.)
    pub fn urls(&self) -> Vec<&str> {
        std::iter::once(self.webhooks.url.as_str())
            .chain(self.actions().iter().map(|a| a.url.as_str()))
            .collect()
    }

    /// The manifest as TOML with `base_url` set to this deployment's public URL.
    pub fn for_deployment(&self, public_url: &Url) -> Result<String, ManifestError> {
        let mut copy = self.clone();
        copy.plugin.base_url = base_url_of(public_url).to_owned();
        toml::to_string(&copy).map_err(|e| ManifestError(e.to_string()))
    }
}

/// The host appends every path to `base_url`, so it must not end with a slash of its own.
fn base_url_of(public_url: &Url) -> &str {
    public_url.as_str().trim_end_matches('/')
}

fn is_key(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn check_tier(name: &str, value: &str) -> Result<(), ManifestError> {
    value.parse::<SubscriptionTier>().map(|_| ()).map_err(|e| ManifestError(format!("{name} {e}")))
}

fn check_path(name: &str, value: &str) -> Result<(), ManifestError> {
    match path_problem(value) {
        None => Ok(()),
        Some(problem) => Err(ManifestError(format!("{name} {value:?} {problem}"))),
    }
}

/// What keeps `value` from being a path the host can append to `base_url` unchanged, if anything.
fn path_problem(value: &str) -> Option<String> {
    if !is_relative(value) {
        return Some("must be a path starting with / (relative to base_url)".to_owned());
    }
    if value.contains("//") {
        return Some("has an empty segment (//)".to_owned());
    }
    if value.split('/').any(|segment| segment == "." || segment == "..") {
        // A URL parser resolves these away, so the host would call another path.
        return Some("has a . or .. segment".to_owned());
    }
    if let Some(c) = value.chars().find(|&c| !is_path_char(c)) {
        return Some(format!("holds {c:?}, which a URL path cannot hold unescaped"));
    }
    let bytes = value.as_bytes();
    let escapes_are_whole = bytes
        .iter()
        .enumerate()
        .filter(|(_, b)| **b == b'%')
        .all(|(i, _)| bytes.get(i + 1..i + 3).is_some_and(|hex| hex.iter().all(u8::is_ascii_hexdigit)));
    if !escapes_are_whole {
        return Some("has a % that does not start an escape such as %20".to_owned());
    }
    None
}

fn is_relative(value: &str) -> bool {
    value.starts_with('/') && !value.starts_with("//")
}

/// RFC 3986 `pchar` and `/`: unreserved, sub-delims, `:`, `@` and the `%` of an escape.
fn is_path_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "-._~!$&'()*+,;=:@/%".contains(c)
}

/// The host fills in [`SHOP_ID`] and then uses the issuer as it is, so whatever surrounds the
/// placeholder must already be a clean path.
fn check_identity(identity: &Identity) -> Result<(), ManifestError> {
    let fail = |m: String| Err(ManifestError(m));
    if identity.protocol != "openid-connect" {
        return fail(format!("identity.protocol must be openid-connect, not {:?}", identity.protocol));
    }
    let issuer = &identity.issuer;
    if !is_relative(issuer) {
        return check_path("identity.issuer", issuer);
    }
    let placeholders = issuer.matches(SHOP_ID).count();
    if placeholders != 1 {
        return fail(format!(
            "identity.issuer {issuer:?} must hold {SHOP_ID} exactly once, where the host puts each shop's id \
             (found {placeholders})"
        ));
    }
    let filled = issuer.replacen(SHOP_ID, "shop", 1);
    if filled.contains(['{', '}']) {
        return fail(format!("identity.issuer {issuer:?} names a placeholder other than {SHOP_ID}"));
    }
    if let Some(problem) = path_problem(&filled) {
        return fail(format!("identity.issuer {issuer:?} {problem}"));
    }
    if issuer.ends_with('/') {
        // Discovery appends /.well-known/openid-configuration, and issuers compare byte for byte.
        return fail(format!("identity.issuer {issuer:?} must not end with /"));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
