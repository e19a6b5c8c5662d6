//! `mailrestore quickstart`: the story on a sandbox.
//!
//! Real Dovecot, Radicale and Postfix on loopback ports in a temp dir, a demo
//! mailbox for alice@example.org, and the daemon on its own socket, driven
//! through the API exactly as the panel would: a restore point, an
//! accidental deletion, a restore, and what came back. Everything stops and is
//! removed at the end (or at Ctrl-C with `--keep`).

use std::process::ExitCode;

use tokio_util::sync::CancellationToken;

use super::Failure;
use crate::api::client::ApiClient;
use crate::config::{Config, Secrets};
use crate::daemon::Daemon;
use crate::sandbox::{Sandbox, SandboxOptions, daemon::write_config, demo};

const USER: &str = "alice@example.org";

/// Runs the story; `keep` leaves the sandbox up until Ctrl-C.
pub async fn run(keep: bool) -> Result<ExitCode, Failure> {
    step(
        "Starting real Dovecot (IMAP, LMTP), Radicale (CalDAV/CardDAV) and Postfix (SMTP) on loopback",
    );
    let sandbox = tokio::task::spawn_blocking(|| {
        Sandbox::start(SandboxOptions {
            radicale: true,
            postfix: true,
            ..SandboxOptions::default()
        })
    })
    .await
    .map_err(Failure::failed)?
    .map_err(|e| Failure::failed(format!("the sandbox did not start: {e}")))?;
    let dovecot = sandbox.dovecot().map_err(Failure::failed)?;
    println!("   Dovecot IMAP  127.0.0.1:{}", dovecot.imap_port);
    if let Some(r) = &sandbox.radicale {
        println!("   Radicale      {}", r.url);
    }
    if let Some(p) = &sandbox.postfix {
        println!("   Postfix SMTP  127.0.0.1:{}", p.smtp_port);
    }
    println!("   (all under {})", sandbox.root().display());

    step(&format!(
        "Seeding the demo mailbox of {USER} from fixtures/demo/"
    ));
    let mut imap = dovecot
        .login_master(USER)
        .map_err(|e| Failure::failed(format!("master login for {USER}: {e}")))?;
    let n = demo::seed(&mut imap, dovecot.separator)
        .map_err(|e| Failure::failed(format!("seeding the demo mailbox: {e}")))?;
    println!("   {n} messages appended with their flags, keywords and dates");
    print_mailbox(&mut imap)?;
    let radicale = sandbox
        .radicale
        .as_ref()
        .ok_or_else(|| Failure::failed("the sandbox has no Radicale"))?;
    let http = radicale.user_client(USER);
    let home = format!("/{}/", crate::protocol::dav::href::encode_segment(USER));
    let n = demo::seed_dav(&http, &home)
        .map_err(|e| Failure::failed(format!("seeding the demo calendar: {e}")))?;
    println!(
        "   {n} calendar items and contacts in the calendar \"Travail\" and the address book \"Contacts\""
    );
    print_collections(&http, &home)?;

    step("Starting the mailrestore daemon on its Unix socket");
    let files = write_config(&sandbox, &sandbox.root().join("mailrestore"), "")
        .map_err(|e| Failure::failed(format!("writing the daemon configuration: {e}")))?;
    let config =
        Config::load(&files.config, Secrets::Read).map_err(|e| Failure::usage(e.to_string()))?;
    let daemon = Daemon::start(config).await.map_err(Failure::failed)?;
    let stop = CancellationToken::new();
    let task = tokio::spawn(daemon.wait(stop.clone()));
    println!("   config  {}", files.config.display());
    println!("   socket  {}", files.socket.display());

    step("Asking the daemon over the socket, as the panel does: GET /v1/health");
    let api = ApiClient::new(&files.socket);
    let health = api.get("/v1/health").await?;
    super::output::health(&health, false);

    step(&format!(
        "Taking a restore point of {USER}: POST /v1/snapshots"
    ));
    let r = api
        .post("/v1/snapshots", &serde_json::json!({"user": USER}))
        .await?;
    let job = super::progress::follow(&api, r["jobs"][0].clone(), false).await?;
    if job["state"] != "succeeded" {
        return Err(Failure::failed(format!(
            "the snapshot failed: {}",
            job["error"]
        )));
    }
    let point = job["point"].as_str().unwrap_or_default().to_string();
    step(&format!("GET /v1/users/{USER}/points"));
    super::output::points(&api.get(&format!("/v1/users/{USER}/points")).await?, false);

    step("An accident: the user deletes the folder \"Projets/Été 2025\" and three INBOX messages");
    imap.command_ok("DELETE \"Projets/&AMk-t&AOk- 2025\"")
        .map_err(|e| Failure::failed(format!("DELETE: {e}")))?;
    imap.select("INBOX")
        .map_err(|e| Failure::failed(format!("SELECT: {e}")))?;
    imap.command_ok("UID STORE 1:3 +FLAGS.SILENT (\\Deleted)")
        .and_then(|_| imap.command_ok("EXPUNGE"))
        .map_err(|e| Failure::failed(format!("EXPUNGE: {e}")))?;
    print_mailbox(&mut imap)?;
    step("... and a phone sync wipes the calendar \"Travail\"");
    for (name, _) in demo::DEMO_EVENTS {
        http.request("DELETE", &format!("{home}travail/{name}"), &[], b"")
            .map_err(|e| Failure::failed(format!("DELETE {name}: {e}")))?;
    }
    print_collections(&http, &home)?;

    step(&format!(
        "The admin restores point {point}, all folders: POST /v1/restores"
    ));
    let body = serde_json::json!({"user": USER, "point": point, "scope": "all", "requested_by": "admin@example.org"});
    let job = api.post("/v1/restores", &body).await?;
    let job = super::progress::follow(&api, job, false).await?;
    super::output::job(&job, false);
    if job["state"] != "succeeded" {
        return Err(Failure::failed(format!(
            "the restore failed: {}",
            job["error"]
        )));
    }

    step(
        "What the user sees now over IMAP: the live folders, untouched, and the restored tree beside them (subscribed)",
    );
    print_mailbox(&mut imap)?;
    let subscribed = imap
        .lsub()
        .map_err(|e| Failure::failed(format!("LSUB: {e}")))?;
    let target = job["target"]["folder"].as_str().unwrap_or_default();
    let n = subscribed
        .iter()
        .filter(|m| m.name.starts_with(target))
        .count();
    println!("   {n} restored folders are subscribed under {target}");
    step(
        "And over CalDAV/CardDAV: the live collections, untouched, and the restored ones beside them",
    );
    print_collections(&http, &home)?;

    if keep {
        step("The sandbox stays up until Ctrl-C. Try, in another shell:");
        println!(
            "   target/debug/mailrestore --socket {} health",
            files.socket.display()
        );
        println!(
            "   curl --unix-socket {} http://localhost/v1/jobs",
            files.socket.display()
        );
        let _ = tokio::signal::ctrl_c().await;
    }
    step("Stopping the daemon and the servers");
    stop.cancel();
    let _ = task.await;
    let _ = imap.logout();
    drop(sandbox);
    println!("   done: nothing is left running.");
    Ok(ExitCode::SUCCESS)
}

