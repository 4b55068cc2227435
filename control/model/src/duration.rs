//! `google.protobuf.Duration` as Istio YAML spells it: `"1.5s"` (the
//! protobuf JSON form) and the Go forms Istio's CRD validation accepts
//! (`"100ms"`, `"10m"`, `"1h"`, `"1h30m"`, `"0"`).

use std::fmt;

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative duration read from a string. Displays in the shortest
/// exact form (`7s`, `100ms`, `10m`, `1.5s`), which parses back.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Duration(pub std::time::Duration);

impl Duration {
    pub fn get(self) -> std::time::Duration {
        self.0
    }

    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Self(d)
    }
}

const EXAMPLES: &str = "e.g. 100ms, 1.5s, 10m, 1h";

/// Parse a duration: one or more `<decimal><unit>` terms (`1h30m`, `1.5s`)
/// with the units `ns`, `us` (`µs`), `ms`, `s`, `m`, `h`, or a bare `0`.
/// Negative values are rejected, as are values beyond ~584 years.
pub fn parse_duration(s: &str) -> Result<std::time::Duration, String> {
    if s.starts_with('-') {
        return Err(format!("invalid duration {s:?}: must not be negative"));
    }
    let body = s.strip_prefix('+').unwrap_or(s);
    if body == "0" {
        return Ok(std::time::Duration::ZERO);
    }
    if body.is_empty() {
        return Err(format!("invalid duration {s:?} ({EXAMPLES})"));
    }
    let too_large = || format!("invalid duration {s:?}: too large");
    let mut rest = body;
    let mut total: u128 = 0;
    while !rest.is_empty() {
        let num_len = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let (number, after) = rest.split_at(num_len);
        let unit_len = after
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(after.len());
        let (unit, after) = after.split_at(unit_len);
        let (int, frac) = number.split_once('.').unwrap_or((number, ""));
        if (int.is_empty() && frac.is_empty()) || frac.contains('.') {
            return Err(format!("invalid duration {s:?} ({EXAMPLES})"));
        }
        let unit_nanos: u128 = match unit {
            "ns" => 1,
            "us" | "µs" | "μs" => 1_000,
            "ms" => 1_000_000,
            "s" => 1_000_000_000,
            "m" => 60_000_000_000,
            "h" => 3_600_000_000_000,
            "" => return Err(format!("invalid duration {s:?}: missing unit ({EXAMPLES})")),
            other => {
                return Err(format!(
                    "invalid duration {s:?}: unknown unit {other:?} ({EXAMPLES})"
                ))
            }
        };
        let int: u128 = if int.is_empty() {
            0
        } else {
            int.parse::<u64>().map_err(|_| too_large())?.into()
        };
        // 18 fraction digits keep `frac * unit_nanos` far below u128::MAX.
        let frac = &frac[..frac.len().min(18)];
        let frac_nanos = if frac.is_empty() {
            0
        } else {
            let digits: u128 = frac.parse().map_err(|_| too_large())?;
            digits * unit_nanos / 10u128.pow(frac.len() as u32)
        };
        total = total
            .checked_add(int.checked_mul(unit_nanos).ok_or_else(too_large)? + frac_nanos)
            .ok_or_else(too_large)?;
        rest = after;
    }
    let nanos = u64::try_from(total).map_err(|_| too_large())?;
    Ok(std::time::Duration::from_nanos(nanos))
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos();
        const MS: u128 = 1_000_000;
        const S: u128 = 1_000 * MS;
        if nanos == 0 {
            return f.write_str("0s");
        }
        for (unit, name) in [(3600 * S, "h"), (60 * S, "m"), (S, "s")] {
            if nanos.is_multiple_of(unit) {
                return write!(f, "{}{name}", nanos / unit);
            }
        }
        if nanos < S && nanos.is_multiple_of(MS) {
            return write!(f, "{}ms", nanos / MS);
        }
        let frac = format!("{:09}", nanos % S);
        write!(f, "{}.{}s", nanos / S, frac.trim_end_matches('0'))
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = Duration;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "a duration string ({EXAMPLES})")
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<Duration, E> {
                parse_duration(v).map(Duration).map_err(E::custom)
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Duration, E> {
                if v == 0 {
                    return Ok(Duration::default());
                }
                Err(E::custom(format!(
                    "invalid duration {v}: missing unit ({EXAMPLES})"
                )))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Duration, E> {
                if v < 0 {
                    return Err(E::custom(format!(
                        "invalid duration {v}: must not be negative"
                    )));
                }
                self.visit_u64(v.unsigned_abs())
            }

            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Duration, E> {
                Err(E::custom(format!(
                    "invalid duration {v}: missing unit ({EXAMPLES})"
                )))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration as D;

    use super::*;

    #[test]
    fn parses_protobuf_and_go_forms() {
        assert_eq!(parse_duration("1.5s"), Ok(D::from_millis(1500)));
        assert_eq!(parse_duration("100ms"), Ok(D::from_millis(100)));
        assert_eq!(parse_duration("10m"), Ok(D::from_secs(600)));
        assert_eq!(parse_duration("1h"), Ok(D::from_secs(3600)));
        assert_eq!(parse_duration("1h30m"), Ok(D::from_secs(5400)));
        assert_eq!(parse_duration("0"), Ok(D::ZERO));
        assert_eq!(parse_duration("0s"), Ok(D::ZERO));
        assert_eq!(parse_duration(".5s"), Ok(D::from_millis(500)));
        assert_eq!(parse_duration("250us"), Ok(D::from_micros(250)));
        assert_eq!(parse_duration("1.000000001s"), Ok(D::new(1, 1)));
    }

    #[test]
    fn rejects_with_reasons() {
        assert_eq!(
            parse_duration("7").unwrap_err(),
            "invalid duration \"7\": missing unit (e.g. 100ms, 1.5s, 10m, 1h)"
        );
        assert_eq!(
            parse_duration("5 seconds").unwrap_err(),
            "invalid duration \"5 seconds\": unknown unit \" seconds\" (e.g. 100ms, 1.5s, 10m, 1h)"
        );
        assert_eq!(
            parse_duration("-1s").unwrap_err(),
            "invalid duration \"-1s\": must not be negative"
        );
        assert!(parse_duration("").is_err());
        assert!(parse_duration("s").is_err());
        assert!(parse_duration("1..2s").is_err());
        assert!(parse_duration("99999999999999999999h").is_err());
        assert!(parse_duration("6000000h").is_err());
    }

    #[test]
    fn displays_shortest_form_that_round_trips() {
        for (text, shown) in [
            ("7s", "7s"),
            ("100ms", "100ms"),
            ("600s", "10m"),
            ("1.5s", "1.5s"),
            ("0.000001s", "0.000001s"),
            ("0s", "0s"),
            ("1500ms", "1.5s"),
            ("1100us", "0.0011s"),
            ("90m", "90m"),
        ] {
            let d = Duration(parse_duration(text).unwrap());
            assert_eq!(d.to_string(), shown);
            assert_eq!(parse_duration(shown), Ok(d.0));
        }
    }
}
