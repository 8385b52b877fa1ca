//! Reference-based cell labels, following SingleR (Aran et al. 2019, `de.method = "classic"`).
//! The reference profiles are read by [`crate::data::read_reference_csv`].
//!
//! 1. Restrict cells and reference to their common genes.
//! 2. Markers: for every ordered pair of labels `(a, b)`, the `n` genes with the largest
//!    positive difference between the per-label median profiles, `median_a - median_b`.
//! 3. Score: Spearman correlation of each cell with each reference profile over the union of
//!    all markers; a label's score is the `quantile` (0.8) of its profiles' correlations.
//! 4. Fine-tuning: keep the labels scoring within `tune_threshold` (0.05) of the best,
//!    recompute their scores on the markers between them only, and repeat until one label is
//!    left or the set stops shrinking.
//! 5. Confidence: `delta` = best − next-best score (of the last fine-tuning round, like
//!    SingleR's `tuning.scores`); a cell is ambiguous when `delta < min_margin` or when
//!    SingleR's `pruneScores` rejects it (its best initial score minus the median initial
//!    score is negative, or more than `prune_nmads` MADs below that label's median).

use std::collections::HashMap;
use std::fmt;

use super::error::AnalysisError;
use crate::data::Reference;

/// Options of [`annotate_singler`].
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SingleROptions {
    /// Quantile of a label's per-profile correlations used as its score (SingleR: 0.8).
    pub quantile: f32,
    /// Cells whose best − runner-up score (`delta`) is below this are ambiguous.
    ///
    /// Default 0.02, chosen on the BIDCell breast crop (1,135 cells, 15 labels): `delta` has
    /// no gap (median 0.030), but it predicts whether a label survives re-annotation after
    /// thinning each cell's transcripts to half. Cells with `delta` < 0.01 keep their label in
    /// 51-55 % of thinned draws (coin flips, mostly Epithelial vs Malignant), 0.01-0.02 in
    /// 66 %, 0.02-0.03 in 76 %, 0.03-0.05 in 88 % and above 0.05 in 95-99 %.
    pub min_margin: f32,
    /// Markers per ordered pair of labels; `None` uses SingleR's
    /// `round(500 * (2/3)^log2(n_labels))` (103 for 15 labels).
    pub n_marker_genes: Option<usize>,
    /// Fail when fewer genes than this are shared by the cells and the reference.
    pub min_common_genes: usize,
    /// Run SingleR's fine-tuning.
    pub fine_tune: bool,
    /// Labels within this of the best score stay in fine-tuning (SingleR: 0.05).
    pub tune_threshold: f32,
    /// MADs below the per-label median delta for SingleR's outlier pruning (SingleR: 3).
    pub prune_nmads: f32,
}

impl Default for SingleROptions {
    fn default() -> Self {
        SingleROptions {
            quantile: 0.8,
            min_margin: 0.02,
            n_marker_genes: None,
            min_common_genes: 100,
            fine_tune: true,
            tune_threshold: 0.05,
            prune_nmads: 3.0,
        }
    }
}

/// SingleR's default number of markers per pair of labels.
pub fn default_marker_count(n_labels: usize) -> usize {
    (500.0 * (2.0f64 / 3.0).powf((n_labels.max(1) as f64).log2())).round() as usize
}

/// Per-cell labels and confidence.
#[derive(Debug, Clone, PartialEq)]
pub struct Annotation {
    /// Confident label per cell; `None` when ambiguous (`low_margin` or `pruned`).
    pub labels: Vec<Option<String>>,
    /// Best label per cell (after fine-tuning when enabled).
    pub best: Vec<String>,
    /// Runner-up label per cell (in the last fine-tuning round when enabled).
    pub next_best: Vec<String>,
    /// Best − runner-up score per cell (last fine-tuning round when enabled).
    pub delta: Vec<f32>,
    /// SingleR's pruning delta: initial score of `best` minus the median initial score.
    pub delta_median: Vec<f32>,
    /// `delta < min_margin`.
    pub low_margin: Vec<bool>,
    /// Rejected by SingleR's `pruneScores` rule.
    pub pruned: Vec<bool>,
    /// Initial (pre-fine-tuning) scores, shape `[n_cells, n_labels]`, row-major.
    pub scores: Vec<f32>,
    /// Label names (sorted), length `n_labels`; columns of `scores`.
    pub label_names: Vec<String>,
    /// Genes shared by the cells and the reference.
    pub n_common_genes: usize,
    /// Genes in the union of all markers (used for the initial scores).
    pub n_marker_genes: usize,
}

