//! The search for a linearization of one partition: Wing & Gong's algorithm with Lowe's cache,
//! as Porcupine does it, with cache keys that stay small on long histories.
//!
//! ```text
//!  p1  |--w(1)--|            |---r:2---|
//!  p2      |----w(2)----|        |--r:1--|
//!  p3         |--cas(1,3)?·······················  (unknown outcome: open to the end)
//!        calls and returns in real-time order:
//!        c1 c2 c3 r1 r2 c1' c2' r1' r2'
//! ```
//!
//! Operations are kept in a doubly linked list of call and return entries in real-time order.
//! The search repeatedly takes a call entry that comes before the first return entry (an
//! operation that may take effect now), applies it to the model and lifts it and its return out
//! of the list; when the first entry is a return, the operation it belongs to cannot be
//! linearized any more and the search backtracks. Lowe's cache holds every configuration (set of
//! linearized operations, model state) already explored, so a configuration reached by another
//! order is never explored twice.
//!
//! Long histories: operations are numbered by invoke, and every completed operation below the
//! *watermark* (the first completed operation not yet linearized) is linearized, so a cache key
//! is the state, the watermark, the bits from the watermark to the highest linearized operation,
//! and the unknown-outcome operations below the watermark still open. An unknown-outcome
//! operation is dropped (never tried, left out of keys) once no completed operation that is
//! still to be linearized can observe it ([`Model::observation_horizons`]): "never took effect"
//! is then as good as any choice. With the harness's unique written values this keeps keys a few
//! words long and the search near-linear on long histories.

use crate::fxhash::FxHashMap;
use crate::keyset::KeySet;
use crate::model::{Model, PreparedOp};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Instant;

/// Limits shared by the partitions of one check.
#[derive(Debug)]
pub(crate) struct Budget {
    /// When to give up (verdict `unknown`).
    pub deadline: Option<Instant>,
    /// Bytes the search structures of all partitions together may hold.
    pub memory_limit: Option<usize>,
    /// Bytes currently held, summed over partitions being searched.
    pub memory_used: AtomicUsize,
    /// Set when a partition is found not linearizable and the others need not finish.
    pub stop: AtomicBool,
}

/// What the search found for one partition.
#[derive(Debug)]
pub(crate) enum Outcome {
    /// A linearization: operation ids (into the history) in order. Unknown-outcome operations
    /// that never took effect are absent.
    Linearizable { order: Vec<usize> },
    /// No linearization exists.
    NotLinearizable(Failure),
    /// The budget ran out first.
    Unknown { reason: String },
    /// The step limit of this attempt ran out (try again with a larger one).
    StepLimit,
}

/// The deepest point the search reached in a partition with no linearization.
#[derive(Debug)]
pub(crate) struct Failure {
    /// The longest linearizable prefix found: operation ids in order.
    pub prefix: Vec<usize>,
    /// The model states after it (several for a nondeterministic model).
    pub states: Vec<String>,
    /// The operation whose completion came before it could be linearized.
    pub blocked_by: Option<usize>,
    /// The operations that could have been linearized next, with whether the model accepts
    /// each in that state (an accepted one only led to configurations already found dead).
    pub candidates: Vec<(usize, bool)>,
}

/// Why a partition has no verdict when another one was found not linearizable first.
pub(crate) const STOPPED: &str = "not finished: another partition is not linearizable";

const NONE: u32 = u32::MAX;
/// A dense memo slot not computed yet.
const UNKNOWN_STEP: u32 = u32::MAX - 1;

/// An entry of the linked list: the call or the return of an operation.
#[derive(Debug, Clone, Copy)]
struct Entry {
    /// Index of the operation in the partition.
    op: u32,
    is_call: bool,
    /// For a call, its return entry (`NONE` for an unknown outcome).
    ret: u32,
}

/// One linearized operation on the search stack, with what to restore when it is undone.
#[derive(Debug, Clone, Copy)]
struct Frame {
    entry: u32,
    prev_state: u32,
    prev_watermark: u32,
    prev_high: u32,
}

