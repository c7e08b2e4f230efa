//! Token usage read from a response as it streams to the client, never delaying a chunk:
//! JSON bodies are copied aside (bounded) and parsed at the end; SSE bodies are split into lines
//! across chunk boundaries and only `data:` lines mentioning usage are parsed. Understands
//! OpenAI chat completions (JSON and the final `include_usage` chunk), the Responses API
//! (`response.completed`), Anthropic messages (`message_start` + `message_delta`) and Gemini
//! (`usageMetadata`, in the JSON answer or in each `alt=sse` event, the last one complete).

use serde::Serialize;
use serde_json::Value;

/// JSON responses larger than this are not parsed for usage.
const MAX_JSON: usize = 4 * 1024 * 1024;
/// An SSE line longer than this is skipped.
const MAX_LINE: usize = 1024 * 1024;

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Usage {
    pub input: u64,
    pub output: u64,
    pub cache_read: u64,
    pub cache_write: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Json,
    Sse,
    Other,
}

#[derive(Debug)]
pub struct UsageParser {
    kind: Kind,
    buf: Vec<u8>,
    overflow: bool,
    usage: Option<Usage>,
}

impl UsageParser {
    /// From the response's `Content-Type`.
    pub fn new(content_type: &str) -> UsageParser {
        let ct = content_type.to_ascii_lowercase();
        let kind = if ct.starts_with("text/event-stream") {
            Kind::Sse
        } else if ct.starts_with("application/json") || ct.contains("+json") {
            Kind::Json
        } else {
            Kind::Other
        };
        UsageParser {
            kind,
            buf: Vec::new(),
            overflow: false,
            usage: None,
        }
    }

    pub fn is_stream(&self) -> bool {
        self.kind == Kind::Sse
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        match self.kind {
            Kind::Other => {}
            Kind::Json => {
                if self.buf.len() + chunk.len() > MAX_JSON {
                    self.overflow = true;
                    self.buf = Vec::new();
                } else if !self.overflow {
                    self.buf.extend_from_slice(chunk);
                }
            }
            Kind::Sse => {
                let mut rest = chunk;
                while let Some(nl) = memchr::memchr(b'\n', rest) {
                    if self.overflow {
                        self.overflow = false;
                    } else if self.buf.is_empty() {
                        // A whole line in this chunk (most of them): read in place.
                        self.line(&rest[..nl]);
                    } else {
                        // The end of a line begun in an earlier chunk; the buffer is kept.
                        self.buf.extend_from_slice(&rest[..nl]);
                        let line = std::mem::take(&mut self.buf);
                        self.line(&line);
                        self.buf = line;
                        self.buf.clear();
                    }
                    rest = &rest[nl + 1..];
                }
                if !self.overflow {
                    if self.buf.len() + rest.len() > MAX_LINE {
                        self.overflow = true;
                        self.buf.clear();
                    } else {
                        self.buf.extend_from_slice(rest);
                    }
                }
            }
        }
    }

    /// The usage seen, after the body ended (or was cut).
    pub fn finish(&mut self) -> Option<Usage> {
        match self.kind {
            Kind::Json if !self.overflow => {
                // Only `usage` is materialised; the rest of the document is skipped.
                #[derive(serde::Deserialize)]
                struct WithUsage {
                    #[serde(default)]
                    usage: Value,
                    #[serde(default, rename = "usageMetadata")]
                    usage_metadata: Value,
                }
                if let Ok(v) = serde_json::from_slice::<WithUsage>(&self.buf) {
                    self.apply(&v.usage);
                    self.apply_gemini(&v.usage_metadata);
                }
                self.buf = Vec::new();
            }
            Kind::Sse if !self.buf.is_empty() => {
                let line = std::mem::take(&mut self.buf);
                self.line(&line);
            }
            _ => {}
        }
        self.usage
    }

