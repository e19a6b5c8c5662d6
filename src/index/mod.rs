//! The index: the only module that touches sled.
//!
//! It holds the jobs (and, as the store grows, the generations and the blob
//! locations). Everything else sees a narrow, typed interface so the engine
//! could be swapped without touching the rest. Values are JSON documents
//! under big-endian numeric keys, so trees iterate in id order.
//!
//! Invariant: a write that callers rely on after a crash (a job state change,
//! a generation commit) is flushed to disk before the call returns.

mod durable;

use std::borrow::Cow;
use std::marker::PhantomData;
use std::path::Path;

use crate::time::Timestamp;

use crate::blob::{BlobId, BlobLocation};
use crate::manifest::{Generation, GenerationId};

/// Why the index failed.
#[derive(Debug, thiserror::Error)]
pub enum IndexError {
    /// sled reported an error (I/O, corruption).
    #[error("index database error: {0}")]
    Db(#[from] sled::Error),
    /// A stored record could not be decoded.
    #[error("index record {key} in {tree} is damaged: {source}")]
    Decode {
        /// The tree.
        tree: &'static str,
        /// The key, printed.
        key: String,
        /// What serde said.
        source: serde_json::Error,
    },
    /// A stored record has the wrong shape.
    #[error("index record {key} in {tree} is damaged")]
    Damaged {
        /// The tree.
        tree: &'static str,
        /// The key, printed.
        key: String,
    },
    /// A file of the index could not be made durable or read.
    #[error("index file I/O in {dir}: {source}")]
    Io {
        /// The index directory.
        dir: std::path::PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// The index was written by an incompatible version.
    #[error("index format {found} is not supported (this build reads format {expected})")]
    Format {
        /// Found on disk.
        found: String,
        /// What this build reads.
        expected: u32,
    },
}

/// The index format, written as ASCII digits under the key `format` of
/// sled's default tree (FORMAT.md).
pub const FORMAT_VERSION: u32 = 1;

const JOBS: &str = "jobs";
const BLOBS: &str = "blobs";
const GENERATIONS: &str = "generations";
const JOURNAL: &str = "journal";
const DAMAGED: &str = "damaged";

/// What the index needs of a job record (the jobs module's `Job`): its
/// number, and whether it may be forgotten. The index stores it as JSON and
/// knows nothing else of it.
pub trait JobRecord: serde::Serialize + serde::de::DeserializeOwned {
    /// The job's number: its key, in submission order.
    fn number(&self) -> u64;
    /// True when the job has ended before `cutoff` and may be forgotten.
    fn forgettable_before(&self, cutoff: Timestamp) -> bool;
}

/// The name of one journal record of a job, bound to the type it holds, so
/// a record is always read back as what it was written as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JournalKey<T> {
    name: Cow<'static, str>,
    holds: PhantomData<fn() -> T>,
}

impl<T> JournalKey<T> {
    /// The one record of its kind in a job (`plan`).
    pub const fn single(name: &'static str) -> JournalKey<T> {
        JournalKey {
            name: Cow::Borrowed(name),
            holds: PhantomData,
        }
    }

    /// The record of item `n` of a kind (`f3`: folder 3's progress).
    pub fn nth(prefix: &'static str, n: usize) -> JournalKey<T> {
        JournalKey {
            name: Cow::Owned(format!("{prefix}{n}")),
            holds: PhantomData,
        }
    }