/// A depth-first search stopped at its step limit, to be resumed exactly where it was: every
/// configuration in the cache was either explored to the end or is on `stack`, so going on
/// from here is the same search as one that never stopped.
struct Paused {
    bits: Vec<u64>,
    next: Vec<u32>,
    prev: Vec<u32>,
    remaining: usize,
    state: u32,
    watermark: u32,
    high: u32,
    stack: Vec<Frame>,
    max_depth: usize,
    e: u32,
}

/// The first completed operation at or after `from` that is not linearized yet (`ops.len()`
/// when there is none).
fn first_completed_from<I, O>(ops: &[PreparedOp<I, O>], bits: &[u64], from: u32) -> u32 {
    let mut w = from as usize;
    while w < ops.len() && (ops[w].complete.is_none() || bits[w / 64] & (1 << (w % 64)) != 0) {
        w += 1;
    }
    w as u32
}

/// How one run of the depth-first search ended.
enum Dfs {
    /// Every completed operation linearized: the order (partition indices).
    Found(Vec<u32>),
    /// No linearization; the deepest dead end had this many operations linearized.
    Exhausted { max_depth: usize },
    /// Stopped at the first dead end of the requested depth.
    DeadEnd(Failure),
    /// The budget ran out.
    OverBudget(String),
    /// The step limit ran out.
    StepLimit,
}

/// Size of a cache generation (see `Searcher::old_cache`).
const GENERATION_BYTES: usize = 256 << 20;

/// Partitions of at most this many operations use the whole bitset as cache key (cheaper to
/// build than the watermark form, which pays off on long partitions).
const FULL_KEY_LIMIT: usize = 256;

/// The search of one partition, which can be run in attempts: one that reaches its step limit
/// ([`Outcome::StepLimit`]) is resumed by the next [`PartitionSearch::run`] where it stopped,
/// with its cache, so a short first attempt costs nothing when a longer one follows.
pub(crate) struct PartitionSearch<'a, M: Model> {
    searcher: Searcher<'a, M>,
}

impl<'a, M: Model> PartitionSearch<'a, M> {
    /// Prepares the search of a partition whose `ops` are sorted by invoke.
    pub(crate) fn start(
        model: &'a M,
        ops: Vec<PreparedOp<M::Input, M::Output>>,
        budget: &'a Budget,
    ) -> Self {
        PartitionSearch::new(model, ops, budget, FULL_KEY_LIMIT)
    }

    fn new(
        model: &'a M,
        ops: Vec<PreparedOp<M::Input, M::Output>>,
        budget: &'a Budget,
        full_key_limit: usize,
    ) -> Self {
        let horizons = model.observation_horizons(&ops);
        // Unknown-outcome operations no completed operation can observe are as good as never
        // run.
        let mut kept = Vec::with_capacity(ops.len());
        let mut kept_horizon = Vec::with_capacity(ops.len());
        for (op, h) in ops.into_iter().zip(horizons) {
            if op.output.is_none() {
                match h {
                    Some(h) if h > op.invoke => {}
                    _ => continue,
                }
            }
            kept_horizon.push(h.unwrap_or(0));
            kept.push(op);
        }
        let full_keys = kept.len() <= full_key_limit;
        let mut searcher = Searcher::new(model, kept, kept_horizon, budget);
        searcher.full_keys = full_keys;
        PartitionSearch { searcher }
    }

