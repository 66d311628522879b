//! Shrinking a history that is not linearizable to a small piece that still is not: what a
//! person reads first, instead of thousands of operations.
//!
//! [`ddmin`] is Zeller and Hildebrandt's delta debugging (minimizing variant) over any list,
//! with a deadline; [`shrink`] runs it over the operations of a history's failing partition,
//! checking each candidate with the checker itself. A candidate is a sub-sequence of the
//! operations, each kept whole (invoke and completion, with their real-time positions), so the
//! real-time order of what is kept is the order it had in the full history. Only a candidate
//! the checker proves not linearizable is ever kept (a check stopped by the budget counts as
//! passing), so the result is not linearizable by construction; when the budget allows ddmin
//! to finish it is 1-minimal: removing any one operation makes it linearizable.

use std::time::{Duration, Instant};

use crate::check::{
    check_with, CheckError, CheckOptions, CheckResult, Independent, ModelSpec, Verdict,
};
use crate::history::{History, Operation};
use crate::models::BuiltinModel;

/// What [`ddmin`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ddmin<T> {
    /// The smallest failing list found: a sub-sequence of the input, in its order.
    pub items: Vec<T>,
    /// True when ddmin finished: removing any single item makes the test pass.
    pub one_minimal: bool,
    /// How many times the test ran.
    pub tests: usize,
}

/// Delta debugging: the smallest sub-sequence of `items` for which `fails` holds, assuming it
/// holds for `items` (not tested again). Tries each of `n` chunks, then each complement,
/// doubling `n` when neither fails, until `n` reaches the length (then the result is
/// 1-minimal) or `deadline` passes (then it is the smallest found so far).
pub fn ddmin<T: Clone>(
    items: Vec<T>,
    deadline: Option<Instant>,
    mut fails: impl FnMut(&[T]) -> bool,
) -> Ddmin<T> {
    let mut current = items;
    let mut n = 2usize;
    let mut tests = 0;
    let out_of_time = || deadline.is_some_and(|d| Instant::now() >= d);
    while current.len() >= 2 {
        if out_of_time() {
            return Ddmin {
                items: current,
                one_minimal: false,
                tests,
            };
        }
        let len = current.len();
        // Chunk i is [bounds[i], bounds[i + 1]): n nearly equal, contiguous pieces.
        let bounds: Vec<usize> = (0..=n).map(|i| i * len / n).collect();
        let chunk = |i: usize| bounds[i]..bounds[i + 1];
        let mut reduced = None;
        for i in 0..n {
            if out_of_time() {
                break;
            }
            let candidate = current[chunk(i)].to_vec();
            tests += 1;
            if fails(&candidate) {
                reduced = Some((candidate, 2));
                break;
            }
        }
        // With two chunks each complement is the other chunk, already tried.
        if reduced.is_none() && n > 2 {
            for i in 0..n {
                if out_of_time() {
                    break;
                }
                let range = chunk(i);
                let candidate: Vec<T> = current[..range.start]
                    .iter()
                    .chain(&current[range.end..])
                    .cloned()
                    .collect();
                tests += 1;
                if fails(&candidate) {
                    reduced = Some((candidate, (n - 1).max(2)));
                    break;
                }
            }
        }
        match reduced {
            Some((candidate, next_n)) => {
                current = candidate;
                n = next_n.min(current.len().max(2));
            }
            None if out_of_time() => {
                return Ddmin {
                    items: current,
                    one_minimal: false,
                    tests,
                }
            }
            None if n >= len => break,
            None => n = (2 * n).min(len),
        }
    }
    Ddmin {
        items: current,
        one_minimal: true,
        tests,
    }
}