fn step(text: &str) {
    println!("\n==> {text}");
}

/// Every calendar and address book under `home`, with its item count.
fn print_collections(http: &crate::sandbox::raw_http::RawHttp, home: &str) -> Result<(), Failure> {
    use crate::protocol::dav;
    let list = |path: &str, depth: &str| {
        http.propfind(path, depth, &dav::propfind_collections())
            .map_err(|e| Failure::failed(format!("PROPFIND {path}: {e}")))
            .and_then(|r| {
                dav::parse_multistatus(&r.body)
                    .map_err(|e| Failure::failed(format!("PROPFIND {path}: {e}")))
            })
    };
    for r in list(home, "1")?.responses {
        let Some(kind) = r.props.kind else { continue };
        let items = list(&r.href, "1")?.responses.len().saturating_sub(1);
        let what = match kind {
            dav::CollectionKind::Calendar => "calendar",
            dav::CollectionKind::Addressbook => "address book",
        };
        println!(
            "   {:<12} {:<44} {items:>3} items",
            what,
            r.props.display_name.unwrap_or(r.href)
        );
    }
    Ok(())
}

fn print_mailbox(imap: &mut crate::sandbox::raw_imap::RawImap) -> Result<(), Failure> {
    let folders = imap
        .list()
        .map_err(|e| Failure::failed(format!("LIST: {e}")))?;
    for f in folders {
        if f.attributes
            .iter()
            .any(|a| a.eq_ignore_ascii_case("\\Noselect"))
        {
            continue;
        }
        let count = imap
            .message_count(&f.name)
            .map_err(|e| Failure::failed(format!("STATUS {}: {e}", f.name)))?;
        println!("   {:<44} {count:>3} messages", f.name);
    }
    Ok(())
}
