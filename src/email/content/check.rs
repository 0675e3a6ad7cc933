//! The start-up checks of the mail templates, so that an owner's mistake stops the start with
//! the file named instead of failing a send weeks later: every kind has its three templates in
//! every locale, every variable a file reads is one its mail has (even in a branch the sample
//! members do not take), every kind and locale renders for sample members with strict
//! undefined variables, and marketing mail shows its unsubscribe link in both bodies.

use super::sample;
use super::templates::{template_name, EmailTemplates, TemplateError, KINDS, PARTS};
use crate::flows::definition::LOCALES;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

impl EmailTemplates {
    pub(super) fn check(&self) -> Result<(), TemplateError> {
        for kind in KINDS {
            for locale in LOCALES {
                for part in PARTS {
                    let name = template_name(kind, locale, part);
                    if !self.origins.contains_key(&name) {
                        return Err(TemplateError::new(
                            &self.file_of(&name),
                            format!(
                                "missing: each kind of mail needs a {part} template per locale"
                            ),
                        ));
                    }
                }
            }
        }
        self.check_variables()?;
        for kind in KINDS {
            for locale in LOCALES {
                for model in sample::models(kind, locale) {
                    let mail = self.render(kind, locale, &model)?;
                    let file = |p: &str| self.file_of(&template_name(kind, locale, p));
                    if mail.subject.is_empty() {
                        return Err(TemplateError::new(
                            &file("subject.txt"),
                            "the subject is empty",
                        ));
                    }
                    if let Some(url) = &model.unsubscribe_url {
                        for (part, body) in [("txt", &mail.text), ("html", &mail.html)] {
                            if !body.contains(url.as_str()) {
                                return Err(TemplateError::new(
                                    &file(part),
                                    "marketing mail must show {{ unsubscribe_url }} in both bodies (in this file or one it includes)",
                                ));
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Every variable a file reads must be one its mail has: a typo fails even in a branch the
    /// sample members do not take. Shared files may use any kind's variables.
    fn check_variables(&self) -> Result<(), TemplateError> {
        let mut known: BTreeMap<&str, BTreeSet<String>> = BTreeMap::new();
        for kind in KINDS {
            let names = known.entry(kind.as_str()).or_default();
            for model in sample::models(kind, LOCALES[0]) {
                if let Ok(serde_json::Value::Object(fields)) = serde_json::to_value(&model) {
                    names.extend(fields.into_iter().map(|(k, _)| k));
                }
            }
        }
        let any: BTreeSet<String> = known.values().flatten().cloned().collect();
        let builtin: BTreeSet<String> = self
            .env
            .globals()
            .map(|(n, _)| n.to_owned())
            .chain(["loop", "super", "self", "caller", "varargs", "kwargs"].map(String::from))
            .collect();
        for name in self.origins.keys() {
            let Ok(template) = self.env.get_template(name) else {
                continue;
            };
            let kind = name.split('.').next().unwrap_or_default();
            let allowed = known.get(kind).unwrap_or(&any);
            let mut unknown: Vec<String> = template
                .undeclared_variables(false)
                .into_iter()
                .filter(|v| !allowed.contains(v) && !builtin.contains(v))
                .collect();
            unknown.sort();
            if let Some(first) = unknown.first() {
                let hint = if any.contains(first) {
                    format!(
                        " (only in other kinds of mail; {} mail has: {})",
                        kind,
                        list(allowed)
                    )
                } else {
                    format!(" (known: {})", list(allowed))
                };
                return Err(TemplateError::new(
                    &self.file_of(name),
                    format!("unknown variable `{first}`{hint}"),
                ));
            }
        }
        Ok(())
    }
}

fn list(names: &BTreeSet<String>) -> String {
    names.iter().cloned().collect::<Vec<_>>().join(", ")
}

/// Every `*.html` and `*.txt` file of `dir` as (name, path, text). A file named after a kind
/// of mail must be one of its templates: a misspelt locale or part would otherwise be ignored.
pub(super) fn read_dir(dir: &Path) -> Result<Vec<(String, PathBuf, String)>, TemplateError> {
    let entries = std::fs::read_dir(dir).map_err(|e| {
        TemplateError::new(
            dir,
            format!("cannot read the email templates directory: {e}"),
        )
    })?;
    let mut paths: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "html" || x == "txt"))
        .collect();
    paths.sort();
    let mut files = Vec::new();
    for path in paths {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        if let Some(kind) = KINDS
            .iter()
            .find(|k| name.starts_with(&format!("{}.", k.as_str())))
        {
            let expected = LOCALES
                .iter()
                .flat_map(|l| PARTS.map(|p| template_name(*kind, l, p)))
                .any(|n| n == name);
            if !expected {
                return Err(TemplateError::new(
                    &path,
                    format!(
                        "not a template name: expected {}.<locale>.subject.txt, .txt or .html with a locale of {}",
                        kind.as_str(),
                        LOCALES.join(", ")
                    ),
                ));
            }
        }
        let text =
            std::fs::read_to_string(&path).map_err(|e| TemplateError::new(&path, e.to_string()))?;
        files.push((name, path, text));
    }
    Ok(files)
}