    fn line(&mut self, line: &[u8]) {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        let Some(data) = line.strip_prefix(b"data:") else {
            return;
        };
        // Cheap filter: only events that carry usage are parsed.
        if !mentions_usage(data) {
            return;
        }
        let Ok(v) = serde_json::from_slice::<Value>(data) else {
            return;
        };
        match v["type"].as_str() {
            Some("response.completed") => self.apply(&v["response"]["usage"]),
            Some("message_start") => self.apply(&v["message"]["usage"]),
            _ if v["usageMetadata"].is_object() => self.apply_gemini(&v["usageMetadata"]),
            _ => self.apply(&v["usage"]),
        }
    }

    /// Gemini's `usageMetadata` (each streamed event carries the running totals): the prompt
    /// (cached content included, as OpenAI counts it) is input, the candidates and the model's
    /// thoughts are output (both are billed as output).
    fn apply_gemini(&mut self, u: &Value) {
        if !u.is_object() {
            return;
        }
        let usage = self.usage.get_or_insert_with(Usage::default);
        let n = |field: &str| u[field].as_u64();
        if let Some(n) = n("promptTokenCount") {
            usage.input = n;
        }
        if n("candidatesTokenCount").is_some() || n("thoughtsTokenCount").is_some() {
            usage.output =
                n("candidatesTokenCount").unwrap_or(0) + n("thoughtsTokenCount").unwrap_or(0);
        }
        if let Some(n) = n("cachedContentTokenCount") {
            usage.cache_read = n;
        }
    }

    /// Merges a usage object of any of the three shapes; absent fields keep earlier values
    /// (Anthropic sends input in `message_start` and the running output in `message_delta`).
    fn apply(&mut self, u: &Value) {
        if !u.is_object() {
            return;
        }
        let usage = self.usage.get_or_insert_with(Usage::default);
        let pick = |paths: &[&[&str]]| {
            paths.iter().find_map(|path| {
                let mut v = u;
                for p in *path {
                    v = &v[*p];
                }
                v.as_u64()
            })
        };
        if let Some(n) = pick(&[&["prompt_tokens"], &["input_tokens"]]) {
            usage.input = n;
        }
        if let Some(n) = pick(&[&["completion_tokens"], &["output_tokens"]]) {
            usage.output = n;
        }
        if let Some(n) = pick(&[
            &["prompt_tokens_details", "cached_tokens"],
            &["input_tokens_details", "cached_tokens"],
            &["cache_read_input_tokens"],
        ]) {
            usage.cache_read = n;
        }
        if let Some(n) = pick(&[&["cache_creation_input_tokens"]]) {
            usage.cache_write = n;
        }
    }
}

