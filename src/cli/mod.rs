//! The `mailrestore` command line: clap definitions, dispatch, and the human
//! or JSON rendering of what the daemon answers.
//!
//! Client commands talk to the daemon over the socket (README.md); they
//! read the configuration only to find the socket, never its secrets. Exit
//! codes: 0 success, 1 the job or check failed, 2 usage or configuration
//! error, 3 the daemon cannot be reached.

mod offline;
mod output;
mod progress;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

use crate::api::client::{ApiClient, ClientError};
use crate::config::{Config, DEFAULT_CONFIG_PATH, Secrets};

/// Exit code: the job or the check failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: usage or configuration error.
pub const EXIT_USAGE: u8 = 2;
/// Exit code: the daemon cannot be reached.
pub const EXIT_UNREACHABLE: u8 = 3;

/// Restore points for a mail host: snapshot mail, calendars and contacts, and
/// bring them back into new dated folders.
#[derive(Debug, Parser)]
#[command(name = "mailrestore", version, about, long_about = None)]
pub struct Cli {
    /// Configuration file.
    #[arg(long, global = true, value_name = "FILE", env = "MAILRESTORE_CONFIG")]
    pub config: Option<PathBuf>,
    /// API socket (default: the configuration's api.socket).
    #[arg(long, global = true, value_name = "PATH", env = "MAILRESTORE_SOCKET")]
    pub socket: Option<PathBuf>,
    /// Machine-readable JSON output.
    #[arg(long, global = true)]
    pub json: bool,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon in the foreground (systemd runs this).
    Serve,
    /// Show the daemon's state and each backend's.
    Health,
    /// List the restore points of a user, newest first.
    Points {
        /// The mailbox.
        user: String,
        /// That day's points (in the daemon's time zone), or the nearest around it.
        #[arg(long, value_name = "YYYY-MM-DD")]
        date: Option<String>,
    },
    /// Take restore points now.
    Snapshot {
        /// The mailboxes.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        users: Vec<String>,
        /// Every user the schedule knows.
        #[arg(long)]
        all: bool,
        /// Wait until the snapshots end; exit 1 if one failed.
        #[arg(long)]
        wait: bool,
    },
    /// Start a restore into a new dated folder; `--wait` follows it.
    Restore {
        /// The mailbox.
        user: String,
        /// The restore point id (see `points`).
        #[arg(long)]
        point: String,
        /// all: every folder, calendar and address book; inbox: the INBOX only.
        #[arg(long, default_value = "all", value_parser = ["all", "inbox"])]
        scope: String,
        /// Who asked (gets the notification mail).
        #[arg(long, value_name = "EMAIL")]
        requested_by: Option<String>,
        /// Follow the restore with a progress bar; exit 1 if it fails.
        #[arg(long)]
        wait: bool,
    },
    /// Apply the retention policy now and reclaim space (through the daemon
    /// when it runs, else offline on the state directory).
    Prune {
        /// Show what would go and what space would come back; change nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Check the index and the store (offline: the daemon must not hold the state directory).
    Verify {
        /// Re-hash every blob of every pack.
        #[arg(long)]
        read_data: bool,
        /// First rebuild the index's blob locations and restore points from the packs.
        #[arg(long)]
        repair: bool,
    },
    /// List jobs, newest first.
    Jobs {
        /// Only this user's jobs.
        #[arg(long)]
        user: Option<String>,
        /// Only this kind (snapshot, restore).
        #[arg(long)]
        kind: Option<String>,
        /// Only this state (queued, running, succeeded, failed, cancelled).
        #[arg(long)]
        state: Option<String>,
    },
    /// Show one job.
    Job {
        /// The job id (jN).
        id: String,
    },
    /// Cancel a job: a queued one at once, a running one between two messages.
    Cancel {
        /// The job id (jN).
        id: String,
    },
    /// Print shell completions.
    Completions {
        /// bash, zsh, fish, elvish or powershell.
        shell: clap_complete::Shell,
    },
}

/// Parses the arguments and runs the command.
pub fn run() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(EXIT_USAGE)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_tracing(matches!(cli.command, Command::Serve));
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("mailrestore: cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    match runtime.block_on(dispatch(cli)) {
        Ok(code) => code,
        Err(Failure { code, message }) => {
            eprintln!("mailrestore: {message}");
            ExitCode::from(code)
        }
    }
}

/// An error that ends the command with an exit code.
#[derive(Debug)]
pub struct Failure {
    /// Exit code.
    pub code: u8,
    /// Printed on stderr.
    pub message: String,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Self {
        Failure {
            code: EXIT_USAGE,
            message: message.into(),
        }
    }

    fn failed(message: impl std::fmt::Display) -> Self {
        Failure {
            code: EXIT_FAILED,
            message: format!("{message:#}"),
        }
    }
}