    /// Runs (or resumes) the search, for at most `step_limit` steps in all.
    pub(crate) fn run(&mut self, step_limit: Option<u64>) -> Outcome {
        let searcher = &mut self.searcher;
        searcher.step_limit = step_limit.unwrap_or(u64::MAX);
        let outcome = match searcher.dfs(None) {
            Dfs::Found(order) => Outcome::Linearizable {
                order: order
                    .into_iter()
                    .map(|i| searcher.ops[i as usize].op_id)
                    .collect(),
            },
            Dfs::OverBudget(reason) => Outcome::Unknown { reason },
            Dfs::StepLimit => return Outcome::StepLimit,
            Dfs::DeadEnd(failure) => Outcome::NotLinearizable(failure),
            Dfs::Exhausted { max_depth } => {
                // Replay the same (deterministic) search to stop at the deepest dead end and
                // describe it; recording every new deepest point on the way would cost O(n²).
                searcher.reset();
                searcher.step_limit = u64::MAX;
                match searcher.dfs(Some(max_depth)) {
                    Dfs::DeadEnd(failure) => Outcome::NotLinearizable(failure),
                    Dfs::OverBudget(reason) => Outcome::Unknown { reason },
                    _ => Outcome::NotLinearizable(Failure {
                        prefix: Vec::new(),
                        states: Vec::new(),
                        blocked_by: None,
                        candidates: Vec::new(),
                    }),
                }
            }
        };
        tracing::debug!(
            operations = searcher.ops.len(),
            steps = searcher.steps,
            cached_configurations = searcher.cache.len(),
            states = searcher.interned.len(),
            cache_bytes = searcher.cache.bytes(),
            "partition searched"
        );
        outcome
    }
}

impl<M: Model> Drop for Searcher<'_, M> {
    fn drop(&mut self) {
        self.budget
            .memory_used
            .fetch_sub(self.reported_memory, Ordering::Relaxed);
    }
}

struct Searcher<'a, M: Model> {
    model: &'a M,
    ops: Vec<PreparedOp<M::Input, M::Output>>,
    /// Per operation: the latest completion position of an observer (unknown outcomes only).
    horizon: Vec<u64>,
    /// The search stopped at its step limit, if it did.
    paused: Option<Box<Paused>>,
    budget: &'a Budget,
    entries: Vec<Entry>,
    /// Unknown-outcome operations (partition indices, ascending).
    unknown: Vec<u32>,
    /// Interned sets of model states, by id.
    interned: Vec<Vec<M::State>>,
    /// Hash of a set of states -> the last id interned with that hash; earlier ones with the
    /// same hash are chained in `same_hash`. The sets themselves are stored once, in
    /// `interned`, and each is hashed once.
    intern_ids: FxHashMap<u64, u32>,
    /// Per id: the previous id with the same hash (`NONE` at the end of a chain).
    same_hash: Vec<u32>,
    /// (state id, operation) -> next state id or `NONE`.
    memo: FxHashMap<(u32, u32), u32>,
    /// Lookups of `memo` that hit, and steps computed beyond the dense memo.
    memo_hits: u64,
    memo_misses: u64,
    /// Lowe's cache of explored configurations (see [`Searcher::key`]): the young generation.
    cache: KeySet,
    /// The previous generation. When the young one outgrows [`GENERATION_BYTES`] the old one is
    /// dropped: the cache only prunes, so forgetting configurations (those of long ago, which a
    /// depth-first search rarely comes back to) costs time at worst, never correctness, and
    /// bounds the memory of long partitions.
    old_cache: KeySet,
    /// Dense memo of `step` when states × operations stay small: `[state * n + op]`, with
    /// `UNKNOWN_STEP` for not yet computed.
    dense_memo: Vec<u32>,
    /// Whether the partition is small enough for full-bitset cache keys.
    full_keys: bool,
    /// Bytes this partition has added to the budget's `memory_used`.
    reported_memory: usize,
    steps: u64,
    /// Steps this attempt may take.
    step_limit: u64,
}

