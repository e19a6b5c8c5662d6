//! The restore planner (pure): from a restore point's folders, the scope, the
//! request time and the live server's namespace and folder names, which
//! folders to create and where each folder's messages go.
//!
//! Rules (README "The socket API" and docs/operations.md tell them to users):
//! - the target is a new folder at the top of the personal namespace, named
//!   by `restore.folder_template` from the request time, with `_2`, `_3`, …
//!   when that name exists: a restore never merges into an existing folder;
//! - the restored INBOX's messages go directly into the target;
//! - with scope `all`, every other folder F (relative to the snapshot's
//!   namespace prefix) becomes `TARGET<sep>F` with its hierarchy, in the live
//!   server's separator; `INBOX/x` becomes `TARGET/INBOX/x`;
//! - folder names are data, not paths: each level is cleaned so it can
//!   neither add a level (a live separator inside it), nor be empty, `.`,
//!   `..`, hold a LIST wildcard (`*`, `%`) or a control character; nothing
//!   can escape the target;
//! - names always fit: a level longer than [`MAX_LEVEL_BYTES`] (on the wire,
//!   modified UTF-7) is cut and given a short hash of the whole level, and
//!   the levels past [`MAX_NAME_BYTES`] in all are joined into one last
//!   level, so a 1,000-level or 4 KiB name still restores (Dovecot refuses
//!   a name over its limits);
//! - only one folder is the INBOX (the one named exactly `INBOX`, else the
//!   first spelled so in another case); another spelling is restored as an
//!   ordinary folder beside it.
//!
//! Every change to a name is listed in [`Plan::renamed`], which the job
//! shows in its warnings.

use std::collections::{BTreeMap, BTreeSet};

use crate::time::Zoned;
use serde::{Deserialize, Serialize};

use crate::jobs::Scope;

/// A folder of the restore point, as the planner needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFolder {
    /// Decoded full name in the snapshot.
    pub name: String,
    /// Its separator in the snapshot.
    pub separator: Option<char>,
}

/// The live server's personal namespace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LiveNamespace {
    /// Prefix (`""` or `INBOX.`).
    pub prefix: String,
    /// Hierarchy separator.
    pub separator: char,
}

/// One folder the restore creates.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PlannedFolder {
    /// Full decoded name on the live server.
    pub target: String,
    /// The snapshot folder whose messages go here, if any (an index into
    /// the restore point's folder list).
    pub source: Option<usize>,
}

/// What a restore does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Plan {
    /// The new top folder (full decoded name).
    pub target: String,
    /// Folders to create, parents before children; the first is the target.
    pub folders: Vec<PlannedFolder>,
    /// Names that had to be changed to be safe, `original → restored`.
    pub renamed: Vec<String>,
}

/// Why no plan could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// The template does not expand.
    #[error("restore.folder_template {0:?} cannot be expanded")]
    Template(String),
    /// Every suffix up to the limit is taken.
    #[error("every name from {0} to {0}_999 already exists")]
    NoFreeName(String),
}

/// The longest hierarchy level created, in bytes on the wire (modified
/// UTF-7): below the 255 bytes of a file name, which Maildir layouts use
/// per level.
pub const MAX_LEVEL_BYTES: usize = 200;

/// The longest full name created, in bytes on the wire: Dovecot 2.3
/// refuses to create a name longer than half its 4096-byte list limit
/// ("Mailbox name too long"); a little margin below it.
pub const MAX_NAME_BYTES: usize = 2000;

/// The most hierarchy levels a created name has below the target.
pub const MAX_LEVELS: usize = 200;

/// Bytes a name takes on the wire.
fn wire_len(name: &str) -> usize {
    crate::protocol::imap::MailboxName::from_utf8(name).map_or(name.len(), |m| m.raw().len())
}

/// Cuts a level to [`MAX_LEVEL_BYTES`] on the wire, keeping it distinct
/// from other cut levels with a hash of the whole.
fn fit_level(level: String) -> String {
    if wire_len(&level) <= MAX_LEVEL_BYTES {
        return level;
    }
    let tag = &blake3::hash(level.as_bytes()).to_hex()[..8];
    let mut cut = String::new();
    for c in level.chars() {
        cut.push(c);
        if wire_len(&cut) + 10 > MAX_LEVEL_BYTES {
            cut.pop();
            break;
        }
    }
    format!("{cut}~{tag}")
}

