//! Seeded splits of labelled cells: a stratified train/test split, K folds (stratified over
//! classes, or spatial blocks held out whole), validation cells carved from the training cells
//! of a fold, and class weights.
//!
//! Every function returns sorted index lists into the cell table; cells whose label is `None`
//! are in no set.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::util::rng::SplitMix64;

/// How test (and validation) cells are drawn.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum SplitKind {
    /// Cells drawn at random, stratified by class.
    Random,
    /// Square grid blocks of the cell centroids (side `block_um`) held out whole, so no test
    /// cell has a training neighbour from the same block (honest for models that read
    /// positions, niches or images).
    SpatialBlocks,
}

impl SplitKind {
    /// `random` / `spatial-blocks`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Random => "random",
            Self::SpatialBlocks => "spatial-blocks",
        }
    }
}

impl std::str::FromStr for SplitKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "random" => Ok(Self::Random),
            "spatial-blocks" | "spatial" | "blocks" => Ok(Self::SpatialBlocks),
            _ => Err(format!("unknown split `{s}`; use random or spatial-blocks")),
        }
    }
}

/// One fold: three disjoint, sorted sets of labelled cells. `val` is carved from the cells not
/// in `test`; models select epochs on it, baselines without selection fit on `train ∪ val`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Fold {
    /// Cells the gradient sees.
    pub train: Vec<usize>,
    /// Validation cells (model selection, early stopping).
    pub val: Vec<usize>,
    /// Test cells (reported only).
    pub test: Vec<usize>,
}

impl Fold {
    /// `train ∪ val`, sorted: every cell a method may learn from in this fold.
    pub fn fit_cells(&self) -> Vec<usize> {
        let mut v = [self.train.as_slice(), self.val.as_slice()].concat();
        v.sort_unstable();
        v
    }
}

/// K stratified test sets covering every labelled cell once: each class is shuffled and dealt
/// to the folds in turn, continuing where the previous class stopped, so fold sizes differ by
/// at most one cell and each class's count per fold by at most one.
pub fn stratified_folds(labels: &[Option<u32>], k: usize, seed: u64) -> Vec<Vec<usize>> {
    let k = k.max(1);
    let n_classes = labels.iter().flatten().map(|&c| c as usize + 1).max().unwrap_or(0);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); n_classes];
    for (i, l) in labels.iter().enumerate() {
        if let Some(c) = l {
            by_class[*c as usize].push(i);
        }
    }
    let mut rng = SplitMix64::new(seed ^ 0xF01D_5EED);
    let mut folds = vec![Vec::new(); k];
    let mut next = 0usize;
    for mut idx in by_class {
        rng.shuffle(&mut idx);
        for i in idx {
            folds[next % k].push(i);
            next += 1;
        }
    }
    for f in &mut folds {
        f.sort_unstable();
    }
    folds
}

/// Grid block `(floor(x / b), floor(y / b))` of a centroid in µm.
pub fn block_of(c: [f32; 2], block_um: f64) -> (i64, i64) {
    (
        (c[0] as f64 / block_um).floor() as i64,
        (c[1] as f64 / block_um).floor() as i64,
    )
}

/// Labelled cells among `cells` grouped by grid block (block order: by key).
fn blocks(
    cells: impl Iterator<Item = usize>,
    centroids: &[[f32; 2]],
    block_um: f64,
) -> Result<Vec<Vec<usize>>, String> {
    if !(block_um.is_finite() && block_um > 0.0) {
        return Err(format!("block size {block_um} µm must be a positive number"));
    }
    let mut map: BTreeMap<(i64, i64), Vec<usize>> = BTreeMap::new();
    for i in cells {
        let c = centroids[i];
        if !(c[0].is_finite() && c[1].is_finite()) {
            return Err(format!(
                "cell {i} has no centroid ({}, {}); spatial blocks need positions (use --split random for data without them)",
                c[0], c[1]
            ));
        }
        map.entry(block_of(c, block_um)).or_default().push(i);
    }
    Ok(map.into_values().collect())
}

/// K test sets of whole grid blocks (side `block_um` µm) of the labelled cells' centroids,
/// balanced by cell count: blocks in a seeded random order, then by decreasing size, each
/// given to the fold with the fewest cells so far. Fails when fewer than `k` blocks hold
/// labelled cells, or a labelled cell has no finite centroid.
pub fn spatial_block_folds(
    labels: &[Option<u32>],
    centroids: &[[f32; 2]],
    block_um: f64,
    k: usize,
    seed: u64,
) -> Result<Vec<Vec<usize>>, String> {
    let k = k.max(1);
    let mut b = blocks(
        (0..labels.len()).filter(|&i| labels[i].is_some()),
        centroids,
        block_um,
    )?;
    if b.len() < k {
        return Err(format!(
            "only {} grid blocks of {block_um} µm hold labelled cells, fewer than the {k} folds; use a smaller --block-um or fewer --folds",
            b.len()
        ));
    }
    SplitMix64::new(seed ^ 0xB10C_5EED).shuffle(&mut b);
    b.sort_by_key(|blk| std::cmp::Reverse(blk.len()));
    let mut folds: Vec<Vec<usize>> = vec![Vec::new(); k];
    for blk in b {
        let f = (0..k).min_by_key(|&f| folds[f].len()).unwrap_or(0);
        folds[f].extend(blk);
    }
    for f in &mut folds {
        f.sort_unstable();
    }
    Ok(folds)
}

