//! Image variants: a 150×150 thumbnail and a 640×640 preview, JPEG, made off the request path.
//!
//! Both fit inside their box and keep the aspect ratio; an image smaller than the box is not
//! enlarged. The EXIF orientation of a JPEG or WebP is applied first, so a portrait photo
//! taken sideways comes out upright. Decoding is bounded ([`ImageLimits`]): a small file that
//! claims to be a 100 000 × 100 000 image is refused before any pixel buffer is allocated.
//! Transparent pixels are flattened onto white (JPEG has no alpha).
//!
//! [`generate`] is blocking CPU work: the service runs it with `spawn_blocking`, a few at a
//! time (see `MediaConfig::thumbnail_jobs_max`).

use std::fs::File;
use std::io::{BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use image::codecs::jpeg::JpegEncoder;
use image::imageops::FilterType;
use image::{DynamicImage, ImageDecoder, ImageReader, Limits, RgbImage};

/// JPEG quality of the variants.
pub const JPEG_QUALITY: u8 = 80;

/// Decoding bounds for uploaded images.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageLimits {
    /// Widest or tallest image decoded, in pixels.
    pub side_px_max: u32,
    /// Most bytes the decoder may allocate.
    pub alloc_bytes_max: u64,
}

impl Default for ImageLimits {
    fn default() -> Self {
        Self {
            side_px_max: 16_384,
            alloc_bytes_max: 256 * 1024 * 1024,
        }
    }
}

/// Sizes of the variants' boxes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VariantSizes {
    /// The thumbnail's box side (150).
    pub thumbnail_px: u32,
    /// The preview's box side (640).
    pub preview_px: u32,
}

impl Default for VariantSizes {
    fn default() -> Self {
        Self {
            thumbnail_px: 150,
            preview_px: 640,
        }
    }
}

