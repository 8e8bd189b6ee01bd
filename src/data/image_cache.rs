//! The image cache: a folder dataset decoded once into a file that later loads, and every
//! process on the machine, map instead of decoding the images again; likewise each split of the
//! downsampled ImageNet's NumPy archives ([`super::downsampled_imagenet`]).
//!
//! Decoding a folder costs minutes for a large dataset (ImageNet 64x64: 1.28 million PNGs, 15.7
//! GB of pixels), and each process of a multi-process run held its own copy of the pixels, so 8
//! ranks on one machine needed 8 times the memory. Through the cache the first process decodes
//! the images straight into a file, never holding them all in memory, and every process then
//! maps that file read-only: the kernel loads its pages as batches read them and shares them
//! between the processes. A dataset larger than the machine's memory still trains, from the
//! page cache and the disk. The archives' pixels are read out of the zips into an entry the same
//! way, the labels from the archives at every load.
//!
//! **Entries.** An entry is named after a SHA-256 of everything its pixels depend on: the cache
//! format's [`VERSION`], the folder's canonical path, the decoding options ([`FolderOptions`])
//! or the archives' split, and every image file's (archive's) path in the folder, label, size
//! and modification time. An image added, removed, renamed or rewritten (new size or time)
//! therefore makes a new entry, and writing it removes the folder's older entries (those with the
//! same folder and options, or split) and the entries of folders that no longer exist. A file
//! replaced by another of the same size with its time kept (`cp -p`, `touch -r`) is not noticed:
//! remove the folder's entry then (`glowflow image-cache --clear --folder DIR`,
//! [`remove_entries`]). [`VERSION`] changes whenever glowflow decodes images differently; the
//! entries of an older version are removed with the others an entry replaces.
//!
//! **Layout** (little-endian): the magic `GLOWIMGS`, the format version (u32), 4 reserved bytes,
//! the number of pixel bytes (u64) and of description bytes (u64); the pixels from byte
//! [`PIXELS_AT`] (NCHW, as [`super::dataset::ImageDataset::pixels`]), then the description, JSON
//! (`Description`): the folder, the archives of a split, the images' shape and count, and the
//! skipped images with the reason. The files and labels are the folder's listing less the
//! skipped images, or the archives' labels.
//!
//! **Writes** go to a temporary that is renamed into place once complete and fsynced, so an
//! entry that exists is whole; they happen under an exclusive lock on `DIR/cache.lock`, so
//! processes that load the same folder at once decode it once: the first writes the entry, the
//! others wait and map it. An entry that fails its checks is decoded again, with a note. When
//! the cache cannot be used (no space, no permission), the images are decoded into memory as
//! without a cache, with a note saying why.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, ErrorKind, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use memmap2::Mmap;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::dataset::{ImageDataset, Split};
use super::downsampled_imagenet::{self, SplitArchives};
use super::folder::{self, FolderLoad, FolderOptions, Sorted};
use super::pixels::Pixels;
use crate::error::{GlowError, Result};
use crate::io::atomic::{remove_stale_temporaries, write_atomic_with};
use sources::{ArchiveImages, FolderImages};

mod sources;

/// The environment variable that places the cache: a directory, or `off` for none.
pub const CACHE_ENV: &str = "GLOWFLOW_IMAGE_CACHE";

/// The version of the entries' layout and of the decoding that made their pixels: 4 since 16-bit
/// PNG samples keep their high byte as in Pillow (3: rounded to `v / 257`; since version 3, JPEG
/// files are decoded by libjpeg-turbo as Pillow decodes them, 2: by the `image` crate's JPEG
/// decoder; since version 2, folders are fitted to a size by cutting out the central square and
/// resizing it with Pillow's Lanczos filter, and colour images turned grey with Pillow's luma;
/// 1: resized with a triangle filter, then cut; Rec. 709 luma). Entries of an older version are
/// removed when an entry is written.
pub const VERSION: u32 = 4;

