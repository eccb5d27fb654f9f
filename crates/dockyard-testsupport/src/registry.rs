//! Registry fixtures: a real `docker-registry` (distribution 2.8) per test in
//! open, htpasswd basic-auth, TLS or token mode (with a token server written
//! here), a fault-injecting HTTP proxy for what a real server cannot be made
//! to do, a small multi-layer test image and client helpers.
//!
//! Everything listens on 127.0.0.1 on a port the kernel picks; every guard
//! stops what it started on drop.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use dockyard_image::tar::{LayerBuilder, LayerOptions};
use dockyard_image::{ConfigEdit, Digest, Image, Platform, Reference, Store};
use dockyard_registry::{ClientOptions, Registry};
use serde_json::{json, Value};

use crate::require_tool;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const B64URL: base64::engine::GeneralPurpose = base64::engine::general_purpose::URL_SAFE_NO_PAD;

// ---------------------------------------------------------------------------
// Modes

/// How the registry authenticates and whether it speaks TLS.
#[derive(Clone, Debug)]
pub enum Mode {
    /// Plain HTTP, no authentication.
    Open,
    /// Plain HTTP, htpasswd (bcrypt) basic auth.
    Basic { user: String, password: String },
    /// TLS with a certificate signed by a CA generated for this registry.
    Tls,
    /// TLS and basic auth.
    TlsBasic { user: String, password: String },
    /// TLS that also asks every client for a certificate signed by the
    /// registry's CA (`http.tls.clientcas`); `client_cert_paths()` is one.
    MutualTls,
    /// TLS with one self-signed certificate (`CA:TRUE`, SAN IP:127.0.0.1),
    /// what `openssl req -x509 -addext subjectAltName=IP:127.0.0.1` makes
    /// and Docker's docs tell users to make; `ca_pem_path()` is that cert.
    TlsSelfSigned,
    /// Plain HTTP, bearer tokens from a token server started with it.
    Token(TokenOptions),
}

impl Mode {
    pub fn basic(user: &str, password: &str) -> Mode {
        Mode::Basic {
            user: user.into(),
            password: password.into(),
        }
    }
    pub fn tls_basic(user: &str, password: &str) -> Mode {
        Mode::TlsBasic {
            user: user.into(),
            password: password.into(),
        }
    }
}

/// The token server's behaviour.
#[derive(Clone, Debug)]
pub struct TokenOptions {
    /// The `service` of the registry's challenge and the tokens' `aud`.
    pub service: String,
    /// The tokens' `iss`.
    pub issuer: String,
    /// How long a token really works after issue (JWT `exp`/`nbf`, with the
    /// registry's 60 s leeway taken into account).
    pub lifetime_secs: u64,
    /// What the server answers in `expires_in`; `None` = `lifetime_secs`.
    /// Make it longer than the real life to exercise a client's refresh on
    /// `401 error="invalid_token"`.
    pub advertised_expires_in: Option<u64>,
    /// Basic credentials the token server demands; `None` = anonymous tokens.
    pub require_credentials: Option<(String, String)>,
}

impl TokenOptions {
    /// Tokens that live `lifetime_secs` and say so; anonymous access.
    pub fn new(lifetime_secs: u64) -> TokenOptions {
        TokenOptions {
            service: "dockyard-test-registry".into(),
            issuer: "dockyard-test-token-issuer".into(),
            lifetime_secs,
            advertised_expires_in: None,
            require_credentials: None,
        }
    }
    pub fn advertise(mut self, expires_in: u64) -> TokenOptions {
        self.advertised_expires_in = Some(expires_in);
        self
    }
    pub fn credentials(mut self, user: &str, password: &str) -> TokenOptions {
        self.require_credentials = Some((user.into(), password.into()));
        self
    }
}

// ---------------------------------------------------------------------------
// Small HTTP/1.1 helpers (just enough for a proxy and a token server)

/// Read a request or response head (up to the empty line). `None` on a
/// connection closed before anything was sent.
fn read_head(r: &mut impl BufRead) -> io::Result<Option<Vec<String>>> {
    let mut lines = Vec::new();
    loop {
        let mut line = Vec::new();
        let n = r.read_until(b'\n', &mut line)?;
        if n == 0 {
            if lines.is_empty() {
                return Ok(None);
            }
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed inside an HTTP head",
            ));
        }
        let s = String::from_utf8_lossy(&line)
            .trim_end_matches(['\r', '\n'])
            .to_string();
        if s.is_empty() {
            if lines.is_empty() {
                continue; // stray CRLF between messages
            }
            return Ok(Some(lines));
        }
        lines.push(s);
        if lines.len() > 200 {
            return Err(io::Error::other("HTTP head too long"));
        }
    }
}

