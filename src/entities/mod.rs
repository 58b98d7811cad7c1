//! SeaORM entities, one per table. Timestamps are milliseconds since the Unix epoch
//! (see [`crate::clock::to_millis`]).

pub mod audit_event;
pub mod customer;
pub mod invitation;
pub mod login_throttle;
pub mod oidc_grant;
pub mod oidc_request;
pub mod outbox_message;
pub mod portal_account;
pub mod service_key;
pub mod session;
pub mod shop;
pub mod signing_key;
pub mod sms_report;
pub mod staff_act;
pub mod token;
pub mod webhook_message;
