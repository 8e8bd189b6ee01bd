//! What glowflow's own image decoders (`jpeg`, `pnm`, `bmp`) tell their caller: the image's size
//! once the header is read, before any pixel is decoded, and why a file gave no image; and the
//! reading of a file's next bytes, which ends in the same error for every decoder.

use std::io::Read;

/// What decoding an image holds at most, told to the caller before any pixel is decoded.
#[derive(Debug)]
pub(crate) struct DecodeSize {
    /// The image's width in pixels.
    pub width: u32,
    /// The image's height in pixels.
    pub height: u32,
    /// The most bytes decoding holds (each decoder says how it counts them).
    pub bytes: u64,
}

/// What a decoder says of data that ends before the image does.
pub(crate) fn truncated() -> String {
    "the data ends before the image does (a truncated file)".to_string()
}

/// The next `count` bytes of `source`, or [`truncated`] where it ends first.
pub(crate) fn read_bytes(source: &mut impl Read, count: usize) -> Result<Vec<u8>, String> {
    let mut bytes = vec![0; count];
    source.read_exact(&mut bytes).map_err(|_| truncated())?;
    Ok(bytes)
}

/// Why a decoder gave no image.
#[derive(Debug)]
pub(crate) enum DecodeFailure {
    /// The caller's `admit` refused the image's size, with this message.
    Refused(String),
    /// The file is no image of the decoder's format that Pillow would read, for this reason.
    Unreadable(String),
}