fn parse_headers(lines: &[String]) -> Vec<(String, String)> {
    lines
        .iter()
        .filter_map(|l| {
            let (k, v) = l.split_once(':')?;
            Some((k.trim().to_string(), v.trim().to_string()))
        })
        .collect()
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

/// Read a request body: by Content-Length, or decoding chunked encoding.
fn read_body(r: &mut impl BufRead, headers: &[(String, String)]) -> io::Result<Option<Vec<u8>>> {
    let chunked = header(headers, "transfer-encoding")
        .map(|v| v.to_ascii_lowercase().contains("chunked"))
        .unwrap_or(false);
    if chunked {
        let mut body = Vec::new();
        loop {
            let mut line = String::new();
            r.read_line(&mut line)?;
            let size_hex = line.trim().split(';').next().unwrap_or("").trim();
            let size = usize::from_str_radix(size_hex, 16)
                .map_err(|_| io::Error::other(format!("bad chunk size line {line:?}")))?;
            if size == 0 {
                // Trailers up to the empty line.
                loop {
                    let mut t = String::new();
                    let n = r.read_line(&mut t)?;
                    if n == 0 || t.trim().is_empty() {
                        break;
                    }
                }
                return Ok(Some(body));
            }
            let start = body.len();
            body.resize(start + size, 0);
            r.read_exact(&mut body[start..])?;
            let mut crlf = [0u8; 2];
            r.read_exact(&mut crlf)?;
        }
    }
    match header(headers, "content-length").and_then(|v| v.parse::<usize>().ok()) {
        Some(n) => {
            let mut body = vec![0u8; n];
            r.read_exact(&mut body)?;
            Ok(Some(body))
        }
        None => Ok(None),
    }
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len() => {
                match std::str::from_utf8(&b[i + 1..i + 3])
                    .ok()
                    .and_then(|h| u8::from_str_radix(h, 16).ok())
                {
                    Some(v) => {
                        out.push(v);
                        i += 2;
                    }
                    None => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn query_pairs(target: &str) -> Vec<(String, String)> {
    let Some((_, q)) = target.split_once('?') else {
        return Vec::new();
    };
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn write_simple_response(
    w: &mut impl Write,
    status: &str,
    extra_headers: &[(&str, String)],
    body: &[u8],
) -> io::Result<()> {
    let mut head = format!("HTTP/1.1 {status}\r\n");
    for (k, v) in extra_headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    ));
    w.write_all(head.as_bytes())?;
    w.write_all(body)?;
    w.flush()
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A listener thread that stops when `stop` is set (and a connection wakes it).
fn serve(
    listener: TcpListener,
    stop: Arc<AtomicBool>,
    handler: impl Fn(TcpStream) + Send + Sync + 'static,
) -> JoinHandle<()> {
    let handler = Arc::new(handler);
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let Ok(conn) = conn else { continue };
            let handler = Arc::clone(&handler);
            std::thread::spawn(move || handler(conn));
        }
    })
}

fn wake(port: u16) {
    let _ = TcpStream::connect_timeout(
        &std::net::SocketAddr::from(([127, 0, 0, 1], port)),
        Duration::from_secs(1),
    );
}

// ---------------------------------------------------------------------------
// Token server

/// What the token server was asked.
#[derive(Clone, Debug)]
pub struct TokenRequest {
    pub scopes: Vec<String>,
    pub service: Option<String>,
    /// The user name of the request's basic credentials, if any.
    pub user: Option<String>,
    /// The HTTP status it answered.
    pub status: u16,
}

struct TokenState {
    opts: TokenOptions,
    key: ring::signature::EcdsaKeyPair,
    rng: ring::rand::SystemRandom,
    cert_der: Vec<u8>,
    issued: AtomicUsize,
    requests: Mutex<Vec<TokenRequest>>,
}

/// A distribution-spec token server on 127.0.0.1 signing ES256 JWTs whose
/// `x5c` carries the certificate the registry trusts (`rootcertbundle`).
pub struct TokenServer {
    port: u16,
    state: Arc<TokenState>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    cert_pem: String,
}

impl TokenServer {
    pub fn start(opts: TokenOptions) -> TokenServer {
        let key_pair = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256)
            .expect("generate a P-256 key");
        let rng = ring::rand::SystemRandom::new();
        let key = ring::signature::EcdsaKeyPair::from_pkcs8(
            &ring::signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &key_pair.serialize_der(),
            &rng,
        )
        .expect("ring reads rcgen's PKCS#8 key");
        let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("cert params");
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "dockyard test token signer");
        let cert = params.self_signed(&key_pair).expect("self-sign");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the token server");
        let port = listener.local_addr().expect("local addr").port();
        let state = Arc::new(TokenState {
            opts,
            key,
            rng,
            cert_der: cert.der().to_vec(),
            issued: AtomicUsize::new(0),
            requests: Mutex::new(Vec::new()),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let st = Arc::clone(&state);
        let thread = serve(listener, Arc::clone(&stop), move |conn| {
            let _ = handle_token_request(conn, &st);
        });
        TokenServer {
            port,
            state,
            stop,
            thread: Some(thread),
            cert_pem: cert.pem(),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }
    /// `http://127.0.0.1:PORT/token`.
    pub fn realm(&self) -> String {
        format!("http://127.0.0.1:{}/token", self.port)
    }
    /// The signing certificate, PEM (the registry's `rootcertbundle`).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }
    pub fn options(&self) -> &TokenOptions {
        &self.state.opts
    }
    /// How many tokens it issued so far.
    pub fn tokens_issued(&self) -> usize {
        self.state.issued.load(Ordering::SeqCst)
    }
    pub fn requests(&self) -> Vec<TokenRequest> {
        self.state.requests.lock().expect("lock").clone()
    }
}

impl Drop for TokenServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        wake(self.port);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn make_jwt(st: &TokenState, subject: &str, scopes: &[String]) -> String {
    let now = now_secs();
    // The registry allows 60 s of leeway on exp and nbf.
    let exp = now + st.opts.lifetime_secs;
    let exp = exp.saturating_sub(60);
    let nbf = now.saturating_sub(60);
    let access: Vec<Value> = scopes
        .iter()
        .flat_map(|s| s.split(' '))
        .filter_map(|s| {
            let (kind, rest) = s.split_once(':')?;
            let (name, actions) = rest.rsplit_once(':')?;
            let actions: Vec<&str> = actions.split(',').filter(|a| !a.is_empty()).collect();
            Some(json!({"type": kind, "name": name, "actions": actions}))
        })
        .collect();
    let n = st.issued.load(Ordering::SeqCst);
    let header = json!({
        "typ": "JWT",
        "alg": "ES256",
        "x5c": [B64.encode(&st.cert_der)],
    });
    let claims = json!({
        "iss": st.opts.issuer,
        "sub": subject,
        "aud": st.opts.service,
        "exp": exp,
        "nbf": nbf,
        "iat": nbf,
        "jti": format!("dockyard-test-{n}-{}", SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)),
        "access": access,
    });
    let signing_input = format!(
        "{}.{}",
        B64URL.encode(serde_json::to_vec(&header).expect("json")),
        B64URL.encode(serde_json::to_vec(&claims).expect("json"))
    );
    let sig = st
        .key
        .sign(&st.rng, signing_input.as_bytes())
        .expect("ES256 signature");
    format!("{signing_input}.{}", B64URL.encode(sig.as_ref()))
}

fn handle_token_request(conn: TcpStream, st: &TokenState) -> io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(30)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut w = conn;
    let Some(head) = read_head(&mut reader)? else {
        return Ok(());
    };
    let mut parts = head[0].split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let headers = parse_headers(&head[1..]);
    let _ = read_body(&mut reader, &headers)?;
    let query = query_pairs(&target);
    let scopes: Vec<String> = query
        .iter()
        .filter(|(k, _)| k == "scope")
        .map(|(_, v)| v.clone())
        .collect();
    let service = query
        .iter()
        .find(|(k, _)| k == "service")
        .map(|(_, v)| v.clone());
    let creds = header(&headers, "authorization")
        .and_then(|a| {
            a.strip_prefix("Basic ")
                .or_else(|| a.strip_prefix("basic "))
        })
        .and_then(|b| B64.decode(b.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok())
        .and_then(|s| {
            s.split_once(':')
                .map(|(u, p)| (u.to_string(), p.to_string()))
        });
    let user = creds.as_ref().map(|(u, _)| u.clone());
    let path = target.split('?').next().unwrap_or("");
    let record = |status: u16| {
        st.requests.lock().expect("lock").push(TokenRequest {
            scopes: scopes.clone(),
            service: service.clone(),
            user: user.clone(),
            status,
        });
    };
    if method != "GET" || path != "/token" {
        record(404);
        return write_simple_response(&mut w, "404 Not Found", &[], b"not found\n");
    }
    if service.as_deref() != Some(st.opts.service.as_str()) {
        record(400);
        return write_simple_response(
            &mut w,
            "400 Bad Request",
            &[("Content-Type", "application/json".into())],
            br#"{"errors":[{"code":"UNSUPPORTED","message":"unknown service"}]}"#,
        );
    }
    if let Some(required) = &st.opts.require_credentials {
        if creds.as_ref() != Some(required) {
            record(401);
            return write_simple_response(
                &mut w,
                "401 Unauthorized",
                &[
                    ("Content-Type", "application/json".into()),
                    ("WWW-Authenticate", "Basic realm=\"dockyard-token\"".into()),
                ],
                br#"{"errors":[{"code":"UNAUTHORIZED","message":"authentication required"}]}"#,
            );
        }
    }
    let token = make_jwt(st, user.as_deref().unwrap_or(""), &scopes);
    st.issued.fetch_add(1, Ordering::SeqCst);
    record(200);
    let expires_in = st
        .opts
        .advertised_expires_in
        .unwrap_or(st.opts.lifetime_secs);
    let body = serde_json::to_vec(&json!({
        "token": token,
        "access_token": token,
        "expires_in": expires_in,
    }))
    .expect("json");
    write_simple_response(
        &mut w,
        "200 OK",
        &[("Content-Type", "application/json".into())],
        &body,
    )
}

// ---------------------------------------------------------------------------
// TLS material

/// A CA and a server certificate for IP 127.0.0.1 signed by it, as PEM files.
pub struct TlsFiles {
    pub ca_pem: PathBuf,
    pub cert_pem: PathBuf,
    pub key_pem: PathBuf,
    /// A client certificate and key signed by the CA (not for self-signed).
    pub client: Option<(PathBuf, PathBuf)>,
}

/// One self-signed certificate for IP 127.0.0.1 with `CA:TRUE`, as
/// `openssl req -x509` makes it; `ca_pem` and `cert_pem` hold the same cert.
pub fn write_self_signed_tls_files(dir: &Path) -> TlsFiles {
    let key = rcgen::KeyPair::generate().expect("key");
    let mut params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string()]).expect("cert params");
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "127.0.0.1");
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let cert = params.self_signed(&key).expect("self-sign");
    let files = TlsFiles {
        ca_pem: dir.join("self-signed.crt"),
        cert_pem: dir.join("self-signed.crt"),
        key_pem: dir.join("self-signed.key"),
        client: None,
    };
    std::fs::write(&files.cert_pem, cert.pem()).expect("write the cert");
    std::fs::write(&files.key_pem, key.serialize_pem()).expect("write the key");
    files
}

