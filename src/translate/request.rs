//! Request bodies: chat completions → messages and back.

use serde_json::{json, Map, Value};

use super::{arguments_object, Format, TranslateError};

/// Anthropic requires `max_tokens`; an OpenAI request without one gets this.
const DEFAULT_MAX_TOKENS: u64 = 4096;

/// `body` (in `from`'s API) for `to`'s API, asking for `model` when given. Same API: only the
/// model changes (the rest of the body is kept byte for byte when there is no model to set).
/// `completion_tokens_field` names OpenAI's output cap (`max_completion_tokens` for OpenAI,
/// `max_tokens` for OpenAI-compatible servers that predate it).
pub fn request(
    from: Format,
    to: Format,
    body: &[u8],
    model: Option<&str>,
    completion_tokens_field: &str,
) -> Result<Vec<u8>, TranslateError> {
    if from == to && model.is_none() {
        return Ok(body.to_vec());
    }
    let Ok(Value::Object(mut v)) = serde_json::from_slice::<Value>(body) else {
        return Err(TranslateError::NotJson);
    };
    if let Some(m) = model {
        v.insert("model".into(), json!(m));
    }
    let out = match (from, to) {
        (Format::OpenAi, Format::Anthropic) => to_anthropic(v)?,
        (Format::Anthropic, Format::OpenAi) => to_openai(v, completion_tokens_field),
        _ => v,
    };
    serde_json::to_vec(&out).map_err(|_| TranslateError::NotJson)
}

/// Chat completions → messages.
fn to_anthropic(mut v: Map<String, Value>) -> Result<Map<String, Value>, TranslateError> {
    if v.get("n").and_then(Value::as_u64).is_some_and(|n| n > 1) {
        return Err(TranslateError::Unsupported("n", "one answer per request"));
    }
    let mut out = Map::new();
    for k in ["model", "stream", "top_p", "top_k"] {
        if let Some(x) = v.remove(k) {
            out.insert(k.into(), x);
        }
    }
    let max = ["max_completion_tokens", "max_tokens"]
        .iter()
        .find_map(|k| v.get(*k).and_then(Value::as_u64))
        .unwrap_or(DEFAULT_MAX_TOKENS);
    out.insert("max_tokens".into(), json!(max));
    if let Some(t) = v.get("temperature").and_then(Value::as_f64) {
        // OpenAI's range is 0–2, Anthropic's 0–1.
        out.insert("temperature".into(), json!(t.min(1.0)));
    }
    match v.remove("stop") {
        Some(Value::String(s)) => {
            out.insert("stop_sequences".into(), json!([s]));
        }
        Some(list @ Value::Array(_)) => {
            out.insert("stop_sequences".into(), list);
        }
        _ => {}
    }
    if let Some(user) = v.get("user").and_then(Value::as_str) {
        out.insert("metadata".into(), json!({ "user_id": user }));
    }
    let (system, messages) = anthropic_messages(v.get("messages"));
    if !system.is_empty() {
        out.insert("system".into(), json!(system.join("\n\n")));
    }
    out.insert("messages".into(), Value::Array(messages));
    if let Some(Value::Array(tools)) = v.get("tools") {
        let tools: Vec<Value> = tools
            .iter()
            .filter(|t| t["type"] == "function")
            .map(|t| {
                let f = &t["function"];
                let mut tool = json!({
                    "name": f["name"],
                    "input_schema": if f["parameters"].is_object() {
                        f["parameters"].clone()
                    } else {
                        json!({"type": "object", "properties": {}})
                    },
                });
                if let Some(d) = f["description"].as_str() {
                    tool["description"] = json!(d);
                }
                tool
            })
            .collect();
        out.insert("tools".into(), Value::Array(tools));
    }
    if let Some(choice) = anthropic_tool_choice(&v) {
        out.insert("tool_choice".into(), choice);
    }
    Ok(out)
}

