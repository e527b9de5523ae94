//! Text in and out: the model's `tokenizer.json` and prompt templates.
//!
//! Templates: [`PromptTemplate::Raw`] (the text as is), [`PromptTemplate::R1`] (the
//! DeepSeek-R1-Zero prompt, which asks for `<think>` reasoning then an `<answer>`), and
//! [`PromptTemplate::Chat`] (the model's own Jinja chat template from
//! `tokenizer_config.json` or `chat_template.jinja`, rendered with minijinja and its Python
//! compatibility layer, as transformers' `apply_chat_template` renders it).

use std::path::Path;

use crate::error::{ModelError, Result};

/// How a question becomes the text the model continues: the run spec's template, whose
/// text rendering lives in `r1_spec::prompt` (one place for every crate).
pub use r1_spec::prompt::{Message, Prompt, R1_TEMPLATE, Template as PromptTemplate};

/// A tokenizer with the special tokens and chat template of its model folder.
pub struct TextTokenizer {
    inner: tokenizers::Tokenizer,
    chat_template: Option<String>,
    bos_token: Option<String>,
    eos_token: Option<String>,
}

impl std::fmt::Debug for TextTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TextTokenizer")
            .field("vocab_size", &self.inner.get_vocab_size(true))
            .field("chat_template", &self.chat_template.is_some())
            .finish()
    }
}

fn special(v: Option<&serde_json::Value>) -> Option<String> {
    match v? {
        serde_json::Value::String(s) => Some(s.clone()),
        obj => obj.get("content")?.as_str().map(str::to_string),
    }
}

impl TextTokenizer {
    /// Reads `tokenizer.json` (required), and `tokenizer_config.json` /
    /// `chat_template.jinja` (optional) from a model folder.
    pub fn from_dir(dir: &Path) -> Result<Self> {
        let path = dir.join("tokenizer.json");
        if !path.exists() {
            return Err(ModelError::Tokenizer(format!(
                "{} does not exist; the model folder needs a tokenizer.json, or pass token ids instead of text",
                path.display()
            )));
        }
        let inner = tokenizers::Tokenizer::from_file(&path)
            .map_err(|e| ModelError::Tokenizer(format!("cannot load {}: {e}", path.display())))?;
        let mut tok = Self { inner, chat_template: None, bos_token: None, eos_token: None };
        let cfg_path = dir.join("tokenizer_config.json");
        if cfg_path.exists() {
            let text = std::fs::read_to_string(&cfg_path).map_err(|e| ModelError::io(&cfg_path, e))?;
            let cfg: serde_json::Value =
                serde_json::from_str(&text).map_err(|source| ModelError::Json { path: cfg_path.clone(), source })?;
            tok.chat_template = cfg.get("chat_template").and_then(|t| t.as_str()).map(str::to_string);
            tok.bos_token = special(cfg.get("bos_token"));
            tok.eos_token = special(cfg.get("eos_token"));
        }
        let jinja = dir.join("chat_template.jinja");
        if jinja.exists() {
            tok.chat_template = Some(std::fs::read_to_string(&jinja).map_err(|e| ModelError::io(&jinja, e))?);
        }
        Ok(tok)
    }

    pub fn from_tokenizer(inner: tokenizers::Tokenizer) -> Self {
        Self { inner, chat_template: None, bos_token: None, eos_token: None }
    }

    pub fn inner(&self) -> &tokenizers::Tokenizer {
        &self.inner
    }

    /// Encodes text without adding special tokens (templates add what they need).
    pub fn encode(&self, text: &str) -> Result<Vec<u32>> {
        let enc = self.inner.encode(text, false).map_err(|e| ModelError::Tokenizer(e.to_string()))?;
        Ok(enc.get_ids().to_vec())
    }

    /// Decodes ids, keeping special tokens.
    pub fn decode(&self, ids: &[u32]) -> Result<String> {
        self.inner.decode(ids, false).map_err(|e| ModelError::Tokenizer(e.to_string()))
    }

    pub fn token_id(&self, token: &str) -> Option<u32> {
        self.inner.token_to_id(token)
    }

    /// The id of the end-of-sequence token named in `tokenizer_config.json`, if any.
    pub fn eos_token_id(&self) -> Option<u32> {
        self.eos_token.as_deref().and_then(|t| self.token_id(t))
    }

    /// Renders messages with the model's chat template.
    pub fn apply_chat_template(&self, messages: &[Message], add_generation_prompt: bool) -> Result<String> {
        let template = self.chat_template.as_deref().ok_or_else(|| {
            ModelError::Template(
                "the model folder has no chat template (tokenizer_config.json `chat_template` or chat_template.jinja); use the raw or r1 template".into(),
            )
        })?;
        let mut env = minijinja::Environment::new();
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", |msg: String| -> std::result::Result<String, minijinja::Error> {
            Err(minijinja::Error::new(minijinja::ErrorKind::InvalidOperation, msg))
        });
        env.add_template("chat", template)
            .map_err(|e| ModelError::Template(format!("cannot parse the chat template: {e}")))?;
        let ctx = minijinja::context! {
            messages => messages,
            add_generation_prompt => add_generation_prompt,
            bos_token => self.bos_token.clone().unwrap_or_default(),
            eos_token => self.eos_token.clone().unwrap_or_default(),
        };
        env.get_template("chat")
            .and_then(|t| t.render(ctx))
            .map_err(|e| ModelError::Template(format!("cannot render the chat template: {e}")))
    }

    /// Turns a dataset prompt (text or chat turns) into model input text with `template`.
    /// Chat turns need the chat template; text works with every template.
    pub fn render_prompt(&self, template: PromptTemplate, prompt: &Prompt) -> Result<String> {
        template
            .render(prompt, |messages| self.apply_chat_template(messages, true).map_err(|e| e.to_string()))
            .map_err(|e| ModelError::Template(e.to_string()))
    }

    /// Turns a question into model input text with `template`.
    pub fn render(&self, template: PromptTemplate, prompt: &str) -> Result<String> {
        self.render_prompt(template, &Prompt::Text(prompt.into()))
    }

    /// The tokens the model continues for `prompt` under `template`: the actor samples after
    /// them and the learner scores the same tokens again, so both call this.
    pub fn prompt_tokens(&self, template: PromptTemplate, prompt: &Prompt) -> Result<Vec<u32>> {
        let ids = self.encode(&self.render_prompt(template, prompt)?)?;
        if ids.is_empty() {
            return Err(ModelError::Template("the prompt renders to no tokens".into()));
        }
        Ok(ids)
    }
}
