//! Loads every flow file from the flows directory, merges their messages per locale, and checks
//! all cross-references (flows named by steps, message keys in every locale, placeholders).

use super::definition::{
    check_template, ChoiceDef, ChoicesDef, FlowError, FlowFile, MessageDef, Step, Triggers, LOCALES,
};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Messages the engine itself uses, so every locale must have them.
const ENGINE_MESSAGES: [&str; 12] = [
    "help",
    "name_fallback",
    "status_can_redeem",
    "status_next",
    "status_all_rewards",
    "internal_error",
    "order_status_pending",
    "order_status_cancelled",
    "order_status_refunded",
    "order_status_other",
    "claims_limited",
    "redemptions_limited",
];

#[derive(Debug, Clone)]
pub struct Flow {
    pub id: String,
    pub file: PathBuf,
    pub triggers: Triggers,
    pub steps: Vec<(String, Step)>,
}

#[derive(Debug, Clone, Default)]
pub struct Registry {
    pub flows: BTreeMap<String, Flow>,
    /// locale → key → message.
    pub messages: BTreeMap<String, BTreeMap<String, MessageDef>>,
    pub menus: BTreeMap<String, Vec<ChoiceDef>>,
    /// `locale.key` → the file that defines it, for error messages.
    origins: BTreeMap<String, PathBuf>,
}

/// The flows compiled into the binary (the repository's `flows/`), by file name.
pub const BUILT_IN: [(&str, &str); 8] = [
    ("balance.toml", include_str!("../../flows/balance.toml")),
    ("claim.toml", include_str!("../../flows/claim.toml")),
    ("emails.toml", include_str!("../../flows/emails.toml")),
    ("emails_on.toml", include_str!("../../flows/emails_on.toml")),
    ("help.toml", include_str!("../../flows/help.toml")),
    ("join.toml", include_str!("../../flows/join.toml")),
    ("messages.toml", include_str!("../../flows/messages.toml")),
    ("redeem.toml", include_str!("../../flows/redeem.toml")),
];

impl Registry {
    /// The built-in flows, with each file of `dir` (if given) replacing the built-in file of
    /// the same name or adding a new one; then every check.
    pub fn load_over_built_in(dir: Option<&Path>) -> Result<Registry, FlowError> {
        let mut files: BTreeMap<String, (PathBuf, String)> = BUILT_IN
            .iter()
            .map(|(name, text)| {
                let path = PathBuf::from(format!("(built-in) {name}"));
                (name.to_string(), (path, text.to_string()))
            })
            .collect();
        if let Some(dir) = dir {
            for (path, text) in Self::read_dir(dir)? {
                let name = path
                    .file_name()
                    .map(|n| n.to_string_lossy().into_owned())
                    .unwrap_or_default();
                files.insert(name, (path, text));
            }
        }
        Self::from_texts(files.into_values().collect())
    }

    /// Every `*.toml` file of `dir`, by name, with its text.
    fn read_dir(dir: &Path) -> Result<Vec<(PathBuf, String)>, FlowError> {
        let entries = std::fs::read_dir(dir)
            .map_err(|e| FlowError::new(dir, format!("cannot read the flows directory: {e}")))?;
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        paths.sort();
        let mut texts = Vec::new();
        for path in paths {
            let text =
                std::fs::read_to_string(&path).map_err(|e| FlowError::new(&path, e.to_string()))?;
            texts.push((path, text));
        }
        Ok(texts)
    }

    /// Parses and checks flow files given as (path, text), in that order: [`Registry::load_over_built_in`]
    /// without the directory.
    pub fn from_texts(texts: Vec<(PathBuf, String)>) -> Result<Registry, FlowError> {
        let mut files = Vec::new();
        for (path, text) in texts {
            let file: FlowFile =
                toml::from_str(&text).map_err(|e| FlowError::new(&path, e.to_string()))?;
            files.push((path, file));
        }
        Self::build(files)
    }