/// Split the training cells `train` into (train, validation): `fraction` of them, stratified by
/// class for [`SplitKind::Random`], or whole grid blocks of the training cells (seeded order,
/// added until the fraction is reached, at least one block left for training) for
/// [`SplitKind::SpatialBlocks`] — there a training set in a single block falls back to the
/// stratified draw. `fraction` 0 gives no validation cells.
pub fn carve_validation(
    train: &[usize],
    labels: &[Option<u32>],
    kind: SplitKind,
    centroids: Option<&[[f32; 2]]>,
    block_um: f64,
    fraction: f64,
    seed: u64,
) -> Result<(Vec<usize>, Vec<usize>), String> {
    let mut all = train.to_vec();
    all.sort_unstable();
    if fraction <= 0.0 || all.len() < 2 {
        return Ok((all, Vec::new()));
    }
    if kind == SplitKind::SpatialBlocks {
        let centroids = centroids.ok_or("spatial-block validation needs cell centroids")?;
        let mut b = blocks(all.iter().copied(), centroids, block_um)?;
        if b.len() >= 2 {
            SplitMix64::new(seed ^ 0x0A1_B10C).shuffle(&mut b);
            let want = (all.len() as f64 * fraction).round().max(1.0) as usize;
            let mut val = Vec::new();
            for blk in &b[..b.len() - 1] {
                if val.len() >= want {
                    break;
                }
                val.extend_from_slice(blk);
            }
            val.sort_unstable();
            let rest: Vec<usize> = all.into_iter().filter(|i| val.binary_search(i).is_err()).collect();
            return Ok((rest, val));
        }
    }
    let mut masked: Vec<Option<u32>> = vec![None; labels.len()];
    for &i in &all {
        masked[i] = labels[i];
    }
    Ok(stratified_split(&masked, fraction, seed ^ 0x0A1_5EED))
}

/// Everything [`make_folds`] needs.
#[derive(Debug, Clone, Copy)]
pub struct FoldPlan<'a> {
    /// How test and validation cells are drawn.
    pub kind: SplitKind,
    /// Folds; 1 = a single split holding out `test_fraction`.
    pub k: usize,
    /// Held-out share of the single split (`k = 1`).
    pub test_fraction: f64,
    /// Share of each fold's training cells carved off for validation.
    pub val_fraction: f64,
    /// Grid block side in µm (spatial blocks).
    pub block_um: f64,
    /// Centroids `[cells]` in µm (spatial blocks).
    pub centroids: Option<&'a [[f32; 2]]>,
    /// Seed.
    pub seed: u64,
}

/// The folds of `plan` over the labelled cells. `k ≥ 2`: K-fold cross-validation (each cell
/// tested once); `k = 1`: one split — [`stratified_split`] with `test_fraction` (random), or
/// the first of `round(1 / test_fraction)` spatial-block folds. Validation cells come from each
/// fold's non-test cells ([`carve_validation`]).
pub fn make_folds(labels: &[Option<u32>], plan: &FoldPlan<'_>) -> Result<Vec<Fold>, String> {
    let spatial = || {
        plan.centroids
            .ok_or_else(|| "spatial blocks need cell centroids, which this data set does not have; use --split random".to_string())
    };
    let tests: Vec<Vec<usize>> = match (plan.kind, plan.k) {
        (SplitKind::Random, 0 | 1) => vec![stratified_split(labels, plan.test_fraction, plan.seed).1],
        (SplitKind::Random, k) => stratified_folds(labels, k, plan.seed),
        (SplitKind::SpatialBlocks, k) => {
            let single = k <= 1;
            let k = if single { (1.0 / plan.test_fraction.max(1e-3)).round().max(2.0) as usize } else { k };
            let mut f = spatial_block_folds(labels, spatial()?, plan.block_um, k, plan.seed)?;
            if single {
                f.truncate(1);
            }
            f
        }
    };
    let mut out = Vec::with_capacity(tests.len());
    for (f, test) in tests.into_iter().enumerate() {
        let fit: Vec<usize> = (0..labels.len())
            .filter(|&i| labels[i].is_some() && test.binary_search(&i).is_err())
            .collect();
        let (train, val) = carve_validation(
            &fit,
            labels,
            plan.kind,
            plan.centroids,
            plan.block_um,
            plan.val_fraction,
            plan.seed ^ (f as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15),
        )?;
        out.push(Fold { train, val, test });
    }
    Ok(out)
}

