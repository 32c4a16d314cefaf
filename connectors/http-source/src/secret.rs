//! API credentials in a config: written there (as `${VAR}`, so the file holds no secret) or
//! read from the environment variable a setting names.

use dossier_connector::ConnectorError;
use secrecy::SecretString;

/// A secret the config sets as `name` or names the environment variable of as `{name}_env`,
/// one of the two: `missing` is the error when neither is set.
pub fn secret_setting(
    name: &str,
    value: Option<&SecretString>,
    env: Option<&str>,
    missing: &str,
) -> Result<SecretString, ConnectorError> {
    match (value, env) {
        (Some(_), Some(_)) => Err(ConnectorError::config(format!(
            "set either `{name}` or `{name}_env`, not both"
        ))),
        (Some(value), None) => Ok(value.clone()),
        (None, Some(var)) => env_secret(var).ok_or_else(|| {
            ConnectorError::config(format!(
                "environment variable {var} (named by `{name}_env`) is not set or empty"
            ))
        }),
        (None, None) => Err(ConnectorError::config(missing)),
    }
}

/// The value of the environment variable `var`, trimmed; `None` when it is unset or blank.
pub fn env_secret(var: &str) -> Option<SecretString> {
    std::env::var(var)
        .ok()
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .map(SecretString::from)
}
