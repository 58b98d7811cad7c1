//! `portal-invites simulate`: acts as the host against a running instance, one message at a time,
//! and prints each answer readably (what `stripe trigger` is to Stripe).

use std::process::ExitCode;

use chrono::Utc;
use clap::{Args, Subcommand};

use super::{
    host_client::{self, CustomerArgs, HostClient, ShopArgs, fresh_version},
    host_messages::{
        ACCESS_PATH, ACTION_PATH, Staff, StarMenu, WEBHOOKS_PATH, customer_deleted, customer_updated,
        plugin_installed, plugin_uninstalled, shop_updated,
    },
};
use crate::signature::WebhookSecret;

/// Options of `simulate`.
#[derive(Debug, Args)]
pub struct SimulateArgs {
    /// The instance to send to.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub url: String,
    /// The signing secret (default: the first of PORTAL_WEBHOOK_SECRETS).
    #[arg(long, env = "PORTAL_WEBHOOK_SECRETS", hide_env_values = true)]
    pub secret: String,
    /// What to send.
    #[command(subcommand)]
    pub event: Event,
}

/// The messages `simulate` can send.
#[derive(Debug, Subcommand)]
pub enum Event {
    /// plugin.installed: the shop installs the plugin (with --portal-base or --portal-url, along with
    /// the host's own Customer Portal, which signs customers in through OpenID Connect).
    Install {
        #[command(flatten)]
        shop: ShopArgs,
    },
    /// plugin.uninstalled: the shop removes it.
    Uninstall {
        #[command(flatten)]
        shop: ShopArgs,
    },
    /// shop.updated: tier, portal activation, name, time zone, the host's own portal…
    UpdateShop {
        #[command(flatten)]
        shop: ShopArgs,
    },
    /// customer.updated: a profile changed.
    UpdateCustomer {
        #[command(flatten)]
        shop: ShopArgs,
        #[command(flatten)]
        customer: CustomerArgs,
    },
    /// customer.deleted: a profile was deleted.
    DeleteCustomer {
        #[command(flatten)]
        shop: ShopArgs,
        #[command(flatten)]
        customer: CustomerArgs,
    },
    /// action.invoked: the staff member picks "Send Customer Portal Invitation" in the star menu.
    Invoke {
        #[command(flatten)]
        shop: ShopArgs,
        #[command(flatten)]
        customer: CustomerArgs,
        /// The interaction (a new one per click).
        #[arg(long)]
        interaction_id: Option<String>,
    },
    /// dialog.submitted: the staff member chooses email or SMS and clicks Send.
    Submit {
        #[command(flatten)]
        shop: ShopArgs,
        #[command(flatten)]
        customer: CustomerArgs,
        /// email or sms.
        #[arg(long, default_value = "email")]
        channel: String,
        /// The interaction (repeat one to resubmit the same dialog).
        #[arg(long)]
        interaction_id: Option<String>,
    },
    /// action.invoked: the staff member picks "Customer Portal access": where the customer stands.
    Access {
        #[command(flatten)]
        shop: ShopArgs,
        #[command(flatten)]
        customer: CustomerArgs,
        /// The interaction (a new one per click).
        #[arg(long)]
        interaction_id: Option<String>,
    },
    /// dialog.submitted of "Customer Portal access": the staff member picks an act.
    AccessSubmit {
        #[command(flatten)]
        shop: ShopArgs,
        #[command(flatten)]
        customer: CustomerArgs,
        /// password_reset, end_sessions or cancel_invitation.
        #[arg(long)]
        action: String,
        /// The interaction (repeat one to resubmit the same dialog).
        #[arg(long)]
        interaction_id: Option<String>,
    },
}

/// Who installs and removes the plugin in simulated messages.
const SIMULATOR: Staff<'static> = Staff { id: "usr_simulator", name: "Simulator" };

/// Sends one message and prints the answer.
pub async fn run(args: SimulateArgs) -> ExitCode {
    let secret_text = args.secret.split_whitespace().next().unwrap_or_default().to_owned();
    let secret = match WebhookSecret::parse(&secret_text) {
        Ok(secret) => secret,
        Err(e) => {
            eprintln!("error: --secret {e}; pass the whsec_… secret the instance is configured with");
            return ExitCode::from(2);
        }
    };
    let client = match HostClient::new(&args.url, secret) {
        Ok(client) => client,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::FAILURE;
        }
    };
    let now = Utc::now();
    let version = fresh_version(now);
    let interaction = |given: &Option<String>| given.clone().unwrap_or_else(|| crate::random::id("int"));
    let star_menu = |shop, customer, interaction| StarMenu {
        shop,
        shop_version: version,
        customer,
        user: host_client::FRONT_DESK,
        interaction,
    };
    let (path, message) = match &args.event {
        Event::Install { shop } => (WEBHOOKS_PATH, plugin_installed(&shop.shop(), version, SIMULATOR, now)),
        Event::Uninstall { shop } => (WEBHOOKS_PATH, plugin_uninstalled(&shop.shop_id, SIMULATOR, now)),
        Event::UpdateShop { shop } => {
            (WEBHOOKS_PATH, shop_updated(&shop.shop_id, shop.shop().snapshot(version), now))
        }
        Event::UpdateCustomer { shop, customer } => {
            (WEBHOOKS_PATH, customer_updated(&shop.shop_id, customer.customer().snapshot(version), now))
        }
        Event::DeleteCustomer { shop, customer } => {
            (WEBHOOKS_PATH, customer_deleted(&shop.shop_id, &customer.customer_id, version, now))
        }
        Event::Invoke { shop, customer, interaction_id } => {
            let interaction = interaction(interaction_id);
            let customer = customer.customer().snapshot(version);
            (ACTION_PATH, star_menu(&shop.shop(), &customer, &interaction).invoked(now))
        }
        Event::Submit { shop, customer, channel, interaction_id } => {
            let interaction = interaction(interaction_id);
            let customer = customer.customer().snapshot(version);
            (ACTION_PATH, star_menu(&shop.shop(), &customer, &interaction).submitted(Some(channel), now))
        }
        Event::Access { shop, customer, interaction_id } => {
            let interaction = interaction(interaction_id);
            let customer = customer.customer().snapshot(version);
            (ACCESS_PATH, star_menu(&shop.shop(), &customer, &interaction).access_invoked(now))
        }
        Event::AccessSubmit { shop, customer, action, interaction_id } => {
            let interaction = interaction(interaction_id);
            let customer = customer.customer().snapshot(version);
            (
                ACCESS_PATH,
                star_menu(&shop.shop(), &customer, &interaction).access_submitted(Some(action), now),
            )
        }
    };
    println!(
        "→ {} for {} to {}{path}",
        message["type"].as_str().unwrap_or(""),
        message["shop_id"].as_str().unwrap_or(""),
        args.url.trim_end_matches('/')
    );
    match client.send(path, &message).await {
        Ok(answer) => {
            println!("← {}", host_client::describe(&answer));
            if (200..300).contains(&answer.status) { ExitCode::SUCCESS } else { ExitCode::FAILURE }
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