pub fn write_tls_files(dir: &Path) -> TlsFiles {
    let ca_key = rcgen::KeyPair::generate().expect("CA key");
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.distinguished_name = rcgen::DistinguishedName::new();
    ca_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "dockyard test CA");
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    ca_params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
        rcgen::KeyUsagePurpose::DigitalSignature,
    ];
    let ca = ca_params.self_signed(&ca_key).expect("self-sign the CA");
    let key = rcgen::KeyPair::generate().expect("server key");
    let mut params =
        rcgen::CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()])
            .expect("server params");
    params.distinguished_name = rcgen::DistinguishedName::new();
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "127.0.0.1");
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::DigitalSignature,
        rcgen::KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = params
        .signed_by(&key, &ca, &ca_key)
        .expect("sign the server cert");
    let client_key = rcgen::KeyPair::generate().expect("client key");
    let mut client_params =
        rcgen::CertificateParams::new(Vec::<String>::new()).expect("client params");
    client_params.distinguished_name = rcgen::DistinguishedName::new();
    client_params
        .distinguished_name
        .push(rcgen::DnType::CommonName, "dockyard test client");
    client_params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
    client_params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ClientAuth];
    let client_cert = client_params
        .signed_by(&client_key, &ca, &ca_key)
        .expect("sign the client cert");
    let files = TlsFiles {
        ca_pem: dir.join("ca.pem"),
        cert_pem: dir.join("server.crt"),
        key_pem: dir.join("server.key"),
        client: Some((dir.join("client.cert"), dir.join("client.key"))),
    };
    if let Some((cert, key)) = &files.client {
        std::fs::write(cert, client_cert.pem()).expect("write client.cert");
        std::fs::write(key, client_key.serialize_pem()).expect("write client.key");
    }
    std::fs::write(&files.ca_pem, ca.pem()).expect("write ca.pem");
    std::fs::write(&files.cert_pem, cert.pem()).expect("write server.crt");
    std::fs::write(&files.key_pem, key.serialize_pem()).expect("write server.key");
    files
}

