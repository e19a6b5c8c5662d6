//! Real FUSE mounts under temp dirs (run as root, /dev/fuse needed). All I/O
//! goes through the kernel with std::fs, as the daemon's would.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::*;

/// What a cut left: relative path → file bytes, or `None` for a directory.
type Tree = BTreeMap<String, Option<Vec<u8>>>;

fn mount() -> (tempfile::TempDir, Mounted) {
    let dir = tempfile::Builder::new()
        .prefix("powerloss-")
        .tempdir()
        .expect("temp dir");
    let mnt = dir.path().join("mnt");
    fs::create_dir(&mnt).expect("mkdir mountpoint");
    let mounted = PowerLossFs::mount(&dir.path().join("backing"), &mnt).expect("mount");
    (dir, mounted)
}

fn cut(mounted: Mounted, mode: Cut, dir: &tempfile::TempDir) -> (CutReport, Tree) {
    let out = dir.path().join("out");
    let report = mounted.cut(mode, &out).expect("cut");
    (report, read_tree(&out))
}

fn read_tree(root: &Path) -> Tree {
    let mut tree = Tree::new();
    let mut stack = vec![PathBuf::new()];
    while let Some(rel) = stack.pop() {
        for entry in fs::read_dir(root.join(&rel)).expect("read_dir") {
            let entry = entry.expect("dir entry");
            let rel = rel.join(entry.file_name());
            let name = rel.to_string_lossy().into_owned();
            if entry.file_type().expect("file type").is_dir() {
                tree.insert(name, None);
                stack.push(rel);
            } else {
                tree.insert(name, Some(fs::read(entry.path()).expect("read file")));
            }
        }
    }
    tree
}

fn file(bytes: &[u8]) -> Option<Vec<u8>> {
    Some(bytes.to_vec())
}

fn sync_dir(path: &Path) {
    File::open(path)
        .expect("open dir")
        .sync_all()
        .expect("fsync dir");
}

fn write_file(path: &Path, data: &[u8], fsync: bool) {
    let mut f = File::create(path).expect("create");
    f.write_all(data).expect("write");
    if fsync {
        f.sync_all().expect("fsync");
    }
}

