//! Pack files as the disk holds them (`store::pack`): `scan` lists the
//! entries of arbitrary file bytes, and `read_at` reads each entry found,
//! plus one probe whose blob id and location (the index's 41-byte form,
//! `BlobLocation::from_bytes`) are the input's last 73 bytes, as a damaged
//! index could hold them.
//!
//! Neither may panic, and neither may allocate more than the file can back
//! (run with `-malloc_limit_mb`): a length in a header or an index entry is
//! checked against the pack's size before anything is allocated for it.
#![no_main]

use std::fs::File;
use std::path::PathBuf;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use mailrestore::blob::{BlobId, BlobLocation, PackId};
use mailrestore::store::pack::{read_at, scan};

/// Entries read back per input, to keep executions fast.
const MAX_READS: usize = 16;

fn pack_path() -> &'static PathBuf {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        std::env::temp_dir().join(format!("mailrestore-fuzz-{}.pack", std::process::id()))
    })
}

fn probe(data: &[u8]) -> Option<(BlobId, BlobLocation)> {
    let tail = data.get(data.len().checked_sub(73)?..)?;
    let id = BlobId(tail[..32].try_into().ok()?);
    Some((id, BlobLocation::from_bytes(&tail[32..])?))
}

fuzz_target!(|data: &[u8]| {
    let path = pack_path();
    std::fs::write(path, data).expect("the temporary pack can be written");
    let pack = PackId([7; 16]);
    let entries = match scan(path, pack) {
        Ok(scan) => {
            // Regions and entries tile the pack, in order, without overlap.
            let mut end = 8u64;
            let mut spans: Vec<(u64, u64)> = scan
                .entries
                .iter()
                .map(|e| (e.location.offset, e.location.offset + 64 + e.location.stored_len))
                .chain(scan.damaged.iter().map(|d| (d.offset, d.end)))
                .collect();
            spans.sort();
            for (start, stop) in spans {
                assert_eq!(start, end, "a gap or an overlap at {start}");
                end = stop;
            }
            assert!(scan.entries.is_empty() && scan.damaged.is_empty() || end == data.len() as u64);
            scan.entries
        }
        Err(err) => {
            let _ = err.to_string();
            Vec::new()
        }
    };
    let file = File::open(path).expect("the temporary pack can be opened");
    for entry in entries.iter().take(MAX_READS) {
        assert!(entry.location.offset + 64 + entry.location.stored_len <= data.len() as u64);
        match read_at(&file, path, &entry.id, &entry.location) {
            Ok(raw) => assert_eq!(BlobId::of(&raw), entry.id),
            Err(err) => {
                let _ = err.to_string();
            }
        }
    }
    if let Some((id, location)) = probe(data) {
        match read_at(&file, path, &id, &location) {
            Ok(raw) => assert_eq!(BlobId::of(&raw), id),
            Err(err) => {
                let _ = err.to_string();
            }
        }
    }
});
