//! One registry host: scheme detection, authentication, retries.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::header::{
    HeaderMap, HeaderValue, ACCEPT, AUTHORIZATION, RETRY_AFTER, WWW_AUTHENTICATE,
};
use reqwest::{Method, Response, StatusCode};
use tokio::sync::Mutex;
use url::Url;

use crate::auth::{parse_challenge, Challenge, Credentials, Token};
use crate::error::{RegistryError, Result};

/// How to reach registries.
#[derive(Clone, Debug)]
pub struct ClientOptions {
    /// Use plain HTTP for every registry (loopback registries are probed
    /// and use HTTP when they do not speak TLS, without this flag).
    pub plain_http: bool,
    /// Skip TLS certificate verification.
    pub insecure_skip_tls_verify: bool,
    /// Extra CA certificates (PEM files) to trust.
    pub ca_certs: Vec<PathBuf>,
    /// Credentials given explicitly (flags, environment); otherwise the
    /// Docker config is consulted.
    pub credentials: Option<Credentials>,
    /// Layers transferred at once.
    pub parallel: usize,
    /// Attempts per request for network errors, 5xx and 429.
    pub attempts: u32,
    /// First backoff delay; doubles each retry.
    pub backoff: Duration,
    /// Blobs larger than this are uploaded in PATCH chunks of this size; a
    /// layer streamed while it is compressed goes in requests of at most
    /// this size.
    pub chunk_size: u64,
    /// Overall timeout for connecting.
    pub connect_timeout: Duration,
    /// A connection that sends nothing for this long (no response
    /// headers, or a body that stops mid-way) is dropped; the request is
    /// retried and a blob resumed with Range, like after a reset.
    pub timeout: Duration,
    /// A client certificate for registries that ask for one (mutual TLS).
    pub client_cert: Option<ClientCert>,
    /// Directories laid out as Docker's `/etc/docker/certs.d`: for a
    /// registry `HOST[:PORT]`, `DIR/HOST[:PORT]/*.crt` are CAs it is
    /// trusted with and `*.cert` + `*.key` a client certificate.
    pub certs_dirs: Vec<PathBuf>,
    /// Settings for one registry host (lowercase `HOST[:PORT]` as in
    /// references) over the ones above: what `--src-*`/`--dest-*` set.
    pub hosts: BTreeMap<String, HostOptions>,
}

/// A client certificate and its private key (PEM files).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientCert {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// What one registry host gets instead of the common settings.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostOptions {
    pub credentials: Option<Credentials>,
    /// `Some(false)`: do not verify TLS certificates, and speak plain HTTP
    /// where the registry does not speak TLS (skopeo's `--tls-verify=false`).
    pub tls_verify: Option<bool>,
    pub plain_http: Option<bool>,
    /// CA certificates trusted for this host, besides the common ones.
    pub ca_certs: Vec<PathBuf>,
    pub client_cert: Option<ClientCert>,
}

/// The certs.d directories Docker and the containers tools read, or the
/// ones `$DOCKYARD_CERTS_D` names (colon-separated).
pub fn default_certs_dirs() -> Vec<PathBuf> {
    if let Some(list) = std::env::var_os("DOCKYARD_CERTS_D") {
        return std::env::split_paths(&list).collect();
    }
    let mut dirs = vec![
        PathBuf::from("/etc/docker/certs.d"),
        PathBuf::from("/etc/containers/certs.d"),
    ];
    if let Some(home) = std::env::var_os("HOME").filter(|h| !h.is_empty()) {
        dirs.push(PathBuf::from(home).join(".config/containers/certs.d"));
    }
    dirs
}

