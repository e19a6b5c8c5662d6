//! Sans-I/O protocol cores.
pub mod dav;
pub mod imap;
