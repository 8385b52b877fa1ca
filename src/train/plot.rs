//! Confusion-matrix figure of the benchmark, drawn with the shared [`crate::plot`] toolkit.

use std::path::Path;

use super::TrainError;
use crate::plot;

/// Writes a confusion matrix as a PNG heatmap: rows are true classes, columns predicted
/// classes, each cell the fraction of the row's cells (recall on the diagonal), annotated.
/// `confusion` is `[classes, classes]` row-major counts.
pub fn confusion_png(
    path: &Path,
    title: &str,
    classes: &[String],
    confusion: &[u32],
) -> Result<(), TrainError> {
    let k = classes.len();
    if confusion.len() != k * k {
        return Err(TrainError::Options(format!(
            "confusion matrix has {} values, expected {k}×{k}",
            confusion.len()
        )));
    }
    let mut fractions = vec![0f64; k * k];
    for r in 0..k {
        let row = &confusion[r * k..(r + 1) * k];
        let total: u32 = row.iter().sum();
        for c in 0..k {
            fractions[r * k + c] = if total > 0 {
                f64::from(row[c]) / f64::from(total)
            } else {
                0.0
            };
        }
    }
    let rows: Vec<String> = classes
        .iter()
        .enumerate()
        .map(|(r, c)| {
            // Shorten the class name, not the count: the label must fit the heatmap's row
            // labels (measured at the large label font, the widest it is drawn).
            let n = format!(" (n={})", confusion[r * k..(r + 1) * k].iter().sum::<u32>());
            let room = plot::HEATMAP_ROW_LABEL_MAX.saturating_sub(plot::text_width(&n, 2));
            format!("{}{n}", plot::fit_text(c, room, 2))
        })
        .collect();
    let title = format!("{title} - rows: true class, columns: predicted, value: fraction of row");
    crate::plot::heatmap_png(path, &fractions, &rows, classes, &title, true)
        .map(|_| ())
        .map_err(|e| TrainError::Analysis(e.to_string()))
}