/// What [`shrink`] found.
#[derive(Debug, Clone)]
pub struct Shrunk {
    /// The partition (key) shrunk: the first one not linearizable.
    pub partition: String,
    /// Operations of the failing partition before shrinking.
    pub partition_operations: usize,
    /// The operations kept: ids into the full history's [`History::operations`], ascending
    /// (so in invoke order).
    pub operations: Vec<usize>,
    /// Whether shrinking finished within the budget: then removing any one kept operation
    /// makes the rest linearizable.
    pub one_minimal: bool,
    /// How many candidate histories were checked.
    pub checks: usize,
    /// The check of the kept operations alone (not linearizable), with ids into
    /// [`Shrunk::history`]'s operations.
    pub result: CheckResult,
    /// The kept operations as a history of their own.
    pub history: History,
}

/// Why a history cannot be shrunk.
#[derive(Debug, thiserror::Error)]
pub enum ShrinkError {
    /// Only a history that is not linearizable can be shrunk.
    #[error("the history is {verdict}, so there is nothing to shrink")]
    NotFailing {
        /// What the checker said of the whole history.
        verdict: Verdict,
    },
    /// The checker refused the history.
    #[error(transparent)]
    Check(#[from] CheckError),
}

/// The operations `ids` (ascending ids into `history.operations`) as a history of their own:
/// each keeps its invoke and completion with their real-time positions and lines; ids are
/// renumbered from 0. Nemesis events are left out (the checker ignores them).
pub fn sub_history(history: &History, ids: &[usize]) -> History {
    History {
        operations: ids
            .iter()
            .enumerate()
            .map(|(id, &i)| Operation {
                id,
                ..history.operations[i].clone()
            })
            .collect(),
        nemesis: Vec::new(),
    }
}

/// For each of `ops`, the positions (in `ops`) of the operations whose writes it observed: a
/// read's or cas's value is traced to the write, cas or add that wrote it, or, for a value
/// built by appends (a string, or a list), to the write and appends it is made of. A value
/// nobody in `ops` wrote has no sources. Failed operations wrote nothing.
fn sources(ops: &[&Operation], independent: bool) -> Vec<Vec<usize>> {
    use crate::history::Completion;
    use crate::value::ExactValue;
    let value = |v: &'_ ExactValue| -> ExactValue {
        match (independent, v.as_array()) {
            (true, Some([_, inner])) => inner.clone(),
            _ => v.clone(),
        }
    };
    let atom = |v: &ExactValue| -> Option<String> {
        match v {
            ExactValue::Null | ExactValue::Array(_) | ExactValue::Object(_) => None,
            ExactValue::String(s) => Some(s.clone()),
            other => Some(other.text()),
        }
    };
    let mut producers: std::collections::HashMap<String, Vec<usize>> = Default::default();
    let mut longest = 0;
    for (pos, op) in ops.iter().enumerate() {
        if matches!(op.completion, Completion::Fail { .. }) {
            continue;
        }
        let input = value(&op.input);
        let written = match op.f.as_str() {
            "write" | "put" | "append" | "add" => Some(input),
            "cas" => input.as_array().and_then(|a| a.get(1)).cloned(),
            _ => None,
        };
        if let Some(piece) = written.as_ref().and_then(atom) {
            longest = longest.max(piece.len());
            producers.entry(piece).or_default().push(pos);
        }
    }
    // The operations a value is made of: one that wrote it whole, else pieces that spell it.
    fn resolve(
        v: &ExactValue,
        producers: &std::collections::HashMap<String, Vec<usize>>,
        longest: usize,
        atom: &dyn Fn(&ExactValue) -> Option<String>,
        out: &mut Vec<usize>,
    ) {
        if let Some(items) = v.as_array() {
            for item in items {
                resolve(item, producers, longest, atom, out);
            }
            return;
        }
        let Some(text) = atom(v) else { return };
        if let Some(found) = producers.get(&text) {
            out.extend(found);
            return;
        }
        // Spell the text with written pieces, left to right (values are unique per write).
        let n = text.len();
        let mut from: Vec<Option<usize>> = vec![None; n + 1];
        let mut reached = vec![false; n + 1];
        reached[0] = true;
        for i in 0..n {
            if !reached[i] || !text.is_char_boundary(i) {
                continue;
            }
            for j in (i + 1)..=n.min(i + longest) {
                if !reached[j] && text.is_char_boundary(j) && producers.contains_key(&text[i..j]) {
                    reached[j] = true;
                    from[j] = Some(i);
                }
            }
        }
        if !reached[n] {
            return;
        }
        let mut j = n;
        while let Some(i) = from[j] {
            out.extend(&producers[&text[i..j]]);
            j = i;
        }
    }
    ops.iter()
        .enumerate()
        .map(|(pos, op)| {
            let mut out = Vec::new();
            if op.completion == Completion::Ok {
                let observed = match op.f.as_str() {
                    "read" | "get" | "read-all" => Some(value(&op.output)),
                    "cas" => value(&op.input).as_array().and_then(|a| a.first()).cloned(),
                    _ => None,
                };
                if let Some(v) = observed {
                    resolve(&v, &producers, longest, &atom, &mut out);
                }
            }
            out.retain(|&p| p != pos);
            out.sort_unstable();
            out.dedup();
            out
        })
        .collect()
}

