//! Training batches, prepared on a background thread so the model never waits for data.
//!
//! The batch of step `t` is a pure function of `(seed, t)`: epoch `e = t / B_e` (with `B_e`
//! full batches per epoch, the remainder dropped) visits the images in a random order seeded by
//! `(seed, e)`, and the dequantisation noise of step `t` is seeded by `(seed, t)`, as are its
//! augmentations ([`Augment`]: random crops where the images are larger than the model's, random
//! shifts, random mirror images). A run resumed at step `t` therefore sees exactly the batches an
//! uninterrupted run would have.

use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;
use std::thread::JoinHandle;

use burn::tensor::{Device, Tensor, TensorData};
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};

use crate::data::dataset::ImageDataset;
use crate::error::{GlowError, Result};
use crate::flow::prior::one_hot;

/// One step's images, labels and dequantisation noise, on the host.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The step this batch belongs to.
    pub step: u64,
    /// 8-bit pixel values as f32, `[N, C, H, W]` row-major.
    pub pixels: Vec<f32>,
    /// Uniform noise in `[0, 1)`, same layout as `pixels`.
    pub noise: Vec<f32>,
    /// Class labels, when the dataset has them.
    pub labels: Option<Vec<usize>>,
}

impl Batch {
    /// The batch as tensors on `device`: images (8-bit values as floats), noise, and one-hot
    /// classes when `n_classes > 0`.
    pub fn to_tensors(
        &self,
        shape: [usize; 3],
        n_classes: usize,
        device: &Device,
    ) -> Result<(Tensor<4>, Tensor<4>, Option<Tensor<2>>)> {
        let n = self.pixels.len() / shape.iter().product::<usize>();
        let dims = [n, shape[0], shape[1], shape[2]];
        let images = Tensor::from_data(TensorData::new(self.pixels.clone(), dims), device);
        let noise = Tensor::from_data(TensorData::new(self.noise.clone(), dims), device);
        let classes = match (n_classes, &self.labels) {
            (0, _) => None,
            (k, Some(labels)) => Some(one_hot(labels, k, device)?),
            (k, None) => {
                return Err(GlowError::Label(format!(
                    "the model is class-conditional (n_classes = {k}) but the dataset has no labels"
                )))
            }
        };
        Ok((images, noise, classes))
    }
}

/// A generator seeded from a run seed and a stream index, so that independent streams (epochs,
/// steps, evaluation) never share random numbers.
pub fn stream_rng(seed: u64, stream: u64, index: u64) -> rand::rngs::StdRng {
    let mixed = seed
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(stream.wrapping_mul(0xBF58_476D_1CE4_E5B9))
        .wrapping_add(index.wrapping_mul(0x94D0_49BB_1331_11EB));
    rand::rngs::StdRng::seed_from_u64(mixed)
}

/// Random streams of a run.
const EPOCH_STREAM: u64 = 1;
const NOISE_STREAM: u64 = 2;
/// The stream of evaluation noise.
pub const EVAL_STREAM: u64 = 3;
/// The stream of sampling noise.
pub const SAMPLE_STREAM: u64 = 4;
/// The stream that picks the data-dependent initialisation images.
pub const INIT_STREAM: u64 = 5;
/// The stream of augmentations (crop offsets, shifts and flips).
pub const AUGMENT_STREAM: u64 = 6;

/// How a training batch varies its images, drawn image by image from the step's augmentation
/// stream: a random window (its top-left corner uniform over the windows that fit, row then
/// column), then a random shift (down, then right, each uniform in `-translate..=translate`,
/// the pixels shifted in black), then a left-right mirror image with probability 1/2.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Augment {
    /// The `[height, width]` of a random window of each image (e.g. RealNVP's 64x64 of 96x96
    /// LSUN images); `None` keeps whole images.
    pub crop: Option<[usize; 2]>,
    /// The largest shift in pixels, down or up and right or left (y0ast's `RandomAffine(0,
    /// translate=(0.1, 0.1))`: 3 at 32x32); 0 shifts nothing.
    pub translate: usize,
    /// Mirror each image left to right with probability 1/2 (rosinality's and y0ast's
    /// `RandomHorizontalFlip`).
    pub flip: bool,
}

