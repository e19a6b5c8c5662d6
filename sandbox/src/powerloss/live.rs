//! The live view: the namespace and attributes every process sees now, with
//! each change applied at once and logged for the durability model. Every
//! operation answers an errno rather than panicking; the FUSE callbacks in
//! [`super::fs`] only translate.

use std::collections::{BTreeMap, HashMap};
use std::ffi::{OsStr, OsString};
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{FileExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use fuser::{Errno, FileAttr, FileType, INodeNo};

use super::CutReport;
use super::model::{self, Ino, Inode, Kind, Log, Meta, Op, ROOT, Tree};
use super::store::Store;

/// The longest name accepted, as on ext4.
const NAME_MAX: usize = 255;

/// One directory entry as `opendir` saw it.
pub(super) struct DirItem {
    pub(super) ino: Ino,
    pub(super) kind: FileType,
    pub(super) name: OsString,
}

struct Node {
    kind: Kind,
    meta: Meta,
    atime: SystemTime,
    mtime: SystemTime,
    ctime: SystemTime,
    /// Names this inode has (a directory has one while it exists).
    nlink: u32,
    body: Body,
}

enum Body {
    Dir {
        entries: BTreeMap<OsString, Ino>,
        parent: Ino,
    },
    /// The live file is held open while the kernel has it open, so that an
    /// unlinked file stays readable through its open descriptors.
    File { opens: u32, handle: Option<File> },
}

/// The live filesystem plus its durability state, behind one lock.
pub(super) struct State {
    nodes: HashMap<Ino, Node>,
    next_ino: Ino,
    dir_handles: HashMap<u64, Vec<DirItem>>,
    next_fh: u64,
    log: Log,
    tree: Tree,
    store: Store,
    /// Set at the cut or unmount: from then on every request fails with EIO,
    /// as on a disk that lost power.
    pub(super) frozen: bool,
}

fn io_errno(err: io::Error) -> Errno {
    Errno::from(err)
}

fn check_name(name: &OsStr) -> Result<(), Errno> {
    if name.len() > NAME_MAX {
        return Err(Errno::from_i32(libc::ENAMETOOLONG));
    }
    Ok(())
}

impl State {
    /// A filesystem holding an empty root directory with `root` metadata,
    /// which is durable from the start (a freshly made filesystem).
    pub(super) fn new(store: Store, root: Meta) -> Self {
        let now = SystemTime::now();
        let node = Node {
            kind: Kind::Dir,
            meta: root,
            atime: now,
            mtime: now,
            ctime: now,
            nlink: 1,
            body: Body::Dir {
                entries: BTreeMap::new(),
                parent: ROOT,
            },
        };
        State {
            nodes: HashMap::from([(ROOT, node)]),
            next_ino: ROOT + 1,
            dir_handles: HashMap::new(),
            next_fh: 1,
            log: Log::default(),
            tree: Tree::new(root),
            store,
            frozen: false,
        }
    }

    /// How many operations are not yet durable.
    pub(super) fn pending(&self) -> usize {
        self.log.len()
    }

    fn node(&self, ino: Ino) -> Result<&Node, Errno> {
        self.nodes.get(&ino).ok_or(Errno::ENOENT)
    }

    fn node_mut(&mut self, ino: Ino) -> Result<&mut Node, Errno> {
        self.nodes.get_mut(&ino).ok_or(Errno::ENOENT)
    }

    fn entries(&self, dir: Ino) -> Result<&BTreeMap<OsString, Ino>, Errno> {
        match &self.node(dir)?.body {
            Body::Dir { entries, .. } => Ok(entries),
            Body::File { .. } => Err(Errno::ENOTDIR),
        }
    }

    fn entries_mut(&mut self, dir: Ino) -> Result<&mut BTreeMap<OsString, Ino>, Errno> {
        let node = self.node_mut(dir)?;
        let now = SystemTime::now();
        node.mtime = now;
        node.ctime = now;
        match &mut node.body {
            Body::Dir { entries, .. } => Ok(entries),
            Body::File { .. } => Err(Errno::ENOTDIR),
        }
    }

    fn child(&self, dir: Ino, name: &OsStr) -> Result<Ino, Errno> {
        self.entries(dir)?.get(name).copied().ok_or(Errno::ENOENT)
    }

    /// The attributes the kernel is told about `ino`.
    pub(super) fn attr(&self, ino: Ino) -> Result<FileAttr, Errno> {
        let node = self.node(ino)?;
        let (kind, size, blocks, nlink) = match &node.body {
            Body::Dir { entries, .. } => {
                let subdirs = entries
                    .values()
                    .filter(|c| self.nodes.get(c).is_some_and(|n| n.kind == Kind::Dir))
                    .count();
                let nlink = u32::try_from(subdirs + 2).unwrap_or(u32::MAX);
                (FileType::Directory, 4096, 8, nlink)
            }
            Body::File { handle, .. } => {
                let meta = match handle {
                    Some(file) => file.metadata(),
                    None => fs::metadata(self.store.live_path(ino)),
                };
                let meta = meta.map_err(io_errno)?;
                let blocks = std::os::unix::fs::MetadataExt::blocks(&meta);
                (FileType::RegularFile, meta.len(), blocks, node.nlink)
            }
        };
        Ok(FileAttr {
            ino: INodeNo(ino),
            size,
            blocks,
            atime: node.atime,
            mtime: node.mtime,
            ctime: node.ctime,
            crtime: node.ctime,
            kind,
            perm: node.meta.perm,
            nlink,
            uid: node.meta.uid,
            gid: node.meta.gid,
            rdev: 0,
            blksize: 4096,
            flags: 0,
        })
    }

    /// lookup: the attributes of `name` in `parent`.
    pub(super) fn lookup(&self, parent: Ino, name: &OsStr) -> Result<FileAttr, Errno> {
        self.attr(self.child(parent, name)?)
    }

    /// create, mknod or mkdir of `name` in `parent`; a created file is left
    /// open once when `open` (create(2) opens what it makes).
    pub(super) fn make(
        &mut self,
        parent: Ino,
        name: &OsStr,
        kind: Kind,
        meta: Meta,
        open: bool,
    ) -> Result<FileAttr, Errno> {
        check_name(name)?;
        if self.entries(parent)?.contains_key(name) {
            return Err(Errno::EEXIST);
        }
        let ino = self.next_ino;
        let body = match kind {
            Kind::Dir => Body::Dir {
                entries: BTreeMap::new(),
                parent,
            },
            Kind::File => {
                let file = self.store.create_live(ino).map_err(io_errno)?;
                Body::File {
                    opens: u32::from(open),
                    handle: open.then_some(file),
                }
            }
        };
        self.next_ino += 1;
        let now = SystemTime::now();
        let node = Node {
            kind,
            meta,
            atime: now,
            mtime: now,
            ctime: now,
            nlink: 1,
            body,
        };
        self.nodes.insert(ino, node);
        self.entries_mut(parent)?.insert(name.to_os_string(), ino);
        self.tree.add_inode(ino, Inode { kind, meta });
        self.log.push(Op::Link {
            dir: parent,
            name: name.to_os_string(),
            ino,
        });
        self.attr(ino)
    }

    /// unlink (`kind` File) or rmdir (`kind` Dir) of `name` in `parent`.
    pub(super) fn remove(&mut self, parent: Ino, name: &OsStr, kind: Kind) -> Result<(), Errno> {
        let ino = self.child(parent, name)?;
        let node = self.node(ino)?;
        match (kind, &node.body) {
            (Kind::File, Body::Dir { .. }) => return Err(Errno::EISDIR),
            (Kind::Dir, Body::File { .. }) => return Err(Errno::ENOTDIR),
            (Kind::Dir, Body::Dir { entries, .. }) if !entries.is_empty() => {
                return Err(Errno::from_i32(libc::ENOTEMPTY));
            }
            _ => {}
        }
        self.entries_mut(parent)?.remove(name);
        self.log.push(Op::Unlink {
            dir: parent,
            name: name.to_os_string(),
        });
        self.drop_link(ino);
        Ok(())
    }

    /// One name of `ino` is gone: a directory goes at once, a file when it has
    /// no name left and nobody holds it open.
    fn drop_link(&mut self, ino: Ino) {
        let Some(node) = self.nodes.get_mut(&ino) else {
            return;
        };
        node.nlink = node.nlink.saturating_sub(1);
        node.ctime = SystemTime::now();
        match &node.body {
            Body::Dir { .. } => {
                self.nodes.remove(&ino);
            }
            Body::File { opens, .. } => {
                if node.nlink > 0 {
                    return;
                }
                let opens = *opens;
                // Best effort: a leftover live file only costs backing space.
                let _ = fs::remove_file(self.store.live_path(ino));
                if opens == 0 {
                    self.nodes.remove(&ino);
                }
            }
        }
    }

    /// Can `moving` replace `target` in a rename?
    fn check_replace(&self, moving: Ino, target: Ino) -> Result<(), Errno> {
        let moving_dir = self.node(moving)?.kind == Kind::Dir;
        match (moving_dir, &self.node(target)?.body) {
            (true, Body::File { .. }) => Err(Errno::ENOTDIR),
            (false, Body::Dir { .. }) => Err(Errno::EISDIR),
            (true, Body::Dir { entries, .. }) if !entries.is_empty() => {
                Err(Errno::from_i32(libc::ENOTEMPTY))
            }
            _ => Ok(()),
        }
    }

    /// rename(2) with `noreplace` for RENAME_NOREPLACE.
    pub(super) fn rename(
        &mut self,
        (parent, name): (Ino, &OsStr),
        (new_parent, new_name): (Ino, &OsStr),
        noreplace: bool,
    ) -> Result<(), Errno> {
        check_name(new_name)?;
        let ino = self.child(parent, name)?;
        let target = self.entries(new_parent)?.get(new_name).copied();
        if let Some(target) = target {
            if target == ino {
                // Two names of one file: POSIX says rename does nothing.
                return Ok(());
            }
            if noreplace {
                return Err(Errno::EEXIST);
            }
            self.check_replace(ino, target)?;
        }
        self.entries_mut(parent)?.remove(name);
        self.entries_mut(new_parent)?
            .insert(new_name.to_os_string(), ino);
        let node = self.node_mut(ino)?;
        node.ctime = SystemTime::now();
        if let Body::Dir { parent, .. } = &mut node.body {
            *parent = new_parent;
        }
        self.log.push(Op::Rename {
            from_dir: parent,
            from: name.to_os_string(),
            to_dir: new_parent,
            to: new_name.to_os_string(),
        });
        if let Some(target) = target {
            self.drop_link(target);
        }
        Ok(())
    }

    /// link(2): a second name for the file `ino`.
    pub(super) fn link(
        &mut self,
        ino: Ino,
        new_parent: Ino,
        new_name: &OsStr,
    ) -> Result<FileAttr, Errno> {
        check_name(new_name)?;
        if self.node(ino)?.kind == Kind::Dir {
            return Err(Errno::EPERM);
        }
        if self.entries(new_parent)?.contains_key(new_name) {
            return Err(Errno::EEXIST);
        }
        self.entries_mut(new_parent)?
            .insert(new_name.to_os_string(), ino);
        let node = self.node_mut(ino)?;
        node.nlink += 1;
        node.ctime = SystemTime::now();
        self.log.push(Op::Link {
            dir: new_parent,
            name: new_name.to_os_string(),
            ino,
        });
        self.attr(ino)
    }

    /// The live file of `ino`, opened if nobody holds it.
    fn file(&mut self, ino: Ino) -> Result<&File, Errno> {
        let node = self.nodes.get_mut(&ino).ok_or(Errno::ENOENT)?;
        let Body::File { handle, .. } = &mut node.body else {
            return Err(Errno::EISDIR);
        };
        if handle.is_none() {
            *handle = Some(self.store.open_live(ino).map_err(io_errno)?);
        }
        handle.as_ref().ok_or(Errno::EIO)
    }

    /// Closes the live file of `ino` if the kernel no longer has it open, and
    /// forgets an unnamed file then.
    fn settle(&mut self, ino: Ino) {
        let Some(node) = self.nodes.get_mut(&ino) else {
            return;
        };
        if let Body::File { opens: 0, handle } = &mut node.body {
            *handle = None;
            if node.nlink == 0 {
                self.nodes.remove(&ino);
            }
        }
    }

    /// open(2) of the file `ino` (directories go through `opendir`).
    pub(super) fn open(&mut self, ino: Ino) -> Result<(), Errno> {
        self.file(ino)?;
        if let Some(Node {
            body: Body::File { opens, .. },
            ..
        }) = self.nodes.get_mut(&ino)
        {
            *opens += 1;
        }
        Ok(())
    }

    /// The last close of one open of `ino`.
    pub(super) fn release(&mut self, ino: Ino) {
        if let Some(Node {
            body: Body::File { opens, .. },
            ..
        }) = self.nodes.get_mut(&ino)
        {
            *opens = opens.saturating_sub(1);
        }
        self.settle(ino);
    }

    /// pread: up to `size` bytes at `offset`, fewer at the end of the file.
    pub(super) fn read(&mut self, ino: Ino, offset: u64, size: u32) -> Result<Vec<u8>, Errno> {
        let file = self.file(ino)?;
        let mut buf = vec![0; size as usize];
        let mut done = 0;
        while done < buf.len() {
            match file.read_at(&mut buf[done..], offset + done as u64) {
                Ok(0) => break,
                Ok(n) => done += n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(io_errno(e)),
            }
        }
        buf.truncate(done);
        if let Some(node) = self.nodes.get_mut(&ino) {
            node.atime = SystemTime::now();
        }
        self.settle(ino);
        Ok(buf)
    }

    /// pwrite of `data` at `offset`.
    pub(super) fn write(&mut self, ino: Ino, offset: u64, data: &[u8]) -> Result<u32, Errno> {
        let written = u32::try_from(data.len()).map_err(|_| Errno::EINVAL)?;
        self.file(ino)?
            .write_all_at(data, offset)
            .map_err(io_errno)?;
        let payload = self.store.record(data).map_err(io_errno)?;
        self.log.push(Op::Write {
            ino,
            offset,
            len: data.len() as u64,
            payload,
        });
        self.touch(ino);
        self.settle(ino);
        Ok(written)
    }

    fn touch(&mut self, ino: Ino) {
        if let Some(node) = self.nodes.get_mut(&ino) {
            let now = SystemTime::now();
            node.mtime = now;
            node.ctime = now;
        }
    }

    /// truncate/ftruncate (and the O_TRUNC of an open).
    pub(super) fn set_len(&mut self, ino: Ino, size: u64) -> Result<(), Errno> {
        self.file(ino)?.set_len(size).map_err(io_errno)?;
        self.log.push(Op::SetLen { ino, size });
        self.touch(ino);
        self.settle(ino);
        Ok(())
    }

    /// chmod/chown; `None` keeps a field.
    pub(super) fn set_meta(
        &mut self,
        ino: Ino,
        perm: Option<u16>,
        uid: Option<u32>,
        gid: Option<u32>,
    ) -> Result<(), Errno> {
        let node = self.node_mut(ino)?;
        let meta = Meta {
            perm: perm.unwrap_or(node.meta.perm),
            uid: uid.unwrap_or(node.meta.uid),
            gid: gid.unwrap_or(node.meta.gid),
        };
        node.meta = meta;
        node.ctime = SystemTime::now();
        self.log.push(Op::SetMeta { ino, meta });
        Ok(())
    }

    /// utimens: times are live only (the model does not keep them durable).
    pub(super) fn set_times(
        &mut self,
        ino: Ino,
        atime: Option<SystemTime>,
        mtime: Option<SystemTime>,
    ) -> Result<(), Errno> {
        let node = self.node_mut(ino)?;
        if let Some(atime) = atime {
            node.atime = atime;
        }
        if let Some(mtime) = mtime {
            node.mtime = mtime;
        }
        node.ctime = SystemTime::now();
        Ok(())
    }

    /// fallocate: mode 0 extends the file like a truncate upwards;
    /// KEEP_SIZE reserves space only, which the model ignores.
    pub(super) fn fallocate(&mut self, ino: Ino, end: u64, mode: i32) -> Result<(), Errno> {
        match mode {
            0 => {
                let size = self.file(ino)?.metadata().map_err(io_errno)?.len();
                if end > size {
                    self.set_len(ino, end)?;
                }
                Ok(())
            }
            libc::FALLOC_FL_KEEP_SIZE => Ok(()),
            _ => Err(Errno::from_i32(libc::EOPNOTSUPP)),
        }
    }

    /// fsync/fdatasync of the file `ino`: its pending data becomes durable.
    pub(super) fn fsync(&mut self, ino: Ino) -> Result<(), Errno> {
        let ops = self.log.take_inode(ino);
        self.make_durable(&ops).map_err(io_errno)
    }

    /// fsync of the directory `ino`: its pending entries become durable.
    pub(super) fn fsyncdir(&mut self, ino: Ino) -> Result<(), Errno> {
        self.entries(ino)?;
        let ops = self.log.take_dir(ino);
        self.make_durable(&ops).map_err(io_errno)
    }

    fn make_durable(&mut self, ops: &[Op]) -> io::Result<()> {
        self.store.make_durable(ops)?;
        for op in ops {
            self.tree.apply(op);
        }
        Ok(())
    }

    /// opendir: a snapshot of the entries, so that a reader that deletes as it
    /// goes sees every entry once. Returns the handle.
    pub(super) fn opendir(&mut self, ino: Ino) -> Result<u64, Errno> {
        let Body::Dir { entries, parent } = &self.node(ino)?.body else {
            return Err(Errno::ENOTDIR);
        };
        let mut items = vec![
            DirItem {
                ino,
                kind: FileType::Directory,
                name: ".".into(),
            },
            DirItem {
                ino: *parent,
                kind: FileType::Directory,
                name: "..".into(),
            },
        ];
        for (name, child) in entries {
            let kind = match self.nodes.get(child).map(|n| n.kind) {
                Some(Kind::Dir) => FileType::Directory,
                _ => FileType::RegularFile,
            };
            let name = name.clone();
            items.push(DirItem {
                ino: *child,
                kind,
                name,
            });
        }
        let fh = self.next_fh;
        self.next_fh += 1;
        self.dir_handles.insert(fh, items);
        Ok(fh)
    }

    /// The snapshot entries of handle `fh` from index `offset` on.
    pub(super) fn readdir(&self, fh: u64, offset: u64) -> Result<&[DirItem], Errno> {
        let items = self.dir_handles.get(&fh).ok_or(Errno::EBADF)?;
        let from = usize::try_from(offset).unwrap_or(usize::MAX);
        Ok(items.get(from..).unwrap_or(&[]))
    }

    /// releasedir.
    pub(super) fn releasedir(&mut self, fh: u64) {
        self.dir_handles.remove(&fh);
    }

    /// The power cut: applies the first `kept` pending operations on top of
    /// the durable state, drops the rest, and writes the resulting tree into
    /// `out`.
    pub(super) fn cut(&mut self, prefix_seed: Option<u64>, out: &Path) -> io::Result<CutReport> {
        let ops = std::mem::take(&mut self.log).into_ops();
        let pending = ops.len();
        let kept = prefix_seed.map_or(0, |seed| model::prefix_len(seed, pending));
        let kept_ops = ops.get(..kept).unwrap_or(&[]);
        self.make_durable(kept_ops)?;
        let (files, dirs) = self.write_tree(out)?;
        Ok(CutReport {
            pending,
            kept,
            dropped: pending - kept,
            files,
            dirs,
        })
    }

    /// Writes the durable tree into `out`; returns how many files and
    /// directories (the root not counted) it wrote. Modes are set last,
    /// children first, so that a read-only directory can still be filled.
    fn write_tree(&self, out: &Path) -> io::Result<(usize, usize)> {
        fs::create_dir_all(out)?;
        let mut first_path: HashMap<Ino, PathBuf> = HashMap::new();
        let mut metas = Vec::new();
        if let Some(root) = self.tree.root_meta() {
            metas.push((out.to_path_buf(), root));
        }
        let (mut files, mut dirs) = (0, 0);
        for entry in self.tree.walk() {
            let path = out.join(&entry.path);
            match (entry.inode.kind, first_path.get(&entry.ino)) {
                (Kind::Dir, _) => {
                    fs::create_dir(&path)?;
                    dirs += 1;
                }
                (Kind::File, Some(first)) => {
                    fs::hard_link(first, &path)?;
                    continue;
                }
                (Kind::File, None) => {
                    self.store.copy_durable(entry.ino, &path)?;
                    first_path.insert(entry.ino, path.clone());
                    files += 1;
                }
            }
            metas.push((path, entry.inode.meta));
        }
        for (path, meta) in metas.iter().rev() {
            apply_meta(path, *meta)?;
        }
        Ok((files, dirs))
    }
}

fn apply_meta(path: &Path, meta: Meta) -> io::Result<()> {
    fs::set_permissions(path, fs::Permissions::from_mode(u32::from(meta.perm)))?;
    // Ownership is best effort: only root can give a file away.
    let _ = std::os::unix::fs::chown(path, Some(meta.uid), Some(meta.gid));
    Ok(())
}
