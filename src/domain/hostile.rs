//! Hostile input for the property tests of every parser of untrusted input (test builds only).
//!
//! Arbitrary strings alone rarely reach the interesting branches of a parser, so these strategies
//! mix them with what attackers and broken clients actually send: near-valid values, very long
//! strings, control and invisible characters, numbers far beyond any integer type, invalid UTF-8
//! and deeply nested JSON. A parser passes when it answers `Ok` or `Err` to all of it, never panics.

use proptest::prelude::*;
use serde_json::{Map, Number, Value};

/// Characters that break naive parsers: separators, quotes, controls, invisible and wide ones.
const AWKWARD: &[char] = &[
    '\0', '\t', '\n', '\r', ' ', ',', ';', '=', '.', '/', '\\', '"', '\'', '%', '+', '-', '@', '_', ':', '[',
    '{', '\u{7f}', '\u{85}', '\u{a0}', '\u{200b}', '\u{202e}', '\u{feff}', 'é', 'ß', '𝔸', '👩', '\u{200d}',
];

/// Any string, weighted towards the awkward: arbitrary Unicode, awkward characters, long runs,
/// long digit strings, and padding around plain words.
pub fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        3 => any::<String>(),
        2 => prop::collection::vec(prop::sample::select(AWKWARD), 0..40)
            .prop_map(|chars| chars.into_iter().collect()),
        1 => (prop::sample::select(AWKWARD), 1_000usize..70_000).prop_map(|(c, n)| c.to_string().repeat(n)),
        1 => "[0-9]{15,400}",
        1 => "-?[0-9]{1,30}(\\.[0-9]{0,10})?([eE][+-]?[0-9]{1,5})?",
        2 => ("[ \t\n]{0,3}", "[A-Za-z0-9_.@+-]{0,80}", "[ \t\n]{0,3}").prop_map(|(a, b, c)| format!("{a}{b}{c}")),
    ]
}

/// Any bytes: arbitrary, invalid UTF-8 sequences around text, or a long run of one byte.
pub fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => prop::collection::vec(any::<u8>(), 0..2048),
        2 => (text(), prop::sample::select(INVALID_UTF8), text()).prop_map(|(a, bad, b)| {
            [a.as_bytes(), bad, b.as_bytes()].concat()
        }),
        1 => (any::<u8>(), 1_000usize..70_000).prop_map(|(b, n)| vec![b; n]),
    ]
}

/// Byte sequences that are not UTF-8: a lone continuation byte, a truncated sequence, an overlong
/// encoding, a surrogate, a code point beyond U+10FFFF, bytes that never occur.
const INVALID_UTF8: &[&[u8]] =
    &[b"\x80", b"\xc3", b"\xe2\x82", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80", b"\xfe\xff"];

/// A JSON number far outside what the wire types hold, or exactly at their edges.
pub fn extreme_number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_map(|f| Number::from_f64(f).map_or(Value::Null, Value::Number)),
        prop::sample::select(vec![0u64, 1, i64::MAX as u64, i64::MAX as u64 + 1, u64::MAX])
            .prop_map(Value::from),
    ]
}

/// Arbitrary JSON with hostile leaves, nested a few levels.
pub fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        extreme_number(),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..8).prop_map(Value::Array),
            prop::collection::vec((text(), inner), 0..8)
                .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// `depth` nested arrays, as text (too deep for a recursive parser without a limit).
pub fn nested_arrays(depth: usize) -> String {
    format!("{}{}", "[".repeat(depth), "]".repeat(depth))
}

/// Every JSON pointer inside `value`, the root included, innermost first: the places a mutation can
/// replace or remove a value.
pub fn pointers(value: &Value) -> Vec<String> {
    fn walk(value: &Value, at: String, out: &mut Vec<String>) {
        match value {
            Value::Object(map) => {
                for (key, inner) in map {
                    walk(inner, format!("{at}/{}", key.replace('~', "~0").replace('/', "~1")), out);
                }
            }
            Value::Array(items) => {
                for (i, inner) in items.iter().enumerate() {
                    walk(inner, format!("{at}/{i}"), out);
                }
            }
            _ => {}
        }
        out.push(at);
    }
    let mut out = Vec::new();
    walk(value, String::new(), &mut out);
    out
}
