//! `GET /metrics`: the Prometheus text exposition of figures gathered at
//! scrape time.
//!
//! This module only renders: [`render`] is a pure function of [`Figures`].
//! Gathering them reads the index (sled scans) and walks the pack directory,
//! which blocks, so the server does it on a blocking thread and never on the
//! async workers; nothing here does I/O or knows the server.

use std::collections::BTreeMap;
use std::fmt::Write;

use crate::jobs::{Job, JobKind, JobState};

/// What one scrape shows, read beforehand from the index, the store, the
/// scheduler and the queue.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Figures {
    /// Every job record in the index.
    pub jobs: Vec<Job>,
    /// Bytes of the store's pack files.
    pub store_bytes: u64,
    /// Bytes of the sled index on disk.
    pub index_bytes: u64,
    /// Restore points kept, per user.
    pub points: BTreeMap<String, u64>,
    /// The scheduler's counters.
    pub scheduler: SchedulerFigures,
    /// Jobs waiting for a worker.
    pub queued: usize,
    /// Jobs being worked on.
    pub running: usize,
}

/// The scheduler's counters at scrape time.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedulerFigures {
    /// How late the last scheduled round started, in ms.
    pub lag_ms: u64,
    /// Scheduled rounds started.
    pub rounds: u64,
    /// Snapshots queued by the schedule.
    pub queued: u64,
    /// Users skipped because their previous snapshot was still active.
    pub skipped: u64,
    /// Prunes run.
    pub prunes: u64,
}

/// Escapes a label value (backslash, quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The exposition text.
pub fn render(f: &Figures) -> String {
    let jobs = &f.jobs;
    let mut out = String::new();
    jobs_by_outcome(&mut out, jobs);
    restored(&mut out, jobs);
    durations(&mut out, jobs);
    let store_bytes = f.store_bytes;
    let _ = writeln!(
        out,
        "# HELP mailrestore_store_bytes Bytes of the blob store's pack files."
    );
    let _ = writeln!(out, "# TYPE mailrestore_store_bytes gauge");
    let _ = writeln!(out, "mailrestore_store_bytes {store_bytes}");
    let index_bytes = f.index_bytes;
    let _ = writeln!(
        out,
        "# HELP mailrestore_index_bytes Bytes of the sled index on disk."
    );
    let _ = writeln!(out, "# TYPE mailrestore_index_bytes gauge");
    let _ = writeln!(out, "mailrestore_index_bytes {index_bytes}");
    let _ = writeln!(
        out,
        "# HELP mailrestore_points Restore points kept, per user."
    );
    let _ = writeln!(out, "# TYPE mailrestore_points gauge");
    for (user, n) in &f.points {
        let _ = writeln!(out, "mailrestore_points{{user=\"{}\"}} {n}", label(user));
    }
    let s = &f.scheduler;
    let _ = writeln!(
        out,
        "# HELP mailrestore_scheduler_lag_seconds How late the last scheduled round started."
    );
    let _ = writeln!(out, "# TYPE mailrestore_scheduler_lag_seconds gauge");
    let _ = writeln!(
        out,
        "mailrestore_scheduler_lag_seconds {:.3}",
        s.lag_ms as f64 / 1000.0
    );
    for (name, help, v) in [
        (
            "mailrestore_scheduler_rounds_total",
            "Scheduled rounds started.",
            s.rounds,
        ),
        (
            "mailrestore_scheduler_snapshots_total",
            "Snapshots queued by the schedule.",
            s.queued,
        ),
        (
            "mailrestore_scheduler_skipped_total",
            "Users skipped because their previous snapshot was still active.",
            s.skipped,
        ),
        ("mailrestore_prunes_total", "Prunes run.", s.prunes),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
        );
    }
    let (queued, running) = (f.queued, f.running);
    let _ = writeln!(
        out,
        "# HELP mailrestore_jobs_active Jobs waiting or running."
    );
    let _ = writeln!(out, "# TYPE mailrestore_jobs_active gauge");
    let _ = writeln!(out, "mailrestore_jobs_active{{state=\"queued\"}} {queued}");
    let _ = writeln!(
        out,
        "mailrestore_jobs_active{{state=\"running\"}} {running}"
    );
    out
}

