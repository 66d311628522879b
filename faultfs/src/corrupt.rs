//! Bit flips in a file at rest: what a bad sector or a firmware bug leaves in a stopped node's
//! WAL, hard state or snapshot. Works on any path (inside a mount or not); the node must be
//! stopped, or it may overwrite the damage.

use std::collections::BTreeSet;
use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::FaultFsError;

/// One flipped bit: byte `offset` of the file, bit `bit` (0 is the least significant).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct BitFlip {
    pub offset: u64,
    pub bit: u8,
}

/// What [`corrupt_file`] did, for the history: which file and which bits.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CorruptReport {
    pub path: PathBuf,
    /// The file's size (unchanged by the corruption).
    pub len: u64,
    /// The bits flipped, by offset, all distinct.
    pub flips: Vec<BitFlip>,
}

/// Flips `bits` distinct bits of `path`, chosen by `seed`, in place, and fsyncs the file.
pub fn corrupt_file(path: &Path, seed: u64, bits: u32) -> Result<CorruptReport, FaultFsError> {
    let io = |op: &'static str| {
        move |source| FaultFsError::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map_err(io("open"))?;
    let len = file.metadata().map_err(io("stat"))?.len();
    if u64::from(bits) > len.saturating_mul(8) {
        return Err(FaultFsError::TooSmallToCorrupt {
            path: path.to_path_buf(),
            len,
            bits,
        });
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut chosen = BTreeSet::new();
    while chosen.len() < bits as usize {
        let at = rng.gen_range(0..len * 8);
        chosen.insert(BitFlip {
            offset: at / 8,
            bit: (at % 8) as u8,
        });
    }
    for flip in &chosen {
        let mut byte = [0u8];
        file.read_exact_at(&mut byte, flip.offset)
            .map_err(io("read"))?;
        byte[0] ^= 1 << flip.bit;
        file.write_all_at(&byte, flip.offset).map_err(io("write"))?;
    }
    file.sync_all().map_err(io("fsync"))?;
    Ok(CorruptReport {
        path: path.to_path_buf(),
        len,
        flips: chosen.into_iter().collect(),
    })
}
