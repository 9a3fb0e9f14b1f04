//! The credentials the `aws` tool and SigV4 connections sign with, found the way the AWS CLI and
//! SDKs find them: the environment's keys first (what Lambda gives a function for its role),
//! else a named profile of the shared credentials and config files, with its static keys or its
//! `credential_process`. Profiles that only an STS or SSO round trip turns into keys (`role_arn`,
//! `web_identity_token_file`, `sso_*`) are refused by name rather than half-followed: signing
//! with the source profile's keys instead of the role's would act as another principal.
//!
//! Everything the chain reads goes through a [`ChainEnv`], so tests point it at temporary files
//! without touching the process's environment, which tests running in parallel share.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, SystemTime};

use serde::Deserialize;

/// How long before its expiry a `credential_process` result is fetched again, so that a request
/// signed just before the expiry does not arrive after it.
const REFRESH_BEFORE: Duration = Duration::from_secs(5 * 60);

/// A `credential_process` that has not answered by then is stuck (a prompt nobody will see).
const PROCESS_TIMEOUT: Duration = Duration::from_secs(60);

/// The variables the chain reads, captured once; lookups of empty values count as unset, as the
/// CLI counts them.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ChainEnv {
    vars: BTreeMap<String, String>,
}

// Names only: the values include the secret access key.
impl std::fmt::Debug for ChainEnv {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_set().entries(self.vars.keys()).finish()
    }
}

impl ChainEnv {
    /// Every variable the chain looks at.
    pub const NAMES: &'static [&'static str] = &[
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_PROFILE",
        "AWS_SHARED_CREDENTIALS_FILE",
        "AWS_CONFIG_FILE",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
        "HOME",
        "USERPROFILE",
    ];

    /// The process's environment, read now.
    pub fn from_process() -> Self {
        Self::from_pairs(Self::NAMES.iter().filter_map(|k| std::env::var(k).ok().map(|v| (*k, v))))
    }

    /// Exactly these variables (tests, or a deployment that keeps its own).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(pairs: impl IntoIterator<Item = (K, V)>) -> Self {
        Self { vars: pairs.into_iter().map(|(k, v)| (k.into(), v.into())).collect() }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.vars.get(name).map(String::as_str).filter(|v| !v.is_empty())
    }

    fn home(&self) -> Option<&str> {
        self.get("HOME").or_else(|| self.get("USERPROFILE"))
    }

    /// A file named by `var`, else `~/.aws/<default>`; `~/` expanded as the CLI does.
    fn file(&self, var: &str, default: &str) -> Option<PathBuf> {
        match self.get(var) {
            Some(p) => match (p.strip_prefix("~/"), self.home()) {
                (Some(rest), Some(home)) => Some(Path::new(home).join(rest)),
                _ => Some(PathBuf::from(p)),
            },
            None => self.home().map(|h| Path::new(h).join(".aws").join(default)),
        }
    }
}

/// Keys to sign with, and the region the chain found (if any).
#[derive(Clone, PartialEq, Eq)]
pub struct AwsCredentials {
    /// Access key id.
    pub access_key: String,
    /// Secret access key.
    pub secret_key: String,
    /// Session token of temporary credentials.
    pub session_token: Option<String>,
    /// `AWS_REGION`, else `AWS_DEFAULT_REGION`, else the profile's `region`.
    pub region: Option<String>,
    /// Where the keys came from (`environment`, `profile ci`), for messages.
    pub source: String,
}

// Hand-written so that the secret never reaches a log line through `{:?}`.
impl std::fmt::Debug for AwsCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AwsCredentials")
            .field("access_key", &self.access_key)
            .field("secret_key", &"***")
            .field("session_token", &self.session_token.as_ref().map(|_| "***"))
            .field("region", &self.region)
            .field("source", &self.source)
            .finish()
    }
}

