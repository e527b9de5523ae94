//! Collectives for data-parallel learner ranks: the operations a fleet needs to act as one
//! learner — sum gradients over ranks before every optimizer step, broadcast weights from
//! rank 0, and wait for each other.
//!
//! [`Collective`] is implemented by [`tcp::TcpRing`] (a ring all-reduce over TCP, for CPU
//! machines, tests and clusters without GPUs) and by NCCL through cudarc on GPUs. The same
//! conformance tests (`learner/tests/collective.rs`) run against every implementation the
//! machine can run.
//!
//! Buffers are flat `f32` slices; [`crate::flat`] turns a module's gradients into one and back.

pub mod tcp;

/// Why a collective failed. Every failure is fatal to the step: a rank that cannot reach its
/// peers must not apply a partial update.
#[derive(Debug, thiserror::Error)]
pub enum CollectiveError {
    #[error("rendezvous with {addr} failed: {source}; check that rank 0 is up and the address is reachable")]
    Rendezvous {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("rank {rank}: peer I/O failed during {op}: {source}")]
    Io {
        rank: usize,
        op: &'static str,
        #[source]
        source: std::io::Error,
    },
    #[error("rank {rank}: {message}")]
    Protocol { rank: usize, message: String },
    #[error("invalid collective setup: {0}")]
    Setup(String),
}

/// One rank's handle on a group of `world_size` ranks. Every rank must make the same calls
/// in the same order with buffers of the same length.
pub trait Collective: Send {
    fn rank(&self) -> usize;
    fn world_size(&self) -> usize;
    /// Replaces `buf` on every rank with the element-wise sum over all ranks.
    fn all_reduce_sum(&mut self, buf: &mut [f32]) -> Result<(), CollectiveError>;
    /// Replaces `buf` on every rank with `root`'s `buf`.
    fn broadcast(&mut self, buf: &mut [f32], root: usize) -> Result<(), CollectiveError>;
    /// Returns once every rank has called it.
    fn barrier(&mut self) -> Result<(), CollectiveError> {
        let mut x = [0.0f32];
        self.all_reduce_sum(&mut x)
    }
    /// Replaces `bytes` on every rank with `root`'s `bytes` (any length). The bytes travel
    /// as the bit patterns of `f32` words, which a broadcast copies and never computes on.
    fn broadcast_bytes(&mut self, bytes: &mut Vec<u8>, root: usize) -> Result<(), CollectiveError> {
        let n = bytes.len() as u64;
        let mut len = [f32::from_bits(n as u32), f32::from_bits((n >> 32) as u32)];
        self.broadcast(&mut len, root)?;
        let n = (len[0].to_bits() as u64 | ((len[1].to_bits() as u64) << 32)) as usize;
        let mut words: Vec<f32> = if self.rank() == root {
            bytes
                .chunks(4)
                .map(|c| {
                    let mut w = [0u8; 4];
                    w[..c.len()].copy_from_slice(c);
                    f32::from_bits(u32::from_le_bytes(w))
                })
                .collect()
        } else {
            vec![0.0; n.div_ceil(4)]
        };
        self.broadcast(&mut words, root)?;
        if self.rank() != root {
            *bytes = words.iter().flat_map(|w| w.to_bits().to_le_bytes()).take(n).collect();
        }
        Ok(())
    }
}

/// The trivial group of one rank: every operation is the identity. What a single learner uses.
#[derive(Debug, Default, Clone, Copy)]
pub struct SingleRank;

impl Collective for SingleRank {
    fn rank(&self) -> usize {
        0
    }
    fn world_size(&self) -> usize {
        1
    }
    fn all_reduce_sum(&mut self, _buf: &mut [f32]) -> Result<(), CollectiveError> {
        Ok(())
    }
    fn broadcast(&mut self, _buf: &mut [f32], root: usize) -> Result<(), CollectiveError> {
        if root != 0 {
            return Err(CollectiveError::Setup(format!("broadcast root {root} does not exist in a group of 1")));
        }
        Ok(())
    }
}

/// The boundaries of `world` nearly equal chunks of `len` elements: chunk `i` is
/// `bounds[i]..bounds[i + 1]`.
pub(crate) fn chunk_bounds(len: usize, world: usize) -> Vec<usize> {
    (0..=world).map(|i| i * len / world).collect()
}
