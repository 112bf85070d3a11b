//! The GeoServer REST client: one blocking `POST {url}/rest/reload`.

use std::fmt;
use std::io::Read;
use std::time::Duration;

/// How long a reload may take before we give up on it. GeoServer answers only when the reload is
/// done and holds its global configuration lock meanwhile; on 10^5 layers that takes minutes.
pub const DEFAULT_RELOAD_TIMEOUT: Duration = Duration::from_secs(600);

/// A refused or silent port should fail fast so the retry loop, not the socket, does the waiting.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// One per-object REST call answers in milliseconds; one that takes this long is given up on,
/// and a reload applies its change instead.
pub const REST_TIMEOUT: Duration = Duration::from_secs(30);

/// How much of an error answer's body goes into the error (GeoServer's are often HTML pages).
const BODY_EXCERPT: u64 = 300;

/// The local GeoServer, as configured in `[geoserver]`.
#[derive(Clone)]
pub struct GeoServer {
    url: String,
    user: String,
    password: String,
    timeout: Duration,
}

/// Why a reload failed. `Display` names neither the URL (the caller's log line does) nor the
/// password.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReloadError {
    /// No HTTP answer: connection refused, timed out, reset, unknown host. GeoServer is down,
    /// restarting, or busy beyond the timeout.
    Unreachable(String),
    /// 401 or 403: the credentials are wrong or the user is not an administrator.
    Unauthorized { status: u16, user: String },
    /// Any other answer but 2xx.
    Http { status: u16, body: String },
}

impl GeoServer {
    /// `url` is GeoServer's base URL, e.g. `http://127.0.0.1:8080/geoserver`.
    pub fn new(
        url: impl Into<String>,
        user: impl Into<String>,
        password: impl Into<String>,
    ) -> Self {
        GeoServer {
            url: url.into().trim_end_matches('/').to_string(),
            user: user.into(),
            password: password.into(),
            timeout: DEFAULT_RELOAD_TIMEOUT,
        }
    }

    /// The GeoServer `[geoserver]` configures, or `None` without a `url` (files are still
    /// written, nothing is reloaded).
    pub fn from_config(cfg: &crate::config::GeoServer) -> Option<Self> {
        let url = cfg.url.as_ref()?;
        Some(GeoServer::new(url.clone(), &cfg.user, &cfg.password).with_timeout(cfg.reload_timeout))
    }

    /// Overall timeout of one reload request (default [`DEFAULT_RELOAD_TIMEOUT`]).
    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// GeoServer's base URL, for log lines.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The endpoint [`GeoServer::reload`] posts to, for log lines.
    pub fn reload_url(&self) -> String {
        format!("{}/rest/reload", self.url)
    }

    /// Asks GeoServer to re-read its whole configuration and blocks until it has (or failed).
    pub fn reload(&self) -> Result<(), ReloadError> {
        let agent = self.agent(self.timeout);
        let response = agent
            .post(self.reload_url())
            .header(
                "Authorization",
                basic_auth(&self.user, &self.password).as_str(),
            )
            .send_empty()
            .map_err(unreachable)?;
        check_status(response, &self.user)
    }

    /// One REST call of a per-object apply: `method {url}/rest{endpoint}`, with `body` as XML
    /// when given. Bounded by [`REST_TIMEOUT`]: such calls take milliseconds, and the caller
    /// falls back to a reload when one does not answer.
    pub fn call(
        &self,
        method: &str,
        endpoint: &str,
        body: Option<&[u8]>,
    ) -> Result<(), ReloadError> {
        let url = format!("{}/rest{endpoint}", self.url);
        let auth = basic_auth(&self.user, &self.password);
        let agent = self.agent(REST_TIMEOUT.min(self.timeout));
        let response = match (method, body) {
            ("PUT", Some(b)) => agent
                .put(&url)
                .header("Authorization", auth.as_str())
                .header("Content-Type", "application/xml")
                .send(b),
            ("POST", Some(b)) => agent
                .post(&url)
                .header("Authorization", auth.as_str())
                .header("Content-Type", "application/xml")
                .send(b),
            ("POST", None) => agent
                .post(&url)
                .header("Authorization", auth.as_str())
                .send_empty(),
            ("DELETE", None) => agent
                .delete(&url)
                .header("Authorization", auth.as_str())
                .call(),
            _ => {
                return Err(ReloadError::Http {
                    status: 0,
                    body: format!("{method} {endpoint}: not a call this client makes"),
                })
            }
        };
        check_status(response.map_err(unreachable)?, &self.user)
    }

    /// `POST {url}/rest/security/acl/catalog/reload`: GeoServer's security manager re-reads its
    /// configuration, which `/rest/reload` leaves as it was (GEOS-11644; GeoServer's
    /// `org/geoserver/rest/security/CatalogSecurityController.java`).
    pub fn reload_security(&self) -> Result<(), ReloadError> {
        self.call("POST", "/security/acl/catalog/reload", None)
    }

