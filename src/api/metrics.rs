//! `GET /metrics`: Prometheus text exposition, computed at scrape time from
//! the job records, the index and the scheduler's counters.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::Ordering;

use crate::jobs::{Job, JobKind, JobState};

use super::server::ApiState;

/// Escapes a label value (backslash, quote, newline).
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The exposition text.
pub fn render(st: &ApiState) -> Result<String, String> {
    let jobs = st
        .index
        .jobs::<crate::jobs::Job>()
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    jobs_by_outcome(&mut out, &jobs);
    restored(&mut out, &jobs);
    durations(&mut out, &jobs);
    let store_bytes = st.store_bytes();
    let _ = writeln!(
        out,
        "# HELP mailrestore_store_bytes Bytes of the blob store's pack files."
    );
    let _ = writeln!(out, "# TYPE mailrestore_store_bytes gauge");
    let _ = writeln!(out, "mailrestore_store_bytes {store_bytes}");
    let index_bytes = st.index.size_on_disk().unwrap_or(0);
    let _ = writeln!(
        out,
        "# HELP mailrestore_index_bytes Bytes of the sled index on disk."
    );
    let _ = writeln!(out, "# TYPE mailrestore_index_bytes gauge");
    let _ = writeln!(out, "mailrestore_index_bytes {index_bytes}");
    let mut points: BTreeMap<String, u64> = BTreeMap::new();
    for g in st.index.all_generations().map_err(|e| e.to_string())? {
        *points.entry(g.user).or_default() += 1;
    }
    let _ = writeln!(
        out,
        "# HELP mailrestore_points Restore points kept, per user."
    );
    let _ = writeln!(out, "# TYPE mailrestore_points gauge");
    for (user, n) in &points {
        let _ = writeln!(out, "mailrestore_points{{user=\"{}\"}} {n}", label(user));
    }
    let s = &st.scheduler.stats;
    let _ = writeln!(
        out,
        "# HELP mailrestore_scheduler_lag_seconds How late the last scheduled round started."
    );
    let _ = writeln!(out, "# TYPE mailrestore_scheduler_lag_seconds gauge");
    let _ = writeln!(
        out,
        "mailrestore_scheduler_lag_seconds {:.3}",
        s.lag_ms.load(Ordering::Relaxed) as f64 / 1000.0
    );
    for (name, help, v) in [
        (
            "mailrestore_scheduler_rounds_total",
            "Scheduled rounds started.",
            &s.rounds,
        ),
        (
            "mailrestore_scheduler_snapshots_total",
            "Snapshots queued by the schedule.",
            &s.queued,
        ),
        (
            "mailrestore_scheduler_skipped_total",
            "Users skipped because their previous snapshot was still active.",
            &s.skipped,
        ),
        ("mailrestore_prunes_total", "Prunes run.", &s.prunes),
    ] {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} counter\n{name} {}",
            v.load(Ordering::Relaxed)
        );
    }
    let (queued, running) = st.queue.counts();
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
    Ok(out)
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
                sum += e.duration_since(s).as_secs_f64().max(0.0);
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