impl<'a, M: Model> Searcher<'a, M> {
    fn new(
        model: &'a M,
        ops: Vec<PreparedOp<M::Input, M::Output>>,
        horizon: Vec<u64>,
        budget: &'a Budget,
    ) -> Self {
        let mut timed: Vec<(u64, u32, bool)> = Vec::with_capacity(2 * ops.len());
        for (i, op) in ops.iter().enumerate() {
            timed.push((op.invoke, i as u32, true));
            if let Some(c) = op.complete {
                timed.push((c, i as u32, false));
            }
        }
        timed.sort_unstable_by_key(|t| t.0);
        let mut entries = Vec::with_capacity(timed.len());
        let mut call_entry = vec![NONE; ops.len()];
        for &(_, op, is_call) in &timed {
            let idx = entries.len() as u32;
            if is_call {
                call_entry[op as usize] = idx;
            } else {
                entries[call_entry[op as usize] as usize] = Entry {
                    ret: idx,
                    ..entries[call_entry[op as usize] as usize]
                };
            }
            entries.push(Entry {
                op,
                is_call,
                ret: NONE,
            });
        }
        let unknown = (0..ops.len() as u32)
            .filter(|&i| ops[i as usize].complete.is_none())
            .collect();
        Searcher {
            model,
            ops,
            horizon,
            paused: None,
            budget,
            entries,
            unknown,
            interned: Vec::new(),
            intern_ids: FxHashMap::default(),
            same_hash: Vec::new(),
            memo: FxHashMap::default(),
            memo_hits: 0,
            memo_misses: 0,
            cache: KeySet::default(),
            old_cache: KeySet::default(),
            dense_memo: Vec::new(),
            full_keys: true,
            reported_memory: 0,
            steps: 0,
            step_limit: u64::MAX,
        }
    }

    fn reset(&mut self) {
        self.paused = None;
        self.cache.clear();
        self.old_cache.clear();
        self.steps = 0;
    }

    fn intern(&mut self, states: Vec<M::State>) -> u32 {
        let hash = {
            use std::hash::{Hash, Hasher};
            let mut hasher = crate::fxhash::FxHasher::default();
            states.hash(&mut hasher);
            hasher.finish()
        };
        let mut candidate = self.intern_ids.get(&hash).copied().unwrap_or(NONE);
        while candidate != NONE {
            if self.interned[candidate as usize] == states {
                return candidate;
            }
            candidate = self.same_hash[candidate as usize];
        }
        let id = self.interned.len() as u32;
        let n = self.ops.len();
        // Dense memo rows for the first states, up to 256 K entries (1 MiB).
        if self.dense_memo.len() == id as usize * n && (id as usize + 1) * n <= 1 << 18 {
            self.dense_memo.resize((id as usize + 1) * n, UNKNOWN_STEP);
        }
        self.interned.push(states);
        self.same_hash
            .push(self.intern_ids.insert(hash, id).unwrap_or(NONE));
        id
    }

    /// The state reached by applying operation `op` in `state` (`NONE`: impossible).
    fn step(&mut self, state: u32, op: u32) -> u32 {
        let n = self.ops.len();
        let dense_index = state as usize * n + op as usize;
        if let Some(&next) = self.dense_memo.get(dense_index) {
            if next != UNKNOWN_STEP {
                return next;
            }
        } else if let Some(&next) = self.memo.get(&(state, op)) {
            self.memo_hits += 1;
            return next;
        }
        let prepared = &self.ops[op as usize];
        let states = &self.interned[state as usize];
        let mut next: Vec<M::State> = if let [only] = &states[..] {
            // A deterministic model's usual case: the model's own vector, without copying.
            self.model
                .step(only, &prepared.input, prepared.output.as_ref())
        } else {
            Vec::new()
        };
        if next.len() > 1 {
            let mut unique: Vec<M::State> = Vec::with_capacity(next.len());
            for n in next {
                if !unique.contains(&n) {
                    unique.push(n);
                }
            }
            next = unique;
        }
        if states.len() > 1 {
            for s in states {
                for n in self
                    .model
                    .step(s, &prepared.input, prepared.output.as_ref())
                {
                    if !next.contains(&n) {
                        next.push(n);
                    }
                }
            }
        }
        let id = if next.is_empty() {
            NONE
        } else {
            self.intern(next)
        };
        if dense_index < self.dense_memo.len() {
            self.dense_memo[dense_index] = id;
        } else {
            // A model whose states rarely repeat (an append's growing strings) would fill the
            // memo with pairs never asked again: past a few thousand, keep adding only while
            // at least one lookup in eight hits.
            self.memo_misses += 1;
            if self.memo_misses < 4096 || self.memo_hits * 8 >= self.memo_misses {
                self.memo.insert((state, op), id);
            }
        }
        id
    }