    /// Whether GeoServer answers at all and accepts the credentials, for a start-up log line:
    /// `GET {url}/rest/about/version`. Any answer but 401/403 counts as reachable.
    pub fn probe(&self) -> Result<(), ReloadError> {
        let response = self
            .agent(CONNECT_TIMEOUT)
            .get(format!("{}/rest/about/version", self.url))
            .header(
                "Authorization",
                basic_auth(&self.user, &self.password).as_str(),
            )
            .call()
            .map_err(unreachable)?;
        match check_status(response, &self.user) {
            Err(e @ ReloadError::Unauthorized { .. }) => Err(e),
            _ => Ok(()),
        }
    }

    fn agent(&self, timeout: Duration) -> ureq::Agent {
        let config = ureq::Agent::config_builder()
            .timeout_connect(Some(CONNECT_TIMEOUT))
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            // A redirect to a login page must not pass for success.
            .max_redirects(0)
            // Reloads are rare; a pooled connection would often be stale after a GeoServer restart.
            .max_idle_connections(0)
            .build();
        ureq::Agent::new_with_config(config)
    }
}

/// 2xx is success; 401/403 name the user; anything else keeps a short body excerpt.
fn check_status(response: ureq::http::Response<ureq::Body>, user: &str) -> Result<(), ReloadError> {
    let status = response.status().as_u16();
    match status {
        200..=299 => Ok(()),
        401 | 403 => Err(ReloadError::Unauthorized {
            status,
            user: user.to_string(),
        }),
        _ => {
            let mut raw = Vec::new();
            // The excerpt is best effort: a body that fails to read leaves it shorter.
            let _ = response
                .into_body()
                .as_reader()
                .take(BODY_EXCERPT)
                .read_to_end(&mut raw);
            let text = String::from_utf8_lossy(&raw);
            let body = text.split_whitespace().collect::<Vec<_>>().join(" ");
            Err(ReloadError::Http { status, body })
        }
    }
}

impl fmt::Debug for GeoServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GeoServer")
            .field("url", &self.url)
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .field("timeout", &self.timeout)
            .finish()
    }
}

fn unreachable(e: ureq::Error) -> ReloadError {
    let reason = match e {
        ureq::Error::Io(io) if io.kind() == std::io::ErrorKind::ConnectionRefused => {
            "connection refused".to_string()
        }
        ureq::Error::Io(io) => io.to_string(),
        ureq::Error::Timeout(which) => format!("timed out ({which})"),
        ureq::Error::HostNotFound => "host not found".to_string(),
        other => other.to_string(),
    };
    ReloadError::Unreachable(reason)
}

impl fmt::Display for ReloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ReloadError::Unreachable(reason) => f.write_str(reason),
            ReloadError::Unauthorized { status, user } => write!(
                f,
                "HTTP {status}: GeoServer refused user {user:?}; \
                 check [geoserver] user and password / password_file"
            ),
            ReloadError::Http { status, body } if body.is_empty() => {
                write!(f, "HTTP {status} (empty body)")
            }
            ReloadError::Http { status, body } => write!(f, "HTTP {status}: {body}"),
        }
    }
}

impl std::error::Error for ReloadError {}

/// The `Authorization` header value for HTTP Basic authentication (RFC 7617).
fn basic_auth(user: &str, password: &str) -> String {
    format!("Basic {}", base64(format!("{user}:{password}").as_bytes()))
}

/// Standard base64 with padding (RFC 4648 section 4).
fn base64(input: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(input.len().div_ceil(3) * 4);
    for chunk in input.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        let sextets = [n >> 18, n >> 12, n >> 6, n];
        // 1 input byte gives 2 significant characters, 2 give 3, 3 give 4.
        for (i, s) in sextets.iter().enumerate() {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(s & 0x3f) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn base64_matches_the_rfc_4648_test_vectors() {
        let vectors = [
            ("", ""),
            ("f", "Zg=="),
            ("fo", "Zm8="),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg=="),
            ("fooba", "Zm9vYmE="),
            ("foobar", "Zm9vYmFy"),
        ];
        for (plain, encoded) in vectors {
            assert_eq!(base64(plain.as_bytes()), encoded, "base64({plain:?})");
        }
        assert_eq!(base64(&[0xff, 0xfe, 0xfd, 0x00]), "//79AA==");
    }

    #[test]
    fn basic_auth_encodes_user_colon_password() {
        assert_eq!(
            basic_auth("admin", "geoserver"),
            "Basic YWRtaW46Z2Vvc2VydmVy"
        );
    }

    #[test]
    fn the_password_never_shows_in_debug_or_errors() {
        let gs = GeoServer::new("http://127.0.0.1:1/geoserver/", "admin", "s3cret");
        assert!(!format!("{gs:?}").contains("s3cret"));
        assert_eq!(gs.reload_url(), "http://127.0.0.1:1/geoserver/rest/reload");
        let err = ReloadError::Unauthorized {
            status: 401,
            user: "admin".into(),
        };
        let shown = err.to_string();
        assert!(shown.contains("[geoserver] user") && !shown.contains("s3cret"));
    }
}
