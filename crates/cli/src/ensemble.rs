//! The model a command runs — one file (one network or several members) or several files
//! weighted on the command line — as one core `Classifier`, shared by `predict` and `evaluate`.
//! Members, views and their combination are the core's (as on the page).

use std::path::PathBuf;

use anyhow::{Context, Result};
use image::RgbImage;
use skinlens_core::{Classifier, PreparedViews, TestTimeAugmentation};

use crate::model_file;

/// `--tta`: each model's own test-time views (chosen on validation at export), or one rule
/// for all of them.
#[derive(clap::ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TtaChoice {
    /// What each model file declares.
    #[default]
    Model,
    /// Average over the image and its three mirror images (4 passes per image and member).
    Flips,
    /// One pass per image and member.
    None,
}

impl TtaChoice {
    fn forced(self) -> Option<TestTimeAugmentation> {
        match self {
            Self::Model => None,
            Self::Flips => Some(TestTimeAugmentation::Flips),
            Self::None => Some(TestTimeAugmentation::None),
        }
    }
}

pub struct Ensemble {
    pub classifier: Classifier,
    pub classes: Vec<String>,
    /// Any member with an untrained head.
    pub untrained: bool,
    pub description: String,
}

impl Ensemble {
    /// `specs` are `PATH[:WEIGHT]`; none means the built-in model.
    pub fn load(specs: &[String], tta: TtaChoice) -> Result<Self> {
        let specs: Vec<(Option<PathBuf>, f32)> = if specs.is_empty() {
            vec![(None, 1.0)]
        } else {
            specs.iter().map(|s| model_file::parse_weighted(s).map(|(p, w)| (Some(p), w))).collect::<Result<_>>()?
        };
        let total: f32 = specs.iter().map(|s| s.1).sum();
        let mut parts = Vec::new();
        let mut sources = Vec::new();
        for (path, weight) in specs {
            let loaded = model_file::load(path.as_deref())?;
            let mut classifier = Classifier::from_model_file(&loaded.file).with_context(|| loaded.source.clone())?;
            if let Some(views) = tta.forced() {
                classifier.set_views(views);
            }
            let share = if parts.is_empty() && total == weight { String::new() } else { format!(" ×{:.2}", weight / total) };
            sources.push(format!("{}{share} ({})", loaded.source, describe(&classifier)));
            parts.push((classifier, weight));
        }
        let classifier = if parts.len() == 1 { parts.remove(0).0 } else { Classifier::merge(parts)? };
        Ok(Self {
            classes: classifier.metadata().classes.clone(),
            untrained: classifier.untrained(),
            description: sources.join(" + "),
            classifier,
        })
    }

    /// Frame a decoded image for every member.
    pub fn prepare_decoded(&self, rgb: &RgbImage) -> PreparedViews {
        self.classifier.prepare_decoded(rgb)
    }

    /// The core's answer for each image: the weighted mean over members of each member's mean
    /// over its views of its calibrated probabilities.
    pub fn probabilities(&self, images: &[&PreparedViews]) -> Result<Vec<Vec<f32>>> {
        Ok(self.classifier.classify(images)?.into_iter().map(|c| c.probabilities).collect())
    }
}

/// "efficientnet-lite0 at 224 px, flip TTA" or "2 members: a efficientnet-lite0 at 224 px ×0.60, …".
pub fn describe(classifier: &Classifier) -> String {
    let member = |m: &skinlens_core::MemberClassifier| {
        let colour = if m.metadata().colour_constancy.is_none() { String::new() } else { format!(", {}", m.metadata().colour_constancy.as_string()) };
        let views = match m.test_time_views() {
            TestTimeAugmentation::None => "",
            TestTimeAugmentation::Flips => ", flip TTA",
        };
        format!("{} at {} px{colour}{views}", m.model().config().name, m.input_size())
    };
    match classifier.members() {
        [only] => member(only),
        members => format!(
            "{} members: {}",
            members.len(),
            members.iter().map(|m| format!("{} {} ×{:.2}", m.name, member(m), m.weight)).collect::<Vec<_>>().join("; ")
        ),
    }
}
