//! Task log files `stdout`/`stderr` in the sandbox: writing them with a bound on disk use, and
//! reading them from an offset with a bound on memory.
//!
//! Writing ([`RotatingFile`]): the one writer of a file — the task's supervisor (`taskrun wrap`,
//! which owns the task's output pipes) or the agent's copy of a container's output — rotates it
//! in the write path, so the bound holds whatever the writer's speed: before a write would take
//! the file past the limit, `stdout` is renamed `stdout.1` (`.1`→`.2`→`.3`, the oldest
//! replaced) and a new `stdout` is started. A task's output so takes at most
//! `(KEEP + 1) x limit` bytes per stream.
//!
//! Reading ([`LogReader`]): a reader holds the file it reads open, so a rotation under it loses
//! nothing: it reads that file to its end, then goes on with the new one from 0 (a reader more
//! than one rotation behind skips the generations in between). Reads are at most [`CHUNK`]
//! bytes.

use std::fs::File;
use std::io::{self, Read as _, Seek as _, SeekFrom, Write as _};
use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};

/// Size above which a log file is rotated.
pub const DEFAULT_ROTATE_BYTES: u64 = 10 * 1024 * 1024;
/// Rotated generations kept (`stdout.1` .. `stdout.3`).
pub const KEEP: usize = 3;
/// Largest chunk read at once.
pub const CHUNK: usize = 64 * 1024;

/// `path.n`, the `n`th rotated generation of `path`.
pub fn generation(path: &Path, n: usize) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(format!(".{n}"));
    PathBuf::from(name)
}

/// Opens (creating) a log file for appending.
pub fn open_append(path: &Path) -> io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    // The owner's only: a task's output may hold what its environment holds.
    std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// A log file its one writer rotates by size (see the module docs).
pub struct RotatingFile {
    path: PathBuf,
    /// Most bytes in one file; 0: never rotate.
    max: u64,
    keep: usize,
    file: File,
    size: u64,
}

impl RotatingFile {
    /// Opens `path` for appending (what it holds already counts towards the limit).
    pub fn open(path: &Path, max: u64, keep: usize) -> io::Result<RotatingFile> {
        let file = open_append(path)?;
        let size = file.metadata()?.len();
        Ok(RotatingFile {
            path: path.to_path_buf(),
            max,
            keep,
            file,
            size,
        })
    }

