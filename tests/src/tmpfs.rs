//! A small disk for tests of running out of space: a tmpfs of a given size mounted on a fresh
//! directory (needs root, as the network-namespace tests do: skipped with a notice elsewhere,
//! a failure under `CI=true`), filled and freed on demand, unmounted on drop.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

pub struct SmallDisk {
    _dir: tempfile::TempDir,
    mount: PathBuf,
}

impl SmallDisk {
    /// Mounts a tmpfs of `size_mb` MiB; `None` (after a notice) where mounting is not possible
    /// and `CI` is not `true`.
    pub fn mount(size_mb: u32) -> Option<SmallDisk> {
        let dir = tempfile::tempdir().expect("temp dir");
        let mount = dir.path().join("disk");
        std::fs::create_dir(&mount).expect("mount point");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size_mb}m"), "tmpfs"])
            .arg(&mount)
            .output()
            .expect("run mount");
        if !out.status.success() {
            let why = String::from_utf8_lossy(&out.stderr).trim().to_string();
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("a tmpfs mount is required under CI=true, but mount failed: {why}");
            }
            eprintln!("skipping: cannot mount a tmpfs ({why}); set CI=true to make this fail");
            return None;
        }
        Some(SmallDisk { _dir: dir, mount })
    }

    pub fn path(&self) -> &Path {
        &self.mount
    }

    /// Fills every free byte with a file `filler`.
    pub fn fill(&self) {
        let mut f = std::fs::File::create(self.filler()).expect("filler");
        let block = vec![0u8; 64 * 1024];
        loop {
            match f.write(&block) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                Err(e) => panic!("filling the disk: {e}"),
            }
        }
        // Whatever the last partial write left: the disk is full either way.
        let _ = f.sync_all();
    }

    /// Removes the filler: the space is back.
    pub fn free(&self) {
        std::fs::remove_file(self.filler()).expect("remove the filler");
    }

    fn filler(&self) -> PathBuf {
        self.mount.join("filler")
    }
}

impl Drop for SmallDisk {
    fn drop(&mut self) {
        // Lazily, so that a daemon still holding a file there does not keep the mount.
        let status = Command::new("umount").arg("-l").arg(&self.mount).status();
        if !status.is_ok_and(|s| s.success()) {
            eprintln!("warning: could not unmount {}", self.mount.display());
        }
    }
}
