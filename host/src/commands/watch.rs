//! `berth up --watch`: notices a changed source (or component) file by
//! polling its modification times, so it needs nothing from the platform
//! and sees edits made over any file system.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

/// How often the files are looked at.
const POLL: Duration = Duration::from_millis(300);
/// Most files looked at, so a runaway tree cannot make a scan endless.
const MAX_FILES: usize = 20_000;
/// Deepest directory looked into.
const MAX_DEPTH: usize = 16;

/// Each watched file's modification time and size.
type Snapshot = BTreeMap<PathBuf, (SystemTime, u64)>;

/// Files under `root` (or `root` itself) that `watched` accepts.
pub fn snapshot(root: &Path, watched: &dyn Fn(&Path) -> bool) -> Snapshot {
    let mut found = Snapshot::new();
    let mut pending = vec![(root.to_path_buf(), 0usize)];
    while let Some((path, depth)) = pending.pop() {
        if found.len() >= MAX_FILES {
            break;
        }
        let Ok(meta) = std::fs::metadata(&path) else {
            continue;
        };
        if meta.is_dir() {
            if depth >= MAX_DEPTH {
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

/// Calls `changed` each time the watched files change, once they have
/// been still for one poll (an editor or a build writing several files
/// counts once). Runs until the process ends.
pub fn watch(root: PathBuf, watched: impl Fn(&Path) -> bool, mut changed: impl FnMut()) {
    let mut seen = snapshot(&root, &watched);
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
