//! `portal-invites demo`: the whole story on the embedded default, with nothing to set up. Starts the
//! service (SQLite, email and SMS written to files) and a stand-in host portal that signs customers in
//! through it (OpenID Connect, as a host would), installs a demo shop with that portal, invites a demo
//! customer by email through the star-menu action, and prints the set-up link and where the email is.

use std::process::ExitCode;

use chrono::Utc;
use sea_orm::{ColumnTrait, EntityTrait, QueryFilter};

use super::{
    host_client::{self, HostClient, fresh_version},
    host_messages::{
        ACTION_PATH, Customer, Shop, Staff, StarMenu, WEBHOOKS_PATH, customer_updated, plugin_installed,
    },
    standin_portal::{HostRegistration, StandIn},
};
use crate::{
    app::App, clock::Clock, config::Settings, entities::outbox_message, signature::WebhookSecret, telemetry,
};

/// Runs the demo until Ctrl-C.
pub async fn run(mut settings: Settings) -> ExitCode {
    let generated = settings.webhook_secrets.is_empty();
    if generated {
        let secret = WebhookSecret::generate();
        settings.webhook_secrets = vec![WebhookSecret::parse(&secret).expect("a generated secret parses")];
        println!("signing secret for this run (for `portal-invites simulate --secret …`): {secret}");
    }
    let secret = settings.webhook_secrets[0].clone();
    // Keep the terminal for the story; PORTAL_LOG still turns logging up.
    let filter = if std::env::var("PORTAL_LOG").is_err() { "warn" } else { settings.log_filter.as_str() };
    let _log = telemetry::init(filter, settings.log_format);
    let outbox_dir = settings.outbox_dir.clone();
    let registration =
        match HostRegistration::of_embedded_manifest(settings.public_url.clone(), secret.text()) {
            Ok(registration) => registration,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::FAILURE;
            }
        };
    let public_url = settings.public_url.as_str().trim_end_matches('/').to_owned();
    let app = match App::start(settings, Clock::system()).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let standin = match StandIn::start(registration, Clock::system()).await {
        Ok(standin) => standin,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let base = format!("http://{}", app.local_addr());
    println!("portal-invites is running at {base}");
    let shop = Shop { portal: Some(standin.portal(SHOP_ID)), ..Shop::example(SHOP_ID) };
    standin.add_shop(&shop.id, &shop.name);
    println!(
        "A stand-in host portal is running at {} (the host's side of sign-in, with the client \
         credentials a host uses)",
        standin.base_url()
    );
    match story(&app, &base, secret, &shop).await {
        Ok(Some(message)) => {
            let path = crate::delivery::files::MessageFile::of(&message).path(&outbox_dir, "eml");
            println!("\nThe invitation email: {}", path.display());
            match std::fs::read_to_string(&path)
                .ok()
                .and_then(|text| setup_link(&text, &format!("{public_url}/p/{SHOP_ID}")))
            {
                Some(link) => {
                    println!("Open the set-up link in a browser and choose a password:\n    {link}")
                }
                None => println!("Open the email to find the set-up link, and choose a password."),
            }
            if let Some(portal) = &shop.portal {
                println!(
                    "You land in the stand-in host portal at {}, signed in through OpenID Connect, with the \
                     ID token's claims shown.",
                    portal.url
                );
            }
            println!("The login page: {public_url}/p/{SHOP_ID}/login");
            println!(
                "The shop's OpenID Connect discovery: {public_url}/p/{SHOP_ID}/.well-known/openid-configuration"
            );
        }
        Ok(None) => {}
        Err(e) => eprintln!("error: {e}"),
    }
    println!("\nPress Ctrl-C to stop.");
    let stopped = app.run_until_signal().await;
    standin.stop().await;
    match stopped {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The demo's shop.
const SHOP_ID: &str = "shop_demo";

/// Installs the demo shop (with its `portal`) and invites a fresh demo customer; returns the
/// invitation's outbox row.
async fn story(
    app: &App,
    base: &str,
    secret: WebhookSecret,
    shop: &Shop,
) -> Result<Option<outbox_message::Model>, String> {
    let client = HostClient::new(base, secret)?;
    let now = Utc::now();
    let version = fresh_version(now);
    // A new customer each run, so the demo can be run again on the same database.
    let customer_id = format!("cus_demo_{}", now.timestamp());
    let email = format!("jana+{}@example.com", now.timestamp());
    let customer = Customer::example(&customer_id, Some(&email), Some("+61412345678")).snapshot(version);
    let click = StarMenu {
        shop,
        shop_version: version,
        customer: &customer,
        user: host_client::FRONT_DESK,
        interaction: "int_demo",
    };
    let submission = StarMenu { interaction: &format!("int_demo_{}", now.timestamp()), ..click.clone() };
    let steps = [
        (
            "1. The shop installs the plugin",
            WEBHOOKS_PATH,
            plugin_installed(shop, version, Staff { id: "usr_demo", name: "Demo owner" }, now),
        ),
        (
            "2. The host sends the customer's profile",
            WEBHOOKS_PATH,
            customer_updated(&shop.id, customer.clone(), now),
        ),
        ("3. Star menu > Send Customer Portal Invitation", ACTION_PATH, click.invoked(now)),
        (
            "4. The staff member chooses email and clicks Send",
            ACTION_PATH,
            submission.submitted(Some("email"), now),
        ),
    ];
    for (title, path, message) in steps {
        let answer = client.send(path, &message).await?;
        println!("\n{title}\n  {}", host_client::describe(&answer).replace('\n', "\n  "));
        if !(200..300).contains(&answer.status) {
            return Ok(None);
        }
    }
    let row = outbox_message::Entity::find()
        .filter(outbox_message::Column::CustomerId.eq(customer_id.as_str()))
        .one(app.db().conn())
        .await
        .map_err(|e| e.to_string())?;
    Ok(row)
}

/// The set-up link in a written email (its text part may be quoted-printable, with soft breaks).
fn setup_link(eml: &str, portal_url: &str) -> Option<String> {
    let unfolded = eml.replace("=\r\n", "").replace("=\n", "");
    let prefix = format!("{portal_url}/setup/");
    let start = unfolded.find(&prefix)?;
    let token: String = unfolded[start + prefix.len()..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
        .collect();
    (token.len() == 43).then(|| format!("{prefix}{token}"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_link_is_found_across_soft_line_breaks() {
        let token = "A".repeat(43);
        let eml = format!(
            "Content-Transfer-Encoding: quoted-printable\r\n\r\nhttp://127.0.0.1:8080/setup/{}=\r\n{}\r\n",
            &token[..20],
            &token[20..]
        );
        assert_eq!(
            super::setup_link(&eml, "http://127.0.0.1:8080"),
            Some(format!("http://127.0.0.1:8080/setup/{token}"))
        );
        assert_eq!(super::setup_link("no link here", "http://127.0.0.1:8080"), None);
    }
}