/// Why no credentials were found; each message says what to set.
#[derive(Debug, thiserror::Error)]
pub enum CredentialsError {
    /// Nothing in the chain.
    #[error(
        "no AWS credentials: AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set, and there is no \
         `default` profile in {credentials} or {config} (set AWS_PROFILE to use another)"
    )]
    Missing {
        /// The shared credentials file looked at.
        credentials: String,
        /// The config file looked at.
        config: String,
    },
    /// `AWS_PROFILE` names a profile neither file has.
    #[error("the AWS profile `{profile}` (AWS_PROFILE) is in neither {credentials} nor {config}")]
    UnknownProfile {
        /// The profile's name.
        profile: String,
        /// The shared credentials file looked at.
        credentials: String,
        /// The config file looked at.
        config: String,
    },
    /// A way of getting credentials that needs STS, SSO or a container endpoint.
    #[error(
        "{origin} gets its credentials through `{setting}`, which baton does not follow ({why}); export \
         the credentials instead, e.g. `eval \"$(aws configure export-credentials{profile_arg} --format env)\"`"
    )]
    Unsupported {
        /// `the AWS profile `x`` or `the environment`.
        origin: String,
        /// The setting or variable.
        setting: String,
        /// What following it would take.
        why: &'static str,
        /// ` --profile x`, or empty.
        profile_arg: String,
    },
    /// A profile with half a key pair, or with nothing to sign with.
    #[error("the AWS profile `{profile}` {problem}")]
    Incomplete {
        /// The profile's name.
        profile: String,
        /// What is missing.
        problem: &'static str,
    },
    /// A file that exists but cannot be read, or does not parse.
    #[error("cannot read {path}: {reason}")]
    File {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// The profile's `credential_process` failed or answered something else than credentials.
    #[error("the credential_process of AWS profile `{profile}` {reason}")]
    Process {
        /// The profile's name.
        profile: String,
        /// What went wrong (never its output, which may hold keys).
        reason: String,
    },
}

/// The credentials of the chain: the environment's keys, else the profile `AWS_PROFILE` names
/// (else `default`) of the shared credentials file (`AWS_SHARED_CREDENTIALS_FILE`, else
/// `~/.aws/credentials`) over the config file (`AWS_CONFIG_FILE`, else `~/.aws/config`).
pub async fn resolve(env: &ChainEnv) -> Result<AwsCredentials, CredentialsError> {
    let env_region = env.get("AWS_REGION").or_else(|| env.get("AWS_DEFAULT_REGION")).map(str::to_owned);
    let files = Files::of(env);
    if let (Some(ak), Some(sk)) = (env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")) {
        // Keys from the environment still take their region from the profile, as the CLI's do;
        // a missing profile only means no region then.
        let region = match env_region {
            Some(r) => Some(r),
            None => files.profile(profile_name(env).0)?.and_then(|p| p.get("region").cloned()),
        };
        return Ok(AwsCredentials {
            access_key: ak.to_owned(),
            secret_key: sk.to_owned(),
            session_token: env.get("AWS_SESSION_TOKEN").map(str::to_owned),
            region,
            source: "environment".into(),
        });
    }
    let (name, explicit) = profile_name(env);
    let Some(profile) = files.profile(name)? else {
        if explicit {
            return Err(CredentialsError::UnknownProfile {
                profile: name.to_owned(),
                credentials: files.credentials_shown(),
                config: files.config_shown(),
            });
        }
        return Err(unsupported_env(env).unwrap_or_else(|| CredentialsError::Missing {
            credentials: files.credentials_shown(),
            config: files.config_shown(),
        }));
    };
    let mut creds = from_profile(name, &profile).await?;
    creds.region = env_region.or_else(|| profile.get("region").cloned());
    Ok(creds)
}

/// The profile to read, and whether someone named it (an unnamed `default` may be absent).
fn profile_name(env: &ChainEnv) -> (&str, bool) {
    match env.get("AWS_PROFILE") {
        Some(p) => (p, true),
        None => ("default", false),
    }
}