fn jobs_by_outcome(out: &mut String, jobs: &[Job]) {
    let mut counts: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for j in jobs.iter().filter(|j| j.state.is_final()) {
        *counts
            .entry((j.kind().as_str(), j.state.as_str()))
            .or_default() += 1;
    }
    let _ = writeln!(
        out,
        "# HELP mailrestore_jobs_total Snapshots and restores that ended, by outcome."
    );
    let _ = writeln!(out, "# TYPE mailrestore_jobs_total counter");
    for kind in [JobKind::Snapshot, JobKind::Restore] {
        for state in [JobState::Succeeded, JobState::Failed, JobState::Cancelled] {
            let n = counts
                .get(&(kind.as_str(), state.as_str()))
                .copied()
                .unwrap_or(0);
            let _ = writeln!(
                out,
                "mailrestore_jobs_total{{kind=\"{}\",outcome=\"{}\"}} {n}",
                kind.as_str(),
                state.as_str()
            );
        }
    }
}

fn restored(out: &mut String, jobs: &[Job]) {
    let restores = jobs.iter().filter(|j| j.kind() == JobKind::Restore);
    let (mut messages, mut bytes, mut items) = (0u64, 0u64, 0u64);
    for j in restores {
        messages += j.progress.messages.done;
        bytes += j.progress.bytes.done;
        items += j.progress.items.done;
    }
    for (name, help, v) in [
        (
            "mailrestore_restored_messages_total",
            "Messages restored.",
            messages,
        ),
        (
            "mailrestore_restored_bytes_total",
            "Message bytes restored.",
            bytes,
        ),
        (
            "mailrestore_restored_items_total",
            "Calendar and contact items restored.",
            items,
        ),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {v}"
        );
    }
}

