//! Telegram message text: one notification rendered in Bot API HTML parse mode, and
//! several rendered notifications packed into as few messages as fit.
//!
//! Every user-supplied string is cut to a bounded length *before* HTML escaping (so a
//! cut never splits an entity like `&amp;`), which bounds one rendered item well below
//! Telegram's 4096-character message limit; packing then only ever splits between items.

use events_envelope::EventEnvelope;
use serde_json::Value;

/// Telegram's limit for `sendMessage` text (counted in UTF-16 code units).
pub const MESSAGE_LIMIT: usize = 4096;

const MAX_DESCRIPTION_CHARS: usize = 800;
const MAX_ENTITY_CHARS: usize = 200;
const MAX_FIELDS: usize = 8;
const MAX_KEY_CHARS: usize = 64;
const MAX_VALUE_CHARS: usize = 200;

/// Escapes the three characters Telegram's HTML mode requires escaped, plus `"` for
/// attribute safety.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            c => out.push(c),
        }
    }
    out
}

fn cut(text: &str, max_chars: usize) -> String {
    match text.char_indices().nth(max_chars) {
        None => text.to_owned(),
        Some((at, _)) => format!("{}…", &text[..at]),
    }
}

fn value_text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Renders one notification (from the event that created it):
///
/// ```text
/// <b>job.failed</b> · WORKFLOW
/// Build failed on main
/// entity: <code>job-42</code>
/// • status: failed
/// ```
///
/// Payload fields are shown in key order, at most eight, scalars before nested values.
pub fn format_notification(event: &EventEnvelope) -> String {
    let mut out = format!(
        "<b>{}</b> · {}",
        escape_html(&event.event),
        event.level.name()
    );
    if !event.domain.is_empty() {
        out.push_str(&format!(
            " · {}",
            escape_html(&cut(&event.domain, MAX_ENTITY_CHARS))
        ));
    }
    if !event.description.is_empty() {
        out.push('\n');
        out.push_str(&escape_html(&cut(
            &event.description,
            MAX_DESCRIPTION_CHARS,
        )));
    }
    if let Some(entity) = event.entity.as_deref().filter(|e| !e.is_empty()) {
        out.push_str(&format!(
            "\nentity: <code>{}</code>",
            escape_html(&cut(entity, MAX_ENTITY_CHARS))
        ));
    }
    let mut fields: Vec<(&String, &Value)> = event.payload.iter().collect();
    // Scalars first: they are what a human scans for; objects and arrays come last.
    fields.sort_by_key(|(key, value)| {
        (
            matches!(value, Value::Object(_) | Value::Array(_)),
            key.as_str(),
        )
    });
    for (key, value) in fields.iter().take(MAX_FIELDS) {
        out.push_str(&format!(
            "\n• {}: {}",
            escape_html(&cut(key, MAX_KEY_CHARS)),
            escape_html(&cut(&value_text(value), MAX_VALUE_CHARS))
        ));
    }
    if fields.len() > MAX_FIELDS {
        out.push_str(&format!("\n• … {} more", fields.len() - MAX_FIELDS));
    }
    out
}

fn utf16_len(text: &str) -> usize {
    text.encode_utf16().count()
}

/// One `sendMessage` text and the indices of the items it carries.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PackedMessage {
    /// Message text (HTML parse mode), at most [`MESSAGE_LIMIT`] UTF-16 units.
    pub text: String,
    /// Indices into the packed slice, in order.
    pub items: Vec<usize>,
}

/// Packs rendered items into messages of at most [`MESSAGE_LIMIT`] UTF-16 units, keeping
/// their order: one item is sent as it is; several get a `<b>N notifications</b>` header
/// and are separated by a blank line. An item too long on its own (not produced by
/// [`format_notification`]) becomes a message of its own, cut hard and without markup.
pub fn pack_messages(items: &[String]) -> Vec<PackedMessage> {
    const SEPARATOR: &str = "\n\n";
    // Room for the header `<b>NNNN notifications</b>\n\n`.
    let budget = MESSAGE_LIMIT - 40;
    let mut current: Vec<usize> = Vec::new();
    let mut current_len = 0;
    let mut out = Vec::new();
    let flush = |group: Vec<usize>, out: &mut Vec<PackedMessage>| {
        let text = match group.as_slice() {
            [] => return,
            [one] => items[*one].clone(),
            many => format!(
                "<b>{} notifications</b>\n\n{}",
                many.len(),
                many.iter()
                    .map(|i| items[*i].as_str())
                    .collect::<Vec<_>>()
                    .join(SEPARATOR)
            ),
        };
        out.push(PackedMessage { text, items: group });
    };
    for (index, item) in items.iter().enumerate() {
        let len = utf16_len(item);
        if len > budget {
            flush(std::mem::take(&mut current), &mut out);
            current_len = 0;
            out.push(PackedMessage {
                text: cut_utf16(&strip_tags(item), MESSAGE_LIMIT - 1),
                items: vec![index],
            });
            continue;
        }
        let added = if current.is_empty() {
            len
        } else {
            len + SEPARATOR.len()
        };
        if current_len + added > budget {
            flush(std::mem::take(&mut current), &mut out);
            current_len = len;
        } else {
            current_len += added;
        }
        current.push(index);
    }
    flush(current, &mut out);
    out
}

