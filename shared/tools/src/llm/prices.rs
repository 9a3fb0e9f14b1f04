//! The price table: USD per million prompt and completion tokens, by model. A default table
//! ships in the repo (`prices.json` beside this file); `BATON_PRICES` names a JSON file of the
//! same shape whose entries replace the defaults. A call is priced from the table only when its
//! provider reports no cost of its own.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::Value;

/// The table that ships with baton.
const DEFAULT: &str = include_str!("prices.json");

/// One model's prices.
#[derive(Debug, Clone, Copy, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Price {
    /// USD per million prompt tokens.
    pub input_per_mtok: f64,
    /// USD per million completion tokens.
    pub output_per_mtok: f64,
}

/// Prices by model name.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Prices {
    by_model: HashMap<String, Price>,
}

impl Prices {
    /// The default table with `BATON_PRICES`'s entries over it; an unreadable or malformed file
    /// is an error naming it.
    pub fn from_env() -> Result<Self, String> {
        let mut prices = Self::parse(DEFAULT, "the default price table")?;
        if let Some(path) = std::env::var_os("BATON_PRICES") {
            let shown = std::path::Path::new(&path).display().to_string();
            let text = std::fs::read_to_string(&path).map_err(|e| format!("BATON_PRICES {shown}: {e}"))?;
            prices.by_model.extend(Self::parse(&text, &format!("BATON_PRICES {shown}"))?.by_model);
        }
        Ok(prices)
    }

    /// A table from its JSON text (`{"model": {"input_per_mtok", "output_per_mtok"}}`; keys
    /// starting with `_` are comments).
    pub fn parse(text: &str, what: &str) -> Result<Self, String> {
        let v: Value = serde_json::from_str(text).map_err(|e| format!("{what}: not JSON: {e}"))?;
        let Value::Object(m) = v else { return Err(format!("{what}: a mapping of model names to prices")) };
        let mut by_model = HashMap::new();
        for (model, p) in m.into_iter().filter(|(k, _)| !k.starts_with('_')) {
            let price: Price = serde_json::from_value(p).map_err(|e| format!("{what}: `{model}`: {e}"))?;
            if !(price.input_per_mtok >= 0.0 && price.output_per_mtok >= 0.0) {
                return Err(format!("{what}: `{model}`: prices are numbers of 0 or more"));
            }
            by_model.insert(model, price);
        }
        Ok(Self { by_model })
    }

    /// The cost of `input` prompt and `output` completion tokens of the first of `models` the
    /// table lists (the model that answered, then the one asked for).
    pub fn cost(&self, models: &[&str], input: u64, output: u64) -> Option<f64> {
        let p = models.iter().find_map(|m| self.by_model.get(*m))?;
        Some((input as f64 * p.input_per_mtok + output as f64 * p.output_per_mtok) / 1_000_000.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_table_loads_and_prices_by_the_model_that_answered_first() {
        let p = Prices::parse(DEFAULT, "default").expect("the shipped table is valid");
        let cost = p.cost(&["gpt-4o-mini", "unknown"], 1_000_000, 500_000).expect("listed");
        assert!((cost - (0.15 + 0.30)).abs() < 1e-9, "{cost}");
        assert_eq!(p.cost(&["not-a-model"], 10, 10), None);
    }

    #[test]
    fn an_override_replaces_entries_and_a_bad_one_is_named() {
        let own =
            Prices::parse(r#"{"local-model": {"input_per_mtok": 0, "output_per_mtok": 0}}"#, "own").expect("valid");
        assert_eq!(own.cost(&["local-model"], 100, 100), Some(0.0));
        let e = Prices::parse(r#"{"m": {"input_per_mtok": "cheap", "output_per_mtok": 1}}"#, "BATON_PRICES x.json")
            .expect_err("a price is a number");
        assert!(e.starts_with("BATON_PRICES x.json: `m`:"), "{e}");
        let e = Prices::parse(r#"{"m": {"input_per_mtok": -1, "output_per_mtok": 1}}"#, "f").expect_err("negative");
        assert!(e.contains("0 or more"), "{e}");
    }
}
