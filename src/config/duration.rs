//! Durations written as strings ("500ms", "5s", "2m"), parsed while the file is read so that a bad
//! one is reported with its key path. A duration longer than [`MAX_DURATION`] is refused here too:
//! the gateway adds them to clocks and multiplies them, and no setting needs more than a year, so
//! "99999999999h" is a typo to report, not a deadline to overflow on.

use std::time::Duration;

use serde::{Deserialize, Deserializer, de};

/// The longest duration any setting takes: a year (humantime's "1y" is 365.25 days).
const MAX_DURATION: Duration = Duration::from_secs(366 * 24 * 60 * 60);

/// A duration from the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigDuration(pub Duration);

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        let parsed = humantime::parse_duration(text.trim_matches(' ')).map_err(|e| {
            de::Error::custom(format!(
                "invalid duration {text:?} ({e}); write e.g. \"500ms\", \"5s\", \"2m\""
            ))
        })?;
        if parsed > MAX_DURATION {
            return Err(de::Error::custom(format!(
                "duration {text:?} is too long: no setting takes more than 366 days"
            )));
        }
        Ok(ConfigDuration(parsed))
    }
}