fn strip_tags(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut in_tag = false;
    for c in html.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => in_tag = false,
            c if !in_tag => out.push(c),
            _ => {}
        }
    }
    // Entities stay escaped, which is valid HTML-mode text.
    out
}

fn cut_utf16(text: &str, max_units: usize) -> String {
    let mut units = 0;
    let mut end = text.len();
    for (i, c) in text.char_indices() {
        units += c.len_utf16();
        if units > max_units {
            end = i;
            break;
        }
    }
    let mut cut = &text[..end];
    // The cut may split an entity at the very end: drop a dangling `&...` fragment.
    if let Some(amp) = cut.rfind('&')
        && !cut[amp..].contains(';')
    {
        cut = &cut[..amp];
    }
    cut.to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use events_envelope::EventLevel;

    fn event() -> EventEnvelope {
        EventEnvelope::new("job.failed", "ci")
            .with_level(EventLevel::Workflow)
            .with_domain("builds")
            .with_entity("job-<42>")
            .with_description("Build failed on main & \"dev\"")
            .with_field("status", "failed")
            .with_field("error", "<script>alert(1)</script>")
            .with_field("details", serde_json::json!({"a": 1}))
    }

    #[test]
    fn renders_type_level_description_entity_and_fields_escaped() {
        let text = format_notification(&event());
        assert!(
            text.starts_with("<b>job.failed</b> · WORKFLOW · builds\n"),
            "{text}"
        );
        assert!(text.contains("Build failed on main &amp; &quot;dev&quot;"));
        assert!(text.contains("entity: <code>job-&lt;42&gt;</code>"));
        assert!(text.contains("• error: &lt;script&gt;alert(1)&lt;/script&gt;"));
        assert!(!text.contains("<script>"));
        // Scalars come before nested values.
        let status = text.find("• status").unwrap();
        let details = text.find("• details").unwrap();
        assert!(status < details);
    }

    #[test]
    fn long_fields_are_cut_before_escaping() {
        let ev = EventEnvelope::new("job.failed", "ci").with_description("&".repeat(5000));
        let text = format_notification(&ev);
        assert!(utf16_len(&text) < MESSAGE_LIMIT);
        assert!(text.ends_with("&amp;…"));
    }

    #[test]
    fn one_item_is_sent_as_is_and_several_are_combined() {
        let one = pack_messages(&["a".into()]);
        assert_eq!(
            one,
            vec![PackedMessage {
                text: "a".into(),
                items: vec![0]
            }]
        );
        let packed = pack_messages(&["a".into(), "b".into(), "c".into()]);
        assert_eq!(packed.len(), 1);
        assert_eq!(packed[0].text, "<b>3 notifications</b>\n\na\n\nb\n\nc");
        assert_eq!(packed[0].items, vec![0, 1, 2]);
        assert!(pack_messages(&[]).is_empty());
    }

    #[test]
    fn packing_splits_under_the_limit_and_keeps_every_item() {
        let items: Vec<String> = (0..40)
            .map(|i| format!("item {i} {}", "x".repeat(500)))
            .collect();
        let packed = pack_messages(&items);
        assert!(packed.len() > 1);
        for message in &packed {
            assert!(
                utf16_len(&message.text) <= MESSAGE_LIMIT,
                "{}",
                utf16_len(&message.text)
            );
            for i in &message.items {
                assert!(message.text.contains(&format!("item {i} ")));
            }
        }
        let order: Vec<usize> = packed.iter().flat_map(|m| m.items.clone()).collect();
        assert_eq!(order, (0..40).collect::<Vec<_>>());
    }

    #[test]
    fn an_oversized_item_is_cut_without_markup() {
        let item = format!("<b>x</b>{}", "&amp;".repeat(2000));
        let packed = pack_messages(&["a".into(), item, "b".into()]);
        assert_eq!(packed.len(), 3);
        assert_eq!(packed[1].items, vec![1]);
        assert!(utf16_len(&packed[1].text) < MESSAGE_LIMIT);
        assert!(!packed[1].text.contains("<b>"));
        assert!(packed[1].text.ends_with("&amp;"));
    }
}
