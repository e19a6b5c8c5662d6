//! The only code that touches remote sockets.
//!
//! Owns: TLS configuration (`tls`), reachability probes (`probe`) and the
//! async IMAP driver (`imap`) that moves bytes between a TCP/TLS stream and
//! the sans-I/O core in `protocol::imap`. Must not: make protocol decisions
//! (those live in `protocol/`), or ever connect without certificate
//! verification; plain text is allowed only to loopback addresses.

pub mod dav;
pub mod imap;
pub mod probe;
pub mod tls;
