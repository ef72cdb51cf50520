//! Writing rendered output: only when it changed, atomically (a temp file in the same directory,
//! fsync, rename, fsync of the directory), keeping the old file's mode or setting the configured
//! one, optionally keeping a `.bak` of the previous content.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

/// Where and how a template's output goes.
#[derive(Debug, Clone, PartialEq)]
pub struct Destination {
    pub path: PathBuf,
    /// File mode; None keeps the existing file's (0644 for a new one).
    pub perms: Option<u32>,
    pub backup: bool,
    pub create_dirs: bool,
}

/// Writes `content` unless the file already holds exactly that. Ok(true) when written.
pub fn write_if_changed(dest: &Destination, content: &[u8]) -> std::io::Result<bool> {
    let existing = fs::read(&dest.path).ok();
    let old_mode = fs::metadata(&dest.path)
        .ok()
        .map(|m| m.permissions().mode() & 0o7777);
    let mode = dest.perms.or(old_mode).unwrap_or(0o644);
    if existing.as_deref() == Some(content) && old_mode == Some(mode) {
        return Ok(false);
    }
    if dest.create_dirs
        && let Some(dir) = dest.path.parent().filter(|d| !d.as_os_str().is_empty())
    {
        fs::create_dir_all(dir)?;
    }
    if dest.backup && existing.is_some() {
        fs::copy(&dest.path, backup_path(&dest.path))?;
    }
    cairn_cli::replace_file(&dest.path, content, Some(mode))?;
    Ok(true)
}

/// `<path>.bak`.
pub fn backup_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".bak");
    PathBuf::from(p)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn writes_only_changes_and_keeps_modes() {
        let dir = tempfile::tempdir().unwrap();
        let dest = Destination {
            path: dir.path().join("sub/out.conf"),
            perms: None,
            backup: true,
            create_dirs: true,
        };
        assert!(write_if_changed(&dest, b"one").unwrap());
        assert!(
            !write_if_changed(&dest, b"one").unwrap(),
            "same content is not rewritten"
        );
        fs::set_permissions(&dest.path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(write_if_changed(&dest, b"two").unwrap());
        assert_eq!(fs::read(&dest.path).unwrap(), b"two");
        assert_eq!(
            fs::metadata(&dest.path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(fs::read(backup_path(&dest.path)).unwrap(), b"one");
        let strict = Destination {
            perms: Some(0o640),
            ..dest.clone()
        };
        assert!(
            write_if_changed(&strict, b"two").unwrap(),
            "a mode change is a change"
        );
        assert_eq!(
            fs::metadata(&dest.path).unwrap().permissions().mode() & 0o777,
            0o640
        );
        let leftovers: Vec<_> = fs::read_dir(dir.path().join("sub"))
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| e.file_name().to_string_lossy().contains(".tmp-"))
            .collect();
        assert!(leftovers.is_empty());
    }
}
