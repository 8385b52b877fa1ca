//! Multinomial logistic regression with an L2 penalty: the benchmark's linear baseline.
//!
//! Features are z-scored with the training cells' mean and standard deviation. The objective
//! mirrors scikit-learn's `LogisticRegression(C=c)` (multinomial, bias not penalised):
//! `Σ_i w_i · CE(softmax(W x_i + b), y_i) / Σ_i w_i + ‖W‖² / (2 · C · n)`, minimised by
//! accelerated gradient descent (Nesterov momentum with adaptive restart) with step
//! `1 / L`, `L` the curvature bound `½ λ_max(XᵀX / n) + 1 / (C n)` from power iteration.

use serde::Serialize;

/// Settings of [`LogisticRegression::fit`].
#[derive(Debug, Clone, Serialize)]
pub struct LogisticOptions {
    /// Inverse L2 strength (scikit-learn's `C`).
    pub c: f64,
    /// Gradient iterations.
    pub iterations: usize,
    /// Weight cells by inverse class frequency (`class_weight="balanced"`).
    pub class_weighted: bool,
}

impl Default for LogisticOptions {
    fn default() -> Self {
        Self {
            c: 1.0,
            iterations: 500,
            class_weighted: false,
        }
    }
}

/// A fitted model: `logits = W · ((x − mean) / std) + b`.
#[derive(Debug, Clone, Serialize)]
pub struct LogisticRegression {
    /// Feature means `[features]`.
    pub mean: Vec<f32>,
    /// Feature standard deviations `[features]` (at least 1e-6).
    pub std: Vec<f32>,
    /// Weights `[classes, features]`, row-major.
    pub weights: Vec<f32>,
    /// Biases `[classes]`.
    pub bias: Vec<f32>,
    /// Features.
    pub n_features: usize,
    /// Classes.
    pub n_classes: usize,
    /// Final training objective.
    pub objective: f64,
}

impl LogisticRegression {
    /// Fit on rows `train` of `x: [cells, features]` with labels `labels[i] < n_classes`.
    pub fn fit(
        x: &[f32],
        n_features: usize,
        labels: &[u32],
        n_classes: usize,
        train: &[usize],
        opts: &LogisticOptions,
    ) -> Self {
        let (f, k, n) = (n_features, n_classes, train.len().max(1));
        let mut mean = vec![0f64; f];
        let mut sq = vec![0f64; f];
        for &i in train {
            for (j, &v) in x[i * f..(i + 1) * f].iter().enumerate() {
                mean[j] += v as f64;
                sq[j] += (v as f64) * (v as f64);
            }
        }
        let mean: Vec<f32> = mean.iter().map(|m| (m / n as f64) as f32).collect();
        let std: Vec<f32> = sq
            .iter()
            .zip(&mean)
            .map(|(s, &m)| ((s / n as f64 - (m as f64).powi(2)).max(0.0).sqrt() as f32).max(1e-6))
            .collect();
        let z: Vec<f32> = train
            .iter()
            .flat_map(|&i| {
                x[i * f..(i + 1) * f]
                    .iter()
                    .enumerate()
                    .map(|(j, &v)| (v - mean[j]) / std[j])
            })
            .collect();
        let y: Vec<usize> = train.iter().map(|&i| labels[i] as usize).collect();
        let ytrain: Vec<u32> = y.iter().map(|&c| c as u32).collect();
        let cw = if opts.class_weighted {
            super::split::balanced_class_weights(&ytrain, k)
        } else {
            vec![1.0; k]
        };
        let w_cell: Vec<f64> = y.iter().map(|&c| cw[c] as f64).collect();
        let w_sum: f64 = w_cell.iter().sum::<f64>().max(1e-12);
        let lambda = 1.0 / (opts.c.max(1e-12) * n as f64);

        // Curvature bound: power iteration on ZᵀZ / n.
        let mut v = vec![1.0f64 / (f as f64).sqrt(); f];
        let mut eig = 1.0;
        for _ in 0..30 {
            let mut zv = vec![0f64; n];
            for (r, row) in z.chunks(f).enumerate() {
                zv[r] = row.iter().zip(&v).map(|(&a, &b)| a as f64 * b).sum();
            }
            let mut w = vec![0f64; f];
            for (r, row) in z.chunks(f).enumerate() {
                for (j, &a) in row.iter().enumerate() {
                    w[j] += a as f64 * zv[r];
                }
            }
            let norm = w.iter().map(|a| a * a).sum::<f64>().sqrt().max(1e-12);
            eig = norm / n as f64;
            v = w.iter().map(|a| a / norm).collect();
        }
        // Weighted mean: the per-cell weights rescale the curvature by at most max(w)·n/Σw.
        let wmax = w_cell.iter().cloned().fold(0.0, f64::max);
        let lip = 0.5 * eig * wmax * n as f64 / w_sum * 1.0 + lambda + 1e-9;
        let step = 1.0 / lip;

        let p = k * (f + 1); // parameters: W [k, f] then b [k]
        let objective_grad = |theta: &[f64], grad: &mut [f64]| -> f64 {
            grad.iter_mut().for_each(|g| *g = 0.0);
            let mut loss = 0.0;
            let mut logits = vec![0f64; k];
            for (r, row) in z.chunks(f).enumerate() {
                for c in 0..k {
                    let wrow = &theta[c * f..(c + 1) * f];
                    logits[c] = theta[k * f + c]
                        + row
                            .iter()
                            .zip(wrow)
                            .map(|(&a, &b)| a as f64 * b)
                            .sum::<f64>();
                }
                let m = logits.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let lse = m + logits.iter().map(|l| (l - m).exp()).sum::<f64>().ln();
                let wi = w_cell[r] / w_sum;
                loss += wi * (lse - logits[y[r]]);
                for c in 0..k {
                    let d = wi * ((logits[c] - lse).exp() - if c == y[r] { 1.0 } else { 0.0 });
                    if d != 0.0 {
                        for (g, &a) in grad[c * f..(c + 1) * f].iter_mut().zip(row) {
                            *g += d * a as f64;
                        }
                        grad[k * f + c] += d;
                    }
                }
            }
            let mut reg = 0.0;
            for (g, &t) in grad[..k * f].iter_mut().zip(&theta[..k * f]) {
                *g += lambda * t;
                reg += t * t;
            }
            loss + 0.5 * lambda * reg
        };

        let mut theta = vec![0f64; p];
        let mut prev = theta.clone();
        let mut grad = vec![0f64; p];
        let mut t_k = 1.0f64;
        let mut last_obj = f64::INFINITY;
        let mut objective = 0.0;
        for _ in 0..opts.iterations.max(1) {
            let beta = (t_k - 1.0) / (t_k + 2.0);
            let look: Vec<f64> = theta
                .iter()
                .zip(&prev)
                .map(|(a, b)| a + beta * (a - b))
                .collect();
            let obj = objective_grad(&look, &mut grad);
            let next: Vec<f64> = look.iter().zip(&grad).map(|(a, g)| a - step * g).collect();
            prev = std::mem::replace(&mut theta, next);
            if obj > last_obj {
                t_k = 1.0; // adaptive restart
            } else {
                t_k += 1.0;
            }
            last_obj = obj;
            objective = obj;
        }
        Self {
            mean,
            std,
            weights: theta[..k * f].iter().map(|&v| v as f32).collect(),
            bias: theta[k * f..].iter().map(|&v| v as f32).collect(),
            n_features: f,
            n_classes: k,
            objective,
        }
    }