/// The first bytes of every entry.
const MAGIC: &[u8; 8] = b"GLOWIMGS";

/// Where an entry's pixels start: a page boundary, after the header.
pub const PIXELS_AT: u64 = 4096;

/// The lock file that serialises writes to a cache directory.
const LOCK_FILE: &str = "cache.lock";

/// The extension of entries.
const ENTRY_EXTENSION: &str = "images";

/// What an entry records besides its pixels.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Description {
    /// The canonical path of the folder of the images, or of the archives.
    folder: PathBuf,
    /// The archives of the split whose images the entry holds ([`Cacheable::archives`]); none
    /// for a folder's images.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    archives: Option<String>,
    /// The images' shape, `[channels, height, width]`.
    shape: [usize; 3],
    /// The number of images in the entry.
    images: usize,
    /// Each image left out: its index in the folder's listing, and why.
    skipped: Vec<(usize, String)>,
}

/// Where folder datasets are cached.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ImageCache {
    /// Nowhere: every load decodes the images into memory.
    Off,
    /// In this directory (created when first written).
    In(PathBuf),
}

impl ImageCache {
    /// The cache a value of [`CACHE_ENV`] names: `off` none, any other value that directory;
    /// unset or empty, `$XDG_CACHE_HOME/glowflow/images`, or `$HOME/.cache/glowflow/images`
    /// without `XDG_CACHE_HOME` (none when neither is set), as the XDG base directories say.
    pub fn from_setting(value: Option<&str>, xdg_cache: Option<&str>, home: Option<&str>) -> Self {
        fn set(v: Option<&str>) -> Option<&str> {
            v.filter(|v| !v.is_empty())
        }
        match set(value) {
            Some("off") => ImageCache::Off,
            Some(dir) => ImageCache::In(dir.into()),
            None => match (set(xdg_cache), set(home)) {
                (Some(xdg), _) => ImageCache::In(Path::new(xdg).join("glowflow/images")),
                (None, Some(home)) => {
                    ImageCache::In(Path::new(home).join(".cache/glowflow/images"))
                }
                (None, None) => ImageCache::Off,
            },
        }
    }

    /// The cache this process's environment names ([`ImageCache::from_setting`]).
    pub fn from_environment() -> Self {
        let var = |name| std::env::var(name).ok();
        Self::from_setting(
            var(CACHE_ENV).as_deref(),
            var("XDG_CACHE_HOME").as_deref(),
            var("HOME").as_deref(),
        )
    }
}

/// The cache that folder datasets of this process load through.
static PROCESS_CACHE: OnceLock<ImageCache> = OnceLock::new();

/// Makes the folder datasets that this process loads ([`crate::data::source::DataSource`]) go
/// through `cache`; the `glowflow` program calls it once at start with
/// [`ImageCache::from_environment`]. Without a call they go through none, so a library user (or
/// a test) touches no cache unless it asks. A second call changes nothing and returns false.
pub fn use_for_this_process(cache: ImageCache) -> bool {
    PROCESS_CACHE.set(cache).is_ok()
}

/// The cache set by [`use_for_this_process`], [`ImageCache::Off`] if none was.
pub fn of_this_process() -> &'static ImageCache {
    PROCESS_CACHE.get().unwrap_or(&ImageCache::Off)
}

/// Loads the images under `dir` as [`folder::load_image_folder`] does, through `cache`: the
/// folder's entry is mapped if it exists and is whole, and otherwise written (decoding the
/// images) and mapped. Notes on the cache (an entry written, one rebuilt, a wait for another
/// process, a cache that cannot be used) go to `note`. Fails as `load_image_folder` does.
pub fn load_folder(
    dir: &Path,
    options: &FolderOptions,
    cache: &ImageCache,
    note: &mut dyn FnMut(String),
) -> Result<FolderLoad> {
    let ImageCache::In(cache_dir) = cache else {
        return folder::load_image_folder(dir, options);
    };
    folder::check_options(options)?;
    let images = FolderImages {
        dir,
        canonical: dir.canonicalize().map_err(|e| GlowError::io(dir, e))?,
        listing: folder::list_images(dir)?,
        options,
    };
    load(images, cache_dir, note)
}

