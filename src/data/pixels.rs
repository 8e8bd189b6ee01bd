//! The pixel bytes of a dataset: held in memory, or mapped read-only from a file of the image
//! cache ([`super::image_cache`]), whose pages the kernel shares between every process that
//! maps it and loads only as they are read.

use std::fmt;
use std::hash::{Hash, Hasher};
use std::ops::Deref;
use std::sync::Arc;

use memmap2::Mmap;

/// Bytes that read as one `[u8]` slice, wherever they live.
#[derive(Clone)]
pub struct Pixels(Storage);

#[derive(Clone)]
enum Storage {
    /// Owned by this process.
    Owned(Vec<u8>),
    /// `len` bytes from `start` of a read-only file mapping, shared with the copies.
    Mapped {
        map: Arc<Mmap>,
        start: usize,
        len: usize,
    },
}

impl Pixels {
    /// The `len` bytes at `start` of `map`, or `None` if the mapping is shorter.
    pub fn mapped(map: Mmap, start: usize, len: usize) -> Option<Pixels> {
        (start.checked_add(len)? <= map.len()).then(|| {
            Pixels(Storage::Mapped {
                map: Arc::new(map),
                start,
                len,
            })
        })
    }

    /// Whether the bytes are mapped from a file rather than held in memory.
    pub fn is_mapped(&self) -> bool {
        matches!(self.0, Storage::Mapped { .. })
    }
}

impl Deref for Pixels {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.0 {
            Storage::Owned(bytes) => bytes,
            Storage::Mapped { map, start, len } => &map[*start..*start + *len],
        }
    }
}

impl From<Vec<u8>> for Pixels {
    fn from(bytes: Vec<u8>) -> Pixels {
        Pixels(Storage::Owned(bytes))
    }
}

impl FromIterator<u8> for Pixels {
    fn from_iter<I: IntoIterator<Item = u8>>(bytes: I) -> Pixels {
        Pixels::from(bytes.into_iter().collect::<Vec<u8>>())
    }
}

impl PartialEq for Pixels {
    fn eq(&self, other: &Pixels) -> bool {
        **self == **other
    }
}

impl Eq for Pixels {}

impl PartialEq<Vec<u8>> for Pixels {
    fn eq(&self, other: &Vec<u8>) -> bool {
        **self == **other
    }
}

impl Hash for Pixels {
    fn hash<H: Hasher>(&self, state: &mut H) {
        (**self).hash(state);
    }
}

impl fmt::Debug for Pixels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        (**self).fmt(f)
    }
}
