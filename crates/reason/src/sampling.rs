use llama_cpp_2::model::LlamaModel;
use llama_cpp_2::sampling::LlamaSampler;
use serde::{Deserialize, Serialize};

use crate::ReasonError;

/// llama.cpp's own default temperature, used when neither the request nor
/// the model's metadata names one.
const LLAMA_DEFAULT_TEMPERATURE: f32 = 0.8;
const LLAMA_DEFAULT_TOP_K: i32 = 40;
const LLAMA_DEFAULT_TOP_P: f32 = 0.95;
const LLAMA_DEFAULT_MIN_P: f32 = 0.05;

/// How to pick tokens. Omitted fields mean the model's defaults.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Sampling {
    /// 0 picks the most likely token every time; `None` is the model default.
    #[serde(default)]
    pub temperature: Option<f32>,
    #[serde(default)]
    pub top_p: Option<f32>,
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    /// Generation ends before the first occurrence of any of these.
    #[serde(default)]
    pub stop: Vec<String>,
    #[serde(default)]
    pub seed: u32,
}

fn default_max_tokens() -> u32 {
    256
}

impl Default for Sampling {
    fn default() -> Self {
        Self {
            temperature: None,
            top_p: None,
            max_tokens: default_max_tokens(),
            stop: Vec::new(),
            seed: 0,
        }
    }
}

impl Sampling {
    /// Deterministic decoding: always the most likely token.
    pub fn greedy(max_tokens: u32) -> Self {
        Self {
            temperature: Some(0.0),
            max_tokens,
            ..Self::default()
        }
    }
}

/// The model's default temperature from GGUF metadata, if it names one.
pub(crate) fn model_temperature(model: &LlamaModel) -> f32 {
    model
        .meta_val_str("general.sampling.temp")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(LLAMA_DEFAULT_TEMPERATURE)
}

/// Builds the sampler chain: grammar first (so every other step only sees
/// allowed tokens), then nucleus filtering and temperature, then the draw.
pub(crate) fn build(
    model: &LlamaModel,
    sampling: &Sampling,
    grammar: Option<&str>,
) -> Result<LlamaSampler, ReasonError> {
    let mut chain = Vec::new();
    if let Some(g) = grammar {
        chain.push(
            LlamaSampler::grammar(model, g, "root")
                .map_err(|e| ReasonError::Grammar(e.to_string()))?,
        );
    }
    let temperature = sampling
        .temperature
        .unwrap_or_else(|| model_temperature(model));
    if temperature <= 0.0 {
        chain.push(LlamaSampler::greedy());
    } else {
        // llama.cpp's own defaults where the request says nothing: top-k 40
        // first (it also spares the later steps sorting the whole
        // vocabulary on every token), top-p 0.95, min-p 0.05.
        chain.push(LlamaSampler::top_k(LLAMA_DEFAULT_TOP_K));
        chain.push(LlamaSampler::top_p(
            sampling.top_p.unwrap_or(LLAMA_DEFAULT_TOP_P),
            1,
        ));
        chain.push(LlamaSampler::min_p(LLAMA_DEFAULT_MIN_P, 1));
        chain.push(LlamaSampler::temp(temperature));
        chain.push(LlamaSampler::dist(sampling.seed));
    }
    Ok(LlamaSampler::chain_simple(chain))
}