// ---------------------------------------------------------------------------
// The registry

/// A `docker-registry serve` process with its own storage, stopped on drop.
pub struct RegistryGuard {
    child: Child,
    dir: tempfile::TempDir,
    port: u16,
    tls: Option<TlsFiles>,
    token: Option<TokenServer>,
}

impl RegistryGuard {
    /// Start a registry; `None` (after `require_tool`) when docker-registry
    /// (or htpasswd for basic auth) is not installed.
    pub fn start(mode: Mode) -> Option<RegistryGuard> {
        if !require_tool("docker-registry") {
            return None;
        }
        let dir = tempfile::Builder::new()
            .prefix("dockyard-registry-")
            .tempdir()
            .expect("temp dir");
        let d = dir.path();
        let self_signed = matches!(mode, Mode::TlsSelfSigned);
        let mutual = matches!(mode, Mode::MutualTls);
        let (tls, basic, token_opts) = match mode {
            Mode::Open => (false, None, None),
            Mode::Basic { user, password } => (false, Some((user, password)), None),
            Mode::Tls | Mode::TlsSelfSigned | Mode::MutualTls => (true, None, None),
            Mode::TlsBasic { user, password } => (true, Some((user, password)), None),
            Mode::Token(t) => (false, None, Some(t)),
        };
        let mut config = format!(
            "version: 0.1\nlog:\n  level: info\n  accesslog:\n    disabled: true\nstorage:\n  filesystem:\n    rootdirectory: \"{}\"\n  delete:\n    enabled: true\n  maintenance:\n    uploadpurging:\n      enabled: false\nhttp:\n  addr: 127.0.0.1:0\n  secret: dockyard-test-secret\n",
            d.join("data").display()
        );
        let tls_files = tls.then(|| {
            if self_signed {
                write_self_signed_tls_files(d)
            } else {
                write_tls_files(d)
            }
        });
        if let Some(t) = &tls_files {
            config.push_str(&format!(
                "  tls:\n    certificate: \"{}\"\n    key: \"{}\"\n",
                t.cert_pem.display(),
                t.key_pem.display()
            ));
            if mutual {
                config.push_str(&format!(
                    "    clientcas:\n      - \"{}\"\n",
                    t.ca_pem.display()
                ));
            }
        }
        if let Some((user, password)) = &basic {
            if !require_tool("htpasswd") {
                return None;
            }
            let out = crate::run_ok(Command::new("htpasswd").args(["-Bbn", user, password]));
            let path = d.join("htpasswd");
            std::fs::write(&path, &out.stdout).expect("write htpasswd");
            config.push_str(&format!(
                "auth:\n  htpasswd:\n    realm: dockyard-test\n    path: \"{}\"\n",
                path.display()
            ));
        }
        let token = token_opts.map(TokenServer::start);
        if let Some(t) = &token {
            let bundle = d.join("token-signer.pem");
            std::fs::write(&bundle, t.cert_pem()).expect("write the token cert");
            config.push_str(&format!(
                "auth:\n  token:\n    realm: \"{}\"\n    service: \"{}\"\n    issuer: \"{}\"\n    rootcertbundle: \"{}\"\n",
                t.realm(),
                t.options().service,
                t.options().issuer,
                bundle.display()
            ));
        }
        let config_path = d.join("config.yml");
        std::fs::write(&config_path, config).expect("write config.yml");
        let log_path = d.join("registry.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let child = Command::new("docker-registry")
            .arg("serve")
            .arg(&config_path)
            .env_remove("REGISTRY_HTTP_ADDR")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup log"))
            .stderr(log)
            .spawn()
            .expect("start docker-registry");
        let mut guard = RegistryGuard {
            child,
            dir,
            port: 0,
            tls: tls_files,
            token,
        };
        guard.port = guard.wait_for_port();
        guard.wait_until_answering();
        Some(guard)
    }

    fn wait_for_port(&mut self) -> u16 {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let log = self.log();
            if let Some(rest) = log.split("listening on 127.0.0.1:").nth(1) {
                let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
                if let Ok(p) = digits.parse::<u16>() {
                    return p;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("docker-registry exited ({status}) before listening; its log:\n{log}");
            }
            if Instant::now() > deadline {
                panic!("docker-registry did not listen within 30 s; its log:\n{log}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn wait_until_answering(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let answered = if self.tls.is_some() {
                // A TLS handshake is more than this helper speaks: the
                // listener accepting is what we wait for.
                TcpStream::connect(("127.0.0.1", self.port)).is_ok()
            } else {
                http_status(self.port, "/v2/").is_some()
            };
            if answered {
                return;
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!(
                    "docker-registry exited ({status}); its log:\n{}",
                    self.log()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "docker-registry does not answer /v2/; its log:\n{}",
                    self.log()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }
    /// `127.0.0.1:PORT`, the registry's name in references.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
    /// The CA that signed the registry's certificate (TLS modes).
    pub fn ca_pem_path(&self) -> PathBuf {
        self.tls
            .as_ref()
            .map(|t| t.ca_pem.clone())
            .expect("ca_pem_path: the registry was not started with TLS")
    }
    /// A client certificate and key the registry's CA signed (TLS modes
    /// but the self-signed one).
    pub fn client_cert_paths(&self) -> (PathBuf, PathBuf) {
        self.tls
            .as_ref()
            .and_then(|t| t.client.clone())
            .expect("client_cert_paths: the registry has no CA-signed TLS")
    }
    pub fn token_server(&self) -> Option<&TokenServer> {
        self.token.as_ref()
    }
    /// Tokens issued by this registry's token server (0 without one).
    pub fn tokens_issued(&self) -> usize {
        self.token.as_ref().map(|t| t.tokens_issued()).unwrap_or(0)
    }
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("registry.log")).unwrap_or_default()
    }
}

impl Drop for RegistryGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The status of a plain-HTTP `GET path` to 127.0.0.1:port.
pub fn http_status(port: u16, path: &str) -> Option<u16> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut r = BufReader::new(s);
    let mut line = String::new();
    r.read_line(&mut line).ok()?;
    line.split_whitespace().nth(1)?.parse().ok()
}

// ---------------------------------------------------------------------------
// Fault proxy

/// What the proxy does wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fault {
    /// Forward everything faithfully (and record it).
    None,
    /// The first GET of a blob larger than 64 KiB gets its headers and half
    /// its body, then the connection closes.
    ResetMidBlob,
    /// The first GET of a blob larger than 64 KiB gets its headers and half
    /// its body, then the connection stays open and silent (a hung server
    /// or middlebox) until the proxy stops.
    StallMidBlob,
    /// The first n API requests (not the `/v2/` ping) get 503.
    ServiceUnavailableBurst(usize),
    /// The first n API requests get 429 with `Retry-After: secs`.
    TooManyRequests(usize, u64),
    /// Every blob GET body has its first byte flipped.
    FlipByte,
    /// Every manifest GET body has its first byte flipped.
    FlipManifestByte,
    /// Not a fault: serve `tags/list` in pages of the `n` the client asks
    /// for, with `Link: <...?last=T&n=N>; rel="next"` headers, as
    /// distribution 3 and most hosted registries do (2.8 ignores `n` for
    /// tags and always answers one page).
    PaginateTags,
    /// Upload `Location` headers lose their scheme and host (`/v2/...`),
    /// as some registries send them: the client must resolve them against
    /// the request URL.
    RelativeLocation,
}

/// A request the proxy saw, and the status it answered.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    /// Path and query.
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub status: u16,
    /// True when this answer was a fault the proxy made.
    pub faulted: bool,
    /// Bytes of the request body (an upload's size).
    pub request_bytes: u64,
    /// The response body's Content-Length (0 for HEAD or unknown).
    pub response_bytes: u64,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        header(&self.headers, name)
    }
    pub fn is_blob_get(&self) -> bool {
        self.method == "GET" && self.path.contains("/blobs/sha256:")
    }
    /// A request carrying blob bytes (monolithic PUT or PATCH chunk).
    pub fn is_upload(&self) -> bool {
        (self.method == "PUT" || self.method == "PATCH") && self.path.contains("/blobs/uploads/")
    }
    /// A cross-repository mount request.
    pub fn is_mount(&self) -> bool {
        self.method == "POST" && self.path.contains("mount=")
    }
}

