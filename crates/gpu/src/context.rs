//! The adapter, device and queue, plus the few helpers every layer uses to put data on them.

use std::sync::{Arc, Mutex};

use wgpu::util::DeviceExt;

use crate::readback::read_mapped;
use crate::{GpuError, Result};

/// Errors the device reports outside any error scope, and its loss. Recorded instead of
/// wgpu's default (which panics natively), and checked before every image.
#[derive(Debug, Default)]
struct Faults {
    lost: Option<String>,
    uncaptured: Option<String>,
}

/// A GPU device ready for compute work.
#[derive(Debug, Clone)]
pub struct GpuContext {
    pub(crate) device: wgpu::Device,
    pub(crate) queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    faults: Arc<Mutex<Faults>>,
}

#[cfg(target_arch = "wasm32")]
const NO_ADAPTER_HINT: &str =
    "the browser's navigator.gpu gave no adapter (WebGPU disabled, blocked, or not supported here)";
#[cfg(not(target_arch = "wasm32"))]
const NO_ADAPTER_HINT: &str = "no Vulkan device found; on Debian/Ubuntu install `mesa-vulkan-drivers` \
     (Mesa lavapipe, a Vulkan driver that runs on the CPU) and `libvulkan1`";

impl GpuContext {
    /// Find an adapter (WebGPU in the browser, Vulkan natively) and open a device with the
    /// WebGPU default limits, which every kernel here is written to fit.
    pub async fn new() -> Result<Self> {
        #[cfg(target_arch = "wasm32")]
        if !wgpu::util::is_browser_webgpu_supported().await {
            return Err(GpuError::NoAdapter(NO_ADAPTER_HINT.into()));
        }
        let mut descriptor = wgpu::InstanceDescriptor::new_without_display_handle();
        descriptor.backends = wgpu::Backends::VULKAN | wgpu::Backends::BROWSER_WEBGPU;
        let instance = wgpu::Instance::new(descriptor);
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::NoAdapter(format!("{NO_ADAPTER_HINT} ({e})")))?;
        let info = adapter.get_info();
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("skinlens"),
                required_limits: wgpu::Limits::default(),
                ..Default::default()
            })
            .await
            .map_err(|e| GpuError::Device(format!("{} ({:?}): {e}", info.name, info.backend)))?;

        let faults = Arc::new(Mutex::new(Faults::default()));
        let on_error = Arc::clone(&faults);
        device.on_uncaptured_error(Arc::new(move |error: wgpu::Error| {
            let mut faults = on_error.lock().unwrap_or_else(|p| p.into_inner());
            faults.uncaptured.get_or_insert_with(|| error.to_string());
        }));
        let on_lost = Arc::clone(&faults);
        device.set_device_lost_callback(move |reason, message| {
            let mut faults = on_lost.lock().unwrap_or_else(|p| p.into_inner());
            faults.lost.get_or_insert_with(|| format!("{reason:?}: {message}"));
        });
        Ok(Self { device, queue, info, faults })
    }

    /// Block until the GPU has finished all submitted work (native only: the browser polls by
    /// itself and cannot block). For profiling.
    pub fn wait_idle(&self) -> Result<()> {
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map(|_| ())
            .map_err(|e| GpuError::Run(e.to_string()))
    }

    /// Release the device now. Every later use fails as after a device loss: this is how the
    /// tests exercise the fallback to the CPU path.
    pub fn destroy(&self) {
        self.device.destroy();
    }

    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }

    /// A short human-readable adapter name, e.g. for the page's backend badge. Browsers may
    /// withhold the name; then it says whether the adapter is a software fallback.
    pub fn adapter_name(&self) -> String {
        let info = &self.info;
        let mut parts: Vec<&str> = [info.name.as_str(), info.driver.as_str()]
            .into_iter()
            .filter(|s| !s.is_empty())
            .collect();
        parts.dedup();
        match (parts.is_empty(), info.device_type) {
            (false, _) => parts.join(", "),
            (true, wgpu::DeviceType::Cpu) => "software fallback adapter".into(),
            (true, _) => "unnamed adapter".into(),
        }
    }

    /// `Err` once the device has been lost or has reported an error outside a scope: the
    /// engine's results can no longer be trusted.
    pub fn check_healthy(&self) -> Result<()> {
        let faults = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(reason) = &faults.lost {
            return Err(GpuError::DeviceLost(reason.clone()));
        }
        if let Some(error) = &faults.uncaptured {
            return Err(GpuError::Run(error.clone()));
        }
        Ok(())
    }

    /// A read-only storage buffer holding `values` (weights, biases).
    pub fn storage(&self, label: &str, values: &[f32]) -> wgpu::Buffer {
        // A zero-sized binding is invalid; no real layer has one, but a bad file must not panic.
        let values: &[f32] = if values.is_empty() { &[0.0] } else { values };
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::cast_slice(values),
            usage: wgpu::BufferUsages::STORAGE,
        })
    }

    /// A storage buffer of `len` f32s that kernels write, the host fills and copies read.
    pub fn activation(&self, label: &str, len: usize) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: (len.max(1) * std::mem::size_of::<f32>()) as wgpu::BufferAddress,
            usage: wgpu::BufferUsages::STORAGE | wgpu::BufferUsages::COPY_SRC | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// A uniform buffer of u32 parameters, padded to a whole number of 16-byte rows.
    pub fn params(&self, label: &str, words: &[u32]) -> wgpu::Buffer {
        let mut padded = words.to_vec();
        padded.resize(words.len().div_ceil(4).max(1) * 4, 0);
        self.device.create_buffer_init(&wgpu::util::BufferInitDescriptor {
            label: Some(label),
            contents: bytemuck::cast_slice(&padded),
            usage: wgpu::BufferUsages::UNIFORM,
        })
    }

    /// A buffer the host can map to read `len` f32s copied into it.
    pub fn staging(&self, label: &str, len: usize) -> wgpu::Buffer {
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: (len.max(1) * std::mem::size_of::<f32>()) as wgpu::BufferAddress,
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// Overwrite the start of `buffer` with `values`.
    pub fn write(&self, buffer: &wgpu::Buffer, values: &[f32]) {
        self.queue.write_buffer(buffer, 0, bytemuck::cast_slice(values));
    }

    /// Copy the first `len` f32s of `buffer` back to the host (tests and traces; the engine
    /// keeps its own staging buffer for the per-image path).
    pub async fn read(&self, buffer: &wgpu::Buffer, len: usize) -> Result<Vec<f32>> {
        let staging = self.staging("read-back", len);
        let mut encoder = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("read-back") });
        encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, (len * 4) as wgpu::BufferAddress);
        self.queue.submit([encoder.finish()]);
        read_mapped(&self.device, &staging, len).await
    }

    /// Run `dispatches` in order in one compute pass and wait for the GPU to accept them,
    /// turning any validation or out-of-memory error into `Err`.
    pub async fn run(&self, dispatches: &[&crate::Dispatch]) -> Result<()> {
        self.check_healthy()?;
        let scopes = ErrorScopes::push(&self.device);
        let mut encoder = self.device.create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some("dispatch") });
        {
            let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor { label: Some("dispatch"), timestamp_writes: None });
            for dispatch in dispatches {
                dispatch.encode(&mut pass);
            }
        }
        self.queue.submit([encoder.finish()]);
        scopes.pop().await.map_err(GpuError::Run)?;
        self.check_healthy()
    }
}

/// The three error scopes WebGPU has, pushed together around a piece of GPU work so that a
/// failure becomes an `Err` for that work instead of an uncaptured error.
pub(crate) struct ErrorScopes {
    // Popped in reverse order of pushing.
    scopes: [wgpu::ErrorScopeGuard; 3],
}

impl ErrorScopes {
    pub(crate) fn push(device: &wgpu::Device) -> Self {
        Self {
            scopes: [
                device.push_error_scope(wgpu::ErrorFilter::Validation),
                device.push_error_scope(wgpu::ErrorFilter::OutOfMemory),
                device.push_error_scope(wgpu::ErrorFilter::Internal),
            ],
        }
    }

    /// The first error any scope caught, as text.
    pub(crate) async fn pop(self) -> std::result::Result<(), String> {
        let [validation, memory, internal] = self.scopes;
        let internal = internal.pop();
        let memory = memory.pop();
        let validation = validation.pop();
        let errors = [internal.await, memory.await, validation.await];
        match errors.into_iter().flatten().next() {
            Some(error) => Err(error.to_string()),
            None => Ok(()),
        }
    }
}