/// A directory laid out as one host's entry in Docker's certs.d (and as
/// skopeo's `--cert-dir`): `*.crt` are CA certificates, `NAME.cert` with
/// `NAME.key` a client certificate.
pub fn read_cert_dir(dir: &Path) -> Result<(Vec<PathBuf>, Option<ClientCert>)> {
    let entries = std::fs::read_dir(dir).map_err(|e| RegistryError::Tls {
        reason: format!("{}: {e}", dir.display()),
    })?;
    let mut files: Vec<PathBuf> = entries.flatten().map(|e| e.path()).collect();
    files.sort();
    let mut cas = Vec::new();
    let mut client = None;
    for f in files {
        match f.extension().and_then(|e| e.to_str()) {
            // skopeo's --cert-dir also takes .pem CAs.
            Some("crt") | Some("pem") => cas.push(f),
            Some("cert") => {
                let key = f.with_extension("key");
                if !key.is_file() {
                    return Err(RegistryError::Tls {
                        reason: format!(
                            "{}: client certificate without its key {}",
                            f.display(),
                            key.display()
                        ),
                    });
                }
                client = Some(ClientCert { cert: f, key });
            }
            _ => {}
        }
    }
    Ok((cas, client))
}

impl ClientOptions {
    /// The settings for one registry host: the common ones, then what its
    /// certs.d directory holds, then its own entry in `hosts`.
    pub fn for_host(&self, host: &str) -> Result<ClientOptions> {
        let host = host.to_ascii_lowercase();
        let mut opts = self.clone();
        for dir in &self.certs_dirs {
            let dir = dir.join(&host);
            if !dir.exists() {
                continue;
            }
            let (cas, client) = read_cert_dir(&dir)?;
            opts.ca_certs.extend(cas);
            if client.is_some() {
                opts.client_cert = client;
            }
        }
        if let Some(h) = self.hosts.get(&host) {
            if let Some(c) = &h.credentials {
                opts.credentials = Some(c.clone());
            }
            if let Some(verify) = h.tls_verify {
                opts.insecure_skip_tls_verify = !verify;
            }
            if let Some(plain) = h.plain_http {
                opts.plain_http = plain;
            }
            opts.ca_certs.extend(h.ca_certs.iter().cloned());
            if let Some(c) = &h.client_cert {
                opts.client_cert = Some(c.clone());
            }
        }
        opts.hosts.clear();
        Ok(opts)
    }
}

impl Default for ClientOptions {
    fn default() -> Self {
        ClientOptions {
            plain_http: false,
            insecure_skip_tls_verify: false,
            ca_certs: Vec::new(),
            credentials: None,
            parallel: 6,
            attempts: 6,
            backoff: Duration::from_millis(200),
            chunk_size: 128 << 20,
            connect_timeout: Duration::from_secs(30),
            timeout: Duration::from_secs(30),
            client_cert: None,
            certs_dirs: default_certs_dirs(),
            hosts: BTreeMap::new(),
        }
    }
}

/// True for hosts where plain HTTP is allowed without a flag.
pub fn is_loopback(host: &str) -> bool {
    // host, host:port, [v6], [v6]:port
    let h = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        match host.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') && p.chars().all(|c| c.is_ascii_digit()) => h,
            _ => host,
        }
    };
    h.eq_ignore_ascii_case("localhost")
        || h.parse::<std::net::IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false)
}

/// The API host for a reference's registry (`docker.io` → its API host).
pub fn api_host(registry: &str) -> &str {
    if registry == "docker.io" || registry == "index.docker.io" {
        "registry-1.docker.io"
    } else {
        registry
    }
}

/// What a request needs access to: `repository:NAME:ACTIONS` scopes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Scope(pub Vec<String>);

impl Scope {
    pub fn pull(repo: &str) -> Scope {
        Scope(vec![format!("repository:{repo}:pull")])
    }
    pub fn push(repo: &str) -> Scope {
        Scope(vec![format!("repository:{repo}:pull,push")])
    }
    /// Push to `repo` and read `from` (a cross-repository mount).
    pub fn mount(repo: &str, from: &str) -> Scope {
        Scope(vec![
            format!("repository:{repo}:pull,push"),
            format!("repository:{from}:pull"),
        ])
    }
    pub fn catalog() -> Scope {
        Scope(vec!["registry:catalog:*".into()])
    }
}

