//! Real out-of-space failures from the kernel: a file-size limit (`RLIMIT_FSIZE`, any user)
//! and, where mounting is allowed, a full tmpfs. Injected faults (short writes, failed fsyncs,
//! failed rollbacks) are unit tests in `src/writer.rs`, through the same storage seam.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use visit_journal::{Journal, Reader};

use crate::support::*;

const CHILD_ENV: &str = "VISIT_JOURNAL_FSIZE_CHILD";

/// Child entry point: a no-op unless `VISIT_JOURNAL_FSIZE_CHILD=<path>` is set. Appends until
/// the file-size limit stops it, printing `acked N` after each `Ok`, then what the failure was
/// and what the probe says.
#[test]
fn child_fills_its_file_size_limit() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let journal = Journal::open(&path).expect("open");
    for seq in 0..100_000 {
        match journal.append(&tagged(0, 0, seq)) {
            Ok(()) => println!("acked {seq}"),
            Err(e) => {
                println!(
                    "failed out_of_space={} poisoned={} {e}",
                    e.is_out_of_space(),
                    journal.is_poisoned()
                );
                let probe = journal.check_writable().map_err(|e| e.is_out_of_space());
                println!("probe {probe:?}");
                return;
            }
        }
    }
    println!("never failed");
}

#[test]
fn a_file_size_limit_rolls_back_and_keeps_every_acknowledged_visit() {
    let t = TempJournal::new();
    // `ulimit -f 8`: 8 blocks of 512 bytes. An ignored SIGXFSZ stays ignored across exec, so
    // the write fails with EFBIG instead of killing the process.
    let exe = std::env::current_exe().unwrap();
    let out = Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -f 8 && trap '' XFSZ && exec "$0" "$@""#)
        .arg(exe)
        .args([
            "faults::child_fills_its_file_size_limit",
            "--exact",
            "--nocapture",
            "--test-threads=1",
            "-q",
        ])
        .env(CHILD_ENV, &t.path)
        .stderr(Stdio::inherit())
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let acked = stdout.lines().filter(|l| l.starts_with("acked ")).count();
    assert!(acked > 50, "{stdout}");
    assert!(
        stdout.contains("failed out_of_space=true poisoned=false"),
        "{stdout}"
    );
    assert!(stdout.contains("probe Err(true)"), "{stdout}");

    let bytes = t.bytes();
    assert!(bytes.len() <= 4096 && bytes.ends_with(b"\n"));
    let seqs: Vec<u32> = t.visits().iter().map(|v| tag(v).2).collect();
    assert_eq!(
        seqs,
        (0..acked as u32).collect::<Vec<_>>(),
        "exactly the acknowledged visits"
    );

    // Without the limit, the next writer carries on.
    let journal = t.open();
    assert_eq!(journal.stats().repaired_bytes, 0);
    journal.append(&visit(1)).unwrap();
    assert_eq!(t.visits().len(), acked + 1);
}

/// A tmpfs mounted for the test, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Option<Tmpfs> {
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then(|| Tmpfs(dir.to_path_buf()))
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn a_full_disk_recovers_without_reopening_once_space_is_freed() {
    let t = TempJournal::new();
    let Some(_fs) = Tmpfs::mount(t.dir.path(), "64k") else {
        // Not root, or mounting is not permitted here: the file-size-limit test above covers
        // the kernel's side without privileges.
        eprintln!("skipping the tmpfs variant: cannot mount tmpfs here");
        return;
    };
    let ballast = t.dir.path().join("ballast");
    fs::write(&ballast, vec![b'x'; 40 * 1024]).unwrap();
    let journal = t.open();
    let mut acked = 0;
    let err = loop {
        match journal.append(&tagged(0, 0, acked)) {
            Ok(()) => acked += 1,
            Err(e) => break e,
        }
        assert!(acked < 10_000, "the disk never filled");
    };
    assert!(err.is_out_of_space(), "{err}");
    assert!(!journal.is_poisoned());
    assert!(journal.check_writable().unwrap_err().is_out_of_space());
    let seqs: Vec<u32> = Reader::open(&t.path)
        .unwrap()
        .map(|v| tag(&v.unwrap()).2)
        .collect();
    assert_eq!(seqs, (0..acked).collect::<Vec<_>>());
    assert!(t.bytes().ends_with(b"\n"));

    fs::remove_file(&ballast).unwrap();
    journal.check_writable().unwrap();
    journal.append(&tagged(0, 0, acked)).unwrap();
    let seqs: Vec<u32> = Reader::open(&t.path)
        .unwrap()
        .map(|v| tag(&v.unwrap()).2)
        .collect();
    assert_eq!(seqs, (0..=acked).collect::<Vec<_>>());
}
