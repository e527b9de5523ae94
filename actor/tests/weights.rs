//! Weight streaming end to end over gRPC: a clean transfer, and transfers the network
//! spoils (cut short, a flipped bit in a chunk, a file that no longer matches its
//! manifest) are detected, retried or refused, and never returned as weights.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use r1_actor::weights::{self, FetchPolicy, WeightClient, WeightError, fetch};
use r1_learner::publish::Publisher;
use r1_proto::v1 as pb;
use r1_proto::v1::weight_service_server::{WeightService, WeightServiceServer};
use tokio_stream::StreamExt;
use tonic::{Request, Response, Status};

/// How the faulty server spoils the first `times` fetches.
#[derive(Clone, Copy, Debug)]
enum Fault {
    None,
    /// The stream ends after this many chunks.
    Cut(usize),
    /// The chunk with this index has one bit flipped (its CRC no longer matches).
    FlipBit(usize),
    /// The chunk's data and CRC are both replaced: only the SHA-256 can tell.
    Forge(usize),
}

/// A publisher behind a server that spoils the first `times` fetches with `fault`.
#[derive(Clone)]
struct Faulty {
    inner: Publisher,
    fault: Fault,
    times: usize,
    fetches: Arc<AtomicUsize>,
}

/// `data` with its first bit flipped.
fn flip_first_bit(data: &[u8]) -> Vec<u8> {
    let mut d = data.to_vec();
    d[0] ^= 1;
    d
}

type ChunkStream = Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::WeightChunk, Status>> + Send>>;

#[tonic::async_trait]
impl WeightService for Faulty {
    async fn manifest(&self, r: Request<pb::ManifestRequest>) -> Result<Response<pb::WeightManifest>, Status> {
        self.inner.manifest(r).await
    }

    type FetchStream = ChunkStream;

    async fn fetch(&self, r: Request<pb::FetchWeightsRequest>) -> Result<Response<ChunkStream>, Status> {
        let n = self.fetches.fetch_add(1, Ordering::SeqCst);
        let stream = self.inner.fetch(r).await?.into_inner();
        let fault = if n < self.times { self.fault } else { Fault::None };
        let mut index = 0;
        let spoiled = stream.filter_map(move |c| {
            let i = index;
            index += 1;
            let mut c = match c {
                Ok(c) => c,
                Err(e) => return Some(Err(e)),
            };
            match fault {
                Fault::Cut(k) if i >= k => return None,
                Fault::FlipBit(k) if i == k => c.data = flip_first_bit(&c.data).into(),
                Fault::Forge(k) if i == k => {
                    c.data = flip_first_bit(&c.data).into();
                    c.crc32 = crc32fast::hash(&c.data);
                }
                _ => {}
            }
            Some(Ok(c))
        });
        Ok(Response::new(Box::pin(spoiled)))
    }
}

async fn serve(fault: Fault, times: usize, payload: &[u8]) -> (WeightClient, Arc<AtomicUsize>) {
    let publisher = Publisher::new(7, 2, 1000);
    publisher.publish(3, payload.to_vec(), "float32");
    let fetches = Arc::new(AtomicUsize::new(0));
    let svc = Faulty { inner: publisher, fault, times, fetches: fetches.clone() };
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(WeightServiceServer::new(svc))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let client = weights::client(&format!("http://{addr}"), None).unwrap();
    (client, fetches)
}

fn payload() -> Vec<u8> {
    (0..10_500u32).map(|i| (i.wrapping_mul(2654435761) >> 24) as u8).collect()
}

#[tokio::test]
async fn transfers_are_verified_resumed_or_refused() {
    let policy = FetchPolicy { attempts: 3, backoff: std::time::Duration::from_millis(1), ..Default::default() };
    // (fault, spoiled fetches, Ok(fetch calls) or Err(what the error says))
    let cases: &[(Fault, usize, Result<usize, &str>)] = &[
        (Fault::None, 0, Ok(1)),
        (Fault::Cut(4), 1, Ok(2)),
        (Fault::Cut(0), 2, Ok(3)),
        (Fault::FlipBit(2), 1, Ok(2)),
        (Fault::Forge(5), 1, Ok(2)),
        (Fault::Cut(3), 3, Err("the stream ended at byte 9000 of 10500")),
        (Fault::FlipBit(0), 3, Err("fails its CRC-32")),
        (Fault::Forge(10), 3, Err("does not match the manifest")),
    ];
    let want = payload();
    for &(fault, times, ref expect) in cases {
        let (mut client, fetches) = serve(fault, times, &want).await;
        let got = fetch(&mut client, 7, 3, &policy).await;
        match (got, expect) {
            (Ok(f), Ok(calls)) => {
                assert_eq!(f.bytes, want, "{fault:?}: the bytes must be the published ones");
                assert_eq!(fetches.load(Ordering::SeqCst), *calls, "{fault:?}: fetch calls");
            }
            (Err(WeightError::GaveUp { last, .. }), Err(msg)) => assert!(last.contains(msg), "{fault:?}: {last}"),
            (got, want) => panic!("{fault:?}: got {got:?}, want {want:?}"),
        }
    }
}

