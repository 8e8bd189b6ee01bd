//! Reader for the downsampled ImageNet of Chrabaszcz, Loshchilov and Hutter (2017, *A
//! Downsampled Variant of ImageNet as an Alternative to the CIFAR datasets*), as image-net.org
//! distributes it with its class labels: `Imagenet32_train_npz.zip` and `Imagenet32_val_npz.zip`
//! (likewise at 8, 16 and 64 pixels), which unpack to NumPy archives `train_data_batch_1.npz`
//! … `train_data_batch_10.npz` and `val_data.npz`.
//!
//! Each archive (`numpy.savez`, stored or deflated) holds `data`, an `N x 3·S·S` array of `u8`
//! whose row is one `S x S` image as its red, green and blue planes, each row by row (so already
//! CHW), and `labels`, `N` integers from 1 to 1000, the class of each image as numbered by the
//! ILSVRC devkit's `map_clsloc.txt` (not the sorted order of the class folders); the training
//! archives also hold `mean`, the training set's mean image, which is not read. Each image was
//! resized whole to `S x S` (its aspect ratio not kept) with a box filter, and the training images
//! were shuffled across the batches. The classes' names come from `map_clsloc.txt` (`WNID LABEL
//! NAME` per line) when it lies beside the archives, and are the labels' numbers otherwise.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::{Path, PathBuf};

use super::dataset::{ImageDataset, Split};
use super::pixels::Pixels;
use crate::error::{GlowError, Result};

/// The number of classes, labelled 1 to 1000 in the files.
pub const IMAGENET_CLASSES: usize = 1000;

/// The name of the test split's archive.
const VAL_FILE: &str = "val_data.npz";

/// The prefix and suffix of the training archives' names, around the batch number.
const TRAIN_FILE: (&str, &str) = ("train_data_batch_", ".npz");

/// The devkit's file of class names, read when it lies beside the archives.
pub const CLASS_MAP_FILE: &str = "map_clsloc.txt";

/// What to do when the archives are missing.
const DOWNLOAD_HELP: &str = "download Imagenet32_train_npz.zip and Imagenet32_val_npz.zip (or the \
    8, 16 or 64 pixel ones) from https://image-net.org/download-images (\"Downsampled ImageNet\") \
    and unpack them there";

/// Reads one archive (e.g. `train_data_batch_1.npz`) into a labelled dataset of shape
/// `[3, S, S]` with 1000 classes, labels shifted to `0..1000`.
pub fn read_npz_batch(path: &Path) -> Result<ImageDataset> {
    let dir = path.parent().unwrap_or(Path::new("."));
    SplitArchives::read(dir, vec![path.to_path_buf()])?.decode_in_memory()
}

/// Loads one split from `dir` (the archives in it or in its subfolders, as the zips unpack):
/// the train split is `train_data_batch_1.npz`, `_2`, … concatenated in that order (every
/// number from 1 to the largest present), the test split `val_data.npz`.
pub fn load_split(dir: &Path, split: Split) -> Result<ImageDataset> {
    SplitArchives::find(dir, split)?.decode_in_memory()
}

/// The archives of one split with the labels of their images, read before their pixels: what
/// [`load_split`] decodes, and what the image cache names its entry after
/// ([`super::image_cache`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct SplitArchives {
    /// The directory the archives were looked for in.
    pub dir: PathBuf,
    /// Each archive, in order, with the labels of its images (`0..1000`).
    pub archives: Vec<(PathBuf, Vec<usize>)>,
}

impl SplitArchives {
    /// The archives of `split` under `dir` ([`load_split`]), with their labels read.
    pub(crate) fn find(dir: &Path, split: Split) -> Result<SplitArchives> {
        SplitArchives::read(dir, split_files(dir, split)?)
    }

    /// Reads the labels of the archives `files` of the directory `dir`.
    fn read(dir: &Path, files: Vec<PathBuf>) -> Result<SplitArchives> {
        let archives = files
            .into_iter()
            .map(|path| {
                let labels = open_archive(&path)?.and_then(|mut archive| read_labels(&mut archive));
                labels.map_err(|e| bad_archive(&path, e)).map(|l| (path, l))
            })
            .collect::<Result<_>>()?;
        Ok(SplitArchives {
            dir: dir.to_path_buf(),
            archives,
        })
    }

