//! Finding the request's top-level `"model"` in a JSON body as it streams through, chunk by
//! chunk, without buffering it: a byte-at-a-time state machine (depth, strings, escapes) that
//! keeps only the model value (at most [`MAX_MODEL`] bytes). SDKs often send `model` after
//! `messages`, so the whole body is scanned — linear work, at most [`MAX_SCAN`] bytes.

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
}

impl ModelScanner {
    pub fn new() -> ModelScanner {
        ModelScanner::default()
    }

    pub fn model(&self) -> Option<&str> {
        self.found.as_deref()
    }

    pub fn feed(&mut self, chunk: &[u8]) {
        if self.done {
            return;
        }
        for &b in chunk {
            self.scanned += 1;
            if self.scanned > MAX_SCAN {
                self.done = true;
                return;
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
                    self.depth = self.depth.saturating_sub(1);
                    if self.depth == 0 {
                        self.done = true;
                        return;
                    }
                }
                b',' if self.depth == 1 => {
                    self.expect_key = true;
                    self.after_model_key = false;
                }
                b':' if self.depth == 1 => self.expect_key = false,
                _ => {}
            }
        }
    }

    fn push(&mut self, b: u8) {
        if let Some(buf) = self.collecting.as_mut() {
            if buf.len() < MAX_MODEL + 8 {
                buf.push(b);
            }
        }
    }

    fn end_string(&mut self) {
        let Some(buf) = self.collecting.take() else {
            return;
        };
        if self.in_model_value {
            self.in_model_value = false;
            self.after_model_key = false;
            if buf.len() <= MAX_MODEL && !buf.contains(&b'\\') {
                self.found = std::str::from_utf8(&buf).ok().map(str::to_owned);
                self.done = true;
            }
        } else if self.expect_key {
            self.after_model_key = buf == b"model";
        }
    }
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
