//! mailrestore: restore points for a mail host.
//!
//! The library holds every piece of the daemon and the CLI; `main.rs` is a thin
//! shell over [`cli::run`]. See ARCHITECTURE.md for the code map and invariants.

pub mod api;
pub mod blob;
pub mod cli;
pub mod config;
pub mod daemon;
pub mod error_code;
pub mod failpoint;
pub mod index;
pub mod jobs;
pub mod manifest;
pub mod net;
pub mod notify;
pub mod points;
pub mod protocol;
pub mod prune;
pub mod repo;
pub mod restore;
pub mod retention;
pub mod schedule;
pub mod scheduler;
pub mod secret;
pub mod snapshot;
pub mod state;
pub mod store;
pub mod time;
pub mod verify;