fn anthropic_tool_choice(v: &Map<String, Value>) -> Option<Value> {
    let mut choice = match v.get("tool_choice") {
        Some(Value::String(s)) if s == "required" => json!({"type": "any"}),
        Some(Value::String(s)) if s == "none" => json!({"type": "none"}),
        Some(Value::Object(o)) => json!({"type": "tool", "name": o.get("function")?.get("name")?}),
        _ if v.get("parallel_tool_calls") == Some(&json!(false)) => json!({"type": "auto"}),
        _ => return None,
    };
    if v.get("parallel_tool_calls") == Some(&json!(false)) && choice["type"] != "none" {
        choice["disable_parallel_tool_use"] = json!(true);
    }
    Some(choice)
}

/// The system prompts, and the conversation as Anthropic messages (consecutive messages of one
/// role merged: tool results and the user's next words share a turn).
fn anthropic_messages(messages: Option<&Value>) -> (Vec<String>, Vec<Value>) {
    let mut system = Vec::new();
    let mut out: Vec<(String, Vec<Value>)> = Vec::new();
    for m in messages.and_then(Value::as_array).into_iter().flatten() {
        let role = m["role"].as_str().unwrap_or("user");
        let (role, blocks) = match role {
            "system" | "developer" => {
                system.push(plain_text(&m["content"]));
                continue;
            }
            "tool" | "function" => (
                "user",
                vec![json!({
                    "type": "tool_result",
                    "tool_use_id": m["tool_call_id"].as_str().unwrap_or(""),
                    "content": plain_text(&m["content"]),
                })],
            ),
            "assistant" => ("assistant", assistant_blocks(m)),
            _ => ("user", content_blocks(&m["content"])),
        };
        match out.last_mut() {
            Some((r, b)) if r == role => b.extend(blocks),
            _ => out.push((role.to_owned(), blocks)),
        }
    }
    let messages = out
        .into_iter()
        .map(|(role, content)| json!({"role": role, "content": content}))
        .collect();
    (system, messages)
}

fn assistant_blocks(m: &Value) -> Vec<Value> {
    let mut blocks: Vec<Value> = content_blocks(&m["content"]);
    for call in m["tool_calls"].as_array().into_iter().flatten() {
        blocks.push(json!({
            "type": "tool_use",
            "id": call["id"],
            "name": call["function"]["name"],
            "input": arguments_object(call["function"]["arguments"].as_str().unwrap_or("")),
        }));
    }
    blocks
}

/// OpenAI message content (a string or parts) as Anthropic content blocks.
fn content_blocks(content: &Value) -> Vec<Value> {
    match content {
        Value::String(s) if s.is_empty() => Vec::new(),
        Value::String(s) => vec![json!({"type": "text", "text": s})],
        Value::Array(parts) => parts.iter().filter_map(content_block).collect(),
        _ => Vec::new(),
    }
}

fn content_block(part: &Value) -> Option<Value> {
    match part["type"].as_str()? {
        "text" => Some(json!({"type": "text", "text": part["text"]})),
        "image_url" => {
            let url = part["image_url"]["url"].as_str()?;
            let source = match url
                .strip_prefix("data:")
                .and_then(|rest| rest.split_once(";base64,"))
            {
                Some((media_type, data)) => {
                    json!({"type": "base64", "media_type": media_type, "data": data})
                }
                None => json!({"type": "url", "url": url}),
            };
            Some(json!({"type": "image", "source": source}))
        }
        _ => None,
    }
}

/// Text of a content value (a string, or the text parts/blocks of a list).
fn plain_text(content: &Value) -> String {
    match content {
        Value::String(s) => s.clone(),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    }
}

