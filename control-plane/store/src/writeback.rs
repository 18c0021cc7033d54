//! Writing a large file beside the raft log without stalling the log's syncs.
//!
//! On ext4 in its default `data=ordered` mode a journal commit waits until the data of every
//! file whose blocks it allocates has reached the disk. A snapshot written whole and synced at
//! the end has tens of megabytes allocated at once, by that sync, and every `fdatasync` of the
//! raft log meanwhile commits the journal: it waits behind all of them, so writes stall for
//! as long as the snapshot takes to reach the disk. Written through [`Writeback`], the file is
//! sent to the disk a chunk at a time as it is produced (`sync_file_range`), and a commit never
//! finds more than about two chunks pending. RocksDB's `bytes_per_sync` exists for the same
//! reason.
//!
//! `sync_file_range` only starts and waits for writeback; it makes nothing durable. The caller
//! still syncs the file at the end, and where the call is not supported the writer simply
//! carries on without it.

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
        }
    }

    /// Writes what is buffered, and returns the file (not yet synced).
    pub fn finish(mut self) -> io::Result<File> {
        self.write_chunk()?;
        Ok(self.file)
    }

    fn write_chunk(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        self.file.write_all(&self.buf)?;
        let len = self.buf.len() as u64;
        self.buf.clear();
        self.sync_range(self.offset, len, libc::SYNC_FILE_RANGE_WRITE);
        if let Some((offset, len)) = self.in_flight.take() {
            self.sync_range(
                offset,
                len,
                libc::SYNC_FILE_RANGE_WAIT_BEFORE
                    | libc::SYNC_FILE_RANGE_WRITE
                    | libc::SYNC_FILE_RANGE_WAIT_AFTER,
            );
        }
        self.in_flight = Some((self.offset, len));
        self.offset += len;
        Ok(())
    }

    fn sync_range(&mut self, offset: u64, len: u64, flags: libc::c_uint) {
        if !self.supported {
            return;
        }
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return;
        };
        // SAFETY: sync_file_range(2) reads no memory of ours; the descriptor is open for as
        // long as `self.file` lives.
        let rc = unsafe { libc::sync_file_range(self.file.as_raw_fd(), offset, len, flags) };
        if rc != 0 {
            // Not supported here (some file systems, or a pipe): the final sync does it all.
            self.supported = false;
        }
    }
}

impl Write for Writeback {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let room = self.chunk - self.buf.len();
        let taken = data.len().min(room);
        self.buf.extend_from_slice(&data[..taken]);
        if self.buf.len() >= self.chunk {
            self.write_chunk()?;
        }
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
