//! The ranks of an MPI job (Open MPI through the `mpi` crate), talking point to point with
//! bounded waits.
//!
//! Only the main thread calls MPI (`MPI_THREAD_FUNNELED`); the worker threads compute shards.
//! Sends and receives are non-blocking requests polled until they complete or the timeout passes,
//! so a rank that died or hung is named in an error instead of blocking the others forever.

use std::time::{Duration, Instant};

use mpi::environment::Universe;
use mpi::point_to_point::{Destination, MatchedReceiveVec, Source};
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::Threading;

use super::Wire;
use crate::error::{GlowError, Result};

/// The tag of a partial result handed to the next rank.
const PASS: i32 = 1;
/// The tag of the final result sent back by the last rank.
const RESULT: i32 = 2;

/// This process's place in the MPI world.
pub struct MpiRanks {
    world: SimpleCommunicator,
    rank: usize,
    size: usize,
    timeout: Duration,
    /// Finalises MPI when dropped; declared last so the communicator goes first.
    _universe: Universe,
}

impl MpiRanks {
    /// Initialises MPI (once per process).
    pub fn initialize(timeout: Duration) -> Result<MpiRanks> {
        let (universe, _) =
            mpi::initialize_with_threading(Threading::Funneled).ok_or_else(|| {
                GlowError::Config("MPI was already initialised in this process".into())
            })?;
        let world = universe.world();
        Ok(MpiRanks {
            rank: world.rank() as usize,
            size: world.size() as usize,
            world,
            timeout,
            _universe: universe,
        })
    }

    pub fn rank(&self) -> usize {
        self.rank
    }

    pub fn size(&self) -> usize {
        self.size
    }

    /// See [`super::Cluster::chain`]: rank 0 → 1 → … → P-1 with the partial results, then P-1
    /// sends the result to every other rank.
    pub fn chain<T: Wire>(
        &self,
        what: &str,
        step: impl FnOnce(Option<T>) -> Result<T>,
    ) -> Result<T> {
        let before = match self.rank {
            0 => None,
            rank => Some(T::decode(&self.receive(rank - 1, PASS, what)?, what)?),
        };
        let mine = step(before)?;
        let last = self.size - 1;
        if self.rank < last {
            self.send(self.rank + 1, PASS, &mine.encode(), what)?;
            T::decode(&self.receive(last, RESULT, what)?, what)
        } else {
            let bytes = mine.encode();
            for rank in 0..last {
                self.send(rank, RESULT, &bytes, what)?;
            }
            Ok(mine)
        }
    }

    /// The error of a rank that waited `self.timeout` for `peer`.
    fn silent(&self, peer: usize, what: &str) -> GlowError {
        GlowError::Config(format!(
            "rank {peer} did not answer for {} s ({what}): it has died or hung; every rank \
             stops now. Continue the run from its last checkpoint with `glowflow train --resume \
             RUN` (on any number of ranks that divides its batch_shards)",
            self.timeout.as_secs()
        ))
    }

    /// Sends `bytes` to `peer`, waiting at most the timeout for it to take them.
    fn send(&self, peer: usize, tag: i32, bytes: &[u8], what: &str) -> Result<()> {
        let deadline = Instant::now() + self.timeout;
        let process = self.world.process_at_rank(peer as i32);
        mpi::request::scope(|scope| {
            let mut request = process.immediate_send_with_tag(scope, bytes, tag);
            let mut backoff = Backoff::new();
            loop {
                match request.test() {
                    Ok(_) => return Ok(()),
                    Err(pending) => request = pending,
                }
                if Instant::now() > deadline {
                    // The request cannot be completed or cancelled safely: end the job here.
                    self.abort(&self.silent(peer, what));
                }
                backoff.wait();
            }
        })
    }

    /// The next message tagged `tag` from `peer`, waiting at most the timeout.
    fn receive(&self, peer: usize, tag: i32, what: &str) -> Result<Vec<u8>> {
        let deadline = Instant::now() + self.timeout;
        let process = self.world.process_at_rank(peer as i32);
        let mut backoff = Backoff::new();
        loop {
            if let Some(message) = process.immediate_matched_probe_with_tag(tag) {
                return Ok(message.matched_receive_vec::<u8>().0);
            }
            if Instant::now() > deadline {
                return Err(self.silent(peer, what));
            }
            backoff.wait();
        }
    }

    /// Reports `error` as this rank's and ends every rank of the job.
    pub fn abort(&self, error: &GlowError) -> ! {
        eprintln!(
            "error: rank {} of {}: {error}; aborting all ranks",
            self.rank, self.size
        );
        self.world.abort(1)
    }
}

/// Polling intervals that grow from 10 µs to 1 ms, so that a quick answer is seen at once and a
/// long wait (a slow step on another rank) costs little CPU.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Backoff {
        Backoff(Duration::from_micros(10))
    }

    fn wait(&mut self) {
        std::thread::sleep(self.0);
        self.0 = (self.0 * 2).min(Duration::from_millis(1));
    }
}
