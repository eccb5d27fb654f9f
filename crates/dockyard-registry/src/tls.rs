//! TLS for registries given their own certificates (`--ca-cert`,
//! `--cert-dir`): those join the system's roots, and a certificate the user
//! handed over is also accepted as the server's own — the usual
//! self-signed registry certificate carries CA:TRUE, which strict WebPKI
//! refuses as an end-entity certificate (Docker and skopeo accept it).

use std::sync::{Arc, OnceLock};

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};

use crate::error::{RegistryError, Result};

#[derive(Debug)]
struct TrustedOrWebPki {
    /// Built at the first handshake: reading the system's roots is a
    /// directory of PEM files, wasted on a session that speaks plain HTTP.
    webpki: OnceLock<std::result::Result<Arc<WebPkiServerVerifier>, String>>,
    provider: Arc<CryptoProvider>,
    /// Certificates the user gave; a server presenting exactly one of them
    /// is the server the user meant.
    given: Vec<CertificateDer<'static>>,
    /// Any server certificate passes (the user asked not to verify); the
    /// handshake's signatures are still checked.
    accept_any: bool,
}

impl ServerCertVerifier for TrustedOrWebPki {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verdict = self.webpki().and_then(|webpki| {
            webpki.verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        });
        match verdict {
            Ok(v) => Ok(v),
            Err(e) => {
                if self.accept_any || self.given.iter().any(|c| c.as_ref() == end_entity.as_ref()) {
                    Ok(ServerCertVerified::assertion())
                } else {
                    Err(e)
                }
            }
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}

impl TrustedOrWebPki {
    /// The WebPKI verifier over Mozilla's roots, the system's and the
    /// given certificates.
    fn webpki(&self) -> std::result::Result<&Arc<WebPkiServerVerifier>, rustls::Error> {
        self.webpki
            .get_or_init(|| {
                let mut roots = RootCertStore::empty();
                roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
                for cert in rustls_native_certs::load_native_certs().certs {
                    let _ = roots.add(cert);
                }
                for cert in &self.given {
                    let _ = roots.add(cert.clone());
                }
                WebPkiServerVerifier::builder_with_provider(
                    Arc::new(roots),
                    Arc::clone(&self.provider),
                )
                .build()
                .map_err(|e| format!("TLS setup: {e}"))
            })
            .as_ref()
            .map_err(|e| rustls::Error::General(e.clone()))
    }
}

/// A client certificate chain and key, read and checked once.
#[derive(Clone, Debug)]
pub struct ClientIdentity {
    certs: Vec<CertificateDer<'static>>,
    key: Arc<PrivateKeyDer<'static>>,
}

impl ClientIdentity {
    pub fn read(files: &crate::client::ClientCert) -> Result<ClientIdentity> {
        use rustls::pki_types::pem::PemObject;
        let read = |p: &std::path::Path| {
            std::fs::read(p).map_err(|e| RegistryError::Tls {
                reason: format!("{}: {e}", p.display()),
            })
        };
        let cert_pem = read(&files.cert)?;
        let certs: Vec<CertificateDer<'static>> =
            rustls_pemfile_certs(&mut std::io::BufReader::new(&cert_pem[..]))
                .collect::<std::io::Result<_>>()
                .map_err(|e| RegistryError::Tls {
                    reason: format!("{}: {e}", files.cert.display()),
                })?;
        if certs.is_empty() {
            return Err(RegistryError::Tls {
                reason: format!("{}: no PEM certificate in it", files.cert.display()),
            });
        }
        let key =
            PrivateKeyDer::from_pem_slice(&read(&files.key)?).map_err(|e| RegistryError::Tls {
                reason: format!("{}: no PEM private key in it ({e:?})", files.key.display()),
            })?;
        Ok(ClientIdentity {
            certs,
            key: Arc::new(key),
        })
    }
}

/// A rustls client config trusting the system roots, Mozilla's roots and
/// the given PEM certificates (or any server, with `accept_any_server`),
/// presenting `identity` to registries that ask for a client certificate.
pub fn client_config(
    given_pem: &[(std::path::PathBuf, Vec<u8>)],
    identity: Option<ClientIdentity>,
    accept_any_server: bool,
) -> Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut given = Vec::new();
    for (path, pem) in given_pem {
        let mut reader = std::io::BufReader::new(&pem[..]);
        let mut found = 0;
        for cert in rustls_pemfile_certs(&mut reader) {
            let cert = cert.map_err(|e| RegistryError::Tls {
                reason: format!("{}: {e}", path.display()),
            })?;
            given.push(cert);
            found += 1;
        }
        if found == 0 {
            return Err(RegistryError::Tls {
                reason: format!("{}: no PEM certificate in it", path.display()),
            });
        }
    }
    let verifier = Arc::new(TrustedOrWebPki {
        webpki: OnceLock::new(),
        provider: Arc::clone(&provider),
        given,
        accept_any: accept_any_server,
    });
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| RegistryError::Tls {
            reason: format!("TLS setup: {e}"),
        })?
        .dangerous()
        .with_custom_certificate_verifier(verifier);
    let mut config = match identity {
        Some(id) => builder
            .with_client_auth_cert(id.certs, id.key.clone_key())
            .map_err(|e| RegistryError::Tls {
                reason: format!("the client certificate and key do not go together: {e}"),
            })?,
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(config)
}

/// The CERTIFICATE blocks of a PEM stream.
fn rustls_pemfile_certs(
    reader: &mut dyn std::io::BufRead,
) -> impl Iterator<Item = std::io::Result<CertificateDer<'static>>> {
    use rustls::pki_types::pem::PemObject;
    let mut pem = Vec::new();
    let read = reader.read_to_end(&mut pem);
    let certs: Vec<std::io::Result<CertificateDer<'static>>> = match read {
        Err(e) => vec![Err(e)],
        Ok(_) => CertificateDer::pem_slice_iter(&pem)
            .map(|c| {
                c.map_err(|e| {
                    std::io::Error::new(std::io::ErrorKind::InvalidData, format!("{e:?}"))
                })
            })
            .collect(),
    };
    certs.into_iter()
}
