//! The matrix of a campaign: which runs it is made of.
//!
//! A campaign is workloads x nemeses x seeds (from flags), or the same plus explicit tests
//! from a TOML file (see [`CampaignFile`]). [`expand`] numbers every run of the matrix; the
//! number is stable for a given matrix, so `--shard I/N` on N machines runs disjoint parts of
//! the same campaign (entry `id` goes to shard `id % N + 1`) and `riptide campaign merge`
//! joins them back by number.
//!
//! Expansion is seed-major: every combination once with the first seed, then every
//! combination with the second, ... A campaign stopped by its time budget has then covered
//! all combinations evenly rather than exhausted the first one.

use std::path::Path;

use serde::{Deserialize, Serialize};

/// Errors in a campaign's matrix (bad TOML, bad shard, empty matrix).
#[derive(Debug, thiserror::Error)]
pub enum MatrixError {
    #[error("cannot read the campaign file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("campaign file {path}: {message}")]
    Parse { path: String, message: String },
    #[error("bad --shard {0:?}: expected I/N with 1 <= I <= N (e.g. 2/4)")]
    Shard(String),
    #[error("the campaign's matrix is empty (no workload, nemesis or seed)")]
    Empty,
}

/// A campaign TOML file. Every field is optional; flags fill what the file leaves out.
///
/// ```toml
/// name = "nightly"
/// time_limit = "30s"        # of each run
/// budget = "2h"             # no run starts once this is spent
/// seeds = 3                 # seeds first_seed .. first_seed + seeds - 1
/// first_seed = 1
/// workloads = ["kv", "append"]          # crossed with nemeses ...
/// nemeses = ["partition", "kill,pause"] # ... one run per pair and seed
/// args = ["--concurrency", "10"]        # extra `riptide test` flags for every run
///
/// [[test]]                  # explicit tests, added to the cross product
/// name = "register-slow"    # test name in the store (default <workload>-<nemesis>)
/// workload = "register"
/// nemesis = "slow-links"
/// seeds = 5                 # overrides the campaign's seeds for this test
/// args = ["--rate", "50"]
/// ```
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CampaignFile {
    pub name: Option<String>,
    pub time_limit: Option<String>,
    pub budget: Option<String>,
    pub seeds: Option<u64>,
    pub first_seed: Option<u64>,
    #[serde(default)]
    pub workloads: Vec<String>,
    #[serde(default)]
    pub nemeses: Vec<String>,
    /// Extra `riptide test` flags for every run.
    #[serde(default)]
    pub args: Vec<String>,
    /// Explicit tests, each with its own workload, nemesis and extra flags.
    #[serde(default, rename = "test")]
    pub tests: Vec<TestSpec>,
}

/// One explicit test of a campaign file.
#[derive(Debug, Clone, Deserialize, Serialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct TestSpec {
    /// The test's name in the store; `<workload>-<nemesis>` when absent.
    pub name: Option<String>,
    pub workload: String,
    pub nemesis: String,
    /// How many seeds this test runs (default: the campaign's).
    pub seeds: Option<u64>,
    /// Extra `riptide test` flags for this test only.
    #[serde(default)]
    pub args: Vec<String>,
    /// A planted bug of the node to turn on (`riptide-server --unsafe --bug NAME`).
    pub bug: Option<String>,
}

impl CampaignFile {
    /// Reads and parses a campaign TOML file.
    pub fn load(path: &Path) -> Result<CampaignFile, MatrixError> {
        let text = std::fs::read_to_string(path).map_err(|source| MatrixError::Read {
            path: path.display().to_string(),
            source,
        })?;
        CampaignFile::parse(&text, &path.display().to_string())
    }

    /// Parses campaign TOML; `origin` names it in errors.
    pub fn parse(text: &str, origin: &str) -> Result<CampaignFile, MatrixError> {
        toml::from_str(text).map_err(|e| MatrixError::Parse {
            path: origin.to_string(),
            message: e.to_string(),
        })
    }
}

/// One run of the matrix.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MatrixEntry {
    /// Position in the whole matrix (stable across shards).
    pub id: usize,
    pub test_name: String,
    pub workload: String,
    pub nemesis: String,
    pub seed: u64,
    /// The planted bug turned on in every node, if any.
    pub bug: Option<String>,
    /// Extra `riptide test` flags of this run (campaign-wide ones first).
    pub args: Vec<String>,
}

/// The default test name of a combination: `<workload>-<nemesis>` with `,` as `+`.
pub fn default_test_name(workload: &str, nemesis: &str) -> String {
    format!("{workload}-{}", nemesis.replace(',', "+").replace(' ', ""))
}

