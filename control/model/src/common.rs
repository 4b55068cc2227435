//! Types shared by several kinds.

use std::{collections::BTreeMap, fmt};

use serde::{de, Deserialize, Deserializer, Serialize, Serializer};

/// Istio's `StringMatch`: one of `exact`, `prefix`, `regex` (RE2 syntax),
/// or `{}`, which for headers and query parameters means "present".
/// Setting two of them is a schema error, reported where it is written.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "RawStringMatch", into = "RawStringMatch")]
pub enum StringMatch {
    Exact(String),
    Prefix(String),
    Regex(String),
    /// `{}`: the header or query parameter is present, whatever its value.
    Present,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct RawStringMatch {
    #[serde(skip_serializing_if = "Option::is_none")]
    exact: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    regex: Option<String>,
}

impl TryFrom<RawStringMatch> for StringMatch {
    type Error = String;

    fn try_from(raw: RawStringMatch) -> Result<Self, String> {
        match (raw.exact, raw.prefix, raw.regex) {
            (None, None, None) => Ok(StringMatch::Present),
            (Some(s), None, None) => Ok(StringMatch::Exact(s)),
            (None, Some(s), None) => Ok(StringMatch::Prefix(s)),
            (None, None, Some(s)) => Ok(StringMatch::Regex(s)),
            _ => Err("set only one of exact, prefix or regex".into()),
        }
    }
}

impl From<StringMatch> for RawStringMatch {
    fn from(m: StringMatch) -> Self {
        let mut raw = RawStringMatch::default();
        match m {
            StringMatch::Exact(s) => raw.exact = Some(s),
            StringMatch::Prefix(s) => raw.prefix = Some(s),
            StringMatch::Regex(s) => raw.regex = Some(s),
            StringMatch::Present => {}
        }
        raw
    }
}

impl StringMatch {
    /// The YAML field that holds the value (`exact`, `prefix`, `regex`).
    pub fn field(&self) -> Option<&'static str> {
        match self {
            StringMatch::Exact(_) => Some("exact"),
            StringMatch::Prefix(_) => Some("prefix"),
            StringMatch::Regex(_) => Some("regex"),
            StringMatch::Present => None,
        }
    }
}

/// `percentage: {value: 10.5}`: a share of requests, 0 to 100.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Percent {
    pub value: f64,
}

/// `port: {number: 9080}`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PortSelector {
    pub number: u32,
}

/// The networking API's selector (`Sidecar`, `ServiceEntry`):
/// `workloadSelector: {labels: {app: reviews}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkloadSelector {
    pub labels: BTreeMap<String, String>,
}

/// The `istio.type.v1beta1.WorkloadSelector` of the security API (and of
/// `DestinationRule.workloadSelector`): `selector: {matchLabels: {...}}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct PolicySelector {
    pub match_labels: BTreeMap<String, String>,
}

/// A port number used as a map key (`portLevelMtls: {8080: ...}`). YAML
/// written by hand has integer keys; `kubectl get -o yaml` quotes them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PortKey(pub u32);

impl fmt::Display for PortKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Serialize for PortKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(self.0)
    }
}

impl<'de> Deserialize<'de> for PortKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl de::Visitor<'_> for V {
            type Value = PortKey;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number")
            }

            fn visit_u64<E: de::Error>(self, v: u64) -> Result<PortKey, E> {
                u32::try_from(v)
                    .map(PortKey)
                    .map_err(|_| E::custom(format!("port {v} is out of range")))
            }

            fn visit_i64<E: de::Error>(self, v: i64) -> Result<PortKey, E> {
                u64::try_from(v)
                    .map_err(|_| E::custom(format!("port {v} is out of range")))
                    .and_then(|v| self.visit_u64(v))
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<PortKey, E> {
                v.parse()
                    .map(PortKey)
                    .map_err(|_| E::custom(format!("{v:?} is not a port number")))
            }
        }
        d.deserialize_any(V)
    }
}

/// A `string → string` map whose values may also be unquoted booleans or
/// integers in the YAML (`test: true`), kept as their text. Floats are
/// refused: `1.0` would not come back as written.
pub(crate) fn scalar_string_map<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<BTreeMap<String, String>, D::Error> {
    struct Text(String);

    impl<'de> Deserialize<'de> for Text {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
            struct V;
            impl de::Visitor<'_> for V {
                type Value = Text;

                fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                    f.write_str("a string")
                }

                fn visit_str<E: de::Error>(self, v: &str) -> Result<Text, E> {
                    Ok(Text(v.to_owned()))
                }

                fn visit_bool<E: de::Error>(self, v: bool) -> Result<Text, E> {
                    Ok(Text(v.to_string()))
                }

                fn visit_i64<E: de::Error>(self, v: i64) -> Result<Text, E> {
                    Ok(Text(v.to_string()))
                }

                fn visit_u64<E: de::Error>(self, v: u64) -> Result<Text, E> {
                    Ok(Text(v.to_string()))
                }
            }
            d.deserialize_any(V)
        }
    }

    let map = Option::<BTreeMap<String, Text>>::deserialize(d)?;
    Ok(map
        .unwrap_or_default()
        .into_iter()
        .map(|(k, v)| (k, v.0))
        .collect())
}
