//! A spatial index over 2-D points (cell centroids): uniform grid bins with exact k-nearest
//! and radius queries.
//!
//! Distances are Euclidean, computed in f64 from the f32 coordinates as
//! `sqrt(dx² + dy²)`; results are ordered by squared distance, ties by point index, so they are
//! deterministic and equal to a brute-force scan using the same formula ([`squared_distance`]).

use std::cmp::Ordering;
use std::collections::BinaryHeap;

use super::error::DataError;

/// Whether a query by point index returns the query point itself.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub enum SelfMatch {
    /// The query point is a candidate like any other (at distance 0).
    Include,
    /// The query point's own index is never returned (other points at the same position are).
    Exclude,
}

/// One query result.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbor {
    /// Index of the point in the indexed slice.
    pub index: u32,
    /// Squared Euclidean distance (f64, see [`squared_distance`]).
    pub distance_sq: f64,
}

impl Neighbor {
    /// Euclidean distance.
    pub fn distance(&self) -> f64 {
        self.distance_sq.sqrt()
    }

    /// The result order: by squared distance, then by index.
    fn order(&self, other: &Self) -> Ordering {
        self.distance_sq
            .total_cmp(&other.distance_sq)
            .then(self.index.cmp(&other.index))
    }
}

/// Heap entry ordered like [`Neighbor::order`].
#[derive(Clone, Copy)]
struct Ranked(Neighbor);

impl PartialEq for Ranked {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}
impl Eq for Ranked {}
impl PartialOrd for Ranked {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}
impl Ord for Ranked {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.order(&other.0)
    }
}

/// Squared Euclidean distance in f64 between two f32 points, the metric of every query.
pub fn squared_distance(a: [f32; 2], b: [f32; 2]) -> f64 {
    let dx = f64::from(a[0]) - f64::from(b[0]);
    let dy = f64::from(a[1]) - f64::from(b[1]);
    dx * dx + dy * dy
}

/// Uniform-grid spatial index over `[points]` of `[x, y]`.
///
/// Points are binned into square bins of side `bin_size`; bin `(bx, by)` holds the points with
/// `floor((x - min_x) / bin_size) = bx` and likewise for `y`, stored in CSR form.
#[derive(Debug, Clone)]
pub struct SpatialIndex {
    points: Vec<[f32; 2]>,
    min: [f64; 2],
    bin_size: f64,
    n_bins: [usize; 2],
    /// `[n_bins_x * n_bins_y + 1]` offsets into `bin_points`.
    bin_start: Vec<u32>,
    /// Point indices grouped by bin (row-major bins), ascending within a bin.
    bin_points: Vec<u32>,
}

impl SpatialIndex {
    /// Indexes `points` with a bin size giving about two points per bin.
    ///
    /// Errors: [`DataError::InvalidValue`] for a non-finite coordinate (naming the point);
    /// [`DataError::InvalidArgument`] for more than `u32::MAX` points.
    pub fn new(points: &[[f32; 2]]) -> Result<Self, DataError> {
        Self::build(points, None)
    }

    /// Indexes `points` with square bins of side `bin_size` (> 0, finite). The bin size only
    /// changes speed, never results. The grid is coarsened if it would exceed `4 * points + 16`
    /// bins.
    pub fn with_bin_size(points: &[[f32; 2]], bin_size: f32) -> Result<Self, DataError> {
        if !(bin_size.is_finite() && bin_size > 0.0) {
            return Err(DataError::InvalidArgument {
                name: "bin_size",
                value: bin_size.to_string(),
                expected: "a finite bin side > 0, in the units of the points",
            });
        }
        Self::build(points, Some(f64::from(bin_size)))
    }

