//! Commands that work on the state directory directly (`verify`), when no
//! daemon holds it.

use std::process::ExitCode;

use super::{EXIT_FAILED, Failure};
use crate::config::Config;
use crate::index::Index;
use crate::repo::Repository;
use crate::state::StateDir;

fn open(config: &Config) -> Result<(StateDir, Repository), Failure> {
    let state = lock(config)?;
    let index = Index::open(&state.index_dir()).map_err(Failure::failed)?;
    let store = Repository::open(&state.store_dir(), index).map_err(Failure::failed)?;
    Ok((state, store))
}

fn lock(config: &Config) -> Result<StateDir, Failure> {
    StateDir::open(&config.state_dir).map_err(|e| {
        Failure::failed(format!(
            "{e}; stop the daemon (systemctl stop mailrestore) to run this offline"
        ))
    })
}

/// Opens the state directory for a repair: an index that cannot be opened
/// is moved aside (kept for inspection, never deleted) and a new one is
/// made, which the rebuild then fills from the packs.
fn open_for_repair(config: &Config) -> Result<(StateDir, Repository), Failure> {
    let state = lock(config)?;
    let dir = state.index_dir();
    let index = match Index::open(&dir) {
        Ok(index) => index,
        Err(e) => {
            let aside = dir.with_extension(format!(
                "unreadable-{}",
                crate::time::now().format("%Y%m%dT%H%M%SZ")
            ));
            eprintln!(
                "the index cannot be opened ({e}); moving it aside to {} and rebuilding it from the store",
                aside.display()
            );
            std::fs::rename(&dir, &aside).map_err(|e| {
                Failure::failed(format!("cannot move {} aside: {e}", dir.display()))
            })?;
            Index::open(&dir).map_err(Failure::failed)?
        }
    };
    let store = Repository::open(&state.store_dir(), index).map_err(Failure::failed)?;
    Ok((state, store))
}

/// `mailrestore verify [--read-data] [--repair]`.
pub fn verify(
    config: &Config,
    read_data: bool,
    repair: bool,
    json: bool,
) -> Result<ExitCode, Failure> {
    let (_state, store) = if repair {
        open_for_repair(config)?
    } else {
        open(config)?
    };
    let repaired = if repair {
        let r = crate::verify::rebuild_index(&store).map_err(Failure::failed)?;
        if !json {
            println!(
                "rebuilt the index from {} packs: {} blobs, {} restore points",
                r.packs, r.blobs, r.generations
            );
            for u in &r.unreadable_roots {
                println!("  unreadable root manifest: {u}");
            }
            for p in r.unreadable_packs.iter().chain(&r.damaged_regions) {
                println!("  {p}");
            }
        }
        Some(r)
    } else {
        None
    };
    let report = crate::verify::verify(&store, read_data).map_err(Failure::failed)?;
    if json {
        let v =
            serde_json::json!({"repair": repaired, "verify": report, "clean": report.is_clean()});
        println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
    } else {
        println!(
            "{} restore points, {} blobs referenced{}",
            report.generations,
            report.blobs_referenced,
            if read_data {
                format!(
                    ", {} blobs ({}) re-hashed",
                    report.blobs_read,
                    super::output::mb(report.bytes_read)
                )
            } else {
                String::new()
            }
        );
        for b in &report.bad_blobs {
            println!("  damaged blob: {b}");
        }
        for d in &report.damaged {
            println!("  DAMAGED point {} of {}:", d.point, d.user);
            for p in &d.problems {
                println!("    {p}");
            }
        }
        if report.is_clean() {
            println!("everything is restorable");
        }
    }
    Ok(if report.is_clean() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_FAILED)
    })
}

/// `mailrestore prune [--dry-run]` with no daemon running.
pub fn prune(config: &Config, dry_run: bool) -> Result<serde_json::Value, Failure> {
    let (_state, store) = open(config)?;
    let report = crate::prune::prune_with_reserve(
        &store,
        config,
        crate::time::now(),
        &Default::default(),
        dry_run,
    )
    .map_err(Failure::failed)?;
    serde_json::to_value(report).map_err(Failure::failed)
}
