//! Whole answers (not streamed) and error bodies.

use serde_json::{json, Value};

use super::{arguments_object, finish_reason, stop_reason, unix_now, Format};

/// A successful answer of `from`'s API as `to`'s; `None` when it is not JSON of the expected
/// shape (the caller then passes it on unchanged).
pub fn answer(from: Format, to: Format, body: &[u8]) -> Option<Vec<u8>> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let out = match (from, to) {
        (Format::Anthropic, Format::OpenAi) if v["type"] == "message" => chat_completion(&v),
        (Format::OpenAi, Format::Anthropic) if v["choices"].is_array() => message(&v),
        _ => return None,
    };
    serde_json::to_vec(&out).ok()
}

/// An Anthropic message as a chat completion.
fn chat_completion(v: &Value) -> Value {
    let mut text = String::new();
    let mut calls = Vec::new();
    for b in v["content"].as_array().into_iter().flatten() {
        match b["type"].as_str() {
            Some("text") => text.push_str(b["text"].as_str().unwrap_or("")),
            Some("tool_use") => calls.push(json!({
                "id": b["id"], "type": "function",
                "function": {"name": b["name"], "arguments": b["input"].to_string()},
            })),
            _ => {}
        }
    }
    let mut message = json!({
        "role": "assistant",
        "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) },
        "refusal": null,
    });
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    json!({
        "id": format!("chatcmpl-{}", v["id"].as_str().unwrap_or("")),
        "object": "chat.completion",
        "created": unix_now(),
        "model": v["model"],
        "choices": [{
            "index": 0, "message": message, "logprobs": null,
            "finish_reason": finish_reason(v["stop_reason"].as_str().unwrap_or("end_turn")),
        }],
        "usage": openai_usage(&v["usage"]),
    })
}

/// Anthropic usage in OpenAI's convention: cached and cache-written input inside the prompt.
pub(super) fn openai_usage(u: &Value) -> Value {
    let n = |k: &str| u[k].as_u64().unwrap_or(0);
    let read = n("cache_read_input_tokens");
    let prompt = n("input_tokens") + read + n("cache_creation_input_tokens");
    let completion = n("output_tokens");
    json!({
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": read},
    })
}

/// OpenAI usage in Anthropic's convention: cached input beside the rest.
pub(super) fn anthropic_usage(u: &Value) -> Value {
    let cached = u["prompt_tokens_details"]["cached_tokens"]
        .as_u64()
        .unwrap_or(0);
    let prompt = u["prompt_tokens"].as_u64().unwrap_or(0);
    json!({
        "input_tokens": prompt.saturating_sub(cached),
        "output_tokens": u["completion_tokens"].as_u64().unwrap_or(0),
        "cache_read_input_tokens": cached,
        "cache_creation_input_tokens": 0,
    })
}

/// A chat completion as an Anthropic message (its first choice).
fn message(v: &Value) -> Value {
    let choice = &v["choices"][0];
    let m = &choice["message"];
    let mut content = Vec::new();
    if let Some(text) = m["content"].as_str().filter(|t| !t.is_empty()) {
        content.push(json!({"type": "text", "text": text}));
    }
    for call in m["tool_calls"].as_array().into_iter().flatten() {
        content.push(json!({
            "type": "tool_use",
            "id": call["id"],
            "name": call["function"]["name"],
            "input": arguments_object(call["function"]["arguments"].as_str().unwrap_or("")),
        }));
    }
    json!({
        "id": format!("msg_{}", v["id"].as_str().unwrap_or("")),
        "type": "message",
        "role": "assistant",
        "model": v["model"],
        "content": content,
        "stop_reason": stop_reason(choice["finish_reason"].as_str().unwrap_or("stop")),
        "stop_sequence": null,
        "usage": anthropic_usage(&v["usage"]),
    })
}

/// An error body of `from`'s API in `to`'s shape, keeping its message and type.
pub fn error(from: Format, to: Format, body: &[u8]) -> Option<Vec<u8>> {
    let v: Value = serde_json::from_slice(body).ok()?;
    let e = &v["error"];
    let message = e["message"].as_str().unwrap_or("upstream error");
    let kind = e["type"].as_str().unwrap_or("api_error");
    let out = match (from, to) {
        (Format::Anthropic, Format::OpenAi) => {
            json!({"error": {"message": message, "type": kind, "param": null, "code": null}})
        }
        (Format::OpenAi, Format::Anthropic) => {
            json!({"type": "error", "error": {"type": kind, "message": message}})
        }
        _ => return None,
    };
    serde_json::to_vec(&out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn value(bytes: Option<Vec<u8>>) -> Value {
        serde_json::from_slice(&bytes.unwrap()).unwrap()
    }

    #[test]
    fn message_with_tool_use_becomes_chat_completion() {
        let msg = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude",
            "content": [{"type": "text", "text": "Let me check."},
                        {"type": "tool_use", "id": "tu_1", "name": "weather", "input": {"city": "Oslo"}}],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 4,
                      "cache_creation_input_tokens": 2}});
        let v = value(answer(
            Format::Anthropic,
            Format::OpenAi,
            msg.to_string().as_bytes(),
        ));
        let c = &v["choices"][0];
        assert_eq!(c["finish_reason"], "tool_calls");
        assert_eq!(c["message"]["content"], "Let me check.");
        assert_eq!(c["message"]["tool_calls"][0]["function"]["name"], "weather");
        assert_eq!(
            c["message"]["tool_calls"][0]["function"]["arguments"],
            "{\"city\":\"Oslo\"}"
        );
        assert_eq!(v["usage"]["prompt_tokens"], 16);
        assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 4);
        assert_eq!(v["usage"]["total_tokens"], 21);
    }

    #[test]
    fn chat_completion_becomes_message() {
        let chat = json!({"id": "c1", "object": "chat.completion", "model": "gpt",
            "choices": [{"index": 0, "finish_reason": "length",
                "message": {"role": "assistant", "content": "Hi",
                    "tool_calls": [{"id": "call_1", "type": "function",
                        "function": {"name": "f", "arguments": "{\"a\":1}"}}]}}],
            "usage": {"prompt_tokens": 9, "completion_tokens": 3,
                      "prompt_tokens_details": {"cached_tokens": 4}}});
        let v = value(answer(
            Format::OpenAi,
            Format::Anthropic,
            chat.to_string().as_bytes(),
        ));
        assert_eq!(v["type"], "message");
        assert_eq!(v["stop_reason"], "max_tokens");
        assert_eq!(v["content"][0], json!({"type": "text", "text": "Hi"}));
        assert_eq!(v["content"][1]["input"], json!({"a": 1}));
        assert_eq!(v["usage"]["input_tokens"], 5);
        assert_eq!(v["usage"]["cache_read_input_tokens"], 4);
        assert!(answer(Format::OpenAi, Format::Anthropic, b"not json").is_none());
    }

    #[test]
    fn errors_keep_message_and_type() {
        let v = value(error(
            Format::Anthropic,
            Format::OpenAi,
            br#"{"type":"error","error":{"type":"overloaded_error","message":"busy"}}"#,
        ));
        assert_eq!(v["error"]["message"], "busy");
        assert_eq!(v["error"]["type"], "overloaded_error");
        let v = value(error(
            Format::OpenAi,
            Format::Anthropic,
            br#"{"error":{"message":"slow down","type":"rate_limit_error"}}"#,
        ));
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "rate_limit_error");
    }
}
