//! Restore speed, measured against the peers on the same data in the same run.
//!
//! For each Dovecot `mail_fsync` setting (`never`, the test-only setting,
//! then `optimized`, Dovecot's default), on one sandbox Dovecot:
//!
//! 1. seeds alice's mailbox with N messages of realistic sizes (2–200 KB) in
//!    a few folders, written straight into the Maildir (APPENDing them would
//!    take longer than the bench itself), and copies that Maildir aside as
//!    the source of `doveadm import`;
//! 2. takes a restore point with the daemon (in-process, driven through its
//!    socket as the panel does), timed from POST to `succeeded`, and backs up
//!    the same Maildir with `restic` (the snapshot-side peer); then appends
//!    1% new messages to a folder of their own and times an incremental
//!    point and an incremental restic backup, and the state directory's size
//!    against the mailbox's;
//! 3. then, in each round, restores it the same way into a new dated folder
//!    (and once more with scope `inbox`: the biggest folder alone, on one
//!    connection, which bounds a restore that spreads folders over
//!    connections) and runs the peers on the same messages, each into its own
//!    new folder:
//!    `doveadm import` (Dovecot writing its own storage; once copying, once
//!    with its default hard links, for reference) and `mbsync` (IMAP → IMAP
//!    through the master login). The order rotates from round to round;
//! 4. counts each tool's restored messages per folder with STATUS.
//!
//! Before each timed run, `sync` writes out every dirty page, so that no
//! tool's fsyncs wait behind the writeback of what came before it.
//!
//! It prints figures (medians over the rounds); it asserts nothing about
//! speed. Environment: `MAILRESTORE_BENCH_MESSAGES` (default 5000),
//! `MAILRESTORE_BENCH_ROUNDS` (default 3) and `MAILRESTORE_BENCH_FSYNC`
//! (`off`, `on` or `both`, the default). Run as root on a machine prepared by
//! `scripts/install-deps.sh`: `cargo bench --bench restore`.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, bail, ensure};
use mailrestore::api::client::ApiClient;
use mailrestore::config::{Config, Secrets};
use mailrestore::daemon::Daemon;
use mailrestore_sandbox::daemon::write_config;
use mailrestore_sandbox::{Dovecot, Sandbox, SandboxOptions};
use serde_json::{Value, json};
use tokio::runtime::Runtime;
use tokio_util::sync::CancellationToken;

const USER: &str = "alice@example.org";
/// The folders seeded and their share of the messages (percent); INBOX gets
/// the rounding remainder.
const FOLDERS: &[(&str, usize)] = &[
    ("INBOX", 40),
    ("Sent", 15),
    ("Archive/2023", 20),
    ("Archive/2024", 15),
    ("Projects/Alpha", 10),
];
const DEFAULT_MESSAGES: usize = 5000;
const DEFAULT_ROUNDS: usize = 3;
const JOB_DEADLINE: Duration = Duration::from_secs(3 * 3600);

fn main() -> anyhow::Result<()> {
    let n = env_count("MAILRESTORE_BENCH_MESSAGES", DEFAULT_MESSAGES)?;
    ensure!(n >= 10, "MAILRESTORE_BENCH_MESSAGES must be at least 10");
    let rounds = env_count("MAILRESTORE_BENCH_ROUNDS", DEFAULT_ROUNDS)?.max(1);
    let settings: &[bool] = match std::env::var("MAILRESTORE_BENCH_FSYNC").as_deref() {
        Ok("off") => &[false],
        Ok("on") => &[true],
        Ok("both") | Err(_) => &[false, true],
        Ok(other) => bail!("MAILRESTORE_BENCH_FSYNC={other:?}: expected off, on or both"),
    };
    println!("mailrestore restore bench: {n} messages for {USER}, {rounds} round(s)");
    println!("  {}", version("/usr/sbin/dovecot", &["--version"]));
    println!("  {}", version("mbsync", &["--version"]));
    println!(
        "  {} CPUs, load average {}",
        std::thread::available_parallelism().map_or(0, |p| p.get()),
        load_average()
    );
    println!("  MB = 10^6 bytes of message data (the Maildir files' sizes)");

    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let mut reports = Vec::new();
    for &fsync in settings {
        let report = run(&rt, n, rounds, fsync)?;
        report.print();
        reports.push(report);
    }
    if reports.len() > 1 {
        println!("\n==== summary: {n} messages, median of {rounds} round(s) ====");
        for r in &reports {
            print!("{}", r.table());
        }
    }
    Ok(())
}

fn env_count(name: &str, default: usize) -> anyhow::Result<usize> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{name}={v:?} is not a count")),
        Err(_) => Ok(default),
    }
}

/// The restorers compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Tool {
    Mailrestore,
    /// mailrestore with scope `inbox`: the INBOX alone, on one connection.
    MailrestoreInbox,
    DoveadmImport,
    DoveadmLinks,
    Mbsync,
}

impl Tool {
    const ALL: [Tool; 5] = [
        Tool::Mailrestore,
        Tool::MailrestoreInbox,
        Tool::DoveadmImport,
        Tool::DoveadmLinks,
        Tool::Mbsync,
    ];

