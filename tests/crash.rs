//! The crash campaign: the daemon is killed at a seeded step of its write
//! order (a named crash point, `src/failpoint.rs`) or at a seeded random
//! moment, restarted, and must then end every job, with every message and
//! item restored exactly once, every point it reported still listed and
//! `verify --read-data` clean.
//!
//! Each run takes a fresh user through the same story, against real
//! Dovecot and Radicale: a first point, a change to the mailbox, a second
//! point, a restore of the first point, a prune that drops it. A recording
//! run first learns the steps (every crash point passed, in order, and how
//! long the story takes); each seeded run then picks one crash from those.
//!
//! Power cuts: the state directory is a power-loss file system
//! (`mailrestore_sandbox::powerloss`) that keeps only what was fsynced (and,
//! for a seeded prefix cut, some of the queued writes in order). At the
//! crash, or at the story's end when the crash never came, the power is
//! cut: the daemon restarts on what the disk kept, and every point the API
//! had reported must still be listed.
//!
//! `CRASH_SEED` (default 1), `CRASH_RUNS` (default 8) and `POWER_RUNS`
//! (default 4) choose the runs (the suite's subset by default);
//! `scripts/crash-campaign.sh` runs long campaigns. Every run prints its
//! seed and crash, so a failure replays with `CRASH_SEED=<seed>
//! CRASH_RUNS=1` (or `POWER_RUNS=1`).

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::dav::items;
use common::{Msg, content};
use mailrestore::api::client::ApiClient;
use mailrestore_sandbox::daemon::{DaemonFiles, write_config};
use mailrestore_sandbox::dav_seed::{SeedItem, make_calendar, put_items};
use mailrestore_sandbox::powerloss::{Cut, Mounted, PowerLossFs};
use mailrestore_sandbox::{Sandbox, SandboxOptions};
use serde_json::{Value, json};

const BIN: &str = env!("CARGO_BIN_EXE_mailrestore");
const CAL: &str = "text/calendar; charset=utf-8";

/// splitmix64: a seeded stream, the same on every machine.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Where a run's daemon dies.
#[derive(Debug, Clone)]
enum Crash {
    /// The n-th time (1-based) it passes the named crash point.
    At(String, u64),
    /// SIGKILL this long after it starts.
    After(Duration),
}

/// What the recording run learnt: each crash point with how often the
/// story passes it, and how long the story takes.
#[derive(Debug, Clone)]
struct Steps {
    points: BTreeMap<String, u64>,
    duration: Duration,
}

impl Steps {
    /// The crash of `seed`: two in three at a named point (each point as
    /// likely as any other, then any of its passes), else a random moment.
    fn pick(&self, seed: u64) -> Crash {
        let mut rng = Rng(seed);
        if rng.below(3) < 2 && !self.points.is_empty() {
            let i = rng.below(self.points.len() as u64) as usize;
            let (name, n) = self.points.iter().nth(i).expect("in range");
            Crash::At(name.clone(), 1 + rng.below(*n))
        } else {
            let ms = self.duration.as_millis() as u64;
            Crash::After(Duration::from_millis(rng.below(ms.max(1))))
        }
    }
}

/// A daemon child, killed on drop.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Daemon {
    /// Starts `mailrestore serve` with `env`; `None` when it died before
    /// its socket answered (a crash point during start-up).
    fn start(f: &DaemonFiles, env: &[(&str, String)]) -> Option<Daemon> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(f.dir.join("serve.log"))
            .expect("open the daemon log");
        let _ = std::fs::remove_file(&f.socket);
        let mut cmd = Command::new(BIN);
        cmd.args(["serve", "--config"])
            .arg(&f.config)
            .env("NO_COLOR", "1")
            .stdout(Stdio::null())
            .stderr(log);
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut d = Daemon(cmd.spawn().expect("spawn serve"));
        let deadline = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(&f.socket).is_err() {
            if d.0.try_wait().expect("try_wait").is_some() {
                return None;
            }
            assert!(Instant::now() < deadline, "the daemon did not listen");
            std::thread::sleep(Duration::from_millis(10));
        }
        Some(d)
    }

    fn is_dead(&mut self) -> bool {
        self.0.try_wait().expect("try_wait").is_some()
    }
}