/// Loads one split of the downsampled ImageNet's archives under `dir` as
/// [`downsampled_imagenet::load_split`] does, through `cache`, as [`load_folder`] loads a folder:
/// the labels are read from the archives, the pixels mapped from the split's entry (written
/// first if there is none).
pub fn load_archives(
    dir: &Path,
    split: Split,
    cache: &ImageCache,
    note: &mut dyn FnMut(String),
) -> Result<ImageDataset> {
    let ImageCache::In(cache_dir) = cache else {
        return downsampled_imagenet::load_split(dir, split);
    };
    let archives = ArchiveImages {
        archives: SplitArchives::find(dir, split)?,
        canonical: dir.canonicalize().map_err(|e| GlowError::io(dir, e))?,
        split,
    };
    load(archives, cache_dir, note)
}

/// Loads `images` through the cache directory `cache_dir`: maps its entry if it exists and is
/// whole, and otherwise writes the entry and maps it, or decodes the images into memory when the
/// cache cannot be used.
fn load<S: Cacheable>(
    images: S,
    cache_dir: &Path,
    note: &mut dyn FnMut(String),
) -> Result<S::Load> {
    let entry = cache_dir.join(entry_name(&images));
    match map_entry(&entry, &images) {
        Ok(Some(load)) => return Ok(load),
        Ok(None) => {}
        Err(reason) => note(format!(
            "the image cache entry {} is unusable ({reason}); decoding the images again",
            entry.display()
        )),
    }
    let writer = Writer {
        dir: cache_dir,
        entry: &entry,
        images: &images,
    };
    match writer.write(note) {
        Ok(load) => Ok(load),
        Err(Unwritten::Data(e)) => Err(e),
        Err(Unwritten::Cache(reason)) => {
            note(format!(
                "cannot use the image cache {} ({reason}); decoding {} into memory (set {CACHE_ENV} \
                 to a directory with room, or to off)",
                cache_dir.display(),
                images.described()
            ));
            images.decode_in_memory()
        }
    }
}

/// A dataset that the cache holds entries of: what its entries are named after, how its images
/// are decoded into one, and what a load of it returns ([`sources`] has the folder's and the
/// archives').
trait Cacheable {
    /// What a load returns.
    type Load;

    /// The canonical path of the folder of its images or archives, which its entries record.
    fn folder(&self) -> &Path;

    /// For one split of the downsampled ImageNet, its archives' names (e.g.
    /// `train_data_batch_1.npz … train_data_batch_10.npz`); `None` for a folder's images.
    fn archives(&self) -> Option<String>;

    /// Feeds what its entries share besides the folder (the decoding options, or the split) to
    /// `hash`.
    fn hash_kind(&self, hash: &mut Sha256);

    /// Feeds its files to `hash`: their number, then each one's [`hash_file`].
    fn hash_files(&self, hash: &mut Sha256);

    /// The number of images listed, usable or not.
    fn images(&self) -> usize;

    /// The pixel bytes of the images, when known before decoding them.
    fn bytes_needed(&self) -> Option<u64>;