/// Ways of getting credentials the SDKs follow after the profile, which baton does not.
fn unsupported_env(env: &ChainEnv) -> Option<CredentialsError> {
    let (setting, why) = if env.get("AWS_WEB_IDENTITY_TOKEN_FILE").is_some() {
        ("AWS_WEB_IDENTITY_TOKEN_FILE", "it needs an STS AssumeRoleWithWebIdentity call")
    } else if env.get("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI").is_some() {
        ("AWS_CONTAINER_CREDENTIALS_RELATIVE_URI", "it needs the container credentials endpoint")
    } else if env.get("AWS_CONTAINER_CREDENTIALS_FULL_URI").is_some() {
        ("AWS_CONTAINER_CREDENTIALS_FULL_URI", "it needs the container credentials endpoint")
    } else {
        return None;
    };
    Some(CredentialsError::Unsupported {
        origin: "the environment".into(),
        setting: setting.into(),
        why,
        profile_arg: String::new(),
    })
}

type Profile = BTreeMap<String, String>;

/// The two files of the chain; either may be absent.
struct Files {
    credentials: Option<PathBuf>,
    config: Option<PathBuf>,
}

impl Files {
    fn of(env: &ChainEnv) -> Self {
        Self {
            credentials: env.file("AWS_SHARED_CREDENTIALS_FILE", "credentials"),
            config: env.file("AWS_CONFIG_FILE", "config"),
        }
    }

    fn credentials_shown(&self) -> String {
        shown(self.credentials.as_deref(), "~/.aws/credentials")
    }

    fn config_shown(&self) -> String {
        shown(self.config.as_deref(), "~/.aws/config")
    }

    /// The profile's settings from both files, the credentials file's winning (as in the SDKs);
    /// `None` when neither file has it.
    fn profile(&self, name: &str) -> Result<Option<Profile>, CredentialsError> {
        let config = read(self.config.as_deref(), FileKind::Config)?;
        let credentials = read(self.credentials.as_deref(), FileKind::Credentials)?;
        let found = [config.get(name), credentials.get(name)];
        if found.iter().all(Option::is_none) {
            return Ok(None);
        }
        Ok(Some(found.into_iter().flatten().flat_map(|p| p.iter().map(|(k, v)| (k.clone(), v.clone()))).collect()))
    }
}

fn shown(path: Option<&Path>, fallback: &str) -> String {
    path.map_or_else(|| fallback.to_owned(), |p| p.display().to_string())
}

/// Section headers differ: `[profile NAME]` in the config file, `[NAME]` in the credentials file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum FileKind {
    Config,
    Credentials,
}

/// A file's profiles; an absent file has none.
fn read(path: Option<&Path>, kind: FileKind) -> Result<BTreeMap<String, Profile>, CredentialsError> {
    let Some(path) = path else { return Ok(BTreeMap::new()) };
    match std::fs::read_to_string(path) {
        Ok(text) => {
            parse(&text, kind).map_err(|reason| CredentialsError::File { path: path.display().to_string(), reason })
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(e) => Err(CredentialsError::File { path: path.display().to_string(), reason: e.to_string() }),
    }
}

/// The INI dialect of the AWS files: `#`/`;` comments (after whitespace when inside a value),
/// case-insensitive keys, repeated sections merged, and indented lines continuing the previous
/// property (nested settings like `s3 =`), which the chain never needs and skips.
fn parse(text: &str, kind: FileKind) -> Result<BTreeMap<String, Profile>, String> {
    let mut profiles: BTreeMap<String, Profile> = BTreeMap::new();
    // `None` inside a section the chain ignores (`[sso-session x]`, `[services x]`).
    let mut current: Option<String> = None;
    let mut in_section = false;
    for (n, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let Some(end) = rest.find(']') else {
                return Err(format!("line {}: a section header without `]`", n + 1));
            };
            let header = rest[..end].trim();
            current = section(header, kind).map(str::to_owned);
            if let Some(name) = &current {
                profiles.entry(name.clone()).or_default();
            }
            in_section = true;
            continue;
        }
        if raw.starts_with([' ', '\t']) {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("line {}: expected `key = value`", n + 1));
        };
        if !in_section {
            return Err(format!("line {}: a setting before any `[section]`", n + 1));
        }
        if let Some(name) = &current {
            let value = strip_comment(value.trim());
            profiles.entry(name.clone()).or_default().insert(key.trim().to_ascii_lowercase(), value.to_owned());
        }
    }
    Ok(profiles)
}

