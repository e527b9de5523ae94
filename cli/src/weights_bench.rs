//! `r1ctl bench weights`: how fast a policy version travels from learner rank 0 to an actor
//! over the weight stream (chunking, CRC-32 and SHA-256 included), against the plain TCP
//! throughput of the same loopback on the same bytes: the limit the stream is measured by.

use std::io::{Read, Write};
use std::time::Instant;

use anyhow::Result;
use clap::Args;
use r1_actor::weights::{FetchPolicy, fetch};
use r1_learner::publish::{DEFAULT_CHUNK_BYTES, Publisher};
use rand::{RngCore, SeedableRng};
use serde_json::json;

#[derive(Args, Debug)]
pub struct WeightsArgs {
    /// Size of the published file, in MiB (Qwen2.5-0.5B in bf16 is about 950)
    #[arg(long, default_value_t = 256)]
    mib: usize,
    /// Chunk size of the stream, in KiB
    #[arg(long, default_value_t = DEFAULT_CHUNK_BYTES / 1024)]
    chunk_kib: usize,
    /// Transfers timed (the best is reported)
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    #[arg(long)]
    json: bool,
}

pub fn run(a: WeightsArgs) -> Result<()> {
    let bytes = a.mib << 20;
    let mut payload = vec![0u8; bytes];
    rand_chacha::ChaCha8Rng::seed_from_u64(0).fill_bytes(&mut payload);
    let tcp = best(a.repeats, || raw_tcp(&payload))?;
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let publisher = Publisher::new(1, 1, a.chunk_kib.max(1) << 10);
    publisher.publish(1, payload, "float32");
    let listener = rt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))?;
    let addr = listener.local_addr()?;
    crate::serve::serve_weights(rt.handle(), &publisher, listener, None);
    let mut client = {
        let _in_runtime = rt.enter();
        r1_actor::weights::client(&format!("http://{addr}"), None).map_err(anyhow::Error::msg)?
    };
    let stream = best(a.repeats, || {
        let f = rt.block_on(fetch(&mut client, 1, 1, &FetchPolicy::default()))?;
        anyhow::ensure!(f.bytes.len() == bytes, "fetched {} bytes of {bytes}", f.bytes.len());
        Ok(f.seconds)
    })?;
    let mb_s = |s: f64| bytes as f64 / 1e6 / s;
    if a.json {
        println!(
            "{}",
            json!({"mib": a.mib, "chunk_kib": a.chunk_kib, "stream_mb_s": mb_s(stream), "tcp_mb_s": mb_s(tcp), "ratio": tcp / stream})
        );
    } else {
        println!(
            "{} MiB: weight stream {:.0} MB/s, raw loopback TCP {:.0} MB/s; the stream runs at {:.2}x the loopback limit",
            a.mib,
            mb_s(stream),
            mb_s(tcp),
            tcp / stream
        );
    }
    Ok(())
}

fn best(repeats: usize, mut f: impl FnMut() -> Result<f64>) -> Result<f64> {
    let mut best = f64::INFINITY;
    for _ in 0..repeats.max(1) {
        best = best.min(f()?);
    }
    Ok(best)
}

/// Seconds to send `payload` through one loopback TCP connection and read it back whole.
fn raw_tcp(payload: &[u8]) -> Result<f64> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = listener.local_addr()?;
    let n = payload.len();
    let reader = std::thread::spawn(move || -> std::io::Result<Vec<u8>> {
        let (mut s, _) = listener.accept()?;
        let mut buf = Vec::with_capacity(n);
        s.read_to_end(&mut buf)?;
        Ok(buf)
    });
    let start = Instant::now();
    let mut s = std::net::TcpStream::connect(addr)?;
    s.write_all(payload)?;
    drop(s);
    let got = reader.join().expect("reader thread")?;
    let secs = start.elapsed().as_secs_f64();
    anyhow::ensure!(got.len() == n, "loopback lost bytes");
    Ok(secs)
}