    /// Hands the CHW pixels of every usable image to `sink` in order (in parts of images, or
    /// whole ones) and says which images were left out; fails as a load without the cache would,
    /// or with `sink`'s error.
    fn decode(&self, sink: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<Sorted>;

    /// The load of the images `sorted` kept, whose pixels are `pixels`.
    fn load(&self, sorted: Sorted, pixels: Pixels) -> Self::Load;

    /// Loads the images into memory, without the cache.
    fn decode_in_memory(self) -> Result<Self::Load>;

    /// The folder, and the archives where there are some, for notes.
    fn described(&self) -> String {
        folder_and_archives(self.folder(), self.archives().as_deref())
    }
}

/// A folder and the archives of an entry, as notes and `glowflow image-cache` name them:
/// `FOLDER`, or `FOLDER (ARCHIVES)`.
pub fn folder_and_archives(folder: &Path, archives: Option<&str>) -> String {
    match archives {
        None => folder.display().to_string(),
        Some(archives) => format!("{} ({archives})", folder.display()),
    }
}

/// The entry file name of `images`: a hash of their folder and kind ([`Cacheable::hash_kind`],
/// shared by the folder's entries of that kind), then a hash of those and of every file
/// ([`Cacheable::hash_files`]).
fn entry_name(images: &impl Cacheable) -> String {
    let mut source = Sha256::new();
    source.update(VERSION.to_le_bytes());
    source.update(images.folder().as_os_str().as_encoded_bytes());
    source.update([0]);
    images.hash_kind(&mut source);
    let folder_hash = source.clone().finalize();
    let mut files = source;
    images.hash_files(&mut files);
    format!(
        "{}-{}.{ENTRY_EXTENSION}",
        hex(&folder_hash[..8]),
        hex(&files.finalize()[..16])
    )
}

/// Feeds the file `path` to `hash`: its path inside `dir` (the name the folder was listed under,
/// so that every name of the folder, a symbolic link's or a relative one, finds one entry), its
/// label (`None` for none), size and modification time.
fn hash_file(hash: &mut Sha256, dir: &Path, path: &Path, label: Option<usize>) {
    let (len, modified) = std::fs::metadata(path)
        .map(|m| {
            let modified = m
                .modified()
                .ok()
                .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
                .map_or(0, |d| d.as_nanos());
            (m.len(), modified)
        })
        .unwrap_or((u64::MAX, 0));
    let name = path.strip_prefix(dir).unwrap_or(path);
    hash.update(name.as_os_str().as_encoded_bytes());
    hash.update([0]);
    hash.update(label.map_or(u64::MAX, |l| l as u64).to_le_bytes());
    hash.update(len.to_le_bytes());
    hash.update(modified.to_le_bytes());
}

/// Lower-case hexadecimal digits of `bytes`.
fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The fixed header of an entry: its format version and its pixel and description byte counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Header {
    version: u32,
    pixel_bytes: u64,
    description_bytes: u64,
}

impl Header {
    /// The header's bytes, zero-padded to [`PIXELS_AT`].
    fn bytes(&self) -> Vec<u8> {
        let mut bytes = Vec::with_capacity(PIXELS_AT as usize);
        bytes.extend_from_slice(MAGIC);
        bytes.extend_from_slice(&self.version.to_le_bytes());
        bytes.extend_from_slice(&[0; 4]);
        bytes.extend_from_slice(&self.pixel_bytes.to_le_bytes());
        bytes.extend_from_slice(&self.description_bytes.to_le_bytes());
        bytes.resize(PIXELS_AT as usize, 0);
        bytes
    }

    /// Reads the header at the start of `file`, of any format version, or says why it is not
    /// an entry's.
    fn read(file: &mut File) -> std::result::Result<Header, String> {
        let mut bytes = [0u8; 32];
        file.read_exact(&mut bytes)
            .map_err(|e| format!("its header cannot be read: {e}"))?;
        let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8"));
        if &bytes[..8] != MAGIC {
            return Err("it does not start with the cache's magic bytes".into());
        }
        Ok(Header {
            version: u32::from_le_bytes(bytes[8..12].try_into().expect("4")),
            pixel_bytes: u64_at(16),
            description_bytes: u64_at(24),
        })
    }

