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
//!
//! Time ([`TimeIndex`], [`since_offset`]): the log files hold the task's bytes only, so each
//! file's writer keeps a sparse index beside it, `stdout.idx`: lines `unix_ms offset`, one
//! appended when output arrives in a wall-clock second other than the last entry's (so at most
//! one a second, only while output flows), each written *before* the bytes it points at. Every
//! byte before an entry's offset was then written in an earlier second, every byte after it in
//! that second or later: "the output since second S" starts exactly at the first entry of a
//! second >= S (1 s granularity). The index is emptied when its file rotates (it describes the
//! current file only) and holds at most [`INDEX_MAX_ENTRIES`] entries (~18 h of output every
//! second without a rotation); past that, a time after the last entry answers from the last
//! entry's offset (more than asked, never less). A file written before its writer kept an index
//! (a task started by an older taskrun) has none until its next rotation: a look-up answers
//! [`SinceAnswer::NotIndexed`].

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
    /// The file's time index, when its writer keeps one ([`RotatingFile::open_indexed`]).
    index: Option<TimeIndex>,
}

/// Most entries in one time index (one a second while output flows: ~18 h).
pub const INDEX_MAX_ENTRIES: usize = 65_536;
/// Longest index file read back (an entry is two numbers and a space: < 32 bytes).
const INDEX_MAX_BYTES: u64 = INDEX_MAX_ENTRIES as u64 * 32;

/// `path.idx`, the time index of log file `path`.
pub fn index_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".idx");
    PathBuf::from(name)
}

/// Milliseconds since the Unix epoch now (0 for a clock before it).
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// The entries of an index file's text: whole lines of two numbers (a torn or garbled line,
/// from a writer stopped mid-line, is skipped).
fn parse_index(text: &str) -> Vec<(u64, u64)> {
    text.split_inclusive('\n')
        .filter_map(|line| {
            let line = line.strip_suffix('\n')?;
            let (ms, offset) = line.split_once(' ')?;
            Some((ms.parse().ok()?, offset.parse().ok()?))
        })
        .collect()
}

/// Reads an index file (at most [`INDEX_MAX_BYTES`]); `None` when there is none.
fn read_index(path: &Path) -> io::Result<Option<Vec<(u64, u64)>>> {
    let file = match File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut bytes = Vec::new();
    file.take(INDEX_MAX_BYTES).read_to_end(&mut bytes)?;
    // Bytes that are not text are no entries of ours: what parses is used.
    Ok(Some(parse_index(&String::from_utf8_lossy(&bytes))))
}

/// The writer's side of a log file's time index (see the module docs).
struct TimeIndex {
    path: PathBuf,
    /// `None` while the file has no index (it held output before an index was kept); one is
    /// started at the next rotation.
    file: Option<File>,
    /// The second of the newest entry.
    last_sec: Option<u64>,
    entries: usize,
}

impl TimeIndex {
    /// The index of the log file `log` of `size` bytes, as it stands: continued when it
    /// describes the file, left off when the file has bytes the index cannot place.
    fn open(log: &Path, size: u64) -> TimeIndex {
        let path = index_path(log);
        let mut index = TimeIndex {
            path,
            file: None,
            last_sec: None,
            entries: 0,
        };
        let entries = match read_index(&index.path) {
            Ok(Some(entries)) => entries,
            // No index beside a file that has output: those bytes have no times.
            Ok(None) if size > 0 => return index,
            Ok(None) => Vec::new(),
            Err(_) => {
                index.disable();
                return index;
            }
        };
        // An entry past the end belongs to another file (a rotation the index missed); an
        // empty index cannot place the bytes the file has.
        let describes_file = entries
            .last()
            .map_or(size == 0, |(_, offset)| *offset <= size);
        match open_append(&index.path) {
            Ok(f) if describes_file => {
                index.file = Some(f);
                index.last_sec = entries.last().map(|(ms, _)| ms / 1000);
                index.entries = entries.len();
            }
            _ => index.disable(),
        }
        index
    }

    /// No index for this file: removed, so that no reader trusts a stale one.
    fn disable(&mut self) {
        self.file = None;
        // Nothing more can be done about an index that cannot be removed.
        let _ = std::fs::remove_file(&self.path);
    }

