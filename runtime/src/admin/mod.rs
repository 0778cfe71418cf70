//! The admin door: an HTTP/JSON API on loopback, and the client the CLI uses to call it.
//! The API is described in `docs/admin-api.md`.

pub mod api;
pub mod client;
mod deployments;
mod groups;
mod prometheus;
mod records;
mod server;
mod state;
mod topics;

pub use server::router;
