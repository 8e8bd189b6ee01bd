//! What the image cache holds entries of ([`Cacheable`]): a folder's images, and one split of
//! the downsampled ImageNet's archives.

use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use super::{hash_file, Cacheable};
use crate::data::dataset::{ImageDataset, Split};
use crate::data::downsampled_imagenet::SplitArchives;
use crate::data::folder::{self, BadImage, FolderLoad, FolderOptions, Listing, Sorted};
use crate::data::pixels::Pixels;
use crate::error::Result;

/// The images of a folder, decoded as the options say.
pub(super) struct FolderImages<'a> {
    /// The folder, named as the caller named it.
    pub dir: &'a Path,
    /// Its canonical path.
    pub canonical: PathBuf,
    /// Its image files.
    pub listing: Listing,
    /// How they are decoded.
    pub options: &'a FolderOptions,
}

impl Cacheable for FolderImages<'_> {
    type Load = FolderLoad;

    fn folder(&self) -> &Path {
        &self.canonical
    }

    fn archives(&self) -> Option<String> {
        None
    }

    /// The options: the size, the channels (`u64::MAX` for none) and the handling of bad images.
    fn hash_kind(&self, hash: &mut Sha256) {
        let bad = match self.options.on_bad_image {
            BadImage::Error => 0u64,
            BadImage::Skip => 1,
        };
        for value in [self.options.size, self.options.channels, Some(bad as usize)] {
            hash.update(value.map_or(u64::MAX, |v| v as u64).to_le_bytes());
        }
    }

    fn hash_files(&self, hash: &mut Sha256) {
        hash.update((self.listing.images.len() as u64).to_le_bytes());
        for (path, label) in &self.listing.images {
            hash_file(hash, self.dir, path, *label);
        }
    }

    fn images(&self) -> usize {
        self.listing.images.len()
    }

    /// Known when the options fix both the size and the channels.
    fn bytes_needed(&self) -> Option<u64> {
        let (size, channels) = (self.options.size?, self.options.channels?);
        Some((size * size * channels) as u64 * self.listing.images.len() as u64)
    }

    fn decode(&self, sink: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<Sorted> {
        self.listing
            .decode(&self.canonical, self.options, folder::BAD_IMAGE_HELP, sink)
    }

    fn load(&self, sorted: Sorted, pixels: Pixels) -> FolderLoad {
        self.listing.load(sorted, pixels)
    }

    fn decode_in_memory(self) -> Result<FolderLoad> {
        self.listing
            .decode_in_memory(self.dir, self.options, folder::BAD_IMAGE_HELP)
    }
}

/// The archives of one split of the downsampled ImageNet, their labels read.
pub(super) struct ArchiveImages {
    /// The canonical path of the directory they were found in.
    pub canonical: PathBuf,
    /// Their split.
    pub split: Split,
    /// The archives.
    pub archives: SplitArchives,
}

impl Cacheable for ArchiveImages {
    type Load = ImageDataset;

    fn folder(&self) -> &Path {
        &self.canonical
    }

    /// The archives' file names ([`SplitArchives::names`]).
    fn archives(&self) -> Option<String> {
        Some(self.archives.names())
    }

    /// The split: an entry of the training archives replaces an older one of them, never the
    /// test archive's.
    fn hash_kind(&self, hash: &mut Sha256) {
        hash.update(b"downsampled-imagenet\0");
        hash.update(format!("{:?}", self.split).as_bytes());
    }

    fn hash_files(&self, hash: &mut Sha256) {
        hash.update((self.archives.archives.len() as u64).to_le_bytes());
        for (path, _) in &self.archives.archives {
            hash_file(hash, &self.archives.dir, path, None);
        }
    }

    fn images(&self) -> usize {
        self.archives.images()
    }

    /// The archives' size: that of their pixels and a little more (labels, headers) when they
    /// are stored, as `numpy.savez` and image-net.org's downloads store them; less than the
    /// pixels when they are deflated (a cache that fills up then leaves the images in memory).
    fn bytes_needed(&self) -> Option<u64> {
        let sizes = self
            .archives
            .archives
            .iter()
            .map(|(path, _)| std::fs::metadata(path).map_or(0, |m| m.len()));
        Some(sizes.sum())
    }

    fn decode(&self, sink: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<Sorted> {
        Ok(Sorted {
            shape: self.archives.decode(sink)?,
            skipped: Vec::new(),
        })
    }

    fn load(&self, sorted: Sorted, pixels: Pixels) -> ImageDataset {
        self.archives.dataset(sorted.shape, pixels)
    }

    fn decode_in_memory(self) -> Result<ImageDataset> {
        self.archives.decode_in_memory()
    }
}