    /// The key as stored.
    pub fn name(&self) -> &str {
        &self.name
    }
}

/// A handle on the index. Cheap to clone.
#[derive(Clone)]
pub struct Index {
    db: sled::Db,
    jobs: sled::Tree,
    blobs: sled::Tree,
    generations: sled::Tree,
    journal: sled::Tree,
    damaged: sled::Tree,
    files: std::sync::Arc<durable::SledFiles>,
    job_ids: std::sync::Arc<durable::JobIdFloor>,
}

impl Index {
    /// Opens (or creates) the index in `dir`.
    pub fn open(dir: &Path) -> Result<Index, IndexError> {
        let config = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::LowSpace)
            // No background flusher: every write callers rely on is flushed
            // by us anyway, and its other job, moving live pages out of
            // half-empty segments whenever it wakes, landed at random in
            // the next snapshot's writes (+29 to +84 KiB for one message
            // after a 50,000-location commit). Cleaning still happens, one
            // page per node rewrite, inside our own writes.
            .flush_every_ms(None);
        // sled 0.34 panics on some damage instead of answering an error:
        // a damaged index must be an error the caller can act on (`verify
        // --repair` moves it aside), never a crashed process.
        let db = std::panic::catch_unwind(std::panic::AssertUnwindSafe(move || config.open()))
            .map_err(|panic| {
            let why = panic
                .downcast_ref::<String>()
                .map(String::as_str)
                .or_else(|| panic.downcast_ref::<&str>().copied())
                .unwrap_or("sled panicked");
            IndexError::Io {
                dir: dir.to_owned(),
                source: std::io::Error::new(std::io::ErrorKind::InvalidData, why.to_string()),
            }
        })??;
        let io = |source| IndexError::Io {
            dir: dir.to_owned(),
            source,
        };
        let files = std::sync::Arc::new(durable::SledFiles::open(dir).map_err(io)?);
        let job_ids = std::sync::Arc::new(durable::JobIdFloor::open(dir).map_err(io)?);
        match db.get("format")? {
            None => {
                db.insert("format", FORMAT_VERSION.to_string().as_bytes())?;
                db.flush()?;
                files.sync().map_err(io)?;
            }
            Some(v) if v.as_ref() == FORMAT_VERSION.to_string().as_bytes() => {}
            Some(v) => {
                return Err(IndexError::Format {
                    found: String::from_utf8_lossy(&v).into_owned(),
                    expected: FORMAT_VERSION,
                });
            }
        }
        let jobs = db.open_tree(JOBS)?;
        let blobs = db.open_tree(BLOBS)?;
        let generations = db.open_tree(GENERATIONS)?;
        let journal = db.open_tree(JOURNAL)?;
        let damaged = db.open_tree(DAMAGED)?;
        Ok(Index {
            db,
            jobs,
            blobs,
            generations,
            journal,
            damaged,
            files,
            job_ids,
        })
    }

    /// Flushes sled and fsyncs what it wrote: every write callers rely on
    /// after a crash ends with this.
    fn durable(&self) -> Result<(), IndexError> {
        self.db.flush()?;
        crate::failpoint::hit("index.flushed");
        self.files.sync().map_err(|source| IndexError::Io {
            dir: self.files_dir(),
            source,
        })?;
        crate::failpoint::hit("index.durable");
        Ok(())
    }

    fn files_dir(&self) -> std::path::PathBuf {
        self.files.dir().to_owned()
    }

    /// A new job number, never handed out before (survives restarts).
    /// Numbers are reserved durably beside the index before they are
    /// handed out, so a lost or rebuilt index never hands one out again.
    pub fn next_job_id(&self) -> Result<u64, IndexError> {
        // Our own counter (sled's generate_id jumps by a million at each
        // start): 1, 2, … durably, never reused.
        let floor = self.job_ids.get();
        let next = self.db.update_and_fetch("next_job_id", |old| {
            let n = old
                .and_then(|b| <[u8; 8]>::try_from(b).ok())
                .map_or(0, u64::from_be_bytes);
            Some((n.max(floor) + 1).to_be_bytes().to_vec())
        })?;
        let next = next
            .and_then(|b| <[u8; 8]>::try_from(b.as_ref()).ok())
            .map_or(1, u64::from_be_bytes);
        self.job_ids
            .reserve(next)
            .map_err(|source| IndexError::Io {
                dir: self.files_dir(),
                source,
            })?;
        self.durable()?;
        Ok(next)
    }

    /// Writes a job record durably.
    pub fn put_job<J: JobRecord>(&self, job: &J) -> Result<(), IndexError> {
        // Job records are plain structs: always serialisable.
        let value = serde_json::to_vec(job).expect("a job record always serialises");
        self.jobs.insert(job.number().to_be_bytes(), value)?;
        self.durable()?;
        crate::failpoint::hit("job.saved");
        Ok(())
    }