/// Deterministic filler bytes.
fn bytes(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

#[test]
fn powerloss_unsynced_data_is_gone_after_cut_all() {
    let (dir, fs) = mount();
    let mnt = fs.mountpoint().to_path_buf();
    // The name is made durable, the data written after it never is.
    File::create(mnt.join("b")).expect("create b");
    sync_dir(&mnt);
    write_file(&mnt.join("b"), b"data not synced", false);
    // No fsync at all: neither name nor data.
    write_file(&mnt.join("a"), b"never synced", false);
    assert_eq!(fs::read(mnt.join("a")).expect("live read"), b"never synced");
    let (report, tree) = cut(fs, Cut::All, &dir);
    assert_eq!(tree, Tree::from([("b".into(), file(b""))]));
    assert_eq!(report.kept, 0);
    assert_eq!(report.dropped, report.pending);
    assert!(report.pending >= 3, "{report:?}");
}

#[test]
fn powerloss_fsynced_file_without_dir_fsync_loses_its_name() {
    let (dir, fs) = mount();
    let mnt = fs.mountpoint().to_path_buf();
    write_file(&mnt.join("f"), b"synced data", true);
    let (report, tree) = cut(fs, Cut::All, &dir);
    assert_eq!(tree, Tree::new());
    // Only the name was pending: the data had been made durable.
    assert_eq!(report.pending, 1, "{report:?}");
}

#[test]
fn powerloss_file_and_dir_fsync_survive_with_exact_bytes() {
    let (dir, fs) = mount();
    let mnt = fs.mountpoint().to_path_buf();
    // Larger than one FUSE write, so the data arrives in several requests.
    let big = bytes(700_000, 7);
    write_file(&mnt.join("big"), &big, true);
    fs::create_dir(mnt.join("d")).expect("mkdir");
    sync_dir(&mnt);
    write_file(&mnt.join("d/small"), b"exact bytes\n", true);
    sync_dir(&mnt.join("d"));
    // Created and synced, but its directory never was.
    fs::create_dir(mnt.join("d/lost")).expect("mkdir lost");
    let (report, tree) = cut(fs, Cut::All, &dir);
    let want = Tree::from([
        ("big".into(), Some(big)),
        ("d".into(), None),
        ("d/small".into(), file(b"exact bytes\n")),
    ]);
    assert_eq!(tree, want);
    assert_eq!((report.pending, report.files, report.dirs), (1, 2, 1));
}

/// final holds "old" durably; tmp gets "new", fsynced, and is renamed over
/// final. Returns the mount and its dir for the caller to finish.
fn replace_by_rename() -> (tempfile::TempDir, Mounted) {
    let (dir, fs) = mount();
    let mnt = fs.mountpoint().to_path_buf();
    write_file(&mnt.join("final"), b"old", true);
    sync_dir(&mnt);
    write_file(&mnt.join("tmp"), b"new", true);
    fs::rename(mnt.join("tmp"), mnt.join("final")).expect("rename");
    assert_eq!(fs::read(mnt.join("final")).expect("live read"), b"new");
    (dir, fs)
}

#[test]
fn powerloss_rename_without_dir_fsync_keeps_the_old_state() {
    let (dir, fs) = replace_by_rename();
    let (report, tree) = cut(fs, Cut::All, &dir);
    assert_eq!(tree, Tree::from([("final".into(), file(b"old"))]));
    // The create of tmp and the rename.
    assert_eq!(report.pending, 2, "{report:?}");

    let (dir, fs) = replace_by_rename();
    sync_dir(fs.mountpoint());
    let (_, tree) = cut(fs, Cut::All, &dir);
    assert_eq!(tree, Tree::from([("final".into(), file(b"new"))]));
}

#[test]
fn powerloss_renamed_and_unlinked_files_keep_their_durable_bytes() {
    let (dir, fs) = mount();
    let mnt = fs.mountpoint().to_path_buf();
    fs::create_dir(mnt.join("sub")).expect("mkdir");
    fs::create_dir(mnt.join("keep")).expect("mkdir");
    write_file(&mnt.join("moved"), b"moved bytes", true);
    write_file(&mnt.join("gone"), b"unlinked bytes", true);
    sync_dir(&mnt);
    // A durable cross-directory rename: the inode keeps its synced bytes.
    fs::rename(mnt.join("moved"), mnt.join("sub/here")).expect("rename");
    sync_dir(&mnt.join("sub"));
    // An unlink that is never made durable, then later unsynced data.
    fs::remove_file(mnt.join("gone")).expect("unlink");
    fs::remove_dir(mnt.join("keep")).expect("rmdir");
    let not_empty = fs::remove_dir(mnt.join("sub")).expect_err("rmdir of a non-empty dir");
    assert_eq!(not_empty.raw_os_error(), Some(libc::ENOTEMPTY));
    let names: Vec<_> = fs::read_dir(&mnt)
        .expect("readdir")
        .map(|e| e.expect("entry").file_name())
        .collect();
    assert_eq!(names, ["sub"]);
    let (_, tree) = cut(fs, Cut::All, &dir);
    let want = Tree::from([
        ("gone".into(), file(b"unlinked bytes")),
        ("keep".into(), None),
        ("sub".into(), None),
        ("sub/here".into(), file(b"moved bytes")),
    ]);
    assert_eq!(tree, want);
}

/// Twelve files, each written and fsynced, none of their names synced: the
/// log holds exactly the twelve creates, in order.
fn twelve_unnamed_files() -> (tempfile::TempDir, Mounted) {
    let (dir, fs) = mount();
    for i in 0..12u8 {
        let path = fs.mountpoint().join(format!("f{i:02}"));
        write_file(&path, &bytes(usize::from(i) * 10, i), true);
    }
    assert_eq!(fs.pending_ops(), 12);
    (dir, fs)
}

#[test]
fn powerloss_prefix_cut_is_deterministic_and_keeps_a_prefix() {
    // The first seed whose prefix is neither empty nor everything.
    let seed = (0..)
        .find(|&s| (1..12).contains(&model::prefix_len(s, 12)))
        .expect("some seed keeps a strict prefix");
    let k = model::prefix_len(seed, 12);
    let (dir_a, fs) = twelve_unnamed_files();
    let (report_a, tree_a) = cut(fs, Cut::Prefix { seed }, &dir_a);
    let (dir_b, fs) = twelve_unnamed_files();
    let (report_b, tree_b) = cut(fs, Cut::Prefix { seed }, &dir_b);
    assert_eq!(report_a, report_b);
    assert_eq!(tree_a, tree_b);
    assert_eq!(
        (report_a.pending, report_a.kept, report_a.dropped),
        (12, k, 12 - k)
    );
    let want: Tree = (0..k as u8)
        .map(|i| (format!("f{i:02}"), Some(bytes(usize::from(i) * 10, i))))
        .collect();
    assert_eq!(tree_a, want);
}

#[test]
fn powerloss_prefix_cut_replays_pending_writes_in_order() {
    // Every prefix of [write "one", write "two" over it] on a durable name.
    let mut seen = BTreeMap::new();
    for seed in 0..32 {
        let (dir, fs) = mount();
        let mnt = fs.mountpoint().to_path_buf();
        File::create(mnt.join("f")).expect("create");
        sync_dir(&mnt);
        let f = OpenOptions::new()
            .write(true)
            .open(mnt.join("f"))
            .expect("open");
        f.write_all_at(b"one", 0).expect("write one");
        f.write_all_at(b"TWO", 1).expect("write two");
        drop(f);
        let (report, tree) = cut(fs, Cut::Prefix { seed }, &dir);
        assert_eq!(report.pending, 2);
        let content = tree.get("f").cloned().flatten().expect("f survives");
        seen.insert(report.kept, content);
    }
    let want = BTreeMap::from([
        (0, b"".to_vec()),
        (1, b"one".to_vec()),
        (2, b"oTWO".to_vec()),
    ]);
    assert_eq!(seen, want);
}

#[test]
fn powerloss_truncate_and_overwrite_in_place() {
    let (dir, fs) = mount();
    let mnt = fs.mountpoint().to_path_buf();
    let base = bytes(10_000, 1);
    write_file(&mnt.join("synced"), &base, true);
    write_file(&mnt.join("unsynced"), &base, true);
    write_file(&mnt.join("recreated"), &base, true);
    sync_dir(&mnt);

    let f = OpenOptions::new()
        .read(true)
        .write(true)
        .open(mnt.join("synced"))
        .expect("open");
    f.write_all_at(b"BBBB", 100).expect("overwrite");
    f.set_len(5_000).expect("truncate");
    f.sync_data().expect("fdatasync");
    let mut want_synced = base[..5_000].to_vec();
    want_synced[100..104].copy_from_slice(b"BBBB");

    let f = OpenOptions::new()
        .write(true)
        .open(mnt.join("unsynced"))
        .expect("open");
    f.set_len(10).expect("truncate");
    f.write_all_at(b"XX", 0).expect("overwrite");
    drop(f);
    let mut live = Vec::new();
    File::open(mnt.join("unsynced"))
        .expect("open")
        .read_to_end(&mut live)
        .expect("live read");
    assert_eq!(live, [b"XX".as_slice(), &base[2..10]].concat());

    // O_TRUNC on an existing file, rewritten and synced.
    write_file(&mnt.join("recreated"), b"short", true);

    let (_, tree) = cut(fs, Cut::All, &dir);
    let want = Tree::from([
        ("recreated".into(), file(b"short")),
        ("synced".into(), Some(want_synced)),
        ("unsynced".into(), Some(base)),
    ]);
    assert_eq!(tree, want);
}

#[test]
fn powerloss_sled_like_pwrite_pattern() {
    let (dir, fs) = mount();
    let mnt = fs.mountpoint().to_path_buf();
    let log = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(mnt.join("db"))
        .expect("open db");
    sync_dir(&mnt);
    // Segments written out of order, one past a hole, then synced.
    let segment = |n: u8| bytes(8192, n);
    let mut want = vec![0u8; 8192 * 6];
    for n in [2u8, 0, 5, 1] {
        let at = usize::from(n) * 8192;
        log.write_all_at(&segment(n), at as u64).expect("pwrite");
        want[at..at + 8192].copy_from_slice(&segment(n));
    }
    log.sync_all().expect("fsync");
    // Written after the last fsync: lost at the cut, visible live.
    log.write_all_at(&segment(9), 3 * 8192)
        .expect("pwrite after sync");
    log.set_len(8192 * 7).expect("extend");
    let mut hole = vec![1u8; 8192];
    log.read_exact_at(&mut hole, 4 * 8192).expect("pread hole");
    assert_eq!(hole, vec![0u8; 8192]);
    let mut after = vec![0u8; 8192];
    log.read_exact_at(&mut after, 3 * 8192).expect("pread");
    assert_eq!(after, segment(9));
    drop(log);
    let (report, tree) = cut(fs, Cut::All, &dir);
    assert_eq!(tree, Tree::from([("db".into(), Some(want))]));
    assert_eq!(report.pending, 2);
}

#[test]
fn powerloss_flock_is_exclusive_across_opens_and_processes() {
    let (_dir, fs) = mount();
    let path = fs.mountpoint().join("lock");
    let first = File::create(&path).expect("create lock file");
    let second = File::open(&path).expect("second open");
    first.try_lock().expect("first lock");
    assert!(
        second.try_lock().is_err(),
        "a second open must not get the lock"
    );
    // Another process (util-linux flock) sees the lock too.
    let status = Command::new("flock")
        .args(["-n", "-E", "99"])
        .arg(&path)
        .arg("true")
        .status()
        .expect("run flock");
    assert_eq!(status.code(), Some(99));
    first.unlock().expect("unlock");
    second.try_lock().expect("lock after unlock");
    drop((first, second));
    fs.unmount().expect("unmount");
}

#[test]
fn powerloss_cut_after_killing_a_child_and_with_a_held_descriptor() {
    let (dir, fs) = mount();
    let mnt = fs.mountpoint().to_path_buf();
    // A child writes, fsyncs (coreutils `sync FILE`) and then hangs on.
    let script = "printf child > held && sync held && exec sleep 600";
    let mut child = Command::new("sh")
        .args(["-c", script])
        .current_dir(&mnt)
        .stdin(Stdio::null())
        .spawn()
        .expect("spawn child");
    let deadline = Instant::now() + Duration::from_secs(20);
    // Synced: the bytes are there and only the name is pending.
    while fs::read(mnt.join("held")).ok().as_deref() != Some(b"child") || fs.pending_ops() != 1 {
        assert!(
            Instant::now() < deadline,
            "the child did not write and sync"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    child.kill().expect("SIGKILL child");
    child.wait().expect("reap child");
    // The test itself still holds a descriptor: the cut must not wait for it.
    let held = File::open(mnt.join("held")).expect("open held");
    sync_dir(&mnt);
    let (report, tree) = cut(fs, Cut::All, &dir);
    assert_eq!(tree, Tree::from([("held".into(), file(b"child"))]));
    assert_eq!(report.pending, 0);
    let mut buf = [0u8; 4];
    assert!(
        held.read_at(&mut buf, 0).is_err(),
        "a cut disk answers errors"
    );
}

#[test]
fn powerloss_unmount_and_drop_leave_no_mount() {
    let (dir, fs) = mount();
    let mnt = fs.mountpoint().to_path_buf();
    write_file(&mnt.join("x"), b"x", true);
    assert_eq!(statfs_type(&mnt), Some(FUSE_SUPER_MAGIC));
    fs.unmount().expect("unmount");
    assert_ne!(statfs_type(&mnt), Some(FUSE_SUPER_MAGIC));
    assert!(!mnt.join("x").exists());

    let mnt2 = dir.path().join("mnt2");
    fs::create_dir(&mnt2).expect("mkdir");
    let fs = PowerLossFs::mount(&dir.path().join("backing2"), &mnt2).expect("mount");
    assert_eq!(statfs_type(&mnt2), Some(FUSE_SUPER_MAGIC));
    drop(fs);
    assert_ne!(statfs_type(&mnt2), Some(FUSE_SUPER_MAGIC));
}
