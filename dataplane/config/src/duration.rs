//! Duration strings: `250ms`, `15s`, `1m`, `1h`, `1.5s`.

use std::time::Duration;

const EXPECTED: &str = "expected a number and a unit: 250ms, 15s, 1m, 1h, 1.5s";

/// Parse a duration string: a non-negative decimal number (`15`, `1.5`)
/// directly followed by one of the units `ms`, `s`, `m`, `h`. Precision is
/// kept to the nanosecond (extra fraction digits are truncated); values
/// beyond ~584 years are rejected. The error is a reason without a field.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let generic = || format!("invalid duration {s:?} ({EXPECTED})");
    if s.starts_with('-') {
        return Err(format!("invalid duration {s:?}: must not be negative"));
    }
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (number, unit) = s.split_at(split);
    if number.is_empty() {
        return Err(generic());
    }
    let unit_nanos: u128 = match unit {
        "ms" => 1_000_000,
        "s" => 1_000_000_000,
        "m" => 60_000_000_000,
        "h" => 3_600_000_000_000,
        "" => {
            return Err(format!(
                "invalid duration {s:?}: missing unit (expected e.g. 250ms, 15s, 1m, 1h)"
            ))
        }
        _ => return Err(generic()),
    };
    let (int, frac) = match number.split_once('.') {
        Some((i, f)) if !i.is_empty() && !f.is_empty() && !f.contains('.') => (i, f),
        Some(_) => return Err(generic()),
        None => (number, ""),
    };
    let out_of_range = || format!("invalid duration {s:?}: too large");
    let int: u128 = int.parse::<u64>().map_err(|_| out_of_range())?.into();
    // 18 fraction digits keep `frac * unit_nanos` far below u128::MAX.
    let frac = &frac[..frac.len().min(18)];
    let frac_nanos = match frac {
        "" => 0,
        f => f.parse::<u128>().map_err(|_| generic())? * unit_nanos / 10u128.pow(f.len() as u32),
    };
    let nanos = int * unit_nanos + frac_nanos;
    let nanos = u64::try_from(nanos).map_err(|_| out_of_range())?;
    Ok(Duration::from_nanos(nanos))
}

/// The shortest exact text form (`1h`, `2m`, `15s`, `250ms`, `1.0000005s`);
/// [`parse_duration`] reads it back to the same value.
pub fn format_duration(d: Duration) -> String {
    ringmesh_route::format_duration(d)
}

/// `deserialize_with` for optional duration strings: a bare YAML number is
/// rejected here, with its line and column, rather than as a type error.
pub(crate) fn opt_duration<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<String>, D::Error> {
    struct V;
    impl<'de> serde::de::Visitor<'de> for V {
        type Value = Option<String>;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a duration string such as 250ms, 15s, 1m or 1h")
        }

        fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_owned()))
        }

        fn visit_string<E: serde::de::Error>(self, v: String) -> Result<Self::Value, E> {
            Ok(Some(v))
        }

        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Self::Value, E> {
            Err(E::custom(format!(
                "invalid duration {v}: missing unit (expected e.g. 250ms, 15s, 1m, 1h)"
            )))
        }

        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Self::Value, E> {
            if v < 0 {
                return Err(E::custom(format!(
                    "invalid duration {v}: must not be negative"
                )));
            }
            Err(E::custom(format!(
                "invalid duration {v}: missing unit (expected e.g. 250ms, 15s, 1m, 1h)"
            )))
        }

        fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Self::Value, E> {
            Err(E::custom(format!(
                "invalid duration {v}: missing unit (expected e.g. 250ms, 15s, 1m, 1h)"
            )))
        }

        fn visit_none<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: serde::de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D: serde::Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
            d.deserialize_any(self)
        }
    }
    d.deserialize_any(V)
}
