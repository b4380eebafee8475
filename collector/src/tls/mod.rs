//! TLS for the listeners and for the connections the collector opens itself, with rustls and
//! ring as its one crypto provider (no OpenSSL).
//!
//! `pem.rs` reads certificates and keys from PEM files with errors that name the file;
//! `client.rs` builds the client side (scrapes and webhooks over `https://`); `server.rs` the
//! listeners' side, reloaded when its files change; `spiffe.rs` verifies client certificates
//! as SPIFFE X.509-SVIDs, each against the bundle of its own trust domain.

pub mod client;
pub mod pem;
pub mod server;
pub mod spiffe;
