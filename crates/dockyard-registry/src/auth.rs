//! Credentials (flags, environment, `~/.docker/config.json`, credential
//! helpers), `WWW-Authenticate` challenges and bearer tokens.

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine;
use serde_json::{json, Value};

use crate::error::{RegistryError, Result};

/// A user name and a secret. `Debug` never shows the secret.
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub username: String,
    pub password: String,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Credentials {{ username: {:?}, password: <redacted> }}",
            self.username
        )
    }
}

impl Credentials {
    pub fn basic_header(&self) -> String {
        let raw = format!("{}:{}", self.username, self.password);
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        )
    }
}

/// A parsed `WWW-Authenticate` header.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Challenge {
    Basic,
    Bearer {
        realm: String,
        service: Option<String>,
        scope: Option<String>,
        error: Option<String>,
    },
}

/// Parse `Bearer realm="...",service="...",scope="..."` or `Basic realm="..."`.
pub fn parse_challenge(header: &str) -> Option<Challenge> {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let params = parse_params(rest);
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => Some(Challenge::Basic),
        "bearer" => Some(Challenge::Bearer {
            realm: params.get("realm")?.clone(),
            service: params.get("service").cloned(),
            scope: params.get("scope").cloned(),
            error: params.get("error").cloned(),
        }),
        _ => None,
    }
}

fn parse_params(s: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        while i < b.len() && (b[i] == b' ' || b[i] == b',') {
            i += 1;
        }
        let key_start = i;
        while i < b.len() && b[i] != b'=' {
            i += 1;
        }
        let key = s[key_start..i].trim().to_ascii_lowercase();
        i += 1; // '='
        let mut value = String::new();
        if i < b.len() && b[i] == b'"' {
            i += 1;
            while i < b.len() && b[i] != b'"' {
                if b[i] == b'\\' && i + 1 < b.len() {
                    i += 1;
                }
                value.push(b[i] as char);
                i += 1;
            }
            i += 1;
        } else {
            let start = i;
            while i < b.len() && b[i] != b',' {
                i += 1;
            }
            value = s[start.min(b.len())..i.min(b.len())].trim().to_string();
        }
        if !key.is_empty() {
            out.insert(key, value);
        }
    }
    out
}

/// A bearer token and when to stop using it.
#[derive(Clone)]
pub struct Token {
    pub value: String,
    pub expires: Instant,
}

impl fmt::Debug for Token {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Token(<redacted>, expires in {:?})",
            self.expires.saturating_duration_since(Instant::now())
        )
    }
}

impl Token {
    /// Parse a token endpoint answer (`token` or `access_token`, `expires_in`).
    pub fn from_response(body: &[u8], received: Instant) -> Option<Token> {
        let v: Value = serde_json::from_slice(body).ok()?;
        let value = v
            .get("token")
            .or_else(|| v.get("access_token"))
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())?
            .to_string();
        // The spec's default lifetime is 60 s; refresh a little early.
        let secs = v
            .get("expires_in")
            .and_then(Value::as_u64)
            .unwrap_or(60)
            .max(1);
        let margin = if secs > 30 { 10 } else { secs / 5 };
        Some(Token {
            value,
            expires: received + Duration::from_secs(secs - margin),
        })
    }
    pub fn is_fresh(&self) -> bool {
        Instant::now() < self.expires
    }
}

/// `$DOCKER_CONFIG/config.json`, else `~/.docker/config.json`.
pub fn docker_config_path() -> PathBuf {
    if let Some(dir) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return PathBuf::from(dir).join("config.json");
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/"));
    home.join(".docker").join("config.json")
}

/// The registry a config.json key (or a name given to `login`) stands
/// for, as Docker reads keys: scheme and path dropped, host lowercased,
/// Docker Hub's several names folded into `docker.io`
/// (`https://index.docker.io/v1/`, `HOST`, `https://HOST/v2/` and
/// `http://HOST` all name HOST).
pub fn registry_of_key(key: &str) -> String {
    let k = key.trim();
    let without_scheme = ["https://", "http://"]
        .iter()
        .find_map(|scheme| {
            k.get(..scheme.len())
                .filter(|p| p.eq_ignore_ascii_case(scheme))
                .map(|_| &k[scheme.len()..])
        })
        .unwrap_or(k);
    let host = without_scheme
        .split('/')
        .next()
        .unwrap_or("")
        .to_ascii_lowercase();
    match host.as_str() {
        "index.docker.io" | "registry-1.docker.io" | "docker.io" => "docker.io".into(),
        _ => host,
    }
}