struct ProxyState {
    upstream: u16,
    fault: Mutex<Fault>,
    requests: Mutex<Vec<Recorded>>,
    injected: AtomicUsize,
    api_seen: AtomicUsize,
    reset_done: AtomicBool,
    stopping: AtomicBool,
}

/// An HTTP/1.1 proxy on 127.0.0.1 in front of a registry, one connection
/// per request (`Connection: close`), injecting a `Fault`. The `Host`
/// header is kept, so upload `Location`s point back at the proxy.
pub struct FaultProxy {
    port: u16,
    state: Arc<ProxyState>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FaultProxy {
    pub fn start(upstream_port: u16, fault: Fault) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("local addr").port();
        let state = Arc::new(ProxyState {
            upstream: upstream_port,
            fault: Mutex::new(fault),
            requests: Mutex::new(Vec::new()),
            injected: AtomicUsize::new(0),
            api_seen: AtomicUsize::new(0),
            reset_done: AtomicBool::new(false),
            stopping: AtomicBool::new(false),
        });
        let stop = Arc::new(AtomicBool::new(false));
        let st = Arc::clone(&state);
        let thread = serve(listener, Arc::clone(&stop), move |conn| {
            if let Err(e) = proxy_one(conn, &st) {
                eprintln!("fault proxy: {e}");
            }
        });
        FaultProxy {
            port,
            state,
            stop,
            thread: Some(thread),
        }
    }

