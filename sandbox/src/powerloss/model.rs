//! The durability model, pure: the log of operations that are not yet
//! durable, the rules that make them durable (fsync of a file, fsync of a
//! directory), and the durable namespace they build. No I/O here: file bytes
//! live in [`super::store`], and this module only says which operations reach
//! them and in which order.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::ffi::OsString;
use std::path::PathBuf;

/// An inode number, as the kernel sees it (never reused within a mount).
pub(super) type Ino = u64;

/// The root directory's inode number (FUSE fixes it).
pub(super) const ROOT: Ino = 1;

/// What an inode is; the only kinds the filesystem creates.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    File,
    Dir,
}

/// The inode metadata the model keeps durable (times are not modelled).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Meta {
    pub(super) perm: u16,
    pub(super) uid: u32,
    pub(super) gid: u32,
}

/// An inode as the durable namespace knows it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Inode {
    pub(super) kind: Kind,
    pub(super) meta: Meta,
}

/// One operation as the filesystem accepted it. Data operations (`Write`,
/// `SetLen`, `SetMeta`) belong to an inode and become durable with an fsync of
/// it; entry operations (`Link`, `Unlink`, `Rename`) belong to their
/// directories and become durable with an fsync of one of them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Op {
    /// `len` bytes written at `offset`; the bytes are in the journal at `payload`.
    Write {
        ino: Ino,
        offset: u64,
        len: u64,
        payload: u64,
    },
    /// Truncate or extend to `size`.
    SetLen { ino: Ino, size: u64 },
    /// chmod/chown: the metadata after the change.
    SetMeta { ino: Ino, meta: Meta },
    /// A name for `ino` in `dir`: create, mkdir, mknod or link.
    Link { dir: Ino, name: OsString, ino: Ino },
    /// A name removed from `dir`: unlink or rmdir.
    Unlink { dir: Ino, name: OsString },
    /// rename(2), replacing any entry at the target.
    Rename {
        from_dir: Ino,
        from: OsString,
        to_dir: Ino,
        to: OsString,
    },
}

impl Op {
    /// The inode whose fsync makes this operation durable (data operations).
    fn inode(&self) -> Option<Ino> {
        match self {
            Op::Write { ino, .. } | Op::SetLen { ino, .. } | Op::SetMeta { ino, .. } => Some(*ino),
            Op::Link { .. } | Op::Unlink { .. } | Op::Rename { .. } => None,
        }
    }

    /// The directories whose entries this operation changes (entry operations).
    fn dirs(&self) -> Option<(Ino, Ino)> {
        match self {
            Op::Link { dir, .. } | Op::Unlink { dir, .. } => Some((*dir, *dir)),
            Op::Rename {
                from_dir, to_dir, ..
            } => Some((*from_dir, *to_dir)),
            Op::Write { .. } | Op::SetLen { .. } | Op::SetMeta { .. } => None,
        }
    }
}

/// The ordered log of operations that are not yet durable.
#[derive(Debug, Default)]
pub(super) struct Log {
    pending: BTreeMap<u64, Op>,
    next: u64,
}

impl Log {
    /// Appends an operation the filesystem just applied to the live view.
    pub(super) fn push(&mut self, op: Op) {
        self.pending.insert(self.next, op);
        self.next += 1;
    }

    /// How many operations are not yet durable.
    pub(super) fn len(&self) -> usize {
        self.pending.len()
    }

    /// fsync/fdatasync of `ino`: removes and returns, in order, every pending
    /// data operation of that inode.
    pub(super) fn take_inode(&mut self, ino: Ino) -> Vec<Op> {
        let seqs: Vec<u64> = self
            .pending
            .iter()
            .filter(|(_, op)| op.inode() == Some(ino))
            .map(|(seq, _)| *seq)
            .collect();
        self.remove(&seqs)
    }