pub(crate) struct AuthState {
    challenge: Option<Challenge>,
    tokens: HashMap<Scope, Token>,
    credentials_loaded: bool,
    credentials: Option<Credentials>,
}

/// A client for one registry host.
#[derive(Clone)]
pub struct Registry {
    pub(crate) http: reqwest::Client,
    /// The same without a read timeout, for requests that send a body.
    pub(crate) http_upload: reqwest::Client,
    /// The name as users write it (`docker.io`, `127.0.0.1:5000`).
    pub(crate) name: String,
    pub(crate) base: Url,
    pub(crate) opts: Arc<ClientOptions>,
    auth: Arc<Mutex<AuthState>>,
}

/// A request body that can be made again for a retry.
pub(crate) type BodyFn<'a> = &'a (dyn Fn() -> Result<reqwest::Body> + Send + Sync);

fn net_err(registry: &str, what: &str, e: impl std::fmt::Display) -> RegistryError {
    RegistryError::Network {
        registry: registry.into(),
        what: what.into(),
        reason: e.to_string(),
    }
}

/// Describe a reqwest error with its causes (but no URL query secrets).
pub(crate) fn describe(e: &reqwest::Error) -> String {
    let mut s = e.without_url_ref().to_string();
    let mut source = std::error::Error::source(e);
    while let Some(inner) = source {
        s.push_str(": ");
        s.push_str(&inner.to_string());
        source = inner.source();
    }
    s
}

trait WithoutUrl {
    fn without_url_ref(&self) -> String;
}

impl WithoutUrl for reqwest::Error {
    fn without_url_ref(&self) -> String {
        let mut s = self.to_string();
        if let Some(u) = self.url() {
            // Upload URLs carry state in their query: show no query.
            let shown = format!(
                "{}://{}{}",
                u.scheme(),
                u.host_str().unwrap_or(""),
                u.port().map(|p| format!(":{p}")).unwrap_or_default()
            ) + u.path();
            s = s.replace(u.as_str(), &shown);
        }
        s
    }
}