    fn name(self) -> &'static str {
        match self {
            Tool::Mailrestore => "mailrestore restore",
            Tool::MailrestoreInbox => "mailrestore, INBOX only",
            Tool::DoveadmImport => "doveadm import",
            Tool::DoveadmLinks => "doveadm import (links)",
            Tool::Mbsync => "mbsync",
        }
    }
}

/// One timed run of a tool.
struct Run {
    round: usize,
    elapsed: Duration,
    /// CPU time (user + system) of the tool's own process: the daemon's
    /// (this process) for mailrestore, the child's for the peers; the IMAP
    /// server's is not included.
    cpu: Duration,
    /// Share of the machine's CPU time (every core) that was busy meanwhile,
    /// whoever used it (Dovecot, the tool, anything else on the machine).
    host_busy: f64,
    /// Per seeded folder: (source folder, restored folder, count, expected).
    counts: Vec<(String, String, u32, u32)>,
    command: String,
}

impl Run {
    fn complete(&self) -> bool {
        self.counts.iter().all(|(_, _, got, want)| got == want)
    }
}

/// Memory of the bench process (where the daemon runs), in KiB.
#[derive(Default, Clone, Copy)]
struct Memory {
    before: u64,
    peak: u64,
}

/// The snapshot side beyond the first point: an incremental point after 1%
/// new mail, and restic (the snapshot-side peer) backing up the same
/// Maildir, full then incremental.
struct Incremental {
    /// Messages appended between the two points, and their bytes.
    added: (u64, u64),
    /// The incremental point's time.
    secs: Duration,
    /// State directory after the first point, and what the second added.
    state_first: u64,
    state_growth: u64,
    restic_full: Duration,
    restic_incremental: Duration,
    restic_repo: u64,
}

struct Report {
    fsync: bool,
    seeded: Seeded,
    seed_time: Duration,
    snapshot: Duration,
    snapshot_cpu: Duration,
    snapshot_host_busy: f64,
    snapshot_memory: Memory,
    incremental: Incremental,
    store_bytes: u64,
    restore_memory: Vec<Memory>,
    runs: Vec<(Tool, Run)>,
    loads: Vec<String>,
}

