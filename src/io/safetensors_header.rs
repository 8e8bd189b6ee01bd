//! Safetensors files with the same bytes for the same contents: their JSON header written with
//! its keys in order.
//!
//! A safetensors file is an 8-byte little-endian header length `n`, `n` bytes of JSON (padded
//! with spaces), then the tensors' bytes. The writers build the header from hash maps (burn's
//! store the `__metadata__` map, the `safetensors` crate its metadata argument), whose order
//! changes from map to map, so two saves of the same weights differed in their header's bytes
//! and a checksum could not confirm that two runs ended alike.

/// `bytes`, a safetensors file, with its header rewritten with every JSON object's keys in
/// order (serde_json's map is sorted), padded with spaces to its old length: the tensors and
/// their offsets are untouched. A file whose header does not parse, or would grow, is returned
/// as it is.
pub fn with_sorted_header(mut bytes: Vec<u8>) -> Vec<u8> {
    let Some(length) = bytes
        .get(..8)
        .and_then(|b| usize::try_from(u64::from_le_bytes(b.try_into().ok()?)).ok())
    else {
        return bytes;
    };
    let Some(header) = length.checked_add(8).and_then(|end| bytes.get(8..end)) else {
        return bytes;
    };
    let Ok(value) = serde_json::from_slice::<serde_json::Value>(header) else {
        return bytes;
    };
    let Ok(mut sorted) = serde_json::to_vec(&value) else {
        return bytes;
    };
    if sorted.len() > length {
        return bytes;
    }
    sorted.resize(length, b' ');
    bytes[8..8 + length].copy_from_slice(&sorted);
    bytes
}