/// The key `login` writes a registry under, as Docker does: Docker Hub
/// under `https://index.docker.io/v1/`, every other registry by host.
pub fn login_key(registry: &str) -> String {
    match registry_of_key(registry).as_str() {
        "docker.io" => "https://index.docker.io/v1/".into(),
        host => host.into(),
    }
}

/// The keys of a config.json object that name `registry`, the key exactly
/// as given first.
fn matching_keys(object: Option<&serde_json::Map<String, Value>>, registry: &str) -> Vec<String> {
    let wanted = registry_of_key(registry);
    let mut keys: Vec<String> = object
        .into_iter()
        .flat_map(|o| o.keys())
        .filter(|k| registry_of_key(k) == wanted)
        .cloned()
        .collect();
    keys.sort_by_key(|k| k != registry);
    keys
}

/// The credential helper a registry's secrets live in: its `credHelpers`
/// entry, else the `credsStore`.
fn helper_for(config: &Value, registry: &str) -> Option<String> {
    let helpers = config.get("credHelpers").and_then(Value::as_object);
    matching_keys(helpers, registry)
        .first()
        .and_then(|k| helpers?.get(k)?.as_str())
        .or_else(|| config.get("credsStore").and_then(Value::as_str))
        .filter(|h| !h.is_empty())
        .map(str::to_string)
}

fn read_config(path: &PathBuf) -> Result<Value> {
    match std::fs::read(path) {
        Ok(b) => serde_json::from_slice(&b).map_err(|e| RegistryError::Credentials {
            reason: format!("{}: malformed JSON: {e}", path.display()),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(json!({})),
        Err(e) => Err(RegistryError::Credentials {
            reason: format!("{}: {e}", path.display()),
        }),
    }
}

/// Credentials for `registry` from the Docker config: its `credHelpers`
/// entry, then `auths` (any key naming the same host), then `credsStore`.
pub fn credentials_from_docker_config(registry: &str) -> Result<Option<Credentials>> {
    let path = docker_config_path();
    let config = read_config(&path)?;
    let helpers = config.get("credHelpers").and_then(Value::as_object);
    if let Some(k) = matching_keys(helpers, registry).first() {
        if let Some(helper) = helpers.and_then(|h| h.get(k)).and_then(Value::as_str) {
            return credential_helper_get(helper, &login_key(registry));
        }
    }
    let auths = config.get("auths").and_then(Value::as_object);
    let auth_keys = matching_keys(auths, registry);
    for k in &auth_keys {
        let Some(entry) = auths.and_then(|a| a.get(k)) else {
            continue;
        };
        if let Some(auth) = entry
            .get("auth")
            .and_then(Value::as_str)
            .filter(|a| !a.is_empty())
        {
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(auth.trim())
                .map_err(|_| RegistryError::Credentials {
                    reason: format!("{}: auths.{k}.auth is not base64", path.display()),
                })?;
            let decoded = String::from_utf8(decoded).map_err(|_| RegistryError::Credentials {
                reason: format!("{}: auths.{k}.auth is not UTF-8", path.display()),
            })?;
            let (u, p) = decoded
                .split_once(':')
                .ok_or_else(|| RegistryError::Credentials {
                    reason: format!("{}: auths.{k}.auth is not user:password", path.display()),
                })?;
            return Ok(Some(Credentials {
                username: u.into(),
                password: p.into(),
            }));
        }
        if let (Some(u), Some(p)) = (
            entry.get("username").and_then(Value::as_str),
            entry.get("password").and_then(Value::as_str),
        ) {
            return Ok(Some(Credentials {
                username: u.into(),
                password: p.into(),
            }));
        }
    }
    if let Some(store) = config
        .get("credsStore")
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
    {
        // The helper knows the server by the key login stored it under
        // (an empty `auths` entry names it), else by Docker's own key.
        let mut asked = auth_keys;
        asked.push(login_key(registry));
        asked.dedup();
        for k in &asked {
            if let Some(c) = credential_helper_get(store, k)? {
                return Ok(Some(c));
            }
        }
    }
    Ok(None)
}

/// Run `docker-credential-<helper> VERB` with `input` on stdin.
fn run_credential_helper(helper: &str, verb: &str, input: &[u8]) -> Result<std::process::Output> {
    let program = format!("docker-credential-{helper}");
    let mut child = Command::new(&program)
        .arg(verb)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| RegistryError::Credentials {
            reason: format!("credential helper {program}: {e}"),
        })?;
    if let Some(mut stdin) = child.stdin.take() {
        // A helper that exits without reading is judged by its status.
        let _ = stdin.write_all(input);
    }
    child
        .wait_with_output()
        .map_err(|e| RegistryError::Credentials {
            reason: format!("credential helper {program}: {e}"),
        })
}

/// Ask `docker-credential-<helper> get` for a server's credentials.
pub fn credential_helper_get(helper: &str, server: &str) -> Result<Option<Credentials>> {
    let out = run_credential_helper(helper, "get", server.as_bytes())?;
    if !out.status.success() {
        // Helpers answer "credentials not found in native keychain" with a failure.
        return Ok(None);
    }
    let v: Value = serde_json::from_slice(&out.stdout).map_err(|_| RegistryError::Credentials {
        reason: format!(
            "credential helper docker-credential-{helper} printed something that is not JSON"
        ),
    })?;
    let user = v
        .get("Username")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let secret = v.get("Secret").and_then(Value::as_str).unwrap_or_default();
    if secret.is_empty() {
        return Ok(None);
    }
    Ok(Some(Credentials {
        username: user.into(),
        password: secret.into(),
    }))
}

/// Where `login` put the credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SavedTo {
    /// base64 in the config file's `auths` (no helper configured).
    ConfigFile(PathBuf),
    /// The named credential helper holds the secret; the config file only
    /// lists the registry.
    Helper { helper: String, config: PathBuf },
}