/// Whether an event mentions `usage` (SIMD substring search, the searcher built once).
fn mentions_usage(data: &[u8]) -> bool {
    static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"usage"));
    FINDER.find(data).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const ANTHROPIC: &str = "event: message_start\ndata: {\"type\":\"message_start\",\"message\":{\"usage\":{\"input_tokens\":25,\"output_tokens\":1,\"cache_creation_input_tokens\":7,\"cache_read_input_tokens\":3}}}\n\nevent: content_block_delta\ndata: {\"type\":\"content_block_delta\",\"delta\":{\"text\":\"usage is fine\"}}\n\nevent: message_delta\ndata: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\"},\"usage\":{\"output_tokens\":15}}\n\nevent: message_stop\ndata: {\"type\":\"message_stop\"}\n\n";
    const OPENAI: &str = "data: {\"choices\":[{\"delta\":{\"content\":\"hi\"}}]}\n\ndata: {\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":4,\"prompt_tokens_details\":{\"cached_tokens\":2}}}\n\ndata: [DONE]\n\n";
    const RESPONSES: &str = "event: response.created\ndata: {\"type\":\"response.created\",\"response\":{\"usage\":null}}\n\nevent: response.completed\ndata: {\"type\":\"response.completed\",\"response\":{\"usage\":{\"input_tokens\":11,\"output_tokens\":6,\"input_tokens_details\":{\"cached_tokens\":1}}}}\n\n";

    const GEMINI_SSE: &str = "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"usage \"}]}}],\"usageMetadata\":{\"promptTokenCount\":12,\"totalTokenCount\":12}}\r\n\r\ndata: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"done\"}]},\"finishReason\":\"STOP\"}],\"usageMetadata\":{\"promptTokenCount\":12,\"candidatesTokenCount\":5,\"thoughtsTokenCount\":3,\"cachedContentTokenCount\":4,\"totalTokenCount\":20}}\r\n\r\n";

    #[test]
    fn gemini_usage_metadata_in_json_and_streams() {
        let json = br#"{"candidates":[{"content":{"parts":[{"text":"hi"}]}}],"usageMetadata":{"promptTokenCount":7,"candidatesTokenCount":2,"totalTokenCount":9},"modelVersion":"gemini-2.5-flash"}"#;
        let want = Usage {
            input: 7,
            output: 2,
            cache_read: 0,
            cache_write: 0,
        };
        assert_eq!(
            parse("application/json; charset=UTF-8", &[json]),
            Some(want)
        );
        let want = Usage {
            input: 12,
            output: 8,
            cache_read: 4,
            cache_write: 0,
        };
        let sse = GEMINI_SSE.as_bytes();
        assert_eq!(parse("text/event-stream", &[sse]), Some(want));
        for cut in 1..sse.len() {
            assert_eq!(
                parse("text/event-stream", &[&sse[..cut], &sse[cut..]]),
                Some(want),
                "{cut}"
            );
        }
    }

    fn parse(ct: &str, chunks: &[&[u8]]) -> Option<Usage> {
        let mut p = UsageParser::new(ct);
        for c in chunks {
            p.feed(c);
        }
        p.finish()
    }

    #[test]
    fn the_three_stream_shapes() {
        let sse = "text/event-stream; charset=utf-8";
        assert_eq!(
            parse(sse, &[ANTHROPIC.as_bytes()]),
            Some(Usage {
                input: 25,
                output: 15,
                cache_read: 3,
                cache_write: 7
            })
        );
        assert_eq!(
            parse(sse, &[OPENAI.as_bytes()]),
            Some(Usage {
                input: 9,
                output: 4,
                cache_read: 2,
                cache_write: 0
            })
        );
        assert_eq!(
            parse(sse, &[RESPONSES.as_bytes()]),
            Some(Usage {
                input: 11,
                output: 6,
                cache_read: 1,
                cache_write: 0
            })
        );
        assert_eq!(parse(sse, &[b"data: {\"choices\":[]}\n\n"]), None);
    }

    #[test]
    fn json_bodies_and_crlf() {
        let body =
            br#"{"id":"x","usage":{"prompt_tokens":5,"completion_tokens":8,"total_tokens":13}}"#;
        assert_eq!(
            parse("application/json", &[&body[..10], &body[10..]]),
            Some(Usage {
                input: 5,
                output: 8,
                cache_read: 0,
                cache_write: 0
            })
        );
        let crlf = OPENAI.replace('\n', "\r\n");
        assert_eq!(
            parse("text/event-stream", &[crlf.as_bytes()]).map(|u| u.output),
            Some(4)
        );
        assert_eq!(parse("text/plain", &[body]), None);
    }

    #[test]
    fn every_two_way_split_of_every_shape() {
        for body in [ANTHROPIC, OPENAI, RESPONSES] {
            let whole = parse("text/event-stream", &[body.as_bytes()]);
            for cut in 0..=body.len() {
                let (a, b) = body.as_bytes().split_at(cut);
                assert_eq!(parse("text/event-stream", &[a, b]), whole, "cut at {cut}");
            }
        }
    }

    proptest! {
        #[test]
        fn any_chunking_gives_the_same_usage(cuts in proptest::collection::vec(0usize..400, 0..12)) {
            let body = ANTHROPIC.as_bytes();
            let mut points: Vec<usize> = cuts.into_iter().map(|c| c.min(body.len())).collect();
            points.sort_unstable();
            let mut chunks = Vec::new();
            let mut last = 0;
            for p in points {
                chunks.push(&body[last..p]);
                last = p;
            }
            chunks.push(&body[last..]);
            prop_assert_eq!(parse("text/event-stream", &chunks), Some(Usage { input: 25, output: 15, cache_read: 3, cache_write: 7 }));
        }
    }
}
