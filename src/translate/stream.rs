//! Event streams, translated event by event as they arrive (nothing waits for the end).

use serde_json::{json, Value};

use super::answer::{anthropic_usage, openai_usage};
use super::{finish_reason, stop_reason, unix_now, Format};

/// An event longer than this is dropped (a stream that never ends its event).
const MAX_EVENT: usize = 4 * 1024 * 1024;

/// Translates one answer's event stream from the provider's API to the client's.
#[derive(Debug)]
pub struct Stream {
    from: Format,
    buf: Vec<u8>,
    /// The answer's id and model, from its first event.
    id: String,
    model: Value,
    started: bool,
    /// Anthropic → OpenAI: content block index → tool call index.
    tools: Vec<(u64, usize)>,
    /// OpenAI → Anthropic: the open content block (index, is a tool use) and the next index.
    open: Option<(usize, bool)>,
    next_block: usize,
    stop: Option<&'static str>,
    usage: Value,
    done: bool,
}

impl Stream {
    /// A stream in `from`'s API, translated to the other one.
    pub fn new(from: Format) -> Stream {
        Stream {
            from,
            buf: Vec::new(),
            id: String::new(),
            model: Value::Null,
            started: false,
            tools: Vec::new(),
            open: None,
            next_block: 0,
            stop: None,
            usage: Value::Null,
            done: false,
        }
    }

    /// The translated events of the complete events `chunk` ends (the rest waits).
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<u8> {
        self.buf.extend_from_slice(chunk);
        let mut out = Vec::new();
        while let Some((end, sep)) = event_end(&self.buf) {
            let event: Vec<u8> = self.buf.drain(..end + sep).collect();
            self.event(&event[..end], &mut out);
        }
        if self.buf.len() > MAX_EVENT {
            self.buf.clear();
        }
        out
    }

    /// What the end of the stream still owes the client (a last event without a blank line,
    /// the closing events a cut stream never sent are not invented).
    pub fn finish(&mut self) -> Vec<u8> {
        let mut out = Vec::new();
        if !self.buf.is_empty() {
            let event = std::mem::take(&mut self.buf);
            self.event(&event, &mut out);
        }
        out
    }

    fn event(&mut self, raw: &[u8], out: &mut Vec<u8>) {
        let text = String::from_utf8_lossy(raw);
        let mut data = String::new();
        for line in text.lines() {
            if let Some(d) = line.strip_prefix("data:") {
                if !data.is_empty() {
                    data.push('\n');
                }
                data.push_str(d.strip_prefix(' ').unwrap_or(d));
            }
        }
        if data.is_empty() {
            return;
        }
        match self.from {
            Format::Anthropic => self.anthropic_event(&data, out),
            Format::OpenAi => self.openai_chunk(&data, out),
        }
    }