/// Which folder is the INBOX: the one named exactly `INBOX`, else the first
/// spelled so in another case.
fn inbox_of(folders: &[SourceFolder]) -> Option<usize> {
    folders.iter().position(|f| f.name == "INBOX").or_else(|| {
        folders
            .iter()
            .position(|f| f.name.eq_ignore_ascii_case("INBOX"))
    })
}

/// The levels of a folder below the target, cleaned and fitted; what
/// changed is added to `renamed`.
fn target_levels(
    f: &SourceFolder,
    snapshot_prefix: &str,
    target: &str,
    live: &LiveNamespace,
    renamed: &mut Vec<String>,
) -> Vec<String> {
    let relative = f.name.strip_prefix(snapshot_prefix).unwrap_or(&f.name);
    let raw: Vec<&str> = match f.separator {
        Some(sep) => relative.split(sep).collect(),
        None => vec![relative],
    };
    let mut levels: Vec<String> = Vec::with_capacity(raw.len());
    let mut used = wire_len(target);
    for (i, level) in raw.iter().enumerate() {
        let mut clean = fit_level(clean_level(level, live.separator));
        let room = MAX_NAME_BYTES.saturating_sub(used + 1);
        let last_allowed = i + 1 == MAX_LEVELS;
        if wire_len(&clean) > room
            || (i + 1 < raw.len() && (room < 2 * MAX_LEVEL_BYTES || last_allowed))
        {
            // Too deep: the rest of the levels become one last level.
            let rest: Vec<String> = raw[i..]
                .iter()
                .map(|l| clean_level(l, live.separator))
                .collect();
            clean = fit_level(rest.join("_"));
            levels.push(clean);
            renamed.push(format!(
                "{} → its levels from the {}th on are joined into one (the name is too long)",
                f.name,
                i + 1
            ));
            break;
        }
        if clean != *level {
            renamed.push(format!("{} → {}", f.name, clean));
        }
        used += 1 + wire_len(&clean);
        levels.push(clean);
    }
    levels
}

/// Makes the plan.
pub fn plan(
    folders: &[SourceFolder],
    snapshot_prefix: &str,
    scope: Scope,
    requested_at: &Zoned,
    template: &str,
    live: &LiveNamespace,
    existing: &BTreeSet<String>,
) -> Result<Plan, PlanError> {
    let base = crate::time::Template::parse(template)
        .map_err(|_| PlanError::Template(template.to_string()))?
        .format(requested_at);
    let base = clean_level(&base, live.separator);
    let target = free_name(&base, live, existing)?;
    let mut planned: BTreeMap<String, Option<usize>> = BTreeMap::new();
    planned.insert(target.clone(), None);
    let mut renamed = Vec::new();
    let inbox = inbox_of(folders);
    for (i, f) in folders.iter().enumerate() {
        if Some(i) == inbox {
            planned.insert(target.clone(), Some(i));
            continue;
        }
        if scope == Scope::Inbox {
            continue;
        }
        if f.name.eq_ignore_ascii_case("INBOX") {
            renamed.push(format!(
                "{} → {target}{}{}: another spelling of INBOX, restored as a folder",
                f.name, live.separator, f.name
            ));
        }
        let mut name = target.clone();
        for clean in target_levels(f, snapshot_prefix, &target, live, &mut renamed) {
            name.push(live.separator);
            name.push_str(&clean);
            // Parents are created too, so every level exists and is subscribed.
            planned.entry(name.clone()).or_insert(None);
        }
        // Two snapshot folders may clean to the same name: the later one
        // keeps its messages apart under a numbered name.
        let mut unique = name.clone();
        let mut n = 2;
        while matches!(planned.get(&unique), Some(Some(_))) {
            unique = format!("{name}_{n}");
            n += 1;
        }
        planned.insert(unique, Some(i));
    }
    renamed.sort();
    renamed.dedup();
    // BTreeMap order puts every parent before its children (a parent is a
    // prefix of its children) and the target first.
    let folders = planned
        .into_iter()
        .map(|(target, source)| PlannedFolder { target, source })
        .collect();
    Ok(Plan {
        target,
        folders,
        renamed,
    })
}

/// The first of `base`, `base_2`, `base_3`, … free at the top of the namespace.
fn free_name(
    base: &str,
    live: &LiveNamespace,
    existing: &BTreeSet<String>,
) -> Result<String, PlanError> {
    let taken = |name: &str| {
        existing.iter().any(|e| {
            e == name || (e.eq_ignore_ascii_case("INBOX") && name.eq_ignore_ascii_case("INBOX"))
        })
    };
    for n in 1..1000 {
        let leaf = if n == 1 {
            base.to_string()
        } else {
            format!("{base}_{n}")
        };
        let full = format!("{}{leaf}", live.prefix);
        if !taken(&full) {
            return Ok(full);
        }
    }
    Err(PlanError::NoFreeName(base.to_string()))
}

