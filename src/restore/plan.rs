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
//!   `..`, a wildcard or a control character; nothing can escape the target.

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
    for (i, f) in folders.iter().enumerate() {
        if f.name.eq_ignore_ascii_case("INBOX") {
            planned.insert(target.clone(), Some(i));
            continue;
        }
        if scope == Scope::Inbox {
            continue;
        }
        let relative = f.name.strip_prefix(snapshot_prefix).unwrap_or(&f.name);
        let levels: Vec<&str> = match f.separator {
            Some(sep) => relative.split(sep).collect(),
            None => vec![relative],
        };
        let mut name = target.clone();
        for level in levels {
            let clean = clean_level(level, live.separator);
            if clean != level {
                renamed.push(format!("{} → {}", f.name, clean));
            }
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
            if c == separator || c.is_control() || c == '/' {
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
        assert_eq!(clean_level("Été 日本", '/'), "Été 日本");
    }
}
