//! Secret values for tools. A `{{ secret("NAME") }}` template leaves only a placeholder in the
//! resolved call input (see `baton_core::expr::secret_placeholder`), which is what the journal and
//! the audit log hold. A tool fetches the values from a [`SecretSource`] right before it uses
//! them ([`Revealed`]), and scrubs them from whatever it returns, since servers echo credentials.

use std::collections::{BTreeMap, BTreeSet};

use async_trait::async_trait;
use baton_core::engine::{ErrorKind, StepError};
use baton_core::expr::{SECRET_PREFIX, SECRET_SUFFIX, valid_secret_name};
use baton_core::model::SecretScope;
use serde_json::Value;

use baton_runtime::ports::{SecretLookupError, SecretSource};

/// Secrets from the process environment: secret `NAME` is the environment variable `NAME`
/// (unset means missing). The default of the embedded backend, where the person running
/// `baton` already holds the credentials; on AWS use `baton_aws::secret_source::AwsSecrets`.
#[derive(Debug, Clone, Copy, Default)]
pub struct EnvSecrets;

#[async_trait]
impl SecretSource for EnvSecrets {
    async fn get(&self, name: &str) -> Result<Option<String>, SecretLookupError> {
        if !valid_secret_name(name) {
            return Err(SecretLookupError::InvalidName(name.to_owned()));
        }
        match std::env::var(name) {
            Ok(value) => Ok(Some(value)),
            Err(std::env::VarError::NotPresent) => Ok(None),
            Err(std::env::VarError::NotUnicode(_)) => Err(SecretLookupError::Backend {
                name: name.to_owned(),
                message: "the environment variable is not valid UTF-8".into(),
            }),
        }
    }
}

/// A placeholder inside `s`: (start, end, name), byte offsets of the whole placeholder.
fn next_placeholder(s: &str, from: usize) -> Option<Result<(usize, usize, &str), StepError>> {
    let start = from + s[from..].find(SECRET_PREFIX)?;
    let name_at = start + SECRET_PREFIX.len();
    Some(match s[name_at..].find(SECRET_SUFFIX) {
        None => {
            Err(StepError::new(ErrorKind::Tool, "a secret placeholder is cut short: write `{{ secret(\"NAME\") }}`"))
        }
        Some(len) => Ok((start, name_at + len + SECRET_SUFFIX.len(), &s[name_at..name_at + len])),
    })
}

/// Collects the names of the `secret("NAME")` placeholders in `s`.
pub(crate) fn names_in_str(s: &str, out: &mut BTreeSet<String>) -> Result<(), StepError> {
    let mut from = 0;
    while let Some(found) = next_placeholder(s, from) {
        let (_, end, name) = found?;
        if !valid_secret_name(name) {
            let shown: String = name.chars().take(80).collect();
            return Err(StepError::new(
                ErrorKind::Tool,
                format!("`secret({shown:?})`: a secret name is 1 to 1024 letters, digits or `_ . / - : + = @`"),
            ));
        }
        out.insert(name.to_owned());
        from = end;
    }
    Ok(())
}

/// Collects the names of the secrets `value`'s strings (at any depth) refer to; a malformed
/// placeholder or an invalid name (a computed `secret()` argument) is a `tool` error.
pub(crate) fn names_in(value: &Value, out: &mut BTreeSet<String>) -> Result<(), StepError> {
    match value {
        Value::String(s) => names_in_str(s, out),
        Value::Array(items) => items.iter().try_for_each(|v| names_in(v, out)),
        Value::Object(map) => map.values().try_for_each(|v| names_in(v, out)),
        _ => Ok(()),
    }
}

/// Replaces each placeholder in `s` with `with(name)`.
fn replace_placeholders(s: &str, with: impl Fn(&str) -> String) -> String {
    let mut out = String::with_capacity(s.len());
    let mut from = 0;
    while let Some(Ok((start, end, name))) = next_placeholder(s, from) {
        out.push_str(&s[from..start]);
        out.push_str(&with(name));
        from = end;
    }
    out.push_str(&s[from..]);
    out
}

/// How a secret is shown wherever its value would be.
pub(crate) fn shown(name: &str) -> String {
    format!("[secret {name}]")
}

/// `s` with every placeholder shown as `[secret NAME]`: for messages about the request.
pub(crate) fn mask(s: &str) -> String {
    if s.contains(SECRET_PREFIX) { replace_placeholders(s, shown) } else { s.to_owned() }
}

