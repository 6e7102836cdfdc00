//! A streamed model answer (server-sent events) passed on event by event: pseudonym labels
//! restored across chunk boundaries (a label split over two deltas is held back until it is
//! whole), token counts read for the ledger. Pure: bytes in, bytes out.
//!
//! Hand-written rather than an SSE crate: we need the events as text to rewrite and re-emit
//! them unchanged otherwise, which the client-side SSE libraries do not offer.

use super::prompt::usage_of;
use super::route::Api;
use portcullis_redact::Pseudonyms;
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Largest single event the gateway will hold while waiting for its end.
const MAX_EVENT_BYTES: usize = 1024 * 1024;

/// The stream broke a rule (an event too large to hold).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TooLarge;

/// Edits one provider stream.
pub struct StreamEditor<'p> {
    api: Api,
    /// `None`: pass the text as it is (nothing to restore).
    pseudonyms: Option<&'p Pseudonyms>,
    buffer: Vec<u8>,
    /// Held-back text per choice (OpenAI) or content block (Anthropic) index.
    pending: BTreeMap<i64, String>,
    pub input_tokens: Option<i64>,
    pub output_tokens: Option<i64>,
    /// The provider's id of the answer (`chatcmpl-…`, `msg_…`).
    pub answer_id: Option<String>,
}

impl<'p> StreamEditor<'p> {
    pub fn new(api: Api, pseudonyms: Option<&'p Pseudonyms>) -> Self {
        Self {
            api,
            pseudonyms,
            buffer: Vec::new(),
            pending: BTreeMap::new(),
            input_tokens: None,
            output_tokens: None,
            answer_id: None,
        }
    }

    /// The bytes to forward now, given the next chunk from the provider.
    pub fn push(&mut self, chunk: &[u8]) -> Result<Vec<u8>, TooLarge> {
        self.buffer.extend(chunk.iter().filter(|&&b| b != b'\r'));
        let mut out = Vec::new();
        while let Some(end) = find(&self.buffer, b"\n\n") {
            let event: Vec<u8> = self.buffer.drain(..end + 2).collect();
            self.event(&event[..end], &mut out);
        }
        if self.buffer.len() > MAX_EVENT_BYTES {
            return Err(TooLarge);
        }
        Ok(out)
    }