    /// Says why an entry of this header's format version is not used, unless it is [`VERSION`].
    fn check_version(&self) -> std::result::Result<(), String> {
        let version = self.version;
        let whose = match version.cmp(&VERSION) {
            std::cmp::Ordering::Equal => return Ok(()),
            std::cmp::Ordering::Less => "an older",
            std::cmp::Ordering::Greater => "a newer",
        };
        Err(format!(
            "format version {version}, of {whose} glowflow, not {VERSION}"
        ))
    }
}

/// Maps the entry `path` of `images`: `Ok(None)` when there is no such entry, `Err` with the
/// reason when the file is not a whole entry of them.
fn map_entry<S: Cacheable>(
    path: &Path,
    images: &S,
) -> std::result::Result<Option<S::Load>, String> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if matches!(e.kind(), ErrorKind::NotFound | ErrorKind::NotADirectory) => {
            return Ok(None)
        }
        Err(e) => return Err(format!("it cannot be opened: {e}")),
    };
    let (header, description) = read_entry(&mut file)?;
    header.check_version()?;
    let sorted = check_description(&description, images, header.pixel_bytes)?;
    // SAFETY: entries are never written in place: each is written whole under a temporary name
    // and renamed into place, and is only ever removed or replaced by another rename, which
    // leaves the inode mapped here intact. The mapping is read-only.
    let map = unsafe { Mmap::map(&file) }.map_err(|e| format!("it cannot be mapped: {e}"))?;
    let pixels = Pixels::mapped(map, PIXELS_AT as usize, header.pixel_bytes as usize)
        .ok_or("it is shorter than its header says")?;
    Ok(Some(images.load(sorted, pixels)))
}

/// Reads the header and the description of the entry open as `file`, of any format version
/// whose layout is this one's, checking that the file is as long as they say, or says why it is
/// not an entry.
fn read_entry(file: &mut File) -> std::result::Result<(Header, Description), String> {
    let header = Header::read(file)?;
    let length = file
        .metadata()
        .map_err(|e| format!("its size cannot be read: {e}"))?
        .len();
    let description_at = PIXELS_AT.checked_add(header.pixel_bytes);
    let end = description_at.and_then(|at| at.checked_add(header.description_bytes));
    let (Some(description_at), Some(end)) = (description_at, end) else {
        return Err("its header's byte counts overflow".into());
    };
    if end != length {
        return Err(format!(
            "it is {length} bytes long but its header describes {end}"
        ));
    }
    let mut text = vec![0u8; header.description_bytes as usize];
    file.seek(SeekFrom::Start(description_at))
        .and_then(|_| file.read_exact(&mut text))
        .map_err(|e| format!("its description cannot be read: {e}"))?;
    let description =
        serde_json::from_slice(&text).map_err(|e| format!("its description is not valid: {e}"))?;
    Ok((header, description))
}

/// Checks that `description` fits `images` and an entry of `pixel_bytes` pixels, returning which
/// images it holds.
fn check_description(
    description: &Description,
    images: &impl Cacheable,
    pixel_bytes: u64,
) -> std::result::Result<Sorted, String> {
    if description.folder != images.folder() || description.archives != images.archives() {
        return Err(format!(
            "it holds the images of {}, not of {}",
            folder_and_archives(&description.folder, description.archives.as_deref()),
            images.described()
        ));
    }
    let skipped = &description.skipped;
    let in_order = skipped.windows(2).all(|pair| pair[0].0 < pair[1].0);
    if !in_order || skipped.last().is_some_and(|(i, _)| *i >= images.images()) {
        return Err("its skipped images are not images of the folder, in order".into());
    }
    if description.images + skipped.len() != images.images() || description.images == 0 {
        return Err(format!(
            "it holds {} images and skips {}, but {} has {} images",
            description.images,
            skipped.len(),
            images.described(),
            images.images()
        ));
    }
    let image_bytes: usize = description.shape.iter().product();
    if image_bytes == 0
        || (image_bytes as u64).checked_mul(description.images as u64) != Some(pixel_bytes)
    {
        return Err(format!(
            "{} images of shape {:?} are not its {pixel_bytes} pixel bytes",
            description.images, description.shape
        ));
    }
    Ok(Sorted {
        shape: description.shape,
        skipped: description.skipped.clone(),
    })
}

