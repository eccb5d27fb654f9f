//! dockyard-registry: a distribution-spec client. Authentication (anonymous
//! and credentialed bearer tokens, basic auth, Docker config and credential
//! helpers), pulls streamed into the store and verified, pushes that skip
//! and mount what the registry has, tags, login.
//!
//! Built on reqwest directly rather than a higher-level client so that
//! blobs stream into the store while hashed, partial blobs resume with
//! Range requests, expired tokens are refreshed on `invalid_token`, and
//! every request has bounded retries honouring `Retry-After`.

pub mod auth;
pub mod client;
pub mod error;
pub mod lazy;
pub mod manifest;
pub mod pull;
pub mod push;
pub mod sources;
pub mod tags;
pub mod tls;

pub use auth::Credentials;
pub use client::{read_cert_dir, ClientCert, ClientOptions, HostOptions, Registry, Scope};
pub use error::{RegistryError, Result};
pub use pull::{PullOptions, Pulled};
pub use push::{PushOptions, Pushed, PushedIndex};