    /// The number of images in the archives.
    pub(crate) fn images(&self) -> usize {
        self.archives.iter().map(|(_, labels)| labels.len()).sum()
    }

    /// Hands the pixels of every archive's images to `sink`, CHW bytes in archive order, a part
    /// of an archive at a time, and returns the images' shape `[3, S, S]`. Fails before `sink`
    /// is called when the archives hold no images, on an archive whose `data` does not hold one
    /// `S x S` RGB image per label, and on archives of two sizes; a failure of `sink` is
    /// returned as it is.
    pub(crate) fn decode(&self, sink: &mut dyn FnMut(&[u8]) -> Result<()>) -> Result<[usize; 3]> {
        if self.images() == 0 {
            return Err(self.no_images());
        }
        let mut first: Option<(&Path, [usize; 3])> = None;
        for (path, labels) in &self.archives {
            let mut failed = None;
            let mut pass = |bytes: &[u8]| {
                sink(bytes).map_err(|e| {
                    let reason = e.to_string();
                    failed = Some(e);
                    reason
                })
            };
            let shape = open_archive(path)?
                .and_then(|mut archive| read_images(&mut archive, labels.len(), &mut pass));
            let shape = match (shape, failed) {
                (_, Some(e)) => return Err(e),
                (shape, None) => shape.map_err(|e| bad_archive(path, e))?,
            };
            match first {
                Some((first_path, first_shape)) if first_shape != shape => {
                    return Err(GlowError::file(
                        path,
                        format!(
                            "its images are {} pixels wide but {}'s are {}; the archives of one \
                             split must come from one download (keep one size in {})",
                            shape[2],
                            first_path.display(),
                            first_shape[2],
                            self.dir.display()
                        ),
                    ))
                }
                _ => first = first.or(Some((path, shape))),
            }
        }
        first
            .map(|(_, shape)| shape)
            .ok_or_else(|| self.no_images())
    }

    /// The error for a split without images: no archives, or archives that hold none.
    fn no_images(&self) -> GlowError {
        let what = if self.archives.is_empty() {
            "no archives in it".to_string()
        } else {
            format!("no images in its archives ({})", self.names())
        };
        GlowError::file(&self.dir, format!("{what}; {DOWNLOAD_HELP}"))
    }

    /// The archives' file names, the first and the last joined by `…` when there are more than
    /// two.
    pub(crate) fn names(&self) -> String {
        let names: Vec<_> = self
            .archives
            .iter()
            .map(|(path, _)| {
                path.file_name()
                    .unwrap_or(path.as_os_str())
                    .to_string_lossy()
            })
            .collect();
        match &names[..] {
            [first, _, .., last] => format!("{first} … {last}"),
            _ => names.join(", "),
        }
    }

    /// The labelled dataset of 1000 classes of these archives' images, shaped `shape`, whose
    /// pixels are `pixels`.
    pub(crate) fn dataset(&self, shape: [usize; 3], pixels: Pixels) -> ImageDataset {
        ImageDataset {
            shape,
            pixels,
            labels: Some(
                self.archives
                    .iter()
                    .flat_map(|(_, labels)| labels.iter().copied())
                    .collect(),
            ),
            n_classes: IMAGENET_CLASSES,
        }
    }

    /// Decodes every archive's images into one in-memory dataset.
    pub(crate) fn decode_in_memory(&self) -> Result<ImageDataset> {
        let mut pixels = Vec::new();
        let shape = self.decode(&mut |bytes| {
            pixels.extend_from_slice(bytes);
            Ok(())
        })?;
        Ok(self.dataset(shape, pixels.into()))
    }
}

/// The classes' names by label: the third field of each line of `map_clsloc.txt` in `dir` (or
/// beside the archives in a subfolder), or `"1"` … `"1000"` (the files' own labels) without one.
pub fn class_names(dir: &Path) -> Result<Vec<String>> {
    let beside_archives = split_files(dir, Split::Test)
        .ok()
        .and_then(|files| files[0].parent().map(|d| d.join(CLASS_MAP_FILE)));
    let found = [Some(dir.join(CLASS_MAP_FILE)), beside_archives]
        .into_iter()
        .flatten()
        .find(|path| path.is_file());
    match found {
        Some(path) => read_class_map(&path),
        None => Ok((1..=IMAGENET_CLASSES).map(|l| l.to_string()).collect()),
    }
}

