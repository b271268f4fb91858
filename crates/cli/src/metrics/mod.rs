//! Evaluation: ISIC 2018 metrics, calibration, bootstrap confidence intervals.

pub mod classification;