impl fmt::Display for SavedTo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SavedTo::ConfigFile(p) => write!(f, "{}", p.display()),
            SavedTo::Helper { helper, .. } => {
                write!(f, "the credential helper docker-credential-{helper}")
            }
        }
    }
}

/// Store credentials as Docker does: through the registry's credential
/// helper (`credHelpers`, else `credsStore`) when the config names one,
/// with an empty `auths` entry listing the registry; otherwise base64 in
/// `auths`. Older entries for the same host under other spellings go, and
/// everything else in the file is kept; the file is mode 0600.
pub fn save_credentials(registry: &str, creds: &Credentials) -> Result<SavedTo> {
    let path = docker_config_path();
    let mut config = read_config(&path)?;
    if !config.is_object() {
        config = json!({});
    }
    let key = login_key(registry);
    let helper = helper_for(&config, registry);
    if let Some(helper) = &helper {
        let input = json!({"ServerURL": key, "Username": creds.username, "Secret": creds.password});
        let out = run_credential_helper(helper, "store", input.to_string().as_bytes())?;
        if !out.status.success() {
            return Err(RegistryError::Credentials {
                reason: format!(
                    "credential helper docker-credential-{helper} could not store the credentials for {key}: {}",
                    String::from_utf8_lossy(&out.stdout).trim()
                ),
            });
        }
    }
    if !config.get("auths").map(Value::is_object).unwrap_or(false) {
        config["auths"] = json!({});
    }
    if let Some(auths) = config["auths"].as_object_mut() {
        for k in matching_keys(Some(auths), registry) {
            auths.remove(&k);
        }
        let entry = match helper {
            Some(_) => json!({}),
            None => json!({
                "auth": base64::engine::general_purpose::STANDARD
                    .encode(format!("{}:{}", creds.username, creds.password))
            }),
        };
        auths.insert(key, entry);
    }
    write_config(&path, &config)?;
    Ok(match helper {
        Some(helper) => SavedTo::Helper {
            helper,
            config: path,
        },
        None => SavedTo::ConfigFile(path),
    })
}

