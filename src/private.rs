//! Files only their owner may read: the data directory (0700) and everything Sluice writes in it
//! (0600) — the store, the master key, the admin token, audit records, the CA key.

use anyhow::Context;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::Path;

/// Group and others get nothing.
const NOT_SHARED: u32 = 0o077;

/// New files and directories of this process (the SQLite store and its journal included, which
/// are created by a library) are the owner's only.
pub fn restrict_new_files() {
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(NOT_SHARED));
}

/// Creates `dir` 0700, or narrows an existing one to 0700 and its files to 0600 (data
/// directories of earlier versions were 0755 with 0644 files). The master key is left as it
/// is: [`check_not_shared`] refuses to start with a readable one.
pub fn data_dir(dir: &Path) -> anyhow::Result<()> {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .with_context(|| format!("data_dir: cannot create {}", dir.display()))?;
    narrow(dir, 0o700)?;
    let entries = std::fs::read_dir(dir)
        .with_context(|| format!("data_dir: cannot read {}", dir.display()))?;
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(kind) = entry.file_type() else {
            continue;
        };
        if kind.is_dir() {
            narrow(&path, 0o700)?;
        } else if kind.is_file() && entry.file_name() != "master.key" {
            narrow(&path, 0o600)?;
        }
    }
    Ok(())
}

fn narrow(path: &Path, mode: u32) -> anyhow::Result<()> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let now = meta.permissions().mode() & 0o777;
    if now & NOT_SHARED != 0 {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
            .with_context(|| format!("narrowing the permissions of {}", path.display()))?;
        log::warn!(
            "{} was readable by others (mode {now:o}): now {mode:o}",
            path.display()
        );
    }
    Ok(())
}

/// Refuses a secret file that group or others may read (as ssh does with private keys).
pub fn check_not_shared(path: &Path) -> anyhow::Result<()> {
    let meta = std::fs::metadata(path).with_context(|| format!("reading {}", path.display()))?;
    let mode = meta.permissions().mode() & 0o777;
    anyhow::ensure!(
        mode & NOT_SHARED == 0,
        "{} is readable by group or others (mode {mode:o}): run `chmod 600 {}` and start again",
        path.display(),
        path.display()
    );
    Ok(())
}

/// Writes a new file readable by its owner only (created so, not chmod-ed after the fact).
pub fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    file.write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))
}

/// Replaces `file` atomically (a 0600 temp file beside it, then a rename).
pub fn replace(file: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let mut tmp = file.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    write(&tmp, bytes)?;
    std::fs::rename(&tmp, file).with_context(|| format!("replacing {}", file.display()))
}

/// Opens `path` for appending, creating it 0600.
pub fn append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(p: &Path) -> u32 {
        std::fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn data_dirs_are_narrowed_and_shared_keys_refused() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("data");
        data_dir(&dir).unwrap();
        assert_eq!(mode(&dir), 0o700);
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        let audit = dir.join("audit.jsonl");
        std::fs::write(&audit, "{}\n").unwrap();
        std::fs::set_permissions(&audit, std::fs::Permissions::from_mode(0o644)).unwrap();
        let key = dir.join("master.key");
        std::fs::write(&key, "k\n").unwrap();
        std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
        data_dir(&dir).unwrap();
        assert_eq!((mode(&dir), mode(&audit)), (0o700, 0o600));
        let refused = check_not_shared(&key).unwrap_err().to_string();
        assert!(refused.contains("chmod 600"), "{refused}");
        write(&dir.join("new"), b"x").unwrap();
        assert_eq!(mode(&dir.join("new")), 0o600);
        drop(append(&dir.join("log")).unwrap());
        assert_eq!(mode(&dir.join("log")), 0o600);
    }
}
