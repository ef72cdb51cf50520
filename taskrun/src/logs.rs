//! Task log files: rotation and reading from an offset.
//!
//! Tasks write `stdout`/`stderr` themselves (opened `O_APPEND`), so the files cannot be renamed
//! under them; rotation copies the file to `stdout.1` (shifting `.1`→`.2`→`.3`, the oldest
//! dropped) and truncates it in place — `O_APPEND` writers simply continue at the new end. Bytes
//! written between the copy and the truncation are lost, the price of copy-truncate (logrotate's
//! `copytruncate` has the same window). Readers that follow a file treat a file shorter than
//! their offset as rotated and start again from 0.

use std::io::{self, Read as _, Seek as _, SeekFrom};
use std::path::{Path, PathBuf};

/// Size above which a log file is rotated.
pub const DEFAULT_ROTATE_BYTES: u64 = 10 * 1024 * 1024;
/// Rotated generations kept (`stdout.1` .. `stdout.3`).
pub const KEEP: usize = 3;
/// Largest chunk read at once.
pub const CHUNK: usize = 64 * 1024;

fn generation(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Rotates `path` when it is bigger than `max` bytes; true when it did.
pub fn rotate_if_needed(path: &Path, max: u64, keep: usize) -> io::Result<bool> {
    let len = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(e),
    };
    if len <= max || keep == 0 {
        return Ok(false);
    }
    for n in (1..keep).rev() {
        match std::fs::rename(generation(path, n), generation(path, n + 1)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
    }
    std::fs::copy(path, generation(path, 1))?;
    std::fs::OpenOptions::new()
        .write(true)
        .open(path)?
        .set_len(0)?;
    Ok(true)
}

/// Reads up to [`CHUNK`] bytes of `path` from `offset`. Returns the bytes and the offset after
/// them; a missing file reads as empty, a file shorter than `offset` (rotated) is read from 0.
pub fn read_chunk(path: &Path, offset: u64) -> io::Result<(Vec<u8>, u64)> {
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((Vec::new(), offset)),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    let start = if len < offset { 0 } else { offset };
    file.seek(SeekFrom::Start(start))?;
    let mut buf = Vec::with_capacity(CHUNK.min((len - start) as usize));
    file.take(CHUNK as u64).read_to_end(&mut buf)?;
    let end = start + buf.len() as u64;
    Ok((buf, end))
}

/// Reads everything of `path` from `offset` to its current end.
pub fn read_from(path: &Path, offset: u64) -> io::Result<(Vec<u8>, u64)> {
    let mut out = Vec::new();
    let mut at = offset;
    loop {
        let (chunk, next) = read_chunk(path, at)?;
        if chunk.is_empty() {
            // A rotated file restarts at 0 even when nothing new was written.
            return Ok((out, if next < at { next } else { at }));
        }
        out.extend_from_slice(&chunk);
        at = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write as _;

    #[test]
    fn rotates_copy_truncate_keeping_three() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout");
        let mut writer = crate::exec::open_log(&path).unwrap();
        for round in 0..5u8 {
            writer.write_all(&[b'a' + round; 100]).unwrap();
            assert!(rotate_if_needed(&path, 50, KEEP).unwrap());
            assert_eq!(std::fs::metadata(&path).unwrap().len(), 0);
        }
        // The newest rotation is .1; only three are kept.
        assert_eq!(std::fs::read(generation(&path, 1)).unwrap(), [b'e'; 100]);
        assert_eq!(std::fs::read(generation(&path, 2)).unwrap(), [b'd'; 100]);
        assert_eq!(std::fs::read(generation(&path, 3)).unwrap(), [b'c'; 100]);
        assert!(!generation(&path, 4).exists());
        // The O_APPEND writer continues at the start of the truncated file, no hole.
        writer.write_all(b"after").unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"after");
        // Small files and missing files are left alone.
        assert!(!rotate_if_needed(&path, 50, KEEP).unwrap());
        assert!(!rotate_if_needed(&dir.path().join("none"), 50, KEEP).unwrap());
    }

    #[test]
    fn reads_from_offsets_and_restarts_after_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout");
        assert_eq!(read_from(&path, 0).unwrap(), (vec![], 0));
        std::fs::write(&path, b"hello world").unwrap();
        assert_eq!(read_from(&path, 6).unwrap(), (b"world".to_vec(), 11));
        assert_eq!(read_from(&path, 11).unwrap(), (vec![], 11));
        std::fs::write(&path, b"new").unwrap();
        assert_eq!(read_from(&path, 11).unwrap(), (b"new".to_vec(), 3));
        let big = vec![b'x'; CHUNK * 2 + 10];
        std::fs::write(&path, &big).unwrap();
        let (chunk, next) = read_chunk(&path, 0).unwrap();
        assert_eq!((chunk.len(), next), (CHUNK, CHUNK as u64));
        assert_eq!(read_from(&path, 0).unwrap().0.len(), big.len());
    }
}