/// The profile a section header names, if it names one.
fn section(header: &str, kind: FileKind) -> Option<&str> {
    match kind {
        FileKind::Credentials => Some(header),
        FileKind::Config if header == "default" => Some(header),
        FileKind::Config => header
            .strip_prefix("profile")
            .filter(|r| r.starts_with([' ', '\t']))
            .map(str::trim)
            .filter(|n| !n.is_empty()),
    }
}

/// A value up to a comment that whitespace precedes, so that `#` inside a value survives.
fn strip_comment(value: &str) -> &str {
    let cut = value
        .char_indices()
        .find(|&(i, c)| (c == '#' || c == ';') && value[..i].ends_with([' ', '\t']))
        .map_or(value.len(), |(i, _)| i);
    value[..cut].trim_end()
}

/// The keys a profile gives. Settings that make the SDKs ask STS or SSO come first, as they do
/// there: a profile with `role_arn` and keys means the role, not the keys.
async fn from_profile(name: &str, p: &Profile) -> Result<AwsCredentials, CredentialsError> {
    let refusal = |setting: &str, why| CredentialsError::Unsupported {
        origin: format!("the AWS profile `{name}`"),
        setting: setting.to_owned(),
        why,
        profile_arg: format!(" --profile {name}"),
    };
    if p.contains_key("role_arn") {
        let with = ["source_profile", "credential_source", "web_identity_token_file"]
            .into_iter()
            .find(|k| p.contains_key(*k))
            .map_or_else(|| "role_arn".to_owned(), |k| format!("role_arn` with `{k}"));
        return Err(refusal(&with, "it needs an STS AssumeRole call"));
    }
    if p.contains_key("web_identity_token_file") {
        return Err(refusal("web_identity_token_file", "it needs an STS AssumeRoleWithWebIdentity call"));
    }
    if let Some(k) =
        ["sso_session", "sso_start_url", "sso_account_id", "sso_role_name"].into_iter().find(|k| p.contains_key(*k))
    {
        return Err(refusal(k, "it needs an IAM Identity Center sign-in and token"));
    }
    let source = format!("profile {name}");
    let set = |k: &str| p.get(k).filter(|v| !v.is_empty());
    match (set("aws_access_key_id"), set("aws_secret_access_key")) {
        (Some(ak), Some(sk)) => {
            return Ok(AwsCredentials {
                access_key: ak.clone(),
                secret_key: sk.clone(),
                session_token: set("aws_session_token").cloned(),
                region: None,
                source,
            });
        }
        (Some(_), None) => {
            return Err(CredentialsError::Incomplete {
                profile: name.to_owned(),
                problem: "sets aws_access_key_id without aws_secret_access_key",
            });
        }
        (None, Some(_)) => {
            return Err(CredentialsError::Incomplete {
                profile: name.to_owned(),
                problem: "sets aws_secret_access_key without aws_access_key_id",
            });
        }
        (None, None) => {}
    }
    let Some(command) = set("credential_process") else {
        return Err(CredentialsError::Incomplete {
            profile: name.to_owned(),
            problem: "has no credentials: it sets neither aws_access_key_id and aws_secret_access_key \
                      nor credential_process",
        });
    };
    let mut creds = process_credentials(name, command).await?;
    creds.source = source;
    Ok(creds)
}

/// What a `credential_process` prints (the SDKs' format, version 1).
#[derive(Deserialize)]
#[serde(rename_all = "PascalCase")]
struct ProcessOutput {
    version: u32,
    access_key_id: String,
    secret_access_key: String,
    #[serde(default)]
    session_token: Option<String>,
    #[serde(default)]
    expiration: Option<String>,
}

/// A `credential_process` result and when it expires.
type Cached = (AwsCredentials, Option<SystemTime>);

/// Results by command, so that a step's every call does not start the process again;
/// credentials without an expiry are kept for the life of the process, as in the SDKs.
fn cache() -> &'static Mutex<HashMap<String, Cached>> {
    static CACHE: OnceLock<Mutex<HashMap<String, Cached>>> = OnceLock::new();
    CACHE.get_or_init(Mutex::default)
}

