//! Values the service reasons about, each parsed once where it enters (parse, don't validate).

pub mod channel;
pub mod contact;
pub mod delivery_failure;
pub mod host_portal;
#[cfg(test)]
pub mod hostile;
pub mod ids;
pub mod raw_token;
pub mod shop;
pub mod staff;

pub use channel::Channel;
pub use contact::{E164Number, EmailAddress, InvalidContact, Text};
pub use delivery_failure::DeliveryFailure;
pub use host_portal::HostPortal;
pub use ids::{CustomerId, InteractionId, InvalidId, ShopId, WebhookId};
pub use raw_token::RawToken;
pub use shop::{Locale, SubscriptionTier, TimeZone};
pub use staff::StaffMember;
