//! The three configuration layers and how they merge: the built-in defaults
//! (`defaults.toml`, compiled in), then the operator's file, then `LOYALTY__<SECTION>__<KEY>`
//! environment variables. The defaults hold every key the program knows, so they are also the
//! list a key is checked against: a key that is not there, in the file or the environment,
//! stops the start with the nearest known key suggested. A typo never falls back to a default.
//!
//! Each leaf value remembers the layer it came from, for `loyalty-bot check-config`.

use super::ConfigError;
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use toml::{Table, Value};

/// The built-in defaults: every key, with a working value.
pub const DEFAULTS: &str = include_str!("defaults.toml");

const ENV_PREFIX: &str = "LOYALTY__";

/// Array-of-tables keys (`[[rewards]]`): an operator's array replaces the default one whole,
/// and each element's keys are checked against the default's first element.
const TABLE_ARRAYS: [&str; 1] = ["rewards"];

/// Where a value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    Default,
    File(PathBuf),
    Env(String),
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Source::Default => f.write_str("default"),
            Source::File(p) => write!(f, "file {}", p.display()),
            Source::Env(var) => write!(f, "env {var}"),
        }
    }
}

/// The merged configuration as TOML, and the layer of each leaf (dotted path → source; a leaf
/// not listed is a default). Array elements are addressed as `rewards[0].id`.
#[derive(Debug, Clone)]
pub struct Layered {
    pub value: Value,
    pub sources: BTreeMap<String, Source>,
}

impl Layered {
    /// [`Layered::merge`] of the file at `path`, if given (then it must exist).
    pub fn load(
        path: Option<&Path>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Layered, ConfigError> {
        let text = match path {
            Some(path) => {
                Some(
                    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                        path: path.to_owned(),
                        source,
                    })?,
                )
            }
            None => None,
        };
        Self::merge(text.as_deref().zip(path), env)
    }

    /// Merges `file` (its text and path, when there is one) and `env` over the defaults,
    /// refusing unknown keys.
    pub fn merge(
        file: Option<(&str, &Path)>,
        env: impl IntoIterator<Item = (String, String)>,
    ) -> Result<Layered, ConfigError> {
        let defaults: Table = DEFAULTS
            .parse()
            .expect("the built-in defaults are valid TOML");
        let mut merged = defaults.clone();
        let mut sources = BTreeMap::new();
        if let Some((text, path)) = file {
            let table: Table = text
                .parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    path: path.to_owned(),
                    message: e.message().to_owned(),
                })?;
            let source = Source::File(path.to_owned());
            let origin = format!("in {}", path.display());
            check_known(&table, &defaults, "", &origin, &|key| {
                nearest(key, &defaults)
            })?;
            overlay(&mut merged, table, "", &source, &mut sources);
        }
        // In the given order: of two variables for one key (`LOYALTY__a__b`, `LOYALTY__A__B`),
        // the last wins.
        for (var, raw) in env.into_iter().filter(|(k, _)| k.starts_with(ENV_PREFIX)) {
            apply_env(&mut merged, &defaults, &var, &raw, &mut sources)?;
        }
        Ok(Layered {
            value: Value::Table(merged),
            sources,
        })
    }

    /// Where the leaf at `path` came from.
    pub fn source(&self, path: &str) -> Source {
        if let Some(s) = self.sources.get(path) {
            return s.clone();
        }
        // A leaf inside an array the file replaced: the array's source.
        let array = path.split('[').next().unwrap_or(path);
        self.sources.get(array).cloned().unwrap_or(Source::Default)
    }
}

/// Every key of `given` must be a key of `known` (recursively); arrays of tables are checked
/// element by element against the known array's first element. `suggest` names the nearest
/// known key for an unknown one.
fn check_known(
    given: &Table,
    known: &Table,
    prefix: &str,
    origin: &str,
    suggest: &dyn Fn(&str) -> Option<String>,
) -> Result<(), ConfigError> {
    for (key, value) in given {
        let path = join(prefix, key);
        let Some(default) = known.get(key) else {
            return Err(ConfigError::UnknownKey {
                suggestion: suggest(&path),
                key: path,
                origin: origin.to_owned(),
            });
        };
        match (value, default) {
            (Value::Table(inner), Value::Table(known_inner)) => {
                check_known(inner, known_inner, &path, origin, suggest)?;
            }
            (Value::Array(items), Value::Array(known_items)) if is_table_array(&path) => {
                let Some(Value::Table(shape)) = known_items.first() else {
                    continue;
                };
                for (i, item) in items.iter().enumerate() {
                    let Value::Table(item) = item else { continue };
                    let element = format!("{path}[{i}]");
                    // Suggest among the element's own keys.
                    let near = |key: &str| {
                        let field = key.rsplit('.').next().unwrap_or(key);
                        nearest_in(field, shape.keys().map(String::as_str))
                            .map(|k| format!("{element}.{k}"))
                    };
                    check_known(item, shape, &element, origin, &near)?;
                }
            }
            _ => {}
        }
    }
    Ok(())
}

