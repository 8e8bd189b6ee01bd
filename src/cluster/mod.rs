//! The processes (ranks) one training run is spread over, and the few collective operations the
//! trainer needs: an ordered fold, a gather and an agreement.
//!
//! A run on `P` ranks splits every global batch into the run's fixed shards
//! ([`crate::parallel::split`]; the count is recorded in train.json) and gives rank `r` the
//! contiguous block of shards `[r·S/P, (r+1)·S/P)`. Floating-point addition is not associative,
//! so the shards' gradients are added in **one fixed order whatever `P` is**: the fold
//! `((g₀ + g₁) + g₂) + …` that a single process computes. [`Cluster::add_in_rank_order`] runs it
//! across ranks: rank 0 adds its own shards and hands the partial sum to rank 1, which adds its
//! shards onto it, and so on, in pipelined chunks; the last rank's sums go back down the chain.
//! Each rank sends the gradients about twice, as in a ring all-reduce, plus a latency of one chunk
//! per rank, and every rank ends with the weights a single process would have, bit for bit. So a
//! run may stop on one cluster size and resume on another. [`Cluster::chain`], the same ordered
//! fold on whole messages, serves the small exchanges (gathers, agreements).
//!
//! One process (no launcher, or a launcher that started one) is [`Cluster::single`]: every
//! operation is then the identity and nothing is encoded. Several processes need the `mpi` cargo
//! feature (Open MPI through the `mpi` crate, the engine under Horovod); see [`Cluster::launch`].
//!
//! Every receive waits at most the cluster's timeout: a rank that has died or hung makes the others
//! stop with an error naming it, and [`Cluster::abort`] ends every rank of the job at once.

#[cfg(feature = "mpi")]
mod mpi_ranks;

use std::cell::Cell;
use std::ops::Range;
use std::time::Duration;

use crate::error::{GlowError, Result};

/// A value that can travel between ranks: bytes out, bytes in.
pub trait Wire: Sized {
    /// The value as bytes.
    fn encode(&self) -> Vec<u8>;
    /// The value `encode` wrote; `what` names the exchange in errors.
    fn decode(bytes: &[u8], what: &str) -> Result<Self>;
}

/// The ranks of one run: this process's rank among `size`.
pub struct Cluster {
    transport: Transport,
    /// Seconds spent in collectives so far (sending, receiving, waiting for other ranks).
    exchanging: Cell<f64>,
}

enum Transport {
    Single,
    #[cfg(feature = "mpi")]
    Mpi(mpi_ranks::MpiRanks),
}

/// The number of processes the launcher (mpirun, mpiexec or srun) started, read from the variables
/// each sets in every process's environment; `None` without a launcher.
pub fn launched_processes() -> Option<usize> {
    launched_processes_in(&environment)
}

/// This process's rank among those the launcher started on the same machine (its local rank,
/// from 0), read from the variable each launcher sets: Open MPI's `OMPI_COMM_WORLD_LOCAL_RANK`,
/// MPICH's `MPI_LOCALRANKID`, or Slurm's `SLURM_LOCALID` inside `srun`; `None` without a
/// launcher. GPUs are handed out by it ([`crate::device::DeviceName::open`]).
pub fn launched_local_rank() -> Option<usize> {
    launched_local_rank_in(&environment)
}

/// A variable of this process's environment, where it is set and Unicode.
fn environment(name: &str) -> Option<String> {
    std::env::var(name).ok()
}

/// The whole number in the variable `name` of the environment `var` reads.
fn number_in(var: &dyn Fn(&str) -> Option<String>, name: &str) -> Option<usize> {
    var(name)?.parse().ok()
}

/// [`launched_processes`] in the environment `var` reads.
fn launched_processes_in(var: &dyn Fn(&str) -> Option<String>) -> Option<usize> {
    let read = |name| number_in(var, name);
    read("OMPI_COMM_WORLD_SIZE")
        .or_else(|| read("PMI_SIZE"))
        .or_else(|| read("PMIX_SIZE"))
        .or_else(|| {
            var("SLURM_PROCID")?;
            read("SLURM_STEP_NUM_TASKS")
        })
}

/// [`launched_local_rank`] in the environment `var` reads.
fn launched_local_rank_in(var: &dyn Fn(&str) -> Option<String>) -> Option<usize> {
    let read = |name| number_in(var, name);
    read("OMPI_COMM_WORLD_LOCAL_RANK")
        .or_else(|| read("MPI_LOCALRANKID"))
        .or_else(|| {
            var("SLURM_PROCID")?;
            read("SLURM_LOCALID")
        })
}

impl Cluster {
    /// One process: rank 0 of 1.
    pub fn single() -> Cluster {
        Cluster {
            transport: Transport::Single,
            exchanging: Cell::new(0.0),
        }
    }

