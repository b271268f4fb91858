//! skinlens-core: the one model definition and the one preprocessing path that every skinlens
//! front end (native CLI, browser CPU path, WebGPU engine, trainer) stands on.
//!
//! The data path reads top to bottom:
//! bytes → [`preprocess::decode`] → [`preprocess::square`] + [`preprocess::resize`]
//! → [`preprocess::tensor`] → ([`tta`] views) → [`model::EfficientNetLite`] → [`classifier`] probabilities.

pub mod error;
pub mod labels;
pub mod preprocess;
pub mod nn;
pub mod model;
pub mod tta;
pub mod classifier;
/// Out-of-distribution check on the pooled features (fitted by `skinlens fit-familiarity`).
pub mod familiarity;

pub use classifier::{Classification, Classifier, MemberClassifier, PreparedViews};
pub use familiarity::{Familiarity, FamiliarityCheck};
pub use error::{Error, Result};
pub use labels::{ClassInfo, HAM10000_CLASSES};
pub use tta::TestTimeAugmentation;
pub use model::{EfficientNetLite, FoldedNetwork, ModelConfig, ModelFile};
