//! The checks of a run launched on several ranks, made before any training so that a bad launch
//! is one clear error instead of a hang or silently different weights: the ranks divide the
//! run's shards, run the same glowflow with the same configs, and see the same run directory.
//! An evaluation's ranks must hold the same weights and test images.
//! Also where each rank computes ([`placements`]), for rank 0 to tell.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::Path;

use burn::tensor::Device;
use rand::Rng;

use super::config::TrainConfig;
use super::eval::TestBatches;
use crate::cluster::{launched_local_rank, Cluster};
use crate::error::{GlowError, Result};
use crate::io::atomic::write_atomic;
use crate::io::latent_file::model_fingerprint;
use crate::model::config::GlowConfig;
use crate::model::glow::Glow;

/// The file rank 0 writes into the run directory for the others to find.
const TOKEN_FILE: &str = ".launch-token";

/// Checks the launch of `train` (its `batch_shards` resolved) in `run` on `cluster`; nothing to
/// check on one rank.
pub fn check_launch(
    cluster: &Cluster,
    run: &Path,
    model: &GlowConfig,
    train: &TrainConfig,
) -> Result<()> {
    let size = cluster.size();
    if size == 1 {
        return Ok(());
    }
    if !train.batch_shards.is_multiple_of(size) {
        return Err(GlowError::Config(format!(
            "the run's {} gradient shards (batch_shards in train.json) cannot be shared by {size} \
             ranks: launch a number of ranks that divides {0} (each computes the same number \
             of shards, so that every cluster size gives the same weights)",
            train.batch_shards
        )));
    }
    check_same_binary(cluster)?;
    check_same_everywhere(
        cluster,
        "model and training config",
        configs_text(model, train)?.into_bytes(),
        |first, rank, theirs| {
            format!(
                "give every rank the same command line; rank 0 has {} and rank {rank} has {}",
                String::from_utf8_lossy(first),
                String::from_utf8_lossy(theirs)
            )
        },
    )?;
    check_shared_directory(cluster, run)
}

/// Checks the launch of an evaluation of `model` on `test` on `cluster`: every rank must run the
/// same glowflow on the same weights and the same test images, batches and noise, or the figures
/// would mix models or datasets. Nothing to check on one rank.
pub fn check_evaluation_launch(cluster: &Cluster, model: &Glow, test: TestBatches) -> Result<()> {
    if cluster.size() == 1 {
        return Ok(());
    }
    check_same_binary(cluster)?;
    check_same_everywhere(
        cluster,
        "model",
        model_fingerprint(model).into_bytes(),
        |_, _, _| "give every rank the same --model (on a shared file system)".to_string(),
    )?;
    let data = test.data;
    let read = (test.limit, test.batch_size, test.seed);
    check_same_everywhere(
        cluster,
        "test set",
        fingerprint((&data.shape, &data.pixels, &data.labels, read)),
        |_, _, _| {
            "give every rank the same dataset (--data), --images, --batch-size and --seed"
                .to_string()
        },
    )
}

/// Where each rank of `cluster` computes, in rank order, as `rank R on HOST (local rank L):
/// DEVICE` (burn's description of the device, which names the GPU's index): the machine and the
/// GPU each process took ([`crate::device::DeviceName::open`]).
pub fn placements(cluster: &Cluster, device: &Device) -> Result<Vec<String>> {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|name| name.trim().to_string())
        .unwrap_or_else(|_| "this machine".into());
    let local_rank = launched_local_rank().unwrap_or(0);
    let mine = format!(
        "rank {} on {host} (local rank {local_rank}): {device:?}",
        cluster.rank()
    );
    let all = cluster.all_gather("where the ranks compute", mine.into_bytes())?;
    Ok(all
        .iter()
        .map(|bytes| String::from_utf8_lossy(bytes).into_owned())
        .collect())
}

