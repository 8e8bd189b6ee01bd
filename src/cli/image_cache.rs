//! `glowflow image-cache`: what the image cache holds, and removing it.

use std::path::PathBuf;

use clap::Args;
use glowflow::data::image_cache::{
    contents, folder_and_archives, of_this_process, remove_entries, ImageCache, CACHE_ENV,
};
use glowflow::GlowError;

use super::Context;

/// `glowflow image-cache` (its help is the doc comment of `Command::ImageCache`).
#[derive(Args)]
pub struct ImageCacheCommand {
    /// Remove the entries (all of them, or --folder's), then list what is left. Processes that
    /// have an entry open keep reading it; the next load of its folder decodes it again.
    #[arg(long)]
    clear: bool,
    /// With --clear: remove only the entries of this image folder, or of the downsampled
    /// ImageNet's archives in it (any name of it, or the path of one deleted since).
    #[arg(long, requires = "clear")]
    folder: Option<PathBuf>,
}

impl ImageCacheCommand {
    pub fn run(self, _ctx: &Context) -> Result<(), GlowError> {
        let ImageCache::In(dir) = of_this_process() else {
            println!(
                "the image cache is off ({CACHE_ENV}=off): image folders and archives are decoded into memory"
            );
            return Ok(());
        };
        if self.clear {
            let removed = remove_entries(dir, self.folder.as_deref())?;
            println!("removed {} files from {}", removed.len(), dir.display());
        }
        let held = contents(dir)?;
        println!(
            "image cache {} (set {CACHE_ENV} to move it, or to off):",
            dir.display()
        );
        for entry in &held.entries {
            let [c, h, w] = entry.shape;
            let skipped = match entry.skipped {
                0 => String::new(),
                n => format!(" ({n} skipped)"),
            };
            let gone = match entry.folder.exists() {
                true => "",
                false => ", its folder is gone (the next entry written removes it)",
            };
            println!(
                "  {}: {} images of {c}x{h}x{w}{skipped}, {:.2} GB{gone}",
                folder_and_archives(&entry.folder, entry.archives.as_deref()),
                entry.images,
                entry.bytes as f64 / 1e9
            );
        }
        for (file, bytes) in &held.older {
            println!(
                "  {}: an older glowflow's entry, unused, {:.2} GB (the next entry written \
                 removes it)",
                file.display(),
                *bytes as f64 / 1e9
            );
        }
        for (file, reason) in &held.damaged {
            println!("  {}: not usable here ({reason})", file.display());
        }
        let total: u64 = held.entries.iter().map(|e| e.bytes).sum();
        println!(
            "{} entries, {:.2} GB",
            held.entries.len(),
            total as f64 / 1e9
        );
        Ok(())
    }
}
