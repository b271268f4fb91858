//! The WebGPU backend's choices, natively on Vulkan (Mesa lavapipe on CI): it answers like
//! the CPU path, and after a device loss it still answers the image in hand, on the CPU.

use std::path::PathBuf;

use skinlens_core::Classifier;
use skinlens_web::gpu_session::{GpuSession, GPU_BACKEND_ID};
use skinlens_web::{analyse, Clock};

struct TickingClock(std::cell::Cell<f64>);

impl Clock for TickingClock {
    fn now_ms(&self) -> f64 {
        self.0.set(self.0.get() + 1.0);
        self.0.get()
    }
}

fn read(path: PathBuf) -> Vec<u8> {
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn model_bytes() -> Vec<u8> {
    read(repo_root().join("../shared/peers/models/effnet_lite0_7cls.safetensors"))
}

fn images() -> Vec<Vec<u8>> {
    ["ISIC_0024306", "ISIC_0024310", "ISIC_0024331"]
        .iter()
        .map(|id| read(repo_root().join(format!("../shared/data/ham10000/fullres_600x450/{id}.jpg"))))
        .collect()
}

fn session() -> GpuSession {
    pollster::block_on(GpuSession::start(&model_bytes(), true, None)).unwrap_or_else(|e| {
        panic!("{e}\nThese tests need a Vulkan driver; with no GPU: `apt-get install -y mesa-vulkan-drivers libvulkan1`.")
    })
}

fn max_prob_diff(a: &skinlens_web::Analysis, b: &skinlens_web::Analysis) -> f32 {
    assert_eq!(a.probabilities.0.len(), b.probabilities.0.len());
    a.probabilities.0.iter().zip(&b.probabilities.0).fold(0f32, |m, ((ca, pa), (cb, pb))| {
        assert_eq!(ca, cb, "class order");
        m.max((pa - pb).abs())
    })
}

#[test]
fn the_gpu_answers_like_the_cpu() {
    let session = session();
    assert_eq!(session.backend(), GPU_BACKEND_ID);
    assert!(session.backend_label().starts_with("GPU · WebGPU ("), "{}", session.backend_label());
    let cpu = Classifier::from_safetensors(&model_bytes()).unwrap();
    let clock = TickingClock(Default::default());
    pollster::block_on(session.warm_up(&clock)).unwrap();
    for bytes in images() {
        let on_gpu = pollster::block_on(session.analyse(&bytes, &clock)).unwrap();
        let on_cpu = analyse(&cpu, &bytes, &clock).unwrap();
        assert_eq!(on_gpu.backend, GPU_BACKEND_ID);
        let diff = max_prob_diff(&on_gpu, &on_cpu);
        println!("GPU session vs CPU analysis: max|Δprob| = {diff:.3e}");
        assert!(diff <= 1e-4, "max|Δprob| {diff}");
        assert_eq!(on_gpu.top, on_cpu.top);
        assert_eq!((on_gpu.cam.width, on_gpu.cam.height, &on_gpu.cam.class), (on_cpu.cam.width, on_cpu.cam.height, &on_cpu.cam.class));
        let cam_diff = on_gpu.cam.values.iter().zip(&on_cpu.cam.values).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(cam_diff <= 1e-3, "activation map max|Δ| {cam_diff}");
        assert_eq!(on_gpu.model_view, on_cpu.model_view);
    }
}

#[test]
fn a_lost_device_falls_back_to_the_cpu_for_the_image_in_hand() {
    let session = session();
    let cpu = Classifier::from_safetensors(&model_bytes()).unwrap();
    let clock = TickingClock(Default::default());
    let bytes = &images()[0];
    pollster::block_on(session.analyse(bytes, &clock)).unwrap();

    session.lose_device();
    let answer = pollster::block_on(session.analyse(bytes, &clock)).expect("the image in hand is still answered");
    assert_eq!(answer.backend, "cpu");
    assert_eq!(session.backend(), "cpu");
    let label = session.backend_label();
    assert!(label.starts_with("CPU · wasm SIMD — WebGPU unavailable: the GPU failed during this session"), "{label}");
    println!("badge after the loss: {label}");
    let expected = analyse(&cpu, bytes, &clock).unwrap();
    assert_eq!(max_prob_diff(&answer, &expected), 0.0, "the fallback is the CPU path itself");
    // And it stays on the CPU.
    let next = pollster::block_on(session.analyse(&images()[1], &clock)).unwrap();
    assert_eq!(next.backend, "cpu");
}

#[test]
fn a_bad_image_is_an_error_and_keeps_the_gpu() {
    let session = session();
    let clock = TickingClock(Default::default());
    let error = pollster::block_on(session.analyse(b"not an image", &clock)).unwrap_err();
    assert!(!error.to_string().is_empty());
    assert_eq!(session.backend(), GPU_BACKEND_ID, "a bad file is not a GPU failure");
}

#[test]
fn a_model_with_flip_views_averages_them_on_the_gpu_as_on_the_cpu() {
    let mut net = skinlens_core::ModelFile::from_safetensors(&model_bytes()).unwrap().members.remove(0).network;
    net.metadata.tta = skinlens_core::TestTimeAugmentation::Flips;
    let flips = net.to_safetensors(skinlens_core::model::Storage::F32, &Default::default()).unwrap();
    let session = pollster::block_on(GpuSession::start(&flips, true, None)).unwrap();
    assert_eq!(session.backend(), GPU_BACKEND_ID);
    let (cpu, one_pass) = (Classifier::from_safetensors(&flips).unwrap(), Classifier::from_safetensors(&model_bytes()).unwrap());
    let clock = TickingClock(Default::default());
    let bytes = &images()[1];
    let on_gpu = pollster::block_on(session.analyse(bytes, &clock)).unwrap();
    let on_cpu = analyse(&cpu, bytes, &clock).unwrap();
    assert_eq!(on_gpu.backend, GPU_BACKEND_ID);
    let diff = max_prob_diff(&on_gpu, &on_cpu);
    println!("flip views, GPU vs CPU: max|Δprob| = {diff:.3e}");
    assert!(diff <= 1e-4, "max|Δprob| {diff}");
    let single = analyse(&one_pass, bytes, &clock).unwrap();
    assert!(max_prob_diff(&on_cpu, &single) > 1e-6, "four views should not give exactly the one-pass answer");
    // The activation map is the image's own (first view), as with one pass.
    assert_eq!(on_cpu.cam.values, single.cam.values);
}

/// The shipped network and a changed copy (another size, bias, temperature, colour constancy).
fn two_member_model() -> Vec<u8> {
    use skinlens_core::model::{Member, ModelFile};
    let shipped = read(repo_root().join("models/skinlens.safetensors"));
    let mut a = skinlens_core::ModelFile::from_safetensors(&shipped).unwrap().members.remove(0).network;
    a.metadata.tta = skinlens_core::TestTimeAugmentation::None; // two passes per image on lavapipe
    let mut b = a.clone();
    b.config.input_size = a.config.input_size + 32;
    b.fc_bias = (&b.fc_bias + candle_core::Tensor::new(&[0.4f32, -0.3, 0.2, 0.0, -0.5, 0.1, 0.3], &candle_core::Device::Cpu).unwrap()).unwrap();
    b.metadata.temperature = 1.7;
    b.metadata.colour_constancy = skinlens_core::preprocess::ColourConstancy::ShadesOfGray { p: 6 };
    let file = ModelFile { members: vec![Member { name: "a".into(), weight: 0.6, network: a }, Member { name: "b".into(), weight: 0.4, network: b }] };
    file.to_safetensors(skinlens_core::model::Storage::F16, &Default::default()).unwrap()
}

#[test]
fn a_model_with_two_members_answers_on_the_gpu_as_on_the_cpu() {
    let bytes = two_member_model();
    // Strict: every member's engine passed its own self-check against its CPU network.
    let session = pollster::block_on(GpuSession::start(&bytes, true, None)).unwrap();
    assert_eq!(session.backend(), GPU_BACKEND_ID);
    let cpu = Classifier::from_safetensors(&bytes).unwrap();
    assert_eq!(cpu.members().len(), 2);
    let clock = TickingClock(Default::default());
    let image = &images()[0];
    let on_gpu = pollster::block_on(session.analyse(image, &clock)).unwrap();
    let on_cpu = analyse(&cpu, image, &clock).unwrap();
    assert_eq!(on_gpu.backend, GPU_BACKEND_ID);
    let diff = max_prob_diff(&on_gpu, &on_cpu);
    println!("two members, GPU vs CPU: max|Δprob| = {diff:.3e}");
    assert!(diff <= 1e-4, "max|Δprob| {diff}");
    // The activation map and preview are the first member's.
    assert_eq!(on_gpu.model_view, on_cpu.model_view);
    assert_eq!(on_gpu.model_view.width(), cpu.members()[0].input_size());
    let cam_diff = on_gpu.cam.values.iter().zip(&on_cpu.cam.values).fold(0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(cam_diff <= 1e-3, "activation map max|Δ| {cam_diff}");
    // The second member counts: the answer is not the first member's alone.
    let first_alone = Classifier::from_network(&skinlens_core::ModelFile::from_safetensors(&bytes).unwrap().members[0].network).unwrap();
    assert!(max_prob_diff(&on_cpu, &analyse(&first_alone, image, &clock).unwrap()) > 1e-3);
}