#[tokio::test]
async fn unknown_and_dropped_versions_are_named() {
    let publisher = Publisher::new(7, 2, 1000);
    for v in 1..=3 {
        publisher.publish(v, vec![v as u8; 10], "float32");
    }
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(publisher.service())
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let mut client = weights::client(&format!("http://{addr}"), None).unwrap();
    let quick = FetchPolicy {
        attempts: 1,
        wait: std::time::Duration::from_millis(50),
        backoff: std::time::Duration::from_millis(1),
    };
    let cases: &[(u64, u64, Result<u8, &str>)] = &[
        (7, 3, Ok(3)),
        (7, 2, Ok(2)),
        (7, 1, Err("was dropped")),
        (7, 9, Err("not published yet")),
        (8, 3, Err("publishes run 7, not run 8")),
    ];
    for &(run, version, ref expect) in cases {
        match (fetch(&mut client, run, version, &quick).await, expect) {
            (Ok(f), Ok(byte)) => assert_eq!(f.bytes, vec![*byte; 10]),
            (Err(e), Err(msg)) => assert!(e.to_string().contains(msg), "run {run} v{version}: {e}"),
            (got, want) => panic!("run {run} v{version}: got {got:?}, want {want:?}"),
        }
    }
}

/// With the cluster's token set, the weight service answers only calls that carry it.
#[tokio::test]
async fn a_token_guards_the_weights() {
    let publisher = Publisher::new(7, 2, 1000);
    publisher.publish(1, vec![1u8; 10], "float32");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(publisher.authenticated(r1_coordinator::service::Auth::bearer("s3cret")))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    let quick = FetchPolicy {
        attempts: 1,
        wait: std::time::Duration::from_millis(50),
        backoff: std::time::Duration::from_millis(1),
    };
    let cases: &[(Option<&str>, Result<(), &str>)] = &[
        (None, Err("requires a bearer token")),
        (Some("guess"), Err("bearer token is wrong")),
        (Some("s3cret"), Ok(())),
    ];
    for &(token, ref expect) in cases {
        let mut client = weights::client(&format!("http://{addr}"), token).unwrap();
        match (fetch(&mut client, 7, 1, &quick).await, expect) {
            (Ok(f), Ok(())) => assert_eq!(f.bytes, vec![1u8; 10]),
            (Err(e), Err(msg)) => assert!(e.to_string().contains(msg), "{token:?}: {e}"),
            (got, want) => panic!("{token:?}: got {got:?}, want {want:?}"),
        }
    }
}

/// An actor waiting for a version keeps waiting when the learner dies in the middle of its
/// long-poll (the connection is reset) and comes back: it fetches from the new one.
#[test]
fn a_learner_restart_during_the_wait_is_waited_out() {
    let main = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let addr = main.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).unwrap().local_addr().unwrap();
    let serve = |rt: &tokio::runtime::Runtime, publisher: Publisher| {
        let listener = rt.block_on(tokio::net::TcpListener::bind(addr)).unwrap();
        rt.spawn(
            tonic::transport::Server::builder()
                .add_service(publisher.service())
                .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
        );
    };
    // The first learner has published nothing yet; it dies with the actor's call in flight.
    let first = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    serve(&first, Publisher::new(7, 2, 1000));
    let policy = FetchPolicy {
        attempts: 2,
        wait: std::time::Duration::from_secs(20),
        backoff: std::time::Duration::from_millis(20),
    };
    let fetching = main.spawn(async move {
        let mut client = weights::client(&format!("http://{addr}"), None).unwrap();
        fetch(&mut client, 7, 1, &policy).await
    });
    std::thread::sleep(std::time::Duration::from_millis(500));
    first.shutdown_background();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let restarted = Publisher::new(7, 2, 1000);
    restarted.publish(1, vec![9u8; 10], "float32");
    serve(&main, restarted);
    let got = main.block_on(fetching).unwrap().expect("the fetch outlives the learner's restart");
    assert_eq!(got.bytes, vec![9u8; 10]);
}
