//! A broken weights file names the tensor and the shape it should have.

mod common;

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use common::*;
use skinlens_core::model::FoldedNetwork;
use skinlens_core::Error;

fn reference_tensors() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(reference("effnet_lite0.safetensors"), &Device::Cpu).unwrap()
}

fn load(tensors: &HashMap<String, Tensor>) -> skinlens_core::Result<FoldedNetwork> {
    let bytes = safetensors::serialize(tensors.iter().map(|(k, v)| (k.clone(), v)), None).unwrap();
    FoldedNetwork::from_safetensors(&bytes)
}

#[test]
fn missing_tensor_is_named_with_its_shape() {
    let mut tensors = reference_tensors();
    tensors.remove("_blocks.12._depthwise_conv.weight");
    let error = load(&tensors).unwrap_err();
    assert!(matches!(&error, Error::MissingTensor { name, expected } if name == "_blocks.12._depthwise_conv.weight" && expected == &[1152, 1, 5, 5]), "{error}");
    let message = error.to_string();
    assert!(message.contains("_blocks.12._depthwise_conv.weight") && message.contains("[1152, 1, 5, 5]"), "{message}");
}

#[test]
fn misshaped_tensor_is_named_with_both_shapes() {
    let mut tensors = reference_tensors();
    tensors.insert("_bn1.running_var".into(), Tensor::ones(1000, candle_core::DType::F32, &Device::Cpu).unwrap());
    let message = load(&tensors).unwrap_err().to_string();
    assert!(message.contains("_bn1.running_var") && message.contains("[1000]") && message.contains("[1280]"), "{message}");
}

#[test]
fn garbage_is_not_a_model() {
    let message = FoldedNetwork::from_safetensors(b"definitely not safetensors").unwrap_err().to_string();
    assert!(message.contains("not a safetensors file"), "{message}");
}

#[test]
fn class_order_travels_in_metadata() {
    let bytes = read_bytes(shared().join("peers/models/effnet_lite0_7cls.safetensors"));
    let net = FoldedNetwork::from_safetensors(&bytes).unwrap();
    let mut reversed = net.clone();
    reversed.metadata.classes.reverse();
    let back = FoldedNetwork::from_safetensors(&reversed.to_safetensors(skinlens_core::model::Storage::F32, &HashMap::new()).unwrap()).unwrap();
    assert_eq!(back.metadata.classes, ["vasc", "nv", "mel", "df", "bkl", "bcc", "akiec"]);
}
