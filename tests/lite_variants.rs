//! EfficientNet-Lite1 and Lite2: the core's block table against the ImageNet reference weights
//! in `../shared/reference` (21 blocks each: depth scaling leaves the first and last stage at one
//! block). Every tensor of the file must be one the table asks for, and the network must give
//! the ImageNet answer on the chelsea photo (a cat) at its own input size.

mod common;

use std::collections::{BTreeSet, HashMap};

use common::*;
use skinlens_core::model::weights::keys;
use skinlens_core::model::{EfficientNetLite, FoldedNetwork, ModelConfig};
use skinlens_core::preprocess::{centre_square, input_tensor, resize_bilinear_u8};

/// The reference file re-saved with the metadata the core reads (architecture, input size).
fn with_arch(bytes: &[u8], arch: &str, size: usize) -> Vec<u8> {
    let file = safetensors::SafeTensors::deserialize(bytes).expect("safetensors");
    let meta = HashMap::from([(keys::ARCH.to_string(), arch.to_string()), (keys::INPUT_SIZE.to_string(), size.to_string())]);
    safetensors::serialize(file.tensors(), Some(meta)).expect("serialize")
}

/// How many tensors the block table asks for (raw layout, 1,000-class classifier).
fn expected_tensor_count(config: &ModelConfig) -> usize {
    let conv_bn = 5; // a convolution's weight and its BatchNorm's four tensors
    let blocks: usize = config.blocks.iter().map(|b| if b.has_expand() { 3 } else { 2 } * conv_bn).sum();
    conv_bn + blocks + conv_bn + 2
}

fn check_variant(variant: u8, file: &str) {
    let config = ModelConfig::lite(variant).expect("a Lite variant");
    assert_eq!(config.blocks.len(), 21, "Lite{variant} has 21 blocks");
    let bytes = read_bytes(reference(file));
    let raw = safetensors::SafeTensors::deserialize(&bytes).expect("safetensors");
    let names = raw.names();
    let block_indices: BTreeSet<usize> = names.iter().filter_map(|n| n.strip_prefix("_blocks.")?.split('.').next()?.parse().ok()).collect();
    assert_eq!(block_indices.len(), config.blocks.len(), "{file}: blocks in the file vs the table");
    assert_eq!(names.len(), expected_tensor_count(&config), "{file}: every tensor is one the table asks for");

    let net = FoldedNetwork::from_safetensors(&with_arch(&bytes, &config.name, config.input_size)).expect("the table's shapes match the file");
    let model = EfficientNetLite::new(&net).expect("build");
    let orig = image::RgbImage::from_raw(451, 300, tensor_u8("chelsea_orig_u8_hwc")).expect("300×451×3");
    let size = config.input_size as u32;
    let input = input_tensor(&[&resize_bilinear_u8(&centre_square(&orig), size, size)], &candle_core::Device::Cpu).unwrap();
    let logits = model.forward(&input).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let max = logits.iter().cloned().fold(f32::MIN, f32::max);
    let sum: f32 = logits.iter().map(|l| (l - max).exp()).sum();
    let mut ranked: Vec<(usize, f32)> = logits.iter().map(|l| (l - max).exp() / sum).enumerate().collect();
    ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
    println!("Lite{variant} chelsea top-5 (class, probability): {:?}", &ranked[..5]);
    // ImageNet 281 tabby, 282 tiger cat, 285 Egyptian cat (Lite0's top three, in another order).
    let cats = [281, 282, 285];
    assert!(cats.contains(&ranked[0].0) && ranked[0].1 > 0.3, "Lite{variant} top-1 {:?} is not a confident cat", ranked[0]);
    assert!(ranked[..3].iter().all(|(c, _)| cats.contains(c)), "Lite{variant} top-3 {:?}", &ranked[..3]);
}

#[test]
fn lite1_block_table_matches_its_imagenet_weights() {
    check_variant(1, "effnet_lite1.safetensors");
}

#[test]
fn lite2_block_table_matches_its_imagenet_weights() {
    check_variant(2, "effnet_lite2.safetensors");
}
