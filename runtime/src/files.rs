//! The data directory is the host's own: the databases in it hold tenants'
//! token hashes, key-value data and sealed secrets, and its compiled
//! artifacts are machine code the host will run. Only the user running
//! Berth may read or write any of it.

use std::path::Path;

/// Creates `dir` (and its parents) if need be and makes it readable and
/// writable by its owner only: `0700`, also when it already existed with
/// wider permissions (stores made by an older Berth are tightened on open).
pub fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))?;
        // Files an older Berth left readable by others: the directory
        // already shuts them out, this keeps them shut if it is moved.
        for entry in std::fs::read_dir(dir)?.flatten() {
            let Ok(meta) = entry.metadata() else { continue };
            if meta.is_file() && meta.permissions().mode() & 0o077 != 0 {
                std::fs::set_permissions(entry.path(), std::fs::Permissions::from_mode(0o600))?;
            }
        }
    }
    Ok(())
}

/// Makes every file and directory this process creates from now on
/// private to its owner (umask `077`): SQLite's database, journal and WAL
/// files, blobs, compiled artifacts and key files alike, whichever library
/// creates them.
#[allow(unsafe_code)]
pub fn create_files_private() {
    // SAFETY: umask(2) takes an integer and cannot fail; it changes the
    // mask for the whole process, which is the point: the host is the only
    // writer of its data directory.
    #[cfg(unix)]
    unsafe {
        libc::umask(0o077);
    }
}

#[cfg(all(test, unix))]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn an_existing_open_directory_is_made_private() -> std::io::Result<()> {
        let root = tempfile::tempdir()?;
        let dir = root.path().join("data");
        std::fs::create_dir(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755))?;
        let db = dir.join("berth.db");
        std::fs::write(&db, b"x")?;
        std::fs::set_permissions(&db, std::fs::Permissions::from_mode(0o644))?;
        create_private_dir(&dir)?;
        assert_eq!(std::fs::metadata(&dir)?.permissions().mode() & 0o777, 0o700);
        assert_eq!(std::fs::metadata(&db)?.permissions().mode() & 0o777, 0o600);
        Ok(())
    }
}
