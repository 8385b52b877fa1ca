//! The gene encoder option: summary tokens (GEB) or one token per gene. For gene tokens the
//! genes are chosen here from the training cells only (all genes of a panel up to the cap; a
//! larger panel's most variable or most expressed genes) and recorded in the spec, so the
//! model file makes inference read the same genes.

use serde::{Deserialize, Serialize};

use crate::engine::{ClassifierConfig, GeneEncoderKind, GeneSelection, DEFAULT_MAX_GENE_TOKENS};

/// How a classifier's gene tokens are built (the CLI's `--gene-encoder`,
/// `--max-gene-tokens`, `--gene-selection`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GeneEncoderOptions {
    /// Summary tokens or one token per gene.
    pub kind: GeneEncoderKind,
    /// Most gene tokens: panels up to this size use every gene.
    pub max_tokens: usize,
    /// How a larger panel's genes are chosen (highly variable or top expressed).
    pub selection: GeneSelection,
}

impl Default for GeneEncoderOptions {
    /// Summary tokens; for gene tokens a cap of [`DEFAULT_MAX_GENE_TOKENS`] and the most
    /// variable genes.
    fn default() -> Self {
        Self { kind: GeneEncoderKind::Summary, max_tokens: DEFAULT_MAX_GENE_TOKENS, selection: GeneSelection::HighlyVariable }
    }
}

impl GeneEncoderOptions {
    /// `spec` with this gene encoder: unchanged for summary tokens; for gene tokens, one token
    /// per gene chosen by [`select_genes`] from the `train` rows of `x_norm` `[cells, G]`.
    pub fn apply(&self, spec: ClassifierConfig, x_norm: &[f32], n_genes: usize, train: &[usize]) -> ClassifierConfig {
        match self.kind {
            GeneEncoderKind::Summary => spec,
            GeneEncoderKind::Tokens => {
                let (selection, genes) = select_genes(x_norm, n_genes, train, self.max_tokens, self.selection);
                spec.with_gene_token_panel(selection, genes)
            }
        }
    }

    /// A short label for tables (`summary (4 tokens)`, `gene tokens (≤ 512, highly_variable)`).
    pub fn label(&self, summary_tokens: usize) -> String {
        match self.kind {
            GeneEncoderKind::Summary => format!("summary ({summary_tokens} tokens)"),
            GeneEncoderKind::Tokens => format!("gene tokens (≤ {}, {})", self.max_tokens, self.selection.name()),
        }
    }
}

/// The genes of `x_norm` `[cells, G]` that get a token: all `G` if `G <= max_tokens`
/// (or when `selection` is [`GeneSelection::All`]; selection then `All`), else the `max_tokens` genes of largest variance
/// (highly variable) or mean (top expressed) over the `rows` cells (ties by index), returned
/// in panel order.
pub fn select_genes(x_norm: &[f32], n_genes: usize, rows: &[usize], max_tokens: usize, selection: GeneSelection) -> (GeneSelection, Vec<usize>) {
    let cap = max_tokens.max(1);
    if n_genes <= cap || selection == GeneSelection::All {
        return (GeneSelection::All, (0..n_genes).collect());
    }
    let n = rows.len().max(1) as f64;
    let mut mean = vec![0f64; n_genes];
    let mut sq = vec![0f64; n_genes];
    for &r in rows {
        for (g, &v) in x_norm[r * n_genes..(r + 1) * n_genes].iter().enumerate() {
            mean[g] += v as f64;
            sq[g] += (v as f64) * (v as f64);
        }
    }
    let score: Vec<f64> = (0..n_genes)
        .map(|g| {
            let m = mean[g] / n;
            match selection {
                GeneSelection::TopExpressed => m,
                _ => sq[g] / n - m * m,
            }
        })
        .collect();
    let mut order: Vec<usize> = (0..n_genes).collect();
    order.sort_by(|&a, &b| score[b].total_cmp(&score[a]).then(a.cmp(&b)));
    let mut genes: Vec<usize> = order.into_iter().take(cap).collect();
    genes.sort_unstable();
    (selection, genes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn small_panels_use_every_gene_and_large_ones_the_chosen_genes_in_order() {
        // 3 cells × 4 genes: gene 2 varies most, gene 0 is most expressed, gene 3 is constant.
        let x = [5.0, 0.0, 0.0, 1.0, 5.0, 1.0, 4.0, 1.0, 5.0, 0.5, 8.0, 1.0];
        assert_eq!(select_genes(&x, 4, &[0, 1, 2], 4, GeneSelection::HighlyVariable), (GeneSelection::All, vec![0, 1, 2, 3]));
        assert_eq!(select_genes(&x, 4, &[0, 1, 2], 2, GeneSelection::HighlyVariable), (GeneSelection::HighlyVariable, vec![1, 2]));
        assert_eq!(select_genes(&x, 4, &[0, 1, 2], 1, GeneSelection::TopExpressed), (GeneSelection::TopExpressed, vec![0]));
        // Only the training rows count: on row 0 alone nothing varies, ties go by index.
        assert_eq!(select_genes(&x, 4, &[0], 2, GeneSelection::HighlyVariable).1, vec![0, 1]);
        let spec = GeneEncoderOptions { kind: GeneEncoderKind::Tokens, max_tokens: 2, selection: GeneSelection::HighlyVariable }
            .apply(ClassifierConfig::new(4, 2), &x, 4, &[0, 1, 2]);
        assert_eq!(spec.gene_tokens, 2);
        assert_eq!(spec.gene_token_panel.as_ref().map(|p| p.genes.clone()), Some(vec![1, 2]));
        spec.validate().unwrap();
    }
}