/// One user's story, and what was seen of it.
struct Story<'a> {
    sandbox: &'a Sandbox,
    user: String,
    files: DaemonFiles,
    /// The environment of the first daemon (the crash, or the recording).
    first_env: Vec<(&'static str, String)>,
    /// A random-moment kill for the first daemon.
    kill_after: Option<Duration>,
    daemon: Option<Daemon>,
    starts: u32,
    /// When the first daemon started.
    first_start: Option<Instant>,
    /// Points the API reported as taken (job `succeeded`), in order.
    reported: Vec<String>,
    /// The mailbox and calendar as the first point saw them.
    first_mail: BTreeMap<String, BTreeMap<u32, Msg>>,
    first_items: BTreeMap<String, Vec<u8>>,
    prune_started: bool,
    /// The power-loss file system under the state directory, until the cut.
    power: Option<(Mounted, Cut)>,
    /// Cuts made (0 or 1).
    cuts: u32,
}

/// The API failed because the daemon is gone: restart and go on.
struct Died;

impl<'a> Story<'a> {
    fn new(sandbox: &'a Sandbox, user: &str, dir: &Path) -> Story<'a> {
        let extra = "\n[retention]\nhourly = 1\ndaily = 0\nweekly = 0\nmonthly = 0\n";
        Story {
            sandbox,
            user: user.to_string(),
            files: write_config(sandbox, dir, extra).expect("config"),
            first_env: Vec::new(),
            kill_after: None,
            daemon: None,
            starts: 0,
            first_start: None,
            reported: Vec::new(),
            first_mail: BTreeMap::new(),
            first_items: BTreeMap::new(),
            prune_started: false,
            power: None,
            cuts: 0,
        }
    }

    /// Puts the state directory on a power-loss file system, cut with `cut`.
    fn on_power_loss_fs(&mut self, cut: Cut) {
        let backing = self.files.dir.join("backing");
        std::fs::create_dir_all(&self.files.state_dir).expect("mountpoint");
        let mounted = PowerLossFs::mount(&backing, &self.files.state_dir).expect("mount");
        self.power = Some((mounted, cut));
    }

    /// Cuts the power (the daemon is dead or killed now): the state
    /// directory becomes what the disk kept.
    fn power_cut(&mut self) {
        let Some((mounted, cut)) = self.power.take() else {
            return;
        };
        self.daemon = None;
        let kept = self.files.dir.join("after-cut");
        let report = mounted.cut(cut, &kept).expect("cut");
        eprintln!("campaign: power cut {cut:?}: {report:?}");
        std::fs::remove_dir(&self.files.state_dir).expect("the unmounted mountpoint");
        std::fs::rename(&kept, &self.files.state_dir).expect("the kept state");
        self.cuts += 1;
    }

    fn api(&self) -> ApiClient {
        ApiClient::new(&self.files.socket)
    }

    /// A running daemon: the first one with the crash, later ones plain.
    fn ensure_daemon(&mut self) {
        if self.daemon.as_mut().is_some_and(|d| !d.is_dead()) {
            return;
        }
        self.daemon = None;
        if self.starts > 0 {
            self.power_cut();
        }
        loop {
            let env = if self.starts == 0 {
                self.first_env.clone()
            } else {
                Vec::new()
            };
            self.starts += 1;
            self.first_start.get_or_insert_with(Instant::now);
            assert!(self.starts < 10, "the daemon keeps dying at start");
            if let Some(d) = Daemon::start(&self.files, &env) {
                if self.starts == 1
                    && let Some(after) = self.kill_after
                {
                    let pid = d.0.id() as i32;
                    std::thread::spawn(move || {
                        std::thread::sleep(after);
                        // SAFETY: kill(2) of our child, not yet reaped
                        // (it is reaped only by `Daemon`'s drop, later).
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    });
                }
                self.daemon = Some(d);
                return;
            }
        }
    }

    /// The API failed: the daemon must be dying (a crash), else the
    /// failure is the test's.
    fn died(&mut self, what: &str, e: impl std::fmt::Display) -> Died {
        let deadline = Instant::now() + Duration::from_secs(10);
        while let Some(d) = self.daemon.as_mut() {
            if d.is_dead() {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{what} failed and the daemon lives: {e}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        Died
    }

    async fn get(&mut self, path: &str) -> Result<Value, Died> {
        match self.api().get(path).await {
            Ok(v) => Ok(v),
            Err(e) => Err(self.died(path, e)),
        }
    }

    async fn post(&mut self, path: &str, body: &Value) -> Result<Value, Died> {
        match self.api().post(path, body).await {
            Ok(v) => Ok(v),
            Err(e) => Err(self.died(path, e)),
        }
    }

    /// The user's jobs of `kind`, oldest first.
    async fn jobs(&mut self, kind: &str) -> Result<Vec<Value>, Died> {
        let user = self.user.clone();
        let v = self
            .get(&format!("/v1/jobs?user={user}&kind={kind}"))
            .await?;
        let mut jobs = v["jobs"].as_array().cloned().unwrap_or_default();
        jobs.sort_by_key(|j| j["id"].as_str().and_then(|s| s.parse::<u64>().ok()));
        Ok(jobs)
    }

    async fn wait(&mut self, id: &str) -> Result<Value, Died> {
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            let j = self.get(&format!("/v1/jobs/{id}")).await?;
            if matches!(
                j["state"].as_str(),
                Some("succeeded" | "failed" | "cancelled")
            ) {
                return Ok(j);
            }
            assert!(Instant::now() < deadline, "job {id} is stuck: {j}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Makes sure the `nth` job of `kind` exists (posting it if the daemon
    /// never took it) and has ended; returns it.
    async fn job(&mut self, kind: &str, nth: usize, post: (&str, Value)) -> Value {
        loop {
            self.ensure_daemon();
            let attempt: Result<Value, Died> = async {
                let jobs = self.jobs(kind).await?;
                let id = match jobs.get(nth) {
                    Some(j) => j["id"].as_str().expect("id").to_string(),
                    None => {
                        let r = self.post(post.0, &post.1).await?;
                        let job = if r["jobs"].is_array() {
                            r["jobs"][0].clone()
                        } else {
                            r
                        };
                        job["id"].as_str().expect("id").to_string()
                    }
                };
                self.wait(&id).await
            }
            .await;
            if let Ok(job) = attempt {
                assert_eq!(job["state"], "succeeded", "{kind} {nth}: {job}");
                return job;
            }
        }
    }

    async fn snapshot(&mut self, nth: usize) {
        let body = json!({"user": self.user});
        let job = self.job("snapshot", nth, ("/v1/snapshots", body)).await;
        let point = job["point"].as_str().expect("point").to_string();
        if !self.reported.contains(&point) {
            self.reported.push(point);
        }
    }

    async fn restore(&mut self) -> Value {
        let body = json!({"user": self.user, "point": self.reported[0], "scope": "all",
            "requested_by": "admin@example.org"});
        self.job("restore", 0, ("/v1/restores", body)).await
    }

    async fn prune(&mut self) {
        self.prune_started = true;
        loop {
            self.ensure_daemon();
            if self
                .post("/v1/prune", &json!({"dry_run": false}))
                .await
                .is_ok()
            {
                return;
            }
        }
    }

    /// The story, start to end; returns the restore job.
    async fn play(&mut self) -> Value {
        seed_user(self.sandbox, &self.user);
        self.first_mail = common::live(self.sandbox.dovecot().unwrap(), &self.user);
        self.first_items = items(&self.http(), &self.calendar());
        self.snapshot(0).await;
        change_mailbox(self.sandbox, &self.user);
        self.snapshot(1).await;
        let restore = self.restore().await;
        self.prune().await;
        // Every job ended (none stuck, none failed).
        for kind in ["snapshot", "restore"] {
            self.ensure_daemon();
            if let Ok(jobs) = self.jobs(kind).await {
                for j in jobs {
                    assert_eq!(j["state"], "succeeded", "{j}");
                }
            }
        }
        restore
    }

    fn http(&self) -> mailrestore_sandbox::raw_http::RawHttp {
        self.sandbox.radicale().unwrap().user_client(&self.user)
    }

    fn calendar(&self) -> String {
        format!("/{}/cal/", self.user.replace('@', "%40"))
    }

    /// Checks what the story left: points, the store, the restore.
    async fn check(&mut self, restore: &Value, what: &str) {
        // A crash that never came: the power goes at the end instead.
        if self.power.is_some() {
            self.daemon = None;
            self.power_cut();
        }
        self.ensure_daemon();
        let user = self.user.clone();
        let listed: Vec<String> = loop {
            if let Ok(v) = self.get(&format!("/v1/users/{user}/points")).await {
                break v["points"]
                    .as_array()
                    .expect("points")
                    .iter()
                    .map(|p| p["id"].as_str().expect("id").to_string())
                    .collect();
            }
            self.ensure_daemon();
        };
        // The prune drops the first point (the policy keeps the newest);
        // every other point reported stays.
        for (i, p) in self.reported.iter().enumerate() {
            let may_go = i == 0 && self.prune_started;
            assert!(
                may_go || listed.contains(p),
                "{what}: point {p} was reported and is gone: {listed:?}"
            );
        }
        self.daemon = None;
        let out = Command::new(BIN)
            .arg("--config")
            .arg(&self.files.config)
            .args(["verify", "--read-data"])
            .output()
            .expect("verify");
        assert!(
            out.status.success(),
            "{what}: verify --read-data: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let target = restore["target"]["folder"].as_str().expect("folder");
        let now = common::live(self.sandbox.dovecot().unwrap(), &self.user);
        for (name, msgs) in &self.first_mail {
            let restored = if name == "INBOX" {
                target.to_string()
            } else {
                format!("{target}/{name}")
            };
            assert_eq!(
                content(&now[&restored]),
                content(msgs),
                "{what}: {restored} must hold each message of {name} exactly once"
            );
        }
        let calendar = restore["target"]["calendars"][0]
            .as_str()
            .expect("calendar");
        let restored = items(&self.http(), calendar);
        assert_eq!(
            restored.len(),
            self.first_items.len(),
            "{what}: each item exactly once"
        );
        assert!(
            restored
                .values()
                .all(|b| self.first_items.values().any(|o| o == b)),
            "{what}: the restored items differ from the originals"
        );
    }
}

fn seed_user(sandbox: &Sandbox, user: &str) {
    let d = sandbox.dovecot().unwrap();
    let mut imap = d.login_master(user).expect("login");
    for (folder, n) in [("INBOX", 10u32), ("Work", 6), ("Work/Sub", 3)] {
        if folder != "INBOX" {
            imap.create(folder).expect("create");
        }
        for i in 0..n {
            let flags: &[&str] = match i % 3 {
                0 => &["\\Seen"],
                1 => &["\\Flagged", "$Label1"],
                _ => &[],
            };
            let body = format!(
                "From: a@example.org\r\nSubject: {folder} {i}\r\n\r\n{}\r\n",
                "line of text ".repeat(1 + i as usize * 40)
            );
            let date = format!("{:02}-Nov-2026 10:00:00 +0100", 1 + i);
            imap.append(folder, flags, Some(&date), body.as_bytes())
                .expect("append");
        }
    }
    imap.logout().expect("logout");
    let http = sandbox.radicale().unwrap().user_client(user);
    let cal = format!("/{}/cal/", user.replace('@', "%40"));
    assert_eq!(make_calendar(&http, &cal, "Cal", "#102030ff").unwrap(), 201);
    let events: Vec<SeedItem> = (0..5)
        .map(|i| SeedItem {
            name: format!("ev{i}.ics"),
            bytes: format!(
                "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//crash//EN\r\nBEGIN:VEVENT\r\nUID:ev{i}@crash\r\nDTSTAMP:20261126T100000Z\r\nDTSTART:20261201T090000Z\r\nSUMMARY:Event {i}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
            )
            .into_bytes(),
        })
        .collect();
    assert_eq!(put_items(&http, &cal, CAL, &events).unwrap().len(), 5);
}

/// Between the two points: two messages expunged, one new.
fn change_mailbox(sandbox: &Sandbox, user: &str) {
    let d = sandbox.dovecot().unwrap();
    let mut imap = d.login_master(user).expect("login");
    imap.select("INBOX").expect("select");
    imap.command_ok("UID STORE 1:2 +FLAGS.SILENT (\\Deleted)")
        .expect("store");
    imap.command_ok("EXPUNGE").expect("expunge");
    imap.append("Work", &[], None, b"Subject: new\r\n\r\nnew\r\n")
        .expect("append");
    imap.logout().expect("logout");
}

fn sandbox(users: usize) -> Sandbox {
    Sandbox::start(SandboxOptions {
        radicale: true,
        users: (0..users).map(|i| format!("u{i}@example.org")).collect(),
        ..SandboxOptions::default()
    })
    .expect("sandbox with Dovecot and Radicale")
}

/// The recording run: the story once, every crash point logged.
async fn record(sandbox: &Sandbox, user: &str, dir: &Path) -> Steps {
    let log = dir.join("failpoints.log");
    let mut story = Story::new(sandbox, user, &dir.join("daemon"));
    story.first_env = vec![("MAILRESTORE_FAILPOINT_LOG", log.display().to_string())];
    let restore = story.play().await;
    let duration = story.first_start.expect("started").elapsed();
    story.check(&restore, "the recording run").await;
    let mut points = BTreeMap::new();
    for line in std::fs::read_to_string(&log)
        .expect("the failpoint log")
        .lines()
    {
        *points.entry(line.to_string()).or_insert(0) += 1;
    }
    Steps { points, duration }
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// One seeded run: a fresh user, the crash of `seed`, and (with `power`)
/// a power cut at it; then every check.
async fn run(
    sandbox: &Sandbox,
    steps: &Steps,
    dir: &Path,
    user: &str,
    seed: u64,
    power: bool,
) -> bool {
    let crash = steps.pick(seed);
    let cut = if Rng(seed ^ 0x5eed).below(2) == 0 {
        Cut::All
    } else {
        Cut::Prefix { seed }
    };
    eprintln!(
        "campaign: seed {seed}: {crash:?}{}",
        if power {
            format!(", then a power cut {cut:?}")
        } else {
            String::new()
        }
    );
    let mut story = Story::new(sandbox, user, dir);
    if power {
        story.on_power_loss_fs(cut);
    }
    match &crash {
        Crash::At(name, n) => {
            story.first_env = vec![("MAILRESTORE_CRASH_AT", format!("{name}:{n}"))];
        }
        Crash::After(d) => story.kill_after = Some(*d),
    }
    let restore = story.play().await;
    let what = format!("seed {seed} ({crash:?}, power {power})");
    story.check(&restore, &what).await;
    story.starts > 1
}

async fn campaign(runs_var: &str, default_runs: u64, power: bool) {
    assert!(
        mailrestore::failpoint::enabled(),
        "build the tests with --features mailrestore/failpoints (scripts/test.sh does)"
    );
    let first_seed = env_u64("CRASH_SEED", 1);
    let runs = env_u64(runs_var, default_runs);
    let sandbox = sandbox(runs as usize + 1);
    let dir = tempfile::tempdir().unwrap();
    let steps = record(&sandbox, "u0@example.org", &dir.path().join("record")).await;
    eprintln!(
        "campaign: {} crash points, {} passes, story {:?}: {:?}",
        steps.points.len(),
        steps.points.values().sum::<u64>(),
        steps.duration,
        steps.points
    );
    for expected in [
        "pack.durable",
        "index.durable",
        "journal.saved",
        "restore.created",
        "restore.sending",
        "restore.answered",
        "dav.put",
        "prune.dropped",
    ] {
        assert!(
            steps.points.contains_key(expected),
            "{expected} never passed"
        );
    }
    let mut crashed = 0;
    for i in 0..runs {
        let user = format!("u{}@example.org", i + 1);
        let run_dir = dir.path().join(format!("run{i}"));
        if run(&sandbox, &steps, &run_dir, &user, first_seed + i, power).await {
            crashed += 1;
        }
    }
    eprintln!(
        "campaign: {runs} runs from seed {first_seed} (power cuts: {power}), {crashed} crashed and recovered"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn crash_campaign() {
    campaign("CRASH_RUNS", 8, false).await;
}

#[tokio::test(flavor = "multi_thread")]
async fn power_cut_campaign() {
    campaign("POWER_RUNS", 4, true).await;
}
