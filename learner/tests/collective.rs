//! Conformance tests for every `Collective` this machine can run: the TCP ring at several
//! world sizes on loopback, and the single-rank group.

use std::net::TcpListener;
use std::time::Duration;

use r1_learner::collective::tcp::{RingConfig, TcpRing};
use r1_learner::collective::{Collective, CollectiveError, SingleRank};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs `f` on every rank of a ring of `world` ranks (threads on loopback).
fn on_ring<T: Send>(world: usize, f: impl Fn(&mut TcpRing) -> T + Sync) -> Vec<T> {
    let master = format!("127.0.0.1:{}", free_port());
    std::thread::scope(|s| {
        let handles: Vec<_> = (0..world)
            .map(|rank| {
                let (master, f) = (master.clone(), &f);
                s.spawn(move || {
                    let cfg = RingConfig {
                        rank,
                        world_size: world,
                        master_addr: master,
                        bind_addr: "127.0.0.1:0".into(),
                        timeout: Duration::from_secs(20),
                    };
                    f(&mut TcpRing::join(&cfg).unwrap())
                })
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

/// Rank r's input: distinct, exactly representable values, so sums are exact in any order.
fn input(rank: usize, len: usize) -> Vec<f32> {
    (0..len).map(|i| ((i * 7 + rank * 13) % 101) as f32 - 50.0).collect()
}

#[test]
fn all_reduce_sums_over_ranks() {
    // (world size, buffer length): lengths below, at and above the world size, uneven chunks.
    let cases = [(1, 5), (2, 0), (2, 1), (2, 2), (2, 1001), (3, 2), (3, 3), (3, 10), (4, 1 << 18), (5, 7)];
    for (world, len) in cases {
        let inputs: Vec<Vec<f32>> = (0..world).map(|r| input(r, len)).collect();
        let expected: Vec<f32> = (0..len).map(|i| inputs.iter().map(|x| x[i]).sum()).collect();
        let results = on_ring(world, |c| {
            let mut buf = input(c.rank(), len);
            c.all_reduce_sum(&mut buf).unwrap();
            // A second call on the same ring must work as well.
            let mut again = input(c.rank(), len);
            c.all_reduce_sum(&mut again).unwrap();
            assert_eq!(buf, again);
            buf
        });
        for (rank, got) in results.into_iter().enumerate() {
            assert_eq!(got, expected, "world {world}, len {len}, rank {rank}");
        }
    }
}

#[test]
fn broadcast_copies_the_root() {
    for (world, root, len) in [(1, 0, 4), (2, 0, 3), (2, 1, 3), (4, 2, 1000), (3, 0, 0)] {
        let results = on_ring(world, |c| {
            let mut buf = input(c.rank(), len);
            c.broadcast(&mut buf, root).unwrap();
            c.barrier().unwrap();
            buf
        });
        for got in results {
            assert_eq!(got, input(root, len), "world {world} root {root}");
        }
    }
}

#[test]
fn broadcast_bytes_copies_any_length_bit_for_bit() {
    // Lengths around the 4-byte word size, and bytes whose words are NaN patterns.
    for (world, root, len) in [(1, 0, 5), (2, 0, 0), (2, 1, 1), (3, 2, 7), (2, 0, 4096 + 3)] {
        let want: Vec<u8> = (0..len).map(|i| (i * 37 % 256) as u8 | 0x80).collect();
        let results = on_ring(world, |c| {
            let mut bytes = if c.rank() == root { want.clone() } else { vec![1, 2, 3] };
            c.broadcast_bytes(&mut bytes, root).unwrap();
            bytes
        });
        for got in results {
            assert_eq!(got, want, "world {world} root {root} len {len}");
        }
    }
}

#[test]
fn mismatched_calls_fail_loudly() {
    let results = on_ring(2, |c| {
        let mut buf = vec![1.0f32; if c.rank() == 0 { 4 } else { 6 }];
        c.all_reduce_sum(&mut buf).map(|_| ())
    });
    assert!(results.iter().any(|r| matches!(r, Err(CollectiveError::Protocol { .. }))), "{results:?}");
}

#[test]
fn bad_setup_is_rejected() {
    let cfg = |rank, world| RingConfig {
        rank,
        world_size: world,
        master_addr: "127.0.0.1:1".into(),
        bind_addr: "127.0.0.1:0".into(),
        timeout: Duration::from_millis(300),
    };
    assert!(matches!(TcpRing::join(&cfg(2, 2)), Err(CollectiveError::Setup(_))));
    assert!(matches!(TcpRing::join(&cfg(0, 0)), Err(CollectiveError::Setup(_))));
    // Nobody listens on the master address: the rendezvous times out with a clear error.
    let err = TcpRing::join(&cfg(1, 2)).unwrap_err();
    assert!(err.to_string().contains("rendezvous with 127.0.0.1:1 failed"), "{err}");
    let mut single = SingleRank;
    let mut buf = vec![3.0];
    single.all_reduce_sum(&mut buf).unwrap();
    assert_eq!(buf, vec![3.0]);
    assert!(single.broadcast(&mut buf, 1).is_err());
}
