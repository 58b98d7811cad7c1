//! `manifest/plugin.toml`, what the host reads at registration (contract §1). Parsed into a struct
//! that, like the host, refuses unknown keys; [`Manifest::check`] applies the contract's other rules.

use serde::{Deserialize, Serialize};
use url::Url;

use crate::{domain::SubscriptionTier, host::events::LifecycleEventType};

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
        Ok(())
    }

    /// The UI actions (none when there is no `[ui]`).
    pub fn actions(&self) -> &[Action] {
        self.ui.as_ref().map_or(&[], |ui| &ui.actions)
    }

    /// Every path the host will call.
    pub fn urls(&self) -> Vec<&str> {
        std::iter::once(self.webhooks.url.as_str())
            .chain(self.actions().iter().map(|a| a.url.as_str()))
            .collect()
    }

    /// The manifest as TOML with `base_url` set to this deployment's public URL.
    pub fn for_deployment(&self, public_url: &Url) -> Result<String, ManifestError> {
        let mut copy = self.clone();
        copy.plugin.base_url = public_url.as_str().trim_end_matches('/').to_owned();
        toml::to_string(&copy).map_err(|e| ManifestError(e.to_string()))
    }
}

fn is_key(value: &str) -> bool {
    !value.is_empty() && value.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

fn check_tier(name: &str, value: &str) -> Result<(), ManifestError> {
    value.parse::<SubscriptionTier>().map(|_| ()).map_err(|e| ManifestError(format!("{name} {e}")))
}

fn check_path(name: &str, value: &str) -> Result<(), ManifestError> {
    if value.starts_with('/') && !value.starts_with("//") && !value.contains(['?', '#', ' ']) {
        Ok(())
    } else {
        Err(ManifestError(format!("{name} {value:?} must be a path starting with / (relative to base_url)")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::hostile;
    use proptest::prelude::*;

    #[test]
    fn the_shipped_manifest_is_valid_and_subscribes_to_every_handled_event() {
        let manifest = Manifest::parse(EMBEDDED).unwrap();
        let mut listed: Vec<&str> = manifest.webhooks.events.iter().map(String::as_str).collect();
        let mut handled: Vec<&str> = LifecycleEventType::ALL.iter().map(|e| e.name()).collect();
        listed.sort_unstable();
        handled.sort_unstable();
        assert_eq!(listed, handled);
    }

    #[test]
    fn unknown_keys_are_rejected_like_the_host_does() {
        let text = EMBEDDED.replace("[requirements]", "[requirements]\nmax_shops = 3");
        let err = Manifest::parse(&text).unwrap_err();
        assert!(err.0.contains("max_shops"), "{err}");
    }

    #[test]
    fn contract_rules_are_checked() {
        let cases = [
            (EMBEDDED.replace("customer-portal-invitations", "Customer Portal"), "plugin.key"),
            (EMBEDDED.replace("standard-webhooks-v1", "hmac"), "webhooks.signature"),
            (EMBEDDED.replace("\"/webhooks\"", "\"webhooks\""), "webhooks.url"),
            (EMBEDDED.replace("\"shop.updated\"", "\"order.created\""), "order.created"),
            (
                EMBEDDED.replace("min_subscription_tier = \"gold\"", "min_subscription_tier = \"diamond\""),
                "tier",
            ),
            (EMBEDDED.replace("manifest_version = 1", "manifest_version = 2"), "manifest_version"),
            (EMBEDDED.replace("https://portal.example.com", "portal.example.com"), "base_url"),
        ];
        for (text, expected) in cases {
            let err = Manifest::parse(&text).unwrap_err();
            assert!(err.0.contains(expected), "{expected}: {err}");
        }
    }

    #[test]
    fn the_deployment_copy_points_at_the_public_url() {
        let manifest = Manifest::parse(EMBEDDED).unwrap();
        let text = manifest.for_deployment(&Url::parse("https://portal.shop.example/").unwrap()).unwrap();
        let copy = Manifest::parse(&text).unwrap();
        assert_eq!(copy.plugin.base_url, "https://portal.shop.example");
        assert_eq!(copy.webhooks, manifest.webhooks);
    }

    /// The shipped manifest with a few lines replaced by hostile text, a value swapped for another,
    /// or lines dropped: what a hand-edited manifest looks like.
    fn near_manifest() -> impl Strategy<Value = String> {
        let edit = prop_oneof![
            (any::<prop::sample::Index>(), hostile::text()).prop_map(|(i, t)| (i, Some(t))),
            (any::<prop::sample::Index>(), Just(None)),
        ];
        let value = prop_oneof![
            hostile::text().prop_map(|t| toml::Value::String(t).to_string()),
            any::<i64>().prop_map(|n| n.to_string()),
            Just("[]".to_owned()),
            Just("{}".to_owned()),
        ];
        (prop::collection::vec(edit, 1..4), any::<prop::sample::Index>(), value).prop_map(
            |(edits, which, value)| {
                let mut lines: Vec<String> = EMBEDDED.lines().map(str::to_owned).collect();
                let assignments: Vec<usize> =
                    (0..lines.len()).filter(|&i| lines[i].contains(" = ")).collect();
                let target = *which.get(&assignments);
                let key = lines[target].split(" = ").next().unwrap_or_default().to_owned();
                lines[target] = format!("{key} = {value}");
                for (at, replacement) in edits {
                    let i = at.index(lines.len());
                    match replacement {
                        Some(text) => lines[i] = text,
                        None => {
                            lines.remove(i);
                        }
                    }
                }
                lines.join("\n")
            },
        )
    }

    proptest! {
        #[test]
        fn any_text_is_a_manifest_or_an_error(text in prop_oneof![hostile::text(), near_manifest()]) {
            if let Ok(manifest) = Manifest::parse(&text) {
                // What we accept, the deployment copy keeps accepting.
                let copy = manifest.for_deployment(&Url::parse("https://portal.example.com").unwrap());
                prop_assert!(copy.is_ok_and(|copy| Manifest::parse(&copy).is_ok()));
            }
        }
    }
}
