//! The shipped `mailrestore` binary holds no test support: the sandbox crate
//! (test servers, demo fixtures, process code) and `tempfile` are not among its
//! normal dependencies, and none of the sandbox's code or embedded server
//! configuration text is linked into it.

use std::path::Path;
use std::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_mailrestore");
const ROOT: &str = env!("CARGO_MANIFEST_DIR");

#[test]
fn normal_dependencies_hold_no_test_support() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let out = Command::new(cargo)
        .args(["tree", "--offline", "-e", "normal", "-p", "mailrestore"])
        .args(["--prefix", "none", "--format", "{p}", "--manifest-path"])
        .arg(Path::new(ROOT).join("Cargo.toml"))
        .output()
        .expect("run cargo tree");
    assert!(
        out.status.success(),
        "cargo tree failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let tree = String::from_utf8(out.stdout).expect("cargo tree prints UTF-8");
    let crates: Vec<&str> = tree
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(
        crates.contains(&"mailrestore") && crates.contains(&"tokio"),
        "cargo tree listed no dependencies: {tree}"
    );
    // jiff: the tests' own time library; the binary has one, chrono.
    for test_only in [
        "mailrestore-sandbox",
        "tempfile",
        "ureq",
        "utf7-imap",
        "jiff",
    ] {
        assert!(
            !crates.contains(&test_only),
            "{test_only} is a normal dependency of the shipped binary:\n{tree}"
        );
    }
}

#[test]
fn the_binary_holds_no_sandbox_code_or_text() {
    let binary = std::fs::read(BIN).expect("read the mailrestore binary");
    // Symbols of any function of the sandbox crate carry its name.
    assert!(
        !contains(&binary, b"mailrestore_sandbox"),
        "{BIN} links code of the mailrestore-sandbox crate"
    );
    // The server configurations the sandbox embeds, line by line.
    let dir = Path::new(ROOT).join("fixtures/servers");
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).expect("fixtures/servers") {
        let text = std::fs::read_to_string(entry.expect("a fixture").path()).expect("a fixture");
        for line in text.lines().filter(|l| distinctive(l)) {
            assert!(
                !contains(&binary, line.as_bytes()),
                "{BIN} holds sandbox configuration text: {line:?}"
            );
            checked += 1;
        }
    }
    assert!(checked > 20, "only {checked} fixture lines were checked");
    // The control: the binary does hold its own texts.
    assert!(contains(&binary, b"master_password_file"));
}

/// A line long and specific enough that only the sandbox would hold it.
fn distinctive(line: &str) -> bool {
    let line = line.trim();
    line.len() >= 24 && !line.starts_with('#') && line.contains(' ')
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(haystack, needle).is_some()
}
