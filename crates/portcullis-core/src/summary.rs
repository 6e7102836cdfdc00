//! The one-line summary approvers read in lists and batch previews.
//!
//! INVARIANT: a summary never drops an argument. Every key appears — nested keys as dotted
//! paths, every array item by index — with its value elided on its own when it is long, so a long
//! value placed before a short one (a 400-character `body` before `to`) cannot push the short
//! one out of sight. The keys a tool's profile marks as important come first; the rest follow
//! in canonical (sorted) order. The full arguments are always shown by `approvals show`.

use serde_json::Value;
use std::fmt::Write as _;

/// Values longer than this many characters are cut to [`KEEP_CHARS`] and marked.
pub const MAX_VALUE_CHARS: usize = 60;
/// How much of a long value a summary keeps.
pub const KEEP_CHARS: usize = 40;
/// Keys longer than this are cut (and marked) too: shown, not dropped.
pub const MAX_KEY_CHARS: usize = 48;
/// Nesting below this depth is shown as one elided JSON value. (serde_json refuses documents
/// nested deeper than 128 levels, so this is almost never reached.)
pub const MAX_DEPTH: usize = 64;

/// `effect: connection.tool key=value …` for one action.
pub fn summary(
    effect: impl std::fmt::Display,
    connection: &str,
    tool: &str,
    arguments: &Value,
    important: &[String],
) -> String {
    let mut out = format!("{effect}: {connection}.{tool}");
    let rendered = arguments_line(arguments, important);
    if !rendered.is_empty() {
        out.push(' ');
        out.push_str(&rendered);
    }
    out
}

/// Every argument as `key=value`, space-separated: important keys first, then the rest.
pub fn arguments_line(arguments: &Value, important: &[String]) -> String {
    let mut parts = Vec::new();
    match arguments {
        Value::Object(map) => {
            let mut keys: Vec<&String> =
                important.iter().filter(|k| map.contains_key(*k)).collect();
            keys.dedup();
            let mut rest: Vec<&String> = map.keys().filter(|k| !keys.contains(k)).collect();
            rest.sort();
            keys.extend(rest);
            for key in keys {
                flatten(&key_label(key), &map[key], 1, &mut parts);
            }
        }
        Value::Null => {}
        other => flatten("(arguments)", other, 1, &mut parts),
    }
    parts.join(" ")
}

fn flatten(path: &str, value: &Value, depth: usize, out: &mut Vec<String>) {
    match value {
        Value::Object(map) if !map.is_empty() && depth < MAX_DEPTH => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            for key in keys {
                flatten(
                    &format!("{path}.{}", key_label(key)),
                    &map[key],
                    depth + 1,
                    out,
                );
            }
        }
        // Every item, however many: a recipient at position 21 is still a recipient.
        Value::Array(items) if !items.is_empty() && depth < MAX_DEPTH => {
            for (i, item) in items.iter().enumerate() {
                flatten(&format!("{path}[{i}]"), item, depth + 1, out);
            }
        }
        leaf => out.push(format!("{path}={}", elide(&leaf.to_string()))),
    }
}

/// A key as shown: bare when it is plain, JSON-quoted when it holds anything else (spaces,
/// dots, quotes, control characters), cut when very long.
fn key_label(key: &str) -> String {
    let plain = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    let shown = if plain {
        key.to_owned()
    } else {
        Value::String(key.to_owned()).to_string()
    };
    let count = shown.chars().count();
    if count <= MAX_KEY_CHARS {
        shown
    } else {
        let mut cut: String = shown.chars().take(MAX_KEY_CHARS - 8).collect();
        let _ = write!(cut, "…(+{})", count - (MAX_KEY_CHARS - 8));
        cut
    }
}

/// A rendered value, cut to [`KEEP_CHARS`] characters and marked when longer than
/// [`MAX_VALUE_CHARS`].
fn elide(rendered: &str) -> String {
    let count = rendered.chars().count();
    if count <= MAX_VALUE_CHARS {
        return rendered.to_owned();
    }
    let mut cut: String = rendered.chars().take(KEEP_CHARS).collect();
    let _ = write!(cut, "…(+{} chars)", count - KEEP_CHARS);
    cut
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use serde_json::json;

    #[test]
    fn a_long_value_before_a_short_one_cannot_hide_it() {
        let arguments = json!({ "body": "x".repeat(400), "to": "mallory@evil.test" });
        let line = summary("send", "crm", "send_email", &arguments, &[]);
        assert!(line.contains("to=\"mallory@evil.test\""), "{line}");
        assert!(line.contains("body=\"xxxx"), "{line}");
        assert!(line.contains("(+362 chars)"), "{line}");
        assert!(line.len() < 200, "{line}");
    }

    #[test]
    fn important_keys_come_first_then_the_rest_sorted() {
        let arguments = json!({ "body": "b", "subject": "s", "to": "t", "cc": "c" });
        let line = arguments_line(&arguments, &["to".into(), "missing".into()]);
        assert_eq!(line, r#"to="t" body="b" cc="c" subject="s""#);
    }

    #[test]
    fn nested_keys_and_array_items_are_shown_by_path() {
        let arguments = json!({
            "message": { "body": "y".repeat(300), "to": ["a@x.test", "b@y.test"] },
            "opts": {}, "n": 3, "odd key": null
        });
        let line = arguments_line(&arguments, &[]);
        assert!(line.contains(r#"message.to[0]="a@x.test""#), "{line}");
        assert!(line.contains(r#"message.to[1]="b@y.test""#), "{line}");
        assert!(line.contains("message.body=\"yyy"), "{line}");
        assert!(line.contains("opts={}"), "{line}");
        assert!(line.contains("n=3"), "{line}");
        assert!(line.contains(r#""odd key"=null"#), "{line}");
    }

    #[test]
    fn every_array_item_is_shown_and_long_keys_are_cut_not_dropped() {
        let mut to: Vec<String> = (0..25).map(|i| format!("friend{i}@example.com")).collect();
        to.push("mallory@evil.test".into());
        let long_key = "k".repeat(100);
        let arguments = json!({ "to": to, long_key.clone(): 1 });
        let line = arguments_line(&arguments, &[]);
        assert!(line.contains(r#"to[25]="mallory@evil.test""#), "{line}");
        assert!(line.contains("…(+60)=1"), "{line}");
    }

    #[test]
    fn values_are_cut_on_character_boundaries() {
        let arguments = json!({ "note": "é".repeat(100) });
        let line = arguments_line(&arguments, &[]);
        assert!(line.starts_with("note=\""), "{line}");
        assert!(line.contains("(+62 chars)"), "{line}");
    }

    proptest! {
        /// Whatever the arguments, every top-level key appears in the summary.
        #[test]
        fn no_top_level_key_is_ever_dropped(
            entries in proptest::collection::btree_map("[a-z]{1,12}", ".{0,500}", 1..30),
        ) {
            let arguments: serde_json::Map<String, Value> = entries
                .iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect();
            let line = format!(" {}", arguments_line(&Value::Object(arguments), &[]));
            for key in entries.keys() {
                prop_assert!(line.contains(&format!(" {key}=")), "{key} missing from {line}");
            }
        }
    }
}
