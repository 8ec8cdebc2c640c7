//! Parsers for the headers a dependency uses to push back or to bound a call. Every one takes
//! untrusted bytes: none panics, a malformed value is `None`, and a value over the cap is the
//! cap (never read as absent).

use std::time::{Duration, SystemTime};

/// Parses a `Retry-After` value: delta-seconds (`120`) or an HTTP-date
/// (`Wed, 21 Oct 2015 07:28:00 GMT`, and the two obsolete formats).
///
/// An HTTP-date is measured from `date`, the response's own `Date` header, so that neither the
/// caller's clock nor clock skew between the hosts matters; without a `Date` header a date
/// cannot be placed and is ignored (`None`). A date in the past is zero. The result is at most
/// `cap`; a number too large for any integer is `cap` too.
///
/// ```
/// use std::time::Duration;
/// use palisade::http::parse_retry_after;
///
/// let cap = Duration::from_secs(300);
/// assert_eq!(parse_retry_after(b"120", None, cap), Some(Duration::from_secs(120)));
/// assert_eq!(parse_retry_after(b"99999999999999999999999", None, cap), Some(cap));
/// assert_eq!(parse_retry_after(b"soon", None, cap), None);
/// let date = b"Wed, 21 Oct 2015 07:28:00 GMT";
/// assert_eq!(
///     parse_retry_after(b"Wed, 21 Oct 2015 07:29:00 GMT", Some(date), cap),
///     Some(Duration::from_secs(60)),
/// );
/// ```
pub fn parse_retry_after(value: &[u8], date: Option<&[u8]>, cap: Duration) -> Option<Duration> {
    let value = value.trim_ascii();
    if let Some(secs) = parse_digits(value) {
        return Some(secs.map_or(cap, Duration::from_secs).min(cap));
    }
    let retry_at = parse_date(value)?;
    let now = parse_date(date?.trim_ascii())?;
    Some(
        retry_at
            .duration_since(now)
            .unwrap_or(Duration::ZERO)
            .min(cap),
    )
}

/// Parses `grpc-retry-pushback-ms`: a non-negative number of milliseconds, at most `cap`.
/// Anything else (a negative value means "do not retry" to a retrying client) is `None`.
///
/// ```
/// use std::time::Duration;
/// use palisade::http::parse_grpc_pushback;
///
/// let cap = Duration::from_secs(300);
/// assert_eq!(parse_grpc_pushback(b"1500", cap), Some(Duration::from_millis(1500)));
/// assert_eq!(parse_grpc_pushback(b"-1", cap), None);
/// assert_eq!(parse_grpc_pushback(b"18446744073709551616", cap), Some(cap));
/// ```
pub fn parse_grpc_pushback(value: &[u8], cap: Duration) -> Option<Duration> {
    let millis = parse_digits(value.trim_ascii())?;
    Some(millis.map_or(cap, Duration::from_millis).min(cap))
}

/// Parses a `grpc-timeout` value: 1 to 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
///
/// ```
/// use std::time::Duration;
/// use palisade::http::parse_grpc_timeout;
///
/// assert_eq!(parse_grpc_timeout(b"250m"), Some(Duration::from_millis(250)));
/// assert_eq!(parse_grpc_timeout(b"123456789S"), None); // 9 digits
/// ```
pub fn parse_grpc_timeout(value: &[u8]) -> Option<Duration> {
    let (&unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 {
        return None;
    }
    // At most 8 digits: always fits.
    let n = parse_digits(digits)??;
    Some(match unit {
        b'H' => Duration::from_secs(n.saturating_mul(3600)),
        b'M' => Duration::from_secs(n.saturating_mul(60)),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Formats `timeout` as a `grpc-timeout` value: at most 8 digits, in the finest unit that
/// fits, rounded up (a server must never be told it has less time than it has). Above
/// 99 999 999 hours, that.
///
/// ```
/// use std::time::Duration;
/// use palisade::http::format_grpc_timeout;
///
/// assert_eq!(format_grpc_timeout(Duration::from_millis(250)), "250000u");
/// assert_eq!(format_grpc_timeout(Duration::from_nanos(12)), "12n");
/// assert_eq!(format_grpc_timeout(Duration::from_secs(1000)), "1000000m");
/// assert_eq!(format_grpc_timeout(Duration::from_nanos(100_000_001)), "100001u");
/// ```
pub fn format_grpc_timeout(timeout: Duration) -> String {
    const MAX: u128 = 99_999_999;
    let nanos = timeout.as_nanos();
    for (unit, per) in [
        ('n', 1u128),
        ('u', 1_000),
        ('m', 1_000_000),
        ('S', 1_000_000_000),
        ('M', 60_000_000_000),
        ('H', 3_600_000_000_000),
    ] {
        let n = nanos.div_ceil(per);
        if n <= MAX {
            return format!("{n}{unit}");
        }
    }
    format!("{MAX}H")
}

/// Parses a `grpc-status` value as tonic does, so that the breaker and the caller agree on
/// what a reply said: a code written exactly as the spec writes it (`0` to `16`: no sign,
/// no space, no leading zero) is that code; anything else is `UNKNOWN` (2), a failure by
/// default (`00`, ` 0` or `016` would otherwise be a success, or another code, for the
/// breaker while the caller gets `UNKNOWN`).
#[cfg(feature = "grpc")]
pub(crate) fn parse_grpc_status(value: &[u8]) -> u32 {
    match *value {
        [d @ b'0'..=b'9'] => u32::from(d - b'0'),
        [b'1', d @ b'0'..=b'6'] => 10 + u32::from(d - b'0'),
        _ => 2,
    }
}

/// `Some(Some(n))` for ASCII digits (at least one), `Some(None)` when they overflow a `u64`,
/// `None` for anything else.
fn parse_digits(digits: &[u8]) -> Option<Option<u64>> {
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    Some(digits.iter().try_fold(0u64, |n, &d| {
        n.checked_mul(10)?.checked_add(u64::from(d - b'0'))
    }))
}

/// Parses an HTTP-date. (`SystemTime` here is a calendar value read from a header, never the
/// clock.)
fn parse_date(value: &[u8]) -> Option<SystemTime> {
    httpdate::parse_http_date(std::str::from_utf8(value).ok()?).ok()
}
