//! Knossos's semantics for imported Jepsen histories, on histories written by hand in Jepsen's
//! EDN format: `cas-register` (initial value given, a read of `nil` matches anything, a `fail`
//! did not happen), `jepsen.independent` `[key v]` tuples (each key its own partition) and
//! `multi-register` transactions.

use riptide_checker::{
    check_with, parse_edn, BuiltinModel, CheckError, CheckOptions, CheckResult, ExactValue,
    Independent, ModelSpec, Verdict,
};

fn check(text: &str, model: BuiltinModel, initial: Option<&str>) -> CheckResult {
    let spec = ModelSpec {
        model,
        initial: initial.map(|i| ExactValue::from_json_text(i).unwrap()),
        independent: Independent::Detect,
    };
    check_with(&parse_edn(text).unwrap(), &spec, &CheckOptions::default()).unwrap()
}

/// A read of 0 before any write: Knossos's `(cas-register 0)` starts at 0.
const READ_INITIAL: &str = "\
{:process 0, :type :invoke, :f :read, :value nil, :time 1}
{:process 0, :type :ok, :f :read, :value 0, :time 2}
{:process 1, :type :invoke, :f :cas, :value [0 3], :time 3}
{:process 1, :type :ok, :f :cas, :value [0 3], :time 4}
{:process 0, :type :invoke, :f :read, :value nil, :time 5}
{:process 0, :type :ok, :f :read, :value 3, :time 6}
";

#[test]
fn cas_register_starts_at_its_initial_value() {
    let with_zero = check(READ_INITIAL, BuiltinModel::CasRegister, Some("0"));
    assert_eq!(with_zero.verdict, Verdict::Linearizable);
    assert_eq!(with_zero.model, "cas-register");
    // Starting at nil (Knossos's `(cas-register)`), the first read of 0 is impossible.
    let with_nil = check(READ_INITIAL, BuiltinModel::CasRegister, None);
    assert_eq!(with_nil.verdict, Verdict::NotLinearizable);
    // `register` with `--initial 0` agrees; without it, absent is not 0.
    let register = check(READ_INITIAL, BuiltinModel::Register, Some("0"));
    assert_eq!(register.verdict, Verdict::Linearizable);
    let register = check(READ_INITIAL, BuiltinModel::Register, None);
    assert_eq!(register.verdict, Verdict::NotLinearizable);
}

/// After write 1 completed: a read of nil, then a cas from 1 refused with `:fail`.
const NIL_READ_AND_FAILED_CAS: &str = "\
{:process 0, :type :invoke, :f :write, :value 1}
{:process 0, :type :ok, :f :write, :value 1}
{:process 1, :type :invoke, :f :read, :value nil}
{:process 1, :type :ok, :f :read, :value nil}
{:process 2, :type :invoke, :f :cas, :value [1 2]}
{:process 2, :type :fail, :f :cas, :value [1 2], :error :precondition-failed}
";

#[test]
fn cas_register_reads_nil_as_unknown_and_a_fail_as_never_happened() {
    let knossos = check(NIL_READ_AND_FAILED_CAS, BuiltinModel::CasRegister, None);
    assert_eq!(knossos.verdict, Verdict::Linearizable);
    // Riptide's register reads nil as absent and a refused cas as having seen another value.
    let riptide = check(NIL_READ_AND_FAILED_CAS, BuiltinModel::Register, None);
    assert_eq!(riptide.verdict, Verdict::NotLinearizable);
}

#[test]
fn cas_register_still_catches_a_stale_read() {
    let text = "\
{:process 0, :type :invoke, :f :write, :value 1}
{:process 0, :type :ok, :f :write, :value 1}
{:process 0, :type :invoke, :f :write, :value 2}
{:process 0, :type :ok, :f :write, :value 2}
{:process 1, :type :invoke, :f :read, :value nil}
{:process 1, :type :ok, :f :read, :value 1}
";
    let result = check(text, BuiltinModel::CasRegister, None);
    assert_eq!(result.verdict, Verdict::NotLinearizable);
    assert!(result.failures().next().unwrap().counterexample.is_some());
}