/// Why an entry was not written: the images themselves (an error of the load), or the cache.
enum Unwritten {
    /// The folder cannot be loaded; loading it without the cache would fail the same way.
    Data(GlowError),
    /// The cache cannot be used, for this reason.
    Cache(String),
}

/// A failure to write into the cache's directory.
impl From<GlowError> for Unwritten {
    fn from(error: GlowError) -> Self {
        Unwritten::Cache(error.to_string())
    }
}

/// Writes the entry of one folder's images, or one split's archives.
struct Writer<'a, S> {
    /// The cache directory.
    dir: &'a Path,
    /// The entry's path in it.
    entry: &'a Path,
    /// The images.
    images: &'a S,
}

impl<S: Cacheable> Writer<'_, S> {
    /// Under the cache's lock, maps the entry if another process wrote it meanwhile, or else
    /// decodes the images into it, removes the entries it replaces, and maps it.
    fn write(&self, note: &mut dyn FnMut(String)) -> std::result::Result<S::Load, Unwritten> {
        let cache_error = |what: &str, e: std::io::Error| Unwritten::Cache(format!("{what}: {e}"));
        std::fs::create_dir_all(self.dir).map_err(|e| cache_error("cannot create it", e))?;
        let lock = open_lock(self.dir).map_err(|e| cache_error("cannot open its lock file", e))?;
        if let Err(std::fs::TryLockError::WouldBlock) = lock.try_lock() {
            note(format!(
                "waiting for another process writing to the image cache {}",
                self.dir.display()
            ));
            lock.lock().map_err(|e| cache_error("cannot lock it", e))?;
        }
        if let Ok(Some(load)) = map_entry(self.entry, self.images) {
            return Ok(load);
        }
        remove_stale_temporaries(self.dir)?;
        self.check_space()?;
        let sorted = self.write_entry()?;
        let bytes = std::fs::metadata(self.entry).map_or(0, |m| m.len());
        let removed = self.remove_replaced_entries();
        note(format!(
            "decoded the {} images of {} into the image cache {} ({:.2} GB; later loads map it \
             instead of decoding{})",
            self.images.images() - sorted.skipped.len(),
            self.images.described(),
            self.entry.display(),
            bytes as f64 / 1e9,
            match removed {
                0 => String::new(),
                n => format!("; removed {n} outdated entries"),
            }
        ));
        match map_entry(self.entry, self.images) {
            Ok(Some(load)) => Ok(load),
            Ok(None) => Err(Unwritten::Cache("the entry written vanished".into())),
            Err(reason) => Err(Unwritten::Cache(format!(
                "the entry written is unusable: {reason}"
            ))),
        }
    }

    /// Refuses a cache without room for the images, when their size is known.
    fn check_space(&self) -> std::result::Result<(), Unwritten> {
        let Some(needed) = self.images.bytes_needed() else {
            return Ok(());
        };
        match free_bytes(self.dir) {
            Some(free) if free < needed.saturating_add(PIXELS_AT) => {
                Err(Unwritten::Cache(format!(
                    "the images need {:.2} GB and its file system has {:.2} GB free",
                    needed as f64 / 1e9,
                    free as f64 / 1e9
                )))
            }
            _ => Ok(()),
        }
    }

    /// Decodes the images into the entry, written atomically ([`write_atomic_with`]): the pixels
    /// streamed after room for the header, then the description, then the header.
    fn write_entry(&self) -> std::result::Result<Sorted, Unwritten> {
        write_atomic_with(self.entry, |file| {
            let io = |e: std::io::Error| Unwritten::from(GlowError::io(self.entry, e));
            let mut out = BufWriter::with_capacity(1 << 20, file);
            out.write_all(&[0; PIXELS_AT as usize]).map_err(io)?;
            let (mut pixel_bytes, mut failed) = (0u64, None);
            let decoded = self.images.decode(&mut |image| {
                pixel_bytes += image.len() as u64;
                out.write_all(image).map_err(|e| {
                    let error = GlowError::io(self.entry, e);
                    failed = Some(error.to_string());
                    error
                })
            });
            let sorted = match (decoded, failed) {
                (Ok(sorted), None) => sorted,
                (_, Some(reason)) => return Err(Unwritten::Cache(reason)),
                (Err(e), None) => return Err(Unwritten::Data(e)),
            };
            let description = Description {
                folder: self.images.folder().to_path_buf(),
                archives: self.images.archives(),
                shape: sorted.shape,
                images: self.images.images() - sorted.skipped.len(),
                skipped: sorted.skipped.clone(),
            };
            let text =
                serde_json::to_vec(&description).map_err(|e| Unwritten::Cache(e.to_string()))?;
            out.write_all(&text).map_err(io)?;
            let file = out.into_inner().map_err(|e| io(e.into_error()))?;
            let header = Header {
                version: VERSION,
                pixel_bytes,
                description_bytes: text.len() as u64,
            };
            file.seek(SeekFrom::Start(0))
                .and_then(|_| file.write_all(&header.bytes()))
                .map_err(io)?;
            Ok(sorted)
        })
    }

    /// Removes the entries this one replaces: the folder's others of the same kind (same folder
    /// and options, or split; other files), those of folders that no longer exist, and those of
    /// an older format [`VERSION`]. Returns how many it removed.
    fn remove_replaced_entries(&self) -> usize {
        let name = self
            .entry
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("");
        let same_folder = name.split('-').next().unwrap_or(name);
        let others = entry_files(self.dir).unwrap_or_default();
        others
            .iter()
            .filter(|path| path.as_path() != self.entry)
            .filter(|path| {
                let other = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
                other.split('-').next() == Some(same_folder)
                    || folder_of(path).is_some_and(|folder| !folder.exists())
                    || is_older_version(path)
            })
            .filter(|path| std::fs::remove_file(path).is_ok())
            .count()
    }
}

