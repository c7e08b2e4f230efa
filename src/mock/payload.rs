//! Response bodies of the mock upstream, shaped like the real OpenAI and Anthropic APIs (the
//! fields SDKs parse, `usage` where the real APIs put it).

use serde_json::{json, Value};

/// What the request asked for, read from its JSON body.
pub struct Ask {
    pub model: String,
    pub stream: bool,
    pub include_usage: bool,
    pub input_tokens: u64,
    /// Of those, served from the (mock) prompt cache.
    pub cached_tokens: u64,
    /// The first tool the request offers (OpenAI `function.name` or Anthropic `name`): the
    /// answer calls it with `{"text": …}`.
    pub tool: Option<String>,
}

/// The arguments of the mock's tool call.
const TOOL_ARGS: &str = r#"{"text":"tok0"}"#;

impl Ask {
    pub fn from_body(body: &[u8]) -> Ask {
        let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
        Ask {
            model: v["model"].as_str().unwrap_or("mock-model").to_owned(),
            stream: v["stream"].as_bool().unwrap_or(false),
            include_usage: v["stream_options"]["include_usage"]
                .as_bool()
                .unwrap_or(false),
            // Deterministic and proportional to the prompt, like a tokenizer would be.
            input_tokens: (body.len() as u64 / 4).max(1),
            cached_tokens: 0,
            tool: v["tools"][0]["function"]["name"]
                .as_str()
                .or(v["tools"][0]["name"].as_str())
                .map(str::to_owned),
        }
    }
}

fn words(chunks: usize) -> Vec<String> {
    (0..chunks).map(|i| format!("tok{i} ")).collect()
}

pub fn chat_json(ask: &Ask, chunks: usize) -> Value {
    let text: String = words(chunks).concat();
    let (message, finish) = match &ask.tool {
        Some(name) => (
            json!({"role": "assistant", "content": null, "refusal": null, "tool_calls": [
                {"id": "call_mock", "type": "function", "function": {"name": name, "arguments": TOOL_ARGS}}]}),
            "tool_calls",
        ),
        None => (
            json!({"role": "assistant", "content": text, "refusal": null}),
            "stop",
        ),
    };
    json!({
        "id": "chatcmpl-mock",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": ask.model,
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
        "usage": {"prompt_tokens": ask.input_tokens, "completion_tokens": chunks,
                  "total_tokens": ask.input_tokens + chunks as u64,
                  "prompt_tokens_details": {"cached_tokens": ask.cached_tokens}},
    })
}

/// `data:` payloads of a chat completion stream, `[DONE]` included.
pub fn chat_events(ask: &Ask, chunks: usize) -> Vec<String> {
    let chunk = |delta: Value, finish: Value| {
        json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1_700_000_000,
               "model": ask.model, "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]})
    };
    let mut out = vec![chunk(
        json!({"role": "assistant", "content": ""}),
        Value::Null,
    )];
    match &ask.tool {
        Some(name) => {
            out.push(chunk(
                json!({"tool_calls": [{"index": 0, "id": "call_mock", "type": "function",
                "function": {"name": name, "arguments": ""}}]}),
                Value::Null,
            ));
            let (a, b) = TOOL_ARGS.split_at(5);
            for part in [a, b] {
                out.push(chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"arguments": part}}]}),
                    Value::Null,
                ));
            }
            out.push(chunk(json!({}), json!("tool_calls")));
        }
        None => {
            out.extend(
                words(chunks)
                    .into_iter()
                    .map(|w| chunk(json!({"content": w}), Value::Null)),
            );
            out.push(chunk(json!({}), json!("stop")));
        }
    }
    if ask.include_usage {
        out.push(json!({"id": "chatcmpl-mock", "object": "chat.completion.chunk", "created": 1_700_000_000,
            "model": ask.model, "choices": [],
            "usage": {"prompt_tokens": ask.input_tokens, "completion_tokens": chunks,
                      "total_tokens": ask.input_tokens + chunks as u64}}));
    }
    let mut events: Vec<String> = out.iter().map(|v| format!("data: {v}\n\n")).collect();
    events.push("data: [DONE]\n\n".to_owned());
    events
}

pub fn response_json(ask: &Ask, chunks: usize, status: &str) -> Value {
    let text: String = if status == "completed" {
        words(chunks).concat()
    } else {
        String::new()
    };
    let output = if status == "completed" {
        json!([{"type": "message", "id": "msg_mock", "status": "completed", "role": "assistant",
                "content": [{"type": "output_text", "text": text, "annotations": []}]}])
    } else {
        json!([])
    };
    json!({
        "id": "resp_mock", "object": "response", "created_at": 1_700_000_000, "status": status,
        "model": ask.model, "output": output, "parallel_tool_calls": true, "tool_choice": "auto",
        "tools": [], "error": null, "incomplete_details": null, "instructions": null, "metadata": {},
        "temperature": 1.0, "top_p": 1.0,
        "usage": if status == "completed" {
            json!({"input_tokens": ask.input_tokens, "input_tokens_details": {"cached_tokens": 0},
                   "output_tokens": chunks, "output_tokens_details": {"reasoning_tokens": 0},
                   "total_tokens": ask.input_tokens + chunks as u64})
        } else { Value::Null },
    })
}