impl Registry {
    /// Connect to a registry by name (`docker.io`, `ghcr.io`, `127.0.0.1:5000`).
    pub async fn connect(name: &str, opts: ClientOptions) -> Result<Registry> {
        let name = name.to_ascii_lowercase();
        let name = name.as_str();
        let opts = opts.for_host(name)?;
        let mut given = Vec::new();
        if !opts.insecure_skip_tls_verify {
            for ca in &opts.ca_certs {
                let pem = std::fs::read(ca).map_err(|e| RegistryError::Tls {
                    reason: format!("{}: {e}", ca.display()),
                })?;
                given.push((ca.clone(), pem));
            }
        }
        let identity = opts
            .client_cert
            .as_ref()
            .map(crate::tls::ClientIdentity::read)
            .transpose()?;
        // One TLS setup for both clients; it reads the system's roots only
        // when a first TLS handshake needs them.
        let tls = crate::tls::client_config(&given, identity, opts.insecure_skip_tls_verify)?;
        let client = |read_timeout: Option<Duration>| -> Result<reqwest::Client> {
            let mut builder = reqwest::Client::builder()
                .user_agent(concat!("dockyard/", env!("CARGO_PKG_VERSION")))
                .connect_timeout(opts.connect_timeout)
                .use_preconfigured_tls(tls.clone());
            if let Some(t) = read_timeout {
                builder = builder.read_timeout(t);
            }
            builder.build().map_err(|e| RegistryError::Tls {
                reason: format!("cannot set up the HTTP client: {}", describe(&e)),
            })
        };
        // reqwest's read timeout runs from the request's start until the
        // response headers, so a long upload would trip it: requests that
        // send a body use a client without it (a silent server still ends
        // them through the connection's own errors and the retry bound).
        let http = client(Some(opts.timeout))?;
        let http_upload = client(None)?;
        let host = api_host(name);
        let scheme = if opts.plain_http {
            "http"
        } else if is_loopback(host) {
            probe_scheme(&http, host).await
        } else if opts.insecure_skip_tls_verify {
            // As skopeo's --tls-verify=false: HTTPS unverified, else HTTP.
            https_or_plain(&http, host).await
        } else {
            "https"
        };
        let base =
            Url::parse(&format!("{scheme}://{host}/")).map_err(|e| RegistryError::InvalidHost {
                host: name.to_string(),
                reason: e.to_string(),
            })?;
        let credentials = opts.credentials.clone();
        Ok(Registry {
            http,
            http_upload,
            name: name.to_string(),
            base,
            auth: Arc::new(Mutex::new(AuthState {
                challenge: None,
                tokens: HashMap::new(),
                credentials_loaded: credentials.is_some(),
                credentials,
            })),
            opts: Arc::new(opts),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn url(&self, path: &str) -> Result<Url> {
        self.base.join(path).map_err(|e| RegistryError::Internal {
            reason: format!("bad URL path {path}: {e}"),
        })
    }

    async fn credentials(&self) -> Result<Option<Credentials>> {
        let mut state = self.auth.lock().await;
        if !state.credentials_loaded {
            let name = self.name.clone();
            state.credentials = tokio::task::spawn_blocking(move || {
                crate::auth::credentials_from_docker_config(&name)
            })
            .await
            .map_err(|e| RegistryError::Internal {
                reason: e.to_string(),
            })??;
            state.credentials_loaded = true;
        }
        Ok(state.credentials.clone())
    }

    /// The Authorization header for a scope, fetching a token if needed.
    async fn authorization(&self, scope: &Scope, force_new: bool) -> Result<Option<String>> {
        let challenge = self.auth.lock().await.challenge.clone();
        match challenge {
            None => Ok(None),
            Some(Challenge::Basic) => Ok(self.credentials().await?.map(|c| c.basic_header())),
            Some(Challenge::Bearer { realm, service, .. }) => {
                if !force_new {
                    if let Some(t) = self.auth.lock().await.tokens.get(scope) {
                        if t.is_fresh() {
                            return Ok(Some(format!("Bearer {}", t.value)));
                        }
                    }
                }
                let token = self.fetch_token(&realm, service.as_deref(), scope).await?;
                let header = format!("Bearer {}", token.value);
                self.auth.lock().await.tokens.insert(scope.clone(), token);
                Ok(Some(header))
            }
        }
    }

    async fn fetch_token(
        &self,
        realm: &str,
        service: Option<&str>,
        scope: &Scope,
    ) -> Result<Token> {
        let mut url = Url::parse(realm).map_err(|e| RegistryError::Unauthorized {
            registry: self.name.clone(),
            reason: format!("token realm {realm:?} is not a URL: {e}"),
        })?;
        {
            let mut q = url.query_pairs_mut();
            if let Some(s) = service {
                q.append_pair("service", s);
            }
            for s in &scope.0 {
                q.append_pair("scope", s);
            }
        }
        // Credentials go to a token server only over TLS (or on loopback,
        // or when the user asked for plain HTTP).
        let creds_allowed = url.scheme() == "https"
            || self.opts.plain_http
            || url.host_str().map(is_loopback).unwrap_or(false);
        let creds = if creds_allowed {
            self.credentials().await?
        } else {
            None
        };
        let mut last = String::new();
        let mut retry_after = None;
        for attempt in 0..self.opts.attempts {
            if attempt > 0 {
                tokio::time::sleep(self.backoff(attempt, retry_after.take())).await;
            }
            let mut req = self.http.get(url.clone());
            if let Some(c) = &creds {
                req = req.header(AUTHORIZATION, c.basic_header());
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    last = describe(&e);
                    tracing::debug!("GET {} (token) failed, retrying: {last}", shown_url(&url));
                    continue;
                }
            };
            let status = resp.status();
            tracing::debug!(
                "GET {} -> {status} (token for {}; {})",
                shown_url(&url),
                scope.0.join(" "),
                if creds.is_some() {
                    "with basic credentials"
                } else {
                    "anonymous"
                }
            );
            // 501 Not Implemented will not change with a retry (an ordinary
            // web server answering registry paths).
            let retryable = (status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED)
                || status == StatusCode::TOO_MANY_REQUESTS;
            if retryable {
                last = format!("token server answered {status}");
                retry_after = retry_after_of(&resp);
                continue;
            }
            let received = Instant::now();
            let body = resp
                .bytes()
                .await
                .map_err(|e| net_err(&self.name, "token", describe(&e)))?;
            if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
                return Err(RegistryError::Unauthorized {
                    registry: self.name.clone(),
                    reason: if creds.is_some() {
                        "the token server rejected the credentials".into()
                    } else {
                        "authentication required: log in with `dockyard login` or pass credentials"
                            .into()
                    },
                });
            }
            if !status.is_success() {
                return Err(RegistryError::Unauthorized {
                    registry: self.name.clone(),
                    reason: format!("token server answered {status}"),
                });
            }
            return Token::from_response(&body, received).ok_or_else(|| {
                RegistryError::Unauthorized {
                    registry: self.name.clone(),
                    reason: "token server answered without a token".into(),
                }
            });
        }
        Err(RegistryError::RetriesExhausted {
            registry: self.name.clone(),
            what: "token".into(),
            attempts: self.opts.attempts,
            last,
        })
    }

    pub(crate) fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let exp = self.opts.backoff * 2u32.saturating_pow(attempt.saturating_sub(1).min(6));
        let d = retry_after.map(|r| r.max(exp)).unwrap_or(exp);
        d.min(Duration::from_secs(30))
    }