    fn build(points: &[[f32; 2]], bin_size: Option<f64>) -> Result<Self, DataError> {
        if u32::try_from(points.len()).is_err() {
            return Err(DataError::InvalidArgument {
                name: "points",
                value: points.len().to_string(),
                expected: "at most u32::MAX points",
            });
        }
        let mut min = [f64::INFINITY; 2];
        let mut max = [f64::NEG_INFINITY; 2];
        for (i, p) in points.iter().enumerate() {
            if !p.iter().all(|v| v.is_finite()) {
                return Err(DataError::InvalidValue {
                    field: format!("points[{i}]"),
                    value: format!("[{}, {}]", p[0], p[1]),
                    expected: "finite coordinates; drop or fix points without a position".into(),
                });
            }
            for a in 0..2 {
                min[a] = min[a].min(f64::from(p[a]));
                max[a] = max[a].max(f64::from(p[a]));
            }
        }
        let n = points.len();
        if n == 0 {
            min = [0.0; 2];
            max = [0.0; 2];
        }
        let extent = [max[0] - min[0], max[1] - min[1]];
        let largest = extent[0].max(extent[1]);
        let auto = (extent[0] * extent[1] * 2.0 / n.max(1) as f64)
            .sqrt()
            .max(largest / n.max(1) as f64);
        let mut size = bin_size.unwrap_or(auto);
        if !(size.is_finite() && size > 0.0) {
            size = 1.0;
        }
        let bins_for = |size: f64| extent.map(|e| (e / size).floor() as usize + 1);
        let limit = 4 * n + 16;
        let mut n_bins = bins_for(size);
        while n_bins[0].saturating_mul(n_bins[1]) > limit {
            size *= 2.0;
            n_bins = bins_for(size);
        }
        let mut index = SpatialIndex {
            points: points.to_vec(),
            min,
            bin_size: size,
            n_bins,
            bin_start: Vec::new(),
            bin_points: Vec::new(),
        };
        let bin_of: Vec<usize> = points
            .iter()
            .map(|&p| {
                let [bx, by] = index.bin_coords(p);
                by as usize * n_bins[0] + bx as usize
            })
            .collect();
        let mut start = vec![0u32; n_bins[0] * n_bins[1] + 1];
        for &b in &bin_of {
            start[b + 1] += 1;
        }
        for i in 1..start.len() {
            start[i] += start[i - 1];
        }
        let mut fill = start.clone();
        let mut bin_points = vec![0u32; n];
        for (i, &b) in bin_of.iter().enumerate() {
            bin_points[fill[b] as usize] = i as u32;
            fill[b] += 1;
        }
        index.bin_start = start;
        index.bin_points = bin_points;
        Ok(index)
    }

    /// Number of indexed points.
    pub fn len(&self) -> usize {
        self.points.len()
    }

    /// Whether no points are indexed.
    pub fn is_empty(&self) -> bool {
        self.points.is_empty()
    }

    /// The indexed points, `[points]` of `[x, y]`.
    pub fn points(&self) -> &[[f32; 2]] {
        &self.points
    }

    /// Bin side length in use.
    pub fn bin_size(&self) -> f64 {
        self.bin_size
    }

    /// Unclamped bin coordinates of a position (may lie outside the grid).
    fn bin_coords(&self, p: [f32; 2]) -> [i64; 2] {
        [0, 1].map(|a| ((f64::from(p[a]) - self.min[a]) / self.bin_size).floor() as i64)
    }

    fn bin(&self, bx: usize, by: usize) -> &[u32] {
        let b = by * self.n_bins[0] + bx;
        &self.bin_points[self.bin_start[b] as usize..self.bin_start[b + 1] as usize]
    }

    /// The `k` points nearest to `query`, ordered by distance then index (fewer when fewer
    /// points are indexed). A non-finite query gives an error naming it.
    pub fn k_nearest(&self, query: [f32; 2], k: usize) -> Result<Vec<Neighbor>, DataError> {
        check_query(query)?;
        Ok(self.knn(query, k, None))
    }

    /// The `k` points nearest to point `index` of the index, with or without the point itself
    /// (see [`SelfMatch`]). Errors for an index out of range.
    pub fn k_nearest_of(
        &self,
        index: usize,
        k: usize,
        self_match: SelfMatch,
    ) -> Result<Vec<Neighbor>, DataError> {
        let query = self.point(index)?;
        let skip = (self_match == SelfMatch::Exclude).then_some(index as u32);
        Ok(self.knn(query, k, skip))
    }

