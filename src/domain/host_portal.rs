//! The host's own Customer Portal for a shop (contract §4's `portal` object): where customers land,
//! and the addresses the host may ask us to send them back to when it signs them in (§8).
//!
//! Every address is compared by exact string later (a redirect URI must match byte for byte), so they
//! are kept as the host wrote them, after checking that each is an absolute `https` URL (or `http`
//! on a loopback host, for a host's development setup) without a fragment.

use serde::{Deserialize, Serialize};
use url::{Host, Url};

/// Longest address we keep, in bytes.
pub const MAX_URL: usize = 2000;
/// Most redirect URIs of one kind a shop may register.
pub const MAX_URIS: usize = 20;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostPortal {
    /// The portal's start page, where a customer is sent after logging in on our pages.
    pub url: String,
    /// Where authorization responses may go (exact match).
    pub redirect_uris: Vec<String>,
    /// Where a logout may send the customer back to (exact match).
    #[serde(default)]
    pub post_logout_redirect_uris: Vec<String>,
}

/// Why a `portal` object was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidPortal {
    pub field: String,
    pub reason: String,
}

impl HostPortal {
    /// Checks every address of a `portal` object as the host sent it.
    pub fn parse(
        url: &str,
        redirect_uris: &[String],
        post_logout_redirect_uris: &[String],
    ) -> Result<Self, InvalidPortal> {
        check_url("url", url)?;
        check_list("redirect_uris", redirect_uris)?;
        if redirect_uris.is_empty() {
            return Err(invalid("redirect_uris", "names no address; the host could not sign anyone in"));
        }
        check_list("post_logout_redirect_uris", post_logout_redirect_uris)?;
        Ok(Self {
            url: url.to_owned(),
            redirect_uris: redirect_uris.to_vec(),
            post_logout_redirect_uris: post_logout_redirect_uris.to_vec(),
        })
    }

    /// Whether `uri` is one of the registered redirect URIs, byte for byte.
    pub fn allows_redirect(&self, uri: &str) -> bool {
        self.redirect_uris.iter().any(|r| r == uri)
    }

    /// Whether `uri` is one of the registered post-logout redirect URIs, byte for byte.
    pub fn allows_post_logout_redirect(&self, uri: &str) -> bool {
        self.post_logout_redirect_uris.iter().any(|r| r == uri)
    }

    /// The stored form (a JSON object).
    pub fn to_stored(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// Reads the stored form back; `None` for a row without a portal or one that cannot be read.
    pub fn from_stored(stored: Option<&str>) -> Option<Self> {
        serde_json::from_str(stored?).ok()
    }
}

fn invalid(field: &str, reason: &str) -> InvalidPortal {
    InvalidPortal { field: field.to_owned(), reason: reason.to_owned() }
}

fn check_list(field: &str, uris: &[String]) -> Result<(), InvalidPortal> {
    if uris.len() > MAX_URIS {
        return Err(invalid(field, &format!("names more than {MAX_URIS} addresses")));
    }
    for (i, uri) in uris.iter().enumerate() {
        check_url(&format!("{field}[{i}]"), uri)?;
    }
    Ok(())
}

fn check_url(field: &str, raw: &str) -> Result<(), InvalidPortal> {
    if raw.len() > MAX_URL {
        return Err(invalid(field, &format!("is longer than {MAX_URL} bytes")));
    }
    let url = Url::parse(raw).map_err(|e| invalid(field, &format!("is not an absolute URL ({e})")))?;
    if url.fragment().is_some() {
        return Err(invalid(field, "has a fragment, which a redirect cannot carry"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(invalid(field, "carries credentials"));
    }
    let loopback = match url.host() {
        Some(Host::Domain(name)) => name == "localhost",
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => return Err(invalid(field, "has no host")),
    };
    match url.scheme() {
        "https" => Ok(()),
        "http" if loopback => Ok(()),
        _ => Err(invalid(field, "must be an https URL (http only on a loopback host)")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::hostile;
    use proptest::prelude::*;

    fn uris(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    #[test]
    fn the_contracts_example_is_accepted_and_matched_exactly() {
        let portal = HostPortal::parse(
            "https://my.workshop.example/portal/shop_8f2k",
            &uris(&["https://my.workshop.example/portal/oidc/callback"]),
            &uris(&["https://my.workshop.example/portal/shop_8f2k/signed-out"]),
        )
        .unwrap();
        assert!(portal.allows_redirect("https://my.workshop.example/portal/oidc/callback"));
        for near in [
            "https://my.workshop.example/portal/oidc/callback/",
            "https://my.workshop.example/portal/oidc/callback?x=1",
            "https://MY.workshop.example/portal/oidc/callback",
            "https://my.workshop.example/portal/oidc/Callback",
        ] {
            assert!(!portal.allows_redirect(near), "{near}");
        }
        assert!(
            portal.allows_post_logout_redirect("https://my.workshop.example/portal/shop_8f2k/signed-out")
        );
        assert_eq!(HostPortal::from_stored(Some(&portal.to_stored())), Some(portal));
    }

    #[test]
    fn unsafe_addresses_are_refused_with_the_field_named() {
        let ok = uris(&["https://h.example/cb"]);
        let refused =
            |url: &str, redirects: &[&str]| HostPortal::parse(url, &uris(redirects), &[]).unwrap_err();
        assert_eq!(refused("http://h.example/p", &["https://h.example/cb"]).field, "url");
        assert_eq!(refused("https://h.example/p", &["https://h.example/cb#x"]).field, "redirect_uris[0]");
        assert_eq!(refused("https://h.example/p", &["/relative"]).field, "redirect_uris[0]");
        assert_eq!(refused("https://h.example/p", &["javascript:alert(1)"]).field, "redirect_uris[0]");
        assert_eq!(refused("https://u:p@h.example/p", &["https://h.example/cb"]).field, "url");
        assert_eq!(refused("https://h.example/p", &[]).field, "redirect_uris");
        let many: Vec<String> = (0..=MAX_URIS).map(|i| format!("https://h.example/{i}")).collect();
        assert!(HostPortal::parse("https://h.example/p", &ok, &many).is_err());
        // A host's development setup on loopback may use http.
        HostPortal::parse("http://127.0.0.1:9000/p", &uris(&["http://localhost:9000/cb"]), &ok).unwrap();
    }

    proptest! {
        #[test]
        fn any_text_is_a_portal_or_an_error(url in hostile::text(), redirect in hostile::text()) {
            if let Ok(portal) = HostPortal::parse(&url, std::slice::from_ref(&redirect), &[]) {
                prop_assert!(portal.allows_redirect(&redirect));
            }
        }
    }
}
