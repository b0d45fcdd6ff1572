//! Human-friendly sizes (`"64MiB"`) and durations (`"500ms"`) for config files
//! and flags.

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::{fmt, str::FromStr, time::Duration};

/// A size in bytes, written as a plain integer or with a unit: `B`, `KiB`,
/// `MiB`, `GiB` (or `KB`, `MB`, `GB`, taken as powers of 1000).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(pub u64);

/// A duration written with a unit: `ms`, `s`, `m` or `h` (`"250ms"`, `"5s"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DurationSpec(pub Duration);

// In the API a size is a number of bytes (a string with a unit is also
// accepted), and a duration a string with its unit.
impl utoipa::PartialSchema for ByteSize {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::Integer)
            .description(Some("bytes; `\"64MiB\"` is also accepted"))
            .into()
    }
}
impl utoipa::ToSchema for ByteSize {}

impl utoipa::PartialSchema for DurationSpec {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::schema::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .description(Some("a number and a unit: `ms`, `s`, `m` or `h`"))
            .examples(["250ms"])
            .into()
    }
}
impl utoipa::ToSchema for DurationSpec {}

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0}")]
pub struct UnitError(String);

fn split_number(s: &str) -> Result<(u64, &str), UnitError> {
    let s = s.trim();
    let digits = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    if digits == 0 {
        return Err(UnitError(format!("`{s}` does not start with a number")));
    }
    let number = s[..digits]
        .parse::<u64>()
        .map_err(|_| UnitError(format!("`{s}` is too large")))?;
    Ok((number, s[digits..].trim()))
}

impl FromStr for ByteSize {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (n, unit) = split_number(s)?;
        let scale: u64 = match unit {
            "" | "B" => 1,
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "KB" | "kB" => 1_000,
            "MB" => 1_000_000,
            "GB" => 1_000_000_000,
            other => {
                return Err(UnitError(format!(
                    "unknown size unit `{other}` in `{s}` (use B, KiB, MiB or GiB)"
                )));
            }
        };
        n.checked_mul(scale)
            .map(ByteSize)
            .ok_or_else(|| UnitError(format!("`{s}` is too large")))
    }
}

impl FromStr for DurationSpec {
    type Err = UnitError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (n, unit) = split_number(s)?;
        let d = match unit {
            "ms" => Duration::from_millis(n),
            "s" => Duration::from_secs(n),
            "m" => Duration::from_secs(n.saturating_mul(60)),
            "h" => Duration::from_secs(n.saturating_mul(3600)),
            "" => {
                return Err(UnitError(format!(
                    "`{s}` needs a unit: ms, s, m or h (for example \"500ms\")"
                )));
            }
            other => {
                return Err(UnitError(format!(
                    "unknown duration unit `{other}` in `{s}` (use ms, s, m or h)"
                )));
            }
        };
        if d.is_zero() {
            return Err(UnitError(format!("`{s}` must be longer than zero")));
        }
        Ok(DurationSpec(d))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} bytes", self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Int(u64),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Int(n) => Ok(ByteSize(n)),
            Raw::Text(s) => s.parse().map_err(serde::de::Error::custom),
        }
    }
}

impl Serialize for ByteSize {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u64(self.0)
    }
}

impl Serialize for DurationSpec {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format!("{}ms", self.0.as_millis()))
    }
}

impl<'de> Deserialize<'de> for DurationSpec {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_parse_with_units() {
        assert_eq!("64MiB".parse(), Ok(ByteSize(64 << 20)));
        assert_eq!("1024".parse(), Ok(ByteSize(1024)));
        assert_eq!("2 KB".parse(), Ok(ByteSize(2000)));
        assert!("12 parsecs".parse::<ByteSize>().is_err());
        assert!("MiB".parse::<ByteSize>().is_err());
    }

    #[test]
    fn durations_need_a_unit() {
        assert_eq!(
            "250ms".parse(),
            Ok(DurationSpec(Duration::from_millis(250)))
        );
        assert_eq!("2m".parse(), Ok(DurationSpec(Duration::from_secs(120))));
        assert_eq!("1h".parse(), Ok(DurationSpec(Duration::from_secs(3600))));
        assert!("250".parse::<DurationSpec>().is_err());
        assert!("0s".parse::<DurationSpec>().is_err());
    }
}