/// Lays `over` onto `base`, recording each leaf's source. Tables merge key by key; any other
/// value (arrays included) replaces the one below.
fn overlay(
    base: &mut Table,
    over: Table,
    prefix: &str,
    source: &Source,
    sources: &mut BTreeMap<String, Source>,
) {
    for (key, value) in over {
        let path = join(prefix, &key);
        match (base.get_mut(&key), value) {
            (Some(Value::Table(inner)), Value::Table(over_inner)) => {
                overlay(inner, over_inner, &path, source, sources);
            }
            (_, value) => {
                sources.insert(path, source.clone());
                base.insert(key, value);
            }
        }
    }
}

/// `LOYALTY__MESSENGER__APP_SECRET=x` sets `messenger.app_secret = "x"`, parsed as the type
/// the key has in the defaults: strings stay strings, numbers and booleans are parsed.
fn apply_env(
    merged: &mut Table,
    defaults: &Table,
    var: &str,
    raw: &str,
    sources: &mut BTreeMap<String, Source>,
) -> Result<(), ConfigError> {
    let err = |problem: String| ConfigError::Env {
        var: var.into(),
        problem,
    };
    let rest = &var[ENV_PREFIX.len()..];
    let parts: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
    if parts.iter().any(|p| p.is_empty()) {
        return Err(err("expected LOYALTY__<SECTION>__<KEY>".into()));
    }
    let path = parts.join(".");
    let (last, sections) = parts.split_last().expect("split yields one part at least");
    let mut known = defaults;
    for s in sections {
        match known.get(s) {
            Some(Value::Table(t)) => known = t,
            _ => return Err(unknown_env(var, &path, defaults)),
        }
    }
    let new = match known.get(last) {
        None | Some(Value::Table(_)) => return Err(unknown_env(var, &path, defaults)),
        Some(Value::String(_)) => Value::String(raw.to_owned()),
        // Keys that hold a decimal (the points rate) are whole numbers by default.
        Some(Value::Integer(_)) if raw.trim().contains('.') => Value::String(raw.trim().into()),
        Some(Value::Integer(_)) => Value::Integer(
            raw.trim()
                .parse()
                .map_err(|_| err(format!("expected a whole number for `{path}`")))?,
        ),
        Some(Value::Boolean(_)) => Value::Boolean(
            raw.trim()
                .parse()
                .map_err(|_| err(format!("expected true or false for `{path}`")))?,
        ),
        Some(Value::Float(_)) => Value::Float(
            raw.trim()
                .parse()
                .map_err(|_| err(format!("expected a number for `{path}`")))?,
        ),
        Some(_) => {
            return Err(err(format!(
                "`{path}` cannot be set from the environment; set it in the config file"
            )))
        }
    };
    let mut table = merged;
    for s in sections {
        table = table
            .get_mut(s)
            .and_then(Value::as_table_mut)
            .expect("the merged tree has every default table");
    }
    table.insert(last.clone(), new);
    sources.insert(path, Source::Env(var.to_owned()));
    Ok(())
}

fn unknown_env(var: &str, path: &str, defaults: &Table) -> ConfigError {
    ConfigError::UnknownKey {
        key: path.to_owned(),
        suggestion: nearest(path, defaults),
        origin: format!("from the environment variable {var}"),
    }
}

fn join(prefix: &str, key: &str) -> String {
    if prefix.is_empty() {
        key.to_owned()
    } else {
        format!("{prefix}.{key}")
    }
}

fn is_table_array(path: &str) -> bool {
    TABLE_ARRAYS.contains(&path)
}

/// Every known leaf's dotted path (array elements as `rewards[0].id`'s shape: `rewards.id`).
pub fn known_keys(table: &Table, prefix: &str, out: &mut Vec<String>) {
    for (key, value) in table {
        let path = join(prefix, key);
        match value {
            Value::Table(inner) => known_keys(inner, &path, out),
            Value::Array(items) if is_table_array(&path) => {
                if let Some(Value::Table(shape)) = items.first() {
                    known_keys(shape, &path, out);
                }
            }
            _ => out.push(path),
        }
    }
}

