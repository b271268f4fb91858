//! Reading a GPU buffer back into f32s, asynchronously.
//!
//! Buffer mapping is a callback in wgpu and a promise in the browser. A one-shot slot turns the
//! callback into a future, so the same `async` code runs in both places: natively the device
//! is polled until the callback has fired (blocking, which is fine in tests and the CLI); in the
//! browser polling is a no-op and the future completes when the promise resolves.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use crate::{GpuError, Result};

#[derive(Default)]
struct Slot<T> {
    value: Option<T>,
    waker: Option<Waker>,
}

/// Completes once the callback made by [`one_shot`] has been called.
struct Receiver<T>(Arc<Mutex<Slot<T>>>);

impl<T> Future for Receiver<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        let mut slot = self.0.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match slot.value.take() {
            Some(value) => Poll::Ready(value),
            None => {
                slot.waker = Some(cx.waker().clone());
                Poll::Pending
            }
        }
    }
}

/// A callback and the future it completes.
fn one_shot<T: Send + 'static>() -> (impl FnOnce(T) + Send + 'static, Receiver<T>) {
    let slot = Arc::new(Mutex::new(Slot { value: None, waker: None }));
    let sender = Arc::clone(&slot);
    let send = move |value: T| {
        let mut slot = sender.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        slot.value = Some(value);
        if let Some(waker) = slot.waker.take() {
            waker.wake();
        }
    };
    (send, Receiver(slot))
}

/// Map the first `len` f32s of a `MAP_READ` buffer whose copy has been submitted, copy them
/// out and unmap it again.
pub(crate) async fn read_mapped(device: &wgpu::Device, staging: &wgpu::Buffer, len: usize) -> Result<Vec<f32>> {
    let bytes = (len * std::mem::size_of::<f32>()) as wgpu::BufferAddress;
    let slice = staging.slice(..bytes);
    let (send, mapped) = one_shot();
    slice.map_async(wgpu::MapMode::Read, send);
    // Natively this drives the queue until the map callback has run; on the web it is a no-op.
    device
        .poll(wgpu::PollType::wait_indefinitely())
        .map_err(|e| GpuError::Readback(e.to_string()))?;
    mapped.await.map_err(|e| GpuError::Readback(e.to_string()))?;
    let values = {
        let view = slice.get_mapped_range().map_err(|e| GpuError::Readback(e.to_string()))?;
        // Byte-wise, so no alignment assumption about the mapped range can panic.
        view.chunks_exact(4).map(|b| f32::from_ne_bytes([b[0], b[1], b[2], b[3]])).collect::<Vec<f32>>()
    };
    staging.unmap();
    Ok(values)
}