/// Messages → chat completions.
fn to_openai(mut v: Map<String, Value>, completion_tokens_field: &str) -> Map<String, Value> {
    let mut out = Map::new();
    for k in ["model", "temperature", "top_p"] {
        if let Some(x) = v.remove(k) {
            out.insert(k.into(), x);
        }
    }
    if let Some(max) = v.remove("max_tokens") {
        out.insert(completion_tokens_field.into(), max);
    }
    if let Some(stop) = v.remove("stop_sequences") {
        out.insert("stop".into(), stop);
    }
    if v.get("stream") == Some(&json!(true)) {
        out.insert("stream".into(), json!(true));
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    const NULL: &Value = &Value::Null;
    if let Some(user) = v.get("metadata").unwrap_or(NULL)["user_id"].as_str() {
        out.insert("user".into(), json!(user));
    }
    let mut messages = Vec::new();
    if let Some(system) = v.get("system") {
        let text = plain_text(system);
        if !text.is_empty() {
            messages.push(json!({"role": "system", "content": text}));
        }
    }
    for m in v
        .get("messages")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        openai_messages(m, &mut messages);
    }
    out.insert("messages".into(), Value::Array(messages));
    if let Some(Value::Array(tools)) = v.get("tools") {
        let tools: Vec<Value> = tools
            .iter()
            .filter(|t| t.get("input_schema").is_some())
            .map(|t| {
                let mut f = json!({"name": t["name"], "parameters": t["input_schema"]});
                if let Some(d) = t["description"].as_str() {
                    f["description"] = json!(d);
                }
                json!({"type": "function", "function": f})
            })
            .collect();
        out.insert("tools".into(), Value::Array(tools));
    }
    let choice = v.get("tool_choice").unwrap_or(NULL);
    let openai_choice = match choice["type"].as_str() {
        Some("any") => Some(json!("required")),
        Some("none") => Some(json!("none")),
        Some("tool") => Some(json!({"type": "function", "function": {"name": choice["name"]}})),
        Some("auto") => Some(json!("auto")),
        _ => None,
    };
    if let Some(c) = openai_choice {
        out.insert("tool_choice".into(), c);
    }
    if choice["disable_parallel_tool_use"] == json!(true) {
        out.insert("parallel_tool_calls".into(), json!(false));
    }
    out
}

