//! `berth up --watch`: notices a changed source (or component) file by
//! polling its modification times, so it needs nothing from the platform
//! and sees edits made over any file system.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How often the files are looked at.
const POLL: Duration = Duration::from_millis(300);
/// Most entries looked at, so a runaway tree cannot make a scan endless.
const MAX_ENTRIES: usize = 20_000;
/// Directories of build outputs and fetched dependencies: never sources,
/// and often large (`node_modules`), so a scan does not enter them.
pub const SKIPPED_DIRS: [&str; 5] = ["target", "dist", "node_modules", "__pycache__", ".git"];
/// Deepest directory looked into.
const MAX_DEPTH: usize = 16;

/// Each watched file's modification time and size.
pub type Snapshot = BTreeMap<PathBuf, (SystemTime, u64)>;

/// Files under `root` (or `root` itself) that `watched` accepts.
pub fn snapshot(root: &Path, watched: &dyn Fn(&Path) -> bool) -> Snapshot {
    let mut found = Snapshot::new();
    let mut pending = vec![(root.to_path_buf(), 0usize)];
    let mut looked_at = 0;
    while let Some((path, depth)) = pending.pop() {
        looked_at += 1;
        if looked_at > MAX_ENTRIES {
            break;
        }
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            let skipped = depth > 0
                && path
                    .file_name()
                    .is_some_and(|name| SKIPPED_DIRS.iter().any(|s| name == *s));
            if depth >= MAX_DEPTH || skipped {
                continue;
            }
            if let Ok(entries) = std::fs::read_dir(&path) {
                pending.extend(entries.flatten().map(|e| (e.path(), depth + 1)));
            }
        } else if watched(&path) {
            let modified = meta.modified().unwrap_or(SystemTime::UNIX_EPOCH);
            found.insert(path, (modified, meta.len()));
        }
    }
    found
}

/// Calls `changed` each time the watched files differ from `seen`, once
/// they have been still for one poll (an editor or a build writing several
/// files counts once). Runs until the process ends.
pub fn watch(
    root: PathBuf,
    watched: impl Fn(&Path) -> bool,
    mut seen: Snapshot,
    mut changed: impl FnMut(),
) {
    loop {
        std::thread::sleep(POLL);
        let now = snapshot(&root, &watched);
        if now == seen {
            continue;
        }
        // Wait until the files stop changing.
        let mut settled = now;
        loop {
            std::thread::sleep(POLL);
            let again = snapshot(&root, &watched);
            if again == settled {
                break;
            }
            settled = again;
        }
        // Against what was built from: an edit made during the build is a
        // change the next poll sees.
        seen = settled;
        changed();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scan_sees_sources_and_skips_build_outputs() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let root = dir.path();
        std::fs::create_dir_all(root.join("src"))?;
        std::fs::create_dir_all(root.join("node_modules/pkg"))?;
        std::fs::write(root.join("src/lib.rs"), "fn a() {}")?;
        std::fs::write(root.join("node_modules/pkg/index.js"), "x")?;
        let all = |_: &Path| true;
        let first = snapshot(root, &all);
        assert_eq!(first.len(), 1, "{first:?}");
        assert!(first.contains_key(&root.join("src/lib.rs")));
        // A changed size is a change even within one mtime tick.
        std::fs::write(root.join("src/lib.rs"), "fn a() { b() }")?;
        assert_ne!(snapshot(root, &all), first);
        Ok(())
    }
}
