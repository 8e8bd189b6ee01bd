//! Readers for real image datasets (MNIST / Fashion-MNIST in IDX format, CIFAR-10 in its binary
//! format, the downsampled ImageNet in NumPy archives, folders of PNG / JPEG / WebP / TIFF /
//! Netpbm / BMP files), each producing an [`dataset::ImageDataset`] of raw `u8` pixels in NCHW
//! order ([`pixels`]: in memory, or mapped from a file), plus CelebA's per-image attribute list
//! ([`celeba`]); the image cache, into which folders are decoded once and from which every
//! process maps them ([`image_cache`]); JPEG, Netpbm and BMP decoding as Pillow decodes (`jpeg`,
//! `pnm`, `bmp`, with what they report in `decode`); Pillow's Lanczos resize, with which folders
//! are fitted to a size ([`resample`]); where a run's images come from and loading them for a
//! model ([`source`]); and the seeded training batches ([`batches`]).
//!
//! Every reader checks the file against its format (magic numbers, record sizes, counts, label
//! ranges) and reports bad input as a [`crate::GlowError`] naming the file and what to do; none
//! panics on file content.

pub mod batches;
mod bmp;
pub mod celeba;
pub mod cifar;
pub mod dataset;
mod decode;
pub mod downsampled_imagenet;
pub mod folder;
pub mod idx;
pub mod image_cache;
mod jpeg;
pub mod pixels;
mod pnm;
pub mod resample;
pub mod source;