    /// fsync of directory `dir`: removes and returns, in order, every pending
    /// entry operation on `dir`, together with every earlier pending entry
    /// operation on any other directory one of those touches (a rename joins
    /// two directories, and each directory's entries reach the disk in order).
    ///
    /// Walking the log newest first with the set of directories reached so
    /// far selects exactly that closure: an operation is selected when it
    /// touches a reached directory, and then its directories are reached for
    /// everything older.
    pub(super) fn take_dir(&mut self, dir: Ino) -> Vec<Op> {
        let mut reached = HashSet::from([dir]);
        let mut seqs = Vec::new();
        for (seq, op) in self.pending.iter().rev() {
            let Some((a, b)) = op.dirs() else { continue };
            if reached.contains(&a) || reached.contains(&b) {
                reached.insert(a);
                reached.insert(b);
                seqs.push(*seq);
            }
        }
        seqs.reverse();
        self.remove(&seqs)
    }

    /// Every pending operation, oldest first.
    pub(super) fn into_ops(self) -> Vec<Op> {
        self.pending.into_values().collect()
    }

    fn remove(&mut self, seqs: &[u64]) -> Vec<Op> {
        seqs.iter()
            .filter_map(|seq| self.pending.remove(seq))
            .collect()
    }
}

/// How many of `pending` operations a [`super::Cut::Prefix`] with `seed`
/// keeps: uniform in `0..=pending`, the same for the same seed (splitmix64).
pub(super) fn prefix_len(seed: u64, pending: usize) -> usize {
    let mut z = seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^= z >> 31;
    let choices = pending as u64 + 1;
    // The remainder is below `choices`, which came from a usize.
    usize::try_from(z % choices).unwrap_or(pending)
}

/// A name the durable namespace holds, as [`Tree::walk`] lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Entry {
    /// The path from the root, relative.
    pub(super) path: PathBuf,
    pub(super) ino: Ino,
    pub(super) inode: Inode,
}

/// The durable namespace: each directory's durable entries and each inode's
/// durable kind and metadata. An inode is known from its creation (its kind
/// and initial metadata are part of it), but it is reachable only through
/// durable entries, so a file whose name never became durable is not in the
/// tree however often its data was fsynced.
#[derive(Debug)]
pub(super) struct Tree {
    dirs: HashMap<Ino, BTreeMap<OsString, Ino>>,
    inodes: HashMap<Ino, Inode>,
}

impl Tree {
    /// An empty tree whose root directory has `root` metadata.
    pub(super) fn new(root: Meta) -> Self {
        let inode = Inode {
            kind: Kind::Dir,
            meta: root,
        };
        Tree {
            dirs: HashMap::from([(ROOT, BTreeMap::new())]),
            inodes: HashMap::from([(ROOT, inode)]),
        }
    }

    /// Records an inode at its creation.
    pub(super) fn add_inode(&mut self, ino: Ino, inode: Inode) {
        self.inodes.insert(ino, inode);
    }

    /// The root directory's metadata.
    pub(super) fn root_meta(&self) -> Option<Meta> {
        self.inodes.get(&ROOT).map(|inode| inode.meta)
    }

    /// Applies a durable entry or metadata operation (data operations change
    /// bytes only, which the store applies).
    pub(super) fn apply(&mut self, op: &Op) {
        match op {
            Op::Link { dir, name, ino } => {
                self.dirs
                    .entry(*dir)
                    .or_default()
                    .insert(name.clone(), *ino);
            }
            Op::Unlink { dir, name } => {
                if let Some(entries) = self.dirs.get_mut(dir) {
                    entries.remove(name);
                }
            }
            Op::Rename {
                from_dir,
                from,
                to_dir,
                to,
            } => {
                let moved = self.dirs.get_mut(from_dir).and_then(|e| e.remove(from));
                if let Some(ino) = moved {
                    self.dirs
                        .entry(*to_dir)
                        .or_default()
                        .insert(to.clone(), ino);
                }
            }
            Op::SetMeta { ino, meta } => {
                if let Some(inode) = self.inodes.get_mut(ino) {
                    inode.meta = *meta;
                }
            }
            Op::Write { .. } | Op::SetLen { .. } => {}
        }
    }