/// Two keys written as jepsen.independent tuples: key 1 is fine, key 2 has a stale read.
const INDEPENDENT: &str = "\
{:process 0, :type :invoke, :f :write, :value [1 5]}
{:process 0, :type :ok, :f :write, :value [1 5]}
{:process 1, :type :invoke, :f :write, :value [2 7]}
{:process 1, :type :ok, :f :write, :value [2 7]}
{:process 1, :type :invoke, :f :cas, :value [2 [7 8]]}
{:process 1, :type :ok, :f :cas, :value [2 [7 8]]}
{:process 0, :type :invoke, :f :read, :value [1 nil]}
{:process 0, :type :ok, :f :read, :value [1 5]}
{:process 2, :type :invoke, :f :read, :value [2 nil]}
{:process 2, :type :ok, :f :read, :value [2 7]}
{:process 3, :type :invoke, :f :read, :value [1 nil]}
{:process 3, :type :info, :f :read, :value [1 nil]}
";

#[test]
fn independent_tuples_are_detected_and_each_key_is_a_partition() {
    let result = check(INDEPENDENT, BuiltinModel::CasRegister, None);
    assert_eq!(result.verdict, Verdict::NotLinearizable);
    let verdicts: Vec<(&str, Verdict)> = result
        .partitions
        .iter()
        .map(|p| (p.partition.as_str(), p.verdict))
        .collect();
    assert!(
        verdicts.contains(&("2", Verdict::NotLinearizable)),
        "{verdicts:?}"
    );
    assert!(
        verdicts
            .iter()
            .all(|(key, v)| *key != "1" || *v != Verdict::NotLinearizable),
        "{verdicts:?}"
    );
    // Without the stale read key 2 is fine too.
    let fixed = INDEPENDENT.replace("[2 7]}\n{:process 3", "[2 8]}\n{:process 3");
    assert_eq!(
        check(&fixed, BuiltinModel::CasRegister, None).verdict,
        Verdict::Linearizable
    );
}

#[test]
fn forcing_independent_refuses_a_value_that_is_no_tuple_with_its_line() {
    let spec = ModelSpec {
        model: BuiltinModel::CasRegister,
        initial: None,
        independent: Independent::Always,
    };
    let history = parse_edn(NIL_READ_AND_FAILED_CAS).unwrap();
    let err = check_with(&history, &spec, &CheckOptions::default()).unwrap_err();
    assert_eq!(err.line(), 1, "{err}");
    // Not detected on a plain register history (reads are invoked with nil).
    let plain = check(NIL_READ_AND_FAILED_CAS, BuiltinModel::CasRegister, None);
    assert_eq!(plain.partitions.len(), 1);
}

const TXNS: &str = "\
{:process 0, :type :invoke, :f :txn, :value [[:write :x 1] [:write :y 2]]}
{:process 0, :type :ok, :f :txn, :value [[:write :x 1] [:write :y 2]]}
{:process 1, :type :invoke, :f :txn, :value [[:read :x nil] [:read :y nil] [:read :z nil]]}
{:process 1, :type :ok, :f :txn, :value [[:read :x 1] [:read :y 2] [:read :z 0]]}
{:process 2, :type :invoke, :f :txn, :value [[:read :x nil] [:write :x 3]]}
{:process 2, :type :info, :f :txn, :value [[:read :x nil] [:write :x 3]]}
";

#[test]
fn multi_register_applies_transactions_in_order_from_its_initial_map() {
    let result = check(TXNS, BuiltinModel::MultiRegister, Some(r#"{"z": 0}"#));
    assert_eq!(result.verdict, Verdict::Linearizable);
    // Without z = 0 initially, reading 0 from z is impossible.
    let result = check(TXNS, BuiltinModel::MultiRegister, None);
    assert_eq!(result.verdict, Verdict::NotLinearizable);
    // A transaction that reads a value no one wrote.
    let torn = TXNS.replace("[:read :y 2]", "[:read :y 9]");
    let result = check(&torn, BuiltinModel::MultiRegister, Some(r#"{"z": 0}"#));
    assert_eq!(result.verdict, Verdict::NotLinearizable);
}

#[test]
fn an_initial_value_the_model_cannot_take_is_refused() {
    let spec = ModelSpec {
        model: BuiltinModel::Set,
        initial: Some(ExactValue::from_json_text("1").unwrap()),
        independent: Independent::Detect,
    };
    let history = parse_edn(NIL_READ_AND_FAILED_CAS).unwrap();
    let err = check_with(&history, &spec, &CheckOptions::default()).unwrap_err();
    assert!(matches!(err, CheckError::BadModel { .. }), "{err}");
    let spec = ModelSpec {
        model: BuiltinModel::MultiRegister,
        ..spec
    };
    assert!(spec.validate().is_err());
}
