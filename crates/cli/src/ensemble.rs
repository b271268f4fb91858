//! Several models (weighted), each with its test-time views, behind one `probabilities` call,
//! shared by `predict` and `evaluate`.

use std::path::PathBuf;

use anyhow::{ensure, Context, Result};
use candle_core::Device;
use skinlens_core::preprocess::{input_tensor, PreparedImage};
use skinlens_core::{Classifier, TestTimeAugmentation};

use crate::model_file;

/// `--tta`: each model's own test-time views (chosen on validation at export), or one rule
/// for all of them.
#[derive(clap::ValueEnum, Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TtaChoice {
    /// What each model file declares.
    #[default]
    Model,
    /// Average over the image and its three mirror images (4 passes per image).
    Flips,
    /// One pass per image.
    None,
}

impl TtaChoice {
    fn for_model(self, classifier: &Classifier) -> TestTimeAugmentation {
        match self {
            Self::Model => classifier.metadata().tta,
            Self::Flips => TestTimeAugmentation::Flips,
            Self::None => TestTimeAugmentation::None,
        }
    }
}

pub struct Ensemble {
    members: Vec<(Classifier, f32)>,
    tta: TtaChoice,
    pub classes: Vec<String>,
    pub input_size: u32,
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
        let mut members = Vec::new();
        let mut sources = Vec::new();
        for (path, weight) in specs {
            let loaded = model_file::load(path.as_deref())?;
            let classifier = Classifier::from_network(&loaded.network).with_context(|| loaded.source.clone())?;
            let views = match tta.for_model(&classifier) {
                TestTimeAugmentation::None => String::new(),
                TestTimeAugmentation::Flips => ", flip TTA".to_string(),
            };
            sources.push(format!("{} ×{:.2}{views}", loaded.source, weight / total));
            members.push((classifier, weight / total));
        }
        let first = &members[0].0;
        let (classes, input_size) = (first.metadata().classes.clone(), first.input_size());
        for (member, _) in &members[1..] {
            ensure!(member.metadata().classes == classes, "ensemble members must share their class list");
            ensure!(member.input_size() == input_size, "ensemble members must share their input size");
        }
        let untrained = members.iter().any(|(m, _)| m.metadata().untrained);
        let description = sources.join(" + ");
        Ok(Self { members, tta, classes, input_size, untrained, description })
    }

    /// Weighted mean of each member's calibrated probabilities, each averaged over its views
    /// (the core's `Classifier::classify_with_views`, as the page computes them).
    pub fn probabilities(&self, images: &[&PreparedImage]) -> Result<Vec<Vec<f32>>> {
        let views: Vec<_> = images.iter().map(|p| &p.model_view).collect();
        let input = input_tensor(&views, &Device::Cpu)?;
        let mut sum = vec![vec![0f32; self.classes.len()]; images.len()];
        for (classifier, weight) in &self.members {
            let answers = classifier.classify_with_views(&input, self.tta.for_model(classifier))?;
            for (total, answer) in sum.iter_mut().zip(&answers) {
                total.iter_mut().zip(&answer.probabilities).for_each(|(t, p)| *t += weight * p);
            }
        }
        Ok(sum)
    }
}
