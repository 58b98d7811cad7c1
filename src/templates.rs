//! Templates for messages (and, later, pages): built into the binary from `templates/`, optionally
//! overridden file by file from `PORTAL_TEMPLATES_DIR`.
//!
//! Rendering is strict: a variable the template names but the context lacks is an error, never an
//! empty string. `.html` templates escape every value. Overrides are checked when the service starts
//! (compiled, and rendered once with sample data), so a broken one stops the start with a clear
//! message instead of failing when a customer's message is sent.

mod reuse;

use std::path::Path;

use include_dir::{Dir, include_dir};
use minijinja::{AutoEscape, Environment, UndefinedBehavior};
use serde::Serialize;

static EMBEDDED: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/templates");

/// A template that cannot be used, named with its file.
#[derive(Debug, thiserror::Error)]
#[error("template {name}: {message}")]
pub struct TemplateError {
    /// The template's path below `templates/`.
    pub name: String,
    pub message: String,
}

/// The compiled templates.
pub struct Templates {
    env: Environment<'static>,
    reused: reuse::Reused,
}

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Templates").finish_non_exhaustive()
    }
}

impl Templates {
    /// The built-in templates, with the files of `override_dir` (same relative paths) in their place.
    pub fn load(override_dir: Option<&Path>) -> Result<Self, TemplateError> {
        let mut env = Environment::new();
        env.set_undefined_behavior(UndefinedBehavior::Strict);
        env.set_auto_escape_callback(|name| {
            if name.ends_with(".html") { AutoEscape::Html } else { AutoEscape::None }
        });
        env.set_formatter(html_formatter);
        let mut sources: Vec<(String, String)> = Vec::new();
        collect_embedded(&EMBEDDED, &mut sources);
        if let Some(dir) = override_dir {
            apply_overrides(dir, &mut sources)?;
        }
        for (name, source) in sources {
            env.add_template_owned(name.clone(), source)
                .map_err(|e| TemplateError { name, message: describe(&e) })?;
        }
        Ok(Self { env, reused: reuse::Reused::new() })
    }

    /// Renders `name` with `context`.
    pub fn render(&self, name: &str, context: impl Serialize) -> Result<String, TemplateError> {
        let fail = |e: minijinja::Error| TemplateError { name: name.to_owned(), message: describe(&e) };
        self.env.get_template(name).map_err(fail)?.render(minijinja::value::Serde(&context)).map_err(fail)
    }

    /// Renders each named template with its sample context, to find missing variables before any
    /// real message needs them.
    pub fn check<C: Serialize>(&self, names: &[&str], sample: &C) -> Result<(), TemplateError> {
        for name in names {
            self.render(name, sample)?;
        }
        Ok(())
    }
}

/// Escapes `&`, `<`, `>`, `"` and `'` in HTML templates: everything that could end an element or an
/// attribute. Unlike minijinja's default, `/` stays as it is, so links read cleanly in the page source
/// and in email clients that show it.
fn html_formatter(
    out: &mut minijinja::Output,
    state: &mut minijinja::State,
    value: &minijinja::Value,
) -> Result<(), minijinja::Error> {
    if !matches!(state.auto_escape(), AutoEscape::Html) || value.is_safe() || value.is_none() {
        return minijinja::escape_formatter(out, state, value);
    }
    let owned;
    let text = match value.as_str() {
        Some(text) => text,
        None => {
            owned = value.to_string();
            owned.as_str()
        }
    };
    write_escaped(out, text)
        .map_err(|e| minijinja::Error::new(minijinja::ErrorKind::WriteFailure, e.to_string()))
}

/// Writes `text` with HTML's special characters replaced, copying the runs between them as they are.
fn write_escaped(out: &mut minijinja::Output, text: &str) -> std::fmt::Result {
    let mut plain_from = 0;
    for (at, byte) in text.bytes().enumerate() {
        let entity = match byte {
            b'&' => "&amp;",
            b'<' => "&lt;",
            b'>' => "&gt;",
            b'"' => "&quot;",
            b'\'' => "&#39;",
            _ => continue,
        };
        out.write_str(&text[plain_from..at])?;
        out.write_str(entity)?;
        plain_from = at + 1;
    }
    out.write_str(&text[plain_from..])
}

fn describe(error: &minijinja::Error) -> String {
    let mut text = error.to_string();
    if let Some(line) = error.line() {
        text.push_str(&format!(" (line {line})"));
    }
    text
}