/// One hierarchy level made safe: no separator inside, not empty, not `.`
/// or `..`, no control characters, no leading `~`, no `/` (a path
/// separator for Maildir layouts) even when the separator is `.`.
pub fn clean_level(level: &str, separator: char) -> String {
    let mut out: String = level
        .chars()
        .map(|c| {
            if c == separator || c.is_control() || c == '/' || c == '*' || c == '%' {
                '_'
            } else {
                c
            }
        })
        .collect();
    if out.is_empty() || out == "." || out == ".." || out.starts_with('~') {
        out.insert(0, '_');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(name: &str, sep: char) -> SourceFolder {
        SourceFolder {
            name: name.into(),
            separator: Some(sep),
        }
    }

    fn at(s: &str) -> Zoned {
        crate::time::zoned(s)
    }

    fn names(p: &Plan) -> Vec<(&str, Option<usize>)> {
        p.folders
            .iter()
            .map(|f| (f.target.as_str(), f.source))
            .collect()
    }

    const T: &str = "INBOX_%Y_%m_%d_%H%M";

    #[test]
    fn all_folders_go_under_a_dated_target_with_their_hierarchy() {
        let live = LiveNamespace {
            prefix: String::new(),
            separator: '/',
        };
        let folders = [
            f("INBOX", '/'),
            f("Archive/2024", '/'),
            f("INBOX/x", '/'),
            f("Sent", '/'),
        ];
        let p = plan(
            &folders,
            "",
            Scope::All,
            &at("2026-11-26T14:05:00[Europe/Paris]"),
            T,
            &live,
            &BTreeSet::new(),
        )
        .unwrap();
        assert_eq!(p.target, "INBOX_2026_11_26_1405");
        assert_eq!(
            names(&p),
            vec![
                ("INBOX_2026_11_26_1405", Some(0)),
                ("INBOX_2026_11_26_1405/Archive", None),
                ("INBOX_2026_11_26_1405/Archive/2024", Some(1)),
                ("INBOX_2026_11_26_1405/INBOX", None),
                ("INBOX_2026_11_26_1405/INBOX/x", Some(2)),
                ("INBOX_2026_11_26_1405/Sent", Some(3)),
            ]
        );
        let inbox = plan(
            &folders,
            "",
            Scope::Inbox,
            &at("2026-11-26T14:05:00[Europe/Paris]"),
            T,
            &live,
            &BTreeSet::new(),
        )
        .unwrap();
        assert_eq!(names(&inbox), vec![("INBOX_2026_11_26_1405", Some(0))]);
    }

    #[test]
    fn an_existing_name_gets_a_suffix_never_a_merge() {
        let live = LiveNamespace {
            prefix: String::new(),
            separator: '/',
        };
        let existing: BTreeSet<String> = ["INBOX_2026_11_26_1405", "INBOX_2026_11_26_1405_2"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        let p = plan(
            &[f("INBOX", '/')],
            "",
            Scope::All,
            &at("2026-11-26T14:05:59[Europe/Paris]"),
            T,
            &live,
            &existing,
        )
        .unwrap();
        assert_eq!(p.target, "INBOX_2026_11_26_1405_3");
    }

    #[test]
    fn courier_layout_and_separator_translation() {
        let live = LiveNamespace {
            prefix: "INBOX.".into(),
            separator: '.',
        };
        let folders = [f("INBOX", '/'), f("Projets/v1.2/Été", '/')];
        let p = plan(
            &folders,
            "",
            Scope::All,
            &at("2026-01-02T03:04:00[UTC]"),
            T,
            &live,
            &BTreeSet::new(),
        )
        .unwrap();
        assert_eq!(p.target, "INBOX.INBOX_2026_01_02_0304");
        assert_eq!(
            names(&p).last().unwrap(),
            &("INBOX.INBOX_2026_01_02_0304.Projets.v1_2.Été", Some(1))
        );
        assert_eq!(p.renamed, vec!["Projets/v1.2/Été → v1_2"]);
        // Snapshot taken with a prefix: folders are relative to it.
        let folders = [f("INBOX", '.'), f("INBOX.Sent", '.')];
        let p = plan(
            &folders,
            "INBOX.",
            Scope::All,
            &at("2026-01-02T03:04:00[UTC]"),
            T,
            &live,
            &BTreeSet::new(),
        )
        .unwrap();
        assert_eq!(names(&p)[1], ("INBOX.INBOX_2026_01_02_0304.Sent", Some(1)));
    }

    #[test]
    fn hostile_names_cannot_escape_or_collide() {
        let live = LiveNamespace {
            prefix: String::new(),
            separator: '/',
        };
        let folders = [
            f("..", '.'),
            f("a..b", '.'),
            f("*", '/'),
            f("%x\u{7}", '/'),
            f("~root", '/'),
            f("_..", '/'),
        ];
        let p = plan(
            &folders,
            "",
            Scope::All,
            &at("2026-01-02T03:04:00[UTC]"),
            T,
            &live,
            &BTreeSet::new(),
        )
        .unwrap();
        for pf in &p.folders {
            assert!(pf.target.starts_with(&p.target), "{pf:?}");
            for level in pf.target.split('/') {
                assert!(
                    !level.is_empty() && level != "." && level != ".." && !level.starts_with('~'),
                    "{pf:?}"
                );
                assert!(!level.chars().any(char::is_control), "{pf:?}");
            }
        }
        // ".." split on '.' gives three empty levels, each made "_"; "_.." is
        // kept as is and "~root" becomes "_~root": no two sources share a folder.
        let sources: Vec<_> = p.folders.iter().filter_map(|f| f.source).collect();
        let mut unique = sources.clone();
        unique.dedup();
        assert_eq!(sources.len(), folders.len());
        assert_eq!(unique.len(), sources.len());
    }

    #[test]
    fn clean_levels() {
        assert_eq!(clean_level("a/b", '/'), "a_b");
        assert_eq!(clean_level("a.b", '.'), "a_b");
        assert_eq!(clean_level("a/b", '.'), "a_b");
        assert_eq!(clean_level("", '/'), "_");
        assert_eq!(clean_level("50% *off*", '/'), "50_ _off_");
        assert_eq!(clean_level("Été 日本", '/'), "Été 日本");
    }

    fn plan_of(folders: &[SourceFolder]) -> Plan {
        let live = LiveNamespace {
            prefix: String::new(),
            separator: '/',
        };
        plan(
            folders,
            "",
            Scope::All,
            &at("2026-01-02T03:04:00[UTC]"),
            T,
            &live,
            &BTreeSet::new(),
        )
        .unwrap()
    }

    #[test]
    fn two_spellings_of_inbox_never_share_the_target() {
        let p = plan_of(&[f("inbox", '/'), f("INBOX", '/'), f("Inbox", '/')]);
        let into_target: Vec<_> = p
            .folders
            .iter()
            .filter(|pf| pf.target == p.target)
            .filter_map(|pf| pf.source)
            .collect();
        assert_eq!(into_target, vec![1], "only the exact INBOX: {p:?}");
        let sources: BTreeSet<_> = p.folders.iter().filter_map(|pf| pf.source).collect();
        assert_eq!(
            sources.len(),
            3,
            "every folder has a home of its own: {p:?}"
        );
        assert!(
            p.renamed.iter().any(|r| r.contains("another spelling")),
            "{p:?}"
        );
    }

    #[test]
    fn long_and_deep_names_always_fit() {
        let long = "é".repeat(4112 / 2);
        let deep: String = (0..1000)
            .map(|i| format!("L{i}"))
            .collect::<Vec<_>>()
            .join("/");
        let other_long = format!("{}x", "é".repeat(4112 / 2));
        let p = plan_of(&[
            f("INBOX", '/'),
            f(&long, '/'),
            f(&deep, '/'),
            f(&other_long, '/'),
        ]);
        for pf in &p.folders {
            assert!(
                wire_len(&pf.target) <= MAX_NAME_BYTES,
                "{}",
                pf.target.len()
            );
            assert!(pf.target.split('/').count() <= MAX_LEVELS + 1);
            for level in pf.target.split('/') {
                assert!(wire_len(level) <= MAX_LEVEL_BYTES, "{level}");
            }
        }
        let sources: BTreeSet<_> = p.folders.iter().filter_map(|pf| pf.source).collect();
        assert_eq!(sources.len(), 4, "cut names stay distinct: {p:?}");
        assert!(
            p.renamed.iter().any(|r| r.contains("joined")),
            "{:?}",
            p.renamed
        );
    }
}