impl Report {
    fn setting(&self) -> &'static str {
        if self.fsync {
            "mail_fsync = optimized (Dovecot's default)"
        } else {
            "mail_fsync = never (test-only setting)"
        }
    }

    fn runs(&self, tool: Tool) -> impl Iterator<Item = &Run> {
        self.runs
            .iter()
            .filter(move |(t, _)| *t == tool)
            .map(|(_, r)| r)
    }

    fn median(&self, tool: Tool, of: impl Fn(&Run) -> Duration) -> Duration {
        let mut v: Vec<Duration> = self.runs(tool).map(of).collect();
        v.sort();
        v.get(v.len() / 2).copied().unwrap_or_default()
    }

    fn median_host_busy(&self, tool: Tool) -> f64 {
        let mut v: Vec<f64> = self.runs(tool).map(|r| r.host_busy).collect();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or_default()
    }

    fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "\n-- {} --", self.setting());
        let h = [
            "tool",
            "messages",
            "MB",
            "seconds",
            "(min–max)",
            "msg/s",
            "MB/s",
            "CPU s",
            "host %",
            "mailrestore ÷ peer",
        ];
        let _ = writeln!(
            out,
            "{:<22} {:>8} {:>7} {:>8} {:>15} {:>7} {:>7} {:>7} {:>6}  {}",
            h[0], h[1], h[2], h[3], h[4], h[5], h[6], h[7], h[8], h[9]
        );
        let mut row = |name: &str,
                       (messages, bytes): (u64, u64),
                       secs: f64,
                       range: String,
                       (cpu, host): (f64, f64),
                       ratio: String| {
            let mb = bytes as f64 / 1e6;
            let _ = writeln!(
                out,
                "{name:<22} {messages:>8} {mb:>7.1} {secs:>8.2} {range:>15} {:>7.0} {:>7.1} {cpu:>7.2} {:>6.0}  {ratio}",
                messages as f64 / secs,
                mb / secs,
                host * 100.0,
            );
        };
        row(
            "mailrestore snapshot",
            (self.seeded.messages(), self.seeded.bytes()),
            self.snapshot.as_secs_f64(),
            String::new(),
            (self.snapshot_cpu.as_secs_f64(), self.snapshot_host_busy),
            String::new(),
        );
        let ours = self.median(Tool::Mailrestore, |r| r.elapsed).as_secs_f64();
        for tool in Tool::ALL {
            let secs = self.median(tool, |r| r.elapsed).as_secs_f64();
            let (min, max) = self.runs(tool).fold((f64::MAX, 0f64), |(lo, hi), r| {
                let s = r.elapsed.as_secs_f64();
                (lo.min(s), hi.max(s))
            });
            let ratio = if matches!(tool, Tool::Mailrestore | Tool::MailrestoreInbox) {
                String::new()
            } else {
                // Throughput ratio: above 1, mailrestore is faster.
                format!("{:.2}×", secs / ours)
            };
            row(
                tool.name(),
                self.seeded.volume(tool),
                secs,
                format!("({min:.2}–{max:.2})"),
                (
                    self.median(tool, |r| r.cpu).as_secs_f64(),
                    self.median_host_busy(tool),
                ),
                ratio,
            );
        }
        out
    }

    fn print(&self) {
        println!("\n==== {} ====", self.setting());
        println!(
            "seeded {} messages, {:.1} MB in {} folders (written into the Maildir in {:.1}s)",
            self.seeded.messages(),
            self.seeded.bytes() as f64 / 1e6,
            self.seeded.folders.len(),
            self.seed_time.as_secs_f64()
        );
        print!("{}", self.table());
        println!(
            "(seconds: median over the rounds; msg/s and MB/s from the median; CPU s: the tool's \
             own process, not the IMAP server's; host %: the machine's CPUs busy meanwhile, \
             whoever used them; mailrestore ÷ peer = peer's seconds ÷ mailrestore's, \
             above 1 mailrestore is faster)"
        );
        println!(
            "load average at each round's start: {}",
            self.loads.join(" | ")
        );
        let inc = &self.incremental;
        let (msgs, mb) = (
            self.seeded.messages() as f64,
            self.seeded.bytes() as f64 / 1e6,
        );
        println!(
            "\nsnapshot side, {msgs} messages ({mb:.1} MB); restic backs up the same Maildir \
             (ratio = restic's seconds ÷ mailrestore's, above 1 mailrestore is faster):"
        );
        println!(
            "  full point:        {:>7.2} s  {:>6.0} msg/s {:>6.1} MB/s   restic backup {:>7.2} s  ratio {:.2}×",
            self.snapshot.as_secs_f64(),
            msgs / self.snapshot.as_secs_f64(),
            mb / self.snapshot.as_secs_f64(),
            inc.restic_full.as_secs_f64(),
            inc.restic_full.as_secs_f64() / self.snapshot.as_secs_f64()
        );
        let all = msgs + inc.added.0 as f64;
        println!(
            "  incremental point: {:>7.2} s  {:>6.0} msg/s {:>6.1} MB/s   restic backup {:>7.2} s  ratio {:.2}×  \
             (+{} new messages, {:.1} MB; msg/s and MB/s over the whole mailbox)",
            inc.secs.as_secs_f64(),
            all / inc.secs.as_secs_f64(),
            (mb + inc.added.1 as f64 / 1e6) / inc.secs.as_secs_f64(),
            inc.restic_incremental.as_secs_f64(),
            inc.restic_incremental.as_secs_f64() / inc.secs.as_secs_f64(),
            inc.added.0,
            inc.added.1 as f64 / 1e6,
        );
        println!(
            "  state dir after the first point: {:.1} MB for {mb:.1} MB of mail ({:.0}%); \
             the incremental point added {:.1} KB for {:.1} KB of new mail; restic's repository: {:.1} MB",
            inc.state_first as f64 / 1e6,
            inc.state_first as f64 / 1e6 / mb * 100.0,
            inc.state_growth as f64 / 1e3,
            inc.added.1 as f64 / 1e3,
            inc.restic_repo as f64 / 1e6
        );
        println!(
            "\nrestore point store size: {:.1} MB (packs and index) for {:.1} MB of mail",
            self.store_bytes as f64 / 1e6,
            self.seeded.bytes() as f64 / 1e6
        );
        let mib = |k: u64| k as f64 / 1024.0;
        println!(
            "bench process (daemon in-process), snapshot: VmRSS {:.1} MiB before, peak VmHWM {:.1} MiB",
            mib(self.snapshot_memory.before),
            mib(self.snapshot_memory.peak)
        );
        for (round, m) in self.restore_memory.iter().enumerate() {
            println!(
                "bench process (daemon in-process), restore round {}: VmRSS {:.1} MiB before, peak VmHWM {:.1} MiB",
                round + 1,
                mib(m.before),
                mib(m.peak)
            );
        }
        println!("\nrestored messages per folder (STATUS MESSAGES):");
        for tool in Tool::ALL {
            for run in self.runs(tool) {
                let verdict = if run.complete() {
                    "everything restored"
                } else {
                    "MISMATCH"
                };
                println!("  {} round {}: {verdict}", tool.name(), run.round);
                if run.round == 1 || !run.complete() {
                    for (source, target, got, want) in &run.counts {
                        let mark = if got == want { "" } else { "  <-- differs" };
                        println!("    {source:<16} -> {target:<40} {got:>6} / {want}{mark}");
                    }
                }
            }
        }
        println!("\npeer commands (round 1):");
        for tool in [Tool::DoveadmImport, Tool::DoveadmLinks, Tool::Mbsync] {
            if let Some(run) = self.runs(tool).next() {
                println!("  {}", run.command);
            }
        }
    }
}

/// What every round needs.
struct Bench<'a> {
    rt: &'a Runtime,
    sandbox: &'a Sandbox,
    dovecot: &'a Dovecot,
    api: ApiClient,
    point: String,
    import_source: PathBuf,
    seeded: &'a Seeded,
}

