//! The bearer-token check every call goes through.
//!
//! When a token is configured every call must carry it ([`Auth`]); without one (loopback)
//! every call is allowed. Limits: no TLS, so a token on an untrusted network is only as
//! safe as the network.

use sha2::{Digest, Sha256};
use tonic::{Request, Status};

/// Requires `authorization: Bearer <token>` on every call when a token is set. Tokens are
/// compared as SHA-256 digests in constant time, so neither their bytes nor their length
/// leak through timing.
#[derive(Clone, Default)]
pub struct Auth {
    digest: Option<[u8; 32]>,
}

impl Auth {
    /// No token: every call is allowed (loopback `r1ctl up`).
    pub fn open() -> Auth {
        Auth { digest: None }
    }

    /// Calls must carry `token`.
    pub fn bearer(token: &str) -> Auth {
        Auth {
            digest: Some(Sha256::digest(token.as_bytes()).into()),
        }
    }
}

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(want) = &self.digest else {
            return Ok(request);
        };
        let sent = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok());
        let Some(token) = sent.and_then(|v| v.strip_prefix("Bearer ")) else {
            return Err(Status::unauthenticated(
                "this server requires a bearer token; send `authorization: Bearer <token>` with the cluster's token",
            ));
        };
        let got: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        let diff = got.iter().zip(want).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        match diff {
            0 => Ok(request),
            _ => Err(Status::unauthenticated(
                "the bearer token is wrong; use the cluster's token (the one the coordinator was given)",
            )),
        }
    }
}