/// Shifts each `rows x columns` plane of `image` down by `down` and right by `right` pixels
/// (negative: up, left), filling what comes in with black (0).
fn shift(image: &mut [f32], [rows, columns]: [usize; 2], [down, right]: [isize; 2]) {
    for plane in image.chunks_exact_mut(rows * columns) {
        let source = plane.to_vec();
        for (r, row) in plane.chunks_exact_mut(columns).enumerate() {
            for (c, value) in row.iter_mut().enumerate() {
                let from = (r.checked_add_signed(-down), c.checked_add_signed(-right));
                *value = match from {
                    (Some(y), Some(x)) if y < rows && x < columns => source[y * columns + x],
                    _ => 0.0,
                };
            }
        }
    }
}

/// The order in which epoch `epoch` visits the `n` images.
fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    let mut order: Vec<usize> = (0..n).collect();
    order.shuffle(&mut stream_rng(seed, EPOCH_STREAM, epoch));
    order
}

/// Gathers images `indices` of `data`, with fresh noise from `noise_rng`.
pub fn gather(
    data: &ImageDataset,
    indices: &[usize],
    noise_rng: &mut impl Rng,
    step: u64,
) -> Batch {
    let pixels = indices
        .iter()
        .flat_map(|&i| data.image(i).iter().map(|&v| f32::from(v)))
        .collect();
    with_noise(data, indices, pixels, noise_rng, step)
}

/// [`gather`] of the images as `augment` varies them, its draws from `augment_rng` (see
/// [`Augment`]); no augmentation draws nothing and gathers as [`gather`] does.
///
/// # Panics
/// If the crop is larger than the images.
pub fn gather_augmented(
    data: &ImageDataset,
    indices: &[usize],
    augment: Augment,
    augment_rng: &mut impl Rng,
    noise_rng: &mut impl Rng,
    step: u64,
) -> Batch {
    let [channels, height, width] = data.shape;
    let [rows, columns] = augment.crop.unwrap_or([height, width]);
    let mut pixels = Vec::with_capacity(indices.len() * channels * rows * columns);
    for &i in indices {
        let at = match augment.crop {
            Some(_) => [
                augment_rng.random_range(0..=height - rows),
                augment_rng.random_range(0..=width - columns),
            ],
            None => [0, 0],
        };
        let start = pixels.len();
        pixels.extend(data.window(i, at, [rows, columns]).map(f32::from));
        if augment.translate > 0 {
            let t = augment.translate as i64;
            let by = [
                augment_rng.random_range(-t..=t) as isize,
                augment_rng.random_range(-t..=t) as isize,
            ];
            shift(&mut pixels[start..], [rows, columns], by);
        }
        if augment.flip && augment_rng.random_bool(0.5) {
            for row in pixels[start..].chunks_exact_mut(columns) {
                row.reverse();
            }
        }
    }
    with_noise(data, indices, pixels, noise_rng, step)
}

/// The batch of `pixels` (images `indices` of `data`) with fresh noise from `noise_rng` and the
/// images' labels.
fn with_noise(
    data: &ImageDataset,
    indices: &[usize],
    pixels: Vec<f32>,
    noise_rng: &mut impl Rng,
    step: u64,
) -> Batch {
    let noise = (0..pixels.len())
        .map(|_| noise_rng.random::<f32>())
        .collect();
    let labels = data
        .labels
        .as_ref()
        .map(|labels| indices.iter().map(|&i| labels[i]).collect());
    Batch {
        step,
        pixels,
        noise,
        labels,
    }
}

/// The batches of a run: which images and noise each step gets.
pub struct BatchSchedule {
    data: Arc<ImageDataset>,
    batch_size: usize,
    seed: u64,
    /// The most recent epoch's order, kept so consecutive steps do not reshuffle.
    current: Option<(u64, Vec<usize>)>,
    /// How each image is varied.
    augment: Augment,
}

