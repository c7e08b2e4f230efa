//! What models cost: the shipped table (US dollars per million tokens, list prices of the common
//! models as published by their providers), overridden and extended by `prices:` in the config.
//! A model is priced by its exact name or the longest listed prefix of it, so dated versions
//! (`gpt-4o-2024-08-06`, `claude-sonnet-4-20250514`) take their family's price.

use super::spec::Price;
use crate::audit::Usage;
use crate::upstream::ProviderKind;

/// (model, input, output, cache read, cache write) per million tokens.
const SHIPPED: &[(&str, f64, f64, f64, f64)] = &[
    ("gpt-5", 1.25, 10.0, 0.125, 0.0),
    ("gpt-5-mini", 0.25, 2.0, 0.025, 0.0),
    ("gpt-5-nano", 0.05, 0.40, 0.005, 0.0),
    ("gpt-4.1", 2.0, 8.0, 0.50, 0.0),
    ("gpt-4.1-mini", 0.40, 1.60, 0.10, 0.0),
    ("gpt-4.1-nano", 0.10, 0.40, 0.025, 0.0),
    ("gpt-4o", 2.50, 10.0, 1.25, 0.0),
    ("gpt-4o-mini", 0.15, 0.60, 0.075, 0.0),
    ("o3", 2.0, 8.0, 0.50, 0.0),
    ("o4-mini", 1.10, 4.40, 0.275, 0.0),
    ("claude-opus-4", 15.0, 75.0, 1.50, 18.75),
    ("claude-sonnet-4", 3.0, 15.0, 0.30, 3.75),
    ("claude-3-7-sonnet", 3.0, 15.0, 0.30, 3.75),
    ("claude-3-5-haiku", 0.80, 4.0, 0.08, 1.0),
    ("claude-haiku-4", 1.0, 5.0, 0.10, 1.25),
    ("gemini-2.5-pro", 1.25, 10.0, 0.31, 0.0),
    ("gemini-2.5-flash", 0.30, 2.50, 0.075, 0.0),
];

/// The model name of the default price.
pub const DEFAULT: &str = "*";

/// The price table of a snapshot: the config's entries first, then the shipped ones.
#[derive(Debug, Clone, Default)]
pub struct Prices {
    entries: Vec<Price>,
}

impl Prices {
    pub fn new(configured: &[Price]) -> Prices {
        let mut entries = configured.to_vec();
        entries.extend(SHIPPED.iter().map(|(m, i, o, r, w)| Price {
            model: (*m).to_owned(),
            provider: None,
            input: *i,
            output: *o,
            cache_read: *r,
            cache_write: *w,
        }));
        Prices { entries }
    }

    /// The price of `model` on `provider`: an entry for that provider before one for any, the
    /// longest matching name first; the `"*"` entry (a default price, configured) for a
    /// model no entry names or a request whose model is unknown.
    pub fn of(&self, provider: &str, model: Option<&str>) -> Option<&Price> {
        if model == Some(crate::audit::scan::UNREAD) {
            return self.default_or_dearest(provider);
        }
        self.entries
            .iter()
            .filter(|p| p.provider.as_deref().is_none_or(|pp| pp == provider))
            .filter(|p| p.model == DEFAULT || model.is_some_and(|m| m.starts_with(&p.model)))
            .max_by_key(|p| {
                let len = if p.model == DEFAULT {
                    0
                } else {
                    p.model.len() + 1
                };
                (len, p.provider.is_some())
            })
    }

    /// A body too large to read its model from: the default price, else the dearest price
    /// this provider could be charged (a cheap model named early and a dear one late must not
    /// pass for the cheap one).
    fn default_or_dearest(&self, provider: &str) -> Option<&Price> {
        let usable = |p: &&Price| p.provider.as_deref().is_none_or(|pp| pp == provider);
        self.entries
            .iter()
            .filter(usable)
            .find(|p| p.model == DEFAULT)
            .or_else(|| {
                self.entries
                    .iter()
                    .filter(usable)
                    .max_by(|a, b| (a.input + a.output).total_cmp(&(b.input + b.output)))
            })
    }

    /// What `usage` cost, in micro-dollars (0 for a model with no price and no default). OpenAI-style usage
    /// counts cached prompt tokens inside the input; Anthropic's input excludes cache reads
    /// and writes.
    pub fn cost_micro_usd(
        &self,
        provider: &str,
        kind: ProviderKind,
        model: Option<&str>,
        usage: &Usage,
    ) -> u64 {
        let Some(p) = self.of(provider, model) else {
            return 0;
        };
        let fresh_input = match kind {
            ProviderKind::Anthropic => usage.input,
            _ => usage.input.saturating_sub(usage.cache_read),
        };
        let dollars_per_million = fresh_input as f64 * p.input
            + usage.output as f64 * p.output
            + usage.cache_read as f64 * p.cache_read
            + usage.cache_write as f64 * p.cache_write;
        // Per million tokens, in micro-dollars: the same number.
        dollars_per_million.round() as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn price(model: &str, input: f64) -> Price {
        Price {
            model: model.into(),
            provider: None,
            input,
            output: input,
            cache_read: 0.0,
            cache_write: 0.0,
        }
    }

    /// Third review, finding 5: a model no entry names costs nothing, unless a default price
    /// (`model: "*"`) is configured; the default never outranks a named entry.
    #[test]
    fn a_default_price_covers_unpriced_and_unknown_models() {
        let usage = Usage {
            input: 1_000_000,
            ..Usage::default()
        };
        let bare = Prices::new(&[]);
        assert_eq!(
            bare.cost_micro_usd("p", ProviderKind::OpenAi, Some("mystery"), &usage),
            0
        );
        let priced = Prices::new(&[price("*", 50.0)]);
        for model in [Some("mystery"), None] {
            assert_eq!(
                priced.cost_micro_usd("p", ProviderKind::OpenAi, model, &usage),
                50_000_000,
                "{model:?}"
            );
        }
        // A body too large to read: the default price, else the dearest (claude-opus-4 at $15).
        let unread = Some(crate::audit::scan::UNREAD);
        assert_eq!(
            priced.cost_micro_usd("p", ProviderKind::OpenAi, unread, &usage),
            50_000_000
        );
        assert_eq!(
            bare.cost_micro_usd("p", ProviderKind::OpenAi, unread, &usage),
            15_000_000
        );
        // gpt-4o keeps its shipped price ($2.50 per million input tokens).
        assert_eq!(
            priced.cost_micro_usd("p", ProviderKind::OpenAi, Some("gpt-4o"), &usage),
            2_500_000
        );
    }
}
