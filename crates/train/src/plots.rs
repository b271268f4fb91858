//! Training curves and confusion matrices as PNG, drawn with plotters.

use std::path::Path;

use anyhow::{anyhow, Result};
use plotters::prelude::*;

use crate::train::run_state::EpochRecord;

fn plot_error(e: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("drawing failed: {e}")
}

/// `curves.png` in `dir`: loss (train, validation) and accuracy (train, validation balanced
/// accuracy) per epoch, side by side.
pub fn training_curves(history: &[EpochRecord], dir: &Path) -> Result<()> {
    if history.is_empty() {
        return Ok(());
    }
    let path = dir.join("curves.png");
    let root = BitMapBackend::new(&path, (1200, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let (left, right) = root.split_horizontally(600);
    let epochs = history.len() as f64 + 0.5;
    let series = |f: fn(&EpochRecord) -> f64| history.iter().map(move |r| (r.epoch as f64, f(r))).collect::<Vec<_>>();

    let max_loss = history.iter().flat_map(|r| [r.train_loss, r.val_loss]).fold(0.0, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(&left)
        .caption("Loss per epoch", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d(0.5..epochs, 0.0..max_loss.max(0.1))
        .map_err(plot_error)?;
    chart.configure_mesh().x_desc("epoch").y_desc("cross-entropy").draw().map_err(plot_error)?;
    for (name, data, colour) in [("train (augmented, smoothed labels)", series(|r| r.train_loss), BLUE), ("validation", series(|r| r.val_loss), RED)] {
        chart.draw_series(LineSeries::new(data.clone(), colour.stroke_width(2))).map_err(plot_error)?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2)));
        chart.draw_series(data.iter().map(|&p| Circle::new(p, 3, colour.filled()))).map_err(plot_error)?;
    }
    chart.configure_series_labels().border_style(BLACK).background_style(WHITE.mix(0.8)).draw().map_err(plot_error)?;

    let mut chart = ChartBuilder::on(&right)
        .caption("Accuracy per epoch", ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(35)
        .y_label_area_size(50)
        .build_cartesian_2d(0.5..epochs, 0.0..1.0)
        .map_err(plot_error)?;
    chart.configure_mesh().x_desc("epoch").y_desc("accuracy").draw().map_err(plot_error)?;
    for (name, data, colour) in [
        ("train accuracy (resampled)", series(|r| r.train_accuracy), BLUE),
        ("validation balanced accuracy", series(|r| r.val_balanced_accuracy), RED),
        ("validation macro AUC", series(|r| r.val_macro_auc), GREEN),
    ] {
        chart.draw_series(LineSeries::new(data.clone(), colour.stroke_width(2))).map_err(plot_error)?
            .label(name)
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], colour.stroke_width(2)));
        chart.draw_series(data.iter().map(|&p| Circle::new(p, 3, colour.filled()))).map_err(plot_error)?;
    }
    chart.configure_series_labels().position(SeriesLabelPosition::LowerRight).border_style(BLACK).background_style(WHITE.mix(0.8)).draw().map_err(plot_error)?;
    root.present().map_err(plot_error)?;
    Ok(())
}

/// A confusion matrix: rows are the true class, columns the predicted one (a last column
/// "tie" when any prediction was tied); cells coloured by the row fraction, labelled by count.
pub fn confusion_matrix(matrix: &[Vec<usize>], classes: &[String], title: &str, path: &Path) -> Result<()> {
    let k = classes.len();
    let has_ties = matrix.iter().any(|row| row.get(k).copied().unwrap_or(0) > 0);
    let cols = if has_ties { k + 1 } else { k };
    let cell = 70i32;
    let (left, top) = (110i32, 90i32);
    let width = left + cell * cols as i32 + 30;
    let height = top + cell * k as i32 + 40;
    let root = BitMapBackend::new(path, (width as u32, height as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let font = |size: i32| ("sans-serif", size).into_font();
    root.draw(&Text::new(title.to_string(), (10, 10), font(20))).map_err(plot_error)?;
    root.draw(&Text::new("predicted →", (left, 38), font(15))).map_err(plot_error)?;
    root.draw(&Text::new("true ↓", (10, 60), font(15))).map_err(plot_error)?;
    let col_name = |c: usize| if c < k { classes[c].clone() } else { "tie".to_string() };
    for c in 0..cols {
        root.draw(&Text::new(col_name(c), (left + cell * c as i32 + 12, top - 25), font(16))).map_err(plot_error)?;
    }
    for (r, row) in matrix.iter().enumerate() {
        let total: usize = row.iter().sum();
        root.draw(&Text::new(classes[r].clone(), (15, top + cell * r as i32 + cell / 2 - 8), font(16))).map_err(plot_error)?;
        for c in 0..cols {
            let count = row.get(c).copied().unwrap_or(0);
            let fraction = if total == 0 { 0.0 } else { count as f64 / total as f64 };
            let shade = (255.0 * (1.0 - 0.85 * fraction)) as u8;
            let colour = if r == c { RGBColor(shade, 255 - (255 - shade) / 3, shade) } else { RGBColor(255, shade, shade) };
            let (x0, y0) = (left + cell * c as i32, top + cell * r as i32);
            root.draw(&Rectangle::new([(x0, y0), (x0 + cell, y0 + cell)], colour.filled())).map_err(plot_error)?;
            root.draw(&Rectangle::new([(x0, y0), (x0 + cell, y0 + cell)], BLACK.mix(0.3))).map_err(plot_error)?;
            let ink = if fraction > 0.6 { WHITE } else { BLACK };
            root.draw(&Text::new(count.to_string(), (x0 + 10, y0 + 14), font(18).color(&ink))).map_err(plot_error)?;
            root.draw(&Text::new(format!("{:.0}%", 100.0 * fraction), (x0 + 10, y0 + 40), font(13).color(&ink))).map_err(plot_error)?;
        }
    }
    root.present().map_err(plot_error)?;
    Ok(())
}