    /// Whether an unknown-outcome operation can no longer be observed by any completed
    /// operation still to be linearized (all of which are at or above the watermark).
    fn is_dead(&self, op: u32, watermark: u32) -> bool {
        self.ops
            .get(watermark as usize)
            .is_none_or(|w| w.invoke > self.horizon[op as usize])
    }

    /// The cache key of a configuration: state, watermark, the linearized bits from the
    /// watermark's word to the highest linearized operation, then the live unknown-outcome
    /// operations below the watermark that are still open.
    fn key(&self, bits: &[u64], state: u32, watermark: u32, high: u32, key: &mut Vec<u64>) {
        key.clear();
        if self.full_keys {
            key.push(u64::from(state));
            key.extend_from_slice(bits);
            return;
        }
        key.push(u64::from(state) << 32 | u64::from(watermark));
        let first = watermark as usize / 64;
        if high != NONE && high >= watermark {
            let last = high as usize / 64;
            key.push(bits[first] & (!0u64 << (watermark % 64)));
            key.extend_from_slice(&bits[first + 1..=last]);
        }
        key.push(u64::MAX);
        for &u in self.unknown.iter().take_while(|&&u| u < watermark) {
            if bits[u as usize / 64] & (1 << (u % 64)) == 0 && !self.is_dead(u, watermark) {
                key.push(u64::from(u));
            }
        }
    }

    /// Adds a configuration to the cache; false when it was already explored.
    fn remember(&mut self, key: &[u64]) -> bool {
        if self.old_cache.contains(key) || !self.cache.insert(key) {
            return false;
        }
        if self.cache.bytes() > GENERATION_BYTES {
            self.old_cache = std::mem::take(&mut self.cache);
        }
        true
    }

    /// Checks the budget every few thousand steps.
    fn over_budget(&mut self) -> Option<String> {
        self.steps += 1;
        if !self.steps.is_multiple_of(4096) {
            return None;
        }
        if self.budget.stop.load(Ordering::Relaxed) {
            return Some(STOPPED.to_string());
        }
        if let Some(deadline) = self.budget.deadline {
            if Instant::now() >= deadline {
                return Some("deadline reached".to_string());
            }
        }
        if let Some(limit) = self.budget.memory_limit {
            let held = self.cache.bytes()
                + self.old_cache.bytes()
                + self.dense_memo.len() * 4
                + self.memo.len() * 24
                + self.interned.len() * (std::mem::size_of::<M::State>() * 2 + 64);
            let used = if held >= self.reported_memory {
                self.budget
                    .memory_used
                    .fetch_add(held - self.reported_memory, Ordering::Relaxed)
                    + (held - self.reported_memory)
            } else {
                self.budget
                    .memory_used
                    .fetch_sub(self.reported_memory - held, Ordering::Relaxed)
                    - (self.reported_memory - held)
            };
            self.reported_memory = held;
            if used > limit {
                return Some(format!("memory budget of {} MiB exhausted", limit >> 20));
            }
        }
        None
    }

