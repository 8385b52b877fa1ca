//! Differential signature of a pairing: `Δg = mean over pairs of (target − control)`
//! expression, per gene, and its top up/down genes.

use super::error::{check_finite, check_shape, OtError};
use super::pairing::csv_field;

/// Per-gene mean paired difference.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Signature {
    /// Gene names `[genes]`.
    pub genes: Vec<String>,
    /// `Δg` `[genes]`: mean over pairs of target minus control expression.
    pub delta: Vec<f32>,
    /// Number of pairs averaged.
    pub n_pairs: usize,
}

/// One gene of a top list.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct GeneDelta {
    /// Gene name.
    pub gene: String,
    /// Its `Δg`.
    pub delta: f32,
}

impl Signature {
    /// The `k` genes with the largest positive `Δg`, largest first (ties by name).
    pub fn top_up(&self, k: usize) -> Vec<GeneDelta> {
        self.top(k, true)
    }

    /// The `k` genes with the most negative `Δg`, most negative first.
    pub fn top_down(&self, k: usize) -> Vec<GeneDelta> {
        self.top(k, false)
    }

    fn top(&self, k: usize, up: bool) -> Vec<GeneDelta> {
        let mut idx: Vec<usize> = (0..self.delta.len())
            .filter(|&g| {
                if up {
                    self.delta[g] > 0.0
                } else {
                    self.delta[g] < 0.0
                }
            })
            .collect();
        idx.sort_by(|&a, &b| {
            let (da, db) = (self.delta[a], self.delta[b]);
            let ord = if up {
                db.total_cmp(&da)
            } else {
                da.total_cmp(&db)
            };
            ord.then_with(|| self.genes[a].cmp(&self.genes[b]))
        });
        idx.into_iter()
            .take(k)
            .map(|g| GeneDelta {
                gene: self.genes[g].clone(),
                delta: self.delta[g],
            })
            .collect()
    }

    /// CSV text with header `gene,delta,direction,rank`: the top `k` up genes (rank 1 = largest
    /// increase), then the top `k` down genes.
    pub fn to_csv(&self, k: usize) -> String {
        let mut out = String::from("gene,delta,direction,rank\n");
        for (dir, list) in [("up", self.top_up(k)), ("down", self.top_down(k))] {
            for (r, gd) in list.iter().enumerate() {
                out.push_str(&format!(
                    "{},{},{dir},{}\n",
                    csv_field(&gd.gene),
                    gd.delta,
                    r + 1
                ));
            }
        }
        out
    }

    /// Writes [`Signature::to_csv`] to `path`.
    #[cfg(all(feature = "native-io", not(target_arch = "wasm32")))]
    pub fn write_csv(&self, path: &std::path::Path, k: usize) -> Result<(), OtError> {
        std::fs::write(path, self.to_csv(k)).map_err(|e| OtError::Io {
            path: path.display().to_string(),
            reason: e.to_string(),
        })
    }
}

/// `Δg = (1/|pairs|) Σ_(i,j) (target_j − control_i)` per gene.
///
/// `control` is `[n_control, genes]`, `target` `[n_target, genes]` (same genes, e.g.
/// log1p-CP10k), `pairs` are `(control index, target index)` as in
/// [`super::Pairing::pairs`]. Accumulated in f64.
pub fn signature(
    control: &[f32],
    n_control: usize,
    target: &[f32],
    n_target: usize,
    genes: &[String],
    pairs: &[(u32, u32)],
) -> Result<Signature, OtError> {
    let g = genes.len();
    if g == 0 {
        return Err(OtError::Empty {
            what: "gene list".into(),
        });
    }
    if pairs.is_empty() {
        return Err(OtError::Empty {
            what: "pair list".into(),
        });
    }
    check_shape(
        || format!("control expression [{n_control}, {g}]"),
        control.len(),
        n_control * g,
    )?;
    check_shape(
        || format!("target expression [{n_target}, {g}]"),
        target.len(),
        n_target * g,
    )?;
    check_finite(|| "control expression".into(), control)?;
    check_finite(|| "target expression".into(), target)?;
    let mut sum = vec![0f64; g];
    for (k, &(i, j)) in pairs.iter().enumerate() {
        let (i, j) = (i as usize, j as usize);
        if i >= n_control || j >= n_target {
            return Err(OtError::InvalidOption {
                name: "pairs",
                reason: format!(
                    "pair {k} = ({i}, {j}) is out of range for {n_control} control and {n_target} target cells"
                ),
            });
        }
        let (c, t) = (&control[i * g..(i + 1) * g], &target[j * g..(j + 1) * g]);
        for ((s, &cv), &tv) in sum.iter_mut().zip(c).zip(t) {
            *s += tv as f64 - cv as f64;
        }
    }
    let np = pairs.len() as f64;
    Ok(Signature {
        genes: genes.to_vec(),
        delta: sum.iter().map(|&s| (s / np) as f32).collect(),
        n_pairs: pairs.len(),
    })
}