    pub fn build(files: Vec<(PathBuf, FlowFile)>) -> Result<Registry, FlowError> {
        let mut reg = Registry::default();
        for (path, file) in files {
            for (locale, msgs) in file.messages {
                if !LOCALES.contains(&locale.as_str()) {
                    return Err(FlowError::new(
                        &path,
                        format!(
                            "[messages.{locale}]: locale must be one of {}",
                            LOCALES.join(", ")
                        ),
                    ));
                }
                for (key, msg) in msgs {
                    if let Some(prev) = reg.origins.get(&format!("{locale}.{key}")) {
                        if prev != &path {
                            return Err(FlowError::new(
                                &path,
                                format!("message `{key}` is also defined in {}", prev.display()),
                            ));
                        }
                    }
                    reg.origins.insert(format!("{locale}.{key}"), path.clone());
                    reg.messages
                        .entry(locale.clone())
                        .or_default()
                        .insert(key, msg);
                }
            }
            for (name, items) in file.menu {
                if reg.menus.insert(name.clone(), items).is_some() {
                    return Err(FlowError::new(
                        &path,
                        format!("menu `{name}` is defined twice"),
                    ));
                }
            }
            let Some(id) = file.id else {
                if !file.steps.is_empty() {
                    return Err(FlowError::new(&path, "a file with steps needs an `id`"));
                }
                continue;
            };
            let mut steps = Vec::new();
            for def in &file.steps {
                let step = def.check().map_err(|p| FlowError::new(&path, p))?;
                if steps.iter().any(|(sid, _)| sid == &def.id) {
                    return Err(FlowError::new(
                        &path,
                        format!("step id `{}` is used twice", def.id),
                    ));
                }
                steps.push((def.id.clone(), step));
            }
            if steps.is_empty() {
                return Err(FlowError::new(
                    &path,
                    format!("flow `{id}` has no [[steps]]"),
                ));
            }
            let flow = Flow {
                id: id.clone(),
                file: path.clone(),
                triggers: file.triggers,
                steps,
            };
            if reg.flows.insert(id.clone(), flow).is_some() {
                return Err(FlowError::new(
                    &path,
                    format!("flow id `{id}` is used by another file"),
                ));
            }
        }
        reg.check()?;
        Ok(reg)
    }

    fn check(&self) -> Result<(), FlowError> {
        for locale in LOCALES {
            let Some(msgs) = self.messages.get(locale) else {
                return Err(FlowError::new(
                    Path::new("flows"),
                    format!("no messages for locale `{locale}`"),
                ));
            };
            for (key, msg) in msgs {
                let file = self.file_of(locale, key);
                check_template(msg.text()).map_err(|p| {
                    FlowError::new(&file, format!("[messages.{locale}] {key}: {p}"))
                })?;
                if let MessageDef::Full {
                    choices, buttons, ..
                } = msg
                {
                    for b in buttons {
                        self.need(locale, &b.title, &file, &format!("button of `{key}`"))?;
                        if let Some(u) = &b.url {
                            check_template(u).map_err(|p| {
                                FlowError::new(
                                    &file,
                                    format!("[messages.{locale}] {key} button url: {p}"),
                                )
                            })?;
                        }
                        if b.url.is_none() == b.payload.is_none() {
                            return Err(FlowError::new(&file, format!("[messages.{locale}] {key}: a button needs exactly one of `url` or `payload`")));
                        }
                    }
                    match choices {
                        Some(ChoicesDef::Named(n)) if n != "menu" && n != "rewards" => {
                            return Err(FlowError::new(&file, format!("[messages.{locale}] {key}: choices = \"{n}\" must be \"menu\", \"rewards\" or a list")));
                        }
                        Some(ChoicesDef::List(items)) => {
                            for c in items {
                                self.need(locale, &c.title, &file, &format!("choice of `{key}`"))?;
                            }
                        }
                        _ => {}
                    }
                }
            }
            for (name, items) in &self.menus {
                for c in items {
                    self.need(
                        locale,
                        &c.title,
                        Path::new("flows"),
                        &format!("menu `{name}`"),
                    )?;
                }
            }
            for k in ENGINE_MESSAGES {
                self.need(locale, k, Path::new("flows"), "the engine")?;
            }
            for flow in self.flows.values() {
                for (sid, step) in &flow.steps {
                    for key in step.message_keys() {
                        self.need(locale, key, &flow.file, &format!("step `{sid}`"))?;
                    }
                    if let Step::RequireMember { flow: f } = step {
                        if !self.flows.contains_key(f) {
                            return Err(FlowError::new(
                                &flow.file,
                                format!("step `{sid}`: flow = \"{f}\" does not exist"),
                            ));
                        }
                    }
                }
            }
        }
        for name in ["member", "guest"] {
            if !self.menus.contains_key(name) {
                return Err(FlowError::new(
                    Path::new("flows"),
                    format!("missing [menu] list `{name}`"),
                ));
            }
        }
        if self.flows.values().filter(|f| f.triggers.fallback).count() != 1 {
            return Err(FlowError::new(
                Path::new("flows"),
                "exactly one flow must have `fallback = true` in [triggers]",
            ));
        }
        Ok(())
    }

