//! Parses what ManyChat posts to us: its `Full Contact Data` object (`id` as a string or a
//! number, many keys we ignore, `custom_fields` as a name → value map), or the flat payload of
//! our own callbacks (`subscriber_id` plus engine vars). Ids go through `serde_json::Value`
//! and keep the number's digits: they exceed 2^53, so an `f64` would corrupt them.

use super::endpoint::{Endpoint, EMAIL, ORDER_NUMBER, REWARD_ID};
use super::error::ManychatError;
use crate::domain::Profile;
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// Keys of our callback payloads that describe the contact rather than being engine vars.
const RESERVED: [&str; 4] = ["subscriber_id", "id", "first_name", "locale"];

/// Where a step field may sit in `custom_fields`, best first. The `_input` names are the
/// custom fields a ManyChat "User Input" block typically saves into.
fn custom_aliases(field: &str) -> &'static [&'static str] {
    match field {
        EMAIL => &["email_input", "email"],
        ORDER_NUMBER => &["order_number", "order_number_input"],
        REWARD_ID => &["reward_id", "reward_id_input"],
        _ => &[],
    }
}

/// One parsed request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContactRequest {
    pub subscriber_id: String,
    pub profile: Profile,
    source: Source,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// Our own callback (or an author's flat body): every non-reserved value is an engine var.
    Callback(BTreeMap<String, String>),
    /// ManyChat's contact object: step fields are looked up by name.
    Contact {
        top: BTreeMap<String, String>,
        custom: BTreeMap<String, String>,
        /// The contact's system email. The top-level `email` of Full Contact Data is this.
        system_email: Option<String>,
    },
}

impl ContactRequest {
    pub fn parse(body: &[u8]) -> Result<Self, ManychatError> {
        let value: Value = serde_json::from_slice(body).map_err(ManychatError::MalformedJson)?;
        let Value::Object(obj) = value else {
            return Err(ManychatError::NotAnObject);
        };
        let profile = Profile {
            first_name: obj.get("first_name").and_then(scalar_text),
            locale: obj.get("locale").and_then(scalar_text),
        };
        // `subscriber_id` wins: it is what our callbacks send, and it is never a ManyChat field.
        let (field, source) = if obj.contains_key("subscriber_id") {
            ("subscriber_id", Source::Callback(callback_vars(&obj)))
        } else {
            ("id", contact_source(&obj))
        };
        let subscriber_id = match obj.get(field) {
            None | Some(Value::Null) => return Err(ManychatError::MissingSubscriberId),
            Some(v) => id_text(v).ok_or(ManychatError::BadSubscriberIdType { field })?,
        };
        if subscriber_id.is_empty() {
            return Err(ManychatError::MissingSubscriberId);
        }
        Ok(ContactRequest {
            subscriber_id,
            profile,
            source,
        })
    }

    /// The engine vars for a run of `endpoint`'s flow.
    pub fn vars_for(&self, endpoint: Endpoint) -> BTreeMap<String, String> {
        let mut vars = match &self.source {
            Source::Callback(vars) => vars.clone(),
            Source::Contact {
                top,
                custom,
                system_email,
            } => {
                let mut vars = BTreeMap::new();
                for &field in endpoint.fields() {
                    // An explicit top-level value beats a custom field, which may be stale.
                    let value = top.get(field).or_else(|| custom.get(field)).or_else(|| {
                        // Only an explicit join may use the email the contact gave ManyChat;
                        // a claim by a non-member asks which email they shop with.
                        (field == EMAIL && endpoint == Endpoint::Join)
                            .then_some(system_email.as_ref())
                            .flatten()
                    });
                    if let Some(v) = value {
                        vars.insert(field.to_owned(), v.clone());
                    }
                }
                vars
            }
        };
        for &field in endpoint.excluded() {
            vars.remove(field);
        }
        vars
    }
}

fn callback_vars(obj: &Map<String, Value>) -> BTreeMap<String, String> {
    obj.iter()
        .filter(|(k, _)| !RESERVED.contains(&k.as_str()))
        .filter_map(|(k, v)| Some((k.clone(), scalar_text(v)?)))
        .collect()
}

fn contact_source(obj: &Map<String, Value>) -> Source {
    // The top-level `email` is ManyChat's system field, so it is not an explicit answer.
    let top = [ORDER_NUMBER, REWARD_ID]
        .into_iter()
        .filter_map(|f| Some((f.to_owned(), obj.get(f).and_then(scalar_text)?)))
        .collect();
    let custom = match obj.get("custom_fields") {
        Some(Value::Object(fields)) => [EMAIL, ORDER_NUMBER, REWARD_ID]
            .into_iter()
            .filter_map(|f| {
                let value = custom_aliases(f)
                    .iter()
                    .find_map(|alias| fields.get(*alias).and_then(scalar_text))?;
                Some((f.to_owned(), value))
            })
            .collect(),
        _ => BTreeMap::new(),
    };
    Source::Contact {
        top,
        custom,
        system_email: obj.get("email").and_then(scalar_text),
    }
}

/// A subscriber id's text: a string as given, or an integer's digits. Floats are refused
/// because their digits are already rounded.
fn id_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.trim().to_owned()),
        Value::Number(n) if n.is_u64() || n.is_i64() => Some(n.to_string()),
        _ => None,
    }
}

/// A field value as text; empty strings (ManyChat's unset fields), null, booleans and objects
/// are "not given". Whole-valued floats (a Number field holding 1001) lose their `.0`.
fn scalar_text(v: &Value) -> Option<String> {
    let text = match v {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) if n.is_u64() || n.is_i64() => n.to_string(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if f.fract() == 0.0 && f.abs() < 9.0e15 => format!("{f:.0}"),
            _ => n.to_string(),
        },
        _ => return None,
    };
    (!text.is_empty()).then_some(text)
}

#[cfg(test)]
mod tests;