fn run(rt: &Runtime, n: usize, rounds: usize, fsync: bool) -> anyhow::Result<Report> {
    println!(
        "\n---- starting Dovecot with mail_fsync = {} ----",
        if fsync { "optimized" } else { "never" }
    );
    let sandbox = Sandbox::start(SandboxOptions {
        users: vec![USER.to_owned()],
        fsync,
        ..SandboxOptions::default()
    })
    .context("the sandbox did not start")?;
    let d = sandbox.dovecot()?;

    let started = Instant::now();
    let seeded = seed(d, n)?;
    let seed_time = started.elapsed();
    println!(
        "seeded {} messages ({:.1} MB) in {:.1}s",
        seeded.messages(),
        seeded.bytes() as f64 / 1e6,
        seed_time.as_secs_f64()
    );
    // The source of `doveadm import`: the same files, copied before anyone
    // restores into the live Maildir.
    let import_source = sandbox.root().join("import-source");
    let status = Command::new("cp")
        .arg("-a")
        .arg(d.mail_dir(USER))
        .arg(&import_source)
        .status()?;
    ensure!(status.success(), "cp -a of the seeded Maildir failed");

    // The daemon, in this process, on its own socket.
    let files = write_config(
        &sandbox,
        &sandbox.root().join("mailrestore"),
        "\n[schedule]\ninterval = \"off\"\n",
    )?;
    let config = Config::load(&files.config, Secrets::Read)?;
    let daemon = rt.block_on(Daemon::start(config))?;
    let stop = CancellationToken::new();
    let served = rt.spawn(daemon.wait(stop.clone()));
    let api = ApiClient::new(&files.socket);

    print!("taking a restore point… ");
    settle_disk()?;
    let before = reset_peak_rss();
    let (cpu, host, started) = (cpu_self(), HostCpu::now(), Instant::now());
    let job = rt.block_on(async {
        let r = api.post("/v1/snapshots", &json!({"user": USER})).await?;
        wait_job(&api, &r["jobs"][0]).await
    })?;
    let (snapshot, snapshot_cpu) = (started.elapsed(), cpu_self().saturating_sub(cpu));
    let snapshot_host_busy = host.busy_since();
    let snapshot_memory = Memory {
        before,
        peak: vm_kib("VmHWM"),
    };
    ensure!(job["state"] == "succeeded", "the snapshot failed: {job}");
    println!("{:.2}s", snapshot.as_secs_f64());
    let incremental = incremental(rt, &api, &sandbox, d, &files.state_dir, n)?;
    let bench = Bench {
        rt,
        sandbox: &sandbox,
        dovecot: d,
        api,
        point: job["point"]
            .as_str()
            .context("a succeeded snapshot names its point")?
            .to_owned(),
        import_source,
        seeded: &seeded,
    };

    let mut runs = Vec::new();
    let mut restore_memory = Vec::new();
    let mut loads = Vec::new();
    for round in 1..=rounds {
        loads.push(load_average());
        let mut order = Tool::ALL;
        order.rotate_left((round - 1) % Tool::ALL.len());
        for tool in order {
            print!("round {round}: {}… ", tool.name());
            settle_disk()?;
            let before = reset_peak_rss();
            let run = bench.restore(tool, round)?;
            if matches!(tool, Tool::Mailrestore) {
                restore_memory.push(Memory {
                    before,
                    peak: vm_kib("VmHWM"),
                });
            }
            println!(
                "{:.2}s{}",
                run.elapsed.as_secs_f64(),
                if run.complete() { "" } else { " (INCOMPLETE)" }
            );
            runs.push((tool, run));
        }
    }
    stop.cancel();
    rt.block_on(served)??;
    drop(bench);

    Ok(Report {
        fsync,
        store_bytes: du(&files.state_dir),
        seeded,
        seed_time,
        snapshot,
        snapshot_cpu,
        snapshot_host_busy,
        snapshot_memory,
        incremental,
        restore_memory,
        runs,
        loads,
    })
}

