//! Plain-text tables and small formatting helpers for human output.

use std::io::{self, Write};

use serde_json::Value;

/// A table whose columns are padded to their widest cell; the last column is not padded,
/// so long descriptions do not leave trailing blanks.
#[derive(Debug)]
pub(crate) struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub(crate) fn new(header: &[&str]) -> Self {
        Self {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub(crate) fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub(crate) fn write(&self, out: &mut impl Write) -> io::Result<()> {
        let columns = self.header.len();
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (i, cell) in row.iter().enumerate().take(columns) {
                widths[i] = widths[i].max(cell.chars().count());
            }
        }
        for line in std::iter::once(&self.header).chain(&self.rows) {
            let mut text = String::new();
            for (i, cell) in line.iter().enumerate().take(columns) {
                if i > 0 {
                    text.push_str("  ");
                }
                text.push_str(cell);
                if i + 1 < columns {
                    let pad = widths[i] - cell.chars().count();
                    text.extend(std::iter::repeat_n(' ', pad));
                }
            }
            writeln!(out, "{}", text.trim_end())?;
        }
        Ok(())
    }
}

/// A JSON value as one table cell: strings raw, null as `-`, anything else compact JSON.
pub(crate) fn cell(value: Option<&Value>) -> String {
    match value {
        None | Some(Value::Null) => "-".to_owned(),
        Some(Value::String(s)) if s.is_empty() => "-".to_owned(),
        Some(Value::String(s)) => s.replace(['\n', '\t'], " "),
        Some(other) => other.to_string(),
    }
}

/// A level integer as its name (`2` → `WORKFLOW`), anything else as given.
pub(crate) fn level_name(value: Option<&Value>) -> String {
    value
        .and_then(Value::as_u64)
        .and_then(|n| u8::try_from(n).ok())
        .and_then(events_envelope::EventLevel::from_u8)
        .map_or_else(|| cell(value), |level| level.name().to_owned())
}

/// The rows of a list answer: `{"<key>": [...]}` or a bare array.
pub(crate) fn rows_of<'a>(answer: &'a Value, key: &str) -> &'a [Value] {
    answer
        .get(key)
        .and_then(Value::as_array)
        .or_else(|| answer.as_array())
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// Writes the raw server body for `--json`, exactly once and newline-terminated.
pub(crate) fn write_raw(out: &mut impl Write, body: &str) -> io::Result<()> {
    writeln!(out, "{}", body.trim_end())
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn columns_are_aligned_and_lines_not_padded_at_the_end() {
        let mut table = Table::new(&["A", "LONG HEADER", "LAST"]);
        table.row(vec!["wide value".into(), "x".into(), "end".into()]);
        table.row(vec!["é".into(), "".into(), "".into()]);
        let mut out = Vec::new();
        table.write(&mut out).expect("write to vec");
        let text = String::from_utf8(out).expect("utf-8");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "A           LONG HEADER  LAST");
        assert_eq!(lines[1], "wide value  x            end");
        assert_eq!(lines[2], "é");
    }

    #[test]
    fn cells_render_json_readably() {
        assert_eq!(cell(Some(&json!("a\nb"))), "a b");
        assert_eq!(cell(Some(&json!(null))), "-");
        assert_eq!(cell(None), "-");
        assert_eq!(cell(Some(&json!({"k": 1}))), r#"{"k":1}"#);
        assert_eq!(level_name(Some(&json!(2))), "WORKFLOW");
        assert_eq!(level_name(Some(&json!(9))), "9");
    }
}
