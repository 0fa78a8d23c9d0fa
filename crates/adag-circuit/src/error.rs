//! The error type of adag-circuit.
//!
//! Every variant names the file it concerns and, where there is one, the line, row, item, key
//! or column, because a run over 10,000 prompts that fails must say *which* prompt or setting
//! to fix.

use std::path::PathBuf;

/// Errors of dataset loading, run configuration, prompt preparation and circuit files.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    // ---- datasets ----
    /// A dataset record is malformed: `at` is `line 3`, `row 4` or `item 2`.
    #[error("{path}: {at}: {field}{message}", field = field_prefix(.field))]
    Dataset {
        /// The dataset file.
        path: PathBuf,
        /// Where in the file (`line N`, `row N`, `item N`; 1-based).
        at: String,
        /// The field concerned, when the problem is one field.
        field: Option<String>,
        /// What is wrong.
        message: String,
    },

    // ---- run configuration ----
    /// A configuration key has a bad value, or keys contradict each other.
    #[error("{source_name}: `{key}`: {message}")]
    Config {
        /// The config file, or `command line`.
        source_name: String,
        /// The key (as written in YAML; the CLI flag is the same with `--` and dashes).
        key: String,
        /// What is wrong.
        message: String,
    },

    // ---- prompts ----
    /// A prompt could not be turned into tokens.
    #[error("prompt {prompt_id}: {message}")]
    Prompt {
        /// Index of the prompt in the dataset (0-based, the `prompt_id` column).
        prompt_id: u64,
        /// What is wrong.
        message: String,
    },
    /// The tokenizer failed.
    #[error("prompt {prompt_id}: {source}")]
    Tokenizer {
        /// Index of the prompt in the dataset.
        prompt_id: u64,
        /// The tokenizer's error.
        source: Box<adag_text::Error>,
    },

    // ---- circuit files ----
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// The operating system's error.
        source: std::io::Error,
    },
    /// A Parquet file could not be written or read.
    #[error("{path}: {message}")]
    Parquet {
        /// The Parquet file.
        path: PathBuf,
        /// The parquet/arrow error, or the column that does not have the expected type.
        message: String,
    },
    /// A circuit directory is inconsistent: incomplete, from another run, or missing files.
    #[error("{path}: {message}")]
    Circuit {
        /// The circuit directory.
        path: PathBuf,
        /// What is wrong and what to do.
        message: String,
    },
    /// The tracer failed on a batch.
    #[error("tracing prompts {first}..{end}: {message}")]
    Trace {
        /// First prompt id of the batch.
        first: u64,
        /// One past the last prompt id of the batch.
        end: u64,
        /// The tracer's error, with its chain.
        message: String,
    },
}

fn field_prefix(field: &Option<String>) -> String {
    match field {
        Some(f) => format!("field `{f}`: "),
        None => String::new(),
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// An I/O error on `path`.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    /// A circuit-directory error on `path`.
    pub fn circuit(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Error::Circuit {
            path: path.into(),
            message: message.into(),
        }
    }
}