/// Counts of an [`Annotation`].
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct AnnotationSummary {
    /// Number of cells.
    pub n_cells: usize,
    /// Per label (in `label_names` order): `(label, confident cells, cells with it as best)`.
    pub per_label: Vec<(String, usize, usize)>,
    /// Cells without a confident label.
    pub ambiguous: usize,
    /// Cells with `delta < min_margin`.
    pub low_margin: usize,
    /// Cells rejected by the pruning rule.
    pub pruned: usize,
}

impl Annotation {
    /// Number of annotated cells.
    pub fn n_cells(&self) -> usize {
        self.best.len()
    }

    /// Counts per label and of ambiguous cells.
    pub fn summary(&self) -> AnnotationSummary {
        let per_label = self
            .label_names
            .iter()
            .map(|name| {
                let confident = self
                    .labels
                    .iter()
                    .filter(|l| l.as_deref() == Some(name.as_str()))
                    .count();
                let best = self.best.iter().filter(|b| *b == name).count();
                (name.clone(), confident, best)
            })
            .collect();
        AnnotationSummary {
            n_cells: self.n_cells(),
            per_label,
            ambiguous: self.labels.iter().filter(|l| l.is_none()).count(),
            low_margin: self.low_margin.iter().filter(|&&b| b).count(),
            pruned: self.pruned.iter().filter(|&&b| b).count(),
        }
    }
}

impl fmt::Display for AnnotationSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{:<20} {:>9} {:>6}", "label", "confident", "best")?;
        for (name, confident, best) in &self.per_label {
            writeln!(f, "{name:<20} {confident:>9} {best:>6}")?;
        }
        write!(
            f,
            "{} cells, {} ambiguous ({} low margin, {} pruned)",
            self.n_cells, self.ambiguous, self.low_margin, self.pruned
        )
    }
}

/// Spearman rank correlation of two equal-length samples, ties given their average rank.
/// Returns 0 when either sample is constant (correlation undefined) or lengths differ.
pub fn spearman(a: &[f32], b: &[f32]) -> f32 {
    if a.len() != b.len() {
        return 0.0;
    }
    dot(&scaled_ranks(a), &scaled_ranks(b))
}

/// Average ranks (ties share their mean rank), centred and scaled to unit L2 norm, so that
/// the dot product of two such vectors is their Spearman correlation. Constant input gives
/// all zeros.
fn scaled_ranks(values: &[f32]) -> Vec<f32> {
    let n = values.len();
    let mut order: Vec<usize> = (0..n).collect();
    order.sort_by(|&i, &j| values[i].total_cmp(&values[j]));
    let mut ranks = vec![0f64; n];
    let mut start = 0;
    while start < n {
        let mut end = start + 1;
        while end < n && values[order[end]] == values[order[start]] {
            end += 1;
        }
        let avg = (start + end - 1) as f64 / 2.0;
        for &i in &order[start..end] {
            ranks[i] = avg;
        }
        start = end;
    }
    let mean = (n as f64 - 1.0) / 2.0;
    let norm = ranks
        .iter()
        .map(|r| (r - mean) * (r - mean))
        .sum::<f64>()
        .sqrt();
    if norm <= 1e-12 {
        return vec![0.0; n];
    }
    ranks.iter().map(|r| ((r - mean) / norm) as f32).collect()
}

