//! The host-facing edge: Standard Webhooks signatures, the envelope and its events, de-duplication,
//! problem answers, and the endpoints the manifest names (`/webhooks`; the star-menu action goes
//! beside it in `actions`).

pub mod actions;
pub mod dedupe;
pub mod dialog;
pub mod events;
pub mod intake;
pub mod lifecycle_bulk;
pub mod lifecycle_writer;
pub mod problem;
pub mod webhooks;
