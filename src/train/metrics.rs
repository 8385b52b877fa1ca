//! Classification metrics: per-class precision / recall / F1, macro-F1, confusion matrix.

use serde::Serialize;

/// Metrics of one class.
#[derive(Debug, Clone, Serialize)]
pub struct ClassMetrics {
    /// Class name.
    pub name: String,
    /// TP / (TP + FP); 0 when the class is never predicted.
    pub precision: f64,
    /// TP / (TP + FN); 0 when the class has no true cells.
    pub recall: f64,
    /// Harmonic mean of precision and recall.
    pub f1: f64,
    /// True cells of this class in the evaluated set.
    pub support: usize,
}

/// A classification report in the layout of the CellSymphony paper's tables.
#[derive(Debug, Clone, Serialize)]
pub struct ClassificationReport {
    /// One row per class (all classes of the model, including those without support).
    pub classes: Vec<ClassMetrics>,
    /// Mean F1 over classes with support > 0.
    pub macro_f1: f64,
    /// Support-weighted mean F1.
    pub weighted_f1: f64,
    /// Fraction of cells predicted correctly.
    pub accuracy: f64,
    /// Confusion counts `[true class, predicted class]`, row-major.
    pub confusion: Vec<u32>,
    /// Cells evaluated.
    pub n_cells: usize,
}

impl ClassificationReport {
    /// Build the report from true and predicted class indices (`< class_names.len()`).
    pub fn new(truth: &[u32], pred: &[u32], class_names: &[String]) -> Self {
        assert_eq!(truth.len(), pred.len(), "truth and predictions differ in length");
        let c = class_names.len();
        let mut confusion = vec![0u32; c * c];
        for (&t, &p) in truth.iter().zip(pred) {
            confusion[t as usize * c + p as usize] += 1;
        }
        let mut classes = Vec::with_capacity(c);
        let (mut f1_sum, mut f1_n, mut weighted, mut correct) = (0.0, 0usize, 0.0, 0usize);
        for k in 0..c {
            let tp = confusion[k * c + k] as f64;
            let support: u32 = (0..c).map(|p| confusion[k * c + p]).sum();
            let predicted: u32 = (0..c).map(|t| confusion[t * c + k]).sum();
            let precision = if predicted > 0 { tp / predicted as f64 } else { 0.0 };
            let recall = if support > 0 { tp / support as f64 } else { 0.0 };
            let f1 = if precision + recall > 0.0 {
                2.0 * precision * recall / (precision + recall)
            } else {
                0.0
            };
            if support > 0 {
                f1_sum += f1;
                f1_n += 1;
                weighted += f1 * support as f64;
            }
            correct += tp as usize;
            classes.push(ClassMetrics {
                name: class_names[k].clone(),
                precision,
                recall,
                f1,
                support: support as usize,
            });
        }
        let n = truth.len();
        Self {
            classes,
            macro_f1: if f1_n > 0 { f1_sum / f1_n as f64 } else { 0.0 },
            weighted_f1: if n > 0 { weighted / n as f64 } else { 0.0 },
            accuracy: if n > 0 { correct as f64 / n as f64 } else { 0.0 },
            confusion,
            n_cells: n,
        }
    }

    /// A fixed-width text table: class, precision, recall, F1, support, then summary rows.
    pub fn to_table(&self) -> String {
        let w = self.classes.iter().map(|c| c.name.len()).max().unwrap_or(5).max(12);
        let mut s = format!(
            "{:<w$}  {:>9}  {:>6}  {:>6}  {:>7}\n",
            "class", "precision", "recall", "f1", "support"
        );
        for c in &self.classes {
            s += &format!(
                "{:<w$}  {:>9.3}  {:>6.3}  {:>6.3}  {:>7}\n",
                c.name, c.precision, c.recall, c.f1, c.support
            );
        }
        s += &format!("{:<w$}  {:>9}  {:>6}  {:>6.3}  {:>7}\n", "macro avg", "", "", self.macro_f1, self.n_cells);
        s += &format!("{:<w$}  {:>9}  {:>6}  {:>6.3}  {:>7}\n", "weighted avg", "", "", self.weighted_f1, self.n_cells);
        s += &format!("{:<w$}  {:>9}  {:>6}  {:>6.3}  {:>7}\n", "accuracy", "", "", self.accuracy, self.n_cells);
        s
    }

    /// CSV with header `class,precision,recall,f1,support` plus `macro_avg` and `accuracy` rows.
    pub fn to_csv(&self) -> String {
        let mut s = String::from("class,precision,recall,f1,support\n");
        for c in &self.classes {
            s += &format!("{},{:.4},{:.4},{:.4},{}\n", c.name, c.precision, c.recall, c.f1, c.support);
        }
        s += &format!("macro_avg,,,{:.4},{}\n", self.macro_f1, self.n_cells);
        s += &format!("weighted_avg,,,{:.4},{}\n", self.weighted_f1, self.n_cells);
        s += &format!("accuracy,,,{:.4},{}\n", self.accuracy, self.n_cells);
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_matches_hand_computation() {
        let names: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        // a: 3 true (2 right, 1 → b); b: 2 true (1 right, 1 → a); c: 1 true, predicted c.
        let truth = [0, 0, 0, 1, 1, 2];
        let pred = [0, 0, 1, 1, 0, 2];
        let r = ClassificationReport::new(&truth, &pred, &names);
        let a = &r.classes[0];
        assert!((a.precision - 2.0 / 3.0).abs() < 1e-12 && (a.recall - 2.0 / 3.0).abs() < 1e-12);
        let b = &r.classes[1];
        assert!((b.precision - 0.5).abs() < 1e-12 && (b.recall - 0.5).abs() < 1e-12);
        assert!((r.classes[2].f1 - 1.0).abs() < 1e-12);
        assert!((r.macro_f1 - (2.0 / 3.0 + 0.5 + 1.0) / 3.0).abs() < 1e-12);
        assert!((r.accuracy - 4.0 / 6.0).abs() < 1e-12);
        assert_eq!(r.confusion[0 * 3 + 1], 1);
        assert!(r.to_table().contains("macro avg"));
    }
}
