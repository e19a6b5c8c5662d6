//! `quickstart`: the mailrestore story on a sandbox.
//!
//! Real Dovecot, Radicale and Postfix on loopback ports in a temp dir, a demo
//! mailbox for alice@example.org, and the `mailrestore` daemon on its own
//! socket, driven through the `mailrestore` command line exactly as an
//! operator (or, through the same socket, the panel) would: a restore point,
//! an accidental deletion, a restore, and what came back. Everything stops
//! and is removed at the end (or at Ctrl-C with `--keep`).
//!
//! The `mailrestore` binary is the one beside this executable (cargo builds
//! both into the same `target/` folder), or the one `--mailrestore PATH` names.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use mailrestore_sandbox::daemon::{DaemonFiles, write_config};
use mailrestore_sandbox::raw_http::RawHttp;
use mailrestore_sandbox::raw_imap::RawImap;
use mailrestore_sandbox::{Sandbox, SandboxOptions, demo};
use serde_json::Value;

const USER: &str = "alice@example.org";
/// Alice's DAV home on Radicale, her name percent-encoded as one segment.
const HOME: &str = "/alice%40example.org/";

type Failure = String;

fn main() -> ExitCode {
    let mut keep = false;
    let mut binary = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--keep" => keep = true,
            "--mailrestore" => binary = args.next().map(PathBuf::from),
            "-h" | "--help" => {
                println!("usage: quickstart [--keep] [--mailrestore PATH]");
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("quickstart: unknown argument {other:?} (try --help)");
                return ExitCode::from(2);
            }
        }
    }
    let binary = match binary.map_or_else(beside_this_executable, Ok) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("quickstart: {e}");
            return ExitCode::from(2);
        }
    };
    match run(&binary, keep) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("quickstart: {e}");
            ExitCode::FAILURE
        }
    }
}

fn beside_this_executable() -> Result<PathBuf, Failure> {
    let me = std::env::current_exe().map_err(|e| format!("where am I: {e}"))?;
    let binary = me.with_file_name("mailrestore");
    if binary.is_file() {
        Ok(binary)
    } else {
        Err(format!(
            "{} is missing: build it (cargo build --bin mailrestore) or pass --mailrestore PATH",
            binary.display()
        ))
    }
}