    /// One job.
    pub fn job<J: JobRecord>(&self, number: u64) -> Result<Option<J>, IndexError> {
        self.jobs
            .get(number.to_be_bytes())?
            .map(|v| decode(JOBS, &number.to_string(), &v))
            .transpose()
    }

    /// Every job, oldest first.
    pub fn jobs<J: JobRecord>(&self) -> Result<Vec<J>, IndexError> {
        self.jobs
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                decode(JOBS, &format!("{k:?}"), &v)
            })
            .collect()
    }

    /// Writes a job's journal record durably (restores: the plan, each
    /// folder's progress).
    pub fn put_journal<T: serde::Serialize>(
        &self,
        job: impl Into<u64>,
        key: &JournalKey<T>,
        value: &T,
    ) -> Result<(), IndexError> {
        // Journal records are plain structs: always serialisable.
        let bytes = serde_json::to_vec(value).expect("journal records serialise");
        self.journal
            .insert(journal_key(job.into(), &key.name), bytes)?;
        self.durable()?;
        crate::failpoint::hit("journal.saved");
        Ok(())
    }

    /// Reads a job's journal record.
    pub fn journal<T: serde::de::DeserializeOwned>(
        &self,
        job: impl Into<u64>,
        key: &JournalKey<T>,
    ) -> Result<Option<T>, IndexError> {
        self.journal
            .get(journal_key(job.into(), &key.name))?
            .map(|v| decode(JOURNAL, &key.name, &v))
            .transpose()
    }

    /// Removes the jobs of type `J` that [`JobRecord::forgettable_before`]
    /// `cutoff`, with their journals; returns how many.
    pub fn forget_jobs_before<J: JobRecord>(&self, cutoff: Timestamp) -> Result<usize, IndexError> {
        let mut n = 0;
        for job in self.jobs::<J>()? {
            if job.forgettable_before(cutoff) {
                let number = job.number().to_be_bytes();
                self.jobs.remove(number)?;
                for kv in self.journal.scan_prefix(number) {
                    let (k, _) = kv?;
                    self.journal.remove(k)?;
                }
                n += 1;
            }
        }
        self.durable()?;
        Ok(n)
    }

    /// Where a blob is stored, if it is.
    pub fn blob(&self, id: &BlobId) -> Result<Option<BlobLocation>, IndexError> {
        match self.blobs.get(id.0)? {
            None => Ok(None),
            Some(v) => BlobLocation::from_bytes(&v)
                .map(Some)
                .ok_or_else(|| IndexError::Damaged {
                    tree: BLOBS,
                    key: id.hex(),
                }),
        }
    }

    /// Records the locations of a durable pack's blobs, durably. The blobs
    /// were just written from bytes that hash to their ids: any earlier
    /// damaged copy of them is superseded.
    pub fn put_blobs(&self, entries: &[(BlobId, BlobLocation)]) -> Result<(), IndexError> {
        self.insert_blobs(entries)?;
        self.durable()?;
        Ok(())
    }

    /// Records locations found by scanning packs (a rebuild), durably. They
    /// are not known to be sound: damage marks stay.
    pub fn put_scanned_blobs(&self, entries: &[(BlobId, BlobLocation)]) -> Result<(), IndexError> {
        self.insert_locations(entries)?;
        self.durable()?;
        Ok(())
    }

    /// Adds the locations of freshly written blobs (not flushed) and clears
    /// their damage marks.
    fn insert_blobs(&self, entries: &[(BlobId, BlobLocation)]) -> Result<(), IndexError> {
        self.insert_locations(entries)?;
        if !self.damaged.is_empty() {
            let mut batch = sled::Batch::default();
            for (id, _) in entries {
                batch.remove(&id.0[..]);
            }
            self.damaged.apply_batch(batch)?;
        }
        Ok(())
    }

    /// Adds blob locations (not flushed).
    fn insert_locations(&self, entries: &[(BlobId, BlobLocation)]) -> Result<(), IndexError> {
        let mut batch = sled::Batch::default();
        for (id, loc) in entries {
            batch.insert(&id.0[..], &loc.to_bytes()[..]);
        }
        self.blobs.apply_batch(batch)?;
        self.settle(entries.iter().map(|(id, _)| id))
    }

    /// Records blobs found damaged or missing where a point refers to them,
    /// with what was wrong: the next snapshot fetches them again from the
    /// server, and no writer deduplicates against the damaged copy.
    pub fn mark_damaged(&self, found: &[(BlobId, String)]) -> Result<(), IndexError> {
        if found.is_empty() {
            return Ok(());
        }
        let mut batch = sled::Batch::default();
        for (id, why) in found {
            batch.insert(&id.0[..], why.as_bytes());
        }
        self.damaged.apply_batch(batch)?;
        self.durable()
    }

    /// True when a blob was found damaged and not written again since.
    pub fn is_damaged(&self, id: &BlobId) -> Result<bool, IndexError> {
        Ok(!self.damaged.is_empty() && self.damaged.contains_key(id.0)?)
    }

    /// Reads the index (its format record) and counts the blobs marked
    /// damaged: what `/v1/health` reports.
    pub fn probe(&self) -> Result<usize, IndexError> {
        self.db.get("format")?;
        Ok(self.damaged.len())
    }

    /// Every blob found damaged and not written again since.
    pub fn damaged_blobs(&self) -> Result<std::collections::HashSet<BlobId>, IndexError> {
        self.damaged
            .iter()
            .keys()
            .map(|k| {
                let k = k?;
                Ok(BlobId(k.as_ref().try_into().map_err(|_| {
                    IndexError::Damaged {
                        tree: DAMAGED,
                        key: format!("{k:?}"),
                    }
                })?))
            })
            .collect()
    }

    /// Forgets blob locations (prune, after their packs are rewritten).
    pub fn remove_blobs(&self, ids: &[BlobId]) -> Result<(), IndexError> {
        let mut batch = sled::Batch::default();
        for id in ids {
            batch.remove(&id.0[..]);
        }
        self.blobs.apply_batch(batch.clone())?;
        self.damaged.apply_batch(batch)?;
        self.settle(ids.iter())?;
        self.durable()?;
        Ok(())
    }

    /// Walks down to the node of every key just written, so that sled does
    /// now, inside this write's flush, the splits (and merges) the write made
    /// due.
    ///
    /// sled splits a node only when a later lookup passes through it and
    /// finds it over-full (a leaf over 16 keys), and writes both halves and
    /// the parent when it does. Without this, a batch of 50,000 random ids
    /// leaves a few hundred over-full leaves behind, and whatever next reads
    /// them (the next snapshot's lookups) rewrites them: ~100 KiB for one new
    /// message.
    fn settle<'a>(&self, ids: impl Iterator<Item = &'a BlobId>) -> Result<(), IndexError> {
        for id in ids {
            self.blobs.get(id.0)?;
        }
        Ok(())
    }

    /// Every blob location.
    pub fn blobs(&self) -> Result<Vec<(BlobId, BlobLocation)>, IndexError> {
        self.blobs
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                let id = BlobId(k.as_ref().try_into().map_err(|_| IndexError::Damaged {
                    tree: BLOBS,
                    key: format!("{k:?}"),
                })?);
                let loc = BlobLocation::from_bytes(&v).ok_or_else(|| IndexError::Damaged {
                    tree: BLOBS,
                    key: id.hex(),
                })?;
                Ok((id, loc))
            })
            .collect()
    }

    /// Records a generation, durably: the last step of a snapshot.
    pub fn put_generation(&self, g: &Generation) -> Result<(), IndexError> {
        // Serialising our own plain struct cannot fail.
        let value = serde_json::to_vec(g).expect("a Generation always serialises");
        self.generations
            .insert(generation_key(&g.user, &g.id), value)?;
        self.durable()?;
        Ok(())
    }

    /// Records the locations of the last durable packs of a snapshot and the
    /// generation that refers to them, with one flush.
    pub fn commit_generation(
        &self,
        entries: &[(BlobId, BlobLocation)],
        g: &Generation,
    ) -> Result<(), IndexError> {
        self.insert_blobs(entries)?;
        // Serialising our own plain struct cannot fail.
        let value = serde_json::to_vec(g).expect("a Generation always serialises");
        self.generations
            .insert(generation_key(&g.user, &g.id), value)?;
        self.durable()?;
        Ok(())
    }

    /// Removes a generation (prune).
    pub fn remove_generation(&self, user: &str, id: &GenerationId) -> Result<(), IndexError> {
        self.generations.remove(generation_key(user, id))?;
        self.durable()?;
        Ok(())
    }

    /// One user's generations, oldest first.
    pub fn generations(&self, user: &str) -> Result<Vec<Generation>, IndexError> {
        let mut prefix = user.as_bytes().to_vec();
        prefix.push(0);
        let mut gens = self
            .generations
            .scan_prefix(prefix)
            .map(|kv| {
                let (k, v) = kv?;
                decode(GENERATIONS, &String::from_utf8_lossy(&k), &v)
            })
            .collect::<Result<Vec<Generation>, IndexError>>()?;
        // Key order is id order, which is time order except for same-second
        // ids past `-9` (`…Z-10` sorts before `…Z-2`).
        gens.sort_by(|a, b| (a.taken_at, &a.id).cmp(&(b.taken_at, &b.id)));
        Ok(gens)
    }

    /// Every generation of every user.
    pub fn all_generations(&self) -> Result<Vec<Generation>, IndexError> {
        self.generations
            .iter()
            .map(|kv| {
                let (k, v) = kv?;
                decode(GENERATIONS, &String::from_utf8_lossy(&k), &v)
            })
            .collect()
    }

    /// One generation.
    pub fn generation(
        &self,
        user: &str,
        id: &GenerationId,
    ) -> Result<Option<Generation>, IndexError> {
        self.generations
            .get(generation_key(user, id))?
            .map(|v| decode(GENERATIONS, id.as_str(), &v))
            .transpose()
    }

    /// Empties the blob locations and generations (before a rebuild).
    pub fn clear_store_records(&self) -> Result<(), IndexError> {
        self.blobs.clear()?;
        self.generations.clear()?;
        self.damaged.clear()?;
        self.durable()?;
        Ok(())
    }

    /// Bytes the index takes on disk.
    pub fn size_on_disk(&self) -> Result<u64, IndexError> {
        Ok(self.db.size_on_disk()?)
    }
}

