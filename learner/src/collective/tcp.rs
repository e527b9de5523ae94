//! Ring all-reduce over TCP.
//!
//! Rendezvous: rank 0 listens on the master address; every other rank connects, sends its
//! rank and the address of its own ring listener, and receives the table of all ranks'
//! listeners. Then each rank connects to its successor and accepts its predecessor, so the
//! ranks form a ring of N connections.
//!
//! All-reduce is the bandwidth-optimal ring: the buffer is cut into N chunks; in N−1
//! reduce-scatter steps each rank sends one chunk to its successor while receiving and adding
//! another from its predecessor, after which rank r holds the full sum of chunk (r+1) mod N;
//! N−1 all-gather steps then pass the finished chunks around. Each rank sends and receives
//! 2(N−1)/N of the buffer, whatever N is. Sending runs on a scoped thread while the rank
//! receives, so large chunks cannot deadlock on full socket buffers.
//!
//! Every message carries a header (operation counter, step, length) checked on receipt: a
//! rank that fell out of step fails loudly instead of adding the wrong numbers. Sums are
//! exact for the order they are taken in; that order depends on the chunk, so results may
//! differ from a single-rank sum in the last bits.
//!
//! Not covered: authentication or encryption of the ring (run it inside a trusted network,
//! e.g. a Kubernetes namespace with a NetworkPolicy), and recovery from a lost rank — a lost
//! rank fails the step on every rank, and the fleet restarts from its last checkpoint.

use std::io::{BufReader, BufWriter, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use super::{Collective, CollectiveError, chunk_bounds};

const MAGIC: u32 = 0x5231_5247; // "R1RG"

/// One rank of a TCP ring.
pub struct TcpRing {
    rank: usize,
    world: usize,
    to_next: Option<BufWriter<TcpStream>>,
    from_prev: Option<BufReader<TcpStream>>,
    op: u64,
}

impl std::fmt::Debug for TcpRing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpRing").field("rank", &self.rank).field("world", &self.world).finish()
    }
}

/// How a rank joins the ring.
#[derive(Debug, Clone)]
pub struct RingConfig {
    pub rank: usize,
    pub world_size: usize,
    /// Where rank 0 listens for the rendezvous (`host:port`).
    pub master_addr: String,
    /// The address this rank's ring listener binds (`host:0` picks a free port). Other ranks
    /// connect to it, so on a cluster it must be the pod's reachable address.
    pub bind_addr: String,
    /// How long to wait for the other ranks to appear.
    pub timeout: Duration,
}

fn io(rank: usize, op: &'static str) -> impl Fn(std::io::Error) -> CollectiveError {
    move |source| CollectiveError::Io { rank, op, source }
}

fn write_u64(w: &mut impl Write, x: u64) -> std::io::Result<()> {
    w.write_all(&x.to_le_bytes())
}

fn read_u64(r: &mut impl Read) -> std::io::Result<u64> {
    let mut b = [0u8; 8];
    r.read_exact(&mut b)?;
    Ok(u64::from_le_bytes(b))
}

fn connect_retry(addr: &str, deadline: Instant) -> std::io::Result<TcpStream> {
    let mut wait = Duration::from_millis(10);
    loop {
        let attempt = addr
            .to_socket_addrs()
            .and_then(|mut a| a.next().ok_or_else(|| std::io::Error::other("address resolves to nothing")))
            .and_then(|a| TcpStream::connect_timeout(&a, Duration::from_secs(5)))
            .and_then(|s| {
                // Connecting to a loopback port nobody listens on yet can pick that very port
                // as the source and connect to itself (TCP simultaneous open); that socket
                // would then hold the port the peer is about to listen on. Drop it and retry.
                if s.local_addr()? == s.peer_addr()? {
                    return Err(std::io::Error::new(std::io::ErrorKind::ConnectionRefused, "connected to itself"));
                }
                Ok(s)
            });
        match attempt {
            Ok(s) => return Ok(s),
            Err(e) if Instant::now() >= deadline => return Err(e),
            Err(_) => {
                std::thread::sleep(wait);
                wait = (wait * 2).min(Duration::from_millis(500));
            }
        }
    }
}