    /// Notes that output arriving at `ms` starts at `offset` (before it is written).
    fn mark(&mut self, ms: u64, offset: u64) {
        let sec = ms / 1000;
        // A clock stepping back writes no entry until it passes the newest again: entries stay
        // ordered, and the bytes count as that newest second's.
        if self.last_sec.is_some_and(|last| sec <= last) || self.entries >= INDEX_MAX_ENTRIES {
            return;
        }
        let Some(file) = &mut self.file else {
            return;
        };
        if file
            .write_all(format!("{ms} {offset}\n").as_bytes())
            .is_err()
        {
            // A missing entry would make a look-up skip output: no index rather than a wrong
            // one.
            self.disable();
            return;
        }
        self.last_sec = Some(sec);
        self.entries += 1;
    }

    /// The file was rotated: a new, empty index for the new file.
    fn reset(&mut self) {
        self.last_sec = None;
        self.entries = 0;
        let created = std::fs::OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&self.path)
            .and_then(|f| {
                drop(f);
                open_append(&self.path)
            });
        match created {
            Ok(f) => self.file = Some(f),
            Err(_) => self.disable(),
        }
    }
}

/// Where output since a time starts in a log file, by its index.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SinceAnswer {
    /// Read from this offset of the current file.
    Offset(u64),
    /// The file has no index (written by an older taskrun): the time cannot be applied.
    NotIndexed,
}