    /// What is left when the provider's stream ends: an unfinished event as it came, and
    /// any text still held back.
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        self.flush_all(&mut out);
        out.append(&mut self.buffer);
        out
    }

    fn event(&mut self, raw: &[u8], out: &mut Vec<u8>) {
        let Ok(text) = std::str::from_utf8(raw) else {
            return emit_raw(raw, out);
        };
        let mut name = None;
        let mut data = Vec::new();
        for line in text.lines() {
            if let Some(value) = line.strip_prefix("event:") {
                name = Some(value.trim_start().to_owned());
            } else if let Some(value) = line.strip_prefix("data:") {
                data.push(value.strip_prefix(' ').unwrap_or(value));
            }
        }
        let data = data.join("\n");
        if data == "[DONE]" {
            self.flush_all(out);
            return emit_raw(raw, out);
        }
        let Ok(mut value) = serde_json::from_str::<Value>(&data) else {
            return emit_raw(raw, out);
        };
        let (input, output) = usage_of(self.api, &value);
        self.input_tokens = input.or(self.input_tokens);
        self.output_tokens = output.or(self.output_tokens);
        if self.answer_id.is_none() {
            self.answer_id = value
                .get("id")
                .or_else(|| value.get("message").and_then(|m| m.get("id")))
                .and_then(Value::as_str)
                .map(str::to_owned);
        }
        let Some(pseudonyms) = self.pseudonyms else {
            return emit_raw(raw, out);
        };
        let changed = match self.api {
            Api::Openai => self.openai(pseudonyms, &mut value),
            Api::Anthropic => {
                if value.get("type").and_then(Value::as_str) == Some("content_block_stop") {
                    let index = value.get("index").and_then(Value::as_i64).unwrap_or(0);
                    self.flush_block(index, out);
                    false
                } else {
                    self.anthropic(pseudonyms, &mut value)
                }
            }
        };
        if changed {
            emit(name.as_deref(), &value, out);
        } else {
            emit_raw(raw, out);
        }
    }

    /// Restore each choice's delta; a finished choice gets what was held back.
    fn openai(&mut self, pseudonyms: &Pseudonyms, value: &mut Value) -> bool {
        let Some(choices) = value.get_mut("choices").and_then(Value::as_array_mut) else {
            return false;
        };
        let mut changed = false;
        for choice in choices {
            let index = choice.get("index").and_then(Value::as_i64).unwrap_or(0);
            let finished = choice.get("finish_reason").is_some_and(|f| !f.is_null());
            let pending = self.pending.entry(index).or_default();
            let Some(delta) = choice.get_mut("delta").and_then(Value::as_object_mut) else {
                continue;
            };
            let mut text = match delta.get("content") {
                Some(Value::String(s)) => {
                    changed = true;
                    pseudonyms.restore_streamed(pending, s)
                }
                _ => String::new(),
            };
            if finished && !pending.is_empty() {
                changed = true;
                text.push_str(&pseudonyms.restore_rest(pending));
            }
            if changed && (delta.contains_key("content") || !text.is_empty()) {
                delta.insert("content".into(), Value::String(text));
            }
        }
        changed
    }

    fn anthropic(&mut self, pseudonyms: &Pseudonyms, value: &mut Value) -> bool {
        if value.get("type").and_then(Value::as_str) != Some("content_block_delta") {
            return false;
        }
        let index = value.get("index").and_then(Value::as_i64).unwrap_or(0);
        let Some(delta) = value.get_mut("delta").and_then(Value::as_object_mut) else {
            return false;
        };
        if delta.get("type").and_then(Value::as_str) != Some("text_delta") {
            return false;
        }
        let Some(Value::String(text)) = delta.get("text") else {
            return false;
        };
        let pending = self.pending.entry(index).or_default();
        let restored = pseudonyms.restore_streamed(pending, text);
        delta.insert("text".into(), Value::String(restored));
        true
    }

    /// An Anthropic block ends: what it held back goes out as one more delta first.
    fn flush_block(&mut self, index: i64, out: &mut Vec<u8>) {
        let (Some(pseudonyms), Some(pending)) = (self.pseudonyms, self.pending.get_mut(&index))
        else {
            return;
        };
        if pending.is_empty() {
            return;
        }
        let text = pseudonyms.restore_rest(pending);
        let delta = json!({
            "type": "content_block_delta",
            "index": index,
            "delta": { "type": "text_delta", "text": text },
        });
        emit(Some("content_block_delta"), &delta, out);
    }

    fn flush_all(&mut self, out: &mut Vec<u8>) {
        let indexes: Vec<i64> = self
            .pending
            .iter()
            .filter(|(_, p)| !p.is_empty())
            .map(|(i, _)| *i)
            .collect();
        for index in indexes {
            match self.api {
                Api::Anthropic => self.flush_block(index, out),
                Api::Openai => {
                    let (Some(pseudonyms), Some(pending)) =
                        (self.pseudonyms, self.pending.get_mut(&index))
                    else {
                        continue;
                    };
                    let text = pseudonyms.restore_rest(pending);
                    let chunk = json!({
                        "object": "chat.completion.chunk",
                        "choices": [{ "index": index, "delta": { "content": text }, "finish_reason": null }],
                    });
                    emit(None, &chunk, out);
                }
            }
        }
    }
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn emit_raw(raw: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(raw);
    out.extend_from_slice(b"\n\n");
}

