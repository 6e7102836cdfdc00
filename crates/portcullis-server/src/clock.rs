//! The one place the server reads the time, so tests can move it.

use portcullis_core::UnixMillis;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

#[derive(Clone, Debug, Default)]
pub enum Clock {
    #[default]
    System,
    /// A clock that only moves when a test moves it.
    Manual(Arc<AtomicI64>),
}

impl Clock {
    pub fn manual(start: UnixMillis) -> Self {
        Self::Manual(Arc::new(AtomicI64::new(start)))
    }

    pub fn now(&self) -> UnixMillis {
        match self {
            Self::System => std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_millis() as i64)
                .unwrap_or(0),
            Self::Manual(t) => t.load(Ordering::SeqCst),
        }
    }

    /// Move a manual clock forward; does nothing to the system clock.
    pub fn advance(&self, millis: i64) {
        if let Self::Manual(t) = self {
            t.fetch_add(millis, Ordering::SeqCst);
        }
    }
}

/// RFC 3339 rendering of a Unix-millisecond time, for humans.
pub fn rfc3339(millis: UnixMillis) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(millis) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_else(|| millis.to_string())
}

/// Parse an RFC 3339 time into Unix milliseconds.
pub fn parse_rfc3339(text: &str) -> Option<UnixMillis> {
    let t =
        time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339).ok()?;
    i64::try_from(t.unix_timestamp_nanos() / 1_000_000).ok()
}

/// A period as people write it — `30d`, `12h`, `90m` — in milliseconds.
pub fn period_ms(text: &str) -> Result<i64, String> {
    let usage = || format!("a period is a number and d, h or m (`30d`), not `{text}`");
    let (number, unit) = text.split_at(text.len().saturating_sub(1));
    let n: i64 = number.parse().map_err(|_| usage())?;
    let unit = match unit {
        "d" => 86_400_000,
        "h" => 3_600_000,
        "m" => 60_000,
        _ => return Err(usage()),
    };
    n.checked_mul(unit)
        .filter(|ms| *ms > 0)
        .ok_or_else(|| format!("the period `{text}` is out of range"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn rfc3339_round_trips() {
        assert_eq!(super::rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(super::rfc3339(951_782_400_123), "2000-02-29T00:00:00.123Z");
        assert_eq!(
            super::parse_rfc3339("2000-02-29T00:00:00.123Z"),
            Some(951_782_400_123)
        );
        assert_eq!(super::parse_rfc3339("yesterday"), None);
    }

    #[test]
    fn periods_parse_or_explain() {
        use super::period_ms;
        assert_eq!(period_ms("30d"), Ok(30 * 86_400_000));
        assert_eq!(period_ms("12h"), Ok(12 * 3_600_000));
        for bad in ["", "d", "30", "30w", "-1d", "0d", "99999999999999999d"] {
            assert!(period_ms(bad).is_err(), "{bad}");
        }
    }
}