fn durations(out: &mut String, jobs: &[Job]) {
    let _ = writeln!(
        out,
        "# HELP mailrestore_job_duration_seconds Time from start to end of jobs that ended."
    );
    let _ = writeln!(out, "# TYPE mailrestore_job_duration_seconds summary");
    for kind in [JobKind::Snapshot, JobKind::Restore] {
        let (mut sum, mut count) = (0.0, 0u64);
        for j in jobs.iter().filter(|j| j.kind() == kind) {
            if let (Some(s), Some(e)) = (j.started_at, j.finished_at) {
                sum += e.signed_duration_since(s).as_seconds_f64().max(0.0);
                count += 1;
            }
        }
        let k = kind.as_str();
        let _ = writeln!(
            out,
            "mailrestore_job_duration_seconds_sum{{kind=\"{k}\"}} {sum:.3}"
        );
        let _ = writeln!(
            out,
            "mailrestore_job_duration_seconds_count{{kind=\"{k}\"}} {count}"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::jobs::{JobId, JobSpec, RestoreSpec, Scope};
    use crate::time::Timestamp;

    fn job(id: u64, kind: JobKind, state: JobState, secs: Option<(i64, i64)>) -> Job {
        let spec = match kind {
            JobKind::Snapshot => JobSpec::Snapshot,
            JobKind::Restore => JobSpec::Restore(RestoreSpec {
                point: "20261126T140500Z".parse().unwrap(),
                scope: Scope::All,
                requested_by: None,
                allow_mailbox_change: false,
            }),
        };
        let mut j = Job::new(
            JobId(id),
            "alice@example.org".into(),
            spec,
            Timestamp::UNIX_EPOCH,
        );
        j.state = state;
        if let Some((start, end)) = secs {
            j.started_at = Some(crate::time::from_second(start).unwrap());
            j.finished_at = Some(crate::time::from_second(end).unwrap());
        }
        j
    }

    #[test]
    fn renders_fixed_figures_exactly() {
        let mut restore = job(2, JobKind::Restore, JobState::Failed, Some((100, 102)));
        restore.progress.messages.done = 7;
        restore.progress.bytes.done = 7000;
        restore.progress.items.done = 3;
        let figures = Figures {
            jobs: vec![
                job(1, JobKind::Snapshot, JobState::Succeeded, Some((10, 11))),
                job(3, JobKind::Snapshot, JobState::Succeeded, Some((20, 20))),
                restore,
                job(4, JobKind::Snapshot, JobState::Running, None),
            ],
            store_bytes: 12345,
            index_bytes: 678,
            points: BTreeMap::from([
                ("alice@example.org".to_string(), 3),
                ("odd\"na\\me\n".to_string(), 1),
            ]),
            scheduler: SchedulerFigures {
                lag_ms: 1500,
                rounds: 4,
                queued: 9,
                skipped: 1,
                prunes: 2,
            },
            queued: 5,
            running: 1,
        };
        let want = r#"# HELP mailrestore_jobs_total Snapshots and restores that ended, by outcome.
# TYPE mailrestore_jobs_total counter
mailrestore_jobs_total{kind="snapshot",outcome="succeeded"} 2
mailrestore_jobs_total{kind="snapshot",outcome="failed"} 0
mailrestore_jobs_total{kind="snapshot",outcome="cancelled"} 0
mailrestore_jobs_total{kind="restore",outcome="succeeded"} 0
mailrestore_jobs_total{kind="restore",outcome="failed"} 1
mailrestore_jobs_total{kind="restore",outcome="cancelled"} 0
# HELP mailrestore_restored_messages_total Messages restored.
# TYPE mailrestore_restored_messages_total counter
mailrestore_restored_messages_total 7
# HELP mailrestore_restored_bytes_total Message bytes restored.
# TYPE mailrestore_restored_bytes_total counter
mailrestore_restored_bytes_total 7000
# HELP mailrestore_restored_items_total Calendar and contact items restored.
# TYPE mailrestore_restored_items_total counter
mailrestore_restored_items_total 3
# HELP mailrestore_job_duration_seconds Time from start to end of jobs that ended.
# TYPE mailrestore_job_duration_seconds summary
mailrestore_job_duration_seconds_sum{kind="snapshot"} 1.000
mailrestore_job_duration_seconds_count{kind="snapshot"} 2
mailrestore_job_duration_seconds_sum{kind="restore"} 2.000
mailrestore_job_duration_seconds_count{kind="restore"} 1
# HELP mailrestore_store_bytes Bytes of the blob store's pack files.
# TYPE mailrestore_store_bytes gauge
mailrestore_store_bytes 12345
# HELP mailrestore_index_bytes Bytes of the sled index on disk.
# TYPE mailrestore_index_bytes gauge
mailrestore_index_bytes 678
# HELP mailrestore_points Restore points kept, per user.
# TYPE mailrestore_points gauge
mailrestore_points{user="alice@example.org"} 3
mailrestore_points{user="odd\"na\\me\n"} 1
# HELP mailrestore_scheduler_lag_seconds How late the last scheduled round started.
# TYPE mailrestore_scheduler_lag_seconds gauge
mailrestore_scheduler_lag_seconds 1.500
# HELP mailrestore_scheduler_rounds_total Scheduled rounds started.
# TYPE mailrestore_scheduler_rounds_total counter
mailrestore_scheduler_rounds_total 4
# HELP mailrestore_scheduler_snapshots_total Snapshots queued by the schedule.
# TYPE mailrestore_scheduler_snapshots_total counter
mailrestore_scheduler_snapshots_total 9
# HELP mailrestore_scheduler_skipped_total Users skipped because their previous snapshot was still active.
# TYPE mailrestore_scheduler_skipped_total counter
mailrestore_scheduler_skipped_total 1
# HELP mailrestore_prunes_total Prunes run.
# TYPE mailrestore_prunes_total counter
mailrestore_prunes_total 2
# HELP mailrestore_jobs_active Jobs waiting or running.
# TYPE mailrestore_jobs_active gauge
mailrestore_jobs_active{state="queued"} 5
mailrestore_jobs_active{state="running"} 1
"#;
        assert_eq!(render(&figures), want);
    }
}