/// Reads `map_clsloc.txt`: one line per class, `WNID LABEL NAME`, every label from 1 to 1000
/// once.
fn read_class_map(path: &Path) -> Result<Vec<String>> {
    let text = std::fs::read_to_string(path).map_err(|e| GlowError::io(path, e))?;
    let mut names = vec![None; IMAGENET_CLASSES];
    for (line_number, line) in text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let bad = |what: &str| {
            GlowError::file(
                path,
                format!(
                    "line {}: {what}; each line is `WNID LABEL NAME` with a label from 1 to \
                     {IMAGENET_CLASSES} (the ILSVRC devkit's map_clsloc.txt), fix or remove the file",
                    line_number + 1
                ),
            )
        };
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [_, label, name] = fields[..] else {
            return Err(bad("not three fields"));
        };
        let slot = label
            .parse::<usize>()
            .ok()
            .and_then(|l| l.checked_sub(1))
            .and_then(|i| names.get_mut(i))
            .ok_or_else(|| {
                bad(&format!(
                    "label `{label}` is not from 1 to {IMAGENET_CLASSES}"
                ))
            })?;
        if slot.replace(name.to_string()).is_some() {
            return Err(bad(&format!("label {label} is named twice")));
        }
    }
    if let Some(missing) = names.iter().position(Option::is_none) {
        return Err(GlowError::file(
            path,
            format!(
                "label {} has no line; the file must name all {IMAGENET_CLASSES} classes (the \
                 ILSVRC devkit's map_clsloc.txt), fix or remove it",
                missing + 1
            ),
        ));
    }
    Ok(names.into_iter().flatten().collect())
}

/// The archives of `split` under `dir`, in order: the training batches numbered 1, 2, … with
/// none missing, or the one `val_data.npz`; each looked for in `dir` and in its subfolders.
fn split_files(dir: &Path, split: Split) -> Result<Vec<PathBuf>> {
    let missing = |what: String| {
        GlowError::file(
            dir,
            format!("{what} (looked in this directory and its subfolders); {DOWNLOAD_HELP}"),
        )
    };
    let mut folders = vec![dir.to_path_buf()];
    if let Ok(entries) = std::fs::read_dir(dir) {
        let mut subfolders: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_dir())
            .collect();
        subfolders.sort();
        folders.extend(subfolders);
    } else if !dir.is_dir() {
        return Err(missing(
            "the directory of the downsampled ImageNet does not exist".into(),
        ));
    }
    let archives = folders.iter().flat_map(|folder| {
        std::fs::read_dir(folder)
            .into_iter()
            .flatten()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.is_file())
    });
    match split {
        Split::Test => {
            let found: Vec<PathBuf> = archives
                .filter(|p| p.file_name().is_some_and(|n| n == VAL_FILE))
                .collect();
            match found.len() {
                0 => Err(missing(format!("no {VAL_FILE} found"))),
                1 => Ok(found),
                _ => Err(GlowError::file(
                    dir,
                    format!(
                        "{VAL_FILE} is there {} times ({}); keep one download in it",
                        found.len(),
                        found
                            .iter()
                            .map(|p| p.display().to_string())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                )),
            }
        }
        Split::Train => {
            let mut numbered: Vec<(usize, PathBuf)> = archives
                .filter_map(|p| Some((batch_number(p.file_name()?.to_str()?)?, p)))
                .collect();
            numbered.sort();
            if numbered.is_empty() {
                return Err(missing(format!(
                    "no {}1{} found",
                    TRAIN_FILE.0, TRAIN_FILE.1
                )));
            }
            for (expected, (number, path)) in (1..).zip(&numbered) {
                let (prefix, suffix) = TRAIN_FILE;
                let problem = match (*number).cmp(&expected) {
                    std::cmp::Ordering::Equal => continue,
                    std::cmp::Ordering::Less => format!(
                        "{prefix}{number}{suffix} is there twice (again as {})",
                        path.display()
                    ),
                    std::cmp::Ordering::Greater => format!("{prefix}{expected}{suffix} is missing"),
                };
                return Err(GlowError::file(
                    dir,
                    format!(
                        "{problem}; the training archives are numbered from 1 without a gap or a \
                         repeat (unpack the whole download, or remove the extra copy)"
                    ),
                ));
            }
            Ok(numbered.into_iter().map(|(_, path)| path).collect())
        }
    }
}