impl BatchSchedule {
    /// The schedule of batches of `batch_size` images of `data` for a run seeded by `seed`.
    pub fn new(data: Arc<ImageDataset>, batch_size: usize, seed: u64) -> Self {
        BatchSchedule {
            data,
            batch_size,
            seed,
            current: None,
            augment: Augment::default(),
        }
    }

    /// The same schedule with its images varied as `augment` says, drawn from the augmentation
    /// stream of the step ([`gather_augmented`]).
    pub fn with_augment(self, augment: Augment) -> Self {
        BatchSchedule { augment, ..self }
    }

    /// The batch of step `step` (see the module documentation).
    pub fn batch(&mut self, step: u64) -> Batch {
        let per_epoch = (self.data.len() / self.batch_size).max(1) as u64;
        let epoch = step / per_epoch;
        if self.current.as_ref().map(|(e, _)| *e) != Some(epoch) {
            self.current = Some((epoch, epoch_order(self.data.len(), self.seed, epoch)));
        }
        let order = &self.current.as_ref().expect("just set").1;
        let start = (step % per_epoch) as usize * self.batch_size;
        let indices = &order[start..(start + self.batch_size).min(order.len())];
        gather_augmented(
            &self.data,
            indices,
            self.augment,
            &mut stream_rng(self.seed, AUGMENT_STREAM, step),
            &mut stream_rng(self.seed, NOISE_STREAM, step),
            step,
        )
    }
}

/// Batches for steps `first, first + 1, ...`, produced ahead on a background thread.
pub struct BatchStream {
    receiver: Receiver<Batch>,
    _worker: JoinHandle<()>,
}

impl BatchStream {
    /// Starts producing the batches of `schedule` from step `first`; at most `ahead` wait.
    pub fn start(mut schedule: BatchSchedule, first: u64, ahead: usize) -> Self {
        let (sender, receiver) = sync_channel(ahead.max(1));
        let worker = std::thread::spawn(move || {
            for step in first.. {
                if sender.send(schedule.batch(step)).is_err() {
                    return; // the trainer is done with this stream
                }
            }
        });
        BatchStream {
            receiver,
            _worker: worker,
        }
    }

