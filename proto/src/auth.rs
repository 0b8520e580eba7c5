//! The cluster's shared token: every Keel process reads it from
//! `KEEL_AUTH_TOKEN` or `--auth-token-file`; clients send it on every call as
//! `authorization: Bearer <token>` ([`AddToken`]) and servers check it
//! ([`CheckToken`]), in constant time. Without a token everything is open.

use std::path::Path;
use std::sync::Arc;

use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;
use tonic::{Request, Status};

/// The environment variable holding the token.
pub const TOKEN_ENV: &str = "KEEL_AUTH_TOKEN";

#[derive(Clone, PartialEq, Eq)]
pub struct AuthToken(Arc<str>);

impl std::fmt::Debug for AuthToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthToken(…)")
    }
}

impl AuthToken {
    pub fn new(token: &str) -> Result<AuthToken, String> {
        let token = token.trim();
        if token.is_empty() {
            return Err("the auth token is empty".into());
        }
        if !token.bytes().all(|b| b.is_ascii_graphic()) {
            return Err("the auth token must be printable ASCII without spaces".into());
        }
        Ok(AuthToken(token.into()))
    }

    /// The token from `file` if given, else from `KEEL_AUTH_TOKEN`, else none.
    pub fn load(file: Option<&Path>) -> Result<Option<AuthToken>, String> {
        if let Some(path) = file {
            let text = std::fs::read_to_string(path)
                .map_err(|e| format!("cannot read --auth-token-file {}: {e}", path.display()))?;
            return AuthToken::new(&text)
                .map(Some)
                .map_err(|e| format!("{}: {e}", path.display()));
        }
        match std::env::var(TOKEN_ENV) {
            Ok(v) => AuthToken::new(&v)
                .map(Some)
                .map_err(|e| format!("{TOKEN_ENV}: {e}")),
            Err(_) => Ok(None),
        }
    }

    /// The `authorization` header value carrying it.
    pub fn header(&self) -> String {
        format!("Bearer {}", self.0)
    }

    /// Whether `header` (an `authorization` value) carries this token;
    /// compares every byte whatever the first difference.
    fn admits(&self, presented: &[u8]) -> bool {
        let want = self.0.as_bytes();
        let mut diff = (want.len() != presented.len()) as u8;
        for (i, w) in want.iter().enumerate() {
            diff |= w ^ presented.get(i).copied().unwrap_or(0);
        }
        diff == 0
    }

    /// Checks a request's metadata: `Unauthenticated` saying whether the
    /// token was missing, malformed or wrong.
    pub fn check(&self, metadata: &tonic::metadata::MetadataMap) -> Result<(), Status> {
        let Some(value) = metadata.get("authorization") else {
            return Err(Status::unauthenticated(
                "missing token: this cluster requires `authorization: Bearer <token>` (set KEEL_AUTH_TOKEN or --auth-token-file)",
            ));
        };
        let presented = value
            .as_bytes()
            .strip_prefix(b"Bearer ")
            .or_else(|| value.as_bytes().strip_prefix(b"bearer "))
            .ok_or_else(|| {
                Status::unauthenticated("malformed authorization header: expected `Bearer <token>`")
            })?;
        if self.admits(presented) {
            Ok(())
        } else {
            Err(Status::unauthenticated("wrong token"))
        }
    }
}

/// A server-side interceptor: lets a call through only with the token (all
/// calls when there is none).
#[derive(Clone, Debug, Default)]
pub struct CheckToken(pub Option<AuthToken>);

impl Interceptor for CheckToken {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(token) = &self.0 {
            token.check(request.metadata())?;
        }
        Ok(request)
    }
}

/// A client-side interceptor: adds the token to every call.
#[derive(Clone, Debug, Default)]
pub struct AddToken(pub Option<AuthToken>);

impl Interceptor for AddToken {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        if let Some(token) = &self.0 {
            let value = MetadataValue::try_from(token.header())
                .map_err(|_| Status::internal("the auth token is not a valid header value"))?;
            request.metadata_mut().insert("authorization", value);
        }
        Ok(request)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_header(value: Option<&str>) -> tonic::metadata::MetadataMap {
        let mut m = tonic::metadata::MetadataMap::new();
        if let Some(v) = value {
            m.insert("authorization", v.parse().unwrap());
        }
        m
    }

    #[test]
    fn only_the_right_token_passes_and_the_refusal_says_why() {
        let token = AuthToken::new("s3cret\n").unwrap();
        assert!(token.check(&with_header(Some("Bearer s3cret"))).is_ok());
        let why = |h| {
            token
                .check(&with_header(h))
                .unwrap_err()
                .message()
                .to_string()
        };
        assert!(why(None).starts_with("missing token"));
        assert!(why(Some("Basic abc")).starts_with("malformed"));
        assert_eq!(why(Some("Bearer s3cre")), "wrong token");
        assert_eq!(why(Some("Bearer s3cret!")), "wrong token");
        assert_eq!(why(Some("Bearer ")), "wrong token");
    }

    #[test]
    fn empty_or_spaced_tokens_are_refused() {
        assert!(AuthToken::new("  \n").is_err());
        assert!(AuthToken::new("two words").is_err());
    }

    #[test]
    fn the_client_interceptor_adds_what_the_server_checks() {
        let token = AuthToken::new("t0k").unwrap();
        let request = AddToken(Some(token.clone()))
            .call(Request::new(()))
            .unwrap();
        assert!(CheckToken(Some(token)).call(request).is_ok());
        let bare = AddToken(None).call(Request::new(())).unwrap();
        assert!(CheckToken(Some(AuthToken::new("t0k").unwrap()))
            .call(bare)
            .is_err());
    }
}