    /// All points within distance `radius` (inclusive) of `query`, ordered by distance then
    /// index. Errors for a negative or non-finite radius or a non-finite query.
    pub fn within_radius(&self, query: [f32; 2], radius: f32) -> Result<Vec<Neighbor>, DataError> {
        check_query(query)?;
        check_radius(radius)?;
        Ok(self.radius(query, radius, None))
    }

    /// All points within distance `radius` (inclusive) of point `index`, with or without the
    /// point itself (see [`SelfMatch`]), ordered by distance then index.
    pub fn within_radius_of(
        &self,
        index: usize,
        radius: f32,
        self_match: SelfMatch,
    ) -> Result<Vec<Neighbor>, DataError> {
        let query = self.point(index)?;
        check_radius(radius)?;
        let skip = (self_match == SelfMatch::Exclude).then_some(index as u32);
        Ok(self.radius(query, radius, skip))
    }

    fn point(&self, index: usize) -> Result<[f32; 2], DataError> {
        self.points
            .get(index)
            .copied()
            .ok_or_else(|| DataError::InvalidArgument {
                name: "index",
                value: format!("{index} (index of {} points)", self.points.len()),
                expected: "a point index below the number of indexed points",
            })
    }

    fn knn(&self, query: [f32; 2], k: usize, skip: Option<u32>) -> Vec<Neighbor> {
        if k == 0 || self.points.is_empty() {
            return Vec::new();
        }
        let [nx, ny] = self.n_bins.map(|v| v as i64);
        let [qx, qy] = self.bin_coords(query);
        // Chebyshev bin distance from the query's bin to the grid: nearer rings are empty.
        let gap = |q: i64, n: i64| (-q).max(q - (n - 1)).max(0);
        let first = gap(qx, nx).max(gap(qy, ny));
        let last = (qx.max(nx - 1 - qx)).max(qy.max(ny - 1 - qy)).max(first);
        let mut heap: BinaryHeap<Ranked> = BinaryHeap::with_capacity(k + 1);
        for ring in first..=last {
            let mut visit = |bx: i64, by: i64| {
                for &i in self.bin(bx as usize, by as usize) {
                    if Some(i) == skip {
                        continue;
                    }
                    let cand = Neighbor {
                        index: i,
                        distance_sq: squared_distance(query, self.points[i as usize]),
                    };
                    if heap.len() < k {
                        heap.push(Ranked(cand));
                    } else if heap
                        .peek()
                        .is_some_and(|worst| cand.order(&worst.0).is_lt())
                    {
                        heap.pop();
                        heap.push(Ranked(cand));
                    }
                }
            };
            // The ring's bins, clipped to the grid: top and bottom rows, then the side columns.
            let rows = if ring == 0 {
                vec![qy]
            } else {
                vec![qy - ring, qy + ring]
            };
            for by in rows.into_iter().filter(|by| (0..ny).contains(by)) {
                for bx in (qx - ring).max(0)..=(qx + ring).min(nx - 1) {
                    visit(bx, by);
                }
            }
            if ring > 0 {
                for bx in [qx - ring, qx + ring]
                    .into_iter()
                    .filter(|bx| (0..nx).contains(bx))
                {
                    for by in (qy - ring + 1).max(0)..=(qy + ring - 1).min(ny - 1) {
                        visit(bx, by);
                    }
                }
            }
            // Points not yet visited lie at least `ring * bin_size` away (with a margin for
            // rounding in the binning); stop when the k-th best is strictly nearer.
            if heap.len() == k {
                let reach = ring as f64 * self.bin_size * (1.0 - 1e-9);
                if heap.peek().is_some_and(|w| w.0.distance_sq < reach * reach) {
                    break;
                }
            }
        }
        let mut out: Vec<Neighbor> = heap.into_iter().map(|r| r.0).collect();
        out.sort_by(Neighbor::order);
        out
    }