    fn need(&self, locale: &str, key: &str, file: &Path, whose: &str) -> Result<(), FlowError> {
        if self
            .messages
            .get(locale)
            .is_some_and(|m| m.contains_key(key))
        {
            Ok(())
        } else {
            Err(FlowError::new(
                file,
                format!("{whose}: message `{key}` is missing in [messages.{locale}]"),
            ))
        }
    }

    fn file_of(&self, locale: &str, key: &str) -> PathBuf {
        self.origins
            .get(&format!("{locale}.{key}"))
            .cloned()
            .unwrap_or_else(|| PathBuf::from("flows"))
    }

    pub fn fallback(&self) -> &Flow {
        self.flows
            .values()
            .find(|f| f.triggers.fallback)
            .expect("checked at load: exactly one fallback flow")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo_flows() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("flows")
    }

    /// A flows dir holding only `file`, edited by `edit`, over the built-in flows.
    fn load_edited(file: &str, edit: impl Fn(&str) -> String) -> Result<Registry, FlowError> {
        let dir = tempfile::tempdir().unwrap();
        let text = std::fs::read_to_string(repo_flows().join(file)).unwrap();
        std::fs::write(dir.path().join(file), edit(&text)).unwrap();
        Registry::load_over_built_in(Some(dir.path()))
    }

    #[test]
    fn shipped_flows_load() {
        let reg = Registry::load_over_built_in(None).unwrap();
        for id in ["join", "claim", "balance", "redeem", "help"] {
            assert!(reg.flows.contains_key(id), "{id}");
        }
        assert_eq!(reg.fallback().id, "help");
    }

    #[test]
    fn the_built_in_flows_are_the_repositorys_flow_files() {
        let mut names: Vec<String> = std::fs::read_dir(repo_flows())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.ends_with(".toml"))
            .collect();
        names.sort();
        let built_in: Vec<&str> = BUILT_IN.iter().map(|(n, _)| *n).collect();
        assert_eq!(names, built_in, "a flow file is missing from BUILT_IN");
    }

    #[test]
    fn a_file_in_the_flows_dir_replaces_the_built_in_one_of_that_name() {
        let reg = load_edited("help.toml", str::to_owned).unwrap();
        let built_in = |id: &str| {
            reg.flows[id]
                .file
                .to_string_lossy()
                .starts_with("(built-in)")
        };
        assert!(
            !built_in("help"),
            "the dir's help.toml replaces the built-in one"
        );
        assert!(built_in("join"), "the others stay built in");
        let e = load_edited("help.toml", |_| "not toml [".into()).unwrap_err();
        assert!(e.to_string().contains("help.toml"), "{e}");
        assert!(
            !e.to_string().contains("built-in"),
            "the operator's file is named: {e}"
        );
    }

    #[test]
    fn mistakes_name_the_file_step_and_key() {
        type Edit = Box<dyn Fn(&str) -> String>;
        let cases: Vec<(&str, Edit, &str)> = vec![
            (
                "join.toml",
                Box::new(|t| t.replace("ask = \"ask_email\"\n", "")),
                "join.toml: step `email` (do = \"ask\"): missing key `ask`",
            ),
            (
                "join.toml",
                Box::new(|t| t.replace("do = \"confirm\"", "do = \"confrim\"")),
                "do = \"confrim\" is not one of",
            ),
            (
                "claim.toml",
                Box::new(|t| t.replace("not_paid = \"order_not_paid\"\n", "")),
                "claim.toml: step `claim`: [steps.outcomes] needs a message for `not_paid`",
            ),
            (
                "balance.toml",
                Box::new(|t| t.replace("{points} Punkte", "{punkte} Punkte")),
                "unknown placeholder {punkte}",
            ),
            (
                "redeem.toml",
                Box::new(|t| t.replace("checkout = \"Jetzt einlösen\"\n", "")),
                "message `checkout` is missing in [messages.de]",
            ),
            (
                "claim.toml",
                Box::new(|t| t.replace("flow = \"join\"", "flow = \"signup\"")),
                "flow = \"signup\" does not exist",
            ),
            (
                "help.toml",
                Box::new(|t| t.replace("[[steps]]", "[[stepz]]")),
                "unknown field `stepz`",
            ),
        ];
        for (file, edit, want) in cases {
            let err = load_edited(file, edit).unwrap_err().to_string();
            assert!(
                err.contains(want),
                "editing {file}: got {err:?}, want it to contain {want:?}"
            );
        }
    }
}