/// Whether the file `path` is an entry of an older format [`VERSION`], which this glowflow
/// never reads.
fn is_older_version(path: &Path) -> bool {
    File::open(path)
        .map_err(|e| e.to_string())
        .and_then(|mut file| Header::read(&mut file))
        .is_ok_and(|header| header.version < VERSION)
}

/// The folder whose images the entry `path` holds, if it reads as an entry (of any version).
fn folder_of(path: &Path) -> Option<PathBuf> {
    let mut file = File::open(path).ok()?;
    read_entry(&mut file)
        .ok()
        .map(|(_, description)| description.folder)
}

/// The bytes free to an unprivileged user on the file system of `dir`, if it can be read.
fn free_bytes(dir: &Path) -> Option<u64> {
    let path = std::ffi::CString::new(dir.as_os_str().as_encoded_bytes()).ok()?;
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is a NUL-terminated string and `stats` a buffer of the type statvfs fills.
    let status = unsafe { libc::statvfs(path.as_ptr(), stats.as_mut_ptr()) };
    // SAFETY: statvfs returned 0, so it filled `stats`.
    (status == 0).then(|| {
        let stats = unsafe { stats.assume_init() };
        stats.f_bavail.saturating_mul(stats.f_frsize)
    })
}

/// One entry of a cache directory, as `glowflow image-cache` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryInfo {
    /// The entry's file.
    pub file: PathBuf,
    /// The folder whose images it holds (canonical path), or the folder of its archives.
    pub folder: PathBuf,
    /// The archives of the split whose images it holds; `None` for a folder's images.
    pub archives: Option<String>,
    /// Their shape, `[channels, height, width]`.
    pub shape: [usize; 3],
    /// How many images it holds.
    pub images: usize,
    /// How many of the folder's image files were left out.
    pub skipped: usize,
    /// The file's size in bytes.
    pub bytes: u64,
}

