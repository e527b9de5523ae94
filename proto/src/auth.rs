//! The server side of the bearer token that [`crate::client::BearerToken`] sends: every r1
//! gRPC server (coordinator, learner weight service) checks calls with [`Auth`] as a tonic
//! interceptor, and the coordinator's HTTP pages go through [`Auth::check_read`], one
//! function for `/`, `/metrics` and `/api/...`.
//!
//! When a token is configured every gRPC call must carry it; without one (loopback) every call
//! is allowed. The HTTP pages are public unless [`Auth::private_reads`] made them need the
//! token or a read token (the coordinator config's `public_read` and `read_token`). Tokens are
//! compared as SHA-256 digests in constant time, so neither their bytes nor their length leak
//! through timing. Limits: no TLS, so a token on an untrusted network is only as safe as the
//! network.

use sha2::{Digest, Sha256};
use tonic::codegen::http::{HeaderMap, StatusCode, header};
use tonic::{Request, Status};

type Digest32 = [u8; 32];

/// Requires `authorization: Bearer <token>` on every gRPC call when a token is set, and on
/// every HTTP page when reads are private.
#[derive(Clone, Default)]
pub struct Auth {
    digest: Option<Digest32>,
    /// `None`: the pages are public; otherwise the tokens that may read them.
    readers: Option<Vec<Digest32>>,
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match (&self.digest, &self.readers) {
            (None, _) => "Auth(open)",
            (Some(_), None) => "Auth(bearer)",
            (Some(_), Some(_)) => "Auth(bearer, private reads)",
        })
    }
}

/// Why a request was refused: no bearer token, or a wrong one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    Missing,
    Wrong,
}

impl Refusal {
    fn message(self) -> &'static str {
        match self {
            Refusal::Missing => {
                "this server requires a bearer token; send `authorization: Bearer <token>` with the cluster's token"
            }
            Refusal::Wrong => "the bearer token is wrong; use the cluster's token (the one the coordinator was given)",
        }
    }
}

fn digest(token: &str) -> Digest32 {
    Sha256::digest(token.as_bytes()).into()
}

/// Whether `sent` (an `authorization` header value) carries one of `allowed`, compared in
/// constant time against each.
fn check(sent: Option<&str>, allowed: &[Digest32]) -> Result<(), Refusal> {
    let Some(token) = sent.and_then(|v| v.strip_prefix("Bearer ")) else {
        return Err(Refusal::Missing);
    };
    let got = digest(token);
    let mut ok = false;
    for want in allowed {
        let diff = got.iter().zip(want).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        ok |= diff == 0;
    }
    match ok {
        true => Ok(()),
        false => Err(Refusal::Wrong),
    }
}

impl Auth {
    /// No token: every call is allowed (loopback `r1ctl up`).
    pub fn open() -> Auth {
        Auth::default()
    }

    /// Calls must carry `token`; the HTTP pages stay public.
    pub fn bearer(token: &str) -> Auth {
        Auth { digest: Some(digest(token)), readers: None }
    }

    /// The HTTP pages need the call token or `read_token` (which reads the pages only).
    pub fn private_reads(mut self, read_token: Option<&str>) -> Auth {
        self.readers = Some(self.digest.into_iter().chain(read_token.map(digest)).collect());
        self
    }

    /// The check every HTTP page goes through: `Ok` when reads are public or `headers` carry
    /// a token that may read, else the `401` to answer (boxed: it is the rare path).
    pub fn check_read(&self, headers: &HeaderMap) -> Result<(), Box<(StatusCode, HeaderMap, String)>> {
        let Some(readers) = &self.readers else {
            return Ok(());
        };
        let sent = headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok());
        check(sent, readers).map_err(|refusal| {
            let mut h = HeaderMap::new();
            h.insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("static header"));
            Box::new((StatusCode::UNAUTHORIZED, h, refusal.message().to_string()))
        })
    }
}

impl tonic::service::Interceptor for Auth {
    fn call(&mut self, request: Request<()>) -> Result<Request<()>, Status> {
        let Some(want) = &self.digest else {
            return Ok(request);
        };
        let sent = request.metadata().get("authorization").and_then(|v| v.to_str().ok());
        match check(sent, std::slice::from_ref(want)) {
            Ok(()) => Ok(request),
            Err(refusal) => Err(Status::unauthenticated(refusal.message())),
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