    /// The cluster this process was launched into: [`Cluster::single`] without a launcher, else
    /// the MPI world (the `mpi` feature), whose receives wait at most `timeout` for a rank. A
    /// launch of several processes by a build without the feature is an error (each process
    /// would otherwise train alone and write the same run directory).
    pub fn launch(timeout: Duration) -> Result<Cluster> {
        let Some(processes) = launched_processes() else {
            return Ok(Cluster::single());
        };
        #[cfg(feature = "mpi")]
        {
            let _ = processes;
            Ok(Cluster {
                transport: Transport::Mpi(mpi_ranks::MpiRanks::initialize(timeout)?),
                exchanging: Cell::new(0.0),
            })
        }
        #[cfg(not(feature = "mpi"))]
        {
            let _ = timeout;
            if processes > 1 {
                return Err(GlowError::Config(format!(
                    "this glowflow was built without MPI but was launched as {processes} \
                     processes; build it with `cargo build --release --features mpi` (needs the \
                     Debian packages openmpi-bin, libopenmpi-dev and libclang-dev)"
                )));
            }
            Ok(Cluster::single())
        }
    }

    /// This process's rank, from 0.
    pub fn rank(&self) -> usize {
        match &self.transport {
            Transport::Single => 0,
            #[cfg(feature = "mpi")]
            Transport::Mpi(ranks) => ranks.rank(),
        }
    }

    /// The number of ranks.
    pub fn size(&self) -> usize {
        match &self.transport {
            Transport::Single => 1,
            #[cfg(feature = "mpi")]
            Transport::Mpi(ranks) => ranks.size(),
        }
    }

    /// Whether this rank writes the run's files (rank 0 alone does).
    pub fn writes(&self) -> bool {
        self.rank() == 0
    }

    /// The block of `shards` shards this rank computes: `[r·S/P, (r+1)·S/P)`. It is the same size
    /// on every rank when `P` divides `S` (checked where a run starts).
    pub fn shard_block(&self, shards: usize) -> Range<usize> {
        let (rank, size) = (self.rank(), self.size());
        rank * shards / size..(rank + 1) * shards / size
    }

    /// Runs `step` once on every rank, in rank order: rank 0 gets `None`, rank `r` what rank
    /// `r - 1`'s step returned. Every rank returns the last rank's result. `what` names the
    /// exchange in errors.
    pub fn chain<T: Wire>(
        &self,
        what: &str,
        step: impl FnOnce(Option<T>) -> Result<T>,
    ) -> Result<T> {
        match &self.transport {
            Transport::Single => {
                let _ = what;
                step(None)
            }
            #[cfg(feature = "mpi")]
            Transport::Mpi(ranks) => self.timed(|| ranks.chain(what, step)),
        }
    }

    /// `collective()`, its time added to [`Cluster::exchange_seconds`].
    #[cfg(feature = "mpi")]
    fn timed<T>(&self, collective: impl FnOnce() -> T) -> T {
        let started = std::time::Instant::now();
        let result = collective();
        self.exchanging
            .set(self.exchanging.get() + started.elapsed().as_secs_f64());
        result
    }

    /// Seconds this rank has spent in collectives on several ranks (sending, receiving, waiting
    /// for other ranks and the additions of [`Cluster::add_in_rank_order`]); 0 on one process.
    pub fn exchange_seconds(&self) -> f64 {
        self.exchanging.get()
    }

    /// The sum of every rank's `parts` (at least one per rank, all of one length), added value by
    /// value in rank order and, within a rank, in the order given: `((p₀₀ + p₀₁) + p₁₀) + …`, the
    /// order one process adding all the parts would use. Every rank gets the sum.
    pub fn add_in_rank_order(&self, what: &str, parts: &[Vec<f32>]) -> Result<Vec<f32>> {
        match &self.transport {
            Transport::Single => {
                let _ = what;
                let (first, rest) = parts.split_first().expect("a rank has a part");
                let mut sum = first.clone();
                for part in rest {
                    add_into(&mut sum, part);
                }
                Ok(sum)
            }
            #[cfg(feature = "mpi")]
            Transport::Mpi(ranks) => self.timed(|| ranks.add_in_rank_order(what, parts)),
        }
    }

    /// Every rank's `mine` (f64 values), in rank order, on every rank.
    pub fn all_gather_f64(&self, what: &str, mine: &[f64]) -> Result<Vec<Vec<f64>>> {
        let bytes = mine.iter().flat_map(|v| v.to_le_bytes()).collect();
        Ok(self
            .all_gather(what, bytes)?
            .into_iter()
            .map(|part| {
                part.chunks_exact(8)
                    .map(|b| f64::from_le_bytes(b.try_into().expect("8 bytes")))
                    .collect()
            })
            .collect())
    }