    pub fn port(&self) -> u16 {
        self.port
    }
    /// `127.0.0.1:PORT` of the proxy: the registry name clients use.
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
    /// Every request so far, in the order their answers started.
    pub fn requests(&self) -> Vec<Recorded> {
        self.state.requests.lock().expect("lock").clone()
    }
    pub fn clear_requests(&self) {
        self.state.requests.lock().expect("lock").clear();
    }
    /// How many faults were injected so far.
    pub fn faults_injected(&self) -> usize {
        self.state.injected.load(Ordering::SeqCst)
    }
    /// Change the fault (and start its counters afresh).
    pub fn set_fault(&self, fault: Fault) {
        *self.state.fault.lock().expect("lock") = fault;
        self.state.api_seen.store(0, Ordering::SeqCst);
        self.state.reset_done.store(false, Ordering::SeqCst);
    }
}

impl Drop for FaultProxy {
    fn drop(&mut self) {
        self.state.stopping.store(true, Ordering::SeqCst);
        self.stop.store(true, Ordering::SeqCst);
        wake(self.port);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-connection",
    "transfer-encoding",
    "content-length",
    "te",
    "upgrade",
];

fn proxy_one(conn: TcpStream, st: &ProxyState) -> io::Result<()> {
    conn.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut client = conn;
    let Some(head) = read_head(&mut reader)? else {
        return Ok(());
    };
    let mut parts = head[0].split_whitespace();
    let method = parts.next().unwrap_or("").to_string();
    let target = parts.next().unwrap_or("").to_string();
    let headers = parse_headers(&head[1..]);
    let body = read_body(&mut reader, &headers)?;
    let is_api = target.starts_with("/v2/") && target != "/v2/";
    let is_blob_get = method == "GET" && target.contains("/blobs/sha256:");
    let fault = st.fault.lock().expect("lock").clone();
    let request_bytes = body.as_ref().map(|b| b.len() as u64).unwrap_or(0);
    let response_len = std::cell::Cell::new(0u64);
    let record = |status: u16, faulted: bool| {
        st.requests.lock().expect("lock").push(Recorded {
            method: method.clone(),
            path: target.clone(),
            headers: headers.clone(),
            status,
            faulted,
            request_bytes,
            response_bytes: response_len.get(),
        });
    };

    if is_api {
        match fault {
            Fault::ServiceUnavailableBurst(n) if st.api_seen.fetch_add(1, Ordering::SeqCst) < n => {
                st.injected.fetch_add(1, Ordering::SeqCst);
                record(503, true);
                return write_simple_response(
                    &mut client,
                    "503 Service Unavailable",
                    &[("Content-Type", "application/json".into())],
                    br#"{"errors":[{"code":"UNAVAILABLE","message":"injected by the fault proxy"}]}"#,
                );
            }
            Fault::TooManyRequests(n, secs) if st.api_seen.fetch_add(1, Ordering::SeqCst) < n => {
                st.injected.fetch_add(1, Ordering::SeqCst);
                record(429, true);
                return write_simple_response(
                    &mut client,
                    "429 Too Many Requests",
                    &[
                        ("Content-Type", "application/json".into()),
                        ("Retry-After", secs.to_string()),
                    ],
                    br#"{"errors":[{"code":"TOOMANYREQUESTS","message":"injected by the fault proxy"}]}"#,
                );
            }
            _ => {}
        }
    }

    let paginate = fault == Fault::PaginateTags
        && method == "GET"
        && target
            .split('?')
            .next()
            .unwrap_or("")
            .ends_with("/tags/list");
    let upstream_target = if paginate {
        target.split('?').next().unwrap_or("").to_string()
    } else {
        target.clone()
    };
    let mut upstream = TcpStream::connect(("127.0.0.1", st.upstream))?;
    upstream.set_read_timeout(Some(Duration::from_secs(60)))?;
    let mut req = format!("{method} {upstream_target} HTTP/1.1\r\n");
    for (k, v) in &headers {
        if HOP_BY_HOP.iter().any(|h| k.eq_ignore_ascii_case(h)) {
            continue;
        }
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("Connection: close\r\n");
    if let Some(b) = &body {
        req.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    req.push_str("\r\n");
    upstream.write_all(req.as_bytes())?;
    if let Some(b) = &body {
        upstream.write_all(b)?;
    }
    upstream.flush()?;

    let mut up = BufReader::new(upstream);
    let resp_head = read_head(&mut up)?.ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the registry closed without answering",
        )
    })?;
    let status: u16 = resp_head[0]
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let resp_headers = parse_headers(&resp_head[1..]);
    let content_length =
        header(&resp_headers, "content-length").and_then(|v| v.parse::<usize>().ok());
    if method != "HEAD" {
        response_len.set(content_length.unwrap_or(0) as u64);
    }
    if paginate && status == 200 {
        record(status, false);
        return paginate_tags(&mut client, &mut up, &target, &resp_headers);
    }
    let mut out = format!("{}\r\n", resp_head[0]);
    for (k, v) in &resp_headers {
        if k.eq_ignore_ascii_case("connection") || k.eq_ignore_ascii_case("keep-alive") {
            continue;
        }
        if fault == Fault::RelativeLocation && k.eq_ignore_ascii_case("location") {
            if let Some(rest) = v.split_once("://").map(|(_, r)| r) {
                let path = rest.find('/').map(|i| &rest[i..]).unwrap_or("/");
                st.injected.fetch_add(1, Ordering::SeqCst);
                out.push_str(&format!("{k}: {path}\r\n"));
                continue;
            }
        }
        out.push_str(&format!("{k}: {v}\r\n"));
    }
    out.push_str("Connection: close\r\n\r\n");

