//! Writing a large file beside the raft log without stalling the log's syncs.
//!
//! A snapshot written whole and synced at the end sends tens of megabytes to the disk at once,
//! and every `fdatasync` of the raft log meanwhile queues behind them, so writes stall for as
//! long as the snapshot takes to reach the disk. On ext4 with a journal (the default
//! `data=ordered`) it is worse: a journal commit waits until the data of every block it
//! allocates has reached the disk, and the snapshot's blocks are allocated by that final sync.
//! Written through [`Writeback`], the file is sent to the disk a chunk at a time as it is
//! produced (`sync_file_range`), and a sync never finds more than about two chunks pending.
//! RocksDB's `bytes_per_sync` exists for the same reason.
//!
//! `sync_file_range` only starts and waits for writeback; it makes nothing durable. The caller
//! still syncs the file at the end, and where the call is not supported the writer simply
//! carries on without it. Any other failure of it is a failed write and is returned: waiting on
//! a range reports (and thereby consumes) a write-back error, so the final `fdatasync` would
//! then succeed over pages that never reached the disk. After an error the writer refuses
//! everything, since the file's contents are no longer known.

use std::fs::File;
use std::io::{self, Write};
use std::os::fd::AsRawFd;

/// Bytes handed to the disk at a time.
pub const CHUNK: usize = 1 << 20;

/// A buffered writer that sends each full chunk to the disk, and waits for the one before it.
pub struct Writeback {
    file: File,
    buf: Vec<u8>,
    chunk: usize,
    /// Where the next chunk starts in the file.
    offset: u64,
    /// The chunk whose writeback was started and not yet waited for.
    in_flight: Option<(u64, u64)>,
    /// Cleared when the file system does not support `sync_file_range`.
    supported: bool,
    /// Set by the first error: nothing more is written.
    failed: bool,
}

/// Whether `sync_file_range` failing with `errno` means "not here" rather than a failed write.
fn unsupported(errno: i32) -> bool {
    matches!(
        errno,
        libc::ESPIPE | libc::EINVAL | libc::ENOSYS | libc::EOPNOTSUPP
    )
}

impl Writeback {
    pub fn new(file: File, chunk: usize) -> Self {
        let chunk = chunk.max(4096);
        Self {
            file,
            buf: Vec::with_capacity(chunk),
            chunk,
            offset: 0,
            in_flight: None,
            supported: true,
            failed: false,
        }
    }

    /// Writes what is buffered, and returns the file (not yet synced).
    pub fn finish(mut self) -> io::Result<File> {
        self.write_chunk()?;
        Ok(self.file)
    }

    fn write_chunk(&mut self) -> io::Result<()> {
        if self.failed {
            return Err(io::Error::other(
                "an earlier write to this file failed; its contents are unknown",
            ));
        }
        if self.buf.is_empty() {
            return Ok(());
        }
        let result = self.send_chunk();
        self.failed = result.is_err();
        result
    }

    fn send_chunk(&mut self) -> io::Result<()> {
        self.file.write_all(&self.buf)?;
        let len = self.buf.len() as u64;
        self.buf.clear();
        self.sync_range(self.offset, len, libc::SYNC_FILE_RANGE_WRITE)?;
        if let Some((offset, len)) = self.in_flight.take() {
            self.sync_range(
                offset,
                len,
                libc::SYNC_FILE_RANGE_WAIT_BEFORE
                    | libc::SYNC_FILE_RANGE_WRITE
                    | libc::SYNC_FILE_RANGE_WAIT_AFTER,
            )?;
        }
        self.in_flight = Some((self.offset, len));
        self.offset += len;
        Ok(())
    }

    fn sync_range(&mut self, offset: u64, len: u64, flags: libc::c_uint) -> io::Result<()> {
        if !self.supported {
            return Ok(());
        }
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return Ok(());
        };
        // SAFETY: sync_file_range(2) reads no memory of ours; the descriptor is open for as
        // long as `self.file` lives.
        let rc = unsafe { libc::sync_file_range(self.file.as_raw_fd(), offset, len, flags) };
        if rc == 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        match error.raw_os_error() {
            // Not supported here (some file systems, or a pipe): the final sync does it all.
            Some(errno) if unsupported(errno) => {
                self.supported = false;
                Ok(())
            }
            _ => Err(error),
        }
    }
}