pub fn response_events(ask: &Ask, chunks: usize) -> Vec<String> {
    let mut seq = 0u64;
    let mut event = |name: &str, mut data: Value| {
        data["type"] = json!(name);
        data["sequence_number"] = json!(seq);
        seq += 1;
        format!("event: {name}\ndata: {data}\n\n")
    };
    let mut out = vec![event(
        "response.created",
        json!({"response": response_json(ask, chunks, "in_progress")}),
    )];
    for w in words(chunks) {
        out.push(event(
            "response.output_text.delta",
            json!({"item_id": "msg_mock", "output_index": 0, "content_index": 0, "delta": w, "logprobs": []}),
        ));
    }
    out.push(event(
        "response.completed",
        json!({"response": response_json(ask, chunks, "completed")}),
    ));
    out
}

pub fn message_json(ask: &Ask, chunks: usize) -> Value {
    let (content, stop) = match &ask.tool {
        Some(name) => (
            json!([{"type": "tool_use", "id": "toolu_mock", "name": name, "input": {"text": "tok0"}}]),
            "tool_use",
        ),
        None => (
            json!([{"type": "text", "text": words(chunks).concat()}]),
            "end_turn",
        ),
    };
    json!({
        "id": "msg_mock", "type": "message", "role": "assistant", "model": ask.model,
        "content": content,
        "stop_reason": stop, "stop_sequence": null,
        "usage": {"input_tokens": ask.input_tokens, "output_tokens": chunks,
                  "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0},
    })
}

pub fn message_events(ask: &Ask, chunks: usize) -> Vec<String> {
    let event = |name: &str, data: Value| format!("event: {name}\ndata: {data}\n\n");
    let mut out = vec![event(
        "message_start",
        json!({"type": "message_start", "message": {
        "id": "msg_mock", "type": "message", "role": "assistant", "model": ask.model, "content": [],
        "stop_reason": null, "stop_sequence": null,
        "usage": {"input_tokens": ask.input_tokens, "output_tokens": 1,
                  "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}}}),
    )];
    let (block, deltas, stop) = match &ask.tool {
        Some(name) => {
            let (a, b) = TOOL_ARGS.split_at(5);
            (
                json!({"type": "tool_use", "id": "toolu_mock", "name": name, "input": {}}),
                [a, b]
                    .iter()
                    .map(|p| json!({"type": "input_json_delta", "partial_json": p}))
                    .collect::<Vec<_>>(),
                "tool_use",
            )
        }
        None => (
            json!({"type": "text", "text": ""}),
            words(chunks)
                .into_iter()
                .map(|w| json!({"type": "text_delta", "text": w}))
                .collect(),
            "end_turn",
        ),
    };
    out.push(event(
        "content_block_start",
        json!({"type": "content_block_start", "index": 0, "content_block": block}),
    ));
    out.push(event("ping", json!({"type": "ping"})));
    for delta in deltas {
        out.push(event(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": delta}),
        ));
    }
    out.push(event(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    out.push(event(
        "message_delta",
        json!({"type": "message_delta",
        "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": chunks}}),
    ));
    out.push(event("message_stop", json!({"type": "message_stop"})));
    out
}

/// Gemini's `generateContent` answer for `model` (named in the path).
pub fn gemini_json(ask: &Ask, model: &str, chunks: usize) -> Value {
    json!({
        "candidates": [{"content": {"role": "model", "parts": [{"text": words(chunks).concat()}]},
                        "finishReason": "STOP", "index": 0}],
        "usageMetadata": {"promptTokenCount": ask.input_tokens, "candidatesTokenCount": chunks,
                          "totalTokenCount": ask.input_tokens + chunks as u64},
        "modelVersion": model,
        "responseId": "mock-gemini"
    })
}

/// `streamGenerateContent?alt=sse`: one event per word, each with the running usage, the last
/// with the finish reason (as Gemini streams).
pub fn gemini_events(ask: &Ask, model: &str, chunks: usize) -> Vec<String> {
    let words = words(chunks);
    let last = words.len().saturating_sub(1);
    words
        .into_iter()
        .enumerate()
        .map(|(i, w)| {
            let mut candidate = json!({"content": {"role": "model", "parts": [{"text": w}]}, "index": 0});
            if i == last {
                candidate["finishReason"] = json!("STOP");
            }
            let data = json!({
                "candidates": [candidate],
                "usageMetadata": {"promptTokenCount": ask.input_tokens, "candidatesTokenCount": i + 1,
                                  "totalTokenCount": ask.input_tokens + i as u64 + 1},
                "modelVersion": model,
                "responseId": "mock-gemini"
            });
            format!("data: {data}\r\n\r\n")
        })
        .collect()
}

pub fn models_json() -> Value {
    json!({"object": "list", "data": [
        {"id": "gpt-mock", "object": "model", "created": 1_700_000_000, "owned_by": "sluice-mock"},
        {"id": "claude-mock", "object": "model", "created": 1_700_000_000, "owned_by": "sluice-mock"}]})
}