/// Expands a campaign into its numbered runs: the cross product `workloads x nemeses` and the
/// explicit `tests`, each over its seeds, seed-major.
pub fn expand(
    file: &CampaignFile,
    default_seeds: u64,
    default_first_seed: u64,
) -> Result<Vec<MatrixEntry>, MatrixError> {
    let seeds = file.seeds.unwrap_or(default_seeds);
    let first_seed = file.first_seed.unwrap_or(default_first_seed);
    let mut tests: Vec<TestSpec> = Vec::new();
    for workload in &file.workloads {
        for nemesis in &file.nemeses {
            tests.push(TestSpec {
                name: None,
                workload: workload.clone(),
                nemesis: nemesis.clone(),
                seeds: None,
                args: Vec::new(),
                bug: None,
            });
        }
    }
    tests.extend(file.tests.iter().cloned());
    let max_seeds = tests
        .iter()
        .map(|t| t.seeds.unwrap_or(seeds))
        .max()
        .unwrap_or(0);
    let mut entries = Vec::new();
    for k in 0..max_seeds {
        for test in &tests {
            if k >= test.seeds.unwrap_or(seeds) {
                continue;
            }
            let mut args = file.args.clone();
            args.extend(test.args.iter().cloned());
            entries.push(MatrixEntry {
                id: entries.len(),
                test_name: test
                    .name
                    .clone()
                    .unwrap_or_else(|| default_test_name(&test.workload, &test.nemesis)),
                workload: test.workload.clone(),
                nemesis: test.nemesis.clone(),
                seed: first_seed + k,
                bug: test.bug.clone(),
                args,
            });
        }
    }
    if entries.is_empty() {
        return Err(MatrixError::Empty);
    }
    Ok(entries)
}

/// `--shard I/N`: this machine runs part `index` (1-based) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Shard {
    pub index: u64,
    pub count: u64,
}

impl Shard {
    /// Parses `I/N`.
    pub fn parse(text: &str) -> Result<Shard, MatrixError> {
        let bad = || MatrixError::Shard(text.to_string());
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let index: u64 = i.trim().parse().map_err(|_| bad())?;
        let count: u64 = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// Whether the matrix entry `id` belongs to this shard (round-robin, so every shard gets
    /// a similar mix of tests).
    pub fn owns(&self, id: usize) -> bool {
        id as u64 % self.count == self.index - 1
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> CampaignFile {
        CampaignFile::parse(text, "test.toml").unwrap()
    }

    #[test]
    fn the_cross_product_is_expanded_seed_major() {
        let f = file(
            r#"
            seeds = 2
            first_seed = 10
            workloads = ["kv", "append"]
            nemeses = ["partition", "kill,pause"]
            args = ["--rate", "50"]
            "#,
        );
        let entries = expand(&f, 1, 1).unwrap();
        assert_eq!(entries.len(), 8);
        // Every combination with seed 10 before any with seed 11.
        assert!(entries[..4].iter().all(|e| e.seed == 10));
        assert!(entries[4..].iter().all(|e| e.seed == 11));
        assert_eq!(entries[1].test_name, "kv-kill+pause");
        assert_eq!(entries[1].args, ["--rate", "50"]);
        let ids: Vec<usize> = entries.iter().map(|e| e.id).collect();
        assert_eq!(ids, (0..8).collect::<Vec<_>>());
    }

    #[test]
    fn explicit_tests_have_their_own_seeds_and_flags() {
        let f = file(
            r#"
            seeds = 1
            [[test]]
            name = "slow"
            workload = "register"
            nemesis = "slow-links"
            seeds = 3
            args = ["--keys", "2"]
            bug = "no-dedup"
            "#,
        );
        let entries = expand(&f, 5, 1).unwrap();
        assert_eq!(entries.len(), 3);
        assert_eq!(entries[2].seed, 3);
        assert_eq!(entries[0].test_name, "slow");
        assert_eq!(entries[0].bug.as_deref(), Some("no-dedup"));
        assert_eq!(entries[0].args, ["--keys", "2"]);
    }

    #[test]
    fn unknown_fields_and_empty_matrices_are_refused() {
        let err = CampaignFile::parse("workload = [\"kv\"]", "c.toml").unwrap_err();
        assert!(err.to_string().contains("c.toml"), "{err}");
        assert!(err.to_string().contains("workload"), "{err}");
        assert!(matches!(
            expand(&CampaignFile::default(), 1, 1),
            Err(MatrixError::Empty)
        ));
    }

    #[test]
    fn shards_split_the_matrix_into_disjoint_covering_parts() {
        let shards: Vec<Shard> = (1..=3)
            .map(|i| Shard::parse(&format!("{i}/3")).unwrap())
            .collect();
        for id in 0..20 {
            assert_eq!(shards.iter().filter(|s| s.owns(id)).count(), 1, "id {id}");
        }
        for bad in ["0/3", "4/3", "1/0", "1", "a/b", "2/"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
    }
}