/// What a cache directory holds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct CacheContents {
    /// Its entries, in name order.
    pub entries: Vec<EntryInfo>,
    /// The entries of an older format [`VERSION`], unused, with their sizes in bytes: the next
    /// entry written removes them.
    pub older: Vec<(PathBuf, u64)>,
    /// The other files named like entries, which this glowflow cannot use, each with why.
    pub damaged: Vec<(PathBuf, String)>,
}

/// What the cache directory `dir` holds (nothing if it does not exist).
pub fn contents(dir: &Path) -> Result<CacheContents> {
    let (mut found, mut older, mut damaged) = (Vec::new(), Vec::new(), Vec::new());
    for file in entry_files(dir)? {
        if is_older_version(&file) {
            let bytes = std::fs::metadata(&file).map_or(0, |m| m.len());
            older.push((file, bytes));
            continue;
        }
        let read = File::open(&file)
            .map_err(|e| format!("it cannot be opened: {e}"))
            .and_then(|mut f| read_entry(&mut f))
            .and_then(|(header, description)| {
                header.check_version().map(|()| (header, description))
            });
        match read {
            Ok((header, description)) => found.push(EntryInfo {
                folder: description.folder,
                archives: description.archives,
                shape: description.shape,
                images: description.images,
                skipped: description.skipped.len(),
                bytes: PIXELS_AT + header.pixel_bytes + header.description_bytes,
                file,
            }),
            Err(reason) => damaged.push((file, reason)),
        }
    }
    Ok(CacheContents {
        entries: found,
        older,
        damaged,
    })
}

/// Removes entries of the cache directory `dir` under its lock: every one, or with `folder` only
/// those of that folder, of any format version (any name of it; a folder that no longer exists
/// by its absolute path, as its entries recorded it), and the temporaries of writers that no
/// longer run. Returns the files removed. Processes that have an entry mapped keep reading it.
pub fn remove_entries(dir: &Path, folder: Option<&Path>) -> Result<Vec<PathBuf>> {
    let folder = match folder {
        Some(folder) => Some(
            folder
                .canonicalize()
                .or_else(|_| std::path::absolute(folder))
                .map_err(|e| GlowError::io(folder, e))?,
        ),
        None => None,
    };
    if !dir.exists() {
        return Ok(Vec::new());
    }
    // Held until the end: closing the file releases the lock.
    let _lock = open_lock(dir)
        .and_then(|lock| lock.lock().map(|()| lock))
        .map_err(|e| GlowError::io(dir.join(LOCK_FILE), e))?;
    let mut removed = remove_stale_temporaries(dir)?;
    for file in entry_files(dir)? {
        let chosen = match &folder {
            None => true,
            Some(folder) => folder_of(&file).as_deref() == Some(folder.as_path()),
        };
        if chosen {
            std::fs::remove_file(&file).map_err(|e| GlowError::io(&file, e))?;
            removed.push(file);
        }
    }
    Ok(removed)
}

/// The lock file of the cache directory `dir`, opened (created if needed) but not locked.
fn open_lock(dir: &Path) -> std::io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(LOCK_FILE))
}

/// The files of `dir` named like entries, in name order; none if `dir` does not exist.
fn entry_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let listing = match std::fs::read_dir(dir) {
        Ok(listing) => listing,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(GlowError::io(dir, e)),
    };
    let mut files = Vec::new();
    for entry in listing {
        let path = entry.map_err(|e| GlowError::io(dir, e))?.path();
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if !name.starts_with('.') && name.ends_with(&format!(".{ENTRY_EXTENSION}")) {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}