/// Forget a registry: its `auths` entries under any spelling, and its
/// secret in the credential helper. Returns whether anything was there.
pub fn remove_credentials(registry: &str) -> Result<bool> {
    let path = docker_config_path();
    let mut config = read_config(&path)?;
    let mut removed = false;
    if let Some(helper) = helper_for(&config, registry) {
        let out = run_credential_helper(&helper, "erase", login_key(registry).as_bytes())?;
        removed |= out.status.success();
    }
    let mut edited = false;
    if let Some(auths) = config.get_mut("auths").and_then(Value::as_object_mut) {
        for k in matching_keys(Some(auths), registry) {
            edited |= auths.remove(&k).is_some();
        }
    }
    if edited {
        write_config(&path, &config)?;
    }
    Ok(removed || edited)
}

fn write_config(path: &PathBuf, config: &Value) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = path
        .parent()
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("."));
    std::fs::create_dir_all(&dir).map_err(|e| RegistryError::Credentials {
        reason: format!("{}: {e}", dir.display()),
    })?;
    let bytes = serde_json::to_vec_pretty(config)
        .unwrap_or_else(|_| unreachable!("a Value always serialises"));
    let tmp = dir.join(format!(".config.json.dockyard-{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        RegistryError::Credentials {
            reason: format!("{}: {e}", path.display()),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_bearer_challenges() {
        let c = parse_challenge(r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull,push""#).unwrap();
        assert_eq!(
            c,
            Challenge::Bearer {
                realm: "https://auth.example/token".into(),
                service: Some("registry.example".into()),
                scope: Some("repository:a/b:pull,push".into()),
                error: None
            }
        );
        let c = parse_challenge(r#"Bearer realm="r",error="invalid_token""#).unwrap();
        assert!(matches!(c, Challenge::Bearer { error: Some(e), .. } if e == "invalid_token"));
        assert_eq!(
            parse_challenge(r#"Basic realm="x""#),
            Some(Challenge::Basic)
        );
        assert_eq!(parse_challenge("Negotiate"), None);
    }

    #[test]
    fn config_keys_name_hosts_as_docker_reads_them() {
        for (key, host) in [
            ("localhost:5000", "localhost:5000"),
            ("https://LOCALHOST:5000/", "localhost:5000"),
            ("https://reg.example/v2/", "reg.example"),
            ("https://reg.example/v1/", "reg.example"),
            ("http://reg.example", "reg.example"),
            ("HTTPS://Reg.Example:443/v2/", "reg.example:443"),
            ("https://index.docker.io/v1/", "docker.io"),
            ("index.docker.io", "docker.io"),
            ("registry-1.docker.io", "docker.io"),
            ("docker.io", "docker.io"),
        ] {
            assert_eq!(registry_of_key(key), host, "{key}");
        }
        assert_eq!(login_key("docker.io"), "https://index.docker.io/v1/");
        assert_eq!(
            login_key("https://index.docker.io/v1/"),
            "https://index.docker.io/v1/"
        );
        assert_eq!(login_key("https://Reg.Example/"), "reg.example");
        let auths = json!({"https://reg.example/v2/": {}, "reg.example": {}, "other": {}});
        assert_eq!(
            matching_keys(auths.as_object(), "reg.example"),
            ["reg.example", "https://reg.example/v2/"]
        );
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let c = Credentials {
            username: "u".into(),
            password: "hunter2".into(),
        };
        assert!(!format!("{c:?}").contains("hunter2"));
        let t = Token {
            value: "tok-secret".into(),
            expires: Instant::now(),
        };
        assert!(!format!("{t:?}").contains("tok-secret"));
    }

    #[test]
    fn token_lifetime() {
        let now = Instant::now();
        let t = Token::from_response(br#"{"token":"abc","expires_in":300}"#, now).unwrap();
        assert_eq!(t.expires, now + Duration::from_secs(290));
        let t = Token::from_response(br#"{"access_token":"abc","expires_in":5}"#, now).unwrap();
        assert_eq!(t.expires, now + Duration::from_secs(4));
        assert!(Token::from_response(br#"{"nope":1}"#, now).is_none());
    }
}
