//! EfficientNet-Lite: the block table, the weights (loaded, checked and BatchNorm-folded once),
//! and the inference network built from them.

pub mod config;
pub mod efficientnet;
pub mod mbconv;
pub mod members;
pub mod storage;
pub mod weights;
pub mod workers;

pub use config::{BlockSpec, ModelConfig, STEM_STRIDE};
pub use efficientnet::{EfficientNetLite, Trace};
pub use mbconv::MbConv;
pub use members::{Member, ModelFile};
pub use storage::Storage;
pub use weights::{keys, FoldedBlock, FoldedConv, FoldedNetwork, ModelMetadata};
