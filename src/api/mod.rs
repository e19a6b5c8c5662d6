//! The HTTP/JSON API on the Unix socket (README "The socket API",
//! docs/operations.md §5, `GET /v1/openapi.json`): the wire types, the server
//! the daemon runs, and the client the CLI uses.
//!
//! Invariant: only the types in [`wire`] cross the socket; the server checks
//! the peer's uid (SO_PEERCRED) before it reads a byte of the request.

pub mod client;
pub mod metrics;
pub mod server;
pub mod wire;