    let stall = fault == Fault::StallMidBlob
        && is_blob_get
        && status == 200
        && content_length.map(|n| n > 64 << 10).unwrap_or(false)
        && !st.reset_done.swap(true, Ordering::SeqCst);
    if stall {
        record(status, true);
        st.injected.fetch_add(1, Ordering::SeqCst);
        client.write_all(out.as_bytes())?;
        let half = content_length.unwrap_or(0) / 2;
        let mut buf = vec![0u8; half];
        up.read_exact(&mut buf)?;
        client.write_all(&buf)?;
        client.flush()?;
        // Say nothing more; hold the connection until the test ends.
        while !st.stopping.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(50));
        }
        return Ok(());
    }
    let reset = fault == Fault::ResetMidBlob
        && is_blob_get
        && status == 200
        && content_length.map(|n| n > 64 << 10).unwrap_or(false)
        && !st.reset_done.swap(true, Ordering::SeqCst);
    let is_manifest_get = method == "GET" && target.contains("/manifests/");
    let flip = (fault == Fault::FlipByte && is_blob_get && (status == 200 || status == 206))
        || (fault == Fault::FlipManifestByte && is_manifest_get && status == 200);
    record(status, reset || flip);

    client.write_all(out.as_bytes())?;
    if reset {
        st.injected.fetch_add(1, Ordering::SeqCst);
        let half = content_length.unwrap_or(0) / 2;
        let mut buf = vec![0u8; half];
        up.read_exact(&mut buf)?;
        client.write_all(&buf)?;
        client.flush()?;
        let _ = client.shutdown(Shutdown::Both);
        return Ok(());
    }
    let mut flipped = !flip;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match up.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if !flipped {
            buf[0] ^= 0xff;
            flipped = true;
            st.injected.fetch_add(1, Ordering::SeqCst);
        }
        client.write_all(&buf[..n])?;
    }
    client.flush()?;
    let _ = client.shutdown(Shutdown::Write);
    Ok(())
}