    /// Every rank's `mine`, in rank order, on every rank.
    pub fn all_gather(&self, what: &str, mine: Vec<u8>) -> Result<Vec<Vec<u8>>> {
        self.chain(what, |before: Option<Gathered>| {
            let mut all = before.map(|g| g.0).unwrap_or_default();
            all.push(mine);
            Ok(Gathered(all))
        })
        .map(|g| g.0)
    }

    /// Whether `mine` holds on any rank (every rank gets the same answer).
    pub fn any(&self, what: &str, mine: bool) -> Result<bool> {
        Ok(self
            .all_gather(what, vec![u8::from(mine)])?
            .iter()
            .any(|flag| flag.first() == Some(&1)))
    }

    /// Ends every rank of the job (MPI_Abort) after this rank has reported `error`; with one
    /// process, returns.
    pub fn abort(&self, error: &GlowError) {
        match &self.transport {
            Transport::Single => {
                let _ = error;
            }
            #[cfg(feature = "mpi")]
            Transport::Mpi(ranks) => ranks.abort(error),
        }
    }
}

/// `sum += part`, value by value.
fn add_into(sum: &mut [f32], part: &[f32]) {
    for (s, g) in sum.iter_mut().zip(part) {
        *s += *g;
    }
}

/// Byte strings in rank order (what [`Cluster::all_gather`] passes along).
struct Gathered(Vec<Vec<u8>>);

impl Wire for Gathered {
    fn encode(&self) -> Vec<u8> {
        let mut bytes = Vec::new();
        for part in &self.0 {
            bytes.extend_from_slice(&(part.len() as u64).to_le_bytes());
            bytes.extend_from_slice(part);
        }
        bytes
    }

    fn decode(mut bytes: &[u8], what: &str) -> Result<Self> {
        let mut parts = Vec::new();
        while !bytes.is_empty() {
            let len = take_u64(&mut bytes, what)? as usize;
            parts.push(take(&mut bytes, len, what)?.to_vec());
        }
        Ok(Gathered(parts))
    }
}

/// The first `len` bytes of `bytes`, which move past them; too few is an error naming `what`.
fn take<'a>(bytes: &mut &'a [u8], len: usize, what: &str) -> Result<&'a [u8]> {
    if bytes.len() < len {
        return Err(GlowError::Config(format!(
            "the {what} message from another rank is truncated ({} bytes where {len} were \
             expected); are all ranks running the same glowflow?",
            bytes.len()
        )));
    }
    let (head, rest) = bytes.split_at(len);
    *bytes = rest;
    Ok(head)
}

/// A little-endian u64 taken from the front of `bytes`.
fn take_u64(bytes: &mut &[u8], what: &str) -> Result<u64> {
    let head = take(bytes, 8, what)?;
    Ok(u64::from_le_bytes(head.try_into().expect("8 bytes")))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An environment of the given variables only.
    fn with<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        |name| {
            vars.iter()
                .find(|(key, _)| *key == name)
                .map(|(_, value)| value.to_string())
        }
    }

    #[test]
    fn each_launcher_s_local_rank_is_read() {
        for (vars, local_rank) in [
            (&[][..], None),
            (&[("OMPI_COMM_WORLD_LOCAL_RANK", "3")][..], Some(3)),
            (&[("MPI_LOCALRANKID", "1")][..], Some(1)),
            (
                &[("SLURM_PROCID", "9"), ("SLURM_LOCALID", "2")][..],
                Some(2),
            ),
            // Slurm's variables count only inside a job step (SLURM_PROCID set), as for the size.
            (&[("SLURM_LOCALID", "0")][..], None),
            (&[("OMPI_COMM_WORLD_LOCAL_RANK", "x")][..], None),
            (
                &[
                    ("OMPI_COMM_WORLD_LOCAL_RANK", "1"),
                    ("MPI_LOCALRANKID", "0"),
                ][..],
                Some(1),
            ),
        ] {
            assert_eq!(launched_local_rank_in(&with(vars)), local_rank, "{vars:?}");
        }
    }

    #[test]
    fn each_launcher_s_process_count_is_read() {
        for (vars, processes) in [
            (&[][..], None),
            (&[("OMPI_COMM_WORLD_SIZE", "4")][..], Some(4)),
            (&[("PMI_SIZE", "2")][..], Some(2)),
            (&[("PMIX_SIZE", "8")][..], Some(8)),
            (
                &[("SLURM_PROCID", "0"), ("SLURM_STEP_NUM_TASKS", "16")][..],
                Some(16),
            ),
            (&[("SLURM_STEP_NUM_TASKS", "16")][..], None),
        ] {
            assert_eq!(launched_processes_in(&with(vars)), processes, "{vars:?}");
        }
    }
}