    fn radius(&self, query: [f32; 2], radius: f32, skip: Option<u32>) -> Vec<Neighbor> {
        if self.points.is_empty() {
            return Vec::new();
        }
        let r = f64::from(radius);
        let r2 = r * r;
        // Bins overlapping [q - r, q + r], widened by one bin against rounding.
        let range = |a: usize| {
            let lo = ((f64::from(query[a]) - r - self.min[a]) / self.bin_size).floor() - 1.0;
            let hi = ((f64::from(query[a]) + r - self.min[a]) / self.bin_size).floor() + 1.0;
            let n = self.n_bins[a] as f64;
            (lo.clamp(0.0, n) as usize, (hi + 1.0).clamp(0.0, n) as usize)
        };
        let ((x0, x1), (y0, y1)) = (range(0), range(1));
        let mut out = Vec::new();
        for by in y0..y1 {
            for bx in x0..x1 {
                for &i in self.bin(bx, by) {
                    if Some(i) == skip {
                        continue;
                    }
                    let d2 = squared_distance(query, self.points[i as usize]);
                    if d2 <= r2 {
                        out.push(Neighbor {
                            index: i,
                            distance_sq: d2,
                        });
                    }
                }
            }
        }
        out.sort_by(Neighbor::order);
        out
    }
}

fn check_query(query: [f32; 2]) -> Result<(), DataError> {
    if query.iter().all(|v| v.is_finite()) {
        return Ok(());
    }
    Err(DataError::InvalidValue {
        field: "query".into(),
        value: format!("[{}, {}]", query[0], query[1]),
        expected: "finite coordinates".into(),
    })
}

fn check_radius(radius: f32) -> Result<(), DataError> {
    if radius.is_finite() && radius >= 0.0 {
        return Ok(());
    }
    Err(DataError::InvalidArgument {
        name: "radius",
        value: radius.to_string(),
        expected: "a finite radius >= 0, in the units of the points",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ties_break_by_index_and_self_is_optional() {
        // Four points at distance 1 from the origin point 0, plus a duplicate of point 0.
        let pts = [[0.0, 0.0], [1.0, 0.0], [0.0, -1.0], [-1.0, 0.0], [0.0, 0.0]];
        let idx = SpatialIndex::with_bin_size(&pts, 0.3).unwrap();
        let ids = |v: Vec<Neighbor>| v.into_iter().map(|n| n.index).collect::<Vec<_>>();
        assert_eq!(
            ids(idx.k_nearest_of(0, 3, SelfMatch::Include).unwrap()),
            vec![0, 4, 1]
        );
        assert_eq!(
            ids(idx.k_nearest_of(0, 3, SelfMatch::Exclude).unwrap()),
            vec![4, 1, 2]
        );
        assert_eq!(
            ids(idx.within_radius_of(4, 1.0, SelfMatch::Exclude).unwrap()),
            vec![0, 1, 2, 3]
        );
        assert_eq!(ids(idx.k_nearest([50.0, -60.0], 1).unwrap()), vec![2]);
        assert_eq!(
            idx.k_nearest_of(0, 99, SelfMatch::Exclude).unwrap().len(),
            4
        );
    }

    #[test]
    fn bad_input_is_an_error() {
        let e = SpatialIndex::new(&[[0.0, 0.0], [f32::NAN, 1.0]]).unwrap_err();
        assert!(e.to_string().contains("points[1] is [NaN, 1]"), "{e}");
        let idx = SpatialIndex::new(&[[0.0, 0.0]]).unwrap();
        assert!(idx.within_radius([0.0, 0.0], -1.0).is_err());
        assert!(idx.k_nearest_of(1, 1, SelfMatch::Include).is_err());
        assert!(SpatialIndex::with_bin_size(&[], 0.0).is_err());
        assert!(SpatialIndex::new(&[])
            .unwrap()
            .k_nearest([0.0, 0.0], 3)
            .unwrap()
            .is_empty());
    }
}