/// Percent-encodes everything but RFC 3986's unreserved characters (how a secret reads when a
/// server echoes the URL it was called with).
fn percent_encoded(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// How `value` reads in a URL's query and path once the URL parser has encoded it: what goes
/// on the wire, so what a server echoing its request line sends back.
fn url_forms(value: &str) -> Vec<String> {
    let Ok(mut url) = reqwest::Url::parse("http://h/") else { return Vec::new() };
    let mut forms = Vec::new();
    url.set_query(Some(value));
    forms.extend(url.query().map(str::to_owned));
    url.set_query(None);
    url.set_path(&format!("/{value}"));
    forms.extend(url.path().strip_prefix('/').map(str::to_owned));
    forms
}

/// The secrets one call uses, fetched; dropped with the call.
#[derive(Default)]
pub(crate) struct Revealed {
    /// (name, value) by name.
    values: Vec<(String, String)>,
    /// (text to find, name), longest first, so a value inside another is not scrubbed half.
    scrub: Vec<(String, String)>,
}

impl Revealed {
    /// Fetches `names`. A missing secret fails with kind `tool`, naming it.
    pub(crate) async fn fetch(source: &dyn SecretSource, names: BTreeSet<String>) -> Result<Self, StepError> {
        let mut values = Vec::with_capacity(names.len());
        for name in names {
            match source.get(&name).await {
                Ok(Some(value)) => values.push((name, value)),
                Ok(None) => {
                    return Err(StepError::new(
                        ErrorKind::Tool,
                        format!("the secret `{name}` is not set in the secret source"),
                    ));
                }
                Err(e) => return Err(StepError::new(ErrorKind::Tool, e.to_string())),
            }
        }
        let mut scrub = Vec::new();
        for (name, value) in &values {
            if value.is_empty() {
                continue;
            }
            let escaped = serde_json::to_string(value).unwrap_or_default();
            let escaped = escaped.trim_start_matches('"').trim_end_matches('"').to_owned();
            let form: String = form_urlencoded::byte_serialize(value.as_bytes()).collect();
            let mut forms = vec![value.clone(), escaped, form, percent_encoded(value)];
            forms.extend(url_forms(value));
            for form in forms {
                if !scrub.iter().any(|(f, _)| *f == form) {
                    scrub.push((form, name.clone()));
                }
            }
        }
        scrub.sort_by_key(|(form, _)| std::cmp::Reverse(form.len()));
        Ok(Self { values, scrub })
    }

    /// True when the call uses no secret.
    pub(crate) fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// `s` with every placeholder replaced by its value.
    pub(crate) fn reveal(&self, s: &str) -> String {
        if !s.contains(SECRET_PREFIX) {
            return s.to_owned();
        }
        replace_placeholders(s, |name| {
            self.values.iter().find(|(n, _)| n == name).map(|(_, v)| v.clone()).unwrap_or_else(|| shown(name))
        })
    }

    /// `value` with placeholders replaced in its strings, at any depth (object keys stay).
    pub(crate) fn reveal_value(&self, value: &Value) -> Value {
        match value {
            Value::String(s) => Value::String(self.reveal(s)),
            Value::Array(items) => Value::Array(items.iter().map(|v| self.reveal_value(v)).collect()),
            Value::Object(map) => Value::Object(map.iter().map(|(k, v)| (k.clone(), self.reveal_value(v))).collect()),
            other => other.clone(),
        }
    }

    /// `s` with every value used (also JSON-, form- and percent-encoded) shown as
    /// `[secret NAME]`.
    pub(crate) fn scrub(&self, s: &str) -> String {
        let mut out = s.to_owned();
        for (form, name) in &self.scrub {
            if out.contains(form.as_str()) {
                out = out.replace(form.as_str(), &shown(name));
            }
        }
        out
    }

    /// `value` scrubbed in every string and object key, at any depth.
    pub(crate) fn scrub_value(&self, value: Value) -> Value {
        if self.is_empty() {
            return value;
        }
        match value {
            Value::String(s) => Value::String(self.scrub(&s)),
            Value::Array(items) => Value::Array(items.into_iter().map(|v| self.scrub_value(v)).collect()),
            Value::Object(map) => {
                Value::Object(map.into_iter().map(|(k, v)| (self.scrub(&k), self.scrub_value(v))).collect())
            }
            other => other,
        }
    }
}

/// Checks that the scoped secrets among `names` may go to `host` (through `connection`):
/// `Ok(true)` when the call carries a scoped secret and may, `Ok(false)` when it carries none,
/// `network_refused` naming the secret, where it may go and `to` otherwise. Names are compared
/// in one spelling (`ssm:/x`, `ssm:x` and `ssm://x` are one parameter).
pub(crate) fn check_scopes(
    scopes: &BTreeMap<String, SecretScope>,
    names: &BTreeSet<String>,
    host: Option<&str>,
    connection: Option<&str>,
    to: &str,
) -> Result<bool, StepError> {
    let scopes: BTreeMap<String, &SecretScope> = scopes.iter().map(|(n, s)| (canonical(n), s)).collect();
    let mut carried = false;
    for name in names {
        let Some(scope) = scopes.get(&canonical(name)) else { continue };
        carried = true;
        let by_connection = connection.is_some_and(|c| scope.connections.iter().any(|s| s == c));
        let by_host = host.is_some_and(|h| {
            let h = h.to_ascii_lowercase();
            scope.hosts.iter().any(|entry| {
                let entry = entry.to_ascii_lowercase();
                match entry.strip_prefix('*') {
                    // `*.example.com` matches `a.example.com` and `a.b.example.com`, not `example.com`.
                    Some(suffix) if suffix.starts_with('.') => h.len() > suffix.len() && h.ends_with(suffix),
                    _ => h == entry,
                }
            })
        });
        if !(by_connection || by_host) {
            let mut allowed: Vec<String> = scope.hosts.clone();
            allowed.extend(scope.connections.iter().map(|c| format!("connection `{c}`")));
            return Err(StepError::new(
                ErrorKind::NetworkRefused,
                format!(
                    "secret `{name}` may be sent to {} only, not to {to} (the workflow's `secrets`)",
                    allowed.join(", ")
                ),
            ));
        }
    }
    Ok(carried)
}

/// A secret's name in one spelling: an SSM parameter's leading slashes do not make another one.
fn canonical(name: &str) -> String {
    match name.strip_prefix("ssm:") {
        Some(path) => format!("ssm:/{}", path.trim_start_matches('/')),
        None => name.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_core::expr::secret_placeholder;
    use serde_json::json;

    struct Fixed(Vec<(&'static str, &'static str)>);

    #[async_trait]
    impl SecretSource for Fixed {
        async fn get(&self, name: &str) -> Result<Option<String>, SecretLookupError> {
            Ok(self.0.iter().find(|(n, _)| *n == name).map(|(_, v)| (*v).to_owned()))
        }
    }

    #[tokio::test]
    async fn placeholders_are_revealed_and_values_scrubbed() {
        let input = json!({
            "url": format!("https://x.test/?key={}", secret_placeholder("KEY")),
            "headers": {"Authorization": format!("Bearer {}", secret_placeholder("TOKEN"))},
            "body": {"deep": [format!("{}{}", secret_placeholder("TOKEN"), secret_placeholder("KEY"))]},
        });
        let mut names = BTreeSet::new();
        names_in(&input, &mut names).expect("names");
        assert_eq!(names.iter().map(String::as_str).collect::<Vec<_>>(), ["KEY", "TOKEN"]);
        let source = Fixed(vec![("KEY", "k/y+1 2"), ("TOKEN", "tok-123")]);
        let r = Revealed::fetch(&source, names).await.expect("fetch");
        let revealed = r.reveal_value(&input);
        assert_eq!(revealed["url"], json!("https://x.test/?key=k/y+1 2"));
        assert_eq!(revealed["headers"]["Authorization"], json!("Bearer tok-123"));
        assert_eq!(revealed["body"]["deep"][0], json!("tok-123k/y+1 2"));
        assert_eq!(mask(input["url"].as_str().expect("url")), "https://x.test/?key=[secret KEY]");
        let echoed = json!({
            "seen": "Bearer tok-123", "url": "/?key=k%2Fy%2B1%202", "form": "key=k%2Fy%2B1+2", "tok-123": 1,
            "query": "/?key=k/y+1%202",
        });
        assert_eq!(
            r.scrub_value(echoed),
            json!({
                "seen": "Bearer [secret TOKEN]", "url": "/?key=[secret KEY]", "form": "key=[secret KEY]",
                "[secret TOKEN]": 1, "query": "/?key=[secret KEY]",
            })
        );
        assert_eq!(r.scrub("failed: https://x.test/?key=k/y+1 2"), "failed: https://x.test/?key=[secret KEY]");
    }

    #[tokio::test]
    async fn missing_secrets_and_bad_names_fail_with_kind_tool() {
        let err = Revealed::fetch(&Fixed(vec![]), BTreeSet::from(["GONE".to_owned()])).await.err().expect("missing");
        assert_eq!(err.kind, "tool");
        assert!(err.message.contains("`GONE`"), "{}", err.message);
        let mut names = BTreeSet::new();
        let bad = names_in(&json!(secret_placeholder("no spaces")), &mut names).expect_err("bad name");
        assert_eq!(bad.kind, "tool");
        let cut = names_in(&json!("\u{0}baton-secret:X"), &mut names).expect_err("cut");
        assert!(cut.message.contains("cut short"), "{}", cut.message);
    }

    #[tokio::test]
    async fn env_secrets_read_environment_variables() {
        // PATH is set in every test process; the variable below in none.
        let path = EnvSecrets.get("PATH").await.expect("path");
        assert_eq!(path, std::env::var("PATH").ok());
        assert_eq!(EnvSecrets.get("BATON_TEST_SURELY_UNSET_9f2c").await.expect("unset"), None);
        assert!(matches!(EnvSecrets.get("a b").await, Err(SecretLookupError::InvalidName(_))));
    }
}