/// The known key nearest to `key`, if one is near enough to be what was meant.
fn nearest(key: &str, defaults: &Table) -> Option<String> {
    let mut keys = Vec::new();
    known_keys(defaults, "", &mut keys);
    // Tables are keys too (`[progam]` → `program`).
    let tables: Vec<String> = keys
        .iter()
        .filter_map(|k| k.rsplit_once('.').map(|(t, _)| t.to_owned()))
        .collect();
    nearest_in(key, keys.iter().chain(&tables).map(String::as_str))
}

fn nearest_in<'a>(key: &str, candidates: impl Iterator<Item = &'a str>) -> Option<String> {
    candidates
        .map(|c| (strsim::normalized_damerau_levenshtein(key, c), c))
        .filter(|(score, _)| *score >= 0.6)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, c)| c.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn merge(file: &str, vars: &[(&str, &str)]) -> Result<Layered, ConfigError> {
        Layered::merge(Some((file, Path::new("my.toml"))), env(vars))
    }

    #[test]
    fn a_typo_in_the_file_names_the_key_and_the_nearest_known_one() {
        let e = merge("[program]\nsigup_bonus = 75\n", &[]).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("`program.sigup_bonus`"), "{text}");
        assert!(
            text.contains("did you mean `program.signup_bonus`?"),
            "{text}"
        );
        assert!(text.contains("my.toml"), "{text}");
    }

    #[test]
    fn a_typo_in_a_section_name_or_a_reward_is_refused_too() {
        let e = merge("[progam]\nsignup_bonus = 75\n", &[]).unwrap_err();
        assert!(e.to_string().contains("did you mean `program"), "{e}");
        let reward = "[[rewards]]\nid = \"a\"\ntitle = \"A\"\npoint = 5\n";
        let e = merge(reward, &[]).unwrap_err().to_string();
        assert!(e.contains("`rewards[0].point`"), "{e}");
        assert!(e.contains("did you mean `rewards[0].points`?"), "{e}");
    }

    #[test]
    fn a_typo_in_an_environment_variable_names_the_variable_and_the_nearest_key() {
        let e = merge("", &[("LOYALTY__PROGRAM__SIGUP_BONUS", "75")]).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("LOYALTY__PROGRAM__SIGUP_BONUS"), "{text}");
        assert!(
            text.contains("did you mean `program.signup_bonus`?"),
            "{text}"
        );
        let e = merge("", &[("LOYALTY__NOPE", "1")]).unwrap_err();
        assert!(e.to_string().contains("`nope`"), "{e}");
    }

    #[test]
    fn layers_apply_in_order_and_each_value_remembers_its_layer() {
        let l = merge(
            "[program]\nsignup_bonus = 75\ncurrency = \"USD\"\n",
            &[("LOYALTY__PROGRAM__CURRENCY", "GBP"), ("OTHER", "x")],
        )
        .unwrap();
        let program = &l.value["program"];
        assert_eq!(program["signup_bonus"].as_integer(), Some(75));
        assert_eq!(program["currency"].as_str(), Some("GBP"));
        assert_eq!(program["locale"].as_str(), Some("en"));
        assert_eq!(
            l.source("program.signup_bonus"),
            Source::File("my.toml".into())
        );
        assert_eq!(
            l.source("program.currency"),
            Source::Env("LOYALTY__PROGRAM__CURRENCY".into())
        );
        assert_eq!(l.source("program.locale"), Source::Default);
    }

    #[test]
    fn an_operators_rewards_replace_the_default_catalogue_whole() {
        let file = "[[rewards]]\nid = \"cap\"\ntitle = \"Cap\"\npoints = 90\nproduct_ids = [\"c\"]\ncheckout_url = \"https://s.example/c\"\n";
        let l = merge(file, &[]).unwrap();
        let rewards = l.value["rewards"].as_array().unwrap();
        assert_eq!(rewards.len(), 1);
        assert_eq!(l.source("rewards[0].id"), Source::File("my.toml".into()));
    }

    #[test]
    fn the_environment_cannot_set_a_whole_table_or_array() {
        let e = merge("", &[("LOYALTY__REWARDS", "x")]).unwrap_err();
        assert!(
            e.to_string().contains("cannot be set from the environment"),
            "{e}"
        );
        let e = merge("", &[("LOYALTY__LIMITS__ADMIN_PER_IP", "x")]).unwrap_err();
        assert!(e.to_string().contains("limits.admin_per_ip"), "{e}");
    }
}