impl Write for Writeback {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        // A full buffer goes out before more is taken, so a failed write took none of `data`.
        if self.buf.len() >= self.chunk || self.failed {
            self.write_chunk()?;
        }
        let room = self.chunk - self.buf.len();
        let taken = data.len().min(room);
        self.buf.extend_from_slice(&data[..taken]);
        Ok(taken)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.write_chunk()?;
        self.file.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pattern(len: usize) -> Vec<u8> {
        (0..len).map(|i| (i * 31 % 251) as u8).collect()
    }

    #[test]
    fn writes_every_byte_in_order_whatever_the_pieces() {
        let dir = tempfile::tempdir().expect("tempdir");
        for (total, piece) in [
            (0, 1),
            (1, 1),
            (4096, 7),
            (3 * 4096 + 5, 4096),
            (5 * 4096, 1 << 16),
        ] {
            let data = pattern(total);
            let path = dir.path().join(format!("f-{total}-{piece}"));
            let mut w = Writeback::new(File::create(&path).expect("create"), 4096);
            for part in data.chunks(piece) {
                w.write_all(part).expect("write");
            }
            let file = w.finish().expect("finish");
            file.sync_data().expect("sync");
            drop(file);
            assert_eq!(
                std::fs::read(&path).expect("read"),
                data,
                "{total} bytes in pieces of {piece}"
            );
        }
    }

    #[test]
    fn flush_writes_a_partial_chunk() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        let mut w = Writeback::new(File::create(&path).expect("create"), 1 << 20);
        w.write_all(b"hello").expect("write");
        w.flush().expect("flush");
        assert_eq!(std::fs::read(&path).expect("read"), b"hello");
        w.write_all(b", world").expect("write");
        drop(w.finish().expect("finish"));
        assert_eq!(std::fs::read(&path).expect("read"), b"hello, world");
    }

    #[test]
    fn only_not_supported_errors_are_passed_over() {
        for errno in [libc::ESPIPE, libc::EINVAL, libc::ENOSYS, libc::EOPNOTSUPP] {
            assert!(unsupported(errno), "errno {errno}");
        }
        for errno in [libc::EIO, libc::ENOSPC, libc::EBADF, libc::EDQUOT] {
            assert!(!unsupported(errno), "errno {errno} is a failed write");
        }
    }

    #[test]
    fn after_a_failed_write_nothing_more_is_taken() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("f");
        std::fs::write(&path, b"").expect("create");
        // Open for reading only: every write fails (EBADF).
        let mut w = Writeback::new(File::open(&path).expect("open"), 4096);
        let data = pattern(4096);
        assert_eq!(w.write(&data).expect("buffered"), 4096);
        let err = w
            .write(b"more")
            .expect_err("the full chunk cannot be written");
        assert_eq!(err.raw_os_error(), Some(libc::EBADF), "{err}");
        let again = w.write(b"more").expect_err("a broken writer takes nothing");
        assert!(again.to_string().contains("earlier write"), "{again}");
        assert!(w.finish().is_err(), "finish reports the failure too");
    }

    #[test]
    fn a_file_that_cannot_sync_ranges_is_still_written() {
        // A pipe: sync_file_range fails (ESPIPE), and the writer carries on without it.
        let (reader, writer) = std::io::pipe().expect("pipe");
        let mut w = Writeback::new(File::from(std::os::fd::OwnedFd::from(writer)), 4096);
        let data = pattern(3 * 4096);
        let read = std::thread::spawn(move || {
            let mut got = Vec::new();
            std::io::Read::read_to_end(&mut { reader }, &mut got).expect("read");
            got
        });
        w.write_all(&data).expect("write");
        drop(w.finish().expect("finish"));
        assert_eq!(read.join().expect("reader"), data);
        // (The writer was dropped with the file, closing the pipe.)
    }
}