/// The offset in log file `path` of the first byte written at or after `since_secs` (Unix
/// seconds; see the module docs). The file's size is taken before the index is read: every
/// byte below it written in a second the index names already has its entry (entries are
/// written before their bytes), so "no entry that late" means "nothing written since".
pub fn since_offset(path: &Path, since_secs: u64) -> io::Result<SinceAnswer> {
    let size = match std::fs::metadata(path) {
        Ok(m) => m.len(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => 0,
        Err(e) => return Err(e),
    };
    let Some(entries) = read_index(&index_path(path))? else {
        return Ok(if size == 0 {
            SinceAnswer::Offset(0)
        } else {
            SinceAnswer::NotIndexed
        });
    };
    if let Some((_, offset)) = entries.iter().find(|(ms, _)| ms / 1000 >= since_secs) {
        return Ok(SinceAnswer::Offset(*offset));
    }
    if entries.len() >= INDEX_MAX_ENTRIES {
        // A full index: what came after its last entry has no times.
        return Ok(SinceAnswer::Offset(entries.last().map_or(0, |e| e.1)));
    }
    if entries.is_empty() && size > 0 {
        return Ok(SinceAnswer::NotIndexed);
    }
    Ok(SinceAnswer::Offset(size))
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
            index: None,
        })
    }

    /// [`RotatingFile::open`], keeping the file's time index `path.idx` as it writes (see the
    /// module docs). A file with output but no index gets one at its next rotation; an index
    /// that cannot be written is removed, never left wrong.
    pub fn open_indexed(path: &Path, max: u64, keep: usize) -> io::Result<RotatingFile> {
        let mut file = RotatingFile::open(path, max, keep)?;
        file.index = Some(TimeIndex::open(path, file.size));
        Ok(file)
    }

    /// Writes all of `buf`, rotating whenever the file is full; output of the current time for
    /// the index.
    pub fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let ms = if self.index.is_some() { now_ms() } else { 0 };
        self.write_all_at(buf, ms)
    }

    /// Writes all of `buf`, output made at `ms` (Unix milliseconds: Docker's stamp of an
    /// entry), rotating whenever the file is full.
    pub fn write_all_at(&mut self, mut buf: &[u8], ms: u64) -> io::Result<()> {
        while !buf.is_empty() {
            if self.max > 0 && self.size >= self.max {
                self.rotate()?;
            }
            if let Some(index) = &mut self.index {
                index.mark(ms, self.size);
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
            if let Some(index) = &mut self.index {
                index.reset();
            }
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
        // The index describes the current file only.
        if let Some(index) = &mut self.index {
            index.reset();
        }
        Ok(())
    }
}

/// A place in one log file: the file (its inode, which a rename keeps) and an offset. The
/// inode alone names the file: it is what stays the same across a reboot (device numbers may
/// not), and a task's generations all live in one directory of one file system.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Position {
    pub ino: u64,
    pub offset: u64,
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

    /// Where the reader stands (`None` before the file exists).
    pub fn position(&self) -> io::Result<Option<Position>> {
        let Some(file) = &self.file else {
            return Ok(None);
        };
        Ok(Some(Position {
            ino: file.metadata()?.ino(),
            offset: self.offset,
        }))
    }

    /// A reader of `path` from `pos`, a position saved earlier: in the file `path` names now
    /// when it is that file; in the newest rotated generation (`path.1`) when that is it (the
    /// file rotated once since), going on with the current file after it. `None` when neither
    /// is (rotated more than once since, or removed): the caller decides where to start.
    pub fn resume(path: &Path, pos: Position) -> io::Result<Option<LogReader>> {
        for candidate in [path.to_path_buf(), generation(path, 1)] {
            let file = match File::open(&candidate) {
                Ok(f) => f,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            let meta = file.metadata()?;
            if meta.ino() != pos.ino {
                continue;
            }
            return Ok(Some(LogReader {
                path: path.to_path_buf(),
                file: Some(file),
                // Shorter than the position: truncated since; read what it holds.
                offset: if meta.len() < pos.offset {
                    0
                } else {
                    pos.offset
                },
            }));
        }
        Ok(None)
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

    fn since(path: &Path, secs: u64) -> SinceAnswer {
        since_offset(path, secs).unwrap()
    }

    /// Entries only when a new second's output arrives, each pointing at its first byte; a
    /// look-up starts at the first entry of a second at or after the one asked for.
    #[test]
    fn the_time_index_finds_the_output_since_a_second() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout");
        let mut w = RotatingFile::open_indexed(&path, 0, KEEP).unwrap();
        assert_eq!(
            since(&path, 5),
            SinceAnswer::Offset(0),
            "nothing written yet"
        );
        for (ms, text) in [
            (1_000_500, "a\n"),
            (1_000_900, "b\n"),
            (1_002_100, "c\n"),
            (1_005_000, "d\n"),
            // A clock stepping back: no entry, the bytes count as the newest second's.
            (1_004_000, "e\n"),
        ] {
            w.write_all_at(text.as_bytes(), ms).unwrap();
        }
        assert_eq!(
            std::fs::read_to_string(index_path(&path)).unwrap(),
            "1000500 0\n1002100 4\n1005000 6\n"
        );
        for (secs, offset) in [
            (0, 0),
            (1_000, 0),
            (1_001, 4),
            (1_002, 4),
            (1_003, 6),
            (1_005, 6),
            // Later than anything written: the end.
            (1_006, 10),
        ] {
            assert_eq!(since(&path, secs), SinceAnswer::Offset(offset), "{secs}");
        }
        // A writer opened again (a restarted supervisor) goes on with the same index.
        drop(w);
        let mut w = RotatingFile::open_indexed(&path, 0, KEEP).unwrap();
        w.write_all_at(b"f\n", 1_005_999).unwrap();
        w.write_all_at(b"g\n", 1_007_000).unwrap();
        assert_eq!(since(&path, 1_006), SinceAnswer::Offset(12));
        // A torn last line (a writer killed mid-entry) is not an entry.
        let mut idx = std::fs::OpenOptions::new()
            .append(true)
            .open(index_path(&path))
            .unwrap();
        idx.write_all(b"1009").unwrap();
        assert_eq!(since(&path, 1_008), SinceAnswer::Offset(14));
    }

    #[test]
    fn rotation_starts_a_new_index() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout");
        let mut w = RotatingFile::open_indexed(&path, 10, KEEP).unwrap();
        w.write_all_at(b"01234567", 1_000_000).unwrap();
        // Two bytes fill the file, six go to the next one.
        w.write_all_at(b"89abcdef", 1_001_000).unwrap();
        assert_eq!(std::fs::read(&path).unwrap(), b"abcdef");
        assert_eq!(
            std::fs::read_to_string(index_path(&path)).unwrap(),
            "1001000 0\n"
        );
        assert!(!index_path(&generation(&path, 1)).exists());
        assert_eq!(since(&path, 999), SinceAnswer::Offset(0));
        assert_eq!(since(&path, 1_002), SinceAnswer::Offset(6));
        // keep = 0: the file is emptied in place, and so is its index.
        let path = dir.path().join("stderr");
        let mut w = RotatingFile::open_indexed(&path, 4, 0).unwrap();
        w.write_all_at(b"abcd", 2_000_000).unwrap();
        w.write_all_at(b"ef", 2_003_000).unwrap();
        assert_eq!(
            std::fs::read_to_string(index_path(&path)).unwrap(),
            "2003000 0\n"
        );
    }

    /// A file with output and no index (written by an older taskrun) cannot answer a time,
    /// and gets an index once it rotates; an index that does not describe its file is removed.
    #[test]
    fn files_without_an_index_say_so() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout");
        RotatingFile::open(&path, 10, KEEP)
            .unwrap()
            .write_all(b"old\n")
            .unwrap();
        assert_eq!(since(&path, 0), SinceAnswer::NotIndexed);
        let mut w = RotatingFile::open_indexed(&path, 10, KEEP).unwrap();
        w.write_all_at(b"new\n", 3_000_000).unwrap();
        assert_eq!(since(&path, 0), SinceAnswer::NotIndexed);
        w.write_all_at(b"rotated\n", 3_001_000).unwrap();
        assert_eq!(since(&path, 3_001), SinceAnswer::Offset(0));
        // An entry past the file's end: another file's index.
        std::fs::write(index_path(&path), "3001000 0\n3002000 500\n").unwrap();
        let _w = RotatingFile::open_indexed(&path, 10, KEEP).unwrap();
        assert!(!index_path(&path).exists());
        assert_eq!(since(&path, 0), SinceAnswer::NotIndexed);
    }

    /// The index stops growing at its bound; a time past its last entry then answers from that
    /// entry (more than asked, never less).
    #[test]
    fn the_time_index_is_bounded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout");
        let mut w = RotatingFile::open_indexed(&path, 0, KEEP).unwrap();
        for i in 0..INDEX_MAX_ENTRIES as u64 + 10 {
            w.write_all_at(b"x", i * 1000).unwrap();
        }
        let idx = std::fs::read_to_string(index_path(&path)).unwrap();
        assert_eq!(idx.lines().count(), INDEX_MAX_ENTRIES);
        assert!(idx.len() as u64 <= INDEX_MAX_BYTES);
        let last = INDEX_MAX_ENTRIES as u64 - 1;
        assert_eq!(since(&path, last), SinceAnswer::Offset(last));
        assert_eq!(since(&path, last + 5), SinceAnswer::Offset(last));
    }

    /// A saved position resumes in the same file, or in `.1` after one rotation (then on to
    /// the new file); after two rotations there is nothing to resume.
    #[test]
    fn a_reader_resumes_from_a_saved_position() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("stdout");
        let mut w = RotatingFile::open(&path, 10, KEEP).unwrap();
        w.write_all(b"0123456").unwrap();
        let mut r = LogReader::open(&path, 0).unwrap();
        assert_eq!(r.read_chunk().unwrap(), b"0123456");
        let pos = r.position().unwrap().unwrap();
        assert_eq!(pos.offset, 7);
        drop(r);
        let mut r = LogReader::resume(&path, pos).unwrap().expect("same file");
        w.write_all(b"78").unwrap();
        assert_eq!(r.read_chunk().unwrap(), b"78");
        // One rotation: the rest of the old file, then the new one.
        w.write_all(b"9abc").unwrap();
        let mut r = LogReader::resume(&path, pos).unwrap().expect("in stdout.1");
        let mut got = Vec::new();
        loop {
            let c = r.read_chunk().unwrap();
            if c.is_empty() {
                break;
            }
            got.extend(c);
        }
        assert_eq!(got, b"789abc");
        w.write_all(b"defghijklmnop").unwrap();
        assert!(LogReader::resume(&path, pos).unwrap().is_none());
    }
}