    /// Logits `[idx.len(), classes]` for rows `idx` of `x: [cells, features]`.
    pub fn logits(&self, x: &[f32], idx: &[usize]) -> Vec<f32> {
        let (f, k) = (self.n_features, self.n_classes);
        let mut out = Vec::with_capacity(idx.len() * k);
        for &i in idx {
            let z: Vec<f32> = x[i * f..(i + 1) * f]
                .iter()
                .enumerate()
                .map(|(j, &v)| (v - self.mean[j]) / self.std[j])
                .collect();
            for c in 0..k {
                out.push(
                    self.bias[c]
                        + self.weights[c * f..(c + 1) * f]
                            .iter()
                            .zip(&z)
                            .map(|(a, b)| a * b)
                            .sum::<f32>(),
                );
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::rng::SplitMix64;

    #[test]
    fn separates_planted_classes_and_penalty_shrinks_weights() {
        // Three classes, each shifting one of five features; the others are noise.
        let mut rng = SplitMix64::new(3);
        let (n, f) = (300, 5);
        let labels: Vec<u32> = (0..n).map(|i| (i % 3) as u32).collect();
        let x: Vec<f32> = (0..n)
            .flat_map(|i| {
                let c = labels[i] as usize;
                (0..f)
                    .map(|j| rng.normal() * 0.5 + if j == c { 2.0 } else { 0.0 })
                    .collect::<Vec<_>>()
            })
            .collect();
        let train: Vec<usize> = (0..n).collect();
        let model = LogisticRegression::fit(&x, f, &labels, 3, &train, &LogisticOptions::default());
        let logits = model.logits(&x, &train);
        let pred = crate::train::argmax_rows(&logits, 3);
        let acc = pred.iter().zip(&labels).filter(|(a, b)| a == b).count() as f64 / n as f64;
        assert!(acc > 0.95, "accuracy {acc}");
        let strong = LogisticRegression::fit(
            &x,
            f,
            &labels,
            3,
            &train,
            &LogisticOptions {
                c: 1e-3,
                ..Default::default()
            },
        );
        let norm = |m: &LogisticRegression| m.weights.iter().map(|w| w * w).sum::<f32>();
        assert!(
            norm(&strong) < 0.1 * norm(&model),
            "{} vs {}",
            norm(&strong),
            norm(&model)
        );
    }
}
