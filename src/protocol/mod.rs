//! Sans-I/O protocol cores.
pub mod imap;
