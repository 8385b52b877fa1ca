//! OT pairing of a control and a target cell state (SPATIA): each control cell is matched to
//! the target cell with the largest entry in its row of the Sinkhorn plan.
//!
//! QC (from the paper): both states must be of the same lineage, and each must have at least
//! `min_cells_per_state` (θ_min = 50) cells. An optional spatial penalty `λ · dist_µm` is added
//! to the expression cost before scaling (see [`super::sinkhorn`](mod@super::sinkhorn)).

use super::error::{check_shape, OtError};
use super::sinkhorn::{
    assign, sinkhorn, SinkhornEngine, SinkhornOptions, SinkhornProblem, SinkhornResult,
    SpatialPenalty,
};

/// Minimum number of cells per state (θ_min).
pub const DEFAULT_MIN_CELLS_PER_STATE: usize = 50;

/// The cells of one state, in an embedding shared with the other state (e.g. one PCA fitted
/// on the union of both).
#[derive(Clone, Copy, Debug)]
pub struct StateCells<'a> {
    /// State name (e.g. `"Epithelial_normal"`).
    pub state: &'a str,
    /// Lineage / cell type (e.g. `"Epithelial"`); must match the other state's.
    pub lineage: &'a str,
    /// Cell ids `[len]`.
    pub ids: &'a [String],
    /// Coordinates `[len, dim]`, row-major.
    pub coords: &'a [f32],
    /// Cell centroids in µm `[len]`; needed for the spatial penalty and for
    /// [`PairRecord::spatial_distance_um`].
    pub positions_um: Option<&'a [[f32; 2]]>,
}

/// Options of [`pair_states`].
#[derive(Clone, Debug, PartialEq)]
pub struct PairingOptions {
    /// Sinkhorn options (ε, cost, scale, tolerance, ...).
    pub sinkhorn: SinkhornOptions,
    /// θ_min: fewer cells in either state is an error. Default 50.
    pub min_cells_per_state: usize,
    /// λ of the spatial penalty `λ · dist_µm` (cost units per µm, before scaling); `None` for
    /// none. Needs positions for both states.
    pub spatial_lambda: Option<f32>,
    /// Return a pairing whose Sinkhorn did not converge (its records are flagged
    /// `converged = false`) instead of [`OtError::NotConverged`]. Default false.
    pub allow_unconverged: bool,
}

impl Default for PairingOptions {
    fn default() -> Self {
        PairingOptions {
            sinkhorn: SinkhornOptions::default(),
            min_cells_per_state: DEFAULT_MIN_CELLS_PER_STATE,
            spatial_lambda: None,
            allow_unconverged: false,
        }
    }
}

/// One matched pair (a row of the pairs CSV).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct PairRecord {
    /// Control cell id.
    pub ctrl_id: String,
    /// Matched target cell id.
    pub tgt_id: String,
    /// Control state name.
    pub state_a: String,
    /// Target state name.
    pub state_b: String,
    /// Shared lineage of the two states.
    pub cell_type: String,
    /// Distance between the two cells' centroids (µm), when positions are known.
    pub spatial_distance_um: Option<f32>,
    /// `max_j P_ij / Σ_j P_ij` of the control cell's plan row, in (0, 1].
    pub match_score: f32,
    /// Whether Sinkhorn converged (false only with [`PairingOptions::allow_unconverged`]).
    pub converged: bool,
}

/// The result of [`pair_states`].
#[derive(Clone, Debug, PartialEq)]
pub struct Pairing {
    /// One record per control cell, in control order.
    pub records: Vec<PairRecord>,
    /// `(control index, target index)` per record.
    pub pairs: Vec<(u32, u32)>,
    /// The Sinkhorn solution (potentials, iterations, convergence).
    pub sinkhorn: SinkhornResult,
}

fn check_state(s: &StateCells<'_>, dim: usize, min: usize) -> Result<usize, OtError> {
    let len = s.ids.len();
    if len < min {
        return Err(OtError::TooFewCells {
            state: s.state.to_string(),
            found: len,
            min,
        });
    }
    check_shape(
        || format!("coordinates of state `{}` [{len}, {dim}]", s.state),
        s.coords.len(),
        len * dim,
    )?;
    if let Some(pos) = s.positions_um {
        check_shape(
            || format!("positions of state `{}` [{len}]", s.state),
            pos.len(),
            len,
        )?;
    }
    Ok(len)
}