/// Split the indices of labelled cells into train and test sets, per class, so each class keeps
/// `test_fraction` of its cells (rounded, at least one in each set when the class has ≥ 2
/// cells). `labels[i] = None` cells are left out of both. Returns sorted index lists.
pub fn stratified_split(labels: &[Option<u32>], test_fraction: f64, seed: u64) -> (Vec<usize>, Vec<usize>) {
    let n_classes = labels.iter().flatten().map(|&c| c as usize + 1).max().unwrap_or(0);
    let mut by_class: Vec<Vec<usize>> = vec![Vec::new(); n_classes];
    for (i, l) in labels.iter().enumerate() {
        if let Some(c) = l {
            by_class[*c as usize].push(i);
        }
    }
    let mut rng = SplitMix64::new(seed);
    let (mut train, mut test) = (Vec::new(), Vec::new());
    for mut idx in by_class {
        rng.shuffle(&mut idx);
        let n = idx.len();
        let mut n_test = (n as f64 * test_fraction).round() as usize;
        if n >= 2 {
            n_test = n_test.clamp(1, n - 1);
        } else {
            n_test = 0;
        }
        test.extend_from_slice(&idx[..n_test]);
        train.extend_from_slice(&idx[n_test..]);
    }
    train.sort_unstable();
    test.sort_unstable();
    (train, test)
}