/// `job number (big-endian) \0 key`.
fn journal_key(job: u64, key: &str) -> Vec<u8> {
    let mut k = job.to_be_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(key.as_bytes());
    k
}

/// `user \0 generation-id`: a user's generations sort together, by id (time).
fn generation_key(user: &str, id: &GenerationId) -> Vec<u8> {
    let mut k = user.as_bytes().to_vec();
    k.push(0);
    k.extend_from_slice(id.as_str().as_bytes());
    k
}

fn decode<T: serde::de::DeserializeOwned>(
    tree: &'static str,
    key: &str,
    bytes: &[u8],
) -> Result<T, IndexError> {
    serde_json::from_slice(bytes).map_err(|source| IndexError::Decode {
        tree,
        key: key.to_string(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A job record of the tests' own: the index needs nothing more.
    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Job {
        id: u64,
        finished_at: Option<Timestamp>,
    }

    impl JobRecord for Job {
        fn number(&self) -> u64 {
            self.id
        }
        fn forgettable_before(&self, cutoff: Timestamp) -> bool {
            self.finished_at.is_some_and(|t| t < cutoff)
        }
    }

    fn job(id: u64) -> Job {
        Job {
            id,
            finished_at: None,
        }
    }

    #[test]
    fn jobs_persist_across_reopen_in_id_order() {
        let dir = tempfile::tempdir().unwrap();
        let ids: Vec<u64> = {
            let index = Index::open(dir.path()).unwrap();
            let ids: Vec<u64> = (0..300).map(|_| index.next_job_id().unwrap()).collect();
            for id in ids.iter().rev() {
                index.put_job(&job(*id)).unwrap();
            }
            ids
        };
        let index = Index::open(dir.path()).unwrap();
        let got: Vec<u64> = index
            .jobs::<Job>()
            .unwrap()
            .into_iter()
            .map(|j| j.id)
            .collect();
        assert_eq!(got, ids);
        let fresh = index.next_job_id().unwrap();
        assert!(fresh > *ids.last().unwrap(), "ids must never repeat");
        assert_eq!(index.job::<Job>(ids[5]).unwrap().unwrap().id, ids[5]);
        assert!(index.job::<Job>(u64::MAX).unwrap().is_none());
    }

    #[test]
    fn generations_come_oldest_first_even_past_ten_in_one_second() {
        use crate::manifest::{CollectionCounts, GenerationId, MailCounts};
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path()).unwrap();
        let second = crate::time::from_second(1_767_225_600).unwrap();
        let made: Vec<GenerationId> = (1..=12)
            .map(|n| {
                let g = Generation {
                    id: GenerationId::new(second, n),
                    user: "alice@example.org".into(),
                    taken_at: second + crate::time::TimeDelta::milliseconds(n.into()),
                    root: BlobId::of(&n.to_le_bytes()),
                    mail: MailCounts::default(),
                    calendars: CollectionCounts::default(),
                    contacts: CollectionCounts::default(),
                    mailbox: None,
                    partial: vec![],
                };
                index.put_generation(&g).unwrap();
                g.id
            })
            .collect();
        let got: Vec<GenerationId> = index
            .generations("alice@example.org")
            .unwrap()
            .into_iter()
            .map(|g| g.id)
            .collect();
        assert_eq!(got, made);
        assert!(index.generations("alice").unwrap().is_empty());
    }

    fn locations(n: u32, salt: &str) -> Vec<(BlobId, BlobLocation)> {
        use crate::blob::{Codec, PackId};
        let pack = PackId::random();
        (0..n)
            .map(|i| {
                let id = BlobId::of(format!("{salt} {i}").as_bytes());
                let loc = BlobLocation {
                    pack,
                    offset: 8 + u64::from(i) * 180,
                    stored_len: 120 + u64::from(i % 50),
                    raw_len: 150 + u64::from(i % 70),
                    codec: if i % 3 == 0 {
                        Codec::Stored
                    } else {
                        Codec::Zstd
                    },
                };
                (id, loc)
            })
            .collect()
    }

    #[test]
    fn a_small_commit_after_a_big_one_writes_little() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path()).unwrap();
        let big = locations(50_000, "big");
        index.put_blobs(&big).unwrap();
        let before = index.size_on_disk().unwrap();
        // The next snapshot looks up some of what the first one stored (its
        // manifests) and records a handful of new blobs.
        for (id, loc) in big.iter().step_by(97) {
            assert_eq!(index.blob(id).unwrap(), Some(*loc));
        }
        let small = locations(5, "small");
        index.put_blobs(&small).unwrap();
        let grown = index.size_on_disk().unwrap() - before;
        assert!(grown < 16 * 1024, "5 locations grew the index by {grown} B");
        assert_eq!(index.blob(&small[4].0).unwrap(), Some(small[4].1));
        assert_eq!(index.blobs().unwrap().len(), 50_005);
    }

    #[test]
    fn forgets_only_old_finished_jobs() {
        let dir = tempfile::tempdir().unwrap();
        let index = Index::open(dir.path()).unwrap();
        let mut old = job(1);
        old.finished_at = Some(crate::time::from_second(100).unwrap());
        let running = job(2);
        let mut recent = job(3);
        recent.finished_at = Some(crate::time::from_second(300).unwrap());
        index.put_job(&old).unwrap();
        index.put_job(&running).unwrap();
        index.put_job(&recent).unwrap();
        let plan: JournalKey<Vec<u32>> = JournalKey::single("plan");
        index.put_journal(1u64, &plan, &vec![7]).unwrap();
        index.put_journal(2u64, &plan, &vec![8]).unwrap();
        let n = index
            .forget_jobs_before::<Job>(crate::time::from_second(200).unwrap())
            .unwrap();
        assert_eq!(n, 1);
        assert_eq!(index.jobs::<Job>().unwrap(), vec![running, recent]);
        assert_eq!(index.journal(1u64, &plan).unwrap(), None);
        assert_eq!(index.journal(2u64, &plan).unwrap(), Some(vec![8]));
        assert_eq!(JournalKey::<u8>::nth("f", 3).name(), "f3");
    }
}