    /// Depth-first search for a linearization. With `stop_at`, stops at the first dead end
    /// with that many operations linearized and describes it.
    fn dfs(&mut self, stop_at: Option<usize>) -> Dfs {
        let n = self.ops.len();
        let words = n.div_ceil(64).max(1);
        let mut bits = vec![0u64; words];
        let head = self.entries.len() as u32;
        // Circular doubly linked list over the entries with sentinel `head`.
        let mut next: Vec<u32> = (1..=head).chain([0]).collect();
        let mut prev: Vec<u32> = std::iter::once(head).chain(0..head).collect();
        if head == 0 {
            next = vec![0];
            prev = vec![0];
        }
        let lift = |next: &mut [u32], prev: &mut [u32], e: u32| {
            let (p, nx) = (prev[e as usize], next[e as usize]);
            next[p as usize] = nx;
            prev[nx as usize] = p;
        };
        let unlift = |next: &mut [u32], prev: &mut [u32], e: u32| {
            let (p, nx) = (prev[e as usize], next[e as usize]);
            next[p as usize] = e;
            prev[nx as usize] = e;
        };
        let mut remaining = self.ops.iter().filter(|o| o.complete.is_some()).count();
        let init = vec![self.model.init()];
        let mut state = self.intern(init);
        let mut watermark = first_completed_from(&self.ops, &bits, 0);
        let mut high = NONE;
        let mut stack: Vec<Frame> = Vec::new();
        let mut max_depth = 0;
        let mut key = Vec::new();
        let mut e = next[head as usize];
        // Resume where the previous attempt stopped at its step limit.
        if let Some(paused) = self.paused.take() {
            Paused {
                bits,
                next,
                prev,
                remaining,
                state,
                watermark,
                high,
                stack,
                max_depth,
                e,
            } = *paused;
        }
        loop {
            if remaining == 0 {
                return Dfs::Found(
                    stack
                        .iter()
                        .map(|f| self.entries[f.entry as usize].op)
                        .collect(),
                );
            }
            let mut advanced = false;
            while e != head && self.entries[e as usize].is_call {
                if let Some(reason) = self.over_budget() {
                    return Dfs::OverBudget(reason);
                }
                if self.steps > self.step_limit {
                    self.paused = Some(Box::new(Paused {
                        bits,
                        next,
                        prev,
                        remaining,
                        state,
                        watermark,
                        high,
                        stack,
                        max_depth,
                        e,
                    }));
                    return Dfs::StepLimit;
                }
                let op = self.entries[e as usize].op;
                let unknown = self.ops[op as usize].complete.is_none();
                if unknown && self.is_dead(op, watermark) {
                    e = next[e as usize];
                    continue;
                }
                let new_state = self.step(state, op);
                if new_state != NONE {
                    let (w, b) = (op as usize / 64, 1u64 << (op % 64));
                    bits[w] |= b;
                    let new_watermark = if op == watermark {
                        first_completed_from(&self.ops, &bits, watermark)
                    } else {
                        watermark
                    };
                    let new_high = if high == NONE { op } else { high.max(op) };
                    self.key(&bits, new_state, new_watermark, new_high, &mut key);
                    if self.remember(&key) {
                        stack.push(Frame {
                            entry: e,
                            prev_state: state,
                            prev_watermark: watermark,
                            prev_high: high,
                        });
                        state = new_state;
                        watermark = new_watermark;
                        high = new_high;
                        lift(&mut next, &mut prev, e);
                        let ret = self.entries[e as usize].ret;
                        if ret != NONE {
                            lift(&mut next, &mut prev, ret);
                            remaining -= 1;
                        }
                        e = next[head as usize];
                        advanced = true;
                        break;
                    }
                    bits[w] &= !b;
                }
                e = next[e as usize];
            }
            if advanced {
                continue;
            }
            // Dead end: the first entry left is a return whose operation cannot go next.
            max_depth = max_depth.max(stack.len());
            if stop_at == Some(stack.len()) {
                return Dfs::DeadEnd(self.failure(&stack, state, &next, head, e, watermark));
            }
            let Some(frame) = stack.pop() else { break };
            let ret = self.entries[frame.entry as usize].ret;
            if ret != NONE {
                unlift(&mut next, &mut prev, ret);
                remaining += 1;
            }
            unlift(&mut next, &mut prev, frame.entry);
            let op = self.entries[frame.entry as usize].op as usize;
            bits[op / 64] &= !(1 << (op % 64));
            state = frame.prev_state;
            watermark = frame.prev_watermark;
            high = frame.prev_high;
            e = next[frame.entry as usize];
        }
        Dfs::Exhausted { max_depth }
    }

