//! `r1_proto::client` on its own: which codes are retried, how long `retry` keeps going (time is
//! paused, so the backoff is real but instant), the bearer header, and `connect`'s errors. The
//! reconnect after a coordinator restart is tested against a real coordinator in
//! `coordinator/tests/client_restart.rs`.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use r1_proto::client::{self, BearerToken, ClientConfig, ClientError, RetryPolicy};
use tonic::service::Interceptor;
use tonic::{Code, Status};

/// A status as tonic's client makes it from a transport failure: the code plus a local source.
fn local(code: Code, source: impl std::error::Error + Send + Sync + 'static) -> Status {
    let mut s = Status::new(code, source.to_string());
    s.set_source(Arc::new(source));
    s
}

#[test]
fn transient_codes() {
    let io = || std::io::Error::new(std::io::ErrorKind::ConnectionReset, "connection reset");
    // (status, idempotent, retried)
    let cases: Vec<(Status, bool, bool)> = vec![
        (Status::unavailable("down"), false, true),
        (Status::resource_exhausted("queue full"), false, true),
        (Status::aborted("conflict"), false, true),
        (Status::deadline_exceeded("slow"), true, true),
        (Status::deadline_exceeded("slow"), false, false),
        (local(Code::Cancelled, tonic::TimeoutExpired(())), true, true),
        (local(Code::Cancelled, tonic::TimeoutExpired(())), false, false),
        (local(Code::Unknown, io()), false, true),
        (local(Code::Cancelled, io()), false, true),
        // The same codes sent by the server (no local source) are answers, not transport trouble.
        (Status::unknown("handler failed"), true, false),
        (Status::cancelled("cancelled by the server"), true, false),
        (Status::invalid_argument("bad spec"), true, false),
        (Status::unauthenticated("wrong token"), true, false),
        (Status::not_found("run 9"), true, false),
        (Status::failed_precondition("finished"), true, false),
        (Status::already_exists("key reused"), true, false),
        (Status::out_of_range("too large"), true, false),
        (Status::internal("db"), true, false),
    ];
    for (status, idempotent, want) in cases {
        assert_eq!(client::is_transient(&status, idempotent), want, "{status:?} idempotent={idempotent}");
    }
}

/// Runs `retry` over a call that fails with `codes` in turn and then succeeds; returns the
/// result, the number of calls and the (paused) time it took.
async fn check_retry(policy: RetryPolicy, codes: &[Code]) -> (Result<u32, Status>, u32, Duration) {
    let calls = AtomicU32::new(0);
    let start = tokio::time::Instant::now();
    let result = client::retry("Test", &policy, || {
        let n = calls.fetch_add(1, Ordering::SeqCst);
        let code = codes.get(n as usize).copied();
        async move {
            match code {
                Some(code) => Err(Status::new(code, format!("failure {n}"))),
                None => Ok(n),
            }
        }
    })
    .await;
    (result, calls.load(Ordering::SeqCst), start.elapsed())
}

#[tokio::test(start_paused = true)]
async fn retry_repeats_transient_failures_and_returns_others_at_once() {
    let policy = RetryPolicy::default();
    let (r, calls, _) =
        check_retry(policy.clone(), &[Code::Unavailable, Code::ResourceExhausted, Code::Unavailable]).await;
    assert_eq!((r.unwrap(), calls), (3, 4));

    let (r, calls, waited) = check_retry(policy.clone(), &[Code::InvalidArgument]).await;
    assert_eq!((r.unwrap_err().code(), calls, waited), (Code::InvalidArgument, 1, Duration::ZERO));

    // A deadline is retried only for idempotent calls.
    let (r, calls, _) = check_retry(policy.clone(), &[Code::DeadlineExceeded]).await;
    assert_eq!((r.unwrap_err().code(), calls), (Code::DeadlineExceeded, 1));
    let (r, calls, _) = check_retry(RetryPolicy::idempotent(), &[Code::DeadlineExceeded]).await;
    assert_eq!((r.unwrap(), calls), (1, 2));
}

#[tokio::test(start_paused = true)]
async fn retry_backs_off_exponentially_and_gives_up_after_max_elapsed() {
    let policy = RetryPolicy {
        initial_delay: Duration::from_millis(100),
        max_delay: Duration::from_secs(1),
        max_elapsed: Duration::from_secs(10),
        idempotent: false,
    };
    let always = vec![Code::Unavailable; 1000];
    let (r, calls, waited) = check_retry(policy.clone(), &always).await;
    let status = r.unwrap_err();
    assert_eq!(status.code(), Code::Unavailable);
    assert!(waited <= policy.max_elapsed, "no retry starts past max_elapsed: waited {waited:?}");
    // Delays with jitter lie in [d, 2d): 0.1..0.2, 0.2..0.4, 0.4..0.8, then 1..2 s capped at 1 s
    // plus jitter. Ten seconds hold between 7 and 13 attempts.
    assert!((7..=13).contains(&calls), "{calls} calls in {waited:?}");
    assert!(waited >= Duration::from_secs(7), "the backoff waited only {waited:?}");
    let message = status.message();
    assert!(message.starts_with("Test: failure"), "{message}");
    assert!(message.contains(&format!("gave up after {calls} attempts")), "{message}");
}

#[test]
fn bearer_token_is_added_only_when_set() {
    let header = |token: Option<&str>| {
        let mut interceptor = BearerToken::new(token).unwrap();
        let request = interceptor.call(tonic::Request::new(())).unwrap();
        request.metadata().get("authorization").map(|v| v.to_str().unwrap().to_string())
    };
    assert_eq!(header(Some("s3cret")), Some("Bearer s3cret".into()));
    assert_eq!(header(None), None);
    assert!(matches!(BearerToken::new(Some("new\nline")), Err(ClientError::BadToken)));
    assert_eq!(ClientConfig::new("http://x:1").with_token(Some(String::new())).token, None, "an empty token is none");
    let shown = format!("{:?}", ClientConfig::new("http://x:1").with_token(Some("s3cret".into())));
    assert!(!shown.contains("s3cret"), "Debug hides the token: {shown}");
}

#[test]
fn defaults() {
    let cfg = ClientConfig::new("http://127.0.0.1:7070");
    assert_eq!(
        (cfg.connect_timeout, cfg.request_timeout, cfg.max_message_bytes, cfg.token),
        (Duration::from_secs(5), Duration::from_secs(60), 256 << 20, None)
    );
}

#[tokio::test]
async fn connect_names_a_bad_url() {
    for url in ["not a url", "127.0.0.1:7070", ""] {
        match client::connect(&ClientConfig::new(url)).await {
            Err(ClientError::BadUrl { url: got, .. }) => assert_eq!(got, url),
            other => panic!("{url}: {:?}", other.map(|_| ())),
        }
    }
}

#[tokio::test]
async fn connect_retries_until_connect_timeout_then_says_where_it_failed() {
    // A port that was free a moment ago: connections are refused at once.
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let cfg = ClientConfig {
        connect_timeout: Duration::from_millis(600),
        ..ClientConfig::new(format!("http://127.0.0.1:{port}"))
    };
    let start = std::time::Instant::now();
    let err = client::connect(&cfg).await.map(|_| ()).unwrap_err();
    let took = start.elapsed();
    let ClientError::Unreachable { attempts, .. } = &err else { panic!("{err}") };
    assert!(*attempts >= 3, "backoff from 50 ms makes several attempts in 600 ms: {err}");
    assert!(took < Duration::from_millis(3000), "gave up late: {took:?}");
    let text = err.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")) && text.contains("connect_timeout"), "{text}");
}
