//! How Keel processes reach each other and guard themselves: the shared
//! token ([`crate::auth`]) and TLS. [`Connect`] is the client side (every
//! channel a process opens: CLI to scheduler, worker to scheduler, worker to
//! worker, client to worker); [`Serve`] the server side.

use std::path::{Path, PathBuf};

use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity, ServerTlsConfig};

use crate::auth::{AddToken, AuthToken, CheckToken};

/// Makes ring rustls's crypto for this process. Two providers are linked
/// (tonic's ring, and aws-lc-rs through the S3 client), so rustls cannot
/// pick one itself; the first call decides, later ones change nothing.
fn choose_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

/// The client side: the token sent on every call and the certificate
/// authority trusted for `https://` addresses.
#[derive(Clone, Debug, Default)]
pub struct Connect {
    pub token: Option<AuthToken>,
    /// PEM of the CA (`--tls-ca`); `https://` addresses need it.
    pub ca: Option<Vec<u8>>,
}

impl Connect {
    /// The token from `--auth-token-file` or `KEEL_AUTH_TOKEN`, and the CA
    /// from `--tls-ca`.
    pub fn load(token_file: Option<&Path>, ca: Option<&Path>) -> Result<Connect, String> {
        let ca = match ca {
            Some(path) => Some(
                std::fs::read(path)
                    .map_err(|e| format!("cannot read --tls-ca {}: {e}", path.display()))?,
            ),
            None => None,
        };
        Ok(Connect {
            token: AuthToken::load(token_file)?,
            ca,
        })
    }

    /// An endpoint for `url`, with TLS when it is `https://`.
    pub fn endpoint(&self, url: &str) -> Result<Endpoint, String> {
        let endpoint = Endpoint::from_shared(url.to_string())
            .map_err(|e| format!("invalid address {url}: {e}"))?;
        if !url.starts_with("https://") {
            return Ok(endpoint);
        }
        choose_crypto();
        let mut tls = ClientTlsConfig::new();
        match &self.ca {
            Some(pem) => tls = tls.ca_certificate(Certificate::from_pem(pem)),
            None => {
                return Err(format!(
                    "{url} uses TLS: give the certificate authority that signed its certificate with --tls-ca"
                ))
            }
        }
        endpoint
            .tls_config(tls)
            .map_err(|e| format!("TLS for {url}: {e}"))
    }

    /// The interceptor adding the token to every call.
    pub fn interceptor(&self) -> AddToken {
        AddToken(self.token.clone())
    }
}

/// The server side: the token every call must carry and the certificate the
/// server presents.
#[derive(Clone, Debug, Default)]
pub struct Serve {
    pub token: Option<AuthToken>,
    pub tls: Option<TlsFiles>,
}

#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Serve {
    /// `--tls-cert` and `--tls-key` (both or neither) and the token.
    pub fn load(
        token: Option<AuthToken>,
        cert: Option<&Path>,
        key: Option<&Path>,
    ) -> Result<Serve, String> {
        let tls = match (cert, key) {
            (Some(cert), Some(key)) => Some(TlsFiles {
                cert: cert.to_path_buf(),
                key: key.to_path_buf(),
            }),
            (None, None) => None,
            _ => return Err("--tls-cert and --tls-key go together: give both or neither".into()),
        };
        Ok(Serve { token, tls })
    }

    /// The scheme this server is reached with.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() {
            "https"
        } else {
            "http"
        }
    }

    pub fn check(&self) -> CheckToken {
        CheckToken(self.token.clone())
    }

    /// The server's TLS settings, reading its certificate and key.
    pub fn tls_config(&self) -> Result<Option<ServerTlsConfig>, String> {
        let Some(files) = &self.tls else {
            return Ok(None);
        };
        choose_crypto();
        let read = |p: &Path, what: &str| {
            std::fs::read(p).map_err(|e| format!("cannot read {what} {}: {e}", p.display()))
        };
        let identity = Identity::from_pem(
            read(&files.cert, "--tls-cert")?,
            read(&files.key, "--tls-key")?,
        );
        Ok(Some(ServerTlsConfig::new().identity(identity)))
    }
}

/// The flags every Keel binary takes to reach others.
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ConnectArgs {
    /// A file holding the cluster's shared token (else KEEL_AUTH_TOKEN): sent
    /// on every call, and required of every caller by the servers.
    #[arg(long, global = true)]
    pub auth_token_file: Option<PathBuf>,
    /// PEM of the certificate authority that signed the servers' TLS
    /// certificates; needed for `https://` addresses.
    #[arg(long, global = true)]
    pub tls_ca: Option<PathBuf>,
}

/// The flags of a binary that serves (scheduler, worker).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct ServeArgs {
    #[command(flatten)]
    pub connect: ConnectArgs,
    /// PEM certificate the servers present (with --tls-key): they then speak TLS only.
    #[arg(long)]
    pub tls_cert: Option<PathBuf>,
    #[arg(long)]
    pub tls_key: Option<PathBuf>,
}

impl ConnectArgs {
    pub fn load(&self) -> Result<Connect, String> {
        Connect::load(self.auth_token_file.as_deref(), self.tls_ca.as_deref())
    }
}

impl ServeArgs {
    /// What this process sends when it calls others, and what it requires of callers.
    pub fn load(&self) -> Result<(Connect, Serve), String> {
        let connect = self.connect.load()?;
        let serve = Serve::load(
            connect.token.clone(),
            self.tls_cert.as_deref(),
            self.tls_key.as_deref(),
        )?;
        Ok((connect, serve))
    }
}