/// Pairs every control cell with a target cell by entropic OT (uniform weights).
///
/// Errors: [`OtError::LineageMismatch`], [`OtError::TooFewCells`], shapes, a spatial penalty
/// without positions, and everything [`sinkhorn`] reports.
pub async fn pair_states(
    control: &StateCells<'_>,
    target: &StateCells<'_>,
    dim: usize,
    opts: &PairingOptions,
    engine: SinkhornEngine<'_>,
    progress: impl FnMut(usize, f32),
) -> Result<Pairing, OtError> {
    if control.lineage != target.lineage {
        return Err(OtError::LineageMismatch {
            state_a: control.state.to_string(),
            lineage_a: control.lineage.to_string(),
            state_b: target.state.to_string(),
            lineage_b: target.lineage.to_string(),
        });
    }
    {
        let targets: std::collections::HashSet<&String> = target.ids.iter().collect();
        let shared: Vec<&String> = control.ids.iter().filter(|id| targets.contains(id)).collect();
        if let Some(first) = shared.first() {
            return Err(OtError::OverlappingStates { shared: shared.len(), first: first.to_string() });
        }
    }
    let min = opts.min_cells_per_state.max(1);
    let n = check_state(control, dim, min)?;
    let m = check_state(target, dim, min)?;
    let spatial = match opts.spatial_lambda {
        None => None,
        Some(lambda) => match (control.positions_um, target.positions_um) {
            (Some(x_um), Some(y_um)) => Some(SpatialPenalty { x_um, y_um, lambda }),
            _ => {
                return Err(OtError::InvalidOption {
                    name: "spatial_lambda",
                    reason: "a spatial penalty needs positions_um for both states".into(),
                })
            }
        },
    };
    let problem = SinkhornProblem {
        spatial,
        ..SinkhornProblem::new(control.coords, n, target.coords, m, dim)
    };
    let solution = sinkhorn(&problem, &opts.sinkhorn, engine, progress).await?;
    if !solution.converged && !opts.allow_unconverged {
        return Err(OtError::NotConverged {
            iterations: solution.iterations,
            error: solution.error,
            tolerance: opts.sinkhorn.tolerance,
        });
    }
    let assignment = assign(&problem, &opts.sinkhorn, &solution, engine).await?;
    let mut records = Vec::with_capacity(n);
    let mut pairs = Vec::with_capacity(n);
    for (i, (&j, &score)) in assignment
        .target
        .iter()
        .zip(&assignment.confidence)
        .enumerate()
    {
        let j_idx = (j as usize).min(m - 1);
        let distance = match (control.positions_um, target.positions_um) {
            (Some(a), Some(b)) => {
                let (dx, dy) = (a[i][0] - b[j_idx][0], a[i][1] - b[j_idx][1]);
                Some((dx * dx + dy * dy).sqrt())
            }
            _ => None,
        };
        records.push(PairRecord {
            ctrl_id: control.ids[i].clone(),
            tgt_id: target.ids[j_idx].clone(),
            state_a: control.state.to_string(),
            state_b: target.state.to_string(),
            cell_type: control.lineage.to_string(),
            spatial_distance_um: distance,
            match_score: score,
            converged: solution.converged,
        });
        pairs.push((i as u32, j_idx as u32));
    }
    Ok(Pairing {
        records,
        pairs,
        sinkhorn: solution,
    })
}

/// Quotes a CSV field when needed (RFC 4180).
pub(crate) fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// The pairs as CSV text: header
/// `ctrl_id,tgt_id,state_a,state_b,cell_type,spatial_distance_um,match_score,converged`, one
/// line per record (an unknown distance is an empty field).
pub fn pairs_csv(records: &[PairRecord]) -> String {
    let mut out =
        String::from("ctrl_id,tgt_id,state_a,state_b,cell_type,spatial_distance_um,match_score,converged\n");
    for r in records {
        let dist = r
            .spatial_distance_um
            .map_or(String::new(), |d| d.to_string());
        out.push_str(&format!(
            "{},{},{},{},{},{},{},{}\n",
            csv_field(&r.ctrl_id),
            csv_field(&r.tgt_id),
            csv_field(&r.state_a),
            csv_field(&r.state_b),
            csv_field(&r.cell_type),
            dist,
            r.match_score,
            r.converged
        ));
    }
    out
}

/// Writes [`pairs_csv`] to `path`.
#[cfg(all(feature = "native-io", not(target_arch = "wasm32")))]
pub fn write_pairs_csv(path: &std::path::Path, records: &[PairRecord]) -> Result<(), OtError> {
    std::fs::write(path, pairs_csv(records)).map_err(|e| OtError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}
