//! Ages as kubectl shows them: a port of apimachinery's `duration.HumanDuration` and of the
//! printers' `translateTimestampSince`.

use jiff::Timestamp;
use serde_json::Value;

use super::fields::at;

const SECOND: i64 = 1_000_000_000;
const MINUTE: i64 = 60 * SECOND;
const HOUR: i64 = 60 * MINUTE;

/// Go's zero `time.Time` (0001-01-01T00:00:00Z) in Unix seconds: an unset `metav1.Time`, which
/// the printers show as `<unknown>` whether it is absent or written out.
const GO_ZERO_TIME_SECONDS: i64 = -62_135_596_800;

/// `duration.HumanDuration`: a duration given in nanoseconds, to two or three significant
/// figures ("5s", "3m10s", "70m", "3h20m", "2d1h", "367d", "2y1d", "8y"). Less than two
/// seconds in the future reads "0s", so clock skew between machines does not show; further
/// ahead is `<invalid>`.
pub fn human_duration(nanos: i64) -> String {
    // Integer division truncates toward zero like Go's `int(d.Seconds())`.
    let seconds = nanos / SECOND;
    if seconds < -1 {
        return "<invalid>".to_string();
    }
    if seconds < 0 {
        return "0s".to_string();
    }
    if seconds < 60 * 2 {
        return format!("{seconds}s");
    }
    let minutes = nanos / MINUTE;
    if minutes < 10 {
        let s = seconds % 60;
        if s == 0 {
            return format!("{minutes}m");
        }
        return format!("{minutes}m{s}s");
    }
    if minutes < 60 * 3 {
        return format!("{minutes}m");
    }
    let hours = nanos / HOUR;
    if hours < 8 {
        let m = minutes % 60;
        if m == 0 {
            return format!("{hours}h");
        }
        return format!("{hours}h{m}m");
    }
    if hours < 48 {
        return format!("{hours}h");
    }
    if hours < 24 * 8 {
        let h = hours % 24;
        if h == 0 {
            return format!("{}d", hours / 24);
        }
        return format!("{}d{h}h", hours / 24);
    }
    if hours < 24 * 365 * 2 {
        return format!("{}d", hours / 24);
    }
    if hours < 24 * 365 * 8 {
        let days = (hours / 24) % 365;
        if days == 0 {
            return format!("{}y", hours / 24 / 365);
        }
        return format!("{}y{days}d", hours / 24 / 365);
    }
    format!("{}y", hours / 24 / 365)
}

/// A `metav1.Time` or `MicroTime` field (RFC 3339, optionally with fractional seconds). `None`
/// when unset, null, unparseable or Go's zero time: the cases the printers treat as zero.
pub fn timestamp(value: Option<&Value>) -> Option<Timestamp> {
    let parsed: Timestamp = value?.as_str()?.parse().ok()?;
    let zero = parsed.as_second() == GO_ZERO_TIME_SECONDS && parsed.subsec_nanosecond() == 0;
    (!zero).then_some(parsed)
}

/// `translateTimestampSince`: how long before `now` a time was, `<unknown>` when it is unset.
pub fn since(then: Option<Timestamp>, now: Timestamp) -> String {
    match then {
        Some(then) => human_duration(elapsed_nanos(then, now)),
        None => "<unknown>".to_string(),
    }
}

/// The AGE cell: time since `metadata.creationTimestamp`.
pub(super) fn age(obj: &Value, now: Timestamp) -> String {
    since(timestamp(at(obj, &["metadata", "creationTimestamp"])), now)
}

/// `now - then` in nanoseconds, saturating like Go's `Time.Sub` when it overflows a Duration
/// (about 292 years either way).
fn elapsed_nanos(then: Timestamp, now: Timestamp) -> i64 {
    let nanos = now.as_nanosecond() - then.as_nanosecond();
    i64::try_from(nanos).unwrap_or(if nanos < 0 { i64::MIN } else { i64::MAX })
}
