//! The `--config` file: a TOML table whose keys are the settings' names without `PORTAL_`, in lower
//! case. A key that names no setting stops the start, so a typo cannot pass for a default.

use std::{collections::BTreeMap, path::Path};

use super::{SETTINGS, SettingError};

/// Reads the file into environment-variable names.
pub(super) fn read(path: &Path) -> Result<BTreeMap<String, String>, SettingError> {
    let fail = |message: String| SettingError::new("--config", format!("{}: {message}", path.display()));
    let text = std::fs::read_to_string(path).map_err(|e| fail(format!("cannot be read ({e})")))?;
    let table: toml::Table =
        text.parse().map_err(|e: toml::de::Error| fail(format!("is not valid TOML ({})", e.message())))?;
    let mut raw = BTreeMap::new();
    for (key, value) in table {
        let env = format!("PORTAL_{}", key.to_ascii_uppercase());
        if !SETTINGS.iter().any(|s| s.env == env) || key.to_ascii_lowercase() != key {
            return Err(fail(format!(
                "unknown setting {key:?}; the file takes the names of the README without PORTAL_, in lower case"
            )));
        }
        let value = match value {
            toml::Value::String(s) => s,
            toml::Value::Integer(i) => i.to_string(),
            toml::Value::Boolean(b) => b.to_string(),
            toml::Value::Array(items) => items
                .iter()
                .map(|item| {
                    item.as_str().map(str::to_owned).ok_or_else(|| fail(format!("{key} must hold strings")))
                })
                .collect::<Result<Vec<_>, _>>()?
                .join(" "),
            _ => return Err(fail(format!("{key} must be a string"))),
        };
        raw.insert(env, value);
    }
    Ok(raw)
}