fn accept_until(listener: &TcpListener, deadline: Instant) -> std::io::Result<TcpStream> {
    listener.set_nonblocking(true)?;
    loop {
        match listener.accept() {
            Ok((s, _)) => {
                s.set_nonblocking(false)?;
                return Ok(s);
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if Instant::now() >= deadline {
                    return Err(std::io::Error::new(std::io::ErrorKind::TimedOut, "no peer connected in time"));
                }
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(e),
        }
    }
}

fn send_str(w: &mut impl Write, s: &str) -> std::io::Result<()> {
    write_u64(w, s.len() as u64)?;
    w.write_all(s.as_bytes())
}

fn recv_str(r: &mut impl Read) -> std::io::Result<String> {
    let n = read_u64(r)? as usize;
    if n > 4096 {
        return Err(std::io::Error::other(format!("address of {n} bytes is implausible")));
    }
    let mut b = vec![0u8; n];
    r.read_exact(&mut b)?;
    String::from_utf8(b).map_err(std::io::Error::other)
}

impl TcpRing {
    /// Joins the ring; blocks until every rank has joined or `timeout` passes.
    pub fn join(cfg: &RingConfig) -> Result<Self, CollectiveError> {
        let (rank, world) = (cfg.rank, cfg.world_size);
        if world == 0 || rank >= world {
            return Err(CollectiveError::Setup(format!("rank {rank} is outside a world of {world}")));
        }
        if world == 1 {
            return Ok(Self { rank, world, to_next: None, from_prev: None, op: 0 });
        }
        let deadline = Instant::now() + cfg.timeout;
        let rdv = |source| CollectiveError::Rendezvous { addr: cfg.master_addr.clone(), source };
        let ring = TcpListener::bind(&cfg.bind_addr).map_err(io(rank, "bind"))?;
        let mine: SocketAddr = ring.local_addr().map_err(io(rank, "bind"))?;
        let mut table = vec![String::new(); world];
        table[rank] = mine.to_string();
        if rank == 0 {
            let master = TcpListener::bind(&cfg.master_addr).map_err(rdv)?;
            let mut peers = Vec::with_capacity(world - 1);
            for _ in 1..world {
                let mut s = accept_until(&master, deadline).map_err(rdv)?;
                let r = read_u64(&mut s).map_err(rdv)? as usize;
                let addr = recv_str(&mut s).map_err(rdv)?;
                if r == 0 || r >= world || !table[r].is_empty() {
                    return Err(CollectiveError::Protocol {
                        rank,
                        message: format!("a peer claimed rank {r} twice or out of range"),
                    });
                }
                table[r] = addr;
                peers.push(s);
            }
            for mut s in peers {
                for a in &table {
                    send_str(&mut s, a).map_err(rdv)?;
                }
            }
        } else {
            let mut s = connect_retry(&cfg.master_addr, deadline).map_err(rdv)?;
            write_u64(&mut s, rank as u64).map_err(rdv)?;
            send_str(&mut s, &table[rank]).map_err(rdv)?;
            for slot in table.iter_mut() {
                *slot = recv_str(&mut s).map_err(rdv)?;
            }
        }
        // Connect to the successor; accept the predecessor. Even ranks connect first so the
        // two directions never wait on each other.
        let next_addr = table[(rank + 1) % world].clone();
        let connect = || -> Result<TcpStream, CollectiveError> {
            let mut s = connect_retry(&next_addr, deadline).map_err(io(rank, "connect to successor"))?;
            write_u64(&mut s, rank as u64).map_err(io(rank, "connect to successor"))?;
            Ok(s)
        };
        let accept = || -> Result<TcpStream, CollectiveError> {
            let mut s = accept_until(&ring, deadline).map_err(io(rank, "accept predecessor"))?;
            let prev = read_u64(&mut s).map_err(io(rank, "accept predecessor"))? as usize;
            if prev != (rank + world - 1) % world {
                return Err(CollectiveError::Protocol {
                    rank,
                    message: format!("expected predecessor {}, got rank {prev}", (rank + world - 1) % world),
                });
            }
            Ok(s)
        };
        let (next, prev) = if rank % 2 == 0 {
            let n = connect()?;
            (n, accept()?)
        } else {
            let p = accept()?;
            (connect()?, p)
        };
        for s in [&next, &prev] {
            s.set_nodelay(true).map_err(io(rank, "configure socket"))?;
            s.set_read_timeout(Some(cfg.timeout.max(Duration::from_secs(60)))).map_err(io(rank, "configure socket"))?;
        }
        Ok(Self {
            rank,
            world,
            to_next: Some(BufWriter::with_capacity(1 << 20, next)),
            from_prev: Some(BufReader::with_capacity(1 << 20, prev)),
            op: 0,
        })
    }

    /// Sends `send` to the successor while receiving `recv.len()` floats from the
    /// predecessor.
    fn exchange(&mut self, step: u64, send: &[f32], recv: &mut [f32]) -> Result<(), CollectiveError> {
        let (rank, op) = (self.rank, self.op);
        let w = self.to_next.as_mut().expect("world > 1");
        let r = self.from_prev.as_mut().expect("world > 1");
        std::thread::scope(|scope| {
            let sender = scope.spawn(move || send_msg(w, op, step, send));
            let received = recv_msg(r, rank, op, step, recv);
            let sent = sender.join().expect("sender thread panicked").map_err(io(rank, "send"));
            received.and(sent)
        })
    }
}

/// Writes one message: magic, operation counter, step, length, then the floats.
fn send_msg(w: &mut impl Write, op: u64, step: u64, data: &[f32]) -> std::io::Result<()> {
    w.write_all(&MAGIC.to_le_bytes())?;
    write_u64(w, op)?;
    write_u64(w, step)?;
    write_u64(w, data.len() as u64)?;
    w.write_all(bytemuck_bytes(data))?;
    w.flush()
}

/// Reads one message into `out`, checking that it is the one this rank expects.
fn recv_msg(r: &mut impl Read, rank: usize, op: u64, step: u64, out: &mut [f32]) -> Result<(), CollectiveError> {
    let mut m = [0u8; 4];
    r.read_exact(&mut m).map_err(io(rank, "receive"))?;
    let o = read_u64(r).map_err(io(rank, "receive"))?;
    let s = read_u64(r).map_err(io(rank, "receive"))?;
    let n = read_u64(r).map_err(io(rank, "receive"))?;
    if u32::from_le_bytes(m) != MAGIC || o != op || s != step || n as usize != out.len() {
        return Err(CollectiveError::Protocol {
            rank,
            message: format!(
                "out of step: expected op {op} step {step} with {} floats, got op {o} step {s} with {n}; every rank must make the same collective calls with equal buffer lengths",
                out.len()
            ),
        });
    }
    let mut bytes = vec![0u8; out.len() * 4];
    r.read_exact(&mut bytes).map_err(io(rank, "receive"))?;
    for (x, c) in out.iter_mut().zip(bytes.chunks_exact(4)) {
        *x = f32::from_le_bytes([c[0], c[1], c[2], c[3]]);
    }
    Ok(())
}

fn bytemuck_bytes(x: &[f32]) -> &[u8] {
    // SAFETY: f32 has no padding or invalid bit patterns; the slice stays borrowed.
    unsafe { std::slice::from_raw_parts(x.as_ptr().cast::<u8>(), std::mem::size_of_val(x)) }
}

impl Collective for TcpRing {
    fn rank(&self) -> usize {
        self.rank
    }

    fn world_size(&self) -> usize {
        self.world
    }

    fn all_reduce_sum(&mut self, buf: &mut [f32]) -> Result<(), CollectiveError> {
        let n = self.world;
        if n == 1 {
            return Ok(());
        }
        self.op += 1;
        let b = chunk_bounds(buf.len(), n);
        let chunk = |i: usize| b[i % n]..b[i % n + 1];
        let mut incoming = vec![0.0f32; b.windows(2).map(|w| w[1] - w[0]).max().unwrap_or(0)];
        let r = self.rank;
        // Reduce-scatter: at step s, send chunk (r - s), receive and add chunk (r - s - 1).
        for s in 0..n - 1 {
            let (out, inp) = (chunk(r + n - s), chunk(r + 2 * n - s - 1));
            let send = buf[out].to_vec();
            let recv = &mut incoming[..inp.len()];
            self.exchange(s as u64, &send, recv)?;
            for (x, y) in buf[inp].iter_mut().zip(recv.iter()) {
                *x += *y;
            }
        }
        // All-gather: at step s, send finished chunk (r + 1 - s), receive chunk (r - s).
        for s in 0..n - 1 {
            let (out, inp) = (chunk(r + 1 + n - s), chunk(r + n - s));
            let send = buf[out].to_vec();
            let recv = &mut incoming[..inp.len()];
            self.exchange((n + s) as u64, &send, recv)?;
            buf[inp].copy_from_slice(recv);
        }
        Ok(())
    }

    fn broadcast(&mut self, buf: &mut [f32], root: usize) -> Result<(), CollectiveError> {
        let n = self.world;
        if root >= n {
            return Err(CollectiveError::Setup(format!("broadcast root {root} does not exist in a group of {n}")));
        }
        if n == 1 {
            return Ok(());
        }
        self.op += 1;
        // Pass the buffer around the ring from the root; the root's predecessor stops it.
        let pos = (self.rank + n - root) % n;
        let (rank, op) = (self.rank, self.op);
        if pos > 0 {
            let r = self.from_prev.as_mut().expect("world > 1");
            recv_msg(r, rank, op, pos as u64 - 1, buf)?;
        }
        if pos < n - 1 {
            let w = self.to_next.as_mut().expect("world > 1");
            send_msg(w, op, pos as u64, buf).map_err(io(rank, "send"))?;
        }
        Ok(())
    }
}
