//! Writing rendered output: only when it changed, atomically (a temp file in the same directory,
//! fsync, rename, fsync of the directory), keeping the old file's mode or setting the configured
//! one, optionally keeping a `.bak` of the previous content.

use std::fs;
use std::io::Write as _;
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
    let dir = match dest.path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    };
    if dest.create_dirs {
        fs::create_dir_all(&dir)?;
    }
    let name = dest
        .path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "output".into());
    let tmp = dir.join(format!(".{name}.tmpl-{}", std::process::id()));
    let written = (|| {
        let mut f = fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(content)?;
        f.set_permissions(fs::Permissions::from_mode(mode))?;
        f.sync_all()?;
        if dest.backup && existing.is_some() {
            fs::copy(&dest.path, backup_path(&dest.path))?;
        }
        fs::rename(&tmp, &dest.path)?;
        // The rename itself must survive a crash.
        fs::File::open(&dir)?.sync_all()
    })();
    if written.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    written.map(|()| true)
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
            .filter(|e| e.file_name().to_string_lossy().contains(".tmpl-"))
            .collect();
        assert!(leftovers.is_empty());
    }
}