/// Answer a tags/list request with one page of the full list read from
/// the registry.
fn paginate_tags(
    client: &mut TcpStream,
    up: &mut BufReader<TcpStream>,
    target: &str,
    resp_headers: &[(String, String)],
) -> io::Result<()> {
    let body = match read_body(up, resp_headers)? {
        Some(b) => b,
        None => {
            let mut b = Vec::new();
            up.read_to_end(&mut b)?;
            b
        }
    };
    let full: Value = serde_json::from_slice(&body).map_err(io::Error::other)?;
    let mut tags: Vec<String> = full
        .get("tags")
        .and_then(Value::as_array)
        .map(|l| {
            l.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default();
    tags.sort();
    let query = query_pairs(target);
    let get = |k: &str| query.iter().find(|(q, _)| q == k).map(|(_, v)| v.clone());
    let n = get("n")
        .and_then(|n| n.parse::<usize>().ok())
        .unwrap_or(usize::MAX);
    if let Some(last) = get("last") {
        tags.retain(|t| *t > last);
    }
    let more = tags.len() > n;
    tags.truncate(n);
    let page = serde_json::to_vec(&json!({"name": full.get("name"), "tags": tags})).expect("json");
    let mut extra = vec![("Content-Type", "application/json".to_string())];
    if more {
        let path = target.split('?').next().unwrap_or("");
        extra.push((
            "Link",
            format!(
                "<{path}?last={}&n={n}>; rel=\"next\"",
                tags.last().cloned().unwrap_or_default()
            ),
        ));
    }
    write_simple_response(client, "200 OK", &extra, &page)
}

// ---------------------------------------------------------------------------
// Images and clients

/// Deterministic pseudo-random bytes (xorshift64*), incompressible enough
/// that a layer's gzip is about as large as the layer.
pub fn pseudo_random(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// An image for the host platform with `layers` uncompressed layers of
/// about `layer_bytes` pseudo-random bytes each (plus a small text file),
/// different for every `seed`.
pub fn test_image(seed: u64, layers: usize, layer_bytes: usize) -> Image {
    test_image_for(seed, layers, layer_bytes, &Platform::host())
}

pub fn test_image_for(seed: u64, layers: usize, layer_bytes: usize, platform: &Platform) -> Image {
    let mut image = Image::scratch(platform);
    for i in 0..layers {
        let mut b = LayerBuilder::new(LayerOptions::default());
        b.add_contents(
            &format!("/data/layer{i}.bin"),
            pseudo_random(seed.wrapping_mul(1000).wrapping_add(i as u64), layer_bytes),
            0o644,
        )
        .expect("add contents");
        b.add_contents(
            &format!("/etc/dockyard-test/layer{i}"),
            format!("seed {seed}, layer {i}\n"),
            0o644,
        )
        .expect("add contents");
        let layer = b.build(&std::env::temp_dir()).expect("build layer");
        image = image.append_layer(layer, &format!("dockyard test layer {i}"));
    }
    image.with_config_edits(&[ConfigEdit::Label(
        "org.dockyard.test.seed".into(),
        seed.to_string(),
    )])
}

/// A server on 127.0.0.1 that accepts connections and never says a word
/// (a hung registry). Connections are held until it is dropped.
pub struct SilentServer {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl SilentServer {
    pub fn start() -> SilentServer {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || {
            let mut held = Vec::new();
            while !flag.load(Ordering::SeqCst) {
                match listener.accept() {
                    Ok((conn, _)) => held.push(conn),
                    Err(_) => std::thread::sleep(Duration::from_millis(20)),
                }
            }
        });
        SilentServer {
            port,
            stop,
            thread: Some(thread),
        }
    }
    pub fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for SilentServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// A multi-threaded tokio runtime for a test.
pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// Client options for tests: quick backoff, a few attempts.
pub fn test_options() -> ClientOptions {
    ClientOptions {
        backoff: Duration::from_millis(50),
        attempts: 4,
        connect_timeout: Duration::from_secs(10),
        ..ClientOptions::default()
    }
}

/// Connect to `host` (`127.0.0.1:PORT`) inside `rt`.
pub fn connect(rt: &tokio::runtime::Runtime, host: &str, opts: ClientOptions) -> Registry {
    rt.block_on(Registry::connect(host, opts))
        .unwrap_or_else(|e| panic!("connect to {host}: {e}"))
}

/// A fresh store in a temp dir (keep the dir alive as long as the store).
pub fn temp_store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::Builder::new()
        .prefix("dockyard-store-")
        .tempdir()
        .expect("temp dir");
    let store = Store::open(dir.path()).expect("open store");
    (dir, store)
}

/// `host/repo:tag` parsed.
pub fn reference(host: &str, repo_and_tag: &str) -> Reference {
    format!("{host}/{repo_and_tag}")
        .parse()
        .unwrap_or_else(|e| panic!("reference {host}/{repo_and_tag}: {e}"))
}

/// A blob in the store hashes to its name.
pub fn store_blob_verifies(store: &Store, digest: &Digest) -> bool {
    std::fs::read(store.blob_path(digest))
        .map(|b| Digest::sha256_of(&b) == *digest)
        .unwrap_or(false)
}

/// `sha256:HEX` of some bytes.
pub fn sha256_digest(bytes: &[u8]) -> String {
    Digest::sha256_of(bytes).to_string()
}

/// Leftover partial downloads (`.dockyard-tmp-partial-*`) in a store.
pub fn partial_files(store: &Store) -> Vec<PathBuf> {
    let dir = store.root().join("blobs").join("sha256");
    std::fs::read_dir(&dir)
        .map(|it| {
            it.flatten()
                .map(|e| e.path())
                .filter(|p| {
                    p.file_name()
                        .and_then(|n| n.to_str())
                        .map(|n| n.starts_with(".dockyard-tmp-partial-"))
                        .unwrap_or(false)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// A platform that is not this host's (for multi-platform indexes).
pub fn other_platform() -> Platform {
    let host = Platform::host();
    if host.architecture == "s390x" {
        "linux/ppc64le".parse().expect("platform")
    } else {
        "linux/s390x".parse().expect("platform")
    }
}

/// Standard base64 (as in Docker config `auth` fields).
pub fn base64_encode(bytes: impl AsRef<[u8]>) -> String {
    B64.encode(bytes)
}