fn emit(name: Option<&str>, value: &Value, out: &mut Vec<u8>) {
    if let Some(name) = name {
        out.extend_from_slice(b"event: ");
        out.extend_from_slice(name.as_bytes());
        out.push(b'\n');
    }
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(value.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use portcullis_redact::Redactor;

    fn session() -> Pseudonyms {
        let mut pseudonyms = Pseudonyms::new();
        let sent = Redactor::default().pseudonymise("ada@example.com", &mut pseudonyms);
        assert_eq!(sent.text, "[EMAIL_1]");
        pseudonyms
    }

    /// Feed `stream` split at every position in turn; the text the caller reads must be the
    /// same whatever the split.
    fn every_split(api: Api, stream: &str, read: impl Fn(&str) -> String) -> Vec<String> {
        let pseudonyms = session();
        (1..stream.len())
            .map(|at| {
                let mut editor = StreamEditor::new(api, Some(&pseudonyms));
                let mut out = editor.push(&stream.as_bytes()[..at]).unwrap();
                out.extend(editor.push(&stream.as_bytes()[at..]).unwrap());
                out.extend(editor.finish());
                read(std::str::from_utf8(&out).unwrap())
            })
            .collect()
    }

    fn openai_text(sse: &str) -> String {
        sse.split("\n\n")
            .filter_map(|e| e.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .filter_map(|d| serde_json::from_str::<Value>(d).ok())
            .filter_map(|v| {
                v["choices"][0]["delta"]["content"]
                    .as_str()
                    .map(str::to_owned)
            })
            .collect()
    }

    #[test]
    fn openai_labels_split_over_chunks_are_restored() {
        let chunk = |text: &str, finish: Value| {
            format!(
                "data: {}\n\n",
                json!({"id": "chatcmpl-1", "choices": [{"index": 0, "delta": {"content": text}, "finish_reason": finish}]})
            )
        };
        let stream = [
            chunk("Wrote to [EMA", Value::Null),
            chunk("IL_1", Value::Null),
            chunk("] today [", Value::Null),
            chunk("", json!("stop")),
            format!("data: {}\n\n", json!({"id": "chatcmpl-1", "choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 9}})),
            "data: [DONE]\n\n".to_owned(),
        ]
        .concat();
        for text in every_split(Api::Openai, &stream, openai_text) {
            assert_eq!(text, "Wrote to ada@example.com today [");
        }
        let pseudonyms = session();
        let mut editor = StreamEditor::new(Api::Openai, Some(&pseudonyms));
        editor.push(stream.as_bytes()).unwrap();
        assert_eq!(
            (editor.input_tokens, editor.output_tokens),
            (Some(7), Some(9))
        );
        assert_eq!(editor.answer_id.as_deref(), Some("chatcmpl-1"));
    }

    #[test]
    fn anthropic_labels_are_restored_and_a_held_tail_goes_out_before_the_block_ends() {
        let event = |name: &str, value: Value| format!("event: {name}\ndata: {value}\n\n");
        let delta = |text: &str| {
            event(
                "content_block_delta",
                json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}}),
            )
        };
        let stream = [
            event("message_start", json!({"type": "message_start", "message": {"id": "msg_1", "usage": {"input_tokens": 11, "output_tokens": 1}}})),
            delta("To [EMAIL"),
            delta("_1] and [EMAIL_1"),
            event("content_block_stop", json!({"type": "content_block_stop", "index": 0})),
            event("message_delta", json!({"type": "message_delta", "usage": {"output_tokens": 12}})),
            event("message_stop", json!({"type": "message_stop"})),
        ]
        .concat();
        let read = |sse: &str| -> String {
            sse.split("\n\n")
                .filter_map(|e| e.lines().find_map(|l| l.strip_prefix("data: ")))
                .filter_map(|d| serde_json::from_str::<Value>(d).ok())
                .filter_map(|v| v["delta"]["text"].as_str().map(str::to_owned))
                .collect()
        };
        for text in every_split(Api::Anthropic, &stream, read) {
            // The last label never closed: held back until the block ends, then sent as it is.
            assert_eq!(text, "To ada@example.com and [EMAIL_1");
        }
        let pseudonyms = session();
        let mut editor = StreamEditor::new(Api::Anthropic, Some(&pseudonyms));
        let out = editor.push(stream.as_bytes()).unwrap();
        let out = String::from_utf8(out).unwrap();
        let tail = out
            .find(r#""text":"[EMAIL_1""#)
            .expect("the held tail is sent");
        assert!(tail < out.find("content_block_stop").unwrap());
        assert_eq!(
            (editor.input_tokens, editor.output_tokens),
            (Some(11), Some(12))
        );
    }

    #[test]
    fn without_pseudonyms_events_pass_unchanged() {
        let stream = "event: ping\ndata: {\"type\":\"ping\"}\n\n: comment\n\ndata: not json\n\n";
        let mut editor = StreamEditor::new(Api::Anthropic, None);
        let out = editor.push(stream.as_bytes()).unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), stream);
    }

    #[test]
    fn an_endless_event_is_refused() {
        let mut editor = StreamEditor::new(Api::Openai, None);
        let big = vec![b'x'; MAX_EVENT_BYTES + 1];
        assert_eq!(editor.push(&big), Err(TooLarge));
    }
}
