//! Catalog files (feature `toml`): operators add schemas without code (brief §5).
//!
//! The only I/O of this crate: reading `*.toml` files once at start. Errors carry the file and
//! the 1-based line so a bad file stops the daemon with a message that points at the mistake.

use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::catalog::{EventCatalog, EventSchema};
use crate::error::CatalogError;

/// One catalog file: `[[schema]]` tables, nothing else.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    #[serde(default)]
    schema: Vec<toml::Spanned<EventSchema>>,
}

impl EventCatalog {
    /// Registers every `[[schema]]` of a TOML document; `origin` names it in errors (a path).
    ///
    /// All or nothing: on error the catalog is unchanged. Returns how many schemas were added.
    ///
    /// ```
    /// # use events_envelope::EventCatalog;
    /// let mut catalog = EventCatalog::new();
    /// let added = catalog.load_toml_str(r#"
    /// [[schema]]
    /// event_type = "acme.order.placed"
    /// description = "An order was placed"
    /// default_level = "workflow"
    /// domain = "acme"
    /// idempotency_fields = ["order_id"]
    /// "#, "acme.toml")?;
    /// assert_eq!(added, 1);
    /// # Ok::<(), events_envelope::CatalogError>(())
    /// ```
    pub fn load_toml_str(&mut self, text: &str, origin: &str) -> Result<usize, CatalogError> {
        let mut staged = self.clone();
        let added = staged.load_document(text, Path::new(origin))?;
        *self = staged;
        Ok(added)
    }

    /// Loads every `*.toml` file directly in `dir` (not recursive), in file-name order.
    ///
    /// All or nothing: on error the catalog is unchanged. A schema duplicating one of another
    /// file (or a built-in) is an error naming this file and line, and where the first came
    /// from. Returns how many schemas were added.
    pub fn load_dir(&mut self, dir: &Path) -> Result<usize, CatalogError> {
        let io_error = |path: &Path| {
            let path = path.to_path_buf();
            move |source| CatalogError::Io { path, source }
        };
        let mut files: Vec<PathBuf> = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io_error(dir))? {
            let path = entry.map_err(io_error(dir))?.path();
            if path.extension().is_some_and(|ext| ext == "toml") && path.is_file() {
                files.push(path);
            }
        }
        files.sort();
        let mut staged = self.clone();
        let mut added = 0;
        for file in &files {
            let text = std::fs::read_to_string(file).map_err(io_error(file))?;
            added += staged.load_document(&text, file)?;
        }
        *self = staged;
        Ok(added)
    }

    fn load_document(&mut self, text: &str, file: &Path) -> Result<usize, CatalogError> {
        let parsed: CatalogFile = toml::from_str(text).map_err(|err| CatalogError::Toml {
            file: file.to_path_buf(),
            line: err.span().map_or(1, |span| line_of(text, span.start)),
            message: err.message().trim_end().to_owned(),
        })?;
        let count = parsed.schema.len();
        for spanned in parsed.schema {
            let line = line_of(text, spanned.span().start);
            let origin = format!("{}:{line}", file.display());
            self.register_from(spanned.into_inner(), origin)
                .map_err(|source| CatalogError::InFile {
                    file: file.to_path_buf(),
                    line,
                    source: Box::new(source),
                })?;
        }
        Ok(count)
    }
}

/// 1-based line number of byte offset `at` in `text`.
fn line_of(text: &str, at: usize) -> usize {
    let at = at.min(text.len());
    text.as_bytes()[..at]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}
