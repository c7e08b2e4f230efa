//! Maps a field path such as `providers[1].keys[0].weight` to its line in the YAML source, so
//! validation errors can name the file line (serde only reports lines for syntax errors).

use std::collections::HashMap;
use yaml_rust2::parser::{Event, MarkedEventReceiver, Parser};
use yaml_rust2::scanner::Marker;

/// Field paths of one YAML document and the (1-based) line each starts on.
#[derive(Debug, Default)]
pub struct Lines {
    by_path: HashMap<String, usize>,
}

impl Lines {
    /// Parses `source`; an unparsable document yields no lines (serde reports that error itself).
    pub fn of(source: &str) -> Lines {
        let mut walker = Walker::default();
        let mut parser = Parser::new_from_str(source);
        if parser.load(&mut walker, false).is_err() {
            return Lines::default();
        }
        Lines {
            by_path: walker.by_path,
        }
    }

    /// The line of `path`, or of its nearest ancestor that has one.
    pub fn line(&self, path: &str) -> Option<usize> {
        let mut path = path;
        loop {
            if let Some(line) = self.by_path.get(path) {
                return Some(*line);
            }
            let cut = path.rfind(['.', '['])?;
            path = &path[..cut];
        }
    }
}

enum Frame {
    Mapping { key: Option<String> },
    Sequence { index: usize },
}

#[derive(Default)]
struct Walker {
    frames: Vec<Frame>,
    by_path: HashMap<String, usize>,
}

impl Walker {
    fn path(&self) -> String {
        let mut out = String::new();
        for frame in &self.frames {
            match frame {
                Frame::Mapping { key: Some(key) } => {
                    if !out.is_empty() {
                        out.push('.');
                    }
                    out.push_str(key);
                }
                Frame::Mapping { key: None } => {}
                Frame::Sequence { index } => {
                    out.push('[');
                    out.push_str(&index.to_string());
                    out.push(']');
                }
            }
        }
        out
    }

    fn record(&mut self, line: usize) {
        let path = self.path();
        self.by_path.entry(path).or_insert(line);
    }

    /// A value at the current position is complete: move to the next key or item.
    fn value_done(&mut self) {
        match self.frames.last_mut() {
            Some(Frame::Mapping { key }) => *key = None,
            Some(Frame::Sequence { index }) => *index += 1,
            None => {}
        }
    }

    fn expecting_key(&self) -> bool {
        matches!(self.frames.last(), Some(Frame::Mapping { key: None }))
    }
}

impl MarkedEventReceiver for Walker {
    fn on_event(&mut self, ev: Event, mark: Marker) {
        match ev {
            Event::Scalar(value, ..) => {
                if self.expecting_key() {
                    if let Some(Frame::Mapping { key }) = self.frames.last_mut() {
                        *key = Some(value);
                    }
                    self.record(mark.line());
                } else {
                    self.record(mark.line());
                    self.value_done();
                }
            }
            Event::Alias(_) => {
                self.record(mark.line());
                self.value_done();
            }
            Event::MappingStart(..) => {
                self.record(mark.line());
                self.frames.push(Frame::Mapping { key: None });
            }
            Event::SequenceStart(..) => {
                self.record(mark.line());
                self.frames.push(Frame::Sequence { index: 0 });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                self.frames.pop();
                self.value_done();
            }
            Event::Nothing
            | Event::StreamStart
            | Event::StreamEnd
            | Event::DocumentStart
            | Event::DocumentEnd => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_nested_fields_and_falls_back_to_parents() {
        let src = "listeners:\n  proxy: 1\nproviders:\n  - name: a\n    keys:\n      - { id: k, weight: 3 }\n  - name: b\n    kind: x\n";
        let lines = Lines::of(src);
        assert_eq!(lines.line("listeners.proxy"), Some(2));
        assert_eq!(lines.line("providers[0].name"), Some(4));
        assert_eq!(lines.line("providers[0].keys[0].weight"), Some(6));
        assert_eq!(lines.line("providers[1].kind"), Some(8));
        assert_eq!(lines.line("providers[1].base_url"), Some(7));
    }
}
