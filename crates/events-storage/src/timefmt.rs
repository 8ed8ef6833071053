//! Timestamps as stored: RFC 3339 UTC text with exactly six fractional digits and `Z`.
//!
//! A fixed width makes text order equal time order, so `ORDER BY created_at` and
//! `created_at >= ?` work on the plain TEXT column and its index.

use time::format_description::BorrowedFormatItem;
use time::macros::format_description;
use time::{OffsetDateTime, PrimitiveDateTime};

const STORED: &[BorrowedFormatItem<'static>] =
    format_description!("[year]-[month]-[day]T[hour]:[minute]:[second].[subsecond digits:6]Z");

/// Formats `t` (any offset) as stored text, truncated to microseconds: the wire's own form
/// ([`events_envelope::format_utc_timestamp`]), so an event's timestamp is stored as it travelled.
pub(crate) fn format(t: OffsetDateTime) -> String {
    // Years outside 0..=9999 do not fit the fixed width; `OffsetDateTime` cannot produce
    // them from our inputs (RFC 3339 parsing bounds the year), so clamp rather than fail.
    // Only the ends of the year range can leave it (an offset moves an instant by less
    // than a day), so the year says which end.
    events_envelope::format_utc_timestamp(t).unwrap_or_else(|| {
        if t.year() < 5000 {
            "0000-01-01T00:00:00.000000Z".to_owned()
        } else {
            "9999-12-31T23:59:59.999999Z".to_owned()
        }
    })
}

/// Parses stored text; also accepts any RFC 3339 form so hand-edited rows still load.
pub(crate) fn parse(column: &'static str, text: &str) -> crate::Result<OffsetDateTime> {
    if let Ok(p) = PrimitiveDateTime::parse(text, STORED) {
        return Ok(p.assume_utc());
    }
    OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).map_err(|e| {
        crate::StorageError::corrupt(column, format!("{text:?} is not a timestamp: {e}"))
    })
}

/// The current instant, truncated to what is stored, so values returned equal values re-read.
pub(crate) fn now() -> OffsetDateTime {
    let t = OffsetDateTime::now_utc();
    t.replace_nanosecond(t.nanosecond() / 1000 * 1000)
        .unwrap_or(t)
}

/// Serde helpers writing the stored format (six digits, `Z`) and reading any RFC 3339.
pub mod serde_ts {
    use serde::{Deserialize, Deserializer, Serializer};
    use time::OffsetDateTime;

    /// Serialises as stored text.
    pub fn serialize<S: Serializer>(t: &OffsetDateTime, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format(*t))
    }

    /// Deserialises any RFC 3339 timestamp.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<OffsetDateTime, D::Error> {
        let text = String::deserialize(d)?;
        super::parse("timestamp", &text).map_err(serde::de::Error::custom)
    }

    /// The same for `Option<OffsetDateTime>` (`null` when absent).
    pub mod option {
        use serde::{Deserialize, Deserializer, Serializer};
        use time::OffsetDateTime;

        /// Serialises as stored text or `null`.
        pub fn serialize<S: Serializer>(
            t: &Option<OffsetDateTime>,
            s: S,
        ) -> Result<S::Ok, S::Error> {
            match t {
                Some(t) => s.serialize_str(&super::super::format(*t)),
                None => s.serialize_none(),
            }
        }

        /// Deserialises an RFC 3339 timestamp or `null`.
        pub fn deserialize<'de, D: Deserializer<'de>>(
            d: D,
        ) -> Result<Option<OffsetDateTime>, D::Error> {
            match Option::<String>::deserialize(d)? {
                Some(text) => super::super::parse("timestamp", &text)
                    .map(Some)
                    .map_err(serde::de::Error::custom),
                None => Ok(None),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::UtcOffset;
    use time::macros::datetime;

    #[test]
    fn stored_format_has_six_digits_and_z() {
        assert_eq!(
            format(datetime!(2026-03-01 12:00:00 UTC)),
            "2026-03-01T12:00:00.000000Z"
        );
        assert_eq!(
            format(datetime!(2026-03-01 14:00:00.123456789 +02:00)),
            "2026-03-01T12:00:00.123456Z"
        );
    }

    #[test]
    fn parse_round_trips_and_accepts_rfc3339() {
        let t = datetime!(2026-03-01 12:00:00.5 UTC);
        assert_eq!(parse("x", &format(t)).unwrap(), t);
        assert_eq!(parse("x", "2026-03-01T13:00:00.5+01:00").unwrap(), t);
        assert!(parse("x", "yesterday").is_err());
    }

    proptest::proptest! {
        #[test]
        // The digit writer itself is checked against the `time` crate in events-envelope;
        // here: what storage writes, its own parser reads back (to the microsecond).
        fn stored_text_parses_back_to_the_same_instant(
            micros in -62_167_219_200_000_000i64..253_402_300_800_000_000,
            offset_minutes in -1439i32..1440,
        ) {
            let utc = OffsetDateTime::from_unix_timestamp_nanos(i128::from(micros) * 1000).unwrap();
            let t = utc.to_offset(UtcOffset::from_whole_seconds(offset_minutes * 60).unwrap());
            let text = format(t);
            proptest::prop_assert_eq!(parse("x", &text).unwrap(), utc, "{}", text);
        }
    }

    #[test]
    fn instants_outside_the_fixed_width_years_are_clamped_to_its_ends() {
        assert_eq!(
            format(datetime!(0000-01-01 00:30:00 +01:00)),
            "0000-01-01T00:00:00.000000Z"
        );
        assert_eq!(
            format(datetime!(9999-12-31 23:30:00 -01:00)),
            "9999-12-31T23:59:59.999999Z"
        );
    }

    #[test]
    fn text_order_is_time_order() {
        let a = format(datetime!(2026-03-01 12:00:00.9 UTC));
        let b = format(datetime!(2026-03-01 12:00:01 UTC));
        assert!(a < b);
    }
}
