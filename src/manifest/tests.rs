//! The shipped manifest, each rule the host applies, the per-shop issuer, and hand-edited text.

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
        (EMBEDDED.replace("min_subscription_tier = \"gold\"", "min_subscription_tier = \"diamond\""), "tier"),
        (EMBEDDED.replace("manifest_version = 1", "manifest_version = 2"), "manifest_version"),
        (EMBEDDED.replace("https://portal.example.com", "portal.example.com"), "base_url"),
        (EMBEDDED.replace("\"/webhooks\"", "\"/hooks/{id}\""), "webhooks.url \"/hooks/{id}\" holds '{'"),
        (EMBEDDED.replace("\"/webhooks\"", "\"/hooks%2\""), "webhooks.url \"/hooks%2\" has a %"),
        (EMBEDDED.replace("\"/webhooks\"", "\"/a/../webhooks\""), "webhooks.url \"/a/../webhooks\" has a ."),
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
    assert!(copy.identity().is_some());
    assert_eq!(copy.identity, manifest.identity);
}

#[test]
fn the_shipped_manifest_declares_one_openid_issuer_per_shop() {
    let manifest = Manifest::parse(EMBEDDED).unwrap();
    let identity = manifest.identity().expect("the shipped manifest must have [identity] (contract §8)");
    assert_eq!(identity.protocol, "openid-connect");
    assert_eq!(identity.issuer, "/p/{shop_id}");
}

#[test]
fn identity_is_optional_for_a_plugin_that_signs_no_one_in() {
    let start = EMBEDDED.find("[identity]").unwrap();
    let manifest = Manifest::parse(&EMBEDDED[..start]).unwrap();
    assert_eq!(manifest.identity(), None);
    let copy = manifest.for_deployment(&Url::parse("https://portal.example.com").unwrap()).unwrap();
    assert!(!copy.contains("identity"), "{copy}");
}

#[test]
fn a_broken_identity_table_is_refused_with_what_is_wrong() {
    let issuer = |value: &str| {
        EMBEDDED.replace("\"/p/{shop_id}\"", &toml::Value::String(value.to_owned()).to_string())
    };
    let cases = [
        (
            EMBEDDED.replace("\"openid-connect\"", "\"saml2\""),
            "identity.protocol must be openid-connect, not \"saml2\"",
        ),
        (
            issuer("/p/shop"),
            "identity.issuer \"/p/shop\" must hold {shop_id} exactly once, where the host puts each shop's id (found 0)",
        ),
        (
            issuer("/p/{shop_id}/x/{shop_id}"),
            "must hold {shop_id} exactly once, where the host puts each shop's id (found 2)",
        ),
        (
            issuer("https://portal.example.com/p/{shop_id}"),
            "identity.issuer \"https://portal.example.com/p/{shop_id}\" must be a path starting with / (relative to base_url)",
        ),
        (issuer("//evil.example/{shop_id}"), "must be a path starting with /"),
        (issuer("p/{shop_id}"), "must be a path starting with /"),
        (issuer("/p/{shop}/{shop_id}"), "names a placeholder other than {shop_id}"),
        (issuer("/p/{shop_id}/"), "must not end with /"),
        (issuer("/p//{shop_id}"), "empty segment"),
        (issuer("/p/../{shop_id}"), ". or .. segment"),
        (issuer("/p/{shop_id}?tenant=1"), "holds '?'"),
        (issuer("/p/{shop_id} x"), "holds ' '"),
        (
            EMBEDDED.replace(
                "protocol = \"openid-connect\"",
                "protocol = \"openid-connect\"\nscopes = [\"openid\"]",
            ),
            "unknown field `scopes`",
        ),
        (EMBEDDED.replace("protocol = \"openid-connect\"", ""), "missing field `protocol`"),
    ];
    for (text, expected) in cases {
        let err = Manifest::parse(&text).unwrap_err();
        assert!(err.0.contains(expected), "{expected}: {err}");
    }
}

#[test]
fn the_issuer_is_the_served_base_url_followed_by_the_shops_path() {
    let manifest = Manifest::parse(EMBEDDED).unwrap();
    let identity = manifest.identity().unwrap();
    let shop = ShopId::parse("shop_42").unwrap();
    for (public_url, expected) in [
        ("https://portal.example.com", "https://portal.example.com/p/shop_42"),
        ("https://portal.example.com/", "https://portal.example.com/p/shop_42"),
        ("https://Portal.Example.com:8443//", "https://portal.example.com:8443/p/shop_42"),
        ("https://example.com/portal/", "https://example.com/portal/p/shop_42"),
    ] {
        let url = Url::parse(public_url).unwrap();
        assert_eq!(identity.issuer_for(&url, &shop), expected, "{public_url}");
        // The host builds the same string from the manifest this deployment serves.
        let served = Manifest::parse(&manifest.for_deployment(&url).unwrap()).unwrap();
        let path = served.identity().unwrap().issuer.replace(SHOP_ID, shop.as_str());
        assert_eq!(format!("{}{path}", served.plugin.base_url), expected, "{public_url}");
    }
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
            let assignments: Vec<usize> = (0..lines.len()).filter(|&i| lines[i].contains(" = ")).collect();
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