fn dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Quantile `q` of `values` with linear interpolation (R's type 7); `values` is reordered.
fn quantile(values: &mut [f32], q: f32) -> f32 {
    if values.is_empty() {
        return f32::NAN;
    }
    values.sort_by(f32::total_cmp);
    let h = (values.len() - 1) as f32 * q.clamp(0.0, 1.0);
    let (lo, frac) = (h.floor() as usize, h - h.floor());
    let hi = (lo + 1).min(values.len() - 1);
    values[lo] + frac * (values[hi] - values[lo])
}

fn median(values: &mut [f32]) -> f32 {
    quantile(values, 0.5)
}

/// The trained classifier: reference restricted to common genes, and markers.
struct Trained {
    label_names: Vec<String>,
    /// Per common gene: its column in the cells' matrix.
    cell_column: Vec<usize>,
    /// Per label: reference profile rows.
    profiles_of: Vec<Vec<usize>>,
    /// Per profile: expression on the common genes.
    ref_common: Vec<Vec<f32>>,
    /// `markers[a][b]`: common-gene positions up in `a` versus `b`.
    markers: Vec<Vec<Vec<usize>>>,
    /// Sorted union of all markers.
    all_markers: Vec<usize>,
    /// Per profile: scaled ranks on `all_markers`.
    ref_ranks_all: Vec<Vec<f32>>,
}

fn train(
    cell_genes: &[String],
    reference: &Reference,
    opts: &SingleROptions,
) -> Result<Trained, AnalysisError> {
    let mut column_of: HashMap<&str, usize> = HashMap::with_capacity(cell_genes.len());
    for (i, g) in cell_genes.iter().enumerate() {
        column_of.entry(g.as_str()).or_insert(i);
    }
    let (mut ref_column, mut cell_column, mut missing) = (Vec::new(), Vec::new(), Vec::new());
    for (j, g) in reference.genes.iter().enumerate() {
        match column_of.get(g.as_str()) {
            Some(&c) => {
                ref_column.push(j);
                cell_column.push(c);
            }
            None => missing.push(g.clone()),
        }
    }
    if ref_column.len() < opts.min_common_genes.max(1) {
        return Err(AnalysisError::TooFewCommonGenes {
            n_common: ref_column.len(),
            required: opts.min_common_genes.max(1),
            n_missing: missing.len(),
            missing,
        });
    }

    let label_names = reference.label_names();
    let mut profiles_of = vec![Vec::new(); label_names.len()];
    for (p, l) in reference.labels.iter().enumerate() {
        if let Ok(k) = label_names.binary_search(l) {
            profiles_of[k].push(p);
        }
    }
    let ref_common: Vec<Vec<f32>> = (0..reference.n_profiles())
        .map(|p| {
            let row = reference.profile(p);
            ref_column.iter().map(|&j| row[j]).collect()
        })
        .collect();

    // Per-label medians on the common genes, shape [n_labels][n_common].
    let n_common = ref_column.len();
    let medians: Vec<Vec<f32>> = profiles_of
        .iter()
        .map(|rows| {
            (0..n_common)
                .map(|g| median(&mut rows.iter().map(|&p| ref_common[p][g]).collect::<Vec<_>>()))
                .collect()
        })
        .collect();

    let n_labels = label_names.len();
    let n_top = opts
        .n_marker_genes
        .unwrap_or_else(|| default_marker_count(n_labels))
        .min(n_common);
    let mut markers = vec![vec![Vec::new(); n_labels]; n_labels];
    let mut is_marker = vec![false; n_common];
    for a in 0..n_labels {
        for b in 0..n_labels {
            if a == b {
                continue;
            }
            let mut up: Vec<(f32, usize)> = (0..n_common)
                .map(|g| (medians[a][g] - medians[b][g], g))
                .filter(|&(d, _)| d > 0.0)
                .collect();
            // Largest difference first; ties by gene position, like SingleR.
            up.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
            up.truncate(n_top);
            markers[a][b] = up.into_iter().map(|(_, g)| g).collect();
            for &g in &markers[a][b] {
                is_marker[g] = true;
            }
        }
    }
    let all_markers: Vec<usize> = (0..n_common).filter(|&g| is_marker[g]).collect();
    let ref_ranks_all = ref_common
        .iter()
        .map(|v| scaled_ranks(&gather(v, &all_markers)))
        .collect();
    Ok(Trained {
        label_names,
        cell_column,
        profiles_of,
        ref_common,
        markers,
        all_markers,
        ref_ranks_all,
    })
}

fn gather(values: &[f32], at: &[usize]) -> Vec<f32> {
    at.iter().map(|&i| values[i]).collect()
}

/// Outcome of one scoring round.
struct Round {
    /// Best label.
    best: usize,
    /// Runner-up label.
    next: usize,
    /// Best − runner-up score.
    delta: f32,
    /// Labels scoring within the tuning threshold of the best.
    within: Vec<usize>,
}

/// Ranks `scores` of the labels `in_use` (same order; at least two). Ties go to the earlier label.
fn rank_round(scores: &[f32], in_use: &[usize], thresh: f32) -> Round {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let (best, next) = (order[0], order[1]);
    let within = in_use
        .iter()
        .zip(scores)
        .filter(|&(_, &s)| s >= scores[best] - thresh)
        .map(|(&l, _)| l)
        .collect();
    Round {
        best: in_use[best],
        next: in_use[next],
        delta: scores[best] - scores[next],
        within,
    }
}

impl Trained {
    /// Score of each label in `labels`: the quantile `q` of `correlation(profile)` over the
    /// label's reference profiles.
    fn label_scores(
        &self,
        labels: &[usize],
        correlation: impl Fn(usize) -> f32,
        q: f32,
    ) -> Vec<f32> {
        labels
            .iter()
            .map(|&l| {
                let mut corr: Vec<f32> = self.profiles_of[l]
                    .iter()
                    .map(|&p| correlation(p))
                    .collect();
                quantile(&mut corr, q)
            })
            .collect()
    }

    /// Initial scores and the final (fine-tuned when enabled) round of one cell.
    fn classify(&self, cell: &[f32], opts: &SingleROptions) -> (Vec<f32>, Round) {
        let all: Vec<usize> = (0..self.label_names.len()).collect();
        let cell_ranks = scaled_ranks(&gather(cell, &self.all_markers));
        let initial = self.label_scores(
            &all,
            |p| dot(&cell_ranks, &self.ref_ranks_all[p]),
            opts.quantile,
        );
        let mut round = rank_round(&initial, &all, opts.tune_threshold);
        // As SingleR: nothing to tune with one candidate, nothing gained with all of them.
        if !opts.fine_tune || round.within.len() == 1 || round.within.len() == all.len() {
            return (initial, round);
        }
        let mut in_use = std::mem::take(&mut round.within);
        let mut is_gene = vec![false; self.cell_column.len()];
        while in_use.len() > 1 {
            is_gene.iter_mut().for_each(|m| *m = false);
            for &a in &in_use {
                for &b in &in_use {
                    for &g in &self.markers[a][b] {
                        is_gene[g] = true;
                    }
                }
            }
            let genes: Vec<usize> = (0..is_gene.len()).filter(|&g| is_gene[g]).collect();
            let cell_ranks = scaled_ranks(&gather(cell, &genes));
            let correlation = |p: usize| {
                dot(
                    &cell_ranks,
                    &scaled_ranks(&gather(&self.ref_common[p], &genes)),
                )
            };
            let scores = self.label_scores(&in_use, correlation, opts.quantile);
            round = rank_round(&scores, &in_use, opts.tune_threshold);
            if round.within.len() == in_use.len() {
                break;
            }
            in_use = std::mem::take(&mut round.within);
        }
        (initial, round)
    }
}

/// SingleR's `pruneScores`: `true` for cells whose `delta_median` is negative or more than
/// `nmads` (scaled) MADs below the median of the cells sharing their best label.
fn prune(best: &[usize], delta_median: &[f32], n_labels: usize, nmads: f32) -> Vec<bool> {
    let mut pruned: Vec<bool> = delta_median
        .iter()
        .map(|&d| d.is_nan() || d < 0.0)
        .collect();
    for label in 0..n_labels {
        let cells: Vec<usize> = (0..best.len())
            .filter(|&i| best[i] == label && !pruned[i])
            .collect();
        if cells.is_empty() {
            continue;
        }
        let mut values: Vec<f32> = cells.iter().map(|&i| delta_median[i]).collect();
        let med = median(&mut values);
        let mut deviations: Vec<f32> = values.iter().map(|v| (v - med).abs()).collect();
        let mad = 1.4826 * median(&mut deviations);
        for &i in &cells {
            pruned[i] = delta_median[i] < med - nmads * mad;
        }
    }
    pruned
}

/// Labels cells against `reference` as SingleR does (see the module documentation).
///
/// `log_expr` is `[n_cells, cell_genes.len()]` row-major log-normalised expression (e.g.
/// [`crate::data::log_normalise`]); only the per-cell gene ranks matter. Cells with too few counts should
/// be filtered or flagged by the caller: with few transcripts most genes tie at 0.
pub fn annotate_singler(
    cell_genes: &[String],
    log_expr: &[f32],
    reference: &Reference,
    opts: &SingleROptions,
) -> Result<Annotation, AnalysisError> {
    let n_genes = cell_genes.len();
    if n_genes == 0 || !log_expr.len().is_multiple_of(n_genes) {
        return Err(AnalysisError::Shape {
            what: "log_expr ([cells, genes])".to_string(),
            expected: log_expr.len().div_ceil(n_genes.max(1)) * n_genes,
            found: log_expr.len(),
        });
    }
    if let Some(i) = log_expr.iter().position(|v| !v.is_finite()) {
        return Err(AnalysisError::InvalidParameter {
            name: "log_expr",
            value: format!(
                "{} at cell {}, gene {}",
                log_expr[i],
                i / n_genes,
                cell_genes[i % n_genes]
            ),
            expected: "finite values".into(),
        });
    }
    let expected_ref = reference.n_profiles() * reference.n_genes();
    if reference.profiles.len() != expected_ref {
        return Err(AnalysisError::Shape {
            what: "reference profiles ([profiles, genes])".to_string(),
            expected: expected_ref,
            found: reference.profiles.len(),
        });
    }
    if reference.label_names().len() < 2 {
        return Err(AnalysisError::InvalidParameter {
            name: "reference",
            value: format!("{} label(s)", reference.label_names().len()),
            expected: "a reference with at least 2 labels".into(),
        });
    }
    let valid_quantiles = (0.0..=1.0).contains(&opts.quantile)
        && opts.tune_threshold >= 0.0
        && opts.prune_nmads >= 0.0;
    if !valid_quantiles || !opts.min_margin.is_finite() {
        return Err(AnalysisError::InvalidParameter {
            name: "opts",
            value: format!("{opts:?}"),
            expected:
                "quantile in [0, 1], non-negative tune_threshold and prune_nmads, finite min_margin"
                    .into(),
        });
    }

    let trained = train(cell_genes, reference, opts)?;
    let n_labels = trained.label_names.len();
    let n_cells = log_expr.len() / n_genes;
    let mut scores = Vec::with_capacity(n_cells * n_labels);
    let (mut best, mut next, mut delta, mut delta_median) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for row in log_expr.chunks_exact(n_genes) {
        let cell = gather(row, &trained.cell_column);
        let (initial, round) = trained.classify(&cell, opts);
        delta_median.push(initial[round.best] - median(&mut initial.clone()));
        scores.extend_from_slice(&initial);
        best.push(round.best);
        next.push(round.next);
        delta.push(round.delta);
    }
    let pruned = prune(&best, &delta_median, n_labels, opts.prune_nmads);
    let low_margin: Vec<bool> = delta
        .iter()
        .map(|&d| d.is_nan() || d < opts.min_margin)
        .collect();
    let labels = (0..n_cells)
        .map(|i| (!pruned[i] && !low_margin[i]).then(|| trained.label_names[best[i]].clone()))
        .collect();
    Ok(Annotation {
        labels,
        best: best
            .iter()
            .map(|&b| trained.label_names[b].clone())
            .collect(),
        next_best: next
            .iter()
            .map(|&b| trained.label_names[b].clone())
            .collect(),
        delta,
        delta_median,
        low_margin,
        pruned,
        scores,
        label_names: trained.label_names,
        n_common_genes: trained.cell_column.len(),
        n_marker_genes: trained.all_markers.len(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spearman_with_ties_matches_hand_computation() {
        // a ranks: [1, 2.5, 2.5, 4], b ranks: [1, 2, 3, 4]; centred: [-1.5, 0, 0, 1.5] and
        // [-1.5, -0.5, 0.5, 1.5]; r = 4.5 / sqrt(4.5 * 5) = sqrt(0.9).
        let r = spearman(&[1.0, 2.0, 2.0, 5.0], &[10.0, 20.0, 30.0, 40.0]);
        assert!((r - 0.9f32.sqrt()).abs() < 1e-6, "{r}");
        assert!((spearman(&[3.0, 2.0, 1.0], &[1.0, 2.0, 3.0]) + 1.0).abs() < 1e-6);
        assert_eq!(spearman(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0]), 0.0);
        assert_eq!(spearman(&[1.0], &[1.0, 2.0]), 0.0);
    }

    #[test]
    fn quantile_is_type7() {
        // R: quantile(c(0.1, 0.5, 0.2, 0.9), 0.8) = 0.66
        assert!((quantile(&mut [0.1, 0.5, 0.2, 0.9], 0.8) - 0.66).abs() < 1e-6);
        assert_eq!(quantile(&mut [0.3], 0.8), 0.3);
        assert_eq!(median(&mut [4.0, 1.0, 3.0, 2.0]), 2.5);
    }

    #[test]
    fn marker_count_matches_singler() {
        assert_eq!(default_marker_count(2), 333);
        assert_eq!(default_marker_count(15), 103);
    }

    #[test]
    fn prune_flags_low_outliers_per_label() {
        let best = [0, 0, 0, 0, 0, 1];
        let delta = [0.30, 0.31, 0.29, 0.30, 0.05, -0.01];
        assert_eq!(
            prune(&best, &delta, 2, 3.0),
            vec![false, false, false, false, true, true]
        );
    }

    /// Three labels with disjoint marker blocks; cells copy one label's pattern.
    fn toy() -> (Vec<String>, Reference) {
        let genes: Vec<String> = (0..30).map(|i| format!("G{i:02}")).collect();
        let mut profiles = Vec::new();
        let mut labels = Vec::new();
        for (l, name) in ["A", "B", "C"].iter().enumerate() {
            for rep in 0..2 {
                for g in 0..30 {
                    let on = g / 10 == l;
                    profiles.push(if on {
                        3.0 + (g % 10) as f32 * 0.1
                    } else {
                        0.1 * ((g * 7 + rep) % 5) as f32
                    });
                }
                labels.push(name.to_string());
            }
        }
        (
            genes.clone(),
            Reference {
                genes,
                profiles,
                labels,
            },
        )
    }

    #[test]
    fn toy_reference_is_recovered() {
        let (genes, reference) = toy();
        let mut cells = Vec::new();
        for l in [2usize, 0, 1] {
            for g in 0..30 {
                cells.push(if g / 10 == l {
                    2.0 + (g % 3) as f32
                } else {
                    0.0
                });
            }
        }
        let opts = SingleROptions {
            min_common_genes: 10,
            ..Default::default()
        };
        let ann = annotate_singler(&genes, &cells, &reference, &opts).unwrap();
        assert_eq!(ann.best, ["C", "A", "B"]);
        assert_eq!(ann.label_names, ["A", "B", "C"]);
        assert!(ann.delta.iter().all(|&d| d > 0.3), "{:?}", ann.delta);
        assert_eq!(ann.scores.len(), 9);
        let s = ann.summary();
        assert_eq!(s.per_label[0], ("A".to_string(), 1, 1));
    }

    #[test]
    fn too_few_common_genes_lists_missing() {
        let (_, reference) = toy();
        let genes = vec!["G00".to_string(), "X".into()];
        let err = annotate_singler(&genes, &[1.0, 0.0], &reference, &SingleROptions::default())
            .unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(
                err,
                AnalysisError::TooFewCommonGenes {
                    n_common: 1,
                    n_missing: 29,
                    ..
                }
            ),
            "{msg}"
        );
        assert!(msg.contains("G01, G02"), "{msg}");
    }

    #[test]
    fn bad_shapes_are_errors() {
        let (genes, reference) = toy();
        let opts = SingleROptions {
            min_common_genes: 10,
            ..Default::default()
        };
        assert!(matches!(
            annotate_singler(&genes, &[0.0; 31], &reference, &opts),
            Err(AnalysisError::Shape { .. })
        ));
        let mut nan = vec![0.0; 30];
        nan[3] = f32::NAN;
        assert!(matches!(
            annotate_singler(&genes, &nan, &reference, &opts),
            Err(AnalysisError::InvalidParameter { .. })
        ));
    }
}
