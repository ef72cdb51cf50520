//! Evaluation of a parsed filter against one `serde_json::Value`.
//!
//! A selector resolves to zero or more candidate values: object fields are looked up by exact
//! name, then case-insensitively; a field step that meets an array fans out over its elements;
//! a numeric step indexes an array. A positive test holds if it holds for any candidate, and a
//! negated test is the negation of that, so a missing field fails `==` and passes `!=`.

use regex::Regex;
use serde_json::{Map, Number, Value};

use crate::ast::{Expr, Match, Test};

/// Whether `item` satisfies `expr`.
pub(crate) fn eval(expr: &Expr, item: &Value) -> bool {
    match expr {
        Expr::Or(items) => items.iter().any(|e| eval(e, item)),
        Expr::And(items) => items.iter().all(|e| eval(e, item)),
        Expr::Not(inner) => !eval(inner, item),
        Expr::Match(m) => eval_match(m, item),
    }
}

fn eval_match(m: &Match, item: &Value) -> bool {
    let mut candidates = vec![item];
    for segment in &m.selector.0 {
        let mut next = Vec::new();
        for value in candidates {
            step(value, segment, &mut next);
        }
        candidates = next;
    }
    let hit = candidates.into_iter().any(|value| test(&m.test, value));
    hit != m.negated
}

/// Follows one selector segment from `value`, pushing what it reaches onto `out`.
fn step<'a>(value: &'a Value, segment: &str, out: &mut Vec<&'a Value>) {
    match value {
        Value::Object(map) => out.extend(field(map, segment)),
        Value::Array(items) => match segment.parse::<usize>() {
            Ok(index) => out.extend(items.get(index)),
            Err(_) => {
                for item in items {
                    step(item, segment, out);
                }
            }
        },
        _ => {}
    }
}

/// Looks `name` up exactly, then case-insensitively.
fn field<'a>(map: &'a Map<String, Value>, name: &str) -> Option<&'a Value> {
    map.get(name).or_else(|| {
        map.iter()
            .find(|(key, _)| eq_ignore_case(key, name))
            .map(|(_, value)| value)
    })
}

fn eq_ignore_case(a: &str, b: &str) -> bool {
    a.chars()
        .flat_map(char::to_lowercase)
        .eq(b.chars().flat_map(char::to_lowercase))
}

fn test(test: &Test, value: &Value) -> bool {
    match test {
        Test::Equal(expected) => equals(value, expected),
        Test::Contains(needle) => contains(value, needle),
        Test::Matches(regex) => regex_matches(regex, value),
        Test::NotEmpty => !is_empty(value),
    }
}

/// `value == expected`, with `expected` read as the type of `value`.
fn equals(value: &Value, expected: &str) -> bool {
    match value {
        Value::String(s) => s == expected,
        Value::Number(n) => number_equals(n, expected),
        Value::Bool(b) => parse_bool(expected) == Some(*b),
        Value::Null => expected.is_empty(),
        Value::Array(_) | Value::Object(_) => false,
    }
}

fn number_equals(n: &Number, expected: &str) -> bool {
    if let (Some(a), Ok(b)) = (n.as_i64(), expected.parse::<i64>()) {
        return a == b;
    }
    if let (Some(a), Ok(b)) = (n.as_u64(), expected.parse::<u64>()) {
        return a == b;
    }
    match (n.as_f64(), expected.parse::<f64>()) {
        (Some(a), Ok(b)) => a == b,
        _ => false,
    }
}

/// Go's `strconv.ParseBool`.
fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// `needle in value`: an array element, a map key, or a substring.
fn contains(value: &Value, needle: &str) -> bool {
    match value {
        Value::Array(items) => items.iter().any(|item| equals(item, needle)),
        Value::Object(map) => map.contains_key(needle),
        Value::String(s) => s.contains(needle),
        _ => false,
    }
}

/// Regex search on the string form of a scalar, or of any scalar element of an array.
fn regex_matches(regex: &Regex, value: &Value) -> bool {
    match value {
        Value::Array(items) => items
            .iter()
            .any(|item| !item.is_array() && regex_matches(regex, item)),
        Value::String(s) => regex.is_match(s),
        Value::Number(n) => regex.is_match(&n.to_string()),
        Value::Bool(b) => regex.is_match(if *b { "true" } else { "false" }),
        Value::Null => regex.is_match(""),
        Value::Object(_) => false,
    }
}