fn collect_embedded(dir: &Dir<'static>, out: &mut Vec<(String, String)>) {
    // Static assets are served as they are, not rendered.
    if dir.path().starts_with("static") {
        return;
    }
    for file in dir.files() {
        if let Some(text) = file.contents_utf8() {
            out.push((file.path().to_string_lossy().replace('\\', "/"), text.to_owned()));
        }
    }
    for sub in dir.dirs() {
        collect_embedded(sub, out);
    }
}

/// Replaces built-in sources by the files of the same name in `dir`. A file that overrides nothing
/// is refused: it is most likely a typo in its name, and would otherwise be silently ignored.
fn apply_overrides(dir: &Path, sources: &mut [(String, String)]) -> Result<(), TemplateError> {
    let mut files = Vec::new();
    walk(dir, dir, &mut files).map_err(|e| TemplateError {
        name: dir.display().to_string(),
        message: format!("cannot read PORTAL_TEMPLATES_DIR ({e})"),
    })?;
    for (name, path) in files {
        let Some(slot) = sources.iter_mut().find(|(n, _)| *n == name) else {
            return Err(TemplateError {
                name,
                message: "overrides no built-in template; check the file's name and folder".to_owned(),
            });
        };
        slot.1 = std::fs::read_to_string(&path)
            .map_err(|e| TemplateError { name: name.clone(), message: format!("cannot be read ({e})") })?;
    }
    Ok(())
}

fn walk(root: &Path, dir: &Path, out: &mut Vec<(String, std::path::PathBuf)>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            walk(root, &path, out)?;
        } else if let Ok(relative) = path.strip_prefix(root) {
            let name = relative.to_string_lossy().replace('\\', "/");
            if !name.split('/').any(|part| part.starts_with('.')) {
                out.push((name, path));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_missing_variable_is_an_error_not_an_empty_string() {
        let templates = Templates::load(None).unwrap();
        let err = templates.render("sms/invitation.txt", json!({"shop_name": "X"})).unwrap_err();
        assert!(err.message.contains("undefined"), "{err}");
    }

    #[test]
    fn html_templates_escape_and_text_templates_do_not() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sms")).unwrap();
        std::fs::write(dir.path().join("sms/invitation.txt"), "{{ shop_name }} {{ setup_url }}").unwrap();
        let templates = Templates::load(Some(dir.path())).unwrap();
        let text = templates
            .render("sms/invitation.txt", json!({"shop_name": "A&B <x>", "setup_url": "u"}))
            .unwrap();
        assert_eq!(text, "A&B <x> u");
        let html = templates
            .render(
                "email/invitation/body.html",
                json!({"lang": "en", "shop_name": "A&B <script>", "first_name": "<b>Jo</b>", "username": "u",
                       "setup_url": "https://x/setup/t", "login_url": "https://x/login", "expires_at": "soon",
                       "shop_email": null, "shop_phone": null}),
            )
            .unwrap();
        assert!(html.contains("A&amp;B &lt;script&gt;") && !html.contains("<script>"));
        assert!(!html.contains("<b>Jo</b>"));
    }

    #[test]
    fn the_html_formatter_escapes_exactly_the_five_characters_and_keeps_the_rest() {
        let mut env = Environment::new();
        env.set_auto_escape_callback(|_| AutoEscape::Html);
        env.set_formatter(html_formatter);
        env.add_template("t.html", "{{ a }}|{{ n }}|{{ b }}").unwrap();
        let html = env
            .get_template("t.html")
            .unwrap()
            .render(minijinja::value::Serde(
                json!({"a": "<a href=\"x\">Tom & Jerry's</a> / ünï 🚗", "n": 42, "b": "&"}),
            ))
            .unwrap();
        assert_eq!(html, "&lt;a href=&quot;x&quot;&gt;Tom &amp; Jerry&#39;s&lt;/a&gt; / ünï 🚗|42|&amp;");
    }

    #[test]
    fn a_broken_or_misnamed_override_is_refused_with_its_name() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("sms")).unwrap();
        std::fs::write(dir.path().join("sms/invitation.txt"), "{% if %}").unwrap();
        let err = Templates::load(Some(dir.path())).unwrap_err();
        assert_eq!(err.name, "sms/invitation.txt");

        std::fs::write(dir.path().join("sms/invitation.txt"), "ok {{ setup_url }}").unwrap();
        std::fs::write(dir.path().join("sms/invitaton.txt"), "typo").unwrap();
        let err = Templates::load(Some(dir.path())).unwrap_err();
        assert_eq!(err.name, "sms/invitaton.txt");
    }
}
