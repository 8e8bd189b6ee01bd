//! The ranks of an MPI job (Open MPI through the `mpi` crate), talking point to point with
//! bounded waits.
//!
//! Only the main thread calls MPI (`MPI_THREAD_FUNNELED`); the worker threads compute shards.
//! Sends and receives are non-blocking requests polled until they complete or the timeout passes,
//! so a rank that died or hung is named in an error instead of blocking the others forever.

use std::time::{Duration, Instant};

use mpi::datatype::Equivalence;
use mpi::environment::Universe;
use mpi::point_to_point::{Destination, Source};
use mpi::request::{Request, Scope};
use mpi::topology::{Communicator, SimpleCommunicator};
use mpi::Threading;

use super::{add_into, Wire};
use crate::error::{GlowError, Result};

/// The tag of a partial result handed to the next rank.
const PASS: i32 = 1;
/// The tag of the final result sent back by the last rank.
const RESULT: i32 = 2;
/// The values per message of [`MpiRanks::add_in_rank_order`] (1 MiB of f32).
const CHUNK: usize = 1 << 18;

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
            rank => Some(T::decode(&self.receive::<u8>(rank - 1, PASS, what)?, what)?),
        };
        let mine = step(before)?;
        let last = self.size - 1;
        if self.rank < last {
            self.send(self.rank + 1, PASS, &mine.encode(), what);
            T::decode(&self.receive::<u8>(last, RESULT, what)?, what)
        } else {
            let bytes = mine.encode();
            for rank in 0..last {
                self.send(rank, RESULT, &bytes, what);
            }
            Ok(mine)
        }
    }

    /// See [`super::Cluster::add_in_rank_order`]. The vectors travel in chunks of
    /// [`CHUNK`] values, pipelined: rank `r` adds chunk `k` onto what rank `r - 1` sent and
    /// passes it on while it receives chunk `k + 1`; the last rank's totals go back down the
    /// chain the same way. Every value is still added in rank order, and the time is about
    /// `2·(n + (P - 1)·CHUNK)` values' transfer instead of `2·(P - 1)·n`.
    pub fn add_in_rank_order(&self, what: &str, parts: &[Vec<f32>]) -> Result<Vec<f32>> {
        let (rank, last) = (self.rank, self.size - 1);
        let (first, rest) = parts.split_first().expect("a rank has a part");
        let n = first.len();
        let mut sum = vec![0.0f32; n];
        let mut total = vec![0.0f32; if rank == last { 0 } else { n }];
        // Sends are in flight inside the scope and cannot be abandoned: any failure there ends
        // the job.
        let fatal = |result: Result<()>| {
            if let Err(error) = result {
                self.abort(&error);
            }
        };
        mpi::request::scope(|scope| {
            let mut sends = Vec::new();
            for (k, chunk) in sum.chunks_mut(CHUNK).enumerate() {
                let at = k * CHUNK..k * CHUNK + chunk.len();
                // Rank 0 starts from its first part, every other rank from what it receives.
                let onto = if rank == 0 {
                    chunk.copy_from_slice(&first[at.clone()]);
                    rest
                } else {
                    fatal(self.receive_into(rank - 1, PASS, chunk, what));
                    parts
                };
                for part in onto {
                    add_into(chunk, &part[at.clone()]);
                }
                let chunk: &[f32] = chunk;
                // The last rank's sums are the totals: they start down the chain at once.
                let (peer, tag) = if rank < last {
                    (rank + 1, PASS)
                } else {
                    (rank - 1, RESULT)
                };
                sends.push((
                    peer,
                    self.world
                        .process_at_rank(peer as i32)
                        .immediate_send_with_tag(scope, chunk, tag),
                ));
            }
            if rank < last {
                for chunk in total.chunks_mut(CHUNK) {
                    fatal(self.receive_into(rank + 1, RESULT, chunk, what));
                    if rank > 0 {
                        let chunk: &[f32] = chunk;
                        sends.push((
                            rank - 1,
                            self.world
                                .process_at_rank(rank as i32 - 1)
                                .immediate_send_with_tag(scope, chunk, RESULT),
                        ));
                    }
                }
            }
            // The peers are receiving now: poll without sleeping (each test moves the data on).
            let deadline = Instant::now() + self.timeout;
            for (peer, request) in sends {
                self.complete(request, deadline, peer, what, std::thread::yield_now);
            }
        });
        Ok(if rank == last { sum } else { total })
    }

    /// Receives the next message tagged `tag` from `peer` into `buf`, which it must fill exactly.
    fn receive_into(&self, peer: usize, tag: i32, buf: &mut [f32], what: &str) -> Result<()> {
        let values = self.receive::<f32>(peer, tag, what)?;
        if values.len() != buf.len() {
            return Err(GlowError::Config(format!(
                "rank {peer} sent {} values of the {what} where {} were expected; are all ranks \
                 running the same glowflow and model?",
                values.len(),
                buf.len()
            )));
        }
        buf.copy_from_slice(&values);
        Ok(())
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
    fn send(&self, peer: usize, tag: i32, bytes: &[u8], what: &str) {
        let deadline = Instant::now() + self.timeout;
        let process = self.world.process_at_rank(peer as i32);
        mpi::request::scope(|scope| {
            let request = process.immediate_send_with_tag(scope, bytes, tag);
            let mut backoff = Backoff::new();
            self.complete(request, deadline, peer, what, || backoff.wait());
        });
    }

    /// The next message tagged `tag` from `peer`, waiting at most the timeout for it to start
    /// and to arrive whole (a rank stopped half-way through sending is caught too).
    fn receive<T: Equivalence + Default + Clone>(
        &self,
        peer: usize,
        tag: i32,
        what: &str,
    ) -> Result<Vec<T>> {
        let deadline = Instant::now() + self.timeout;
        let process = self.world.process_at_rank(peer as i32);
        let mut backoff = Backoff::new();
        let (message, status) = loop {
            if let Some(probed) = process.immediate_matched_probe_with_tag(tag) {
                break probed;
            }
            if Instant::now() > deadline {
                return Err(self.silent(peer, what));
            }
            backoff.wait();
        };
        let count = status.count(T::equivalent_datatype()).max(0) as usize;
        let mut values = vec![T::default(); count];
        mpi::request::scope(|scope| {
            let request = message.immediate_matched_receive_into(scope, &mut values[..]);
            // The message is arriving: poll without sleeping (each test moves it on).
            self.complete(request, deadline, peer, what, std::thread::yield_now);
        });
        Ok(values)
    }

    /// Polls `request` (a send to or receive from `peer`), calling `pause` between tests, until it
    /// completes; past `deadline` it ends the job, since a request can be neither completed nor
    /// safely cancelled.
    fn complete<'a, B: ?Sized, S: Scope<'a>>(
        &self,
        mut request: Request<'a, B, S>,
        deadline: Instant,
        peer: usize,
        what: &str,
        mut pause: impl FnMut(),
    ) {
        loop {
            match request.test() {
                Ok(_) => return,
                Err(pending) => request = pending,
            }
            if Instant::now() > deadline {
                self.abort(&self.silent(peer, what));
            }
            pause();
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

/// Polling intervals that grow from 10 µs to 100 µs, so that a quick answer is seen at once and
/// a long wait (a slow step on another rank) costs little CPU. Open MPI moves data only inside MPI
/// calls, so the cap also bounds how long pending sends sit still.
struct Backoff(Duration);

impl Backoff {
    fn new() -> Backoff {
        Backoff(Duration::from_micros(10))
    }

    fn wait(&mut self) {
        std::thread::sleep(self.0);
        self.0 = (self.0 * 2).min(Duration::from_micros(100));
    }
}
