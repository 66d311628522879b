//! Each node's data directory on a fault-injecting filesystem ([`riptide_faultfs`]), when the
//! run's schedule holds disk faults: the node writes through a FUSE mount that keeps unsynced
//! data in memory, and the nemesis's `disk` faults act on it through [`DiskControl`].
//!
//! The durable data (what a power cut leaves) lives in the node's folder of the run,
//! `nodes/<id>/`, and is kept when the run fails; the node sees it through the mount at
//! `nodes/<id>.mnt/`. Mounts are owned like processes: [`NodeDisks::unmount_all`] at the end
//! of the run, on drop (a panic), and each mount's guard process when the harness is killed.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rand::{Rng, SeedableRng};
use riptide_faultfs::{FaultFs, FaultFsError};
use riptide_nemesis::{DiskControl, DiskEffect, DiskError};

/// Bits flipped by one `corrupt` fault: one is what a bad sector or a cosmic ray does, and
/// every checksum must catch it.
const CORRUPT_BITS: u32 = 1;

/// The mounts of every node, by index.
pub struct NodeDisks {
    mounts: Mutex<Vec<Option<FaultFs>>>,
    /// The last corruption of each node not yet undone: the file and its flipped bits.
    corrupted: Mutex<Vec<Option<riptide_faultfs::CorruptReport>>>,
    /// Each node's durable data (the mount's backing directory), by index.
    backing: Vec<PathBuf>,
}

/// Whether `schedule` holds disk faults, so the nodes' data dirs must be on the layer (and the
/// run is refused where FUSE is unusable).
pub fn schedule_needs_disks(schedule: &riptide_nemesis::Schedule) -> bool {
    schedule
        .kinds()
        .iter()
        .any(|k| k.family() == riptide_nemesis::FaultFamily::Disk)
}

/// Where a node's mount goes, beside its durable data.
pub fn mountpoint_of(backing: &Path) -> PathBuf {
    let mut name = backing.file_name().unwrap_or_default().to_os_string();
    name.push(".mnt");
    backing.with_file_name(name)
}

impl NodeDisks {
    /// Mounts `backing[i]` at [`mountpoint_of`] it, for every node; returns the mount points.
    pub fn mount(backing: Vec<PathBuf>) -> Result<(NodeDisks, Vec<PathBuf>), FaultFsError> {
        let mut mounts = Vec::with_capacity(backing.len());
        let mut points = Vec::with_capacity(backing.len());
        for dir in &backing {
            let point = mountpoint_of(dir);
            std::fs::create_dir_all(&point).map_err(|source| FaultFsError::Io {
                op: "create",
                path: point.clone(),
                source,
            })?;
            // Mounts made so far unmount on the way out if this one fails (drop).
            mounts.push(Some(FaultFs::mount(dir, &point)?));
            points.push(point);
        }
        Ok((
            NodeDisks {
                mounts: Mutex::new(mounts),
                corrupted: Mutex::new(vec![None; backing.len()]),
                backing,
            },
            points,
        ))
    }

    /// Unmounts every node's filesystem (persisting what is pending, as a clean shutdown
    /// does) and removes the empty mount points. Call once the nodes are stopped.
    pub fn unmount_all(&self) -> Vec<String> {
        let mut problems = Vec::new();
        let mounts: Vec<FaultFs> = match self.mounts.lock() {
            Ok(mut m) => m.iter_mut().filter_map(Option::take).collect(),
            Err(poisoned) => poisoned
                .into_inner()
                .iter_mut()
                .filter_map(Option::take)
                .collect(),
        };
        for fs in mounts {
            let point = fs.mountpoint().to_path_buf();
            if let Err(e) = fs.unmount() {
                problems.push(format!("cannot unmount {}: {e}", point.display()));
            } else {
                let _ = std::fs::remove_dir(&point);
            }
        }
        problems
    }

    fn with_mount<T>(
        &self,
        node: usize,
        act: impl FnOnce(&FaultFs) -> Result<T, FaultFsError>,
    ) -> Result<T, DiskError> {
        let mounts = self
            .mounts
            .lock()
            .map_err(|_| DiskError::from("the disk layer's lock was poisoned"))?;
        let fs = mounts
            .get(node)
            .and_then(Option::as_ref)
            .ok_or_else(|| DiskError::from(format!("n{} has no mounted disk", node + 1)))?;
        act(fs).map_err(DiskError::from)
    }
}

impl Drop for NodeDisks {
    fn drop(&mut self) {
        for problem in self.unmount_all() {
            tracing::warn!("{problem}");
        }
    }
}