async fn process_credentials(profile: &str, command: &str) -> Result<AwsCredentials, CredentialsError> {
    let now = SystemTime::now();
    let fresh =
        |expiry: &Option<SystemTime>| expiry.is_none_or(|e| e.duration_since(now).is_ok_and(|d| d > REFRESH_BEFORE));
    if let Some((creds, expiry)) = cache().lock().ok().and_then(|c| c.get(command).cloned())
        && fresh(&expiry)
    {
        return Ok(creds);
    }
    let fail = |reason: String| CredentialsError::Process { profile: profile.to_owned(), reason };
    let output = run(command).await.map_err(fail)?;
    let parsed: ProcessOutput = serde_json::from_slice(&output)
        // serde's message can quote the input, and the input holds the secret: say only where.
        .map_err(|e| {
            fail(format!("printed something else than credentials JSON (line {}, column {})", e.line(), e.column()))
        })?;
    if parsed.version != 1 {
        return Err(fail(format!("printed Version {}; only Version 1 is known", parsed.version)));
    }
    let expiry = match &parsed.expiration {
        None => None,
        Some(t) => Some(
            chrono::DateTime::parse_from_rfc3339(t)
                .map_err(|e| fail(format!("printed an Expiration that is not an RFC 3339 time ({t}): {e}")))
                .map(SystemTime::from)?,
        ),
    };
    if expiry.is_some_and(|e| e <= now) {
        return Err(fail(format!("printed credentials that expired at {}", parsed.expiration.unwrap_or_default())));
    }
    let creds = AwsCredentials {
        access_key: parsed.access_key_id,
        secret_key: parsed.secret_access_key,
        session_token: parsed.session_token.filter(|t| !t.is_empty()),
        region: None,
        source: format!("profile {profile}"),
    };
    if let Ok(mut c) = cache().lock() {
        c.insert(command.to_owned(), (creds.clone(), expiry));
    }
    Ok(creds)
}