    /// The next batch, in step order.
    pub fn next_batch(&self) -> Batch {
        self.receiver
            .recv()
            .expect("the batch thread runs until the stream is dropped")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dataset(n: usize) -> ImageDataset {
        ImageDataset {
            shape: [1, 2, 2],
            pixels: (0..n * 4).map(|i| (i / 4) as u8).collect(),
            labels: Some((0..n).map(|i| i % 3).collect()),
            n_classes: 3,
        }
    }

    #[test]
    fn stream_matches_the_pure_function_and_covers_each_epoch_once() {
        let data = Arc::new(dataset(10));
        let stream = BatchStream::start(BatchSchedule::new(data.clone(), 3, 7), 0, 2);
        let mut seen = Vec::new();
        for step in 0..6 {
            let batch = stream.next_batch();
            // A fresh schedule per step: the batch is a pure function of (seed, step).
            let expected = BatchSchedule::new(data.clone(), 3, 7).batch(step);
            assert_eq!(batch.step, step);
            assert_eq!(batch.pixels, expected.pixels);
            assert_eq!(batch.noise, expected.noise);
            assert_eq!(batch.labels, expected.labels);
            if step < 3 {
                seen.extend(batch.pixels.chunks(4).map(|img| img[0] as usize));
            }
        }
        // Epoch 0 (3 full batches of 3 out of 10 images) never repeats an image.
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(sorted.len(), 9, "{seen:?}");
    }

    #[test]
    fn resuming_mid_run_gives_the_same_batches() {
        let data = Arc::new(dataset(10));
        let from_start = BatchStream::start(BatchSchedule::new(data.clone(), 4, 1), 0, 2);
        let batches: Vec<Batch> = (0..7).map(|_| from_start.next_batch()).collect();
        let resumed = BatchStream::start(BatchSchedule::new(data, 4, 1), 4, 2);
        for expected in &batches[4..] {
            let batch = resumed.next_batch();
            assert_eq!(
                (batch.step, &batch.pixels, &batch.noise),
                (expected.step, &expected.pixels, &expected.noise)
            );
        }
        assert_ne!(
            batches[0].noise, batches[1].noise,
            "each step has its own noise"
        );
        assert!(batches[0].noise.iter().all(|u| (0.0..1.0).contains(u)));
    }

    /// Random 2x3 crops of 4x5 images whose every pixel value says where it lies (image `i`,
    /// row `r`, column `c`: `20 i + 5 r + c`, two channels).
    #[test]
    fn random_crops_are_windows_of_their_images_at_every_offset_and_resume_exactly() {
        let pixel = |i: usize, channel: usize, r: usize, c: usize| {
            (20 * i + 5 * r + c + 100 * channel) as f32
        };
        let data = Arc::new(ImageDataset {
            shape: [2, 4, 5],
            pixels: (0..3)
                .flat_map(|i| {
                    (0..2).flat_map(move |ch| {
                        (0..4).flat_map(move |r| (0..5).map(move |c| pixel(i, ch, r, c) as u8))
                    })
                })
                .collect(),
            labels: None,
            n_classes: 0,
        });
        let crop = Augment {
            crop: Some([2, 3]),
            ..Augment::default()
        };
        let schedule = || BatchSchedule::new(data.clone(), 2, 5).with_augment(crop);
        let stream = BatchStream::start(schedule(), 0, 2);
        let mut offsets = std::collections::BTreeSet::new();
        for step in 0..200 {
            let batch = stream.next_batch();
            assert_eq!(
                (batch.pixels.len(), batch.noise.len()),
                (2 * 2 * 2 * 3, 2 * 2 * 2 * 3)
            );
            for image in batch.pixels.chunks(2 * 2 * 3) {
                // The first pixel names the image and the window's top-left corner.
                let first = image[0] as usize;
                let (i, top, left) = (first / 20, first % 20 / 5, first % 5);
                assert!(top <= 2 && left <= 2, "a window that fits: {first}");
                let window: Vec<f32> = (0..2)
                    .flat_map(|ch| {
                        (0..2)
                            .flat_map(move |r| (0..3).map(move |c| pixel(i, ch, top + r, left + c)))
                    })
                    .collect();
                assert_eq!(image, window, "step {step}");
                offsets.insert((top, left));
            }
            // A pure function of (seed, step): a fresh schedule gives the same batch.
            let again = schedule().batch(step);
            assert_eq!((&again.pixels, &again.noise), (&batch.pixels, &batch.noise));
        }
        assert_eq!(
            offsets.len(),
            9,
            "every one of the 3 x 3 offsets: {offsets:?}"
        );
        // Resumed at step 150, the batches are the same.
        let resumed = BatchStream::start(schedule(), 150, 2);
        let batch = resumed.next_batch();
        assert_eq!(batch.pixels, schedule().batch(150).pixels);
        // Without crops, the same schedule's noise is as before (the crops draw their own stream).
        let whole = BatchSchedule::new(data.clone(), 2, 5).batch(3);
        let cropped = schedule().batch(3);
        assert_eq!(whole.noise[..cropped.noise.len()], cropped.noise[..]);
        // No augmentation gathers what `gather` does, drawing nothing.
        let indices = [2, 0, 1];
        let mut unused = stream_rng(1, AUGMENT_STREAM, 0);
        let plain = gather_augmented(
            &data,
            &indices,
            Augment::default(),
            &mut unused,
            &mut stream_rng(1, NOISE_STREAM, 0),
            0,
        );
        let gathered = gather(&data, &indices, &mut stream_rng(1, NOISE_STREAM, 0), 0);
        assert_eq!(
            (&plain.pixels, &plain.noise),
            (&gathered.pixels, &gathered.noise)
        );
        assert_eq!(
            unused.random::<u64>(),
            stream_rng(1, AUGMENT_STREAM, 0).random::<u64>()
        );
    }

    /// Flips of 1x2x3 images whose pixels say where they lie (`10 i + 3 r + c`): each image of
    /// a batch is its image or its mirror image, both occur, and a crop is flipped after it is
    /// cut.
    #[test]
    fn random_flips_mirror_whole_images_or_their_crops() {
        let pixel = |i: usize, r: usize, c: usize| (10 * i + 3 * r + c) as u8;
        let data = Arc::new(ImageDataset {
            shape: [1, 2, 3],
            pixels: (0..4)
                .flat_map(|i| (0..2).flat_map(move |r| (0..3).map(move |c| pixel(i, r, c))))
                .collect(),
            labels: Some(vec![0, 1, 2, 3]),
            n_classes: 4,
        });
        let image = |i: usize, columns: std::ops::Range<usize>, mirrored: bool| -> Vec<f32> {
            (0..2)
                .flat_map(|r| {
                    let row: Vec<f32> =
                        columns.clone().map(|c| f32::from(pixel(i, r, c))).collect();
                    if mirrored {
                        row.into_iter().rev().collect()
                    } else {
                        row
                    }
                })
                .collect()
        };
        for crop in [None, Some([2, 2])] {
            let augment = Augment {
                crop,
                flip: true,
                ..Augment::default()
            };
            let mut schedule = BatchSchedule::new(data.clone(), 2, 9).with_augment(augment);
            let mut seen = [0; 2];
            for step in 0..100 {
                let batch = schedule.batch(step);
                let width = if crop.is_some() { 2 } else { 3 };
                for (k, got) in batch.pixels.chunks(2 * width).enumerate() {
                    let i = batch.labels.as_ref().expect("labels")[k];
                    let mut found = (0..=3 - width).flat_map(|left| {
                        [false, true]
                            .map(|mirrored| (mirrored, image(i, left..left + width, mirrored)))
                    });
                    let (mirrored, _) = found.find(|(_, want)| want == got).unwrap_or_else(|| {
                        panic!("step {step}: {got:?} is no window of image {i}")
                    });
                    seen[usize::from(mirrored)] += 1;
                }
            }
            assert!(
                seen[0] > 50 && seen[1] > 50,
                "{crop:?}: {seen:?} plain / mirrored"
            );
        }
    }

    /// Shifts of up to 1 pixel of 1x3x4 images whose pixels say where they lie and are never 0
    /// (`1 + 20 i + 4 r + c`): each image of a batch is its image moved by one of the 9 shifts,
    /// black where nothing comes in, and every shift occurs.
    #[test]
    fn random_shifts_move_each_image_by_up_to_the_largest_shift_filling_in_black() {
        let pixel = |i: usize, r: usize, c: usize| (20 * i + 4 * r + c + 1) as u8;
        let data = Arc::new(ImageDataset {
            shape: [1, 3, 4],
            pixels: (0..3)
                .flat_map(|i| (0..3).flat_map(move |r| (0..4).map(move |c| pixel(i, r, c))))
                .collect(),
            labels: Some(vec![0, 1, 2]),
            n_classes: 3,
        });
        // Image `i` moved down by `dy` and right by `dx`, written out pixel by pixel.
        let moved = |i: usize, dy: isize, dx: isize| -> Vec<f32> {
            let mut out = Vec::new();
            for r in 0..3isize {
                for c in 0..4isize {
                    let (y, x) = (r - dy, c - dx);
                    let inside = (0..3).contains(&y) && (0..4).contains(&x);
                    out.push(if inside {
                        f32::from(pixel(i, y as usize, x as usize))
                    } else {
                        0.0
                    });
                }
            }
            out
        };
        let augment = Augment {
            translate: 1,
            ..Augment::default()
        };
        let mut schedule = BatchSchedule::new(data.clone(), 3, 4).with_augment(augment);
        let mut shifts = std::collections::BTreeSet::new();
        for step in 0..100 {
            let batch = schedule.batch(step);
            for (k, got) in batch.pixels.chunks(12).enumerate() {
                let i = batch.labels.as_ref().expect("labels")[k];
                let shift = (-1..=1)
                    .flat_map(|dy| (-1..=1).map(move |dx| (dy, dx)))
                    .find(|&(dy, dx)| moved(i, dy, dx) == got)
                    .unwrap_or_else(|| panic!("step {step}: {got:?} is no shift of image {i}"));
                shifts.insert(shift);
            }
        }
        assert_eq!(shifts.len(), 9, "every shift of up to 1 pixel: {shifts:?}");
    }
}
