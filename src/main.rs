//! The `mailrestore` binary: a thin shell over [`mailrestore::cli::run`].

fn main() -> std::process::ExitCode {
    mailrestore::cli::run()
}