/// `chosen` (ascending positions) with, transitively, the sources of each: ascending.
fn closure(chosen: &[usize], sources: &[Vec<usize>]) -> Vec<usize> {
    let mut keep = vec![false; sources.len()];
    let mut stack: Vec<usize> = chosen.to_vec();
    while let Some(p) = stack.pop() {
        if !std::mem::replace(&mut keep[p], true) {
            stack.extend(&sources[p]);
        }
    }
    (0..keep.len()).filter(|&p| keep[p]).collect()
}

/// Shrinks a history that is not linearizable under `spec` to a small sub-history that still
/// is not (within `budget`): first to the operations of its failing partition (`partition`
/// when the caller already knows it, e.g. from a stored result; else the first the checker
/// finds), then to those invoked before the failing operation completed, then by [`ddmin`].
///
/// Every candidate is closed under "the writes whose values it read": a kept read keeps the
/// write (or the write and appends) that produced what it saw, so a piece never fails merely
/// because the write of a value was left out. When the budget allows ddmin to finish, the
/// result is 1-minimal among such closed pieces: without any one of its operations (and
/// whatever only that one needed) the rest is linearizable.
pub fn shrink(
    history: &History,
    spec: &ModelSpec,
    partition: Option<&str>,
    budget: Duration,
) -> Result<Shrunk, ShrinkError> {
    let started = Instant::now();
    let deadline = started + budget;
    // Decide once whether values are `[key v]` tuples: a small piece of an independent history
    // may no longer look like one.
    let mut spec = spec.clone();
    if spec.independent == Independent::Detect {
        let register_like = matches!(
            spec.model,
            BuiltinModel::Register | BuiltinModel::Kv | BuiltinModel::CasRegister
        );
        spec.independent = if register_like && crate::independent::looks_independent(history) {
            Independent::Always
        } else {
            Independent::Never
        };
    }
    let independent = spec.independent == Independent::Always;
    let partition_key = |op: &Operation| -> String {
        if independent {
            match op.input.as_array() {
                Some([key, _]) => crate::models::key_name(key).to_string(),
                _ => String::new(),
            }
        } else {
            op.key.clone().unwrap_or_default()
        }
    };
    let mut checks = 0usize;
    let mut check = |ids: &[usize]| -> Result<CheckResult, CheckError> {
        checks += 1;
        let options = CheckOptions {
            time_limit: Some(deadline.saturating_duration_since(Instant::now())),
            memory_budget: Some(1 << 30),
            all_partitions: false,
        };
        check_with(&sub_history(history, ids), &spec, &options)
    };
    let all: Vec<usize> = (0..history.operations.len()).collect();
    let of_partition = |name: &str| -> Vec<usize> {
        all.iter()
            .copied()
            .filter(|&i| partition_key(&history.operations[i]) == name)
            .collect()
    };
    // The failing partition's operations, with a failing check of them. A partition named by
    // the caller that does not fail alone (a multi-register history is one partition whatever
    // the keys) falls back to the whole history.
    let mut start = None;
    if let Some(name) = partition {
        let ids = of_partition(name);
        let result = check(&ids)?;
        if result.verdict == Verdict::NotLinearizable {
            start = Some((name.to_string(), ids, result));
        }
    }
    let (name, base, mut result) = match start {
        Some(found) => found,
        None => {
            let result = check(&all)?;
            let Some(failing) = result.failures().next() else {
                return Err(ShrinkError::NotFailing {
                    verdict: result.verdict,
                });
            };
            let name = failing.partition.clone();
            let ids = of_partition(&name);
            let alone = check(&ids)?;
            if alone.verdict == Verdict::NotLinearizable {
                (name, ids, alone)
            } else {
                (name, all.clone(), result)
            }
        }
    };
    // From here on candidates are positions in `base`.
    let base_ops: Vec<&Operation> = base.iter().map(|&i| &history.operations[i]).collect();
    let sources = sources(&base_ops, independent);
    let ids_of =
        |positions: &[usize]| -> Vec<usize> { positions.iter().map(|&p| base[p]).collect() };
    let mut current: Vec<usize> = (0..base.len()).collect();
    // Operations invoked after the failing one completed rarely matter: try without them.
    let blocked_seq = result
        .failures()
        .next()
        .and_then(|p| p.counterexample.as_ref())
        .and_then(|cx| cx.blocked_by.as_ref())
        .and_then(|op| base_ops.get(op.id))
        .and_then(|op| op.complete_seq);
    if let Some(cut) = blocked_seq {
        let before: Vec<usize> = current
            .iter()
            .copied()
            .filter(|&p| base_ops[p].invoke_seq <= cut)
            .collect();
        let before = closure(&before, &sources);
        if before.len() < current.len() {
            let cut_result = check(&ids_of(&before))?;
            if cut_result.verdict == Verdict::NotLinearizable {
                current = before;
                result = cut_result;
            }
        }
    }
    let mut error = None;
    // Closed candidates already checked: ddmin often meets the same one twice.
    let mut seen: std::collections::HashMap<Vec<usize>, bool> = Default::default();
    let mut last_failing: Option<(Vec<usize>, CheckResult)> = None;
    let (kept, one_minimal) = {
        let mut fails = |chosen: &[usize]| -> bool {
            if error.is_some() {
                return false;
            }
            let closed = closure(chosen, &sources);
            if let Some(&fails) = seen.get(&closed) {
                return fails;
            }
            let fails = match check(&ids_of(&closed)) {
                Ok(r) if r.verdict == Verdict::NotLinearizable => {
                    last_failing = Some((closed.clone(), r));
                    true
                }
                Ok(_) => false,
                Err(e) => {
                    error = Some(e);
                    false
                }
            };
            seen.insert(closed, fails);
            fails
        };
        let found = ddmin(current.clone(), Some(deadline), &mut fails);
        let mut kept = closure(&found.items, &sources);
        // ddmin never tried dropping what the closure added back: a last pass drops any single
        // operation the piece can do without, until none can go.
        let mut one_minimal = found.one_minimal;
        while one_minimal {
            let mut reduced = false;
            for &p in &kept {
                if Instant::now() >= deadline {
                    one_minimal = false;
                    break;
                }
                let without: Vec<usize> = kept.iter().copied().filter(|&q| q != p).collect();
                let candidate = closure(&without, &sources);
                if candidate.len() < kept.len() && fails(&candidate) {
                    kept = candidate;
                    reduced = true;
                    break;
                }
            }
            if !reduced {
                break;
            }
        }
        (kept, one_minimal)
    };
    if let Some(e) = error {
        return Err(e.into());
    }
    match last_failing {
        Some((closed, r)) if closed == kept => result = r,
        _ if kept == current => {}
        _ => result = check(&ids_of(&kept))?,
    }
    let operations = ids_of(&kept);
    Ok(Shrunk {
        partition: name,
        partition_operations: base.len(),
        history: sub_history(history, &operations),
        operations,
        one_minimal,
        checks,
        result,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::history::parse_jsonl;

    #[test]
    fn ddmin_finds_the_one_item_that_fails() {
        let items: Vec<u32> = (0..100).collect();
        let found = ddmin(items, None, |c| c.contains(&37));
        assert_eq!(found.items, vec![37]);
        assert!(found.one_minimal);
        // Logarithmic, not a pass per item.
        assert!(found.tests < 30, "{} tests", found.tests);
    }

    #[test]
    fn ddmin_finds_a_scattered_pair_in_order() {
        let items: Vec<u32> = (0..64).collect();
        let found = ddmin(items, None, |c| c.contains(&3) && c.contains(&60));
        assert_eq!(found.items, vec![3, 60]);
        assert!(found.one_minimal);
    }

    #[test]
    fn ddmin_result_is_one_minimal_when_several_items_interact() {
        // Fails when at least 3 multiples of 10 are present: any three will do.
        let items: Vec<u32> = (0..50).collect();
        let fails = |c: &[u32]| c.iter().filter(|x| *x % 10 == 0).count() >= 3;
        let found = ddmin(items, None, fails);
        assert_eq!(found.items.len(), 3);
        assert!(found.items.windows(2).all(|w| w[0] < w[1]), "order kept");
        for i in 0..found.items.len() {
            let mut less = found.items.clone();
            less.remove(i);
            assert!(!fails(&less));
        }
    }

    #[test]
    fn ddmin_stops_at_the_deadline_with_a_failing_list() {
        let items: Vec<u32> = (0..1000).collect();
        let found = ddmin(items, Some(Instant::now()), |c| c.contains(&5));
        assert!(!found.one_minimal);
        assert!(found.items.contains(&5));
        assert_eq!(found.tests, 0);
    }

    /// A register: p0 writes a then b, p1 reads a after b was acknowledged, with unrelated
    /// writes of other values around it on other processes and keys.
    fn stale_read_history() -> History {
        let mut lines = Vec::new();
        let mut index = 0;
        let mut event = |p: u64, kind: &str, f: &str, key: &str, value: &str| {
            lines.push(format!(
                r#"{{"index":{index},"time":{index},"process":{p},"type":"{kind}","f":"{f}","key":"{key}","value":{value}}}"#
            ));
            index += 1;
        };
        for i in 0..20 {
            event(5, "invoke", "write", "other", &format!("\"o{i}\""));
            event(5, "ok", "write", "other", &format!("\"o{i}\""));
        }
        event(0, "invoke", "write", "k", "\"a\"");
        event(0, "ok", "write", "k", "\"a\"");
        for i in 0..10 {
            event(2, "invoke", "read", "k", "null");
            event(2, "ok", "read", "k", "\"a\"");
            event(3, "invoke", "write", "other", &format!("\"x{i}\""));
            event(3, "ok", "write", "other", &format!("\"x{i}\""));
        }
        event(0, "invoke", "write", "k", "\"b\"");
        event(0, "ok", "write", "k", "\"b\"");
        for _ in 0..10 {
            event(2, "invoke", "read", "k", "null");
            event(2, "ok", "read", "k", "\"b\"");
        }
        event(1, "invoke", "read", "k", "null");
        event(1, "ok", "read", "k", "\"a\"");
        for i in 0..10 {
            event(4, "invoke", "write", "k", &format!("\"c{i}\""));
            event(4, "ok", "write", "k", &format!("\"c{i}\""));
        }
        parse_jsonl(lines.join("\n").as_bytes()).unwrap()
    }

    #[test]
    fn shrink_keeps_only_the_write_the_overwrite_and_the_stale_read() {
        let history = stale_read_history();
        let spec = ModelSpec::new(BuiltinModel::Kv);
        let shrunk = shrink(&history, &spec, None, Duration::from_secs(30)).unwrap();
        assert_eq!(shrunk.partition, "k");
        assert!(shrunk.one_minimal);
        assert_eq!(shrunk.result.verdict, Verdict::NotLinearizable);
        let kept: Vec<String> = shrunk
            .operations
            .iter()
            .map(|&i| {
                let op = &history.operations[i];
                format!("p{} {} {} {}", op.process, op.f, op.input, op.output)
            })
            .collect();
        assert_eq!(
            kept,
            [
                r#"p0 write "a" "a""#,
                r#"p0 write "b" "b""#,
                r#"p1 read null "a""#
            ],
            "{kept:?}"
        );
        // The piece is a history of its own that checks not linearizable again.
        let again = check_with(&shrunk.history, &spec, &CheckOptions::default()).unwrap();
        assert_eq!(again.verdict, Verdict::NotLinearizable);
        assert_eq!(shrunk.partition_operations, 33);
    }

    #[test]
    fn a_known_partition_is_used_and_a_linearizable_history_is_refused() {
        let history = stale_read_history();
        let spec = ModelSpec::new(BuiltinModel::Kv);
        let shrunk = shrink(&history, &spec, Some("k"), Duration::from_secs(30)).unwrap();
        assert_eq!(shrunk.operations.len(), 3);
        let ok = sub_history(&history, &(0..20).collect::<Vec<_>>());
        let err = shrink(&ok, &spec, None, Duration::from_secs(30)).unwrap_err();
        assert!(matches!(
            err,
            ShrinkError::NotFailing {
                verdict: Verdict::Linearizable
            }
        ));
    }

    #[test]
    fn a_read_of_appended_pieces_keeps_the_write_and_the_appends_it_is_made_of() {
        // k is written p1, appended +p2 and +p3; a later read sees p1+p2 (the last append
        // lost); other reads see the full value.
        let lines = [
            r#"{"index":0,"time":0,"process":0,"type":"invoke","f":"write","key":"k","value":"p1"}"#,
            r#"{"index":1,"time":1,"process":0,"type":"ok","f":"write","key":"k","value":"p1"}"#,
            r#"{"index":2,"time":2,"process":0,"type":"invoke","f":"append","key":"k","value":"+p2"}"#,
            r#"{"index":3,"time":3,"process":0,"type":"ok","f":"append","key":"k","value":"+p2"}"#,
            r#"{"index":4,"time":4,"process":1,"type":"invoke","f":"read","key":"k","value":null}"#,
            r#"{"index":5,"time":5,"process":1,"type":"ok","f":"read","key":"k","value":"p1+p2"}"#,
            r#"{"index":6,"time":6,"process":0,"type":"invoke","f":"append","key":"k","value":"+p3"}"#,
            r#"{"index":7,"time":7,"process":0,"type":"ok","f":"append","key":"k","value":"+p3"}"#,
            r#"{"index":8,"time":8,"process":1,"type":"invoke","f":"read","key":"k","value":null}"#,
            r#"{"index":9,"time":9,"process":1,"type":"ok","f":"read","key":"k","value":"p1+p2+p3"}"#,
            r#"{"index":10,"time":10,"process":2,"type":"invoke","f":"read","key":"k","value":null}"#,
            r#"{"index":11,"time":11,"process":2,"type":"ok","f":"read","key":"k","value":"p1+p2"}"#,
        ];
        let history = parse_jsonl(lines.join("\n").as_bytes()).unwrap();
        let shrunk = shrink(
            &history,
            &ModelSpec::new(BuiltinModel::Kv),
            None,
            Duration::from_secs(30),
        )
        .unwrap();
        // The last read, what it is made of (write p1, append +p2), and the append it missed.
        assert_eq!(
            shrunk.operations,
            vec![0, 1, 3, 5],
            "{:?}",
            shrunk.operations
        );
        assert!(shrunk.one_minimal);
    }
}
