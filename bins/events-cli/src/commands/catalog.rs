//! `events catalog list`: the catalog as a table, computed locally (no daemon needed).

use std::io::Write;
use std::path::Path;

use events_envelope::{EventCatalog, EventSchema};
use serde_json::json;

use crate::failure::Failure;
use crate::output::Table;

/// The built-in catalog plus the schemas of `catalog_dir`, exactly as the daemon loads them.
pub(crate) fn load(catalog_dir: Option<&Path>) -> anyhow::Result<EventCatalog> {
    let mut catalog = EventCatalog::builtin();
    if let Some(dir) = catalog_dir {
        // The error names the file and line at fault; a bad file is the user's input.
        catalog
            .load_dir(dir)
            .map_err(|err| Failure::bad_input(format!("--catalog-dir: {err}")))?;
    }
    Ok(catalog)
}

pub(crate) fn list(
    catalog_dir: Option<&Path>,
    json: bool,
    out: &mut impl Write,
) -> anyhow::Result<()> {
    let catalog = load(catalog_dir)?;
    let schemas = catalog.list_all();
    if json {
        serde_json::to_writer(&mut *out, &json!({ "schemas": schemas }))?;
        writeln!(out)?;
        return Ok(());
    }
    write_table(&schemas, out)?;
    Ok(())
}

fn write_table(schemas: &[&EventSchema], out: &mut impl Write) -> std::io::Result<()> {
    let mut table = Table::new(&[
        "EVENT TYPE",
        "LEVEL",
        "DOMAIN",
        "VISIBILITY",
        "ACTIONABLE",
        "DESCRIPTION",
    ]);
    for schema in schemas {
        table.row(vec![
            schema.event_type.clone(),
            schema.default_level.name().to_owned(),
            if schema.domain.is_empty() {
                "-".to_owned()
            } else {
                schema.domain.clone()
            },
            schema.default_visibility.as_str().to_owned(),
            if schema.actionable { "yes" } else { "no" }.to_owned(),
            schema.description.clone(),
        ]);
    }
    table.write(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_lists_every_builtin_type_with_its_level_name() {
        let mut out = Vec::new();
        list(None, false, &mut out).expect("builtin catalog lists");
        let text = String::from_utf8(out).expect("utf-8");
        let catalog = EventCatalog::builtin();
        for schema in catalog.list_all() {
            let line = text
                .lines()
                .find(|line| line.split_whitespace().next() == Some(schema.event_type.as_str()))
                .unwrap_or_else(|| panic!("{} missing from\n{text}", schema.event_type));
            assert!(line.contains(schema.default_level.name()), "{line}");
        }
        assert_eq!(
            text.lines().count(),
            catalog.len() + 1,
            "header plus one line per schema"
        );
    }

    #[test]
    fn catalog_dir_schemas_are_listed_and_bad_files_are_bad_input() {
        let temp = tempfile::tempdir().expect("temp dir");
        let dir = temp.path();
        std::fs::write(
            dir.join("acme.toml"),
            "[[schema]]\nevent_type = \"acme.order.placed\"\ndescription = \"An order was placed\"\ndefault_level = \"business\"\ndomain = \"acme\"\nactionable = true\n",
        )
        .expect("write schema");
        let mut out = Vec::new();
        list(Some(dir), false, &mut out).expect("lists");
        let text = String::from_utf8(out).expect("utf-8");
        let line = text
            .lines()
            .find(|l| l.starts_with("acme.order.placed"))
            .expect("custom schema listed");
        assert!(
            line.contains("BUSINESS")
                && line.contains("yes")
                && line.contains("An order was placed"),
            "{line}"
        );

        std::fs::write(dir.join("zz-bad.toml"), "[[schema]]\nevent_type = \n")
            .expect("write bad file");
        let err = list(Some(dir), false, &mut Vec::new()).expect_err("bad file refused");
        assert_eq!(crate::failure::exit_code_of(&err), 2);
        assert!(err.to_string().contains("zz-bad.toml"), "{err}");
    }
}
