//! Rates written as strings ("50/s", "1200/m", "20/min", "3600/h"), parsed while the file is read so
//! that a bad one is reported with its key path. Used for provider call budgets.

use std::num::NonZeroU32;
use std::time::Duration;

use serde::{Deserialize, Deserializer, de};

/// So many events per period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rate {
    pub count: NonZeroU32,
    pub per: Duration,
}

impl Rate {
    /// The gap between two events at this rate, as the period divided by the count.
    pub fn interval(&self) -> Duration {
        self.per / self.count.get()
    }
}

impl std::fmt::Display for Rate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let unit = match self.per.as_secs() {
            1 => "s",
            60 => "m",
            _ => "h",
        };
        write!(f, "{}/{unit}", self.count)
    }
}

impl std::str::FromStr for Rate {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let usage =
            || format!("invalid rate {text:?}; write e.g. \"50/s\", \"1200/m\" or \"3600/h\"");
        let (count, unit) = text.trim().split_once('/').ok_or_else(usage)?;
        let count: u32 = count.trim().parse().map_err(|_| usage())?;
        let count = NonZeroU32::new(count).ok_or("a rate must be at least 1 per period")?;
        let per = match unit.trim() {
            "s" | "sec" | "second" => Duration::from_secs(1),
            "m" | "min" | "minute" => Duration::from_secs(60),
            "h" | "hour" => Duration::from_secs(3600),
            _ => return Err(usage()),
        };
        Ok(Rate { count, per })
    }
}

impl<'de> Deserialize<'de> for Rate {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_rates_per_second_minute_and_hour() {
        let r: Rate = "50/s".parse().unwrap();
        assert_eq!((r.count.get(), r.per), (50, Duration::from_secs(1)));
        assert_eq!(r.interval(), Duration::from_millis(20));
        let r: Rate = " 1200 / min ".parse().unwrap();
        assert_eq!((r.count.get(), r.per), (1200, Duration::from_secs(60)));
        assert_eq!(r.to_string(), "1200/m");
        assert_eq!(
            "3600/h".parse::<Rate>().unwrap().interval(),
            Duration::from_secs(1)
        );
        for bad in ["", "50", "50/d", "x/s", "-1/s", "0/s", "99999999999/s"] {
            assert!(bad.parse::<Rate>().is_err(), "{bad}");
        }
    }
}
