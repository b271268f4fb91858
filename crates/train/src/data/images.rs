//! Load every image once, as the largest centred square in 8-bit RGB, into memory.
//!
//! Where an image exists in several copies the best framing wins: a folder's `images_224/`
//! (the centre 450×450 of the 600×450 original, resized) before the centre 150×150 of
//! `images_200x150/`, before an image found directly in a folder (the official
//! `HAM10000_images_part_1/2` at 600×450). Squares larger than `max_side` are resized down.

use std::path::{Path, PathBuf};

use anyhow::Result;
use image::RgbImage;
use rayon::prelude::*;
use skinlens_core::preprocess::{centre_square, decode_rgb8, resize_bilinear_u8, ColourConstancy, DecodeLimits};

use super::records::{Record, Skips};

/// Subfolders of an image root, best framing first; `""` is the root itself.
const SUBFOLDERS: [&str; 3] = ["images_224", "images_200x150", ""];
const EXTENSIONS: [&str; 3] = ["jpg", "jpeg", "png"];

/// Where `image_id` lives, trying every root's subfolders in order of preference.
pub fn locate(roots: &[PathBuf], image_id: &str) -> Option<PathBuf> {
    for sub in SUBFOLDERS {
        for root in roots {
            let dir = if sub.is_empty() { root.clone() } else { root.join(sub) };
            for ext in EXTENSIONS {
                let path = dir.join(format!("{image_id}.{ext}"));
                if path.is_file() {
                    return Some(path);
                }
            }
        }
    }
    None
}

/// Decode one file into its centre square, colour-corrected as `colour` says (before any
/// resize, as every front end does), at most `max_side` pixels wide.
pub fn load_square(path: &Path, max_side: u32, colour: ColourConstancy) -> Result<RgbImage, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot read: {e}"))?;
    let rgb = decode_rgb8(&bytes, &DecodeLimits::default()).map_err(|e| e.to_string())?;
    let mut square = centre_square(&rgb);
    colour.apply(&mut square);
    Ok(if square.width() > max_side { resize_bilinear_u8(&square, max_side, max_side) } else { square })
}

/// Records that have a readable image, with those images; the others are counted in `skips`.
pub fn preload(records: &[Record], roots: &[PathBuf], max_side: u32, colour: ColourConstancy, skips: &mut Skips) -> Result<(Vec<Record>, Vec<RgbImage>)> {
    let loaded: Vec<Result<RgbImage, (String, String)>> = records
        .par_iter()
        .map(|r| {
            let path = locate(roots, &r.image_id).ok_or_else(|| ("image file not found".to_string(), r.image_id.clone()))?;
            load_square(&path, max_side, colour).map_err(|e| (format!("unreadable image ({e})"), path.display().to_string()))
        })
        .collect();
    let mut kept = Vec::with_capacity(records.len());
    let mut images = Vec::with_capacity(records.len());
    for (record, outcome) in records.iter().zip(loaded) {
        match outcome {
            Ok(image) => {
                kept.push(record.clone());
                images.push(image);
            }
            Err((reason, what)) => skips.add(reason, what),
        }
    }
    anyhow::ensure!(!kept.is_empty(), "no image of the {} listed was found under {}", records.len(), roots.iter().map(|r| r.display().to_string()).collect::<Vec<_>>().join(", "));
    Ok((kept, images))
}