impl Bench<'_> {
    /// Restores every seeded folder with `tool` into a new folder of round
    /// `round`, then counts what landed.
    fn restore(&self, tool: Tool, round: usize) -> anyhow::Result<Run> {
        let host = HostCpu::now();
        let (elapsed, cpu, root, inbox_inside, command) = match tool {
            Tool::Mailrestore | Tool::MailrestoreInbox => {
                let scope = if tool == Tool::Mailrestore {
                    "all"
                } else {
                    "inbox"
                };
                let (elapsed, cpu, target) = self.mailrestore(scope)?;
                (elapsed, cpu, target, false, String::new())
            }
            Tool::DoveadmImport | Tool::DoveadmLinks => {
                let links = tool == Tool::DoveadmLinks;
                let parent = format!(
                    "{}{round}",
                    if links {
                        "DoveadmLinks"
                    } else {
                        "DoveadmImport"
                    }
                );
                let (elapsed, cpu, command) = self.doveadm_import(&parent, links)?;
                (elapsed, cpu, parent, true, command)
            }
            Tool::Mbsync => {
                let parent = format!("MbsyncRestore{round}");
                let dir = self.sandbox.root().join(format!("mbsync{round}"));
                let (elapsed, cpu, command) = self.mbsync(&dir, &parent)?;
                (elapsed, cpu, parent, false, command)
            }
        };
        let host_busy = host.busy_since();
        let counts = self.count(tool, |f| match (f, inbox_inside) {
            ("INBOX", false) => root.clone(),
            _ => format!("{root}/{f}"),
        })?;
        Ok(Run {
            round,
            elapsed,
            cpu,
            host_busy,
            counts,
            command,
        })
    }

    /// A restore through the daemon's socket, from POST to `succeeded`.
    fn mailrestore(&self, scope: &str) -> anyhow::Result<(Duration, Duration, String)> {
        let (cpu, started) = (cpu_self(), Instant::now());
        let job = self.rt.block_on(async {
            let body = json!({"user": USER, "point": self.point, "scope": scope,
                              "requested_by": "admin@example.org"});
            let job = self.api.post("/v1/restores", &body).await?;
            wait_job(&self.api, &job).await
        })?;
        let (elapsed, cpu) = (started.elapsed(), cpu_self().saturating_sub(cpu));
        ensure!(job["state"] == "succeeded", "the restore failed: {job}");
        let target = job["target"]["folder"]
            .as_str()
            .context("a restore names its target folder")?
            .to_owned();
        Ok((elapsed, cpu, target))
    }

    /// STATUS MESSAGES of each folder `tool` restored, beside what was seeded.
    fn count(
        &self,
        tool: Tool,
        restored_name: impl Fn(&str) -> String,
    ) -> anyhow::Result<Vec<(String, String, u32, u32)>> {
        let mut imap = self.dovecot.login_master(USER)?;
        let mut rows = Vec::new();
        for (name, (want, _)) in &self.seeded.folders {
            if tool == Tool::MailrestoreInbox && name != "INBOX" {
                continue;
            }
            let target = restored_name(name);
            let got = imap.message_count(&target).unwrap_or(0);
            rows.push((name.clone(), target, got, *want));
        }
        imap.logout()?;
        Ok(rows)
    }
}

// ---------------------------------------------------------------------------
// Seeding

/// What was seeded: per folder, messages and bytes.
struct Seeded {
    folders: BTreeMap<String, (u32, u64)>,
}

impl Seeded {
    fn messages(&self) -> u64 {
        self.folders.values().map(|(n, _)| u64::from(*n)).sum()
    }

    fn bytes(&self) -> u64 {
        self.folders.values().map(|(_, b)| b).sum()
    }

    /// Messages and bytes `tool` restores.
    fn volume(&self, tool: Tool) -> (u64, u64) {
        match (tool, self.folders.get("INBOX")) {
            (Tool::MailrestoreInbox, Some((n, bytes))) => (u64::from(*n), *bytes),
            _ => (self.messages(), self.bytes()),
        }
    }
}

/// Writes `n` messages into alice's Maildir (owned like the folder, with
/// Maildir flags and an mtime that Dovecot takes as INTERNALDATE), then
/// checks with STATUS that Dovecot sees them all.
fn seed(d: &Dovecot, n: usize) -> anyhow::Result<Seeded> {
    let mut imap = d.login_master(USER)?;
    for (name, _) in FOLDERS {
        // Sent exists already (special use, auto = subscribe): CREATE is NO.
        let _ = imap.create(name);
        imap.subscribe(name)?;
        imap.message_count(name)?;
    }
    let mut counts: Vec<usize> = FOLDERS.iter().map(|(_, share)| n * share / 100).collect();
    counts[0] += n - counts.iter().sum::<usize>();

    let mut seeded = Seeded {
        folders: BTreeMap::new(),
    };
    let mut rng = Rng(0x5eed_0f4a_11d0 ^ n as u64);
    let mut i = 0u64;
    for ((name, _), count) in FOLDERS.iter().zip(counts) {
        let dir = if *name == "INBOX" {
            d.mail_dir(USER)
        } else {
            d.mail_dir(USER).join(name)
        };
        let cur = dir.join("cur");
        let owner = std::fs::metadata(&cur)
            .with_context(|| format!("the folder's Maildir {}", cur.display()))?;
        let mut bytes = 0;
        for _ in 0..count {
            i += 1;
            let (message, flags) = message(&mut rng, i, name);
            // Dates spread over ~3 years, oldest first.
            let when = 1_640_000_000 + i * 94_000_000 / n as u64;
            let file_name = format!(
                "{when}.M{i}P{}.bench,S={}:2,{flags}",
                std::process::id(),
                message.len()
            );
            let path = cur.join(file_name);
            let mut file = std::fs::File::create(&path)?;
            file.write_all(&message)?;
            file.set_modified(SystemTime::UNIX_EPOCH + Duration::from_secs(when))?;
            std::os::unix::fs::fchown(&file, Some(owner.uid()), Some(owner.gid()))?;
            bytes += message.len() as u64;
        }
        seeded
            .folders
            .insert((*name).to_owned(), (count as u32, bytes));
    }
    for (name, (count, _)) in &seeded.folders {
        let seen = imap.message_count(name)?;
        ensure!(
            seen == *count,
            "Dovecot sees {seen} messages in {name}, {count} were written"
        );
    }
    imap.logout()?;
    Ok(seeded)
}