    /// Every name reachable from the root, parents before children, each
    /// directory's names in byte order. A directory reached twice (which the
    /// rules above never produce) is listed once.
    pub(super) fn walk(&self) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut seen = HashSet::from([ROOT]);
        let mut stack = vec![(PathBuf::new(), ROOT)];
        while let Some((path, dir)) = stack.pop() {
            let Some(entries) = self.dirs.get(&dir) else {
                continue;
            };
            let mut subdirs = Vec::new();
            for (name, ino) in entries {
                let Some(inode) = self.inodes.get(ino) else {
                    continue;
                };
                if inode.kind == Kind::Dir && !seen.insert(*ino) {
                    continue;
                }
                let child = path.join(name);
                if inode.kind == Kind::Dir {
                    subdirs.push((child.clone(), *ino));
                }
                out.push(Entry {
                    path: child,
                    ino: *ino,
                    inode: *inode,
                });
            }
            stack.extend(subdirs.into_iter().rev());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const META: Meta = Meta {
        perm: 0o644,
        uid: 0,
        gid: 0,
    };

    fn link(dir: Ino, name: &str, ino: Ino) -> Op {
        Op::Link {
            dir,
            name: name.into(),
            ino,
        }
    }

    fn rename(from_dir: Ino, from: &str, to_dir: Ino, to: &str) -> Op {
        Op::Rename {
            from_dir,
            from: from.into(),
            to_dir,
            to: to.into(),
        }
    }

    fn log_of(ops: &[Op]) -> Log {
        let mut log = Log::default();
        for op in ops {
            log.push(op.clone());
        }
        log
    }

    #[test]
    fn powerloss_model_fsync_takes_only_that_inodes_data_in_order() {
        let w = |ino, offset| Op::Write {
            ino,
            offset,
            len: 1,
            payload: 0,
        };
        let mut log = log_of(&[w(5, 0), link(ROOT, "a", 5), w(6, 0), w(5, 1)]);
        assert_eq!(log.take_inode(5), vec![w(5, 0), w(5, 1)]);
        assert_eq!(log.into_ops(), vec![link(ROOT, "a", 5), w(6, 0)]);
    }

    #[test]
    fn powerloss_model_fsyncdir_takes_the_closure_through_renames() {
        // Dirs 2 and 3 under the root; the rename 2/x -> 3/y joins them, so an
        // fsync of 3 also takes the earlier entry operations on 2, but not the
        // later one, and nothing on 4.
        let ops = [
            link(2, "x", 10),
            link(4, "z", 11),
            link(3, "old", 12),
            rename(2, "x", 3, "y"),
            link(2, "later", 13),
        ];
        let mut log = log_of(&ops);
        let taken = log.take_dir(3);
        assert_eq!(taken, vec![ops[0].clone(), ops[2].clone(), ops[3].clone()]);
        assert_eq!(log.into_ops(), vec![ops[1].clone(), ops[4].clone()]);
    }

    #[test]
    fn powerloss_model_tree_lists_reachable_names_only() {
        let mut tree = Tree::new(META);
        let dir = Inode {
            kind: Kind::Dir,
            meta: META,
        };
        let file = Inode {
            kind: Kind::File,
            meta: META,
        };
        tree.add_inode(2, dir);
        tree.add_inode(3, file);
        tree.add_inode(4, file);
        // 3 is named in dir 2, which is itself not (yet) named: unreachable.
        tree.apply(&link(2, "f", 3));
        tree.apply(&link(ROOT, "g", 4));
        let paths: Vec<PathBuf> = tree.walk().into_iter().map(|e| e.path).collect();
        assert_eq!(paths, vec![PathBuf::from("g")]);
        tree.apply(&link(ROOT, "d", 2));
        tree.apply(&rename(ROOT, "g", 2, "h"));
        let paths: Vec<PathBuf> = tree.walk().into_iter().map(|e| e.path).collect();
        let want: Vec<PathBuf> = ["d", "d/f", "d/h"].iter().map(PathBuf::from).collect();
        assert_eq!(paths, want);
    }

    #[test]
    fn powerloss_model_prefix_len_is_deterministic_and_in_range() {
        for seed in 0..200 {
            let k = prefix_len(seed, 7);
            assert!(k <= 7);
            assert_eq!(k, prefix_len(seed, 7));
        }
        assert_eq!(prefix_len(42, 0), 0);
        let distinct: HashSet<usize> = (0..200).map(|s| prefix_len(s, 7)).collect();
        assert_eq!(distinct.len(), 8, "every prefix length is reachable");
    }
}