/// Why variants could not be made.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ThumbError {
    /// The image is malformed, unsupported or over the limits.
    #[error("image: {0}")]
    Image(#[from] image::ImageError),
    /// Reading the original or writing a variant failed.
    #[error("variant file: {0}")]
    Io(#[from] std::io::Error),
}

/// Whether variants are made for media of this (sniffed) MIME type.
pub fn has_variants(mime: &str) -> bool {
    matches!(mime, "image/jpeg" | "image/png" | "image/webp")
}

/// The size of a `width`×`height` image fitted into a `side`×`side` box: aspect kept, never
/// enlarged, never zero.
pub fn fit(width: u32, height: u32, side: u32) -> (u32, u32) {
    if width <= side && height <= side {
        return (width.max(1), height.max(1));
    }
    let scale = f64::from(side) / f64::from(width.max(height));
    let w = (f64::from(width) * scale).round() as u32;
    let h = (f64::from(height) * scale).round() as u32;
    (w.clamp(1, side), h.clamp(1, side))
}

/// Decodes `original` within `limits`, applies its orientation and writes the preview and the
/// thumbnail (each atomically: a temporary file renamed into place). Returns the upright
/// original's (width, height).
pub fn generate(
    original: &Path,
    preview: &Path,
    thumbnail: &Path,
    sizes: VariantSizes,
    limits: ImageLimits,
) -> Result<(u32, u32), ThumbError> {
    let mut image_limits = Limits::default();
    image_limits.max_image_width = Some(limits.side_px_max);
    image_limits.max_image_height = Some(limits.side_px_max);
    image_limits.max_alloc = Some(limits.alloc_bytes_max);
    let mut reader =
        ImageReader::new(BufReader::new(File::open(original)?)).with_guessed_format()?;
    reader.limits(image_limits);
    let mut decoder = reader.into_decoder()?;
    let orientation = decoder.orientation()?;
    let mut image = DynamicImage::from_decoder(decoder)?;
    image.apply_orientation(orientation);
    let (width, height) = (image.width(), image.height());

    let (pw, ph) = fit(width, height, sizes.preview_px);
    let preview_image = if (pw, ph) == (width, height) {
        image
    } else {
        image.resize_exact(pw, ph, FilterType::Triangle)
    };
    write_jpeg(&flatten(&preview_image), preview)?;
    let (tw, th) = fit(width, height, sizes.thumbnail_px);
    let thumbnail_image = preview_image.resize_exact(tw, th, FilterType::Triangle);
    write_jpeg(&flatten(&thumbnail_image), thumbnail)?;
    Ok((width, height))
}

/// RGB with transparent pixels blended onto white.
fn flatten(image: &DynamicImage) -> RgbImage {
    if !image.color().has_alpha() {
        return image.to_rgb8();
    }
    let rgba = image.to_rgba8();
    RgbImage::from_fn(rgba.width(), rgba.height(), |x, y| {
        let p = rgba.get_pixel(x, y).0;
        let alpha = u32::from(p[3]);
        let blend = |c: u8| ((u32::from(c) * alpha + 255 * (255 - alpha)) / 255) as u8;
        image::Rgb([blend(p[0]), blend(p[1]), blend(p[2])])
    })
}

fn write_jpeg(image: &RgbImage, path: &Path) -> Result<(), ThumbError> {
    let mut tmp = PathBuf::from(path);
    tmp.as_mut_os_string().push(".tmp");
    let result = (|| -> Result<(), ThumbError> {
        let file = File::create(&tmp)?;
        let mut out = BufWriter::new(file);
        JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY).encode_image(image)?;
        out.flush()?;
        out.get_ref().sync_all()?;
        std::fs::rename(&tmp, path)?;
        Ok(())
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fitting_keeps_the_aspect_and_never_enlarges() {
        assert_eq!(fit(1000, 500, 150), (150, 75));
        assert_eq!(fit(500, 1000, 640), (320, 640));
        assert_eq!(fit(100, 50, 150), (100, 50));
        assert_eq!(fit(10_000, 1, 150), (150, 1));
        assert_eq!(fit(0, 0, 150), (1, 1));
    }

    #[test]
    fn variants_of_a_png_with_alpha() {
        let dir = tempfile::tempdir().unwrap();
        let original = dir.path().join("o");
        let img = image::RgbaImage::from_fn(1200, 300, |x, _| {
            image::Rgba([200, 10, 10, (x % 256) as u8])
        });
        img.save_with_format(&original, image::ImageFormat::Png)
            .unwrap();
        let (p, t) = (dir.path().join("p"), dir.path().join("t"));
        let dims = generate(
            &original,
            &p,
            &t,
            VariantSizes::default(),
            ImageLimits::default(),
        )
        .unwrap();
        assert_eq!(dims, (1200, 300));
        let open = |path: &Path| {
            ImageReader::open(path)
                .unwrap()
                .with_guessed_format()
                .unwrap()
                .decode()
                .unwrap()
        };
        let preview = open(&p);
        assert_eq!((preview.width(), preview.height()), (640, 160));
        let thumb = open(&t);
        assert_eq!((thumb.width(), thumb.height()), (150, 38));
    }

    #[test]
    fn oversized_and_malformed_images_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let original = dir.path().join("o");
        image::RgbImage::new(300, 20)
            .save_with_format(&original, image::ImageFormat::Png)
            .unwrap();
        let (p, t) = (dir.path().join("p"), dir.path().join("t"));
        let small = ImageLimits {
            side_px_max: 200,
            ..ImageLimits::default()
        };
        assert!(generate(&original, &p, &t, VariantSizes::default(), small).is_err());
        std::fs::write(&original, b"\x89PNG\r\n\x1a\nnot really").unwrap();
        assert!(
            generate(
                &original,
                &p,
                &t,
                VariantSizes::default(),
                ImageLimits::default()
            )
            .is_err()
        );
        assert!(!p.exists() && !t.exists());
    }
}
