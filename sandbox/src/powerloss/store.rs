//! File bytes in the backing directory: the live file of each inode
//! (`live/<ino>`, what readers see now), its durable copy (`durable/<ino>`,
//! what the disk holds for it), and the journal (`journal`), an append-only
//! file holding the payload of every write so that a pending write can be
//! replayed onto the durable copy later, at an fsync or a cut.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use super::model::{Ino, Op};

/// The largest chunk copied from the journal at once.
const CHUNK: u64 = 1 << 20;

/// The backing directory's files.
#[derive(Debug)]
pub(super) struct Store {
    root: PathBuf,
    journal: File,
    journal_len: u64,
}

impl Store {
    /// Lays out `backing`, which must not hold an earlier store.
    pub(super) fn create(backing: &Path) -> io::Result<Self> {
        fs::create_dir_all(backing)?;
        fs::create_dir(backing.join("live"))?;
        fs::create_dir(backing.join("durable"))?;
        let journal = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(backing.join("journal"))?;
        Ok(Store {
            root: backing.to_path_buf(),
            journal,
            journal_len: 0,
        })
    }

    /// Where the live bytes of `ino` are.
    pub(super) fn live_path(&self, ino: Ino) -> PathBuf {
        self.root.join("live").join(ino.to_string())
    }

    fn durable_path(&self, ino: Ino) -> PathBuf {
        self.root.join("durable").join(ino.to_string())
    }

    /// Creates the (empty) live file of a new inode, open read-write.
    pub(super) fn create_live(&self, ino: Ino) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(self.live_path(ino))
    }

    /// Opens the live file of an existing inode, read-write.
    pub(super) fn open_live(&self, ino: Ino) -> io::Result<File> {
        OpenOptions::new()
            .read(true)
            .write(true)
            .open(self.live_path(ino))
    }

    /// Appends a write's payload to the journal; returns where it starts.
    pub(super) fn record(&mut self, data: &[u8]) -> io::Result<u64> {
        let at = self.journal_len;
        self.journal.write_all_at(data, at)?;
        self.journal_len += data.len() as u64;
        Ok(at)
    }

    /// Applies the data operations among `ops`, in order, to the durable
    /// copies (other operations are the namespace's business).
    pub(super) fn make_durable(&self, ops: &[Op]) -> io::Result<()> {
        let mut open: HashMap<Ino, File> = HashMap::new();
        for op in ops {
            let ino = match op {
                Op::Write { ino, .. } | Op::SetLen { ino, .. } => *ino,
                _ => continue,
            };
            let file = match open.entry(ino) {
                Entry::Occupied(e) => e.into_mut(),
                Entry::Vacant(e) => e.insert(self.open_durable(ino)?),
            };
            match op {
                Op::Write {
                    offset,
                    len,
                    payload,
                    ..
                } => self.replay_write(file, *offset, *len, *payload)?,
                Op::SetLen { size, .. } => file.set_len(*size)?,
                _ => {}
            }
        }
        Ok(())
    }

    fn open_durable(&self, ino: Ino) -> io::Result<File> {
        OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(self.durable_path(ino))
    }

    fn replay_write(&self, file: &File, offset: u64, len: u64, payload: u64) -> io::Result<()> {
        let mut done = 0;
        let mut buf = Vec::new();
        while done < len {
            let n = (len - done).min(CHUNK);
            buf.resize(n as usize, 0);
            self.journal.read_exact_at(&mut buf, payload + done)?;
            file.write_all_at(&buf, offset + done)?;
            done += n;
        }
        Ok(())
    }

    /// Writes the durable bytes of `ino` (none if it was never synced) to
    /// `to`, a path that must not exist yet.
    pub(super) fn copy_durable(&self, ino: Ino, to: &Path) -> io::Result<()> {
        let from = self.durable_path(ino);
        if from.exists() {
            fs::copy(from, to).map(drop)
        } else {
            File::create_new(to).map(drop)
        }
    }
}