    /// Send a request with auth and bounded retries. Returns the first
    /// response that is not 401, 429 or 5xx (or the last one of those when
    /// retries run out, as an error).
    pub(crate) async fn send(
        &self,
        method: Method,
        url: Url,
        scope: &Scope,
        headers: HeaderMap,
        body: Option<BodyFn<'_>>,
        what: &str,
    ) -> Result<Response> {
        let mut auth_retries = 0;
        let mut force_new_token = false;
        let mut attempt = 0;
        let mut last = String::new();
        while attempt < self.opts.attempts {
            // Credentials only ever go to the registry itself, never to a
            // host a Link or Location header names.
            let authorization = if url.origin() == self.base.origin() {
                self.authorization(scope, force_new_token).await?
            } else {
                None
            };
            force_new_token = false;
            let http = if body.is_some() {
                &self.http_upload
            } else {
                &self.http
            };
            let mut req = http
                .request(method.clone(), url.clone())
                .headers(headers.clone());
            if let Some(a) = &authorization {
                req = req.header(AUTHORIZATION, a);
            }
            if let Some(b) = body {
                req = req.body(b()?);
            }
            let resp = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    last = describe(&e);
                    if is_plain_http_answer(&last) {
                        return Err(net_err(
                            &self.name,
                            what,
                            format!("{last} (the registry answered in plain HTTP, not TLS: pass --plain-http, or --src-plain-http / --dest-plain-http for one side of a copy)"),
                        ));
                    }
                    if is_certificate_error(&last) {
                        return Err(net_err(
                            &self.name,
                            what,
                            format!("{last} (for a private CA pass --ca-cert FILE or --cert-dir DIR; --insecure skips verification)"),
                        ));
                    }
                    attempt += 1;
                    tracing::debug!(
                        "{method} {} failed (attempt {attempt} of {}), retrying: {last}",
                        shown_url(&url),
                        self.opts.attempts
                    );
                    if attempt < self.opts.attempts {
                        tokio::time::sleep(self.backoff(attempt, None)).await;
                    }
                    continue;
                }
            };
            let status = resp.status();
            tracing::debug!(
                "{method} {} -> {status} ({what}; auth: {})",
                shown_url(&url),
                auth_used(authorization.as_deref(), scope)
            );
            if status == StatusCode::UNAUTHORIZED {
                let challenge = resp
                    .headers()
                    .get(WWW_AUTHENTICATE)
                    .and_then(|v| v.to_str().ok())
                    .and_then(parse_challenge);
                auth_retries += 1;
                if auth_retries > 3 || challenge.is_none() {
                    return Err(self.unauthorized(authorization.is_some(), what).await);
                }
                let challenge = challenge.unwrap_or(Challenge::Basic);
                let had_creds_for_basic =
                    matches!(challenge, Challenge::Basic) && authorization.is_some();
                if had_creds_for_basic {
                    return Err(self.unauthorized(true, what).await);
                }
                if matches!(challenge, Challenge::Basic) && self.credentials().await?.is_none() {
                    return Err(self.unauthorized(false, what).await);
                }
                // An expired or revoked token: fetch a new one and retry.
                force_new_token = authorization.is_some();
                self.auth.lock().await.challenge = Some(challenge);
                continue;
            }
            // 501 Not Implemented will not change with a retry (an ordinary
            // web server answering registry paths).
            let retryable = (status.is_server_error() && status != StatusCode::NOT_IMPLEMENTED)
                || status == StatusCode::TOO_MANY_REQUESTS;
            if retryable {
                let retry_after = retry_after_of(&resp);
                last = format!("HTTP {status}");
                attempt += 1;
                tracing::debug!(
                    "{method} {} -> {status}: retrying (attempt {attempt} of {}{})",
                    shown_url(&url),
                    self.opts.attempts,
                    retry_after
                        .map(|d| format!(", Retry-After {}s", d.as_secs()))
                        .unwrap_or_default()
                );
                if attempt < self.opts.attempts {
                    tokio::time::sleep(self.backoff(attempt, retry_after)).await;
                }
                continue;
            }
            return Ok(resp);
        }
        Err(RegistryError::RetriesExhausted {
            registry: self.name.clone(),
            what: what.into(),
            attempts: self.opts.attempts,
            last,
        })
    }

    async fn unauthorized(&self, had_credentials: bool, what: &str) -> RegistryError {
        let creds = self.credentials().await.ok().flatten();
        RegistryError::Unauthorized {
            registry: self.name.clone(),
            reason: match (had_credentials, creds) {
                (_, None) => format!("{what}: authentication required: log in with `dockyard login {}` or pass credentials", self.name),
                (_, Some(c)) => format!("{what}: access denied for user {:?}", c.username),
            },
        }
    }

    /// GET with the given Accept header; errors for non-2xx.
    pub(crate) async fn get_ok(
        &self,
        url: Url,
        scope: &Scope,
        accept: Option<&str>,
        what: &str,
    ) -> Result<Response> {
        let mut headers = HeaderMap::new();
        if let Some(a) = accept {
            headers.insert(
                ACCEPT,
                HeaderValue::from_str(a).map_err(|e| RegistryError::Internal {
                    reason: e.to_string(),
                })?,
            );
        }
        let resp = self
            .send(Method::GET, url, scope, headers, None, what)
            .await?;
        self.check(resp, what).await
    }

    /// When `/v2/` does not answer as a registry API does (200, or 401
    /// asking for credentials), the host is some other web server: say so
    /// rather than "not found".
    async fn not_a_registry(&self) -> Option<RegistryError> {
        let url = self.url("v2/").ok()?;
        let resp = self.http.get(url.clone()).send().await.ok()?;
        let status = resp.status();
        let api_header = resp
            .headers()
            .contains_key("docker-distribution-api-version");
        // Only an answer that says "no such API" counts; a passing 503 or
        // 429 from a load balancer does not.
        let no_api = matches!(status.as_u16(), 404 | 405 | 501);
        if !no_api || api_header {
            return None;
        }
        Some(RegistryError::NotARegistry {
            url: url.to_string(),
            status: status.as_u16(),
        })
    }

    /// Turn a non-2xx response into an error (reading a bounded body).
    pub(crate) async fn check(&self, resp: Response, what: &str) -> Result<Response> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let mut url = resp.url().clone();
        url.set_query(None);
        let url = url.to_string();
        // Read at most a few KiB of an error body.
        let mut body_bytes = Vec::new();
        let mut stream = resp.bytes_stream();
        while let Some(Ok(chunk)) = futures_util::StreamExt::next(&mut stream).await {
            body_bytes.extend_from_slice(&chunk);
            if body_bytes.len() > 4096 {
                break;
            }
        }
        let body: String = String::from_utf8_lossy(&body_bytes)
            .chars()
            .take(400)
            .collect();
        // The distribution spec's `{"errors":[{"code": …}]}`.
        let codes: Vec<String> = serde_json::from_slice::<serde_json::Value>(&body_bytes)
            .ok()
            .and_then(|v| v.get("errors").and_then(|e| e.as_array()).cloned())
            .unwrap_or_default()
            .iter()
            .filter_map(|e| e.get("code").and_then(|c| c.as_str()).map(str::to_string))
            .collect();
        if status == StatusCode::BAD_REQUEST && body.contains("DIGEST_INVALID") {
            return Err(RegistryError::Http {
                what: what.into(),
                status: status.as_u16(),
                codes: codes.clone(),
                url: url.clone(),
                body: format!("the registry computed a different digest for the uploaded bytes: the local copy is corrupt ({})", body.trim()),
            });
        }
        if status == StatusCode::NOT_FOUND || status == StatusCode::NOT_IMPLEMENTED {
            if let Some(e) = self.not_a_registry().await {
                return Err(e);
            }
        }
        if status == StatusCode::NOT_FOUND {
            return Err(RegistryError::NotFound {
                registry: self.name.clone(),
                what: what.into(),
            });
        }
        if status == StatusCode::FORBIDDEN {
            return Err(RegistryError::Unauthorized {
                registry: self.name.clone(),
                reason: format!("{what}: forbidden"),
            });
        }
        Err(RegistryError::Http {
            what: what.into(),
            status: status.as_u16(),
            codes,
            url,
            body: body.trim().to_string(),
        })
    }

    /// Check that the registry answers and the credentials (if any) are
    /// accepted: `GET /v2/`, then a token for `scope` if it uses tokens.
    pub async fn verify_login(&self, scope: Option<&Scope>) -> Result<()> {
        let url = self.url("v2/")?;
        let scope = scope.cloned().unwrap_or(Scope(Vec::new()));
        let resp = self
            .send(Method::GET, url, &scope, HeaderMap::new(), None, "login")
            .await?;
        self.check(resp, "login").await?;
        Ok(())
    }
}