impl DiskControl for NodeDisks {
    fn lose_unsynced(&self, node: usize) -> Result<DiskEffect, DiskError> {
        let report = self.with_mount(node, FaultFs::lose_unsynced)?;
        let files: Vec<PathBuf> = report.files.iter().map(|f| f.path.clone()).collect();
        let detail = if files.is_empty() {
            "no unsynced writes to drop".to_string()
        } else {
            format!(
                "dropped {} unsynced bytes of {}",
                report.bytes,
                names(&files)
            )
        };
        Ok(DiskEffect {
            detail,
            files,
            bytes: report.bytes,
        })
    }

    fn tear_last_write(&self, node: usize, seed: u64) -> Result<DiskEffect, DiskError> {
        let report = self.with_mount(node, |fs| fs.tear_last_write(seed))?;
        let mut files: Vec<PathBuf> = report.lost.files.iter().map(|f| f.path.clone()).collect();
        let detail = match &report.torn {
            Some(t) => {
                if !files.contains(&t.path) {
                    files.push(t.path.clone());
                }
                format!(
                    "tore the last write to {} at offset {} ({} of {} bytes kept), dropped {} other unsynced bytes",
                    t.path.display(),
                    t.offset,
                    t.kept,
                    t.len,
                    report.lost.bytes
                )
            }
            None => "no unsynced write to tear".to_string(),
        };
        Ok(DiskEffect {
            files,
            bytes: report.lost.bytes
                + report
                    .torn
                    .as_ref()
                    .map_or(0, |t| t.len.saturating_sub(t.kept)),
            detail,
        })
    }

    fn corrupt(&self, node: usize, seed: u64) -> Result<DiskEffect, DiskError> {
        let dir = self
            .backing
            .get(node)
            .ok_or_else(|| DiskError::from(format!("n{} has no data directory", node + 1)))?;
        let file = pick_data_file(dir, seed)?;
        let report = riptide_faultfs::corrupt_file(&file, seed, CORRUPT_BITS)?;
        if let Ok(mut c) = self.corrupted.lock() {
            if let Some(slot) = c.get_mut(node) {
                *slot = Some(report.clone());
            }
        }
        let offsets: Vec<String> = report
            .flips
            .iter()
            .map(|f| format!("byte {} bit {}", f.offset, f.bit))
            .collect();
        let rel = file.strip_prefix(dir).unwrap_or(&file).to_path_buf();
        Ok(DiskEffect {
            detail: format!("flipped {} in {}", offsets.join(", "), rel.display()),
            files: vec![rel],
            bytes: u64::from(CORRUPT_BITS),
        })
    }
}

impl NodeDisks {
    /// Undoes node `node`'s last corruption (flips the same bits back and fsyncs), as an
    /// operator restores a disk from its mirror once the node has refused the damaged copy.
    /// Returns what was restored, `None` when nothing was corrupted.
    pub fn restore(&self, node: usize) -> Result<Option<String>, String> {
        let report = match self.corrupted.lock() {
            Ok(mut c) => c.get_mut(node).and_then(Option::take),
            Err(_) => return Err("the disk layer's lock was poisoned".into()),
        };
        let Some(report) = report else {
            return Ok(None);
        };
        let io = |e: std::io::Error| format!("restoring {}: {e}", report.path.display());
        let mut bytes = std::fs::read(&report.path).map_err(io)?;
        for flip in &report.flips {
            let byte = usize::try_from(flip.offset)
                .ok()
                .and_then(|i| bytes.get_mut(i))
                .ok_or_else(|| {
                    format!("{} shrank since it was corrupted", report.path.display())
                })?;
            *byte ^= 1 << flip.bit;
        }
        let file = std::fs::OpenOptions::new()
            .write(true)
            .open(&report.path)
            .map_err(io)?;
        use std::io::Write as _;
        (&file).write_all(&bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
        Ok(Some(format!(
            "restored {} flipped bit(s) of {}",
            report.flips.len(),
            report.path.display()
        )))
    }
}

/// A non-empty regular file of the node's data directory, chosen from `seed` (the lock file,
/// which holds no data, is never chosen).
fn pick_data_file(dir: &Path, seed: u64) -> Result<PathBuf, DiskError> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.metadata().is_ok_and(|m| m.len() > 0)
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().contains("lock"))
        })
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("{} holds no data file to corrupt", dir.display()).into());
    }
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    Ok(files.swap_remove(rng.gen_range(0..files.len())))
}

fn names(files: &[PathBuf]) -> String {
    if files.is_empty() {
        return "no file".into();
    }
    files
        .iter()
        .map(|f| f.display().to_string())
        .collect::<Vec<_>>()
        .join(", ")
}