/// The batch number `N` of a file named `train_data_batch_N.npz` (`N` from 1, no leading zero).
fn batch_number(name: &str) -> Option<usize> {
    let digits = name
        .strip_prefix(TRAIN_FILE.0)?
        .strip_suffix(TRAIN_FILE.1)?;
    let valid = !digits.is_empty()
        && !digits.starts_with('0')
        && digits.bytes().all(|b| b.is_ascii_digit());
    valid.then(|| digits.parse().ok()).flatten()
}

/// Opens the archive `path`: `Err` for a file that cannot be opened, `Ok(Err(reason))` for one
/// that is not a zip archive.
fn open_archive(
    path: &Path,
) -> Result<std::result::Result<zip::ZipArchive<BufReader<File>>, String>> {
    let file = File::open(path).map_err(|e| GlowError::io(path, e))?;
    Ok(zip::ZipArchive::new(BufReader::new(file))
        .map_err(|e| format!("not a NumPy .npz archive (a zip file): {e}")))
}

/// The error for the archive `path`, bad for `reason`: it names the file and how to fix it.
fn bad_archive(path: &Path, reason: String) -> GlowError {
    GlowError::file(
        path,
        format!(
            "{reason}; {} is damaged or not one of the downsampled ImageNet's archives, unpack it \
             again from its download",
            path.file_name()
                .unwrap_or(path.as_os_str())
                .to_string_lossy()
        ),
    )
}

/// The largest `.npy` header read (numpy writes about 128 bytes).
const MAX_HEADER: usize = 1 << 16;

/// An array's element type and shape, from its `.npy` header.
#[derive(Debug, Clone, PartialEq, Eq)]
struct ArrayHeader {
    /// The type string, e.g. `|u1`, `<i8`.
    descr: String,
    /// Whether the elements are in Fortran (column-major) order.
    fortran_order: bool,
    /// The dimensions.
    shape: Vec<u64>,
}

/// An integer element type of a `.npy` array.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct IntegerType {
    /// Whether the integers are signed.
    signed: bool,
    /// Bytes per integer: 1, 2, 4 or 8.
    bytes: usize,
    /// Whether their bytes are most significant first.
    big_endian: bool,
}

impl IntegerType {
    /// The integer stored in `raw` (`self.bytes` bytes).
    fn read(self, raw: &[u8]) -> i128 {
        let mut wide = [0u8; 8];
        wide[..raw.len()].copy_from_slice(raw);
        if self.big_endian {
            wide[..raw.len()].reverse();
        }
        let unsigned = u64::from_le_bytes(wide);
        let bits = 8 * raw.len() as u32;
        if self.signed && bits < 64 && unsigned >> (bits - 1) & 1 == 1 {
            i128::from(unsigned) - (1i128 << bits)
        } else if self.signed {
            i128::from(unsigned as i64)
        } else {
            i128::from(unsigned)
        }
    }
}

impl ArrayHeader {
    /// The integer type of the elements; `None` for any other type.
    fn integer_type(&self) -> Option<IntegerType> {
        let mut chars = self.descr.chars();
        let big_endian = match chars.next()? {
            '<' | '|' | '=' => false,
            '>' => true,
            _ => return None,
        };
        let signed = match chars.next()? {
            'i' => true,
            'u' => false,
            _ => return None,
        };
        let bytes = chars
            .as_str()
            .parse()
            .ok()
            .filter(|b| [1, 2, 4, 8].contains(b))?;
        Some(IntegerType {
            signed,
            bytes,
            big_endian,
        })
    }

    /// The number of elements, if it fits a `usize`.
    fn elements(&self) -> Option<usize> {
        self.shape
            .iter()
            .try_fold(1usize, |n, &d| n.checked_mul(usize::try_from(d).ok()?))
    }
}

/// The archive member `NAME.npy`, positioned at its data, with its header.
fn open_array<'a, R: Read + std::io::Seek>(
    archive: &'a mut zip::ZipArchive<R>,
    name: &str,
) -> std::result::Result<(zip::read::ZipFile<'a, R>, ArrayHeader), String> {
    let mut member = archive
        .by_name(&format!("{name}.npy"))
        .map_err(|e| format!("no array `{name}` in it ({e})"))?;
    let header = read_npy_header(&mut member)
        .map_err(|e| format!("its array `{name}` is not a NumPy array: {e}"))?;
    Ok((member, header))
}