/// restic (the snapshot-side peer) on the seeded Maildir, full; then 1%
/// new messages in a folder of their own (the restore rounds do not look
/// at it), the incremental point, and restic again.
fn incremental(
    rt: &Runtime,
    api: &ApiClient,
    sandbox: &Sandbox,
    d: &Dovecot,
    state_dir: &Path,
    n: usize,
) -> anyhow::Result<Incremental> {
    let repo = sandbox.root().join("restic-repo");
    let restic = |args: &[&str]| -> anyhow::Result<Duration> {
        let started = Instant::now();
        let out = Command::new("restic")
            .args(["--repo"])
            .arg(&repo)
            .args(["--quiet", "--no-cache"])
            .args(args)
            .env("RESTIC_PASSWORD", "bench")
            .output()
            .context("running restic (package restic)")?;
        ensure!(
            out.status.success(),
            "restic {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Ok(started.elapsed())
    };
    restic(&["init"])?;
    let maildir = d.mail_dir(USER).display().to_string();
    settle_disk()?;
    print!("restic backup (full)… ");
    let restic_full = restic(&["backup", &maildir])?;
    println!("{:.2}s", restic_full.as_secs_f64());

    let mut imap = d.login_master(USER)?;
    imap.create("Incoming")?;
    let mut rng = Rng(0x1c4e_3e47 ^ n as u64);
    let mut added = (0u64, 0u64);
    for i in 0..(n / 100).max(1) {
        let (message, _) = message(&mut rng, 1_000_000 + i as u64, "Incoming");
        imap.append("Incoming", &[], None, &message)?;
        added.0 += 1;
        added.1 += message.len() as u64;
    }
    imap.logout()?;
    let state_first = du(state_dir);
    settle_disk()?;
    print!("taking an incremental point… ");
    let started = Instant::now();
    let job = rt.block_on(async {
        let r = api.post("/v1/snapshots", &json!({"user": USER})).await?;
        wait_job(api, &r["jobs"][0]).await
    })?;
    let secs = started.elapsed();
    ensure!(
        job["state"] == "succeeded",
        "the incremental snapshot failed: {job}"
    );
    println!("{:.2}s", secs.as_secs_f64());
    let state_growth = du(state_dir).saturating_sub(state_first);
    settle_disk()?;
    print!("restic backup (incremental)… ");
    let restic_incremental = restic(&["backup", &maildir])?;
    println!("{:.2}s", restic_incremental.as_secs_f64());
    Ok(Incremental {
        added,
        secs,
        state_first,
        state_growth,
        restic_full,
        restic_incremental,
        restic_repo: du(&repo),
    })
}

/// A small, fast PRNG (xorshift64*): the same mailbox on every run.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn between(&mut self, low: usize, high: usize) -> usize {
        low + self.below((high - low) as u64) as usize
    }
}

const WORDS: &[&str] = &[
    "the", "restore", "point", "mailbox", "folder", "invoice", "meeting", "tomorrow", "please",
    "find", "attached", "report", "quarter", "budget", "project", "thanks", "regards", "client",
    "server", "backup", "schedule", "review", "draft", "contract", "delivery", "order", "payment",
    "and", "of", "to", "for", "with", "we", "will", "on", "in", "a", "is", "our", "your", "team",
    "update", "question", "answer", "Monday", "Friday", "agenda", "minutes", "next", "week",
];

/// One message of a realistic size and its Maildir flags: half are 2–10 KB
/// of text, 30 % 10–60 KB (text and HTML), 20 % 60–200 KB with a base64
/// attachment. Every message is unique, so the store cannot deduplicate.
fn message(rng: &mut Rng, i: u64, folder: &str) -> (Vec<u8>, String) {
    let class = rng.below(100);
    let size = match class {
        0..50 => rng.between(2_000, 10_000),
        50..80 => rng.between(10_000, 60_000),
        _ => rng.between(60_000, 200_000),
    };
    let date = jiff::Timestamp::from_second(1_640_000_000 + i as i64 * 3_600)
        .map(|t| t.strftime("%a, %d %b %Y %H:%M:%S +0000").to_string())
        .unwrap_or_default();
    let sender = rng.below(500);
    let mut m = format!(
        "Return-Path: <sender{sender}@example.net>\r\n\
         From: \"Sender {sender}\" <sender{sender}@example.net>\r\n\
         To: Alice <alice@example.org>\r\n\
         Subject: {folder} message {i}: {} {}\r\n\
         Date: {date}\r\n\
         Message-ID: <{i}.{:x}@bench.example.net>\r\n\
         MIME-Version: 1.0\r\n",
        WORDS[rng.below(WORDS.len() as u64) as usize],
        WORDS[rng.below(WORDS.len() as u64) as usize],
        rng.next(),
    )
    .into_bytes();
    if class < 50 {
        m.extend_from_slice(b"Content-Type: text/plain; charset=utf-8\r\n\r\n");
        text(rng, &mut m, size);
    } else {
        let boundary = format!("=_bench_{i}_{:x}", rng.next());
        m.extend_from_slice(
            format!(
                "Content-Type: multipart/mixed; boundary=\"{boundary}\"\r\n\r\n\
                 --{boundary}\r\nContent-Type: text/plain; charset=utf-8\r\n\r\n"
            )
            .as_bytes(),
        );
        let text_size = m.len() + rng.between(1_000, 6_000);
        text(rng, &mut m, text_size);
        if class < 80 {
            m.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Type: text/html; charset=utf-8\r\n\r\n<html><body>\r\n"
                )
                .as_bytes(),
            );
            text(rng, &mut m, size.saturating_sub(boundary.len() + 30));
            m.extend_from_slice(b"</body></html>\r\n");
        } else {
            m.extend_from_slice(
                format!(
                    "--{boundary}\r\nContent-Type: application/pdf; name=\"report-{i}.pdf\"\r\n\
                     Content-Disposition: attachment; filename=\"report-{i}.pdf\"\r\n\
                     Content-Transfer-Encoding: base64\r\n\r\n"
                )
                .as_bytes(),
            );
            base64_noise(rng, &mut m, size.saturating_sub(boundary.len() + 8));
        }
        m.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    }
    let r = rng.below(100);
    let mut flags = String::new();
    if r < 5 {
        flags.push('F');
    }
    if (10..20).contains(&r) {
        flags.push('R');
    }
    if r < 70 {
        flags.push('S');
    }
    (m, flags)
}