    /// Anthropic events → chat completion chunks.
    fn anthropic_event(&mut self, data: &str, out: &mut Vec<u8>) {
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            return;
        };
        match v["type"].as_str().unwrap_or("") {
            "message_start" => {
                let m = &v["message"];
                self.id = format!("chatcmpl-{}", m["id"].as_str().unwrap_or(""));
                self.model = m["model"].clone();
                self.usage = m["usage"].clone();
                self.chunk(json!({"role": "assistant", "content": ""}), None, out);
            }
            "content_block_start" if v["content_block"]["type"] == "tool_use" => {
                let b = &v["content_block"];
                let call = self.tools.len();
                self.tools.push((v["index"].as_u64().unwrap_or(0), call));
                let delta = json!({"tool_calls": [{"index": call, "id": b["id"], "type": "function",
                    "function": {"name": b["name"], "arguments": ""}}]});
                self.chunk(delta, None, out);
            }
            "content_block_delta" => {
                let d = &v["delta"];
                let delta = match d["type"].as_str() {
                    Some("text_delta") => json!({"content": d["text"]}),
                    Some("input_json_delta") => {
                        let index = v["index"].as_u64().unwrap_or(0);
                        let Some(&(_, call)) = self.tools.iter().find(|(b, _)| *b == index) else {
                            return;
                        };
                        json!({"tool_calls": [{"index": call,
                            "function": {"arguments": d["partial_json"]}}]})
                    }
                    _ => return,
                };
                self.chunk(delta, None, out);
            }
            "message_delta" => {
                if let Some(u) = v["usage"].as_object() {
                    for (k, n) in u {
                        self.usage[k] = n.clone();
                    }
                }
                let reason = finish_reason(v["delta"]["stop_reason"].as_str().unwrap_or(""));
                self.chunk(json!({}), Some(reason), out);
            }
            "message_stop" => {
                let last = json!({"id": self.id, "object": "chat.completion.chunk",
                    "created": unix_now(), "model": self.model, "choices": [],
                    "usage": openai_usage(&self.usage)});
                write_data(out, &last);
                out.extend_from_slice(b"data: [DONE]\n\n");
            }
            "error" => {
                write_data(
                    out,
                    &json!({"error": {"message": v["error"]["message"],
                    "type": v["error"]["type"], "param": null, "code": null}}),
                );
            }
            _ => {}
        }
    }

    fn chunk(&self, delta: Value, finish: Option<&str>, out: &mut Vec<u8>) {
        let c = json!({"id": self.id, "object": "chat.completion.chunk", "created": unix_now(),
            "model": self.model,
            "choices": [{"index": 0, "delta": delta, "logprobs": null, "finish_reason": finish}]});
        write_data(out, &c);
    }

    /// Chat completion chunks → Anthropic events.
    fn openai_chunk(&mut self, data: &str, out: &mut Vec<u8>) {
        if data.trim() == "[DONE]" {
            self.close(out);
            return;
        }
        let Ok(v) = serde_json::from_str::<Value>(data) else {
            return;
        };
        if v["error"].is_object() {
            write_event(
                out,
                "error",
                &json!({"type": "error", "error": {
                "type": v["error"]["type"].as_str().unwrap_or("api_error"),
                "message": v["error"]["message"]}}),
            );
            return;
        }
        if !self.started {
            self.started = true;
            let message = json!({"id": format!("msg_{}", v["id"].as_str().unwrap_or("")),
                "type": "message", "role": "assistant", "model": v["model"], "content": [],
                "stop_reason": null, "stop_sequence": null,
                "usage": {"input_tokens": 0, "output_tokens": 0}});
            write_event(
                out,
                "message_start",
                &json!({"type": "message_start", "message": message}),
            );
        }
        if v["usage"].is_object() {
            self.usage = anthropic_usage(&v["usage"]);
        }
        let choice = &v["choices"][0];
        let delta = &choice["delta"];
        if let Some(text) = delta["content"].as_str().filter(|t| !t.is_empty()) {
            if self.open.is_none_or(|(_, tool)| tool) {
                self.start_block(out, json!({"type": "text", "text": ""}), false);
            }
            let index = self.open.map_or(0, |(i, _)| i);
            write_event(
                out,
                "content_block_delta",
                &json!({"type": "content_block_delta",
                "index": index, "delta": {"type": "text_delta", "text": text}}),
            );
        }
        for call in delta["tool_calls"].as_array().into_iter().flatten() {
            if let Some(id) = call["id"].as_str() {
                let block = json!({"type": "tool_use", "id": id,
                    "name": call["function"]["name"], "input": {}});
                self.start_block(out, block, true);
            }
            if let Some(args) = call["function"]["arguments"]
                .as_str()
                .filter(|a| !a.is_empty())
            {
                let index = self.open.map_or(0, |(i, _)| i);
                write_event(
                    out,
                    "content_block_delta",
                    &json!({"type": "content_block_delta",
                    "index": index, "delta": {"type": "input_json_delta", "partial_json": args}}),
                );
            }
        }
        if let Some(f) = choice["finish_reason"].as_str() {
            self.stop = Some(stop_reason(f));
        }
    }

    fn start_block(&mut self, out: &mut Vec<u8>, block: Value, tool: bool) {
        self.stop_block(out);
        let index = self.next_block;
        self.next_block += 1;
        self.open = Some((index, tool));
        write_event(
            out,
            "content_block_start",
            &json!({"type": "content_block_start",
            "index": index, "content_block": block}),
        );
    }

    fn stop_block(&mut self, out: &mut Vec<u8>) {
        if let Some((index, _)) = self.open.take() {
            write_event(
                out,
                "content_block_stop",
                &json!({"type": "content_block_stop", "index": index}),
            );
        }
    }

    /// The end of an OpenAI stream: the open block closed, the stop reason and usage sent.
    fn close(&mut self, out: &mut Vec<u8>) {
        if self.done || !self.started {
            return;
        }
        self.done = true;
        self.stop_block(out);
        let mut usage = self.usage.clone();
        if !usage.is_object() {
            usage = json!({"output_tokens": 0});
        }
        write_event(
            out,
            "message_delta",
            &json!({"type": "message_delta",
            "delta": {"stop_reason": self.stop.unwrap_or("end_turn"), "stop_sequence": null},
            "usage": usage}),
        );
        write_event(out, "message_stop", &json!({"type": "message_stop"}));
    }
}

