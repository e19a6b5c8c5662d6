//! Named crash points at every step of the write order, for the crash
//! campaign (`scripts/crash-campaign.sh`) and the kill tests.
//!
//! Built only with the `failpoints` cargo feature (the test command turns
//! it on; a release build has none: [`hit`] is then an empty inline
//! function). With the feature, two environment variables drive it:
//! - `MAILRESTORE_FAILPOINT_LOG=FILE` appends the name of every point
//!   passed, one per line, in order (a recording run, to learn the steps);
//! - `MAILRESTORE_CRASH_AT=N` SIGKILLs the process the N-th time (1-based)
//!   any point is passed, or `MAILRESTORE_CRASH_AT=NAME:N` the N-th time
//!   the point NAME is: no destructor, no flush, as a power-less crash.
//!
//! The points, in write order: `pack.written` (bytes handed to the kernel,
//! before fsync), `pack.synced` (fsynced, not yet renamed), `pack.renamed`
//! (renamed, directory not yet fsynced), `pack.durable`; `index.flushed`
//! (sled flushed, files not yet fsynced), `index.durable`; `job.saved`;
//! `journal.saved`; `restore.created` (a folder created, not journaled),
//! `restore.sending` (a batch journaled pending, not yet sent),
//! `restore.answered` (the server's OK, not yet journaled done);
//! `dav.putting`, `dav.put`; `prune.dropped` (a point left the index),
//! `prune.rewritten` (live blobs copied, the old pack not yet deleted),
//! `prune.deleted` (a pack deleted, its directory not yet fsynced).

/// True when this build has crash points.
pub fn enabled() -> bool {
    cfg!(feature = "failpoints")
}

/// Passes the point `name`: records it, and dies here when told to.
#[cfg(not(feature = "failpoints"))]
#[inline(always)]
pub fn hit(_name: &'static str) {}

/// Passes the point `name`: records it, and dies here when told to.
#[cfg(feature = "failpoints")]
pub fn hit(name: &'static str) {
    imp::hit(name)
}

#[cfg(feature = "failpoints")]
mod imp {
    use std::collections::HashMap;
    use std::io::Write;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::sync::{Mutex, OnceLock};

    enum CrashAt {
        Never,
        Nth(u64),
        Named(String, u64),
    }

    struct Plan {
        crash: CrashAt,
        log: Option<Mutex<std::fs::File>>,
        total: AtomicU64,
        named: Mutex<HashMap<&'static str, u64>>,
    }

    fn plan() -> &'static Plan {
        static PLAN: OnceLock<Plan> = OnceLock::new();
        PLAN.get_or_init(|| {
            let crash = match std::env::var("MAILRESTORE_CRASH_AT") {
                Ok(v) => match v.rsplit_once(':') {
                    Some((name, n)) => n
                        .parse()
                        .map_or(CrashAt::Never, |n| CrashAt::Named(name.to_string(), n)),
                    None => v.parse().map_or(CrashAt::Never, CrashAt::Nth),
                },
                Err(_) => CrashAt::Never,
            };
            let log = std::env::var_os("MAILRESTORE_FAILPOINT_LOG").and_then(|p| {
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)
                    .ok()
                    .map(Mutex::new)
            });
            Plan {
                crash,
                log,
                total: AtomicU64::new(0),
                named: Mutex::new(HashMap::new()),
            }
        })
    }

    pub(super) fn hit(name: &'static str) {
        let plan = plan();
        let n = plan.total.fetch_add(1, Ordering::SeqCst) + 1;
        let nth_of_name = {
            let mut named = plan.named.lock().unwrap_or_else(|p| p.into_inner());
            let c = named.entry(name).or_insert(0);
            *c += 1;
            *c
        };
        if let Some(log) = &plan.log {
            let mut f = log.lock().unwrap_or_else(|p| p.into_inner());
            let _ = writeln!(f, "{name}");
        }
        let die = match &plan.crash {
            CrashAt::Never => false,
            CrashAt::Nth(k) => n == *k,
            CrashAt::Named(want, k) => want == name && nth_of_name == *k,
        };
        if die {
            eprintln!("failpoint: crashing at {name} (hit {n}, {nth_of_name} of this point)");
            // SAFETY: kill(2) of our own process; nothing is shared.
            unsafe {
                libc::kill(libc::getpid(), libc::SIGKILL);
            }
        }
    }
}
