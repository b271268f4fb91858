//! Evaluation: ISIC 2018 metrics, calibration, bootstrap confidence intervals.

pub mod bootstrap;
pub mod calibration;
pub mod classification;