/// Inverse-frequency class weights `n / (classes · count_c)` over the given cells (0 for
/// classes absent from them), as in scikit-learn's `class_weight="balanced"`.
pub fn balanced_class_weights(labels: &[u32], n_classes: usize) -> Vec<f32> {
    let mut counts = vec![0usize; n_classes];
    for &l in labels {
        counts[l as usize] += 1;
    }
    let present = counts.iter().filter(|&&c| c > 0).count().max(1);
    counts
        .iter()
        .map(|&c| if c == 0 { 0.0 } else { labels.len() as f32 / (present as f32 * c as f32) })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(n: usize) -> Vec<Option<u32>> {
        (0..n)
            .map(|i| if i % 13 == 0 { None } else { Some((i % 7 % 3) as u32) })
            .collect()
    }

    fn assert_disjoint_covering(folds: &[Fold], labels: &[Option<u32>]) {
        let mut tested = vec![0usize; labels.len()];
        for (f, fold) in folds.iter().enumerate() {
            for i in fold.test.iter().chain(&fold.train).chain(&fold.val) {
                assert!(labels[*i].is_some(), "fold {f}: unlabelled cell {i} used");
            }
            for &i in &fold.test {
                tested[i] += 1;
                assert!(fold.train.binary_search(&i).is_err() && fold.val.binary_search(&i).is_err(), "fold {f}: test cell {i} also trained/validated on");
            }
            for &i in &fold.val {
                assert!(fold.train.binary_search(&i).is_err(), "fold {f}: validation cell {i} also trained on");
            }
            let n_labelled = labels.iter().flatten().count();
            assert_eq!(fold.train.len() + fold.val.len() + fold.test.len(), n_labelled, "fold {f} does not use every labelled cell");
        }
        for (i, l) in labels.iter().enumerate() {
            assert_eq!(tested[i], usize::from(l.is_some()), "cell {i} tested {} times", tested[i]);
        }
    }

    #[test]
    fn stratified_folds_are_disjoint_covering_and_balanced() {
        let labels = labels(503);
        let plan = FoldPlan { kind: SplitKind::Random, k: 5, test_fraction: 0.2, val_fraction: 0.15, block_um: 1.0, centroids: None, seed: 3 };
        let folds = make_folds(&labels, &plan).unwrap();
        assert_eq!(folds.len(), 5);
        assert_disjoint_covering(&folds, &labels);
        let sizes: Vec<usize> = folds.iter().map(|f| f.test.len()).collect();
        assert!(sizes.iter().max().unwrap() - sizes.iter().min().unwrap() <= 1, "{sizes:?}");
        for c in 0..3u32 {
            let per: Vec<usize> = folds.iter().map(|f| f.test.iter().filter(|&&i| labels[i] == Some(c)).count()).collect();
            assert!(per.iter().max().unwrap() - per.iter().min().unwrap() <= 1, "class {c}: {per:?}");
            // Validation is stratified too: every class is in every fold's validation set.
            for f in &folds {
                let v = f.val.iter().filter(|&&i| labels[i] == Some(c)).count();
                let t = f.train.iter().filter(|&&i| labels[i] == Some(c)).count();
                assert!(v > 0 && (v as f64 / (v + t) as f64 - 0.15).abs() < 0.03, "class {c}: {v} val / {t} train");
            }
        }
        assert_eq!(make_folds(&labels, &plan).unwrap(), folds, "seeded");
        assert_ne!(make_folds(&labels, &FoldPlan { seed: 4, ..plan }).unwrap(), folds);
    }

    #[test]
    fn single_random_split_keeps_the_stratified_split_and_carves_validation_from_training() {
        let labels = labels(300);
        let plan = FoldPlan { kind: SplitKind::Random, k: 1, test_fraction: 0.2, val_fraction: 0.1, block_um: 1.0, centroids: None, seed: 42 };
        let folds = make_folds(&labels, &plan).unwrap();
        let (train, test) = stratified_split(&labels, 0.2, 42);
        assert_eq!(folds.len(), 1);
        assert_eq!(folds[0].test, test, "the single split's test cells are unchanged by the validation carve");
        assert!(folds[0].val.iter().all(|i| train.binary_search(i).is_ok()), "validation ⊂ training cells");
        assert!(!folds[0].val.is_empty());
        assert_eq!(folds[0].fit_cells(), train);
    }

    #[test]
    fn spatial_blocks_are_never_split_between_train_and_test() {
        // 600 cells on a 400 × 300 µm field; 50 µm blocks.
        let mut rng = SplitMix64::new(11);
        let n = 600;
        let centroids: Vec<[f32; 2]> = (0..n)
            .map(|_| [(rng.next_u64() % 40_000) as f32 / 100.0, (rng.next_u64() % 30_000) as f32 / 100.0])
            .collect();
        let labels = labels(n);
        let plan = FoldPlan { kind: SplitKind::SpatialBlocks, k: 4, test_fraction: 0.2, val_fraction: 0.15, block_um: 50.0, centroids: Some(&centroids), seed: 5 };
        let folds = make_folds(&labels, &plan).unwrap();
        assert_eq!(folds.len(), 4);
        assert_disjoint_covering(&folds, &labels);
        for (f, fold) in folds.iter().enumerate() {
            let block_set = |idx: &[usize]| idx.iter().map(|&i| block_of(centroids[i], 50.0)).collect::<std::collections::HashSet<_>>();
            let (tr, va, te) = (block_set(&fold.train), block_set(&fold.val), block_set(&fold.test));
            assert!(tr.is_disjoint(&te) && va.is_disjoint(&te), "fold {f}: a block is in train/val and test");
            assert!(tr.is_disjoint(&va), "fold {f}: a block is in train and validation");
            assert!(!fold.val.is_empty());
        }
        // Balanced by cell count: 48 blocks of ~12 cells over 4 folds.
        let sizes: Vec<usize> = folds.iter().map(|f| f.test.len()).collect();
        let (lo, hi) = (*sizes.iter().min().unwrap(), *sizes.iter().max().unwrap());
        assert!(hi - lo <= 25, "{sizes:?}");
        // Too few blocks for the folds: a clear error.
        let err = make_folds(&labels, &FoldPlan { block_um: 500.0, ..plan }).unwrap_err();
        assert!(err.contains("--block-um"), "{err}");
        // No centroids: a clear error.
        let err = make_folds(&labels, &FoldPlan { centroids: None, ..plan }).unwrap_err();
        assert!(err.contains("--split random"), "{err}");
    }

    #[test]
    fn split_is_stratified_disjoint_and_seeded() {
        let labels: Vec<Option<u32>> = (0..200)
            .map(|i| if i % 17 == 0 { None } else { Some((i % 3) as u32) })
            .collect();
        let (tr, te) = stratified_split(&labels, 0.2, 7);
        assert!(tr.iter().all(|i| !te.contains(i)));
        assert_eq!(tr.len() + te.len(), labels.iter().flatten().count());
        for c in 0..3u32 {
            let n = labels.iter().filter(|l| **l == Some(c)).count();
            let t = te.iter().filter(|&&i| labels[i] == Some(c)).count();
            assert_eq!(t, (n as f64 * 0.2).round() as usize, "class {c}");
        }
        assert_eq!(stratified_split(&labels, 0.2, 7), (tr.clone(), te.clone()));
        assert_ne!(stratified_split(&labels, 0.2, 8).1, te);
    }

    #[test]
    fn balanced_weights_equalise_class_mass() {
        let labels = [0, 0, 0, 1, 2, 2];
        let w = balanced_class_weights(&labels, 4);
        assert!((w[0] * 3.0 - w[1] * 1.0).abs() < 1e-6);
        assert!((w[2] * 2.0 - w[1]).abs() < 1e-6);
        assert_eq!(w[3], 0.0);
    }
}