fn is_empty(value: &Value) -> bool {
    match value {
        Value::Null => true,
        Value::String(s) => s.is_empty(),
        Value::Array(items) => items.is_empty(),
        Value::Object(map) => map.is_empty(),
        Value::Number(_) | Value::Bool(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use crate::Filter;

    fn check(expr: &str, item: &serde_json::Value) -> bool {
        match Filter::parse(expr) {
            Ok(filter) => filter.matches(item),
            Err(err) => panic!("parse({expr:?}) failed: {err}"),
        }
    }

    /// Asserts each expression's result on `item`.
    fn expect(item: &serde_json::Value, cases: &[(&str, bool)]) {
        for &(expr, want) in cases {
            assert_eq!(check(expr, item), want, "{expr}");
        }
    }

    #[test]
    fn field_names_exact_then_case_insensitive() {
        let item = json!({"ServiceName": "web", "Meta": {"Env": "prod", "env": "dev"}});
        expect(
            &item,
            &[
                ("ServiceName == web", true),
                ("servicename == web", true),
                ("SERVICENAME == web", true),
                ("Meta.Env == prod", true),
                ("Meta.env == dev", true),
                ("Meta[\"env\"] == dev", true),
                ("Service == web", false),
            ],
        );
    }

    #[test]
    fn strings_compare_exactly() {
        let item = json!({"Name": "Web"});
        expect(
            &item,
            &[
                ("Name == Web", true),
                ("Name == web", false),
                ("Name != web", true),
                (r#"Name == "Web""#, true),
                ("Name == `Web`", true),
            ],
        );
    }

    #[test]
    fn numbers_compare_numerically() {
        let item = json!({"Port": 8080, "Weight": 1.5, "Delta": -1, "Big": u64::MAX});
        expect(
            &item,
            &[
                ("Port == 8080", true),
                (r#"Port == "8080""#, true),
                ("Port == 8080.0", true),
                ("Port != 80", true),
                ("Port == 80", false),
                ("Port == abc", false),
                ("Port != abc", true),
                ("Weight == 1.5", true),
                ("Weight == 1.50", true),
                ("Weight == 1", false),
                ("Delta == -1", true),
                ("Big == 18446744073709551615", true),
                ("Big == 18446744073709551614", false),
            ],
        );
    }

    #[test]
    fn bools_compare_like_go_parse_bool() {
        let item = json!({"On": true, "Off": false});
        expect(
            &item,
            &[
                ("On == true", true),
                ("On == True", true),
                ("On == 1", true),
                ("On == false", false),
                ("On == yes", false),
                ("On != false", true),
                ("Off == false", true),
                ("Off == 0", true),
                ("Off != true", true),
            ],
        );
    }

    #[test]
    fn null_equals_empty_string() {
        let item = json!({"Addr": null});
        expect(
            &item,
            &[
                (r#"Addr == """#, true),
                ("Addr == x", false),
                ("Addr != x", true),
                ("Addr is empty", true),
                ("Addr is not empty", false),
                ("Addr matches \"^$\"", true),
            ],
        );
    }

    #[test]
    fn missing_fields() {
        let item = json!({"Service": {"Meta": {}}});
        expect(
            &item,
            &[
                ("Missing == x", false),
                ("Missing != x", true),
                (r#"Missing == """#, false),
                ("Missing is empty", true),
                ("Missing is not empty", false),
                ("x in Missing", false),
                ("x not in Missing", true),
                ("Missing contains x", false),
                ("Missing not contains x", true),
                ("Missing matches \".*\"", false),
                ("Missing not matches \".*\"", true),
                ("Service.Meta.env == x", false),
                ("Service.Meta.env != x", true),
                ("Service.Meta.env.deeper is empty", true),
            ],
        );
    }

    #[test]
    fn paths_through_scalars_are_missing() {
        let item = json!({"Name": "web", "Port": 80});
        expect(
            &item,
            &[("Name.Length == 3", false), ("Port.Value is empty", true)],
        );
    }

    #[test]
    fn in_and_contains_on_arrays() {
        let item = json!({"Tags": ["prod", "v2"], "Ports": [80, 443], "Flags": [true]});
        expect(
            &item,
            &[
                ("prod in Tags", true),
                (r#""v2" in Tags"#, true),
                ("pro in Tags", false),
                ("prod not in Tags", false),
                ("dev not in Tags", true),
                ("Tags contains v2", true),
                ("Tags not contains v3", true),
                ("443 in Ports", true),
                ("8443 in Ports", false),
                ("true in Flags", true),
            ],
        );
    }

    #[test]
    fn in_and_contains_on_maps_check_keys() {
        let item = json!({"Meta": {"env": "prod", "some-key": ""}});
        expect(
            &item,
            &[
                ("env in Meta", true),
                ("prod in Meta", false),
                (r#""some-key" in Meta"#, true),
                ("ENV in Meta", false),
                ("Meta contains env", true),
                ("Meta not contains env", false),
            ],
        );
    }

    #[test]
    fn in_and_contains_on_strings_are_substrings() {
        let item = json!({"Name": "web-frontend", "Port": 8080});
        expect(
            &item,
            &[
                ("front in Name", true),
                ("Name contains web", true),
                ("Name contains api", false),
                ("Name not contains api", true),
                ("80 in Port", false),
            ],
        );
    }

    #[test]
    fn arrays_of_objects_match_any_element() {
        let item = json!({"Checks": [
            {"Status": "passing", "Name": "serf"},
            {"Status": "warning", "Name": "http"}
        ]});
        expect(
            &item,
            &[
                ("Checks.Status == warning", true),
                ("Checks.Status == passing", true),
                ("Checks.Status == critical", false),
                ("Checks.Status != critical", true),
                ("Checks.Status != passing", false),
                ("Checks.Name matches \"^ht\"", true),
                ("Checks.Name not matches \"^ht\"", false),
                ("Checks.Status contains warn", true),
                ("Checks.Output is empty", true),
                ("Checks.Status is not empty", true),
                ("Checks is not empty", true),
            ],
        );
    }

    #[test]
    fn arrays_fan_out_through_several_levels() {
        let item = json!({"Nodes": [
            {"Checks": [{"Status": "passing"}]},
            {"Checks": [{"Status": "critical"}]},
        ]});
        expect(
            &item,
            &[
                ("Nodes.Checks.Status == critical", true),
                ("Nodes.Checks.Status == warning", false),
            ],
        );
    }

    #[test]
    fn numeric_segments_index_arrays() {
        let item =
            json!({"Checks": [{"Status": "passing"}, {"Status": "warning"}], "Tags": ["a", "b"]});
        expect(
            &item,
            &[
                ("Checks.0.Status == passing", true),
                ("Checks.1.Status == passing", false),
                ("Checks.5.Status is empty", true),
                ("Tags.1 == b", true),
                (r#"Checks["1"].Status == warning"#, true),
            ],
        );
    }

    #[test]
    fn equality_against_containers_is_false() {
        let item = json!({"Tags": ["prod"], "Meta": {"a": "b"}});
        expect(
            &item,
            &[
                ("Tags == prod", false),
                ("Tags != prod", true),
                ("Meta == b", false),
            ],
        );
    }

    #[test]
    fn matches_uses_the_string_form() {
        let item = json!({"Name": "web-7", "Port": 8080, "On": true, "Tags": ["a1", "b2"], "Meta": {"k": "v"}});
        expect(
            &item,
            &[
                ("Name matches \"^web-[0-9]$\"", true),
                ("Name matches web", true),
                ("Name matches \"^eb\"", false),
                ("Name not matches \"^eb\"", true),
                (r#"Name matches "\d$""#, true),
                ("Port matches \"^80\"", true),
                ("On matches \"^tr\"", true),
                ("Tags matches \"^b\"", true),
                ("Tags matches \"^c\"", false),
                ("Meta matches \"k\"", false),
            ],
        );
    }

    #[test]
    fn emptiness() {
        let item = json!({"S": "", "A": [], "O": {}, "Z": 0, "F": false, "T": "x", "L": [1], "M": {"k": 1}});
        expect(
            &item,
            &[
                ("S is empty", true),
                ("A is empty", true),
                ("O is empty", true),
                ("Z is empty", false),
                ("F is empty", false),
                ("T is empty", false),
                ("L is empty", false),
                ("M is empty", false),
                ("S is not empty", false),
                ("Z is not empty", true),
                ("M is not empty", true),
            ],
        );
    }

    #[test]
    fn bracketed_keys_allow_any_characters() {
        let item = json!({"Meta": {"some-key": "x", "a.b": "y", "with space": "z"}});
        expect(
            &item,
            &[
                (r#"Meta["some-key"] == x"#, true),
                ("Meta.some-key == x", true),
                (r#"Meta["a.b"] == y"#, true),
                ("Meta.a.b == y", false),
                (r#"Meta.["with space"] == z"#, true),
            ],
        );
    }

    #[test]
    fn boolean_combinations() {
        let item = json!({"A": 1, "B": 2});
        expect(
            &item,
            &[
                ("A == 1 and B == 2", true),
                ("A == 1 and B == 3", false),
                ("A == 9 or B == 2", true),
                ("A == 9 or B == 9", false),
                ("not A == 9", true),
                ("not not A == 1", true),
                ("A == 9 or A == 1 and B == 2", true),
                ("(A == 9 or A == 1) and B == 9", false),
                ("not (A == 1 and B == 2)", false),
                ("not A == 1 or B == 2", true),
            ],
        );
    }
}
