//! Durations written as strings ("500ms", "5s", "2m"), parsed while the file is read so that a bad
//! one is reported with its key path.

use std::time::Duration;

use serde::{Deserialize, Deserializer, de};

/// A duration from the config file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ConfigDuration(pub Duration);

impl<'de> Deserialize<'de> for ConfigDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        humantime::parse_duration(text.trim_matches(' '))
            .map(ConfigDuration)
            .map_err(|e| {
                de::Error::custom(format!(
                    "invalid duration {text:?} ({e}); write e.g. \"500ms\", \"5s\", \"2m\""
                ))
            })
    }
}
