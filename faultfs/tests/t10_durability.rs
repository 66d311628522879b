//! What survives a fault: fsynced data does, unsynced data does not, a torn write leaves a prefix,
//! and corruption flips exactly the bits it reports. Real files through a real FUSE mount.

mod common;

use std::collections::BTreeSet;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::PathBuf;

use common::Mounted;
use riptide_faultfs::{corrupt_file, BitFlip, FaultFsError};

#[test]
fn fsynced_appends_survive_a_power_cut_and_unsynced_ones_are_lost_though_reads_saw_them() {
    let m = Mounted::new();
    let path = m.path("wal.log");
    let mut wal = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .unwrap();
    wal.write_all(&[b'A'; 100]).unwrap();
    wal.sync_data().unwrap();
    wal.write_all(&[b'B'; 50]).unwrap();

    let mut seen = vec![b'A'; 100];
    seen.extend([b'B'; 50]);
    assert_eq!(fs::read(&path).unwrap(), seen, "reads see unsynced writes");
    assert_eq!(fs::metadata(&path).unwrap().len(), 150);
    assert_eq!(
        fs::read(m.backing("wal.log")).unwrap(),
        vec![b'A'; 100],
        "only the fsynced part is durable"
    );
    drop(wal);

    let lost = m.fs.lose_unsynced().unwrap();
    assert_eq!(lost.bytes, 50);
    assert_eq!(lost.files.len(), 1);
    assert_eq!(lost.files[0].path, PathBuf::from("wal.log"));
    assert_eq!(fs::read(&path).unwrap(), vec![b'A'; 100]);
    assert_eq!(fs::metadata(&path).unwrap().len(), 100);
}

#[test]
fn an_unsynced_truncation_is_undone_by_a_power_cut_and_a_synced_one_is_kept() {
    let m = Mounted::new();
    let path = m.path("wal.log");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&path)
        .unwrap();
    (&file).write_all(&[7; 100]).unwrap();
    file.sync_all().unwrap();
    file.set_len(10).unwrap();
    assert_eq!(fs::metadata(&path).unwrap().len(), 10);
    drop(file);
    m.fs.lose_unsynced().unwrap();
    assert_eq!(fs::read(&path).unwrap(), vec![7; 100]);

    let file = OpenOptions::new().write(true).open(&path).unwrap();
    file.set_len(10).unwrap();
    file.sync_all().unwrap();
    drop(file);
    let lost = m.fs.lose_unsynced().unwrap();
    assert!(lost.files.is_empty(), "{lost:?}");
    assert_eq!(fs::read(&path).unwrap(), vec![7; 10]);
}

#[test]
fn write_fsync_rename_survives_but_a_rename_of_unsynced_data_leaves_an_empty_file() {
    let m = Mounted::new();
    // The store's way: write the temp file, fsync it, rename it over, fsync the directory.
    fs::write(m.path("hardstate.json"), b"old").unwrap();
    File::open(m.path("hardstate.json"))
        .unwrap()
        .sync_all()
        .unwrap();
    let mut tmp = File::create(m.path("hardstate.json.tmp")).unwrap();
    tmp.write_all(b"new").unwrap();
    tmp.sync_all().unwrap();
    drop(tmp);
    fs::rename(m.path("hardstate.json.tmp"), m.path("hardstate.json")).unwrap();
    File::open(m.fs.mountpoint()).unwrap().sync_all().unwrap();
    // The classic bug: rename without fsyncing the data first.
    fs::write(m.path("snapshot.bin.tmp"), b"never fsynced").unwrap();
    fs::rename(m.path("snapshot.bin.tmp"), m.path("snapshot.bin")).unwrap();
    assert_eq!(fs::read(m.path("snapshot.bin")).unwrap(), b"never fsynced");

    let lost = m.fs.lose_unsynced().unwrap();
    assert_eq!(lost.files.len(), 1, "{lost:?}");
    assert_eq!(lost.files[0].path, PathBuf::from("snapshot.bin"));
    assert_eq!(fs::read(m.path("hardstate.json")).unwrap(), b"new");
    assert!(!m.path("hardstate.json.tmp").exists());
    assert_eq!(
        fs::read(m.path("snapshot.bin")).unwrap(),
        b"",
        "renamed, data lost"
    );
}

/// Appends a synced header and an unsynced record to `wal.log`, and writes another file after
/// the header but before the record; returns the record.
fn write_torn_candidate(m: &Mounted) -> Vec<u8> {
    let mut wal = OpenOptions::new()
        .create(true)
        .append(true)
        .open(m.path("wal.log"))
        .unwrap();
    wal.write_all(&[b'x'; 64]).unwrap();
    wal.sync_data().unwrap();
    fs::write(m.path("other"), b"unsynced elsewhere").unwrap();
    let record: Vec<u8> = (0..1000u32).map(|i| (i % 251) as u8).collect();
    wal.write_all(&record).unwrap();
    record
}

