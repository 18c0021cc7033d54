//! What a member does when its disk fails it: a full disk (a small tmpfs) and a torn last log
//! record (the journal cut mid-record, as a crash mid-write leaves it). Real processes, real
//! file systems; nothing acknowledged may be lost or garbled, and nothing half-written served.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use etcd_client::GetOptions;
use support::{connect, require_root, runtime, wait_leader, Cluster};

/// A tmpfs of `size` mounted on a fresh directory; unmounted (lazily, so a straggling process
/// cannot keep it) when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    fn mount(size: &str) -> Self {
        let dir = tempfile::tempdir().expect("a mount point");
        let status = Command::new("mount")
            .args([
                "-t",
                "tmpfs",
                "-o",
                &format!("size={size}"),
                "keel-test-full-disk",
            ])
            .arg(dir.path())
            .status()
            .expect("mount");
        assert!(
            status.success(),
            "cannot mount a tmpfs on {}",
            dir.path().display()
        );
        Self { dir }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

/// Fills the file system holding `dir` until a write fails; the filler is returned so that
/// deleting it gives the space back.
fn fill(dir: &Path) -> PathBuf {
    use std::io::Write;
    let filler = dir.join("filler");
    let mut f = std::fs::File::create(&filler).expect("filler");
    let chunk = vec![0xa5u8; 1 << 20];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
    filler
}

#[test]
fn a_full_disk_fails_writes_clearly_and_loses_nothing() {
    require_root("the disk tests mount a tmpfs");
    let disk = Tmpfs::mount("96m");
    let mut cluster = Cluster::loopback_in(disk.path(), 1, &[]);
    let rt = runtime();
    rt.block_on(async {
        wait_leader(&cluster, Duration::from_secs(10)).await;
        let mut client = connect(&cluster.endpoints()).await.expect("client");
        for i in 0..50 {
            client
                .put(format!("/disk/{i:02}"), format!("v{i}"), None)
                .await
                .expect("put");
        }
    });
    let filler = fill(disk.path());
    let refused = rt.block_on(async {
        let mut client = connect(&cluster.endpoints()).await.expect("client");
        let value = vec![b'x'; 64 * 1024];
        // The journal's current page may still take a few writes; then one must fail.
        for i in 0..200 {
            match tokio::time::timeout(
                Duration::from_secs(8),
                client.put(format!("/full/{i}"), value.clone(), None),
            )
            .await
            {
                Ok(Ok(_)) => continue,
                Ok(Err(e)) => return e.to_string(),
                Err(_) => return "timed out".to_owned(),
            }
        }
        panic!("200 writes of 64 KiB were acknowledged on a full disk");
    });
    println!("full disk: the write was refused with: {refused}");
    assert!(
        refused.contains("No space left on device"),
        "the refusal does not say why: {refused}"
    );
    // The member stops (a supervisor would restart it) and says why.
    let member = &mut cluster.members[0];
    let deadline = Instant::now() + Duration::from_secs(10);
    while member
        .output()
        .iter()
        .all(|l| !l.contains("the store stopped"))
    {
        assert!(
            Instant::now() < deadline,
            "the member did not report the failed write:\n{}",
            member.output().join("\n")
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let log = member.stop().join("\n");
    assert!(
        log.contains("No space left on device") || log.contains("os error 28"),
        "the reason is not named:\n{log}"
    );
    // Space returns: the member restarts with every acknowledged write, and takes new ones.
    std::fs::remove_file(&filler).expect("remove the filler");
    cluster.members[0].start();
    rt.block_on(async {
        wait_leader(&cluster, Duration::from_secs(10)).await;
        let mut client = connect(&cluster.endpoints()).await.expect("client");
        let got = client
            .get("/disk/", Some(GetOptions::new().with_prefix()))
            .await
            .expect("get");
        assert_eq!(got.count(), 50, "acknowledged writes lost on a full disk");
        for (i, kv) in got.kvs().iter().enumerate() {
            assert_eq!(
                kv.value(),
                format!("v{i}").as_bytes(),
                "a value was garbled"
            );
        }
        client
            .put("/disk/after", "ok", None)
            .await
            .expect("writes resume once space returns");
    });
}

/// The byte length of the journal's written part (fjall preallocates the file with zeros).
fn written_len(journal: &Path) -> u64 {
    let data = std::fs::read(journal).expect("the journal");
    data.iter()
        .rposition(|b| *b != 0)
        .map_or(0, |p| p as u64 + 1)
}

#[test]
fn a_torn_last_log_record_is_cut_off_not_served() {
    let mut cluster = Cluster::loopback(1, &[]);
    let rt = runtime();
    let written = 40;
    rt.block_on(async {
        wait_leader(&cluster, Duration::from_secs(10)).await;
        let mut client = connect(&cluster.endpoints()).await.expect("client");
        for i in 0..written {
            client
                .put(format!("/torn/{i:02}"), format!("value-{i}"), None)
                .await
                .expect("put");
        }
    });
    cluster.members[0].kill();
    let journal = cluster.members[0].data_dir.join("raft-log/0.jnl");
    let len = written_len(&journal);
    assert!(len > 16, "nothing in the journal at {}", journal.display());
    // Cut the last record in the middle: a crash while writing it.
    let f = std::fs::OpenOptions::new()
        .write(true)
        .open(&journal)
        .expect("journal");
    f.set_len(len - 5).expect("truncate");
    drop(f);
    cluster.members[0].start();
    rt.block_on(async {
        wait_leader(&cluster, Duration::from_secs(10)).await;
        let mut client = connect(&cluster.endpoints()).await.expect("client");
        let got = client
            .get("/torn/", Some(GetOptions::new().with_prefix()))
            .await
            .expect("get");
        // Whatever survived is a prefix of what was written, each value whole.
        let count = got.count() as usize;
        assert!(
            count + 1 >= written,
            "more than the torn record was lost: {count} of {written}"
        );
        for (i, kv) in got.kvs().iter().enumerate() {
            assert_eq!(kv.key(), format!("/torn/{i:02}").as_bytes());
            assert_eq!(
                kv.value(),
                format!("value-{i}").as_bytes(),
                "a garbled value was served"
            );
        }
        println!("torn record: {count} of {written} writes kept; the member recovered and serves");
        client
            .put("/torn/after", "ok", None)
            .await
            .expect("a write after recovery");
    });
}