    /// Writes all of `buf`, rotating whenever the file is full.
    pub fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            if self.max > 0 && self.size >= self.max {
                self.rotate()?;
            }
            let room = if self.max == 0 {
                buf.len()
            } else {
                usize::try_from(self.max - self.size).map_or(buf.len(), |r| r.min(buf.len()))
            };
            self.file.write_all(&buf[..room])?;
            self.size += room as u64;
            buf = &buf[room..];
        }
        Ok(())
    }

    /// Shifts the generations and starts a new file.
    fn rotate(&mut self) -> io::Result<()> {
        if self.keep == 0 {
            self.file.set_len(0)?;
            self.size = 0;
            return Ok(());
        }
        for n in (1..self.keep).rev() {
            match std::fs::rename(generation(&self.path, n), generation(&self.path, n + 1)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        std::fs::rename(&self.path, generation(&self.path, 1))?;
        self.file = open_append(&self.path)?;
        self.size = 0;
        Ok(())
    }
}

/// Identity of a file: which inode a path names now.
fn inode(meta: &std::fs::Metadata) -> (u64, u64) {
    (meta.dev(), meta.ino())
}

/// A reader of one log stream from an offset, following rotations (see the module docs).
pub struct LogReader {
    path: PathBuf,
    /// The file being read (`None` until it exists).
    file: Option<File>,
    offset: u64,
}

impl LogReader {
    /// A reader of `path` from `offset`; a file shorter than `offset` (rotated since the offset
    /// was given) is read from 0.
    pub fn open(path: &Path, offset: u64) -> io::Result<LogReader> {
        let mut reader = LogReader {
            path: path.to_path_buf(),
            file: None,
            offset,
        };
        reader.reopen()?;
        Ok(reader)
    }

    /// The offset in the file being read.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The size of the file being read now (0 when there is none yet).
    pub fn len(&self) -> io::Result<u64> {
        match &self.file {
            Some(f) => Ok(f.metadata()?.len()),
            None => Ok(0),
        }
    }

    pub fn is_empty(&self) -> io::Result<bool> {
        Ok(self.len()? == 0)
    }

    /// Opens what `path` names now; true when it is another file than the one being read.
    fn reopen(&mut self) -> io::Result<bool> {
        let file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        if let Some(current) = &self.file
            && inode(&current.metadata()?) == inode(&meta)
        {
            return Ok(false);
        }
        if self.file.is_some() || meta.len() < self.offset {
            self.offset = 0;
        }
        self.file = Some(file);
        Ok(true)
    }

    /// Up to `max` (at most [`CHUNK`]) bytes of the file being read, from the offset; empty at
    /// its end.
    fn read_current(&mut self, max: u64) -> io::Result<Vec<u8>> {
        let Some(file) = &mut self.file else {
            return Ok(Vec::new());
        };
        let len = file.metadata()?.len();
        if len < self.offset {
            // Truncated under us: go on from its start.
            self.offset = 0;
        }
        let want = (len - self.offset).min(max).min(CHUNK as u64);
        let mut buf = Vec::with_capacity(want as usize);
        file.seek(SeekFrom::Start(self.offset))?;
        file.take(want).read_to_end(&mut buf)?;
        self.offset += buf.len() as u64;
        Ok(buf)
    }

    /// The next chunk (at most [`CHUNK`] bytes): the rest of the file being read, then the file
    /// that replaced it. Empty when there is nothing new.
    pub fn read_chunk(&mut self) -> io::Result<Vec<u8>> {
        let chunk = self.read_current(CHUNK as u64)?;
        if !chunk.is_empty() {
            return Ok(chunk);
        }
        if self.reopen()? {
            return self.read_current(CHUNK as u64);
        }
        Ok(chunk)
    }

    /// The next chunk of the file being read, not past `end`, never following a rotation (what
    /// a read of the log as it is now returns). Empty at `end`.
    pub fn read_chunk_until(&mut self, end: u64) -> io::Result<Vec<u8>> {
        self.read_current(end.saturating_sub(self.offset))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn total(dir: &Path) -> u64 {
        std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().metadata().unwrap().len())
            .sum()
    }

    #[test]
    fn rotates_in_the_write_path_keeping_three() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout");
        let mut w = RotatingFile::open(&path, 100, KEEP).unwrap();
        // Writes of every size, far more than the bound.
        for round in 0..50u8 {
            w.write_all(&vec![b'a' + round % 26; usize::from(round) * 7 + 1])
                .unwrap();
            for n in 0..=KEEP {
                let f = if n == 0 {
                    path.clone()
                } else {
                    generation(&path, n)
                };
                let len = std::fs::metadata(&f).map(|m| m.len()).unwrap_or(0);
                assert!(len <= 100, "{} has {len} bytes", f.display());
            }
            assert!(!generation(&path, KEEP + 1).exists());
            assert!(total(dir.path()) <= (KEEP as u64 + 1) * 100);
        }
        // Nothing lost between the generations: they hold the newest bytes, in order.
        let mut w = RotatingFile::open(&path, 10, KEEP).unwrap();
        w.write_all(b"0123456789abcdefghijklmnopqrstuvwxyz")
            .unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"uvwxyz");
        assert_eq!(std::fs::read(generation(&path, 1)).unwrap(), b"klmnopqrst");
        assert_eq!(std::fs::read(generation(&path, 2)).unwrap(), b"abcdefghij");
        assert_eq!(std::fs::read(generation(&path, 3)).unwrap(), b"0123456789");
    }

    #[test]
    fn a_limit_of_zero_never_rotates() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout");
        let mut w = RotatingFile::open(&path, 0, KEEP).unwrap();
        w.write_all(&[b'x'; 1000]).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 1000);
        assert!(!generation(&path, 1).exists());
    }

    #[test]
    fn reads_from_offsets_in_chunks() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout");
        let mut r = LogReader::open(&path, 0).unwrap();
        assert!(r.read_chunk().unwrap().is_empty(), "no file yet");
        std::fs::write(&path, b"hello world").unwrap();
        assert_eq!(r.read_chunk().unwrap(), b"hello world");
        let mut r = LogReader::open(&path, 6).unwrap();
        assert_eq!(r.read_chunk().unwrap(), b"world");
        assert_eq!(r.offset(), 11);
        // An offset past the end (the file was rotated since): from 0.
        let mut r = LogReader::open(&path, 50).unwrap();
        assert_eq!(r.read_chunk().unwrap(), b"hello world");
        let big = vec![b'x'; CHUNK * 2 + 10];
        std::fs::write(&path, &big).unwrap();
        let mut r = LogReader::open(&path, 0).unwrap();
        assert_eq!(r.read_chunk().unwrap().len(), CHUNK);
        // Bounded reads stop at the end given.
        let mut r = LogReader::open(&path, 0).unwrap();
        let mut n = 0;
        loop {
            let c = r.read_chunk_until(CHUNK as u64 + 5).unwrap();
            if c.is_empty() {
                break;
            }
            n += c.len();
        }
        assert_eq!(n, CHUNK + 5);
    }

    /// A rotation under a reader: it finishes the old file, then reads the new one from 0.
    #[test]
    fn a_reader_follows_a_rotation_without_losing_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout");
        let mut w = RotatingFile::open(&path, 10, KEEP).unwrap();
        w.write_all(b"0123456").unwrap();
        let mut r = LogReader::open(&path, 0).unwrap();
        assert_eq!(r.read_chunk().unwrap(), b"0123456");
        // Two rotations before the reader looks again.
        w.write_all(b"789abcdefghijklmnop").unwrap();
        let mut got = Vec::new();
        loop {
            let c = r.read_chunk().unwrap();
            if c.is_empty() {
                break;
            }
            got.extend(c);
        }
        // The file it held (now stdout.2), then the current one; what went to stdout.1 meanwhile
        // is skipped, the reader being two rotations behind.
        assert_eq!(got, b"789klmnop");
    }
}
