//! OpenAI chat completions ⇄ Anthropic messages, for a fallback hop to a provider that speaks
//! the other API: the request body, the answer (JSON, errors included) and the event stream.
//! Text, images, system prompts, tool definitions, tool calls and tool results are carried over;
//! sampling settings each API shares; usage in each API's own convention (OpenAI counts cached
//! input inside `prompt_tokens`, Anthropic beside `input_tokens`).
//!
//! Plain functions of bytes: the proxy decides when a hop needs them (`proxy::fallback`).

mod answer;
mod request;
mod stream;

pub use answer::{answer, error};
pub use request::request;
pub use stream::Stream;

/// The API a client or a provider speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `POST …/chat/completions`.
    OpenAi,
    /// `POST …/messages`.
    Anthropic,
}

impl Format {
    /// The last path segment of the operation in this API.
    pub fn operation(self) -> &'static str {
        match self {
            Format::OpenAi => "chat/completions",
            Format::Anthropic => "messages",
        }
    }
}

/// Why a request body cannot be translated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TranslateError {
    #[error("the request body is not a JSON object")]
    NotJson,
    #[error("`{0}` cannot be translated: {1}")]
    Unsupported(&'static str, &'static str),
}

/// Milliseconds-free Unix time for `created` fields.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// An OpenAI `finish_reason` for an Anthropic `stop_reason`.
fn finish_reason(stop_reason: &str) -> &'static str {
    match stop_reason {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

/// An Anthropic `stop_reason` for an OpenAI `finish_reason`.
fn stop_reason(finish_reason: &str) -> &'static str {
    match finish_reason {
        "length" => "max_tokens",
        "tool_calls" | "function_call" => "tool_use",
        "content_filter" => "refusal",
        _ => "end_turn",
    }
}

/// Tool call arguments (a JSON string in OpenAI's API) as the object Anthropic's `input` is;
/// text that is not a JSON object is kept under `arguments`.
fn arguments_object(arguments: &str) -> serde_json::Value {
    match serde_json::from_str::<serde_json::Value>(arguments) {
        Ok(v @ serde_json::Value::Object(_)) => v,
        _ if arguments.trim().is_empty() => serde_json::json!({}),
        _ => serde_json::json!({ "arguments": arguments }),
    }
}