    /// Describes the dead end the search is at, for the counterexample.
    fn failure(
        &mut self,
        stack: &[Frame],
        state: u32,
        next: &[u32],
        head: u32,
        stopped_at: u32,
        watermark: u32,
    ) -> Failure {
        let prefix = stack
            .iter()
            .map(|f| self.ops[self.entries[f.entry as usize].op as usize].op_id)
            .collect();
        let states = self.interned[state as usize]
            .iter()
            .map(|s| self.model.describe_state(s))
            .collect();
        let blocked_by = (stopped_at != head && !self.entries[stopped_at as usize].is_call)
            .then(|| self.ops[self.entries[stopped_at as usize].op as usize].op_id);
        let mut candidates = Vec::new();
        let mut e = next[head as usize];
        while e != head && self.entries[e as usize].is_call && candidates.len() < 16 {
            let op = self.entries[e as usize].op;
            if !(self.ops[op as usize].complete.is_none() && self.is_dead(op, watermark)) {
                let accepted = self.step(state, op) != NONE;
                candidates.push((self.ops[op as usize].op_id, accepted));
            }
            e = next[e as usize];
        }
        if let Some(b) = blocked_by {
            if !candidates.iter().any(|(id, _)| *id == b) {
                let op = self.entries[stopped_at as usize].op;
                let accepted = self.step(state, op) != NONE;
                candidates.push((b, accepted));
            }
        }
        Failure {
            prefix,
            states,
            blocked_by,
            candidates,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::models::{KvInput, KvModel, KvOutput};
    use rand::{Rng, SeedableRng};
    use std::sync::Arc;

    fn budget() -> Budget {
        Budget {
            deadline: None,
            memory_limit: None,
            memory_used: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
        }
    }

    /// Random single-register histories with overlapping operations, unknown outcomes and
    /// reused values; not necessarily linearizable.
    fn random_ops(seed: u64) -> Vec<PreparedOp<KvInput, KvOutput>> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let n = rng.gen_range(1..40);
        let mut ops = Vec::new();
        let mut t = 0u64;
        let value = |rng: &mut rand_chacha::ChaCha8Rng| {
            Some(Arc::<str>::from(rng.gen_range(0..4).to_string()))
        };
        for op_id in 0..n {
            t += rng.gen_range(1..4);
            let input = match rng.gen_range(0..4) {
                0 | 1 => KvInput::Read,
                2 => KvInput::Write(value(&mut rng)),
                _ => KvInput::Cas {
                    from: value(&mut rng),
                    to: value(&mut rng),
                },
            };
            let unknown = rng.gen_bool(0.15);
            let output = if unknown {
                None
            } else {
                Some(match input {
                    KvInput::Read => KvOutput::Value(if rng.gen_bool(0.2) {
                        None
                    } else {
                        value(&mut rng)
                    }),
                    KvInput::Cas { .. } if rng.gen_bool(0.5) => KvOutput::CasFailed,
                    _ => KvOutput::Done,
                })
            };
            let complete = (!unknown).then(|| t + rng.gen_range(1..8));
            ops.push(PreparedOp {
                op_id,
                input,
                output,
                invoke: t * 16,
                complete: complete.map(|c| c * 16 + 1),
            });
        }
        ops
    }

    fn verdict(outcome: &Outcome) -> Option<bool> {
        match outcome {
            Outcome::Linearizable { .. } => Some(true),
            Outcome::NotLinearizable(_) => Some(false),
            _ => None,
        }
    }

    #[test]
    fn watermark_keys_give_the_same_verdicts_as_full_bitset_keys() {
        let model = KvModel::register();
        let (mut yes, mut no) = (0, 0);
        for seed in 0..3000 {
            let ops = random_ops(seed);
            let full = PartitionSearch::new(&model, ops.clone(), &budget(), usize::MAX).run(None);
            let compressed = PartitionSearch::new(&model, ops, &budget(), 0).run(None);
            assert_eq!(verdict(&full), verdict(&compressed), "seed {seed}");
            match verdict(&full) {
                Some(true) => yes += 1,
                _ => no += 1,
            }
        }
        assert!(yes > 100 && no > 100, "linearizable {yes}, not {no}");
    }
}