/// Runs the command through the shell, as the SDKs do, and returns what it printed.
async fn run(command: &str) -> Result<Vec<u8>, String> {
    let mut cmd = if cfg!(windows) {
        let mut c = tokio::process::Command::new("cmd.exe");
        c.arg("/C").arg(command);
        c
    } else {
        let mut c = tokio::process::Command::new("sh");
        c.arg("-c").arg(command);
        c
    };
    cmd.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    let child = cmd.spawn().map_err(|e| format!("could not start: {e}"))?;
    let out = tokio::time::timeout(PROCESS_TIMEOUT, child.wait_with_output())
        .await
        .map_err(|_| format!("did not finish within {} s", PROCESS_TIMEOUT.as_secs()))?
        .map_err(|e| format!("failed: {e}"))?;
    if !out.status.success() {
        let stderr = String::from_utf8_lossy(&out.stderr);
        let stderr: String = stderr.trim().chars().take(500).collect();
        return Err(format!("exited with {}: {stderr}", out.status));
    }
    Ok(out.stdout)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A home with `.aws/credentials` and `.aws/config` (either skipped when `None`).
    fn home(credentials: Option<&str>, config: Option<&str>) -> tempfile::TempDir {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir(dir.path().join(".aws")).expect(".aws");
        if let Some(c) = credentials {
            std::fs::write(dir.path().join(".aws/credentials"), c).expect("credentials");
        }
        if let Some(c) = config {
            std::fs::write(dir.path().join(".aws/config"), c).expect("config");
        }
        dir
    }

    fn env(home: &tempfile::TempDir, more: &[(&str, &str)]) -> ChainEnv {
        let h = home.path().display().to_string();
        ChainEnv::from_pairs([("HOME", h.as_str())].into_iter().chain(more.iter().copied()))
    }

    const CREDENTIALS: &str = "\
# written by `aws configure`
[default]
aws_access_key_id = AKIDDEFAULT
aws_secret_access_key = secret-default

[ci]
aws_access_key_id=AKIDCI
aws_secret_access_key=secret-ci
aws_session_token = token-ci
";

    const CONFIG: &str = "\
[default]
region = eu-west-1

[profile ci]
region = us-west-2 ; inline comment
aws_access_key_id = AKIDFROMCONFIG
s3 =
  max_concurrent_requests = 20

[sso-session corp]
sso_start_url = https://corp.awsapps.com/start
";

    #[tokio::test]
    async fn the_environment_wins_and_takes_the_profile_region() {
        let h = home(Some(CREDENTIALS), Some(CONFIG));
        let c = resolve(&env(&h, &[("AWS_ACCESS_KEY_ID", "AKIDENV"), ("AWS_SECRET_ACCESS_KEY", "s")]))
            .await
            .expect("creds");
        assert_eq!((c.access_key.as_str(), c.session_token, c.source.as_str()), ("AKIDENV", None, "environment"));
        assert_eq!(c.region.as_deref(), Some("eu-west-1"));
        let c = resolve(&env(
            &h,
            &[("AWS_ACCESS_KEY_ID", "AKIDENV"), ("AWS_SECRET_ACCESS_KEY", "s"), ("AWS_DEFAULT_REGION", "ap-south-1")],
        ))
        .await
        .expect("creds");
        assert_eq!(c.region.as_deref(), Some("ap-south-1"));
        // Half a key pair in the environment is no key pair: the profile answers.
        let c = resolve(&env(&h, &[("AWS_ACCESS_KEY_ID", "AKIDENV")])).await.expect("creds");
        assert_eq!(c.access_key, "AKIDDEFAULT");
    }

    #[tokio::test]
    async fn the_default_profile_and_a_named_one_merge_both_files() {
        let h = home(Some(CREDENTIALS), Some(CONFIG));
        let c = resolve(&env(&h, &[])).await.expect("default");
        assert_eq!(
            (c.access_key.as_str(), c.secret_key.as_str(), c.region.as_deref(), c.source.as_str()),
            ("AKIDDEFAULT", "secret-default", Some("eu-west-1"), "profile default")
        );
        let c = resolve(&env(&h, &[("AWS_PROFILE", "ci")])).await.expect("ci");
        // The credentials file's key wins over the config file's; the region comes from config.
        assert_eq!(c.access_key, "AKIDCI");
        assert_eq!(c.session_token.as_deref(), Some("token-ci"));
        assert_eq!(c.region.as_deref(), Some("us-west-2"));
        let c = resolve(&env(&h, &[("AWS_PROFILE", "ci"), ("AWS_REGION", "us-east-2"), ("AWS_DEFAULT_REGION", "x")]))
            .await
            .expect("ci");
        assert_eq!(c.region.as_deref(), Some("us-east-2"));
    }

    #[tokio::test]
    async fn the_file_variables_and_a_tilde_name_other_files() {
        let h = home(None, None);
        std::fs::write(h.path().join("creds.ini"), "[build]\naws_access_key_id = AKIDB\naws_secret_access_key = b\n")
            .expect("write");
        std::fs::write(h.path().join("conf.ini"), "[profile build]\nregion = sa-east-1\n").expect("write");
        let c = resolve(&env(
            &h,
            &[
                ("AWS_PROFILE", "build"),
                ("AWS_SHARED_CREDENTIALS_FILE", "~/creds.ini"),
                ("AWS_CONFIG_FILE", &h.path().join("conf.ini").display().to_string()),
            ],
        ))
        .await
        .expect("build");
        assert_eq!((c.access_key.as_str(), c.region.as_deref()), ("AKIDB", Some("sa-east-1")));
    }

    #[tokio::test]
    async fn an_unknown_profile_and_no_credentials_are_named() {
        let h = home(Some(CREDENTIALS), Some(CONFIG));
        let e = resolve(&env(&h, &[("AWS_PROFILE", "prod")])).await.expect_err("unknown");
        let msg = e.to_string();
        assert!(matches!(e, CredentialsError::UnknownProfile { .. }), "{msg}");
        assert!(msg.contains("`prod`") && msg.contains(".aws/credentials") && msg.contains(".aws/config"), "{msg}");
        // A config-only `[prod]` is not `[profile prod]`.
        let h = home(None, Some("[prod]\nregion = us-east-1\n"));
        let e = resolve(&env(&h, &[("AWS_PROFILE", "prod")])).await.expect_err("unknown");
        assert!(matches!(e, CredentialsError::UnknownProfile { .. }), "{e}");
        let e = resolve(&env(&h, &[])).await.expect_err("missing");
        assert!(matches!(e, CredentialsError::Missing { .. }), "{e}");
        assert!(e.to_string().contains("AWS_ACCESS_KEY_ID"), "{e}");
        let e = resolve(&env(&h, &[("AWS_WEB_IDENTITY_TOKEN_FILE", "/var/run/token")])).await.expect_err("irsa");
        assert!(e.to_string().contains("AWS_WEB_IDENTITY_TOKEN_FILE"), "{e}");
        let e = resolve(&env(&h, &[("AWS_PROFILE", "prod"), ("AWS_REGION", "x")])).await.expect_err("unknown");
        assert!(matches!(e, CredentialsError::UnknownProfile { .. }), "{e}");
    }

    #[tokio::test]
    async fn roles_sso_and_web_identity_are_refused_by_name() {
        let config = "\
[profile admin]
role_arn = arn:aws:iam::123456789012:role/admin
source_profile = default
[profile keyed-role]
role_arn = arn:aws:iam::123456789012:role/admin
aws_access_key_id = AKIDK
aws_secret_access_key = k
[profile corp]
sso_session = corp
sso_account_id = 123456789012
sso_role_name = dev
[profile eks]
web_identity_token_file = /var/run/token
";
        let h = home(Some(CREDENTIALS), Some(config));
        for (profile, setting) in [
            ("admin", "role_arn` with `source_profile"),
            ("keyed-role", "role_arn"),
            ("corp", "sso_session"),
            ("eks", "web_identity_token_file"),
        ] {
            let e = resolve(&env(&h, &[("AWS_PROFILE", profile)])).await.expect_err(profile);
            let msg = e.to_string();
            assert!(matches!(e, CredentialsError::Unsupported { .. }), "{msg}");
            assert!(msg.contains(&format!("profile `{profile}`")), "{msg}");
            assert!(msg.contains(&format!("`{setting}`")), "{msg}");
            assert!(
                msg.contains(&format!("aws configure export-credentials --profile {profile} --format env")),
                "{msg}"
            );
        }
    }

    #[tokio::test]
    async fn half_a_key_pair_or_none_is_an_error() {
        let h = home(Some("[a]\naws_access_key_id = AKIDA\n[b]\nregion = x\n"), None);
        let e = resolve(&env(&h, &[("AWS_PROFILE", "a")])).await.expect_err("a");
        assert!(e.to_string().contains("without aws_secret_access_key"), "{e}");
        let e = resolve(&env(&h, &[("AWS_PROFILE", "b")])).await.expect_err("b");
        assert!(e.to_string().contains("has no credentials"), "{e}");
    }

    /// A profile whose `credential_process` is a script that counts its runs and prints `json`.
    fn process_profile(json: &str) -> (tempfile::TempDir, ChainEnv, PathBuf) {
        let h = home(None, None);
        let count = h.path().join("runs");
        let script = h.path().join("creds.sh");
        std::fs::write(&script, format!("echo run >> '{}'\ncat <<'JSON'\n{json}\nJSON\n", count.display()))
            .expect("script");
        std::fs::write(
            h.path().join(".aws/config"),
            format!("[profile proc]\nregion = eu-north-1\ncredential_process = sh '{}'\n", script.display()),
        )
        .expect("config");
        let e = env(&h, &[("AWS_PROFILE", "proc")]);
        (h, e, count)
    }

    fn runs(count: &Path) -> usize {
        std::fs::read_to_string(count).map(|s| s.lines().count()).unwrap_or(0)
    }

    #[tokio::test]
    async fn credential_process_output_is_used_and_cached_until_near_expiry() {
        let later = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
        let (_h, e, count) = process_profile(&format!(
            r#"{{"Version": 1, "AccessKeyId": "AKIDPROC", "SecretAccessKey": "sp", "SessionToken": "tp", "Expiration": "{later}"}}"#
        ));
        let c = resolve(&e).await.expect("proc");
        assert_eq!(
            (c.access_key.as_str(), c.secret_key.as_str(), c.session_token.as_deref(), c.region.as_deref()),
            ("AKIDPROC", "sp", Some("tp"), Some("eu-north-1"))
        );
        assert_eq!(c.source, "profile proc");
        resolve(&e).await.expect("again");
        assert_eq!(runs(&count), 1, "the second call is served from the cache");

        // Credentials about to expire are fetched again at each call.
        let soon = (chrono::Utc::now() + chrono::Duration::minutes(2)).to_rfc3339();
        let (_h, e, count) = process_profile(&format!(
            r#"{{"Version": 1, "AccessKeyId": "AKIDSOON", "SecretAccessKey": "s", "Expiration": "{soon}"}}"#
        ));
        resolve(&e).await.expect("soon");
        resolve(&e).await.expect("soon again");
        assert_eq!(runs(&count), 2);

        // No expiry: kept.
        let (_h, e, count) = process_profile(r#"{"Version": 1, "AccessKeyId": "AKIDFOREVER", "SecretAccessKey": "s"}"#);
        resolve(&e).await.expect("forever");
        resolve(&e).await.expect("forever again");
        assert_eq!(runs(&count), 1);
    }

    #[tokio::test]
    async fn credential_process_failures_say_why_without_the_output() {
        let (_h, e, _) = process_profile(r#"{"Version": 2, "AccessKeyId": "AKID", "SecretAccessKey": "s"}"#);
        let err = resolve(&e).await.expect_err("v2").to_string();
        assert!(err.contains("Version 2") && err.contains("`proc`"), "{err}");
        let (_h, e, _) = process_profile(r#"{"Version": 1, "AccessKeyId": "AKID", "SecretAccessKey": "TOPSECRET""#);
        let err = resolve(&e).await.expect_err("bad json").to_string();
        assert!(err.contains("credentials JSON") && !err.contains("TOPSECRET"), "{err}");
        let (_h, e, _) = process_profile(
            r#"{"Version": 1, "AccessKeyId": "AKID", "SecretAccessKey": "s", "Expiration": "2020-01-01T00:00:00Z"}"#,
        );
        let err = resolve(&e).await.expect_err("expired").to_string();
        assert!(err.contains("expired"), "{err}");

        let h = home(None, Some("[default]\ncredential_process = echo TOPSECRET; echo 'no session' >&2; exit 3\n"));
        let err = resolve(&env(&h, &[])).await.expect_err("exit 3").to_string();
        assert!(err.contains("no session") && err.contains('3') && !err.contains("TOPSECRET"), "{err}");
    }

    #[test]
    fn debug_output_shows_no_secret() {
        let e = ChainEnv::from_pairs([("AWS_SECRET_ACCESS_KEY", "TOPSECRET")]);
        assert!(!format!("{e:?}").contains("TOPSECRET"));
        let c = AwsCredentials {
            access_key: "AKID".into(),
            secret_key: "TOPSECRET".into(),
            session_token: Some("TOPSECRET".into()),
            region: None,
            source: "environment".into(),
        };
        assert!(!format!("{c:?}").contains("TOPSECRET"));
    }

    #[test]
    fn the_ini_dialect_of_the_aws_files() {
        let text = "\
; comment
[default]
Region = us-east-1   # trailing comment
aws_secret_access_key = abc#def;ghi
[ profile  spaced ]
region=eu-central-1
[profilex]
region = nope
[default]
output = json
";
        let config = parse(text, FileKind::Config).expect("parses");
        let d = &config["default"];
        assert_eq!(d["region"], "us-east-1");
        assert_eq!(d["aws_secret_access_key"], "abc#def;ghi");
        assert_eq!(d["output"], "json", "a repeated section adds to the first");
        assert_eq!(config["spaced"]["region"], "eu-central-1");
        assert!(!config.contains_key("profilex") && !config.contains_key("x"));
        // The credentials file takes section names as they are.
        let creds = parse("[profile x]\na = 1\n", FileKind::Credentials).expect("parses");
        assert!(creds.contains_key("profile x"));
        let e = parse("[default]\njust words\n", FileKind::Config).expect_err("no =");
        assert!(e.contains("line 2"), "{e}");
        assert!(parse("a = 1\n", FileKind::Config).is_err());
        assert!(parse("[default\n", FileKind::Config).is_err());
    }
}
