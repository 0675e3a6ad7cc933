//! The mail templates: built into the binary from `flows/email/`, replaced file by file from
//! `<flows_dir>/email/`, and checked at start like the flow files: every kind in every locale
//! is rendered for sample members with strict undefined variables, every variable a file names
//! must be one the mail has, and marketing mail must show its unsubscribe link; any mistake
//! stops the start with the file and the problem.

use super::format;
use super::model::MailModel;
use super::sample;
use crate::domain::mail::MailKind;
use crate::email::MailContent;
use crate::flows::definition::LOCALES;
use minijinja::{context, AutoEscape, Environment, Error, ErrorKind, Output, State};
use minijinja::{UndefinedBehavior, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

pub const KINDS: [MailKind; 4] = [
    MailKind::Statement,
    MailKind::RewardReminder,
    MailKind::CouponReminder,
    MailKind::Verification,
];

/// The templates of one kind in one locale: the subject, the plain-text body, the HTML body.
pub const PARTS: [&str; 3] = ["subject.txt", "txt", "html"];

/// `statement.de.html`.
pub fn template_name(kind: MailKind, locale: &str, part: &str) -> String {
    format!("{}.{locale}.{part}", kind.as_str())
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {problem}")]
pub struct TemplateError {
    pub file: PathBuf,
    pub problem: String,
}

impl TemplateError {
    fn new(file: &Path, problem: impl Into<String>) -> Self {
        TemplateError {
            file: file.to_owned(),
            problem: problem.into(),
        }
    }
}

/// The loaded, checked templates.
#[derive(Debug)]
pub struct EmailTemplates {
    env: Environment<'static>,
    /// Template name → the file it came from, for errors.
    origins: BTreeMap<String, PathBuf>,
}

impl EmailTemplates {
    /// The built-in templates, each file of `<flows_dir>/email/` (if there is one) replacing the
    /// built-in file of the same name or adding a partial; then every check.
    pub fn load(flows_dir: Option<&Path>) -> Result<EmailTemplates, TemplateError> {
        let mut files: BTreeMap<String, (PathBuf, String)> = super::BUILT_IN
            .iter()
            .map(|(name, text)| {
                let path = PathBuf::from(format!("(built-in) email/{name}"));
                (name.to_string(), (path, text.to_string()))
            })
            .collect();
        if let Some(dir) = flows_dir.map(|d| d.join("email")).filter(|d| d.is_dir()) {
            for (name, path, text) in read_dir(&dir)? {
                files.insert(name, (path, text));
            }
        }
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_formatter(formatter);
        let mut origins = BTreeMap::new();
        for (name, (path, text)) in files {
            env.add_template_owned(name.clone(), text)
                .map_err(|e| TemplateError::new(&path, problem(&e)))?;
            origins.insert(name, path);
        }
        let templates = EmailTemplates { env, origins };
        templates.check()?;
        Ok(templates)
    }

    /// The subject and both bodies of `kind` for `model`, in `locale` (`de`, `de_DE`; an
    /// unsupported one gets the default locale).
    pub fn render(
        &self,
        kind: MailKind,
        locale: &str,
        model: &MailModel,
    ) -> Result<MailContent, TemplateError> {
        let locale = format::locale(Some(locale));
        let ctx = context! { locale => locale, ..Value::from_serialize(model) };
        let part = |p: &str| self.render_one(&template_name(kind, locale, p), &ctx);
        Ok(MailContent {
            subject: part("subject.txt")?
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" "),
            text: tidy_text(&part("txt")?),
            html: format!("{}\n", part("html")?.trim()),
        })
    }

    fn render_one(&self, name: &str, ctx: &Value) -> Result<String, TemplateError> {
        let template = self
            .env
            .get_template(name)
            .map_err(|e| TemplateError::new(&self.file_of(name), problem(&e)))?;
        template.render(ctx).map_err(|e| {
            let at = e.name().unwrap_or(name);
            let mut problem = problem(&e);
            if at != name {
                problem.push_str(&format!(" (rendering {name})"));
            }
            TemplateError::new(&self.file_of(at), problem)
        })
    }

    fn file_of(&self, name: &str) -> PathBuf {
        self.origins
            .get(name)
            .cloned()
            .unwrap_or_else(|| PathBuf::from(format!("email/{name}")))
    }

    fn check(&self) -> Result<(), TemplateError> {
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
fn read_dir(dir: &Path) -> Result<Vec<(String, PathBuf, String)>, TemplateError> {
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

/// Prints values, HTML-escaped in `.html` files like minijinja's own formatter except that `/`
/// stays as it is: links read `https://…` in the source of a mail, as spam filters and people
/// checking a link expect. An undefined value is an error (strict undefined).
fn formatter(out: &mut Output<'_>, state: &State<'_, '_>, value: &Value) -> Result<(), Error> {
    if value.is_undefined() {
        return Err(Error::from(ErrorKind::UndefinedError));
    }
    match value.as_str() {
        Some(s) if state.auto_escape() == AutoEscape::Html && !value.is_safe() => {
            for c in s.chars() {
                match c {
                    '&' => out.write_str("&amp;"),
                    '<' => out.write_str("&lt;"),
                    '>' => out.write_str("&gt;"),
                    '"' => out.write_str("&quot;"),
                    '\'' => out.write_str("&#39;"),
                    c => out.write_char(c),
                }
                .map_err(Error::from)?;
            }
            Ok(())
        }
        _ => minijinja::escape_formatter(out, state, value),
    }
}

/// A minijinja error as one line: where, what, and why.
fn problem(e: &minijinja::Error) -> String {
    let mut s = match e.line() {
        Some(line) => format!("line {line}: {}", e.kind()),
        None => e.kind().to_string(),
    };
    if let Some(detail) = e.detail() {
        s.push_str(": ");
        s.push_str(detail);
    }
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        s.push_str(&format!(" ({inner})"));
        source = inner.source();
    }
    s
}

/// Trailing spaces off each line, at most one blank line in a row, one final newline.
fn tidy_text(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut blank = 0;
    for line in text.trim().lines().map(str::trim_end) {
        blank = if line.is_empty() { blank + 1 } else { 0 };
        if blank <= 1 {
            out.push_str(line);
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
#[path = "templates_tests.rs"]
mod tests;
