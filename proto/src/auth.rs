//! The server side of the bearer token that [`crate::client::BearerToken`] sends: every
//! r1 gRPC server (coordinator, learner weight service) checks calls with [`Auth`].

use sha2::{Digest, Sha256};
use tonic::{Request, Status};

/// Requires `authorization: Bearer <token>` on every call when a token is set. Tokens are
/// compared as SHA-256 digests in constant time, so neither their bytes nor their length
/// leak through timing.
#[derive(Clone, Default)]
pub struct Auth {
    digest: Option<[u8; 32]>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.digest.is_some() { "Auth(bearer)" } else { "Auth(open)" })
    }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::BearerToken;
    use tonic::service::Interceptor;

    #[test]
    fn token_table() {
        let cases: &[(Auth, Option<&str>, Result<(), &str>)] = &[
            (Auth::open(), None, Ok(())),
            (Auth::open(), Some("anything"), Ok(())),
            (Auth::bearer("s3cret"), Some("s3cret"), Ok(())),
            (Auth::bearer("s3cret"), Some("s3cret!"), Err("is wrong")),
            (Auth::bearer("s3cret"), Some(""), Err("is wrong")),
            (Auth::bearer("s3cret"), None, Err("requires a bearer token")),
        ];
        for (auth, token, want) in cases {
            let req = BearerToken::new(*token).unwrap().call(Request::new(())).unwrap();
            match (auth.clone().call(req), want) {
                (Ok(_), Ok(())) => {}
                (Err(s), Err(w)) => {
                    assert_eq!(s.code(), tonic::Code::Unauthenticated);
                    assert!(s.message().contains(w), "{token:?}: {}", s.message());
                }
                (got, want) => panic!("{auth:?} {token:?}: got {got:?}, want {want:?}"),
            }
        }
    }
}
