//! Finding the request's top-level `"model"` in a JSON body as it streams through, chunk by
//! chunk, without buffering it: a byte-at-a-time state machine (depth, strings, escapes) that
//! keeps only the model value (at most [`MAX_MODEL`] bytes). SDKs often send `model` after
//! `messages`, so the whole body is scanned — linear work, at most [`MAX_SCAN`] bytes.

/// The model of a body too large to scan whole: a later `model` key could name any model, so
/// it is priced at the default price, else the most expensive one (`budgets::Prices`).
pub const UNREAD: &str = "(unread)";

/// Longest model name kept.
pub const MAX_MODEL: usize = 128;
/// Bodies beyond this are not scanned further (the model is then unknown).
pub const MAX_SCAN: usize = 16 * 1024 * 1024;

#[derive(Debug, Default)]
pub struct ModelScanner {
    depth: u32,
    in_string: bool,
    escaped: bool,
    /// Collecting a top-level key or the model value.
    collecting: Option<Vec<u8>>,
    /// The last top-level key was `model`; waiting for its value.
    after_model_key: bool,
    /// Inside the model's string value.
    in_model_value: bool,
    /// The string being read is a key (depth 1, before `:`).
    expect_key: bool,
    scanned: usize,
    found: Option<String>,
    done: bool,
    /// Also read the top-level `max_tokens` (or `max_completion_tokens`, `max_output_tokens`):
    /// a token limit reserves it.
    want_max: bool,
    /// The last top-level key was one of those; its digits so far.
    after_max_key: bool,
    digits: Option<u64>,
    max_tokens: Option<u64>,
}

impl ModelScanner {
    pub fn new() -> ModelScanner {
        ModelScanner::default()
    }

    /// A scanner that also reads the request's output-token cap.
    pub fn with_max_tokens() -> ModelScanner {
        ModelScanner {
            want_max: true,
            ..ModelScanner::default()
        }
    }

    /// A scanner that already knows the model (an API that names it in the path, as Gemini's
    /// `/models/{model}:generateContent`) and reads nothing of the body.
    pub fn known(model: String) -> ModelScanner {
        ModelScanner {
            found: Some(model),
            done: true,
            ..ModelScanner::default()
        }
    }

    pub fn model(&self) -> Option<&str> {
        self.found.as_deref()
    }

    /// The top-level `max_tokens`, `max_completion_tokens` or `max_output_tokens`, when the
    /// scanner was made `with_max_tokens` and the body had one.
    pub fn max_tokens(&self) -> Option<u64> {
        self.max_tokens
    }

    fn end_number(&mut self) {
        if let Some(n) = self.digits.take() {
            self.max_tokens = Some(n);
        }
        self.after_max_key = false;
    }

    /// Past the scan a later `model` key could name another model (and another cap): both are
    /// unknown, the model `UNREAD`.
    fn give_up(&mut self) {
        self.done = true;
        self.found = Some(UNREAD.to_owned());
        self.max_tokens = None;
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        if self.done {
            return;
        }
        for &b in chunk {
            self.scanned += 1;
            if self.scanned > MAX_SCAN {
                return self.give_up();
            }
            if self.in_string {
                if self.escaped {
                    self.escaped = false;
                    self.push(b);
                    continue;
                }
                match b {
                    b'\\' => {
                        self.escaped = true;
                        self.push(b);
                    }
                    b'"' => {
                        self.in_string = false;
                        self.end_string();
                        if self.done {
                            return;
                        }
                    }
                    _ => self.push(b),
                }
                continue;
            }
            match b {
                b'"' => {
                    self.in_string = true;
                    if self.depth == 1 && self.expect_key {
                        self.collecting = Some(Vec::new());
                    } else if self.depth == 1 && self.after_model_key {
                        self.in_model_value = true;
                        self.collecting = Some(Vec::new());
                    }
                }
                b'{' | b'[' => {
                    if self.depth == 1 {
                        self.after_model_key = false;
                    }
                    self.depth += 1;
                    if self.depth == 1 && b == b'{' {
                        self.expect_key = true;
                    }
                }
                b'}' | b']' => {
                    if self.depth == 1 && self.after_max_key {
                        self.end_number();
                    }
                    self.depth = self.depth.saturating_sub(1);
                    if self.depth == 0 {
                        self.done = true;
                        return;
                    }
                }
                b',' if self.depth == 1 => {
                    if self.after_max_key {
                        self.end_number();
                    }
                    self.expect_key = true;
                    self.after_model_key = false;
                }
                b':' if self.depth == 1 => self.expect_key = false,
                b'0'..=b'9' if self.depth == 1 && self.after_max_key => {
                    let d = u64::from(b - b'0');
                    let n = self.digits.unwrap_or(0);
                    self.digits = Some(n.saturating_mul(10).saturating_add(d));
                }
                _ => {}
            }
        }
    }

    fn push(&mut self, b: u8) {
        // Room for escapes: `\u006f` is six bytes of one character.
        if let Some(buf) = self.collecting.as_mut() {
            if buf.len() < 6 * MAX_MODEL + 8 {
                buf.push(b);
            }
        }
    }

