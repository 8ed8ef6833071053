//! Request handlers, one module per resource; each carries its `#[utoipa::path]`.

pub(crate) mod dead_letters;
pub(crate) mod events;
pub(crate) mod notifications;
pub(crate) mod system;
pub(crate) mod webhooks;

use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::ApiError;

/// Parses an RFC 3339 query value, naming the parameter on failure.
pub(crate) fn parse_time(
    field: &str,
    value: Option<&str>,
) -> Result<Option<OffsetDateTime>, ApiError> {
    value
        .filter(|text| !text.is_empty())
        .map(|text| {
            OffsetDateTime::parse(text, &Rfc3339).map_err(|err| {
                ApiError::bad_request(
                    "invalid_query",
                    format!("{field}: {text:?} is not an RFC 3339 timestamp ({err})"),
                )
            })
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_time_accepts_rfc3339_and_names_the_field() {
        assert!(
            parse_time("since", Some("2026-01-02T03:04:05Z"))
                .unwrap()
                .is_some()
        );
        assert!(parse_time("since", None).unwrap().is_none());
        let err = parse_time("until", Some("yesterday")).unwrap_err();
        assert!(err.to_string().starts_with("until:"), "{err}");
    }
}