#[test]
fn a_torn_write_persists_a_seeded_prefix_of_the_last_write_and_loses_the_rest() {
    let mut kept_by_run = Vec::new();
    for _ in 0..2 {
        let m = Mounted::new();
        let record = write_torn_candidate(&m);
        let report = m.fs.tear_last_write(42).unwrap();
        let torn = report.torn.clone().expect("a write to tear");
        assert_eq!(torn.path, PathBuf::from("wal.log"));
        assert_eq!((torn.offset, torn.len), (64, 1000));
        assert!((1..1000).contains(&torn.kept), "{torn:?}");
        let mut expected = vec![b'x'; 64];
        expected.extend(&record[..torn.kept as usize]);
        assert_eq!(fs::read(m.path("wal.log")).unwrap(), expected);
        assert_eq!(
            fs::read(m.backing("wal.log")).unwrap(),
            expected,
            "the prefix is durable"
        );
        assert_eq!(report.lost.files.len(), 1, "{report:?}");
        assert_eq!(report.lost.files[0].path, PathBuf::from("other"));
        assert_eq!(fs::read(m.path("other")).unwrap(), b"");
        kept_by_run.push(torn.kept);
    }
    assert_eq!(
        kept_by_run[0], kept_by_run[1],
        "the same seed tears at the same byte"
    );

    let m = Mounted::new();
    assert_eq!(
        m.fs.tear_last_write(1).unwrap().torn,
        None,
        "nothing to tear"
    );
}

#[test]
fn corrupt_file_flips_exactly_the_bits_it_reports_and_the_seed_chooses_them() {
    let dir = tempfile::tempdir().unwrap();
    let original: Vec<u8> = (0..4096u32).map(|i| (i * 7 % 256) as u8).collect();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    fs::write(&a, &original).unwrap();
    fs::write(&b, &original).unwrap();

    let report = corrupt_file(&a, 7, 5).unwrap();
    assert_eq!(report.len, 4096);
    assert_eq!(report.flips.len(), 5);
    let corrupted = fs::read(&a).unwrap();
    let mut differing = BTreeSet::new();
    for (offset, (x, y)) in original.iter().zip(&corrupted).enumerate() {
        for bit in 0..8 {
            if (x ^ y) & (1 << bit) != 0 {
                differing.insert(BitFlip {
                    offset: offset as u64,
                    bit,
                });
            }
        }
    }
    assert_eq!(differing.into_iter().collect::<Vec<_>>(), report.flips);
    assert_eq!(
        corrupt_file(&b, 7, 5).unwrap().flips,
        report.flips,
        "same seed, same bits"
    );

    fs::write(&b, b"x").unwrap();
    let err = corrupt_file(&b, 1, 9).unwrap_err();
    assert!(
        matches!(
            err,
            FaultFsError::TooSmallToCorrupt {
                len: 1,
                bits: 9,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn the_mount_lists_makes_removes_and_locks_like_a_local_directory() {
    let m = Mounted::new();
    fs::create_dir(m.path("node1")).unwrap();
    fs::write(m.path("node1/a"), b"1").unwrap();
    fs::write(m.path("node1/b"), b"22").unwrap();
    let mut names: Vec<_> = fs::read_dir(m.path("node1"))
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    assert_eq!(names, ["a", "b"]);
    assert!(
        m.backing("node1/a").is_file(),
        "a create is durable at once"
    );
    fs::remove_file(m.path("node1/a")).unwrap();
    assert!(!m.path("node1/a").exists());
    assert_eq!(fs::metadata(m.path("node1/b")).unwrap().len(), 2);

    let lock = |path: &PathBuf| {
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path)
            .unwrap();
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusiveNonblock)
    };
    let held = lock(&m.path("node1/LOCK")).expect("first flock");
    let second = lock(&m.path("node1/LOCK"));
    assert!(
        matches!(second, Err((_, nix::errno::Errno::EWOULDBLOCK))),
        "a second flock must fail"
    );
    drop(held);

    let st = nix::sys::statvfs::statvfs(m.fs.mountpoint()).unwrap();
    assert!(st.blocks() > 0);
    fs::remove_file(m.path("node1/b")).unwrap();
    fs::remove_file(m.path("node1/LOCK")).unwrap();
    fs::remove_dir(m.path("node1")).unwrap();
    assert!(!m.backing("node1").exists());
}
