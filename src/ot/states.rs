//! Two labelled states of a cell table prepared for [`pair_states`](super::pair_states): their
//! cell indices, one exact PCA fitted on the union of both (`[cells, genes]` → `[cells, d]`),
//! and per state the coordinates, ids, centroids and lineage. Shared by the `pair` command and
//! the flow's pairing (`train::flow`).

use super::lineage::breast_lineage;
use super::{pca, OtError, Pca, PcaOptions, StateCells};

/// The cells of a control and a target state in one PCA of both.
#[derive(Debug, Clone)]
pub struct StatePca {
    /// State names `[control, target]`.
    pub states: [String; 2],
    /// Lineages `[control, target]` (given, or [`breast_lineage`] of each state).
    pub lineages: [String; 2],
    /// Row indices into the table of the control cells.
    pub control: Vec<usize>,
    /// Row indices of the target cells.
    pub target: Vec<usize>,
    /// The PCA fitted on the union (control rows first).
    pub pca: Pca,
    /// PCA coordinates `[control + target, d]` (control rows first).
    pub coords: Vec<f32>,
    ids: [Vec<String>; 2],
    positions_um: [Vec<[f32; 2]>; 2],
}

/// Selects the cells labelled `control` and `target` in `labels` `[cells]` and fits a PCA with
/// at most `n_components` components on their rows of `x` `[cells, genes]`. `lineage`
/// overrides both states' lineage. Errors when a state has no cell or the shapes disagree.
#[allow(clippy::too_many_arguments)]
pub fn state_pca(
    x: &[f32],
    genes: usize,
    labels: &[Option<String>],
    cell_ids: &[String],
    centroids_um: &[[f32; 2]],
    control: &str,
    target: &str,
    n_components: usize,
    lineage: Option<&str>,
) -> Result<StatePca, OtError> {
    let n = labels.len();
    for (what, len, want) in [("expression [cells, genes]", x.len(), n * genes), ("cell ids [cells]", cell_ids.len(), n), ("centroids [cells]", centroids_um.len(), n)] {
        if len != want {
            return Err(OtError::Shape { what: what.to_string(), expected: want, found: len });
        }
    }
    let cells_of = |state: &str| -> Vec<usize> { (0..n).filter(|&i| labels[i].as_deref() == Some(state)).collect() };
    let (ci, ti) = (cells_of(control), cells_of(target));
    for (state, idx) in [(control, &ci), (target, &ti)] {
        if idx.is_empty() {
            return Err(OtError::Empty { what: format!("state `{state}` (no cell carries this label)") });
        }
    }
    let union: Vec<f32> = ci.iter().chain(&ti).flat_map(|&i| x[i * genes..(i + 1) * genes].iter().copied()).collect();
    let rows = ci.len() + ti.len();
    let k = n_components.min(genes).min(rows.saturating_sub(1)).max(1);
    let (pca, coords) = pca(&union, rows, genes, &PcaOptions { n_components: k })?;
    let ids = |idx: &[usize]| -> Vec<String> { idx.iter().map(|&i| cell_ids[i].clone()).collect() };
    let pos = |idx: &[usize]| -> Vec<[f32; 2]> { idx.iter().map(|&i| centroids_um[i]).collect() };
    let lin = |state: &str| lineage.map_or_else(|| breast_lineage(state), str::to_string);
    Ok(StatePca {
        states: [control.to_string(), target.to_string()],
        lineages: [lin(control), lin(target)],
        ids: [ids(&ci), ids(&ti)],
        positions_um: [pos(&ci), pos(&ti)],
        control: ci,
        target: ti,
        pca,
        coords,
    })
}

impl StatePca {
    /// PCA components `d`.
    pub fn dim(&self) -> usize {
        self.pca.n_components
    }

    /// The two states as [`pair_states`](super::pair_states) reads them (with centroids).
    pub fn state_cells(&self) -> (StateCells<'_>, StateCells<'_>) {
        let (cc, tc) = self.coords.split_at(self.control.len() * self.dim());
        let state = |k: usize, coords| StateCells { state: &self.states[k], lineage: &self.lineages[k], ids: &self.ids[k], coords, positions_um: Some(&self.positions_um[k]) };
        (state(0, cc), state(1, tc))
    }
}