/// A URL for the log: no query (upload URLs carry state there).
fn shown_url(url: &Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.to_string()
}

/// How a request authenticated, for the log, without the secret.
fn auth_used(authorization: Option<&str>, scope: &Scope) -> String {
    match authorization {
        None => "anonymous".into(),
        Some(a) if a.starts_with("Basic ") => "basic".into(),
        Some(_) if scope.0.is_empty() => "bearer token".into(),
        Some(_) => format!("bearer token for {}", scope.0.join(" ")),
    }
}

/// A `Retry-After` in seconds (the HTTP-date form is treated as absent).
fn retry_after_of(resp: &Response) -> Option<Duration> {
    resp.headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|s| s.trim().parse::<u64>().ok())
        .map(Duration::from_secs)
}

/// TLS verification failures do not heal by retrying.
fn is_certificate_error(description: &str) -> bool {
    description.contains("invalid peer certificate")
        || description.contains("certificate verify failed")
}

/// A TLS handshake answered with plain HTTP: rustls sees a record type
/// that does not exist ("HTTP/1.1 400 …" starts with 'H').
fn is_plain_http_answer(description: &str) -> bool {
    description.contains("InvalidContentType")
}

/// For a loopback registry: plain HTTP unless it speaks TLS.
async fn probe_scheme(http: &reqwest::Client, host: &str) -> &'static str {
    let Ok(url) = Url::parse(&format!("http://{host}/v2/")) else {
        return "https";
    };
    match http.get(url).timeout(Duration::from_secs(10)).send().await {
        Ok(resp) => {
            if resp.status() == StatusCode::BAD_REQUEST {
                let body = resp.text().await.unwrap_or_default();
                if body.contains("HTTPS") || body.contains("https") {
                    return "https";
                }
            }
            "http"
        }
        // Nothing listens at all: say so against http://, what a loopback
        // registry most likely speaks (a TLS server would have accepted).
        Err(e) if e.is_connect() => "http",
        // Something answered but not in HTTP: try TLS (and report its error there).
        Err(_) => "https",
    }
}

