//! The mail templates: built into the binary from `flows/email/`, replaced file by file from
//! `<flows_dir>/email/`, checked at load (see `check.rs`), and rendered into a subject and two
//! bodies: HTML auto-escaped in `.html` files, text as it is.

use super::format;
use super::model::MailModel;
use crate::domain::mail::MailKind;
use crate::email::MailContent;
use minijinja::{context, AutoEscape, Environment, Error, ErrorKind, Output, State};
use minijinja::{UndefinedBehavior, Value};
use std::collections::BTreeMap;
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
    pub(super) fn new(file: &Path, problem: impl Into<String>) -> Self {
        TemplateError {
            file: file.to_owned(),
            problem: problem.into(),
        }
    }
}

/// The loaded, checked templates.
#[derive(Debug)]
pub struct EmailTemplates {
    pub(super) env: Environment<'static>,
    /// Template name → the file it came from, for errors.
    pub(super) origins: BTreeMap<String, PathBuf>,
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
            for (name, path, text) in super::check::read_dir(&dir)? {
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

    pub(super) fn file_of(&self, name: &str) -> PathBuf {
        self.origins
            .get(name)
            .cloned()
            .unwrap_or_else(|| PathBuf::from(format!("email/{name}")))
    }
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
