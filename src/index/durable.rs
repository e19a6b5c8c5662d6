//! What makes an index write survive a power cut.
//!
//! sled 0.34 ends its log writes with `sync_file_range(2)` (no file size,
//! no disk cache flush) and never fsyncs the files it keeps large values
//! in (`blobs/`), so its `flush` alone does not make a commit durable on
//! Linux. After every flush it relies on, the index fsyncs the log file
//! (`db`), each value file new since the last sync and the directories
//! that name them (FORMAT.md, "What is fsynced when").
//!
//! The job-number floor lives beside the index (`index.job-ids`) so that
//! job numbers the admin panel holds are never handed out again after the
//! index is lost and rebuilt.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// The files under a sled directory that a flush must reach.
pub(super) struct SledFiles {
    dir: PathBuf,
    log: File,
    /// The highest value file (`blobs/<lsn>`) fsynced so far.
    synced_values: Mutex<Option<u64>>,
}

impl SledFiles {
    /// Opens the log of the sled database in `dir` and makes the directory
    /// itself (and its entry in the parent) durable.
    pub(super) fn open(dir: &Path) -> std::io::Result<SledFiles> {
        let log = File::open(dir.join("db"))?;
        // sled writes `conf` once, at creation, and never fsyncs it: a
        // torn `conf` makes the next open fail.
        File::open(dir.join("conf"))?.sync_all()?;
        log.sync_all()?;
        sync_dir(dir)?;
        if let Some(parent) = dir.parent() {
            sync_dir(parent)?;
        }
        Ok(SledFiles {
            dir: dir.to_owned(),
            log,
            synced_values: Mutex::new(None),
        })
    }

    /// The sled directory.
    pub(super) fn dir(&self) -> &Path {
        &self.dir
    }

    /// fsyncs what sled's last flush wrote.
    pub(super) fn sync(&self) -> std::io::Result<()> {
        self.log.sync_all()?;
        let values = self.dir.join("blobs");
        let mut synced = self.synced_values.lock().unwrap_or_else(|p| p.into_inner());
        let Ok(entries) = std::fs::read_dir(&values) else {
            return Ok(()); // sled has written no large value yet
        };
        let mut newest = *synced;
        for entry in entries {
            let entry = entry?;
            let Some(lsn) = entry
                .file_name()
                .to_str()
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            if synced.is_none_or(|s| lsn > s) {
                File::open(entry.path())?.sync_all()?;
                newest = newest.max(Some(lsn));
            }
        }
        if newest != *synced {
            sync_dir(&values)?;
            sync_dir(&self.dir)?;
            *synced = newest;
        }
        Ok(())
    }
}

/// fsyncs a directory so the names in it survive a crash.
pub(super) fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Job numbers are reserved in blocks of this many in the floor file.
const JOB_ID_BLOCK: u64 = 100;

/// The file beside the index that holds the highest job number reserved:
/// a new index (after a loss or a repair) starts above it.
pub(super) struct JobIdFloor {
    path: PathBuf,
    reserved: Mutex<u64>,
}

impl JobIdFloor {
    /// Reads the floor for the index in `dir` (0 when there is none).
    pub(super) fn open(dir: &Path) -> std::io::Result<JobIdFloor> {
        let path = dir.with_extension("job-ids");
        let reserved = match std::fs::read_to_string(&path) {
            Ok(text) => text.trim().parse::<u64>().map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} is damaged: {e}", path.display()),
                )
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => 0,
            Err(e) => return Err(e),
        };
        Ok(JobIdFloor {
            path,
            reserved: Mutex::new(reserved),
        })
    }

    /// The highest number reserved.
    pub(super) fn get(&self) -> u64 {
        *self.reserved.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes sure `n` is reserved, durably, before it is handed out.
    pub(super) fn reserve(&self, n: u64) -> std::io::Result<()> {
        let mut reserved = self.reserved.lock().unwrap_or_else(|p| p.into_inner());
        if n <= *reserved {
            return Ok(());
        }
        let next = n.div_ceil(JOB_ID_BLOCK) * JOB_ID_BLOCK;
        let tmp = self.path.with_extension("job-ids.tmp");
        {
            use std::io::Write;
            let mut f = File::create(&tmp)?;
            writeln!(f, "{next}")?;
            f.sync_all()?;
        }
        std::fs::rename(&tmp, &self.path)?;
        if let Some(parent) = self.path.parent() {
            sync_dir(parent)?;
        }
        *reserved = next;
        Ok(())
    }
}