fn run(binary: &Path, keep: bool) -> Result<(), Failure> {
    step(
        "Starting real Dovecot (IMAP, LMTP), Radicale (CalDAV/CardDAV) and Postfix (SMTP) on loopback",
    );
    let sandbox = Sandbox::start(SandboxOptions {
        radicale: true,
        postfix: true,
        ..SandboxOptions::default()
    })
    .map_err(|e| format!("the sandbox did not start: {e}"))?;
    let dovecot = sandbox.dovecot().map_err(|e| e.to_string())?;
    let radicale = sandbox.radicale().map_err(|e| e.to_string())?;
    println!("   Dovecot IMAP  127.0.0.1:{}", dovecot.imap_port);
    println!("   Radicale      {}", radicale.url);
    let postfix = sandbox.postfix().map_err(|e| e.to_string())?;
    println!("   Postfix SMTP  127.0.0.1:{}", postfix.smtp_port);
    println!("   (all under {})", sandbox.root().display());

    step(&format!(
        "Seeding the demo mailbox of {USER} from fixtures/demo/"
    ));
    let mut imap = dovecot
        .login_master(USER)
        .map_err(|e| format!("master login for {USER}: {e}"))?;
    let n = demo::seed(&mut imap, dovecot.separator)
        .map_err(|e| format!("seeding the demo mailbox: {e}"))?;
    println!("   {n} messages appended with their flags, keywords and dates");
    print_mailbox(&mut imap)?;
    let http = radicale.user_client(USER);
    let n = demo::seed_dav(&http, HOME).map_err(|e| format!("seeding the demo calendar: {e}"))?;
    println!(
        "   {n} calendar items and contacts in the calendar \"Travail\" and the address book \"Contacts\""
    );
    print_collections(&http, HOME)?;

    step("Starting the mailrestore daemon on its Unix socket: mailrestore serve");
    let files = write_config(&sandbox, &sandbox.root().join("mailrestore"), "")
        .map_err(|e| format!("writing the daemon configuration: {e}"))?;
    let daemon = Daemon::start(binary, &files)?;
    println!("   config  {}", files.config.display());
    println!("   socket  {}", files.socket.display());
    let cli = Cli {
        binary,
        files: &files,
    };

    step("Asking the daemon over its socket, as the panel does: mailrestore health");
    cli.show(&["health"])?;

    step(&format!(
        "Taking a restore point of {USER}: mailrestore snapshot {USER} --wait"
    ));
    cli.show(&["snapshot", USER, "--wait"])?;
    step(&format!("mailrestore points {USER}"));
    cli.show(&["points", USER])?;
    let points = cli.json(&["points", USER])?;
    let point = newest_point(&points)?;

    step("An accident: the user deletes the folder \"Projets/Été 2025\" and three INBOX messages");
    imap.command_ok("DELETE \"Projets/&AMk-t&AOk- 2025\"")
        .map_err(|e| format!("DELETE: {e}"))?;
    imap.select("INBOX").map_err(|e| format!("SELECT: {e}"))?;
    imap.command_ok("UID STORE 1:3 +FLAGS.SILENT (\\Deleted)")
        .and_then(|_| imap.command_ok("EXPUNGE"))
        .map_err(|e| format!("EXPUNGE: {e}"))?;
    print_mailbox(&mut imap)?;
    step("... and a phone sync wipes the calendar \"Travail\"");
    for (name, _) in demo::DEMO_EVENTS {
        http.request("DELETE", &format!("{HOME}travail/{name}"), &[], b"")
            .map_err(|e| format!("DELETE {name}: {e}"))?;
    }
    print_collections(&http, HOME)?;

    step(&format!(
        "The admin restores point {point}, all folders: mailrestore restore {USER} --point {point} --scope all --wait"
    ));
    cli.show(&[
        "restore",
        USER,
        "--point",
        &point,
        "--scope",
        "all",
        "--requested-by",
        "admin@example.org",
        "--wait",
    ])?;
    let jobs = cli.json(&["jobs", "--user", USER])?;
    let target = restored_folder(&jobs)?;

    step(
        "What the user sees now over IMAP: the live folders, untouched, and the restored tree beside them (subscribed)",
    );
    print_mailbox(&mut imap)?;
    let subscribed = imap.lsub().map_err(|e| format!("LSUB: {e}"))?;
    let n = subscribed
        .iter()
        .filter(|m| m.name.starts_with(&target))
        .count();
    println!("   {n} restored folders are subscribed under {target}");
    step(
        "And over CalDAV/CardDAV: the live collections, untouched, and the restored ones beside them",
    );
    print_collections(&http, HOME)?;

    if keep {
        step("The sandbox stays up until Ctrl-C. Try, in another shell:");
        println!(
            "   {} --socket {} health",
            binary.display(),
            files.socket.display()
        );
        println!(
            "   curl --unix-socket {} http://localhost/v1/jobs",
            files.socket.display()
        );
        println!(
            "   curl --unix-socket {} http://localhost/v1/openapi.json",
            files.socket.display()
        );
        wait_for_interrupt();
    }
    step("Stopping the daemon and the servers");
    drop(daemon);
    let _ = imap.logout();
    drop(sandbox);
    println!("   done: nothing is left running.");
    Ok(())
}

fn step(text: &str) {
    println!("\n==> {text}");
}

/// `mailrestore serve`, stopped with SIGTERM (as systemd does) on drop.
struct Daemon(Child);

impl Daemon {
    fn start(binary: &Path, files: &DaemonFiles) -> Result<Daemon, Failure> {
        let log = std::fs::File::create(files.dir.join("serve.log"))
            .map_err(|e| format!("the daemon's log: {e}"))?;
        let child = Command::new(binary)
            .arg("serve")
            .arg("--config")
            .arg(&files.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .map_err(|e| format!("starting {}: {e}", binary.display()))?;
        let mut daemon = Daemon(child);
        let deadline = Instant::now() + Duration::from_secs(60);
        while std::os::unix::net::UnixStream::connect(&files.socket).is_err() {
            if let Ok(Some(status)) = daemon.0.try_wait() {
                let log = std::fs::read_to_string(files.dir.join("serve.log")).unwrap_or_default();
                return Err(format!("mailrestore serve exited with {status}:\n{log}"));
            }
            if Instant::now() > deadline {
                return Err("mailrestore serve did not listen within 60 s".to_owned());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(daemon)
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the pid of our own child, which has not been
        // reaped yet (we wait for it just below), so the pid is still ours.
        unsafe {
            libc::kill(self.0.id() as libc::pid_t, libc::SIGTERM);
        }
        let _ = self.0.wait();
    }
}

/// The `mailrestore` command line, pointed at the sandbox daemon's socket.
struct Cli<'a> {
    binary: &'a Path,
    files: &'a DaemonFiles,
}

impl Cli<'_> {
    fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(self.binary);
        command
            .arg("--config")
            .arg(&self.files.config)
            .arg("--socket")
            .arg(&self.files.socket)
            .args(args);
        command
    }