/// Where the first complete event ends, and the length of its blank-line separator.
fn event_end(buf: &[u8]) -> Option<(usize, usize)> {
    let lf = memchr::memmem::find(buf, b"\n\n").map(|i| (i, 2));
    let crlf = memchr::memmem::find(buf, b"\r\n\r\n").map(|i| (i, 4));
    match (lf, crlf) {
        (Some(a), Some(b)) => Some(if a.0 < b.0 { a } else { b }),
        (a, b) => a.or(b),
    }
}

fn write_data(out: &mut Vec<u8>, v: &Value) {
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(v.to_string().as_bytes());
    out.extend_from_slice(b"\n\n");
}

fn write_event(out: &mut Vec<u8>, name: &str, v: &Value) {
    out.extend_from_slice(b"event: ");
    out.extend_from_slice(name.as_bytes());
    out.extend_from_slice(b"\n");
    write_data(out, v);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(out: &[u8]) -> Vec<Value> {
        String::from_utf8_lossy(out)
            .lines()
            .filter_map(|l| l.strip_prefix("data: "))
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str(d).unwrap())
            .collect()
    }

    #[test]
    fn anthropic_stream_becomes_chunks_across_any_split() {
        let input = concat!(
            "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"id\":\"m1\",\"model\":\"claude\",\"usage\":{\"input_tokens\":7,\"output_tokens\":1}}}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
            "event: ping\ndata: {\"type\":\"ping\"}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"Hi\"}}\n\n",
            "event: content_block_start\ndata: {\"type\":\"content_block_start\",\"index\":1,\"content_block\":{\"type\":\"tool_use\",\"id\":\"tu_1\",\"name\":\"f\",\"input\":{}}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"{\\\"a\\\":\"}}\n\n",
            "event: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"index\":1,\"delta\":{\"type\":\"input_json_delta\",\"partial_json\":\"1}\"}}\n\n",
            "event: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"tool_use\"},\"usage\":{\"output_tokens\":9}}\n\n",
            "event: message_stop\ndata: {\"type\":\"message_stop\"}\n\n",
        );
        for split in [1, 7, 64, input.len()] {
            let mut s = Stream::new(Format::Anthropic);
            let mut out = Vec::new();
            for piece in input.as_bytes().chunks(split) {
                out.extend(s.feed(piece));
            }
            out.extend(s.finish());
            assert!(out.ends_with(b"data: [DONE]\n\n"));
            let e = events(&out);
            assert_eq!(e[0]["choices"][0]["delta"]["role"], "assistant");
            assert_eq!(e[1]["choices"][0]["delta"]["content"], "Hi");
            let call = &e[2]["choices"][0]["delta"]["tool_calls"][0];
            assert_eq!(
                (&call["id"], &call["function"]["name"]),
                (&json!("tu_1"), &json!("f"))
            );
            let args: String = e[3..5]
                .iter()
                .map(|c| {
                    c["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                        .as_str()
                        .unwrap()
                })
                .collect();
            assert_eq!(args, "{\"a\":1}");
            assert_eq!(e[5]["choices"][0]["finish_reason"], "tool_calls");
            assert_eq!(e[6]["usage"]["prompt_tokens"], 7);
            assert_eq!(e[6]["usage"]["completion_tokens"], 9);
        }
    }

    #[test]
    fn openai_chunks_become_anthropic_events() {
        let chunk = |delta: Value, finish: Value| {
            format!(
                "data: {}\n\n",
                json!({"id": "c1", "model": "gpt", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
            )
        };
        let input = [
            chunk(json!({"role": "assistant", "content": ""}), Value::Null),
            chunk(json!({"content": "Hel"}), Value::Null),
            chunk(json!({"content": "lo"}), Value::Null),
            chunk(json!({"tool_calls": [{"index": 0, "id": "call_1", "type": "function", "function": {"name": "f", "arguments": ""}}]}), Value::Null),
            chunk(json!({"tool_calls": [{"index": 0, "function": {"arguments": "{\"a\":1}"}}]}), Value::Null),
            chunk(json!({}), json!("tool_calls")),
            format!("data: {}\n\n", json!({"id": "c1", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 3}})),
            "data: [DONE]\n\n".to_owned(),
        ]
        .concat();
        let mut s = Stream::new(Format::OpenAi);
        let out = s.feed(input.as_bytes());
        let text = String::from_utf8_lossy(&out);
        let names: Vec<&str> = text
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        let e = events(&out);
        assert_eq!(e[5]["content_block"]["name"], "f");
        assert_eq!(e[5]["index"], 1);
        assert_eq!(e[6]["delta"]["partial_json"], "{\"a\":1}");
        assert_eq!(e[8]["delta"]["stop_reason"], "tool_use");
        assert_eq!(e[8]["usage"]["input_tokens"], 5);
        assert_eq!(e[8]["usage"]["output_tokens"], 3);
    }
}