/// One Anthropic message as OpenAI messages: tool results become `tool` messages (before the
/// rest of the turn), tool uses the assistant's `tool_calls`.
fn openai_messages(m: &Value, out: &mut Vec<Value>) {
    let role = m["role"].as_str().unwrap_or("user");
    let blocks: Vec<Value> = match &m["content"] {
        Value::String(s) => vec![json!({"type": "text", "text": s})],
        Value::Array(b) => b.clone(),
        _ => Vec::new(),
    };
    let mut parts = Vec::new();
    let mut calls = Vec::new();
    for b in &blocks {
        match b["type"].as_str() {
            Some("text") => parts.push(json!({"type": "text", "text": b["text"]})),
            Some("image") => {
                let s = &b["source"];
                let url = match s["type"].as_str() {
                    Some("base64") => format!(
                        "data:{};base64,{}",
                        s["media_type"].as_str().unwrap_or("image/png"),
                        s["data"].as_str().unwrap_or("")
                    ),
                    _ => s["url"].as_str().unwrap_or("").to_owned(),
                };
                parts.push(json!({"type": "image_url", "image_url": {"url": url}}));
            }
            Some("tool_use") => calls.push(json!({
                "id": b["id"], "type": "function",
                "function": {"name": b["name"], "arguments": b["input"].to_string()},
            })),
            Some("tool_result") => out.push(json!({
                "role": "tool",
                "tool_call_id": b["tool_use_id"],
                "content": plain_text(&b["content"]),
            })),
            _ => {}
        }
    }
    let only_text = parts.iter().all(|p| p["type"] == "text");
    let content = if parts.is_empty() {
        Value::Null
    } else if only_text || role == "assistant" {
        json!(plain_text(&Value::Array(parts)))
    } else {
        Value::Array(parts)
    };
    if role == "assistant" {
        let mut msg = json!({"role": "assistant", "content": content});
        if !calls.is_empty() {
            msg["tool_calls"] = Value::Array(calls);
        }
        out.push(msg);
    } else if !content.is_null() {
        out.push(json!({"role": "user", "content": content}));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translate(from: Format, to: Format, v: Value) -> Value {
        let out = request(from, to, v.to_string().as_bytes(), Some("m2"), "max_tokens").unwrap();
        serde_json::from_slice(&out).unwrap()
    }

    #[test]
    fn chat_with_tools_becomes_messages() {
        let v = translate(
            Format::OpenAi,
            Format::Anthropic,
            json!({
                "model": "gpt-4o", "temperature": 1.5, "stop": "END", "stream": true,
                "parallel_tool_calls": false, "tool_choice": "required",
                "messages": [
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": [{"type": "text", "text": "Weather?"},
                        {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}}]},
                    {"role": "assistant", "content": null, "tool_calls": [{"id": "call_1",
                        "type": "function", "function": {"name": "weather", "arguments": "{\"city\":\"Oslo\"}"}}]},
                    {"role": "tool", "tool_call_id": "call_1", "content": "rain"},
                    {"role": "user", "content": "Thanks"}],
                "tools": [{"type": "function", "function": {"name": "weather",
                    "description": "Forecast", "parameters": {"type": "object"}}}]
            }),
        );
        assert_eq!(v["model"], "m2");
        assert_eq!(v["max_tokens"], 4096);
        assert_eq!(v["temperature"], 1.0);
        assert_eq!(v["stop_sequences"], json!(["END"]));
        assert_eq!(v["system"], "Be brief.");
        assert_eq!(v["stream"], true);
        let m = v["messages"].as_array().unwrap();
        assert_eq!(m.len(), 3, "{m:?}");
        assert_eq!(m[0]["content"][1]["source"]["media_type"], "image/png");
        assert_eq!(m[1]["content"][0]["type"], "tool_use");
        assert_eq!(m[1]["content"][0]["input"]["city"], "Oslo");
        assert_eq!(m[2]["content"][0]["type"], "tool_result");
        assert_eq!(m[2]["content"][0]["tool_use_id"], "call_1");
        assert_eq!(m[2]["content"][1]["text"], "Thanks");
        assert_eq!(v["tools"][0]["input_schema"]["type"], "object");
        assert_eq!(
            v["tool_choice"],
            json!({"type": "any", "disable_parallel_tool_use": true})
        );
    }

    #[test]
    fn messages_with_tools_become_chat() {
        let v = translate(
            Format::Anthropic,
            Format::OpenAi,
            json!({
                "model": "claude", "max_tokens": 100, "system": [{"type": "text", "text": "Sys"}],
                "stream": true, "tool_choice": {"type": "tool", "name": "weather"},
                "messages": [
                    {"role": "user", "content": "Weather?"},
                    {"role": "assistant", "content": [{"type": "text", "text": "Checking"},
                        {"type": "tool_use", "id": "tu_1", "name": "weather", "input": {"city": "Oslo"}}]},
                    {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tu_1",
                        "content": [{"type": "text", "text": "rain"}]}]}],
                "tools": [{"name": "weather", "input_schema": {"type": "object"}}]
            }),
        );
        assert_eq!(v["max_tokens"], 100);
        assert_eq!(v["stream_options"]["include_usage"], true);
        let m = v["messages"].as_array().unwrap();
        assert_eq!(m[0], json!({"role": "system", "content": "Sys"}));
        assert_eq!(m[1], json!({"role": "user", "content": "Weather?"}));
        assert_eq!(m[2]["content"], "Checking");
        assert_eq!(
            m[2]["tool_calls"][0]["function"]["arguments"],
            "{\"city\":\"Oslo\"}"
        );
        assert_eq!(
            m[3],
            json!({"role": "tool", "tool_call_id": "tu_1", "content": "rain"})
        );
        assert_eq!(m.len(), 4);
        assert_eq!(v["tools"][0]["function"]["name"], "weather");
        assert_eq!(v["tool_choice"]["function"]["name"], "weather");
    }

    #[test]
    fn same_api_changes_only_the_model() {
        let body = br#"{"model":"a","messages":[],"x":1}"#;
        let same = request(Format::OpenAi, Format::OpenAi, body, None, "max_tokens").unwrap();
        assert_eq!(same, body);
        let v: Value = serde_json::from_slice(
            &request(
                Format::OpenAi,
                Format::OpenAi,
                body,
                Some("b"),
                "max_tokens",
            )
            .unwrap(),
        )
        .unwrap();
        assert_eq!(v, json!({"model": "b", "messages": [], "x": 1}));
        assert_eq!(
            request(Format::OpenAi, Format::Anthropic, b"[1]", None, "x"),
            Err(TranslateError::NotJson)
        );
    }
}