/// Lines of words up to `size` bytes in all.
fn text(rng: &mut Rng, m: &mut Vec<u8>, size: usize) {
    let mut line = 0;
    while m.len() < size {
        let word = WORDS[rng.below(WORDS.len() as u64) as usize];
        if line + word.len() > 72 {
            m.extend_from_slice(b"\r\n");
            line = 0;
        } else if line > 0 {
            m.push(b' ');
            line += 1;
        }
        m.extend_from_slice(word.as_bytes());
        line += word.len();
    }
    m.extend_from_slice(b"\r\n");
}

/// Base64 lines of random bytes up to `size` bytes in all.
fn base64_noise(rng: &mut Rng, m: &mut Vec<u8>, size: usize) {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    while m.len() < size {
        let mut x = rng.next();
        for k in 0..76 {
            if k % 10 == 0 {
                x = rng.next();
            }
            m.push(ALPHABET[(x & 63) as usize]);
            x >>= 6;
        }
        m.extend_from_slice(b"\r\n");
    }
}

// ---------------------------------------------------------------------------
// The daemon

async fn wait_job(api: &ApiClient, job: &Value) -> anyhow::Result<Value> {
    let id = job["id"]
        .as_str()
        .with_context(|| format!("no job id in {job}"))?
        .to_owned();
    let deadline = Instant::now() + JOB_DEADLINE;
    loop {
        let j = api.get(&format!("/v1/jobs/{id}")).await?;
        if matches!(
            j["state"].as_str(),
            Some("succeeded" | "failed" | "cancelled")
        ) {
            return Ok(j);
        }
        ensure!(Instant::now() < deadline, "job {id} did not end: {j}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Gives freed heap back to the system, resets this process's peak resident
/// size (VmHWM) to its current size (Linux ≥ 4.0) and returns that size in KiB.
fn reset_peak_rss() -> u64 {
    // SAFETY: malloc_trim only releases free memory of the allocator's arenas.
    unsafe { libc::malloc_trim(0) };
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    vm_kib("VmRSS")
}

/// A `Vm…` line of /proc/self/status, in KiB (0 when unreadable).
fn vm_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field)?.strip_prefix(':'))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Bytes of every file under `dir`.
fn du(dir: &Path) -> u64 {
    let mut total = 0;
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => stack.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

// ---------------------------------------------------------------------------
// The peers

impl Bench<'_> {
    /// `doveadm import` of the copied Maildir under `parent`. With
    /// `maildir_copy_with_hardlinks = no`, Dovecot writes every message, as
    /// a restore from elsewhere must; with its default (`yes`), it hard-links
    /// the Maildir files of the same file system instead of writing them
    /// (shown for reference only).
    fn doveadm_import(
        &self,
        parent: &str,
        links: bool,
    ) -> anyhow::Result<(Duration, Duration, String)> {
        let location = format!("maildir:{}:LAYOUT=fs", self.import_source.display());
        let setting = format!(
            "maildir_copy_with_hardlinks={}",
            if links { "yes" } else { "no" }
        );
        let args = [
            "-o", &setting, "import", "-u", USER, &location, parent, "all",
        ];
        let (cpu, started) = (cpu_children(), Instant::now());
        self.dovecot.doveadm(&args)?;
        let (elapsed, cpu) = (started.elapsed(), cpu_children().saturating_sub(cpu));
        let inbox = self.dovecot.mail_dir(USER).join(parent).join("INBOX");
        let command = format!(
            "doveadm -c {} {}   # {} of the imported INBOX files are hard links",
            self.dovecot.config_path().display(),
            args.join(" "),
            linked_files(&inbox)
        );
        Ok((elapsed, cpu, command))
    }

    /// `mbsync` from the live folders into `parent`, IMAP to IMAP, both
    /// sides through the master login: INBOX into `parent` itself, the other
    /// seeded folders below it.
    fn mbsync(&self, dir: &Path, parent: &str) -> anyhow::Result<(Duration, Duration, String)> {
        let d = self.dovecot;
        std::fs::create_dir_all(dir.join("state"))?;
        let login = format!("{USER}*{}", d.master_user);
        let account = |name: &str| {
            format!(
                "IMAPAccount {name}\nHost {host}\nPort {port}\nUser \"{login}\"\nPass \"{pass}\"\n\
                 SSLType None\nAuthMechs LOGIN\n\nIMAPStore {name}\nAccount {name}\n\n",
                host = d.host,
                port = d.imap_port,
                pass = d.master_password,
            )
        };
        let others: Vec<String> = self
            .seeded
            .folders
            .keys()
            .filter(|f| *f != "INBOX")
            .map(|f| format!("\"{f}\""))
            .collect();
        let channel = |name: &str, far: &str, near: &str, patterns: &str| {
            format!(
                "Channel {name}\nFar :far:{far}\nNear :near:{near}\n{patterns}Sync Pull\n\
                 Create Near\nRemove None\nExpunge None\nCopyArrivalDate yes\nSyncState {state}/\n\n",
                state = dir.join("state").display(),
            )
        };
        let rc = format!(
            "{}{}{}{}Group all\nChannel inbox\nChannel folders\n",
            account("far"),
            account("near"),
            channel("inbox", "INBOX", parent, ""),
            channel(
                "folders",
                "",
                &format!("{parent}/"),
                &format!("Patterns {}\n", others.join(" "))
            ),
        );
        let rc_path = dir.join("mbsyncrc");
        std::fs::write(&rc_path, rc)?;
        let (cpu, started) = (cpu_children(), Instant::now());
        let out = Command::new("mbsync")
            .arg("-c")
            .arg(&rc_path)
            .arg("-a")
            .output()
            .context("running mbsync (package isync)")?;
        let (elapsed, cpu) = (started.elapsed(), cpu_children().saturating_sub(cpu));
        ensure!(
            out.status.success(),
            "mbsync failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
            String::from_utf8_lossy(&out.stdout)
        );
        let command = format!(
            "mbsync -c {} -a   # channel inbox: INBOX -> {parent}; channel folders: {} -> {parent}/…; \
             Sync Pull, Create Near, Remove None, Expunge None, CopyArrivalDate yes, SSLType None, AuthMechs LOGIN",
            rc_path.display(),
            others.join(" ")
        );
        Ok((elapsed, cpu, command))
    }
}

/// How many message files of the Maildir folder `dir` (`cur/` and `new/`)
/// have more than one link, out of how many.
fn linked_files(dir: &Path) -> String {
    let (mut linked, mut all) = (0, 0);
    let files = ["cur", "new"].iter().flat_map(|sub| {
        std::fs::read_dir(dir.join(sub))
            .into_iter()
            .flatten()
            .flatten()
    });
    for e in files {
        if let Ok(m) = e.metadata() {
            all += 1;
            if m.nlink() > 1 {
                linked += 1;
            }
        }
    }
    format!("{linked}/{all}")
}

// ---------------------------------------------------------------------------
// Measuring

/// User plus system CPU time of this process (every thread).
fn cpu_self() -> Duration {
    rusage(libc::RUSAGE_SELF)
}

/// User plus system CPU time of the children waited for so far.
fn cpu_children() -> Duration {
    rusage(libc::RUSAGE_CHILDREN)
}

fn rusage(who: libc::c_int) -> Duration {
    // SAFETY: an all-zero rusage is a valid value; getrusage fills it in.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `usage` is a valid, writable rusage.
    if unsafe { libc::getrusage(who, &mut usage) } != 0 {
        return Duration::ZERO;
    }
    let time = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// Writes every dirty page out before a timed run (and says how long that
/// took): otherwise the first fsyncs of the next tool wait behind the
/// writeback of what came before (the seeded Maildir and its copy, the
/// previous tool's files), which is no part of its own work.
fn settle_disk() -> std::io::Result<()> {
    let started = Instant::now();
    // SAFETY: sync takes no arguments and cannot fail.
    unsafe { libc::sync() };
    print!("(sync {:.1}s) ", started.elapsed().as_secs_f64());
    std::io::stdout().flush()
}

/// The machine's CPU time counters (all cores, in clock ticks).
struct HostCpu {
    busy: u64,
    total: u64,
}

impl HostCpu {
    fn now() -> HostCpu {
        let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
        // cpu  user nice system idle iowait irq softirq steal …
        let ticks: Vec<u64> = stat
            .lines()
            .next()
            .unwrap_or_default()
            .split_whitespace()
            .skip(1)
            .take(8)
            .filter_map(|t| t.parse().ok())
            .collect();
        let total = ticks.iter().sum();
        let idle = ticks.get(3).copied().unwrap_or(0) + ticks.get(4).copied().unwrap_or(0);
        HostCpu {
            busy: total - idle,
            total,
        }
    }

    /// The busy share of the CPU time elapsed since `self`.
    fn busy_since(&self) -> f64 {
        let now = HostCpu::now();
        let total = now.total.saturating_sub(self.total);
        if total == 0 {
            return 0.0;
        }
        now.busy.saturating_sub(self.busy) as f64 / total as f64
    }
}

/// The 1, 5 and 15 minute load averages: this machine may be shared.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

fn version(program: &str, args: &[&str]) -> String {
    match Command::new(program).args(args).output() {
        Ok(o) => format!(
            "{program} {}",
            String::from_utf8_lossy(&o.stdout).trim().replace('\n', " ")
        ),
        Err(e) => format!("{program}: {e}"),
    }
}
