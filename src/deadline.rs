//! gRPC deadlines: the `grpc-timeout` request header (gRPC over HTTP/2, "Requests":
//! `TimeoutValue TimeoutUnit`, at most 8 ASCII digits and one of `H M S m u n`). The policy reads
//! it to shorten an API's `timeout` for one call (never to lengthen it); the forwarder writes the
//! time left when the request leaves, so the upstream gives up when the gateway does.

use std::time::Duration;

use http::{HeaderName, HeaderValue};

pub const GRPC_TIMEOUT: HeaderName = HeaderName::from_static("grpc-timeout");

/// The most digits a `TimeoutValue` may have.
const MAX_DIGITS: usize = 8;

/// Reads a `grpc-timeout` value; `None` if it is not exactly digits and a unit.
pub fn parse(value: &HeaderValue) -> Option<Duration> {
    let bytes = value.as_bytes();
    let (&unit, digits) = bytes.split_last()?;
    if digits.is_empty() || digits.len() > MAX_DIGITS || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    // At most 8 digits: fits in a u64 with room for the hour's factor.
    let n = std::str::from_utf8(digits).ok()?.parse::<u64>().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

/// Writes `left` as a `grpc-timeout` value in the finest unit that fits 8 digits, rounded up so
/// the upstream never gets less time than the gateway gives it.
pub fn encode(left: Duration) -> HeaderValue {
    let limit = 10u128.pow(MAX_DIGITS as u32);
    let units: [(u128, char); 6] = [
        (1, 'n'),
        (1_000, 'u'),
        (1_000_000, 'm'),
        (1_000_000_000, 'S'),
        (60_000_000_000, 'M'),
        (3_600_000_000_000, 'H'),
    ];
    let nanos = left.as_nanos();
    for (per, unit) in units {
        let n = nanos.div_ceil(per);
        if n < limit {
            // Digits and a letter: always a valid header value.
            if let Ok(value) = HeaderValue::from_str(&format!("{n}{unit}")) {
                return value;
            }
        }
    }
    HeaderValue::from_static("99999999H")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_every_unit_and_refuses_the_rest() {
        let read = |v: &str| parse(&HeaderValue::from_str(v).unwrap());
        assert_eq!(read("1H"), Some(Duration::from_secs(3600)));
        assert_eq!(read("2M"), Some(Duration::from_secs(120)));
        assert_eq!(read("3S"), Some(Duration::from_secs(3)));
        assert_eq!(read("250m"), Some(Duration::from_millis(250)));
        assert_eq!(read("7u"), Some(Duration::from_micros(7)));
        assert_eq!(read("99999999n"), Some(Duration::from_nanos(99_999_999)));
        for bad in [
            "",
            "m",
            "100",
            "123456789m",
            "1.5S",
            "-1S",
            "1 S",
            "1s",
            "+1S",
            "1SS",
        ] {
            assert_eq!(read(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn writes_the_finest_unit_that_fits_rounding_up() {
        let written = |d: Duration| encode(d).to_str().unwrap().to_owned();
        assert_eq!(written(Duration::from_nanos(1500)), "1500n");
        assert_eq!(written(Duration::from_millis(250)), "250000u");
        assert_eq!(written(Duration::from_secs(30)), "30000000u");
        assert_eq!(written(Duration::from_nanos(100_000_000_001)), "100001m");
        assert_eq!(written(Duration::from_secs(2_000_000)), "2000000S");
        let back = parse(&encode(Duration::from_nanos(123_456_789))).unwrap();
        assert!(back >= Duration::from_nanos(123_456_789));
    }
}
