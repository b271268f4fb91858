//! Any bytes through decode + centre square + resize: an error is fine, a panic, a hang or an
//! allocation beyond the limits is a bug.
#![no_main]

use libfuzzer_sys::fuzz_target;
use skinlens_core::preprocess::{decode_rgb8, prepare_decoded, DecodeLimits};

fuzz_target!(|data: &[u8]| {
    // Tighter than the product's limits so libFuzzer's 2 GB RSS cap measures our bound, not its own.
    let limits = DecodeLimits { max_side: 4096, max_megapixels: 16, max_alloc: 256 << 20 };
    if let Ok(rgb) = decode_rgb8(data, &limits) {
        let prepared = prepare_decoded(&rgb, 64);
        assert_eq!(prepared.model_view.dimensions(), (64, 64));
    }
});