/// For a registry the user allowed to skip TLS checks: HTTPS when it
/// speaks TLS, plain HTTP when the TLS handshake itself fails.
async fn https_or_plain(http: &reqwest::Client, host: &str) -> &'static str {
    let Ok(url) = Url::parse(&format!("https://{host}/v2/")) else {
        return "https";
    };
    match http.get(url).timeout(Duration::from_secs(10)).send().await {
        Err(e) if e.is_connect() && !e.is_timeout() => {
            let Ok(plain) = Url::parse(&format!("http://{host}/v2/")) else {
                return "https";
            };
            let answered = http
                .get(plain)
                .timeout(Duration::from_secs(10))
                .send()
                .await;
            if answered.is_ok() {
                "http"
            } else {
                "https"
            }
        }
        _ => "https",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use dockyard_testsupport::registry::{Mode, RegistryGuard};

    fn quick() -> ClientOptions {
        ClientOptions {
            attempts: 2,
            backoff: Duration::from_millis(10),
            ..ClientOptions::default()
        }
    }

    #[tokio::test]
    async fn tls_spoken_to_a_plain_http_registry_says_so_at_once() {
        let Some(registry) = RegistryGuard::start(Mode::Open) else {
            return;
        };
        let mut client = Registry::connect(&registry.host(), quick()).await.unwrap();
        assert_eq!(
            client.base.scheme(),
            "http",
            "a loopback registry is probed"
        );
        // As a non-loopback host would be reached: HTTPS.
        client.base = Url::parse(&format!("https://{}/", registry.host())).unwrap();
        let err = client.verify_login(None).await.unwrap_err().to_string();
        assert!(
            err.contains("plain HTTP") && err.contains("--plain-http"),
            "{err}"
        );
        assert!(!err.contains("gave up"), "not retried: {err}");
    }

    #[tokio::test]
    async fn a_loopback_registry_that_is_down_names_the_url_tried() {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let client = Registry::connect(&format!("127.0.0.1:{port}"), quick())
            .await
            .unwrap();
        let err = client.verify_login(None).await.unwrap_err().to_string();
        assert!(
            err.contains(&format!("http://127.0.0.1:{port}/v2/")),
            "names the URL tried: {err}"
        );
        assert!(!err.contains("https://"), "{err}");
    }

    #[test]
    fn loopback_means_loopback_addresses_only() {
        for yes in [
            "localhost",
            "localhost:5000",
            "127.0.0.1",
            "127.0.0.1:5000",
            "127.9.9.9:1",
            "[::1]:5000",
            "::1",
            "LOCALHOST:5001",
            "LocalHost",
        ] {
            assert!(is_loopback(yes), "{yes}");
        }
        for no in [
            "127.evil.co.uk",
            "127.0.0.1.nip.io:5000",
            "localhost.example",
            "10.0.0.1:5000",
            "ghcr.io",
            "[::2]:5000",
        ] {
            assert!(!is_loopback(no), "{no}");
        }
    }
}