/// Reads a `.npy` header: the magic `\x93NUMPY`, the format version (1, 2 or 3), the header's
/// length (2 bytes in version 1, 4 after), and the header, a Python dict literal with the keys
/// `descr` (a type string), `fortran_order` (`True`/`False`) and `shape` (a tuple of integers,
/// written `3072L` by Python 2's numpy).
fn read_npy_header(input: &mut impl Read) -> std::result::Result<ArrayHeader, String> {
    let mut fixed = [0u8; 8];
    input
        .read_exact(&mut fixed)
        .map_err(|e| format!("its header is cut short ({e})"))?;
    if &fixed[..6] != b"\x93NUMPY" {
        return Err("it does not start with the .npy magic".into());
    }
    let length_bytes = match fixed[6] {
        1 => 2,
        2 | 3 => 4,
        v => return Err(format!("its format version {v} is not 1, 2 or 3")),
    };
    let mut length = [0u8; 4];
    input
        .read_exact(&mut length[..length_bytes])
        .map_err(|e| format!("its header is cut short ({e})"))?;
    let length = u32::from_le_bytes(length) as usize;
    if length > MAX_HEADER {
        return Err(format!(
            "its header claims {length} bytes (at most {MAX_HEADER} are read)"
        ));
    }
    let mut text = vec![0u8; length];
    input
        .read_exact(&mut text)
        .map_err(|e| format!("its header is cut short ({e})"))?;
    let text = String::from_utf8(text).map_err(|_| "its header is not text".to_string())?;
    parse_header_dict(&text)
}

/// Parses the header's dict literal, e.g. `{'descr': '|u1', 'fortran_order': False, 'shape':
/// (10, 3072), }` (any order of keys, single or double quotes, trailing commas and spaces).
fn parse_header_dict(text: &str) -> std::result::Result<ArrayHeader, String> {
    let bad = || format!("its header `{}` is not a .npy header dict", text.trim_end());
    let mut rest = text.trim().strip_prefix('{').ok_or_else(bad)?;
    let (mut descr, mut fortran_order, mut shape) = (None, None, None);
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix('}') {
            if !after.trim().is_empty() {
                return Err(bad());
            }
            break;
        }
        let (key, after) = quoted(rest).ok_or_else(bad)?;
        rest = after
            .trim_start()
            .strip_prefix(':')
            .ok_or_else(bad)?
            .trim_start();
        match key {
            "descr" => {
                let (value, after) = quoted(rest).ok_or_else(bad)?;
                descr = Some(value.to_string());
                rest = after;
            }
            "fortran_order" => {
                let (value, after) = if let Some(after) = rest.strip_prefix("True") {
                    (true, after)
                } else {
                    (false, rest.strip_prefix("False").ok_or_else(bad)?)
                };
                fortran_order = Some(value);
                rest = after;
            }
            "shape" => {
                let end = rest.find(')').ok_or_else(bad)?;
                let inside = rest.strip_prefix('(').ok_or_else(bad)?;
                let dims = inside[..end - 1]
                    .split(',')
                    .map(str::trim)
                    .filter(|d| !d.is_empty())
                    .map(|d| {
                        d.strip_suffix('L')
                            .unwrap_or(d)
                            .parse::<u64>()
                            .map_err(|_| bad())
                    })
                    .collect::<std::result::Result<Vec<u64>, String>>()?;
                shape = Some(dims);
                rest = &rest[end + 1..];
            }
            _ => return Err(bad()),
        }
        rest = rest.trim_start();
        rest = rest.strip_prefix(',').unwrap_or(rest);
    }
    match (descr, fortran_order, shape) {
        (Some(descr), Some(fortran_order), Some(shape)) => Ok(ArrayHeader {
            descr,
            fortran_order,
            shape,
        }),
        _ => Err(bad()),
    }
}

/// The text of the quoted string (single or double quotes, no escapes) at the start of `text`,
/// and what follows it.
fn quoted(text: &str) -> Option<(&str, &str)> {
    let quote = text.chars().next().filter(|c| *c == '\'' || *c == '"')?;
    let body = &text[1..];
    let end = body.find(quote)?;
    Some((&body[..end], &body[end + 1..]))
}

