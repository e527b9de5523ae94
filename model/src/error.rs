//! The model crate's error type.

use std::path::PathBuf;

/// Everything that can go wrong loading, saving or running a model.
#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path} is not valid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("config.json: {0}")]
    Config(String),
    #[error("unsupported {what} `{value}` in config.json; r1 supports {supported}")]
    Unsupported { what: &'static str, value: String, supported: &'static str },
    #[error("{path}: {message}")]
    Checkpoint { path: PathBuf, message: String },
    #[error("tokenizer: {0}")]
    Tokenizer(String),
    #[error("template: {0}")]
    Template(String),
    #[error("invalid input: {0}")]
    Input(String),
}

impl ModelError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }

    pub(crate) fn checkpoint(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Checkpoint { path: path.into(), message: message.into() }
    }
}

pub type Result<T, E = ModelError> = std::result::Result<T, E>;
