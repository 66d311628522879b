//! Values compare exactly as written: numbers beyond 64 bits, EDN's `N` and `M` literals and
//! out-of-range doubles are never rounded, merged or read as `null` (each case once in JSON Lines
//! and once in EDN), and inputs that cannot be read faithfully are refused with their line.

use riptide_checker::{
    check_builtin, parse_edn, parse_jsonl, BuiltinModel, CheckError, CheckOptions, Verdict,
};

/// A write of `written` then a read returning `read`, in JSON Lines.
fn jsonl(written: &str, read: &str) -> String {
    format!(
        "{{\"index\":0,\"time\":0,\"process\":0,\"type\":\"invoke\",\"f\":\"write\",\"value\":{written}}}\n\
         {{\"index\":1,\"time\":1,\"process\":0,\"type\":\"ok\",\"f\":\"write\",\"value\":{written}}}\n\
         {{\"index\":2,\"time\":2,\"process\":1,\"type\":\"invoke\",\"f\":\"read\",\"value\":null}}\n\
         {{\"index\":3,\"time\":3,\"process\":1,\"type\":\"ok\",\"f\":\"read\",\"value\":{read}}}\n"
    )
}

/// The same in EDN.
fn edn(written: &str, read: &str) -> String {
    format!(
        "{{:type :invoke, :f :write, :value {written}, :process 0, :time 0}}\n\
         {{:type :ok, :f :write, :value {written}, :process 0, :time 1}}\n\
         {{:type :invoke, :f :read, :value nil, :process 1, :time 2}}\n\
         {{:type :ok, :f :read, :value {read}, :process 1, :time 3}}\n"
    )
}

fn verdict_jsonl(written: &str, read: &str) -> Verdict {
    let history = parse_jsonl(jsonl(written, read).as_bytes()).unwrap();
    check_builtin(&history, BuiltinModel::Register, &CheckOptions::default())
        .unwrap()
        .verdict
}

fn verdict_edn(written: &str, read: &str) -> Verdict {
    let history = parse_edn(&edn(written, read)).unwrap();
    check_builtin(&history, BuiltinModel::Register, &CheckOptions::default())
        .unwrap()
        .verdict
}

#[test]
fn a_number_beyond_u64_is_not_its_neighbour() {
    let (w, r) = ("18446744073709551616", "18446744073709551617");
    assert_eq!(verdict_jsonl(w, r), Verdict::NotLinearizable);
    assert_eq!(verdict_edn(w, r), Verdict::NotLinearizable);
    assert_eq!(verdict_jsonl(w, w), Verdict::Linearizable);
}

#[test]
fn a_number_beyond_i64_is_not_its_neighbour() {
    let (w, r) = ("9223372036854775808", "9223372036854775809");
    assert_eq!(verdict_jsonl(w, r), Verdict::NotLinearizable);
    assert_eq!(verdict_edn(w, r), Verdict::NotLinearizable);
    assert_eq!(verdict_edn(w, w), Verdict::Linearizable);
}

#[test]
fn edn_bigints_compare_exactly() {
    let (w, r) = ("12345678901234567890123N", "12345678901234567890124N");
    assert_eq!(verdict_edn(w, r), Verdict::NotLinearizable);
    assert_eq!(verdict_edn(w, w), Verdict::Linearizable);
}

#[test]
fn an_edn_decimal_is_not_the_integer() {
    assert_eq!(verdict_edn("1M", "1"), Verdict::NotLinearizable);
    assert_eq!(verdict_edn("1M", "1M"), Verdict::Linearizable);
}

#[test]
fn an_out_of_range_double_is_a_value_not_a_delete() {
    // Were 1e400 read as null, the write would act as a delete and a read of null would pass.
    assert_eq!(verdict_jsonl("1e400", "null"), Verdict::NotLinearizable);
    assert_eq!(verdict_edn("1e400", "nil"), Verdict::NotLinearizable);
    assert_eq!(verdict_jsonl("1e400", "1e400"), Verdict::Linearizable);
    assert_eq!(verdict_jsonl("1e400", "1e401"), Verdict::NotLinearizable);
}

#[test]
fn a_read_all_listing_an_element_twice_is_refused_with_its_line() {
    let text = "{:type :invoke, :f :add, :value 1, :process 0}\n\
                {:type :ok, :f :add, :value 1, :process 0}\n\
                {:type :invoke, :f :read-all, :value nil, :process 1}\n\
                {:type :ok, :f :read-all, :value [1 1], :process 1}\n";
    let history = parse_edn(text).unwrap();
    let err = check_builtin(&history, BuiltinModel::Set, &CheckOptions::default()).unwrap_err();
    let CheckError::BadOperation { line, message } = &err else {
        panic!("expected a bad operation, got {err}");
    };
    assert_eq!(*line, 4, "the line of the read-all's result: {err}");
    assert!(message.contains("twice"), "{err}");
}