impl From<ClientError> for Failure {
    fn from(e: ClientError) -> Self {
        let code = match &e {
            ClientError::Unreachable { .. } => EXIT_UNREACHABLE,
            ClientError::Protocol { .. } => EXIT_UNREACHABLE,
            ClientError::Api { status, .. } if *status == 400 => EXIT_USAGE,
            ClientError::Api { .. } => EXIT_FAILED,
        };
        Failure {
            code,
            message: e.to_string(),
        }
    }
}

async fn dispatch(cli: Cli) -> Result<ExitCode, Failure> {
    let json = cli.json;
    match &cli.command {
        Command::Serve => {
            let config = load_config(&cli, Secrets::Read)?;
            crate::daemon::run(config).await.map_err(Failure::failed)?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Health => {
            let v = client(&cli)?.get("/v1/health").await?;
            output::health(&v, json);
            Ok(ExitCode::SUCCESS)
        }
        Command::Points { user, date } => points(&cli, user, date.as_deref()).await,
        Command::Snapshot { users, all, wait } => snapshot(&cli, users, *all, *wait).await,
        Command::Restore {
            user,
            point,
            scope,
            requested_by,
            wait,
        } => {
            let mut body = serde_json::json!({"user": user, "point": point, "scope": scope});
            if let Some(r) = requested_by {
                body["requested_by"] = serde_json::json!(r);
            }
            restore(&cli, body, *wait).await
        }
        Command::Prune { dry_run } => prune(&cli, *dry_run).await,
        Command::Verify { read_data, repair } => {
            let config = load_config(&cli, Secrets::Skip)?;
            offline::verify(&config, *read_data, *repair, json)
        }
        Command::Jobs { user, kind, state } => {
            jobs(&cli, [("user", user), ("kind", kind), ("state", state)]).await
        }
        Command::Job { id } => {
            let v = client(&cli)?
                .get(&format!("/v1/jobs/{}", percent_encode(id)))
                .await?;
            output::job(&v, json);
            Ok(job_exit_code(&v))
        }
        Command::Cancel { id } => {
            let v = client(&cli)?
                .delete(&format!("/v1/jobs/{}", percent_encode(id)))
                .await?;
            output::job(&v, json);
            Ok(ExitCode::SUCCESS)
        }
        Command::Completions { shell } => {
            clap_complete::generate(
                *shell,
                &mut Cli::command(),
                "mailrestore",
                &mut std::io::stdout(),
            );
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// `points USER [--date D]`.
async fn points(cli: &Cli, user: &str, date: Option<&str>) -> Result<ExitCode, Failure> {
    let mut path = format!("/v1/users/{}/points", percent_encode(user));
    if let Some(d) = date {
        path.push_str(&format!("?date={}", percent_encode(d)));
    }
    let v = client(cli)?.get(&path).await?;
    output::points(&v, cli.json);
    Ok(ExitCode::SUCCESS)
}

/// `snapshot USER… | --all [--wait]`: exit 1 when a job failed.
async fn snapshot(cli: &Cli, users: &[String], all: bool, wait: bool) -> Result<ExitCode, Failure> {
    let api = client(cli)?;
    let bodies: Vec<serde_json::Value> = if all {
        vec![serde_json::json!({"all": true})]
    } else {
        users
            .iter()
            .map(|u| serde_json::json!({"user": u}))
            .collect()
    };
    let mut jobs = Vec::new();
    for body in bodies {
        let v = api.post("/v1/snapshots", &body).await?;
        jobs.extend(v["jobs"].as_array().cloned().unwrap_or_default());
    }
    if wait {
        jobs = wait_for_jobs(&api, jobs, cli.json).await?;
    }
    output::jobs(&serde_json::json!({"jobs": jobs}), cli.json);
    let failed = jobs.iter().any(|j| j["state"] == "failed");
    Ok(if failed {
        ExitCode::from(EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    })
}

/// `restore …`: posts `body`, follows the job with `--wait`.
async fn restore(cli: &Cli, body: serde_json::Value, wait: bool) -> Result<ExitCode, Failure> {
    let api = client(cli)?;
    let job = api.post("/v1/restores", &body).await?;
    let job = if wait {
        progress::follow(&api, job, cli.json).await?
    } else {
        job
    };
    output::job(&job, cli.json);
    Ok(job_exit_code(&job))
}

/// `prune [--dry-run]`: through the daemon, or offline when none runs.
async fn prune(cli: &Cli, dry_run: bool) -> Result<ExitCode, Failure> {
    let api = client(cli)?;
    let report = match api
        .post("/v1/prune", &serde_json::json!({"dry_run": dry_run}))
        .await
    {
        Ok(v) => v,
        Err(ClientError::Unreachable { .. }) => {
            let config = load_config(cli, Secrets::Skip)?;
            offline::prune(&config, dry_run)?
        }
        Err(e) => return Err(e.into()),
    };
    output::prune(&report, cli.json);
    Ok(ExitCode::SUCCESS)
}

/// `jobs [--user U] [--kind K] [--state S]`.
async fn jobs(cli: &Cli, filters: [(&str, &Option<String>); 3]) -> Result<ExitCode, Failure> {
    let query: Vec<String> = filters
        .iter()
        .filter_map(|(k, v)| v.as_ref().map(|v| format!("{k}={}", percent_encode(v))))
        .collect();
    let path = if query.is_empty() {
        "/v1/jobs".to_string()
    } else {
        format!("/v1/jobs?{}", query.join("&"))
    };
    let v = client(cli)?.get(&path).await?;
    output::jobs(&v, cli.json);
    Ok(ExitCode::SUCCESS)
}

/// Polls jobs until each has ended; shows progress on stderr unless `quiet`.
async fn wait_for_jobs(
    api: &ApiClient,
    mut jobs: Vec<serde_json::Value>,
    quiet: bool,
) -> Result<Vec<serde_json::Value>, Failure> {
    loop {
        let mut open = 0;
        for job in jobs.iter_mut() {
            let state = job["state"].as_str().unwrap_or("");
            if matches!(state, "succeeded" | "failed" | "cancelled") {
                continue;
            }
            let id = job["id"].as_str().unwrap_or("").to_string();
            *job = api
                .get(&format!("/v1/jobs/{}", percent_encode(&id)))
                .await?;
            if !matches!(
                job["state"].as_str(),
                Some("succeeded" | "failed" | "cancelled")
            ) {
                open += 1;
            }
        }
        if !quiet {
            let done: u64 = jobs
                .iter()
                .filter_map(|j| j["progress"]["messages"]["done"].as_u64())
                .sum();
            eprint!(
                "\r{} of {} jobs running, {done} messages done   ",
                open,
                jobs.len()
            );
        }
        if open == 0 {
            if !quiet {
                eprintln!();
            }
            return Ok(jobs);
        }
        tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    }
}

/// 1 when a job ended failed, else 0.
fn job_exit_code(job: &serde_json::Value) -> ExitCode {
    if job["state"] == "failed" {
        ExitCode::from(EXIT_FAILED)
    } else {
        ExitCode::SUCCESS
    }
}

fn load_config(cli: &Cli, secrets: Secrets) -> Result<Config, Failure> {
    let path = cli
        .config
        .clone()
        .unwrap_or_else(|| PathBuf::from(DEFAULT_CONFIG_PATH));
    Config::load(&path, secrets).map_err(|e| Failure::usage(e.to_string()))
}

fn client(cli: &Cli) -> Result<ApiClient, Failure> {
    let socket = match &cli.socket {
        Some(s) => s.clone(),
        None => load_config(cli, Secrets::Skip)?.api.socket,
    };
    Ok(ApiClient::new(&socket))
}

/// Percent-encodes everything but unreserved characters (RFC 3986).
pub fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn init_tracing(daemon: bool) {
    use tracing_subscriber::EnvFilter;
    let default = if daemon { "info" } else { "warn" };
    let filter = EnvFilter::try_from_env("MAILRESTORE_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new(default));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false);
    // Under systemd, journald stamps each line itself.
    if std::env::var_os("JOURNAL_STREAM").is_some() {
        builder.without_time().with_ansi(false).init();
    } else {
        builder.init();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_command_line_is_consistent() {
        Cli::command().debug_assert();
    }

    #[test]
    fn global_options_go_before_or_after() {
        let a = Cli::try_parse_from(["mailrestore", "--json", "jobs", "--user", "a@b"]).unwrap();
        let b = Cli::try_parse_from(["mailrestore", "jobs", "--json", "--socket", "/s"]).unwrap();
        assert!(a.json && b.json);
        assert_eq!(b.socket, Some(PathBuf::from("/s")));
    }

    /// The completion files shipped in `dist/completions/` are what the
    /// CLI generates (`UPDATE_GOLDEN=1` rewrites them).
    #[test]
    fn packaged_completions_match_the_command_line() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("dist/completions");
        for (shell, file) in [
            (clap_complete::Shell::Bash, "mailrestore.bash"),
            (clap_complete::Shell::Zsh, "_mailrestore"),
            (clap_complete::Shell::Fish, "mailrestore.fish"),
        ] {
            let mut generated = Vec::new();
            clap_complete::generate(shell, &mut Cli::command(), "mailrestore", &mut generated);
            let path = dir.join(file);
            if std::env::var_os("UPDATE_GOLDEN").is_some() {
                std::fs::write(&path, &generated).unwrap();
            }
            let shipped = std::fs::read(&path).unwrap_or_default();
            assert!(
                shipped == generated,
                "{} is out of date: run UPDATE_GOLDEN=1 cargo test --lib packaged_completions",
                path.display()
            );
        }
    }

    #[test]
    fn percent_encoding_keeps_unreserved_only() {
        assert_eq!(percent_encode("alice@example.org"), "alice%40example.org");
        assert_eq!(percent_encode("a b/../c"), "a%20b%2F..%2Fc");
        assert_eq!(percent_encode("é"), "%C3%A9");
    }
}