    /// Runs a command with its human output on this terminal.
    fn show(&self, args: &[&str]) -> Result<(), Failure> {
        let status = self
            .command(args)
            .status()
            .map_err(|e| format!("mailrestore {}: {e}", args.join(" ")))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("mailrestore {} failed: {status}", args.join(" ")))
        }
    }

    /// Runs a command with `--json` and parses what it prints.
    fn json(&self, args: &[&str]) -> Result<Value, Failure> {
        let out = self
            .command(args)
            .arg("--json")
            .output()
            .map_err(|e| format!("mailrestore {}: {e}", args.join(" ")))?;
        if !out.status.success() {
            return Err(format!(
                "mailrestore {} --json failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            ));
        }
        serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("mailrestore {} --json printed no JSON: {e}", args.join(" ")))
    }
}

/// The id of the newest point in `mailrestore points --json`.
fn newest_point(points: &Value) -> Result<String, Failure> {
    points["points"]
        .as_array()
        .and_then(|p| p.first())
        .and_then(|p| p["id"].as_str())
        .map(str::to_owned)
        .ok_or_else(|| format!("no restore point listed: {points}"))
}

/// The folder the newest restore job of `mailrestore jobs --json` wrote.
fn restored_folder(jobs: &Value) -> Result<String, Failure> {
    let jobs = jobs["jobs"].as_array().cloned().unwrap_or_default();
    let restore = jobs
        .iter()
        .find(|j| j["kind"] == "restore")
        .ok_or_else(|| "no restore job listed".to_owned())?;
    if restore["state"] != "succeeded" {
        return Err(format!("the restore did not succeed: {}", restore["error"]));
    }
    restore["target"]["folder"]
        .as_str()
        .map(str::to_owned)
        .ok_or_else(|| format!("the restore names no target folder: {restore}"))
}

fn wait_for_interrupt() {
    let (tx, rx) = std::sync::mpsc::channel();
    if ctrlc::set_handler(move || {
        let _ = tx.send(());
    })
    .is_ok()
    {
        let _ = rx.recv();
    }
}

/// Every calendar and address book under `home`, with its item count.
fn print_collections(http: &RawHttp, home: &str) -> Result<(), Failure> {
    for collection in dav_listing(http, home)? {
        let Some(kind) = collection.kind else {
            continue;
        };
        let items = dav_listing(http, &collection.href)?.len().saturating_sub(1);
        println!(
            "   {:<12} {:<44} {items:>3} items",
            kind,
            collection.name.unwrap_or(collection.href)
        );
    }
    Ok(())
}

/// One `<response>` of a Depth 1 PROPFIND.
#[derive(Debug, Default)]
struct Listed {
    href: String,
    name: Option<String>,
    kind: Option<&'static str>,
}

const PROPFIND: &str = r#"<?xml version="1.0" encoding="utf-8"?>
<propfind xmlns="DAV:"><prop><resourcetype/><displayname/></prop></propfind>"#;

/// The responses of a Depth 1 PROPFIND of `path`, parsed by quick-xml (no
/// mailrestore code: the quickstart looks at the server from outside).
fn dav_listing(http: &RawHttp, path: &str) -> Result<Vec<Listed>, Failure> {
    use quick_xml::events::Event;
    let r = http
        .propfind(path, "1", PROPFIND)
        .map_err(|e| format!("PROPFIND {path}: {e}"))?;
    if r.status != 207 {
        return Err(format!("PROPFIND {path}: status {}", r.status));
    }
    let mut reader = quick_xml::NsReader::from_reader(r.body.as_slice());
    let mut out = Vec::new();
    let mut current = Listed::default();
    let mut text_of: Option<&'static str> = None;
    loop {
        let event = reader
            .read_event()
            .map_err(|e| format!("PROPFIND {path}: {e}"))?;
        match event {
            Event::Start(e) | Event::Empty(e) => match e.local_name().as_ref() {
                b"response" => current = Listed::default(),
                b"href" => text_of = Some("href"),
                b"displayname" => text_of = Some("name"),
                b"calendar" => current.kind = Some("calendar"),
                b"addressbook" => current.kind = Some("address book"),
                _ => {}
            },
            Event::Text(t) => {
                let text = t.unescape().map_err(|e| format!("PROPFIND {path}: {e}"))?;
                match text_of {
                    Some("href") => current.href = text.trim().to_owned(),
                    Some(_) => current.name = Some(text.trim().to_owned()),
                    None => {}
                }
            }
            Event::End(e) => {
                text_of = None;
                if e.local_name().as_ref() == b"response" {
                    out.push(std::mem::take(&mut current));
                }
            }
            Event::Eof => return Ok(out),
            _ => {}
        }
    }
}

fn print_mailbox(imap: &mut RawImap) -> Result<(), Failure> {
    let folders = imap.list().map_err(|e| format!("LIST: {e}"))?;
    for f in folders {
        if f.attributes
            .iter()
            .any(|a| a.eq_ignore_ascii_case("\\Noselect"))
        {
            continue;
        }
        let count = imap
            .message_count(&f.name)
            .map_err(|e| format!("STATUS {}: {e}", f.name))?;
        println!("   {:<44} {count:>3} messages", f.name);
    }
    Ok(())
}