/// The `labels` array (integers of any width and byte order, one dimension), shifted from
/// `1..=1000` to `0..1000`.
fn read_labels<R: Read + std::io::Seek>(
    archive: &mut zip::ZipArchive<R>,
) -> std::result::Result<Vec<usize>, String> {
    let (mut member, header) = open_array(archive, "labels")?;
    let Some(integer_type) = header.integer_type() else {
        return Err(format!(
            "its labels are of type {}, not integers",
            header.descr
        ));
    };
    if header.shape.len() != 1 {
        return Err(format!(
            "its labels have shape {:?}, not one dimension",
            header.shape
        ));
    }
    let mut bytes = Vec::new();
    read_data(
        &mut member,
        &header,
        integer_type.bytes,
        "labels",
        &mut |part| {
            bytes.extend_from_slice(part);
            Ok(())
        },
    )?;
    bytes
        .chunks_exact(integer_type.bytes)
        .enumerate()
        .map(|(i, raw)| {
            let label = integer_type.read(raw);
            match usize::try_from(label) {
                Ok(label @ 1..=IMAGENET_CLASSES) => Ok(label - 1),
                _ => Err(format!(
                    "label {label} of image {i} is not from 1 to {IMAGENET_CLASSES}"
                )),
            }
        })
        .collect()
}

/// Hands the `data` array of `images` images to `sink`, a part at a time, and returns their
/// shape: `u8`, in C order, shaped `[images, 3·S·S]` (or `[images, 3, S, S]`, the same bytes).
/// Reads the member to its end, so the archive's checksum of it is verified.
fn read_images<R: Read + std::io::Seek>(
    archive: &mut zip::ZipArchive<R>,
    images: usize,
    sink: &mut dyn FnMut(&[u8]) -> std::result::Result<(), String>,
) -> std::result::Result<[usize; 3], String> {
    let (mut member, header) = open_array(archive, "data")?;
    let is_bytes = matches!(
        header.integer_type(),
        Some(IntegerType {
            signed: false,
            bytes: 1,
            ..
        })
    );
    if !is_bytes || header.fortran_order {
        return Err(format!(
            "its data is of type {}{}, not bytes (u1) in C order",
            header.descr,
            if header.fortran_order {
                " in Fortran order"
            } else {
                ""
            }
        ));
    }
    let side = match header.shape[..] {
        [n, row] if n == images as u64 => {
            let side = ((row / 3) as f64).sqrt().round() as u64;
            (side.checked_mul(side).and_then(|s| s.checked_mul(3)) == Some(row)).then_some(side)
        }
        [n, 3, h, w] if n == images as u64 && h == w => Some(h),
        _ => None,
    };
    let Some(side) = side
        .filter(|&s| s > 0)
        .and_then(|s| usize::try_from(s).ok())
    else {
        return Err(format!(
            "its data has shape {:?}; with {images} labels it must be [{images}, 3·S·S] (S x S \
             RGB images)",
            header.shape
        ));
    };
    read_data(&mut member, &header, 1, "data", sink)?;
    Ok([3, side, side])
}

/// The bytes handed to a [`read_data`] sink at once.
const READ_PART: usize = 1 << 20;

/// Hands the data of the array `name` (the rest of `member`, after its header) to `sink`, a part
/// of at most [`READ_PART`] bytes at a time: as many elements of `width` bytes as the header's
/// shape holds, no more and no fewer. Nothing is held but the part read, never what the header
/// merely claims, and no more than one byte past the claim is read (a deflated member that
/// inflates beyond it is refused, not inflated). Reading to the member's end makes the zip
/// reader verify its checksum. A failure of `sink` ends the read with its reason.
fn read_data(
    member: &mut impl Read,
    header: &ArrayHeader,
    width: usize,
    name: &str,
    sink: &mut dyn FnMut(&[u8]) -> std::result::Result<(), String>,
) -> std::result::Result<(), String> {
    let Some(expected) = header.elements().and_then(|n| n.checked_mul(width)) else {
        return Err(format!(
            "its array `{name}` has shape {:?}, more bytes than memory can hold",
            header.shape
        ));
    };
    let mut member = member.take((expected as u64).saturating_add(1));
    let mut part = vec![0u8; READ_PART.min(expected.saturating_add(1))];
    let mut read = 0;
    loop {
        let n = match member.read(&mut part) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(format!("its array `{name}` cannot be read: {e}")),
        };
        read += n;
        if read > expected {
            break;
        }
        sink(&part[..n])?;
    }
    if read != expected {
        return Err(format!(
            "its array `{name}` holds {read} bytes, not the {expected} of its header's shape {:?}",
            header.shape
        ));
    }
    Ok(())
}