    fn end_string(&mut self) {
        let Some(buf) = self.collecting.take() else {
            return;
        };
        // Read as JSON reads it: `"gpt-4\u006f"` is `gpt-4o` to the upstream, and so is the key
        // `"mod\u0065l"`. A repeated key counts as its last value, as most parsers take it.
        let text = unescape(&buf);
        if self.in_model_value {
            self.in_model_value = false;
            self.after_model_key = false;
            self.found = text.filter(|t| t.len() <= MAX_MODEL);
        } else if self.expect_key {
            let key = text.as_deref().map(str::as_bytes).unwrap_or_default();
            self.after_model_key = key == b"model";
            self.after_max_key = self.want_max
                && matches!(
                    key,
                    b"max_tokens" | b"max_completion_tokens" | b"max_output_tokens"
                );
        }
    }
}

/// A JSON string's contents (between the quotes) as the text they stand for; `None` when the
/// escapes are invalid or the bytes are not UTF-8 (the value is then unknown).
fn unescape(raw: &[u8]) -> Option<String> {
    if !raw.contains(&b'\\') {
        return std::str::from_utf8(raw).ok().map(str::to_owned);
    }
    let mut quoted = Vec::with_capacity(raw.len() + 2);
    quoted.push(b'"');
    quoted.extend_from_slice(raw);
    quoted.push(b'"');
    serde_json::from_slice(&quoted).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn scan(body: &str) -> Option<String> {
        let mut s = ModelScanner::new();
        s.feed(body.as_bytes());
        s.model().map(str::to_owned)
    }

    #[test]
    fn reads_the_output_token_cap_when_asked_in_any_chunking() {
        let body = r#"{"messages":[{"role":"user","content":"max_tokens: 7","max_tokens":9}],"max_tokens": 1024,"model":"gpt-4o","stream":true}"#;
        for split in 0..body.len() {
            let mut s = ModelScanner::with_max_tokens();
            s.feed(&body.as_bytes()[..split]);
            s.feed(&body.as_bytes()[split..]);
            assert_eq!(
                (s.model(), s.max_tokens()),
                (Some("gpt-4o"), Some(1024)),
                "{split}"
            );
        }
        let mut last = ModelScanner::with_max_tokens();
        last.feed(br#"{"model":"claude","max_completion_tokens":77}"#);
        assert_eq!(
            (last.model(), last.max_tokens()),
            (Some("claude"), Some(77))
        );
        let mut plain = ModelScanner::new();
        plain.feed(br#"{"max_tokens":5,"model":"m"}"#);
        assert_eq!((plain.model(), plain.max_tokens()), (Some("m"), None));
    }

    #[test]
    fn a_known_model_reads_nothing() {
        let mut known = ModelScanner::known("m".into());
        known.feed(br#"{"model":"other"}"#);
        assert_eq!(known.model(), Some("m"));
    }

    #[test]
    fn finds_the_top_level_model_only() {
        assert_eq!(
            scan(r#"{"model":"gpt-4o","messages":[]}"#).as_deref(),
            Some("gpt-4o")
        );
        assert_eq!(
            scan(r#"{"messages":[{"role":"user","content":"say \"model\": \"x\"","model":"nested"}], "model" : "claude-3"}"#).as_deref(),
            Some("claude-3")
        );
        assert_eq!(scan(r#"{"metadata":{"model":"inner"}}"#), None);
        assert_eq!(scan(r#"{"model": 5}"#), None);
        assert_eq!(scan("not json"), None);
    }

    /// Third review, finding 5: the model as a JSON parser reads it, escapes and all, and the
    /// last of a repeated key (what the upstream prices).
    #[test]
    fn escaped_and_repeated_models_read_as_json_reads_them() {
        let cases = [
            (r#"{"model":"gpt-4\u006f"}"#, Some("gpt-4o")),
            (r#"{"mod\u0065l":"gpt-4o"}"#, Some("gpt-4o")),
            (r#"{"model":"a\"b"}"#, Some("a\"b")),
            (
                r#"{"model":"cheap","messages":[],"model":"gpt-4o"}"#,
                Some("gpt-4o"),
            ),
            (r#"{"model":"bad \u12"}"#, None),
        ];
        for (body, want) in cases {
            assert_eq!(scan(body).as_deref(), want, "{body}");
            assert_eq!(
                serde_json::from_str::<serde_json::Value>(body)
                    .ok()
                    .and_then(|v| v["model"].as_str().map(str::to_owned))
                    .as_deref(),
                want,
                "serde_json reads {body}"
            );
        }
        // Past the scan a later key could name another model: unknown.
        let mut s = ModelScanner::new();
        s.feed(br#"{"model":"gpt-4o-mini","messages":[{"content":""#);
        s.feed(&vec![b'x'; MAX_SCAN]);
        s.feed(br#""}],"model":"gpt-4o"}"#);
        assert_eq!(s.model(), Some(UNREAD));
        // A value too long to be a model, even once unescaped, is no model.
        let long = format!(r#"{{"model":"{}"}}"#, "\\u0061".repeat(MAX_MODEL + 1));
        assert_eq!(scan(&long), None);
    }

    proptest! {
        #[test]
        fn any_split_gives_the_same_answer(cut in 0usize..80, model in "[a-z0-9.-]{1,20}") {
            let body = format!(r#"{{"messages":[{{"role":"user","content":"hi {{}}"}}],"model":"{model}","stream":true}}"#);
            let cut = cut.min(body.len());
            let mut s = ModelScanner::new();
            s.feed(&body.as_bytes()[..cut]);
            s.feed(&body.as_bytes()[cut..]);
            prop_assert_eq!(s.model(), Some(model.as_str()));
        }
    }
}