/// Fails on every rank, naming the ranks whose `mine` differs from rank 0's; `fix(rank 0's,
/// r, rank r's)` for the first such rank `r` says what to do.
fn check_same_everywhere(
    cluster: &Cluster,
    what: &str,
    mine: Vec<u8>,
    fix: impl FnOnce(&[u8], usize, &[u8]) -> String,
) -> Result<()> {
    let all = cluster.all_gather(what, mine)?;
    let differing: Vec<usize> = (1..all.len()).filter(|&r| all[r] != all[0]).collect();
    let Some(&first) = differing.first() else {
        return Ok(());
    };
    let ranks: Vec<String> = differing.iter().map(|r| r.to_string()).collect();
    Err(GlowError::Config(format!(
        "rank(s) {} run with a different {what} from rank 0's: {}",
        ranks.join(", "),
        fix(&all[0], first, &all[first])
    )))
}

/// Fails on every rank where some rank runs another glowflow build than rank 0.
fn check_same_binary(cluster: &Cluster) -> Result<()> {
    check_same_everywhere(
        cluster,
        "glowflow binary",
        binary_fingerprint()?,
        |_, _, _| "install the same glowflow build on every machine".to_string(),
    )
}

/// A hash of this process's executable, so that ranks running different builds are caught.
fn binary_fingerprint() -> Result<Vec<u8>> {
    let path = std::env::current_exe()
        .map_err(|e| GlowError::Config(format!("cannot locate the glowflow executable: {e}")))?;
    let bytes = std::fs::read(&path).map_err(|e| GlowError::io(&path, e))?;
    Ok(fingerprint(bytes))
}

/// A hash of `value`, as the bytes the ranks compare.
fn fingerprint(value: impl Hash) -> Vec<u8> {
    let mut hasher = DefaultHasher::new();
    value.hash(&mut hasher);
    hasher.finish().to_le_bytes().to_vec()
}

/// The configs as one line of JSON each.
fn configs_text(model: &GlowConfig, train: &TrainConfig) -> Result<String> {
    let json = |value: serde_json::Result<String>| {
        value.map_err(|e| GlowError::Config(format!("cannot describe the configs: {e}")))
    };
    Ok(format!(
        "model {} training {}",
        json(serde_json::to_string(model))?,
        json(serde_json::to_string(train))?
    ))
}

/// Rank 0 writes a random token into `run`; every rank must read the same token there, or the
/// run directory is not one shared directory (each machine would write its own run). The check
/// leaves the file system as it found it: the directories it created for the token are removed
/// again, so that a launch that fails later (its data missing, say) leaves nothing behind.
fn check_shared_directory(cluster: &Cluster, run: &Path) -> Result<()> {
    let path = run.join(TOKEN_FILE);
    let created: Vec<&Path> = match cluster.writes() {
        true => run.ancestors().take_while(|dir| !dir.exists()).collect(),
        false => Vec::new(),
    };
    let token = if cluster.writes() {
        std::fs::create_dir_all(run).map_err(|e| GlowError::io(run, e))?;
        let token = format!("{:016x}", rand::rng().random::<u64>());
        write_atomic(&path, token.as_bytes())?;
        token.into_bytes()
    } else {
        Vec::new()
    };
    let tokens = cluster.all_gather("run directory token", token)?;
    let seen = std::fs::read(&path).unwrap_or_default() == tokens[0];
    let sees = cluster.all_gather("run directory check", vec![u8::from(seen)])?;
    if cluster.writes() {
        std::fs::remove_file(&path).map_err(|e| GlowError::io(&path, e))?;
        for dir in created {
            // Left alone if something else appeared in it meanwhile.
            let _ = std::fs::remove_dir(dir);
        }
    }
    let blind: Vec<String> = (0..sees.len())
        .filter(|&r| sees[r] != [1])
        .map(|r| r.to_string())
        .collect();
    if blind.is_empty() {
        Ok(())
    } else {
        Err(GlowError::Config(format!(
            "the run directory {} is not shared: rank(s) {} do not see the file rank 0 wrote \
             there; put the run on a file system every machine mounts at the same path (NFS, \
             Lustre, ...) and give that path",
            run.display(),
            blind.join(", ")
        )))
    }
}
