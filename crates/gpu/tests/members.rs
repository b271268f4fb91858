//! Every member of a multi-member model file on the GPU against its CPU network: each member
//! has its own size, temperature and weights, and each must agree within 1e-4.

mod common;

use std::collections::HashMap;

use candle_core::{Device, Tensor};
use common::*;
use skinlens_core::model::{Member, ModelFile, Storage};
use skinlens_core::Classifier;
use skinlens_gpu::{self_check_input, GpuEngine};

const PROBABILITY_TOLERANCE: f32 = 1e-4;

/// The shipped network and a changed copy of it (another size, bias and temperature), as one file.
fn two_member_file() -> Vec<u8> {
    let path = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../models/skinlens.safetensors");
    let a = skinlens_core::ModelFile::from_safetensors(&read_bytes(path)).unwrap().members.remove(0).network;
    let mut b = a.clone();
    b.config.input_size = a.config.input_size + 32;
    b.fc_bias = (&b.fc_bias + Tensor::new(&[0.4f32, -0.3, 0.2, 0.0, -0.5, 0.1, 0.3], &Device::Cpu).unwrap()).unwrap();
    b.metadata.temperature = 1.7;
    let file = ModelFile { members: vec![Member { name: "a".into(), weight: 0.5, network: a }, Member { name: "b".into(), weight: 0.5, network: b }] };
    file.to_safetensors(Storage::F16, &HashMap::new()).unwrap()
}

#[test]
fn every_member_runs_on_the_gpu_as_on_the_cpu() {
    let bytes = two_member_file();
    let file = ModelFile::from_safetensors(&bytes).unwrap();
    let classifier = Classifier::from_model_file(&file).unwrap();
    for (member, cpu) in file.members.iter().zip(classifier.members()) {
        let engine = pollster::block_on(GpuEngine::with_context(gpu().clone(), &member.network)).expect("GPU engine");
        let size = member.network.config.input_size;
        assert_eq!(engine.input_size(), size);
        let input = self_check_input(size);
        let on_gpu = pollster::block_on(engine.classify(&input)).unwrap();
        let on_cpu = cpu.classify_view(&Tensor::from_vec(input, (1, 3, size, size), &Device::Cpu).unwrap()).unwrap().remove(0);
        let diff = max_abs_diff(&on_gpu.probabilities, &on_cpu.probabilities);
        println!("member {} at {size} px: max|Δprob| GPU vs CPU = {diff:.2e}", member.name);
        assert!(diff <= PROBABILITY_TOLERANCE, "member {}: {diff}", member.name);
    }
}
